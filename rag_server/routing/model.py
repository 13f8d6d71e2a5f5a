"""The trained router: multinomial logistic regression over the handcrafted features and the query embedding.

Beside it a second, surface model sees the handcrafted features only: when it is sure a question is keyword
work (an error code, an identifier), the router decides before the query is embedded, and keyword search
never pays for the embedding. Training uses scikit-learn; the fitted weights are kept as plain arrays (JSON in
the database, versioned per domain), so a stored model does not depend on the scikit-learn version and
predicting is one matrix product.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from rag_server.embedding import Embedder
from rag_server.errors import RagError
from rag_server.resources import package_path
from rag_server.routing import features
from rag_server.routing.features import FEATURE_NAMES, Vocabulary, handcrafted
from rag_server.sql import deterministic
from rag_server.sql.catalog import Catalog, CatalogColumn, CatalogTable, Join

ROUTER_ROUTES = ("keyword", "semantic", "hybrid", "sql")
# Bumped when features change: a stored model of another version is not used.
FEATURE_VERSION = 3
DEFAULT_DATA = package_path("routing", "data", "default.jsonl")
# The catalogs (column types, values, joins) of the invented schemas the built-in rows were asked against, so
# training sees the table features (value mentions, "the offline generator maps it") as a real domain would.
TRAINING_CATALOGS = DEFAULT_DATA.with_name("catalogs.json")


@dataclass(frozen=True)
class LabeledQuestion:
    """A training row: the question, its route, and the "table.column" names of the tables it was asked
    against (empty when the knowledge base has none; None: the tables of the domain being trained)."""

    text: str
    route: str
    schema: tuple[str, ...] | None = ()


def load_labeled(path: Path) -> list[LabeledQuestion]:
    """JSON-lines rows {"text", "route", "schema"?}; a bad row raises RagError with its line number."""
    rows = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            schema = tuple(row["schema"]) if row.get("schema") is not None else None
            question = LabeledQuestion(row["text"], row["route"], schema)
        except KeyError as error:
            raise RagError(
                f'{path}:{number}: missing field {error} (a row is {{"text": ..., "route": ...}})'
            ) from None
        except (ValueError, TypeError) as error:
            raise RagError(f"{path}:{number}: not a labeled question ({error})") from None
        if question.route not in ROUTER_ROUTES:
            raise RagError(
                f"{path}:{number}: route {question.route!r} is not one of {', '.join(ROUTER_ROUTES)}"
            )
        rows.append(question)
    if not rows:
        raise RagError(f"{path} has no labeled questions")
    return rows


@dataclass
class RouterModel:
    classes: list[str]
    mean: np.ndarray
    scale: np.ndarray
    coef: np.ndarray
    intercept: np.ndarray
    embedding_model: str
    metrics: dict[str, Any] = field(default_factory=dict)
    feature_version: int = FEATURE_VERSION
    # The surface model: same classes, handcrafted features only (None: a model stored without one).
    surface_coef: np.ndarray | None = None
    surface_intercept: np.ndarray | None = None

    def surface_probabilities(self, features: np.ndarray) -> np.ndarray | None:
        """Route probabilities from the handcrafted features alone, before any embedding."""
        if self.surface_coef is None or self.surface_intercept is None:
            return None
        return _softmax(self.surface_coef @ self._scaled(features) + self.surface_intercept)

    def probabilities(self, features: np.ndarray, vector: np.ndarray) -> np.ndarray:
        return _softmax(self.coef @ self._inputs(features, vector) + self.intercept)

    def _scaled(self, features: np.ndarray) -> np.ndarray:
        return (features - self.mean) / self.scale

    def _inputs(self, features: np.ndarray, vector: np.ndarray) -> np.ndarray:
        return np.concatenate([self._scaled(features), vector]).astype(np.float32)

    def reasons(self, features: np.ndarray, vector: np.ndarray | None, route: str, top: int = 3) -> list[str]:
        """The features that pushed most towards `route` (contribution = weight x scaled value); without a
        vector, those of the surface model."""
        count = len(FEATURE_NAMES)
        if vector is None:
            assert self.surface_coef is not None
            row = self.surface_coef[self.classes.index(route)]
            inputs = self._scaled(features)
        else:
            row = self.coef[self.classes.index(route)]
            inputs = self._inputs(features, vector)
        contributions = [
            (float(row[i] * inputs[i]), FEATURE_NAMES[i], float(features[i])) for i in range(count)
        ]
        if vector is not None:
            contributions.append((float(row[count:] @ inputs[count:]), "embedding", 0.0))
        ranked = sorted((c for c in contributions if c[0] > 0), reverse=True)[:top]
        return [
            f"{name} ({value:g}) +{weight:.2f}" if name != "embedding" else f"embedding +{weight:.2f}"
            for weight, name, value in ranked
        ]

    def to_json(self) -> dict[str, Any]:
        return {
            "classes": self.classes,
            "mean": self.mean.tolist(),
            "scale": self.scale.tolist(),
            "coef": self.coef.tolist(),
            "intercept": self.intercept.tolist(),
            "embedding_model": self.embedding_model,
            "metrics": self.metrics,
            "feature_version": self.feature_version,
            "surface_coef": None if self.surface_coef is None else self.surface_coef.tolist(),
            "surface_intercept": None if self.surface_intercept is None else self.surface_intercept.tolist(),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RouterModel:
        return cls(
            list(data["classes"]),
            np.asarray(data["mean"], dtype=np.float32),
            np.asarray(data["scale"], dtype=np.float32),
            np.asarray(data["coef"], dtype=np.float32),
            np.asarray(data["intercept"], dtype=np.float32),
            data["embedding_model"],
            data.get("metrics", {}),
            data.get("feature_version", 0),
            _array(data.get("surface_coef")),
            _array(data.get("surface_intercept")),
        )


def _array(values: list[Any] | None) -> np.ndarray | None:
    return None if values is None else np.asarray(values, dtype=np.float32)


def _softmax(logits: np.ndarray) -> np.ndarray:
    exp = np.exp(logits - logits.max())
    return exp / exp.sum()


def featurize(
    rows: Sequence[LabeledQuestion], embedder: Embedder, domain_vocabulary: Vocabulary | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Handcrafted features (against each row's schema, or the domain's tables) and embeddings."""
    catalogs = training_catalogs()
    features = np.stack(
        [handcrafted(row.text, _row_vocabulary(row, catalogs, domain_vocabulary)) for row in rows]
    )
    vectors = embedder.embed([row.text for row in rows])
    return features, vectors


