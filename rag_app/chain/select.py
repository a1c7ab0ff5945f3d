"""Choose what the chat model reads: the sentences of the retrieved passages that answer the
question, within a token budget.

On a CPU the model reads the prompt at a fixed rate (about 80 tokens/s for the bundled 1.5B
model on two cores), so every token of context is time before the first word. Five retrieved
chunks are ~1,000 tokens, most of which do not bear on the question. This module keeps the
retrieved passages (their numbers, titles and sources stay the same, so citations and the
Sources panel do not change) but gives the model only their best sentences:

1. each passage is cut into units: sentences of prose, and whole lines for table rows, list
   items and headings (a table row is one fact; cutting it would lose its column names);
2. every unit is scored against the question: cosine similarity of the embedding model's
   vectors (cached per passage text), plus a small share of word overlap (exact figures and
   names), plus a small prior for the passage's retrieval rank;
3. units are taken best first while they fit in ``budget_tokens`` (counted with the
   embedding model's tokenizer) and score within ``SCORE_MARGIN`` of the best one (a table
   row brings its table's header row, the column names, along); then the sentence right
   after a chosen one is added where the budget allows (a negative answer often spans two
   sentences: "Contractors are not eligible ... They may take 4 weeks unpaid");
4. each passage's chosen units are shown in document order, joined with " … " where text
   was left out. Passages with nothing chosen are left out of the prompt (but stay in the
   Sources list with their numbers).

`select_excerpts` never returns an empty context when there are passages: the best unit is
always kept, even over budget.
"""

from __future__ import annotations

import itertools
import math
import re
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

from rag_app.chain.events import SourceRecord
from rag_app.chain.grounding import date_keys
from rag_app.ingest.tables import PLAIN_TABLE_RULE

TokenCounter = Callable[[str], int]
EmbedTexts = Callable[[list[str]], list[list[float]]]

GAP = " … "
# Scoring weights: similarity dominates; word overlap breaks ties towards exact terms; the
# retrieval rank is a weak prior (the retriever already saw more than one sentence).
OVERLAP_WEIGHT = 0.25
RANK_WEIGHT = 0.03
IDENT_WEIGHT = 0.2  # per identifier with digits shared with the question (at most two)
MIN_UNIT_CHARS = 12  # shorter units (a lone "Notes:") are merged into the next one
# Units scoring this far below the best one are not worth the model's reading time, even when
# the budget has room (the budget is a ceiling, not a target).
SCORE_MARGIN = 0.25
# A unit dated otherwise when another unit has the date asked about falls this far.
OTHER_DATE_PENALTY = IDENT_WEIGHT + SCORE_MARGIN
EXPAND_TOP = 3  # the best chosen units that bring the sentence after them
INTRO_ITEMS = 2  # the best list items a chosen introducing line brings along

_LINE_UNIT = re.compile(r"^\s*(\||[-*+]\s|\d{1,3}[.)]\s|#{1,6}\s)")
_LIST_ITEM = re.compile(r"^(?:#{1,6}[^\n]*\n)*\s*(?:[-*+]\s|\d{1,3}[.)]\s)")
_POSSESSIVE = re.compile(r"['’]s$")
_DELIMITER_ROW = re.compile(r"\|?[\s:|-]+\|?")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[\"“(\[]?[A-Z0-9])")
_WORD = re.compile(r"[\w][\w'.,%-]*[\w%]|\w", re.UNICODE)
_STOP = frozenset(
    re.split(
        r"\s+",
        "a am an and are as at be been by can could did do does for from get gets got had has "
        "have how i in is it its many me much my of on or our per should that the their there "
        "this to use was we were what when where which who why will with would you your",
    )
)


@dataclass(frozen=True)
class Piece:
    """A unit of a passage: a sentence, or a whole line (table row, list item). A heading is
    joined to the unit after it; a table row `needs` its table's header row (the column
    names), which is shown with it."""

    text: str
    line: bool = False
    needs: int | None = None


def split_units(text: str) -> list[str]:
    """Sentences of prose; table rows and list items as whole lines (headings joined to the
    unit that follows them)."""
    return [p.text for p in split_pieces(text)]


