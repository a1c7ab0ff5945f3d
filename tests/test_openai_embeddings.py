"""RAG_EMBEDDINGS=openai against an OpenAI-compatible server started on loopback."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar

import pytest

from rag_app.app import App
from rag_app.settings import Settings
from tests.fakes import HashEmbeddings

pytest.importorskip("langchain_openai")

DIM = 16
_reference = HashEmbeddings(DIM)


class _Handler(BaseHTTPRequestHandler):
    requests: ClassVar[list[dict]] = []

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        _Handler.requests.append(
            {"path": self.path, "body": body, "auth": self.headers.get("Authorization")}
        )
        if self.path != "/v1/embeddings":
            self.send_error(404)
            return
        inputs = body["input"]
        inputs = [inputs] if isinstance(inputs, str) else inputs
        data = [
            {"object": "embedding", "index": i, "embedding": _reference.embed_query(text)}
            for i, text in enumerate(inputs)
        ]
        payload = json.dumps(
            {
                "object": "list",
                "data": data,
                "model": body["model"],
                "usage": {"prompt_tokens": 1, "total_tokens": 1},
            }
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/v1"
    httpd.shutdown()


def test_openai_compatible_embeddings_end_to_end(tmp_path, server):
    corpus = tmp_path / "c"
    corpus.mkdir()
    (corpus / "a.md").write_text("---\ntitle: A\ntenant: t\nacl: [public]\n---\nrobots carry")
    (corpus / "b.md").write_text("---\ntitle: B\ntenant: t\nacl: [public]\n---\nbudget money")
    settings = Settings(
        data_dir=tmp_path / "data",
        embeddings="openai",
        openai_base_url=server,
        openai_api_key="sk-test",
        openai_embedding_model="compat-embed",
        openai_embedding_dimensions=DIM,
    )
    app = App(settings)
    assert app.embeddings.dimension == DIM
    report = app.ingestor.ingest([corpus])
    assert report.ok and report.files_indexed == 2
    principal = app.principal(None, tenant="t")
    hits = app.search.search(principal, "robots carry", k=1).hits
    assert hits[0].metadata["title"] == "A"
    assert all(r["auth"] == "Bearer sk-test" for r in _Handler.requests)
    assert {r["body"]["model"] for r in _Handler.requests} == {"compat-embed"}


def test_openai_token_counting_works_offline():
    settings = Settings(embeddings="openai", openai_api_key="sk-test")
    app = App(settings)
    assert app.embeddings.count_tokens("hello world") == 2
    assert app.embeddings.max_tokens == 8191
