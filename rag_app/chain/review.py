"""Reading an answer back against what the model read, before the turn ends.

Checks, each giving one instruction for answering the turn again (or "" when the answer
passes):

* **values** - every number, date and amount must be in a source the sentence cites
  (`rag_app.chain.grounding`);
* **polarity** - a yes/no question answered "yes" while the passage that matches the
  question best says "no" ("Do contractors receive the home office allowance?" - "Yes"
  over "Home office allowance, contractors: no"). A 1.5B model answers yes to most yes/no
  questions whatever the text says; the worked example in the prompt does not cure it.

The polarity check is deliberately narrow: it fires only when the question opens like a
yes/no question, the answer affirms (opens with "yes", or holds no negation at all), and the
best-matching unit of what the model read shares at least `MIN_OVERLAP` of the question's
content words *and* holds a negation ("not", "no", "n't", "never", "excluded", ...). A
unit's negation may come from the line that introduces it ("The warranty does not cover:"
above "- forklift impacts"). The instruction quotes that unit and asks again; it does not
say what the answer must be, so a right "yes" can stand.

* **wording** - most of the answer's own words (at least two; not the question's, not
  figures) are in none of the passages it cites, or the answer only restates the question;
  the instruction allows the no-answer phrase (a made-up "business attire" dress code, "the
  band for level L4 is L4" to a user who may not read the bands);
* **refusal** - the model said the no-answer phrase although one unit of what it read holds
  `MIN_REFUSAL_OVERLAP` of the question's content words (its title's words count, so "my
  merit increase (I am Alice Moreau.)" matches the review with her name on it). On the demo
  questions no question whose answer the user may not read came above 0.50; the answerable
  ones it rescued were at 0.80-0.86. The instruction has no way out to the phrase (the
  model took it every time it had one).

* **one case of several** - the answer gives the value of one row of a passage that gives a
  value per case (a city, a level, a tier) and the question names none of the cases ("What
  is the maximum hotel cost per night?" answered with London's cap only); the instruction
  quotes the rows and asks for each case with its value.

The quoted unit is document text placed inside our own message, so it is neutralised (it
cannot open or close a ``<document>`` delimiter, its double quotes become single ones) and
cut to `MAX_QUOTE_CHARS`; it is text the user may read anyway (it was in the prompt).

    instruction = review(answer, sources, question)
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from rag_app.chain.asker import without_asker
from rag_app.chain.context import citations, neutralise
from rag_app.chain.events import SourceRecord, UnsupportedClaim
from rag_app.chain.grounding import check_grounding, correction_instruction
from rag_app.chain.select import split_pieces, words

MIN_OVERLAP = 0.6
MIN_REFUSAL_OVERLAP = 0.75
MAX_QUOTE_CHARS = 300

_YES_NO_QUESTION = re.compile(
    r"^\W*(?:and\s+)?(?:do|does|did|is|are|was|were|can|could|will|would|should|may|must|"
    r"has|have|had|am)\b",
    re.IGNORECASE,
)
_NEGATION = re.compile(
    r"\b(?:not|no|never|none|neither|nor|cannot|excluded|exclude[sd]?|ineligible|"
    r"prohibited|forbidden|without)\b|n't\b",
    re.IGNORECASE,
)
_YES = re.compile(r"^\W*yes\b", re.IGNORECASE)
_CITE = re.compile(r"\s*\[[^\]]{1,20}\]")


@dataclass(frozen=True)
class Review:
    """What the checks found: the value claims not in their cited sources, the unit that
    contradicts a "yes" (and its passage number), and the instruction for a re-answer."""

    unsupported: list[UnsupportedClaim]
    contradiction: tuple[int, str] | None
    instruction: str


def _evidence(sources: Sequence[SourceRecord]) -> list[tuple[int, str, set[str]]]:
    """(passage number, unit text with the line that introduces it, the unit's words with
    its document title's) for every unit of what the model read."""
    out: list[tuple[int, str, set[str]]] = []
    for source in sources:
        text = source.text if source.excerpt is None else source.excerpt
        pieces = split_pieces(text.replace(" … ", "\n\n"))
        title = words(source.title)
        for piece in pieces:
            unit = piece.text
            if piece.needs is not None and 0 <= piece.needs < len(pieces):
                unit = f"{pieces[piece.needs].text}\n{unit}"
            out.append((source.n, unit, words(unit) | title))
    return out


def best_unit(sources: Sequence[SourceRecord], question: str) -> tuple[float, int, str] | None:
    """(share of the question's content words it holds, passage number, unit) for the unit
    of what the model read that shares most words with the question (its document's title
    counts: "my review" is the review with my name on it)."""
    asked = words(question)
    # the asker's name counts where it helps ("my review" is the one with my name on it)
    # and not against a unit that does not name them ("Which code do I use for a hotel?")
    plain = words(without_asker(question))
    if not asked:
        return None
    best: tuple[float, int, str] | None = None
    for n, unit, unit_words in _evidence(sources):
        overlap = len(asked & unit_words) / len(asked)
        if plain:
            overlap = max(overlap, len(plain & unit_words) / len(plain))
        if best is None or overlap > best[0]:
            best = (overlap, n, unit)
    return best


def contradicted_yes(
    answer: str, sources: Sequence[SourceRecord], question: str
) -> tuple[int, str] | None:
    """(passage number, unit) when a "yes" answer to a yes/no question meets a negative
    unit that matches the question best (see the module doc); else None."""
    if not _YES_NO_QUESTION.match(question or ""):
        return None
    said = _CITE.sub("", answer or "")
    if not (_YES.match(said) or not _NEGATION.search(said)):
        return None
    best = best_unit(sources, question)
    if best is None or best[0] < MIN_OVERLAP or not _NEGATION.search(best[2]):
        return None
    return best[1], best[2]


def answering_unit(sources: Sequence[SourceRecord], question: str) -> tuple[int, str] | None:
    """(passage number, unit) when a unit of what the model read holds `MIN_REFUSAL_OVERLAP`
    of the question's content words (with its title's): a refusal over it deserves a second
    look."""
    best = best_unit(sources, question)
    if best is None or best[0] < MIN_REFUSAL_OVERLAP:
        return None
    return best[1], best[2]


def _quote(unit: str) -> str:
    """A unit of a document for an instruction: one line, at most `MAX_QUOTE_CHARS`, unable
    to open or close a <document> delimiter, its double quotes made single (the quote is
    document text inside our message: it must not read as our words after a closing quote)."""
    quote = " ".join(neutralise(unit).replace("**", "").replace('"', "'").split())
    if len(quote) > MAX_QUOTE_CHARS:
        quote = quote[: MAX_QUOTE_CHARS - 1] + "…"
    return quote


def polarity_instruction(n: int, unit: str) -> str:
    found = _NEGATION.search(unit)
    word = f' Note the word "{found.group()}" in it.' if found else ""
    return (
        f'Read document [{n}] again. It says: "{_quote(unit)}".{word} Does that answer the '
        "question with yes or with no? Answer the question again, starting with Yes or No, "
        "using only what the documents say, and cite the document."
    )


def refusal_instruction(n: int, unit: str, question: str = "") -> str:
    # No way out to the phrase here: offered one, the 1.5B model took it every time, also
    # over "Contractors are not eligible for paid parental leave" (a "no" it read as "I do
    # not know"). The unit holds most of the question's words, which is what earns this.
    # Only a yes/no question is told that a "not" means No: told so, "How many weeks do
    # employees get?" over "(the 20 weeks offered to employees)" was answered "No, ...".
    how = (
        "If it says no or not, answer No and say what it says."
        if _YES_NO_QUESTION.match(question or "")
        else "Give the figure, name or fact it states for what the question asks."
    )
    return (
        f'Document [{n}] is about your question. It says: "{_quote(unit)}". Answer the question '
        f"from it in one or two sentences and cite [{n}]. {how}"
    )


# words an answer adds around the facts, which no source needs to hold
_FRAME = frozenset(
    [
        "yes",
        "no",
        "not",
        "also",
        "only",
        "document",
        "documents",
        "source",
        "sources",
        "stated",
        "states",
        "according",
        "found",
        "information",
        "answer",
        "question",
        "provided",
        "mentioned",
        "says",
        "said",
        "given",
        "listed",
    ]
)


def _novel(answer: str, question: str) -> set[str]:
    return words(_CITE.sub(" ", answer)) - words(question) - _FRAME


def unsupported_wording(
    answer: str, sources: Sequence[SourceRecord], question: str
) -> list[str] | None:
    """The answer's own words (not the question's, no figures: those are the value check's)
    that the documents it cites do not hold, when they are most of at least two; else None.
    A 1.5B model asked about a dress code no document mentions answered "business attire"."""
    novel = {w for w in _novel(answer, question) if not any(c.isdigit() for c in w)}
    if len(novel) < 2:
        return None
    cited = set(citations(answer, max((s.n for s in sources), default=0)))
    pool: set[str] = set()
    for source in sources:
        if not cited or source.n in cited:
            pool |= words(source.text) | words(source.title)
    missing = sorted(novel - pool)
    return missing if len(missing) * 2 > len(novel) else None


def vacuous(answer: str, question: str) -> bool:
    """The answer only restates the question ("The salary band for level L4 is L4 [1].")."""
    said = _CITE.sub(" ", answer)
    if _YES.match(said) or _NEGATION.search(said):  # a yes or a no says something
        return False
    return bool(words(said)) and not _novel(answer, question)


_ROW_LINE = re.compile(r"^\s*(?:[-*+]\s+)?([^:|\n]{1,60}):\s+(.*\d.*)$")
_FIGURE = re.compile(r"\d(?:[\d,.]*\d)?")
MIN_CASES = 2


def _rows(text: str) -> list[tuple[str, str, str]]:
    """(case, its values, the line) for each line of `text` that gives a value for one case:
    a row sentence ("- London: maximum per night 180 GBP") or a Markdown table row (its
    first cell is the case)."""
    rows: list[tuple[str, str, str]] = []
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("|"):
            cells = [c.strip().strip("*").strip() for c in stripped.strip("|").split("|")]
            rest = " ".join(cells[1:])
            if len(cells) >= 2 and cells[0] and _FIGURE.search(rest):
                rows.append((cells[0], rest, " ".join(stripped.replace("*", "").split())))
            continue
        match = _ROW_LINE.match(line)
        if match:
            rows.append((match.group(1), match.group(2), stripped.lstrip("-*+ ").strip()))
    return rows


def one_case_of_several(
    answer: str, sources: Sequence[SourceRecord], question: str
) -> tuple[int, list[str]] | None:
    """(passage number, its rows) when the answer gives the value of one case of a passage
    that lists a value per case (a row per city, level, tier) and the question names none of
    the cases: "What is the maximum hotel cost per night?" answered with London's cap only.
    The answer prompt asks for each case; a 1.5B model often gives the first."""
    asked = words(question)
    said = set(_FIGURE.findall(_CITE.sub(" ", answer or "")))
    if not said:
        return None
    cited = set(citations(answer, max((s.n for s in sources), default=0)))
    for source in sources:
        if source.n not in cited:
            continue  # a figure of another passage is a coincidence ("2 hours" and "P2")
        text = source.text if source.excerpt is None else source.excerpt
        rows = _rows(text)
        if len(rows) < MIN_CASES:
            continue
        if any(words(case) & asked for case, _, _ in rows):
            continue  # the question names a case: a look-up, not "which of these"
        hit = [row for row in rows if set(_FIGURE.findall(row[1])) & said]
        if len(hit) == 1 and len({row[1] for row in rows}) >= MIN_CASES:
            return source.n, [line for _, _, line in rows]
    return None


def cases_instruction(n: int, rows: Sequence[str]) -> str:
    return (
        f'Document [{n}] gives a different value for each case: "{_quote("; ".join(rows))}". '
        "The question does not name one case, so answer again giving each case with its "
        f"value, and cite [{n}]."
    )


def unanswered_instruction(missing: Sequence[str], no_answer: str) -> str:
    what = f" (the documents you cite do not mention {', '.join(missing[:4])})" if missing else ""
    return (
        f"Your answer does not say what the documents say{what}. Answer again using only what "
        f"the documents say; if they do not answer the question, reply exactly: {no_answer}"
    )


def review(
    answer: str,
    sources: Sequence[SourceRecord],
    question: str,
    *,
    refused: bool = False,
    no_answer: str = "",
) -> Review:
    """The checks over `answer` (see the module doc); a refusal is only checked for a unit
    that answers the question (when `no_answer` is given)."""
    if refused:
        found = answering_unit(sources, question) if no_answer else None
        instruction = refusal_instruction(*found, question) if found else ""
        return Review([], None, instruction)
    unsupported = check_grounding(answer, sources, question=question)
    contradiction = contradicted_yes(answer, sources, question)
    parts = []
    if contradiction is not None:
        parts.append(polarity_instruction(*contradiction))
    if unsupported:
        parts.append(correction_instruction(unsupported))
    if not parts and no_answer:
        missing = unsupported_wording(answer, sources, question)
        if missing is not None or vacuous(answer, question):
            parts.append(unanswered_instruction(missing or [], no_answer))
    if not parts:
        several = one_case_of_several(answer, sources, question)
        if several is not None:
            parts.append(cases_instruction(*several))
    return Review(unsupported, contradiction, " ".join(p for p in parts if p))


__all__ = [
    "Review",
    "answering_unit",
    "contradicted_yes",
    "one_case_of_several",
    "polarity_instruction",
    "review",
]
