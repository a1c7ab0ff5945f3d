"""Drive the Weaviate emulator through the real ``weaviate-client`` 4.24.1 SDK.

Expected results (filter matches, BM25 and hybrid scores) are written by hand from the data below
and
Weaviate's documented formulas, not computed with the emulator's code.
"""

from __future__ import annotations

import math
import types
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import grpc
import pytest

weaviate = pytest.importorskip("weaviate", reason="weaviate-client is not installed")

import weaviate.connect.v4 as wv_connect  # noqa: E402
import weaviate.retry as wv_retry  # noqa: E402
from weaviate.classes.config import Configure, DataType, Property, Tokenization  # noqa: E402
from weaviate.classes.init import AdditionalConfig, Auth, Timeout  # noqa: E402
from weaviate.classes.query import Filter, HybridFusion, MetadataQuery  # noqa: E402
from weaviate.classes.tenants import Tenant  # noqa: E402
from weaviate.collections.classes.data import DataObject  # noqa: E402
from weaviate.exceptions import (  # noqa: E402
    UnexpectedStatusCodeError,
    WeaviateGRPCUnavailableError,
    WeaviateInsertInvalidPropertyError,
    WeaviateInsertManyAllFailedError,
    WeaviateQueryError,
    WeaviateStartUpError,
)
from weaviate.proto.v1 import base_pb2, batch_pb2, search_get_pb2, weaviate_pb2_grpc  # noqa: E402

from tests.emulators.weaviate_server import WeaviateEmulator  # noqa: E402

COLLECTION = "Chunks"


def uid(name: str) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, name))


D1, D2, D3, D4, D5 = (uid(f"d{i}") for i in range(1, 6))
G1 = uid("g1")
NAMES = {D1: "d1", D2: "d2", D3: "d3", D4: "d4", D5: "d5", G1: "g1"}

ACME_DOCS: list[dict[str, Any]] = [
    {
        "uuid": D1,
        "vector": [1.0, 0.0, 0.0, 0.0],
        "properties": {
            "text": "alpha beta gamma",
            "tags": ["x", "y"],
            "year": 2020,
            "score": 0.5,
            "public": True,
            "published": datetime(2020, 1, 1, tzinfo=UTC),
            "source": "docs/a.md",
        },
    },
    {
        "uuid": D2,
        "vector": [0.9, 0.1, 0.0, 0.0],
        "properties": {
            "text": "beta delta",
            "tags": ["y"],
            "year": 2021,
            "score": 1.5,
            "public": False,
            "published": datetime(2021, 6, 1, tzinfo=UTC),
            "source": "docs/b.md",
        },
    },
    {
        "uuid": D3,
        "vector": [0.0, 1.0, 0.0, 0.0],
        "properties": {
            "text": "gamma epsilon alpha alpha",
            "tags": ["z"],
            "year": 2022,
            "score": 2.5,
            "public": True,
            "published": datetime(2022, 3, 15, tzinfo=UTC),
            "source": "b/docs.md",
        },
    },
    {
        "uuid": D4,
        "vector": [0.0, 0.0, 1.0, 0.0],
        "properties": {
            "text": "the quick brown fox",
            "tags": [],
            "year": 2019,
            "score": -1.0,
            "public": False,
            "published": datetime(2019, 12, 31, 23, 0, tzinfo=UTC),
            "source": "docs/a.md",
        },
    },
    {
        "uuid": D5,
        "vector": [0.5, 0.5, 0.5, 0.5],
        "properties": {
            "text": "Alpha-Omega",
            "tags": ["x", "z"],
            "year": 2023,
            "public": True,
            "published": datetime(2023, 1, 1, tzinfo=UTC),
            "source": "c.md",
        },
    },
]


# ----------------------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def emu() -> Iterator[WeaviateEmulator]:
    with WeaviateEmulator() as e:
        yield e


@pytest.fixture(scope="module")
def offline(emu: WeaviateEmulator) -> Iterator[None]:
    """The client looks up its latest version on pypi.org on every connect with init checks; point
    that look-up at the emulator so tests never touch the network."""
    mp = pytest.MonkeyPatch()
    mp.setattr(wv_connect, "PYPI_PACKAGE_URL", emu.pypi_url)
    yield
    mp.undo()


