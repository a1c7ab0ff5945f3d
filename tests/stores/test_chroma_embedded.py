"""Embedded Chroma (`PersistentClient`) against the store spec."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from rag_app.access.filters import matches
from rag_app.stores.base import VectorStorePort
from rag_app.stores.chroma import ChromaStore, _in_tenant, translate
from tests.conformance.store_conformance import StoreConformance
from tests.stores.chroma_known_failures import CHROMA_KNOWN_FAILURES


class TestChromaEmbedded(StoreConformance):
    known_failures = CHROMA_KNOWN_FAILURES

    @pytest.fixture(scope="class")
    @classmethod
    def store_factory(
        cls, tmp_path_factory: pytest.TempPathFactory
    ) -> Iterator[Callable[[int], VectorStorePort]]:
        root = tmp_path_factory.mktemp("chroma-embedded")
        opened: list[ChromaStore] = []

        def factory(dimension: int) -> VectorStorePort:
            store = ChromaStore(
                path=root / "chroma",
                collection=f"c{len(opened):04d}-d{dimension}",
                dimension=dimension,
                embedding_model="fake",
            )
            opened.append(store)
            return store

        yield factory
        for store in opened:
            store.close()

    @pytest.fixture
    def reopen_store(self) -> Callable[..., VectorStorePort]:
        def reopen(
            store: VectorStorePort,
            *,
            dimension: int | None = None,
            embedding_model: str | None = None,
        ) -> VectorStorePort:
            return ChromaStore(
                path=Path(store.info.location),
                collection=store.info.collection,
                dimension=dimension or store.info.dimension,
                embedding_model=embedding_model or store.info.embedding_model,
            )

        return reopen


def test_a_filtered_query_skips_chromas_filter_only_when_that_gives_the_same_hits(tmp_path):
    """`ChromaStore.query` first looks deeper without the filter and filters the hits itself;
    the result must equal Chroma's own filtered query, for broad and narrow filters."""
    import random

    from rag_app.access.filters import Cmp

    rng = random.Random(3)
    store = ChromaStore(path=tmp_path, collection="opt", dimension=8, embedding_model="fake")
    n = 400
    vectors = [[rng.gauss(0, 1) for _ in range(8)] for _ in range(n)]
    groups = ["public"] * 90 + ["rare"] * 2 + ["hr"] * 8  # public 90%, rare 2%
    metas = [{"tenant": "t", "acl": [groups[i % 100]], "year": 2000 + i % 20} for i in range(n)]
    store.upsert([f"id{i}" for i in range(n)], [f"text {i}" for i in range(n)], vectors, metas)
    calls: list[bool] = []  # True: Chroma's own where filter was used
    real = store._collection.query

    def spy(**kwargs):
        calls.append("where" in kwargs)
        return real(**kwargs)

    store._collection.query = spy  # type: ignore[method-assign]
    for where in (
        Cmp("acl", "$contains", "public"),  # broad: no Chroma filter needed
        Cmp("acl", "$contains", "rare"),  # narrow: Chroma's filter
        Cmp("year", "$gte", 2010),
    ):
        for q in range(5):
            query = [rng.gauss(0, 1) for _ in range(8)]
            calls.clear()
            got = store.query(query, 10, where, tenant="t")
            used = list(calls)
            expected = store._query(query, 10, translate(_in_tenant(where, "t")))
            assert [h.id for h in got] == [h.id for h in expected]
            assert all(matches(_in_tenant(where, "t"), h.metadata) for h in got)
            if where.value == "public":
                assert used == [False]
            if where.value == "rare":
                # tried once without the filter, then remembered as narrow
                assert used == ([False, True] if q == 0 else [True])
    store.close()


def test_a_scan_reads_by_id_and_leaves_out_records_changed_to_no_longer_match(tmp_path):
    """`records(where)` lists the matching ids, then reads them a page at a time by id (not by
    offset: quadratic). A record changed between the two no longer matches and is left out,
    so a delete by filter never removes more than its filter says."""
    from rag_app.access.filters import parse_filter
    from rag_app.stores import chroma as chroma_module

    store = ChromaStore(path=tmp_path / "c", collection="scan", dimension=2, embedding_model="f")
    n = 2500  # three pages
    store.upsert(
        [f"r{i}" for i in range(n)],
        [f"t{i}" for i in range(n)],
        [[1.0, float(i % 5)] for i in range(n)],
        [{"team": "hr", "n": i} for i in range(n)],
    )
    real = store._collection
    calls: list[dict] = []

    class Racing:
        def __getattr__(self, name):
            return getattr(real, name)

        def get(self, **kwargs):
            calls.append(kwargs)
            res = real.get(**kwargs)
            if len(calls) == 1:  # the id listing: another writer moves r2400 to another team
                real.update(ids=["r2400"], metadatas=[{"team": "eng", "n": 2400}])
            return res

    store._collection = Racing()
    got = [r.id for r in store.records(parse_filter({"team": "hr"}))]
    store._collection = real
    assert "r2400" not in got and len(got) == n - 1 and len(set(got)) == n - 1
    assert calls[0]["include"] == [] and "offset" not in calls[0]
    assert [len(c["ids"]) for c in calls[1:]] == [chroma_module._PAGE] * 2 + [n - 2000]
    assert all("offset" not in c and "where" not in c for c in calls[1:])