def split_pieces(text: str) -> list[Piece]:
    pieces: list[Piece] = []
    heading: str | None = None
    intro: int | None = None  # the unit that introduces the list items after it

    def add(piece: Piece) -> None:
        nonlocal heading, intro
        item = piece.line and piece.needs is None and _LIST_ITEM.match(piece.text) is not None
        if heading is not None and item:
            # a heading over a list scopes every item ("## Not reimbursed", "- Fines ...",
            # "- Alcohol"): it becomes a unit of its own that each item brings along
            pieces.append(Piece(heading, True))
            intro = len(pieces) - 1
            heading = None
        if heading is not None:
            # "## Not reimbursed" + "Fines and penalties, ..." reads as "Not reimbursed: Fines
            # and penalties, ..." (a small model misses what a Markdown heading scopes)
            if piece.line:
                piece = Piece(f"{heading}\n{piece.text}", True, piece.needs)
            else:
                piece = Piece(f"{heading.lstrip('#').strip()}: {piece.text}", False)
            heading = None
            intro = None
        elif item and intro is not None:
            # "- forklift impacts" is only a "no" after "The warranty does not cover:"
            piece = Piece(piece.text, True, intro)
        if pieces and not pieces[-1].line and len(pieces[-1].text) < MIN_UNIT_CHARS:
            last = pieces.pop()
            piece = Piece(f"{last.text} {piece.text}", piece.line, piece.needs)
        pieces.append(piece)
        if not piece.line:
            intro = len(pieces) - 1 if piece.text.rstrip().endswith(":") else None
        elif not item:
            intro = None

    for block in re.split(r"\n\s*\n", text):
        prose: list[str] = []
        header: int | None = None  # the current table's header row
        lines = block.splitlines()
        in_item = False  # the last line was (part of) a list item
        # a plain-text table (a header line over a rule of dash runs): one unit per line
        ruled = next(
            (k for k, line in enumerate(lines) if k and PLAIN_TABLE_RULE.match(line)), None
        )
        for k, line in enumerate(lines):
            stripped = line.strip()
            if not stripped:
                continue
            if ruled is not None and k >= ruled - 1:
                if prose:
                    for sentence in _sentences(" ".join(prose)):
                        add(Piece(sentence))
                    prose = []
                if k == ruled:
                    continue  # the rule carries nothing
                if k == ruled - 1:
                    add(Piece(stripped, True))
                    header = len(pieces) - 1
                else:
                    add(Piece(stripped, True, header))
                continue
            if not _LINE_UNIT.match(line):
                if in_item and not prose and line[:1].isspace():
                    # an indented continuation line of a list item belongs to the item
                    last = pieces[-1]
                    pieces[-1] = Piece(f"{last.text} {stripped}", True, last.needs)
                    continue
                prose.append(stripped)
                header = None
                in_item = False
                continue
            in_item = _LIST_ITEM.match(stripped) is not None
            if prose:
                for sentence in _sentences(" ".join(prose)):
                    add(Piece(sentence))
                prose = []
            if stripped.startswith("#"):
                heading = stripped if heading is None else f"{heading}\n{stripped}"
                header = None
            elif stripped.startswith("|"):
                if _DELIMITER_ROW.fullmatch(stripped):
                    continue  # a table's delimiter row carries nothing
                if header is None:
                    add(Piece(stripped, True))
                    header = len(pieces) - 1
                else:
                    add(Piece(stripped, True, header))
            else:
                header = None
                add(Piece(stripped, True))
        if prose:
            for sentence in _sentences(" ".join(prose)):
                add(Piece(sentence))
    if heading is not None:
        add(Piece(heading, True))
    return pieces


def _sentences(text: str) -> list[str]:
    return [s.strip() for s in _SENTENCE_END.split(text) if s.strip()]


def words(text: str) -> set[str]:
    """The content words of `text`, lower case, without a possessive 's ("Halcyon's" is
    "halcyon")."""
    return {_POSSESSIVE.sub("", w.lower()) for w in _WORD.findall(text)} - _STOP


def _cosine(a: Sequence[float], b: Sequence[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b, strict=False))
    na = math.sqrt(sum(x * x for x in a))
    nb = math.sqrt(sum(y * y for y in b))
    return dot / (na * nb) if na and nb else 0.0