def connect(emu: WeaviateEmulator, *, skip_init_checks: bool = False, **kw: Any) -> Any:
    return weaviate.connect_to_custom(
        http_host="127.0.0.1",
        http_port=emu.http_port,
        http_secure=False,
        grpc_host="127.0.0.1",
        grpc_port=emu.grpc_port,
        grpc_secure=False,
        skip_init_checks=skip_init_checks,
        additional_config=AdditionalConfig(timeout=Timeout(init=2, query=10, insert=10)),
        **kw,
    )


@pytest.fixture(scope="module")
def client(emu: WeaviateEmulator, offline: None) -> Iterator[Any]:
    c = connect(emu)
    yield c
    c.close()


@pytest.fixture(scope="module")
def chunks(client: Any) -> Any:
    client.collections.create(
        COLLECTION,
        properties=[
            Property(name="text", data_type=DataType.TEXT),
            Property(name="tags", data_type=DataType.TEXT_ARRAY),
            Property(name="year", data_type=DataType.INT),
            Property(name="score", data_type=DataType.NUMBER),
            Property(name="public", data_type=DataType.BOOL),
            Property(name="published", data_type=DataType.DATE),
            Property(name="source", data_type=DataType.TEXT, tokenization=Tokenization.FIELD),
        ],
        vector_config=Configure.Vectors.self_provided(),
        multi_tenancy_config=Configure.multi_tenancy(enabled=True, auto_tenant_creation=False),
    )
    coll = client.collections.use(COLLECTION)
    coll.tenants.create([Tenant(name="acme"), Tenant(name="globex"), Tenant(name="scratch")])
    res = coll.with_tenant("acme").data.insert_many(
        [
            DataObject(properties=d["properties"], uuid=d["uuid"], vector=d["vector"])
            for d in ACME_DOCS
        ]
    )
    assert not res.has_errors, res.errors
    res = coll.with_tenant("globex").data.insert_many(
        [
            DataObject(
                properties={"text": "alpha", "year": 2020, "tags": ["x"]},
                uuid=G1,
                vector=[1.0, 0, 0, 0],
            )
        ]
    )
    assert not res.has_errors, res.errors
    return coll


# ----------------------------------------------------------------------------------------- connect


def test_connect_makes_the_documented_calls_and_stays_offline(
    emu: WeaviateEmulator, offline: None
) -> None:
    emu.clear_requests()
    c = connect(emu)
    try:
        assert c.is_ready()
        rest = emu.rest_calls()
        assert ("GET", "/v1/.well-known/openid-configuration") in rest
        assert ("GET", "/v1/meta") in rest
        assert ("GET", "/pypi/weaviate-client/json") in rest  # the package-index look-up came here
        assert "Check" in emu.grpc_calls()
    finally:
        c.close()


def test_connect_skip_init_checks_only_reads_meta(emu: WeaviateEmulator) -> None:
    emu.clear_requests()
    c = connect(emu, skip_init_checks=True)
    try:
        assert emu.rest_calls() == [("GET", "/v1/meta")]
        assert emu.grpc_calls() == []
    finally:
        c.close()


def test_connect_to_local(emu: WeaviateEmulator, offline: None) -> None:
    c = weaviate.connect_to_local(host="127.0.0.1", port=emu.http_port, grpc_port=emu.grpc_port)
    try:
        assert c.get_meta()["version"] == emu.version
    finally:
        c.close()


# -----------------------------------------------------------------------------------------
# schema/tenants


def test_collection_config_round_trips(client: Any, chunks: Any) -> None:
    assert client.collections.exists(COLLECTION)
    assert not client.collections.exists("Nope")
    cfg = chunks.config.get()
    assert cfg.multi_tenancy_config.enabled is True
    assert cfg.multi_tenancy_config.auto_tenant_creation is False
    types_ = {p.name: p.data_type.value for p in cfg.properties}
    assert types_ == {
        "text": "text",
        "tags": "text[]",
        "year": "int",
        "score": "number",
        "public": "boolean",
        "published": "date",
        "source": "text",
    }
    tok = {p.name: p.tokenization.value if p.tokenization else None for p in cfg.properties}
    assert tok["text"] == "word" and tok["source"] == "field" and tok["year"] is None
    assert cfg.inverted_index_config.bm25.k1 == 1.2 and cfg.inverted_index_config.bm25.b == 0.75
    assert COLLECTION in client.collections.list_all()


