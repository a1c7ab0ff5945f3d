"""The whole application (ingest, incremental re-ingest, permission-aware search, delete)
pointed at a Chroma server with RAG_CHROMA_URL, as a user would configure it."""

from __future__ import annotations

import pytest

from rag_app.access.permissions import Principal
from rag_app.app import App
from rag_app.settings import Settings
from tests.fakes import HashEmbeddings

pytestmark = [pytest.mark.server, pytest.mark.slow]


def test_ingest_query_delete_against_server(tmp_path, chroma_server_url, collection_name):
    corpus = tmp_path / "c"
    corpus.mkdir()
    (corpus / "pub.md").write_text("---\ntitle: P\ntenant: acme\nacl: [public]\n---\nrobot specs")
    (corpus / "hr.md").write_text("---\ntitle: H\ntenant: acme\nacl: [group:hr]\n---\nrobot pay")
    (corpus / "g.md").write_text("---\ntitle: G\ntenant: globex\nacl: [public]\n---\nrobot")
    settings = Settings(
        data_dir=tmp_path / "data",
        store_options={"url": chroma_server_url},
        collection=collection_name(),
    )
    app = App(settings, embeddings=HashEmbeddings(32))
    assert app.store.info.backend == "chroma-server"
    assert app.ingestor.ingest([corpus]).files_indexed == 3
    # a second App (another process, same server) sees the data and re-ingests nothing
    app2 = App(settings, embeddings=HashEmbeddings(32))
    assert app2.ingestor.ingest([corpus]).chunks_added == 0

    anon = Principal.anonymous("acme")
    hr = Principal("acme", "ann", frozenset({"hr"}))
    assert {h.metadata["title"] for h in app2.search.search(anon, "robot", k=10).hits} == {"P"}
    assert {h.metadata["title"] for h in app2.search.search(hr, "robot", k=10).hits} == {"P", "H"}
    assert app2.admin.delete(filter={"tenant": "globex"}) == 1
    assert app2.admin.stats()["per_tenant"] == {"acme": 2}
