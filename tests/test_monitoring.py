"""Metrics and the slow-query log: filter shapes, search/chat/ingest counters, and `/metrics`
scraped from a launched UI (logged in and out)."""

from __future__ import annotations

import json
import logging
import shutil
import socket
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx
import pytest

from rag_app import monitoring
from rag_app.access.filters import Node, parse_filter, to_dict
from rag_app.access.permissions import Principal, effective_filter
from rag_app.errors import StoreError
from rag_app.monitoring import Metrics, filter_shape, use_metrics
from rag_app.retrieval.search import SecureSearch
from rag_app.stores.base import StoreHit, StoreInfo, StoreRecord
from tests.fakes import CitingFakeChat, HashEmbeddings

ROOT = Path(__file__).resolve().parents[1]
ANN = Principal("acme", "ann", frozenset({"hr"}))
LABELS = {"store": "fake", "retriever": "dense"}


class FakeStore:
    """Returns its fixed hits for every query (the access filter is ignored on purpose, like
    a broken store would), or raises `fail`."""

    def __init__(self, hits: Sequence[StoreHit] = (), fail: Exception | None = None) -> None:
        self.hits = list(hits)
        self.fail = fail

    @property
    def info(self) -> StoreInfo:
        return StoreInfo("fake", "memory", "fake", 4, "hash-4")

    def upsert(self, *args: Any, **kwargs: Any) -> None:
        raise AssertionError("search must not write")

    def delete(self, ids: Sequence[str], *, tenant: str | None = None) -> None:
        raise AssertionError("search must not delete")

    def query(
        self, vector: Sequence[float], k: int, where: Node | None, *, tenant: str | None = None
    ) -> list[StoreHit]:
        if self.fail is not None:
            raise self.fail
        return self.hits[:k]

    def records(self, *args: Any, **kwargs: Any) -> Iterator[StoreRecord]:
        return iter(())

    def get(self, ids: Sequence[str], *, tenant: str | None = None) -> list[StoreRecord]:
        return []

    def count(self, *, tenant: str | None = None) -> int:
        return len(self.hits)

    def close(self) -> None:
        pass


def hit(doc_id: str, tenant: str, acl: list[str]) -> StoreHit:
    return StoreHit(id=doc_id, text="text", metadata={"tenant": tenant, "acl": acl}, score=0.5)


@pytest.fixture
def m() -> Iterator[Metrics]:
    with use_metrics(Metrics(slow_query_ms=1e9)) as fresh:
        yield fresh


# -- filter shape -------------------------------------------------------------------------------
def test_filter_shape_keeps_fields_and_operators_never_values() -> None:
    caller = parse_filter({"year": {"$gte": 2020}, "category": "secret-project-x"})
    effective = to_dict(effective_filter(ANN, caller))
    shape = filter_shape(effective)
    assert shape == {
        "$and": [
            {
                "$and": [
                    {"tenant": "$eq"},
                    {"$or": [{"acl": "$contains"}, {"acl": "$contains"}, {"acl": "$contains"}]},
                ]
            },
            {"$and": [{"year": "$gte"}, {"category": "$eq"}]},
        ]
    }
    text = json.dumps(shape)
    for value in ("acme", "ann", "group:hr", "public", "2020", "secret-project-x"):
        assert value not in text


def test_filter_shape_of_shorthand_ranges_and_junk() -> None:
    assert filter_shape({"team": "hr"}) == {"team": "$eq"}
    assert filter_shape({"year": {"$lte": 2024, "$gte": 2020}}) == {"year": ["$gte", "$lte"]}
    assert filter_shape({"$or": {"a": 1}}) == {"$or": [{"a": "$eq"}]}
    assert filter_shape({"x": {"nested": "secret"}}) == {"x": "?"}
    assert filter_shape(["secret"]) == "?"
    assert filter_shape({}) == {}


