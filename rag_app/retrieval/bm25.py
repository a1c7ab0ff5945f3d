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
  before a search (one small read and one count). The App re-reads the count at most once a
  second while the token is unchanged (`RECOUNT_S`: it only matters for writes that bypass
  the token), and, with a store that counts the writes made through it (`ChangeJournaling`),
  the token too while no write went through this process's store object: its own writes are
  seen at once, another process's within a second.
* **Refreshed in proportion to the change.** With a store that journals which ids each write
  touched (`ChangeJournaling.changes_since`; embedded Chroma, see `rag_app.stores.journal`),
  a refresh reads (`get`) just those ids: gone ones are dropped, ones with other text or
  metadata analysed again and appended, no scan. Scores are computed at query time from the
  kept term counts, document lengths, document frequencies and chunk count (`Scorer`, the
  same float32 values as bm25s' precomputed matrix), so no change rescores unchanged chunks:
  chunks added since the last merge sit in a small delta postings list, removed ones leave
  dead slots, and both are merged into the base once they pass `MERGE_SHARE` of it. What is
  left linear is copying references (the id, text and metadata lists, the chunk and slot
  dicts): milliseconds at 50k chunks. The journal fails closed: when it cannot vouch for the
  change (a gap, an ambiguity, an unreadable journal, a count the changes do not explain),
  when the last scan is `RESCAN_S` old (the journal names only writes through rag_app: an
  ACL edited in Chroma directly reaches the copy that way), or for a store without one
  (Chroma server, Pinecone, Weaviate), the refresh scans ids and metadata (no texts), reads
  and analyses just the new chunks and those whose metadata changed (an ACL change), drops
  the removed ones and merges the score structures. Chunk ids are content+metadata hashes
  at ingestion, so changed text arrives under a new id; text rewritten in place under the
  same id with the same metadata (only a direct `upsert` does that) is caught by the journal
  but keeps its old terms on the scan path until a full build, while its hits still carry
  the store's text. Without a usable cache (first build, an index of another format or
  configuration, an inconsistent cache) it is built in full.
* **Never trusted for access.** The index's copy of texts and metadata can be stale (another
  host changed an ACL, a write has not been seen yet). `KeywordSearch` therefore confirms
  every hit against the store's current record by id (`search.confirm_with_store`):
  stale chunks are dropped, and the store's metadata decides access.
* **Off the request path.** With ``background=True`` (``rag-app serve``) a stale index keeps
  serving (re-checked) results while a new one is built on a worker thread; only a process
  with no index at all builds one before its first search. One-shot commands build in line.
* **Persistence.** The index lives under ``<data_dir>/bm25/<store key>/``: a base folder (our
  ``chunks.jsonl``, the cached terms in ``*.npy`` and ``vocab.json``; no pickle) and beside
  it an append-only ``log.jsonl`` of the versions derived from it (ids removed, chunks added
  with their terms), published atomically via ``current.json`` naming the folder, the key and
  how many bytes of the log belong to it. A small change appends one line and replaces the
  pointer; a crash between the two leaves the previous version readable (the next append
  drops the unpublished bytes). A version the log cannot describe, or a log past `LOG_SHARE`
  of its base, is saved in full into a new folder instead. A new process loads it instead of
  rebuilding (or, when it is stale, refreshes it from the journal or incrementally), and
  concurrent builders never see half an index (one publisher at a time: a file lock).

