"""`rag-app stats`: counts per tenant, source type and store, and the ingest run log, all read
from the ingest state (no store scan, no embedding model)."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from rag_app.access.permissions import Principal
from rag_app.app import App
from rag_app.cli.admin import register
from rag_app.ingest import state as state_module
from rag_app.ingest.upload import ingest_uploads
from rag_app.ops.transfer import export_index, import_file
from rag_app.settings import Settings
from tests.fakes import HashEmbeddings
from tests.fakes import markdown_doc as doc
from tests.fakes import paragraphs as words


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    root = tmp_path / "corpus"
    root.mkdir()
    (root / "a.md").write_text(doc("A", words("alpha", 3), tenant="acme"))
    (root / "b.md").write_text(doc("B", words("beta", 1), tenant="globex"))
    (root / "c.txt").write_text(doc("C", words("gamma", 2), tenant="acme"))
    (root / "d.jsonl").write_text(
        "".join(
            json.dumps({"id": f"r{i}", "text": f"delta {i}", "tenant": "globex", "acl": ["public"]})
            + "\n"
            for i in range(3)
        )
    )
    return root


def make_app(tmp_path: Path, collection: str = "rag_app") -> App:
    settings = Settings(
        data_dir=tmp_path / "data", collection=collection, chunk_size=60, chunk_overlap=10
    )
    return App(settings, embeddings=HashEmbeddings(32))


@pytest.fixture
def app(tmp_path: Path, corpus: Path) -> Any:
    application = make_app(tmp_path)
    report = application.ingestor.ingest([corpus], origin="cli")
    assert report.ok, report.rejected
    yield application
    application.close()


def cli(app: App, *args: str) -> str:
    tui = typer.Typer()

    @tui.callback()
    def _root(ctx: typer.Context) -> None:
        ctx.obj = SimpleNamespace(app=app)

    register(tui)
    result = CliRunner().invoke(
        tui, ["stats", *args], standalone_mode=False, env={"COLUMNS": "250"}
    )
    if result.exception is not None:
        raise result.exception
    return str(result.output)


def stored_per_tenant_and_type(app: App) -> dict[tuple[str, str], int]:
    """Ground truth from the store itself: chunks per (tenant, file type)."""
    counts: dict[tuple[str, str], int] = {}
    for record in app.store.records():  # type: ignore[attr-defined]
        source = str(record.metadata["source"]).split("#", 1)[0]
        key = (str(record.metadata["tenant"]), Path(source).suffix.lstrip("."))
        counts[key] = counts.get(key, 0) + 1
    return counts


def test_counts_per_tenant_and_source_type_match_the_store(app: App) -> None:
    data = app.admin.stats()
    truth = stored_per_tenant_and_type(app)
    got = {
        (tenant, row["type"]): n
        for row in data["per_source_type"]
        for tenant, n in row["per_tenant"].items()
    }
    assert got == truth
    assert {row["type"] for row in data["per_source_type"]} == {"md", "txt", "jsonl"}
    jsonl = next(row for row in data["per_source_type"] if row["type"] == "jsonl")
    assert jsonl["documents"] == 3  # one document per JSONL record
    assert data["chunks"] == sum(truth.values()) == app.store.count()
    assert data["per_tenant"] == {
        t: sum(n for (tt, _), n in truth.items() if tt == t) for t in ("acme", "globex")
    }


def test_stats_needs_neither_the_store_nor_the_model(
    tmp_path: Path, corpus: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = make_app(tmp_path)
    first.ingestor.ingest([corpus])
    expected = first.admin.stats()
    first.close()

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("stats opened the store or loaded the embedding model")

    monkeypatch.setattr("rag_app.stores.open_store", refuse)
    monkeypatch.setattr("rag_app.app.build_embeddings", refuse)
    fresh = App(Settings(data_dir=tmp_path / "data", chunk_size=60, chunk_overlap=10))
    try:
        again = fresh.admin.stats()
    finally:
        fresh.close()
    assert again["per_source_type"] == expected["per_source_type"]
    assert again["chunks"] == expected["chunks"] > 0


def test_every_store_of_the_state_database_is_listed(
    app: App, tmp_path: Path, corpus: Path
) -> None:
    other = make_app(tmp_path, collection="second")
    try:
        other.ingestor.ingest([corpus / "a.md"])
        stores = {row["store"]: row for row in other.admin.stats()["stores"]}
        assert stores[other.store_location]["current"]
        assert stores[other.store_location]["documents"] == 1
        assert stores[other.store_location]["chunks"] == other.store.count()
        assert not stores[app.store_location]["current"]
        assert stores[app.store_location]["chunks"] == app.store.count()
    finally:
        other.close()


def test_runs_record_origin_status_counts_and_failures(
    app: App, corpus: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (corpus / "a.md").write_text(doc("A", words("alpha", 4), tenant="acme"))
    partial = app.ingestor.ingest([corpus, tmp_path / "missing"], origin="cli")
    assert not partial.ok

    def boom(*args: Any, **kwargs: Any) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(app.ingestor, "_ingest", boom)
    with pytest.raises(OSError):
        app.ingestor.ingest([corpus], origin="serve")
    monkeypatch.undo()

    runs = app.admin.stats()["last_ingests"]
    assert [r["status"] for r in runs] == ["failed", "partial", "ok"]  # newest first
    assert runs[0]["origin"] == "serve" and runs[0]["error"] == "OSError: disk full"
    assert runs[1]["counts"]["files_indexed"] == 1
    assert runs[1]["counts"]["files_unchanged"] == 3
    assert runs[1]["counts"]["rejected"] == 1
    assert runs[1]["paths"] == [str(corpus), str(tmp_path / "missing")]
    assert runs[2]["counts"]["chunks_added"] == app.admin.stats()["chunks"] - (
        partial.chunks_added - partial.chunks_deleted
    )
    assert all(r["seconds"] is not None and r["seconds"] >= 0 for r in runs)


def test_a_killed_run_stays_visible_as_running(app: App) -> None:
    app.state.begin_run(origin="cli", paths=["big/folder"])  # and never finished
    out = cli(app)
    assert "running or killed" in out
    assert app.admin.stats()["last_ingests"][0]["seconds"] is None


def test_upload_and_import_runs_name_their_origin(app: App, tmp_path: Path) -> None:
    upload = tmp_path / "notes.md"
    upload.write_text("uploaded words " * 20)
    principal = Principal(user_id="ann", tenant="acme", groups=frozenset())
    report = ingest_uploads(
        app.ingestor, principal, [upload], acl=["user:ann"], upload_root=tmp_path / "uploads"
    )
    assert report.ok
    export = tmp_path / "backup.jsonl.gz"
    export_index(app, export)
    target = make_app(tmp_path / "restore")
    try:
        import_file(target, export)
        (run,) = target.admin.stats()["last_ingests"]
        assert run["origin"] == "import" and run["status"] == "ok"
        assert run["counts"]["records_written"] == app.store.count()
    finally:
        target.close()
    latest = app.admin.stats()["last_ingests"][0]
    assert latest["origin"] == "upload" and latest["user"] == "ann"


def test_the_run_log_is_pruned(app: App, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(state_module, "RUNS_KEPT", 3)
    for i in range(5):
        run = app.state.begin_run(origin="cli", paths=[f"p{i}"])
        app.state.finish_run(run, status="ok", counts={})
    runs = app.state.runs(limit=100)
    assert [r.paths for r in runs] == [["p4"], ["p3"], ["p2"]]


def test_cli_shows_types_stores_runs_and_documents_on_request(app: App, corpus: Path) -> None:
    out = cli(app)
    assert "Per source type" in out and "jsonl" in out and "Last ingests" in out
    assert "(current)" in out
    assert "Documents" not in out and "a.md" not in out
    listed = cli(app, "--documents")
    assert "a.md" in listed and "d.jsonl#r1" in listed
    data = json.loads(cli(app, "--json", "--last", "1"))
    assert len(data["last_ingests"]) == 1
    assert data["last_ingests"][0]["paths"] == [str(corpus)]


def test_stats_agree_with_every_store(
    store_settings: dict[str, Any], corpus: Path, tmp_path: Path
) -> None:
    """Chroma (embedded and server), Pinecone and Weaviate (emulators): the counts per tenant
    and source type are the store's own, and a delete by source shows up in them."""
    application = App(
        Settings(**store_settings, chunk_size=60, chunk_overlap=10), embeddings=HashEmbeddings(32)
    )
    try:
        assert application.ingestor.ingest([corpus], origin="cli").ok
        data = application.admin.stats()
        got = {
            (tenant, row["type"]): n
            for row in data["per_source_type"]
            for tenant, n in row["per_tenant"].items()
        }
        assert got == stored_per_tenant_and_type(application)
        assert data["chunks"] == application.store.count()
        victim = next(r["source"] for r in data["per_source"] if r["type"] == "txt")
        assert application.admin.delete(sources=[victim]) > 0
        after = application.admin.stats()
        assert "txt" not in {row["type"] for row in after["per_source_type"]}
        assert after["chunks"] == application.store.count()
        assert after["last_ingests"][0]["origin"] == "cli"
    finally:
        application.close()
