"""Embedded Chroma (`PersistentClient`) against the store spec."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from rag_app.stores.base import VectorStorePort
from rag_app.stores.chroma import ChromaStore
from tests.conformance.store_conformance import StoreConformance
from tests.stores.chroma_known_failures import CHROMA_KNOWN_FAILURES


class TestChromaEmbedded(StoreConformance):
    known_failures = CHROMA_KNOWN_FAILURES

    @pytest.fixture(scope="class")
    @classmethod
    def store_factory(
        cls, tmp_path_factory: pytest.TempPathFactory
    ) -> Iterator[Callable[[int], VectorStorePort]]:
        root = tmp_path_factory.mktemp("chroma-embedded")
        opened: list[ChromaStore] = []

        def factory(dimension: int) -> VectorStorePort:
            store = ChromaStore(
                path=root / "chroma",
                collection=f"c{len(opened):04d}-d{dimension}",
                dimension=dimension,
                embedding_model="fake",
            )
            opened.append(store)
            return store

        yield factory
        for store in opened:
            store.close()

    @pytest.fixture
    def reopen_store(self) -> Callable[..., VectorStorePort]:
        def reopen(
            store: VectorStorePort,
            *,
            dimension: int | None = None,
            embedding_model: str | None = None,
        ) -> VectorStorePort:
            return ChromaStore(
                path=Path(store.info.location),
                collection=store.info.collection,
                dimension=dimension or store.info.dimension,
                embedding_model=embedding_model or store.info.embedding_model,
            )

        return reopen
