"""The Gradio UI through gradio_client: login, chat, filters, upload, feedback."""

from __future__ import annotations

import json
import re
import shutil
import socket
from pathlib import Path

import pytest

from rag_app.app import App
from rag_app.settings import Settings
from tests.fakes import CitingFakeChat, HashEmbeddings

# Each test serves the Gradio app on loopback: the full lane (`make test`), not test-fast.
pytestmark = [pytest.mark.server, pytest.mark.slow]

gradio_client = pytest.importorskip("gradio_client")
ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def ui(tmp_path_factory):
    from rag_app.ui.app import launch

    data = tmp_path_factory.mktemp("ui-data")
    users = data / "users.yaml"
    shutil.copyfile(ROOT / "demo/users.yaml", users)  # logins upgrade hashes in place
    settings = Settings(data_dir=data, users_file=users, k=4)
    app = App(settings, embeddings=HashEmbeddings(64), llm=CitingFakeChat.build())
    report = app.ingestor.ingest([ROOT / "demo/corpus"])
    assert report.ok
    port = free_port()
    demo = launch(app, port=port, prevent_thread_lock=True)
    yield app, f"http://127.0.0.1:{port}/"
    demo.close()


def client(url: str, user: str):
    return gradio_client.Client(url, auth=(user, f"{user}-demo"), verbose=False)


def plain(markdown: str) -> str:
    """Markdown as read on the page (messages escape Markdown punctuation)."""
    return markdown.replace("\\", "")


def text_of(message: dict) -> str:
    content = message["content"]
    if isinstance(content, str):
        return content
    return "".join(b.get("text", "") for b in content if isinstance(b, dict))


def chat(c, message: str, **filters):
    args = dict(
        message=message,
        cats=filters.get("cats", []),
        tags=filters.get("tags", []),
        date_from=filters.get("date_from", ""),
        date_to=filters.get("date_to", ""),
        json_text=filters.get("json_text", ""),
    )
    return c.predict(*args.values(), api_name="/chat")


def test_wrong_password_is_refused(ui):
    _, url = ui
    with pytest.raises(Exception, match=r"(?i)login|credentials|401|auth"):
        gradio_client.Client(url, auth=("alice", "wrong"), verbose=False)


def test_two_users_same_question_different_sources(ui):
    _, url = ui
    question = "How many weeks of paid parental leave do I get?"
    out = {}
    for user in ("alice", "frank"):
        history, _msg, sources, details = chat(client(url, user), question)
        out[user] = (history, sources, details)
    alice_sources, frank_sources = out["alice"][1], out["frank"][1]
    assert "demo/corpus/halcyon" in alice_sources and "demo/corpus/brightwater" not in alice_sources
    assert "demo/corpus/brightwater" in frank_sources and "demo/corpus/halcyon" not in frank_sources
    answer = text_of(out["alice"][0][-1])
    assert "[1]" in answer
    # [1] links to its passage in the sources panel, which lists each document once
    anchor = re.search(r'<a href="#(src-\d+-1)" class="rag-cite"[^>]*>\[1\]</a>', answer)
    assert anchor, answer
    assert f'id="{anchor[1]}"' in alice_sources
    titles = re.findall(r'class="rag-doc-title">([^<]*)<', alice_sources)
    assert titles and len(titles) == len(set(titles)), titles
    assert "Effective filter" in out["alice"][2] and '"halcyon"' in out["alice"][2]


def test_bad_json_filter_is_a_clear_message(ui):
    _, url = ui
    history, *_ = chat(client(url, "bob"), "leave", json_text='{"tenant": "brightwater"}')
    assert "Filter problem" in text_of(history[-1]) and "tenant" in text_of(history[-1])
    history, *_ = chat(client(url, "bob"), "leave", json_text="{oops")
    assert "not valid JSON" in text_of(history[-1])


def test_check_filter_shows_effective_filter(ui):
    _, url = ui
    c = client(url, "carol")
    view = c.predict(["finance"], [], "2025-01-01", "", "", api_name="/check_filter")
    assert "Effective filter" in view
    assert '"tenant"' in view and "group:finance" in view and '"category"' in view


def test_upload_then_ask_about_it(ui, tmp_path):
    _, url = ui
    doc = tmp_path / "zebra-policy.md"
    doc.write_text("# Zebra policy\nThe zebra crossing budget is 77 zebras per quarter.")
    c = client(url, "bob")
    status, _files = c.predict(
        [gradio_client.handle_file(str(doc))], ["user:bob"], api_name="/upload"
    )
    assert "Indexed 1 file" in status
    _h, _m, sources, _d = chat(c, "zebra crossing budget")
    assert "zebra-policy.md" in sources
    # not visible to another user of the same tenant
    _h, _m, other_sources, _d = chat(client(url, "henry"), "zebra crossing budget")
    assert "zebra-policy.md" not in other_sources
    refused, _files = c.predict(
        [gradio_client.handle_file(str(doc))], ["group:finance"], api_name="/upload"
    )
    refused = plain(refused)
    assert "Upload refused" in refused and "cannot grant group:finance" in refused
    for grant, message in (("*", "invalid grant"), ("group:*", "invalid grant")):
        refused, _files = c.predict(
            [gradio_client.handle_file(str(doc))], [grant], api_name="/upload"
        )
        refused = plain(refused)
        assert "Upload refused" in refused and message in refused, refused
    refused, _files = c.predict([gradio_client.handle_file(str(doc))], [], api_name="/upload")
    refused = plain(refused)
    assert "Upload refused" in refused and "choose at least one reader" in refused


def test_feedback_is_logged(ui):
    app, url = ui
    c = client(url, "erin")
    # feedback needs a previous answer in the same session: the client keeps session state
    chat(c, "What is the expense limit for hotels?")
    status = c.predict("useful", api_name="/feedback_up")
    assert "recorded" in status
    rows = [
        json.loads(x) for x in (app.settings.data_dir / "feedback.jsonl").read_text().splitlines()
    ]
    assert rows[-1]["user"] == "erin" and rows[-1]["rating"] == "up"
    assert rows[-1]["comment"] == "useful" and rows[-1]["sources"]
