"""Turn the paths a user names into source documents, one at a time, reporting the files that fail."""

from __future__ import annotations

import codecs
import contextlib
import io
import json
import logging
import os
import re
import stat
import threading
import unicodedata
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import charset_normalizer
import pypdf
from selectolax.lexbor import LexborHTMLParser, LexborNode

from ingest.records import LoadFailure, SourceDocument

# File suffix (lower case) -> the format name recorded in a document's metadata.
FORMATS: dict[str, str] = {
    ".txt": "txt",
    ".md": "md",
    ".html": "html",
    ".htm": "html",
    ".pdf": "pdf",
    ".jsonl": "jsonl",
}

# A directory holding this file is a BEIR data set: only the corpus is documents (not queries or qrels).
BEIR_CORPUS = "corpus.jsonl"

BINARY = "binary (no text encoding fits)"
NOT_UTF8 = "not UTF-8 (JSON lines must be)"
EMPTY = "empty"
NO_TEXT = "no extractable text"
UNSUPPORTED = "unsupported file type"
# Reasons that say a file holds no content (now): its document, if an earlier run stored one, is out of date.
NO_CONTENT = frozenset({EMPTY, NO_TEXT})

# How much of a JSON-lines file is sniffed for NUL bytes before it is read line by line.
_SNIFF_BYTES = 8192

Loaded = SourceDocument | LoadFailure

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class _FileRef:
    """A file to load, with the name it is known by relative to the argument it was found under."""

    path: Path
    relpath: str

    @property
    def format(self) -> str:
        return FORMATS[self.path.suffix.lower()]

    @property
    def source(self) -> str:
        # abspath, not resolve: the user's spelling of the path survives symlinks, but `..` is normalised.
        return os.path.abspath(self.path)


class _LoadError(Exception):
    """A file that cannot become a document; the message is the LoadFailure reason."""


def iter_documents(paths: Sequence[Path]) -> Iterator[Loaded]:
    """Yield a document (or a failure) for every loadable file under `paths`, in a stable order."""
    for path in paths:
        yield from _iter_argument(Path(path))


def _iter_argument(path: Path) -> Iterator[Loaded]:
    """Load one path the user named: a directory is walked, a file is loaded whatever its name."""
    try:
        mode = path.stat().st_mode
    except (FileNotFoundError, NotADirectoryError):
        yield LoadFailure(path, "not found")
        return
    except OSError as exc:
        # A parent folder the user may not search, a symlink loop, ...
        yield LoadFailure(path, f"unreadable: {exc.strerror or exc}")
        return
    if stat.S_ISDIR(mode):
        yield from _iter_directory(path, path)
    elif not stat.S_ISREG(mode):
        yield LoadFailure(path, "not a regular file")
    elif path.suffix.lower() not in FORMATS:
        # Named explicitly, so the user expects it to load: say why it did not.
        yield LoadFailure(path, UNSUPPORTED)
    else:
        yield from _load_file(_FileRef(path, path.name))


def _iter_directory(root: Path, directory: Path) -> Iterator[Loaded]:
    """Walk `directory` depth first in name order, skipping hidden entries and unsupported files."""
    try:
        entries = sorted(os.scandir(directory), key=lambda entry: entry.name)
    except OSError as exc:
        yield LoadFailure(directory, f"unreadable: {exc.strerror or exc}")
        return
    corpus = next((entry for entry in entries if entry.name == BEIR_CORPUS and entry.is_file()), None)
    if corpus is not None:
        yield from _load_jsonl(_FileRef(Path(corpus.path), _relpath(Path(corpus.path), root)))
        return
    for entry in entries:
        if entry.name.startswith("."):
            continue
        path = Path(entry.path)
        # Symlinked directories are not followed: they can form cycles and duplicate documents.
        if entry.is_dir(follow_symlinks=False):
            yield from _iter_directory(root, path)
        elif entry.is_file() and path.suffix.lower() in FORMATS:
            yield from _load_file(_FileRef(path, _relpath(path, root)))


def _relpath(path: Path, root: Path) -> str:
    return path.relative_to(root).as_posix()


def _load_file(ref: _FileRef) -> Iterator[Loaded]:
    """Load one supported file: a JSON-lines file yields many documents, any other file one."""
    if ref.format == "jsonl":
        yield from _load_jsonl(ref)
        return
    try:
        yield _load_single(ref)
    except _LoadError as exc:
        yield LoadFailure(ref.path, str(exc), ref.relpath)


