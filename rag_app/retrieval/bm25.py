"""BM25 keyword retrieval that obeys exactly the same access rules as dense retrieval.

`KeywordIndex` is a BM25 index (`bm25s`, English stemming with PyStemmer and stopwords) over
every chunk of one store, each chunk indexed with its document's title (twice: a field boost).
Parameters k1=0.9, b=0.4 (the Anserini defaults) beat bm25s' 1.5/0.75 on SciFact, alone and
in hybrid fusion. It is *derived* from the store, never written to directly:

* **Source of truth.** The index is built from the store's own records
  (`VectorStorePort.records(with_text=True)`), so it holds exactly the chunks, texts and
  metadata (tenant, acl, ...) the dense side holds; no second ingestion path can drift.
* **Staying in step.** Every write or delete through the store port replaces a change token
  kept *in the store* (`VectorStorePort.change_token`; Chroma keeps it in the collection's
  metadata), so every host that shares a store sees every other host's writes. The index
  remembers the (token, chunk count) it was built at and compares them with the current ones
  before a search (one small read and one count; the App re-reads the count at most once a
  second while the token is unchanged, `RECOUNT_S`: it only matters for writes that bypass
  the token).
* **Refreshed in proportion to the change.** Next to the matrix the index keeps every chunk's
  analysed terms (vocabulary ids and counts) and its metadata. A refresh scans ids and
  metadata only (no texts), reads (`get`) and analyses just the new chunks and those whose
  metadata changed (an ACL change), drops the removed ones, and recomputes the score
  matrix from the cached terms (IDF is global, so the matrix is always recomputed; that is
  numpy work, no text reads and no stemming). Chunk ids are content+metadata hashes at
  ingestion, so changed text arrives under a new id; text rewritten in place under the same
  id with the same metadata (only a direct `upsert` does that) keeps its old terms until a
  full build, while its hits still carry the store's text. Without a usable cache (first
  build, an index of another format or configuration, an inconsistent cache) it is built in
  full.
* **Never trusted for access.** The index's copy of texts and metadata can be stale (another
  host changed an ACL, a write has not been seen yet). `KeywordSearch` therefore confirms
  every hit against the store's current record by id (`search.confirm_with_store`):
  stale chunks are dropped, and the store's metadata decides access.
* **Off the request path.** With ``background=True`` (``rag-app serve``) a stale index keeps
  serving (re-checked) results while a new one is built on a worker thread; only a process
  with no index at all builds one before its first search. One-shot commands build in line.
* **Persistence.** The index lives under ``<data_dir>/bm25/<store key>/`` (bm25s' own arrays and
  JSON, no pickle, plus our ``chunks.jsonl`` and the cached terms in ``*.npy``), published
  atomically via ``current.json``, so a new process loads it instead of rebuilding (or, when it
  is stale, refreshes it incrementally), and concurrent builders never see half an index.

Access control: `KeywordIndex.search` takes the *effective filter* (access filter AND caller
filter) and evaluates it with `filters.matches` on every chunk's metadata to build a mask
*before* taking the top k (so k is never starved by forbidden chunks); `KeywordSearch` then
re-checks every hit exactly like `SecureSearch`. Masks are cached per filter and index build.
A plain BM25 retriever over all chunks followed by post-filtering (the classic
`EnsembleRetriever` + `BM25Retriever` setup) would leak or starve; nothing here does that.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import logging
import os
import shutil
import threading
import time
import uuid
from collections import Counter, OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from rag_app.access.filters import Node, matches_each
from rag_app.errors import RagAppError
from rag_app.retrieval.search import KnownFields, PermissionGuard, RawHits
from rag_app.sparse import Analyzer
from rag_app.stores.base import IndexableStore, StoreHit, StoreRecord, indexable

log = logging.getLogger(__name__)

_orjson: Any
try:
    _orjson = importlib.import_module("orjson")
except ImportError:  # pragma: no cover - installed with chromadb
    _orjson = None

# 2: per-chunk analysed terms persisted next to the matrix (incremental refresh); an index of
# another format is never loaded (its config hash differs) and is rebuilt.
INDEX_FORMAT = 2
MASK_CACHE_SIZE = 64
FETCH_BATCH = 256  # ids per `store.get` when an incremental refresh reads changed chunks
# Terms no chunk uses any more stay in the vocabulary (ids are stable between refreshes) until
# there are this many and more than a quarter of the live ones; then ids are renumbered.
COMPACT_MIN_DEAD = 1000


def index_text(
    text: str,
    metadata: Mapping[str, Any],
    title_field: str | None = "title",
    title_weight: int = 1,
) -> str:
    """What BM25 indexes for a chunk: its document's title (`title_weight` times, a simple
    field boost), then its text, so a chunk deep in a long document still matches the words
    of its title. A chunk that starts with the title (a Markdown heading) gets one copy less."""
    title = metadata.get(title_field) if title_field else None
    if not isinstance(title, str) or not title.strip() or title_weight < 1:
        return text
    copies = title_weight - (1 if text.lstrip().startswith(title.strip()) else 0)
    return "\n".join([title.strip()] * copies + [text])


def same_metadata(old: Mapping[str, Any], new: Mapping[str, Any]) -> bool:
    """Whether a chunk's metadata is unchanged: equal, with the same value types (equality
    alone takes ``True`` for ``1`` and ``1.0``, which filters keep apart)."""
    if old != new:
        return False
    for key, value in old.items():
        other = new[key]
        if type(value) is not type(other):
            return False
        if isinstance(value, list | tuple | dict) and not _same_types(value, other):
            return False
    return True


def _same_types(a: Any, b: Any) -> bool:
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return all(_same_types(v, b[k]) for k, v in a.items())
    if isinstance(a, list | tuple):
        return all(_same_types(x, y) for x, y in zip(a, b, strict=True))
    return True


@dataclass(frozen=True)
class _Doc:
    """One chunk as indexed: the store's text and metadata, and its analysed terms:
    ``terms[0]`` the vocabulary ids (each once), ``terms[1]`` their counts (int32, shape
    (2, n)), `length` its number of tokens."""

    text: str
    metadata: dict[str, Any]
    terms: np.ndarray
    length: int


@dataclass(frozen=True)
class _Built:
    key: tuple[str, int]  # (change token, chunk count) of the store when built
    ids: list[str]
    texts: list[str]
    metadatas: list[dict[str, Any]]
    model: Any  # bm25s.BM25, or None for an empty store
    docs: dict[str, _Doc]  # id -> chunk (the cache an incremental refresh starts from)
    vocab: dict[str, int]  # term -> column of the matrix (the model's vocab_dict)


RECOUNT_S = 1.0  # how often the App's index re-reads the store's count (see current_key)


class _Inconsistent(Exception):
    """The cached terms do not fit the vocabulary: refresh from scratch."""


class KeywordIndex:
    """BM25 over every chunk of one store, refreshed from the store when it changed."""

    def __init__(
        self,
        store: IndexableStore,
        *,
        generation: Callable[[], object] | None = None,
        directory: Path | None = None,
        background: bool = False,
        analyzer: Analyzer | None = None,
        k1: float = 0.9,
        b: float = 0.4,
        method: str = "lucene",
        title_field: str | None = "title",
        title_weight: int = 2,
        recount_s: float = 0.0,
    ) -> None:
        self.store: IndexableStore = indexable(store, "keep a BM25 index")
        self.recount_s = recount_s
        self._counted: tuple[str, int, float] | None = None  # (token, count, when)
        # What tells the index it is stale: the store's change token unless given (tests).
        self._generation = generation or self.store.change_token
        self.background = background
        self.directory = Path(directory) if directory is not None else None
        self.analyzer = analyzer or Analyzer()
        self.k1 = k1
        self.b = b
        self.method = method
        self.title_field = title_field
        self.title_weight = title_weight
        self._built: _Built | None = None
        self._masks: OrderedDict[str, np.ndarray] = OrderedDict()
        self._rows: tuple[_Built, dict[str, int]] | None = None
        self._lock = threading.RLock()  # guards _built and the mask cache (held briefly)
        self._build_lock = threading.Lock()  # one build at a time (held while building)
        self._worker: threading.Thread | None = None
        self.rebuilds = 0  # builds from the store in this process, full or incremental
        self.incremental = 0  # of which incremental (only new or changed chunks analysed)
        self.loads = 0  # loads from disk in this process

    # -- configuration ----------------------------------------------------------------------
    @property
    def config(self) -> dict[str, Any]:
        return {
            "format": INDEX_FORMAT,
            "analyzer": self.analyzer.config,
            "k1": self.k1,
            "b": self.b,
            "method": self.method,
            "title_field": self.title_field,
            "title_weight": self.title_weight,
        }

    def _config_hash(self) -> str:
        return hashlib.sha256(json.dumps(self.config, sort_keys=True).encode()).hexdigest()[:16]

    # -- freshness ------------------------------------------------------------------------------
    def current_key(self) -> tuple[str, int]:
        """(change token, chunk count) of the store now. The count catches writes that did
        not move the token (a writer outside rag_app, or one that died between its write and
        its token update); it costs a scan of the store's ids (1.3 ms at 11k chunks, linear),
        so with `recount_s` > 0 it is re-read at most that often while the token stays the
        same. A write through rag_app moves the token and is seen at once either way."""
        token = str(self._generation())
        now = time.monotonic()
        seen = self._counted
        if seen is not None and seen[0] == token and now - seen[2] < self.recount_s:
            return (token, seen[1])
        count = int(self.store.count())
        self._counted = (token, count, now)
        return (token, count)

    def ensure_fresh(self) -> _Built:
        """The index for the store as it is now: in memory, from disk, or refreshed (in line):
        incrementally from the index in memory (or a stale one on disk) when there is one."""
        key = self.current_key()
        built = self._built
        if built is not None and built.key == key:
            return built
        with self._build_lock:
            built = self._built
            if built is not None and built.key == key:
                return built
            pointer = self._pointer()
            base = built
            if pointer is not None and (pointer[1] == key or base is None):
                loaded = self._load(pointer)
                if loaded is not None and loaded.key == key:
                    self._install(loaded)
                    self.loads += 1
                    return loaded
                base = base or loaded  # a stale index on disk: what the refresh starts from
            fresh = self._build(key, base)
            self._install(fresh)
            self.rebuilds += 1
            self._save(fresh)
            return fresh

    def current(self) -> _Built:
        """The index to search now. In background mode a stale index keeps serving while a
        fresh one is built on a worker thread (hits are confirmed against the store either
        way); otherwise, and when there is no index at all, this is `ensure_fresh`."""
        if not self.background:
            return self.ensure_fresh()
        key = self.current_key()
        built = self._built
        if built is not None and built.key == key:
            return built
        if built is None:
            pointer = self._pointer()
            loaded = self._load(pointer) if pointer is not None else None  # even if stale
            if loaded is None:
                return self.ensure_fresh()
            self._install(loaded)
            self.loads += 1
            built = loaded
            if built.key == key:
                return built
        self.refresh_in_background()
        return built

    def refresh_in_background(self) -> None:
        """Start a refresh on a worker thread unless one is running (e.g. after an upload)."""
        with self._lock:
            if self._worker is not None and self._worker.is_alive():
                return
            self._worker = threading.Thread(
                target=self._refresh_worker, name="bm25-refresh", daemon=True
            )
            self._worker.start()

    def _refresh_worker(self) -> None:
        try:
            self.ensure_fresh()
        except Exception:
            log.exception("background BM25 refresh failed; the previous index keeps serving")

    def wait_for_refresh(self, timeout: float | None = None) -> None:
        """Wait for a background refresh to finish (tests, shutdown)."""
        worker = self._worker
        if worker is not None:
            worker.join(timeout)

    def _install(self, built: _Built) -> None:
        with self._lock:
            self._built = built
            self._masks.clear()
            self._rows = None

    def refresh(self) -> None:
        """Bring the index up to date now (e.g. right after an ingest)."""
        self.ensure_fresh()

    @property
    def size(self) -> int:
        return len(self.ensure_fresh().ids)

    # -- build ----------------------------------------------------------------------------------
    def _build(self, key: tuple[str, int], base: _Built | None) -> _Built:
        """The index at `key`: incrementally from `base` when there is one, else from scratch.
        The store may change while we read it; the next search then refreshes again."""
        if base is not None:
            try:
                updated = self._update(key, base)
                self.incremental += 1
                return updated
            except RagAppError:
                raise  # the store failed: a full build would fail the same way
            except Exception as exc:
                log.warning("incremental BM25 refresh failed (%s); rebuilding in full", exc)
        return self._full(key)

    def _full(self, key: tuple[str, int]) -> _Built:
        vocab: dict[str, int] = {}
        docs: dict[str, _Doc] = {}
        for record in self.store.records(with_text=True):
            docs[record.id] = self._doc(record, vocab)
        log.info("building the BM25 index over %d chunks", len(docs))
        return self._assemble(key, list(docs), docs, vocab)

    def _update(self, key: tuple[str, int], base: _Built) -> _Built:
        """Refresh `base`: one scan of ids and metadata (no texts), then only new chunks and
        chunks whose metadata changed are read (`store.get`) and analysed; removed ones are
        dropped. Chunk ids are content+metadata hashes at ingestion, so new text means a new
        id; a chunk rewritten under its id with new metadata is read again as well."""
        order: list[str] = []
        docs: dict[str, _Doc] = {}
        wanted: dict[str | None, list[str]] = {}  # tenant -> ids to read
        for record in self.store.records(with_text=False):
            order.append(record.id)
            old = base.docs.get(record.id)
            if old is not None and same_metadata(old.metadata, record.metadata):
                docs[record.id] = old
            else:
                tenant = record.metadata.get("tenant")
                owner = tenant if isinstance(tenant, str) else None
                wanted.setdefault(owner, []).append(record.id)
        vocab = dict(base.vocab)
        changed = 0
        for tenant, ids in wanted.items():
            for start in range(0, len(ids), FETCH_BATCH):
                for record in self.store.get(ids[start : start + FETCH_BATCH], tenant=tenant):
                    docs[record.id] = self._doc(record, vocab)
                    changed += 1
        # an id the store no longer had when we read it is simply left out
        ids = [i for i in dict.fromkeys(order) if i in docs]
        log.info("refreshing the BM25 index: %d chunks, %d read and analysed", len(ids), changed)
        return self._assemble(key, ids, docs, vocab)

    def _doc(self, record: StoreRecord, vocab: dict[str, int]) -> _Doc:
        """Analyse one chunk; new terms are appended to `vocab`."""
        text = record.text or ""
        metadata = dict(record.metadata)
        tokens = self.analyzer(index_text(text, metadata, self.title_field, self.title_weight))
        counts = Counter(tokens)
        terms = np.empty((2, len(counts)), dtype=np.int32)
        # setdefault's default is evaluated first: a new term gets the next free id
        terms[0] = np.fromiter(
            (vocab.setdefault(t, len(vocab)) for t in counts), dtype=np.int32, count=len(counts)
        )
        terms[1] = np.fromiter(counts.values(), dtype=np.int32, count=len(counts))
        return _Doc(text, metadata, terms, len(tokens))

    def _assemble(
        self, key: tuple[str, int], ids: list[str], docs: dict[str, _Doc], vocab: dict[str, int]
    ) -> _Built:
        chosen = [docs[i] for i in ids]  # removed chunks leave the cache
        sizes = np.fromiter((d.terms.shape[1] for d in chosen), dtype=np.int64, count=len(ids))
        terms = (
            np.concatenate([d.terms for d in chosen], axis=1)
            if chosen
            else np.empty((2, 0), dtype=np.int32)
        )
        if terms.shape[1] and int(terms[0].max()) >= len(vocab):
            raise _Inconsistent("a cached term id is outside the vocabulary")
        doc_freqs = np.bincount(terms[0], minlength=len(vocab))
        live = int(np.count_nonzero(doc_freqs))
        if len(vocab) - live > max(COMPACT_MIN_DEAD, live // 4):
            # many terms no chunk uses any more: renumber the vocabulary
            used = doc_freqs > 0
            renumber = np.full(len(vocab), -1, dtype=np.int32)
            renumber[used] = np.arange(live, dtype=np.int32)
            vocab = {t: int(renumber[i]) for t, i in vocab.items() if used[i]}
            terms = np.stack([renumber[terms[0]], terms[1]])
            doc_freqs = doc_freqs[used]
            parts = np.split(terms, np.cumsum(sizes)[:-1], axis=1) if chosen else []
            chosen = [replace(d, terms=t) for d, t in zip(chosen, parts, strict=True)]
        lengths = np.fromiter((d.length for d in chosen), dtype=np.int64, count=len(ids))
        return _Built(
            key=key,
            ids=ids,
            texts=[d.text for d in chosen],
            metadatas=[d.metadata for d in chosen],
            model=self._fit(terms, sizes, lengths, doc_freqs, vocab),
            docs=dict(zip(ids, chosen, strict=True)),
            vocab=vocab,
        )

    def _fit(
        self,
        terms: np.ndarray,
        sizes: np.ndarray,
        lengths: np.ndarray,
        doc_freqs: np.ndarray,
        vocab: dict[str, int],
    ) -> Any:
        """The bm25s model over the analysed chunks (`terms`: every chunk's vocabulary ids and
        counts, one after the other, `sizes` of them each; `lengths` in tokens), its score
        matrix computed here in numpy with bm25s' own scoring functions (the same values its
        `BM25.index` computes), so a refresh never re-analyses an unchanged chunk."""
        if not lengths.size:
            return None
        import bm25s
        import scipy.sparse as sp
        from bm25s.scoring import (
            _build_nonoccurrence_array,
            _select_idf_scorer,
            _select_tfc_scorer,
        )

        # bm25s sets its own logger to DEBUG at import; keep it as quiet as everything else.
        logging.getLogger("bm25s").setLevel(logging.WARNING)
        model = bm25s.BM25(k1=self.k1, b=self.b, method=self.method)
        n_docs, n_vocab = lengths.size, len(vocab)
        cols = terms[0]
        rows = np.repeat(np.arange(n_docs, dtype=np.int32), sizes)
        tf = terms[1].astype(model.dtype)
        avg_len = lengths.mean()
        # idf per distinct document frequency, as bm25s computes it (Python floats, then cast)
        idf_of = _select_idf_scorer(model.idf_method)
        present = np.flatnonzero(doc_freqs)
        distinct, inverse = np.unique(doc_freqs[present], return_inverse=True)
        values = np.array([idf_of(int(v), N=n_docs) for v in distinct], dtype=np.float64)
        idf = np.zeros(n_vocab, dtype=model.dtype)
        idf[present] = values[inverse]
        tfc = _select_tfc_scorer(model.method)(
            tf_array=tf, l_d=lengths[rows], l_avg=avg_len, k1=self.k1, b=self.b, delta=model.delta
        )
        scores = idf[cols] * tfc
        model.nonoccurrence_array = None
        if model.method in model.methods_requiring_nonoccurrence:
            model.nonoccurrence_array = _build_nonoccurrence_array(
                doc_frequencies=dict(enumerate(doc_freqs.tolist())),
                n_docs=n_docs,
                compute_idf_fn=idf_of,
                calculate_tfc_fn=_select_tfc_scorer(model.method),
                l_d=avg_len,
                l_avg=avg_len,
                k1=self.k1,
                b=self.b,
                delta=model.delta,
                dtype=model.dtype,
            )
            scores -= model.nonoccurrence_array[cols]
        # rows arrive sorted, so each column lists its documents in order (as bm25s does)
        matrix = sp.csc_matrix(
            (scores.astype(model.dtype), (rows, cols)), shape=(n_docs, n_vocab), dtype=model.dtype
        )
        model.scores = {
            "data": matrix.data,
            "indices": matrix.indices,
            "indptr": matrix.indptr,
            "num_docs": n_docs,
        }
        model.vocab_dict = vocab
        model.unique_token_ids_set = set(vocab.values())
        return model

    # -- persistence ----------------------------------------------------------------------------
    def _root(self) -> Path | None:
        if self.directory is None:
            return None
        return self.directory

    def _pointer(self) -> tuple[str, tuple[str, int]] | None:
        """(folder, key) of the published index when it was built with this configuration."""
        root = self._root()
        if root is None:
            return None
        try:
            current = json.loads((root / "current.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        if not isinstance(current, dict) or current.get("config") != self._config_hash():
            return None
        stored = current.get("key")
        if not isinstance(stored, list) or len(stored) != 2:
            return None
        try:
            return str(current.get("dir", "")), (str(stored[0]), int(stored[1]))
        except (TypeError, ValueError):
            return None

    def _load(self, pointer: tuple[str, tuple[str, int]]) -> _Built | None:
        """The persisted index `pointer` names, or None when it is unreadable."""
        root = self._root()
        if root is None:
            return None
        name, stored_key = pointer
        folder = root / name
        try:
            ids: list[str] = []
            texts: list[str] = []
            metadatas: list[dict[str, Any]] = []
            with (folder / "chunks.jsonl").open("rb") as fh:
                for line in fh:
                    row = _loads(line)
                    ids.append(row["id"])
                    texts.append(row["text"])
                    metadatas.append(row["metadata"])
            terms = np.load(folder / "terms.npy", allow_pickle=False)
            sizes = np.load(folder / "sizes.npy", allow_pickle=False)
            lengths = np.load(folder / "lengths.npy", allow_pickle=False)
            model = None
            vocab: dict[str, int] = {}
            if ids:
                import bm25s

                model = bm25s.BM25.load(
                    str(folder / "bm25"), mmap=False, allow_pickle=False, show_progress=False
                )
                vocab = model.vocab_dict
            _check_loaded(len(ids), terms, sizes, lengths, model, vocab)
        except Exception as exc:
            log.warning("BM25 index in %s is unreadable (%s); rebuilding", folder, exc)
            return None
        parts = np.split(terms, np.cumsum(sizes)[:-1], axis=1) if ids else []
        docs = {
            i: _Doc(t, m, part, int(n))
            for i, t, m, part, n in zip(ids, texts, metadatas, parts, lengths, strict=True)
        }
        return _Built(
            key=stored_key,
            ids=ids,
            texts=texts,
            metadatas=metadatas,
            model=model,
            docs=docs,
            vocab=vocab,
        )

    def _save(self, built: _Built) -> None:
        root = self._root()
        if root is None:
            return
        try:
            root.mkdir(parents=True, exist_ok=True)
            name = f"index-{uuid.uuid4().hex[:12]}"
            tmp = root / f"tmp-{name}"
            tmp.mkdir()
            chosen = [built.docs[i] for i in built.ids]
            with (tmp / "chunks.jsonl").open("wb") as fh:
                fh.writelines(
                    _dumps({"id": i, "text": d.text, "metadata": d.metadata})
                    for i, d in zip(built.ids, chosen, strict=True)
                )
            terms = [d.terms for d in chosen]
            empty = np.empty((2, 0), dtype=np.int32)
            np.save(tmp / "terms.npy", np.concatenate(terms, axis=1) if terms else empty)
            np.save(tmp / "sizes.npy", np.array([t.shape[1] for t in terms], dtype=np.int64))
            np.save(tmp / "lengths.npy", np.array([d.length for d in chosen], dtype=np.int64))
            if built.model is not None:
                built.model.save(str(tmp / "bm25"), allow_pickle=False, show_progress=False)
            os.replace(tmp, root / name)
            pointer = {"dir": name, "key": list(built.key), "config": self._config_hash()}
            pointer_tmp = root / f"current.json.{name}"
            pointer_tmp.write_text(json.dumps(pointer), encoding="utf-8")
            os.replace(pointer_tmp, root / "current.json")
            for old in root.iterdir():
                if old.name != name and old.name.startswith(("index-", "tmp-")):
                    shutil.rmtree(old, ignore_errors=True)
        except OSError as exc:
            log.warning("could not persist the BM25 index under %s: %s", root, exc)

    # -- search ---------------------------------------------------------------------------------
    def matching(self, built: _Built, where: Node) -> np.ndarray:
        """Which rows of `built` match `where`, by the copy's metadata (cached per filter)."""
        # repr keeps value types apart (True vs 1), which node equality would not.
        cache_key = repr(where)
        with self._lock:
            if self._built is built and cache_key in self._masks:
                self._masks.move_to_end(cache_key)
                return self._masks[cache_key]
        mask = np.fromiter(matches_each(where, built.metadatas), dtype=bool, count=len(built.ids))
        with self._lock:
            if self._built is built:
                self._masks[cache_key] = mask
                while len(self._masks) > MASK_CACHE_SIZE:
                    self._masks.popitem(last=False)
        return mask

    def rows(self, built: _Built) -> dict[str, int]:
        """Chunk id -> its row in `built` (in the masks of `matching`)."""
        with self._lock:
            cached = self._rows
            if cached is not None and cached[0] is built:
                return cached[1]
        rows = {cid: n for n, cid in enumerate(built.ids)}
        with self._lock:
            if self._built is built:
                self._rows = (built, rows)
        return rows

    def search(
        self, query: str, k: int, where: Node, *, built: _Built | None = None
    ) -> list[StoreHit]:
        """Top-k chunks by BM25 among those matching `where` (the effective filter), only
        chunks that share at least one term with the query. `where` is required: there is
        no unfiltered keyword search. `built`: an index already checked for freshness in
        this search (`current()`), so that a fused search checks the store once."""
        if where is None:
            raise ValueError("KeywordIndex.search needs the effective (access) filter")
        built = built if built is not None else self.current()
        if built.model is None:
            return []
        token_ids = built.model.get_tokens_ids(self.analyzer(query))
        if not token_ids:
            return []
        scores = np.asarray(built.model.get_scores_from_ids(token_ids), dtype=np.float64)
        mask = self.matching(built, where)
        candidates = np.flatnonzero(mask & (scores > 0.0))
        if candidates.size == 0:
            return []
        order = top_k(candidates, scores[candidates], k)
        return [
            StoreHit(
                id=built.ids[i],
                text=built.texts[i],
                metadata=dict(built.metadatas[i]),
                score=float(scores[i]),
            )
            for i in order
        ]

    def records(self) -> list[StoreRecord]:
        """The indexed chunks (for tests and diagnostics)."""
        built = self.ensure_fresh()
        return [
            StoreRecord(id=i, metadata=dict(m), text=t)
            for i, t, m in zip(built.ids, built.texts, built.metadatas, strict=True)
        ]


