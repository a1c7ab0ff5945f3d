"""Chroma server (`HttpClient` to a loopback `chroma run`) against the store spec."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from rag_app.stores.base import VectorStorePort
from rag_app.stores.chroma import ChromaStore
from tests.conformance.store_conformance import StoreConformance
from tests.stores.chroma_known_failures import CHROMA_KNOWN_FAILURES

pytestmark = [pytest.mark.server, pytest.mark.slow]


class TestChromaServer(StoreConformance):
    known_failures = CHROMA_KNOWN_FAILURES

    @pytest.fixture(scope="class")
    @classmethod
    def store_factory(cls, chroma_server_url: str) -> Iterator[Callable[[int], VectorStorePort]]:
        opened: list[ChromaStore] = []

        def factory(dimension: int) -> VectorStorePort:
            store = ChromaStore(
                url=chroma_server_url,
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
        """A second client of the same server collection."""

        def reopen(
            store: VectorStorePort,
            *,
            dimension: int | None = None,
            embedding_model: str | None = None,
        ) -> VectorStorePort:
            return ChromaStore(
                url=store.info.location,
                collection=store.info.collection,
                dimension=dimension or store.info.dimension,
                embedding_model=embedding_model or store.info.embedding_model,
            )

        return reopen

    def test_info_names_the_server(
        self, store_factory: Callable[[int], VectorStorePort], chroma_server_url: str
    ) -> None:
        store = store_factory(4)
        assert store.info.backend == "chroma-server"
        assert store.info.location == chroma_server_url