def test_collection_legacy_vector_config_and_delete(client: Any) -> None:
    # the legacy arguments on purpose: the SDK still sends them (and warns)
    with pytest.warns(DeprecationWarning, match="vectorizer_config|vector_index_config"):
        client.collections.create(
            "Legacy",
            properties=[Property(name="text", data_type=DataType.TEXT)],
            vectorizer_config=Configure.Vectorizer.none(),
            vector_index_config=Configure.VectorIndex.hnsw(
                distance_metric=weaviate.classes.config.VectorDistances.DOT
            ),
        )
    coll = client.collections.use("Legacy")
    cfg = coll.config.get()
    assert cfg.vector_index_config.distance_metric.value == "dot"
    coll.data.insert_many([DataObject(properties={"text": "a"}, vector=[1.0, 2.0], uuid=uid("l1"))])
    res = coll.query.near_vector(
        [1.0, 1.0], return_metadata=MetadataQuery(distance=True), include_vector=True
    )
    assert res.objects[0].metadata.distance == pytest.approx(-3.0)  # dot distance = -dot product
    assert res.objects[0].vector["default"] == [1.0, 2.0]
    client.collections.delete("Legacy")
    assert not client.collections.exists("Legacy")


def test_tenants_create_and_get(chunks: Any) -> None:
    tenants = chunks.tenants.get()
    assert {"acme", "globex", "scratch"} <= set(tenants)
    assert tenants["acme"].activity_status.value in ("ACTIVE", "HOT")
    assert chunks.tenants.exists("acme") and not chunks.tenants.exists("ghost")
    assert chunks.tenants.get_by_name("globex").name == "globex"


# ----------------------------------------------------------------------------------------- search


def test_near_vector_distance_certainty_and_limit(chunks: Any) -> None:
    acme = chunks.with_tenant("acme")
    res = acme.query.near_vector(
        [1.0, 0.0, 0.0, 0.0], limit=3, return_metadata=MetadataQuery(distance=True, certainty=True)
    )
    assert [str(o.uuid) for o in res.objects] == [D1, D2, D5]
    cos_d2 = 0.9 / math.sqrt(0.82)
    dists = [o.metadata.distance for o in res.objects]
    assert dists == pytest.approx([0.0, 1 - cos_d2, 0.5], abs=1e-6)
    assert res.objects[1].metadata.certainty == pytest.approx(1 - (1 - cos_d2) / 2, abs=1e-6)
    # properties come back typed
    p = res.objects[0].properties
    assert p["year"] == 2020 and isinstance(p["year"], int)
    assert p["tags"] == ["x", "y"] and p["public"] is True and p["score"] == 0.5
    assert p["published"] == datetime(2020, 1, 1, tzinfo=UTC)
    # distance threshold
    res = acme.query.near_vector([1.0, 0.0, 0.0, 0.0], distance=0.1)
    assert {str(o.uuid) for o in res.objects} == {D1, D2}


def test_near_vector_with_filters_as_on_the_wire(chunks: Any) -> None:
    f = Filter.by_property("year").greater_or_equal(2020) & Filter.by_property("tags").contains_any(
        ["x"]
    )
    res = chunks.with_tenant("acme").query.near_vector(
        [1.0, 0.0, 0.0, 0.0], limit=2, filters=f, return_metadata=MetadataQuery(distance=True)
    )
    assert [str(o.uuid) for o in res.objects] == [D1, D5]


