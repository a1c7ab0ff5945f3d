"""The whole application (ingest, incremental re-ingest, permission-aware dense, BM25 and
Weaviate-native hybrid search, delete by source, stats) with RAG_STORE=weaviate against the
Weaviate emulator, configured through settings only."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("weaviate", reason="weaviate-client is not installed")

from rag_app.access.permissions import Principal
from rag_app.app import App
from rag_app.settings import Settings
from tests.emulators.weaviate_server import WeaviateEmulator
from tests.fakes import HashEmbeddings

pytestmark = [pytest.mark.server]


@pytest.fixture(scope="module")
def emu() -> Iterator[WeaviateEmulator]:
    with WeaviateEmulator() as e:
        yield e


def _corpus(root: Path) -> Path:
    corpus = root / "c"
    corpus.mkdir()
    (corpus / "pub.md").write_text(
        "---\ntitle: P\ntenant: acme\nacl: [public]\ncategory: eng\nyear: 2021\n---\n"
        "robot specs and wheels"
    )
    (corpus / "hr.md").write_text(
        "---\ntitle: H\ntenant: acme\nacl: [group:hr]\ncategory: hr\nyear: 2022\n---\n"
        "robot pay scale zebra"
    )
    (corpus / "g.md").write_text(
        "---\ntitle: G\ntenant: globex.com\nacl: [public]\ncategory: eng\n---\nrobot zebra"
    )
    return corpus


def _titles(result: object) -> set[str]:
    return {h.metadata["title"] for h in result.hits}  # type: ignore[attr-defined]


def test_app_end_to_end_on_weaviate(tmp_path: Path, emu: WeaviateEmulator) -> None:
    corpus = _corpus(tmp_path)
    settings = Settings(
        store="weaviate",
        store_options={"url": emu.url, "grpc_port": emu.grpc_port},
        data_dir=tmp_path / "data",
        collection="app_e2e",
    )
    app = App(settings, embeddings=HashEmbeddings(32))
    try:
        assert app.store.info.backend == "weaviate"
        assert app.store.info.collection == "App_e2e"
        assert app.store_location == f"weaviate:{emu.url}:App_e2e"
        assert app.ingestor.ingest([corpus]).files_indexed == 3
        assert set(emu.tenant_names("App_e2e")) >= {"acme"}
    finally:
        app.close()

    # another process on the same server: sees the data, re-ingests nothing
    app2 = App(settings, embeddings=HashEmbeddings(32))
    try:
        writes = emu.grpc_calls().count("BatchObjects")
        assert app2.ingestor.ingest([corpus]).chunks_added == 0
        assert emu.grpc_calls().count("BatchObjects") == writes

        anon = Principal.anonymous("acme")
        hr = Principal("acme", "ann", frozenset({"hr"}))
        globex = Principal("globex.com", "gus", frozenset())
        assert _titles(app2.search.search(anon, "robot", k=10)) == {"P"}
        assert _titles(app2.search.search(hr, "robot", k=10)) == {"P", "H"}
        assert _titles(app2.search.search(globex, "robot", k=10)) == {"G"}
        assert _titles(app2.search.search(hr, "robot", k=10, filter={"year": {"$gte": 2022}})) == {
            "H"
        }
        for kind in ("dense", "bm25", "hybrid"):
            searcher = app2.searcher(kind)
            assert _titles(searcher.search(anon, "robot", k=10)) == {"P"}, kind
            assert _titles(searcher.search(hr, "robot", k=10)) == {"P", "H"}, kind
            assert _titles(searcher.search(globex, "robot", k=10)) == {"G"}, kind
            assert _titles(searcher.search(hr, "zebra", k=1)) == {"H"}, kind
            assert _titles(searcher.search(anon, "zebra", k=10)) <= {"P"}, kind
        # hybrid here is Weaviate's own hybrid search (the store's hybrid_query)
        store = app2.store
        native_calls: list[str] = []
        original = store.hybrid_query  # type: ignore[attr-defined]

        def spy(text: str, *args: Any, **kwargs: Any) -> Any:
            native_calls.append(text)
            return original(text, *args, **kwargs)

        store.hybrid_query = spy  # type: ignore[attr-defined]
        assert _titles(app2.searcher("hybrid").search(hr, "zebra", k=1)) == {"H"}
        assert native_calls == ["zebra"]
        del store.hybrid_query  # type: ignore[attr-defined]

        stats = app2.admin.stats()
        assert stats["store"] == "weaviate" and stats["collection"] == "App_e2e"
        assert stats["per_tenant"] == {"acme": 2, "globex.com": 1}

        hr_source = next(s["source"] for s in stats["per_source"] if s["source"].endswith("hr.md"))
        assert app2.admin.delete(sources=[hr_source]) == 1
        assert _titles(app2.search.search(hr, "robot", k=10)) == {"P"}
        assert _titles(app2.searcher("hybrid").search(hr, "zebra", k=10)) <= {"P"}
        assert app2.admin.stats()["per_tenant"] == {"acme": 1, "globex.com": 1}
        assert app2.store.count() == 2
        # ingesting again brings back only what was deleted
        assert app2.ingestor.ingest([corpus]).chunks_added == 1
        assert _titles(app2.search.search(hr, "robot", k=10)) == {"P", "H"}
    finally:
        app2.close()
