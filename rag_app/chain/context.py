"""Formatting retrieved chunks for the model, and reading citations back from its answer."""

from __future__ import annotations

import html
import re
from collections.abc import Callable, Sequence
from dataclasses import replace

from langchain_core.documents import Document

from rag_app.chain.events import SourceRecord
from rag_app.ingest.tables import ROW_SEP

SNIPPET_CHARS = 240

# Any tag that could open or close our delimiters inside a document's own text.
_DELIMITER_TAG = re.compile(r"<(\s*/?\s*)(documents?\b)", re.IGNORECASE)
# [1], [1, 2], [1][3], [doc 2], [Document 3; 4]
_CITATION = re.compile(
    r"\[\s*((?:(?:doc(?:ument)?|source)\s*)?\d{1,3}(?:\s*[,;]\s*(?:(?:doc(?:ument)?|source)\s*)?\d{1,3})*)\s*\]",
    re.IGNORECASE,
)
_NUMBER = re.compile(r"\d{1,3}")


def to_source(n: int, doc: Document) -> SourceRecord:
    meta = dict(doc.metadata or {})
    score = meta.pop("score", None)
    passage = meta.pop("passage_score", None)
    chunk_id = str(meta.pop("chunk_id", None) or doc.id or "")
    snippet = " ".join(doc.page_content.split())
    if len(snippet) > SNIPPET_CHARS:
        snippet = snippet[: SNIPPET_CHARS - 1] + "…"
    return SourceRecord(
        n=n,
        id=chunk_id,
        title=str(meta.get("title") or ""),
        source=str(meta.get("source") or ""),
        snippet=snippet,
        score=float(score) if isinstance(score, int | float) else None,
        metadata=meta,
        text=doc.page_content,
        passage_score=float(passage)
        if isinstance(passage, int | float)
        else (float(score) if isinstance(score, int | float) else None),
    )


def neutralise(text: str) -> str:
    """Document text cannot open or close a <document> delimiter of its own."""
    return _DELIMITER_TAG.sub(lambda m: "&lt;" + m.group(1) + m.group(2), text)


def format_document(source: SourceRecord) -> str:
    """One passage for the model: its number, its document's title as the first line (so
    that passages of different documents are not confused), then the text it may read."""
    where = html.escape(source.source, quote=True)
    title = neutralise(" ".join(source.title.split())) or "(untitled)"
    text = (source.text if source.excerpt is None else source.excerpt).strip()
    if source.title and text.startswith(source.title + ROW_SEP):
        text = text[len(source.title + ROW_SEP) :]  # a table row's chunk repeats the title
    body = neutralise(text)
    return f'<document id="{source.n}" source="{where}">\nTitle: {title}\n{body}\n</document>'


def format_context(sources: Sequence[SourceRecord]) -> str:
    """The passages the model reads (a passage whose excerpt is empty is left out; its
    number is kept by the others)."""
    return "\n\n".join(format_document(s) for s in sources if s.excerpt != "")


def fit_sources(
    docs: Sequence[Document],
    *,
    budget_tokens: int,
    count_tokens: Callable[[str], int],
) -> list[SourceRecord]:
    """Number the retrieved chunks 1..n in rank order, keeping as many as fit in the budget
    (always at least the first)."""
    kept: list[SourceRecord] = []
    used = 0
    for doc in docs:
        record = to_source(len(kept) + 1, doc)
        cost = count_tokens(format_document(record)) + 4
        if kept and used + cost > budget_tokens:
            break
        kept.append(record)
        used += cost
    return kept


def renumber(sources: Sequence[SourceRecord]) -> list[SourceRecord]:
    """The passages the model reads (those whose excerpt is not empty), numbered 1..n."""
    kept = [s for s in sources if s.excerpt != ""]
    return [s if s.n == n else replace(s, n=n) for n, s in enumerate(kept, start=1)]


def citations(answer: str, valid: int) -> list[int]:
    """Source numbers cited in `answer` (1..valid), in order of first citation."""
    seen: list[int] = []
    for match in _CITATION.finditer(answer):
        for number in _NUMBER.findall(match.group(1)):
            n = int(number)
            if 1 <= n <= valid and n not in seen:
                seen.append(n)
    return seen


def _normalise(text: str) -> str:
    text = text.lower().replace("’", "'").replace("‘", "'")
    text = re.sub(r"[^\w' ]+", " ", text)
    return " ".join(text.split())


def is_refusal(answer: str, phrase: str, cited: Sequence[int]) -> bool:
    """The answer is the no-answer phrase: it contains the phrase (or starts with its first
    four words) and cites nothing."""
    if cited:
        return False
    said = _normalise(answer)
    wanted = _normalise(phrase)
    if not said or not wanted:
        return False
    lead = " ".join(wanted.split()[:4])
    return wanted in said or said.startswith(lead)
