"""Pinecone (the real SDK against the loopback emulator) against the store spec, plus the
adapter's own rules: retries, size limits, types, namespaces, index lifecycle, hybrid."""

from __future__ import annotations

import itertools
import logging
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from rag_app.access.filters import parse_filter
from rag_app.errors import ConfigError, StoreError
from rag_app.stores.base import NativeHybrid, VectorStorePort
from rag_app.stores.pinecone import (
    META_NAMESPACE,
    PineconeHybridStore,
    PineconeOptions,
    PineconeStore,
    open_pinecone,
    translate,
)
from tests.conformance.store_conformance import StoreConformance
from tests.emulators.pinecone_server import PineconeEmulator

pytestmark = [pytest.mark.server]

API_KEY = "test-key"


@pytest.fixture(scope="module")
def pinecone_emulator() -> Iterator[PineconeEmulator]:
    with PineconeEmulator(api_key=API_KEY) as emu:
        yield emu


def options(emu: PineconeEmulator, **overrides: object) -> PineconeOptions:
    values: dict[str, object] = {
        "api_key": API_KEY,
        "controller_host": emu.url,
        "host": None,  # never a developer's RAG_PINECONE_HOST
        "retry_base_delay_s": 0.001,
        "timeout_s": 5.0,
    }
    values.update(overrides)
    return PineconeOptions(**values)  # type: ignore[arg-type]


_names = itertools.count()


def fresh_name(prefix: str = "t") -> str:
    return f"{prefix}{next(_names):04d}-{uuid.uuid4().hex[:8]}"


def open_store(
    emu: PineconeEmulator,
    name: str,
    *,
    dimension: int = 4,
    embedding_model: str = "fake",
    create: bool = True,
    **overrides: object,
) -> PineconeStore:
    store = open_pinecone(
        options(emu, **overrides),
        index_name=name,
        dimension=dimension,
        embedding_model=embedding_model,
    )
    if create:
        store.create_index()
    return store


# Where PineconeStore knowingly departs from the store spec (strict xfails, shared with the
# live suite).
PINECONE_KNOWN_FAILURES: dict[str, str] = {}


class TestPineconeEmulated(StoreConformance):
    known_failures = PINECONE_KNOWN_FAILURES

    @pytest.fixture(scope="class")
    @classmethod
    def store_factory(
        cls, pinecone_emulator: PineconeEmulator
    ) -> Iterator[Callable[[int], VectorStorePort]]:
        opened: list[PineconeStore] = []

        def factory(dimension: int) -> VectorStorePort:
            store = open_store(pinecone_emulator, fresh_name("c"), dimension=dimension)
            opened.append(store)
            return store

        yield factory
        for store in opened:
            store.close()

    @pytest.fixture
    def reopen_store(self, pinecone_emulator: PineconeEmulator) -> Callable[..., VectorStorePort]:
        def reopen(
            store: VectorStorePort,
            *,
            dimension: int | None = None,
            embedding_model: str | None = None,
        ) -> VectorStorePort:
            return open_store(
                pinecone_emulator,
                store.info.collection,
                dimension=dimension or store.info.dimension,
                embedding_model=embedding_model or store.info.embedding_model,
                create=False,
            )

        return reopen


# -- adapter-specific rules ------------------------------------------------------------------
def test_429_is_retried_with_backoff_then_succeeds(pinecone_emulator: PineconeEmulator) -> None:
    emu = pinecone_emulator
    store = open_store(emu, fresh_name())
    emu.inject("upsert", 429, times=2, index=store.info.collection)
    store.upsert(["a"], ["t"], [[1, 0, 0, 0]], [{"v": 1}])
    assert [r.id for r in store.get(["a"])] == ["a"]
    emu.inject("query", 503, times=2, index=store.info.collection)
    assert [h.id for h in store.query([1, 0, 0, 0], 1, None)] == ["a"]