FILTER_CASES: list[tuple[str, Any, set[str]]] = [
    ("int equal", Filter.by_property("year").equal(2020), {D1}),
    ("int not_equal", Filter.by_property("year").not_equal(2020), {D2, D3, D4, D5}),
    ("int greater_than", Filter.by_property("year").greater_than(2020), {D2, D3, D5}),
    (
        "int range and",
        Filter.by_property("year").greater_or_equal(2021)
        & Filter.by_property("year").less_than(2023),
        {D2, D3},
    ),
    (
        "int or",
        Filter.by_property("year").equal(2020) | Filter.by_property("year").equal(2023),
        {D1, D5},
    ),
    ("int contains_any", Filter.by_property("year").contains_any([2019, 2022]), {D3, D4}),
    ("number less_than (missing excluded)", Filter.by_property("score").less_than(1.0), {D1, D4}),
    ("number less_or_equal", Filter.by_property("score").less_or_equal(1.5), {D1, D2, D4}),
    ("boolean equal", Filter.by_property("public").equal(True), {D1, D3, D5}),
    ("text[] contains_any", Filter.by_property("tags").contains_any(["x"]), {D1, D5}),
    (
        "text[] contains_any 2",
        Filter.by_property("tags").contains_any(["y", "z"]),
        {D1, D2, D3, D5},
    ),
    ("text[] contains_all", Filter.by_property("tags").contains_all(["x", "z"]), {D5}),
    ("text[] contains_none", Filter.by_property("tags").contains_none(["x"]), {D2, D3, D4}),
    ("text[] equal", Filter.by_property("tags").equal("y"), {D1, D2}),
    ("text word equal", Filter.by_property("text").equal("alpha"), {D1, D3, D5}),
    ("text word equal needs every token", Filter.by_property("text").equal("alpha beta"), {D1}),
    ("text word equal is case-insensitive", Filter.by_property("text").equal("OMEGA"), {D5}),
    ("text not_equal", Filter.by_property("text").not_equal("alpha"), {D2, D4}),
    ("text like", Filter.by_property("text").like("gam*"), {D1, D3}),
    ("text field equal is exact", Filter.by_property("source").equal("docs/a.md"), {D1, D4}),
    (
        "text field contains_any",
        Filter.by_property("source").contains_any(["c.md", "b/docs.md"]),
        {D3, D5},
    ),
    (
        "date greater_than",
        Filter.by_property("published").greater_than(datetime(2021, 1, 1, tzinfo=UTC)),
        {D2, D3, D5},
    ),
    (
        "date less_than",
        Filter.by_property("published").less_than(datetime(2020, 1, 1, tzinfo=UTC)),
        {D4},
    ),
    ("date equal", Filter.by_property("published").equal(datetime(2022, 3, 15, tzinfo=UTC)), {D3}),
    ("id equal", Filter.by_id().equal(D2), {D2}),
    ("id contains_any", Filter.by_id().contains_any([D1, D3]), {D1, D3}),
    ("id not_equal", Filter.by_id().not_equal(D1), {D2, D3, D4, D5}),
    ("not", Filter.not_(Filter.by_property("public").equal(True)), {D2, D4}),
    (
        "nested and/or",
        (Filter.by_property("public").equal(True) & Filter.by_property("year").less_than(2023))
        | Filter.by_property("tags").contains_any(["y"]),
        {D1, D2, D3},
    ),
]


@pytest.mark.parametrize(
    ("name", "flt", "expected"), FILTER_CASES, ids=[c[0] for c in FILTER_CASES]
)
def test_filters(chunks: Any, name: str, flt: Any, expected: set[str]) -> None:
    res = chunks.with_tenant("acme").query.fetch_objects(filters=flt, limit=100)
    got = {str(o.uuid) for o in res.objects}
    assert got == expected, f"{name}: got {sorted(NAMES[g] for g in got)}"


def test_filter_wrong_value_type_is_an_error(chunks: Any) -> None:
    with pytest.raises(WeaviateQueryError, match="valueText"):
        chunks.with_tenant("acme").query.fetch_objects(filters=Filter.by_property("text").equal(3))
    with pytest.raises(WeaviateQueryError, match="no such prop with name 'nope'"):
        chunks.with_tenant("acme").query.fetch_objects(
            filters=Filter.by_property("nope").equal("x")
        )


# BM25 by hand (k1=1.2, b=0.75; "text" lengths in acme: 3, 2, 4, 4, 2 -> avg 3; "alpha" in d1 (tf
# 1),
# d3 (tf 2), d5 (tf 1, "Alpha-Omega" -> alpha, omega); N = 5, n = 3)
IDF_ALPHA = math.log(1 + (5 - 3 + 0.5) / (3 + 0.5))


def _bm25(tf: float, length: float, avg: float = 3.0) -> float:
    return IDF_ALPHA * tf / (tf + 1.2 * (1 - 0.75 + 0.75 * length / avg))


BM25_ALPHA = {D1: _bm25(1, 3), D3: _bm25(2, 4), D5: _bm25(1, 2)}


def test_bm25_scores_and_order(chunks: Any) -> None:
    acme = chunks.with_tenant("acme")
    res = acme.query.bm25(
        "alpha", query_properties=["text"], limit=10, return_metadata=MetadataQuery(score=True)
    )
    assert [str(o.uuid) for o in res.objects] == [D3, D5, D1]
    for o in res.objects:
        assert o.metadata.score == pytest.approx(BM25_ALPHA[str(o.uuid)], rel=1e-5)
    # all searchable text properties when none are given ("source" is field-tokenized: no match)
    res = acme.query.bm25("alpha", limit=2, filters=Filter.by_property("year").less_than(2030))
    assert [str(o.uuid) for o in res.objects] == [D3, D5]
    # stopwords ("the") are removed from the query
    res = acme.query.bm25("the fox", return_metadata=MetadataQuery(score=True))
    assert [str(o.uuid) for o in res.objects] == [D4]
    # tenant isolation: globex has its own statistics and objects
    res = chunks.with_tenant("globex").query.bm25("alpha")
    assert [str(o.uuid) for o in res.objects] == [G1]


