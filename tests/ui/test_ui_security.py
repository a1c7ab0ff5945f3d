"""The HTTP edge of the UI against a launched app on loopback, with real logged-in clients:
session ownership, deep links, upload temp files, login page and throttling, headers."""

from __future__ import annotations

import json
import logging
import shutil
import socket
from pathlib import Path
from typing import Any

import gradio as gr
import httpx
import pytest

from rag_app.app import App
from rag_app.auth import LoginThrottle
from rag_app.settings import Settings
from rag_app.ui.app import REVISED_NOTE, REVISING, ChatState, build_ui, launch
from rag_app.ui.security import Guard
from tests.chat_fakes import ScriptedChatModel
from tests.fakes import CitingFakeChat, HashEmbeddings

# Each test serves the Gradio app on loopback: the full lane (`make test`), not test-fast.
pytestmark = [pytest.mark.server, pytest.mark.slow]

gradio_client = pytest.importorskip("gradio_client")
ROOT = Path(__file__).resolve().parents[2]
QUESTION = "How many weeks of paid parental leave do I get?"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def make_app(data: Path, llm=None) -> App:
    users = data / "users.yaml"
    shutil.copyfile(ROOT / "demo/users.yaml", users)  # logins upgrade hashes in place
    return App(
        Settings(data_dir=data, users_file=users, k=4),
        embeddings=HashEmbeddings(64),
        llm=llm or CitingFakeChat.build(),
    )


@pytest.fixture(scope="module")
def ui(tmp_path_factory):
    app = make_app(tmp_path_factory.mktemp("ui-sec"))
    assert app.ingestor.ingest([ROOT / "demo/corpus"]).ok
    port = free_port()
    demo = launch(app, port=port, prevent_thread_lock=True)
    yield app, demo, f"http://127.0.0.1:{port}"
    demo.close()


def login(url: str, user: str) -> httpx.Client:
    c = httpx.Client(base_url=url, timeout=30)
    r = c.post("/login", data={"username": user, "password": f"{user}-demo"})
    assert r.status_code == 200, r.text
    return c


def client(url: str, user: str):
    return gradio_client.Client(url + "/", auth=(user, f"{user}-demo"), verbose=False)


def chat(c, message: str):
    return c.predict(message, [], [], "", "", "", api_name="/chat")


# -- point 3: the chat session belongs to the logged-in user -----------------------------------


def test_another_users_session_hash_is_refused_everywhere(ui):
    _app, demo, url = ui
    alice = client(url, "alice")
    history, *_ = chat(alice, QUESTION)
    assert "[1]" in str(history[-1])
    alice.predict("my private comment", api_name="/feedback_up")
    alice_hash = alice.session_hash

    frank = login(url, "frank")  # another tenant
    # (a) no deep-link snapshot of her session, and nothing written for it
    r = frank.get("/gradio_api/deep_link", params={"session_hash": alice_hash})
    assert r.status_code == 404 and "disabled" in r.text
    assert not (Path(demo.server_app.uploaded_file_dir) / "deep_links").exists()
    # ... her stream, her heartbeat, her queue: refused
    r = frank.get("/gradio_api/queue/data", params={"session_hash": alice_hash})
    assert r.status_code == 403 and "another user" in r.text
    assert frank.get(f"/gradio_api/heartbeat/{alice_hash}").status_code == 403
    # (b) a turn run with her session hash is refused before anything runs
    fn_index = next(i for i, fn in demo.fns.items() if fn.api_name == "chat")
    body = {
        "data": ["and for contractors?", None, [], [], "", "", ""],
        "fn_index": fn_index,
        "session_hash": alice_hash,
        "event_data": None,
        "trigger_id": None,
    }
    r = frank.post("/gradio_api/queue/join", json=body)
    assert r.status_code == 403
    # the same request with his own session hash goes through
    r = frank.post("/gradio_api/queue/join", json={**body, "session_hash": "frank-own-tab"})
    assert r.status_code == 200, r.text
    # not logged in at all: no session hash is accepted
    anonymous = httpx.get(f"{url}/gradio_api/queue/data", params={"session_hash": alice_hash})
    assert anonymous.status_code == 401


def find_fn(demo: gr.Blocks, api_name: str):
    return next(fn.fn for fn in demo.fns.values() if fn.api_name == api_name)


