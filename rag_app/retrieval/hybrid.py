"""Hybrid retrieval: dense and BM25 candidates fused (`FusedRetriever`), or a store's own
hybrid search (`NativeHybridRetriever`), each behind the one permission guard.

Both halves run with the same effective filter (access AND caller) as a pre-filter; the guard
re-checks the fused hits once (confirming the keyword half's hits against the store). Nothing
here can return a chunk the principal may not read.

Fusion (``RAG_FUSION``):

* ``rrf`` - reciprocal rank fusion: ``alpha / (rrf_k + rank_dense) + (1 - alpha) /
  (rrf_k + rank_bm25)`` (alpha = 0.5 is classic RRF, scaled by 1/2).
* ``weighted`` - min-max normalise each half's scores over its candidates to [0, 1], then
  ``alpha * dense + (1 - alpha) * bm25``; a candidate missing from one half gets 0 there.

Fusion runs on *documents* (metadata ``source``; a chunk's document score is the best of its
chunks, i.e. max aggregation) and chunks are then ordered by their document's fused score,
then by their own fused score. Document-level fusion keeps a document that one half found
through chunk 1 and the other through chunk 3 from being split into two weak candidates; on
SciFact it beats chunk-level fusion (see `rag_app.evaluation`). ``level="chunk"`` fuses chunks
directly.

Each half contributes ``max(k, candidates)`` chunks (``candidates`` defaults to 100), so the
fused ranking is the same whether a caller asks for 5 chunks or 100.
"""

from __future__ import annotations

import heapq
import logging
import math
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

import numpy as np

from rag_app.access.filters import Cmp, Node, and_
from rag_app.access.permissions import TENANT_FIELD
from rag_app.embeddings import EmbeddingModel
from rag_app.errors import ConfigError, StoreError
from rag_app.retrieval.bm25 import KeywordIndex, KeywordRetriever, top_k
from rag_app.retrieval.queries import QueryVectors
from rag_app.retrieval.search import (
    DenseRetriever,
    KnownFields,
    PermissionGuard,
    RawHits,
    RawRetriever,
)
from rag_app.stores.base import NativeHybrid, NearestIds, StoreHit, VectorStorePort

log = logging.getLogger(__name__)

FusionMethod = Literal["rrf", "weighted"]
Key = TypeVar("Key", bound=Hashable)  # what is fused: chunk ids, documents, or index rows
FusionLevel = Literal["document", "chunk"]


# -- fusion math (pure functions) -----------------------------------------------------------------
def rrf(
    rankings: Sequence[Sequence[Key]], *, k: int = 60, weights: Sequence[float] | None = None
) -> dict[Key, float]:
    """Reciprocal rank fusion: sum over rankings of ``weight / (k + rank)`` (rank from 1)."""
    if k < 1:
        raise ValueError("rrf k must be >= 1")
    weights = list(weights) if weights is not None else [1.0] * len(rankings)
    if len(weights) != len(rankings):
        raise ValueError("one weight per ranking")
    fused: dict[Key, float] = {}
    for ranking, weight in zip(rankings, weights, strict=True):
        for rank, key in enumerate(ranking, start=1):
            fused[key] = fused.get(key, 0.0) + weight / (k + rank)
    return fused


def min_max(scores: Mapping[Key, float]) -> dict[Key, float]:
    """Scale scores to [0, 1] over the given candidates (all equal -> all 1.0)."""
    if not scores:
        return {}
    lo, hi = min(scores.values()), max(scores.values())
    if hi <= lo:
        return {key: 1.0 for key in scores}
    return {key: (value - lo) / (hi - lo) for key, value in scores.items()}


def weighted(
    dense: Mapping[Key, float], sparse: Mapping[Key, float], *, alpha: float
) -> dict[Key, float]:
    """``alpha * minmax(dense) + (1 - alpha) * minmax(sparse)``; missing counts as 0."""
    if not 0.0 <= alpha <= 1.0:
        raise ValueError("alpha must be within [0, 1]")
    nd, ns = min_max(dense), min_max(sparse)
    return {
        key: alpha * nd.get(key, 0.0) + (1.0 - alpha) * ns.get(key, 0.0)
        for key in dict.fromkeys([*nd, *ns])
    }


