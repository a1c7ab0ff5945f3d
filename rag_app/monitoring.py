"""Prometheus metrics and the slow-query log.

One `Metrics` object holds every metric in its own `CollectorRegistry` (never the process-wide
default, so tests and embedders stay isolated); `metrics()` returns the instance the
instrumented code records into (`use_metrics` swaps it, e.g. in tests).

What is recorded, and where:

* every search through `PermissionGuard` (the only read path): latency per store backend and
  retriever, hits returned, empty results, hits dropped by the access re-check (each one is
  also logged to the ``rag_app.audit`` logger by the re-check itself), stale hits of a derived
  index, denied searches, and errors by exception type. A search slower than
  ``slow_query_ms`` logs one line to ``rag_app.slow`` with the store, retriever, k, counts,
  timings and the *shape* of the effective filter (field names and operators, never values);
* every chat turn: time to first token, answer tokens and generation seconds (tokens/s),
  outcome (answered, refused, error) and errors by kind;
* every ingestion run: seconds, chunks added/skipped/deleted, files and rejections.

Recording never raises: a metrics bug is logged at debug level and the caller's result or
exception goes on unchanged.

`render()` gives the text exposition (served at ``/metrics`` by the UI for a logged-in user);
`start_metrics_server(port)` serves the same registry on a loopback port.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    start_http_server,
)

if TYPE_CHECKING:
    from rag_app.chain.events import Done
    from rag_app.ingest.pipeline import IngestReport
    from rag_app.retrieval.search import SearchResult

log = logging.getLogger(__name__)
slow_log = logging.getLogger("rag_app.slow")

SLOW_QUERY_MS = 500.0  # default threshold of the slow-query log line
CONTENT_TYPE = CONTENT_TYPE_LATEST
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
HIT_BUCKETS = (0, 1, 2, 3, 5, 10, 20, 50, 100, 1000)
TTFT_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 10.0, 20.0, 60.0)
RATE_BUCKETS = (1, 5, 10, 20, 40, 80, 160, 320, 1000)
INGEST_BUCKETS = (0.1, 0.5, 1, 5, 10, 30, 60, 300, 900, 3600)
_LOGICAL = ("$and", "$or", "$not", "$nor")


def filter_shape(node: Any) -> Any:
    """The shape of a filter dict: field names and operators, never values.

    ``{"$and": [{"tenant": {"$eq": "acme"}}, {"acl": {"$contains": "hr"}}]}`` becomes
    ``{"$and": [{"tenant": "$eq"}, {"acl": "$contains"}]}``; a shorthand equality
    (``{"team": "hr"}``) becomes ``{"team": "$eq"}``; several operators on one field give a
    sorted list. Anything else (a value, a malformed node) becomes ``"?"``."""
    if not isinstance(node, Mapping):
        return "?"
    out: dict[str, Any] = {}
    for key, value in node.items():
        name = str(key)
        if name in _LOGICAL:
            items = value if isinstance(value, list | tuple) else [value]
            out[name] = [filter_shape(item) for item in items]
        elif isinstance(value, Mapping) and value and all(str(op).startswith("$") for op in value):
            ops = sorted(str(op) for op in value)
            out[name] = ops[0] if len(ops) == 1 else ops
        elif isinstance(value, Mapping):
            out[name] = "?"
        else:
            out[name] = "$eq"
    return out


def _shape_text(effective: Any) -> str:
    try:
        return json.dumps(filter_shape(effective), sort_keys=True, separators=(",", ":"))
    except Exception:
        return '"?"'


class Metrics:
    """Every metric of the app, in one registry."""

    def __init__(
        self, registry: CollectorRegistry | None = None, *, slow_query_ms: float = SLOW_QUERY_MS
    ) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self.slow_query_ms = slow_query_ms
        r = self.registry
        sr = ["store", "retriever"]
        # -- search
        self.query_seconds = Histogram(
            "rag_query_seconds", "Guarded search latency", sr, buckets=LATENCY_BUCKETS, registry=r
        )
        self.query_hits = Histogram(
            "rag_query_hits", "Hits returned per search", sr, buckets=HIT_BUCKETS, registry=r
        )
        self.query_empty = Counter(
            "rag_query_empty", "Searches that returned no hit", sr, registry=r
        )
        self.query_dropped = Counter(
            "rag_query_dropped_hits",
            "Hits dropped by the access re-check (security alarm: should stay 0)",
            sr,
            registry=r,
        )
        self.query_stale = Counter(
            "rag_query_stale_hits",
            "Hits of a derived index that the store no longer holds",
            sr,
            registry=r,
        )
        self.query_denied = Counter(
            "rag_query_denied",
            "Searches refused because the access filter could not be built",
            sr,
            registry=r,
        )
        self.slow_queries = Counter(
            "rag_query_slow", "Searches over the slow-query threshold", sr, registry=r
        )
        # -- errors
        self.errors = Counter(
            "rag_errors", "Errors by component and kind", ["component", "kind"], registry=r
        )
        # -- chat
        self.chat_turns = Counter(
            "rag_chat_turns", "Chat turns by outcome", ["outcome"], registry=r
        )
        self.chat_ttft = Histogram(
            "rag_chat_time_to_first_token_seconds",
            "From the start of a chat turn to the first answer token",
            buckets=TTFT_BUCKETS,
            registry=r,
        )
        self.chat_tokens = Counter("rag_chat_tokens", "Answer tokens generated", registry=r)
        self.chat_revised = Counter(
            "rag_chat_revised",
            "Chat turns answered a second time after the check against the sources",
            registry=r,
        )
        self.chat_unsupported = Counter(
            "rag_chat_unsupported_claims",
            "Answer sentences marked as not supported by the sources they cite",
            registry=r,
        )
        self.chat_generation_seconds = Counter(
            "rag_chat_generation_seconds",
            "Seconds from the first to the last answer token (tokens/s = tokens / this)",
            registry=r,
        )
        self.chat_tokens_per_second = Histogram(
            "rag_chat_tokens_per_second",
            "Answer tokens per second of generation, per turn",
            buckets=RATE_BUCKETS,
            registry=r,
        )
        # -- ingest
        self.ingest_runs = Counter("rag_ingest_runs", "Ingestion runs", registry=r)
        self.ingest_seconds = Histogram(
            "rag_ingest_seconds", "Duration of an ingestion run", buckets=INGEST_BUCKETS, registry=r
        )
        self.ingest_chunks = Counter(
            "rag_ingest_chunks",
            "Chunks by action (added, skipped, deleted)",
            ["action"],
            registry=r,
        )
        self.ingest_files = Counter(
            "rag_ingest_files",
            "Files by outcome (indexed, unchanged, removed)",
            ["outcome"],
            registry=r,
        )
        self.ingest_rejections = Counter(
            "rag_ingest_rejections", "Files or records rejected by ingestion", registry=r
        )
        self.ingest_chunks_per_second = Gauge(
            "rag_ingest_last_chunks_per_second",
            "Chunks added per second in the last ingestion run that added any",
            registry=r,
        )

    # -- search ---------------------------------------------------------------------------
    def record_search(
        self,
        store: str,
        retriever: str,
        result: SearchResult,
        seconds: float,
        *,
        k: int | None = None,
        retrieve_seconds: float = 0.0,
        rounds: int = 0,
    ) -> None:
        try:
            labels = (store, retriever)
            self.query_seconds.labels(*labels).observe(seconds)
            if result.denied:
                self.query_denied.labels(*labels).inc()
            self.query_hits.labels(*labels).observe(len(result.hits))
            if not result.hits:
                self.query_empty.labels(*labels).inc()
            if result.dropped:
                self.query_dropped.labels(*labels).inc(result.dropped)
            if result.stale:
                self.query_stale.labels(*labels).inc(result.stale)
            ms = seconds * 1000.0
            if ms >= self.slow_query_ms:
                self.slow_queries.labels(*labels).inc()
                slow_log.warning(
                    "slow query: store=%s retriever=%s k=%s hits=%d dropped=%d stale=%d "
                    "denied=%s total_ms=%.1f retrieve_ms=%.1f recheck_ms=%.1f rounds=%d filter=%s",
                    store,
                    retriever,
                    k,
                    len(result.hits),
                    result.dropped,
                    result.stale,
                    result.denied,
                    ms,
                    retrieve_seconds * 1000.0,
                    max(ms - retrieve_seconds * 1000.0, 0.0),
                    rounds,
                    _shape_text(result.effective_filter),
                )
        except Exception:  # pragma: no cover - metrics must never break a search
            log.debug("could not record a search", exc_info=True)

    def record_search_error(
        self, store: str, retriever: str, exc: BaseException, seconds: float
    ) -> None:
        try:
            self.query_seconds.labels(store, retriever).observe(seconds)
            self.errors.labels("search", type(exc).__name__).inc()
            if seconds * 1000.0 >= self.slow_query_ms:
                slow_log.warning(
                    "slow query (failed with %s): store=%s retriever=%s total_ms=%.1f",
                    type(exc).__name__,
                    store,
                    retriever,
                    seconds * 1000.0,
                )
        except Exception:  # pragma: no cover
            log.debug("could not record a search error", exc_info=True)

    # -- chat ---------------------------------------------------------------------------
    def record_chat(self, done: Done) -> None:
        try:
            self.chat_turns.labels("refused" if done.refused else "answered").inc()
            if done.revised_from is not None:
                self.chat_revised.inc()
            self.chat_unsupported.inc(len(done.unsupported))
            first = done.timings.first_token_s
            if first is None or done.tokens <= 0:
                return
            self.chat_ttft.observe(first)
            self.chat_tokens.inc(done.tokens)
            generation = max(done.timings.total_s - first, 0.0)
            self.chat_generation_seconds.inc(generation)
            if generation > 0:
                self.chat_tokens_per_second.observe(done.tokens / generation)
        except Exception:  # pragma: no cover
            log.debug("could not record a chat turn", exc_info=True)

    def record_chat_error(self, stage: str, exc: BaseException) -> None:
        try:
            self.chat_turns.labels("error").inc()
            self.errors.labels(f"chat.{stage}", type(exc).__name__).inc()
        except Exception:  # pragma: no cover
            log.debug("could not record a chat error", exc_info=True)

    # -- ingest -------------------------------------------------------------------------
    def record_ingest(self, report: IngestReport) -> None:
        try:
            self.ingest_runs.inc()
            self.ingest_seconds.observe(report.seconds)
            self.ingest_chunks.labels("added").inc(report.chunks_added)
            self.ingest_chunks.labels("skipped").inc(report.chunks_skipped)
            self.ingest_chunks.labels("deleted").inc(report.chunks_deleted)
            self.ingest_files.labels("indexed").inc(report.files_indexed)
            self.ingest_files.labels("unchanged").inc(report.files_unchanged)
            self.ingest_files.labels("removed").inc(report.files_removed)
            self.ingest_rejections.inc(len(report.rejected))
            if report.chunks_added and report.seconds > 0:
                self.ingest_chunks_per_second.set(report.chunks_added / report.seconds)
        except Exception:  # pragma: no cover
            log.debug("could not record an ingestion run", exc_info=True)

    def record_error(self, component: str, exc: BaseException) -> None:
        try:
            self.errors.labels(component, type(exc).__name__).inc()
        except Exception:  # pragma: no cover
            log.debug("could not record an error", exc_info=True)

    # -- exposition ---------------------------------------------------------------------
    def render(self) -> bytes:
        """The Prometheus text exposition of this registry."""
        return generate_latest(self.registry)

    def value(self, name: str, labels: Mapping[str, str] | None = None) -> float:
        """One sample's value (0 when absent), e.g. ``value("rag_query_empty_total", ...)``."""
        got = self.registry.get_sample_value(name, dict(labels or {}))
        return float(got) if got is not None else 0.0


