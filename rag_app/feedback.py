"""Feedback log: one JSON object per line, appended, for later evaluation."""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

_lock = threading.Lock()  # serialises appends within one process; O_APPEND does the rest


@dataclass
class Feedback:
    user: str
    tenant: str
    question: str
    answer: str
    rating: Literal["up", "down"]
    sources: Sequence[dict[str, Any]] = field(default_factory=list)
    comment: str = ""
    rewritten_question: str | None = None
    session_id: str | None = None
    timestamp: float = field(default_factory=time.time)


def append_feedback(path: Path, item: Feedback) -> None:
    if item.rating not in ("up", "down"):
        raise ValueError(f"rating must be 'up' or 'down', got {item.rating!r}")
    path.parent.mkdir(parents=True, exist_ok=True)
    line = json.dumps(asdict(item), ensure_ascii=False, default=str) + "\n"
    with _lock:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            os.write(fd, line.encode("utf-8"))
        finally:
            os.close(fd)


def read_feedback(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]
