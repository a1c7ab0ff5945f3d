"""Permission-aware search: the only read path to a store.

Retrieval is split in two roles:

* **Raw retrievers** (`RawRetriever`) find candidates for a query within a filter: dense
  (`DenseRetriever`, the store's vector query), keyword (`rag_app.retrieval.bm25`), fused
  (`rag_app.retrieval.hybrid`) or a store's native hybrid search. They never decide access.
* **One guard** (`PermissionGuard`) wraps any raw retriever and is what every reader calls
  (CLI, evaluation, chat chain, UI): it validates the caller's filter against the field
  catalog of the principal's own tenant, bounds k, builds the access filter (failing closed:
  any error returns nothing), runs the raw retriever with ``access AND caller`` as a
  pre-filter (so k is never starved) and the principal's tenant (stores with native tenant
  isolation use it as a first wall), and re-checks every hit before returning it.

The re-check judges a hit by the *store's current record*. Hits of a retriever that reads the
store itself (`RawRetriever.from_store`) are that record. Hits of a derived copy (the BM25
index keeps its own copy of every chunk) are fetched again by id from the store in one round
trip (`confirm_with_store`): a chunk the store no longer holds is dropped as stale, and text
and metadata are replaced by the store's, so a copy built before an ACL change or a delete (on
this host or another that shares the store) can never decide access. Dropped hits do not cost
places: the guard asks the retriever for more until k are allowed or it has no more.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from rag_app import monitoring
from rag_app.access.filters import FieldKind, Node, parse_filter, to_dict
from rag_app.access.permissions import Principal, can_read, effective_filter
from rag_app.embeddings import EmbeddingModel
from rag_app.errors import ConfigError, FilterError
from rag_app.retrieval.queries import QueryVectors
from rag_app.stores.base import StoreHit, StoreRecord, VectorStorePort

log = logging.getLogger(__name__)
audit = logging.getLogger("rag_app.audit")

FilterInput = Mapping[str, Any] | str | Node | None
# tenant -> that tenant's field catalog (name -> kind)
KnownFields = Callable[[str], Mapping[str, FieldKind]]
MAX_K = 1000
MAX_FETCH = 4000  # how deep the guard looks when hits were dropped


@dataclass(frozen=True)
class SearchResult:
    hits: list[StoreHit]
    effective_filter: dict[str, Any]
    dropped: int = 0  # hits removed by the re-check for access (should always be 0)
    stale: int = 0  # hits of a derived index that the store no longer holds (dropped too)
    denied: bool = False  # the access filter could not be built: nothing was searched
    retriever: str = "dense"  # dense | bm25 | hybrid (fused, or the store's own)
    # Per-hit details of hybrid retrieval (chunk id -> {"dense": score, "bm25": score, ...}).
    details: dict[str, dict[str, float]] = field(default_factory=dict)


@dataclass(frozen=True)
class RawHits:
    """What a raw retriever found, best first."""

    hits: list[StoreHit]
    details: dict[str, dict[str, float]] = field(default_factory=dict)


@runtime_checkable
class RawRetriever(Protocol):
    """Candidates for a query among the records matching `where`, best first (at most `k`).
    `where` always holds the access filter; `tenant` is the principal's tenant."""

    @property
    def name(self) -> str: ...

    @property
    def from_store(self) -> bool:
        """True when hits are the store's current records (no confirmation by id needed)."""
        ...

    def retrieve(self, query: str, k: int, where: Node, tenant: str) -> RawHits: ...


@runtime_checkable
class Searcher(Protocol):
    """What every reader calls: search as `principal`, narrowed by the caller's `filter`."""

    @property
    def name(self) -> str: ...

    @property
    def default_k(self) -> int: ...

    def search(
        self,
        principal: Principal,
        query: str,
        *,
        filter: FilterInput = None,
        k: int | None = None,
    ) -> SearchResult: ...

    def effective(self, principal: Principal, raw: FilterInput = None) -> dict[str, Any]: ...


class DenseRetriever:
    """The store's own vector query (the access filter runs inside it)."""

    name = "dense"
    from_store = True

    def __init__(
        self,
        store: VectorStorePort,
        embeddings: EmbeddingModel,
        vectors: QueryVectors | None = None,
    ) -> None:
        self.store = store
        self.embeddings = embeddings
        self.vectors = vectors if vectors is not None else QueryVectors(embeddings)

    def retrieve(self, query: str, k: int, where: Node, tenant: str) -> RawHits:
        return self.retrieve_vector(self.vectors(query), k, where, tenant)

    def retrieve_vector(self, vector: Sequence[float], k: int, where: Node, tenant: str) -> RawHits:
        return RawHits(self.store.query(vector, k, where, tenant=tenant))