class UnitCache:
    """Units and their vectors per passage text (passages recur across turns and users; the
    cache holds only text the store returned to someone allowed to read it, and is keyed by
    the full text, so a changed passage is a new entry)."""

    def __init__(self, max_passages: int = 2048) -> None:
        self.max_passages = max_passages
        self._items: OrderedDict[str, tuple[list[Piece], list[list[float]]]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, text: str, embed: EmbedTexts) -> tuple[list[Piece], list[list[float]]]:
        with self._lock:
            hit = self._items.get(text)
            if hit is not None:
                self._items.move_to_end(text)
                return hit
        units = split_pieces(text)
        vectors = embed([u.text for u in units]) if units else []
        with self._lock:
            self._items[text] = (units, vectors)
            while len(self._items) > self.max_passages:
                self._items.popitem(last=False)
        return units, vectors


@dataclass(frozen=True)
class _Unit:
    passage: int  # index into the sources
    position: int  # index within the passage
    piece: Piece
    tokens: int
    score: float


def select_excerpts(
    question: str,
    question_vector: Sequence[float],
    sources: Sequence[SourceRecord],
    *,
    embed: EmbedTexts,
    count_tokens: TokenCounter,
    budget_tokens: int,
    cache: UnitCache | None = None,
) -> list[SourceRecord]:
    """The sources with `excerpt` set to what the model should read (see the module doc);
    sources with nothing selected get an empty excerpt."""
    if not sources:
        return []
    cache = cache or UnitCache()
    asked = words(question)
    asked_dates = date_keys(question)
    other_date: set[tuple[int, int]] = set()  # units with dates, none of them the one asked
    date_matched = False
    units: list[_Unit] = []
    per_passage: list[list[_Unit]] = []
    for i, source in enumerate(sources):
        pieces, vectors = cache.get(source.text, embed)
        row: list[_Unit] = []
        for j, (piece, vector) in enumerate(zip(pieces, vectors, strict=True)):
            unit_words = words(piece.text)
            shared = asked & unit_words
            overlap = len(shared) / len(asked) if asked else 0.0
            # names with digits (L4, HR-200, Q3) embed poorly but pin the right table row
            idents = sum(1 for w in shared if any(c.isdigit() for c in w))
            dates = date_keys(piece.text) if asked_dates else frozenset()
            if dates & asked_dates:
                idents += 1  # "17 Nov 2025" is the row for "17 November 2025"
                date_matched = True
            elif dates:
                other_date.add((i, j))  # another week's row, unless no unit has the date
            score = (
                _cosine(question_vector, vector)
                + OVERLAP_WEIGHT * overlap
                + IDENT_WEIGHT * min(idents, 2)
                + RANK_WEIGHT * (len(sources) - i) / len(sources)
            )
            unit = _Unit(i, j, piece, count_tokens(piece.text) + 1, score)
            row.append(unit)
            units.append(unit)
        per_passage.append(row)
    if not units:
        return [replace(s, excerpt=s.text) for s in sources]
    if date_matched and other_date:
        # some unit has the date asked about: units with only other dates are other rows,
        # left out (below the margin): shown the 06 Oct row above the 13 Oct one, the 1.5B
        # model read the secondary of the first row
        units = [
            replace(u, score=u.score - OTHER_DATE_PENALTY)
            if (u.passage, u.position) in other_date
            else u
            for u in units
        ]
        per_passage = [[u for u in units if u.passage == i] for i in range(len(sources))]

    chosen: set[tuple[int, int]] = set()
    used = 0

    def cost(unit: _Unit) -> int:
        """Tokens to add `unit` (and the header row it needs, if not chosen yet)."""
        extra = 0
        if unit.piece.needs is not None and (unit.passage, unit.piece.needs) not in chosen:
            extra = per_passage[unit.passage][unit.piece.needs].tokens
        return unit.tokens + extra

    def take(unit: _Unit) -> None:
        nonlocal used
        used += cost(unit)
        chosen.add((unit.passage, unit.position))
        if unit.piece.needs is not None:
            chosen.add((unit.passage, unit.piece.needs))

    ranked = sorted(units, key=lambda u: -u.score)
    floor = ranked[0].score - SCORE_MARGIN

    other_rows = other_date if date_matched else set()

    def items_of(unit: _Unit) -> list[_Unit]:
        """The list items `unit` introduces, best first (not rows of other dates)."""
        return [
            u
            for u in ranked
            if u.passage == unit.passage
            and u.piece.needs == unit.position
            and (u.passage, u.position) not in other_rows
        ]

    for unit in ranked:
        if (unit.passage, unit.position) in chosen:
            continue
        if chosen and (unit.score < floor or used + cost(unit) > budget_tokens):
            continue
        take(unit)
        # an introducing line is worth nothing without an item: its best one comes now,
        # before lesser units fill the budget ("Each type has a code:" - "- H10 Hotel")
        items = items_of(unit)
        if (
            items
            and not any((u.passage, u.position) in chosen for u in items)
            and used + cost(items[0]) <= budget_tokens
        ):
            take(items[0])
    # the unit after each of the best chosen ones (a sentence that continues it: "They may
    # take 4 weeks unpaid" scores low on its own), budget allowing; a chosen line that
    # introduces items ("Each type has a code:") brings its best items instead (the
    # code is in "- H10 Hotel (room only)", which shares few words with the question)
    best = [u for u in ranked if (u.passage, u.position) in chosen][:EXPAND_TOP]
    for unit in best:
        row = per_passage[unit.passage]
        items = items_of(unit)
        if items:
            for item in items[:INTRO_ITEMS]:
                if (item.passage, item.position) not in chosen and used + cost(
                    item
                ) <= budget_tokens:
                    take(item)
            continue
        nxt = unit.position + 1
        if (
            nxt < len(row)
            and (unit.passage, nxt) not in other_date
            and (unit.passage, nxt) not in chosen
            and used + cost(row[nxt]) <= budget_tokens
        ):
            take(row[nxt])

    out: list[SourceRecord] = []
    for i, source in enumerate(sources):
        runs: list[list[Piece]] = []
        last = -2
        for unit in per_passage[i]:
            if (i, unit.position) not in chosen:
                continue
            if unit.position != last + 1:
                runs.append([])
            runs[-1].append(unit.piece)
            last = unit.position
        parts = [_join_run(run) for run in runs]
        if parts and (i, 0) not in chosen:
            parts.insert(0, "")
        if parts and (i, len(per_passage[i]) - 1) not in chosen:
            parts.append("")
        out.append(replace(source, excerpt=GAP.join(parts).strip()))
    return out


