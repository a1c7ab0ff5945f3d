"""The store port: a small core protocol every vector store adapter implements, plus optional
capabilities an adapter declares by implementing them.

Adapters receive vectors (embedding happens above them) and filters in the portable grammar
(`rag_app.access.filters`), which each adapter translates to its native syntax. Callers never
pass native filters, so one access-control implementation covers every store.

**Tenants.** Every read names the tenant it is for (`tenant=`), and every record carries its
tenant in its metadata. A store with native isolation (Pinecone namespaces, Weaviate tenants)
keeps each tenant's records apart and searches only the named tenant; a store without it
(Chroma) adds ``tenant == <tenant>`` to the query. The portable access filter, which also
names the tenant, still runs inside every query: two walls, not one. ``tenant=None`` is for
operators and tests: `count`, `records` and `delete` then cover every tenant, while what a
query without a tenant searches is store-specific (Chroma: everything; Pinecone: the default
namespace; Weaviate: every tenant). That is why every permission-aware search names it.

**Capabilities** (`Scannable`, `VectorScannable`, `ChangeTracking`, `ChangeJournaling`,
`NativeHybrid`, `Administrable`): callers
ask with `isinstance(store, Capability)` and fall back, or call `scannable`, `indexable` or
`native_hybrid`, which give a clear error when the store lacks one.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, cast, runtime_checkable

from rag_app.access.filters import Node
from rag_app.errors import ConfigError

Metadata = dict[str, Any]
# The metrics a created collection may use (each store accepts its own subset).
CollectionMetric = Literal["cosine", "dotproduct"]


@dataclass(frozen=True)
class StoreHit:
    id: str
    text: str
    metadata: Metadata
    score: float  # similarity, higher is better (cosine similarity for normalised vectors)


@dataclass(frozen=True)
class StoreRecord:
    id: str
    metadata: Metadata
    text: str | None = None


@dataclass(frozen=True)
class StoreInfo:
    backend: str
    location: str
    collection: str
    dimension: int
    embedding_model: str
    extra: Mapping[str, Any] = field(default_factory=dict)


@runtime_checkable
class VectorStorePort(Protocol):
    """The core every store implements."""

    @property
    def info(self) -> StoreInfo: ...

    def upsert(
        self,
        ids: Sequence[str],
        texts: Sequence[str],
        vectors: Sequence[Sequence[float]],
        metadatas: Sequence[Metadata],
    ) -> None:
        """Insert or replace records by id (idempotent; metadata is replaced, not merged).
        Each record goes to the tenant named by its metadata's ``tenant``."""
        ...

    def delete(self, ids: Sequence[str], *, tenant: str | None = None) -> None:
        """Delete records by id; unknown ids are ignored. Without a tenant, a partitioned
        store deletes the ids from whichever tenant holds them."""
        ...

    def query(
        self, vector: Sequence[float], k: int, where: Node | None, *, tenant: str | None = None
    ) -> list[StoreHit]:
        """Top-k by similarity among `tenant`'s records matching `where` (a pre-filter,
        applied inside the store's search so that k is never starved)."""
        ...

    def get(self, ids: Sequence[str], *, tenant: str | None = None) -> list[StoreRecord]:
        """The current records (with text) of those `ids` that exist, in one round trip.
        Used to re-check hits of derived indexes against the store's current metadata. A
        partitioned store looks only in `tenant`'s partition; one without partitions returns
        the records wherever they are (the caller re-checks them either way)."""
        ...

    def count(self, *, tenant: str | None = None) -> int:
        """Records of `tenant` (None: all records)."""
        ...

    def close(self) -> None: ...


@runtime_checkable
class Scannable(Protocol):
    """The store can list its records (keyword index builds, stats fallbacks, export)."""

    def records(
        self, where: Node | None = None, *, tenant: str | None = None, with_text: bool = False
    ) -> Iterator[StoreRecord]: ...


@runtime_checkable
class VectorScannable(Protocol):
    """The store can list its records with their text *and vectors* (export, migration).
    Yields ``(record, vector)`` with ``record.text`` set; `tenant` None: every tenant."""

    def records_with_vectors(
        self, *, tenant: str | None = None
    ) -> Iterator[tuple[StoreRecord, list[float]]]: ...


@runtime_checkable
class ChangeTracking(Protocol):
    """The store keeps a token that every write replaces, visible to every host."""

    def change_token(self) -> str: ...


