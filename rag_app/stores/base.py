"""The store port: the one small protocol every vector store adapter implements.

Adapters receive vectors (embedding happens above them) and filters in the portable grammar
(`rag_app.access.filters`), which each adapter translates to its native syntax. Callers
never pass native filters, so one access-control implementation covers every store.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from rag_app.access.filters import Node

Metadata = dict[str, Any]


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
    """What the rest of the application needs from a vector store."""

    @property
    def info(self) -> StoreInfo: ...

    def upsert(
        self,
        ids: Sequence[str],
        texts: Sequence[str],
        vectors: Sequence[Sequence[float]],
        metadatas: Sequence[Metadata],
    ) -> None:
        """Insert or replace records by id (idempotent)."""
        ...

    def delete(self, ids: Sequence[str]) -> None:
        """Delete records by id; unknown ids are ignored."""
        ...

    def query(self, vector: Sequence[float], k: int, where: Node | None) -> list[StoreHit]:
        """Top-k by similarity among records matching `where` (a pre-filter, applied inside
        the store's search so that k is never starved)."""
        ...

    def get(self, ids: Sequence[str]) -> list[StoreRecord]:
        """The current records (with text) of those `ids` that exist, in one round trip.
        Used to re-check hits of derived indexes against the store's current metadata."""
        ...

    def change_token(self) -> str:
        """An opaque token that changes whenever any writer changes the store (seen by every
        host that shares it); derived indexes compare it to decide whether they are stale."""
        ...

    def records(
        self, where: Node | None = None, *, with_text: bool = False
    ) -> Iterator[StoreRecord]:
        """Iterate over records matching `where` (for stats, deletes and keyword indexes)."""
        ...

    def count(self) -> int: ...

    def close(self) -> None: ...
