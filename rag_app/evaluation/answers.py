"""Answer correctness without an LLM judge: key facts, cited sources, refusals and leaks.

An *answer set* is a JSONL file, one case per line (``eval/demo/answers.jsonl``)::

    {"id": "leave-weeks-alice", "user": "alice",
     "question": "How many weeks of paid parental leave do employees get?",
     "kind": "fact",                       # see KINDS
     "facts": [["20 weeks", "20-week", "twenty weeks"]],   # every group, any alternative
     "sources": ["halcyon/all-staff/parental-leave-policy"],  # substrings of cited sources
     "forbidden": ["16 weeks"],            # must never appear in the answer
     "history": []}                        # earlier messages of the same session

Kinds: ``fact``, ``table`` (a look-up in a table), ``negative`` (the documents say no),
``ambiguous-number`` (the number, or a similar one, appears in several documents),
``follow-up`` (needs ``history``), and the *refusal* kinds ``restricted`` (the answer exists,
but only in documents this user may not read) and ``not-in-corpus``.

Grading (`grade_answer`) compares normalised text: lower case, every kind of space collapsed,
dashes and quotes unified, Markdown emphasis dropped, thousands separators removed between
digits (``98,000`` = ``98 000`` = ``98000``) and no space before ``%`` (``5.5 %`` = ``5.5%``).
A fact matches at a word start; a fact ending in a digit, or a word of at most three letters
(``no``), must also end there, so ``20 weeks`` does not match ``120 weeks`` and ``no`` does
not match ``not``.

* An answerable case is correct iff the answer is not a refusal, every fact group matched,
  at least one cited source contains one of ``sources``, and no ``forbidden`` string appears.
* A refusal case is correct iff the chain refused and no ``forbidden`` string appears.
* A chat error makes a case incorrect.
"""

from __future__ import annotations

import json
import re
import statistics
import time
import unicodedata
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rag_app.evaluation.datasets import DatasetError

if TYPE_CHECKING:
    from rag_app.access.permissions import Principal
    from rag_app.chain import ChatService

KINDS: tuple[str, ...] = (
    "fact",
    "table",
    "negative",
    "ambiguous-number",
    "follow-up",
    "restricted",
    "not-in-corpus",
)
REFUSAL_KINDS: frozenset[str] = frozenset({"restricted", "not-in-corpus"})
_KEYS = frozenset({"id", "user", "question", "kind", "facts", "sources", "forbidden", "history"})
_REQUIRED = ("id", "user", "question", "kind")


class AnswerSetError(DatasetError):
    """An answer set is missing or malformed (the message names file:line and the problem)."""


# -- cases ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class AnswerCase:
    id: str
    user: str
    question: str
    kind: str
    facts: tuple[tuple[str, ...], ...] = ()
    sources: tuple[str, ...] = ()
    forbidden: tuple[str, ...] = ()
    history: tuple[str, ...] = ()

    @property
    def answerable(self) -> bool:
        """False for the refusal kinds (``restricted``, ``not-in-corpus``)."""
        return self.kind not in REFUSAL_KINDS

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "user": self.user,
            "question": self.question,
            "kind": self.kind,
            "facts": [list(g) for g in self.facts],
            "sources": list(self.sources),
            "forbidden": list(self.forbidden),
            "history": list(self.history),
        }


