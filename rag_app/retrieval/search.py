"""Permission-aware search: the only read path to a store.

Every query ANDs the principal's access filter with the caller's filter inside the store
query (pre-filter, so k is never starved), then re-checks every hit and drops (and logs) any
that the principal may not read. Any error while building the access filter or checking hits
returns no documents. Errors in the caller's own filter are reported (`FilterError`): they
are the caller's to fix, and they can never widen access.

`Searcher` is the one entry point every reader uses (CLI, evaluation, chat chain): dense
`SecureSearch` here, `KeywordSearch` (BM25, `rag_app.retrieval.bm25`) and `HybridSearch`
(`rag_app.retrieval.hybrid`) implement it with the same guard (`GuardedSearch`).

The re-check judges a hit by the *store's current record*. Dense hits are that record (the
store just answered the query). Hits from a derived copy (the BM25 index keeps its own copy
of every chunk) are confirmed with one get-by-id round trip (`confirm_with_store`): a chunk
the store no longer holds is dropped as stale, and text and metadata are replaced by the
store's, so a copy built before an ACL change or a delete (on this host or another one that
shares the store) can never decide access.

The caller's filter is validated against the field catalog of the principal's own tenant:
another tenant's field names are neither listed in errors nor accepted.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from rag_app.access.filters import FieldKind, Node, parse_filter, to_dict
from rag_app.access.permissions import Principal, can_read, effective_filter
from rag_app.embeddings import EmbeddingModel
from rag_app.errors import FilterError
from rag_app.stores.base import StoreHit, StoreRecord, VectorStorePort

log = logging.getLogger(__name__)
audit = logging.getLogger("rag_app.audit")

FilterInput = Mapping[str, Any] | str | Node | None
# tenant -> that tenant's field catalog (name -> kind)
KnownFields = Callable[[str], Mapping[str, FieldKind]]


@dataclass(frozen=True)
class SearchResult:
    hits: list[StoreHit]
    effective_filter: dict[str, Any]
    dropped: int = 0  # hits removed by the per-hit re-check (should always be 0)
    stale: int = 0  # hits of a derived index that the store no longer holds (dropped too)
    denied: bool = False  # the access filter could not be built: nothing was searched
    retriever: str = "dense"  # dense | bm25 | hybrid
    # Per-hit details of hybrid retrieval (chunk id -> {"dense": score, "bm25": score, ...}).
    details: dict[str, dict[str, float]] = field(default_factory=dict)


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


class GuardedSearch:
    """The guard shared by every searcher: caller-filter validation, k bounds, the access
    filter (fail closed) and the per-hit re-check."""

    name = "guarded"

    def __init__(
        self,
        *,
        known_fields: KnownFields | None = None,
        date_fields: tuple[str, ...] = (),
        default_k: int = 5,
    ) -> None:
        self._known_fields = known_fields
        self.date_fields = date_fields
        self.default_k = default_k
        self._fields_cache: dict[str, dict[str, FieldKind]] = {}

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
        if not isinstance(k, int) or isinstance(k, bool) or not 1 <= k <= 1000:
            raise FilterError(f"k must be an integer between 1 and 1000, got {k!r}")
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
    ) -> tuple[int, Node, Node | None] | None:
        """The prologue of every search: (k, access AND caller filter, parsed caller filter),
        or None when the access filter cannot be built (the caller returns `_denied()`)."""
        caller = self.parse_caller_filter(filter, principal)
        checked_k = self._check_k(k)
        where = self._access(principal, caller)
        if where is None:
            return None
        return checked_k, where, caller

    def search(
        self,
        principal: Principal,
        query: str,
        *,
        filter: FilterInput = None,
        k: int | None = None,
    ) -> SearchResult:
        guarded = self._guard(principal, filter, k)
        if guarded is None:
            return self._denied()
        checked_k, where, caller = guarded
        return self._search(principal, query, checked_k, where, caller)

    def _search(
        self, principal: Principal, query: str, k: int, where: Node, caller: Node | None
    ) -> SearchResult:
        """Search with the guard's filter already built (`where` holds the access filter)."""
        raise NotImplementedError

    def _result(self, principal: Principal, hits: Sequence[StoreHit], where: Node) -> SearchResult:
        """The epilogue: re-check every hit, report the effective filter."""
        allowed, dropped = self.recheck(principal, hits)
        return SearchResult(
            hits=allowed, effective_filter=to_dict(where), dropped=dropped, retriever=self.name
        )

    @staticmethod
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
                    "store returned chunk %s (tenant=%r) outside %s's access; dropped",
                    hit.id,
                    hit.metadata.get("tenant") if isinstance(hit.metadata, Mapping) else None,
                    principal.describe(),
                )
        return allowed, dropped

    @classmethod
    def confirm_with_store(
        cls,
        principal: Principal,
        store: VectorStorePort,
        ranked: Sequence[StoreHit],
        k: int,
    ) -> tuple[list[StoreHit], int, int]:
        """Re-check hits of a derived index against the store's current records, in rank
        order, until `k` are allowed: (allowed hits carrying the store's text and metadata,
        dropped for access, stale). Usually one round trip of `k` ids; more only when hits
        were dropped. A store error propagates: unconfirmed hits are never returned."""
        allowed: list[StoreHit] = []
        dropped = stale = 0
        pos = 0
        while len(allowed) < k and pos < len(ranked):
            window = ranked[pos : pos + max(k - len(allowed), 1)]
            pos += len(window)
            current: dict[str, StoreRecord] = {r.id: r for r in store.get([h.id for h in window])}
            fresh: list[StoreHit] = []
            for hit in window:
                record = current.get(hit.id)
                if record is None:
                    stale += 1
                    log.info("index hit %s is no longer in the store; dropped", hit.id)
                    continue
                fresh.append(
                    StoreHit(
                        id=hit.id, text=record.text or "", metadata=record.metadata, score=hit.score
                    )
                )
            ok, denied = cls.recheck(principal, fresh)
            allowed.extend(ok)
            dropped += denied
        return allowed[:k], dropped, stale


class SecureSearch(GuardedSearch):
    """Dense retrieval: the access filter runs inside the vector store's query."""

    name = "dense"

    def __init__(
        self,
        store: VectorStorePort,
        embeddings: EmbeddingModel,
        *,
        known_fields: KnownFields | None = None,
        date_fields: tuple[str, ...] = (),
        default_k: int = 5,
    ) -> None:
        super().__init__(known_fields=known_fields, date_fields=date_fields, default_k=default_k)
        self.store = store
        self.embeddings = embeddings

    def _search(
        self, principal: Principal, query: str, k: int, where: Node, caller: Node | None
    ) -> SearchResult:
        return self._result(
            principal, self.store.query(self.embeddings.embed_query(query), k, where), where
        )

    def search_by_vector(
        self,
        principal: Principal,
        vector: list[float],
        *,
        filter: FilterInput = None,
        k: int | None = None,
    ) -> SearchResult:
        guarded = self._guard(principal, filter, k)
        if guarded is None:
            return self._denied()
        checked_k, where, _ = guarded
        return self._result(principal, self.store.query(vector, checked_k, where), where)