def test_persistent_429_gives_a_clear_error_after_the_last_attempt(
    pinecone_emulator: PineconeEmulator,
) -> None:
    emu = pinecone_emulator
    store = open_store(emu, fresh_name(), max_retries=3)
    name = store.info.collection
    emu.clear_requests()
    emu.inject("query", 429, times=None, index=name)
    try:
        with pytest.raises(StoreError, match=r"HTTP 429 after 3 attempts"):
            store.query([1, 0, 0, 0], 1, None)
    finally:
        emu.reset_faults()
    assert sum(1 for r in emu.requests if r.path == "/query") == 3


def test_a_failed_upsert_raises_its_own_error_not_the_token_write(
    pinecone_emulator: PineconeEmulator,
) -> None:
    emu = pinecone_emulator
    store = open_store(emu, fresh_name(), max_retries=2)
    before = store.change_token()
    emu.inject("upsert", 503, times=None, index=store.info.collection)
    try:
        with pytest.raises(StoreError, match=r"upsert on index .* HTTP 503 after 2 attempts"):
            store.upsert(["a", "b"], ["a", "b"], [[1, 0, 0, 0]] * 2, [{"v": 1}, {"v": 2}])
    finally:
        emu.reset_faults()
    assert store.change_token() == before  # the token write failed too (and was logged)
    store.upsert(["a"], ["a"], [[1, 0, 0, 0]], [{"v": 1}])
    assert store.change_token() != before


def test_index_name_defaults_to_the_collection_made_valid() -> None:
    from rag_app.settings import Settings
    from rag_app.stores.pinecone import _location, index_name

    opts = PineconeOptions(api_key="k", index=None, host=None, controller_host=None)
    assert index_name(Settings(collection="My_Docs"), opts) == "my-docs"
    with pytest.raises(ConfigError, match="RAG_PINECONE_INDEX"):
        index_name(Settings(collection="my.docs"), opts)
    assert _location(Settings(), opts) == "pinecone:https://api.pinecone.io:rag-app"


def test_a_timeout_is_retried(pinecone_emulator: PineconeEmulator) -> None:
    emu = pinecone_emulator
    store = open_store(emu, fresh_name(), timeout_s=0.3)
    emu.inject("query", None, times=1, delay_s=1.0, index=store.info.collection)
    assert store.query([1, 0, 0, 0], 1, None) == []


def test_metadata_over_40kb_names_the_record_and_sends_nothing(
    pinecone_emulator: PineconeEmulator,
) -> None:
    emu = pinecone_emulator
    store = open_store(emu, fresh_name())
    emu.clear_requests()
    with pytest.raises(StoreError, match=r"'big-one'.*40960 bytes"):
        store.upsert(
            ["ok", "big-one"],
            ["small", "x" * 41_000],
            [[1, 0, 0, 0], [0, 1, 0, 0]],
            [{"v": 1}, {"v": 2}],
        )
    assert [r for r in emu.requests if r.path.startswith("/vectors/upsert")] == []
    assert store.count() == 0


def test_ints_bools_and_number_lists_come_back_with_their_types(
    pinecone_emulator: PineconeEmulator,
) -> None:
    store = open_store(pinecone_emulator, fresh_name())
    meta = {"year": 2020, "f": 2.0, "t": True, "nums": [1, 2.5, True, "x"], "tags": ["a"]}
    store.upsert(["a"], ["t"], [[1, 0, 0, 0]], [meta])
    (record,) = store.get(["a"])
    assert record.metadata == meta
    assert type(record.metadata["year"]) is int and type(record.metadata["f"]) is float
    assert [type(v) for v in record.metadata["nums"]] == [int, float, bool, str]
    # what Pinecone holds: floats, and lists of strings only
    stored = [r.body for r in pinecone_emulator.requests if r.path == "/vectors/upsert"][-2]
    (vector,) = stored["vectors"]
    assert vector["metadata"]["year"] == 2020 and vector["metadata"]["text"] == "t"
    assert all(isinstance(v, str) for v in vector["metadata"]["nums"])


