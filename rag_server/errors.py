"""The exceptions this project raises on purpose, in one tree.

RagError                  anything the user can fix; the CLI prints it, the API maps it to a 4xx
├── ConfigError           a setting is missing or contradicts another one
├── DatabaseError         the database cannot be reached, started or migrated
├── IngestError           an ingestion run cannot go on (a single bad file is a LoadFailure, not this)
├── EmbeddingModelMismatch  a domain is bound to another embedding model than the one configured
├── RetrievalError        a search cannot be run as asked (unknown route, bad filter)
│   ├── UnknownFilterKey  a metadata filter names a key no document of the domain has
│   ├── SqlRejected       generated or given SQL broke a validation rule (the rule is named)
│   ├── SqlExecutionError validated SQL failed in the sandbox (timeout, cost cap, Postgres error)
│   └── SqlDeclined       no SQL could be generated for the question
├── ModelError            the answering model could not be reached or answered nonsense
├── NotFound              a domain or document that does not exist
└── AccessError           the caller may not do this now
    ├── Unauthenticated   no API key, or one that is unknown or revoked
    ├── Forbidden         the key's role or domains do not allow it
    ├── RateLimited       the key's requests or tokens per minute are spent (`retry_after` seconds)
    └── BudgetExceeded    the project's monthly budget would be passed
"""

from __future__ import annotations


class RagError(Exception):
    """Base of every error this project raises on purpose; its message is meant for the user."""


class ConfigError(RagError):
    """A setting is missing, malformed or contradicts another one."""


class DatabaseError(RagError):
    """The database cannot be reached, started or migrated."""


class IngestError(RagError):
    """An ingestion run cannot go on."""


class EmbeddingModelMismatch(RagError):
    """A domain's chunks were embedded by another model than the one configured."""


class RetrievalError(RagError):
    """A search cannot be run as asked."""


class UnknownFilterKey(RetrievalError):
    """A metadata filter names keys (`unknown`) that no document of the domain has; `known` lists those it has."""

    def __init__(self, domain: str, unknown: list[str], known: list[str]) -> None:
        names = ", ".join(repr(key) for key in unknown)
        listed = ", ".join(known) if known else "none (its documents have no metadata)"
        super().__init__(
            f"unknown filter key {names}: no document of domain {domain!r} has it; its metadata keys are: {listed}"
        )
        self.unknown = unknown
        self.known = known


class SqlRejected(RetrievalError):
    """A SQL statement broke a validation rule; `rule` names which one."""

    def __init__(self, rule: str, detail: str) -> None:
        super().__init__(f"SQL rejected ({rule}): {detail}")
        self.rule = rule
        self.detail = detail


class SqlExecutionError(RetrievalError):
    """A validated statement failed inside the sandbox."""


class SqlDeclined(RetrievalError):
    """The generator cannot express the question in SQL."""


class ModelError(RagError):
    """The configured model could not be reached or gave an unusable reply."""


class NotFound(RagError):
    """A domain, document or other named thing does not exist."""


class AccessError(RagError):
    """The caller may not do this now; `headers` go out with the HTTP answer."""

    @property
    def headers(self) -> dict[str, str]:
        return {}


class Unauthenticated(AccessError):
    """No API key, or one that is unknown or revoked."""

    @property
    def headers(self) -> dict[str, str]:
        return {"WWW-Authenticate": "Bearer"}


class Forbidden(AccessError):
    """The key's role or granted domains do not allow the request."""


class RateLimited(AccessError):
    """A per-minute limit of the key is spent until the next window."""

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after

    @property
    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after)}


class BudgetExceeded(AccessError):
    """The request's worst-case cost would take the project past its monthly budget."""
