"""Grounding check for answers: every number, date and amount must be in a source it cites.

A small local model often writes a plausible figure that is not in the document it cites: a
value from another retrieved document, a value from another row or column of a table, or one
it made up. `check_grounding` reads the answer back after generation and returns one
`UnsupportedClaim` per sentence whose values its cited sources do not contain; the chat
service can answer again with `correction_instruction(claims)` or let the UI mark the claims.

    claims = check_grounding(answer, sources, question=question)
    if claims:
        retry_with = correction_instruction(claims)

How a value is checked
----------------------
* The answer is split into sentences. Citation markers (``[1]``, ``[1, 2]``, ``[doc 2]``,
  ``[1][3]``) belong to the sentence they follow, also when they come right after its final
  period; abbreviations ("e.g.", "approx.") and decimals ("38.4") do not end a sentence; a
  line break does, and list markers ("- ", "1. ") at the start of a line are dropped.
* Values: numbers with thousands separators ("98,000", "98 000", "98'000", "1.234.567",
  "1.234,5"), decimals ("38.4", "38,4"), percentages, currency amounts ("EUR 160", "€160",
  "160 EUR", "$1,200", "10k", "38.4 M", "38.4 million", "2 bn"), quantities with units
  ("20 weeks", "2 h 38 min", "600 kg"; only the number is compared), ordinals ("5th"), dates
  ("14 August 2025", "August 14, 2025", "2025-08-14", "14/08/2025", "March 2027", "2027-03",
  "03/2027", "14 August"), times ("07:00", "7:00", "7 pm", "9h30") and international phone
  numbers ("+31 10 555 1223").
* Not values: the citation markers, digits inside identifiers ("L4", "HR-200",
  "INC-2025-0814", "v3.12.0", "FY2025", "Q3", "5G", "BE-ANR-002"), small numbers used as a
  label ("level 4", "step 2", "version 188", "(1)"), list numbering at the start of a line,
  e-mail addresses and URLs, numbers written as words in the answer, and every value that is
  also in the user's `question` (the user supplied it).
* A value is supported when its normalised form is in the text (or title) of a source the
  sentence cites. Numbers are compared as whole numbers after normalising separators and
  trailing zeros ("160" never matches "1600" or "2160"; "5.5" never matches "15.5";
  "5.50" matches "5.5"); with a multiplier both the written and the scaled number count
  ("38.4 million" matches "38.4 M EUR" and "38,400,000"; "10k" matches "10,000"). Small
  numbers written as words in a source ("two days", "Forty-one") count as that number.
  Dates compare as (year, month, day) whatever their format ("March 2027" matches
  "2027-03-31"; "1 January 2025" matches a source that says "1 January" and "2025"); times as
  (hour, minute) ("7:00" matches "07:00").
* A sentence without a (valid) citation is checked against everything the answer cites
  elsewhere, or against all sources when the answer cites nothing; its claim has
  ``cited=[]``. A citation whose number is not a source cites nothing.
* Range claims ("98,000 to 111,000 EUR", "98,000–111,000", "between A and B"): when both ends
  are supported but the cited source has them only in a table row that continues the same
  ascending run beyond them (min | mid | max read as "min to mid"), and nowhere as a range
  of their own, the range as written is reported as unsupported.

Known limitations
-----------------
* It checks that values are *present*, not that they are *right*: a value read from the
  wrong row or column of a table that also holds it is accepted ("98,000 to 111,000 EUR" for a
  band whose row reads 98,000 | 111,000 | 124,000 is only caught by the range rule above; "the
  L4 maximum is 111,000" is not caught at all). The same goes for a value attached to the
  wrong subject in prose.
* Units, currencies, multipliers and signs are not compared: "20 days" is accepted when the
  source says "20 weeks", "38.4 billion" when it says "38.4 M", "1.9 M" when it says
  "−1.9 M". Percentages compare as their number.
* Values the model computed (sums, differences, conversions: "40 weeks in total", "1 hour"
  for "60 minutes") are reported as unsupported even when right.
* Numbers spelt out in the answer ("two weeks") are not checked; numbers spelt out in a
  source are recognised from zero to ninety-nine only.
* Citations are attributed per sentence: in "20 weeks [1] and 6 weeks [2]." both values are
  checked against [1] and [2] together.
* Ambiguous forms are read leniently: "1.500" may be 1.5 or 1500, "03/04/2025" may be
  3 April or 4 March, "7:00" may be 7:00 or 19:00.
* Month names are recognised in English, capitalised, next to a day or year.

Cost: about 2-3 ms of CPU for a three-sentence answer over five new sources of 1,000
characters (indexing the sources is most of it, about 0.5 ms each) and about 0.2 ms when the
sources were seen before: they are indexed once per distinct text (LRU cache), so the check of
a re-answer over the same sources is cheap. Never raises: an unexpected error is logged and
treated as "nothing unsupported".
"""