# -- search ---------------------------------------------------------------------------------
def test_search_counts_hits_dropped_and_audits_each(
    m: Metrics, caplog: pytest.LogCaptureFixture
) -> None:
    store = FakeStore([hit("ok-1", "acme", ["public"]), hit("forbidden", "globex", ["public"])])
    search = SecureSearch(store, HashEmbeddings(dimension=4), default_k=5)
    with caplog.at_level(logging.ERROR, logger="rag_app.audit"):
        result = search.search(ANN, "payroll")
    assert [h.id for h in result.hits] == ["ok-1"]
    assert result.dropped == 1
    assert m.value("rag_query_dropped_hits_total", LABELS) == 1
    assert m.value("rag_query_seconds_count", LABELS) == 1
    assert m.value("rag_query_hits_sum", LABELS) == 1
    assert m.value("rag_query_empty_total", LABELS) == 0
    audits = [r for r in caplog.records if r.name == "rag_app.audit"]
    assert len(audits) == 1 and "forbidden" in audits[0].getMessage()

    empty = SecureSearch(FakeStore(), HashEmbeddings(dimension=4))
    assert empty.search(ANN, "nothing").hits == []
    assert empty.search_by_vector(ANN, [0.1, 0.2, 0.3, 0.4]).hits == []
    assert m.value("rag_query_empty_total", LABELS) == 2
    assert m.value("rag_query_seconds_count", LABELS) == 3


def test_search_errors_are_counted_by_kind_and_still_raised(m: Metrics) -> None:
    search = SecureSearch(FakeStore(fail=StoreError("down")), HashEmbeddings(dimension=4))
    with pytest.raises(StoreError, match="down"):
        search.search(ANN, "payroll")
    assert m.value("rag_errors_total", {"component": "search", "kind": "StoreError"}) == 1
    with pytest.raises(Exception, match="k must be"):
        search.search(ANN, "payroll", k=0)
    assert m.value("rag_errors_total", {"component": "search", "kind": "FilterError"}) == 1


def test_slow_query_line_has_store_retriever_shape_and_timings(
    m: Metrics, caplog: pytest.LogCaptureFixture
) -> None:
    m.slow_query_ms = 0
    search = SecureSearch(FakeStore([hit("ok-1", "acme", ["public"])]), HashEmbeddings(4))
    with caplog.at_level(logging.WARNING, logger="rag_app.slow"):
        search.search(ANN, "payroll", filter={"category": "secret-project-x"}, k=3)
    lines = [r.getMessage() for r in caplog.records if r.name == "rag_app.slow"]
    assert len(lines) == 1
    line = lines[0]
    for part in ("store=fake", "retriever=dense", "k=3", "hits=1", "total_ms=", "retrieve_ms="):
        assert part in line
    assert '{"category":"$eq"}' in line and '"tenant":"$eq"' in line
    for value in ("secret-project-x", "acme", "ann", "group:hr", "public"):
        assert value not in line
    assert m.value("rag_query_slow_total", LABELS) == 1


def test_default_threshold_and_configure() -> None:
    assert monitoring.SLOW_QUERY_MS == 500.0
    with use_metrics() as fresh:
        assert fresh.slow_query_ms == 500.0
        monitoring.configure(slow_query_ms=25)
        assert monitoring.metrics().slow_query_ms == 25


# -- the launched UI --------------------------------------------------------------------------
def total(m: Metrics, sample: str) -> float:
    return sum(
        s.value for metric in m.registry.collect() for s in metric.samples if s.name == sample
    )


