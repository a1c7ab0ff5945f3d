"""`rag-app ask` and `rag-app chat` with a fake chat model over the demo corpus (hash
embedder): streamed answer, numbered sources, JSON output, errors as messages."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

import rag_app.cli as cli
from rag_app.app import App
from rag_app.settings import Settings
from tests.chat_fakes import ScriptedChatModel
from tests.fakes import HashEmbeddings

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def ingested(tmp_path_factory: pytest.TempPathFactory) -> tuple[Settings, HashEmbeddings, Any]:
    settings = Settings(
        data_dir=tmp_path_factory.mktemp("cli-chat"), users_file=ROOT / "demo/users.yaml"
    )
    emb = HashEmbeddings(256)
    app = App(settings, embeddings=emb)
    app.ingestor.ingest([ROOT / "demo/corpus/halcyon"])
    yield settings, emb, app.store
    app.close()


@pytest.fixture
def invoke(ingested, monkeypatch):
    settings, emb, store = ingested

    def run(args: list[str], *replies: str, stdin: str | None = None) -> Any:
        app = App(settings, embeddings=emb, store=store, llm=ScriptedChatModel.script(*replies))
        monkeypatch.setattr(cli.Context, "app", property(lambda self: app))
        result = CliRunner().invoke(cli.app, args, input=stdin, standalone_mode=False)
        return result, app

    return run


def test_ask_streams_the_answer_and_lists_numbered_sources(invoke):
    answer = "Employees get 20 weeks of fully paid parental leave [1]."
    result, _ = invoke(
        [
            "ask",
            "How many weeks of paid parental leave?",
            "--user",
            "alice",
            "-f",
            '{"category": "hr"}',
        ],
        answer,
    )
    assert result.exception is None, result.output
    out = result.stdout
    assert out.startswith(answer)
    assert "Sources (* = cited):" in out
    assert "*[1] " in out and " [2] " in out  # cited and uncited sources, numbered
    assert "demo/corpus/halcyon/" in out


def test_ask_json(invoke):
    result, _ = invoke(
        ["ask", "parental leave", "--user", "dave", "--json"], "Contractors: unpaid [1]."
    )
    assert result.exception is None, result.output
    data = json.loads(result.stdout)
    assert data["answer"] == "Contractors: unpaid [1]." and data["cited"] == [1]
    assert data["refused"] is False and data["principal"].startswith("dave@halcyon")
    assert data["sources"][0]["n"] == 1 and "tenant" in data["sources"][0]["metadata"]
    assert set(data["timings"]) == {"rewrite_s", "retrieval_s", "first_token_s", "total_s"}


def test_ask_without_access_prints_the_phrase(invoke):
    result, _ = invoke(
        [
            "ask",
            "salary band L4",
            "--user",
            "henry",
            "--filter",
            '{"source": "demo/corpus/halcyon/hr/salary-bands-2025.md"}',
        ]
    )
    assert result.exception is None, result.output
    assert "I don't know based on the documents you can access." in result.stdout
    assert "salary-bands" not in result.stdout


def test_ask_errors_are_messages(invoke):
    result, _ = invoke(["ask", "x", "--user", "henry", "--filter", '{"tenant": "brightwater"}'])
    assert isinstance(result.exception, cli.RagAppError)
    assert "tenant" in str(result.exception)


def test_chat_reads_a_conversation_from_stdin(invoke):
    result, _ = invoke(
        ["chat", "--user", "alice"],
        "Employees get 20 weeks [1].",
        "No, unpaid only [1].",
        stdin="How many weeks of parental leave?\nand for contractors?\n\n",
    )
    assert result.exception is None, result.output
    assert "Employees get 20 weeks [1]." in result.stdout
    assert "No, unpaid only [1]." in result.stdout
    # the follow-up is joined to the question before it (no model call)
    assert "searching for: How many weeks of parental leave? and for contractors?" in result.stderr