def test_hybrid_relative_score_fusion(chunks: Any) -> None:
    res = chunks.with_tenant("acme").query.hybrid(
        "alpha",
        vector=[1.0, 0.0, 0.0, 0.0],
        alpha=0.5,
        fusion_type=HybridFusion.RELATIVE_SCORE,
        query_properties=["text"],
        limit=5,
        return_metadata=MetadataQuery(score=True, explain_score=True),
    )
    # keyword set normalised by min-max over {d3, d5, d1}; vector set: 1 - distance = cosine
    # similarity
    lo, hi = BM25_ALPHA[D1], BM25_ALPHA[D3]
    kw = {k: (v - lo) / (hi - lo) for k, v in BM25_ALPHA.items()}
    sims = {D1: 1.0, D2: 0.9 / math.sqrt(0.82), D3: 0.0, D4: 0.0, D5: 0.5}
    expected = {k: 0.5 * kw.get(k, 0.0) + 0.5 * sims[k] for k in sims}
    got = {str(o.uuid): o.metadata.score for o in res.objects}
    assert got == pytest.approx(expected, abs=1e-5)
    assert str(res.objects[0].uuid) == D5
    assert "Result Set keyword" in res.objects[0].metadata.explain_score
    assert "Result Set vector" in res.objects[0].metadata.explain_score
    # alpha=1: vector only, one result -> score = weight
    res = chunks.with_tenant("acme").query.hybrid(
        None,
        vector=[1.0, 0.0, 0.0, 0.0],
        alpha=1.0,
        limit=1,
        return_metadata=MetadataQuery(score=True),
    )
    assert str(res.objects[0].uuid) == D1 and res.objects[0].metadata.score == pytest.approx(1.0)
    # filters apply to both sub-searches
    res = chunks.with_tenant("acme").query.hybrid(
        "alpha",
        vector=[1.0, 0.0, 0.0, 0.0],
        alpha=0.5,
        filters=Filter.by_property("year").equal(2022),
    )
    assert [str(o.uuid) for o in res.objects] == [D3]


def test_fetch_objects_by_ids_and_iterator(chunks: Any) -> None:
    acme = chunks.with_tenant("acme")
    res = acme.query.fetch_objects_by_ids([D1, D3])
    assert {str(o.uuid) for o in res.objects} == {D1, D3}
    seen = [str(o.uuid) for o in acme.iterator(cache_size=2)]
    assert seen == sorted([D1, D2, D3, D4, D5])  # the cursor walks objects in uuid order
    vecs = {
        str(o.uuid): o.vector["default"] for o in acme.iterator(include_vector=True, cache_size=2)
    }
    assert vecs[D5] == [0.5, 0.5, 0.5, 0.5]


def test_search_without_limit_returns_the_server_default_of_10(chunks: Any) -> None:
    bulk = chunks.with_tenant("bulk")
    chunks.tenants.create("bulk")
    ids = [uid(f"bulk{i}") for i in range(12)]
    res = bulk.data.insert_many(
        [DataObject(properties={"text": f"n{i}"}, uuid=u) for i, u in enumerate(ids)]
    )
    assert not res.has_errors
    assert len(bulk.query.fetch_objects_by_ids(ids).objects) == 10  # QUERY_DEFAULTS_LIMIT
    assert len(bulk.query.fetch_objects_by_ids(ids, limit=20).objects) == 12


def test_aggregate_total_count(chunks: Any) -> None:
    acme = chunks.with_tenant("acme")
    assert acme.aggregate.over_all(total_count=True).total_count == 5
    f = Filter.by_property("year").greater_than(2020)
    assert acme.aggregate.over_all(total_count=True, filters=f).total_count == 3
    assert chunks.with_tenant("globex").aggregate.over_all(total_count=True).total_count == 1


# ----------------------------------------------------------------------------------------- writes


