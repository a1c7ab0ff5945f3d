"""ragas 0.4's current model interfaces, over any LangChain chat model and embeddings.

ragas 0.4 deprecates its LangChain wrappers (``LangchainLLMWrapper``,
``LangchainEmbeddingsWrapper``) and the metrics in ``ragas.metrics``; the current metrics
(``ragas.metrics.collections``) take an `InstructorBaseRagasLLM` -- ``generate(prompt,
response_model)`` returning a pydantic object -- and a `BaseRagasEmbedding`. ragas' own
factory (``llm_factory``) builds one only from an SDK client with instructor's tool calling,
which the bundled llama.cpp model and most local servers do not offer reliably.

`ChatModelLLM` implements that interface over a LangChain chat model instead: every current
prompt already spells out its JSON schema ("Please return the output in a JSON format that
complies with ..."), so the reply is parsed as JSON and validated against the response model.
A reply that does not validate is sent back once with the validation error (a deterministic
judge would repeat itself if simply asked again); a second bad reply raises `JudgeOutputError`,
which the judge records as a failure of that sample -- never a score.
"""

from __future__ import annotations

import asyncio
import json
from typing import TYPE_CHECKING, Any, TypeVar

from pydantic import BaseModel, ValidationError
from ragas.embeddings.base import BaseRagasEmbedding
from ragas.llms.base import InstructorBaseRagasLLM

from rag_app.errors import RagAppError

if TYPE_CHECKING:
    from langchain_core.embeddings import Embeddings
    from langchain_core.runnables import Runnable

Model = TypeVar("Model", bound=BaseModel)


class JudgeOutputError(RagAppError):
    """The model's reply is not the JSON object the prompt asked for."""


class ChatModelLLM(InstructorBaseRagasLLM):
    """ragas' structured-output LLM interface over a LangChain chat model (or a model with
    bound arguments)."""

    # ragas' test-set prompts call `agenerate` when this is true (as for an async SDK client)
    is_async = True

    def __init__(self, llm: Runnable[Any, Any], *, corrections: int = 1) -> None:
        self.llm = llm
        self.corrections = corrections
        bound = getattr(llm, "bound", llm)
        self.model = str(getattr(bound, "model_name", None) or type(bound).__name__)
        self.provider = "langchain"

    def generate(self, prompt: str, response_model: type[Model]) -> Model:
        reply = _text(self.llm.invoke([("human", prompt)]))
        for _ in range(self.corrections):
            try:
                return parse_reply(reply, response_model)
            except JudgeOutputError as exc:
                reply = _text(self.llm.invoke(_correction(prompt, reply, exc)))
        return parse_reply(reply, response_model)

    async def agenerate(self, prompt: str, response_model: type[Model]) -> Model:
        reply = _text(await self.llm.ainvoke([("human", prompt)]))
        for _ in range(self.corrections):
            try:
                return parse_reply(reply, response_model)
            except JudgeOutputError as exc:
                reply = _text(await self.llm.ainvoke(_correction(prompt, reply, exc)))
        return parse_reply(reply, response_model)


class ModelEmbeddings(BaseRagasEmbedding):
    """ragas' current embedding interface over LangChain embeddings."""

    def __init__(self, inner: Embeddings) -> None:
        super().__init__()
        self.inner = inner
        self.model = str(getattr(inner, "name", None) or type(inner).__name__)

    def embed_text(self, text: str, **kwargs: Any) -> list[float]:
        return list(self.inner.embed_query(text))

    async def aembed_text(self, text: str, **kwargs: Any) -> list[float]:
        return await asyncio.to_thread(self.embed_text, text)

    def embed_texts(self, texts: list[str], **kwargs: Any) -> list[list[float]]:
        return [list(v) for v in self.inner.embed_documents(list(texts))]

    async def aembed_texts(self, texts: list[str], **kwargs: Any) -> list[list[float]]:
        return await asyncio.to_thread(self.embed_texts, texts)


def parse_reply(reply: str, response_model: type[Model]) -> Model:
    """The JSON object in `reply` (bare, in a ```json fence, or with text around it), validated
    against `response_model`."""
    candidates = [reply.strip()]
    fence = reply.find("```")
    if fence >= 0:
        body = reply[fence + 3 :]
        body = body[body.find("\n") + 1 :] if body[:4].lower().startswith("json") else body
        candidates.append(body.split("```", 1)[0].strip())
    start, end = reply.find("{"), reply.rfind("}")
    if 0 <= start < end:
        candidates.append(reply[start : end + 1])
    problem = "it contains no JSON object"
    for text in candidates:
        try:
            data = json.loads(text)
        except json.JSONDecodeError:
            continue
        try:
            return response_model.model_validate(data)
        except ValidationError as exc:
            problem = f"it does not match the schema: {_first_error(exc)}"
    raise JudgeOutputError(
        f"the model's reply is not the {response_model.__name__} JSON asked for ({problem}): "
        f"{reply[:200]!r}"
    )


def _first_error(exc: ValidationError) -> str:
    error = exc.errors()[0]
    where = ".".join(str(p) for p in error.get("loc", ())) or "(top level)"
    return f"{where}: {error.get('msg', 'invalid')}"


def _correction(prompt: str, reply: str, exc: JudgeOutputError) -> list[Any]:
    return [
        ("human", prompt),
        ("ai", reply),
        ("human", f"That reply cannot be used: {exc}. Reply with only the JSON object."),
    ]


def _text(message: Any) -> str:
    content = getattr(message, "content", message)
    if isinstance(content, list):  # content blocks
        return "".join(b.get("text", "") if isinstance(b, dict) else str(b) for b in content)
    return str(content)
