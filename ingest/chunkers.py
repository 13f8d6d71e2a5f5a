"""Split a document into chunks of at most `size` model tokens: fixed windows, text structure, or sections.

Every chunker tokenizes a document once and counts the tokens of any whitespace-bounded stretch of it from
those spans: the model's WordPiece tokenizer splits on whitespace first, so a stretch has the same tokens
alone as inside the document. The finished chunk text is still re-counted (once per chunk) and split
further in the rare case it comes out over `size` (a cut inside a word can tokenize differently).
"""

from __future__ import annotations

import re
from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Protocol

from ingest.records import ChunkDraft, SourceDocument, Tokenizer

CHUNKER_NAMES: tuple[str, ...] = ("fixed", "recursive", "markdown")

# Separators, from the coarsest to the finest: the recursive strategy only cuts finer when it must.
_PARAGRAPH_BREAK = re.compile(r"\n[ \t]*\n\s*")
# A sentence ends at . ! ? or … (maybe followed by a closing quote or bracket) before whitespace. A line
# break ends one only before a line that starts a block (list item, quote, table row, fence, heading):
# elsewhere it is hard wrapping inside a sentence.
_SENTENCE_BREAK = re.compile(
    r"(?<=[.!?…])\s+|(?<=[.!?…][\"'”’)\]])\s+|[ \t]*\n(?=[ \t]*(?:[-*+>|#]|\d+[.)]|```|~~~))\s*"
)
_WHITESPACE = re.compile(r"\s+")

# ATX headings and code fences, as CommonMark writes them (up to three spaces of indentation).
_HEADING = re.compile(r"^ {0,3}(#{1,6})[ \t]+(.+?)(?:[ \t]+#+)?[ \t]*$")
_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")

# Joins a heading path into the line that starts each Markdown chunk.
HEADING_SEPARATOR = " > "

_Range = tuple[int, int]


class Chunker(Protocol):
    """What ingestion needs of a chunker: a document in, its chunks out."""

    def chunk(self, doc: SourceDocument) -> list[ChunkDraft]:
        """The chunks of `doc`, in document order, each at most the chunker's size in tokens."""
        ...


@dataclass(frozen=True)
class _Piece:
    """A stretch of the document that is never cut inside a chunk: a sentence, a word or a token run."""

    start: int
    end: int
    tokens: int


@dataclass(frozen=True)
class _Section:
    """The body of a Markdown section (heading line excluded) and the headings above it."""

    heading_path: tuple[str, ...]
    start: int
    end: int


class _DocumentTokens:
    """The token spans of one document, to count the tokens of any of its stretches without re-encoding."""

    def __init__(self, tokenizer: Tokenizer, text: str) -> None:
        self.spans = tokenizer.token_spans(text)
        self._starts = [start for start, _ in self.spans]
        self._ends = [end for _, end in self.spans]

    def token_range(self, start: int, end: int) -> _Range:
        """Indexes [lo, hi) of the tokens lying wholly within characters [start, end)."""
        lo = bisect_left(self._starts, start)
        return lo, max(lo, bisect_right(self._ends, end))

    def count(self, start: int, end: int) -> int:
        lo, hi = self.token_range(start, end)
        return hi - lo

    def halves(self, text: str, start: int, end: int) -> list[_Range]:
        """Cut a stretch in two at its middle token boundary, or its middle character if one token."""
        lo, hi = self.token_range(start, end)
        if hi - lo >= 2:
            mid = (lo + hi) // 2
            return [(start, self.spans[mid - 1][1]), (self.spans[mid][0], end)]
        if end - start <= 1:
            # One character is at most one token for a WordPiece tokenizer, so this is never reached
            # with size >= 1; dropping beats yielding a chunk over the size.
            return []
        mid = (start + end) // 2
        halves = [_trim(text, start, mid), _trim(text, mid, end)]
        return [half for half in halves if half[0] < half[1]]


class _Chunker:
    """Configuration shared by the chunkers: the tokenizer that counts, the size and the overlap."""

    def __init__(self, tokenizer: Tokenizer, size: int, overlap: int = 0) -> None:
        _validate(size, overlap)
        self.tokenizer = tokenizer
        self.size = size
        self.overlap = overlap

    def _finish(
        self, text: str, tokens: _DocumentTokens, ranges: Iterable[_Range], prefix: str = ""
    ) -> Iterator[tuple[str, int]]:
        """Chunk texts and their exact token counts for character ranges, splitting any that run over."""
        stack = list(reversed(list(ranges)))
        while stack:
            start, end = stack.pop()
            chunk_text = f"{prefix}\n{text[start:end]}" if prefix else text[start:end]
            count = len(self.tokenizer.token_spans(chunk_text))
            if count > self.size:
                stack.extend(reversed(tokens.halves(text, start, end)))
            elif count > 0:
                yield chunk_text, count


