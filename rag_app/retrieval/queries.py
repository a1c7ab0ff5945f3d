"""Query embeddings, computed once per text and in batches where a caller knows them ahead.

Embedding one query costs the model a forward pass (about 10 ms for MiniLM on 2 cores); a
batch of 64 costs little more than a few single ones. `QueryVectors` keeps the vectors of
recent query texts (an LRU of float64 arrays: exactly the values the model gave), so that a
retry round or a repeated question does not embed the same text again, and `prime` embeds
many texts in batches (an evaluation run knows all its queries before it starts).

A cached vector is a function of the text and the model only: it carries no access
decision, and every search with it still runs behind the permission guard.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterable, Sequence

import numpy as np

from rag_app.embeddings import EmbeddingModel

CACHE_SIZE = 2048
PRIME_BATCH = 64


class QueryVectors:
    """``embed_query`` of `embeddings` behind a bounded LRU cache; see the module doc."""

    def __init__(
        self, embeddings: EmbeddingModel, *, size: int = CACHE_SIZE, batch: int = PRIME_BATCH
    ) -> None:
        self.embeddings = embeddings
        self.size = max(0, size)
        self.batch = max(1, batch)
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()
        self.computed = 0  # texts embedded (for tests and benchmarks)

    def __call__(self, text: str) -> list[float]:
        with self._lock:
            hit = self._cache.get(text)
            if hit is not None:
                self._cache.move_to_end(text)
                return hit.tolist()
        vector = self.embeddings.embed_query(text)
        self.computed += 1
        self._put([text], [vector])
        return vector

    def prime(self, texts: Iterable[str]) -> None:
        """Embed the texts not cached yet, in batches (the model's own batch call for
        queries when it has one, else one query at a time). At most the cache size."""
        with self._lock:
            missing = [t for t in dict.fromkeys(texts) if t not in self._cache]
        missing = missing[: self.size]
        batch_call = getattr(self.embeddings, "embed_queries", None)
        for start in range(0, len(missing), self.batch):
            chunk = missing[start : start + self.batch]
            if callable(batch_call):
                vectors = batch_call(chunk)
            else:
                vectors = [self.embeddings.embed_query(t) for t in chunk]
            self.computed += len(chunk)
            self._put(chunk, vectors)

    def _put(self, texts: Sequence[str], vectors: Sequence[Sequence[float]]) -> None:
        if not self.size:
            return
        with self._lock:
            for text, vector in zip(texts, vectors, strict=True):
                self._cache[text] = np.asarray(vector, dtype=np.float64)
                self._cache.move_to_end(text)
            while len(self._cache) > self.size:
                self._cache.popitem(last=False)

    def __len__(self) -> int:
        return len(self._cache)


__all__ = ["QueryVectors"]
