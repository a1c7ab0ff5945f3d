"""The Chroma the store-ops tests run on: embedded (under each App's data dir) and a real
Chroma server on loopback (`chroma_server_url`, one for the whole session)."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

EMBEDDED, SERVER = "chroma", "chroma-server"


class ChromaPlace:
    """Where a test's collections live. The ingest state is a local sqlite file under the App's
    data dir either way, but the server is shared by the whole session: there every App gets a
    collection of its own, so no test sees another's data.

    Server collections are left in place, not dropped: Chroma 1.5's `delete_collection` leaves
    the list-valued metadata of the records behind, and the next records written (to any
    collection) inherit it (chroma-core/chroma#7594; see test_lifecycle)."""

    def __init__(self, url: str | None) -> None:
        self.url = url
        self.kind = SERVER if url else EMBEDDED
        self.made: list[str] = []

    def name(self, wanted: str) -> str:
        """`wanted` on embedded Chroma; on the server a fresh name (or `wanted` again, if this
        place made it)."""
        if self.url is None or wanted in self.made:
            return wanted
        self.made.append(f"t{uuid.uuid4().hex[:16]}")
        return self.made[-1]

    def options(self, collection: str | None = None) -> dict[str, Any]:
        """`Settings` keywords that put an App's collection here."""
        if self.url is None:
            return {} if collection is None else {"collection": collection}
        return {"store_options": {"url": self.url}, "collection": self.name(collection or "")}


def _place(request: pytest.FixtureRequest, kind: str) -> ChromaPlace:
    return ChromaPlace(request.getfixturevalue("chroma_server_url") if kind == SERVER else None)


@pytest.fixture(
    scope="module",
    params=[EMBEDDED, pytest.param(SERVER, marks=[pytest.mark.server, pytest.mark.slow])],
)
def chroma(request: pytest.FixtureRequest) -> ChromaPlace:
    """Every test that uses it runs on embedded Chroma and on the Chroma server. Pin one with
    ``@pytest.mark.parametrize("chroma", ["chroma"], indirect=True)``."""
    return _place(request, request.param)


@pytest.fixture(scope="module")
def other_chroma(request: pytest.FixtureRequest, chroma: ChromaPlace) -> ChromaPlace:
    """The other kind than `chroma`: the server for embedded, embedded for the server."""
    return _place(request, EMBEDDED if chroma.url else SERVER)


STORES = [
    EMBEDDED,
    pytest.param(SERVER, marks=[pytest.mark.server, pytest.mark.slow]),
    pytest.param("pinecone", marks=pytest.mark.server),
    pytest.param("weaviate", marks=pytest.mark.server),
]


@pytest.fixture(params=STORES)
def store_settings(request: pytest.FixtureRequest, tmp_path: Any) -> Any:
    """`Settings` keywords for one App on each store: embedded Chroma, the Chroma server, and
    the Pinecone and Weaviate emulators (started for the test)."""
    kind = request.param
    data = {"data_dir": tmp_path / "data"}
    if kind in (EMBEDDED, SERVER):
        yield {**data, **_place(request, kind).options("ops_col")}
        return
    if kind == "pinecone":
        pytest.importorskip("pinecone", reason="pinecone is not installed")
        from tests.emulators.pinecone_server import PineconeEmulator

        with PineconeEmulator(api_key="ops-key") as emu:
            yield {
                **data,
                "store": "pinecone",
                "store_options": {
                    "api_key": "ops-key",
                    "controller_host": emu.url,
                    "host": None,
                    "index": "ops-test",
                    "retry_base_delay_s": 0.001,
                },
            }
        return
    pytest.importorskip("weaviate", reason="weaviate-client is not installed")
    from tests.emulators.weaviate_server import WeaviateEmulator

    with WeaviateEmulator() as emu:
        yield {
            **data,
            "store": "weaviate",
            "store_options": {"url": emu.url, "grpc_port": emu.grpc_port},
            "collection": "ops_col",
        }
