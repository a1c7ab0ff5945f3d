"""Shared fixtures: a loopback Chroma server (started once per session) and collection names."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from rag_app import configure_offline

# The store spec lives outside test modules; give its asserts pytest's detailed messages.
pytest.register_assert_rewrite("tests.conformance")

# What the `rag-app` command and `App` do, done before any test imports huggingface_hub,
# gradio or ragas (they read these variables on import); `import rag_app` does not.
configure_offline()

SERVER_START_TIMEOUT_S = 60.0


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _heartbeat(url: str) -> bool:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback only
    try:
        with opener.open(f"{url}/api/v2/heartbeat", timeout=1) as response:
            return bool(response.status == 200)
    except OSError:
        return False


@pytest.fixture(scope="session")
def chroma_server_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real Chroma server (the CLI shipped in the chromadb wheel) on 127.0.0.1."""
    exe = Path(sys.executable).with_name("chroma")
    if not exe.exists():
        pytest.fail(f"the chroma CLI is missing next to {sys.executable}; reinstall chromadb")
    root = tmp_path_factory.mktemp("chroma-server")
    log_path = root / "server.log"
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "ANONYMIZED_TELEMETRY": "False"}
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [
                str(exe),
                "run",
                "--path",
                str(root / "data"),
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
        )
    try:
        deadline = time.monotonic() + SERVER_START_TIMEOUT_S
        while not _heartbeat(url):
            if proc.poll() is not None or time.monotonic() > deadline:
                why = f"exited with {proc.returncode}" if proc.poll() is not None else "timed out"
                pytest.fail(
                    f"Chroma server on {url} did not start ({why}); log:\n"
                    + log_path.read_text(errors="replace")[-4000:]
                )
            time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


@pytest.fixture
def collection_name() -> Callable[[], str]:
    """Unique, Chroma-valid collection names (3-63 chars, alphanumeric ends)."""
    return lambda: f"t{uuid.uuid4().hex[:16]}"
