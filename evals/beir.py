"""Reading the queries and relevance judgements of a BEIR-format data set folder.

The layout: `queries.jsonl` (one `{"_id", "text", ...}` object a line; an optional `kind` labels the
query type) and `qrels/<split>.tsv` (tab-separated `query-id  corpus-id  score`, with a header line).
The project's own sets keep the formats under their own names, `questions.jsonl` and
`judgements/<split>.tsv`, so that nothing in the repository looks like a copy of a public BEIR set.
The corpus (`corpus.jsonl`) is read by the ingestion loaders, not here.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from rag_server.errors import RagError

# BEIR's names first; where none exists, errors name BEIR's.
QUERIES_FILES = ("queries.jsonl", "questions.jsonl")
QRELS_DIRS = ("qrels", "judgements")
QRELS_COLUMNS = ("query-id", "corpus-id", "score")


class DatasetError(RagError, ValueError):
    """A data set file is missing or malformed; the message names the file (and line)."""


@dataclass(frozen=True)
class EvalQuery:
    """One query of a data set, with its optional kind label (identifier, paraphrase ...)."""

    id: str
    text: str
    kind: str | None


def load_qrels(folder: Path, split: str = "test") -> dict[str, dict[str, int]]:
    """The judgements of `qrels/<split>.tsv` as {query id: {corpus id: score}}, zero scores included."""
    path = _qrels_path(folder, split)
    qrels: dict[str, dict[str, int]] = {}
    for number, line in _lines(path):
        columns = [column.strip() for column in line.split("\t")]
        if number == 1 and not _is_int(columns[-1]):
            _check_header(path, columns)
            continue
        if len(columns) != len(QRELS_COLUMNS):
            raise DatasetError(
                f"{path}:{number}: expected {len(QRELS_COLUMNS)} tab-separated columns "
                f"({', '.join(QRELS_COLUMNS)}), got {len(columns)}"
            )
        query_id, corpus_id, score = columns
        if not query_id or not corpus_id:
            raise DatasetError(f"{path}:{number}: empty query-id or corpus-id")
        if not _is_int(score):
            raise DatasetError(f"{path}:{number}: score {score!r} is not an integer")
        qrels.setdefault(query_id, {})[corpus_id] = int(score)
    if not qrels:
        raise DatasetError(f"{path}: no judgements")
    return qrels


def load_queries(folder: Path, split: str = "test") -> list[EvalQuery]:
    """The queries of `queries.jsonl` (in file order) that have a positive judgement in the split."""
    path = _first_existing(folder / name for name in QUERIES_FILES)
    judged = {
        query_id for query_id, docs in load_qrels(folder, split).items() if any(s > 0 for s in docs.values())
    }
    queries: list[EvalQuery] = []
    seen: set[str] = set()
    for number, line in _lines(path):
        query = _parse_query(path, number, line)
        if query.id in seen:
            raise DatasetError(f"{path}:{number}: duplicate query _id {query.id!r}")
        seen.add(query.id)
        if query.id in judged:
            queries.append(query)
    if not queries:
        raise DatasetError(f"{path}: no query has a positive judgement in {_qrels_path(folder, split)}")
    return queries


def _qrels_path(folder: Path, split: str) -> Path:
    return _first_existing(folder / name / f"{split}.tsv" for name in QRELS_DIRS)


def _first_existing(paths: Iterable[Path]) -> Path:
    candidates = list(paths)
    return next((path for path in candidates if path.is_file()), candidates[0])


def _parse_query(path: Path, number: int, line: str) -> EvalQuery:
    try:
        record = json.loads(line)
    except json.JSONDecodeError as error:
        raise DatasetError(f"{path}:{number}: invalid JSON: {error.msg}") from None
    if not isinstance(record, dict):
        raise DatasetError(f"{path}:{number}: expected a JSON object, got {type(record).__name__}")
    for key in ("_id", "text"):
        if key not in record:
            raise DatasetError(f"{path}:{number}: missing field {key!r}")
    query_id, text, kind = record["_id"], record["text"], record.get("kind")
    # BEIR ids are strings, but some exports write numeric ids as JSON numbers; bool is an int, not an id.
    if isinstance(query_id, bool) or not isinstance(query_id, str | int) or str(query_id) == "":
        raise DatasetError(f"{path}:{number}: _id must be a non-empty string, got {query_id!r}")
    if not isinstance(text, str):
        raise DatasetError(f"{path}:{number}: text must be a string, got {type(text).__name__}")
    if kind is not None and not isinstance(kind, str):
        raise DatasetError(f"{path}:{number}: kind must be a string, got {type(kind).__name__}")
    return EvalQuery(str(query_id), text, kind)


def _lines(path: Path) -> Iterator[tuple[int, str]]:
    """The non-blank lines of a UTF-8 text file with their 1-based numbers."""
    if not path.is_file():
        raise DatasetError(f"{path}: no such file")
    with path.open("rb") as file:
        for number, raw in enumerate(file, start=1):
            # Decoded line by line (not by the text layer's chunks) so that an error names the right line.
            try:
                line = raw.decode("utf-8-sig" if number == 1 else "utf-8").rstrip("\r\n")
            except UnicodeDecodeError as error:
                raise DatasetError(f"{path}:{number}: not UTF-8 text ({error.reason})") from None
            if line.strip():
                yield number, line


def _check_header(path: Path, columns: list[str]) -> None:
    missing = [name for name in QRELS_COLUMNS if name not in columns]
    if missing:
        raise DatasetError(f"{path}:1: header is missing column(s) {', '.join(missing)}")
    if tuple(columns) != QRELS_COLUMNS:
        raise DatasetError(
            f"{path}:1: header must be {' '.join(QRELS_COLUMNS)} (tab-separated) in that order, "
            f"got {' '.join(columns)}"
        )


def _is_int(value: str) -> bool:
    try:
        int(value)
    except ValueError:
        return False
    return True
