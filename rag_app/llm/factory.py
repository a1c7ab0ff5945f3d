"""Chat models from settings: `local` (a GGUF model in an in-process llama.cpp server) or
`openai` (OpenAI or any OpenAI-compatible server). Both are LangChain `ChatOpenAI` objects."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rag_app.errors import ConfigError, MissingPackageError
from rag_app.llm.models import resolve_model_path
from rag_app.llm.server import LocalLLMServer

if TYPE_CHECKING:
    from langchain_core.language_models import BaseChatModel

    from rag_app.settings import Settings

log = logging.getLogger(__name__)

# Local generation on a CPU is slow; a long answer must not time out between two tokens.
LOCAL_TIMEOUT_S = 300.0
REMOTE_TIMEOUT_S = 60.0


@dataclass
class ChatLLM:
    """A chat model plus whatever must be stopped with it (the local server)."""

    model: BaseChatModel
    name: str
    backend: str  # "local" | "openai"
    base_url: str | None = None
    server: LocalLLMServer | None = field(default=None, repr=False)

    def describe(self) -> str:
        where = f" at {self.base_url}" if self.base_url else ""
        return f"{self.backend}:{self.name}{where}"

    def close(self) -> None:
        if self.server is not None:
            self.server.stop()


def _chat_openai(**kwargs: Any) -> BaseChatModel:
    try:
        from langchain_openai import ChatOpenAI
    except ImportError as exc:  # pragma: no cover - installed with the app
        raise MissingPackageError("the chat model", "langchain-openai") from exc
    return ChatOpenAI(**kwargs)


def build_chat_llm(settings: Settings, *, cache_dir: Path | None = None) -> ChatLLM:
    if settings.llm == "openai":
        return build_openai_llm(settings)
    if settings.llm == "local":
        return build_local_llm(settings, cache_dir=cache_dir)
    raise ConfigError(f"unknown llm {settings.llm!r}: use local or openai")


def build_openai_llm(settings: Settings) -> ChatLLM:
    if settings.openai_api_key is None and not settings.openai_base_url:
        raise ConfigError(
            "RAG_LLM=openai needs OPENAI_API_KEY (or OPENAI_BASE_URL for a compatible server)"
        )
    key = settings.openai_api_key.get_secret_value() if settings.openai_api_key else "unused"
    kwargs: dict[str, Any] = {
        "model": settings.openai_chat_model,
        "api_key": key,
        "temperature": settings.llm_temperature,
        "max_tokens": settings.llm_max_tokens,
        "timeout": REMOTE_TIMEOUT_S,
        "max_retries": 1,
        "streaming": True,
    }
    if settings.openai_base_url:
        # Not every compatible server accepts stream_options: count streamed chunks instead.
        kwargs["base_url"] = settings.openai_base_url
    else:
        kwargs["stream_usage"] = True
    return ChatLLM(
        model=_chat_openai(**kwargs),
        name=settings.openai_chat_model,
        backend="openai",
        base_url=settings.openai_base_url or "https://api.openai.com/v1",
    )


def build_local_llm(
    settings: Settings,
    *,
    cache_dir: Path | None = None,
    verbose: bool = False,
) -> ChatLLM:
    path, name = resolve_model_path(settings.llm_model_path, cache_dir)
    server = LocalLLMServer(
        path,
        n_ctx=settings.llm_context_tokens,
        threads=settings.llm_threads,
        verbose=verbose or log.isEnabledFor(logging.DEBUG),
    )
    base_url = server.start()
    model = _chat_openai(
        model=name,
        api_key="local",
        base_url=base_url,
        temperature=settings.llm_temperature,
        max_tokens=settings.llm_max_tokens,
        timeout=LOCAL_TIMEOUT_S,
        max_retries=0,
        streaming=True,
        stream_usage=True,
    )
    return ChatLLM(model=model, name=name, backend="local", base_url=base_url, server=server)


JUDGE_MAX_TOKENS = 1024  # RAGAS' JSON answers (statements, verdicts) are longer than chat turns


def _loop_safe_chat_openai(**kwargs: Any) -> BaseChatModel:
    """A ChatOpenAI whose async calls run its *sync* client on a worker thread.

    RAGAS runs each phase (transforms, scenarios, samples, metric passes) in a fresh event
    loop (`asyncio.run`); ChatOpenAI's async HTTP client belongs to the loop that first used
    it and fails in the next one with "Connection error" while the server is still answering.
    The sync client has no loop to belong to."""
    import asyncio
    from functools import partial

    try:
        from langchain_openai import ChatOpenAI
    except ImportError as exc:  # pragma: no cover - installed with the app
        raise MissingPackageError("the chat model", "langchain-openai") from exc

    class LoopSafeChatOpenAI(ChatOpenAI):
        async def _agenerate(
            self,
            messages: Any,
            stop: list[str] | None = None,
            run_manager: Any = None,
            **kw: Any,
        ) -> Any:
            call = partial(self._generate, messages, stop, None, **kw)
            return await asyncio.get_running_loop().run_in_executor(None, call)

    return LoopSafeChatOpenAI(**kwargs)


def build_judge_model(chat_llm: ChatLLM, settings: Settings) -> BaseChatModel:
    """A deterministic, non-streaming model on the same endpoint as `chat_llm`, for RAGAS'
    LLM-judged metrics and test-set generation (RAG_JUDGE_MODEL picks another OpenAI model)."""
    if chat_llm.backend == "local":
        return _loop_safe_chat_openai(
            model=chat_llm.name,
            api_key="local",
            base_url=chat_llm.base_url,
            temperature=0.0,
            max_tokens=JUDGE_MAX_TOKENS,
            timeout=LOCAL_TIMEOUT_S,
            max_retries=0,
        )
    key = settings.openai_api_key.get_secret_value() if settings.openai_api_key else "unused"
    kwargs: dict[str, Any] = {
        "model": settings.judge_model or settings.openai_chat_model,
        "api_key": key,
        "temperature": 0.0,
        "max_tokens": JUDGE_MAX_TOKENS,
        "timeout": REMOTE_TIMEOUT_S,
        "max_retries": 2,
    }
    if settings.openai_base_url:
        kwargs["base_url"] = settings.openai_base_url
    return _loop_safe_chat_openai(**kwargs)
