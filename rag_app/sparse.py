"""Text analysis shared by keyword search and sparse vectors: the BM25 analyzer (lowercase
word tokens, English stopwords, Snowball stemming) and a BM25-style sparse encoder for stores
that search sparse-dense vectors natively (Pinecone on a dotproduct index).

It sits beside the embedding model, below retrieval and the store adapters, so both the BM25
index (`rag_app.retrieval.bm25`) and a store adapter can use the same analysis.
"""

from __future__ import annotations

import re
import threading
import zlib
from collections import Counter
from collections.abc import Iterable
from typing import Any

from rag_app.errors import ConfigError

TOKEN_RE = re.compile(r"(?u)\b\w\w+\b")  # bm25s' default token pattern


class Analyzer:
    """Lowercase word tokens (2+ characters), English stopwords removed, Snowball-stemmed."""

    def __init__(self, *, language: str = "english", stopwords: bool = True, stem: bool = True):
        self.language = language
        self.use_stopwords = stopwords
        self.use_stemmer = stem
        self._stopwords: frozenset[str] = frozenset()
        if stopwords:
            if language != "english":
                raise ConfigError(f"BM25 stopwords are available for english only, not {language}")
            from bm25s.stopwords import STOPWORDS_EN

            self._stopwords = frozenset(STOPWORDS_EN)
        self._stemmer: Any = None
        if stem:
            try:
                import Stemmer
            except ImportError as exc:  # pragma: no cover - a core dependency
                raise ConfigError("BM25 stemming needs the 'PyStemmer' package") from exc
            self._stemmer = Stemmer.Stemmer(language)
        self._lock = threading.Lock()  # PyStemmer objects are not thread-safe

    @property
    def config(self) -> dict[str, Any]:
        return {
            "language": self.language,
            "stopwords": self.use_stopwords,
            "stem": self.use_stemmer,
            "pattern": TOKEN_RE.pattern,
        }

    def __call__(self, text: str) -> list[str]:
        tokens = [t for t in TOKEN_RE.findall(text.lower()) if t not in self._stopwords]
        if self._stemmer is not None and tokens:
            with self._lock:
                tokens = list(self._stemmer.stemWords(tokens))
        return tokens

    def many(self, texts: Iterable[str]) -> list[list[str]]:
        return [self(t) for t in texts]


class SparseEncoder:
    """BM25-style sparse vectors without corpus statistics: a document term weighs
    ``tf * (k1 + 1) / (tf + k1 * (1 - b + b * len / avg_len))`` (BM25's saturation and length
    normalisation, idf left out: it needs the whole corpus), a query term weighs 1 (repeats
    add up). The dot product of the two is then a BM25 score without idf. Token ids are
    CRC32 hashes of the analysed terms (stable across processes and hosts)."""

    def __init__(
        self,
        analyzer: Analyzer | None = None,
        *,
        k1: float = 0.9,
        b: float = 0.4,
        avg_len: float = 120.0,
    ) -> None:
        self.analyzer = analyzer or Analyzer()
        self.k1, self.b, self.avg_len = k1, b, avg_len

    @staticmethod
    def _index(term: str) -> int:
        return zlib.crc32(term.encode("utf-8"))

    def _pairs(self, weights: dict[int, float]) -> dict[str, list[Any]]:
        indices = sorted(weights)
        return {"indices": indices, "values": [float(weights[i]) for i in indices]}

    def encode_document(self, text: str) -> dict[str, list[Any]]:
        terms = self.analyzer(text)
        counts = Counter(self._index(t) for t in terms)
        norm = 1 - self.b + self.b * len(terms) / self.avg_len
        return self._pairs(
            {i: tf * (self.k1 + 1) / (tf + self.k1 * norm) for i, tf in counts.items()}
        )

    def encode_query(self, text: str) -> dict[str, list[Any]]:
        counts = Counter(self._index(t) for t in self.analyzer(text))
        return self._pairs({i: float(n) for i, n in counts.items()})

    def encode_documents(self, texts: Iterable[str]) -> list[dict[str, list[Any]]]:
        return [self.encode_document(t) for t in texts]