@runtime_checkable
class ChangeJournaling(Protocol):
    """Optional, next to `ChangeTracking`: the store can tell which ids changed between two
    of its change tokens, and how many writes went through this very object.

    `changes_since(token, until)`: every id upserted or deleted between the store's state at
    `token` and at `until` (re-read them with `get`: an id absent there was deleted), or None
    whenever the store cannot vouch that the set is complete (the caller then scans). `get`
    without a tenant must find these ids in any tenant. `local_writes`: a counter that every
    write or delete through this object moves (also a failed one), so that a derived copy in
    the same process may read the change token less often and still see its own writes at
    once."""

    def changes_since(self, token: str, until: str) -> frozenset[str] | None: ...

    @property
    def local_writes(self) -> int: ...


@runtime_checkable
class NearestIds(Protocol):
    """The store can answer a vector query with ids and scores only, over every record and
    without a filter (cheaper than `query` where reading metadata dominates). Its answer
    decides nothing on its own: the caller filters with a copy of the metadata and confirms
    what it keeps against the store."""

    def nearest_ids(self, vector: Sequence[float], k: int) -> list[tuple[str, float]]:
        """The ids and scores of the k nearest records, over every record."""
        ...

    def vectors_of(self, ids: Sequence[str]) -> Any:
        """The stored vectors of `ids` in that order (a float32 array, one row each); a
        `StoreError` when any id is not in the store."""
        ...


@runtime_checkable
class NativeHybrid(Protocol):
    """The store fuses keyword and vector search itself (Weaviate hybrid, Pinecone
    sparse-dense). `alpha` weighs the vector side (1.0: vector only)."""

    def hybrid_query(
        self,
        text: str,
        vector: Sequence[float],
        k: int,
        where: Node | None,
        *,
        tenant: str | None,
        alpha: float,
    ) -> list[StoreHit]: ...


@dataclass(frozen=True)
class CollectionInfo:
    """One collection / index of a store's server, as `rag-app stores` shows it.
    `per_tenant` maps app tenant (or namespace) -> records; `embedding_model` and `dimension`
    are those it was built with (None where the store does not record them)."""

    name: str
    dimension: int | None
    metric: str | None
    count: int
    per_tenant: Mapping[str, int] = field(default_factory=dict)
    embedding_model: str | None = None
    deletion_protection: bool = False
    filterable_fields: Sequence[str] = ()
    extra: Mapping[str, Any] = field(default_factory=dict)


@runtime_checkable
class Administrable(Protocol):
    """The store can list, describe, create and delete collections (indexes) on its server
    (`rag-app stores ...`). Names are the store's own (a Pinecone index, a Weaviate class)."""

    def list_collections(self) -> list[CollectionInfo]: ...

    def describe_collection(self, name: str) -> CollectionInfo:
        """A `ConfigError` when `name` does not exist."""
        ...

    def create_collection(
        self,
        name: str,
        *,
        dimension: int,
        embedding_model: str,
        metric: str = "cosine",
        deletion_protection: bool = False,
        filterable_fields: Mapping[str, str] | None = None,
        cloud: str | None = None,
        region: str | None = None,
    ) -> CollectionInfo:
        """Create an empty collection; `filterable_fields` (field -> catalog kind) declares the
        fields to index for filtering where the store supports it. `ConfigError` when it exists."""
        ...

    def set_deletion_protection(self, name: str, enabled: bool) -> None: ...

    def delete_collection(self, name: str) -> None:
        """Delete the collection and every record in it; `ConfigError` while deletion
        protection is on."""
        ...


@runtime_checkable
class IndexableStore(VectorStorePort, Scannable, ChangeTracking, Protocol):
    """What a derived index (BM25) needs: scan the records and notice changes."""


def _check(store: object, capability: type, purpose: str) -> None:
    if not isinstance(store, capability):
        backend = getattr(getattr(store, "info", None), "backend", type(store).__name__)
        raise ConfigError(
            f"the {backend} store cannot {purpose}: it lacks the {capability.__name__} capability"
        )


def scannable(store: object, purpose: str) -> Scannable:
    """`store` as `Scannable`, or a `ConfigError` naming what is missing and what for."""
    _check(store, Scannable, purpose)
    return cast(Scannable, store)


def indexable(store: object, purpose: str) -> IndexableStore:
    """`store` as `IndexableStore` (scanning and a change token), or a `ConfigError`."""
    _check(store, IndexableStore, purpose)
    return cast(IndexableStore, store)


def administrable(store: object, purpose: str) -> Administrable:
    """`store` as `Administrable`, or a `ConfigError`."""
    _check(store, Administrable, purpose)
    return cast(Administrable, store)


def native_hybrid(store: object, purpose: str) -> NativeHybrid:
    """`store` as `NativeHybrid`, or a `ConfigError`."""
    _check(store, NativeHybrid, purpose)
    return cast(NativeHybrid, store)
