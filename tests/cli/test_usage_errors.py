"""A bad option value is a usage message and exit code 2, never a traceback (typer >= 0.29
raises its own vendored click exceptions)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest


@pytest.mark.parametrize(
    "args",
    [
        ["stats", "--last", "5000"],
        ["eval", "run", "--answers", "-k", "0"],
        ["eval", "run", "--dataset", "x", "--retriever", "sparse"],
        ["eval", "run", "--answers", "--fusion", "max"],
        ["query", "x", "--tenant", "t", "--retriever", "sparse"],
        ["ingest", "x", "--cleanup", "partial"],
        ["stores", "create", "c", "--metric", "l2"],
        ["nope"],
    ],
)
def test_bad_values_are_usage_errors(args: list[str], tmp_path: Path) -> None:
    env = {**os.environ, "RAG_DATA_DIR": str(tmp_path / "data"), "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "rag_app.cli", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    assert "Invalid value" in proc.stderr or "No such command" in proc.stderr
