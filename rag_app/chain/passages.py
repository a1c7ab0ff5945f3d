"""From retrieved chunks to the passages a chat turn shows the model: table rows of one table
merged into one passage, and no more than a few passages per document before other
documents get a turn.

Retrieval ranks chunks by their document's fused score first (document-level fusion, see
`rag_app.retrieval.hybrid`), so the top five chunks of a question about a table are often
five rows of that one table, and the document that says the rest of the answer never reaches
the model ("What merit increase did I get?" filled with the manager guide's merit table; the
employee's own review sixth). The chat service therefore retrieves `FETCH_FACTOR` times the
passages it will show and arranges them:

1. rows of the same table (chunks with ``chunk_kind=table_row`` from one document, with the
   same title and caption prefix) become one passage, at the rank of its best row, with its
   rows as list items in table order (at most `MAX_ROWS`, the best ones);
2. passages are taken in rank order, at most `PER_DOCUMENT` per document; the passages left
   over fill the remaining places in rank order.

Nothing here widens what a user can read: it only regroups and reorders chunks the
permission-aware retriever already returned.
"""

from __future__ import annotations

from collections.abc import Sequence

from langchain_core.documents import Document

from rag_app.ingest.tables import ROW_SEP, TABLE_ROW, split_row_text

FETCH_FACTOR = 6  # chunks retrieved per passage asked for (k)
PASSAGE_FACTOR = 2  # passages given to sentence selection per passage asked for
MAX_ROWS = 12
PER_DOCUMENT = 4


def _document(doc: Document) -> str:
    meta = doc.metadata or {}
    return str(meta.get("source") or meta.get("doc_id") or meta.get("title") or doc.id or "")


def _without_title(prefix: str, title: str) -> str:
    if title and (prefix == title or prefix.startswith(title + ROW_SEP)):
        return prefix[len(title) :].removeprefix(ROW_SEP)
    return prefix


def _score(doc: Document, key: str) -> float:
    value = (doc.metadata or {}).get(key)
    return float(value) if isinstance(value, int | float) else float("-inf")


def merge_rows(rows: Sequence[Document]) -> Document:
    """One passage for rows of one table (given best first): the caption once, then a list
    item per row in table order; the best row's id and metadata, the best scores."""
    best = rows[0]
    meta = dict(best.metadata or {})
    kept = list(rows[:MAX_ROWS])
    kept.sort(key=lambda d: (d.metadata or {}).get("chunk_index", 0))
    prefix, _ = split_row_text(best.page_content)
    caption = _without_title(prefix, str(meta.get("title") or ""))
    lines = [f"## {caption}"] if caption else []
    lines += [f"- {split_row_text(d.page_content)[1]}" for d in kept]
    for key in ("score", "passage_score"):
        scores = [_score(d, key) for d in rows]
        if max(scores) > float("-inf"):
            meta[key] = max(scores)
    meta["merged_chunks"] = [str((d.metadata or {}).get("chunk_id") or d.id or "") for d in kept]
    return Document(page_content="\n".join(lines), metadata=meta, id=best.id)


def arrange(docs: Sequence[Document], k: int) -> list[Document]:
    """`k` passages from `docs` (ranked best first): table rows merged per table, then at
    most `PER_DOCUMENT` passages per document before the rest (see the module doc)."""
    groups: dict[tuple[str, str], list[Document]] = {}
    order: list[tuple[str, str] | int] = []
    for i, doc in enumerate(docs):
        if (doc.metadata or {}).get("chunk_kind") == TABLE_ROW:
            key = (_document(doc), split_row_text(doc.page_content)[0])
            if key not in groups:
                groups[key] = []
                order.append(key)
            groups[key].append(doc)
        else:
            order.append(i)
    passages = [
        (merge_rows(groups[item]) if len(groups[item]) > 1 else groups[item][0])
        if isinstance(item, tuple)
        else docs[item]
        for item in order
    ]
    chosen: list[int] = []
    per_document: dict[str, int] = {}
    for i, passage in enumerate(passages):
        name = _document(passage)
        if per_document.get(name, 0) < PER_DOCUMENT:
            per_document[name] = per_document.get(name, 0) + 1
            chosen.append(i)
    rest = [i for i in range(len(passages)) if i not in set(chosen)]
    picked = sorted(chosen[:k] + rest[: max(0, k - len(chosen))])
    return [passages[i] for i in picked]


__all__ = ["FETCH_FACTOR", "PASSAGE_FACTOR", "arrange", "merge_rows"]
