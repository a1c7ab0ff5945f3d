"""The written spec of a vector store adapter (`rag_app.stores.base.VectorStorePort`).

Each adapter's test module subclasses `StoreConformance` and provides two fixtures:

* ``store_factory(dimension) -> VectorStorePort``: a fresh, empty store (a new collection)
  whose ``info.embedding_model`` is ``"fake"``. Class-scoped, so that the filter table can
  load its records once per adapter.
* ``reopen_store(store, *, dimension=None, embedding_model=None) -> VectorStorePort``: the
  same physical collection opened again (a new embedded client, or a second server client),
  with the given settings or the store's own.

An adapter that knowingly breaks a rule lists the test's node name in ``known_failures``
(name -> reason); such a test is a strict xfail, so it fails again as soon as the adapter is
fixed and the entry becomes stale.

Vectors are small and hand-made; no embedding model is involved.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping
from typing import Any, ClassVar, Protocol

import pytest

from rag_app.access.filters import matches, parse_filter
from rag_app.errors import ConfigError, DimensionMismatchError, StoreError
from rag_app.stores.base import StoreHit, StoreRecord, VectorStorePort

StoreFactory = Callable[[int], VectorStorePort]


class ReopenStore(Protocol):
    def __call__(
        self,
        store: VectorStorePort,
        *,
        dimension: int | None = None,
        embedding_model: str | None = None,
    ) -> VectorStorePort: ...


def unit(*xs: float) -> list[float]:
    norm = math.sqrt(sum(x * x for x in xs))
    return [x / norm for x in xs]


def ids_of(items: Iterator[StoreRecord] | list[StoreHit] | list[StoreRecord]) -> set[str]:
    return {item.id for item in items}


# -- the filter table ----------------------------------------------------------------------
# Metadata deliberately mixes types across records of one field (int/float/bool), lacks
# fields, and holds lists, so that every rule of the grammar's semantics is exercised.
FILTER_RECORDS: dict[str, dict[str, Any]] = {
    "d00": {
        "category": "hr",
        "year": 2020,
        "score": 0.5,
        "draft": False,
        "tags": ["policy", "leave"],
        "nums": [1, 2],
        "created_at": 1704067200,
        "level": 1,
    },
    "d01": {
        "category": "eng",
        "year": 2021,
        "score": 2.0,
        "draft": True,
        "tags": ["design"],
        "nums": [3],
        "created_at": 1718452800,
        "level": True,
    },
    "d02": {
        "category": "hr",
        "year": 2022,
        "score": 1.0,
        "draft": False,
        "tags": ["policy"],
        "created_at": 1704067199,
        "level": 1.0,
    },
    "d03": {"category": "ops", "year": 2019, "draft": True, "nums": [2], "level": 0},
    "d04": {"category": "eng", "level": False},
    "d05": {"category": "HR", "year": 2021.0, "score": 3, "tags": ["leave", "design"]},
    "d06": {"year": 2023, "title": "only title"},
    "d07": {
        "category": "hr",
        "year": 2024,
        "score": -1.5,
        "draft": False,
        "tags": ["policy", "design"],
        "nums": [5, 1],
        "created_at": 1738368000,
        "level": 2,
    },
    "d08": {"category": "", "year": 0, "score": 0.0, "draft": True},
    "d09": {"note": "x"},
    "d10": {"category": "eng", "year": 2020, "score": 2.5, "tags": ["Policy"]},
}
ALL = frozenset(FILTER_RECORDS)


def _ids(text: str) -> frozenset[str]:
    return frozenset(text.split())


def case(raw: dict[str, Any], expected: frozenset[str], case_id: str) -> Any:
    return pytest.param(raw, expected, id=case_id)


FILTER_CASES = [
    case({"category": "hr"}, _ids("d00 d02 d07"), "eq-str"),
    case({"category": "HR"}, _ids("d05"), "eq-str-case-sensitive"),
    case({"category": ""}, _ids("d08"), "eq-empty-str"),
    case({"category": {"$ne": "hr"}}, ALL - _ids("d00 d02 d07"), "ne-str-true-for-missing"),
    case({"year": 2021}, _ids("d01 d05"), "eq-int-matches-integral-float"),
    case({"year": {"$gt": 2020}}, _ids("d01 d02 d05 d06 d07"), "gt-int"),
    case({"year": {"$gte": 2020, "$lt": 2023}}, _ids("d00 d01 d02 d05 d10"), "gte-lt-range"),
    case({"score": {"$lte": 1.0}}, _ids("d00 d02 d07 d08"), "lte-float"),
    case({"score": {"$gt": 2}}, _ids("d05 d10"), "gt-int-on-mixed-numbers"),
    case({"score": {"$lt": 0}}, _ids("d07"), "lt-zero-boundary"),
    case({"category": {"$in": ["hr", "ops"]}}, _ids("d00 d02 d03 d07"), "in-str"),
    case(
        {"category": {"$nin": ["hr", "eng"]}},
        _ids("d03 d05 d06 d08 d09"),
        "nin-str-true-for-missing",
    ),
    case({"year": {"$in": [2020, 2021.0]}}, _ids("d00 d01 d05 d10"), "in-int-and-float"),
    case({"score": {"$in": [1, 2]}}, _ids("d01 d02"), "in-int-on-float-values"),
    case({"year": {"$in": [2019, 2021.5]}}, _ids("d03"), "in-nonintegral-float-on-int"),
    case({"year": {"$gte": 2021.5}}, _ids("d02 d06 d07"), "gte-nonintegral-float-on-int"),
    case({"year": {"$ne": 2021.5}}, ALL, "ne-nonintegral-float-on-int"),
    case({"draft": True}, _ids("d01 d03 d08"), "eq-true"),
    case({"draft": False}, _ids("d00 d02 d07"), "eq-false"),
    case({"level": True}, _ids("d01"), "true-is-not-1"),
    case({"level": 1}, _ids("d00 d02"), "1-is-not-true"),
    case({"level": 0}, _ids("d03"), "0-is-not-false"),
    case({"level": {"$ne": True}}, ALL - _ids("d01"), "ne-true"),
    case({"level": {"$in": [False]}}, _ids("d04"), "in-false"),
    case({"level": {"$nin": [1]}}, ALL - _ids("d00 d02"), "nin-1-keeps-true"),
    case({"draft": 1}, frozenset(), "int-on-bool-field"),
    case({"year": False}, frozenset(), "false-on-int-field"),
    case({"tags": {"$contains": "policy"}}, _ids("d00 d02 d07"), "contains-str"),
    case({"nums": {"$contains": 1}}, _ids("d00 d07"), "contains-int"),
    case({"tags": "policy"}, frozenset(), "eq-scalar-on-list-field"),
    case({"tags": {"$ne": "policy"}}, ALL, "ne-scalar-on-list-field"),
    case({"created_at": {"$gte": "2024-01-01"}}, _ids("d00 d01 d07"), "date-gte-iso"),
    case(
        {"created_at": {"$gt": "2023-12-31", "$lt": "2024-06-15T12:00:00Z"}},
        _ids("d00 d02"),
        "date-range-iso",
    ),
    case({"absent": {"$gt": 0}}, frozenset(), "missing-field-gt"),
    case({"absent": {"$ne": 1}}, ALL, "missing-field-ne"),
    case({"absent": {"$nin": ["a"]}}, ALL, "missing-field-nin"),
    case(
        {
            "$and": [
                {"category": "hr"},
                {"$or": [{"year": {"$lt": 2021}}, {"tags": {"$contains": "design"}}]},
            ]
        },
        _ids("d00 d07"),
        "and-of-or",
    ),
    case(
        {"$or": [{"category": "ops"}, {"draft": False, "year": {"$gte": 2022}}]},
        _ids("d02 d03 d07"),
        "or-of-implicit-and",
    ),
    case({"$or": [{"title": {"$ne": "only title"}}, {"year": 2023}]}, ALL, "or-of-ne-and-eq"),
    case(
        {
            "$or": [
                {
                    "$and": [
                        {"level": {"$gte": 1}},
                        {"$or": [{"nums": {"$contains": 5}}, {"category": "hr"}]},
                    ]
                },
                {"$and": [{"category": "eng"}, {"year": {"$nin": [2021]}}]},
            ]
        },
        _ids("d00 d02 d04 d07 d10"),
        "deep-nesting-bool-not-in-range",
    ),
    case({"score": {"$gt": 0, "$ne": 2.5}}, _ids("d00 d01 d02 d05"), "two-ops-one-field"),
]


class StoreConformance:
    """Mixin: every VectorStorePort adapter must pass these tests."""

    known_failures: ClassVar[Mapping[str, str]] = {}

    @pytest.fixture(autouse=True)
    def _mark_known_failures(self, request: pytest.FixtureRequest) -> None:
        reason = self.known_failures.get(request.node.name)
        if reason:
            request.node.add_marker(pytest.mark.xfail(reason=reason, strict=True))

    @pytest.fixture(scope="class")
    @classmethod
    def filter_store(cls, store_factory: StoreFactory) -> VectorStorePort:
        store = store_factory(4)
        ids = sorted(FILTER_RECORDS)
        store.upsert(
            ids,
            [f"text of {i}" for i in ids],
            [unit(1.0, n / 10, 0.5, (n % 3) / 5) for n in range(len(ids))],
            [FILTER_RECORDS[i] for i in ids],
        )
        return store

    # -- identity --------------------------------------------------------------------------
    def test_fresh_store_is_empty_and_describes_itself(self, store_factory: StoreFactory) -> None:
        store = store_factory(8)
        assert isinstance(store, VectorStorePort)
        assert store.count() == 0
        assert list(store.records()) == []
        assert store.query(unit(1, 0, 0, 0, 0, 0, 0, 0), 5, None) == []
        assert store.info.dimension == 8
        assert store.info.embedding_model == "fake"
        assert store.info.collection

    # -- writes and reads ------------------------------------------------------------------
    def test_upsert_then_query_round_trips_text_and_metadata(
        self, store_factory: StoreFactory
    ) -> None:
        store = store_factory(4)
        metadata = {
            "s": 'héllo ✓ "quoted"',
            "empty_s": "",
            "i": 42,
            "neg": -7,
            "epoch": 1_718_452_800,
            "f": 0.1,
            "f_integral": 2.0,
            "t": True,
            "fa": False,
            "zero": 0,
            "ls": ["a", "b", "a"],
            "li": [3, 1, 2],
        }
        store.upsert(["r1"], ["some text\nwith lines"], [[1.0, 0.0, 0.0, 0.0]], [metadata])
        (hit,) = store.query([1.0, 0.0, 0.0, 0.0], 3, None)
        assert hit.id == "r1"
        assert hit.text == "some text\nwith lines"
        assert hit.metadata == metadata
        for key, value in metadata.items():
            assert type(hit.metadata[key]) is type(value), key
            if isinstance(value, list):
                assert [type(v) for v in hit.metadata[key]] == [type(v) for v in value], key
        assert hit.score == pytest.approx(1.0, abs=1e-4)
        (record,) = store.records(with_text=True)
        assert (record.id, record.text, record.metadata) == ("r1", hit.text, metadata)

    def test_scores_are_cosine_similarities_in_descending_order(
        self, store_factory: StoreFactory
    ) -> None:
        store = store_factory(4)
        vectors = {
            "same": [1.0, 0.0, 0.0, 0.0],
            "scaled": [5.0, 0.0, 0.0, 0.0],  # cosine ignores length
            "diagonal": [1.0, 1.0, 0.0, 0.0],
            "near": [1.0, 0.2, 0.0, 0.0],
            "orthogonal": [0.0, 0.0, 1.0, 0.0],
            "opposite": [-1.0, 0.0, 0.0, 0.0],
        }
        ids = list(vectors)
        store.upsert(ids, ids, list(vectors.values()), [{"n": n} for n in range(len(ids))])
        hits = store.query([2.0, 0.0, 0.0, 0.0], 10, None)
        scores = {h.id: h.score for h in hits}
        assert set(scores) == set(ids)
        expected = {
            "same": 1.0,
            "scaled": 1.0,
            "diagonal": math.sqrt(0.5),
            "near": 1 / math.sqrt(1.04),
            "orthogonal": 0.0,
            "opposite": -1.0,
        }
        for key, value in expected.items():
            assert scores[key] == pytest.approx(value, abs=1e-3), key
        listed = [h.score for h in hits]
        assert listed == sorted(listed, reverse=True)
        assert [h.id for h in hits][2:] == ["near", "diagonal", "orthogonal", "opposite"]
        assert all(h.text == h.id for h in hits)

    def test_query_returns_the_k_nearest(self, store_factory: StoreFactory) -> None:
        store = store_factory(4)
        ids = [f"r{n}" for n in range(10)]
        # r0 is nearest to the query, r9 farthest (angle grows with n).
        vectors = [[math.cos(n / 5), math.sin(n / 5), 0.0, 0.0] for n in range(10)]
        store.upsert(ids, ids, vectors, [{"n": n} for n in range(10)])
        assert [h.id for h in store.query([1.0, 0.0, 0.0, 0.0], 3, None)] == ["r0", "r1", "r2"]
        assert len(store.query([1.0, 0.0, 0.0, 0.0], 1, None)) == 1
        assert len(store.query([1.0, 0.0, 0.0, 0.0], 100, None)) == 10

    def test_upsert_is_idempotent_by_id(self, store_factory: StoreFactory) -> None:
        store = store_factory(4)
        store.upsert(["a", "b"], ["old a", "b"], [[1, 0, 0, 0], [0, 1, 0, 0]], [{"v": 1}, {"v": 1}])
        store.upsert(["a"], ["new a"], [[0, 0, 1, 0]], [{"v": 2}])
        store.upsert(["a"], ["new a"], [[0, 0, 1, 0]], [{"v": 2}])
        assert store.count() == 2
        records = {r.id: r for r in store.records(with_text=True)}
        assert records["a"].text == "new a"
        assert records["a"].metadata["v"] == 2
        (hit,) = store.query([0, 0, 1, 0], 1, None)
        assert (hit.id, hit.text) == ("a", "new a")
        assert hit.score == pytest.approx(1.0, abs=1e-4)

    def test_upsert_replaces_metadata_instead_of_merging(self, store_factory: StoreFactory) -> None:
        store = store_factory(4)
        store.upsert(["a"], ["t"], [[1, 0, 0, 0]], [{"v": 1, "category": "hr"}])
        store.upsert(["a"], ["t"], [[1, 0, 0, 0]], [{"v": 2}])
        (record,) = store.records()
        assert record.metadata == {"v": 2}
        assert list(store.records(parse_filter({"category": "hr"}))) == []

    def test_upsert_rejects_sequences_of_different_lengths(
        self, store_factory: StoreFactory
    ) -> None:
        store = store_factory(4)
        with pytest.raises(StoreError):
            store.upsert(["a", "b"], ["t"], [[1, 0, 0, 0]], [{"v": 1}])
        assert store.count() == 0

    def test_delete_by_ids_ignores_unknown_ids(self, store_factory: StoreFactory) -> None:
        store = store_factory(4)
        store.upsert(["a", "b", "c"], ["a", "b", "c"], [[1, 0, 0, 0]] * 3, [{"v": 1}] * 3)
        store.delete(["a", "does-not-exist"])
        store.delete([])
        store.delete(["never-there"])
        assert store.count() == 2
        assert ids_of(store.records()) == {"b", "c"}
        assert ids_of(store.query([1, 0, 0, 0], 10, None)) == {"b", "c"}
        store.delete(["b", "c"])
        assert store.count() == 0

    def test_get_returns_the_current_records_of_existing_ids(
        self, store_factory: StoreFactory
    ) -> None:
        store = store_factory(4)
        store.upsert(["a", "b"], ["ta", "tb"], [[1, 0, 0, 0]] * 2, [{"v": 1}, {"v": 2}])
        store.upsert(["a"], ["ta2"], [[1, 0, 0, 0]], [{"v": 3}])
        got = {r.id: (r.text, r.metadata) for r in store.get(["a", "b", "gone", "a"])}
        assert got == {"a": ("ta2", {"v": 3}), "b": ("tb", {"v": 2})}
        store.delete(["b"])
        assert [r.id for r in store.get(["b"])] == []
        assert store.get([]) == []

    def test_every_write_changes_the_token_seen_by_another_client(
        self, store_factory: StoreFactory, reopen_store: ReopenStore
    ) -> None:
        store = store_factory(4)
        other = reopen_store(store)  # another process / host on the same collection
        seen = {store.change_token()}
        store.upsert(["a"], ["t"], [[1, 0, 0, 0]], [{"v": 1}])
        assert other.change_token() not in seen
        seen.add(other.change_token())
        assert store.change_token() == other.change_token()
        store.upsert(["a"], ["t"], [[1, 0, 0, 0]], [{"v": 2}])  # same id, new metadata
        assert other.change_token() not in seen
        seen.add(other.change_token())
        store.delete(["a"])
        assert other.change_token() not in seen
        seen.add(other.change_token())
        token = other.change_token()
        assert other.count() == 0 and other.change_token() == token  # reads change nothing
        store.delete([])  # nothing deleted: no change
        assert other.change_token() == token

    # -- tenants -----------------------------------------------------------------------------
    def _two_tenants(self, store_factory: StoreFactory) -> VectorStorePort:
        store = store_factory(4)
        store.upsert(
            ["a1", "a2", "b1"],
            ["alpha one", "alpha two", "beta one"],
            [[1, 0, 0, 0], [0.9, 0.1, 0, 0], [1, 0, 0, 0]],
            [
                {"tenant": "acme", "acl": ["public"], "n": 1},
                {"tenant": "acme", "acl": ["group:hr"], "n": 2},
                {"tenant": "globex", "acl": ["public"], "n": 3},
            ],
        )
        return store

    def test_reads_for_a_tenant_see_only_that_tenant(self, store_factory: StoreFactory) -> None:
        store = self._two_tenants(store_factory)
        assert [h.id for h in store.query([1, 0, 0, 0], 10, None, tenant="acme")] == ["a1", "a2"]
        assert [h.id for h in store.query([1, 0, 0, 0], 10, None, tenant="globex")] == ["b1"]
        assert store.query([1, 0, 0, 0], 10, None, tenant="initech") == []
        narrowed = store.query([1, 0, 0, 0], 10, parse_filter({"n": {"$gte": 2}}), tenant="acme")
        assert [h.id for h in narrowed] == ["a2"]
        assert store.count(tenant="acme") == 2 and store.count(tenant="globex") == 1
        assert store.count(tenant="initech") == 0 and store.count() == 3
        assert ids_of(store.records(tenant="acme")) == {"a1", "a2"}  # type: ignore[attr-defined]
        assert ids_of(store.records()) == {"a1", "a2", "b1"}  # type: ignore[attr-defined]
        got = {r.id: r.metadata for r in store.get(["a1", "b1"], tenant="acme")}
        assert got["a1"]["tenant"] == "acme"
        # a store without partitions may return another tenant's record, but never as acme's
        assert got.get("b1", {"tenant": "globex"})["tenant"] == "globex"

    def test_delete_without_a_tenant_finds_every_tenant(self, store_factory: StoreFactory) -> None:
        store = self._two_tenants(store_factory)
        store.delete(["a2", "b1"])
        assert ids_of(store.records()) == {"a1"}  # type: ignore[attr-defined]
        assert store.count(tenant="globex") == 0
        store.delete(["a1"], tenant="globex")  # names another tenant: nothing happens
        assert store.count(tenant="acme") == 1
        store.delete(["a1"], tenant="acme")
        assert store.count() == 0

    def test_records_iterates_every_record_across_pages(self, store_factory: StoreFactory) -> None:
        store = store_factory(4)
        n = 1200  # more than one page of Chroma's adapter (1000)
        ids = [f"rec-{i:04d}" for i in range(n)]
        store.upsert(
            ids,
            [f"text {i}" for i in range(n)],
            [[1.0, float(i % 7), float(i % 11), float(i % 13) + 1] for i in range(n)],
            [{"n": i, "parity": "even" if i % 2 == 0 else "odd"} for i in range(n)],
        )
        assert store.count() == n
        plain = list(store.records())
        assert len(plain) == n
        assert {r.id for r in plain} == set(ids)
        assert all(r.text is None for r in plain)
        assert all(r.metadata["n"] == int(r.id[4:]) for r in plain)

        texts = {r.id: r.text for r in store.records(with_text=True)}
        assert texts == {f"rec-{i:04d}": f"text {i}" for i in range(n)}

        filtered = list(store.records(parse_filter({"n": {"$gte": 100}})))
        assert {r.id for r in filtered} == set(ids[100:])
        assert len(filtered) == n - 100
        odd = ids_of(store.records(parse_filter({"parity": "odd", "n": {"$lt": 10}})))
        assert odd == {f"rec-{i:04d}" for i in (1, 3, 5, 7, 9)}

    # -- filters ---------------------------------------------------------------------------
    @pytest.mark.parametrize(("raw", "expected"), FILTER_CASES)
    def test_filter_matches_the_reference_semantics(
        self, filter_store: VectorStorePort, raw: dict[str, Any], expected: frozenset[str]
    ) -> None:
        node = parse_filter(raw, date_fields=["created_at"])
        assert node is not None
        reference = {i for i, meta in FILTER_RECORDS.items() if matches(node, meta)}
        assert reference == expected, "the table disagrees with rag_app.access.filters"
        for via, got in (
            ("records", ids_of(filter_store.records(node))),
            ("query", ids_of(filter_store.query(unit(1, 0.3, 0.5, 0.1), 100, node))),
        ):
            extra, missing = sorted(got - expected), sorted(expected - got)
            assert not (extra or missing), f"{via}(): extra {extra}, missing {missing}"

    def test_filtered_records_return_their_metadata(self, filter_store: VectorStorePort) -> None:
        node = parse_filter({"category": "hr"})
        records = {r.id: r for r in filter_store.records(node, with_text=True)}
        assert {i: r.metadata for i, r in records.items()} == {
            i: FILTER_RECORDS[i] for i in ("d00", "d02", "d07")
        }
        assert {i: r.text for i, r in records.items()} == {
            i: f"text of {i}" for i in ("d00", "d02", "d07")
        }

    def test_prefilter_does_not_starve_k(self, store_factory: StoreFactory) -> None:
        store = store_factory(4)
        near = [f"b{n:02d}" for n in range(50)]
        far = ["a0", "a1", "a2"]
        store.upsert(
            near + far,
            near + far,
            [unit(1.0, n / 100, 0.0, 0.01) for n in range(50)]
            + [unit(-1.0, 0.1 * n, 0.2, 0.0) for n in range(3)],
            [{"team": "B"}] * 50 + [{"team": "A"}] * 3,
        )
        query = [1.0, 0.0, 0.0, 0.0]
        assert ids_of(store.query(query, 3, None)) <= set(near)
        hits = store.query(query, 3, parse_filter({"team": "A"}))
        assert ids_of(hits) == set(far)
        assert all(h.metadata == {"team": "A"} for h in hits)
        assert ids_of(store.query(query, 1, parse_filter({"team": "A"}))) <= set(far)

    def test_query_with_a_filter_that_matches_nothing_is_empty(
        self, filter_store: VectorStorePort
    ) -> None:
        node = parse_filter({"category": "no-such-category"})
        assert filter_store.query([1, 0, 0, 0], 5, node) == []
        assert list(filter_store.records(node)) == []

    # -- errors ----------------------------------------------------------------------------
    def test_dimension_mismatch_raises_and_writes_nothing(
        self, store_factory: StoreFactory
    ) -> None:
        store = store_factory(4)
        store.upsert(["keep"], ["keep"], [[1, 0, 0, 0]], [{"v": 1}])
        with pytest.raises(DimensionMismatchError, match="4"):
            store.upsert(
                ["ok", "bad"], ["ok", "bad"], [[0, 1, 0, 0], [1, 0, 0]], [{"v": 2}, {"v": 3}]
            )
        with pytest.raises(DimensionMismatchError):
            store.upsert(["long"], ["long"], [[1, 0, 0, 0, 0]], [{"v": 4}])
        assert isinstance(DimensionMismatchError("x"), StoreError)
        assert store.count() == 1
        assert ids_of(store.records()) == {"keep"}

    @pytest.mark.parametrize(
        "bad",
        [{"nested": {"a": 1}}, {"list_of_dicts": [{"a": 1}]}],
        ids=["nested-dict", "list-of-dicts"],
    )
    def test_invalid_metadata_raises_store_error_and_keeps_earlier_records(
        self, store_factory: StoreFactory, bad: dict[str, Any]
    ) -> None:
        store = store_factory(4)
        store.upsert(["a", "b"], ["ta", "tb"], [[1, 0, 0, 0], [0, 1, 0, 0]], [{"v": 1}, {"v": 2}])
        with pytest.raises(StoreError):
            store.upsert(["c", "d"], ["tc", "td"], [[0, 0, 1, 0], [0, 0, 0, 1]], [{"v": 3}, bad])
        assert "d" not in ids_of(store.records())
        records = {r.id: (r.text, r.metadata) for r in store.records(with_text=True)}
        assert records["a"] == ("ta", {"v": 1})
        assert records["b"] == ("tb", {"v": 2})

    # -- reopening -------------------------------------------------------------------------
    def test_data_persists_across_reopening(
        self, store_factory: StoreFactory, reopen_store: ReopenStore
    ) -> None:
        store = store_factory(4)
        store.upsert(
            ["a", "b"],
            ["ta", "tb"],
            [[1, 0, 0, 0], [0, 1, 0, 0]],
            [{"tags": ["x"], "n": 1}, {"tags": ["y"], "n": 2.5}],
        )
        store.close()
        again = reopen_store(store)
        assert again.count() == 2
        assert again.info.dimension == 4
        assert {r.id: r.metadata for r in again.records()} == {
            "a": {"tags": ["x"], "n": 1},
            "b": {"tags": ["y"], "n": 2.5},
        }
        (hit,) = again.query([0, 1, 0, 0], 1, parse_filter({"tags": {"$contains": "y"}}))
        assert (hit.id, hit.text) == ("b", "tb")

    def test_reopening_with_another_dimension_raises_config_error(
        self, store_factory: StoreFactory, reopen_store: ReopenStore
    ) -> None:
        store = store_factory(4)
        store.upsert(["a"], ["ta"], [[1, 0, 0, 0]], [{"v": 1}])
        with pytest.raises(ConfigError, match="4-dimensional"):
            reopen_store(store, dimension=8)
        assert reopen_store(store).count() == 1

    def test_reopening_with_another_embedding_model_raises_config_error(
        self, store_factory: StoreFactory, reopen_store: ReopenStore
    ) -> None:
        store = store_factory(4)
        store.upsert(["a"], ["ta"], [[1, 0, 0, 0]], [{"v": 1}])
        with pytest.raises(ConfigError, match="other-model"):
            reopen_store(store, embedding_model="other-model")
        assert reopen_store(store).info.embedding_model == "fake"