@pytest.mark.parametrize(
    "bad",
    [{"text": "x"}, {"_rag_ints": ["a"]}, {"nested": {"a": 1}}, {"l": [[1]]}],
    ids=["text", "reserved-prefix", "nested", "list-of-lists"],
)
def test_unstorable_metadata_is_rejected_before_sending(
    pinecone_emulator: PineconeEmulator, bad: dict[str, Any]
) -> None:
    emu = pinecone_emulator
    store = open_store(emu, fresh_name())
    emu.clear_requests()
    with pytest.raises(StoreError, match=r"record 'r1', metadata field"):
        store.upsert(["r1"], ["t"], [[1, 0, 0, 0]], [bad])
    assert not [r for r in emu.requests if r.path == "/vectors/upsert"]


def test_each_tenant_gets_its_own_namespace(pinecone_emulator: PineconeEmulator) -> None:
    emu = pinecone_emulator
    store = open_store(emu, fresh_name())
    emu.clear_requests()
    store.upsert(
        ["a1", "b1", "n1"],
        ["a", "b", "n"],
        [[1, 0, 0, 0]] * 3,
        [{"tenant": "acme"}, {"tenant": "globex"}, {"v": 1}],
    )
    sent = {
        (r.body.get("namespace") or ""): sorted(v["id"] for v in r.body["vectors"])
        for r in emu.requests
        if r.path == "/vectors/upsert" and r.body.get("namespace") != META_NAMESPACE
    }
    assert sent == {"acme": ["a1"], "globex": ["b1"], "": ["n1"]}
    index = store._require_index("test")
    stats = index.describe_index_stats()
    assert set(stats.namespaces) == {"acme", "globex", "__default__", META_NAMESPACE}
    assert store.count() == 3 and store.count(tenant="acme") == 1
    assert [h.id for h in store.query([1, 0, 0, 0], 5, None)] == ["n1"]  # default namespace
    emu.clear_requests()
    store.query([1, 0, 0, 0], 5, parse_filter({"acl": {"$contains": "x"}}), tenant="acme")
    (query,) = [r.body for r in emu.requests if r.path == "/query"]
    assert query["namespace"] == "acme" and "acl" in str(query["filter"])
    with pytest.raises(StoreError, match="reserved"):
        store.query([1, 0, 0, 0], 5, None, tenant=META_NAMESPACE)


def test_translation_guards_lists_and_missing_fields() -> None:
    contains = translate(parse_filter({"acl": {"$contains": "public"}}))  # type: ignore[arg-type]
    assert {"acl": {"$in": ["public"]}} in contains["$or"][0]["$and"]
    ne = translate(parse_filter({"category": {"$ne": "hr"}}))  # type: ignore[arg-type]
    assert {"category": {"$exists": False}} in ne["$or"]


def test_emulator_semantics_the_translation_relies_on(pinecone_emulator: PineconeEmulator) -> None:
    """Pinecone matches list fields element-wise and the emulator, like MongoDB, lets a missing
    field pass $ne/$nin; the translation must give the grammar's answer either way."""
    emu = pinecone_emulator
    store = open_store(emu, fresh_name())
    store.upsert(
        ["list", "scalar", "none"],
        ["l", "s", "n"],
        [[1, 0, 0, 0]] * 3,
        [{"tags": ["hr", "x"]}, {"tags": "hr"}, {"other": 1}],
    )
    index = store._require_index("test")
    raw = index.query(vector=[1.0, 0.0, 0.0, 0.0], top_k=10, filter={"tags": {"$eq": "hr"}})
    assert {m.id for m in raw.matches} == {"list", "scalar"}  # element-wise: not the grammar
    raw = index.query(vector=[1.0, 0.0, 0.0, 0.0], top_k=10, filter={"tags": {"$ne": "hr"}})
    assert {m.id for m in raw.matches} == {"none"}  # missing passes $ne (MongoDB)

    def ids(raw_filter: dict[str, Any]) -> set[str]:
        return {h.id for h in store.query([1, 0, 0, 0], 10, parse_filter(raw_filter))}

    assert ids({"tags": "hr"}) == {"scalar"}
    assert ids({"tags": {"$contains": "hr"}}) == {"list"}
    assert ids({"tags": {"$ne": "hr"}}) == {"list", "none"}
    assert ids({"tags": {"$nin": ["hr"]}}) == {"list", "none"}