def test_state_of_another_user_is_never_used(tmp_path, caplog):
    """Second line behind the middleware: the handlers themselves refuse state whose owner
    is not the request's user; the chain gets a fresh session, not alice's history."""
    model = ScriptedChatModel.script(
        "Alice's band is L4 [1].",  # alice's first answer
        "A fresh answer [1].",  # bob's turn: no condense call, because no history
    )
    app = make_app(tmp_path, llm=model)
    assert app.ingestor.ingest([ROOT / "demo/corpus/halcyon"]).ok
    demo = build_ui(app)
    respond = find_fn(demo, "chat")
    feedback = find_fn(demo, "feedback_up")
    as_alice = gr.Request(username="alice")
    as_bob = gr.Request(username="bob")

    *_, last = list(respond("salary band L4?", None, [], [], "", "", "", as_alice))
    _history, _msg, alice_state, _src, _details, alice_turn = last
    assert isinstance(alice_state, ChatState) and alice_state.owner == "alice"
    assert alice_turn["owner"] == "alice"

    with caplog.at_level(logging.WARNING, logger="rag_app.audit"):
        *_, last = list(respond("and for contractors?", alice_state, [], [], "", "", "", as_bob))
    history, _msg, bob_state, _src, _details, _turn = last
    assert bob_state is not alice_state and bob_state.owner == "bob"
    assert len(bob_state.session) == 1 and len(alice_state.session) == 1
    assert "L4" not in json.dumps(history)
    assert len(model.calls) == 2  # no rewrite with alice's history
    assert "L4" not in model.prompt_text(1)
    assert any("presented by 'bob'" in r.getMessage() for r in caplog.records)
    # feedback aimed at alice's last answer from bob's request: refused, nothing written
    assert "Ask a question first" in feedback("nice", alice_turn, as_bob)
    assert not (app.settings.data_dir / "feedback.jsonl").exists()
    assert "recorded" in feedback("nice", alice_turn, as_alice)


# -- point 4: upload temp copies ---------------------------------------------------------------


def run_raw(c: httpx.Client, demo: gr.Blocks, api_name: str, data: list, session: str) -> str:
    """Run an endpoint through the queue with a raw request; the first output."""
    fn_index = next(i for i, fn in demo.fns.items() if fn.api_name == api_name)
    body = {"data": data, "fn_index": fn_index, "session_hash": session}
    r = c.post("/gradio_api/queue/join", json={**body, "event_data": None, "trigger_id": None})
    assert r.status_code == 200, r.text
    with c.stream("GET", "/gradio_api/queue/data", params={"session_hash": session}) as events:
        for line in events.iter_lines():
            if line.startswith("data:"):
                message = json.loads(line[5:])
                if message.get("msg") == "process_completed":
                    assert message["success"], message
                    return str(message["output"]["data"][0])
    raise AssertionError("no result")


def upload_raw(c: httpx.Client, name: str, text: str) -> str:
    r = c.post("/gradio_api/upload", files={"files": (name, text.encode(), "text/markdown")})
    assert r.status_code == 200, r.text
    (path,) = r.json()
    return str(path)


def test_uploads_are_private_to_their_uploader_and_deleted_after_ingest(ui):
    app, demo, url = ui
    bob = login(url, "bob")
    henry = login(url, "henry")  # same tenant, not a reader of bob's file
    path = upload_raw(bob, "otter-plan.md", "# Otter plan\nThe otter budget is 31 fish.")
    assert Path(path).exists()
    # henry cannot download it ...
    assert henry.get(f"/gradio_api/file={path}").status_code == 404
    assert henry.get(f"/gradio_api/file/{path}").status_code == 404
    assert bob.get(f"/gradio_api/file={path}").status_code == 200
    # ... nor ingest it under his own ACL
    # (a raw request: gradio_client would upload the file again from this machine's disk,
    # and whoever uploads the same bytes owns that copy too)
    file_data = {"path": path, "meta": {"_type": "gradio.FileData"}, "orig_name": "otter-plan.md"}
    status = run_raw(henry, demo, "upload", [[file_data], ["user:henry"]], "henry-tab")
    assert "Upload refused" in status and "not uploaded by you" in status.replace("\\", "")
    assert not [r for r in app.store.records() if "otter" in str(r.metadata.get("source"))]
    # remote URLs are never fetched through the file route
    assert bob.get("/gradio_api/file=http://127.0.0.1:9/x").status_code == 404
    assert bob.get("/gradio_api/proxy=http://127.0.0.1:9/x").status_code == 404

    # bob ingests his own upload; the temp copy is gone afterwards
    bob_client = client(url, "bob")
    doc = Path(demo.GRADIO_CACHE).parent / "bob-upload-src" / "otter-plan2.md"
    doc.parent.mkdir(exist_ok=True)
    doc.write_text("# Otter plan two\nThe otter budget is 32 fish.")
    status, _ = bob_client.predict(
        [gradio_client.handle_file(str(doc))], ["user:bob"], api_name="/upload"
    )
    assert "Indexed 1 file" in status, status
    leftovers = [p for p in Path(demo.GRADIO_CACHE).rglob("otter-plan2.md")]
    assert leftovers == []


# -- point 5: login page, throttling, audit log -----------------------------------------------


@pytest.fixture
def throttled_ui(tmp_path):
    app = make_app(tmp_path)
    guard = Guard(throttle=LoginThrottle(max_per_user=3, max_per_address=5, window_s=60))
    port = free_port()
    demo = launch(app, port=port, prevent_thread_lock=True, guard=guard)
    yield f"http://127.0.0.1:{port}"
    demo.close()


