"""The composition root: parts given to `App(...)`, `App.derive` keeping them (and refusing to
re-point a given store), what `close` closes, and the evaluation runner on a derived App."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from rag_app import app as app_module
from rag_app.access.permissions import Principal
from rag_app.app import App
from rag_app.errors import ConfigError
from rag_app.evaluation.runner import prepare
from rag_app.llm.factory import ChatLLM
from rag_app.settings import Settings
from rag_app.users import UserDirectory, UserRecord
from tests.chat_fakes import ScriptedChatModel
from tests.fakes import HashEmbeddings
from tests.fakes import markdown_doc as doc


class ClosingStore:
    """Stands in for a store where only identity and `close` matter."""

    def __init__(self) -> None:
        self.closed = 0

    def close(self) -> None:
        self.closed += 1


class ClosingChatLLM(ChatLLM):
    closes = 0

    def close(self) -> None:
        self.closes += 1


def settings(tmp_path: Path, **updates: Any) -> Settings:
    return Settings(data_dir=tmp_path / "data", **updates)


def given_parts() -> dict[str, Any]:
    llm = ScriptedChatModel.script("Twenty weeks [1].")
    return {
        "embeddings": HashEmbeddings(16),
        "store": ClosingStore(),
        "llm": llm,
        "chat_llm": ClosingChatLLM(model=llm, name="scripted", backend="openai"),
        "users": UserDirectory({"ann": UserRecord(tenant="acme", groups=["hr"])}),
    }


def test_given_parts_stand_in_for_the_configured_ones(tmp_path: Path) -> None:
    parts = given_parts()
    app = App(settings(tmp_path), **parts)
    for name, part in parts.items():
        assert app.built(name)
        assert getattr(app, name) is part
    assert not app.built("state") and not app.built("ingestor")
    assert app.principal("ann").tenant == "acme"  # from the given users, not the users file
    assert app.chat.llm is parts["llm"] and app.chat.llm_label == "openai:scripted"


def test_derive_keeps_every_given_part_and_applies_the_updates(tmp_path: Path) -> None:
    parts = given_parts()
    app = App(settings(tmp_path, retriever="hybrid", k=5), **parts)
    derived = app.derive(retriever="dense", k=3, state_db_url=f"sqlite:///{tmp_path / 's.db'}")
    assert derived is not app
    assert (derived.settings.retriever, derived.settings.k) == ("dense", 3)
    assert (app.settings.retriever, app.settings.k) == ("hybrid", 5)
    for name, part in parts.items():
        assert getattr(derived, name) is part, name
    # a given part stands in for its settings whatever the updates say of them
    again = derived.derive(embed_batch_size=8, users_file=tmp_path / "nosuch.yaml", llm="openai")
    for name, part in parts.items():
        assert getattr(again, name) is part, name


def test_derive_refuses_to_point_a_given_store_elsewhere(tmp_path: Path) -> None:
    store = ClosingStore()
    app = App(settings(tmp_path, collection="main_col"), store=store)  # type: ignore[arg-type]
    for updates in (
        {"collection": "eval_col"},
        {"data_dir": tmp_path / "other"},
        {"store": "weaviate"},
        {"store_options": {"url": "http://elsewhere:8000"}},
    ):
        with pytest.raises(ConfigError, match=r"given a store; derive\(\w+=\.\.\.\)") as exc:
            app.derive(**updates, retriever="bm25")
        assert "App(settings, store=...)" in str(exc.value)
    # the same place, said again, is not elsewhere
    assert app.derive(collection="main_col", data_dir=tmp_path / "data").store is store
    # without a given store, another collection is simply another store
    free = App(settings(tmp_path, collection="main_col"), embeddings=HashEmbeddings(16))
    other = free.derive(collection="eval_col")
    assert other.settings.collection == "eval_col"
    assert other.store_location != free.store_location and not other.built("store")


def test_derive_names_unknown_settings(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"unknown setting.*retreiver"):
        App(settings(tmp_path)).derive(retreiver="dense")


def test_derive_reuses_a_loaded_embedding_model_while_the_updates_leave_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    built: list[HashEmbeddings] = []

    def build(s: Settings) -> HashEmbeddings:
        built.append(HashEmbeddings(16))
        return built[-1]

    monkeypatch.setattr(app_module, "build_embeddings", build)
    app = App(settings(tmp_path))
    lazy = app.derive(retriever="dense")  # nothing loaded yet: nothing to share
    assert not lazy.built("embeddings") and built == []
    model = app.embeddings
    same = app.derive(retriever="bm25", collection="other_col", chunk_size=100)
    assert same.embeddings is model and len(built) == 1
    # another model: loaded anew, here and in an App derived from one that shared it
    assert app.derive(embed_batch_size=8).embeddings is not model
    assert same.derive(embed_backend="onnx").embeddings is not model
    assert len(built) == 3


def test_close_closes_what_the_app_opened_or_was_given_never_what_it_shares(
    tmp_path: Path,
) -> None:
    parts = given_parts()
    app = App(settings(tmp_path), **parts)
    derived = app.derive(retriever="dense")
    derived.close()
    assert parts["store"].closed == 0 and parts["chat_llm"].closes == 0
    app.close()
    assert parts["store"].closed == 1 and parts["chat_llm"].closes == 1

    # nothing given, nothing built: close opens nothing to close it
    idle = App(settings(tmp_path))
    idle.close()
    assert not idle.built("store") and not idle.built("state")


def test_principal_without_user_or_tenant(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from rag_app import cli

    with pytest.raises(ConfigError, match="no user and no tenant"):
        App(settings(tmp_path)).principal(None)
    assert App(settings(tmp_path)).principal(None, tenant="acme") == Principal.anonymous("acme")
    result = CliRunner().invoke(
        cli.app,
        ["--data-dir", str(tmp_path / "data"), "query", "leave"],
        standalone_mode=False,
    )
    assert isinstance(result.exception, ConfigError)
    assert str(result.exception) == "give --user NAME, or --tenant NAME for anonymous access"


# -- the evaluation runner keeps what the App was given -----------------------------------------
@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    root = tmp_path / "corpus"
    root.mkdir()
    (root / "leave.md").write_text(doc("Leave", "parental leave lasts twenty weeks", tenant="acme"))
    (root / "travel.md").write_text(doc("Travel", "travel is booked in economy", tenant="acme"))
    return root


def dataset(*corpus: Path) -> Any:
    """What `prepare` reads of an `EvalDataset`."""
    return SimpleNamespace(name="derive-test", corpus=list(corpus), overrides={})


def test_the_runner_searches_the_given_store_with_the_given_model(
    tmp_path: Path, corpus: Path
) -> None:
    """Before `derive`, the runner's App for another retriever opened the store its settings
    name (here: an empty one) and built the configured chat model."""
    emb = HashEmbeddings(32)
    source = App(Settings(data_dir=tmp_path / "elsewhere"), embeddings=emb)
    assert source.ingestor.ingest([corpus]).ok
    llm = ScriptedChatModel.script("Twenty weeks [1].")
    app = App(settings(tmp_path, retriever="hybrid"), embeddings=emb, store=source.store, llm=llm)
    try:
        prepared = prepare(app, dataset(), retriever="dense")
        eapp = prepared.app
        assert eapp is not app and eapp.settings.retriever == "dense"
        assert eapp.store is source.store and eapp.llm is llm and eapp.embeddings is emb
        hits = eapp.searcher().search(Principal.anonymous("acme"), "parental leave", k=1).hits
        assert [h.metadata["title"] for h in hits] == ["Leave"]
        eapp.close()  # shares the store: leaves it open
        assert source.store.count() > 0
    finally:
        source.close()


def test_the_runner_keeps_the_given_model_for_a_corpus_and_refuses_a_given_store(
    tmp_path: Path, corpus: Path
) -> None:
    emb = HashEmbeddings(32)
    llm = ScriptedChatModel.script("Twenty weeks [1].")
    app = App(settings(tmp_path), embeddings=emb, llm=llm)
    prepared = prepare(app, dataset(corpus), retriever="bm25")
    try:
        assert prepared.collection.startswith("eval-derive-test-")
        assert prepared.app.settings.collection == prepared.collection
        assert prepared.app.llm is llm and prepared.app.embeddings is emb
        assert prepared.app.store.count() > 0
    finally:
        prepared.app.close()

    with_store = App(settings(tmp_path), embeddings=emb, store=ClosingStore())  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=r"given a store; derive\(collection=\.\.\.\)"):
        prepare(with_store, dataset(corpus))