from __future__ import annotations

import logging
import re
from bisect import bisect_right
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from itertools import pairwise
from typing import Any

from rag_app.chain.events import SourceRecord, UnsupportedClaim

log = logging.getLogger(__name__)

__all__ = ["check_grounding", "correction_instruction"]

MAX_ANSWER_CHARS = 20_000  # longer answers are checked on their first 20,000 characters
MAX_SOURCE_CHARS = 200_000

# --------------------------------------------------------------------------------------------
# patterns

_CITE_ONE = r"(?:(?:doc(?:ument)?|source)s?\s*)?\d{1,3}"
_CITE = (
    r"\[\s*" + _CITE_ONE + r"(?:\s*(?:[,;&]|and)\s*" + _CITE_ONE + r")*\s*\]"
)  # a superset of rag_app.chain.context's grammar
_CITATION = re.compile(_CITE, re.IGNORECASE)
_CITE_NUMBER = re.compile(r"\d{1,3}")

# End of a sentence: terminators, closing quotes, then citation markers that follow it.
_END = re.compile(r"[.!?…]+[\"'”’)*_]*(?P<cites>(?:[ \t]*" + _CITE + r")*)(?=\s|$)", re.IGNORECASE)
_WORD_BEFORE = re.compile(r"[\w.]+$")
_INITIALISM = re.compile(r"(?:[a-z]\.)+[a-z]")
# fmt: off
_ABBREVIATIONS = frozenset((
    "e.g", "eg", "i.e", "ie", "vs", "approx", "ca", "cf", "incl", "excl", "resp", "mr", "mrs",
    "ms", "dr", "prof", "st", "no", "nr", "fig", "p", "pp", "avg", "est", "jan", "feb", "mar",
    "apr", "jun", "jul", "aug", "sep", "sept", "oct", "nov", "dec",
))
# fmt: on
_LIST_MARKER = re.compile(r"[ \t]*(?:[-*•·–]|\d{1,2}[.)]|\(\d{1,2}\)|[a-z][.)])[ \t]+")
_ALNUM = re.compile(r"[^\W_]")

