"""Chunkers and the tokenizer they count with: golden outputs, size and overlap properties, configuration."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from dataclasses import asdict
from itertools import pairwise
from pathlib import Path

import pytest

from ingest.chunkers import (
    CHUNKER_NAMES,
    FixedTokenChunker,
    MarkdownChunker,
    RecursiveChunker,
    make_chunker,
)
from ingest.records import ChunkDraft, SourceDocument
from ingest.tokenizer import HFTokenizer

GOLDEN = Path(__file__).parent / "golden"
# name -> (size, overlap) of the golden outputs: small enough that the sample makes a dozen chunks or more.
GOLDEN_CONFIGS = {"fixed": (64, 16), "recursive": (96, 24), "markdown": (96, 24)}

# Long words, no sentence ends, punctuation runs and accents: the cases that force the finer splits.
AWKWARD_TEXT = (
    "Intro sentence here. "
    + "-".join(["hyphenated"] * 120)
    + " then a run-on clause without any full stop "
    + " ".join(f"word{n}" for n in range(150))
    + "\n\nCafé naïve façade — ünïcödé!!! (parenthetical) [1] https://example.com/a/very/long/path?q=1&r=2\n"
)


@pytest.fixture(scope="session")
def tokenizer() -> HFTokenizer:
    return HFTokenizer.from_model_dir()


@pytest.fixture(scope="session")
def sample() -> SourceDocument:
    text = (GOLDEN / "sample.md").read_text(encoding="utf-8")
    return SourceDocument(external_id="sample.md", text=text, source=str(GOLDEN / "sample.md"))


def _doc(text: str) -> SourceDocument:
    return SourceDocument(external_id="doc", text=text, source="test")


def _count(tokenizer: HFTokenizer, text: str) -> int:
    return len(tokenizer.token_spans(text))


def _positions(doc: SourceDocument, chunks: list[ChunkDraft]) -> Iterator[tuple[int, int]]:
    """Where each chunk's text lies in the document: chunks may overlap, but each one starts further into
    the document than the one before, and ends no earlier."""
    previous_start, previous_end = -1, 0
    for chunk in chunks:
        start = doc.text.find(chunk.text, previous_start + 1)
        while start >= 0 and start + len(chunk.text) < previous_end:
            start = doc.text.find(chunk.text, start + 1)
        assert start >= 0, (
            f"chunk {chunk.ordinal} is not a slice of the document after chunk {chunk.ordinal - 1}"
        )
        previous_start, previous_end = start, start + len(chunk.text)
        yield previous_start, previous_end


def _token_indexes(spans: list[tuple[int, int]], start: int, end: int) -> set[int]:
    return {index for index, (lo, hi) in enumerate(spans) if start <= lo and hi <= end}


def _check_invariants(tokenizer: HFTokenizer, chunks: list[ChunkDraft], size: int) -> None:
    assert [chunk.ordinal for chunk in chunks] == list(range(len(chunks)))
    for chunk in chunks:
        assert chunk.text.strip(), "empty chunk"
        assert chunk.token_count == _count(tokenizer, chunk.text)
        assert 0 < chunk.token_count <= size


# --- Tokenizer ------------------------------------------------------------------------------------------


def test_tokenizer_spans_are_real_tokens_without_truncation_or_padding(tokenizer: HFTokenizer) -> None:
    text = "Refunds take 3-5 days. " * 100

    spans = tokenizer.token_spans(text)

    # Well past the model's 128-token limit: nothing is truncated, no [CLS]/[SEP] is added.
    assert len(spans) == 800
    assert [text[start:end] for start, end in spans[:8]] == [
        "Ref",
        "unds",
        "take",
        "3",
        "-",
        "5",
        "days",
        ".",
    ]
    assert tokenizer.count("Hi there") == 2
    assert tokenizer.count("") == 0


def test_tokenizer_offsets_are_characters_not_bytes(tokenizer: HFTokenizer) -> None:
    text = "café déjà vu"

    assert [text[start:end] for start, end in tokenizer.token_spans(text)][-1] == "vu"


def test_tokenizer_needs_a_tokenizer_json(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"tokenizer\.json"):
        HFTokenizer.from_model_dir(tmp_path)


def test_token_counts_add_up_over_whitespace_joins(tokenizer: HFTokenizer, sample: SourceDocument) -> None:
    # The chunkers count a stretch of a document from the document's own token spans; that is exact
    # because WordPiece splits on whitespace before anything else. Check it on real text.
    paragraphs = [part for part in re.split(r"\n\s*\n", sample.text) if part.strip()]
    sentences = [part for part in re.split(r"(?<=[.!?])\s+|\n", sample.text) if part.strip()]
    words = sample.text.split()
    total = _count(tokenizer, sample.text)

    for pieces in (paragraphs, sentences, words):
        assert sum(_count(tokenizer, piece) for piece in pieces) == total
        assert _count(tokenizer, " ".join(pieces)) == total
        assert _count(tokenizer, "\n\n".join(pieces)) == total


# --- Configuration --------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", CHUNKER_NAMES)
@pytest.mark.parametrize(
    ("size", "overlap", "message"),
    [
        (0, 0, "size must be a positive"),
        (-5, 0, "size must be a positive"),
        (10, -1, "overlap must be at least 0 and less than the size"),
        (10, 10, "overlap must be at least 0 and less than the size"),
        (10, 11, "overlap must be at least 0 and less than the size"),
        (True, 0, "size must be a positive"),
    ],
)
def test_bad_configuration_is_rejected(
    tokenizer: HFTokenizer, name: str, size: int, overlap: int, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        make_chunker(name, tokenizer, size, overlap)


def test_make_chunker_names(tokenizer: HFTokenizer) -> None:
    assert CHUNKER_NAMES == ("fixed", "recursive", "markdown")
    assert isinstance(make_chunker("fixed", tokenizer, 10, 2), FixedTokenChunker)
    assert isinstance(make_chunker("recursive", tokenizer, 10, 2), RecursiveChunker)
    assert isinstance(make_chunker("markdown", tokenizer, 10, 2), MarkdownChunker)
    with pytest.raises(ValueError, match="valid names: fixed, recursive, markdown"):
        make_chunker("semantic", tokenizer, 10, 2)


# --- Golden outputs -------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", CHUNKER_NAMES)
def test_golden_output(tokenizer: HFTokenizer, sample: SourceDocument, name: str) -> None:
    size, overlap = GOLDEN_CONFIGS[name]
    chunks = make_chunker(name, tokenizer, size, overlap).chunk(sample)
    actual = {
        "chunker": name,
        "size": size,
        "overlap": overlap,
        "chunks": [{**asdict(chunk), "heading_path": list(chunk.heading_path)} for chunk in chunks],
    }
    golden = GOLDEN / f"{name}.json"
    if os.environ.get("UPDATE_GOLDEN") == "1":
        golden.write_text(json.dumps(actual, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")

    assert actual == json.loads(golden.read_text(encoding="utf-8")), "rerun with UPDATE_GOLDEN=1 if intended"


# --- Properties shared by every chunker -----------------------------------------------------------------


@pytest.mark.parametrize("name", CHUNKER_NAMES)
@pytest.mark.parametrize(("size", "overlap"), [(1, 0), (7, 3), (32, 0), (50, 49), (128, 32), (4096, 0)])
def test_every_chunk_fits_and_counts_exactly(
    tokenizer: HFTokenizer, sample: SourceDocument, name: str, size: int, overlap: int
) -> None:
    chunker = make_chunker(name, tokenizer, size, overlap)
    for doc in (sample, _doc(AWKWARD_TEXT)):
        _check_invariants(tokenizer, chunker.chunk(doc), size)


@pytest.mark.parametrize("name", CHUNKER_NAMES)
@pytest.mark.parametrize("text", ["", "   ", "\n\n\t\n"])
def test_blank_documents_have_no_chunks(tokenizer: HFTokenizer, name: str, text: str) -> None:
    assert make_chunker(name, tokenizer, 16, 4).chunk(_doc(text)) == []


@pytest.mark.parametrize("name", CHUNKER_NAMES)
def test_short_document_is_one_chunk(tokenizer: HFTokenizer, name: str) -> None:
    chunks = make_chunker(name, tokenizer, 64, 8).chunk(_doc("\n  Returns are free.\n"))

    assert chunks == [ChunkDraft(ordinal=0, text="Returns are free.", token_count=4)]


@pytest.mark.parametrize("name", ["recursive", "markdown"])
def test_structured_chunkers_lose_no_text(tokenizer: HFTokenizer, sample: SourceDocument, name: str) -> None:
    # Without overlap, the chunks hold exactly the document's characters, in order (whitespace aside).
    chunks = make_chunker(name, tokenizer, 40, 0).chunk(_doc(AWKWARD_TEXT))

    assert "".join("".join(chunk.text for chunk in chunks).split()) == "".join(AWKWARD_TEXT.split())


# --- Fixed windows --------------------------------------------------------------------------------------


@pytest.mark.parametrize(("size", "overlap"), [(16, 0), (16, 5), (64, 16), (10, 9)])
def test_fixed_windows_cover_every_token_and_overlap_exactly(
    tokenizer: HFTokenizer, sample: SourceDocument, size: int, overlap: int
) -> None:
    chunks = FixedTokenChunker(tokenizer, size, overlap).chunk(sample)
    spans = tokenizer.token_spans(sample.text)
    windows = [_token_indexes(spans, start, end) for start, end in _positions(sample, chunks)]

    assert set().union(*windows) == set(range(len(spans)))
    assert all(len(window) <= size for window in windows)
    # A window that gave back tokens at its end (see below) still moves on by at least one token.
    assert all(len(left & right) == min(overlap, len(left) - 1) for left, right in pairwise(windows))
    # Windows are full, except where a cut inside a word re-tokenized longer and gave back a token.
    assert sum(len(window) == size for window in windows[:-1]) >= 0.8 * (len(windows) - 1)


def test_fixed_windows_cut_inside_words_when_a_word_spans_the_boundary(tokenizer: HFTokenizer) -> None:
    doc = _doc("unbelievably " * 10)  # 'un', '##bel', '##ie', '##va', '##bly' per word (5 tokens)

    chunks = FixedTokenChunker(tokenizer, 3, 0).chunk(doc)

    _check_invariants(tokenizer, chunks, 3)
    assert "".join(chunk.text.replace(" ", "") for chunk in chunks) == "unbelievably" * 10


# --- Recursive ------------------------------------------------------------------------------------------


def test_recursive_keeps_paragraphs_whole_when_they_fit(tokenizer: HFTokenizer) -> None:
    first = "Returns are free in the UK. Labels are prepaid."
    second = "Refunds reach cards in five days. PayPal is instant."
    size = max(_count(tokenizer, first), _count(tokenizer, second)) + 2

    chunks = RecursiveChunker(tokenizer, size, 0).chunk(_doc(f"{first}\n\n{second}\n"))

    assert [chunk.text for chunk in chunks] == [first, second]


def test_recursive_packs_small_paragraphs_together(tokenizer: HFTokenizer) -> None:
    text = "One.\n\nTwo.\n\nThree."

    assert [chunk.text for chunk in RecursiveChunker(tokenizer, 100, 0).chunk(_doc(text))] == [text]


def test_recursive_cuts_between_sentences_and_overlaps_whole_sentences(
    tokenizer: HFTokenizer, sample: SourceDocument
) -> None:
    size, overlap = 96, 24
    chunks = RecursiveChunker(tokenizer, size, overlap).chunk(sample)
    positions = list(_positions(sample, chunks))
    overlaps = 0

    for (_, previous_end), (start, _) in pairwise(positions):
        # Every chunk starts at a word boundary: a sentence start, never mid-word.
        assert sample.text[start - 1].isspace()
        if start < previous_end:
            overlaps += 1
            assert _count(tokenizer, sample.text[start:previous_end]) <= overlap
            # What is carried over begins a sentence or a line.
            assert re.search(r"(?:[.!?:;]|\n)\s*$", sample.text[:start])
    assert overlaps >= 3


def test_recursive_without_overlap_never_repeats_text(tokenizer: HFTokenizer, sample: SourceDocument) -> None:
    chunks = RecursiveChunker(tokenizer, 48, 0).chunk(sample)
    positions = list(_positions(sample, chunks))

    assert all(start >= previous_end for (_, previous_end), (start, _) in pairwise(positions))


def test_recursive_splits_an_overlong_word_by_tokens(tokenizer: HFTokenizer) -> None:
    word = "-".join(["alpha"] * 40)  # 79 tokens and no whitespace

    chunks = RecursiveChunker(tokenizer, 10, 0).chunk(_doc(word))

    _check_invariants(tokenizer, chunks, 10)
    assert "".join(chunk.text for chunk in chunks) == word


# --- Markdown -------------------------------------------------------------------------------------------


def test_markdown_chunks_carry_heading_paths(tokenizer: HFTokenizer, sample: SourceDocument) -> None:
    chunks = MarkdownChunker(tokenizer, 96, 24).chunk(sample)
    paths = list(dict.fromkeys(chunk.heading_path for chunk in chunks))

    assert paths == [
        ("Refund policy",),
        ("Refund policy", "Eligibility", "Time limits"),
        ("Refund policy", "Eligibility", "Condition of the items"),
        ("Refund policy", "How to request a refund"),
        ("Refund policy", "Refund methods", "Original payment method"),
        ("Refund policy", "Refund methods", "Store credit"),
        ("Refund policy", "Shipping costs"),
        ("Refund policy", "Damaged or faulty items"),
        ("Refund policy", "Exceptions and disputes"),
        ("Refund policy", "Changes to this policy"),
    ]
    for chunk in chunks:
        heading_line, _, body = chunk.text.partition("\n")
        assert heading_line == " > ".join(chunk.heading_path)
        assert body.strip()
        assert not body.lstrip().startswith("#"), "a heading line leaked into a chunk body"


def test_markdown_ignores_hashes_in_fenced_code(tokenizer: HFTokenizer) -> None:
    text = "# Guide\n\n~~~~\n# not a heading\n~~~\n## still code\n~~~~\n\n## Setup\n\nRun it.\n"

    chunks = MarkdownChunker(tokenizer, 200, 0).chunk(_doc(text))

    assert [chunk.heading_path for chunk in chunks] == [("Guide",), ("Guide", "Setup")]
    assert "# not a heading" in chunks[0].text
    assert "## still code" in chunks[0].text


def test_markdown_heading_levels_close_deeper_sections(tokenizer: HFTokenizer) -> None:
    text = "Preamble.\n# A\na\n### A3\nx\n## B2 ##\nb\n# C\nc\n"

    chunks = MarkdownChunker(tokenizer, 200, 0).chunk(_doc(text))

    assert [(chunk.heading_path, chunk.text) for chunk in chunks] == [
        ((), "Preamble."),
        (("A",), "A\na"),
        (("A", "A3"), "A > A3\nx"),
        (("A", "B2"), "A > B2\nb"),
        (("C",), "C\nc"),
    ]


def test_markdown_without_headings_matches_recursive(tokenizer: HFTokenizer) -> None:
    text = AWKWARD_TEXT + "\n#not-a-heading and ####### seven hashes\n"

    assert MarkdownChunker(tokenizer, 30, 10).chunk(_doc(text)) == RecursiveChunker(tokenizer, 30, 10).chunk(
        _doc(text)
    )


def test_markdown_shortens_a_heading_line_that_would_crowd_out_the_text(tokenizer: HFTokenizer) -> None:
    text = "# A very long top level heading about refunds\n## Eligibility\n\nBody text of the section here.\n"

    chunks = MarkdownChunker(tokenizer, 12, 2).chunk(_doc(text))

    _check_invariants(tokenizer, chunks, 12)
    assert chunks[0].heading_path == ("A very long top level heading about refunds", "Eligibility")
    assert chunks[0].text.startswith("Eligibility\n")
