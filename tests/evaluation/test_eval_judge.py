"""LLM-judged answer metrics (`eval run --judge-samples`): the chat chain answers sampled
questions as each user, RAGAS scores the answers with a judge, repeated, with failures named.

The models are deterministic fakes (`judge_fakes`); the RAGAS metric code, the chat chain,
retrieval and permissions are the real ones. The real local model as judge is measured by
hand (see the README), not here: it takes minutes per answer on this machine.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from rag_app import app as app_module
from rag_app.evaluation import runner as runner_module
from rag_app.evaluation.judge import LLM_METRICS, JudgeConfig, choose
from tests.evaluation.judge_fakes import EchoChat, GarbageJudge, OverlapJudge
from tests.evaluation.test_eval_cli import DATA, code, rag
from tests.fakes import HashEmbeddings


@pytest.fixture
def embeddings(monkeypatch: pytest.MonkeyPatch) -> HashEmbeddings:
    emb = HashEmbeddings(64)
    emb.model = object()  # type: ignore[attr-defined]  # like the real one: not a string
    monkeypatch.setattr(app_module, "build_embeddings", lambda settings: emb)
    return emb


@pytest.fixture
def models(monkeypatch: pytest.MonkeyPatch, embeddings: HashEmbeddings) -> dict[str, Any]:
    """Every App's chat model is `chat`; the judge is `judge` (swap them per test)."""
    state: dict[str, Any] = {"chat": EchoChat(), "judge": OverlapJudge(), "configs": []}
    monkeypatch.setattr(app_module.App, "llm", property(lambda self: state["chat"]))

    def fake_config(eapp: Any, repeats: int) -> JudgeConfig:
        config = JudgeConfig(
            llm=state["judge"], embeddings=embeddings, label="fake-judge", repeats=repeats
        )
        state["configs"].append(config)
        return config

    monkeypatch.setattr(runner_module, "judge_config", fake_config)
    return state


def judged_run(tmp_path: Path, *args: str) -> tuple[int, dict[str, Any]]:
    out = tmp_path / "run"
    result = rag(
        tmp_path / "data",
        "eval", "run", "--no-progress", "--out", str(out),
        "--dataset", str(DATA / "acl"), "-k", "2", *args,
    )  # fmt: skip
    exit_code = code(result)
    return exit_code, json.loads((out / "results.json").read_text())


def test_answers_are_judged_repeatedly_with_mean_and_spread(
    models: dict[str, Any], tmp_path: Path
) -> None:
    exit_code, results = judged_run(
        tmp_path, "--as-user", "ann", "--judge-samples", "4", "--judge-repeats", "2"
    )
    assert exit_code == 0
    llm = results["llm"]
    assert llm["config"]["samples"] == 4 and llm["config"]["repeats"] == 2
    assert llm["failures"] == []
    summary = llm["answers_summary"]
    assert summary["answers"] == 4 and summary["chain_errors"] == 0
    assert summary["restricted_sources_in_context"] == 0
    # ann may answer two of the four questions; an extractive, cited answer is faithful
    agg = llm["aggregate"]
    assert agg["faithfulness"]["mean"] == 1.0
    assert agg["faithfulness"]["repeat_means"] == [1.0, 1.0]
    assert agg["faithfulness"]["std"] == 0.0
    for metric, stats in agg.items():
        assert metric in LLM_METRICS
        assert len(stats["repeat_means"]) == 2
        assert all(-1.0 <= v <= 1.0 for v in stats["repeat_means"]), (metric, stats)
    # the reference answers exist: precision and recall with reference, never without
    assert "llm_context_precision_with_reference" in agg
    assert "llm_context_precision_without_reference" not in agg
    assert "response_relevancy" in agg and "llm_context_recall" in agg
    for answer in llm["answers"]:
        assert answer["response"].endswith("[1]") and answer["cited"] == [1]
        for metric, score in answer["scores"].items():
            assert len(score["repeats"]) == 2, (answer["key"], metric)
    # the per-sample means are in the rows and in the gateable aggregate
    assert results["aggregate"]["faithfulness"] == 1.0
    assert results["aggregate"]["n"]["faithfulness"] == 4
    assert results["aggregate"]["llm_failures"] == 0
    report = (tmp_path / "run" / "report.md").read_text()
    assert "## LLM-judged answer metrics" in report and "fake-judge" in report
    rows = {r["query_id"]: r for r in results["queries"]}
    assert rows["salary-l4"]["faithfulness"] == 1.0


def test_an_invented_sentence_lowers_faithfulness(models: dict[str, Any], tmp_path: Path) -> None:
    models["chat"] = EchoChat(invented="The moon base opens on Mondays at dawn.")
    exit_code, results = judged_run(
        tmp_path,
        "--as-user", "ann", "--judge-samples", "4", "--judge-repeats", "1",
        "--fail-under", "faithfulness=0.9",
    )  # fmt: skip
    assert exit_code == 1  # the gate works on judged metrics too
    assert results["llm"]["aggregate"]["faithfulness"]["mean"] == pytest.approx(0.5)


def test_no_access_questions_get_no_context_metrics(models: dict[str, Any], tmp_path: Path) -> None:
    exit_code, results = judged_run(tmp_path, "--as-user", "gus", "--judge-samples", "10")
    assert exit_code == 0
    answers = {a["query_id"]: a for a in results["llm"]["answers"]}
    assert len(answers) == 4  # every question gus was asked (4 < 10)
    salary = answers["salary-l4"]
    assert salary["outcome"] == "no-access"
    assert "llm_context_recall" not in salary["scores"]
    assert "llm_context_precision_with_reference" not in salary["scores"]
    assert all(a["restricted_cited"] == [] for a in answers.values())


