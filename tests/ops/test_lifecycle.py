"""`rag-app stores list | describe | create | protect | delete` and `rag-app delete
--older-than` on embedded Chroma, a Chroma server and the Pinecone and Weaviate emulators."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import typer
from sqlalchemy import update
from typer.testing import CliRunner

from rag_app.app import App
from rag_app.cli import admin, stores
from rag_app.errors import ConfigError
from rag_app.ingest.state import documents_table
from rag_app.ops.lifecycle import parse_duration
from rag_app.settings import Settings
from rag_app.stores.base import Administrable
from tests.fakes import HashEmbeddings
from tests.fakes import markdown_doc as doc

DAY = 86400.0


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    root = tmp_path / "corpus"
    root.mkdir()
    old = time.time() - 200 * DAY
    (root / "old.md").write_text(doc("Old", "ancient robot notes", extra=f"created_at: {old}\n"))
    (root / "new.md").write_text(
        doc("New", "fresh robot notes", extra=f"created_at: {int(time.time())}\n")
    )
    (root / "plain.md").write_text(doc("Plain", "undated robot notes", tenant="globex"))
    return root


def cli(app: App, *args: str, input: str | None = None) -> tuple[int, str]:
    """Run a command like `main` does (it returns its exit code); errors are raised."""
    tui = typer.Typer()

    @tui.callback()
    def _root(ctx: typer.Context) -> None:
        ctx.obj = SimpleNamespace(app=app)

    stores.register(tui)
    admin.register(tui)
    result = CliRunner().invoke(tui, list(args), input=input, standalone_mode=False)
    if result.exception is not None:
        raise result.exception
    return int(result.return_value or 0), result.output


def lifecycle(app: App, name: str) -> None:
    """The store-independent walk: create, list, describe, protect, refuse, delete."""
    assert isinstance(app.store, Administrable)
    code, out = cli(app, "stores", "create", name, "--deletion-protection")
    assert code == 0 and f"created {name}" in out
    info = app.store.describe_collection(name)
    assert info.dimension == 32 and info.embedding_model == "hash-32"
    assert info.deletion_protection and info.count == 0
    with pytest.raises(ConfigError, match="already exists"):
        cli(app, "stores", "create", name)

    code, out = cli(app, "stores", "list")
    assert name in out and app.store.info.collection in out
    listed = {i.name: i for i in app.store.list_collections()}
    configured = listed[app.store.info.collection]
    assert configured.count == 3 and configured.dimension == 32
    assert set(configured.per_tenant) >= {"acme", "globex"}

    code, out = cli(app, "stores", "describe")
    assert "embedding model: hash-32" in out and "deletion protection: off" in out
    assert "acme" in out and "globex" in out

    with pytest.raises(ConfigError, match="deletion protection on") as refused:
        cli(app, "stores", "delete", name, "--yes")
    assert f"rag-app stores protect {name} --off" in str(refused.value)
    with pytest.raises(ConfigError, match="deletion protection on"):
        app.store.delete_collection(name)  # the adapter refuses too
    code, out = cli(app, "stores", "protect", name, "--off")
    assert "off" in out and not app.store.describe_collection(name).deletion_protection

    with pytest.raises(typer.Abort):
        cli(app, "stores", "delete", name, input="n\n")
    assert name in {i.name for i in app.store.list_collections()}
    code, out = cli(app, "stores", "delete", name, input="y\n")
    assert code == 0 and "this deletes" in out and f"deleted {name}" in out
    assert name not in {i.name for i in app.store.list_collections()}
    with pytest.raises(ConfigError, match="does not exist"):
        app.store.describe_collection(name)


def older_than(app: App, corpus: Path) -> None:
    """created_at decides where present, else the ingest time; the plan is confirmed."""
    report = app.ingestor.ingest([corpus])
    assert report.ok, report.rejected
    plan = app.admin.plan_delete(older_than=90 * DAY)
    assert {s.rsplit("/", 1)[-1] for s in plan.per_source} == {"old.md"}
    assert len(plan.ids) == 1
    # the undated document counts as old once its ingest time is
    with app.state.engine.begin() as conn:
        conn.execute(update(documents_table).values(updated_at=time.time() - 100 * DAY))
    names = {s.rsplit("/", 1)[-1] for s in app.admin.plan_delete(older_than=90 * DAY).per_source}
    assert names == {"old.md", "plain.md"}  # new.md's created_at is recent
    with pytest.raises(typer.Abort):
        cli(app, "delete", "--older-than", "90d", input="n\n")
    assert app.store.count() == 3
    code, out = cli(app, "delete", "--older-than", "90d", "--yes")
    assert code == 0 and "this will delete 2 chunks" in out and "deleted 2 chunks" in out
    assert app.store.count() == 1
    assert {d.source.rsplit("/", 1)[-1] for d in app.state.documents()} == {"new.md"}


# -- durations -----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "seconds"), [("90d", 90 * DAY), ("12h", 43200), ("2w", 14 * DAY), ("30m", 1800)]
)
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "90", "d", "-3d", "3y", "0d", "1.5.2h"])
def test_parse_duration_rejects(text: str) -> None:
    with pytest.raises(ConfigError, match="invalid duration"):
        parse_duration(text)


def test_delete_needs_a_selection(tmp_path: Path) -> None:
    app = App(Settings(data_dir=tmp_path / "data"), embeddings=HashEmbeddings(32))
    with pytest.raises(Exception, match="--older-than"):
        cli(app, "delete")
    with pytest.raises(ConfigError, match="invalid duration"):
        cli(app, "delete", "--older-than", "soon")


# -- Chroma, embedded and server (the `chroma` fixture) --------------------------------------
@pytest.fixture
def chroma_app(chroma: Any, tmp_path: Path) -> Iterator[App]:
    settings = Settings(data_dir=tmp_path / "data", **chroma.options())
    app = App(settings, embeddings=HashEmbeddings(32))
    yield app
    app.close()


def test_lifecycle_on_chroma(chroma_app: App, chroma: Any, corpus: Path) -> None:
    assert chroma_app.store.info.backend == chroma.kind
    older_than(chroma_app, corpus)
    chroma_app.ingestor.ingest([corpus])  # back to three documents
    assert chroma_app.store.count() == 3
    lifecycle(chroma_app, chroma.name("archive_2026"))
    info = chroma_app.store.describe_collection(chroma_app.store.info.collection)  # type: ignore[attr-defined]
    assert info.metric == "cosine" and info.per_tenant == {"acme": 2, "globex": 1}


def test_chroma_create_refuses_other_metrics(chroma_app: App) -> None:
    with pytest.raises(ConfigError, match="cosine"):
        cli(chroma_app, "stores", "create", "x_col", "--metric", "dotproduct")


def test_deleted_collection_leaves_no_list_metadata_behind(chroma: Any, tmp_path: Path) -> None:
    """`stores delete` of a collection that holds records, then an ingest into another one:
    the new chunk must not carry the deleted chunk's list fields (here `tags`). Chroma 1.5's
    own delete_collection fails this (chroma-core/chroma#7594); the adapter deletes the
    records first."""
    tagged, plain = tmp_path / "tagged", tmp_path / "plain"
    tagged.mkdir()
    plain.mkdir()
    (tagged / "t.md").write_text(doc("T", "robot notes", extra="tags: [secret, internal]\n"))
    (plain / "p.md").write_text(doc("P", "robot notes"))
    data = tmp_path / "data"  # one Chroma (embedded) for both collections
    old = App(Settings(data_dir=data, **chroma.options("old_col")), embeddings=HashEmbeddings(32))
    assert old.ingestor.ingest([tagged]).ok
    assert all("tags" in r.metadata for r in old.store.records())  # type: ignore[attr-defined]
    old.close()
    new = App(Settings(data_dir=data, **chroma.options("new_col")), embeddings=HashEmbeddings(32))
    try:
        cli(new, "stores", "delete", old.store.info.collection, "--yes")
        assert new.ingestor.ingest([plain]).ok
        leaked = [r.metadata for r in new.store.records() if "tags" in r.metadata]  # type: ignore[attr-defined]
        assert not leaked, f"the new chunk inherited the deleted one's list fields: {leaked}"
    finally:
        new.close()


# -- Pinecone emulator ---------------------------------------------------------------------
PINECONE_KEY = "lifecycle-key"


@pytest.fixture(scope="module")
def pinecone_emulator() -> Iterator[Any]:
    from tests.emulators.pinecone_server import PineconeEmulator

    with PineconeEmulator(api_key=PINECONE_KEY) as emu:
        yield emu


@pytest.mark.server
def test_lifecycle_on_pinecone(tmp_path: Path, corpus: Path, pinecone_emulator: Any) -> None:
    pytest.importorskip("pinecone")
    settings = Settings(
        store="pinecone",
        store_options={
            "api_key": PINECONE_KEY,
            "controller_host": pinecone_emulator.url,
            "host": None,
            "index": f"life-{uuid.uuid4().hex[:10]}",
            "retry_base_delay_s": 0.001,
        },
        data_dir=tmp_path / "data",
    )
    app = App(settings, embeddings=HashEmbeddings(32))
    try:
        older_than(app, corpus)
        app.ingestor.ingest([corpus])
        lifecycle(app, f"arch-{uuid.uuid4().hex[:8]}")
        info = app.store.describe_collection(app.store.info.collection)  # type: ignore[attr-defined]
        assert info.per_tenant == {"acme": 2, "globex": 1} and info.metric == "cosine"
        assert info.extra["cloud"] == "aws" and info.extra["host"].startswith("http://")
        # explicit cloud/region/metric reach the control plane
        name = f"hyb-{uuid.uuid4().hex[:8]}"
        cli(app, "stores", "create", name, "--metric", "dotproduct", "--region", "us-west-2")
        made = app.store.describe_collection(name)  # type: ignore[attr-defined]
        assert made.metric == "dotproduct" and made.extra["region"] == "us-west-2"
        cli(app, "stores", "delete", name, "--yes")
    finally:
        app.close()


# -- Weaviate emulator ---------------------------------------------------------------------
@pytest.fixture(scope="module")
def weaviate_emulator() -> Iterator[Any]:
    pytest.importorskip("weaviate")
    from tests.emulators.weaviate_server import WeaviateEmulator

    with WeaviateEmulator() as emu:
        yield emu


@pytest.mark.server
def test_lifecycle_on_weaviate(tmp_path: Path, corpus: Path, weaviate_emulator: Any) -> None:
    settings = Settings(
        store="weaviate",
        store_options={"url": weaviate_emulator.url, "grpc_port": weaviate_emulator.grpc_port},
        data_dir=tmp_path / "data",
        collection=f"life_{uuid.uuid4().hex[:8]}",
    )
    app = App(settings, embeddings=HashEmbeddings(32))
    try:
        older_than(app, corpus)
        app.ingestor.ingest([corpus])
        name = f"Arch_{uuid.uuid4().hex[:8]}"
        # the field catalog's fields are declared up front, with the adapter's descriptions
        cli(app, "stores", "create", name)
        made = app.store.describe_collection(name)  # type: ignore[attr-defined]
        assert {"tenant", "acl", "title", "created_at"} <= set(made.filterable_fields)
        assert made.extra["properties"]["acl"] == "text[]"
        cli(app, "stores", "delete", name, "--yes")
        lifecycle(app, name)
        info = app.store.describe_collection(app.store.info.collection)  # type: ignore[attr-defined]
        assert info.per_tenant == {"acme": 2, "globex": 1} and info.metric == "cosine"
    finally:
        app.close()
