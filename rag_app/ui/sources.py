"""The Sources panel and the answer's citations, as HTML that needs no script.

* `render_sources`: one entry per document (title, shown path, its best passage relevance,
  its metadata), its retrieved passages listed under it, each with the number the answer
  cites it by (``[n]``), its own relevance, whether the answer cites it, and its snippet
  (the full passage, or what the model was shown of it, behind a disclosure). Each passage
  carries the anchor id ``src-<turn>-<n>`` (`passage_id`), unique per answer turn.
* `render_answer`: the model's answer made safe by `safe_answer_markdown`, then every
  citation ``[n]`` (or ``[n, m]``) whose numbers are sources of this turn becomes a link
  ``href="#src-<turn>-<n>"``; a click scrolls to the passage and the page CSS (`UI_CSS`)
  highlights it with ``:target``. No JavaScript is involved, so the Content-Security-Policy
  (no inline scripts, no eval) is no obstacle. Sentences whose values the grounding check
  did not find in the cited sources (`UnsupportedClaim`) get a visible marker, and a note
  under the answer says so; both stay in the chat history.

Everything that comes from a document or from the model is escaped: the only HTML in the
output is the fixed markup written here, with integers in its ids and links. The panel is
one line of HTML (a Markdown HTML block ends at a blank line, so none may appear in it).
"""

from __future__ import annotations

import math
import re
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from rag_app.ui.markdown import escape_markdown, safe_answer_markdown

if TYPE_CHECKING:
    from rag_app.chain.events import SourceRecord, UnsupportedClaim

# Fields whose ISO copy the sources panel shows (the app derives `<field>_iso` only for the
# date fields; any other `*_iso` key is a document's own claim and never shown instead).
DEFAULT_DATE_FIELDS = ("created_at",)
SHOWN_FIELDS = ("category", "created_at", "tags", "acl", "tenant")
NO_SOURCES = "_No sources: nothing you may read matched._"
# The score parts a hybrid search records per passage (metadata["scores"]), as shown.
SCORE_PARTS = (("dense", "dense"), ("bm25", "keyword"), ("chunk_fused", "fused"))
UNSUPPORTED_LABEL = "not found in the cited sources"

# Styles for the panel and the answer (passed to Blocks.launch(css=...)); style-src of the
# page allows inline styles. `:target` is the passage a citation link jumped to.
UI_CSS = """
#sources .rag-summary { margin: 0 0 .6rem; opacity: .8; font-size: .9em; }
#sources .rag-doc { border: 1px solid var(--border-color-primary, #ddd);
  border-radius: 8px; padding: .5rem .7rem; margin: 0 0 .7rem; }
#sources .rag-doc-head { display: flex; gap: .5rem; align-items: baseline;
  justify-content: space-between; }
#sources .rag-doc-path { font-size: .85em; word-break: break-all; }
#sources .rag-doc-meta { font-size: .8em; opacity: .75; }
#sources .rag-score, #sources .rag-rel { font-size: .85em; white-space: nowrap;
  font-variant-numeric: tabular-nums; }
#sources ul.rag-passages { list-style: none; padding: 0; margin: .4rem 0 0; }
#sources .rag-passage { margin: .35rem 0 0; padding: .35rem .5rem; border-radius: 6px;
  border-left: 3px solid transparent; scroll-margin-top: 4rem;
  transition: background-color .4s, border-color .4s; }
#sources .rag-passage.rag-cited { border-left-color: var(--color-accent, #f97316); }
#sources .rag-passage:target, #sources .rag-passage.rag-highlight {
  background: var(--color-accent-soft, #ffedd5); outline: 2px solid var(--color-accent, #f97316);
  border-left-color: var(--color-accent, #f97316); }
#sources .rag-n { font-weight: 600; }
#sources .rag-badge { font-size: .75em; padding: 0 .35rem; border-radius: 4px;
  background: var(--color-accent, #f97316); color: #fff; }
#sources .rag-badge.rag-not-cited { background: transparent; color: inherit; opacity: .6; }
#sources .rag-snippet { font-size: .88em; font-style: italic; margin-top: .15rem; }
#sources .rag-full { font-size: .85em; }
#chatbot a.rag-cite { text-decoration: none; font-weight: 600; }
#chatbot a.rag-cite:hover { text-decoration: underline; }
#chatbot .rag-unsupported { color: var(--color-red-600, #b91c1c); font-size: .9em;
  white-space: normal; }
#chatbot .rag-unsupported-note { display: block; margin-top: .4rem; font-size: .9em;
  color: var(--color-red-600, #b91c1c); }
"""


