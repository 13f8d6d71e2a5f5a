"""Citation markers: cleaned, held back while streaming, mapped to evidence and checked for support."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from rag_server.answer.citations import MARKER, MarkerFilter, cite, clean_markers, sentence_spans
from rag_server.answer.evidence import Evidence


def _evidence(number: int, text: str) -> Evidence:
    return Evidence(
        number, "chunk", f"doc{number}.md#0", f"doc{number}.md", f"Doc {number}", text, 1.0, "hybrid"
    )


def test_out_of_range_numbers_are_dropped_and_counted() -> None:
    text, dropped = clean_markers("A [1]. B [4]. C [2, 9, 2].", {1, 2})
    assert text == "A [1]. B . C [2]."
    assert dropped == 3  # 4, 9 and the repeated 2


def test_malformed_markers_are_left_as_text() -> None:
    assert clean_markers("see [abc] and [1", {1}) == ("see [abc] and [1", 0)


@given(
    parts=st.lists(
        st.sampled_from(
            ["Paris", " is", " the", " capital", " [", "1", "]", "[", "2", ", ", "7", "]", ".", " [3]", "x"]
        ),
        max_size=30,
    ),
    cuts=st.lists(st.integers(min_value=0, max_value=200), max_size=8),
)
def test_streaming_filter_equals_cleaning_the_whole_text(parts: list[str], cuts: list[int]) -> None:
    """Whatever the deltas, the streamed text is the cleaned full text, and no emitted piece ends inside a
    marker that could still be completed."""
    text = "".join(parts)
    points = sorted({min(c, len(text)) for c in cuts})
    deltas = [text[a:b] for a, b in zip([0, *points], [*points, len(text)], strict=True)]
    filtered = MarkerFilter({1, 2})
    emitted = [filtered.feed(delta) for delta in deltas]
    emitted.append(filtered.flush())
    assert "".join(emitted) == clean_markers(text, {1, 2})[0]
    assert filtered.dropped == clean_markers(text, {1, 2})[1]


def test_a_partial_marker_is_held_back_until_complete() -> None:
    filtered = MarkerFilter({1})
    assert filtered.feed("Paris [") == "Paris "
    assert filtered.feed("1") == ""
    assert filtered.feed("] is big") == "[1] is big"


def test_markers_after_a_full_stop_belong_to_the_sentence_before() -> None:
    text = "Paris is the capital. [1] It is large [2]."
    assert [text[a:b] for a, b in sentence_spans(text)] == ["Paris is the capital. [1]", "It is large [2]."]


def test_each_citation_is_checked_against_its_sentence() -> None:
    evidence = [_evidence(1, "Paris is the capital of France."), _evidence(2, "Bananas are yellow fruit.")]
    answer = "Paris is the capital of France [1]. Paris is the capital [2]."

    def overlap(claim: str, item: Evidence) -> float:
        words = set(claim.lower().split())
        return len(words & set(item.text.lower().rstrip(".").split())) / len(words)

    citations = cite(answer, evidence, overlap, threshold=0.5)
    assert [(c.number, c.supported) for c in citations] == [(1, True), (2, False)]
    first, second = citations
    assert answer[first.span[0] : first.span[1]] == "Paris is the capital of France [1]."
    assert first.document_id == "doc1.md" and first.snippet == "Paris is the capital of France."
    assert not MARKER.search(second.snippet)