def _row_vocabulary(
    row: LabeledQuestion, catalogs: dict[frozenset[str], Catalog], domain_vocabulary: Vocabulary | None
) -> Vocabulary:
    """A row's tables: the shipped catalog its schema names, else the bare names, else the domain's."""
    if row.schema is None:
        return domain_vocabulary or Vocabulary()
    catalog = catalogs.get(frozenset(row.schema))
    return Vocabulary.from_catalog(catalog) if catalog is not None else Vocabulary.from_schema(row.schema)


def training_catalogs(path: Path = TRAINING_CATALOGS) -> dict[frozenset[str], Catalog]:
    """The shipped catalogs by their "table.column" names. A column is a type, or [type, [its values]]; joins
    are {"left": "table.column", "right": "table.column"}, as in a tables folder's catalog.json."""
    found = {}
    for schema in json.loads(path.read_text(encoding="utf-8"))["schemas"]:
        tables = {
            table: CatalogTable(
                table,
                schema["name"],
                table,
                "training",
                "",
                1000,
                tuple(_training_column(name, spec) for name, spec in columns.items()),
            )
            for table, columns in schema["tables"].items()
        }
        joins = tuple(Join(*_side(join["left"]), *_side(join["right"])) for join in schema["joins"])
        names = frozenset(
            f"{table}.{column}" for table, columns in schema["tables"].items() for column in columns
        )
        found[names] = Catalog(schema["name"], schema["name"], tables, joins)
    return found


def _training_column(name: str, spec: str | list[Any]) -> CatalogColumn:
    if isinstance(spec, str):
        return CatalogColumn(name, spec, distinct_count=1000)
    data_type, values = spec
    return CatalogColumn(name, data_type, sample_values=tuple(values), distinct_count=len(values))


def _side(name: str) -> tuple[str, str]:
    table, _, column = name.partition(".")
    return table, column


