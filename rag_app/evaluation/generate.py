"""Synthetic test sets (``rag-app eval generate``): needs a chat model; refuses clearly
without one."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from rag_app.errors import ConfigError

if TYPE_CHECKING:
    from rag_app.app import App

NO_LLM = (
    "eval generate needs a chat model that can follow RAGAS' generation prompts: set "
    "RAG_LLM=openai with OPENAI_API_KEY (or OPENAI_BASE_URL for a compatible server). "
    "The evaluation itself (rag-app eval run) needs no LLM."
)


def generate_testset(app: App, corpus: list[Path], *, out: Path, size: int) -> int:
    settings = app.settings
    if settings.llm != "openai" or (
        settings.openai_api_key is None and not settings.openai_base_url
    ):
        raise ConfigError(NO_LLM)
    raise ConfigError(
        "eval generate is not implemented yet; write RAGAS-style JSONL by hand (see "
        "eval/demo/questions.jsonl)"
    )
