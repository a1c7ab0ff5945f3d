"""`rag-app eval run | compare` end to end with the fake embedder: outputs, caching of the
evaluation collection, regression gates and permission-aware evaluation."""

from __future__ import annotations

import csv
import json
import shutil
import sys
from pathlib import Path
from typing import Any, ClassVar

import pytest
from typer.testing import CliRunner

from rag_app import app as app_module
from rag_app.access.permissions import Principal
from rag_app.cli import app as cli
from rag_app.errors import ConfigError, RagAppError
from rag_app.retrieval.search import FilterInput, SearchResult
from tests.fakes import HashEmbeddings

DATA = Path(__file__).parent / "data"


@pytest.fixture
def embeddings(monkeypatch: pytest.MonkeyPatch) -> HashEmbeddings:
    emb = HashEmbeddings(64)
    monkeypatch.setattr(app_module, "build_embeddings", lambda settings: emb)
    return emb


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


def rag(data_dir: Path, *args: str) -> Any:
    """Invoke the CLI like `main` does (commands return their exit code)."""
    result = CliRunner().invoke(
        cli, ["--data-dir", str(data_dir), *args], standalone_mode=False, catch_exceptions=True
    )
    return result


def code(result: Any) -> int:
    if result.exception is not None:
        raise result.exception
    return int(result.return_value or 0)


def run_eval(data_dir: Path, out: Path, *args: str) -> tuple[int, dict[str, Any]]:
    result = rag(data_dir, "eval", "run", "--no-progress", "--out", str(out), *args)
    exit_code = code(result)
    return exit_code, json.loads((out / "results.json").read_text())


