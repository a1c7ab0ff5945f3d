"""The admin service (`rag_app.ops.admin`, `App.admin`): stats and deletes over an App's parts,
with the operator's wording left to the CLI."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from rag_app.app import App
from rag_app.cli import admin as admin_cli
from rag_app.errors import FilterError
from rag_app.ops.admin import DeletePlan, IndexAdmin, UnboundedDelete
from rag_app.settings import Settings
from tests.fakes import HashEmbeddings
from tests.fakes import markdown_doc as doc


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    root = tmp_path / "corpus"
    root.mkdir()
    (root / "a.md").write_text(doc("A", "alpha notes", tenant="acme"))
    (root / "b.md").write_text(doc("B", "beta notes", tenant="globex"))
    (root / "d.jsonl").write_text(
        "".join(
            json.dumps({"id": f"r{i}", "text": f"delta {i}", "tenant": "globex", "acl": ["public"]})
            + "\n"
            for i in range(3)
        )
    )
    return root


def make_app(tmp_path: Path) -> App:
    return App(Settings(data_dir=tmp_path / "data"), embeddings=HashEmbeddings(32))


@pytest.fixture
def app(tmp_path: Path, corpus: Path) -> Any:
    application = make_app(tmp_path)
    assert application.ingestor.ingest([corpus]).ok
    yield application
    application.close()


def sources(app: App) -> set[str]:
    return {str(r.metadata["source"]) for r in app.store.records()}  # type: ignore[attr-defined]


def cli(app: App, *args: str) -> tuple[Any, str]:
    tui = typer.Typer()

    @tui.callback()
    def _root(ctx: typer.Context) -> None:
        ctx.obj = SimpleNamespace(app=app)

    admin_cli.register(tui)
    result = CliRunner().invoke(tui, list(args), standalone_mode=False)
    return result.exception, result.output


def test_a_jsonl_file_is_deleted_by_its_file_name(app: App) -> None:
    """Its records' sources are "<file>#<id>": the file's name matches them by prefix."""
    jsonl = next(s for s in sources(app) if "#" in s).split("#", 1)[0]
    assert jsonl.endswith("d.jsonl")
    plan = app.admin.plan_delete(sources=[jsonl])
    assert sorted(plan.per_source) == [f"{jsonl}#r{i}" for i in range(3)]
    assert len(plan.ids) == 3
    assert app.admin.delete(plan=plan) == 3
    assert not any(s.startswith(f"{jsonl}#") for s in sources(app))
    assert app.admin.stats()["per_tenant"] == {
        "acme": app.store.count(tenant="acme"),
        "globex": app.store.count(tenant="globex"),
    }
    # an exact source is not widened to a prefix
    (b,) = [s for s in sources(app) if s.endswith("b.md")]
    assert app.admin.plan_delete(sources=[b[:-1]]).ids == []


def test_a_delete_with_nothing_to_narrow_by_is_refused_in_the_clis_words(app: App) -> None:
    before = app.store.count()
    with pytest.raises(UnboundedDelete, match="refusing to delete without a filter") as exc:
        app.admin.plan_delete(filter="{}")
    assert isinstance(exc.value, FilterError) and "--" not in str(exc.value)
    error, _ = cli(app, "delete", "--filter", "{}", "--yes")
    assert isinstance(error, FilterError)
    assert str(error) == (
        "refusing to delete without a filter: give --source, --filter or --older-than"
    )
    assert app.store.count() == before


def test_stats_spell_the_collection_as_set_until_the_store_is_open(
    tmp_path: Path, app: App
) -> None:
    fresh = make_app(tmp_path)
    try:
        data = fresh.admin.stats()
        assert data["collection"] == fresh.settings.collection
        assert not fresh.built("store")  # not opened to read a name
        assert data["chunks"] == app.store.count() > 0
        assert fresh.store.info.collection == app.store.info.collection
        assert fresh.admin.stats()["collection"] == fresh.store.info.collection
    finally:
        fresh.close()


def test_the_service_needs_only_the_apps_parts(app: App) -> None:
    parts = SimpleNamespace(
        settings=app.settings,
        store=app.store,
        state=app.state,
        store_location=app.store_location,
        built=lambda part: part == "store",
    )
    service = IndexAdmin(parts)
    assert service.stats() == app.admin.stats()
    plan = service.plan_delete(filter={"tenant": "acme"})
    assert isinstance(plan, DeletePlan) and set(plan.per_source) == {
        s for s in sources(app) if s.endswith("a.md")
    }
    with pytest.raises(FilterError, match="unknown field"):
        service.admin_filter({"nosuch": 1})
