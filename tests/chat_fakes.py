"""Chat-model doubles for the chain tests: LangChain's streaming fake, recording its prompts."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGenerationChunk, ChatResult
from pydantic import Field


class ScriptedChatModel(GenericFakeChatModel):
    """Answers with the scripted replies in order (streamed word by word) and records every
    prompt it receives. Running out of replies fails the call loudly."""

    calls: list[list[BaseMessage]] = Field(default_factory=list)
    call_kwargs: list[dict[str, Any]] = Field(default_factory=list)

    @classmethod
    def script(cls, *replies: str) -> ScriptedChatModel:
        return cls(messages=iter([AIMessage(r) for r in replies]))

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        self.calls.append(list(messages))
        self.call_kwargs.append(dict(kwargs))
        try:
            return super()._generate(messages, stop=stop, run_manager=run_manager, **kwargs)
        except StopIteration as exc:
            raise AssertionError("the chat model was called more often than scripted") from exc

    def prompt_text(self, call: int) -> str:
        return "\n".join(str(m.content) for m in self.calls[call])


class FailingChatModel(GenericFakeChatModel):
    """Raises `exc` when called (optionally after streaming `before` tokens)."""

    exc: Any = None
    before: list[str] = Field(default_factory=list)
    calls: int = 0

    @classmethod
    def raising(cls, exc: BaseException, *, before: tuple[str, ...] = ()) -> FailingChatModel:
        return cls(messages=iter([]), exc=exc, before=list(before))

    def _generate(self, *args: Any, **kwargs: Any) -> ChatResult:
        self.calls += 1
        raise self.exc

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        from langchain_core.messages import AIMessageChunk

        self.calls += 1
        for text in self.before:
            yield ChatGenerationChunk(message=AIMessageChunk(content=text))
        raise self.exc
