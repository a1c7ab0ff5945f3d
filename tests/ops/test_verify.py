"""`rag-app verify [--repair]` on embedded Chroma and a Chroma server (the `chroma` fixture): a
clean index, each kind of problem injected behind the ingest state's back, and repairs that leave
a clean index; then the same walk on the Pinecone and Weaviate emulators."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import typer
from sqlalchemy import delete
from typer.testing import CliRunner

from rag_app.app import App
from rag_app.cli.verify import register
from rag_app.errors import ConfigError
from rag_app.ingest.state import tenant_fields_table
from rag_app.ops.verify import repair, source_root, verify
from rag_app.settings import Settings
from rag_app.stores.base import StoreRecord
from tests.fakes import HashEmbeddings, paragraphs
from tests.fakes import markdown_doc as doc


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    root = tmp_path / "corpus"
    (root / "sub").mkdir(parents=True)
    (root / "a.md").write_text(doc("A", paragraphs("alpha", 4)))
    (root / "b.md").write_text(doc("B", paragraphs("beta", 2), acl="[group:hr]"))
    (root / "sub" / "c.txt").write_text(doc("C", paragraphs("gamma", 2), tenant="globex"))
    (root / "d.jsonl").write_text(
        json.dumps({"id": "r1", "text": "delta one", "tenant": "acme", "acl": ["public"]})
        + "\n"
        + json.dumps({"id": "r2", "text": "delta two", "tenant": "acme", "acl": ["public"]})
        + "\n"
    )
    return root


@pytest.fixture
def app(chroma: Any, tmp_path: Path, corpus: Path) -> Any:
    settings = Settings(
        data_dir=tmp_path / "data", chunk_size=60, chunk_overlap=10, **chroma.options()
    )
    application = App(settings, embeddings=HashEmbeddings(32))
    report = application.ingestor.ingest([corpus])
    assert report.ok, report.rejected
    yield application
    application.close()


def cli(app: App, *args: str) -> tuple[int, str]:
    """Run the verify command like `main` does (it returns its exit code)."""
    tui = typer.Typer()

    @tui.callback()
    def _root(ctx: typer.Context) -> None:
        ctx.obj = SimpleNamespace(app=app)

    register(tui)
    result = CliRunner().invoke(tui, ["verify", *args], standalone_mode=False)
    if result.exception is not None:
        raise result.exception
    return int(result.return_value or 0), result.output


def file_key(corpus: Path, name: str) -> str:
    return str((corpus / name).resolve())


def orphan(app: App, rid: str = "orphan-1", **meta: Any) -> None:
    metadata = {"tenant": "acme", "acl": ["public"], "source": "stray.md", **meta}
    app.store.upsert([rid], ["stray text"], [app.embeddings.embed_query("stray text")], [metadata])


def test_clean_index_has_no_problems(app: App) -> None:
    report = verify(app)
    assert report.ok, report.as_dict()
    assert report.records == report.tracked_keys > 4
    code, out = cli(app)
    assert code == 0
    assert "no problems found" in out
    code, out = cli(app, "--json")
    data = json.loads(out)
    assert code == 0 and data["ok"] and data["problems"]["orphan_chunks"]["count"] == 0
    # every stored vector was read back and checked (the store can list its vectors)
    assert not any("dimension check skipped" in n for n in data["notes"])
    assert data["problems"]["wrong_dimension"]["count"] == 0


def test_a_stored_vector_of_the_wrong_length_is_reported(
    app: App, monkeypatch: pytest.MonkeyPatch
) -> None:
    from rag_app.stores.chroma import ChromaStore

    real = ChromaStore.records_with_vectors
    assert isinstance(app.store, ChromaStore)  # embedded or server: the patch reaches both
    victim = next(iter(app.store.get([r.id for r in app.store.records()][:1])))

    def truncated(
        self: ChromaStore, *, tenant: str | None = None
    ) -> Iterator[tuple[StoreRecord, list[float]]]:  # a store that returns one short vector
        for record, vector in real(self, tenant=tenant):
            yield record, (vector[:5] if record.id == victim.id else vector)

    monkeypatch.setattr(ChromaStore, "records_with_vectors", truncated)
    report = verify(app)
    problem = report.as_dict()["problems"]["wrong_dimension"]
    assert problem["count"] == 1 and problem["examples"][0]["id"] == victim.id
    assert problem["examples"][0]["dimension"] == 5


def test_orphan_chunk_is_reported_and_deleted_only_by_repair(app: App) -> None:
    orphan(app)
    code, out = cli(app)
    assert code == 1
    assert "chunks in the store that no file accounts for" in out and "orphan-1" in out
    assert app.store.get(["orphan-1"])  # verify alone deletes nothing
    code, out = cli(app, "--repair")
    assert code == 0, out
    assert "deleted 1 record(s)" in out and "orphan-1" in out
    assert not app.store.get(["orphan-1"])
    assert cli(app) == (0, cli(app)[1]) and verify(app).ok


def test_missing_chunk_is_reported_and_reingested(app: App, corpus: Path) -> None:
    key = file_key(corpus, "a.md")
    ids = app.state.chunk_ids_of(key)
    app.store.delete(ids[:1])
    report = verify(app)
    assert report.problem("missing_chunks").count == 1
    assert report.problem("missing_chunks").examples[0]["missing"] == 1
    assert report.problem("document_mismatch").count == 1
    code, out = cli(app)
    assert code == 1 and "files whose chunks are missing" in out
    code, out = cli(app, "--repair")
    assert code == 0, out
    assert f"re-ingested {key}" in out
    assert sorted(app.state.chunk_ids_of(key)) == sorted(ids)
    assert {r.id for r in app.store.get(ids)} == set(ids)
    assert verify(app).ok
    # The document keeps its name (source) relative to the folder first ingested.
    assert any(d.source == "corpus/a.md" for d in app.state.documents())


def test_missing_jsonl_record_is_reingested(app: App, corpus: Path) -> None:
    key = file_key(corpus, "d.jsonl")
    groups = app.state.chunk_groups_of(key)
    assert len(groups) == 2
    app.store.delete(groups[f"{key}#r2"])
    assert verify(app).problem("missing_chunks").count == 1
    assert not repair(app, verify(app)).not_repaired
    assert verify(app).ok


def test_invalid_acl_is_reported_as_never_served_and_deleted(app: App) -> None:
    orphan(app, "bad-acl", acl=["everyone please"])
    orphan(app, "bad-tenant", tenant="no such/tenant")
    report = verify(app)
    invalid = report.problem("invalid_access")
    assert invalid.count == 2
    assert report.problem("orphan_chunks").count == 0  # counted once, as invalid
    code, out = cli(app)
    assert code == 1 and "never served" in out and "bad-acl" in out
    code, out = cli(app, "--repair")
    assert code == 0, out
    assert "bad-acl" in out and "bad-tenant" in out and "invalid tenant/acl" in out
    assert not app.store.get(["bad-acl", "bad-tenant"])
    assert verify(app).ok


def test_field_missing_from_catalog_is_added_back(app: App) -> None:
    with app.state.engine.begin() as conn:
        conn.execute(
            delete(tenant_fields_table).where(
                tenant_fields_table.c.tenant == "acme", tenant_fields_table.c.name == "title"
            )
        )
    assert "title" not in app.state.fields("acme")
    report = verify(app)
    unknown = report.problem("unknown_fields")
    assert unknown.count == 1 and unknown.examples[0] == {
        "tenant": "acme",
        "field": "title",
        "kind": "str",
    }
    code, out = cli(app, "--repair")
    assert code == 0, out
    assert "added field title (str) to tenant acme's catalog" in out
    assert app.state.fields("acme")["title"] == "str"
    assert verify(app).ok


def test_chunk_count_and_document_rows(app: App, corpus: Path) -> None:
    key = file_key(corpus, "b.md")
    ids = app.state.chunk_ids_of(key)
    # A chunk lost from both the store and the record manager: only chunk_count tells.
    app.store.delete(ids[:1])
    app.state.delete_chunk_records(ids[:1])
    report = verify(app)
    mismatch = report.problem("chunk_count_mismatch")
    assert mismatch.count == 1 and mismatch.examples[0]["stored"] == len(ids) - 1
    assert report.problem("document_mismatch").count == 1
    assert not repair(app, report).not_repaired
    assert verify(app).ok


def test_stale_document_rows_are_rebuilt(app: App) -> None:
    from rag_app.ingest.state import DocumentRow

    row = app.state.documents()[0]
    app.state.record_documents([DocumentRow(**{**row.__dict__, "chunks": row.chunks + 5})])
    report = verify(app)
    assert report.problem("document_mismatch").count == 1
    result = repair(app, report)
    assert result.documents_rebuilt and not result.not_repaired
    assert verify(app).ok


def test_vanished_file_is_forgotten_and_its_remaining_chunks_are_kept(
    app: App, corpus: Path
) -> None:
    key = file_key(corpus, "a.md")
    ids = app.state.chunk_ids_of(key)
    app.store.delete(ids[:1])
    (corpus / "a.md").unlink()
    code, out = cli(app, "--repair")
    assert code == 1  # the rest of the file is still served: said, not silently dropped
    assert "no longer exists" in out and "rag-app delete --source corpus/a.md" in out
    assert len(app.store.get(ids)) == len(ids) - 1
    assert verify(app).ok


def test_everything_at_once_then_clean(app: App, corpus: Path) -> None:
    orphan(app)
    orphan(app, "bad-acl", acl="public")  # a string, not a list: never served
    app.store.delete(app.state.chunk_ids_of(file_key(corpus, "sub/c.txt"))[:1])
    code, out = cli(app, "--json")
    data = json.loads(out)
    assert code == 1 and not data["ok"]
    counts = {k: v["count"] for k, v in data["problems"].items()}
    assert counts["orphan_chunks"] == 1 and counts["invalid_access"] == 1
    assert counts["missing_chunks"] == 1
    code, out = cli(app, "--repair", "--json")
    data = json.loads(out)
    assert code == 0, data["repair"]
    assert {d["id"] for d in data["repair"]["deleted"]} == {"orphan-1", "bad-acl"}
    assert cli(app)[0] == 0


@pytest.mark.parametrize("chroma", ["chroma"], indirect=True)  # the store is wrapped away
def test_requires_a_scannable_store(app: App) -> None:
    class Opaque:
        def __init__(self, inner: Any) -> None:
            self.info = inner.info

    bare = App(app.settings, embeddings=app.embeddings, store=Opaque(app.store))  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="Scannable"):
        verify(bare)


def test_source_root_gives_the_same_name_back() -> None:
    assert source_root("/srv/docs/hr/a.md", "docs/hr/a.md") == Path("/srv/docs")
    assert source_root("/srv/docs/a.md", "a.md") == Path("/srv/docs/a.md")
    assert source_root("/srv/docs/a.md", "other/a.md") is None
    assert source_root("/srv/d.jsonl", "d.jsonl#r1") == Path("/srv/d.jsonl")


# -- the other stores, on their emulators -------------------------------------------------------
def _emulated_settings(store: str, emu: Any, tmp_path: Path) -> Settings:
    if store == "weaviate":
        options: dict[str, Any] = {"url": emu.url, "grpc_port": emu.grpc_port}
        return Settings(
            store="weaviate",
            store_options=options,
            data_dir=tmp_path / "data",
            collection="verify_app",
        )
    options = {
        "api_key": "verify-key",
        "controller_host": emu.url,
        "host": None,
        "index": "verify-test",
        "retry_base_delay_s": 0.001,
    }
    return Settings(store="pinecone", store_options=options, data_dir=tmp_path / "data")


@pytest.fixture(params=["weaviate", "pinecone"])
def emulated(request: pytest.FixtureRequest, tmp_path: Path, corpus: Path) -> Any:
    if request.param == "weaviate":
        pytest.importorskip("weaviate", reason="weaviate-client is not installed")
        from tests.emulators.weaviate_server import WeaviateEmulator

        emulator: Any = WeaviateEmulator()
    else:
        pytest.importorskip("pinecone", reason="pinecone is not installed")
        from tests.emulators.pinecone_server import PineconeEmulator

        emulator = PineconeEmulator(api_key="verify-key")
    with emulator as emu:
        application = App(
            _emulated_settings(request.param, emu, tmp_path), embeddings=HashEmbeddings(32)
        )
        report = application.ingestor.ingest([corpus])
        assert report.ok, report.rejected
        yield application
        application.close()


@pytest.mark.server
def test_verify_and_repair_on_an_emulated_store(emulated: App, corpus: Path) -> None:
    app = emulated
    report = verify(app)
    assert report.ok, report.as_dict()
    assert report.records == report.tracked_keys > 4
    orphan(app)
    orphan(app, "bad-acl", acl=["not a token"])
    key = file_key(corpus, "a.md")
    app.store.delete(app.state.chunk_ids_of(key)[:1])
    code, out = cli(app)
    assert code == 1
    assert "orphan-1" in out and "bad-acl" in out and "files whose chunks are missing" in out
    code, out = cli(app, "--repair")
    assert code == 0, out
    assert f"re-ingested {key}" in out
    assert not app.store.get(["orphan-1", "bad-acl"])
    assert cli(app)[0] == 0