def passage_id(turn: int, n: int) -> str:
    """The anchor id of passage `n` of answer turn `turn` (both integers)."""
    return f"src-{int(turn)}-{int(n)}"


def shown_source(source: str, data_dir: Sequence[str] | None) -> str:
    """A source path as users see it: uploads live under the server's data dir (given as its
    absolute and working-directory-relative forms), whose location is none of their business
    (``uploads/<tenant>/<user>/<file>``)."""
    for prefix in data_dir or ():
        stem = prefix.rstrip("/") + "/"
        if prefix and source.startswith(stem):
            return source[len(stem) :]
    return source


def format_score(value: float | None) -> str:
    """A relevance for people: two decimals (0.83), or three significant digits for small
    scores such as reciprocal-rank fusion's (0.0164), "–" when unknown."""
    if value is None or not math.isfinite(value):
        return "–"
    if value == 0 or abs(value) >= 0.1:
        return f"{value:.2f}"
    text = f"{value:.3g}"
    return f"{value:.1e}" if "e" in text else text


@dataclass(frozen=True)
class DocumentGroup:
    """The retrieved passages of one document, in the order the answer numbers them."""

    key: str
    passages: tuple[SourceRecord, ...]

    @property
    def first(self) -> SourceRecord:
        return self.passages[0]

    @property
    def title(self) -> str:
        return next((p.title for p in self.passages if p.title), "")

    @property
    def source(self) -> str:
        return next((p.source for p in self.passages if p.source), "")

    @property
    def numbers(self) -> list[int]:
        return [p.n for p in self.passages]

    @property
    def best_passage_score(self) -> float | None:
        scores = [p.passage_score for p in self.passages if p.passage_score is not None]
        return max(scores) if scores else None

    @property
    def score(self) -> float | None:
        """The document's ranking score (with document-level fusion the same for all its
        passages; otherwise its best)."""
        scores = [p.score for p in self.passages if p.score is not None]
        return max(scores) if scores else None


def group_sources(sources: Iterable[SourceRecord]) -> list[DocumentGroup]:
    """One group per document (`SourceRecord.document_key`), in the order the documents were
    first retrieved; a document's passages ordered by their number."""
    order: dict[str, list[SourceRecord]] = {}
    for src in sources:
        order.setdefault(src.document_key, []).append(src)
    return [
        DocumentGroup(key, tuple(sorted(passages, key=lambda p: p.n)))
        for key, passages in order.items()
    ]


# -- the Sources panel ---------------------------------------------------------------------
# Characters that could form Markdown (links, images, emphasis, code, maths, autolinks) are
# written as character references too: the panel is an HTML block, where Markdown is not
# parsed, and should it ever be parsed, document text still forms no Markdown.
_ENTITIES = {c: f"&#{ord(c)};" for c in "&<>\"'\\`*_[]()!#|~$:@{}"}
_SPECIAL = re.compile("[" + re.escape("".join(_ENTITIES)) + "]")
_WWW = re.compile(r"(?i)(www)\.")


def _text(value: Any) -> str:
    """Untrusted text as HTML text on one line (no markup, no Markdown, no line breaks)."""
    text = _SPECIAL.sub(lambda m: _ENTITIES[m[0]], " ".join(str(value).split()))
    return _WWW.sub(r"\1&#46;", text)


def _multiline(value: str) -> str:
    """Untrusted text as HTML, its line breaks as <br> (still one line of source)."""
    lines = [" ".join(line.split()) for line in value.strip().splitlines()]
    kept: list[str] = []
    for line in lines:
        if line or (kept and kept[-1]):
            kept.append(line)
    return "<br>".join(_text(line) for line in kept).strip()


