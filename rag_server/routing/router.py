"""`QueryRouter.route(question, domain)`: semantic, keyword, hybrid or sql, with a confidence and the reasons.

A surface model (no embedding) first sends sure keyword questions straight to keyword search, and sure
analytical ones that the offline generator maps onto the tables straight to SQL, so they are never embedded.
Otherwise the trained model decides when it is confident. When it is not, the configured model is asked
(if enabled); failing that the question goes to hybrid, and also to SQL when it mentions the domain's tables:
never a silent guess. A domain with no trained router gets the built-in model's structural choices only
(identifiers and quoted phrases to keyword, analytical questions to sql): its semantic and plain keyword
preferences come from other corpora and lost to hybrid on every shared set, so those questions go to hybrid.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
from psycopg_pool import ConnectionPool

from rag_server.config import Settings
from rag_server.domains import Domain
from rag_server.embedding import Embedder
from rag_server.errors import ModelError
from rag_server.llm import ChatModel, ModelCall
from rag_server.routing.features import FEATURE_NAMES, Vocabulary, handcrafted
from rag_server.routing.model import (
    FEATURE_VERSION,
    ROUTER_ROUTES,
    RouterModel,
    default_model,
    load_model,
)
from rag_server.sql import deterministic
from rag_server.sql.catalog import load_catalog
from rag_server.sql.deterministic import Draft

_ROUTE_TOOL = {
    "type": "function",
    "function": {
        "name": "choose_route",
        "description": "Choose how to retrieve evidence for the user's question.",
        "parameters": {
            "type": "object",
            "properties": {
                "route": {"type": "string", "enum": list(ROUTER_ROUTES)},
                "confidence": {"type": "number", "minimum": 0, "maximum": 1},
                "reason": {"type": "string"},
            },
            "required": ["route", "confidence", "reason"],
        },
    },
}
_LLM_SYSTEM = (
    "You route questions to a retrieval method. keyword: identifiers, error codes, names, exact phrases, very "
    "short queries. semantic: natural-language questions whose words may differ from the documents'. hybrid: "
    "natural questions that also carry specific terms, or when unsure. sql: counting, aggregating, filtering or "
    "ranking records of the tables listed (only if tables are listed). Call choose_route."
)
_LLM_EXAMPLES = [
    ("ERR-4012", "keyword"),
    ("why does my dashboard stop refreshing overnight", "semantic"),
    ("what does SYNC-409 mean when syncing from Postgres", "hybrid"),
    ("how many refunds were approved per plan in March", "sql"),
]


@dataclass(frozen=True)
class RouteDecision:
    """Where a question goes, how sure the router is, why, and what deciding cost."""

    route: str
    confidence: float
    reasons: list[str]
    decided_by: str
    probabilities: dict[str, float] = field(default_factory=dict)
    fanout_sql: bool = False
    # Routed to sql, but hybrid chunks are searched beside the rows.
    fanout_documents: bool = False
    model_calls: list[ModelCall] = field(default_factory=list)
    # Decided by the surface model alone: the query was not embedded for routing.
    before_embedding: bool = False
    # The offline generator's SQL, written to compute `sql_expressible`: the sql route runs it as is.
    sql_draft: Draft | None = field(default=None, repr=False, compare=False)

    def as_dict(self) -> dict[str, Any]:
        return {
            "route": self.route,
            "confidence": round(self.confidence, 4),
            "reasons": self.reasons,
            "decided_by": self.decided_by,
            "probabilities": {route: round(p, 4) for route, p in self.probabilities.items()},
            "fanout_sql": self.fanout_sql,
            "fanout_documents": self.fanout_documents,
            "model_calls": [call.as_dict() for call in self.model_calls],
            "before_embedding": self.before_embedding,
        }

    @classmethod
    def requested(cls, route: str) -> RouteDecision:
        return cls(route, 1.0, ["route requested explicitly"], "request")

    @classmethod
    def defaulted(cls, route: str) -> RouteDecision:
        return cls(route, 1.0, [f"the default route (RAG_DEFAULT_ROUTE={route})"], "default")


class QueryRouter:
    """One per process: caches each domain's model (by version) and table vocabulary (by catalog stamp)."""

    def __init__(
        self, pool: ConnectionPool, embedder: Embedder, settings: Settings, model: ChatModel | None = None
    ) -> None:
        self.pool = pool
        self.embedder = embedder
        self.settings = settings
        self.chat = model
        self._lock = threading.Lock()
        self._models: dict[int, tuple[int, RouterModel | None, str]] = {}
        self._vocabularies: dict[int, tuple[Any, Vocabulary]] = {}
        self._default: RouterModel | None = None

    def route(
        self,
        question: str,
        domain: Domain,
        vector: np.ndarray | Callable[[], np.ndarray] | None = None,
    ) -> RouteDecision:
        """Route a question. `vector` is its embedding, or how to compute it: it is computed only when the
        surface model is not sure."""
        # One statement for both stamps (the newest model version, the catalog's): on every routed search.
        with self.pool.connection() as conn:
            version, catalog_stamp = _stamps(conn, domain)
            trained = self._trained_model(conn, domain, version)
            vocabulary = self._vocabulary(conn, domain, catalog_stamp)
        # "builtin": the packaged model (decided_by "default" means the default route, RAG_DEFAULT_ROUTE).
        model, model_name = trained or (self._default_model(), "builtin")
        drafted = deterministic.draft(question, vocabulary.catalog)
        features = handcrafted(question, vocabulary, expressible=drafted is not None)
        decision = self._decide(question, vocabulary, model, model_name, features, vector)
        return replace(decision, sql_draft=drafted)

    def _decide(
        self,
        question: str,
        vocabulary: Vocabulary,
        model: RouterModel,
        model_name: str,
        features: np.ndarray,
        vector: np.ndarray | Callable[[], np.ndarray] | None,
    ) -> RouteDecision:
        surface = self._surface(model, model_name, features, vocabulary)
        if surface is not None:
            return surface
        if vector is None:
            embedding = self.embedder.embed([question])[0]
        else:
            embedding = vector() if callable(vector) else vector
        probabilities = _route_probabilities(model, model.probabilities(features, embedding), vocabulary)
        reasons = ["no tables in this domain"] if vocabulary.empty and "sql" in probabilities else []
        route = max(probabilities, key=probabilities.__getitem__)
        confidence = probabilities[route]
        reasons = [*model.reasons(features, embedding, route), *reasons]
        use_llm = self.chat is not None and (
            self.settings.router_llm == "always"
            or (self.settings.router_llm == "unsure" and confidence < self.settings.router_min_confidence)
        )
        if use_llm:
            decided = self._ask_model(question, vocabulary, route, confidence)
            if decided is not None:
                return decided
        untrusted = self._untrusted(model_name, route, features)
        if confidence >= self.settings.router_min_confidence and untrusted is None:
            # Chunks cannot answer an analytical question: when the tables can, SQL runs beside the chunk route.
            expressible = route != "sql" and bool(features[FEATURE_NAMES.index("sql_expressible")])
            if expressible:
                reasons.append("sql too: the offline generator maps the question onto the tables")
            unsure_sql = route == "sql" and confidence < self.settings.router_sql_confidence
            if unsure_sql:
                reasons.append(
                    f"documents too: {confidence:.2f} for sql < {self.settings.router_sql_confidence}"
                )
            return RouteDecision(
                route,
                confidence,
                reasons,
                model_name,
                probabilities,
                fanout_sql=expressible,
                fanout_documents=unsure_sql,
            )
        mentions = [
            FEATURE_NAMES.index(name) for name in ("table_mentions", "column_mentions", "value_mentions")
        ]
        mentions_tables = bool(any(features[i] for i in mentions)) and not vocabulary.empty
        note = untrusted or (
            f"low confidence ({confidence:.2f} for {route} < {self.settings.router_min_confidence}): hybrid"
        )
        return RouteDecision(
            "hybrid",
            confidence,
            [note + (" + sql, the question mentions the tables" if mentions_tables else "")],
            model_name,
            probabilities,
            fanout_sql=mentions_tables,
        )

    def _surface(
        self, model: RouterModel, model_name: str, features: np.ndarray, vocabulary: Vocabulary
    ) -> RouteDecision | None:
        """Keyword or sql, decided before embedding, when the surface model is sure: neither route needs the
        query's embedding. Keyword only when SQL is not in play; sql only when the offline generator maps the
        question onto the tables and the router would not also search the documents."""
        threshold = self.settings.router_surface_confidence
        if threshold >= 1 or (self.chat is not None and self.settings.router_llm == "always"):
            return None
        found = model.surface_probabilities(features)
        if found is None:
            return None
        if features[FEATURE_NAMES.index("sql_expressible")]:
            route, threshold = "sql", max(threshold, self.settings.router_sql_confidence)
        else:
            route = "keyword"
            if self._untrusted(model_name, route, features):
                return None
        probabilities = _route_probabilities(model, found, vocabulary)
        confidence = probabilities.get(route, 0.0)
        if confidence < threshold:
            return None
        reasons = [*model.reasons(features, None, route), "surface features: decided before embedding"]
        return RouteDecision(route, confidence, reasons, model_name, probabilities, before_embedding=True)

    def _untrusted(self, model_name: str, route: str, features: np.ndarray) -> str | None:
        """Why the built-in model's chunk route is not taken for a domain with no trained router, or None.

        Measured on four public sets, its semantic and keyword choices lost to hybrid on each: which chunk route
        suits a question depends on the corpus. Identifiers and quoted phrases want exact matches anywhere."""
        if model_name != "builtin" or self.settings.router_builtin == "full":
            return None
        if route == "semantic" or (route == "keyword" and not _structural(features)):
            return (
                f"no router trained for this domain: the built-in model's {route} is not trusted here: hybrid"
            )
        return None

    def vocabulary(self, domain: Domain) -> Vocabulary:
        """The domain's table words and catalog, as the features see them."""
        with self.pool.connection() as conn:
            return self._vocabulary(conn, domain, _stamps(conn, domain)[1])

    def _trained_model(
        self, conn: Any, domain: Domain, version: int | None
    ) -> tuple[RouterModel, str] | None:
        """The domain's newest trained model (`version`), if it fits this embedding model and feature version."""
        if version is None:
            return None
        cached = self._models.get(domain.id)
        if cached is None or cached[0] != version:
            model = load_model(conn, domain.id, version)
            usable = model.embedding_model == self.embedder.name and model.feature_version == FEATURE_VERSION
            cached = (version, model if usable else None, f"{domain.name} v{version}")
            self._models[domain.id] = cached
        return (cached[1], cached[2]) if cached[1] is not None else None

    def warm(self) -> None:
        """Load (or, the first time for this data dir, train) the built-in model now rather than on first use."""
        self._default_model()

    def _default_model(self) -> RouterModel:
        with self._lock:
            if self._default is None:
                self._default = default_model(self.embedder, self.settings.data_dir)
            return self._default

    def _vocabulary(self, conn: Any, domain: Domain, stamp: tuple[Any, ...]) -> Vocabulary:
        """The vocabulary of the domain's catalog as of `stamp` (_stamps), built again when it moved."""
        cached = self._vocabularies.get(domain.id)
        if cached is not None and cached[0] == stamp:
            return cached[1]
        vocabulary = Vocabulary.from_catalog(load_catalog(conn, domain))
        self._vocabularies[domain.id] = (stamp, vocabulary)
        return vocabulary

    def _ask_model(
        self, question: str, vocabulary: Vocabulary, route: str, confidence: float
    ) -> RouteDecision | None:
        assert self.chat is not None
        tables = ", ".join(sorted(t for t in vocabulary.tables if " " not in t)) or "(none)"
        messages: list[dict[str, Any]] = [{"role": "system", "content": f"{_LLM_SYSTEM}\nTables: {tables}"}]
        for example, label in _LLM_EXAMPLES:
            messages.append({"role": "user", "content": example})
            messages.append({"role": "assistant", "content": f"route: {label}"})
        messages.append({"role": "user", "content": question})
        started = time.perf_counter()
        try:
            reply = self.chat.complete("route", messages, tools=[_ROUTE_TOOL], max_tokens=120)
            arguments = json.loads(reply.tool_arguments or reply.text)
            chosen = str(arguments["route"])
            stated = float(arguments.get("confidence", 0.5))
        except (ModelError, ValueError, KeyError, TypeError):
            return None  # the trained router's answer (or hybrid) stands
        if chosen not in ROUTER_ROUTES or (chosen == "sql" and vocabulary.empty):
            return None
        reasons = [
            f"model: {arguments.get('reason', '')}".strip(),
            f"trained router said {route} at {confidence:.2f}",
            f"asked in {(time.perf_counter() - started) * 1000:.0f} ms",
        ]
        return RouteDecision(chosen, max(0.0, min(stated, 1.0)), reasons, "llm", model_calls=[reply.call])