def test_delete_by_id_and_delete_many(chunks: Any) -> None:
    scratch = chunks.with_tenant("scratch")
    objs = [
        DataObject(properties={"text": f"s{i}", "year": 1990 + i}, uuid=uid(f"s{i}"))
        for i in range(5)
    ]
    assert not scratch.data.insert_many(objs).has_errors
    assert scratch.data.delete_by_id(uid("s0")) is True
    assert scratch.data.delete_by_id(uid("s0")) is False  # 404 -> False
    res = scratch.data.delete_many(where=Filter.by_id().contains_any([uid("s1")]))
    assert (res.matches, res.successful, res.failed) == (1, 1, 0)
    dry = scratch.data.delete_many(
        where=Filter.by_property("year").less_than(2000), dry_run=True, verbose=True
    )
    assert dry.matches == 3 and {str(o.uuid) for o in dry.objects} == {
        uid("s2"),
        uid("s3"),
        uid("s4"),
    }
    assert scratch.aggregate.over_all(total_count=True).total_count == 3
    res = scratch.data.delete_many(where=Filter.by_property("year").less_than(2000))
    assert res.matches == 3 and res.successful == 3
    assert scratch.aggregate.over_all(total_count=True).total_count == 0
    # data in other tenants is untouched
    assert chunks.with_tenant("acme").aggregate.over_all(total_count=True).total_count == 5


def test_batch_per_object_errors(chunks: Any) -> None:
    scratch = chunks.with_tenant("scratch")
    scratch.data.insert(properties={"text": "seed"}, uuid=uid("seed"), vector=[1.0, 0, 0, 0])
    res = scratch.data.insert_many(
        [
            DataObject(properties={"text": "ok"}, uuid=uid("ok"), vector=[0.0, 1.0, 0, 0]),
            DataObject(properties={"text": "short"}, uuid=uid("short"), vector=[1.0, 0.0, 0.0]),
            DataObject(properties={"year": "nineteen"}, uuid=uid("bad-int")),
            DataObject(properties={"year": 2020.5}, uuid=uid("frac-int")),
            DataObject(properties={"published": "yesterday"}, uuid=uid("bad-date")),
        ]
    )
    assert res.has_errors and set(res.errors) == {1, 2, 3, 4}
    assert "vector dimensions do not match" in res.errors[1].message
    assert "invalid integer property 'year' on class 'Chunks'" in res.errors[2].message
    assert "requires an integer" in res.errors[3].message
    assert "RFC3339" in res.errors[4].message
    assert scratch.data.exists(uid("ok")) and not scratch.data.exists(uid("short"))
    # a property named "id" is refused by the client before anything is sent
    with pytest.raises(WeaviateInsertInvalidPropertyError):
        scratch.data.insert_many([{"id": "x"}])
    # every object failing raises
    with pytest.raises(WeaviateInsertManyAllFailedError):
        scratch.data.insert_many([DataObject(properties={"year": "x"})])


def test_batch_context_manager_reports_failed_objects(client: Any, chunks: Any) -> None:
    scratch = chunks.with_tenant("scratch")
    with scratch.batch.fixed_size(batch_size=10) as batch:
        batch.add_object(properties={"text": "fine"}, uuid=uid("b-ok"))
        batch.add_object(properties={"year": "bad"}, uuid=uid("b-bad"))
    # the client only logs batch errors; they must be read back from failed_objects
    failed = scratch.batch.failed_objects
    assert [str(f.object_.uuid) for f in failed] == [uid("b-bad")]


def test_unknown_tenant_is_an_error_and_never_created(client: Any, chunks: Any) -> None:
    ghost = chunks.with_tenant("ghost")
    with pytest.raises(WeaviateQueryError, match='tenant not found: "ghost"'):
        ghost.query.near_vector([1.0, 0, 0, 0])
    with pytest.raises(WeaviateQueryError, match="tenant not found"):
        ghost.query.bm25("alpha")
    with pytest.raises(Exception, match="tenant not found"):
        ghost.aggregate.over_all(total_count=True)
    with pytest.raises(UnexpectedStatusCodeError, match="tenant not found"):
        ghost.data.delete_by_id(D1)
    # autoTenantCreation is off: the insert fails per object (all failed -> the client raises)
    with pytest.raises(WeaviateInsertManyAllFailedError, match='tenant not found: "ghost"'):
        ghost.data.insert_many([DataObject(properties={"text": "x"}, uuid=uid("g"))])
    assert "ghost" not in chunks.tenants.get()