def _metadata_html(meta: Mapping[str, Any], date_fields: Collection[str]) -> str:
    shown = {
        k: meta.get(f"{k}_iso", meta[k]) if k in date_fields else meta[k]
        for k in SHOWN_FIELDS
        if k in meta
    }
    return " · ".join(
        f"{k}: {_text(', '.join(map(str, v)) if isinstance(v, list | tuple) else v)}"
        for k, v in shown.items()
    )


def _score_parts(src: SourceRecord) -> str:
    scores = src.metadata.get("scores") if isinstance(src.metadata, Mapping) else None
    if not isinstance(scores, Mapping):
        return ""
    parts = [
        f"{label} {format_score(float(scores[key]))}"
        for key, label in SCORE_PARTS
        if isinstance(scores.get(key), int | float) and not isinstance(scores.get(key), bool)
    ]
    return " · ".join(parts)


def _passage_html(src: SourceRecord, *, turn: int, cited: bool) -> str:
    rel = src.passage_score
    parts = _score_parts(src)
    why = "this passage's own relevance to the question"
    if parts:
        why += f" ({parts})"
    badge = (
        '<span class="rag-badge rag-cited-mark">cited</span>'
        if cited
        else '<span class="rag-badge rag-not-cited">not cited</span>'
    )
    excerpt = getattr(src, "excerpt", None)
    unread = (
        ' <span class="rag-unread" title="left out of what the model read (context budget)">'
        "· not shown to the model</span>"
        if excerpt == ""
        else ""
    )
    snippet = _text(src.snippet)
    full = excerpt if excerpt else src.text
    details = ""
    if full and " ".join(full.split()) != " ".join(src.snippet.split()):
        label = "what the model read" if excerpt else "full passage"
        details = (
            f'<details class="rag-full"><summary>{label}</summary>'
            f"<div>{_multiline(full)}</div></details>"
        )
    classes = "rag-passage rag-cited" if cited else "rag-passage"
    return (
        f'<li class="{classes}" id="{passage_id(turn, src.n)}" data-n="{int(src.n)}">'
        f'<span class="rag-n">[{int(src.n)}]</span> {badge} '
        f'<span class="rag-rel" title="{_text(why)}">relevance {format_score(rel)}</span>'
        f"{unread}"
        f'<div class="rag-snippet">{snippet}</div>{details}</li>'
    )


def _document_html(
    group: DocumentGroup,
    *,
    turn: int,
    cited: Collection[int],
    data_dir: Sequence[str] | None,
    date_fields: Collection[str],
) -> str:
    best = group.best_passage_score
    if best is not None:
        score = (
            '<span class="rag-score" title="the best relevance of its passages">'
            f"best passage {format_score(best)}</span>"
        )
    else:
        score = f'<span class="rag-score">score {format_score(group.score)}</span>'
    title = _text(group.title) or "(untitled)"
    count = len(group.passages)
    numbers = ", ".join(f"[{n}]" for n in group.numbers)
    meta = _metadata_html(group.first.metadata, date_fields)
    any_cited = any(n in cited for n in group.numbers)
    passages = "".join(_passage_html(p, turn=turn, cited=p.n in cited) for p in group.passages)
    return (
        f'<section class="rag-doc{" rag-doc-cited" if any_cited else ""}">'
        f'<div class="rag-doc-head"><strong class="rag-doc-title">{title}</strong> {score}</div>'
        f'<div class="rag-doc-path"><code>{_text(shown_source(group.source, data_dir))}</code>'
        f" <small>· {count} passage{'s' if count != 1 else ''}: {numbers}</small></div>"
        + (f'<div class="rag-doc-meta"><small>{meta}</small></div>' if meta else "")
        + f'<ul class="rag-passages">{passages}</ul></section>'
    )


