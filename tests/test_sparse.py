"""The sparse encoder used for native sparse-dense hybrid search."""

from __future__ import annotations

from rag_app.sparse import Analyzer, SparseEncoder


def dot(a: dict, b: dict) -> float:
    lookup = dict(zip(a["indices"], a["values"], strict=True))
    return sum(v * lookup.get(i, 0.0) for i, v in zip(b["indices"], b["values"], strict=True))


def test_sparse_vectors_score_like_bm25_without_idf() -> None:
    enc = SparseEncoder()
    doc = enc.encode_document("Parental leave: parental leave lasts twenty weeks")
    assert doc["indices"] == sorted(doc["indices"]) and len(doc["indices"]) == len(doc["values"])
    query = enc.encode_query("How long is parental leave?")
    other = enc.encode_document("Travel expenses and hotel limits")
    assert dot(doc, query) > 0 and dot(other, query) == 0
    # term frequency saturates: twice the term is worth less than twice the weight
    once = enc.encode_document("leave")
    twice = enc.encode_document("leave leave")
    assert max(once["values"]) < max(twice["values"]) < 2 * max(once["values"])
    # the same analysis as BM25 (stems, stopwords): "running" matches "runs"
    assert dot(enc.encode_document("she runs daily"), enc.encode_query("running")) > 0
    assert enc.encode_query("the of and") == {"indices": [], "values": []}
    assert SparseEncoder(Analyzer()).encode_query("leave") == enc.encode_query("leave")
