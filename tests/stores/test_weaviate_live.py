"""WeaviateStore against a real Weaviate: the same conformance suite as the emulator.

Skipped unless ``WEAVIATE_URL`` is set (e.g. ``http://127.0.0.1:8080`` for a local Docker
server, or ``https://<cluster>.weaviate.cloud``); ``WEAVIATE_API_KEY`` is sent when set, and
``WEAVIATE_GRPC_PORT`` / ``WEAVIATE_GRPC_URL`` override the gRPC address (default: port 50051
on the URL's host, or Weaviate Cloud's gRPC host). Every collection this module creates is
named ``RagConf<random>_...`` and deleted at the end.

    WEAVIATE_URL=http://127.0.0.1:8080 pytest -q tests/stores/test_weaviate_live.py
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

pytest.importorskip("weaviate", reason="weaviate-client is not installed")

from rag_app.stores.base import VectorStorePort
from rag_app.stores.weaviate import WeaviateStore
from tests.conformance.store_conformance import StoreConformance
from tests.stores.test_weaviate_emulated import WEAVIATE_KNOWN_FAILURES

URL = os.environ.get("WEAVIATE_URL")

pytestmark = [
    pytest.mark.server,
    pytest.mark.skipif(
        not URL,
        reason="live Weaviate suite: set WEAVIATE_URL (and WEAVIATE_API_KEY for a secured or "
        "Weaviate Cloud server) to run it",
    ),
]


def _open(collection: str, *, dimension: int, embedding_model: str) -> WeaviateStore:
    grpc_port = os.environ.get("WEAVIATE_GRPC_PORT")
    return WeaviateStore(
        url=URL or "",
        collection=collection,
        dimension=dimension,
        embedding_model=embedding_model,
        grpc_port=int(grpc_port) if grpc_port else None,
        grpc_url=os.environ.get("WEAVIATE_GRPC_URL") or None,
        api_key=os.environ.get("WEAVIATE_API_KEY") or None,
    )


class TestWeaviateLive(StoreConformance):
    known_failures = WEAVIATE_KNOWN_FAILURES

    @pytest.fixture(scope="class")
    @classmethod
    def store_factory(cls) -> Iterator[Callable[[int], VectorStorePort]]:
        prefix = f"RagConf{uuid.uuid4().hex[:8]}"
        opened: list[WeaviateStore] = []

        def factory(dimension: int) -> VectorStorePort:
            name = f"{prefix}_{len(opened):04d}_d{dimension}"
            store = _open(name, dimension=dimension, embedding_model="fake")
            opened.append(store)
            return store

        yield factory
        if opened:
            client: Any = opened[0]._client
            for store in opened:
                with contextlib.suppress(Exception):  # best-effort clean-up
                    client.collections.delete(store.info.collection)
        for store in opened:
            store.close()

    @pytest.fixture
    def reopen_store(self) -> Iterator[Callable[..., VectorStorePort]]:
        opened: list[WeaviateStore] = []

        def reopen(
            store: VectorStorePort,
            *,
            dimension: int | None = None,
            embedding_model: str | None = None,
        ) -> VectorStorePort:
            again = _open(
                store.info.collection,
                dimension=dimension or store.info.dimension,
                embedding_model=embedding_model or store.info.embedding_model,
            )
            opened.append(again)
            return again

        yield reopen
        for store in opened:
            store.close()