def render_sources(
    sources: Sequence[SourceRecord],
    cited: Collection[int] = (),
    *,
    turn: int = 1,
    data_dir: Sequence[str] | None = None,
    date_fields: Collection[str] = DEFAULT_DATE_FIELDS,
) -> str:
    """The Sources panel (HTML in a Markdown component): one entry per document, its passages
    under it. Titles, paths, snippets and metadata come from documents and are shown as plain
    text; a date field shows its ISO copy, every other field its own value (a document's
    `acl_iso` is not shown as its ACL)."""
    if not sources:
        return NO_SOURCES
    cited_set = set(cited)
    groups = group_sources(sources)
    n_cited = len({s.n for s in sources if s.n in cited_set})
    docs = len(groups)
    summary = (
        f"{len(sources)} passage{'s' if len(sources) != 1 else ''} from {docs} "
        f"document{'s' if docs != 1 else ''}" + (f" · {n_cited} cited" if cited_set else "")
    )
    body = "".join(
        _document_html(g, turn=turn, cited=cited_set, data_dir=data_dir, date_fields=date_fields)
        for g in groups
    )
    return (
        f'<div class="rag-sources" data-turn="{int(turn)}">'
        f'<p class="rag-summary">{summary}</p>{body}</div>'
    )


# -- the answer ----------------------------------------------------------------------------
# Code (fenced blocks, inline spans) of sanitised Markdown: nothing is linked inside it.
_CODE = re.compile(
    r"(?ms)^[ ]{0,3}(?P<fence>`{3,}|~{3,})[^\n]*\n.*?(?:^[ ]{0,3}(?P=fence)[ \t]*$|\Z)"
    r"|(?P<ticks>`+)(?!`).+?(?<!`)(?P=ticks)(?!`)"
)
# `[n]` or `[n, m]` (not escaped as `\[`, not followed by a link target): the only citation
# forms linked.
_CITATION = re.compile(r"(?<!\\)\[\s*(\d{1,3}(?:\s*,\s*\d{1,3})*)\s*\](?!\()")
_NUMBER = re.compile(r"\d{1,3}")
# Private-use characters mark where an unsupported sentence ends, through sanitising.
_MARK_OPEN, _MARK_CLOSE = "\ue000", "\ue001"
_MARKER = re.compile(f"{_MARK_OPEN}(\\d+){_MARK_CLOSE}")
_MARK_CHARS = re.compile(f"[{_MARK_OPEN}{_MARK_CLOSE}]")
_PLACED = re.compile(f" {_MARK_OPEN}\\d+{_MARK_CLOSE}")  # as `_place_markers` inserts it


def _cite_link(n: int, turn: int, titles: Mapping[int, str], text: str) -> str:
    title = f"source [{n}]" + (f": {titles[n]}" if titles.get(n) else "")
    return (
        f'<a href="#{passage_id(turn, n)}" class="rag-cite" data-n="{n}" '
        f'title="{_text(title)}">{text}</a>'
    )


def _link_citations(text: str, valid: Collection[int], turn: int, titles: Mapping[int, str]) -> str:
    def replace(match: re.Match[str]) -> str:
        numbers = [int(x) for x in _NUMBER.findall(match[1])]
        if not any(n in valid for n in numbers):
            return match[0]
        if len(numbers) == 1:
            return _cite_link(numbers[0], turn, titles, f"[{numbers[0]}]")
        inner = ", ".join(
            _cite_link(n, turn, titles, str(n)) if n in valid else str(n) for n in numbers
        )
        return f"[{inner}]"

    return _CITATION.sub(replace, text)


def link_citations(
    markdown: str, valid: Collection[int], turn: int, titles: Mapping[int, str] | None = None
) -> str:
    """Sanitised answer Markdown with each `[n]` (n in `valid`) a link to passage n of
    `turn`. Code spans and fenced code are left alone."""
    titles = titles or {}
    out: list[str] = []
    pos = 0
    for code in _CODE.finditer(markdown):
        out.append(_link_citations(markdown[pos : code.start()], valid, turn, titles))
        out.append(code[0])
        pos = code.end()
    out.append(_link_citations(markdown[pos:], valid, turn, titles))
    return "".join(out)