def _validate(size: int, overlap: int) -> None:
    # bool is an int to Python, but `size=True` is a bug in the caller, not a size of one.
    if isinstance(size, bool) or not isinstance(size, int) or size <= 0:
        raise ValueError(f"chunk size must be a positive number of tokens, got {size!r}")
    if isinstance(overlap, bool) or not isinstance(overlap, int) or not 0 <= overlap < size:
        raise ValueError(f"chunk overlap must be at least 0 and less than the size ({size}), got {overlap!r}")


def _drafts(chunks: Iterable[tuple[str, int]]) -> list[ChunkDraft]:
    return [ChunkDraft(ordinal, text, count) for ordinal, (text, count) in enumerate(chunks)]


class FixedTokenChunker(_Chunker):
    """Windows of `size` tokens, each starting `size - overlap` tokens after the previous one."""

    def chunk(self, doc: SourceDocument) -> list[ChunkDraft]:
        """The chunks of `doc`, in document order, each at most `size` tokens."""
        return _drafts(self._windows(doc.text, _DocumentTokens(self.tokenizer, doc.text)))

    def _windows(self, text: str, tokens: _DocumentTokens) -> Iterator[tuple[str, int]]:
        """Window texts cut at token boundaries of the original text, with their exact token counts."""
        spans = tokens.spans
        lo = 0
        while lo < len(spans):
            hi = min(lo + self.size, len(spans))
            window = text[spans[lo][0] : spans[hi - 1][1]]
            count = len(self.tokenizer.token_spans(window))
            # A window that starts or ends inside a word can re-tokenize into more tokens ('##ters' alone
            # is 'ter', '##s'): give back tokens at its end, which the next window then starts from.
            while count > self.size and hi - lo > 1:
                hi = max(lo + 1, hi - (count - self.size))
                window = text[spans[lo][0] : spans[hi - 1][1]]
                count = len(self.tokenizer.token_spans(window))
            if count <= self.size:
                yield window, count
            else:
                # One word piece alone, over a size of one: cut it by characters.
                yield from self._finish(text, tokens, [spans[lo]])
            if hi == len(spans):
                return
            # Normally lo + size - overlap; never backwards, so that every window makes progress.
            lo = max(lo + 1, hi - self.overlap)


class RecursiveChunker(_Chunker):
    """Whole paragraphs and sentences packed greedily up to `size` tokens; words, then tokens, if must."""

    def chunk(self, doc: SourceDocument) -> list[ChunkDraft]:
        """The chunks of `doc`, in document order, each at most `size` tokens."""
        tokens = _DocumentTokens(self.tokenizer, doc.text)
        ranges = _pack(_pieces(doc.text, tokens, 0, len(doc.text), self.size), self.size, self.overlap)
        return _drafts(self._finish(doc.text, tokens, ranges))


class MarkdownChunker(_Chunker):
    """Chunks that never cross an ATX heading, each starting with its heading path (`A > B`)."""

    def chunk(self, doc: SourceDocument) -> list[ChunkDraft]:
        """The chunks of `doc`, in document order, each at most `size` tokens."""
        tokens = _DocumentTokens(self.tokenizer, doc.text)
        drafts: list[ChunkDraft] = []
        for section in _sections(doc.text):
            for text, count, path in self._section_chunks(doc.text, tokens, section):
                drafts.append(ChunkDraft(len(drafts), text, count, path))
        return drafts

    def _section_chunks(
        self, text: str, tokens: _DocumentTokens, section: _Section
    ) -> Iterator[tuple[str, int, tuple[str, ...]]]:
        prefix = self._prefix(section.heading_path)
        # The heading line is part of every chunk, so the body gets what is left of the size.
        budget = self.size - len(self.tokenizer.token_spans(prefix))
        overlap = min(self.overlap, budget - 1)
        pieces = _pieces(text, tokens, section.start, section.end, budget)
        for chunk_text, count in self._finish(text, tokens, _pack(pieces, budget, overlap), prefix):
            yield chunk_text, count, section.heading_path

    def _prefix(self, heading_path: tuple[str, ...]) -> str:
        """The heading line for a section: the whole path, else its last heading, while it fits."""
        # A heading line over half the size would leave too little room for the text it heads; the
        # chunk's heading_path still records the whole path.
        candidates = (HEADING_SEPARATOR.join(heading_path), heading_path[-1] if heading_path else "")
        for candidate in candidates:
            if len(self.tokenizer.token_spans(candidate)) <= self.size // 2:
                return candidate
        return ""


def make_chunker(name: str, tokenizer: Tokenizer, size: int, overlap: int = 0) -> Chunker:
    """The chunker called `name` (one of CHUNKER_NAMES), configured with `size` and `overlap` tokens."""
    chunkers: dict[str, type[_Chunker]] = {
        "fixed": FixedTokenChunker,
        "recursive": RecursiveChunker,
        "markdown": MarkdownChunker,
    }
    if name not in chunkers:
        raise ValueError(f"unknown chunker {name!r}; valid names: {', '.join(CHUNKER_NAMES)}")
    return chunkers[name](tokenizer, size, overlap)


