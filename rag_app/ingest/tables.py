"""Tables as text a small model reads reliably: one sentence per row, with the column names.

A Markdown or HTML table is kept as it is in the document's text chunks, and each of its rows
is *also* indexed as a sentence of its own (see `rag_app.ingest.pipeline`)::

    | Level | Minimum (EUR) | Midpoint (EUR) |        Level L4: minimum 98,000 EUR,
    |-------|---------------|----------------|   ->   midpoint 111,000 EUR
    | L4    | 98,000        | 111,000        |

The sentence is ``<first header> <first cell>: <header> <cell>, <header> <cell>, ...``:

* the first header is left out unless the first cell is a number, a date or a short code
  ("Level L4", "Rating 2", but "London: maximum per night 180 GBP", not "Location London");
* yes/no cells read ``<header>: <value>``, the parts are then joined with "; " and the row's
  name is followed by ", " ("Home office allowance, employees: yes; contractors: no");
* header names are lower-cased when they are ordinary capitalised words ("Bonus target" ->
  "bonus target"; "Q3 2025", "FY2024", "EBITDA" stay as written), except the first one;
* a unit in a header ("Minimum (EUR)", "Payload [kg]", "Change (%)") follows each value that
  ends in a number ("minimum 98,000 EUR"); a currency named in the table's caption or heading
  ("Rotterdam bands (annual base salary, EUR, full-time)") follows the values of columns that
  hold only plain numbers (not the first column);
* empty cells are left out; a row with nothing beyond its first cell gives no sentence;
* when a value in the table holds ", ", the parts of every row are joined with "; " instead,
  so the columns stay apart ("title examples Senior engineer, senior product manager;
  minimum 98,000 EUR");
* cell text is kept as written (Markdown emphasis, code ticks, links and HTML tags removed),
  so numbers stay verbatim and a grounding check finds them in the source.

Markdown: GitHub pipe tables (a header row, a delimiter row with the same number of cells,
body rows up to a blank line or a line without a pipe; outer pipes optional, ``\\|`` is a
literal pipe, alignment colons allowed, short rows padded and extra cells kept without a
header). Tables inside fenced code blocks are ignored. The context is a ``Table: ...`` caption
line right before or after the table, else the nearest heading above it.

HTML: `html_table` reads a ``<table>`` without nested tables (``<thead>`` rows, else a first
row of ``<th>`` cells, else the first row, is the header; a ``colspan`` header repeats over
its columns while a body cell's text goes to its first column; ``rowspan`` repeats the cell
down). The context is its ``<caption>``, else the nearest heading above it.

PDF: text extracted by pypdf holds no table structure, so tables in PDFs are not detected.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bs4.element import Tag

MIN_COLUMNS = 2
TABLE_ROW = "table_row"  # the chunk_kind of a row's extra chunk (rag_app.ingest.pipeline)
ROW_SEP = " — "  # between a row chunk's title, caption and sentence (`row_texts`)
MAX_SPAN = 64


@dataclass(frozen=True)
class Table:
    """A table's header cells, body rows (as written, cleaned of inline markup) and context
    (its caption, else the nearest heading above it; "" when there is none)."""

    headers: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    context: str = ""

    def sentences(self) -> list[str]:
        """One sentence per row that says something beyond its first cell."""
        return row_sentences(self)


# -- cell text -------------------------------------------------------------------------------
_SPACE = re.compile(r"\s+")
_BR = re.compile(r"<br\s*/?>", re.IGNORECASE)
_TAG = re.compile(r"</?[A-Za-z][^<>]*>")
_IMAGE = re.compile(r"!\[([^\]]*)\]\([^)]*\)")
_LINK = re.compile(r"\[([^\]]+)\]\([^)]*\)")
_STRONG = re.compile(r"(\*\*|__)(?=\S)(.+?)(?<=\S)\1")
_EMPHASIS = re.compile(r"(?<![\w*])\*(?=\S)([^*]+?)(?<=\S)\*(?![\w*])")
_STRIKE = re.compile(r"~~(?=\S)(.+?)(?<=\S)~~")


def clean_cell(text: str) -> str:
    """A cell's text without inline Markdown/HTML markup, on one line."""
    text = _BR.sub(" ", text)
    text = _IMAGE.sub(r"\1", text)
    text = _LINK.sub(r"\1", text)
    text = _TAG.sub("", text)
    text = _STRONG.sub(r"\2", text)
    text = _EMPHASIS.sub(r"\1", text)
    text = _STRIKE.sub(r"\1", text)
    text = text.replace("`", "")
    return _SPACE.sub(" ", text).strip()


