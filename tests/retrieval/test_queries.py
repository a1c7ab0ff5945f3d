"""Query embeddings cached per text and computed in batches (rag_app.retrieval.queries)."""

from __future__ import annotations

from typing import Any

from rag_app.retrieval.queries import QueryVectors
from tests.fakes import HashEmbeddings


class Counting(HashEmbeddings):
    """Hash embeddings that count single and batched query calls."""

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self.single: list[str] = []
        self.batches: list[list[str]] = []

    def embed_query(self, text: str) -> list[float]:
        self.single.append(text)
        return super().embed_query(text)

    def embed_queries(self, texts: list[str]) -> list[list[float]]:
        self.batches.append(list(texts))
        return [super(Counting, self).embed_query(t) for t in texts]


def test_a_text_is_embedded_once_and_the_cached_vector_is_the_same():
    model = Counting(dimension=8)
    vectors = QueryVectors(model)
    first = vectors("parental leave")
    assert vectors("parental leave") == first == model.embed_query("parental leave")
    assert model.single.count("parental leave") == 2  # ours once, the check above once
    assert vectors.computed == 1


def test_prime_embeds_what_is_missing_in_batches():
    model = Counting(dimension=8)
    vectors = QueryVectors(model, batch=3)
    vectors("q0")
    vectors.prime([f"q{i}" for i in range(7)] + ["q1"])
    assert model.batches == [["q1", "q2", "q3"], ["q4", "q5", "q6"]]
    for i in range(7):
        assert vectors(f"q{i}") == model.embed_query(f"q{i}")
    assert model.single.count("q3") == 1  # only the comparison above: the search used the cache


def test_the_cache_is_bounded_and_forgets_the_least_recently_used():
    model = Counting(dimension=8)
    vectors = QueryVectors(model, size=2)
    vectors("a"), vectors("b"), vectors("a"), vectors("c")
    assert len(vectors) == 2
    vectors("a")  # still cached (used after b)
    vectors("b")  # evicted: embedded again
    assert model.single == ["a", "b", "c", "b"]
    # a model without a batch call is asked one query at a time
    plain = QueryVectors(HashEmbeddings(dimension=8))
    plain.prime(["x", "y"])
    assert len(plain) == 2 and plain.computed == 2


def test_the_apps_searchers_share_one_cache_even_when_built_before_it_was_filled(tmp_path):
    # an empty cache is falsy (len 0): it must still be the one the searchers use
    from rag_app.app import App
    from rag_app.settings import Settings

    app = App(Settings(data_dir=tmp_path), embeddings=HashEmbeddings(dimension=8))
    dense = app.search.raw
    assert dense.vectors is app.query_vectors
    app.query_vectors.prime(["a question"])
    before = app.query_vectors.computed
    dense.vectors("a question")
    assert app.query_vectors.computed == before