def _values(values: Sequence[str]) -> str:
    return ", ".join(escape_markdown(" ".join(v.split())) for v in values if v.strip())


def _unsupported_marker(claim: UnsupportedClaim) -> str:
    values = _values(claim.values)
    label = f"{UNSUPPORTED_LABEL}: {values}" if values else UNSUPPORTED_LABEL
    return f'<span class="rag-unsupported" role="note">(⚠ {label})</span>'


def _locate(answer: str, sentence: str, start: int) -> int | None:
    """Where `sentence` ends in `answer` (searching from `start`, then from the top)."""
    sentence = sentence.strip()
    if not sentence:
        return None
    for origin in (start, 0):
        at = answer.find(sentence, origin)
        if at >= 0:
            return at + len(sentence)
    words = [re.escape(w) for w in sentence.split()]
    found = re.search(r"\s+".join(words), answer) if words else None
    return found.end() if found else None


def _place_markers(answer: str, claims: Sequence[UnsupportedClaim]) -> str:
    """`answer` with a private-use marker after each claim's sentence (where found)."""
    ends: list[tuple[int, int]] = []
    pos = 0
    for i, claim in enumerate(claims):
        end = _locate(answer, claim.sentence, pos)
        if end is not None:
            ends.append((end, i))
            pos = end
    for end, i in sorted(ends, reverse=True):
        answer = f"{answer[:end]} {_MARK_OPEN}{i}{_MARK_CLOSE}{answer[end:]}"
    return answer


def render_answer(
    answer: str,
    *,
    turn: int,
    valid: Collection[int] = (),
    titles: Mapping[int, str] | None = None,
    unsupported: Sequence[UnsupportedClaim] = (),
) -> str:
    """The answer as the Chatbot shows it: sanitised Markdown (`safe_answer_markdown`), each
    citation of a source in `valid` a link to its passage in the Sources panel of `turn`, a
    marker after each unsupported sentence and a note under the answer."""
    text = _MARK_CHARS.sub("", answer or "")
    if unsupported:
        text = _place_markers(text, unsupported)
    safe = safe_answer_markdown(text)
    titles = titles or {}
    placed: set[int] = set()

    def mark(match: re.Match[str]) -> str:
        i = int(match[1])
        if i >= len(unsupported) or i in placed:
            return ""
        placed.add(i)
        return _unsupported_marker(unsupported[i])

    out: list[str] = []
    pos = 0
    for code in _CODE.finditer(safe):
        plain = link_citations(safe[pos : code.start()], valid, turn, titles)
        out.append(_MARKER.sub(mark, plain))
        out.append(_MARK_CHARS.sub("", _PLACED.sub("", code[0])))
        pos = code.end()
    out.append(_MARKER.sub(mark, link_citations(safe[pos:], valid, turn, titles)))
    rendered = _MARK_CHARS.sub("", "".join(out))
    if unsupported:
        rendered = rendered.rstrip() + "\n\n" + _unsupported_note(unsupported, placed)
    return rendered


def _unsupported_note(claims: Sequence[UnsupportedClaim], placed: Collection[int]) -> str:
    count = len(claims)
    head = (
        f"⚠ {count} statement{'s' if count != 1 else ''} of this answer "
        f"contain{'s' if count == 1 else ''} values {UNSUPPORTED_LABEL}"
    )
    missing = [claim for i, claim in enumerate(claims) if i not in placed]
    lines = [head + (" (marked ⚠ above)" if placed else "") + (":" if missing else ".")]
    for claim in missing:
        sentence = escape_markdown(" ".join(claim.sentence.split()))
        lines.append(f"“{sentence}”: {_values(claim.values) or 'unverified'}")
    return '<span class="rag-unsupported-note" role="note">' + "<br>".join(lines) + "</span>"


__all__ = [
    "DEFAULT_DATE_FIELDS",
    "SHOWN_FIELDS",
    "UI_CSS",
    "DocumentGroup",
    "format_score",
    "group_sources",
    "link_citations",
    "passage_id",
    "render_answer",
    "render_sources",
    "shown_source",
]