# -- units -----------------------------------------------------------------------------------
CURRENCIES = frozenset(
    re.findall(
        r"\w+",
        "EUR USD GBP CHF JPY CNY SEK NOK DKK PLN CZK HUF CAD AUD NZD INR BRL MXN ZAR SGD HKD KRW "
        "TRY AED SAR ILS",
    )
)
_SYMBOLS = frozenset({"%", "‰", "€", "$", "£", "¥", "°C", "°F", "°"})
# Lower case. No one-letter words that read as something else in a header: "Owner(s)",
# "Plan (A)".
_UNIT_WORDS = frozenset(
    re.findall(
        r"\S+",
        """kg g mg t lb lbs km m cm mm µm nm mi ft m² m2 m³ m3 ml h hrs hours min mins minutes
        sec secs seconds ms µs days weeks months years kb mb gb tb pb kbps mbps gbps wh kwh mwh
        kw mw mv ma mah hz khz mhz ghz rpm pts fte ppm db km/h m/s""",
    )
)
_MULTIPLIERS = frozenset(
    {"k", "K", "M", "m", "bn", "mn", "thousand", "thousands", "million", "millions", "billion"}
)
_PER = re.compile(r"\s*(?:/|\bper\s)\s*[A-Za-z]{1,12}$")
_HEADER_UNIT = re.compile(r"^(?P<label>.*?)\s*[(\[](?P<unit>[^()\[\]]{1,24})[)\]]$")
_NUMBER = r"\d+(?:[.,'\u202f\u00a0 ]\d+)*"
_ENDS_IN_NUMBER = re.compile(r"\d$")
_PLAIN_NUMBER = re.compile(
    rf"^[~≈<>≤≥+\-−]?\s?{_NUMBER}(?:\s?[–\-−]\s?{_NUMBER})?$"  # "98,000", "25 – 200"
)
_WORD = re.compile(r"[A-Za-z]+")


def _is_base_unit(text: str) -> bool:
    return text in CURRENCIES or text in _SYMBOLS or text.lower() in _UNIT_WORDS


def is_unit(text: str) -> bool:
    """Whether a header's parenthesis names a unit ("EUR", "M EUR", "kg", "%", "EUR/month"),
    as opposed to a remark ("room only")."""
    base = _PER.sub("", text.strip())
    parts = base.split()
    if len(parts) == 1:
        return _is_base_unit(parts[0])
    if len(parts) == 2:
        if parts[0] in _MULTIPLIERS:
            return _is_base_unit(parts[1])
        if parts[1] in _MULTIPLIERS:
            return _is_base_unit(parts[0])
    return False


def split_header_unit(header: str) -> tuple[str, str | None]:
    """``"Minimum (EUR)"`` -> ``("Minimum", "EUR")``; a header without a unit is returned as
    it is, with None."""
    match = _HEADER_UNIT.match(header)
    if match and match.group("label") and is_unit(match.group("unit")):
        return match.group("label"), match.group("unit").strip()
    return header, None


def context_currency(context: str) -> str | None:
    """The one currency code a caption or heading names ("…, EUR, full-time"), else None."""
    found = {w for w in _WORD.findall(context) if w in CURRENCIES}
    return found.pop() if len(found) == 1 else None


_CAPITALISED = re.compile(r"^[A-Z][a-z]+(?!\w)")