def recheck(principal: Principal, hits: Sequence[StoreHit]) -> tuple[list[StoreHit], int]:
    """Drop (and log) every hit the principal may not read: (allowed, dropped)."""
    allowed: list[StoreHit] = []
    dropped = 0
    for hit in hits:
        try:
            ok = can_read(principal, hit.metadata)
        except Exception:
            ok = False
        if ok:
            allowed.append(hit)
        else:
            dropped += 1
            audit.error(
                "retrieval returned chunk %s (tenant=%r) outside %s's access; dropped",
                hit.id,
                hit.metadata.get("tenant") if isinstance(hit.metadata, Mapping) else None,
                principal.describe(),
            )
    return allowed, dropped


def confirm_with_store(
    principal: Principal, store: VectorStorePort, hits: Sequence[StoreHit]
) -> tuple[list[StoreHit], int, int]:
    """Re-check hits of a derived copy against the store's current records (one get by id):
    (allowed hits carrying the store's text and metadata, dropped for access, stale). A store
    error propagates: unconfirmed hits are never returned."""
    if not hits:
        return [], 0, 0
    current: dict[str, StoreRecord] = {
        r.id: r for r in store.get([h.id for h in hits], tenant=principal.tenant)
    }
    fresh: list[StoreHit] = []
    stale = 0
    for hit in hits:
        record = current.get(hit.id)
        if record is None:
            stale += 1
            log.info("index hit %s is no longer in the store; dropped", hit.id)
            continue
        fresh.append(
            StoreHit(id=hit.id, text=record.text or "", metadata=record.metadata, score=hit.score)
        )
    allowed, dropped = recheck(principal, fresh)
    return allowed, dropped, stale


