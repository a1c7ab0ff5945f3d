"""What a chat turn emits, in order: `Rewrite`, `Sources`, `Token`... (`Revise`, `Token`...)
then `Done` or `Error`.

Plain frozen dataclasses, so a UI (or a test) can pattern-match on them:

    for event in service.stream(session, principal, "and for contractors?"):
        match event:
            case Rewrite(question=q, rewritten=True): show_rewrite(q)
            case Sources(sources=s): show_sources(s)
            case Token(text=t): append(t)
            case Revise(): clear()  # the answer is being answered again after a check
            case Done() as done: finish(done.answer, done.cited, done.refused)
            case Error(message=m): show_error(m)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class SourceRecord:
    """One retrieved chunk, numbered as the model sees it ([n] in answers)."""

    n: int
    id: str
    title: str
    source: str
    snippet: str
    score: float | None  # the retriever's ranking score (with document-level fusion: the
    # document's score, the same for every passage of that document)
    metadata: dict[str, Any] = field(default_factory=dict)
    text: str = ""
    passage_score: float | None = None  # this passage's own relevance to the question
    # what the model was shown of this passage (None: all of `text`; "": nothing, it was
    # outside the context budget); see rag_app.chain.select
    excerpt: str | None = None

    @property
    def document_key(self) -> str:
        """Passages with the same key come from the same document."""
        return self.source or self.title or self.id


@dataclass(frozen=True)
class UnsupportedClaim:
    """A sentence of the answer with numbers, dates or amounts that no source it cites
    contains (see `rag_app.chain.grounding`)."""

    sentence: str
    values: list[str]  # the values not found, as written in the answer
    cited: list[int]  # the sentence's own citations ([] when it cites nothing: it was then
    # checked against everything the answer cites, or every source if it cites nothing)


@dataclass(frozen=True)
class Timings:
    rewrite_s: float = 0.0  # condensing the question (0 without history)
    retrieval_s: float = 0.0
    first_token_s: float | None = None  # from the start of the turn to the first answer token
    total_s: float = 0.0

    @property
    def retrieval_share(self) -> float:
        return self.retrieval_s / self.total_s if self.total_s > 0 else 0.0


@dataclass(frozen=True)
class Rewrite:
    """The question used for retrieval: the user's message, or its standalone rewrite."""

    question: str
    original: str
    rewritten: bool


@dataclass(frozen=True)
class Sources:
    sources: list[SourceRecord]


@dataclass(frozen=True)
class Token:
    text: str


@dataclass(frozen=True)
class Revise:
    """The answer streamed so far failed the check against the sources
    (`rag_app.chain.review`) and is being answered again: a UI clears what it showed and
    streams the new answer's tokens."""

    first_answer: str
    reason: str  # the instruction the model was given for the new answer


@dataclass(frozen=True)
class Done:
    answer: str
    question: str  # the standalone question that was answered
    cited: list[int]  # source numbers cited in the answer, in order of first citation
    refused: bool  # the answer is the no-answer phrase (nothing usable in the documents)
    sources: list[SourceRecord]
    timings: Timings
    tokens: int  # answer tokens generated (0 when the model was not called)
    # claims of the answer that its cited sources do not contain (shown as unsupported)
    unsupported: list[UnsupportedClaim] = field(default_factory=list)
    prompt_tokens: int | None = None  # of the answer call, as the model counted them
    revised_from: str | None = None  # the first answer, when the turn was answered again

    @property
    def cited_sources(self) -> list[SourceRecord]:
        by_n = {s.n: s for s in self.sources}
        return [by_n[n] for n in self.cited if n in by_n]


@dataclass(frozen=True)
class Error:
    """The turn failed; `message` says why in words (no stack trace). Nothing was added to
    the session's history."""

    message: str
    stage: str  # "input" | "rewrite" | "retrieval" | "answer"


ChatEvent = Rewrite | Sources | Token | Revise | Done | Error


@dataclass(frozen=True)
class ChatResult:
    """A whole turn, for tests and notebooks (`ChatService.ask`)."""

    message: str
    question: str
    rewritten: bool
    answer: str
    sources: list[SourceRecord]
    cited: list[int]
    refused: bool
    timings: Timings
    tokens: int
    unsupported: list[UnsupportedClaim] = field(default_factory=list)
    prompt_tokens: int | None = None
    revised_from: str | None = None

    @property
    def cited_sources(self) -> list[SourceRecord]:
        by_n = {s.n: s for s in self.sources}
        return [by_n[n] for n in self.cited if n in by_n]
