"""`eval run --judge-samples` with RAG_LLM=openai against an OpenAI-compatible server started
on loopback: the real ChatOpenAI clients (streaming chat, non-streaming judge), RAGAS' real
metric code, several judging passes in fresh event loops, and HTTP/1.1 keep-alive.

The server answers like `judge_fakes`: chat prompts with the first sentence of document 1,
RAGAS prompts with word-overlap verdicts."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest

from rag_app import app as app_module
from tests.evaluation.judge_fakes import EchoChat, OverlapJudge
from tests.evaluation.test_eval_cli import DATA, code, rag
from tests.fakes import HashEmbeddings

pytest.importorskip("langchain_openai")

RAGAS_MARK = "Now perform the same with the following input"


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as real servers do
    requests: ClassVar[list[dict[str, Any]]] = []

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        _Handler.requests.append({"path": self.path, "stream": body.get("stream", False)})
        if self.path != "/v1/chat/completions":
            self.send_error(404)
            return
        prompt = "\n".join(str(m.get("content", "")) for m in body["messages"])
        judge = RAGAS_MARK in prompt
        text = OverlapJudge().reply(prompt) if judge else EchoChat().reply(prompt)
        _Handler.requests[-1]["kind"] = "judge" if judge else "chat"
        if body.get("stream"):
            self._stream(body["model"], text)
        else:
            self._json(
                {
                    "id": "cmpl-1",
                    "object": "chat.completion",
                    "created": int(time.time()),
                    "model": body["model"],
                    "choices": [
                        {
                            "index": 0,
                            "message": {"role": "assistant", "content": text},
                            "finish_reason": "stop",
                        }
                    ],
                    "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15},
                }
            )

    def _json(self, payload: dict[str, Any]) -> None:
        data = json.dumps(payload).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _stream(self, model: str, text: str) -> None:
        def chunk(delta: dict[str, Any], finish: str | None) -> bytes:
            event = {
                "id": "cmpl-1",
                "object": "chat.completion.chunk",
                "created": int(time.time()),
                "model": model,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
            }
            return f"data: {json.dumps(event)}\n\n".encode()

        parts = [chunk({"role": "assistant", "content": ""}, None)]
        parts += [chunk({"content": word + " "}, None) for word in text.split(" ")]
        parts += [chunk({}, "stop"), b"data: [DONE]\n\n"]
        data = b"".join(parts)
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Any:
    _Handler.requests.clear()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/v1"
    httpd.shutdown()


def test_judged_run_against_an_openai_compatible_server(
    server: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    emb = HashEmbeddings(64)
    monkeypatch.setattr(app_module, "build_embeddings", lambda settings: emb)
    monkeypatch.setenv("RAG_LLM", "openai")
    monkeypatch.setenv("OPENAI_BASE_URL", server)
    monkeypatch.setenv("RAG_JUDGE_MODEL", "judge-model")
    out = tmp_path / "run"
    result = rag(
        tmp_path / "data",
        "eval", "run", "--no-progress", "--out", str(out), "--dataset", str(DATA / "acl"),
        "-k", "2", "--as-user", "ann", "--judge-samples", "3", "--judge-repeats", "2",
    )  # fmt: skip
    assert code(result) == 0
    results = json.loads((out / "results.json").read_text())
    llm = results["llm"]
    assert llm["failures"] == [] and llm["answers_summary"]["chain_errors"] == 0
    assert llm["config"]["judge"].startswith("openai:")
    assert llm["aggregate"]["faithfulness"]["repeat_means"] == [1.0, 1.0]
    assert "response_relevancy" in llm["aggregate"]
    kinds = [r["kind"] for r in _Handler.requests]
    chat = [r for r in _Handler.requests if r["kind"] == "chat"]
    assert len(chat) == 3 and all(r["stream"] for r in chat)  # the chain streams
    assert kinds.count("judge") > 6 and not any(
        r["stream"] for r in _Handler.requests if r["kind"] == "judge"
    )


def test_generate_against_an_openai_compatible_server(
    server: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """RAGAS runs keyphrase extraction, scenarios and samples in three event loops; the model
    must survive that (ChatOpenAI's async client does not)."""
    emb = HashEmbeddings(64)
    monkeypatch.setattr(app_module, "build_embeddings", lambda settings: emb)
    monkeypatch.setenv("RAG_LLM", "openai")
    monkeypatch.setenv("OPENAI_BASE_URL", server)
    out = tmp_path / "generated"
    result = rag(
        tmp_path / "data",
        "eval", "generate", "--docs", str(DATA / "acl" / "corpus"), "--size", "2",
        "--out", str(out),
    )  # fmt: skip
    assert code(result) == 0
    rows = [json.loads(line) for line in (out / "questions.jsonl").read_text().splitlines()]
    assert len(rows) == 2 and all(r["reference_context_ids"] for r in rows)
    assert {r["kind"] for r in _Handler.requests} == {"judge"}