def labels_of(m: Metrics, sample: str, label: str) -> set[str]:
    return {
        s.labels[label]
        for metric in m.registry.collect()
        for s in metric.samples
        if s.name == sample
    }


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.slow  # starts the chat UI server and the metrics server
def test_serve_exposes_metrics_after_a_chat_turn_and_a_query(tmp_path: Path) -> None:
    gradio_client = pytest.importorskip("gradio_client")
    from rag_app.app import App
    from rag_app.settings import Settings
    from rag_app.ui.app import launch

    users = tmp_path / "users.yaml"
    shutil.copyfile(ROOT / "demo/users.yaml", users)
    app = App(
        Settings(data_dir=tmp_path, users_file=users, k=4),
        embeddings=HashEmbeddings(64),
        llm=CitingFakeChat.build(),
    )
    with use_metrics() as m:
        assert app.ingestor.ingest([ROOT / "demo/corpus"]).ok
        port, metrics_port = free_port(), free_port()
        demo = launch(app, port=port, prevent_thread_lock=True, metrics_port=metrics_port)
        url = f"http://127.0.0.1:{port}"
        try:
            chat = gradio_client.Client(url + "/", auth=("alice", "alice-demo"), verbose=False)
            history, *_ = chat.predict(
                "How many weeks of paid parental leave do I get?",
                [],
                [],
                "",
                "",
                "",
                api_name="/chat",
            )
            assert "[1]" in str(history[-1])
            app.search.search(app.users.principal("alice"), "parental leave")  # a query

            with httpx.Client(base_url=url, timeout=30) as anonymous:
                r = anonymous.get("/metrics")
                assert r.status_code == 401
                assert "rag_query_seconds" not in r.text

            with httpx.Client(base_url=url, timeout=30) as logged_in:
                r = logged_in.post("/login", data={"username": "alice", "password": "alice-demo"})
                assert r.status_code == 200, r.text
                r = logged_in.get("/metrics")
            assert r.status_code == 200
            assert r.headers["content-type"].startswith("text/plain")
            assert r.headers.get("x-content-type-options") == "nosniff"
            body = r.text
            for name in (
                "rag_query_seconds_bucket",
                "rag_query_hits",
                "rag_query_dropped_hits_total",
                "rag_chat_time_to_first_token_seconds",
                "rag_chat_tokens_total",
                "rag_ingest_chunks_total",
                "rag_ingest_seconds",
            ):
                assert name in body
            searches = total(m, "rag_query_seconds_count")
            assert searches >= 2  # the chat turn's retrieval and the query
            assert total(m, "rag_query_hits_sum") > 0
            assert m.value("rag_chat_turns_total", {"outcome": "answered"}) == 1
            assert m.value("rag_chat_time_to_first_token_seconds_count") == 1
            assert m.value("rag_chat_tokens_total") > 0
            assert m.value("rag_ingest_chunks_total", {"action": "added"}) > 0
            assert m.value("rag_ingest_runs_total") == 1
            assert total(m, "rag_query_dropped_hits_total") == 0
            assert {"chroma"} == labels_of(m, "rag_query_seconds_count", "store")

            # the loopback port serves the same registry (no login: loopback only)
            r = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10)
            assert r.status_code == 200 and "rag_chat_tokens_total" in r.text
        finally:
            demo.close()
            monitoring.stop_metrics_server(metrics_port)


# -- ingest -----------------------------------------------------------------------------------
def test_ingest_and_chat_errors_are_counted(tmp_path: Path) -> None:
    from rag_app.app import App
    from rag_app.settings import Settings

    users = tmp_path / "users.yaml"
    shutil.copyfile(ROOT / "demo/users.yaml", users)
    app = App(
        Settings(data_dir=tmp_path, users_file=users),
        embeddings=HashEmbeddings(16),
        llm=CitingFakeChat.build(),  # for the chat turn below
    )
    with use_metrics() as m:
        report = app.ingestor.ingest([ROOT / "demo/corpus", tmp_path / "missing"])
        assert report.chunks_added > 0 and len(report.rejected) == 1
        assert m.value("rag_ingest_chunks_total", {"action": "added"}) == report.chunks_added
        assert m.value("rag_ingest_rejections_total") == 1
        assert m.value("rag_ingest_seconds_count") == 1
        assert m.value("rag_ingest_last_chunks_per_second") > 0
        again = app.ingestor.ingest([ROOT / "demo/corpus"])
        assert again.files_unchanged == report.files_indexed
        assert m.value("rag_ingest_files_total", {"outcome": "unchanged"}) == again.files_unchanged
        assert m.value("rag_ingest_runs_total") == 2

        # a chat turn that fails is counted by outcome and by kind
        session = app.chat.new_session()
        events = list(app.chat.stream(session, app.principal("alice"), "   "))
        assert type(events[-1]).__name__ == "Error"
        assert m.value("rag_chat_turns_total", {"outcome": "error"}) == 1
        assert m.value("rag_errors_total", {"component": "chat.input", "kind": "ChatError"}) == 1


def test_revised_turns_and_unsupported_claims_are_counted() -> None:
    from rag_app.chain.events import Done, Timings, UnsupportedClaim

    claim = UnsupportedClaim("It is 999 EUR [1].", ["999 EUR"], [1])
    with use_metrics() as m:
        timings = Timings(0.0, 0.1, 1.0, 2.0)
        m.record_chat(Done("No [1].", "q", [1], False, [], timings, 3, revised_from="Yes [1]."))
        m.record_chat(Done("999 EUR [1].", "q", [1], False, [], timings, 3, unsupported=[claim]))
        m.record_chat(Done("Fine [1].", "q", [1], False, [], timings, 3))
        assert m.value("rag_chat_revised_total") == 1
        assert m.value("rag_chat_unsupported_claims_total") == 1
        assert m.value("rag_chat_turns_total", {"outcome": "answered"}) == 3