def _load_single(ref: _FileRef) -> SourceDocument:
    """Read a file that is one document; raises _LoadError with the reason it cannot be."""
    data = _read_bytes(ref.path)
    if not data.strip():
        raise _LoadError(EMPTY)
    metadata: dict[str, Any] = {"path": ref.relpath, "format": ref.format}
    if ref.format == "pdf":
        title, text = _pdf_text(data, ref.path)
    else:
        raw, encoding = _decode(data)
        if not raw.strip():
            # Only a byte-order mark or Unicode spaces.
            raise _LoadError(EMPTY)
        if encoding != "utf-8":
            # Said where a user can see it: a wrong guess garbles accented letters, and this explains why.
            metadata["encoding"] = encoding
        if ref.format == "html":
            title, text = _html_text(raw)
        elif ref.format == "md":
            title, text = _markdown_title(raw), raw
        else:
            title, text = _first_line_title(raw) or ref.path.name, raw
    if not text.strip():
        raise _LoadError(NO_TEXT)
    return SourceDocument(
        external_id=ref.relpath, text=text, source=ref.source, title=title, metadata=metadata
    )


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise _LoadError(f"unreadable: {exc.strerror or exc}") from exc


# Byte-order marks of the UTF-16 and UTF-32 encodings, UTF-32 first: its little-endian mark starts with UTF-16's.
_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)
# Short texts often decode equally well in several legacy code pages, and the detector's pick among them is
# arbitrary (cp1006, Urdu, for "café au lait" in Latin-1): ties go to Windows-1252, the most common of them.
_PREFERRED_LEGACY = "cp1252"
# Control characters (other than tab, newline, form feed...) that text in a detected encoding may hold.
_MAX_CONTROL_SHARE = 0.01


def _decode(data: bytes) -> tuple[str, str]:
    """The text, any byte-order mark removed and every newline made `\\n`, and the encoding it was in.

    UTF-8, or UTF-16/32 with a byte-order mark; any other encoding is detected (charset-normalizer).
    """
    for bom, encoding in _BOMS:
        if data.startswith(bom):
            try:
                return _normalize_newlines(data.decode(encoding)), encoding
            except UnicodeDecodeError as exc:
                raise _LoadError(BINARY) from exc
    # A NUL byte is valid UTF-8 but never appears in real text files: it marks a binary file.
    if b"\x00" in data:
        raise _LoadError(BINARY)
    try:
        return _normalize_newlines(data.decode("utf-8-sig")), "utf-8"
    except UnicodeDecodeError:
        pass
    text, encoding = _detect(data)
    controls = sum(1 for char in text if unicodedata.category(char) == "Cc" and char not in "\t\n\r\f\v")
    if controls > _MAX_CONTROL_SHARE * len(text):
        raise _LoadError(BINARY)
    return _normalize_newlines(text), encoding


def _detect(data: bytes) -> tuple[str, str]:
    """The text of `data` in the encoding charset-normalizer finds likeliest; _LoadError if none fits."""
    matches = charset_normalizer.from_bytes(data)
    best = matches.best()
    if best is None:
        raise _LoadError(BINARY)
    for match in matches:
        if (
            _PREFERRED_LEGACY in match.could_be_from_charset
            and match.chaos <= best.chaos
            and match.coherence >= best.coherence
        ):
            try:
                return data.decode(_PREFERRED_LEGACY), _PREFERRED_LEGACY
            except UnicodeDecodeError:
                break
    return str(best), best.encoding