def test_judge_failures_are_named_and_fail_the_run(models: dict[str, Any], tmp_path: Path) -> None:
    models["judge"] = GarbageJudge()
    exit_code, results = judged_run(
        tmp_path, "--as-user", "ann", "--judge-samples", "2", "--judge-repeats", "1"
    )
    assert exit_code == 1
    failures = results["llm"]["failures"]
    assert failures, "a judge that never answers in JSON must fail"
    assert all("failed on sample ann/" in f and "(repeat 1)" in f for f in failures)
    # nothing made up: no NaN and no aggregate for metrics that never produced a score
    assert results["llm"]["aggregate"] == {}
    assert results["aggregate"]["llm_failures"] == len(failures)
    assert "faithfulness" not in results["aggregate"]
    text = json.dumps(results)
    assert "NaN" not in text


def test_the_sample_is_seeded_and_in_order() -> None:
    keys = [f"u/q{i}" for i in range(20)]
    first = choose(keys, 5, seed=1)
    assert first == choose(keys, 5, seed=1) and len(first) == 5
    assert first == sorted(first, key=keys.index)
    assert choose(keys, 5, seed=2) != first
    assert choose(keys, 50, seed=1) == keys


def test_without_judge_samples_no_model_is_started(models: dict[str, Any], tmp_path: Path) -> None:
    exit_code, results = judged_run(tmp_path, "--as-user", "ann")
    assert exit_code == 0
    assert results["llm"] is None and models["configs"] == []
    assert models["chat"].calls == 0


# -- eval generate --------------------------------------------------------------------------------
@pytest.fixture
def generator_llm(monkeypatch: pytest.MonkeyPatch, embeddings: HashEmbeddings) -> OverlapJudge:
    """`eval generate` builds its model from the chat model: make that the fake."""
    from rag_app.llm import factory

    judge = OverlapJudge()

    class FakeChatLLM:
        backend = "openai"
        name = "fake"

        def describe(self) -> str:
            return "fake-generator"

        def close(self) -> None:
            pass

    monkeypatch.setattr(app_module.App, "chat_llm", property(lambda self: FakeChatLLM()))
    monkeypatch.setattr(factory, "build_judge_model", lambda chat_llm, settings: judge)
    return judge


def test_generate_writes_a_dataset_that_eval_run_reads(
    generator_llm: OverlapJudge, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RAG_LLM", "openai")
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")  # never called: fake model
    monkeypatch.chdir(tmp_path)
    import shutil

    shutil.copytree(DATA / "acl", tmp_path / "acl")
    out = tmp_path / "generated"
    result = rag(
        tmp_path / "data",
        "eval", "generate", "--docs", "acl/corpus", "--size", "3", "--out", str(out),
        "--persona", "Employee: asks about company policies",
    )  # fmt: skip
    assert code(result) == 0, result.output
    rows = [json.loads(line) for line in (out / "questions.jsonl").read_text().splitlines()]
    assert len(rows) == 3 and generator_llm.calls > 0
    sources = {p.relative_to(tmp_path).as_posix() for p in (tmp_path / "acl/corpus").rglob("*.md")}
    for row in rows:
        assert row["user_input"].startswith("What does the document say about")
        assert row["persona"] == "Employee"
        (source,) = row["reference_context_ids"]
        assert source in sources
        # the reference answer is the first sentence of the document it names
        text = (tmp_path / source).read_text()
        assert row["reference"] in text and row["reference_contexts"][0] in text
    yaml_text = (out / "dataset.yaml").read_text()
    assert "id_field: source" in yaml_text and "acl/corpus" in yaml_text

    # the generated dataset evaluates as is (as a user of the copied users file)
    (out / "dataset.yaml").write_text(yaml_text + 'users_file: "../acl/users.yaml"\n')
    exit_code, results = judged_run_on(tmp_path, out, "--as-user", "ann")
    assert exit_code == 0
    assert results["aggregate"]["samples"] == 3 and results["aggregate"]["leak_rate"] == 0.0


def judged_run_on(tmp_path: Path, dataset: Path, *args: str) -> tuple[int, dict[str, Any]]:
    out = tmp_path / "run-generated"
    result = rag(
        tmp_path / "data", "eval", "run", "--no-progress", "--out", str(out),
        "--dataset", str(dataset), *args,
    )  # fmt: skip
    return code(result), json.loads((out / "results.json").read_text())


def test_generate_needs_documents_and_a_model(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from rag_app.errors import ConfigError

    with pytest.raises(ConfigError, match="--docs"):
        code(rag(tmp_path / "data", "eval", "generate"))
    monkeypatch.setenv("RAG_LLM", "openai")
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    monkeypatch.delenv("RAG_OPENAI_API_KEY", raising=False)
    with pytest.raises(ConfigError, match="needs a chat model"):
        code(rag(tmp_path / "data", "eval", "generate", "--docs", str(DATA / "acl" / "corpus")))
    args = ["eval", "generate", "--docs", str(DATA / "acl" / "corpus"), "--persona", "x"]
    with pytest.raises(ConfigError, match="NAME: DESCRIPTION"):
        code(rag(tmp_path / "data", *args))
