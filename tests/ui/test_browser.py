"""A real headless browser (Debian's Chromium, driven by Playwright): log in as two users of
different tenants, ask the same question, see a streamed answer and different permitted
sources. Screenshots land in test-artifacts/ for people to look at."""

from __future__ import annotations

import shutil
import socket
import time
from pathlib import Path
from urllib.parse import urlparse

import pytest

from rag_app.app import App
from rag_app.settings import Settings
from tests.fakes import CitingFakeChat, HashEmbeddings

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
playwright_api = pytest.importorskip("playwright.sync_api")

if not Path(CHROMIUM).exists():  # `make test` installs it (scripts/ensure-browser.sh)
    pytest.fail(f"Chromium not found at {CHROMIUM}; run scripts/ensure-browser.sh", pytrace=False)

QUESTION = "How many weeks of paid parental leave do I get?"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def url(tmp_path_factory):
    from rag_app.ui.app import launch

    settings = Settings(
        data_dir=tmp_path_factory.mktemp("browser"), users_file=ROOT / "demo/users.yaml", k=4
    )
    app = App(settings, embeddings=HashEmbeddings(64))
    app.__dict__["llm"] = CitingFakeChat.build(delay=0.08)  # slow enough to watch it stream
    assert app.ingestor.ingest([ROOT / "demo/corpus"]).ok
    port = free_port()
    demo = launch(app, port=port, prevent_thread_lock=True)
    yield f"http://127.0.0.1:{port}/"
    demo.close()


@pytest.fixture(scope="module")
def browser():
    with playwright_api.sync_playwright() as p:
        b = p.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
            ],
        )
        yield b
        b.close()


def ask_as(browser, url: str, user: str) -> dict:
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    hosts: set[str] = set()
    page.on("request", lambda r: hosts.add(urlparse(r.url).hostname or ""))
    page.goto(url)
    page.get_by_label("username").fill(user)
    page.get_by_label("password").fill(f"{user}-demo")
    page.get_by_role("button", name="Login").click()
    page.locator("#msg textarea").wait_for(timeout=30_000)
    page.locator("#who").get_by_text(f"`{user}`").or_(page.locator("#who")).wait_for()
    page.locator("#msg textarea").fill(QUESTION)
    page.locator("#send").click()

    bot = page.locator("#chatbot .message.bot, #chatbot [data-testid='bot']").last
    seen: list[str] = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            text = bot.inner_text(timeout=1000).strip()
        except Exception:
            text = ""
        if text and (not seen or text != seen[-1]):
            seen.append(text)
        if text.endswith("[1].") or "don't know" in text:
            break
        time.sleep(0.05)
    page.wait_for_timeout(500)
    sources = page.locator("#sources").inner_text()
    who = page.locator("#who").inner_text()
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"chat-{user}.png"), full_page=True)
    context.close()
    return {"seen": seen, "sources": sources, "who": who, "hosts": hosts}


def test_two_users_see_different_permitted_sources_and_a_streamed_answer(browser, url):
    alice = ask_as(browser, url, "alice")
    frank = ask_as(browser, url, "frank")

    assert "alice" in alice["who"] and "halcyon" in alice["who"]
    assert "frank" in frank["who"] and "brightwater" in frank["who"]
    assert "demo/corpus/halcyon/" in alice["sources"]
    assert "demo/corpus/brightwater/" not in alice["sources"]
    assert "demo/corpus/brightwater/" in frank["sources"]
    assert "demo/corpus/halcyon/" not in frank["sources"]
    for result in (alice, frank):
        final = result["seen"][-1]
        assert final.endswith("[1]."), result["seen"]
        # streamed: the browser saw the answer grow through several partial states
        partial = [s for s in result["seen"] if s != final]
        assert len(partial) >= 3, result["seen"]
        # offline: every request the page made went to this machine
        assert result["hosts"] <= {"127.0.0.1", "localhost"}, result["hosts"]
    assert (ARTIFACTS / "chat-alice.png").stat().st_size > 10_000