_lock = threading.Lock()
_current = Metrics()
_servers: dict[int, Any] = {}


def metrics() -> Metrics:
    """The instance instrumented code records into."""
    return _current


def configure(*, slow_query_ms: float | None = None) -> Metrics:
    """Set the slow-query threshold (ms) of the current instance (from settings)."""
    if slow_query_ms is not None:
        _current.slow_query_ms = float(slow_query_ms)
    return _current


@contextmanager
def use_metrics(instance: Metrics | None = None) -> Iterator[Metrics]:
    """Record into `instance` (a fresh one by default) inside the block."""
    global _current
    new = instance if instance is not None else Metrics()
    with _lock:
        previous, _current = _current, new
    try:
        yield new
    finally:
        with _lock:
            _current = previous


class _CurrentRegistry:
    """The registry of whatever instance is current when scraped (so `use_metrics` also
    applies to the loopback server)."""

    def collect(self) -> Iterator[Any]:
        return iter(_current.registry.collect())

    def restricted_registry(self, names: Any) -> Any:
        return _current.registry.restricted_registry(names)


def start_metrics_server(port: int, *, host: str = "127.0.0.1") -> int:
    """Serve the metrics at ``http://host:port/metrics`` on a daemon thread (loopback by
    default: this endpoint has no login of its own). A second call for a port is a no-op."""
    with _lock:
        if port in _servers:
            return port
        if host not in ("127.0.0.1", "localhost", "::1"):
            log.warning("the metrics port listens on %s without a login", host)
        _servers[port] = start_http_server(port, addr=host, registry=_CurrentRegistry())
    log.info("metrics on http://%s:%d/metrics", host, port)
    return port


def stop_metrics_server(port: int) -> None:
    """Stop the loopback server of `port` (if any)."""
    with _lock:
        started = _servers.pop(port, None)
    server = started[0] if isinstance(started, tuple) else started
    if server is not None:
        server.shutdown()
        server.server_close()


__all__ = [
    "CONTENT_TYPE",
    "SLOW_QUERY_MS",
    "Metrics",
    "configure",
    "filter_shape",
    "metrics",
    "start_metrics_server",
    "stop_metrics_server",
    "use_metrics",
]