def test_failed_logins_are_throttled_per_user_and_address_and_logged(
    throttled_ui, caplog, monkeypatch
):
    import rag_app.auth as auth

    url = throttled_ui
    real_scrypt = auth._scrypt
    checks: list[int] = []

    def counting_scrypt(*args: Any, **kwargs: Any) -> bytes:
        checks.append(1)
        return real_scrypt(*args, **kwargs)

    monkeypatch.setattr(auth, "_scrypt", counting_scrypt)
    c = httpx.Client(base_url=url, timeout=30)
    with caplog.at_level(logging.INFO, logger="rag_app.audit"):
        for _ in range(3):
            r = c.post("/login", data={"username": "alice", "password": "wrong"})
            assert r.status_code == 400
        checks.clear()
        r = c.post("/login", data={"username": "alice", "password": "alice-demo"})
    assert r.status_code == 429
    assert "Too many failed logins for user name 'alice'" in r.json()["detail"]
    assert 1 <= int(r.headers["retry-after"]) <= 60
    assert checks == []  # refused before any password hash is computed
    failures = [r.getMessage() for r in caplog.records if "login failed" in r.getMessage()]
    assert len(failures) == 3 and "'alice'" in failures[0] and "127.0.0.1" in failures[0]
    assert any("login throttled" in r.getMessage() for r in caplog.records)
    # another user name from the same address still works, until the address limit
    assert c.post("/login", data={"username": "bob", "password": "bob-demo"}).status_code == 200
    for _ in range(2):
        assert c.post("/login", data={"username": "carol", "password": "x"}).status_code == 400
    r = c.post("/login", data={"username": "dave", "password": "dave-demo"})
    assert r.status_code == 429 and "from your address" in r.json()["detail"]
    # the browser form shows the same message on the login page
    r = c.post("/login?form=1", data={"username": "erin", "password": "erin-demo"})
    assert r.status_code == 429 and "Too many failed logins" in r.text
    assert "<form" in r.text


def test_login_page_and_form_login(ui):
    _app, _demo, url = ui
    page = httpx.get(url + "/")
    assert page.status_code == 200 and "<form" in page.text
    # logged out: no API description (endpoints, parameters) in the page
    for leak in ("gradio_api_info", "named_endpoints", "check_filter", "feedback_up"):
        assert leak not in page.text
    c = httpx.Client(base_url=url, timeout=30)
    r = c.post("/login?form=1", data={"username": "carol", "password": "nope"})
    assert r.status_code == 401 and "Incorrect user name or password" in r.text
    r = c.post("/login?form=1", data={"username": "carol", "password": "carol-demo"})
    assert r.status_code == 303 and r.headers["location"] == "./"
    app_page = c.get("/")
    assert "window.gradio_config" in app_page.text  # the app itself, for a logged-in user


# -- point 6: headers ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "logged_in"),
    [
        ("/", False),
        ("/", True),
        ("/gradio_api/info", True),
        ("/gradio_api/info", False),
        ("/theme.css", False),
        ("/config", True),
    ],
)
def test_security_headers_on_every_response(ui, path, logged_in):
    _app, _demo, url = ui
    c = login(url, "erin") if logged_in else httpx.Client(base_url=url)
    r = c.get(path)
    csp = r.headers["content-security-policy"]
    assert "img-src 'self' data:" in csp and "frame-ancestors 'none'" in csp
    assert (
        "script-src 'self'" in csp
        and "unsafe-inline" not in csp.split("script-src")[1].split(";")[0]
    )
    assert "connect-src 'self'" in csp
    assert r.headers["x-frame-options"] == "DENY"
    assert r.headers["x-content-type-options"] == "nosniff"
    assert r.headers["referrer-policy"] == "no-referrer"
    if path == "/" and logged_in:
        nonce = csp.split("'nonce-")[1].split("'")[0]
        assert f'<script nonce="{nonce}"' in r.text and "<script>" not in r.text


def test_an_answer_that_fails_the_check_is_replaced_in_the_chat(tmp_path):
    """The first answer streams, fails the check against the sources (a figure no source
    holds), and is replaced by the second one, with a note saying so."""
    model = ScriptedChatModel.script(
        "The L4 band is 999,999 EUR [1].", "The band is in the salary table [1]."
    )
    app = make_app(tmp_path, llm=model)
    assert app.ingestor.ingest([ROOT / "demo/corpus/halcyon"]).ok
    respond = find_fn(build_ui(app), "chat")
    shown, last = [], None
    for out in respond("salary band L4?", None, [], [], "", "", "", gr.Request(username="alice")):
        last = out
        if out[0]:  # the history is updated in place: read it at each step
            shown.append(str(out[0][-1]["content"]))
    assert any("999,999" in text for text in shown)  # the first answer was streamed
    assert any(text == REVISING for text in shown)  # then cleared
    final = shown[-1]
    assert "The band is in the salary table" in final and "999,999" not in final
    assert final.endswith(REVISED_NOTE)
    assert last is not None and last[5]["answer"] == "The band is in the salary table [1]."
    assert len(model.calls) == 2