Access control: `KeywordIndex.search` takes the *effective filter* (access filter AND caller
filter) and evaluates it with `filters.matches` on every chunk's metadata to build a mask
*before* taking the top k (so k is never starved by forbidden chunks); `KeywordSearch` then
re-checks every hit exactly like `SecureSearch`. Masks are cached per filter and index build,
and follow a version derived from the journal (only its appended rows are judged). A mask is
computed from a grouping of the rows by the values of the fields the filter reads, kept per
field set: every reader's access filter reads the same fields (tenant, ACL), so only the first
reader's first query passes over every chunk; another reader's is judged once per group.
A plain BM25 retriever over all chunks followed by post-filtering (the classic
`EnsembleRetriever` + `BM25Retriever` setup) would leak or starve; nothing here does that.
"""

from __future__ import annotations

import contextlib
import fcntl
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
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from time import perf_counter  # (tests replace `time` to control `monotonic`)
from typing import Any

import numpy as np

from rag_app.access.filters import FieldGroups, Node, fields_of, matches_each
from rag_app.errors import RagAppError
from rag_app.retrieval.bm25_scorer import Scorer
from rag_app.retrieval.search import KnownFields, PermissionGuard, RawHits
from rag_app.sparse import Analyzer
from rag_app.stores.base import (
    ChangeJournaling,
    IndexableStore,
    StoreHit,
    StoreRecord,
    indexable,
)

log = logging.getLogger(__name__)

_orjson: Any
try:
    _orjson = importlib.import_module("orjson")
except ImportError:  # pragma: no cover - installed with chromadb
    _orjson = None

# 2: per-chunk analysed terms persisted next to the matrix (incremental refresh); 3: no score
# matrix (scores are computed at query time), a vocabulary file and a delta log. An index of
# another format is never loaded (its config hash differs) and is rebuilt.
INDEX_FORMAT = 3
MASK_CACHE_SIZE = 64
# groupings of the rows by the values of the fields filters read (see `matching`): access
# filters all read the same few fields, so one grouping serves every user
GROUPING_CACHE_SIZE = 8
# a grouping with more groups than this (a filter on a field of unique values, e.g. `source`)
# is not kept: it would hold a key per chunk and save nothing
GROUPING_MAX_GROUPS = 50_000
FETCH_BATCH = 256  # ids per `store.get` when an incremental refresh reads changed chunks
# Terms no chunk uses any more stay in the vocabulary (ids are stable between refreshes) until
# there are this many and more than a quarter of the live ones; then ids are renumbered.
COMPACT_MIN_DEAD = 1000
# Chunks added or removed since the score structures were last built in full, past which
# they are merged (rebuilt in full): at most this share of the chunks, at least MERGE_MIN.
MERGE_SHARE = 0.125
MERGE_MIN = 256
# A delta log past this share of its base's chunks.jsonl (and LOG_MIN_BYTES) is compacted:
# the next version is saved in full.
LOG_SHARE = 0.25
LOG_MIN_BYTES = 1024 * 1024


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
    model: Scorer | None  # scores every row for a query; None for an empty store
    docs: dict[str, _Doc]  # id -> chunk (the cache an incremental refresh starts from)
    vocab: dict[str, int]  # term -> vocabulary id (grows only; shared by later versions)


# a version, its rows grouped by the values of some fields, and each row's group (`matching`)
_Grouping = tuple[_Built, FieldGroups, np.ndarray]


@dataclass(frozen=True)
class _Change:
    """How a version differs from the one it was derived from: `removed` ids (their rows
    `removed_rows` in the older version) left, `added` ids (new, or re-read) were appended
    in this order."""

    removed: list[str]
    removed_rows: np.ndarray
    added: list[str]
    counts: dict[str, dict[str, int]]  # added id -> its analysed terms (for the delta log)
    merged: bool  # the score structures were rebuilt in full (then saved in full)


@dataclass(frozen=True)
class _Pointer:
    dir: str
    key: tuple[str, int]
    log_bytes: int  # how much of the folder's delta log belongs to this version


RECOUNT_S = 1.0  # how often the App's index re-reads the store's count (see current_key)
# The journal names only writes made through rag_app: a refresh scans instead when the last
# scan is this old, so a change written around rag_app (an ACL edited in Chroma directly)
# reaches the index's copy within this time of the next change through rag_app.
RESCAN_S = 900.0


class _Inconsistent(Exception):
    """The cached terms do not fit the vocabulary: refresh from scratch."""


class _Unvouched(Exception):
    """The journal's changes do not explain the store's count: scan instead."""


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
        token_s: float = 0.0,
        rescan_s: float = RESCAN_S,
    ) -> None:
        self.store: IndexableStore = indexable(store, "keep a BM25 index")
        self.recount_s = recount_s
        self.token_s = token_s
        self.rescan_s = rescan_s
        self._scanned_at = time.monotonic()  # the last scan (or this process's start)
        self._counted: tuple[str, int, float] | None = None  # (token, count, when)
        self._tokened: tuple[str, int, float] | None = None  # (token, local writes, when)
        # What tells the index it is stale: the store's change token unless given (tests).
        self._generation = generation or self.store.change_token
        # The store's journal of changed ids, when it keeps one and its token is the one used.
        self._journal: ChangeJournaling | None = None
        if generation is None and isinstance(store, ChangeJournaling):
            self._journal = store
        self.background = background
        self.directory = Path(directory) if directory is not None else None
        self.analyzer = analyzer or Analyzer()
        self.k1 = k1
        self.b = b
        self.method = method
        self.title_field = title_field
        self.title_weight = title_weight
        self._built: _Built | None = None
        self._masks: OrderedDict[str, tuple[Node, np.ndarray]] = OrderedDict()
        # fields -> (version, its rows' grouping by those fields' values, each row's group)
        self._groupings: OrderedDict[tuple[str, ...], _Grouping] = OrderedDict()
        self._rows: tuple[_Built, dict[str, int]] | None = None
        self._lock = threading.RLock()  # guards _built and the mask cache (held briefly)
        self._build_lock = threading.Lock()  # one build at a time (held while building)
        self._worker: threading.Thread | None = None
        # the version in memory that the published index on disk holds, and where
        self._persisted: tuple[_Built, _Pointer] | None = None
        self.rebuilds = 0  # builds from the store in this process, full or incremental
        self.incremental = 0  # of which incremental (only new or changed chunks analysed)
        self.journaled = 0  # of which from the store's journal (no scan)
        self.loads = 0  # loads from disk in this process
        self.timings: dict[str, float] = {}  # seconds per step of the last build (bench)

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
        """(change token, chunk count) of the store now.

        The token costs a read of the collection's metadata (about 0.5 ms). With `token_s` >
        0 and a store that counts the writes made through it (`ChangeJournaling`), it is
        re-read at most that often while no write went through the store object: a write
        through this process is seen at once, another process's within `token_s`.

        The count catches writes that did not move the token (a writer outside rag_app, or
        one that died between its write and its token update); it costs a scan of the
        store's ids (1.3 ms at 11k chunks, linear), so with `recount_s` > 0 it is re-read at
        most that often while the token stays the same."""
        now = time.monotonic()
        writes = self._journal.local_writes if self._journal is not None else None
        held = self._tokened
        if (
            held is not None
            and writes is not None
            and held[1] == writes
            and now - held[2] < self.token_s
        ):
            token = held[0]
        else:
            token = str(self._generation())  # read after `writes`: see ChromaStore._touch
            self._tokened = (token, writes if writes is not None else -1, now)
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
            self.timings = {}
            base = built
            # in proportion to the change: from the index in memory and the store's journal
            derived = self._from_journal(key, base) if base is not None else None
            if derived is None:
                pointer = self._pointer()
                if pointer is not None and (pointer.key == key or base is None):
                    loaded = self._load(pointer)
                    if loaded is not None and loaded.key == key:
                        self._install(loaded)
                        self.loads += 1
                        return loaded
                    if base is None and loaded is not None:
                        # a stale index on disk: what the refresh starts from
                        base = loaded
                        derived = self._from_journal(key, base)
            fresh, change = derived if derived is not None else (self._build(key, base), None)
            self._install(fresh, base, change)
            self.rebuilds += 1
            started = perf_counter()
            self._save(fresh, base, change)
            self.timings["save"] = perf_counter() - started
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

    def _install(
        self, built: _Built, base: _Built | None = None, change: _Change | None = None
    ) -> None:
        """Serve `built` from now on. When it was derived from the version served so far
        (`change`), the cached filter masks and row groupings follow it: the removed rows
        dropped, only the appended rows judged."""
        with self._lock:
            carried: list[tuple[str, Node, np.ndarray]] = []
            groupings: list[tuple[tuple[str, ...], _Grouping]] = []
            if change is not None and base is not None and self._built is base:
                first = len(built.ids) - len(change.added)
                for cache_key, (where, mask) in self._masks.items():
                    kept = np.delete(mask, change.removed_rows)
                    new = np.fromiter(
                        matches_each(where, built.metadatas[first:]),
                        dtype=bool,
                        count=len(built.ids) - first,
                    )
                    carried.append((cache_key, where, np.concatenate([kept, new])))
                for fields, (_, groups, members) in self._groupings.items():
                    grown = groups.copy()  # the old one may still be read by a search
                    added = np.array(grown.assign(built.metadatas[first:]), dtype=np.int32)
                    if len(grown) > GROUPING_MAX_GROUPS:
                        continue
                    kept_members = np.delete(members, change.removed_rows)
                    groupings.append(
                        (fields, (built, grown, np.concatenate([kept_members, added])))
                    )
            self._built = built
            self._masks.clear()
            for cache_key, where, mask in carried:
                self._masks[cache_key] = (where, mask)
            self._groupings = OrderedDict(groupings)
            self._rows = None

    def refresh(self) -> None:
        """Bring the index up to date now (e.g. right after an ingest)."""
        self.ensure_fresh()

    @property
    def size(self) -> int:
        return len(self.ensure_fresh().ids)

    # -- build ----------------------------------------------------------------------------------
    def _from_journal(self, key: tuple[str, int], base: _Built) -> tuple[_Built, _Change] | None:
        """The index at `key` derived from `base` by the store's journal (see `_apply`), or
        None when the store keeps none or it does not vouch for the changes since `base`."""
        if self._journal is None or base.model is None:
            return None
        if time.monotonic() - self._scanned_at >= self.rescan_s:
            log.info("BM25 refresh: the last scan is %.0f s old; scanning", self.rescan_s)
            return None
        started = perf_counter()
        changed = self._journal.changes_since(base.key[0], key[0])
        self.timings["journal"] = perf_counter() - started
        if changed is None:
            return None
        try:
            derived = self._apply(key, base, changed)
        except RagAppError:
            raise  # the store failed: a scan would fail the same way
        except Exception as exc:
            log.info("BM25 refresh from the change journal declined (%s); scanning", exc)
            return None
        self.incremental += 1
        self.journaled += 1
        return derived

    def _build(self, key: tuple[str, int], base: _Built | None) -> _Built:
        """The index at `key`: incrementally from `base` and a scan when there is one, else
        from scratch. The store may change while we read it; the next search then refreshes
        again."""
        scanned_at = time.monotonic()
        if base is not None:
            try:
                updated = self._update(key, base)
                self.incremental += 1
                self._scanned_at = scanned_at
                return updated
            except RagAppError:
                raise  # the store failed: a full build would fail the same way
            except Exception as exc:
                log.warning("incremental BM25 refresh failed (%s); rebuilding in full", exc)
        full = self._full(key)
        self._scanned_at = scanned_at
        return full

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
        started = perf_counter()
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
        self.timings["scan"] = perf_counter() - started
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

    def _apply(
        self, key: tuple[str, int], base: _Built, changed: frozenset[str]
    ) -> tuple[_Built, _Change]:
        """`base` brought to `key` by re-reading only the ids the store's journal says were
        written since (no scan): an id the store no longer has is dropped, one with other
        metadata or text is analysed again and appended, the others are kept. `_Unvouched`
        when the result does not hold the store's count of chunks (a write that bypassed
        the journal, or one still under way): the caller scans instead."""
        started = perf_counter()
        wanted = sorted(changed)
        got: dict[str, StoreRecord] = {}
        for start in range(0, len(wanted), FETCH_BATCH):
            for record in self.store.get(wanted[start : start + FETCH_BATCH]):
                got[record.id] = record
        self.timings["read"] = perf_counter() - started
        started = perf_counter()
        vocab = base.vocab  # grows only: older versions ignore the ids they do not know
        removed: list[str] = []
        added: dict[str, _Doc] = {}
        counts: dict[str, dict[str, int]] = {}
        for cid in wanted:
            old = base.docs.get(cid)
            current = got.get(cid)
            if current is None:
                if old is not None:
                    removed.append(cid)
                continue
            text = current.text or ""
            if old is not None:
                if old.text == text and same_metadata(old.metadata, current.metadata):
                    continue
                removed.append(cid)
            metadata = dict(current.metadata)
            terms = self._terms(text, metadata)
            added[cid] = self._doc_of(text, metadata, terms, vocab)
            counts[cid] = terms
        if len(base.ids) - len(removed) + len(added) != key[1]:
            raise _Unvouched(
                f"{len(base.ids)} chunks - {len(removed)} + {len(added)} is not the store's "
                f"{key[1]}"
            )
        fresh, removed_rows, merged = self._derive(key, base, removed, added)
        self.timings["analyse+derive"] = perf_counter() - started
        log.info(
            "refreshed the BM25 index from the change journal: %d ids written, %d chunks "
            "removed, %d analysed",
            len(wanted),
            len(removed),
            len(added),
        )
        return fresh, _Change(removed, removed_rows, list(added), counts, merged)

    def _derive(
        self,
        key: tuple[str, int],
        base: _Built,
        removed: list[str],
        added: dict[str, _Doc],
    ) -> tuple[_Built, np.ndarray, bool]:
        """The version after `base` without `removed` (ids of `base`) and with `added`
        appended: lists and scores updated in proportion to the change (plus copies of the
        id lists), the score structures merged anew once the change since their last merge
        outgrows `MERGE_SHARE` of them."""
        scorer = base.model
        if scorer is None:
            raise _Inconsistent("no scorer to derive from")
        slot_row = scorer.slot_rows()
        gone_slots = np.fromiter(
            (scorer.slot_of[cid] for cid in removed), dtype=np.int64, count=len(removed)
        )
        removed_rows = slot_row[gone_slots]
        ids, texts, metadatas = list(base.ids), list(base.texts), list(base.metadatas)
        for row in sorted(removed_rows.tolist(), reverse=True):
            del ids[row], texts[row], metadatas[row]
        docs = dict(base.docs)
        for cid in removed:
            del docs[cid]
        for cid, item in added.items():
            docs[cid] = item
            ids.append(cid)
            texts.append(item.text)
            metadatas.append(item.metadata)
        model = scorer.derive(
            removed,
            [base.docs[cid] for cid in removed],
            gone_slots,
            removed_rows,
            list(added.items()),
            len(base.vocab),
        )
        if model.churn > max(MERGE_MIN, MERGE_SHARE * model.n_base):
            log.info("merging the BM25 index's changes into its base")
            return self._assemble(key, ids, docs, dict(base.vocab)), removed_rows, True
        return (
            _Built(
                key=key,
                ids=ids,
                texts=texts,
                metadatas=metadatas,
                model=model,
                docs=docs,
                vocab=base.vocab,
            ),
            removed_rows,
            False,
        )

    def _terms(self, text: str, metadata: Mapping[str, Any]) -> dict[str, int]:
        """A chunk's analysed terms and their counts (in order of first occurrence)."""
        return dict(
            Counter(self.analyzer(index_text(text, metadata, self.title_field, self.title_weight)))
        )

    @staticmethod
    def _doc_of(
        text: str, metadata: dict[str, Any], counts: Mapping[str, int], vocab: dict[str, int]
    ) -> _Doc:
        """A chunk with its `counts` as vocabulary ids; new terms are appended to `vocab`."""
        terms = np.empty((2, len(counts)), dtype=np.int32)
        # setdefault's default is evaluated first: a new term gets the next free id
        terms[0] = np.fromiter(
            (vocab.setdefault(t, len(vocab)) for t in counts), dtype=np.int32, count=len(counts)
        )
        terms[1] = np.fromiter(counts.values(), dtype=np.int32, count=len(counts))
        return _Doc(text, metadata, terms, int(terms[1].sum()))

    def _doc(self, record: StoreRecord, vocab: dict[str, int]) -> _Doc:
        """Analyse one chunk; new terms are appended to `vocab`."""
        text = record.text or ""
        metadata = dict(record.metadata)
        return self._doc_of(text, metadata, self._terms(text, metadata), vocab)

    def _assemble(
        self, key: tuple[str, int], ids: list[str], docs: dict[str, _Doc], vocab: dict[str, int]
    ) -> _Built:
        started = perf_counter()
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
        model = None
        if ids:
            model = Scorer.full(
                ids, terms, sizes, lengths, doc_freqs, vocab, self.k1, self.b, self.method
            )
        self.timings["assemble"] = perf_counter() - started
        return _Built(
            key=key,
            ids=ids,
            texts=[d.text for d in chosen],
            metadatas=[d.metadata for d in chosen],
            model=model,
            docs=dict(zip(ids, chosen, strict=True)),
            vocab=vocab,
        )

    # -- persistence ----------------------------------------------------------------------------
    def _root(self) -> Path | None:
        if self.directory is None:
            return None
        return self.directory

    def _pointer(self) -> _Pointer | None:
        """The published index when it was built with this configuration."""
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
            return _Pointer(
                str(current.get("dir", "")),
                (str(stored[0]), int(stored[1])),
                int(current.get("log_bytes", 0)),
            )
        except (TypeError, ValueError):
            return None

    def _load(self, pointer: _Pointer) -> _Built | None:
        """The persisted index `pointer` names (its base, then the first `log_bytes` of its
        delta log), or None when it is unreadable."""
        root = self._root()
        if root is None:
            return None
        folder = root / pointer.dir
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
            words = json.loads((folder / "vocab.json").read_text(encoding="utf-8"))
            if not isinstance(words, list) or not all(isinstance(w, str) for w in words):
                raise _Inconsistent("the vocabulary is not a list of terms")
            vocab = {w: n for n, w in enumerate(words)}
            if len(vocab) != len(words):
                raise _Inconsistent("the vocabulary repeats a term")
            _check_loaded(len(ids), terms, sizes, lengths, vocab)
            parts = np.split(terms, np.cumsum(sizes)[:-1], axis=1) if ids else []
            docs = {
                i: _Doc(t, m, part, int(n))
                for i, t, m, part, n in zip(ids, texts, metadatas, parts, lengths, strict=True)
            }
            if len(docs) != len(ids):
                raise _Inconsistent("a chunk id repeats")
            order = dict.fromkeys(ids)
            if pointer.log_bytes:
                with (folder / "log.jsonl").open("rb") as fh:
                    log_data = fh.read(pointer.log_bytes)
                if len(log_data) != pointer.log_bytes or not log_data.endswith(b"\n"):
                    raise _Inconsistent("the delta log is shorter than its pointer says")
                for line in log_data.splitlines():
                    self._replay(_loads(line), order, docs, vocab)
            built = self._assemble(pointer.key, list(order), docs, vocab)
        except Exception as exc:
            log.warning("BM25 index in %s is unreadable (%s); rebuilding", folder, exc)
            return None
        self._persisted = (built, pointer)
        return built

    def _replay(
        self,
        entry: dict[str, Any],
        order: dict[str, None],
        docs: dict[str, _Doc],
        vocab: dict[str, int],
    ) -> None:
        """Apply one line of a delta log (see `_append`) to a loading index."""
        for cid in entry["removed"]:
            del order[cid], docs[cid]
        for row in entry["added"]:
            cid = str(row["id"])
            if cid in docs:
                raise _Inconsistent(f"the delta log adds {cid!r} twice")
            counts = dict(zip(row["terms"], row["counts"], strict=True))
            docs[cid] = self._doc_of(row["text"], row["metadata"], counts, vocab)
            order[cid] = None

    def _save(self, built: _Built, base: _Built | None, change: _Change | None) -> None:
        """Persist `built`: appended to the published index's delta log when it was derived
        (`change`) from the version published (and the log is still small against its
        base), else in full. Either way `current.json` is replaced last, atomically: a crash
        leaves the previous index readable, never a mix."""
        root = self._root()
        if root is None:
            return
        try:
            root.mkdir(parents=True, exist_ok=True)
            with _flocked(root / "lock"):
                persisted = self._persisted
                pointer = self._pointer()
                if (
                    change is not None
                    and not change.merged
                    and base is not None
                    and persisted is not None
                    and persisted[0] is base
                    and persisted[1] == pointer
                    and self._append(built, change, persisted[1])
                ):
                    return
                if pointer is not None and pointer.key == built.key:
                    return  # another process published this very state
                self._save_full(root, built)
        except OSError as exc:
            log.warning("could not persist the BM25 index under %s: %s", root, exc)

    def _append(self, built: _Built, change: _Change, pointer: _Pointer) -> bool:
        """Append `change` to the published folder's delta log and point at it; False when
        the log has outgrown `LOG_SHARE` of its base (then the caller saves in full)."""
        root = self._root()
        if root is None:
            return False
        folder = root / pointer.dir
        base_bytes = (folder / "chunks.jsonl").stat().st_size
        rows = [
            {
                "id": cid,
                "text": built.docs[cid].text,
                "metadata": built.docs[cid].metadata,
                "terms": list(change.counts[cid]),
                "counts": list(change.counts[cid].values()),
            }
            for cid in change.added
        ]
        line = _dumps({"key": list(built.key), "removed": change.removed, "added": rows})
        if pointer.log_bytes + len(line) > max(LOG_MIN_BYTES, LOG_SHARE * base_bytes):
            return False
        with (folder / "log.jsonl").open("ab") as fh:
            fh.truncate(pointer.log_bytes)  # what a crash left after the published end
            fh.write(line)
            fh.flush()
            os.fsync(fh.fileno())
        after = _Pointer(pointer.dir, built.key, pointer.log_bytes + len(line))
        self._publish(root, after)
        self._persisted = (built, after)
        return True

    def _publish(self, root: Path, pointer: _Pointer) -> None:
        payload = {
            "dir": pointer.dir,
            "key": list(pointer.key),
            "log_bytes": pointer.log_bytes,
            "config": self._config_hash(),
        }
        pointer_tmp = root / f"current.json.{uuid.uuid4().hex[:12]}"
        pointer_tmp.write_text(json.dumps(payload), encoding="utf-8")
        os.replace(pointer_tmp, root / "current.json")

    def _save_full(self, root: Path, built: _Built) -> None:
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
        words = [""] * len(built.vocab)
        for word, n in built.vocab.items():
            words[n] = word
        (tmp / "vocab.json").write_text(json.dumps(words, ensure_ascii=False), encoding="utf-8")
        os.replace(tmp, root / name)
        pointer = _Pointer(name, built.key, 0)
        self._publish(root, pointer)
        self._persisted = (built, pointer)
        for old in root.iterdir():
            if old.name != name and old.name.startswith(("index-", "tmp-")):
                shutil.rmtree(old, ignore_errors=True)

    # -- search ---------------------------------------------------------------------------------
    def matching(self, built: _Built, where: Node) -> np.ndarray:
        """Which rows of `built` match `where`, by the copy's metadata (cached per filter).

        The rows are grouped once per version by the values of the fields `where` reads
        (`FieldGroups`, cached per field set and carried over to derived versions); a filter
        is then judged once per group and its verdicts spread over the rows. Every access
        filter reads the same fields (tenant, ACL), so after the first user's filter another
        user's costs a few hundred evaluations and one gather, not a pass over every chunk."""
        # repr keeps value types apart (True vs 1), which node equality would not.
        cache_key = repr(where)
        with self._lock:
            if self._built is built and cache_key in self._masks:
                self._masks.move_to_end(cache_key)
                return self._masks[cache_key][1]
        groups, members = self._grouping(built, tuple(sorted(set(fields_of(where)))))
        verdicts = np.array(groups.verdicts(where), dtype=bool)
        mask = verdicts[members]  # (an empty index: an empty mask)
        with self._lock:
            if self._built is built:
                self._masks[cache_key] = (where, mask)
                while len(self._masks) > MASK_CACHE_SIZE:
                    self._masks.popitem(last=False)
        return mask

    def _grouping(self, built: _Built, fields: tuple[str, ...]) -> tuple[FieldGroups, np.ndarray]:
        """The rows of `built` grouped by the values of `fields`, and each row's group."""
        with self._lock:
            cached = self._groupings.get(fields)
            if cached is not None and cached[0] is built:
                self._groupings.move_to_end(fields)
                return cached[1], cached[2]
        groups = FieldGroups(fields)
        members = np.array(groups.assign(built.metadatas), dtype=np.int32)
        with self._lock:
            if self._built is built and len(groups) <= GROUPING_MAX_GROUPS:
                self._groupings[fields] = (built, groups, members)
                while len(self._groupings) > GROUPING_CACHE_SIZE:
                    self._groupings.popitem(last=False)
        return groups, members

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
        rows, scores = self.search_rows(built, query, k, where)
        # the hits share the index's text and metadata objects (read-only: the guard replaces
        # both with the store's current record before anything leaves the search)
        ids, texts, metadatas = built.ids, built.texts, built.metadatas
        return [
            StoreHit(id=ids[i], text=texts[i], metadata=metadatas[i], score=score)
            for i, score in zip(rows, scores, strict=True)
        ]

    def search_rows(
        self, built: _Built, query: str, k: int, where: Node
    ) -> tuple[list[int], list[float]]:
        """`search` as rows of `built` and their scores, best first (no hit objects)."""
        if where is None:
            raise ValueError("KeywordIndex.search needs the effective (access) filter")
        if built.model is None:
            return [], []
        token_ids = built.model.get_tokens_ids(self.analyzer(query))
        if not token_ids:
            return [], []
        scores = np.asarray(built.model.get_scores_from_ids(token_ids), dtype=np.float64)
        mask = self.matching(built, where)
        candidates = np.flatnonzero(mask & (scores > 0.0))
        if candidates.size == 0:
            return [], []
        order = top_k(candidates, scores[candidates], k)
        return order.tolist(), scores[order].tolist()

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
    vocab: dict[str, int],
) -> None:
    """Raise `_Inconsistent` unless the persisted parts of an index fit together."""
    if terms.ndim != 2 or terms.shape[0] != 2 or sizes.shape != (n_docs,):
        raise _Inconsistent("the cached terms do not match the chunks")
    if lengths.shape != (n_docs,) or np.any(sizes < 0) or int(sizes.sum()) != terms.shape[1]:
        raise _Inconsistent("the cached terms do not match the chunks")
    if terms.shape[1] and (int(terms[0].min()) < 0 or int(terms[0].max()) >= len(vocab)):
        raise _Inconsistent("a cached term id is outside the vocabulary")


@contextlib.contextmanager
def _flocked(path: Path) -> Iterator[None]:
    """Hold an exclusive `fcntl` lock on `path` (one publisher per index folder)."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)