# --- The recursive strategy -----------------------------------------------------------------------------


def _pieces(text: str, tokens: _DocumentTokens, start: int, end: int, size: int) -> list[_Piece]:
    """Sentences of text[start:end] (never crossing a paragraph), cut finer where one is over `size`."""
    pieces: list[_Piece] = []
    for paragraph in _split(text, start, end, _PARAGRAPH_BREAK):
        for sentence_start, sentence_end in _split(text, *paragraph, _SENTENCE_BREAK):
            pieces.extend(_fitting_pieces(text, tokens, sentence_start, sentence_end, size))
    return pieces


def _fitting_pieces(text: str, tokens: _DocumentTokens, start: int, end: int, size: int) -> Iterator[_Piece]:
    """The sentence itself if it fits in `size`, else its words, else runs of `size` tokens."""
    count = tokens.count(start, end)
    if count <= size:
        if count > 0:
            yield _Piece(start, end, count)
        return
    for word_start, word_end in _split(text, start, end, _WHITESPACE):
        lo, hi = tokens.token_range(word_start, word_end)
        for run_lo in range(lo, hi, size):
            run_hi = min(run_lo + size, hi)
            yield _Piece(tokens.spans[run_lo][0], tokens.spans[run_hi - 1][1], run_hi - run_lo)


def _split(text: str, start: int, end: int, separator: re.Pattern[str]) -> Iterator[_Range]:
    """The non-blank stretches of text[start:end] between matches of `separator`, trimmed."""
    position = start
    for match in separator.finditer(text, start, end):
        stretch = _trim(text, position, match.start())
        if stretch[0] < stretch[1]:
            yield stretch
        position = match.end()
    stretch = _trim(text, position, end)
    if stretch[0] < stretch[1]:
        yield stretch


def _trim(text: str, start: int, end: int) -> _Range:
    """The range without whitespace at either end (empty when all whitespace)."""
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return start, end


def _pack(pieces: list[_Piece], size: int, overlap: int) -> list[_Range]:
    """Greedily pack consecutive pieces up to `size` tokens; each chunk repeats whole trailing pieces of
    the previous one, up to `overlap` tokens."""
    ranges: list[_Range] = []
    current: list[_Piece] = []
    total = 0
    for piece in pieces:
        if current and total + piece.tokens > size:
            ranges.append((current[0].start, current[-1].end))
            current = _tail(current, overlap)
            total = sum(p.tokens for p in current)
            # The carried-over pieces give way to the new piece, never the other way round.
            while current and total + piece.tokens > size:
                total -= current[0].tokens
                current = current[1:]
        current.append(piece)
        total += piece.tokens
    if current:
        ranges.append((current[0].start, current[-1].end))
    return ranges


def _tail(pieces: list[_Piece], overlap: int) -> list[_Piece]:
    """The longest run of whole pieces ending `pieces` that is at most `overlap` tokens."""
    total = 0
    first = len(pieces)
    while first > 0 and total + pieces[first - 1].tokens <= overlap:
        first -= 1
        total += pieces[first].tokens
    return pieces[first:]


# --- Markdown sections ----------------------------------------------------------------------------------


def _sections(text: str) -> Iterator[_Section]:
    """Sections of a Markdown text split at ATX headings; text before the first heading has no path."""
    path: list[tuple[int, str]] = []
    body_start = 0
    for line_start, line_end, level, title in _headings(text):
        yield _Section(tuple(title for _, title in path), body_start, line_start)
        # A heading closes every open section at its own level or deeper.
        path = [(open_level, open_title) for open_level, open_title in path if open_level < level]
        path.append((level, title))
        body_start = line_end
    yield _Section(tuple(title for _, title in path), body_start, len(text))


def _headings(text: str) -> Iterator[tuple[int, int, int, str]]:
    """(line start, line end, level, title) of each ATX heading outside fenced code blocks."""
    fence: str | None = None
    position = 0
    for line in text.split("\n"):
        line_start, position = position, position + len(line) + 1
        fence_match = _FENCE.match(line)
        if fence is not None:
            if _closes_fence(line, fence):
                fence = None
            continue
        if fence_match:
            fence = fence_match.group(1)
        elif heading := _HEADING.match(line):
            yield line_start, line_start + len(line), len(heading.group(1)), heading.group(2).strip()


def _closes_fence(line: str, fence: str) -> bool:
    """A fence closes on a line of its own character, at least as long, and nothing else."""
    match = _FENCE.match(line)
    return (
        match is not None
        and match.group(1)[0] == fence[0]
        and len(match.group(1)) >= len(fence)
        and (not line.strip().strip(fence[0]))
    )