def _label(header: str) -> str:
    """Lower-case a header that starts with an ordinary capitalised word ("Bonus target",
    "Owner(s)"; not "Q3 2025", "FY2024", "EBITDA" or a one-letter name)."""
    if _CAPITALISED.match(header):
        return header[0].lower() + header[1:]
    return header


# -- row sentences -----------------------------------------------------------------------------
@dataclass(frozen=True)
class _Column:
    label: str  # as shown before a value ("minimum"); "" when the header is empty
    unit: str | None  # from the header: after values ending in a number
    plain_unit: str | None  # from the caption/heading: after plain-number values only


def _columns(table: Table) -> list[_Column]:
    currency = context_currency(table.context) if table.context else None
    columns = []
    for j, header in enumerate(table.headers):
        label, unit = split_header_unit(header)
        plain_unit = None
        if unit is None and currency and j > 0:
            values = [row[j] for row in table.rows if j < len(row) and row[j]]
            if values and all(_PLAIN_NUMBER.match(v) for v in values):
                plain_unit = currency
        columns.append(_Column(label if j == 0 else _label(label), unit, plain_unit))
    return columns


def _with_unit(value: str, column: _Column) -> tuple[str, str]:
    """(label, value) with the column's unit placed after the value where it fits."""
    if column.unit is not None:
        if column.unit in value:
            return column.label, value
        if _ENDS_IN_NUMBER.search(value):
            return column.label, f"{value} {column.unit}"
        # "1,500 per month": the unit cannot follow the value, so it stays with the name.
        return f"{column.label} ({column.unit})".strip(), value
    if column.plain_unit is not None and _PLAIN_NUMBER.match(value):
        return column.label, f"{value} {column.plain_unit}"
    return column.label, value


# a yes/no cell, also with a remark after it ("No; the sponsor may approve a course")
_BOOLEAN = re.compile(
    r"^\s*(?:yes|no|true|false|[✓✔✗✘]|(?:not )?included)(?:$|[\s,;:.(])", re.IGNORECASE
)
_CODE = re.compile(r"^(?:\S|[A-Z]{2,3})$")  # "x", "A", "HR"; with digits: "L4", "P1", "Q3"


def _is_boolean(value: str) -> bool:
    return bool(_BOOLEAN.match(value))


def _parts(row: Sequence[str], columns: Sequence[_Column]) -> list[str]:
    parts: list[str] = []
    for j in range(1, len(row)):
        value = row[j]
        if not value:
            continue
        if j < len(columns):
            label, value = _with_unit(value, columns[j])
        else:
            label = ""  # an extra cell beyond the header: kept, without a name
        if label and _is_boolean(value):
            # "contractors: no" (a small model read "contractors no" as a yes)
            parts.append(f"{label}: {value}")
        else:
            parts.append(f"{label} {value}" if label else value)
    return parts


def _lead(first_label: str, first: str) -> str:
    """The row's name: its first cell, after the first column's header when the cell is a
    number or a short code ("Level L4", "Rating 2", "Week starting 17 November 2025") but
    not before a name that reads on its own ("Home office allowance", not "Item Home office
    allowance")."""
    if not first:
        return ""
    if first_label and (_CODE.match(first) or any(c.isdigit() for c in first)):
        return f"{first_label} {first}"
    return first


def row_sentences(table: Table) -> list[str]:
    """One sentence per row of `table` (rows with nothing beyond their first cell give none).
    The parts are joined with "; " in every row when a part of any row holds ", " or is a
    yes/no cell ("contractors: no"), and the row's name is then followed by ", "."""
    columns = _columns(table)
    first_label = columns[0].label if columns else ""
    rows = [(row[0] if row else "", _parts(row, columns)) for row in table.rows]
    booleans = any(_is_boolean(v) for row in table.rows for v in row[1:])
    sep = "; " if booleans or any(", " in p for _, parts in rows for p in parts) else ", "
    out = []
    for first, parts in rows:
        if not parts:
            continue
        body = sep.join(parts)
        lead = _lead(first_label, first)
        out.append(f"{lead}{', ' if booleans else ': '}{body}" if lead else body)
    return out