# -- BEIR -----------------------------------------------------------------------------------------
def test_beir_run_writes_every_output_and_reuses_the_collection(
    embeddings: HashEmbeddings, data_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "runs" / "hybrid"
    exit_code, results = run_eval(
        data_dir, out, "--dataset", str(DATA / "tiny-beir"), "-r", "hybrid", "-k", "3"
    )
    assert exit_code == 0
    for name in ("results.json", "queries.csv", "report.md", "metrics.png", "distribution.png"):
        assert (out / name).stat().st_size > 0, name
    agg = results["aggregate"]
    assert agg["samples"] == 4
    for metric in ("ndcg@10", "recall@100", "mrr@10", "map", "id_based_context_recall"):
        assert 0.0 <= agg[metric] <= 1.0
        assert agg["n"][metric] == 4
    assert agg["leak_rate"] == 0.0
    assert "non_llm_context_recall" not in agg  # BEIR has no reference contexts
    cfg = results["config"]
    assert cfg["retriever"] == "hybrid" and cfg["k"] == 3 and cfg["users"] == ["anonymous@eval"]
    assert cfg["collection"].startswith("eval-tiny-beir-")
    assert cfg["hybrid"]["fusion"] == "weighted" and cfg["bm25"]["analyzer"]["stem"]
    assert results["ingest"]["chunks_added"] == 8
    with (out / "queries.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert [r["query_id"] for r in rows] == ["q1", "q2", "q3", "q4"]
    report = (out / "report.md").read_text()
    assert "## Metrics" in report and "leak rate" in report and "metrics.png" in report
    assert json.dumps(cfg, indent=2).splitlines()[1] in report

    # second run: nothing is embedded again, the BM25 index is loaded, same numbers
    embedded = embeddings.texts_embedded
    exit_code, again = run_eval(
        data_dir,
        tmp_path / "runs" / "again",
        "--dataset",
        str(DATA / "tiny-beir"),
        "-r",
        "hybrid",
        "-k",
        "3",
    )
    assert exit_code == 0
    assert embeddings.texts_embedded == embedded
    assert again["ingest"]["chunks_added"] == 0 and again["ingest"]["files_unchanged"] == 1
    assert again["aggregate"]["ndcg@10"] == agg["ndcg@10"]


def test_every_retriever_and_split(
    embeddings: HashEmbeddings, data_dir: Path, tmp_path: Path
) -> None:
    for kind in ("dense", "bm25"):
        exit_code, results = run_eval(
            data_dir,
            tmp_path / kind,
            "--dataset",
            str(DATA / "tiny-beir"),
            "-r",
            kind,
            "--split",
            "dev",
        )
        assert exit_code == 0
        assert results["config"]["retriever"] == kind
        assert results["dataset"]["split"] == "dev" and results["aggregate"]["samples"] == 2
    # the BM25 half finds each query's judged document first on this corpus
    assert results["aggregate"]["mrr@10"] == 1.0


def test_fail_under_gates_the_exit_code(
    embeddings: HashEmbeddings, data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    beir = str(DATA / "tiny-beir")
    ok, _ = run_eval(
        data_dir,
        tmp_path / "a",
        "--dataset",
        beir,
        "--fail-under",
        "ndcg@10=0.1",
        "--fail-under",
        "recall@100=0.5",
    )
    assert ok == 0
    failed, _ = run_eval(
        data_dir, tmp_path / "b", "--dataset", beir, "--fail-under", "ndcg@10=1.01"
    )
    assert failed == 1
    with pytest.raises(ConfigError, match="unknown metric 'ndcg'"):
        run_eval(data_dir, tmp_path / "c", "--dataset", beir, "--fail-under", "ndcg=0.5")
    with pytest.raises(ConfigError, match="METRIC=VALUE"):
        run_eval(data_dir, tmp_path / "d", "--dataset", beir, "--fail-under", "ndcg@10")
    # a metric the run could not compute fails the gate instead of passing silently
    missing, _ = run_eval(
        data_dir, tmp_path / "e", "--dataset", beir, "--fail-under", "non_llm_context_recall=0.1"
    )
    assert missing == 1

    # and through the real entry point, as CI calls it
    from rag_app.cli import main

    monkeypatch.setattr(
        sys,
        "argv",
        [
            "rag-app",
            "--data-dir",
            str(data_dir),
            "eval",
            "run",
            "--dataset",
            beir,
            "--no-progress",
            "--out",
            str(tmp_path / "f"),
            "--fail-under",
            "mrr@10=1.5",
        ],
    )
    with pytest.raises(SystemExit) as exc:
        main()
    assert exc.value.code == 1


def test_compare_runs(embeddings: HashEmbeddings, data_dir: Path, tmp_path: Path) -> None:
    beir = str(DATA / "tiny-beir")
    run_eval(data_dir, tmp_path / "dense", "--dataset", beir, "-r", "dense")
    run_eval(data_dir, tmp_path / "bm25", "--dataset", beir, "-r", "bm25")
    result = rag(
        data_dir,
        "eval",
        "compare",
        str(tmp_path / "dense"),
        str(tmp_path / "bm25"),
        "--out",
        str(tmp_path / "cmp"),
    )
    assert code(result) == 0
    text = result.output
    assert "| metric | dense | bm25 |" in text
    assert "ndcg@10" in text and "Δ" in text and "p=" in text
    data = json.loads((tmp_path / "cmp" / "compare.json").read_text())
    ndcg = next(m for m in data["metrics"] if m["metric"] == "ndcg@10")
    assert ndcg["tests"][0] is None and ndcg["tests"][1]["n"] == 4
    assert (tmp_path / "cmp" / "compare.png").stat().st_size > 0
    assert (tmp_path / "cmp" / "compare.md").read_text() == text.rstrip("\n") + "\n"
    lonely = rag(data_dir, "eval", "compare", str(tmp_path / "dense"))
    with pytest.raises(RagAppError, match="at least two runs"):
        code(lonely)
    with pytest.raises(RagAppError, match=r"no results\.json"):
        code(rag(data_dir, "eval", "compare", str(tmp_path), str(tmp_path / "dense")))


# -- permission-aware evaluation ------------------------------------------------------------------
def test_as_user_reports_leaks_and_recall_over_permitted_documents(
    embeddings: HashEmbeddings, data_dir: Path, tmp_path: Path
) -> None:
    exit_code, results = run_eval(
        data_dir,
        tmp_path / "acl",
        "--dataset",
        str(DATA / "acl"),
        "--as-user",
        "all",
        "-r",
        "hybrid",
        "-k",
        "2",
    )
    assert exit_code == 0
    agg = results["aggregate"]
    assert results["config"]["users"] == ["ann", "bob", "gus"]
    assert agg["samples"] == 12
    assert agg["leak_rate"] == 0.0 and agg["leaked_chunks"] == 0
    assert agg["retrieved_chunks"] > 0
    # ann: 2 of 4 questions answerable, bob: 2, gus: 1 -> 5 scored, 7 no-access
    assert agg["no_access_samples"] == 7
    assert agg["n"]["recall@100"] == 5 and agg["recall@100"] == 1.0
    assert agg["restricted_source_hits"] == 0 and agg["expectation_mismatches"] == 0
    # reference contexts exist for one question: the text metrics run where it is answerable
    assert agg["n"]["non_llm_context_recall"] == 2
    per_user = results["per_user"]
    assert set(per_user) == {"ann", "bob", "gus"}
    assert per_user["gus"]["no_access_samples"] == 3
    rows = {(r["user"], r["query_id"]): r for r in results["queries"]}
    assert rows[("bob", "salary-l4")]["outcome"] == "no-access"
    assert rows[("bob", "salary-l4")]["recall@100"] is None
    assert all("salary" not in d for d in rows[("bob", "salary-l4")]["top_documents"])
    assert rows[("ann", "salary-l4")]["permitted"] == 1
    assert "## Per user" in (tmp_path / "acl" / "report.md").read_text()

    one, single = run_eval(
        data_dir, tmp_path / "bob", "--dataset", str(DATA / "acl"), "--as-user", "bob"
    )
    assert one == 0 and single["config"]["users"] == ["bob"] and single["per_user"] == {}


def test_a_dataset_with_acls_needs_a_user(
    embeddings: HashEmbeddings, data_dir: Path, tmp_path: Path
) -> None:
    with pytest.raises(ConfigError, match="--as-user"):
        run_eval(data_dir, tmp_path / "x", "--dataset", str(DATA / "acl"))


def test_expected_outcomes_are_checked_against_the_acls(
    embeddings: HashEmbeddings, data_dir: Path, tmp_path: Path
) -> None:
    copy = tmp_path / "acl"
    shutil.copytree(DATA / "acl", copy)
    lines = (copy / "questions.jsonl").read_text().splitlines()
    first = json.loads(lines[1])  # salary: say bob may read it (he may not)
    first["expected"]["bob"] = "answer"
    (copy / "questions.jsonl").write_text("\n".join([lines[0], json.dumps(first), *lines[2:]]))
    exit_code, results = run_eval(
        data_dir, tmp_path / "run", "--dataset", str(copy), "--as-user", "all"
    )
    assert exit_code == 1
    assert results["expectation_mismatches"] == [
        {"user": "bob", "query_id": "salary-l4", "expected": "answer", "actual": "no-access"}
    ]


class Leaky:
    """A broken searcher that ignores access (what the gate must catch)."""

    name = "leaky"
    default_k = 5
    config: ClassVar[dict[str, Any]] = {}

    def __init__(self, app: Any) -> None:
        self.records = list(app.store.records(with_text=True))

    def search(
        self, principal: Principal, query: str, *, filter: FilterInput = None, k: int | None = None
    ) -> SearchResult:
        from rag_app.stores.base import StoreHit

        hits = [StoreHit(r.id, r.text or "", r.metadata, 1.0) for r in self.records]
        return SearchResult(hits=hits[: k or 5], effective_filter={})

    def effective(self, principal: Principal, raw: FilterInput = None) -> dict[str, Any]:
        return {}


@pytest.fixture
def leaky(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(app_module.App, "searcher", lambda self, kind=None: Leaky(self))


def test_a_leaking_retriever_fails_the_run(
    embeddings: HashEmbeddings, data_dir: Path, tmp_path: Path, leaky: None
) -> None:
    exit_code, results = run_eval(
        data_dir,
        tmp_path / "leak",
        "--dataset",
        str(DATA / "acl"),
        "--as-user",
        "bob",
        "-r",
        "dense",
    )
    assert exit_code == 1
    agg = results["aggregate"]
    # bob may read 2 of the 4 documents: every query retrieves all 4
    assert agg["leaked_chunks"] == 8 and agg["retrieved_chunks"] == 16
    assert agg["leak_rate"] == pytest.approx(0.5)
    assert agg["restricted_source_hits"] == 2  # salary and globex leave questions
    assert "leak rate: **0.5000**" in (tmp_path / "leak" / "report.md").read_text()
