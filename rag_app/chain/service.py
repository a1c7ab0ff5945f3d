"""The conversational RAG chain: condense → retrieve (as the principal) → answer with citations.

The pieces are LangChain runnables (prompt | chat model, a `BaseRetriever` bound to one
principal); the service runs them in order and turns what happens into events (see
`rag_app.chain.events`) that a UI can render as they arrive:

1. With history, a follow-up that leans on it is joined to the previous question
   (`rag_app.chain.followup`, no model call) or, with ``chat_followup=rewrite``, rewritten by
   the model into a standalone question (`Rewrite`).
2. The question is searched *as the principal*, narrowed by the caller's filter. The only
   retriever the service can build is bound to a `Principal`, so nothing here can reach the
   store without one (`Sources`).
3. No hits: the fixed no-answer phrase, without calling the model. Otherwise the chunks are
   wrapped in ``<document id=n ...>`` delimiters, the model is told to treat them as data
   and cite them as [n], and its tokens are streamed (`Token`).
4. `Done` carries the answer, the cited source numbers, whether it refused, and timings.
   Any failure ends the turn with `Error` (a sentence, not a stack trace) and leaves the
   session's history unchanged.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from langchain_core.documents import Document
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage
from langchain_core.output_parsers import StrOutputParser
from langchain_core.retrievers import BaseRetriever

from rag_app import monitoring
from rag_app.access.permissions import Principal
from rag_app.chain.asker import personal
from rag_app.chain.context import (
    citations,
    fit_sources,
    format_context,
    is_refusal,
    renumber,
)
from rag_app.chain.events import (
    ChatEvent,
    ChatResult,
    Done,
    Error,
    Revise,
    Rewrite,
    SourceRecord,
    Sources,
    Timings,
    Token,
    UnsupportedClaim,
)
from rag_app.chain.followup import combine, for_model
from rag_app.chain.grounding import check_grounding
from rag_app.chain.history import ChatSession, TokenCounter, approximate_tokens
from rag_app.chain.passages import FETCH_FACTOR, PASSAGE_FACTOR, arrange
from rag_app.chain.prompts import PromptError, PromptSet
from rag_app.chain.review import review
from rag_app.chain.select import UnitCache, select_excerpts, summary_request, whole_document
from rag_app.errors import FilterError, RagAppError
from rag_app.retrieval.retriever import PermissionAwareRetriever
from rag_app.retrieval.search import SecureSearch

if TYPE_CHECKING:
    from rag_app.settings import Settings

log = logging.getLogger(__name__)

FilterArg = Mapping[str, Any] | str | None
RetrieverFactory = Callable[[Principal, FilterArg, int], BaseRetriever]

MAX_REWRITE_CHARS = 500
REWRITE_MAX_TOKENS = 64
# Room kept free in the model's context for the instructions, the question and slack in
# token counting (history and chunks are counted with the embedding model's tokenizer).
PROMPT_RESERVE_TOKENS = 600
# A summary reads whole passages of one document: this many times the sentence budget.
SUMMARY_FACTOR = 2
SUMMARY_HINT = "(Give its main facts and figures.)"


class ChatError(RagAppError):
    """A chat turn failed (raised by `ChatService.ask`; `stream` yields `Error` instead)."""

    def __init__(self, message: str, stage: str) -> None:
        super().__init__(message)
        self.stage = stage


def describe_error(stage: str, exc: BaseException, *, llm_label: str | None = None) -> str:
    """One sentence a user can act on, for an exception raised at `stage`."""
    if isinstance(exc, RagAppError):
        return str(exc)
    model = f"the chat model ({llm_label})" if llm_label else "the chat model"
    subject = model[0].upper() + model[1:]
    detail = str(exc).strip().rstrip(".") or type(exc).__name__
    try:
        import openai
    except ImportError:  # pragma: no cover - langchain-openai depends on it
        openai = None  # type: ignore[assignment]
    if openai is not None and isinstance(exc, openai.APIError):
        if isinstance(exc, openai.APITimeoutError):
            return f"{subject} did not answer in time; try again."
        if isinstance(exc, openai.APIConnectionError):
            return f"{subject} is unreachable ({detail}); is the server running?"
        if isinstance(exc, openai.AuthenticationError):
            return f"{subject} rejected the API key; check OPENAI_API_KEY."
        if isinstance(exc, openai.NotFoundError):
            return (
                f"{subject} does not exist on the server (HTTP 404); "
                "check RAG_OPENAI_CHAT_MODEL and OPENAI_BASE_URL."
            )
        if isinstance(exc, openai.RateLimitError):
            return f"{subject} is rate-limited or out of quota; try later."
        if isinstance(exc, openai.APIStatusError):
            return f"{subject} returned HTTP {exc.status_code}: {exc.message}"
        return f"{subject} failed: {detail}"
    what = {
        "retrieval": "Searching the documents failed",
        "rewrite": f"Rewriting the question with {model} failed",
        "answer": f"Answering with {model} failed",
    }.get(stage, "The chat turn failed")
    if stage == "retrieval" and isinstance(exc, ConnectionError | OSError | TimeoutError):
        return f"The document store is unreachable: {detail}"
    return f"{what}: {detail}"


class ChatService:
    """History-aware, permission-aware, citing RAG over a `SecureSearch`.

    One service serves many sessions and users (it keeps no per-user state): pass each
    turn's `ChatSession` and `Principal`.
    """

    def __init__(
        self,
        search: SecureSearch,
        llm: BaseChatModel,
        prompts: PromptSet,
        settings: Settings,
        *,
        count_tokens: TokenCounter | None = None,
        retriever_factory: RetrieverFactory | None = None,
        llm_label: str | None = None,
    ) -> None:
        self.search = search
        self.llm = llm
        self.prompts = prompts
        self.settings = settings
        self.llm_label = llm_label
        if count_tokens is None:
            embedder_counter = getattr(search.embeddings, "count_tokens", None)
            count_tokens = embedder_counter if callable(embedder_counter) else approximate_tokens
        self.count_tokens: TokenCounter = count_tokens
        self._retriever_factory = retriever_factory
        self._units = UnitCache()

    # -- sessions -----------------------------------------------------------------------
    def new_session(self, session_id: str | None = None) -> ChatSession:
        return ChatSession(self.settings.history_tokens, self.count_tokens, session_id=session_id)

    # -- pieces ---------------------------------------------------------------------------
    def retriever(
        self, principal: Principal, filter: FilterArg = None, k: int | None = None
    ) -> BaseRetriever:
        """A retriever bound to `principal` (the only way this service reads the store)."""
        if not isinstance(principal, Principal):
            raise ChatError(
                f"a chat turn needs a Principal, got {type(principal).__name__}", "input"
            )
        k = k or self.settings.k
        if self._retriever_factory is not None:
            return self._retriever_factory(principal, filter, k)
        return PermissionAwareRetriever(
            search=self.search,
            principal=principal,
            filter=dict(filter) if isinstance(filter, Mapping) else filter,
            k=k,
        )

    def context_budget(self) -> int:
        s = self.settings
        return max(256, s.llm_context_tokens - s.llm_max_tokens - PROMPT_RESERVE_TOKENS)

    def select(self, question: str, sources: list[SourceRecord]) -> list[SourceRecord]:
        """What the model reads of each passage (`rag_app.chain.select`): their best
        sentences within `context_tokens`, or the whole passages (context_select=chunks).
        Passages with nothing worth reading are left out and the rest numbered 1..n again,
        so the model's [n] and the Sources panel list only what the model read."""
        if self.settings.context_select != "sentences" or not sources:
            return sources
        if summary_request(question):  # the document, not the sentences most like "summarise"
            return renumber(
                whole_document(
                    sources,
                    count_tokens=self.count_tokens,
                    budget_tokens=SUMMARY_FACTOR * self.settings.context_tokens,
                )
            )
        embeddings = self.search.embeddings
        return renumber(
            select_excerpts(
                question,
                embeddings.embed_query(question),
                sources,
                embed=embeddings.embed_documents,
                count_tokens=self.count_tokens,
                budget_tokens=self.settings.context_tokens,
                cache=self._units,
            )
        )

    def condense(self, session: ChatSession, message: str) -> str:
        """The standalone rewrite of `message` given the session's history (one model call)."""
        chain = (
            self.prompts.condense | self.llm.bind(max_tokens=REWRITE_MAX_TOKENS) | StrOutputParser()
        )
        raw = chain.invoke(
            {
                "chat_history": session.as_text(),
                "question": message,
                **self.prompts.partial_values(),
            }
        )
        return clean_rewrite(raw) or message

    # -- a turn ---------------------------------------------------------------------------
    def stream(
        self,
        session: ChatSession,
        principal: Principal,
        message: str,
        filter: FilterArg = None,
        *,
        k: int | None = None,
    ) -> Iterator[ChatEvent]:
        """Run one turn, yielding events as they happen (see the module docstring)."""
        started = time.perf_counter()
        message = (message or "").strip()
        stage = "input"
        try:
            if not message:
                raise ChatError("the message is empty", "input")
            if filter is not None and not isinstance(filter, Mapping | str):
                raise ChatError("the filter must be a JSON object or a JSON string", "input")
            k = k or self.settings.k
            excerpts = self.settings.context_select == "sentences"
            retriever = self.retriever(principal, filter, k * FETCH_FACTOR if excerpts else k)
            # A bad or widening filter fails here, before any model call.
            self.search.effective(principal, filter)
            no_answer = self.prompts.no_answer
            answer_prompt = self.prompts.answer  # fail on a bad prompt file before any work

            # 1. condense
            stage = "rewrite"
            question, rewritten = message, False
            model_question = message  # what the answer model reads as the question
            rewrite_s = 0.0
            if len(session):
                t = time.perf_counter()
                if self.settings.chat_followup == "rewrite":
                    question = model_question = self.condense(session, message)
                else:
                    last = session.turns[-1]
                    previous = last.standalone or last.question
                    question = combine(previous, message)
                    model_question = for_model(previous, message)
                rewritten = question != message
                rewrite_s = time.perf_counter() - t
            yield Rewrite(question=question, original=message, rewritten=rewritten)

            # 2. retrieve as the principal
            stage = "retrieval"
            t = time.perf_counter()
            # "I"/"my" is the asker: for retrieval (their own documents, e.g. a review that
            # names them) and for the model
            asked, shown = question, model_question
            if self.settings.chat_asker_name:
                asked, shown = personal(question, principal), personal(model_question, principal)
            docs: list[Document] = retriever.invoke(asked)
            if excerpts:  # more passages, as the sentences worth reading are picked from them
                docs = arrange(docs, k * PASSAGE_FACTOR)
            sources = fit_sources(
                docs, budget_tokens=self.context_budget(), count_tokens=self.count_tokens
            )
            sources = self.select(asked, sources)
            retrieval_s = time.perf_counter() - t
            yield Sources(sources=sources)

            # 3. answer
            stage = "answer"
            if not sources:
                yield Token(no_answer)
                total = time.perf_counter() - started
                timings = Timings(rewrite_s, retrieval_s, total, total)
                session.add_turn(message, no_answer, standalone=question if rewritten else None)
                done = Done(no_answer, question, [], True, sources, timings, 0)
                monitoring.metrics().record_chat(done)
                yield done
                return
            if excerpts and summary_request(shown):
                # "highlights survey results and feedback" says nothing: ask for the content
                shown = f"{shown} {SUMMARY_HINT}"
            messages = answer_prompt.invoke(
                {
                    "context": format_context(sources),
                    "question": shown,
                    **self.prompts.partial_values(),
                }
            ).to_messages()
            gen = _Generation(started)
            yield from self._generate(messages, gen)
            answer = gen.answer() or no_answer
            if not gen.parts:
                yield Token(no_answer)
            cited = citations(answer, len(sources))
            refused = is_refusal(answer, no_answer, cited)
            unsupported: list[UnsupportedClaim] = []
            revised_from: str | None = None
            if self.settings.grounding != "off":
                found = review(answer, sources, shown, refused=refused, no_answer=no_answer)
                unsupported = found.unsupported
                if self.settings.grounding == "retry" and found.instruction:
                    # answer once more, with what failed; the server's prompt cache holds
                    # everything up to the first answer, so only the instruction is read
                    yield Revise(first_answer=answer, reason=found.instruction)
                    again = _Generation(started)
                    yield from self._generate(
                        [*messages, AIMessage(answer), HumanMessage(found.instruction)], again
                    )
                    if again.parts:
                        revised_from, answer = answer, again.answer() or no_answer
                        gen.tokens += again.tokens
                        gen.usage_tokens = (gen.usage_tokens or 0) + (again.usage_tokens or 0)
                    else:
                        yield Token(answer)  # nothing new: the first answer stands
                    cited = citations(answer, len(sources))
                    refused = is_refusal(answer, no_answer, cited)
                    unsupported = (
                        [] if refused else check_grounding(answer, sources, question=shown)
                    )
            total = time.perf_counter() - started
            timings = Timings(rewrite_s, retrieval_s, gen.first_token_s, total)
            session.add_turn(message, answer, standalone=question if rewritten else None)
            done = Done(
                answer,
                question,
                cited,
                refused,
                sources,
                timings,
                gen.usage_tokens or gen.tokens,
                unsupported=unsupported,
                prompt_tokens=gen.prompt_tokens,
                revised_from=revised_from,
            )
            monitoring.metrics().record_chat(done)
            yield done
        except ChatError as exc:
            monitoring.metrics().record_chat_error(exc.stage, exc)
            yield Error(str(exc), exc.stage)
        except (FilterError, PromptError) as exc:
            monitoring.metrics().record_chat_error("input" if stage == "input" else stage, exc)
            yield Error(str(exc), "input" if stage == "input" else stage)
        except Exception as exc:
            log.warning("chat turn failed at %s", stage, exc_info=True)
            monitoring.metrics().record_chat_error(stage, exc)
            yield Error(describe_error(stage, exc, llm_label=self.llm_label), stage)

    def _generate(self, messages: list[BaseMessage], gen: _Generation) -> Iterator[Token]:
        """Stream the model's answer to `messages` as `Token`s, recording them in `gen`."""
        for chunk in self.llm.stream(messages):
            usage = getattr(chunk, "usage_metadata", None)
            if usage and usage.get("output_tokens"):
                gen.usage_tokens = int(usage["output_tokens"])
            if usage and usage.get("input_tokens"):
                gen.prompt_tokens = gen.prompt_tokens or int(usage["input_tokens"])
            text = _chunk_text(chunk)
            if not text:
                continue
            if gen.first_token_s is None:
                gen.first_token_s = time.perf_counter() - gen.started
            gen.tokens += 1
            gen.parts.append(text)
            yield Token(text)

    def ask(
        self,
        principal: Principal,
        message: str,
        filter: FilterArg = None,
        *,
        session: ChatSession | None = None,
        k: int | None = None,
    ) -> ChatResult:
        """Run one turn to the end (a new session unless one is given). Raises `ChatError`."""
        session = session if session is not None else self.new_session()
        rewrite: Rewrite | None = None
        for event in self.stream(session, principal, message, filter, k=k):
            if isinstance(event, Rewrite):
                rewrite = event
            elif isinstance(event, Error):
                raise ChatError(event.message, event.stage)
            elif isinstance(event, Done):
                return ChatResult(
                    message=message,
                    question=event.question,
                    rewritten=bool(rewrite and rewrite.rewritten),
                    answer=event.answer,
                    sources=event.sources,
                    cited=event.cited,
                    refused=event.refused,
                    timings=event.timings,
                    tokens=event.tokens,
                    unsupported=event.unsupported,
                    prompt_tokens=event.prompt_tokens,
                    revised_from=event.revised_from,
                )
        raise ChatError("the chat turn ended without an answer", "answer")  # pragma: no cover


@dataclass
class _Generation:
    """One streamed answer: its text parts, token counts and time to its first token."""

    started: float
    parts: list[str] = field(default_factory=list)
    tokens: int = 0
    first_token_s: float | None = None
    usage_tokens: int | None = None
    prompt_tokens: int | None = None

    def answer(self) -> str:
        return "".join(self.parts).strip()


def _chunk_text(chunk: Any) -> str:
    content = getattr(chunk, "content", chunk)
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # content blocks
        return "".join(b.get("text", "") if isinstance(b, dict) else str(b) for b in content)
    return str(content or "")


def clean_rewrite(raw: str) -> str:
    """The first non-empty line of the model's rewrite, without labels or quotes."""
    for line in (raw or "").splitlines():
        text = line.strip()
        for label in ("standalone question:", "question:", "rewritten question:"):
            if text.lower().startswith(label):
                text = text[len(label) :].strip()
        text = text.strip().strip("\"“”'").strip()
        if text:
            return text[:MAX_REWRITE_CHARS]
    return ""


__all__ = ["ChatError", "ChatService", "SourceRecord", "describe_error"]