def split_row_text(text: str) -> tuple[str, str]:
    """(prefix, sentence) of a row's indexed text (`row_texts`): ``Title — Caption`` and the
    row sentence; ("", text) when there is no prefix."""
    prefix, sep, sentence = text.strip().rpartition(ROW_SEP)
    return (prefix, sentence) if sep else ("", text.strip())


def row_texts(title: str, tables: Iterable[Table]) -> list[str]:
    """The text indexed for each row of `tables`: ``<title> — <context> — <sentence>`` (the
    context is left out when there is none or the title already says it)."""
    out = []
    norm_title = _SPACE.sub(" ", title).strip()
    for table in tables:
        prefix = [norm_title] if norm_title else []
        context = _SPACE.sub(" ", table.context).strip()
        if context and context.casefold() not in norm_title.casefold():
            prefix.append(context)
        for sentence in table.sentences():
            out.append(ROW_SEP.join([*prefix, sentence]))
    return out


# -- Markdown ----------------------------------------------------------------------------------
_FENCE = re.compile(r"^\s{0,3}(`{3,}|~{3,})")
_ATX = re.compile(r"^\s{0,3}#{1,6}(?:\s+(.*?))?\s*$")
_SETEXT = re.compile(r"^\s{0,3}(?:=+|-{2,})\s*$")
_DELIM_CELL = re.compile(r"^\s*:?-+:?\s*$")
_CAPTION = re.compile(r"^\s{0,3}Table(?:\s+\d+)?\s*[:.]\s*(\S.*)$")
# a plain-text table's rule: dash runs under the columns ("-----   -------")
PLAIN_TABLE_RULE = re.compile(r"^\s*-{3,}(?:[ \t]+-{3,})+\s*$")
_LIST_OR_QUOTE = re.compile(r"^\s*(?:[-*+>]|\d+[.)])\s")


def split_row(line: str) -> list[str]:
    """A pipe-table line's cells (outer pipes optional; ``\\|`` is a literal pipe)."""
    cells: list[str] = []
    current: list[str] = []
    text = line.strip()
    i = 0
    while i < len(text):
        ch = text[i]
        if ch == "\\" and i + 1 < len(text) and text[i + 1] == "|":
            current.append("|")
            i += 2
            continue
        if ch == "|":
            cells.append("".join(current))
            current = []
        else:
            current.append(ch)
        i += 1
    cells.append("".join(current))
    if text.startswith("|"):
        cells = cells[1:]
    if len(cells) > 1 and _ends_with_pipe(text):
        cells = cells[:-1]
    return [c.strip() for c in cells]


def _ends_with_pipe(text: str) -> bool:
    if not text.endswith("|"):
        return False
    backslashes = len(text[:-1]) - len(text[:-1].rstrip("\\"))
    return backslashes % 2 == 0


def _has_pipe(line: str) -> bool:
    return "|" in line.replace("\\|", "")


def _is_delimiter(line: str, width: int) -> bool:
    if not _has_pipe(line) and width > 1:
        return False
    cells = split_row(line)
    return len(cells) == width and all(_DELIM_CELL.match(c) for c in cells)