_URL = re.compile(r"https?://\S+|www\.\S+|[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
_PHONE = re.compile(r"\+(?<![\w+]\+)\d{1,3}(?:[ ().-]{0,2}\d){6,14}")
_CURRENCY_CODES = "EUR|USD|GBP|CHF|JPY|SEK|NOK|DKK|PLN|CAD|AUD|US"
# letters, then (after an optional joiner) digits: L4, HR-200, INC-2025-0814, v3.12.0, FY2025
_IDENTIFIER = re.compile(
    r"\b(?<!@)(?!(?:" + _CURRENCY_CODES + r")\$?\s?\d)"
    r"[A-Za-z]++(?:[-_/#.][A-Za-z]++)*+[-_/#.]?\d\w*(?:[-_/.]\w+)*"
)
_YEAR_IN_IDENTIFIER = re.compile(r"(?<!\d)(?:19|20|21)\d\d(?!\d)")

_MONTHS = {
    "jan": 1,
    "feb": 2,
    "mar": 3,
    "apr": 4,
    "may": 5,
    "jun": 6,
    "jul": 7,
    "aug": 8,
    "sep": 9,
    "oct": 10,
    "nov": 11,
    "dec": 12,
}
_MONTH = (
    r"(?:Jan(?:uary)?|Feb(?:ruary)?|Mar(?:ch)?|Apr(?:il)?|May|June?|July?|Aug(?:ust)?"
    r"|Sep(?:t(?:ember)?)?|Oct(?:ober)?|Nov(?:ember)?|Dec(?:ember)?)\.?(?![A-Za-z])"
)
_ORD = r"(?:st|nd|rd|th)?"
_MONTH_HINT = re.compile(r"(?:Jan|Feb|Ma[ry]|Apr|Ju[nl]|Aug|Sep|Oct|Nov|Dec)")
_DATE_ISO = re.compile(r"(?=\d)(?<![\w.-])(\d{4})([-/.])(\d{1,2})\2(\d{1,2})(?![\w-]|\.\d)")
_DATE_NUMERIC = re.compile(
    r"(?=\d)(?<![\w./-])(\d{1,2})([./-])(\d{1,2})\2(\d{4}|\d{2})(?![\w/-]|\.\d)"
)
_DATE_DMY = re.compile(
    r"(?=\d)(?<![\w.,])(\d{1,2})" + _ORD + r"(?:\s+of)?\s+(" + _MONTH + r")(?:,?\s+(\d{4}))?(?!\d)"
)
_DATE_MDY = re.compile(
    r"(?<![A-Za-z])(" + _MONTH + r")\s+(\d{1,2})" + _ORD + r"(?![\d:.])(?:,?\s+(\d{4}))?(?!\d)"
)
_DATE_MY = re.compile(r"(?<![A-Za-z])(" + _MONTH + r"),?\s+(\d{4})(?!\d)")
_DATE_ISO_MONTH = re.compile(r"(?=\d)(?<![\w.-])(\d{4})-(\d{2})(?![\w-]|\.\d)")
_DATE_NUMERIC_MONTH = re.compile(r"(?=\d)(?<![\w./-])(\d{1,2})/(\d{4})(?![\w/])")

_TIME = re.compile(
    r"(?=\d)(?<![\d:.,])([01]?\d|2[0-4])(?::|h(?=\d\d))([0-5]\d)(?::[0-5]\d)?(?![\d:])"
    r"(?:\s?([AaPp])\.?[Mm](?![A-Za-z])\.?)?"
)
_TIME_AMPM = re.compile(r"(?=\d)(?<![\d:.,])(1[0-2]|0?[1-9])\s?([AaPp])\.?[Mm](?![A-Za-z])\.?")

_SPACE_GROUPED = re.compile(r"(?=\d)(?<![\w.,:'’/-])\d{1,3}(?: \d{3})+(?![\w]|[.,:'’]\d)")
_NUMBER = re.compile(r"(?=\d)(?<![\w.,'’])\d+(?:[.,'’\u00a0\u202f\u2009]\d+)*")
_THIN_SEPARATORS = frozenset("'’\u00a0\u202f\u2009 ")
_GLUED = re.compile(r"[A-Za-zµ°][\wµ°]*")
# fmt: off
_GLUED_UNITS = frozenset((  # case matters: "5G" and "3D" are names, "5g" is grams
    "k", "K", "m", "M", "b", "bn", "Bn", "mn", "mio", "Mio", "mrd", "h", "hr", "hrs", "min",
    "mins", "s", "sec", "secs", "ms", "d", "w", "wk", "wks", "mo", "y", "yr", "yrs", "kg", "g",
    "mg", "t", "km", "cm", "mm", "nm", "GB", "MB", "TB", "KB", "kB", "Gb", "Mb", "Gbps", "Mbps",
    "Hz", "kHz", "MHz", "GHz", "W", "kW", "kWh", "MWh", "V", "mA", "mAh", "l", "L", "ml", "mL",
    "st", "nd", "rd", "th", "am", "pm", "AM", "PM", "x", "pts", "pt", "px", "EUR", "USD", "GBP",
    "CHF", "SEK", "NOK", "DKK", "PLN", "JPY", "eur", "usd", "°", "°C", "°F", "µm", "µs",
))
# fmt: on
_MULTIPLIERS = {
    "k": 1_000,
    "thousand": 1_000,
    "m": 1_000_000,
    "mn": 1_000_000,
    "mio": 1_000_000,
    "million": 1_000_000,
    "millions": 1_000_000,
    "b": 1_000_000_000,
    "bn": 1_000_000_000,
    "mrd": 1_000_000_000,
    "billion": 1_000_000_000,
    "billions": 1_000_000_000,
}
_SPACED_MULTIPLIER = re.compile(
    r"[ \u00a0]?(k|K|M|mn|Mn|bn|Bn|mio|Mio|thousand|millions?|billions?)(?![A-Za-z])"
)
_PREFIX = re.compile(r"(?:(?:" + _CURRENCY_CODES + r")\s?\$?|[€$£¥])\s?$")
_SUFFIX = re.compile(
    r"(?:[ \u00a0\u202f]?(?:%|‰)|\s?(?:per ?cent|percent|pts?|points?)\b"
    r"|\s?(?:" + _CURRENCY_CODES + r"|euros?|dollars?|pounds?)\b"
    r"|\s(?:weeks?|days?|months?|years?|hours?|h|hrs?|minutes?|mins?|seconds?|s|sec"
    r"|working days|business days|calendar days|kg|g|km|m|cm|mm|GB|TB|MB|robots?|employees?"
    r"|people|sites?|orders?|units?)\b)"
)
_LABEL_BEFORE = re.compile(
    r"(?:\b(?:level|tier|grade|step|version|release|phase|priority|severity|sev|room|floor"
    r"|building|section|chapter|article|clause|rule|item|page|line|option|number|no\.?|nr\.?"
    r"|figure|table|appendix|annex|document|doc|source|question|point)\s*|#\s*)$",
    re.IGNORECASE,
)
_RANGE_GAP = re.compile(r"\s*(?:-|–|—|to|until|till|through|and)\s*")
_BETWEEN_BEFORE = re.compile(r"\bbetween\s+(?:\S+\s+)?$", re.IGNORECASE)
_FROM_BEFORE = re.compile(r"\bfrom\s+(?:\S+\s+)?$", re.IGNORECASE)
_CHANGE_VERB = re.compile(
    r"\b(?:rose|rise[sn]?|grew|grow[sn]?|increas\w*|decreas\w*|fell|fall[sn]?|dropp?\w*|"
    r"went|changed?|improv\w*|declin\w*|moved?|reduc\w*|rais\w*|cut|up|down)\b",
    re.IGNORECASE,
)
_CELL_SEPARATOR = re.compile(r"\s*(?:\||\t| {2,})\s*")

# fmt: off
_UNITS = [
    "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
    "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen",
    "nineteen",
]
# fmt: on
_TENS = ["twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"]
_WORD_NUMBER = re.compile(
    r"\b(?:(" + "|".join(_TENS) + r")(?:[- ](" + "|".join(_UNITS[1:10]) + r"))?"
    r"|(" + "|".join(_UNITS) + r"))\b"
)  # on lower-cased text

# --------------------------------------------------------------------------------------------
# values

NUMBER, DATE, TIME, PHONE = "number", "date", "time", "phone"
_DateKey = tuple[int, int, int]  # (year or 0, month, day or 0)


@dataclass(frozen=True, slots=True)
class _Value:
    text: str  # as written
    kind: str
    keys: frozenset[Any]
    start: int
    end: int
    parts: tuple[str, ...] = ()  # "98 000": accepted when every part is there, too
    amount: float | None = None  # for range checks


@dataclass(frozen=True, slots=True)
class _Index:
    numbers: frozenset[str]
    dates: frozenset[_DateKey]
    times: frozenset[tuple[int, int]]
    phones: tuple[str, ...]
    ranges: tuple[tuple[frozenset[Any], frozenset[Any]], ...]
    rows: tuple[tuple[tuple[frozenset[Any], float] | None, ...], ...]


def _canon(digits: str) -> str | None:
    """'007' -> '7', '5.50' -> '5.5', '98000' -> '98000'."""
    whole, _, fraction = digits.partition(".")
    whole = whole.lstrip("0") or "0"
    fraction = fraction.rstrip("0")
    if not whole.isdigit() or (fraction and not fraction.isdigit()):
        return None
    return f"{whole}.{fraction}" if fraction else whole


def _scaled(canon: str, factor: int) -> str | None:
    try:
        value = Decimal(canon) * factor
    except (InvalidOperation, ValueError):
        return None
    return _canon(format(value.normalize(), "f"))


def _parse_number(run: str) -> tuple[set[str], list[str]]:
    """Readings of a digit run with separators, and its digit groups (for a source, when it
    cannot be read as one number)."""
    groups = re.split(r"\D", run)
    seps = re.findall(r"\D", run)
    parts = [c for c in (_canon(g) for g in groups) if c]
    if not seps:
        single = _canon(run)
        return ({single} if single else set()), []
    readings: set[str] = set()

    def thousands(gs: Sequence[str]) -> bool:
        return 1 <= len(gs[0]) <= 3 and all(len(g) == 3 for g in gs[1:])

    def add(text: str) -> None:
        canon = _canon(text)
        if canon:
            readings.add(canon)

    kinds = set(seps)
    if len(kinds) == 1:
        sep = seps[0]
        if sep in _THIN_SEPARATORS:
            if thousands(groups):
                add("".join(groups))
        elif sep == ",":
            if thousands(groups):
                add("".join(groups))
            elif len(groups) == 2:
                add(groups[0] + "." + groups[1])  # 38,4
        elif sep == ".":
            if len(groups) == 2:
                add(groups[0] + "." + groups[1])
                if len(groups[1]) == 3 and len(groups[0]) <= 3:
                    add("".join(groups))  # 1.500: ambiguous, both
            elif thousands(groups):
                add("".join(groups))  # 1.234.567
    else:
        last = seps[-1]
        if last in ",." and seps.count(last) == 1 and len(kinds - {last}) == 1:
            head = groups[:-1]
            if thousands(head):
                add("".join(head) + "." + groups[-1])  # 1,234.5 / 1.234,5 / 1 234,5
    return readings, parts


def _masked(text: str, spans: Iterable[tuple[int, int]]) -> str:
    """`text` with each span replaced by as many spaces (offsets stay the same)."""
    pieces: list[str] = []
    last = 0
    for start, end in spans:
        pieces.append(text[last:start])
        pieces.append(" " * (end - start))
        last = end
    if not pieces:
        return text
    pieces.append(text[last:])
    return "".join(pieces)


def _month(name: str) -> int:
    return _MONTHS.get(name.rstrip(".")[:3].lower(), 0)


def _year(text: str) -> int:
    year = int(text)
    return 2000 + year if len(text) == 2 else year


def _extract(text: str, *, source: bool) -> tuple[list[_Value], list[str]]:
    """The values in `text` (citation markers already masked), and (for a source) extra
    numbers: years inside identifiers, numbers written as words, digit groups of runs that
    read as no single number."""
    values: list[_Value] = []
    extra: list[str] = []
    work = text
    if "@" in text or "http" in text or "www." in text:
        work = _masked(text, (m.span() for m in _URL.finditer(text)))

    def scan(
        pattern: re.Pattern[str], kind: str, read: Callable[[re.Match[str]], list[Any]]
    ) -> None:
        nonlocal work
        spans = []
        for m in pattern.finditer(work):
            keys = frozenset(read(m))
            if keys:
                start, end = m.span()
                values.append(_Value(text[start:end].strip(), kind, keys, start, end))
                spans.append((start, end))
        work = _masked(work, spans)

    if "+" in work:
        scan(_PHONE, PHONE, lambda m: ["".join(ch for ch in m.group() if ch.isdigit())])

    identifiers = list(_IDENTIFIER.finditer(work))
    if source:
        for m in identifiers:
            extra.extend(_YEAR_IN_IDENTIFIER.findall(m.group()))
    work = _masked(work, (m.span() for m in identifiers))

    # (each pass only when the text has what the pattern needs: this runs on every source)
    if "-" in work or "/" in work or "." in work:
        scan(_DATE_ISO, DATE, _read_iso_date)
        scan(_DATE_NUMERIC, DATE, _read_numeric_date)
    if _MONTH_HINT.search(work):
        scan(_DATE_DMY, DATE, lambda m: _date_key(m.group(3), _month(m.group(2)), m.group(1)))
        scan(_DATE_MDY, DATE, lambda m: _date_key(m.group(3), _month(m.group(1)), m.group(2)))
        scan(_DATE_MY, DATE, lambda m: _date_key(m.group(2), _month(m.group(1)), None))
    if "-" in work:
        scan(_DATE_ISO_MONTH, DATE, lambda m: _date_key(m.group(1), int(m.group(2)), None))
    if "/" in work:
        scan(_DATE_NUMERIC_MONTH, DATE, lambda m: _date_key(m.group(2), int(m.group(1)), None))

    def read_time(m: re.Match[str]) -> list[Any]:
        return _time_keys(int(m.group(1)), int(m.group(2)), m.group(3), source=source)

    if ":" in work or "h" in work:
        scan(_TIME, TIME, read_time)
    scan(_TIME_AMPM, TIME, lambda m: _time_keys(int(m.group(1)), 0, m.group(2), source=source))

    # numbers: "98 000" (plain spaces) first, then every other digit run
    spans = []
    for m in _SPACE_GROUPED.finditer(work):
        groups = m.group().split(" ")
        joined = _canon("".join(groups))
        parts = tuple(c for c in (_canon(g) for g in groups) if c)
        if joined:
            values.append(_number_value(text, m.start(), m.end(), {joined}, parts))
            if source:
                extra.extend(parts)
        spans.append(m.span())
    work = _masked(work, spans)
    for m in _NUMBER.finditer(work):
        start, end = m.span()
        factor = 0
        glued = _GLUED.match(work, end)
        if glued:
            suffix = glued.group()
            if suffix not in _GLUED_UNITS:
                continue  # 5G, 3D: part of a name
            factor = _MULTIPLIERS.get(suffix.lower(), 0)
        else:
            spaced = _SPACED_MULTIPLIER.match(work, end)
            if spaced:
                factor = _MULTIPLIERS.get(spaced.group(1).lower(), 0)
        readings, groups = _parse_number(m.group())
        if source:
            if not readings:
                extra.extend(groups)
        elif not readings or _is_label(work, start, end, m.group()):
            continue  # 3.12.0, "level 4"
        if factor:
            readings |= {s for s in (_scaled(r, factor) for r in readings) if s}
        if readings:
            values.append(_number_value(text, start, end, readings, ()))

    if source:
        for wm in _WORD_NUMBER.finditer(text.lower()):
            if wm.group(3):
                extra.append(str(_UNITS.index(wm.group(3))))
            else:
                tens = (_TENS.index(wm.group(1)) + 2) * 10
                unit = _UNITS.index(wm.group(2)) if wm.group(2) else 0
                extra.append(str(tens + unit))
    values.sort(key=lambda v: v.start)
    return values, extra


def _date_key(year: str | None, month: int, day: str | None) -> list[Any]:
    d = int(day) if day else 0
    if not 1 <= month <= 12 or (day and not 1 <= d <= 31):
        return []
    return [(_year(year) if year else 0, month, d)]


def _read_iso_date(m: re.Match[str]) -> list[Any]:
    return _date_key(m.group(1), int(m.group(3)), m.group(4))


def _read_numeric_date(m: re.Match[str]) -> list[Any]:
    """14/08/2025 or 08/14/2025: every reading that is a valid date."""
    first, second = m.group(1), m.group(3)
    return _date_key(m.group(4), int(second), first) + _date_key(m.group(4), int(first), second)


def _time_keys(hour: int, minute: int, half: str | None, *, source: bool) -> list[Any]:
    if half:
        if not 1 <= hour <= 12:
            return []
        hour = hour % 12 + (12 if half.lower() == "p" else 0)
        return [(hour, minute)]
    keys: list[Any] = [(hour, minute)]
    if not source and 1 <= hour <= 12:
        keys.append((hour % 12 + 12, minute) if hour < 12 else (0, minute))
    return keys


def _is_label(work: str, start: int, end: int, run: str) -> bool:
    """'level 4', 'step 2', '(1)', '#3': a small whole number used as a name."""
    if not run.isdigit() or len(run) > 3:
        return False
    before = work[max(0, start - 24) : start]
    if _LABEL_BEFORE.search(before):
        return True
    return before.endswith("(") and work[end : end + 1] == ")" and int(run) <= 20


def _number_value(
    text: str, start: int, end: int, readings: set[str], parts: tuple[str, ...]
) -> _Value:
    """A number value, its written span widened over a currency before it and a unit,
    multiplier or currency after it."""
    prefix = _PREFIX.search(text, max(0, start - 6), start)
    shown_start = prefix.start() if prefix else start
    shown_end = end
    multiplier = _SPACED_MULTIPLIER.match(text, end) or _GLUED.match(text, end)
    if multiplier and (
        multiplier.group().strip().lower() in _MULTIPLIERS or multiplier.group() in _GLUED_UNITS
    ):
        shown_end = multiplier.end()
    suffix = _SUFFIX.match(text, shown_end)
    if suffix:
        shown_end = suffix.end()
    try:
        amount: float | None = max(float(r) for r in readings)
    except ValueError:
        amount = None
    return _Value(
        text[shown_start:shown_end].strip(),
        NUMBER,
        frozenset(readings),
        shown_start,
        shown_end,
        parts,
        amount,
    )


# --------------------------------------------------------------------------------------------
# sources


@lru_cache(maxsize=512)
def _index(text: str) -> _Index:
    text = text[:MAX_SOURCE_CHARS]
    values, extra = _extract(text, source=True)
    numbers: set[str] = set(extra)
    dates: set[_DateKey] = set()
    times: set[tuple[int, int]] = set()
    phones: list[str] = []
    for v in values:
        if v.kind == NUMBER:
            numbers.update(str(k) for k in v.keys)
        elif v.kind == DATE:
            for key in v.keys:
                y, mo, d = key
                dates.add((y, mo, d))
                if y and d:
                    dates.add((y, mo, 0))
                if d:
                    dates.add((0, mo, d))
                    numbers.add(str(d))
                if y:
                    numbers.add(str(y))
        elif v.kind == TIME:
            times.update(k for k in v.keys)
        elif v.kind == PHONE:
            phones.extend(str(k) for k in v.keys)
    numeric = [v for v in values if v.kind == NUMBER]
    return _Index(
        numbers=frozenset(numbers),
        dates=frozenset(dates),
        times=frozenset(times),
        phones=tuple(phones),
        ranges=tuple((a.keys, b.keys) for a, b in _range_pairs(text, numeric, claims=False)),
        rows=_rows(text, numeric),
    )


def _range_pairs(
    text: str, numbers: Sequence[_Value], *, claims: bool
) -> list[tuple[_Value, _Value]]:
    """Adjacent numbers written as a range: 'A – B', 'A to B', 'between A and B'."""
    pairs = []
    for a, b in pairwise(numbers):
        gap = text[a.end : b.start]  # both spans include their unit or currency
        connector = _RANGE_GAP.fullmatch(gap)
        if not connector or "\n" in gap:
            continue
        word = connector.group().strip().lower()
        before = text[max(0, a.start - 40) : a.start]
        if word == "and" and not _BETWEEN_BEFORE.search(before):
            continue
        if (
            claims
            and _FROM_BEFORE.search(before)
            and _CHANGE_VERB.search(text[max(0, a.start - 80) : a.start])
        ):
            continue  # "revenue rose from A to B" is a change, not a range
        pairs.append((a, b))
    return pairs


def _rows(
    text: str, numbers: Sequence[_Value]
) -> tuple[tuple[tuple[frozenset[Any], float] | None, ...], ...]:
    """Table rows (cells split by '|', tabs or runs of spaces) with the number in each cell."""
    if not numbers:
        return ()
    starts = [v.start for v in numbers]
    rows = []
    for line in re.finditer(r"[^\n]+", text):
        body = line.group()
        if "|" not in body and "\t" not in body and "  " not in body.strip():
            continue
        separators = [line.start() + s.start() for s in _CELL_SEPARATOR.finditer(body)]
        if len(separators) < 2:
            continue
        cells: list[tuple[frozenset[Any], float] | None] = [None] * (len(separators) + 1)
        first = bisect_right(starts, line.start() - 1)
        for v in numbers[first:]:
            if v.start >= line.end():
                break
            cell = bisect_right(separators, v.start)
            if cells[cell] is None and v.amount is not None:
                cells[cell] = (v.keys, v.amount)
        if sum(c is not None for c in cells) >= 2:
            rows.append(tuple(cells))
    return tuple(rows)


# --------------------------------------------------------------------------------------------
# the check


def _supported(value: _Value, indexes: Sequence[_Index]) -> bool:
    for ix in indexes:
        if value.kind == NUMBER:
            if value.keys & ix.numbers:
                return True
            if value.parts and all(p in ix.numbers for p in value.parts):
                return True
        elif value.kind == DATE:
            if value.keys & ix.dates:
                return True
            for key in value.keys:
                y, mo, d = key
                if y and d and (0, mo, d) in ix.dates and str(y) in ix.numbers:
                    return True
        elif value.kind == TIME:
            if value.keys & ix.times:
                return True
        elif value.kind == PHONE:
            digits = str(next(iter(value.keys)))
            if any(digits == p or p.endswith(digits[-9:]) for p in ix.phones):
                return True
    return False


def _range_misread(a: _Value, b: _Value, indexes: Sequence[_Index]) -> bool:
    """Both ends are in the sources, but only as cells of a table row that continues the same
    ascending run beyond them (min | mid | max read as 'min to mid')."""
    if a.amount is None or b.amount is None or not 0 < a.amount < b.amount:
        return False
    misread = False
    for ix in indexes:
        if any(a.keys & ka and b.keys & kb for ka, kb in ix.ranges):
            return False
        for row in ix.rows:
            hits_a = [i for i, c in enumerate(row) if c and a.keys & c[0]]
            hits_b = [j for j, c in enumerate(row) if c and b.keys & c[0]]
            pairs = [(i, j) for i in hits_a for j in hits_b if i < j]
            if not pairs:
                continue
            for i, j in pairs:
                after = row[j + 1] if j + 1 < len(row) else None
                before = row[i - 1] if i > 0 else None
                beyond = (after is not None and b.amount < after[1] <= b.amount * 10) or (
                    before is not None and a.amount / 10 <= before[1] < a.amount
                )
                if not beyond:
                    return False
            misread = True
    return misread


def _sentences(answer: str) -> list[tuple[int, int]]:
    """Spans of the sentences of `answer`, each with the citation markers that follow it."""
    spans: list[tuple[int, int]] = []
    for line in re.finditer(r"[^\n]+", answer):
        line_start, line_end = line.span()
        marker = _LIST_MARKER.match(answer, line_start, line_end)
        start = marker.end() if marker else line_start
        for m in _END.finditer(answer, start, line_end):
            if not m.group("cites"):
                word = _WORD_BEFORE.search(answer, start, m.start())
                token = word.group().lower() if word else ""
                if token in _ABBREVIATIONS or (
                    _INITIALISM.fullmatch(token) and token not in ("a.m", "p.m")
                ):
                    continue
                following = answer[m.end() : line_end].lstrip()
                if following[:1].islower():
                    continue
            spans.append((start, m.end()))
            start = m.end()
        if answer[start:line_end].strip():
            spans.append((start, line_end))
    merged: list[tuple[int, int]] = []
    for start, end in spans:
        bare = _CITATION.sub(" ", answer[start:end])
        if merged and not _ALNUM.search(bare):
            merged[-1] = (merged[-1][0], end)  # a citation on a line of its own
        else:
            merged.append((start, end))
    return merged


def _cited(sentence: str, valid: set[int]) -> list[int]:
    seen: list[int] = []
    for match in _CITATION.finditer(sentence):
        for number in _CITE_NUMBER.findall(match.group()):
            n = int(number)
            if n in valid and n not in seen:
                seen.append(n)
    return seen


def _question_keys(question: str) -> dict[str, set[Any]]:
    keys: dict[str, set[Any]] = {NUMBER: set(), DATE: set(), TIME: set(), PHONE: set()}
    if not question:
        return keys
    masked = _CITATION.sub(lambda m: " " * len(m.group()), question[:MAX_ANSWER_CHARS])
    values, _ = _extract(masked, source=False)
    for v in values:
        keys[v.kind].update(v.keys)
        if v.kind == NUMBER and v.parts:
            keys[NUMBER].update(v.parts)
    return keys


def date_keys(text: str) -> frozenset[Any]:
    """The dates in `text` as comparable keys, whatever their format ("17 November 2025",
    "17 Nov 2025" and "2025-11-17" give the same key); used to match a question's date
    to a table row."""
    try:
        values, _ = _extract(text[:MAX_ANSWER_CHARS], source=False)
    except Exception:  # never let a parsing slip break a chat turn
        log.warning("date extraction failed", exc_info=True)
        return frozenset()
    return frozenset(k for v in values if v.kind == DATE for k in v.keys)


def check_grounding(
    answer: str,
    sources: Sequence[SourceRecord],
    *,
    question: str = "",
    ranges: bool = True,
) -> list[UnsupportedClaim]:
    """One `UnsupportedClaim` per sentence of `answer` with numbers, dates, times or amounts
    that the sources it cites do not contain (see the module docstring). `ranges=False` turns
    off the table-row range rule."""
    try:
        return _check(answer or "", sources or (), question or "", ranges)
    except Exception:  # a grounding check must never break a chat turn
        log.exception("grounding check failed; treating the answer as grounded")
        return []


def _check(
    answer: str, sources: Sequence[SourceRecord], question: str, ranges: bool
) -> list[UnsupportedClaim]:
    answer = answer[:MAX_ANSWER_CHARS]
    if not any(ch.isdigit() for ch in answer):
        return []
    by_n: dict[int, _Index] = {}
    for s in sources:
        if s.n not in by_n:
            by_n[s.n] = _index(f"{s.title or ''}\n{s.text or ''}")
    valid = set(by_n)
    asked = _question_keys(question)

    sentences = []
    for start, end in _sentences(answer):
        sentence = answer[start:end]
        sentences.append((sentence.strip(), sentence, _cited(sentence, valid)))
    everything_cited = sorted({n for _, _, cited in sentences for n in cited})
    fallback = [by_n[n] for n in everything_cited] if everything_cited else list(by_n.values())

    claims: list[UnsupportedClaim] = []
    for shown, sentence, cited in sentences:
        masked = _CITATION.sub(lambda m: " " * len(m.group()), sentence)
        if not any(ch.isdigit() for ch in masked):
            continue
        values, _ = _extract(masked, source=False)
        values = [v for v in values if not (v.keys & asked[v.kind])]
        if not values:
            continue
        indexes = [by_n[n] for n in cited] if cited else fallback
        missing = [v.text for v in values if not _supported(v, indexes)]
        if ranges:
            numbers = [v for v in values if v.kind == NUMBER]
            for a, b in _range_pairs(masked, numbers, claims=True):
                if a.text in missing or b.text in missing:
                    continue
                if _range_misread(a, b, indexes):
                    missing.append(masked[a.start : b.end].strip())
        if missing:
            unique = list(dict.fromkeys(v for v in missing if v))
            claims.append(UnsupportedClaim(sentence=shown, values=unique, cited=list(cited)))
    return claims


# --------------------------------------------------------------------------------------------
# the instruction for a re-answer

_RANGE_VALUE = re.compile(r"\d\s*(?:-|–|—|to|and)\s*\D{0,6}\d")


def _join(items: Sequence[str]) -> str:
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]