def _join_run(pieces: list[Piece]) -> str:
    """Adjacent units: lines (rows, items) on their own lines, prose with spaces."""
    text = pieces[0].text
    for before, piece in itertools.pairwise(pieces):
        text += ("\n" if piece.line or before.line else " ") + piece.text
    return text


# "Summarise the customer feedback page", "give me an overview of the remote work policy":
# the answer is the document, not the sentences most like the request.
_SUMMARY = re.compile(
    r"\b(?:summari[sz]e|summari[sz]ing|summary|overview|outline|tl;?dr|gist|key points|"
    r"main points|highlights of)\b",
    re.IGNORECASE,
)


def summary_request(question: str) -> bool:
    """Whether the question asks for a summary of a document rather than a fact in it."""
    return _SUMMARY.search(question) is not None


def whole_document(
    sources: Sequence[SourceRecord], *, count_tokens: TokenCounter, budget_tokens: int
) -> list[SourceRecord]:
    """For a summary: the best-ranked document's passages whole, first and in document
    order, while they fit in `budget_tokens` (the first always); every other passage after
    them with an empty excerpt (the model reads none of it; `renumber` drops them)."""
    if not sources:
        return []
    key = sources[0].document_key
    own = sorted(
        (s for s in sources if s.document_key == key),
        key=lambda s: (s.metadata or {}).get("chunk_index", 0),
    )
    shown: set[int] = set()
    used = 0
    for source in own:
        tokens = count_tokens(source.text) + 1
        if shown and used + tokens > budget_tokens:
            break
        shown.add(source.n)
        used += tokens
    first = [replace(s, excerpt=s.text) for s in own if s.n in shown]
    return first + [replace(s, excerpt="") for s in sources if s.n not in shown]