def _stamps(conn: Any, domain: Domain) -> tuple[int | None, tuple[Any, ...]]:
    """The domain's newest router model version, and its catalog's stamp (tables and joins both shape the
    vocabulary's catalog: the offline generator joins on the latter), in one statement."""
    row = conn.execute(
        "SELECT (SELECT max(version) FROM router_models WHERE domain_id = %(domain)s),"
        " (SELECT count(*) FROM sql_tables WHERE domain_id = %(domain)s),"
        " (SELECT max(updated_at) FROM sql_tables WHERE domain_id = %(domain)s),"
        " (SELECT coalesce(max(id), 0) FROM sql_joins WHERE domain_id = %(domain)s)",
        {"domain": domain.id},
    ).fetchone()
    return row[0], tuple(row[1:])


def _structural(features: np.ndarray) -> bool:
    """The question carries an identifier or a quoted phrase: exact matches matter in any corpus."""
    return bool(features[FEATURE_NAMES.index("identifiers")] or features[FEATURE_NAMES.index("quotes")])


def _route_probabilities(model: RouterModel, values: np.ndarray, vocabulary: Vocabulary) -> dict[str, float]:
    """The model's probabilities by route; with no tables, no SQL: the other routes share its probability."""
    probabilities = dict(zip(model.classes, values.tolist(), strict=True))
    if not vocabulary.empty or "sql" not in probabilities:
        return probabilities
    kept = {route: (0.0 if route == "sql" else p) for route, p in probabilities.items()}
    total = sum(kept.values())
    return {route: p / total for route, p in kept.items()}