def _normalize_newlines(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\r", "\n")


# --- Markdown -------------------------------------------------------------------------------------------

_H1 = re.compile(r"^ {0,3}#[ \t]+(.*?)(?:[ \t]+#+)?[ \t]*$")
_FENCE = re.compile(r"^ {0,3}(```|~~~)")


# A plain-text title is the first line that says something, cut to this many characters.
TITLE_CHARS = 120
_WORD = re.compile(r"\w")


def _first_line_title(text: str) -> str | None:
    """The first line with a letter or digit in it, trimmed and cut at a word boundary to TITLE_CHARS."""
    line = next((line.strip() for line in text.split("\n") if _WORD.search(line)), None)
    if line is None or len(line) <= TITLE_CHARS:
        return line
    cut = line[: TITLE_CHARS - 1]
    # At the last space, unless that throws away most of it (a long run without spaces, a URL).
    if (space := cut.rfind(" ")) > TITLE_CHARS // 2:
        cut = cut[:space]
    return cut.rstrip() + "…"


def _markdown_title(text: str) -> str | None:
    """The first level-one ATX heading of a Markdown file, outside code blocks."""
    in_fence = False
    for line in text.split("\n"):
        if _FENCE.match(line):
            in_fence = not in_fence
        elif not in_fence and (match := _H1.match(line)) and match.group(1).strip():
            return match.group(1).strip()
    return None


# --- HTML -----------------------------------------------------------------------------------------------

# Elements whose content is never visible text. <head> goes too, once its <title> has been read.
_INVISIBLE = ["script", "style", "noscript", "template", "head"]
# Elements that end a paragraph: a blank line around them, which chunkers split on.
_PARAGRAPH_TAGS = frozenset(
    {
        *("p", "pre", "blockquote", "table", "ul", "ol", "dl", "figure", "hr", "form", "fieldset", "details"),
        *("h1", "h2", "h3", "h4", "h5", "h6"),
        *("section", "article", "aside", "header", "footer", "main", "nav", "address"),
    }
)
# Elements that start a new line without starting a paragraph.
_LINE_TAGS = frozenset({"div", "li", "dt", "dd", "tr", "caption", "figcaption", "summary", "br"})
_SPACES = re.compile(r"\s+")


def _html_text(raw: str) -> tuple[str | None, str]:
    """The <title> and the visible text of an HTML page, block elements on lines of their own."""
    tree = LexborHTMLParser(raw)
    title_node = tree.css_first("title")
    # Whitespace in a title collapses to single spaces, as a browser's tab shows it.
    title = _SPACES.sub(" ", title_node.text()).strip() if title_node is not None else ""
    tree.strip_tags(_INVISIBLE)
    root = tree.body if tree.body is not None else tree.root
    text = _BlockText().render(root) if root is not None else ""
    return (title or None), text


class _BlockText:
    """Renders an element tree as text, with HTML whitespace collapsing and newlines for blocks."""

    def __init__(self) -> None:
        self._parts: list[str] = []
        # Newlines owed before the next text: block boundaries are only written once text follows them,
        # so that empty blocks and nested blocks add no runs of blank lines.
        self._pending = 0

    def render(self, root: LexborNode) -> str:
        # An explicit stack, not recursion: real pages nest deeper than Python's recursion limit.
        stack: list[tuple[LexborNode, bool]] = [(root, False)]
        while stack:
            node, leaving = stack.pop()
            if leaving:
                self._break(node.tag)
            elif node.is_text_node:
                self._text(node)
            elif node.is_element_node:
                self._break(node.tag)
                stack.append((node, True))
                children = list(node.iter(include_text=True))
                stack.extend((child, False) for child in reversed(children))
        return "".join(self._parts).strip()

    def _text(self, node: LexborNode) -> None:
        content = node.text(deep=False)
        preformatted = _inside_pre(node)
        text = _normalize_newlines(content) if preformatted else _SPACES.sub(" ", content)
        if not preformatted and self._at_line_start():
            text = text.lstrip(" ")
        if not text:
            return
        if self._pending:
            self._parts[-1] = self._parts[-1].rstrip(" ")
            self._parts.append("\n" * self._pending)
            self._pending = 0
        self._parts.append(text)

    def _at_line_start(self) -> bool:
        return self._pending > 0 or not self._parts or self._parts[-1].endswith((" ", "\n"))

    def _break(self, tag: str | None) -> None:
        if not self._parts:
            return
        if tag in _PARAGRAPH_TAGS:
            self._pending = 2
        elif tag in _LINE_TAGS:
            self._pending = max(self._pending, 1)
        elif tag in ("td", "th") and not self._at_line_start():
            # Table cells would run together otherwise.
            self._parts.append(" ")


def _inside_pre(node: LexborNode) -> bool:
    parent = node.parent
    while parent is not None:
        if parent.tag in ("pre", "textarea"):
            return True
        parent = parent.parent
    return False


# --- PDF ------------------------------------------------------------------------------------------------


# pypdf reports every small defect it repairs, by `warnings` and by log records of loggers under this one.
_PYPDF_LOGGER = "pypdf"
_pypdf_lock = threading.Lock()


class _Collector(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@contextlib.contextmanager
def _pypdf_messages(path: Path) -> Iterator[None]:
    """Keep pypdf's warnings and log records off the terminal; log them at debug level against `path`.

    A PDF that loads is all that matters to ingestion, and a bar of progress is no place for
    "incorrect startxref pointer". Run with RAG_LOG_LEVEL=DEBUG to see them.
    """
    logger = logging.getLogger(_PYPDF_LOGGER)
    collector = _Collector()
    # The logger's settings are global: one PDF at a time changes them.
    with _pypdf_lock, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        propagate = logger.propagate
        logger.addHandler(collector)
        logger.propagate = False
        try:
            yield
        finally:
            logger.removeHandler(collector)
            logger.propagate = propagate
    for message in [*collector.messages, *(str(warning.message) for warning in caught)]:
        log.debug("%s: pypdf: %s", path, message)


def _pdf_text(data: bytes, path: Path) -> tuple[str | None, str]:
    """The metadata title and the text of a PDF, pages separated by blank lines."""
    with _pypdf_messages(path):
        try:
            reader = pypdf.PdfReader(io.BytesIO(data))
            if reader.is_encrypted and not reader.decrypt(""):
                raise _LoadError("encrypted PDF")
            pages = [_normalize_newlines(page.extract_text() or "").strip() for page in reader.pages]
            title = _pdf_title(reader)
        except _LoadError:
            raise
        except Exception as exc:
            # pypdf raises many exception types (its own, ValueError, KeyError, ...) on malformed files.
            raise _LoadError(f"malformed PDF: {exc}") from exc
    return title, "\n\n".join(page for page in pages if page)


def _pdf_title(reader: pypdf.PdfReader) -> str | None:
    metadata = reader.metadata
    title = metadata.title if metadata is not None else None
    return title.strip() if isinstance(title, str) and title.strip() else None


# --- JSON lines -----------------------------------------------------------------------------------------

# Keys of a JSON-lines record that become document fields rather than metadata.
_RECORD_FIELDS = frozenset({"id", "_id", "title", "text", "metadata"})


def _load_jsonl(ref: _FileRef) -> Iterator[Loaded]:
    """One document per line, read line by line so that a corpus of any size streams through."""
    try:
        with ref.path.open("rb") as handle:
            if b"\x00" in handle.read(_SNIFF_BYTES):
                yield LoadFailure(ref.path, BINARY)
                return
            handle.seek(0)
            yield from _iter_jsonl_lines(ref, handle)
    except OSError as exc:
        yield LoadFailure(ref.path, f"unreadable: {exc.strerror or exc}")


def _iter_jsonl_lines(ref: _FileRef, handle: io.BufferedReader) -> Iterator[Loaded]:
    seen_record = False
    for number, line in enumerate(handle, start=1):
        if not line.strip():
            continue
        seen_record = True
        try:
            yield _parse_record(ref, number, line)
        except _LoadError as exc:
            yield LoadFailure(ref.path, f"line {number}: {exc}")
    if not seen_record:
        yield LoadFailure(ref.path, EMPTY)


def _parse_record(ref: _FileRef, number: int, line: bytes) -> SourceDocument:
    """The document on one JSON line; raises _LoadError when the line is not a usable record."""
    try:
        record = json.loads(line.decode("utf-8-sig") if number == 1 else line.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise _LoadError(NOT_UTF8) from exc
    except json.JSONDecodeError as exc:
        raise _LoadError(f"malformed JSON ({exc.msg})") from exc
    if not isinstance(record, dict):
        raise _LoadError("not a JSON object")
    text = record.get("text", "")
    title = record.get("title")
    title = (title.strip() or None) if isinstance(title, str) else None
    # A record with an empty text but a title (some BEIR corpora have them) is still a document: its title.
    if not isinstance(text, str) or not (text.strip() or title):
        raise _LoadError("no 'text'")
    return SourceDocument(
        external_id=_record_id(record) or f"{ref.relpath}#{number}",
        text=_normalize_newlines(text),
        source=ref.source,
        title=title,
        metadata=_record_metadata(record),
    )


def _record_id(record: dict[str, Any]) -> str | None:
    for key in ("id", "_id"):
        value = record.get(key)
        if value is None:
            continue
        # bool is an int to Python, but `true` is no one's document id.
        if isinstance(value, bool) or not isinstance(value, str | int) or value == "":
            raise _LoadError(f"'{key}' must be a non-empty string or an integer")
        return str(value)
    return None


def _record_metadata(record: dict[str, Any]) -> dict[str, Any]:
    """A record's `metadata` object merged with its other keys (BEIR keeps extras at the top level)."""
    nested = record.get("metadata")
    if nested is not None and not isinstance(nested, dict):
        raise _LoadError("'metadata' must be a JSON object")
    extras = {key: value for key, value in record.items() if key not in _RECORD_FIELDS}
    return {**(nested or {}), **extras}
