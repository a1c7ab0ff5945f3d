"""The whole application (ingest, incremental re-ingest, permission-aware search with every
retriever, delete by source, stats) with RAG_STORE=pinecone, against the loopback emulator,
configured by settings only."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from rag_app.access.permissions import Principal
from rag_app.app import App
from rag_app.settings import Settings
from rag_app.stores.base import NativeHybrid
from rag_app.stores.pinecone import META_NAMESPACE
from tests.emulators.pinecone_server import PineconeEmulator
from tests.fakes import HashEmbeddings

pytestmark = [pytest.mark.server]

API_KEY = "app-test-key"


@pytest.fixture(scope="module")
def pinecone_emulator() -> Iterator[PineconeEmulator]:
    with PineconeEmulator(api_key=API_KEY) as emu:
        yield emu


def _corpus(root: Path) -> Path:
    corpus = root / "corpus"
    corpus.mkdir()
    (corpus / "pub.md").write_text(
        "---\ntitle: P\ntenant: acme\nacl: [public]\nyear: 2021\n---\nrobot specs and gears"
    )
    (corpus / "hr.md").write_text(
        "---\ntitle: H\ntenant: acme\nacl: [group:hr]\nyear: 2022\n---\nrobot pay and salaries"
    )
    (corpus / "g.md").write_text(
        "---\ntitle: G\ntenant: globex\nacl: [public]\nyear: 2020\n---\nrobot factory tour"
    )
    return corpus


def _settings(tmp_path: Path, emu: PineconeEmulator, **options: object) -> Settings:
    return Settings(
        store="pinecone",
        store_options={
            "api_key": API_KEY,
            "controller_host": emu.url,
            "host": None,
            "index": f"app-{uuid.uuid4().hex[:12]}",
            "retry_base_delay_s": 0.001,
            **options,
        },
        data_dir=tmp_path / "data",
        retriever="hybrid",
    )


def _titles(result: object) -> set[str]:
    return {h.metadata["title"] for h in result.hits}  # type: ignore[attr-defined]


@pytest.mark.parametrize("metric", ["cosine", "dotproduct"])
def test_ingest_search_reingest_delete_on_pinecone(
    tmp_path: Path, pinecone_emulator: PineconeEmulator, metric: str
) -> None:
    emu = pinecone_emulator
    corpus = _corpus(tmp_path)
    settings = _settings(tmp_path, emu, metric=metric)
    app = App(settings, embeddings=HashEmbeddings(32))
    assert app.store.info.backend == "pinecone"
    assert app.store_location.startswith(f"pinecone:{emu.url}:app-")
    report = app.ingestor.ingest([corpus])
    assert report.files_indexed == 3
    index = settings.store_options["index"]
    # the records went to one namespace per tenant
    namespaces = {
        r.body.get("namespace") for r in emu.requests if r.path == "/vectors/upsert" and r.body
    } - {META_NAMESPACE}
    assert namespaces == {"acme", "globex"}

    # another process on the same index sees the data and re-ingests nothing
    app2 = App(settings, embeddings=HashEmbeddings(32))
    assert app2.store.info.collection == index
    emu.clear_requests()
    assert app2.ingestor.ingest([corpus]).chunks_added == 0
    assert not [r for r in emu.requests if r.path == "/vectors/upsert"]

    anon = Principal.anonymous("acme")
    hr = Principal("acme", "ann", frozenset({"hr"}))
    globex = Principal.anonymous("globex")
    assert _titles(app2.search.search(anon, "robot", k=10)) == {"P"}
    assert _titles(app2.search.search(hr, "robot", k=10)) == {"P", "H"}
    assert _titles(app2.search.search(globex, "robot", k=10)) == {"G"}
    assert _titles(app2.search.search(hr, "robot", k=10, filter={"year": {"$gte": 2022}})) == {"H"}
    assert isinstance(app2.store, NativeHybrid) is (metric == "dotproduct")
    for kind in ("dense", "bm25", "hybrid"):
        searcher = app2.searcher(kind)
        assert _titles(searcher.search(anon, "robot", k=10)) == {"P"}, kind
        assert _titles(searcher.search(hr, "robot salaries", k=10)) == {"P", "H"}, kind
        assert _titles(searcher.search(globex, "robot", k=10)) == {"G"}, kind
    hybrid = app2.searcher("hybrid").search(hr, "salaries", k=1)
    assert _titles(hybrid) == {"H"}
    # a dotproduct index answers hybrid itself (sparse-dense); a cosine one is fused here
    raw = app2.searcher("hybrid").raw  # type: ignore[attr-defined]
    expected = "NativeHybridRetriever" if metric == "dotproduct" else "FusedRetriever"
    assert type(raw).__name__ == expected

    stats_before = app2.admin.stats()
    assert stats_before["store"] == "pinecone"
    assert stats_before["collection"] == index
    assert stats_before["per_tenant"] == {"acme": 2, "globex": 1}
    assert app2.store.count() == 3 and app2.store.count(tenant="acme") == 2

    sources = {d["source"] for d in stats_before["per_source"] if d["tenant"] == "acme"}
    (hr_source,) = [s for s in sources if s.endswith("hr.md")]
    assert app2.admin.delete(sources=[hr_source]) == 1
    assert _titles(app2.search.search(hr, "robot", k=10)) == {"P"}
    assert _titles(app2.searcher("bm25").search(hr, "robot salaries", k=10)) == {"P"}
    assert app2.admin.stats()["per_tenant"] == {"acme": 1, "globex": 1}
    assert app2.admin.delete(filter={"tenant": "globex"}) == 1
    assert app2.admin.stats()["per_tenant"] == {"acme": 1}
    assert app2.store.count() == 1
    # ingesting again adds back exactly what was deleted
    assert app2.ingestor.ingest([corpus]).chunks_added == 2
    assert app2.store.count() == 3
    app.close()
    app2.close()
