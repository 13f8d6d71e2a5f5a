"""The records that flow through ingestion: what a loader yields and what a chunker returns."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol


@dataclass(frozen=True)
class SourceDocument:
    """One document as a loader found it, before chunking.

    `external_id` is the caller's stable name for it (a path relative to the ingested root, a BEIR `_id`,
    a JSON-lines `id`): re-ingesting the same external id updates the document instead of adding one.
    """

    external_id: str
    text: str
    source: str
    title: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class LoadFailure:
    """A file that could not be loaded, with the reason; the batch goes on without it.

    `external_id` is the id the file's document has when it loads, for a file that is one document: an
    earlier version of it may be in the index.
    """

    path: Path
    reason: str
    external_id: str | None = None


@dataclass(frozen=True)
class ChunkDraft:
    """One chunk of a document before embedding: the text that is embedded and stored."""

    ordinal: int
    text: str
    token_count: int
    heading_path: tuple[str, ...] = ()


class Tokenizer(Protocol):
    """The embedding model's tokenizer, as chunkers need it: sizes count the model's own tokens."""

    def token_spans(self, text: str) -> list[tuple[int, int]]:
        """Character spans (start, end) of each token of `text`, special tokens excluded."""
        ...
