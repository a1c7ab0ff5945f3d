"""A llama.cpp server inside this process (xllamacpp), on 127.0.0.1 and a free port.

It speaks the OpenAI chat-completions protocol, so the local model and any remote
OpenAI-compatible model share one client code path (`ChatOpenAI`). The server is stopped by
`stop()`, when its owner is garbage-collected, or at interpreter exit, whichever comes first.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
import urllib.request
import weakref
from pathlib import Path
from typing import Any

from rag_app.errors import ConfigError

log = logging.getLogger(__name__)

HOST = "127.0.0.1"


def default_threads() -> int:
    """Physical cores if known, else logical CPUs (llama.cpp gains nothing from SMT)."""
    try:
        affinity = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        affinity = os.cpu_count() or 1
    return max(1, affinity)


# Destroying the server while it answers a request deadlocks (the HTTP thread waits for a
# result from the task loop the destructor already stopped): stop() first waits this long for
# the slots to go idle (a request RAGAS gave up on still runs to its end on the server).
STOP_IDLE_WAIT_S = 300.0
_ABANDONED: list[Any] = []  # servers that never went idle: never destroyed (see stop)


class _Holder:
    """Owns the native server object, so that a finalizer can drop it without a reference
    cycle to the public wrapper."""

    def __init__(self) -> None:
        self.server: Any = None
        self.lock = threading.Lock()

    def stop(self) -> None:
        with self.lock:
            server, self.server = self.server, None
        if server is not None:
            del server  # the C++ destructor stops the HTTP loop and frees the model


class LocalLLMServer:
    """Start a GGUF model in an OpenAI-compatible llama.cpp server on loopback."""

    def __init__(
        self,
        model_path: Path,
        *,
        n_ctx: int = 4096,
        threads: int | None = None,
        parallel: int = 1,
        verbose: bool = False,
    ) -> None:
        self.model_path = Path(model_path)
        self.n_ctx = n_ctx
        self.threads = threads or default_threads()
        self.parallel = parallel
        self.verbose = verbose
        self._holder = _Holder()
        self._address: str | None = None
        # Runs on garbage collection or, at the latest, at interpreter exit (finalize's atexit).
        self._finalizer = weakref.finalize(self, self._holder.stop)

    @property
    def running(self) -> bool:
        return self._holder.server is not None

    @property
    def base_url(self) -> str:
        """OpenAI base URL (ends in /v1)."""
        if self._address is None or not self.running:
            raise ConfigError("the local model server is not running; call start() first")
        return f"{self._address}/v1"

    def start(self) -> str:
        if self.running:
            return self.base_url
        try:
            import xllamacpp
        except ImportError as exc:
            raise ConfigError(
                "the local chat model (RAG_LLM=local) needs the 'xllamacpp' package: "
                "run `make setup` or pip install xllamacpp==2026.10.11549 (or set RAG_LLM=openai)"
            ) from exc

        params = xllamacpp.CommonParams()
        params.model.path = str(self.model_path)
        params.n_ctx = self.n_ctx
        params.n_parallel = self.parallel
        params.hostnames = [HOST]
        params.port = 0  # the OS picks a free port; listening_address reports it
        params.cpuparams.n_threads = self.threads
        params.cpuparams_batch.n_threads = self.threads
        params.ui = False
        # Prometheus counters on loopback (prompt tokens evaluated and seconds spent on
        # them, tokens generated): how `bench/bench_chat.py` measures the prompt-eval rate
        # and the cached share of each turn. Counts only, nothing of the prompts.
        params.endpoint_metrics = True
        params.verbosity = 3 if self.verbose else -1
        started = time.perf_counter()
        try:
            server = xllamacpp.Server(params)
        except Exception as exc:
            raise ConfigError(
                f"the local chat model {self.model_path.name} could not be started ({exc}); "
                "check that the file is a complete GGUF chat model and that there is enough "
                f"memory for a {self.n_ctx}-token context"
            ) from exc
        address = str(server.listening_address).rstrip("/")
        with self._holder.lock:
            self._holder.server = server
        self._address = address
        self._wait_healthy()
        log.info(
            "local model %s listening on %s (%.1f s, %d threads, ctx %d)",
            self.model_path.name,
            address,
            time.perf_counter() - started,
            self.threads,
            self.n_ctx,
        )
        return self.base_url

    def counters(self) -> dict[str, float]:
        """The server's cumulative counters (``llamacpp:*`` from its /metrics endpoint,
        without the prefix): prompt_tokens_total, prompt_seconds_total,
        tokens_predicted_total, tokens_predicted_seconds_total, ..."""
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with opener.open(f"{self._address}/metrics", timeout=5) as response:
            text = response.read().decode("utf-8", "replace")
        out: dict[str, float] = {}
        for line in text.splitlines():
            if line.startswith("llamacpp:"):
                name, _, value = line.partition(" ")
                try:
                    out[name.removeprefix("llamacpp:")] = float(value)
                except ValueError:
                    continue
        return out

    def _wait_healthy(self, timeout_s: float = 60.0) -> None:
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback only
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                with opener.open(f"{self._address}/health", timeout=2) as response:
                    if response.status == 200:
                        return
            except OSError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise ConfigError(f"the local model server at {self._address} did not get ready")
            time.sleep(0.05)

    def stop(self, idle_wait_s: float = STOP_IDLE_WAIT_S) -> None:
        if self.running and self._address is not None and not self._wait_idle(idle_wait_s):
            log.warning(
                "the local model server at %s was still answering a request after %.0f s; "
                "leaving it running until the process exits",
                self._address,
                idle_wait_s,
            )
            with self._holder.lock:
                _ABANDONED.append(self._holder.server)
                self._holder.server = None
        self._holder.stop()
        self._address = None

    def _wait_idle(self, timeout_s: float) -> bool:
        """True once no slot is processing (or the server cannot tell us)."""
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                with opener.open(f"{self._address}/slots", timeout=5) as response:
                    slots = json.loads(response.read())
            except (OSError, ValueError):
                return True
            if not isinstance(slots, list) or not any(
                isinstance(slot, dict) and slot.get("is_processing") for slot in slots
            ):
                return True
            if time.monotonic() > deadline:
                return False
            time.sleep(0.2)

    def __enter__(self) -> LocalLLMServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
