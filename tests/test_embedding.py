"""The embedder under concurrent small calls (a server's queries): combined into shared forward passes, each
caller still gets exactly its own vectors, and a failure reaches every caller it concerned."""

from __future__ import annotations

import concurrent.futures
import threading

import numpy as np
import pytest

from rag_server.embedding import SentenceTransformerEmbedder

QUESTIONS = [f"question {i}: how are refunds for plan {i % 5} approved?" for i in range(48)]


class Counting(SentenceTransformerEmbedder):
    """The packaged model, counting its forward passes (and failing them on demand)."""

    def __init__(self) -> None:
        super().__init__("packaged:all-MiniLM-L6-v2")
        self.passes = 0
        self.fail = False
        self.gate = threading.Event()

    def _encode(self, texts: list[str]) -> np.ndarray:
        self.gate.wait(5)  # let callers pile up behind the first pass
        self.passes += 1
        if self.fail:
            raise RuntimeError("the model failed")
        return super()._encode(texts)


@pytest.fixture(scope="module")
def counting() -> Counting:
    return Counting()


def test_concurrent_calls_share_passes_and_get_their_own_vectors(counting: Counting) -> None:
    counting.gate.set()
    alone = {question: counting.embed([question])[0] for question in QUESTIONS}
    counting.passes, counting.gate = 0, threading.Event()
    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        futures = [pool.submit(counting.embed, [question]) for question in QUESTIONS]
        counting.gate.set()
        together = [future.result()[0] for future in futures]
    assert counting.passes < len(QUESTIONS)
    for question, vector in zip(QUESTIONS, together, strict=True):
        assert np.allclose(vector, alone[question], atol=1e-5)


def test_a_failed_pass_fails_every_call_in_it(counting: Counting) -> None:
    counting.fail, counting.gate = True, threading.Event()
    try:
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            futures = [pool.submit(counting.embed, [question]) for question in QUESTIONS[:8]]
            counting.gate.set()
            errors = [future.exception(timeout=30) for future in futures]
    finally:
        counting.fail = False
    assert all(isinstance(error, RuntimeError) for error in errors)
    assert counting.embed(["still works"]).shape == (1, counting.dimension)


class Remembering(Counting):
    def __init__(self, cache_size: int) -> None:
        SentenceTransformerEmbedder.__init__(self, "packaged:all-MiniLM-L6-v2", cache_size=cache_size)
        self.passes = 0
        self.fail = False
        self.gate = threading.Event()
        self.gate.set()


def test_a_repeated_query_skips_the_model_and_gets_the_same_vector() -> None:
    remembering = Remembering(cache_size=2)
    first = remembering.embed(["how are refunds approved?"])
    again = remembering.embed(["how are refunds approved?"])
    assert remembering.passes == 1 and np.array_equal(first, again)
    remembering.embed(["when are invoices sent?"])
    remembering.embed(["who approves a refund?"])  # the third query: the first is forgotten
    remembering.embed(["how are refunds approved?"])
    assert remembering.passes == 4
    # A call is served from memory only when every text is known; ingestion-size calls never are.
    remembering.embed(["how are refunds approved?", "a text never seen"])
    assert remembering.passes == 5
    batch = [f"passage {i}" for i in range(8)]
    remembering.embed(batch)
    remembering.embed(batch)
    assert remembering.passes == 7


def test_no_query_cache_when_its_size_is_zero() -> None:
    remembering = Remembering(cache_size=0)
    remembering.embed(["how are refunds approved?"])
    remembering.embed(["how are refunds approved?"])
    assert remembering.passes == 2