def markdown_tables(text: str) -> list[Table]:
    """The pipe tables of a Markdown text, in order (tables of fewer than two columns or
    without a body row are left out)."""
    lines = text.splitlines()
    tables: list[Table] = []
    heading = ""
    fence: str | None = None
    i = 0
    while i < len(lines):
        line = lines[i]
        opening = _FENCE.match(line)
        if fence is not None:
            if opening and opening.group(1)[0] == fence[0] and len(opening.group(1)) >= len(fence):
                fence = None
            i += 1
            continue
        if opening:
            fence = opening.group(1)
            i += 1
            continue
        atx = _ATX.match(line)
        if atx:
            heading = clean_cell((atx.group(1) or "").rstrip("#"))
            i += 1
            continue
        prev = lines[i - 1] if i > 0 else ""
        if (
            _SETEXT.match(line)
            and prev.strip()
            and not _has_pipe(prev)
            and not _LIST_OR_QUOTE.match(prev)
        ):
            heading = clean_cell(prev)
            i += 1
            continue
        if i + 1 < len(lines) and PLAIN_TABLE_RULE.match(lines[i + 1]) and not _has_pipe(line):
            table, end = _fixed_width(lines, i)
            if table is not None:
                context = _caption(lines, i, end) or heading or _line_above(lines, i)
                tables.append(replace(table, context=context))
                i = end
                continue
        if _has_pipe(line) and i + 1 < len(lines):
            headers = split_row(line)
            if len(headers) >= MIN_COLUMNS and _is_delimiter(lines[i + 1], len(headers)):
                end = i + 2
                rows: list[tuple[str, ...]] = []
                while end < len(lines) and lines[end].strip() and _has_pipe(lines[end]):
                    cells = [clean_cell(c) for c in split_row(lines[end])]
                    cells += [""] * (len(headers) - len(cells))
                    while len(cells) > len(headers) and not cells[-1]:
                        cells.pop()
                    if any(cells):
                        rows.append(tuple(cells))
                    end += 1
                if rows:
                    caption = _caption(lines, i, end)
                    tables.append(
                        Table(
                            headers=tuple(clean_cell(h) for h in headers),
                            rows=tuple(rows),
                            context=caption or heading,
                        )
                    )
                i = end
                continue
        i += 1
    return tables


def _fixed_width(lines: Sequence[str], i: int) -> tuple[Table | None, int]:
    """A plain-text table at line `i`: a header line, a rule of dash runs under its columns
    (``-----   -------``), then rows whose cells start at the runs' columns, up to a blank
    line or a line that does not fit the columns. Returns the table (None when there is
    no body row or a header cell is empty) and the index after it."""
    starts = [m.start() for m in re.finditer(r"-{3,}", lines[i + 1])]

    def fits(line: str) -> bool:
        # no word may run across a column start
        return all(len(line) <= s or line[s - 1].isspace() for s in starts[1:]) and (
            not line[: starts[0]].strip()
        )

    def cells(line: str) -> tuple[str, ...]:
        # the first cell from the line's start; the rule has at least two runs
        bounds = [0, *starts[1:]]
        ends: list[int | None] = [*starts[1:], None]
        return tuple(clean_cell(line[s:e]) for s, e in zip(bounds, ends, strict=True))

    header = lines[i]
    if not fits(header):
        return None, i + 1
    headers = cells(header)
    end = i + 2
    rows: list[tuple[str, ...]] = []
    while end < len(lines) and lines[end].strip() and fits(lines[end]):
        row = cells(lines[end])
        if any(row):
            rows.append(row)
        end += 1
    if not rows or not all(headers):
        return None, end
    return Table(headers=headers, rows=tuple(rows)), end


def _line_above(lines: Sequence[str], i: int) -> str:
    """The nearest non-blank line above line `i`, when it is short enough to be a heading."""
    for k in range(i - 1, max(-1, i - 4), -1):
        text = lines[k].strip()
        if text:
            return clean_cell(text) if len(text) <= 100 and not PLAIN_TABLE_RULE.match(text) else ""
    return ""


def _caption(lines: Sequence[str], start: int, end: int) -> str:
    """A ``Table: ...`` line right before `start`, else right after `end` unless another table
    follows it (one blank line allowed in between)."""
    for k in _near(lines, start - 1, -1):
        match = _CAPTION.match(lines[k])
        if match:
            return clean_cell(match.group(1))
    for k in _near(lines, end, 1):
        match = _CAPTION.match(lines[k])
        if match:
            following = list(_near(lines, k + 1, 1))
            if following and _has_pipe(lines[following[0]]):
                return ""  # the caption of the next table
            return clean_cell(match.group(1))
    return ""


