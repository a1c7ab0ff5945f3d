"""Arranging retrieved chunks into the passages a chat turn shows: table rows merged per
table, a cap per document before other documents get a place."""

from __future__ import annotations

from langchain_core.documents import Document

from rag_app.chain.passages import PER_DOCUMENT, arrange, merge_rows

TITLE = "Expenses Policy"


def row(source: str, sentence: str, index: int, score: float, caption: str = "Hotels") -> Document:
    return Document(
        page_content=f"{TITLE} — {caption} — {sentence}",
        metadata={
            "source": source,
            "title": TITLE,
            "chunk_kind": "table_row",
            "chunk_index": index,
            "chunk_id": f"{source}#{index}",
            "score": score,
            "passage_score": score,
        },
    )


def chunk(source: str, text: str, index: int = 0) -> Document:
    return Document(
        page_content=text,
        metadata={
            "source": source,
            "title": source,
            "chunk_index": index,
            "chunk_id": f"{source}#{index}",
        },
    )


def test_rows_of_one_table_become_one_passage_in_table_order_with_the_best_score():
    rows = [
        row("policy.md", "Rest of UK: maximum per night 130 GBP", 11, 0.9),
        row("policy.md", "London: maximum per night 180 GBP", 10, 0.7),
    ]
    merged = merge_rows(rows)
    assert merged.page_content == (
        "## Hotels\n- London: maximum per night 180 GBP\n- Rest of UK: maximum per night 130 GBP"
    )
    assert merged.metadata["score"] == 0.9 and merged.metadata["passage_score"] == 0.9
    assert merged.metadata["merged_chunks"] == ["policy.md#10", "policy.md#11"]


def test_arrange_merges_rows_per_table_and_keeps_rank_order():
    docs = [
        row("policy.md", "London: 180 GBP", 10, 0.9),
        chunk("policy.md", "## Hotels\n| Location | Max |", 2),
        row("policy.md", "Rest of UK: 130 GBP", 11, 0.8),
        row("policy.md", "Economy class only", 20, 0.7, caption="Flights"),
        chunk("other.md", "Something else"),
    ]
    out = arrange(docs, 10)
    assert [d.page_content.splitlines()[0] for d in out] == [
        "## Hotels",
        "## Hotels",
        "Expenses Policy — Flights — Economy class only",  # a lone row stays as it is
        "Something else",
    ]
    assert out[0].page_content.count("\n- ") == 2


def test_arrange_gives_other_documents_a_place_before_a_documents_later_chunks():
    docs = [chunk("big.md", f"part {i}", i) for i in range(PER_DOCUMENT + 3)]
    docs.append(chunk("small.md", "the answer"))
    out = arrange(docs, PER_DOCUMENT + 1)
    assert [d.metadata["source"] for d in out].count("big.md") == PER_DOCUMENT
    assert out[-1].page_content == "the answer"
    # with room for everything, nothing is dropped and rank order is kept
    assert arrange(docs, 100) == docs
