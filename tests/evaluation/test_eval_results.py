"""The typed results file (`rag_app.evaluation.results`): version 1 files read and write back
byte for byte, bad files are named errors (never a KeyError), and the models carry what the
report, the gate and `eval compare` use."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any, get_args

import pytest
from typer.testing import CliRunner

from rag_app.cli import app as cli
from rag_app.errors import RagAppError
from rag_app.evaluation.judge import AnswerSample
from rag_app.evaluation.report import compare_runs, comparison_markdown, markdown_report
from rag_app.evaluation.results import (
    RESULTS_VERSION,
    EvalResults,
    JudgedAnswer,
    LoadedRun,
    MetricSummary,
    QueryRow,
    ResultsError,
    load_run,
    read_results,
)
from rag_app.evaluation.runner import gate_failures
from rag_app.settings import FusionName, RetrieverName

DATA = Path(__file__).parent / "data"
V1 = DATA / "results-v1.json"  # written by rag_app before the models existed (schema v1)


def v1() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(V1.read_text(encoding="utf-8"))
    return data


def write(tmp_path: Path, data: object, name: str = "run") -> Path:
    folder = tmp_path / name
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "results.json").write_text(json.dumps(data, indent=2), encoding="utf-8")
    return folder


# -- round trips ----------------------------------------------------------------------------------
def test_a_version_1_file_reads_and_writes_back_byte_for_byte(tmp_path: Path) -> None:
    results = read_results(V1)
    assert results.schema_version == RESULTS_VERSION == 1
    assert results.to_json() == V1.read_text(encoding="utf-8")
    # and the file written from the model reads back equal
    folder = tmp_path / "again"
    folder.mkdir()
    written = results.write(folder)
    assert written == folder / "results.json"
    assert read_results(folder) == results
    assert EvalResults.model_validate(results.model_dump(by_alias=True)) == results


def test_the_models_hold_what_the_file_holds() -> None:
    results = read_results(V1)
    agg = results.aggregate
    assert agg.samples == 8 and agg.leak_rate == 0.0
    assert agg.metrics["ndcg@10"] == v1()["aggregate"]["ndcg@10"]
    assert agg.n["faithfulness"] == v1()["aggregate"]["n"]["faithfulness"]
    assert agg.llm_failures == 0 and agg.restricted_sources_in_answers == 0
    assert set(results.per_user) == {"ann", "gus"}
    assert results.per_user["gus"].llm_failures is None  # absent in the file: None
    assert "llm_failures" not in results.per_user["gus"].model_dump(by_alias=True)
    row = results.queries[0]
    assert row.key == f"{row.user}/{row.query_id}"
    # a metric that does not apply is None; a metric never scored is absent
    assert all(m in row.metrics for m in ("ndcg@10", "non_llm_context_recall", "faithfulness"))
    assert results.config.retriever in get_args(RetrieverName)
    assert results.config.fusion in get_args(FusionName)
    assert results.llm is not None and results.llm.config.repeats == 2
    answer = results.llm.answers[0]
    assert answer.scores and all(len(s.repeats) == 2 for s in answer.scores.values())


def test_flattened_metrics_keep_their_json_place() -> None:
    row = QueryRow.model_validate(v1()["queries"][0])
    dumped = row.model_dump(by_alias=True)
    assert list(dumped) == list(v1()["queries"][0])
    summary = MetricSummary(
        samples=2,
        metrics={"ndcg@10": 0.5},
        leak_rate=0.0,
        leaked_chunks=0,
        retrieved_chunks=4,
        no_access_samples=0,
        restricted_source_hits=0,
        expectation_mismatches=0,
        n={"ndcg@10": 2},
    )
    assert list(summary.model_dump(by_alias=True))[:3] == ["samples", "ndcg@10", "leak_rate"]
    assert "llm_failures" not in summary.model_dump(by_alias=True)
    assert summary.numbers()["ndcg@10"] == 0.5 and "n" not in summary.numbers()


def test_judged_answers_match_the_judge_answer_samples() -> None:
    """A field added to judge.AnswerSample must be added to the results schema too."""
    fields = [f.name for f in dataclasses.fields(AnswerSample)]
    assert list(JudgedAnswer.model_fields) == [*fields, "scores"]


def test_the_report_and_the_gate_take_the_model(tmp_path: Path) -> None:
    results = read_results(V1)
    report = markdown_report(results)
    assert "# Evaluation: acl-mini (hybrid)" in report
    assert "## Per user" in report and "## LLM-judged answer metrics" in report
    assert json.dumps(v1()["config"], indent=2) in report
    assert gate_failures(results, {"ndcg@10": 0.0}) == []
    assert gate_failures(results, {"ndcg@10": 1.5}) == [
        f"ndcg@10 = {results.aggregate.metrics['ndcg@10']:.4f} is below 1.5"
    ]


def test_compare_takes_loaded_runs(tmp_path: Path) -> None:
    base = load_run(V1)
    other = v1()
    for row in other["queries"]:
        if row["ndcg@10"] is not None:
            row["ndcg@10"] = max(0.0, row["ndcg@10"] - 0.25)
    other_run = load_run(write(tmp_path, other, "worse"))
    assert isinstance(other_run, LoadedRun) and other_run.label == "worse"
    comparison = compare_runs([base, other_run])
    ndcg = next(m for m in comparison.metrics if m.metric == "ndcg@10")
    assert ndcg.tests[0] is None and ndcg.tests[1] is not None
    assert ndcg.tests[1].n == results_n(base, "ndcg@10")
    assert ndcg.values[0] == base.results.aggregate.metrics["ndcg@10"]
    text = comparison_markdown(comparison)
    assert f"| metric | {base.label} | worse |" in text
    data = json.loads(comparison.to_json())
    assert data["runs"][1]["label"] == "worse" and data["alpha"] == 0.05
    assert list(data["metrics"][0]) == ["metric", "values", "deltas", "tests"]


def results_n(run: LoadedRun, metric: str) -> int:
    return sum(1 for q in run.results.queries if q.metrics.get(metric) is not None)


# -- bad files ------------------------------------------------------------------------------------
def test_a_newer_or_older_schema_version_is_named(tmp_path: Path) -> None:
    data = v1()
    data["version"] = 2
    with pytest.raises(ResultsError, match=r"results\.json: results schema version 2 is not "):
        read_results(write(tmp_path, data))
    with pytest.raises(ResultsError, match="written by a newer rag_app"):
        read_results(write(tmp_path, data))
    data["version"] = 0
    with pytest.raises(ResultsError, match="schema version 0 is not supported: this rag_app "):
        read_results(write(tmp_path, data))
    data["version"] = True  # not 1
    with pytest.raises(ResultsError, match="schema version True"):
        read_results(write(tmp_path, data))
    del data["version"]
    with pytest.raises(ResultsError, match="without a schema 'version'"):
        read_results(write(tmp_path, data))


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda d: d["queries"][1].pop("latency_ms"), r"queries\[1\]\.latency_ms: Field required"),
        (lambda d: d["aggregate"].update(leak_rate="none"), r"aggregate\.leak_rate: Input should"),
        (lambda d: d["aggregate"].update(ndcg=0.5), r"aggregate\.ndcg: Extra inputs"),
        (lambda d: d["aggregate"].update({"ndcg@10": "high"}), r"aggregate\.ndcg@10: Input"),
        (lambda d: d["config"].update(retriever="sparse"), r"config\.retriever: Input should be"),
        (lambda d: d["queries"][0].update(outcome="maybe"), r"queries\[0\]\.outcome: Input"),
        (lambda d: d["llm"]["answers"][0].pop("scores"), r"llm\.answers\[0\]\.scores: Field"),
        (
            lambda d: d["llm"]["aggregate"].update(wisdom=d["llm"]["aggregate"]["faithfulness"]),
            r"llm\.aggregate: Value error, unknown metric\(s\) wisdom",
        ),
        (lambda d: d.update(queries="all of them"), r"queries: Input should be a valid list"),
        (lambda d: d["per_user"]["ann"].pop("n"), r"per_user\.ann\.n: Field required"),
    ],
)
def test_a_malformed_file_names_the_file_and_the_problem(
    tmp_path: Path, damage: Any, message: str
) -> None:
    data = v1()
    damage(data)
    folder = write(tmp_path, data)
    with pytest.raises(ResultsError, match=rf"{folder / 'results.json'}: not a valid results file"):
        read_results(folder)
    with pytest.raises(ResultsError, match=message):
        read_results(folder)


def test_not_results_at_all(tmp_path: Path) -> None:
    with pytest.raises(ResultsError, match=r"no results\.json \(is it a run folder\?\)"):
        read_results(tmp_path)
    (tmp_path / "results.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(ResultsError, match="cannot read results"):
        read_results(tmp_path)
    for data in ([1, 2], {"version": 1}, {"aggregate": {}}):
        with pytest.raises(ResultsError, match="not an evaluation results file"):
            read_results(write(tmp_path, data))
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "results.json").write_bytes(b"\xff\xfe\x00")
    with pytest.raises(ResultsError, match="cannot read results"):
        read_results(tmp_path / "bin")
    assert issubclass(ResultsError, RagAppError)


def test_eval_compare_reports_a_bad_file_by_name(tmp_path: Path) -> None:
    good = write(tmp_path, v1(), "good")
    data = v1()
    data["version"] = 7
    newer = write(tmp_path, data, "newer")
    result = CliRunner().invoke(
        cli,
        ["--data-dir", str(tmp_path / "data"), "eval", "compare", str(good), str(newer)],
        standalone_mode=False,
        catch_exceptions=True,
    )
    assert isinstance(result.exception, ResultsError)
    assert "newer/results.json: results schema version 7" in str(result.exception)


# -- enumerated options ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("option", "choices"),
    [("--retriever", get_args(RetrieverName)), ("--fusion", get_args(FusionName))],
)
def test_enumerated_options_are_choices(tmp_path: Path, option: str, choices: tuple[str]) -> None:
    for args in (["--dataset", str(DATA / "tiny-beir")], ["--answers"]):
        result = CliRunner().invoke(
            cli,
            ["--data-dir", str(tmp_path / "data"), "eval", "run", *args, option, "nope"],
            env={"COLUMNS": "200", "TERMINAL_WIDTH": "200"},
        )
        assert result.exit_code == 2, result.output
        assert "Invalid value" in result.output and "'nope' is not one of" in result.output
        assert ", ".join(repr(c) for c in choices) in result.output
    help_text = (
        CliRunner()
        .invoke(cli, ["eval", "run", "--help"], env={"COLUMNS": "200", "TERMINAL_WIDTH": "200"})
        .output
    )
    assert "|".join(choices) in help_text