def _strings(value: Any, key: str, where: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        raise AnswerSetError(f"{where}: '{key}' must be a list of non-empty strings")
    return tuple(value)


def _facts(value: Any, where: str) -> tuple[tuple[str, ...], ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise AnswerSetError(f"{where}: 'facts' must be a list of groups (lists of strings)")
    groups: list[tuple[str, ...]] = []
    for n, group in enumerate(value, 1):
        if isinstance(group, str):
            group = [group]  # a one-alternative group may be written as a plain string
        if (
            not isinstance(group, list)
            or not group
            or not all(isinstance(a, str) and a.strip() for a in group)
        ):
            raise AnswerSetError(
                f"{where}: fact group {n} must be a non-empty list of non-empty strings"
            )
        groups.append(tuple(group))
    return tuple(groups)


def parse_case(record: Any, where: str) -> AnswerCase:
    """One case from its JSON object; `where` (``file:line``) prefixes every error."""
    if not isinstance(record, dict):
        raise AnswerSetError(f"{where}: expected a JSON object, got {type(record).__name__}")
    missing = [k for k in _REQUIRED if k not in record]
    if missing:
        raise AnswerSetError(f"{where}: missing key(s) {', '.join(missing)}")
    unknown = sorted(set(record) - _KEYS)
    if unknown:
        raise AnswerSetError(
            f"{where}: unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(_KEYS))}"
        )
    for key in _REQUIRED:
        if not isinstance(record[key], str) or not record[key].strip():
            raise AnswerSetError(f"{where}: '{key}' must be a non-empty string")
    kind = record["kind"]
    if kind not in KINDS:
        raise AnswerSetError(f"{where}: unknown kind {kind!r}; use one of {', '.join(KINDS)}")
    case = AnswerCase(
        id=record["id"].strip(),
        user=record["user"].strip(),
        question=record["question"].strip(),
        kind=kind,
        facts=_facts(record.get("facts"), where),
        sources=_strings(record.get("sources"), "sources", where),
        forbidden=_strings(record.get("forbidden"), "forbidden", where),
        history=_strings(record.get("history"), "history", where),
    )
    if case.answerable:
        if not case.facts:
            raise AnswerSetError(f"{where}: a {kind} case needs 'facts' (the answer's key facts)")
        if not case.sources:
            raise AnswerSetError(
                f"{where}: a {kind} case needs 'sources' (what the answer must cite)"
            )
    else:
        if case.facts:
            raise AnswerSetError(
                f"{where}: a {kind} case expects a refusal and has no 'facts'; put what must "
                "not appear under 'forbidden'"
            )
        if case.sources:
            raise AnswerSetError(f"{where}: a {kind} case expects a refusal and cites no 'sources'")
    if kind == "follow-up" and not case.history:
        raise AnswerSetError(f"{where}: a follow-up case needs 'history' (the earlier messages)")
    return case


def load_answer_set(path: Path) -> list[AnswerCase]:
    """Read and validate an answer set (JSONL; blank lines are skipped)."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise AnswerSetError(f"{path}: no such answer set") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise AnswerSetError(f"{path}: cannot read: {exc}") from exc
    cases: list[AnswerCase] = []
    seen: dict[str, int] = {}
    for lineno, line in enumerate(lines, 1):
        if not line.strip():
            continue
        where = f"{path}:{lineno}"
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise AnswerSetError(f"{where}: invalid JSON: {exc.msg} (column {exc.colno})") from None
        case = parse_case(record, where)
        if case.id in seen:
            first = seen[case.id]
            raise AnswerSetError(f"{where}: duplicate id {case.id!r} (first on line {first})")
        seen[case.id] = lineno
        cases.append(case)
    if not cases:
        raise AnswerSetError(f"{path}: no cases")
    return cases


# -- matching -------------------------------------------------------------------------------------
_TRANSLATE = str.maketrans(
    {
        "\u2010": "-",  # hyphen
        "\u2011": "-",  # non-breaking hyphen
        "\u2012": "-",  # figure dash
        "\u2013": "-",  # en dash
        "\u2014": "-",  # em dash
        "\u2212": "-",  # minus sign
        "\u2018": "'",
        "\u2019": "'",
        "\u201c": '"',
        "\u201d": '"',
        "*": None,  # Markdown emphasis
        "`": None,
    }
)
_SPACE = re.compile(r"\s+")
_THOUSANDS = re.compile(r"(?<=\d)[, ](?=\d{3}(?!\d))")
_SPACE_PERCENT = re.compile(r"(?<=\d) %")


def normalise(text: str) -> str:
    """The form answers, facts and documents are compared in (see the module docstring)."""
    text = unicodedata.normalize("NFKC", text or "")  # NBSP, narrow NBSP... -> space
    text = text.translate(_TRANSLATE)
    text = _SPACE.sub(" ", text).strip().lower()
    text = _THOUSANDS.sub("", text)
    return _SPACE_PERCENT.sub("%", text)


def _pattern(needle: str) -> re.Pattern[str] | None:
    norm = normalise(needle)
    if not norm:
        return None
    head, tail = norm[0], norm[-1]
    pattern = re.escape(norm)
    if head.isalnum():
        pattern = r"(?<!\w)" + (r"(?<!\d[.,])" if head.isdigit() else "") + pattern
    if tail.isdigit():
        pattern += r"(?!\d|[.,]\d)"
    elif norm.isalpha() and len(norm) <= 3:
        pattern += r"(?!\w)"
    return re.compile(pattern)


_PATTERNS: dict[str, re.Pattern[str] | None] = {}


def contains(normalised_text: str, needle: str) -> bool:
    """Whether `needle` occurs in `normalised_text` (already `normalise`d), on the boundaries
    the module docstring describes."""
    if needle not in _PATTERNS:
        _PATTERNS[needle] = _pattern(needle)
    pattern = _PATTERNS[needle]
    return pattern is not None and pattern.search(normalised_text) is not None


def matches(text: str, needle: str) -> bool:
    """`contains` on raw text."""
    return contains(normalise(text), needle)


# -- grading --------------------------------------------------------------------------------------
@dataclass
class AnswerGrade:
    case_id: str
    correct: bool
    why: str
    refused: bool
    leaked: list[str] = field(default_factory=list)  # forbidden strings found in the answer
    missing_facts: list[list[str]] = field(default_factory=list)  # fact groups not matched
    cited_expected: bool = False  # a cited source contains one of the case's sources


def grade_answer(
    case: AnswerCase, answer: str, cited_sources: Sequence[str], refused: bool
) -> AnswerGrade:
    """Grade one answer (see the module docstring)."""
    text = normalise(answer)
    leaked = [f for f in case.forbidden if contains(text, f)]
    cited = [normalise(s) for s in cited_sources]
    cited_expected = any(normalise(want) in c for c in cited for want in case.sources)
    leak_note = [f"leaked {leaked}"] if leaked else []
    if not case.answerable:
        correct = refused and not leaked
        why = ", ".join(["refused" if refused else "did not refuse", *leak_note])
        return AnswerGrade(case.id, correct, why, refused, leaked, [], cited_expected)
    missing = [list(g) for g in case.facts if not any(contains(text, alt) for alt in g)]
    # a negative answer that opens with "yes" contradicts itself, whatever "not" follows
    affirms = case.kind == "negative" and re.match(r"\W*yes\b", text) is not None
    correct = not refused and not missing and cited_expected and not leaked and not affirms
    parts: list[str] = []
    if affirms:
        parts.append('says "yes" to a negative')
    if refused:
        parts.append("refused")
    if missing:
        parts.append("missing " + "; ".join(" | ".join(g) for g in missing))
    else:
        parts.append("all facts")
    if cited_expected:
        parts.append("cited")
    else:
        shown = ", ".join(cited_sources) if cited_sources else "nothing"
        parts.append(f"expected source not cited (cited {shown})")
    return AnswerGrade(
        case.id, correct, ", ".join([*parts, *leak_note]), refused, leaked, missing, cited_expected
    )


def error_grade(case: AnswerCase, error: str) -> AnswerGrade:
    return AnswerGrade(
        case.id,
        False,
        f"error: {error}",
        False,
        [],
        [list(g) for g in case.facts],
        False,
    )


# -- running --------------------------------------------------------------------------------------
@dataclass
class AnswerTurn:
    case: AnswerCase
    answer: str
    refused: bool
    cited_sources: list[str]
    grade: AnswerGrade
    ttft_s: float | None
    total_s: float
    prompt_tokens: int | None
    tokens: int
    error: str | None
    unsupported: int  # sentences the grounding check flagged as unsupported
    rewrite: str | None = None  # the standalone question, when a follow-up was rewritten
    rewrite_s: float = 0.0
    retrieval_s: float = 0.0
    tokens_per_s: float | None = None  # tokens after the first / time after the first
    revised_from: str | None = None  # the first answer, when the check made a re-answer

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.case.id,
            "user": self.case.user,
            "kind": self.case.kind,
            "question": self.case.question,
            "history": list(self.case.history),
            "answer": self.answer,
            "refused": self.refused,
            "cited_sources": list(self.cited_sources),
            "correct": self.grade.correct,
            "why": self.grade.why,
            "leaked": list(self.grade.leaked),
            "missing_facts": [list(g) for g in self.grade.missing_facts],
            "cited_expected": self.grade.cited_expected,
            "rewrite": self.rewrite,
            "ttft_s": _round(self.ttft_s),
            "total_s": _round(self.total_s),
            "rewrite_s": _round(self.rewrite_s),
            "retrieval_s": _round(self.retrieval_s),
            "prompt_tokens": self.prompt_tokens,
            "tokens": self.tokens,
            "tokens_per_s": _round(self.tokens_per_s, 2),
            "unsupported": self.unsupported,
            "revised_from": self.revised_from,
            "error": self.error,
        }


def _round(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(value, digits)


def run_answer_case(
    service: ChatService,
    principal: Principal,
    case: AnswerCase,
    *,
    k: int | None = None,
    before_question: Callable[[], Any] | None = None,
    before_revise: Callable[[], Any] | None = None,
) -> AnswerTurn:
    """Ask the case's history (if any) and then its question in one new session, as
    `principal`, and grade the last answer. A failed turn (history included) is an error.
    `before_question` runs after the history, right before the graded question, and
    `before_revise` when the answer is answered again after the check against the sources
    (a benchmark reads the model server's counters there)."""
    from rag_app.chain import Done, Error, Revise, Rewrite, Token

    started = time.perf_counter()
    session = service.new_session()
    done: Any = None
    error: str | None = None
    rewrite: str | None = None
    last_token_at: float | None = None
    streamed = 0  # tokens of the first answer
    revised = False
    try:
        for n, message in enumerate(case.history, 1):
            for event in service.stream(session, principal, message, k=k):
                if isinstance(event, Error):
                    error = f"history turn {n} failed ({event.stage}): {event.message}"
            if error is not None:
                break
        if error is None:
            if before_question is not None:
                before_question()
            turn_started = time.perf_counter()
            for event in service.stream(session, principal, case.question, k=k):
                if isinstance(event, Rewrite) and event.rewritten:
                    rewrite = event.question
                elif isinstance(event, Token) and not revised:
                    last_token_at = time.perf_counter() - turn_started
                    streamed += 1
                elif isinstance(event, Revise):
                    revised = True
                    if before_revise is not None:
                        before_revise()
                elif isinstance(event, Error):
                    error = f"{event.stage}: {event.message}"
                elif isinstance(event, Done):
                    done = event
            if error is None and done is None:
                error = "the chat turn ended without an answer"
    except Exception as exc:  # a broken service must not end a whole run
        error = f"{type(exc).__name__}: {exc}"
    if error is not None or done is None:
        message = error or "no answer"
        return AnswerTurn(
            case=case,
            answer="",
            refused=False,
            cited_sources=[],
            grade=error_grade(case, message),
            ttft_s=None,
            total_s=time.perf_counter() - started,
            prompt_tokens=None,
            tokens=0,
            error=message,
            unsupported=0,
            rewrite=rewrite,
        )
    cited = [s.source for s in done.cited_sources]
    timings = done.timings
    rate = None
    first = timings.first_token_s
    # the first answer's generation rate (a revised turn also re-reads a prompt)
    if first is not None and last_token_at is not None and streamed > 1:
        generating = last_token_at - first
        rate = (streamed - 1) / generating if generating > 0 else None
    prompt_tokens = getattr(done, "prompt_tokens", None)
    return AnswerTurn(
        case=case,
        answer=done.answer,
        refused=bool(done.refused),
        cited_sources=cited,
        grade=grade_answer(case, done.answer, cited, bool(done.refused)),
        ttft_s=first,
        total_s=timings.total_s,
        prompt_tokens=prompt_tokens if isinstance(prompt_tokens, int) else None,
        tokens=int(done.tokens),
        error=None,
        unsupported=len(getattr(done, "unsupported", None) or []),
        rewrite=rewrite,
        rewrite_s=timings.rewrite_s,
        retrieval_s=timings.retrieval_s,
        tokens_per_s=rate,
        revised_from=getattr(done, "revised_from", None),
    )


def _median(values: Iterable[float]) -> float | None:
    data = list(values)
    return round(statistics.median(data), 3) if data else None


def _quantile(values: Iterable[float], q: float) -> float | None:
    data = sorted(values)
    if not data:
        return None
    return round(data[min(len(data) - 1, int(q * len(data)))], 3)


def _share(turns: Sequence[AnswerTurn]) -> dict[str, Any]:
    correct = sum(1 for t in turns if t.grade.correct)
    return {
        "correct": correct,
        "total": len(turns),
        "rate": round(correct / len(turns), 4) if turns else None,
    }


@dataclass
class AnswerReport:
    turns: list[AnswerTurn] = field(default_factory=list)

    @property
    def answerable(self) -> list[AnswerTurn]:
        return [t for t in self.turns if t.case.answerable]

    @property
    def refusal(self) -> list[AnswerTurn]:
        return [t for t in self.turns if not t.case.answerable]

    def summary(self) -> dict[str, Any]:
        """Counts and rates (answerable cases, refusal cases, per kind), leaks, errors and
        latency (time to first token, total per turn)."""
        turns = self.turns
        kinds = [k for k in KINDS if any(t.case.kind == k for t in turns)]
        ok = [t for t in turns if t.error is None]
        ttfts = [t.ttft_s for t in ok if t.ttft_s is not None]
        prompts = [t.prompt_tokens for t in ok if t.prompt_tokens is not None]
        return {
            "cases": len(turns),
            "correct": sum(1 for t in turns if t.grade.correct),
            "answerable": _share(self.answerable),
            "refusal": _share(self.refusal),
            "per_kind": {k: _share([t for t in turns if t.case.kind == k]) for k in kinds},
            "answerable_refused": sum(1 for t in self.answerable if t.refused),
            "leaks": sum(1 for t in turns if t.grade.leaked),
            "leaked_cases": [t.case.id for t in turns if t.grade.leaked],
            "errors": len(turns) - len(ok),
            "error_cases": [t.case.id for t in turns if t.error is not None],
            "unsupported": sum(t.unsupported for t in turns),
            "ttft_median_s": _median(ttfts),
            "ttft_p90_s": _quantile(ttfts, 0.9),
            "total_median_s": _median(t.total_s for t in ok),
            "tokens": sum(t.tokens for t in turns),
            "prompt_tokens_median": _median(prompts) if prompts else None,
        }

    def as_dict(self) -> dict[str, Any]:
        return {"summary": self.summary(), "turns": [t.as_dict() for t in self.turns]}


def run_answer_set(
    service: ChatService,
    principal_of: Callable[[str], Principal],
    cases: Sequence[AnswerCase],
    *,
    on_turn: Callable[[AnswerTurn], None] | None = None,
    k: int | None = None,
) -> AnswerReport:
    """Run every case (each in its own session) as its user. Every user is resolved before
    the first question, so an unknown user fails before any model work."""
    principals = {user: principal_of(user) for user in dict.fromkeys(c.user for c in cases)}
    report = AnswerReport()
    for case in cases:
        turn = run_answer_case(service, principals[case.user], case, k=k)
        report.turns.append(turn)
        if on_turn is not None:
            on_turn(turn)
    return report


def gate_failures(
    report: AnswerReport, *, min_correct: float | None = None, min_refused: float | None = 1.0
) -> list[str]:
    """Why a run fails its gate (empty: it passes). Chat errors and forbidden strings in any
    answer always fail; `min_correct` gates the answerable cases' rate, `min_refused` (default:
    all of them) the refusal cases'."""
    summary = report.summary()
    failures: list[str] = []
    if summary["errors"]:
        failures.append(
            f"{summary['errors']} case(s) failed with a chat error: "
            + ", ".join(summary["error_cases"])
        )
    if summary["leaks"]:
        failures.append(
            f"{summary['leaks']} answer(s) contain a forbidden string: "
            + ", ".join(summary["leaked_cases"])
        )
    for label, share, minimum in (
        ("answerable", summary["answerable"], min_correct),
        ("refusal", summary["refusal"], min_refused),
    ):
        if minimum is None or not share["total"]:
            continue
        if share["rate"] < minimum:
            failures.append(
                f"{label} cases correct {share['correct']}/{share['total']} "
                f"({share['rate']:.1%}) is below {minimum:.1%}"
            )
    return failures


__all__ = [
    "KINDS",
    "REFUSAL_KINDS",
    "AnswerCase",
    "AnswerGrade",
    "AnswerReport",
    "AnswerSetError",
    "AnswerTurn",
    "contains",
    "gate_failures",
    "grade_answer",
    "load_answer_set",
    "matches",
    "normalise",
    "parse_case",
    "run_answer_case",
    "run_answer_set",
]