class KeywordRetriever:
    """BM25 candidates from the index (a derived copy: the guard confirms every hit against
    the store)."""

    name = "bm25"
    from_store = False

    def __init__(self, index: KeywordIndex) -> None:
        self.index = index

    def retrieve(self, query: str, k: int, where: Node, tenant: str) -> RawHits:
        return RawHits(self.index.search(query, k, where))


class KeywordSearch(PermissionGuard):
    """BM25 retrieval behind the guard: access filter AND caller filter applied as a
    pre-filter inside the index, then every hit confirmed against the store's current record
    (the index's own copy of the metadata never decides access)."""

    raw: KeywordRetriever

    def __init__(
        self,
        index: KeywordIndex,
        *,
        known_fields: KnownFields | None = None,
        date_fields: tuple[str, ...] = (),
        default_k: int = 5,
    ) -> None:
        super().__init__(
            KeywordRetriever(index),
            index.store,
            known_fields=known_fields,
            date_fields=date_fields,
            default_k=default_k,
        )
        self.index = index


def top_k(rows: np.ndarray, scores: np.ndarray, k: int) -> np.ndarray:
    """The `k` best `rows` by `scores` (aligned arrays), highest first, ties in row order
    (deterministic). Only the rows scoring at least the k-th best are sorted: the same order
    as sorting all of them, without sorting 100k candidates of a common term."""
    if rows.size > k:
        kth = np.partition(scores, rows.size - k)[rows.size - k]  # the k-th largest score
        keep = scores >= kth  # every row above it, and every tie with it
        rows, scores = rows[keep], scores[keep]
    return rows[np.lexsort((rows, -scores))][:k]