def test_ne_stays_exact_when_pinecone_fails_missing_fields() -> None:
    """If the live service did not let a missing field pass $ne/$nin, $exists covers it."""
    with PineconeEmulator(api_key=API_KEY, ne_matches_missing=False) as emu:
        store = open_store(emu, fresh_name())
        store.upsert(["a", "b"], ["a", "b"], [[1, 0, 0, 0]] * 2, [{"c": "hr"}, {"d": 1}])
        got = store.query([1, 0, 0, 0], 10, parse_filter({"c": {"$nin": ["hr"]}}))
        assert [h.id for h in got] == ["b"]
        store.close()


def test_a_missing_api_key_is_a_clear_config_error(
    pinecone_emulator: PineconeEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PINECONE_API_KEY", raising=False)
    monkeypatch.delenv("RAG_PINECONE_API_KEY", raising=False)
    opts = PineconeOptions(controller_host=pinecone_emulator.url)
    with pytest.raises(ConfigError, match="PINECONE_API_KEY"):
        open_pinecone(opts, index_name="x", dimension=4, embedding_model="fake")


def test_api_key_is_read_from_pinecone_api_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RAG_PINECONE_API_KEY", raising=False)
    monkeypatch.setenv("PINECONE_API_KEY", "from-env")
    opts = PineconeOptions()
    assert opts.api_key is not None and opts.api_key.get_secret_value() == "from-env"
    assert "from-env" not in repr(opts)


def test_a_missing_index_is_never_created_by_a_read(pinecone_emulator: PineconeEmulator) -> None:
    emu = pinecone_emulator
    name = fresh_name("missing")
    store = open_store(emu, name, create=False, create_if_missing=False)
    with pytest.raises(StoreError, match=rf"index '{name}' does not exist"):
        store.query([1, 0, 0, 0], 3, None)
    assert store.count() == 0 and list(store.records()) == []
    with pytest.raises(ConfigError, match="RAG_PINECONE_CREATE_IF_MISSING"):
        store.upsert(["a"], ["t"], [[1, 0, 0, 0]], [{"v": 1}])
    assert name not in [i["name"] for i in _list_indexes(emu)]


def test_the_first_write_creates_the_index_and_says_so(
    pinecone_emulator: PineconeEmulator, caplog: pytest.LogCaptureFixture
) -> None:
    emu = pinecone_emulator
    name = fresh_name("created")
    store = open_store(emu, name, create=False, deletion_protection=True)
    with pytest.raises(StoreError, match="does not exist"):
        store.query([1, 0, 0, 0], 3, None)
    with caplog.at_level(logging.WARNING, logger="rag_app.stores.pinecone"):
        store.upsert(["a"], ["t"], [[1, 0, 0, 0]], [{"v": 1}])
    assert f"created Pinecone index '{name}'" in caplog.text
    (model,) = [i for i in _list_indexes(emu) if i["name"] == name]
    assert model["dimension"] == 4 and model["metric"] == "cosine"
    assert model["deletion_protection"] == "enabled"
    assert model["tags"] == {"app": "rag_app", "embedding_model": "fake"}
    assert model["spec"] == {"serverless": {"cloud": "aws", "region": "us-east-1"}}
    assert store.info.location == emu.index_url(name)
    assert [h.id for h in store.query([1, 0, 0, 0], 3, None)] == ["a"]


def test_host_only_checks_dimension_and_model_from_the_data_plane(
    pinecone_emulator: PineconeEmulator,
) -> None:
    emu = pinecone_emulator
    store = open_store(emu, fresh_name())
    store.upsert(["a"], ["t"], [[1, 0, 0, 0]], [{"v": 1}])
    host = emu.index_url(store.info.collection)
    emu.clear_requests()
    direct = open_store(emu, "ignored", host=host, controller_host=None, create=False)
    assert direct.count() == 1 and direct.info.location == host
    assert not [r for r in emu.requests if r.path.startswith("/indexes")]
    with pytest.raises(ConfigError, match="4-dimensional"):
        open_store(emu, "ignored", host=host, dimension=8, create=False)
    with pytest.raises(ConfigError, match="other-model"):
        open_store(emu, "ignored", host=host, embedding_model="other-model", create=False)


def test_upserts_are_split_into_batches(pinecone_emulator: PineconeEmulator) -> None:
    emu = pinecone_emulator
    store = open_store(emu, fresh_name(), batch_size=4)
    emu.clear_requests()
    ids = [f"r{i}" for i in range(10)]
    store.upsert(ids, ids, [[1, 0, 0, float(i)] for i in range(10)], [{"n": i} for i in ids])
    sizes = [
        len(r.body["vectors"])
        for r in emu.requests
        if r.path == "/vectors/upsert" and r.body.get("namespace") != META_NAMESPACE
    ]
    assert sizes == [4, 4, 2]
    assert store.count() == 10


def test_a_cosine_index_has_no_native_hybrid(pinecone_emulator: PineconeEmulator) -> None:
    store = open_store(pinecone_emulator, fresh_name())
    assert type(store) is PineconeStore
    assert not isinstance(store, NativeHybrid)


def test_hybrid_on_a_dotproduct_index_ranks_a_keyword_match(
    pinecone_emulator: PineconeEmulator,
) -> None:
    store = open_store(pinecone_emulator, fresh_name(), metric="dotproduct")
    assert isinstance(store, PineconeHybridStore) and isinstance(store, NativeHybrid)
    texts = {
        "dense-near": "general notes about the weather today",
        "keyword": "the zygomorphic flower petals of orchids",
        "other": "quarterly revenue figures and forecasts",
    }
    vectors = {"dense-near": [1.0, 0, 0, 0], "keyword": [0.6, 0.8, 0, 0], "other": [0, 0, 1.0, 0]}
    ids = list(texts)
    store.upsert(
        ids,
        [texts[i] for i in ids],
        [vectors[i] for i in ids],
        [{"tenant": "acme", "acl": ["public"]} for _ in ids],
    )
    query = [1.0, 0.0, 0.0, 0.0]
    dense = store.query(query, 3, None, tenant="acme")
    assert dense[0].id == "dense-near"
    hybrid = store.hybrid_query("zygomorphic orchids", query, 3, None, tenant="acme", alpha=0.3)
    assert hybrid[0].id == "keyword"
    only_dense = store.hybrid_query("zygomorphic orchids", query, 3, None, tenant="acme", alpha=1.0)
    assert only_dense[0].id == "dense-near"
    where = parse_filter({"acl": {"$contains": "nobody"}})
    assert store.hybrid_query("orchids", query, 3, where, tenant="acme", alpha=0.3) == []
    assert store.hybrid_query("orchids", query, 3, None, tenant="globex", alpha=0.3) == []


def test_as_langchain_warns_that_it_bypasses_permissions(
    pinecone_emulator: PineconeEmulator,
) -> None:
    from tests.fakes import HashEmbeddings

    store = open_store(pinecone_emulator, fresh_name())
    store.upsert(["a"], ["robot arms"], [[1, 0, 0, 0]], [{"tenant": "acme"}])
    with pytest.warns(UserWarning, match="BYPASSES PERMISSIONS"):
        lc = store.as_langchain(HashEmbeddings(4), tenant="acme")
    (doc,) = lc.similarity_search_by_vector([1.0, 0.0, 0.0, 0.0], k=1)
    assert doc.page_content == "robot arms"


def _list_indexes(emu: PineconeEmulator) -> list[dict[str, Any]]:
    from pinecone import Pinecone

    return [i.to_dict() for i in Pinecone(api_key=API_KEY, host=emu.url).list_indexes()]