def fuse_scores(
    dense: Mapping[Key, float],
    sparse: Mapping[Key, float],
    *,
    method: FusionMethod,
    alpha: float,
    rrf_k: int,
) -> dict[Key, float]:
    """Fuse two {key: score} maps (each ranked by score, highest first)."""
    if method == "rrf":
        rank_d = sorted(dense, key=lambda key: -dense[key])
        rank_s = sorted(sparse, key=lambda key: -sparse[key])
        return rrf([rank_d, rank_s], k=rrf_k, weights=[alpha, 1.0 - alpha])
    if method == "weighted":
        return weighted(dense, sparse, alpha=alpha)
    raise ConfigError(f"unknown fusion {method!r}; use rrf or weighted")


def document_key(hit: StoreHit) -> str:
    """The document a chunk belongs to: its ``source`` (unique per document; JSONL records
    are ``<file>#<id>``), else ``doc_id``, else the chunk itself."""
    return _document_of(hit.id, hit.metadata)


def _document_of(chunk_id: str, meta: Any) -> str:
    if type(meta) is not dict and not isinstance(meta, Mapping):  # (dict: the fast path)
        meta = {}
    for field in ("source", "doc_id"):
        value = meta.get(field)
        if isinstance(value, str) and value:
            return value
    return chunk_id


def best_per_document(hits: Sequence[StoreHit]) -> dict[str, float]:
    """Max aggregation: each document's score is the best score of its chunks."""
    out: dict[str, float] = {}
    for hit in hits:
        key = document_key(hit)
        if key not in out or hit.score > out[key]:
            out[key] = hit.score
    return out


# -- the retrievers and the searcher -------------------------------------------------------------
def _unit(vector: Sequence[float]) -> np.ndarray:
    q = np.asarray(vector, dtype=np.float32)
    return q / (float(np.linalg.norm(q)) or 1.0)


def raw_of(part: RawRetriever | PermissionGuard) -> RawRetriever:
    """A hybrid half: a raw retriever, or the raw retriever inside a guarded searcher (hybrid
    fuses raw candidates and is guarded once)."""
    return part.raw if isinstance(part, PermissionGuard) else part


@dataclass(frozen=True)
class _Slice:
    """The stored vectors (normalised) of the chunks one narrow filter admits, in one index
    version (`built`): `ids[n]` is the copy's row `rows[n]`."""

    built: Any
    ids: list[str]
    rows: np.ndarray
    matrix: np.ndarray


@dataclass(frozen=True)
class _Vectors:
    """The stored vectors (normalised) of every chunk of one index version (`built`): row n
    is the chunk `built.ids[n]`."""

    built: Any
    matrix: np.ndarray