def test_unknown_tenant_insert_with_auto_tenant_creation(client: Any) -> None:
    client.collections.create(
        "AutoTenants",
        properties=[Property(name="text", data_type=DataType.TEXT)],
        multi_tenancy_config=Configure.multi_tenancy(enabled=True, auto_tenant_creation=True),
    )
    coll = client.collections.use("AutoTenants")
    res = coll.with_tenant("fresh").data.insert_many([{"text": "hello"}])
    assert not res.has_errors
    assert "fresh" in coll.tenants.get()
    # a query never creates a tenant, even with autoTenantCreation
    with pytest.raises(WeaviateQueryError, match="tenant not found"):
        coll.with_tenant("other").query.fetch_objects()
    assert "other" not in coll.tenants.get()
    client.collections.delete("AutoTenants")


def test_multi_tenant_collection_without_tenant(chunks: Any) -> None:
    with pytest.raises(
        WeaviateQueryError, match="multi-tenancy enabled, but request was without tenant"
    ):
        chunks.query.fetch_objects()
    with pytest.raises(WeaviateInsertManyAllFailedError, match="request was without tenant"):
        chunks.data.insert_many([DataObject(properties={"text": "x"}, uuid=uid("nt1"))])


def test_raw_grpc_rejects_reserved_property_and_bad_uuid(
    emu: WeaviateEmulator, chunks: Any
) -> None:
    with grpc.insecure_channel(f"127.0.0.1:{emu.grpc_port}") as ch:
        stub = weaviate_pb2_grpc.WeaviateStub(ch)
        props = batch_pb2.BatchObject.Properties()
        props.non_ref_properties.update({"id": "abc"})
        reply = stub.BatchObjects(
            batch_pb2.BatchObjectsRequest(
                objects=[
                    batch_pb2.BatchObject(
                        collection=COLLECTION, tenant="scratch", uuid=uid("r1"), properties=props
                    ),
                    batch_pb2.BatchObject(
                        collection=COLLECTION, tenant="scratch", uuid="not-a-uuid"
                    ),
                ]
            )
        )
        errors = {e.index: e.error for e in reply.errors}
        assert errors[0] == "'id' is a reserved property name"
        assert errors[1].startswith("invalid UUID length")
        # ids come back as 16 raw bytes in MetadataResult.id_as_bytes
        sr = stub.Search(
            search_get_pb2.SearchRequest(
                collection=COLLECTION,
                tenant="acme",
                limit=1,
                uses_123_api=True,
                uses_125_api=True,
                filters=base_pb2.Filters(
                    operator=base_pb2.Filters.OPERATOR_EQUAL,
                    value_text=D1,
                    target=base_pb2.FilterTarget(property="_id"),
                ),
            )
        )
        assert uuid.UUID(bytes=sr.results[0].metadata.id_as_bytes) == uuid.UUID(D1)


# ----------------------------------------------------------------------------------------- faults


