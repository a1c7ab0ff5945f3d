"""The CI gate: the demo evaluation set with the real model, as every demo user.

Zero leaks, every expected outcome consistent with the ACLs, and retrieval quality above a
floor, for hybrid retrieval (the default for the chat) and BM25 (which has no model to hide
behind). The thresholds sit below the measured values (hybrid: nDCG@10, MRR@10, Recall@100 and
context recall@5 all 1.0; BM25: nDCG@10 0.99; dense: 0.95) so that only real regressions fail.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow

GATES = {
    "hybrid": ["ndcg@10=0.9", "mrr@10=0.9", "recall@100=0.95", "id_based_context_recall=0.95"],
    "bm25": ["ndcg@10=0.9", "recall@100=0.95"],
}


@pytest.mark.parametrize("retriever", list(GATES))
def test_demo_evaluation_gate(retriever: str, tmp_path_factory: pytest.TempPathFactory) -> None:
    data = tmp_path_factory.getbasetemp() / "demo-eval-data"  # shared: ingest once
    out = tmp_path_factory.mktemp(f"run-{retriever}")
    env = {**os.environ, "RAG_DATA_DIR": str(data)}
    args = [
        sys.executable, "-m", "rag_app.cli", "eval", "run",
        "--dataset", "eval/demo", "--as-user", "all", "--retriever", retriever,
        "--no-progress", "--out", str(out), "--json",
    ]  # fmt: skip
    for gate in GATES[retriever]:
        args += ["--fail-under", gate]
    proc = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["failures"] == []
    agg = summary["aggregate"]
    assert agg["leak_rate"] == 0.0 and agg["retrieved_chunks"] > 0
    assert agg["expectation_mismatches"] == 0 and agg["restricted_source_hits"] == 0
    assert agg["samples"] == 8 * 22
    results = json.loads((out / "results.json").read_text())
    assert set(results["per_user"]) == {
        "alice", "bob", "carol", "dave", "erin", "henry", "frank", "grace"
    }  # fmt: skip
    # henry (staff) must not be able to reach the salary bands; alice (hr) must
    rows = {(r["user"], r["query_id"]): r for r in results["queries"]}
    assert rows[("henry", "salary-band-l4")]["outcome"] == "no-access"
    assert not any("salary-bands" in d for d in rows[("henry", "salary-band-l4")]["top_documents"])
    assert rows[("alice", "salary-band-l4")]["top_documents"][0].endswith("salary-bands-2025.md")