def index_directory(data_dir: Path, store_location: str) -> Path:
    """Where the BM25 index of one store lives: ``<data_dir>/bm25/<hash of the location>``."""
    digest = hashlib.sha256(store_location.encode()).hexdigest()[:16]
    return Path(data_dir) / "bm25" / digest


def _dumps(row: dict[str, Any]) -> bytes:
    """One line of ``chunks.jsonl`` (orjson where installed: a chromadb dependency)."""
    if _orjson is not None:
        try:
            return bytes(_orjson.dumps(row)) + b"\n"
        except TypeError:  # e.g. a value orjson does not know: the standard library's way
            pass
    return (json.dumps(row, ensure_ascii=False, default=str) + "\n").encode("utf-8")


def _loads(line: bytes) -> Any:
    return _orjson.loads(line) if _orjson is not None else json.loads(line)


def _check_loaded(
    n_docs: int,
    terms: np.ndarray,
    sizes: np.ndarray,
    lengths: np.ndarray,
    model: Any,
    vocab: dict[str, int],
) -> None:
    """Raise `_Inconsistent` unless the persisted parts of an index fit together."""
    if terms.ndim != 2 or terms.shape[0] != 2 or sizes.shape != (n_docs,):
        raise _Inconsistent("the cached terms do not match the chunks")
    if lengths.shape != (n_docs,) or np.any(sizes < 0) or int(sizes.sum()) != terms.shape[1]:
        raise _Inconsistent("the cached terms do not match the chunks")
    if n_docs == 0:
        return
    if int(model.scores["num_docs"]) != n_docs or model.scores["indptr"].size != len(vocab) + 1:
        raise _Inconsistent("the score matrix does not match the chunks")
    if terms.shape[1] and (int(terms[0].min()) < 0 or int(terms[0].max()) >= len(vocab)):
        raise _Inconsistent("a cached term id is outside the vocabulary")