def correction_instruction(claims: Sequence[UnsupportedClaim], *, limit: int = 3) -> str:
    """One short instruction for answering the turn again, naming up to `limit` claims; ""
    when there is nothing to correct."""
    parts: list[str] = []
    for claim in list(claims)[:limit]:
        values = [v for v in claim.values if v]
        if not values:
            continue
        single = [v for v in values if not _RANGE_VALUE.search(v)]
        spans = [v for v in values if _RANGE_VALUE.search(v)]
        refs = _join([f"[{n}]" for n in claim.cited])
        verb = "does" if len(claim.cited) == 1 else "do"
        if single:
            stated = _join(single)
            if claim.cited:
                what = stated if len(single) == 1 else "these values"
                parts.append(
                    f"Your answer stated {stated} in a sentence citing {refs}, "
                    f"but {refs} {verb} not contain {what}."
                )
            else:
                parts.append(
                    f"Your answer stated {stated} in a sentence without a citation, "
                    "and the documents do not support it."
                )
        for span in spans:
            where = f"citing {refs}" if claim.cited else "without a citation"
            source = refs if claim.cited else "the documents"
            parts.append(
                f"Your answer gave the range {span} {where}, but {source} "
                f"{verb if claim.cited else 'do'} not give that range; take both ends from "
                "the same row and the right columns."
            )
    if not parts:
        return ""
    parts.append(
        "Answer again using only values written in the documents, and cite the document each "
        "value comes from."
    )
    return " ".join(parts)