def _normalised(raw: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(raw, axis=1, keepdims=True)
    return (raw / np.where(norms > 0, norms, 1.0)).astype(np.float32)


class IdsFirstDense:
    """The dense half of a fused search, ids first (for a store with `NearestIds`).

    An embedded Chroma query spends most of its time reading the hits' metadata, and a fused
    search throws the dense half's texts and metadata away anyway: the guard confirms the
    fused top k against the store's current records. So this half never reads texts or
    metadata from the store; it judges candidates against the keyword index's copy of the
    metadata with the grammar's evaluator (the same masks the BM25 half uses), in one of
    three ways:

    * **exact, over a copy of every stored vector** (`_exact`): when the copy fits in
      `copy_bytes`, a search is a matrix-vector product over all chunks with the filter's
      mask applied, exact where Chroma's HNSW graph is approximate. The copy is read from
      the store once and follows the keyword index: a new index version reuses the rows of
      the chunks the index kept as they were and reads the vectors of the chunks it read
      again (new ones, and any rewritten under their id).
    * **exact, over the vectors of the matching chunks** (`_among`): a narrow filter (under
      `MIN_SHARE` of the copy) is a product over a slice of the vectors, cut from the copy
      or read from the store once per filter and index version.
    * **the store's nearest ids** (`_nearest`, no copy): over the whole collection, as deep
      as the filter's share needs; also for a narrow filter that matches more than
      `MAX_AMONG` chunks (too many vectors to read per filter and version) while the depth
      stays within `MAX_DEPTH`.

    It falls back to the store's filtered query (`dense`) when a candidate is not in the
    copy or a copy's id is gone from the store (the copy lags the store), when too few
    candidates match, when nothing in the copy matches, or when a narrow filter matches more
    than `MAX_AMONG` chunks without a full copy and would need more than `MAX_DEPTH` ids.

    The copy never decides access: hits come back without text and are confirmed by id
    against the store (`from_store` is False), like every BM25 hit. A stale copy can only
    cost recall (a chunk whose ACL now admits the reader is skipped) until the index
    refreshes, which it does before every search when the store's change token moved."""

    name = "dense"
    from_store = False
    MIN_SHARE = 0.25  # narrower filters: the nearest among the matching ids (`_among`)
    MAX_AMONG = 20_000  # more matching ids than this (and no full copy): the nearest ids
    MAX_DEPTH = 10_000  # ... unless that needs more ids than this: the store's filter
    SLICE_BYTES = 256 * 1024 * 1024  # vectors kept for narrow filters (see `_slice`)
    # default limit of the full copy (`RAG_VECTOR_COPY_MB`): the exact product grows with the
    # collection (memory bound: ~0.4 ms at 11k chunks, ~15 ms at 200k here) while Chroma's
    # ids-only HNSW query stays at a few ms; they cross near 50k chunks of 384 dimensions
    COPY_BYTES = 64 * 1024 * 1024
    READ_BATCH = 5000  # vectors read from the store per call
    SLACK = 1.2
    EXTRA = 20

    def __init__(
        self,
        dense: DenseRetriever,
        index: KeywordIndex,
        store: NearestIds,
        *,
        copy_bytes: int | None = None,
    ) -> None:
        self.dense = dense
        self.index = index
        self.store = store
        self.copy_bytes = self.COPY_BYTES if copy_bytes is None else max(0, copy_bytes)
        self.fallbacks = 0  # searches that took the store's filtered query (for tests)
        self.narrow = 0  # searches answered among the matching ids (for tests)
        self.exact = 0  # searches answered over the full copy (for tests)
        self.vectors_read = 0  # vectors read from the store for the copy (for tests)
        self._slices: OrderedDict[str, _Slice] = OrderedDict()
        self._copy: _Vectors | None = None
        self._copy_failed: Any = None  # the index version whose copy could not be read
        self._lock = threading.Lock()
        self._copy_lock = threading.Lock()

    def retrieve(self, query: str, k: int, where: Node, tenant: str) -> RawHits:
        return self.retrieve_in(self.index.current(), query, k, where, tenant)

    def retrieve_in(self, built: Any, query: str, k: int, where: Node, tenant: str) -> RawHits:
        """As `retrieve`, against `built` (the keyword index, checked fresh by the caller)."""
        judged = self._judge(built, where, tenant)
        if judged is None:
            return self._fallback(query, k, where, tenant)
        scoped, mask, matching = judged
        vector = self.dense.vectors(query)
        copy = self.vectors(built)
        share = matching / mask.size
        if share < self.MIN_SHARE:
            return self._among(
                built, copy, mask, matching, vector, query, k, where, tenant, repr(scoped)
            )
        if copy is not None:
            best, scores = self._exact(copy, mask, matching, vector, k)
            ids, metadatas = built.ids, built.metadatas
            return RawHits(
                [
                    StoreHit(id=ids[n], text="", metadata=metadatas[n], score=score)
                    for n, score in zip(best, scores, strict=True)
                ]
            )
        return self._nearest(built, mask, share, vector, query, k, where, tenant)

    def _nearest(
        self,
        built: Any,
        mask: np.ndarray,
        share: float,
        vector: Sequence[float],
        query: str,
        k: int,
        where: Node,
        tenant: str,
    ) -> RawHits:
        """The store's nearest ids over the whole collection (Chroma's HNSW, no filter), as
        deep as the filter's share needs for k matches, judged by the copy's mask. While too
        few of them match (the readable chunks are rarer near this query than on average),
        again four times as deep, up to `MAX_DEPTH`; then the store's filter."""
        depth = self._depth(k, share)
        rows = self.index.rows(built)
        while True:
            pairs = self.store.nearest_ids(vector, depth)
            hits: list[StoreHit] = []
            for cid, score in pairs:
                row = rows.get(cid)
                if row is None:  # newer than the copy: the store's own filter decides
                    return self._fallback(query, k, where, tenant)
                if mask[row]:
                    meta = built.metadatas[row]
                    hits.append(StoreHit(id=cid, text="", metadata=meta, score=score))
                    if len(hits) == k:
                        break
            if len(hits) == k or len(pairs) < depth:  # k found, or every chunk seen
                return RawHits(hits)
            if depth >= self.MAX_DEPTH:  # too few matched this deep
                return self._fallback(query, k, where, tenant)
            depth = min(depth * 4, self.MAX_DEPTH)

    def _depth(self, k: int, share: float) -> int:
        """How many nearest ids should hold k that match a filter admitting `share` of them."""
        return max(math.ceil(k / share * self.SLACK), k + self.EXTRA)

    def exact_rows(
        self, built: Any, query: str, k: int, where: Node, tenant: str
    ) -> tuple[list[int], list[float]] | None:
        """The exact path of `retrieve_in` as rows of `built` and scores, best first, or None
        where `retrieve_in` would take another path (a narrow or empty filter, no copy)."""
        judged = self._judge(built, where, tenant)
        if judged is None:
            return None
        _, mask, matching = judged
        if matching / mask.size < self.MIN_SHARE:
            return None
        copy = self.vectors(built)
        if copy is None:
            return None
        return self._exact(copy, mask, matching, self.dense.vectors(query), k)

    def _judge(self, built: Any, where: Node, tenant: str) -> tuple[Node, np.ndarray, int] | None:
        """The effective filter scoped to `tenant`, the copy's mask for it and how many rows
        match; None without a filter or when nothing matches."""
        scoped = and_(Cmp(TENANT_FIELD, "$eq", tenant), where) if tenant else where
        if scoped is None:
            return None
        mask = self.index.matching(built, scoped)
        matching = int(mask.sum())
        return (scoped, mask, matching) if matching else None

    def _exact(
        self,
        copy: _Vectors,
        mask: np.ndarray,
        matching: int,
        vector: Sequence[float],
        k: int,
    ) -> tuple[list[int], list[float]]:
        """The k nearest matching chunks, exactly (rows, scores): one product over the copy."""
        scores = copy.matrix @ _unit(vector)
        if matching < mask.size:
            scores = np.where(mask, scores, -np.inf)
        best = top_k(np.arange(scores.size), scores, min(k, matching))
        self.exact += 1
        return best.tolist(), scores[best].tolist()

    def vectors(self, built: Any) -> _Vectors | None:
        """The copy of every chunk's vector for index version `built`, or None when it does
        not fit in `copy_bytes` or could not be read (a chunk of the index is gone from the
        store: the index is about to refresh). Built from the previous copy: only chunks it
        lacks are read from the store."""
        if self.copy_bytes <= 0:
            return None
        dimension = int(self.dense.store.info.dimension)
        if len(built.ids) * dimension * 4 > self.copy_bytes:
            return None
        with self._copy_lock:
            copy = self._copy
            if copy is not None and copy.built is built:
                return copy
            if self._copy_failed is built:
                return None
            try:
                fresh = self._follow(built, copy, dimension)
            except StoreError as exc:
                log.info("no vector copy for this index version (%s); using the store", exc)
                self._copy_failed = built
                return None
            self._copy, self._copy_failed = fresh, None
            return fresh

    def _follow(self, built: Any, old: _Vectors | None, dimension: int) -> _Vectors:
        matrix = np.empty((len(built.ids), dimension), dtype=np.float32)
        if old is not None and old.matrix.shape[1] == dimension:
            # a row is reused only where the keyword index kept the chunk as it was (the same
            # text object): a chunk it read again (new, or rewritten under its id) is re-read
            previous = {cid: n for n, cid in enumerate(old.built.ids)}
            texts, old_texts = built.texts, old.built.texts
            source = np.fromiter(
                (
                    m if m >= 0 and old_texts[m] is texts[n] else -1
                    for n, m in enumerate(previous.get(cid, -1) for cid in built.ids)
                ),
                dtype=np.int64,
                count=len(built.ids),
            )
        else:
            source = np.full(len(built.ids), -1, dtype=np.int64)
        kept = source >= 0
        if old is not None and kept.any():
            matrix[kept] = old.matrix[source[kept]]
        missing = np.flatnonzero(~kept)
        for start in range(0, missing.size, self.READ_BATCH):
            rows = missing[start : start + self.READ_BATCH]
            raw = np.asarray(self.store.vectors_of([built.ids[n] for n in rows]), np.float32)
            if raw.shape != (rows.size, dimension):
                raise StoreError(
                    f"the store returned vectors of shape {raw.shape}, expected "
                    f"({rows.size}, {dimension})"
                )
            matrix[rows] = _normalised(raw)
            self.vectors_read += int(rows.size)
        return _Vectors(built=built, matrix=matrix)

    def _among(
        self,
        built: Any,
        copy: _Vectors | None,
        mask: np.ndarray,
        matching: int,
        vector: Sequence[float],
        query: str,
        k: int,
        where: Node,
        tenant: str,
        key: str,
    ) -> RawHits:
        """A narrow filter: exact cosine search over the stored vectors of the chunks the copy
        says match. Their vectors are cut from the full copy, or read from the store, once per
        filter and index version (`_slice`, ~1.5 KB per chunk, at most `SLICE_BYTES` in all);
        a search is then a matrix-vector product. Chroma's own ``where`` costs ~70 ms at 11k
        chunks and grows with the store; a query restricted to a list of ids grows with it
        too."""
        if matching > self.MAX_AMONG and copy is None:
            # too many vectors to read per filter and version: the store's nearest ids, deep
            # enough for this share (Chroma's own filter costs seconds at 1M chunks), unless
            # that depth is out of proportion
            share = matching / mask.size
            if self._depth(k, share) <= self.MAX_DEPTH:
                return self._nearest(built, mask, share, vector, query, k, where, tenant)
            return self._fallback(query, k, where, tenant)
        try:
            cut = self._slice(built, copy, mask, key)
        except StoreError:  # a chunk of the copy is gone from the store: its filter decides
            return self._fallback(query, k, where, tenant)
        scores = cut.matrix @ _unit(vector)
        best = top_k(np.arange(scores.size), scores, k)
        self.narrow += 1
        return RawHits(
            [
                StoreHit(
                    id=cut.ids[n],
                    text="",
                    metadata=built.metadatas[cut.rows[n]],
                    score=float(scores[n]),
                )
                for n in best
            ]
        )

    def _slice(self, built: Any, copy: _Vectors | None, mask: np.ndarray, key: str) -> _Slice:
        """The matching chunks' vectors for filter `key` in index version `built` (cached,
        least recently used first out; a new index version never reuses an old slice)."""
        with self._lock:
            cut = self._slices.get(key)
            if cut is not None and cut.built is built:
                self._slices.move_to_end(key)
                return cut
        rows = np.flatnonzero(mask)
        ids = [built.ids[n] for n in rows]
        if copy is not None:
            matrix = copy.matrix[rows]
        else:
            matrix = _normalised(np.asarray(self.store.vectors_of(ids), dtype=np.float32))
        cut = _Slice(built=built, ids=ids, rows=rows, matrix=matrix)
        with self._lock:
            # slices of an older index version go: they would keep that whole index alive
            for old in [k for k, c in self._slices.items() if c.built is not built]:
                del self._slices[old]
            self._slices[key] = cut
            self._slices.move_to_end(key)
            while (
                sum(c.matrix.nbytes for c in self._slices.values()) > self.SLICE_BYTES
                and len(self._slices) > 1
            ):
                self._slices.popitem(last=False)
        return cut

    def _fallback(self, query: str, k: int, where: Node, tenant: str) -> RawHits:
        self.fallbacks += 1
        return self.dense.retrieve(query, k, where, tenant)


class FusedRetriever:
    """Dense + keyword candidates, fused (see the module docstring). Each half contributes
    ``max(k, candidates)`` candidates; the fused list is cut to k."""

    name = "hybrid"

    def __init__(
        self,
        dense: RawRetriever,
        keyword: RawRetriever,
        *,
        fusion: FusionMethod = "weighted",
        alpha: float = 0.5,
        rrf_k: int = 60,
        candidates: int = 100,
        level: FusionLevel = "document",
    ) -> None:
        if fusion not in ("rrf", "weighted"):
            raise ConfigError(f"unknown fusion {fusion!r}; use rrf or weighted")
        if not 0.0 <= alpha <= 1.0:
            raise ConfigError(f"hybrid alpha must be within [0, 1], got {alpha}")
        if level not in ("document", "chunk"):
            raise ConfigError(f"unknown fusion level {level!r}; use document or chunk")
        self.dense = dense
        self.keyword = keyword
        self.fusion: FusionMethod = fusion
        self.alpha = alpha
        self.rrf_k = rrf_k
        self.candidates = max(1, min(candidates, 1000))
        self.level: FusionLevel = level

    @property
    def from_store(self) -> bool:
        return bool(self.dense.from_store and self.keyword.from_store)

    @property
    def config(self) -> dict[str, Any]:
        return {
            "fusion": self.fusion,
            "alpha": self.alpha,
            "rrf_k": self.rrf_k,
            "candidates": self.candidates,
            "level": self.level,
        }

    def retrieve(self, query: str, k: int, where: Node, tenant: str) -> RawHits:
        depth = max(k, self.candidates)
        if (
            isinstance(self.dense, IdsFirstDense)
            and isinstance(self.keyword, KeywordRetriever)
            and self.keyword.index is self.dense.index
        ):  # one freshness check of the shared keyword index for both halves
            built = self.dense.index.current()
            rows = self.dense.exact_rows(built, query, depth, where, tenant)
            if rows is not None:  # both halves are rows of `built`: fuse rows
                sparse_rows = self.keyword.index.search_rows(built, query, depth, where)
                ranked, details = self._fuse_rows(built, rows, sparse_rows, k)
                return RawHits(ranked, details)
            dense = self.dense.retrieve_in(built, query, depth, where, tenant).hits
            sparse = self.keyword.index.search(query, depth, where, built=built)
        else:
            dense = self.dense.retrieve(query, depth, where, tenant).hits
            sparse = self.keyword.retrieve(query, depth, where, tenant).hits
        ranked, details = self._fuse(dense, sparse, k)
        return RawHits(ranked, details)

    def _fuse(
        self, dense: Sequence[StoreHit], sparse: Sequence[StoreHit], k: int
    ) -> tuple[list[StoreHit], dict[str, dict[str, float]]]:
        """The k best candidates, fused, and each one's scores (only the k are built)."""
        by_id: dict[str, StoreHit] = {}
        for hit in [*dense, *sparse]:
            by_id.setdefault(hit.id, hit)
        d_chunk = {h.id: h.score for h in dense}
        s_chunk = {h.id: h.score for h in sparse}
        order, primary, details = self._select(
            d_chunk, s_chunk, k, lambda cid: document_key(by_id[cid]), lambda cid: cid
        )
        ranked = [
            StoreHit(id=cid, text=by_id[cid].text, metadata=by_id[cid].metadata, score=primary[cid])
            for cid in order
        ]
        return ranked, {cid: details[n] for n, cid in enumerate(order)}

    def _fuse_rows(
        self,
        built: Any,
        dense: tuple[list[int], list[float]],
        sparse: tuple[list[int], list[float]],
        k: int,
    ) -> tuple[list[StoreHit], dict[str, dict[str, float]]]:
        """`_fuse` over rows of the keyword index `built` (each half: rows and scores, best
        first): the same arithmetic on the same scores, in the same order, so the same
        ranking and scores, with hit objects built for the k chosen only."""
        ids, metadatas = built.ids, built.metadatas
        order, primary, details = self._select(
            dict(zip(*dense, strict=True)),
            dict(zip(*sparse, strict=True)),
            k,
            lambda row: _document_of(ids[row], metadatas[row]),
            lambda row: ids[row],
        )
        ranked = [
            StoreHit(id=ids[row], text="", metadata=metadatas[row], score=primary[row])
            for row in order
        ]
        return ranked, {ids[row]: details[n] for n, row in enumerate(order)}

    def _select(
        self,
        dense: Mapping[Key, float],
        sparse: Mapping[Key, float],
        k: int,
        document: Callable[[Key], str],
        name: Callable[[Key], str],
    ) -> tuple[list[Key], Mapping[Key, float], list[dict[str, float]]]:
        """The k best of the candidates of both halves (each {key: score}, best first), as if
        every candidate were sorted by (fused score, fused chunk score, `name`); their fused
        scores (document-level or chunk-level) and each chosen one's scores (in order)."""
        candidates = list(dict.fromkeys([*dense, *sparse]))
        chunk_fused = fuse_scores(
            dense, sparse, method=self.fusion, alpha=self.alpha, rrf_k=self.rrf_k
        )
        primary: Mapping[Key, float]
        if self.level == "chunk":
            primary = chunk_fused
            order = heapq.nsmallest(
                k, candidates, key=lambda key: (-chunk_fused.get(key, 0.0), name(key))
            )
        else:
            doc_of = {key: document(key) for key in candidates}
            doc_fused = fuse_scores(
                _best_per(dense, doc_of),
                _best_per(sparse, doc_of),
                method=self.fusion,
                alpha=self.alpha,
                rrf_k=self.rrf_k,
            )
            primary = {key: doc_fused.get(doc, 0.0) for key, doc in doc_of.items()}
            order = heapq.nsmallest(
                k,
                candidates,
                key=lambda key: (-primary[key], -chunk_fused.get(key, 0.0), name(key)),
            )
        details: list[dict[str, float]] = []
        for key in order:
            info = {"fused": primary[key], "chunk_fused": chunk_fused.get(key, 0.0)}
            if key in dense:
                info["dense"] = dense[key]
            if key in sparse:
                info["bm25"] = sparse[key]
            details.append(info)
        return order, primary, details


def _best_per(half: Mapping[Key, float], doc_of: Mapping[Key, str]) -> dict[str, float]:
    """`best_per_document` over one half's {key: score} with each key's document known."""
    out: dict[str, float] = {}
    for key, score in half.items():
        doc = doc_of[key]
        if doc not in out or score > out[doc]:
            out[doc] = score
    return out


class HybridSearch(PermissionGuard):
    """Dense + BM25 fused, behind the one guard (hits of the keyword half are confirmed
    against the store after fusion, like every derived hit)."""

    raw: FusedRetriever

    def __init__(
        self,
        dense: RawRetriever | PermissionGuard,
        keyword: RawRetriever | PermissionGuard,
        *,
        store: VectorStorePort | None = None,
        fusion: FusionMethod = "weighted",
        alpha: float = 0.5,
        rrf_k: int = 60,
        candidates: int = 100,
        level: FusionLevel = "document",
        known_fields: KnownFields | None = None,
        date_fields: tuple[str, ...] = (),
        default_k: int = 5,
    ) -> None:
        fused = FusedRetriever(
            raw_of(dense),
            raw_of(keyword),
            fusion=fusion,
            alpha=alpha,
            rrf_k=rrf_k,
            candidates=candidates,
            level=level,
        )
        owner = store or _store_of(dense) or _store_of(keyword)
        super().__init__(
            fused, owner, known_fields=known_fields, date_fields=date_fields, default_k=default_k
        )

    @property
    def config(self) -> dict[str, Any]:
        return self.raw.config

    @property
    def fusion(self) -> FusionMethod:
        return self.raw.fusion

    @property
    def alpha(self) -> float:
        return self.raw.alpha


def _store_of(part: object) -> VectorStorePort | None:
    for holder in (part, getattr(part, "raw", None), getattr(part, "index", None)):
        store = getattr(holder, "store", None)
        if isinstance(store, VectorStorePort):
            return store
    return None


class NativeHybridRetriever:
    """A store's own hybrid search (keyword + vector fused inside the store, e.g. Weaviate's
    BM25F + near_vector with relative score fusion). Its hits are the store's records."""

    name = "hybrid"
    from_store = True

    def __init__(
        self,
        store: NativeHybrid,
        embeddings: EmbeddingModel,
        *,
        alpha: float,
        vectors: QueryVectors | None = None,
    ) -> None:
        self.store = store
        self.embeddings = embeddings
        self.alpha = alpha
        self.vectors = vectors if vectors is not None else QueryVectors(embeddings)

    def retrieve(self, query: str, k: int, where: Node, tenant: str) -> RawHits:
        vector = self.vectors(query)
        hits = self.store.hybrid_query(query, vector, k, where, tenant=tenant, alpha=self.alpha)
        return RawHits(hits, {h.id: {"fused": h.score} for h in hits})
