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
        """Run one turn, yielding events as they happen (see the module docstring): the
        follow-up step, retrieval, the answer (with its review), then `Done`."""
        turn = _Turn(started=time.perf_counter(), message=(message or "").strip())
        try:
            retriever = self._prepare(turn, principal, filter, k)
            yield self._follow_up(turn, session)
            yield self._retrieve(turn, principal, retriever)
            if turn.sources:
                yield from self._answer(turn)
            else:  # nothing the user may read matches: the phrase, without a model call
                turn.answer = self.prompts.no_answer
                yield Token(turn.answer)
            yield self._finish(turn, session)
        except ChatError as exc:
            monitoring.metrics().record_chat_error(exc.stage, exc)
            yield Error(str(exc), exc.stage)
        except (FilterError, PromptError) as exc:
            monitoring.metrics().record_chat_error(turn.stage, exc)
            yield Error(str(exc), turn.stage)
        except Exception as exc:
            log.warning("chat turn failed at %s", turn.stage, exc_info=True)
            monitoring.metrics().record_chat_error(turn.stage, exc)
            yield Error(describe_error(turn.stage, exc, llm_label=self.llm_label), turn.stage)

    # -- the steps of a turn ----------------------------------------------------------------
    def _prepare(
        self, turn: _Turn, principal: Principal, filter: FilterArg, k: int | None
    ) -> BaseRetriever:
        """Check the input and build the principal's retriever; a bad or widening filter or
        a bad prompt file fails here, before any model call."""
        if not turn.message:
            raise ChatError("the message is empty", "input")
        if filter is not None and not isinstance(filter, Mapping | str):
            raise ChatError("the filter must be a JSON object or a JSON string", "input")
        turn.k = k or self.settings.k
        turn.excerpts = self.settings.context_select == "sentences"
        retriever = self.retriever(
            principal, filter, turn.k * FETCH_FACTOR if turn.excerpts else turn.k
        )
        self.search.effective(principal, filter)
        _ = self.prompts.no_answer, self.prompts.answer
        return retriever

    def _follow_up(self, turn: _Turn, session: ChatSession) -> Rewrite:
        """The question to search and the one the model reads: the message itself, or with
        history the follow-up joined to the previous question (or the model's rewrite)."""
        turn.stage = "rewrite"
        turn.question = turn.model_question = turn.message
        if len(session):
            t = time.perf_counter()
            if self.settings.chat_followup == "rewrite":
                turn.question = turn.model_question = self.condense(session, turn.message)
            else:
                last = session.turns[-1]
                previous = last.standalone or last.question
                turn.question = combine(previous, turn.message)
                turn.model_question = for_model(previous, turn.message)
            turn.rewrite_s = time.perf_counter() - t
        return Rewrite(question=turn.question, original=turn.message, rewritten=turn.rewritten)

    def _retrieve(self, turn: _Turn, principal: Principal, retriever: BaseRetriever) -> Sources:
        """Search as the principal, arrange the passages, pick what the model reads."""
        turn.stage = "retrieval"
        t = time.perf_counter()
        # "I"/"my" is the asker: for retrieval (their own documents, e.g. a review that
        # names them) and for the model
        turn.asked, turn.shown = turn.question, turn.model_question
        if self.settings.chat_asker_name:
            turn.asked = personal(turn.question, principal)
            turn.shown = personal(turn.model_question, principal)
        docs: list[Document] = retriever.invoke(turn.asked)
        if turn.excerpts:  # more passages, as the sentences worth reading are picked from them
            docs = arrange(docs, turn.k * PASSAGE_FACTOR)
        sources = fit_sources(
            docs, budget_tokens=self.context_budget(), count_tokens=self.count_tokens
        )
        turn.sources = self.select(turn.asked, sources)
        turn.retrieval_s = time.perf_counter() - t
        return Sources(sources=turn.sources)

    def _answer(self, turn: _Turn) -> Iterator[ChatEvent]:
        """Stream the model's answer, review it against the sources and, with
        grounding=retry, answer once more when a check fails."""
        turn.stage = "answer"
        no_answer = self.prompts.no_answer
        if turn.excerpts and summary_request(turn.shown):
            # "highlights survey results and feedback" says nothing: ask for the content
            turn.shown = f"{turn.shown} {SUMMARY_HINT}"
        messages = self.prompts.answer.invoke(
            {
                "context": format_context(turn.sources),
                "question": turn.shown,
                **self.prompts.partial_values(),
            }
        ).to_messages()
        gen = turn.generation = _Generation(turn.started)
        yield from self._generate(messages, gen)
        turn.answer = gen.answer() or no_answer
        if not gen.parts:
            yield Token(no_answer)
        if self.settings.grounding == "off":
            return
        refused = is_refusal(turn.answer, no_answer, citations(turn.answer, len(turn.sources)))
        found = review(turn.answer, turn.sources, turn.shown, refused=refused, no_answer=no_answer)
        turn.unsupported = found.unsupported
        if self.settings.grounding != "retry" or not found.instruction:
            return
        # answer once more, with what failed; the server's prompt cache holds everything up
        # to the first answer, so only the instruction is read
        yield Revise(first_answer=turn.answer, reason=found.instruction)
        again = _Generation(turn.started)
        yield from self._generate(
            [*messages, AIMessage(turn.answer), HumanMessage(found.instruction)], again
        )
        if again.parts:
            turn.revised_from, turn.answer = turn.answer, again.answer() or no_answer
            gen.tokens += again.tokens
            gen.usage_tokens = (gen.usage_tokens or 0) + (again.usage_tokens or 0)
        else:
            yield Token(turn.answer)  # nothing new: the first answer stands
        refused = is_refusal(turn.answer, no_answer, citations(turn.answer, len(turn.sources)))
        turn.unsupported = (
            [] if refused else check_grounding(turn.answer, turn.sources, question=turn.shown)
        )

    def _finish(self, turn: _Turn, session: ChatSession) -> Done:
        """Record the turn in the session and the metrics; the `Done` event."""
        cited = citations(turn.answer, len(turn.sources))
        refused = is_refusal(turn.answer, self.prompts.no_answer, cited)
        total = time.perf_counter() - turn.started
        gen = turn.generation
        first_token = gen.first_token_s if gen is not None else total
        timings = Timings(turn.rewrite_s, turn.retrieval_s, first_token, total)
        session.add_turn(
            turn.message, turn.answer, standalone=turn.question if turn.rewritten else None
        )
        done = Done(
            turn.answer,
            turn.question,
            cited,
            refused,
            turn.sources,
            timings,
            (gen.usage_tokens or gen.tokens) if gen is not None else 0,
            unsupported=turn.unsupported,
            prompt_tokens=gen.prompt_tokens if gen is not None else None,
            revised_from=turn.revised_from,
        )
        monitoring.metrics().record_chat(done)
        return done

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
class _Turn:
    """What one turn has found so far (the steps of `ChatService.stream` fill it in)."""

    started: float
    message: str
    stage: str = "input"  # where a failure happened: input, rewrite, retrieval, answer
    k: int = 0
    excerpts: bool = False
    question: str = ""  # what is searched (and shown as the standalone question)
    model_question: str = ""  # what the answer model reads as the question
    asked: str = ""  # `question` with the asker's name, if any
    shown: str = ""  # `model_question` with the asker's name, if any
    rewrite_s: float = 0.0
    retrieval_s: float = 0.0
    sources: list[SourceRecord] = field(default_factory=list)
    generation: _Generation | None = None
    answer: str = ""
    unsupported: list[UnsupportedClaim] = field(default_factory=list)
    revised_from: str | None = None

    @property
    def rewritten(self) -> bool:
        return self.question != self.message


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