def _near(lines: Sequence[str], k: int, step: int) -> Iterator[int]:
    """The first non-blank line index from `k` in direction `step`, if at most one blank line
    lies in between."""
    for _ in range(2):
        if not 0 <= k < len(lines):
            return
        if lines[k].strip():
            yield k
            return
        k += step


def render_markdown(table: Table) -> str:
    """A pipe table (cells' ``|`` escaped)."""

    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"

    width = max([len(table.headers), *(len(r) for r in table.rows)])
    headers = list(table.headers) + [""] * (width - len(table.headers))
    out = [line(headers), "|" + "|".join("---" for _ in range(width)) + "|"]
    out += [line(list(r) + [""] * (width - len(r))) for r in table.rows]
    return "\n".join(out)


# -- HTML ----------------------------------------------------------------------------------------
def _span(cell: Tag, name: str) -> int:
    raw = cell.get(name)
    try:
        value = int(str(raw).strip()) if raw is not None else 1
    except ValueError:
        return 1
    return min(max(value, 1), MAX_SPAN)


def _grid(rows: Sequence[Tag], *, header: bool) -> list[list[str]]:
    """Rows of cell texts with colspan/rowspan laid out on columns."""
    grid: list[list[str]] = []
    pending: dict[int, tuple[int, str]] = {}  # column -> (rows left, text) from a rowspan
    for tr in rows:
        out: list[str] = []
        cells = list(tr.find_all(["td", "th"], recursive=False))
        while cells or (pending and len(out) <= max(pending)):
            col = len(out)
            if col in pending:
                left, text = pending.pop(col)
                if left > 1:
                    pending[col] = (left - 1, text)
                out.append(text)
                continue
            if not cells:
                out.append("")  # a gap before a later rowspan column
                continue
            cell = cells.pop(0)
            text = clean_cell(cell.get_text(" ", strip=True))
            colspan, rowspan = _span(cell, "colspan"), _span(cell, "rowspan")
            for s in range(colspan):
                value = text if (s == 0 or header) else ""
                if rowspan > 1:
                    pending[len(out)] = (rowspan - 1, value)
                out.append(value)
        grid.append(out)
    return grid


def _rows_of(table: Tag) -> list[Tag]:
    return [tr for tr in table.find_all("tr") if tr.find_parent("table") is table]


def html_table(table: Tag, *, context: str = "") -> Table | None:
    """A ``<table>`` (without nested tables) as a `Table`; None when it has fewer than two
    columns or no body row. `context` (the nearest heading) is used when there is no
    ``<caption>``."""
    trs = _rows_of(table)
    if not trs:
        return None
    head = [tr for tr in trs if tr.find_parent("thead") is not None]
    body = [tr for tr in trs if tr.find_parent("thead") is None]
    first_cells = trs[0].find_all(["td", "th"], recursive=False)
    if not head:
        all_th = bool(first_cells) and all(c.name == "th" for c in first_cells)
        row_headers = all(
            (cells := tr.find_all(["td", "th"], recursive=False))
            and cells[0].name == "th"
            and any(c.name == "td" for c in cells[1:])
            for tr in trs
        )
        if all_th or not row_headers:
            head, body = trs[:1], trs[1:]
    header_grid = _grid(head, header=True)
    body_grid = [r for r in _grid(body, header=False) if any(r)]
    width = max([0, *(len(r) for r in header_grid), *(len(r) for r in body_grid)])
    if width < MIN_COLUMNS or not body_grid:
        return None
    headers = []
    for j in range(width):
        names = [r[j] for r in header_grid if j < len(r) and r[j]]
        headers.append(" ".join(dict.fromkeys(names)))
    rows = tuple(tuple(r + [""] * (width - len(r))) for r in body_grid)
    caption_tag = table.find("caption")
    caption = clean_cell(caption_tag.get_text(" ", strip=True)) if caption_tag else ""
    return Table(headers=tuple(headers), rows=rows, context=caption or context)