def test_injected_unavailable_is_retried_by_the_client(
    emu: WeaviateEmulator, chunks: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    sleeps: list[float] = []
    monkeypatch.setattr(wv_retry, "time", types.SimpleNamespace(sleep=sleeps.append))
    emu.clear_requests()
    emu.inject_grpc("Search", grpc.StatusCode.UNAVAILABLE, times=2)
    res = chunks.with_tenant("acme").query.fetch_objects(limit=1)
    assert len(res.objects) == 1
    assert emu.grpc_calls().count("Search") == 3 and sleeps == [1, 2]  # exponential backoff 2**n


def test_injected_non_retryable_grpc_error(emu: WeaviateEmulator, chunks: Any) -> None:
    emu.inject_grpc("Aggregate", grpc.StatusCode.INTERNAL, times=1, message="boom")
    with pytest.raises(WeaviateQueryError, match="boom"):
        chunks.with_tenant("acme").aggregate.over_all(total_count=True)
    emu.inject_grpc("BatchDelete", grpc.StatusCode.INTERNAL, times=1, message="boom")
    with pytest.raises(Exception, match="boom"):
        chunks.with_tenant("scratch").data.delete_many(where=Filter.by_id().equal(uid("zz")))


def test_injected_rest_fault(emu: WeaviateEmulator, chunks: Any, client: Any) -> None:
    emu.inject_rest("/v1/schema/Chunks", 503, times=1)
    with pytest.raises(UnexpectedStatusCodeError) as info:
        chunks.config.get()
    assert info.value.status_code == 503
    assert chunks.config.get().name == COLLECTION  # only once


def test_api_key_auth(offline: None) -> None:
    with WeaviateEmulator(api_key="secret") as secured:
        mp = pytest.MonkeyPatch()
        mp.setattr(wv_connect, "PYPI_PACKAGE_URL", secured.pypi_url)
        try:
            with pytest.raises((WeaviateStartUpError, UnexpectedStatusCodeError)):
                connect(secured, auth_credentials=Auth.api_key("wrong"))
            with pytest.raises((WeaviateStartUpError, UnexpectedStatusCodeError)):
                connect(secured)  # anonymous
            good = connect(secured, auth_credentials=Auth.api_key("secret"))
            try:
                good.collections.create(
                    "Secured", properties=[Property(name="t", data_type=DataType.TEXT)]
                )
                assert (
                    good.collections.use("Secured").aggregate.over_all(total_count=True).total_count
                    == 0
                )
            finally:
                good.close()
            with grpc.insecure_channel(f"127.0.0.1:{secured.grpc_port}") as ch:
                stub = weaviate_pb2_grpc.WeaviateStub(ch)
                with pytest.raises(grpc.RpcError) as err:
                    stub.Search(search_get_pb2.SearchRequest(collection="Secured"))
                assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
        finally:
            mp.undo()


def test_dead_grpc_port(offline: None, monkeypatch: pytest.MonkeyPatch) -> None:
    with WeaviateEmulator() as dead:
        monkeypatch.setattr(wv_connect, "PYPI_PACKAGE_URL", dead.pypi_url)
        dead.kill_grpc()
        # with init checks the gRPC health check fails at connect
        with pytest.raises(WeaviateGRPCUnavailableError):
            connect(dead)
        # with skip_init_checks the dead port shows up only at the first query, after the retries
        sleeps: list[float] = []
        monkeypatch.setattr(wv_retry, "time", types.SimpleNamespace(sleep=sleeps.append))
        c = connect(dead, skip_init_checks=True)
        try:
            with pytest.raises(WeaviateQueryError):
                c.collections.use("Anything").query.fetch_objects()
            assert sleeps == [1, 2, 4, 8, 16, 32]  # ~63 s against a real dead port
        finally:
            c.close()


def test_client_level_batches_as_on_the_wire(
    emu: WeaviateEmulator, client: Any, chunks: Any
) -> None:
    emu.clear_requests()
    with client.batch.dynamic() as batch:
        batch.add_object(COLLECTION, properties={"text": "dyn"}, uuid=uid("dyn"), tenant="scratch")
    with client.batch.fixed_size(batch_size=5) as batch:
        batch.add_object(COLLECTION, properties={"text": "fix"}, uuid=uid("fix"), tenant="scratch")
    assert client.batch.failed_objects == []
    assert ("GET", "/v1/nodes") in emu.rest_calls() and ("GET", "/v1/schema") in emu.rest_calls()
    assert emu.grpc_calls().count("BatchObjects") == 2
    scratch = chunks.with_tenant("scratch")
    assert scratch.data.exists(uid("dyn")) and scratch.data.exists(uid("fix"))


def test_older_server_version_sends_alpha_not_alpha_param(offline: None) -> None:
    # clients talking to servers < 1.36.6 send Hybrid.alpha (default 0.7) instead of alpha_param
    with WeaviateEmulator(version="1.32.0") as old:
        mp = pytest.MonkeyPatch()
        mp.setattr(wv_connect, "PYPI_PACKAGE_URL", old.pypi_url)
        c = connect(old)
        try:
            c.collections.create(
                "Old",
                properties=[Property(name="text", data_type=DataType.TEXT)],
                vector_config=Configure.Vectors.self_provided(),
            )
            coll = c.collections.use("Old")
            coll.data.insert_many(
                [
                    DataObject(properties={"text": "alpha"}, uuid=uid("o1"), vector=[1.0, 0.0]),
                    DataObject(properties={"text": "beta"}, uuid=uid("o2"), vector=[0.0, 1.0]),
                ]
            )
            res = coll.query.hybrid(
                "beta", vector=[1.0, 0.0], alpha=1.0, return_metadata=MetadataQuery(score=True)
            )
            assert [str(o.uuid) for o in res.objects] == [uid("o1"), uid("o2")]  # pure vector
            res = coll.query.hybrid(
                "beta", vector=[1.0, 0.0], alpha=0.0, return_metadata=MetadataQuery(score=True)
            )
            assert [str(o.uuid) for o in res.objects] == [uid("o2")]  # pure keyword
        finally:
            c.close()
            mp.undo()
