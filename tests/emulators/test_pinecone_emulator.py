"""Tests of the Pinecone emulator, driven through the real ``pinecone`` SDK (7.3.0).

Expected values in these tests are written from Pinecone's documented behaviour and
the captured wire log (``../shared/reference/wire/pinecone-7.3.0.txt``), not from
the emulator's code.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

pinecone = pytest.importorskip("pinecone")

from pinecone import (  # noqa: E402
    ForbiddenException,
    NotFoundException,
    Pinecone,
    PineconeApiException,
    PineconeConfigurationError,
    ServerlessSpec,
    UnauthorizedException,
)

from tests.emulators.pinecone_server import PineconeEmulator  # noqa: E402

API_KEY = "test-key"
SPEC = ServerlessSpec(cloud="aws", region="us-east-1")


@pytest.fixture(scope="module")
def emu() -> Iterator[PineconeEmulator]:
    with PineconeEmulator(api_key=API_KEY) as server:
        yield server


@pytest.fixture(autouse=True)
def _clean(emu: PineconeEmulator) -> Iterator[None]:
    emu.reset_faults()
    emu.clear_requests()
    yield
    emu.reset_faults()


@pytest.fixture
def pc(emu: PineconeEmulator) -> Pinecone:
    return Pinecone(api_key=API_KEY, host=emu.url)


def _name(prefix: str = "t") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def make_index(
    pc: Pinecone, *, dimension: int | None = 4, metric: str = "cosine", **kwargs: Any
) -> Any:
    name = _name()
    if kwargs.get("vector_type") == "sparse":
        pc.create_index(name=name, metric=metric, spec=SPEC, **kwargs)
    else:
        pc.create_index(name=name, dimension=dimension, metric=metric, spec=SPEC, **kwargs)
    return pc.Index(name=name)


def ids(response: Any) -> list[str]:
    return [m.id for m in response.matches]


def body_of(err: PineconeApiException) -> Any:
    raw = err.body
    return json.loads(raw.decode() if isinstance(raw, bytes) else raw)


# --------------------------------------------------------------------------- control plane


def test_control_plane_lifecycle(emu: PineconeEmulator, pc: Pinecone) -> None:
    name = _name("life")
    desc = pc.create_index(
        name=name,
        dimension=4,
        metric="cosine",
        spec=SPEC,
        deletion_protection="enabled",
        tags={"app": "rag"},
    )
    assert desc.name == name and desc.dimension == 4 and desc.metric == "cosine"
    assert desc.status.ready is True and desc.status.state == "Ready"
    as_dict = desc.to_dict()
    assert as_dict["deletion_protection"] == "enabled" and as_dict["tags"] == {"app": "rag"}
    assert desc.vector_type == "dense"
    assert desc.spec.serverless.cloud == "aws" and desc.spec.serverless.region == "us-east-1"
    assert desc.host == emu.index_url(name) and desc.host.startswith("http://127.0.0.1:")
    assert desc.host != emu.url  # each index has its own data-plane host

    assert name in pc.list_indexes().names()
    assert pc.has_index(name)

    with pytest.raises(PineconeApiException) as dup:
        pc.create_index(name=name, dimension=4, metric="cosine", spec=SPEC)
    assert dup.value.status == 409
    assert body_of(dup.value) == {
        "error": {"code": "ALREADY_EXISTS", "message": "Resource already exists."},
        "status": 409,
    }

    with pytest.raises(ForbiddenException) as forbidden:
        pc.delete_index(name)
    assert body_of(forbidden.value)["error"]["code"] == "FORBIDDEN"
    assert "Deletion protection is enabled" in body_of(forbidden.value)["error"]["message"]

    pc.configure_index(name, deletion_protection="disabled", tags={"env": "ci"})
    after = pc.describe_index(name).to_dict()
    assert after["deletion_protection"] == "disabled"
    assert after["tags"] == {"app": "rag", "env": "ci"}  # tags merge
    pc.configure_index(name, tags={"app": ""})  # an empty value removes the tag
    assert pc.describe_index(name).to_dict()["tags"] == {"env": "ci"}

    pc.delete_index(name)
    assert not pc.has_index(name)
    with pytest.raises(NotFoundException) as missing:
        pc.describe_index(name)
    assert body_of(missing.value)["error"] == {
        "code": "NOT_FOUND",
        "message": f"Index {name} not found.",
    }
    methods = [(r.method, r.path) for r in emu.requests]
    assert ("PATCH", f"/indexes/{name}") in methods and ("DELETE", f"/indexes/{name}") in methods


def test_create_index_validation(emu: PineconeEmulator, pc: Pinecone) -> None:
    for bad in ("Bad_Name", "-leading", "trailing-"):
        with pytest.raises(PineconeApiException) as err:
            pc.create_index(name=bad, dimension=4, metric="cosine", spec=SPEC)
        assert err.value.status == 400, bad
        assert body_of(err.value)["error"]["code"] == "INVALID_ARGUMENT"
    with pytest.raises(NotFoundException) as region:
        pc.create_index(
            name=_name(),
            dimension=4,
            metric="cosine",
            spec=ServerlessSpec(cloud="aws", region="mars-1"),
        )
    assert (
        body_of(region.value)["error"]["message"] == "Resource cloud: aws region: mars-1 not found."
    )

    headers = {"Api-Key": API_KEY}
    no_spec = httpx.post(
        f"{emu.url}/indexes", json={"name": "nospec", "dimension": 4}, headers=headers
    )
    assert no_spec.status_code == 422
    assert no_spec.json()["error"]["code"] == "UNPROCESSABLE_ENTITY"
    bad_metric = httpx.post(
        f"{emu.url}/indexes",
        json={
            "name": "m",
            "dimension": 4,
            "metric": "manhattan",
            "spec": {"serverless": {"cloud": "aws", "region": "us-east-1"}},
        },
        headers=headers,
    )
    assert bad_metric.status_code == 422
    too_long = httpx.post(  # the SDK itself refuses names over 45 characters
        f"{emu.url}/indexes",
        json={
            "name": "x" * 46,
            "dimension": 4,
            "spec": {"serverless": {"cloud": "aws", "region": "us-east-1"}},
        },
        headers=headers,
    )
    assert too_long.status_code == 400
    for dim in (0, 20001):
        r = httpx.post(
            f"{emu.url}/indexes",
            json={
                "name": "d",
                "dimension": dim,
                "metric": "cosine",
                "spec": {"serverless": {"cloud": "aws", "region": "us-east-1"}},
            },
            headers=headers,
        )
        assert r.status_code == 400 and r.json()["status"] == 400

    sparse_name = _name("sp")
    desc = pc.create_index(name=sparse_name, metric="dotproduct", vector_type="sparse", spec=SPEC)
    assert desc.vector_type == "sparse" and desc.metric == "dotproduct"
    assert desc.dimension is None
    pc.delete_index(sparse_name)


def test_index_by_name_and_by_host_and_isolation_between_indexes(
    emu: PineconeEmulator, pc: Pinecone
) -> None:
    first = make_index(pc)
    second = make_index(pc)
    first.upsert(vectors=[("only-first", [1.0, 0.0, 0.0, 0.0])])
    by_host = pc.Index(host=emu.index_url(_index_name(pc, first)))
    assert by_host.fetch(ids=["only-first"]).vectors.keys() == {"only-first"}
    assert second.fetch(ids=["only-first"]).vectors == {}
    assert second.describe_index_stats().total_vector_count == 0


def _index_name(pc: Pinecone, index: Any) -> str:
    """The name of the index an ``Index`` client talks to (matched by host)."""
    host = index._config.host
    return next(desc.name for desc in pc.list_indexes() if desc.host == host)


def test_deleted_index_host_answers_404(emu: PineconeEmulator, pc: Pinecone) -> None:
    index = make_index(pc)
    pc.delete_index(_index_name(pc, index))
    with pytest.raises(NotFoundException):
        index.query(vector=[1.0, 0.0, 0.0, 0.0], top_k=1)


# --------------------------------------------------------------------------- the wire-file sequence


def test_wire_sequence_through_the_sdk(emu: PineconeEmulator, pc: Pinecone) -> None:
    """Every data-plane call of ``pinecone-7.3.0.txt``, with the results it recorded."""
    index = make_index(pc)
    emu.clear_requests()

    assert (
        index.upsert(
            [
                (
                    "a",
                    [1.0, 0.0, 0.0, 0.0],
                    {"tenant": "t1", "year": 2020, "tags": ["x", "y"], "draft": False},
                ),
                ("b", [0.0, 1.0, 0.0, 0.0], {"tenant": "t1", "year": 2021}),
            ],
            namespace="t1",
        ).upserted_count
        == 2
    )
    index.upsert(
        vectors=[
            {
                "id": "c",
                "values": [0.0, 0.0, 1.0, 0.0],
                "sparse_values": {"indices": [3, 17], "values": [0.5, 0.25]},
                "metadata": {"tenant": "t1"},
            }
        ],
        namespace="t1",
    )
    index.upsert(
        vectors=[(f"p{i}", [0.1, 0.2, 0.3, float(i)], {"i": i}) for i in range(3)],
        namespace="t1",
        batch_size=2,
    )

    res = index.query(
        vector=[1, 0.1, 0, 0],
        top_k=2,
        namespace="t1",
        filter={"$and": [{"tenant": {"$eq": "t1"}}, {"year": {"$gte": 2020}}]},
        include_values=False,
        include_metadata=True,
    )
    got = [(m.id, round(m.score, 3), m.metadata) for m in res.matches]
    assert got == [
        ("a", 0.995, {"tenant": "t1", "year": 2020.0, "tags": ["x", "y"], "draft": False}),
        ("b", 0.1, {"tenant": "t1", "year": 2021.0}),
    ]
    assert res.namespace == "t1" and res.usage.read_units >= 1

    by_id = index.query(id="a", top_k=1, namespace="t1")
    assert ids(by_id) == ["a"] and by_id.matches[0].score == pytest.approx(1.0)

    fetched = index.fetch(ids=["a", "b", "zz"], namespace="t1")
    assert {k: v.metadata for k, v in fetched.vectors.items()} == {
        "a": {"tenant": "t1", "year": 2020.0, "tags": ["x", "y"], "draft": False},
        "b": {"tenant": "t1", "year": 2021.0},
    }
    assert fetched.vectors["a"].values == [1.0, 0.0, 0.0, 0.0]
    assert fetched.namespace == "t1"
    assert index.fetch(ids=["c"], namespace="t1").vectors["c"].sparse_values.indices == [3, 17]

    index.update(id="a", set_metadata={"year": 2022}, namespace="t1")
    assert index.fetch(ids=["a"], namespace="t1").vectors["a"].metadata == {
        "tenant": "t1",
        "year": 2022.0,
        "tags": ["x", "y"],
        "draft": False,
    }
    index.update(
        id="a",
        values=[1.0, 1.0, 0.0, 0.0],
        sparse_values={"indices": [1], "values": [0.3]},
        namespace="t1",
    )
    updated = index.fetch(ids=["a"], namespace="t1").vectors["a"]
    assert updated.values == [1.0, 1.0, 0.0, 0.0]
    assert (updated.sparse_values.indices, updated.sparse_values.values) == ([1], [0.3])

    page = index.list_paginated(prefix="p", limit=2, namespace="t1")
    assert [v.id for v in page.vectors] == ["p0", "p1"] and page.pagination.next
    assert list(index.list(prefix="p", limit=2, namespace="t1")) == [["p0", "p1"], ["p2"]]

    stats = index.describe_index_stats()
    assert stats.to_dict() == {
        "namespaces": {"t1": {"vector_count": 6}},
        "dimension": 4,
        "index_fullness": 0.0,
        "total_vector_count": 6,
        "metric": "cosine",
        "vector_type": "dense",
    }

    index.delete(ids=["b"], namespace="t1")
    index.delete(
        filter={"i": {"$in": [0, 1]}}, namespace="t1"
    )  # serverless supports delete by filter
    assert sorted(v for page_ids in index.list(namespace="t1") for v in page_ids) == [
        "a",
        "c",
        "p2",
    ]
    index.delete(delete_all=True, namespace="t1")
    assert index.describe_index_stats().namespaces == {}

    index.upsert(vectors=[("q", [1.0, 0.0, 0.0, 0.0], {})], namespace="t2", async_req=True).get(
        timeout=5
    )
    assert index.fetch(ids=["q"], namespace="t2").vectors["q"].metadata is None

    sent = [(r.method, r.path.split("?")[0]) for r in emu.requests]
    assert (
        sent[:4] == [("POST", "/vectors/upsert")] * 4
    )  # batch_size=2 split 3 vectors in two requests
    query_body = next(r.body for r in emu.requests if r.path == "/query")
    assert query_body["topK"] == 2 and query_body["includeMetadata"] is True
    fetch_path = next(r.path for r in emu.requests if r.path.startswith("/vectors/fetch"))
    assert fetch_path == "/vectors/fetch?namespace=t1&ids=a&ids=b&ids=zz"


def test_numbers_are_returned_as_floats(pc: Pinecone) -> None:
    index = make_index(pc)
    index.upsert(vectors=[("n", [1.0, 0.0, 0.0, 0.0], {"year": 2020, "price": 1.5, "flag": True})])
    md = index.fetch(ids=["n"]).vectors["n"].metadata
    assert md == {"year": 2020.0, "price": 1.5, "flag": True}
    assert isinstance(md["year"], float) and isinstance(md["flag"], bool)
    match = index.query(vector=[1.0, 0.0, 0.0, 0.0], top_k=1, include_metadata=True).matches[0]
    assert isinstance(match.metadata["year"], float)
    assert match.values == []  # values are only sent back with include_values=True


# --------------------------------------------------------------------------- validation and limits


def test_upsert_validation_messages(pc: Pinecone) -> None:
    index = make_index(pc)
    cases: list[tuple[dict[str, Any], str]] = [
        (
            {"id": "x", "values": [1.0, 0.0, 0.0], "metadata": {}},
            "Vector dimension 3 does not match the dimension of the index 4",
        ),
        (
            {"id": "x", "values": [1.0, 0.0, 0.0, 0.0], "metadata": {"nested": {"a": 1}}},
            "Metadata value must be a string, number, boolean or list of strings",
        ),
        (
            {"id": "x", "values": [1.0, 0.0, 0.0, 0.0], "metadata": {"nums": [1, 2]}},
            "list of strings",
        ),
    ]
    for vector, message in cases:
        with pytest.raises(PineconeApiException) as err:
            index.upsert(vectors=[vector], _check_type=False)
        assert err.value.status == 400
        body = body_of(err.value)
        assert body["code"] == 3 and message in body["message"] and body["details"] == []
    with pytest.raises(PineconeApiException) as qerr:
        index.query(vector=[1.0, 0.0], top_k=1)
    assert (
        body_of(qerr.value)["message"]
        == "Query vector dimension 2 does not match the dimension of the index 4"
    )
    assert index.describe_index_stats().total_vector_count == 0  # nothing was written


def test_metadata_40kb_limit(pc: Pinecone) -> None:
    index = make_index(pc)
    overhead = len('{"text":""}')
    fits = {"text": "x" * (40960 - overhead)}
    index.upsert(vectors=[("fits", [1.0, 0.0, 0.0, 0.0], fits), ("ok", [0.0, 1.0, 0.0, 0.0], {})])
    too_big = {"text": "x" * (40961 - overhead)}
    with pytest.raises(PineconeApiException) as err:
        index.upsert(
            vectors=[("big", [1.0, 0.0, 0.0, 0.0], too_big), ("small", [0.0, 1.0, 0.0, 0.0], {})]
        )
    assert err.value.status == 400
    assert (
        body_of(err.value)["message"]
        == "Metadata size is 40961 bytes, which exceeds the limit of 40960 bytes per vector"
    )
    assert index.fetch(ids=["big", "small"]).vectors == {}  # the whole request was rejected
    with pytest.raises(
        PineconeApiException
    ):  # the limit also applies to the merged metadata of an update
        index.update(id="fits", set_metadata={"more": "y" * 100})


def test_batch_limits(pc: Pinecone) -> None:
    index = make_index(pc)
    with pytest.raises(PineconeApiException) as count_err:
        index.upsert(vectors=[(f"v{i}", [1.0, 0.0, 0.0, 0.0]) for i in range(1001)])
    assert count_err.value.status == 400
    index.upsert(vectors=[(f"v{i}", [1.0, 0.0, 0.0, 0.0]) for i in range(1000)])
    big = [(f"b{i}", [1.0, 0.0, 0.0, 0.0], {"text": "x" * 39000}) for i in range(60)]  # ~2.3 MB
    with pytest.raises(PineconeApiException) as size_err:
        index.upsert(vectors=big)
    assert "exceeds the maximum supported size of 2MB" in body_of(size_err.value)["message"]
    assert index.describe_index_stats().total_vector_count == 1000


# --------------------------------------------------------------------------- scoring


def test_scores_per_metric(pc: Pinecone) -> None:
    data = [
        ("a", [1.0, 0.0, 0.0, 0.0]),
        ("b", [2.0, 2.0, 0.0, 0.0]),
        ("c", [0.0, 3.0, 0.0, 0.0]),
        ("d", [-1.0, 0.0, 0.0, 0.0]),
    ]
    q = [1.0, 1.0, 0.0, 0.0]

    cos = make_index(pc, metric="cosine")
    cos.upsert(vectors=data)
    res = cos.query(vector=q, top_k=4)
    assert ids(res) == ["b", "a", "c", "d"]  # a and c tie at 0.7071; tie broken by id
    assert [round(m.score, 4) for m in res.matches] == [1.0, 0.7071, 0.7071, -0.7071]

    dot = make_index(pc, metric="dotproduct")
    dot.upsert(vectors=data)
    res = dot.query(vector=q, top_k=3)
    assert [(m.id, m.score) for m in res.matches] == [("b", 4.0), ("c", 3.0), ("a", 1.0)]

    euc = make_index(pc, metric="euclidean")
    euc.upsert(vectors=data)
    res = euc.query(vector=q, top_k=4)
    # squared Euclidean distance, smaller first: a=1, b=2, d=5, c=5 -> ties by id
    assert [(m.id, m.score) for m in res.matches] == [
        ("a", 1.0),
        ("b", 2.0),
        ("c", 5.0),
        ("d", 5.0),
    ]


def test_hybrid_query_on_dotproduct_and_rejection_elsewhere(pc: Pinecone) -> None:
    hyb = make_index(pc, metric="dotproduct")
    hyb.upsert(
        vectors=[
            {
                "id": "x",
                "values": [1.0, 0.0, 0.0, 0.0],
                "sparse_values": {"indices": [7], "values": [2.0]},
            },
            {"id": "y", "values": [1.0, 0.0, 0.0, 0.0]},
            {
                "id": "z",
                "values": [0.5, 0.0, 0.0, 0.0],
                "sparse_values": {"indices": [7, 9], "values": [1.0, 1.0]},
            },
        ]
    )
    res = hyb.query(
        vector=[1.0, 0.0, 0.0, 0.0],
        sparse_vector={"indices": [7, 9], "values": [1.0, 0.5]},
        top_k=3,
    )
    # dense dot + sparse dot: x = 1 + 2, y = 1 + 0, z = 0.5 + (1 + 0.5)
    assert [(m.id, m.score) for m in res.matches] == [("x", 3.0), ("z", 2.0), ("y", 1.0)]

    cos = make_index(pc, metric="cosine")
    cos.upsert(
        vectors=[
            {
                "id": "x",
                "values": [1.0, 0.0, 0.0, 0.0],
                "sparse_values": {"indices": [7], "values": [2.0]},
            }
        ]
    )
    with pytest.raises(PineconeApiException) as err:
        cos.query(
            vector=[1.0, 0.0, 0.0, 0.0], sparse_vector={"indices": [7], "values": [1.0]}, top_k=1
        )
    assert err.value.status == 400 and "dotproduct" in body_of(err.value)["message"]


def test_sparse_index(pc: Pinecone) -> None:
    index = make_index(pc, dimension=None, metric="dotproduct", vector_type="sparse")
    index.upsert(
        vectors=[
            {"id": "s1", "sparse_values": {"indices": [1, 5], "values": [1.0, 2.0]}},
            {"id": "s2", "sparse_values": {"indices": [5], "values": [0.5]}},
        ]
    )
    res = index.query(sparse_vector={"indices": [5], "values": [2.0]}, top_k=2)
    assert [(m.id, m.score) for m in res.matches] == [("s1", 4.0), ("s2", 1.0)]
    stats = index.describe_index_stats()
    assert stats.vector_type == "sparse" and stats.total_vector_count == 2


# --------------------------------------------------------------------------- metadata filters

FILTER_DATA: dict[str, dict[str, Any]] = {
    "a": {"genre": "drama", "year": 2019, "tags": ["x", "y"], "draft": False},
    "b": {"genre": "comedy", "year": 2020, "tags": ["y"], "draft": True},
    "c": {"genre": "documentary", "year": 2021.5, "tags": ["z"]},
    "d": {"year": 2020},
    "e": {"genre": "drama", "tags": [], "draft": False},
}

# (filter, ids expected) -- from the documented semantics: list fields match $eq/$in when
# ANY element matches and $ne/$nin when NO element does; $ne/$nin also match a record
# without the field (MongoDB semantics, which Pinecone's language follows).
FILTER_TABLE: list[tuple[dict[str, Any], set[str]]] = [
    ({"genre": "drama"}, {"a", "e"}),
    ({"genre": {"$eq": "drama"}}, {"a", "e"}),
    ({"genre": {"$ne": "drama"}}, {"b", "c", "d"}),
    ({"year": 2020}, {"b", "d"}),
    ({"year": 2020.0}, {"b", "d"}),
    ({"year": {"$gt": 2019}}, {"b", "c", "d"}),
    ({"year": {"$gte": 2020}}, {"b", "c", "d"}),
    ({"year": {"$lt": 2020}}, {"a"}),
    ({"year": {"$lte": 2020}}, {"a", "b", "d"}),
    ({"year": {"$gte": 2020, "$lt": 2021}}, {"b", "d"}),
    ({"year": {"$in": [2019, 2021.5]}}, {"a", "c"}),
    ({"year": {"$nin": [2019, 2020]}}, {"c", "e"}),
    ({"genre": {"$in": ["comedy", "documentary"]}}, {"b", "c"}),
    ({"genre": {"$nin": ["comedy", "documentary"]}}, {"a", "d", "e"}),
    ({"tags": "y"}, {"a", "b"}),
    ({"tags": {"$in": ["x", "z"]}}, {"a", "c"}),
    ({"tags": {"$ne": "y"}}, {"c", "d", "e"}),
    ({"tags": {"$nin": ["y", "z"]}}, {"d", "e"}),
    ({"draft": False}, {"a", "e"}),
    ({"draft": {"$eq": True}}, {"b"}),
    ({"draft": {"$ne": True}}, {"a", "c", "d", "e"}),
    ({"draft": {"$exists": True}}, {"a", "b", "e"}),
    ({"genre": {"$exists": False}}, {"d"}),
    ({"genre": "drama", "year": {"$exists": True}}, {"a"}),
    ({"$and": [{"genre": "drama"}, {"tags": "x"}]}, {"a"}),
    ({"$or": [{"genre": "comedy"}, {"year": {"$lt": 2020}}]}, {"a", "b"}),
    (
        {"$or": [{"$and": [{"genre": "drama"}, {"draft": False}]}, {"year": 2021.5}]},
        {"a", "c", "e"},
    ),
    ({"draft": {"$eq": 0}}, set()),  # booleans are not numbers
    ({"year": "2020"}, set()),  # strings are not numbers
    ({"genre": {"$gt": 1}}, set()),  # range operators only match numbers
]


@pytest.fixture(scope="module")
def filter_index(emu: PineconeEmulator) -> Any:
    pc = Pinecone(api_key=API_KEY, host=emu.url)
    index = make_index(pc)
    index.upsert(
        vectors=[(vid, [1.0, 0.0, 0.0, 0.0], md) for vid, md in FILTER_DATA.items()], namespace="f"
    )
    return index


@pytest.mark.parametrize(
    ("flt", "expected"), FILTER_TABLE, ids=[json.dumps(f) for f, _ in FILTER_TABLE]
)
def test_filter_semantics(filter_index: Any, flt: dict[str, Any], expected: set[str]) -> None:
    res = filter_index.query(vector=[1.0, 0.0, 0.0, 0.0], top_k=10, namespace="f", filter=flt)
    assert set(ids(res)) == expected


def test_invalid_filters_are_rejected(filter_index: Any) -> None:
    for flt in (
        {"year": {"$regex": "x"}},
        {"year": {"$gt": "a"}},
        {"genre": {"$in": "drama"}},
        {"$or": {"a": 1}},
        {"genre": {"a": 1}},
    ):
        with pytest.raises(PineconeApiException) as err:
            filter_index.query(vector=[1.0, 0.0, 0.0, 0.0], top_k=1, namespace="f", filter=flt)
        assert err.value.status == 400, flt


def test_stats_with_filter_like_serverless_and_opt_in() -> None:
    with PineconeEmulator(stats_filter_supported=True) as opt_in:
        pc = Pinecone(api_key="any", host=opt_in.url)
        index = make_index(pc)
        index.upsert(vectors=[(vid, [1.0, 0.0, 0.0, 0.0], md) for vid, md in FILTER_DATA.items()])
        stats = index.describe_index_stats(filter={"genre": "drama"})
        assert stats.namespaces["__default__"].vector_count == 2
        assert (
            stats.total_vector_count == 5
        )  # "regardless of whether a metadata filter expression was passed"


def test_stats_filter_rejected_by_default(filter_index: Any) -> None:
    with pytest.raises(PineconeApiException) as err:
        filter_index.describe_index_stats(filter={"genre": "drama"})
    assert err.value.status == 400
    assert (
        "do not support describing index stats with metadata filtering"
        in body_of(err.value)["message"]
    )


# --------------------------------------------------------------------------- namespaces and list


def test_namespaces_are_isolated(pc: Pinecone) -> None:
    index = make_index(pc)
    index.upsert(vectors=[("same", [1.0, 0.0, 0.0, 0.0], {"ns": "default"})])
    index.upsert(
        vectors=[("same", [0.0, 1.0, 0.0, 0.0], {"ns": "one"}), ("x", [0.0, 1.0, 0.0, 0.0])],
        namespace="one",
    )
    index.upsert(vectors=[("same", [0.0, 0.0, 1.0, 0.0], {"ns": "two"})], namespace="two")

    assert index.fetch(ids=["same"]).vectors["same"].metadata == {"ns": "default"}
    assert index.fetch(ids=["same"], namespace="one").vectors["same"].metadata == {"ns": "one"}
    assert index.fetch(ids=["x"], namespace="two").vectors == {}
    top = index.query(vector=[1.0, 0.0, 0.0, 0.0], top_k=10, namespace="two", include_metadata=True)
    assert [(m.id, m.metadata) for m in top.matches] == [("same", {"ns": "two"})]
    assert ids(index.query(vector=[1.0, 0.0, 0.0, 0.0], top_k=10, namespace="")) == ["same"]
    assert ids(index.query(vector=[1.0, 0.0, 0.0, 0.0], top_k=10, namespace="nope")) == []

    stats = index.describe_index_stats()
    counts = {ns: s.vector_count for ns, s in stats.namespaces.items()}
    assert counts == {"__default__": 1, "one": 2, "two": 1}
    assert stats.total_vector_count == 4

    index.delete(delete_all=True, namespace="one")
    assert {ns for ns in index.describe_index_stats().namespaces} == {"__default__", "two"}
    with pytest.raises(
        NotFoundException
    ) as err:  # serverless: deleting in a missing namespace is a 404
        index.delete(ids=["same"], namespace="one")
    assert body_of(err.value) == {"code": 5, "message": "Namespace not found", "details": []}


def test_list_pagination(pc: Pinecone) -> None:
    index = make_index(pc)
    all_ids = [f"doc{i:02d}#chunk" for i in range(25)] + ["other", "Doc-upper"]
    index.upsert(vectors=[(vid, [1.0, 0.0, 0.0, 0.0]) for vid in all_ids], namespace="n")
    pages = list(index.list(prefix="doc", limit=10, namespace="n"))
    assert [len(p) for p in pages] == [10, 10, 5]
    flat = [vid for p in pages for vid in p]
    assert flat == sorted(v for v in all_ids if v.startswith("doc"))
    everything = [vid for p in index.list(namespace="n") for vid in p]
    assert everything == sorted(
        all_ids, key=lambda s: s.encode()
    )  # bitwise order: "Doc-upper" first
    last = index.list_paginated(prefix="doc2", namespace="n")
    assert [v.id for v in last.vectors] == [
        "doc20#chunk",
        "doc21#chunk",
        "doc22#chunk",
        "doc23#chunk",
        "doc24#chunk",
    ]
    assert last.pagination is None
    with pytest.raises(PineconeApiException) as err:
        index.list_paginated(namespace="n", pagination_token="not-a-token")
    assert err.value.status == 400


def test_update_semantics(pc: Pinecone) -> None:
    index = make_index(pc)
    index.upsert(vectors=[("u", [1.0, 0.0, 0.0, 0.0], {"keep": "me", "n": 1})])
    index.update(id="u", set_metadata={"n": 2, "new": ["a"]})
    assert index.fetch(ids=["u"]).vectors["u"].metadata == {"keep": "me", "n": 2.0, "new": ["a"]}
    index.update(id="ghost", set_metadata={"n": 3})  # unknown id: no-op
    assert index.fetch(ids=["ghost"]).vectors == {}
    with pytest.raises(PineconeApiException) as err:
        index.update(id="u", values=[1.0, 2.0])
    assert err.value.status == 400


# ------------------------------------------------------------- faults, auth, concurrency


def test_429_surfaces_as_pinecone_api_exception(emu: PineconeEmulator, pc: Pinecone) -> None:
    index = make_index(pc)
    index.upsert(vectors=[("a", [1.0, 0.0, 0.0, 0.0])])
    emu.clear_requests()
    emu.inject("query", status=429, times=1)
    with pytest.raises(PineconeApiException) as err:
        index.query(vector=[1.0, 0.0, 0.0, 0.0], top_k=1)
    assert type(err.value) is PineconeApiException and err.value.status == 429
    assert body_of(err.value) == {"code": 8, "message": "Too Many Requests", "details": []}
    assert ids(index.query(vector=[1.0, 0.0, 0.0, 0.0], top_k=1)) == ["a"]  # the fault is spent
    assert [r.path for r in emu.requests] == ["/query", "/query"]

    emu.inject("list_indexes", status=429)
    with pytest.raises(PineconeApiException) as cerr:
        pc.list_indexes()
    assert body_of(cerr.value) == {
        "error": {"code": "RESOURCE_EXHAUSTED", "message": "Too Many Requests"},
        "status": 429,
    }


def test_5xx_is_retried_by_the_sdk(emu: PineconeEmulator, pc: Pinecone) -> None:
    index = make_index(pc)
    emu.clear_requests()
    emu.inject("/vectors/upsert", status=503, times=2)
    assert index.upsert(vectors=[("a", [1.0, 0.0, 0.0, 0.0])]).upserted_count == 1
    assert [r.path for r in emu.requests] == ["/vectors/upsert"] * 3  # urllib3 retried 503 twice

    emu.inject("fetch", status=500, times=None)
    raw = httpx.get(
        f"{emu.index_url(_index_name(pc, index))}/vectors/fetch",
        params={"ids": "a"},
        headers={"Api-Key": API_KEY},
    )
    assert raw.status_code == 500 and raw.json() == {
        "code": 13,
        "message": "Internal server error",
        "details": [],
    }
    emu.reset_faults()
    assert "a" in index.fetch(ids=["a"]).vectors


def test_delay_triggers_client_timeout_and_retry(emu: PineconeEmulator, pc: Pinecone) -> None:
    index = make_index(pc)
    index.upsert(vectors=[("a", [1.0, 0.0, 0.0, 0.0])])
    emu.clear_requests()
    emu.inject("query", delay_s=1.0, times=1)
    started = time.monotonic()
    res = index.query(vector=[1.0, 0.0, 0.0, 0.0], top_k=1, _request_timeout=0.2)
    assert ids(res) == ["a"]
    assert time.monotonic() - started < 1.0  # the SDK timed out and retried rather than waiting
    assert [r.path for r in emu.requests] == ["/query", "/query"]


def test_auth(emu: PineconeEmulator, pc: Pinecone) -> None:
    index = make_index(pc)
    bad = Pinecone(api_key="wrong", host=emu.url)
    with pytest.raises(UnauthorizedException) as err:
        bad.list_indexes()
    assert body_of(err.value) == {
        "error": {"code": "UNAUTHENTICATED", "message": "Invalid API Key"},
        "status": 401,
    }
    bad_index = bad.Index(host=index._config.host)
    with pytest.raises(UnauthorizedException) as derr:
        bad_index.query(vector=[1.0, 0.0, 0.0, 0.0], top_k=1)
    assert body_of(derr.value)["code"] == 16
    missing = httpx.get(f"{emu.url}/indexes")
    assert missing.status_code == 401 and missing.json()["error"]["code"] == "UNAUTHENTICATED"
    with pytest.raises(PineconeConfigurationError):
        Pinecone(api_key="", host=emu.url)


def test_concurrent_upserts_are_thread_safe(pc: Pinecone) -> None:
    index = make_index(pc)

    def worker(t: int) -> None:
        for i in range(15):
            index.upsert(
                vectors=[(f"t{t}-{i}", [1.0, float(t), float(i), 0.0])], namespace=f"ns{t % 2}"
            )

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(6)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    stats = index.describe_index_stats()
    assert stats.total_vector_count == 90
    assert {ns: s.vector_count for ns, s in stats.namespaces.items()} == {"ns0": 45, "ns1": 45}


def test_asyncio_client(emu: PineconeEmulator, pc: Pinecone) -> None:
    pytest.importorskip("aiohttp")
    import asyncio

    from pinecone import PineconeAsyncio

    name = _name("aio")
    pc.create_index(name=name, dimension=4, metric="dotproduct", spec=SPEC)

    async def run() -> list[tuple[str, float]]:
        async with PineconeAsyncio(api_key=API_KEY, host=emu.url) as apc:
            desc = await apc.describe_index(name)
            async with apc.IndexAsyncio(host=desc.host) as aindex:
                await aindex.upsert(
                    vectors=[("z", [1.0, 0.0, 0.0, 0.0], {"k": "v"})], namespace="n"
                )
                res = await aindex.query(
                    vector=[1, 0, 0, 0],
                    top_k=1,
                    namespace="n",
                    filter={"k": "v"},
                    include_metadata=True,
                )
                return [(m.id, m.score) for m in res.matches]

    assert asyncio.run(run()) == [("z", 1.0)]