def train(
    rows: Sequence[LabeledQuestion],
    embedder: Embedder,
    c: float = 1.0,
    domain_vocabulary: Vocabulary | None = None,
    weights: Sequence[float] | None = None,
) -> RouterModel:
    """Fit the router on labeled questions (optionally weighted per row); metrics include 5-fold
    cross-validated accuracy."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import cross_val_score

    labels = [row.route for row in rows]
    if len(set(labels)) < 2:
        raise RagError("training needs questions of at least two routes")
    features, vectors = featurize(rows, embedder, domain_vocabulary)
    mean = features.mean(axis=0)
    scale = np.where(features.std(axis=0) > 1e-6, features.std(axis=0), 1.0)
    inputs = np.hstack([(features - mean) / scale, vectors])
    classifier = LogisticRegression(C=c, max_iter=3000, class_weight="balanced")
    counts = Counter(labels)
    folds = min(5, min(counts.values()))
    sample_weight = np.asarray(weights, dtype=np.float64) if weights is not None else None
    params = {"sample_weight": sample_weight} if sample_weight is not None else None
    cv = (
        float(cross_val_score(classifier, inputs, labels, cv=folds, params=params).mean())
        if folds >= 2
        else None
    )
    coef, intercept = _fit(classifier, inputs, labels, sample_weight)
    surface_coef, surface_intercept = _fit(
        LogisticRegression(C=c, max_iter=3000, class_weight="balanced"),
        inputs[:, : features.shape[1]],
        labels,
        sample_weight,
    )
    return RouterModel(
        [str(label) for label in classifier.classes_],
        mean.astype(np.float32),
        scale.astype(np.float32),
        coef,
        intercept,
        embedder.name,
        {"rows": len(rows), "per_route": dict(counts), "cv_accuracy": cv, "c": c},
        surface_coef=surface_coef,
        surface_intercept=surface_intercept,
    )


def _fit(
    classifier: Any, inputs: np.ndarray, labels: list[str], sample_weight: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray]:
    """Fit and return (coef, intercept) as softmax rows, one per class in sorted order."""
    classifier.fit(inputs, labels, sample_weight=sample_weight)
    coef, intercept = classifier.coef_, classifier.intercept_
    if len(classifier.classes_) == 2:
        # A binary fit has one row (the second class against the first): as softmax, the first class gets zeros.
        coef = np.vstack([np.zeros_like(coef[0]), coef[0]])
        intercept = np.array([0.0, intercept[0]])
    return coef.astype(np.float32), intercept.astype(np.float32)


def train_with_default(
    rows: Sequence[LabeledQuestion],
    embedder: Embedder,
    c: float = 1.0,
    domain_vocabulary: Vocabulary | None = None,
) -> RouterModel:
    """Train on the given rows plus the built-in set; the given rows weigh as much in total as the built-in
    ones, however few they are (a domain's own questions should not drown)."""
    built_in = load_labeled(DEFAULT_DATA)
    weights = [len(built_in) / len(rows)] * len(rows) + [1.0] * len(built_in)
    return train([*rows, *built_in], embedder, c, domain_vocabulary, weights)


def training_fingerprint(embedder: Embedder, *data: Path) -> str:
    """What a model trained on these files would depend on: a model with another fingerprint is stale."""
    # The features run the offline SQL generator (sql_expressible): a change to either code retrains.
    sources = [Path(features.__file__), *sorted(Path(deterministic.__file__).parent.glob("*.py"))]
    code = b"".join(path.read_bytes() for path in sources)
    files = b"".join(path.read_bytes() for path in data) + TRAINING_CATALOGS.read_bytes() + code
    return hashlib.sha256(files + embedder.name.encode() + str(FEATURE_VERSION).encode()).hexdigest()[:16]


def default_model(embedder: Embedder, cache_dir: Path) -> RouterModel:
    """The built-in model, trained on the shipped data on first use and cached under the data dir."""
    cached = cache_dir / f"router-default-{training_fingerprint(embedder, DEFAULT_DATA)}.json"
    if cached.is_file():
        try:
            return RouterModel.from_json(json.loads(cached.read_text()))
        except (ValueError, KeyError):
            pass  # a torn write: train again
    model = train(load_labeled(DEFAULT_DATA), embedder)
    model.metrics["source"] = "default"
    cache_dir.mkdir(parents=True, exist_ok=True)
    partial = cached.with_suffix(".tmp")
    partial.write_text(json.dumps(model.to_json()))
    partial.replace(cached)
    return model


def save_model(conn: Any, domain_id: int, model: RouterModel) -> int:
    """Store a trained model as the domain's next version; returns the version."""
    conn.execute("SELECT pg_advisory_xact_lock(hashtext('rag_server.router_models'), %s)", (domain_id,))
    version = conn.execute(
        "SELECT coalesce(max(version), 0) + 1 FROM router_models WHERE domain_id = %s", (domain_id,)
    ).fetchone()[0]
    conn.execute(
        "INSERT INTO router_models (domain_id, version, model) VALUES (%s, %s, %s)",
        (domain_id, version, json.dumps(model.to_json())),
    )
    return int(version)


def latest_version(conn: Any, domain_id: int) -> int | None:
    row = conn.execute("SELECT max(version) FROM router_models WHERE domain_id = %s", (domain_id,)).fetchone()
    return row[0] if row else None


def load_model(conn: Any, domain_id: int, version: int) -> RouterModel:
    row = conn.execute(
        "SELECT model FROM router_models WHERE domain_id = %s AND version = %s", (domain_id, version)
    ).fetchone()
    if row is None:
        raise RagError(f"no router model version {version} for this domain")
    return RouterModel.from_json(row[0])