class PermissionGuard:
    """The one guard around a raw retriever (see the module docstring)."""

    def __init__(
        self,
        raw: RawRetriever,
        store: VectorStorePort | None,
        *,
        known_fields: KnownFields | None = None,
        date_fields: tuple[str, ...] = (),
        default_k: int = 5,
    ) -> None:
        if store is None and not raw.from_store:
            raise ConfigError(
                f"the {raw.name} retriever reads a derived copy: the guard needs the store to "
                "confirm its hits against"
            )
        self.raw = raw
        self.store = store
        self._known_fields = known_fields
        self.date_fields = date_fields
        self.default_k = default_k
        self._store_backend: str | None = None  # the store's backend label, for metrics
        self._fields_cache: dict[str, dict[str, FieldKind]] = {}

    @property
    def name(self) -> str:
        return self.raw.name

    # -- the caller's filter ------------------------------------------------------------------
    def _fields(self, tenant: str, refresh: bool = False) -> Mapping[str, FieldKind] | None:
        if self._known_fields is None:
            return None
        if refresh or tenant not in self._fields_cache:
            self._fields_cache[tenant] = dict(self._known_fields(tenant))
        # An empty catalog still validates: no field is known to this tenant yet.
        return self._fields_cache[tenant]

    def parse_caller_filter(self, raw: FilterInput, principal: Principal) -> Node | None:
        """Validate a caller's filter against the field catalog of the principal's tenant
        (raises `FilterError` naming the problem)."""
        if raw is not None and not isinstance(raw, Mapping | str):
            return raw
        if not raw:
            return None
        tenant = principal.tenant if isinstance(principal, Principal) else ""
        try:
            return parse_filter(
                raw, known_fields=self._fields(tenant), date_fields=self.date_fields
            )
        except FilterError:
            # The field catalog may have grown since it was cached (another process ingested).
            return parse_filter(
                raw, known_fields=self._fields(tenant, refresh=True), date_fields=self.date_fields
            )

    def effective(self, principal: Principal, raw: FilterInput = None) -> dict[str, Any]:
        """The filter a query would run with (for display). Raises on a bad caller filter."""
        return to_dict(effective_filter(principal, self.parse_caller_filter(raw, principal)))

    def _check_k(self, k: int | None) -> int:
        k = self.default_k if k is None else k
        if not isinstance(k, int) or isinstance(k, bool) or not 1 <= k <= MAX_K:
            raise FilterError(f"k must be an integer between 1 and {MAX_K}, got {k!r}")
        return k

    def _access(self, principal: Principal, caller: Node | None) -> Node | None:
        """Access filter AND caller filter; None (and an audit log) when it cannot be built.
        A reserved field in the caller's filter raises `FilterError`."""
        try:
            return effective_filter(principal, caller)
        except FilterError:
            raise
        except Exception:
            audit.exception("access filter could not be built for %r; returning nothing", principal)
            return None

    def _denied(self) -> SearchResult:
        return SearchResult(hits=[], effective_filter={}, denied=True, retriever=self.name)

    def _guard(
        self, principal: Principal, filter: FilterInput, k: int | None
    ) -> tuple[int, Node] | None:
        """(k, access AND caller filter), or None when the access filter cannot be built."""
        caller = self.parse_caller_filter(filter, principal)
        checked_k = self._check_k(k)
        where = self._access(principal, caller)
        if where is None:
            return None
        return checked_k, where

    # -- search -------------------------------------------------------------------------------
    def search(
        self,
        principal: Principal,
        query: str,
        *,
        filter: FilterInput = None,
        k: int | None = None,
    ) -> SearchResult:
        return self._observed(
            k,
            lambda: self._guard(principal, filter, k),
            lambda n, where: self.raw.retrieve(query, n, where, principal.tenant),
            principal,
        )

    def _store_label(self) -> str:
        """The store backend, for metrics (cached; never raises)."""
        label = self._store_backend
        if label is None:
            store = self.store if self.store is not None else getattr(self.raw, "store", None)
            try:
                label = str(store.info.backend) if store is not None else "none"
            except Exception:
                label = "unknown"
            self._store_backend = label
        return label

    def _observed(
        self,
        k: int | None,
        guard: Callable[[], tuple[int, Node] | None],
        retrieve: Callable[[int, Node], RawHits],
        principal: Principal,
    ) -> SearchResult:
        """Guard, collect and record metrics (latency, hits, empty, dropped, stale, errors, the
        slow-query line). Recording never changes the result or swallows an error."""
        started = time.perf_counter()
        timing = [0.0, 0]  # seconds in the raw retriever, rounds

        def fetch(n: int, where: Node) -> RawHits:
            t = time.perf_counter()
            try:
                return retrieve(n, where)
            finally:
                timing[0] += time.perf_counter() - t
                timing[1] += 1

        try:
            guarded = guard()
            if guarded is None:
                result = self._denied()
            else:
                checked_k, where = guarded
                result = self._collect(principal, checked_k, where, lambda n: fetch(n, where))
        except Exception as exc:
            monitoring.metrics().record_search_error(
                self._store_label(), self.name, exc, time.perf_counter() - started
            )
            raise
        monitoring.metrics().record_search(
            self._store_label(),
            self.name,
            result,
            time.perf_counter() - started,
            k=k if k is not None else self.default_k,
            retrieve_seconds=timing[0],
            rounds=int(timing[1]),
        )
        return result

    def _collect(
        self, principal: Principal, k: int, where: Node, fetch: Callable[[int], RawHits]
    ) -> SearchResult:
        """Ask the raw retriever for k hits, re-check them, and ask for more (doubling) while
        hits were dropped and it may have more."""
        n = k
        while True:
            found = fetch(n)
            if self.raw.from_store or self.store is None:
                allowed, dropped = recheck(principal, found.hits)
                stale = 0
            else:
                allowed, dropped, stale = confirm_with_store(principal, self.store, found.hits)
            if len(allowed) >= k or len(found.hits) < n or n >= MAX_FETCH:
                break
            n = min(n * 2 + k, MAX_FETCH)
        allowed = allowed[:k]
        return SearchResult(
            hits=allowed,
            effective_filter=to_dict(where),
            dropped=dropped,
            stale=stale,
            retriever=self.name,
            details={h.id: found.details[h.id] for h in allowed if h.id in found.details},
        )


class SecureSearch(PermissionGuard):
    """Dense retrieval behind the guard (the access filter runs inside the store's query)."""

    raw: DenseRetriever

    def __init__(
        self,
        store: VectorStorePort,
        embeddings: EmbeddingModel,
        *,
        known_fields: KnownFields | None = None,
        date_fields: tuple[str, ...] = (),
        default_k: int = 5,
        vectors: QueryVectors | None = None,
    ) -> None:
        super().__init__(
            DenseRetriever(store, embeddings, vectors),
            store,
            known_fields=known_fields,
            date_fields=date_fields,
            default_k=default_k,
        )
        self.embeddings = embeddings

    def search_by_vector(
        self,
        principal: Principal,
        vector: list[float],
        *,
        filter: FilterInput = None,
        k: int | None = None,
    ) -> SearchResult:
        return self._observed(
            k,
            lambda: self._guard(principal, filter, k),
            lambda n, where: self.raw.retrieve_vector(vector, n, where, principal.tenant),
            principal,
        )
