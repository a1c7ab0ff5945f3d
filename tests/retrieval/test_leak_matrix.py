"""Leak matrix: every (backend, retriever, principal, query, caller filter) sees only what it
may read. The retrievers are dense (`SecureSearch`), BM25 (`KeywordSearch`) and hybrid
(`HybridSearch`, both fusions), all over the same store.

The allowed sets are computed here from each document's tenant and acl (not with `can_read`),
every document's text carries a unique canary, and every search must return *something*
wherever the principal may read matching documents, so a store that filters everything
away fails as loudly as one that leaks.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import pytest

from rag_app.access.filters import And, Cmp, Node, Or, matches, parse_filter
from rag_app.access.permissions import Principal, access_filter
from rag_app.errors import AccessDenied, FilterError, StoreError
from rag_app.retrieval.bm25 import KeywordIndex, KeywordSearch
from rag_app.retrieval.hybrid import HybridSearch, IdsFirstDense, NativeHybridRetriever
from rag_app.retrieval.retriever import PermissionAwareRetriever
from rag_app.retrieval.search import PermissionGuard, RawHits, Searcher, SecureSearch
from rag_app.stores.base import (
    NativeHybrid,
    NearestIds,
    StoreHit,
    StoreInfo,
    StoreRecord,
    VectorStorePort,
)
from rag_app.stores.chroma import ChromaStore
from tests.fakes import HashEmbeddings

# -- corpus -----------------------------------------------------------------------------------
TOPICS = {
    "hr": "payroll salary vacation benefits leave onboarding",
    "eng": "kubernetes deploy database latency outage rollback",
    "finance": "budget invoice revenue forecast audit expenses",
    "legal": "contract liability compliance lawsuit counsel",
}
# Per tenant, cycled over its documents: tokens of both tenants' users and groups appear in
# both tenants, so same-named groups and users of the other tenant must not help.
ACLS: dict[str, list[list[str]]] = {
    "acme": [
        ["public"],
        ["group:hr"],
        ["group:eng"],
        ["group:staff"],
        ["user:ann"],
        ["user:ben"],
        ["user:cid", "group:hr"],
        ["group:finance"],  # nobody in acme is in finance
        ["user:gus"],  # gus is a globex user
        ["group:eng", "user:ann"],
    ],
    "globex": [
        ["public"],
        ["group:hr"],
        ["group:staff"],
        ["user:gus"],
        ["user:ann"],  # only globex's own ann
        ["group:eng"],
        ["user:ben"],  # ben is an acme user
        ["group:legal"],
        ["group:hr", "user:hal"],
        ["public", "group:eng"],
    ],
}
DOCS_PER_TENANT = 20


@dataclass(frozen=True)
class Doc:
    id: str
    tenant: str
    acl: tuple[str, ...]
    text: str
    metadata: dict[str, Any]


def canary(doc_id: str) -> str:
    return f"CANARY-{doc_id}"


def build_corpus() -> list[Doc]:
    docs = []
    topics = list(TOPICS)
    for tenant, acls in ACLS.items():
        for n in range(DOCS_PER_TENANT):
            doc_id = f"{tenant}-doc-{n:02d}"
            topic = topics[n % len(topics)]
            acl = tuple(acls[n % len(acls)])
            metadata: dict[str, Any] = {
                "tenant": tenant,
                "acl": list(acl),
                "doc_id": doc_id,
                "year": 2018 + n % 6,
            }
            if n % 7 != 6:  # a few documents lack a category
                metadata["category"] = topic
            text = f"{TOPICS[topic]} report {n} of {tenant} {canary(doc_id)} confidential"
            docs.append(Doc(doc_id, tenant, acl, text, metadata))
    return docs


CORPUS = build_corpus()
BY_ID = {d.id: d for d in CORPUS}
assert len(BY_ID) == len(CORPUS) == 40
# Fixed-width ids: no canary is a substring of another.
assert not any(canary(a) in canary(b) for a in BY_ID for b in BY_ID if a != b)


@dataclass(frozen=True)
class Who:
    tenant: str
    user: str | None = None
    groups: tuple[str, ...] = ()

    @property
    def principal(self) -> Principal:
        return Principal(self.tenant, self.user, frozenset(self.groups))

    def allowed(self) -> frozenset[str]:
        """Independent of rag_app: same tenant and a shared acl token."""
        held = {"public"}
        if self.user is not None:
            held |= {f"user:{self.user}", *(f"group:{g}" for g in self.groups)}
        return frozenset(d.id for d in CORPUS if d.tenant == self.tenant and held & set(d.acl))


PEOPLE = {
    "ann@acme": Who("acme", "ann", ("hr", "staff")),
    "ben@acme": Who("acme", "ben", ("eng", "staff")),
    "cid@acme": Who("acme", "cid", ("staff",)),
    "anon@acme": Who("acme"),
    "gus@globex": Who("globex", "gus", ("hr", "staff")),
    "ann@globex": Who("globex", "ann", ("eng",)),
    "hal@globex": Who("globex", "hal"),
    "anon@globex": Who("globex"),
}

QUERIES = [
    "payroll salary benefits",
    "kubernetes outage rollback",
    "budget forecast audit",
    "contract compliance counsel",
    "CANARY confidential report acme globex",
    "zzzz unrelated words",
]

LEGAL_FILTERS: dict[str, Any] = {
    "none": None,
    "empty": {},
    "empty-json": "  ",
    "category-hr": {"category": "hr"},
    "category-json": '{"category": "eng"}',
    "or-hr-or-not-hr": {"$or": [{"category": "hr"}, {"category": {"$ne": "hr"}}]},
    "ne-zzz": {"category": {"$ne": "zzz"}},
    "nin": {"category": {"$nin": ["legal"]}},
    "or-anything": {"$or": [{"doc_id": {"$ne": "x"}}, {"year": {"$gte": 0}}]},
    "TENANT-lookalike": {"TENANT": "globex"},
    "node-year": Or((Cmp("year", "$lt", 2020), Cmp("category", "$eq", "legal"))),
}

WIDENING_FILTERS: dict[str, Any] = {
    "tenant": {"tenant": "globex"},
    "or-tenant": {"$or": [{"tenant": "globex"}, {"category": "hr"}]},
    "acl-contains-public": {"acl": {"$contains": "public"}},
    "acl-ne": {"acl": {"$ne": "x"}},
    "acl-nin": {"acl": {"$nin": ["group:hr"]}},
    "or-ne-acl": {"$or": [{"category": {"$ne": "zzz"}}, {"acl": {"$contains": "group:hr"}}]},
    "tenant-in": {"tenant": {"$in": ["acme", "globex"]}},
    "tenant-ne": {"tenant": {"$ne": "acme"}},
    "deep-tenant": {
        "$and": [{"category": "hr"}, {"$or": [{"year": 1}, {"$and": [{"tenant": "globex"}]}]}]
    },
    "tenant-json": '{"$or": [{"tenant": "globex"}, {"year": {"$gt": 0}}]}',
    "tenant-node": Cmp("tenant", "$eq", "globex"),
    "acl-node": Or((Cmp("category", "$eq", "hr"), Cmp("acl", "$contains", "group:hr"))),
    "where": {"$where": "1"},
    "regex": {"category": {"$regex": ".*"}},
    "exists": {"tenant": {"$exists": True}},
    "nor": {"$nor": [{"tenant": "acme"}]},
    "not": {"$not": {"tenant": "acme"}},
    "dotted-field": {"acl.0": "public"},
    "spaced-field": {"tenant ": "globex"},
    "operator-object-value": {"category": {"$eq": {"$ne": None}}},
    "null": {"category": None},
    "bad-json": "{'tenant': 'globex'}",
    "json-array": "[]",
}

KNOWN_FIELDS = {"tenant": "str", "acl": "list", "category": "str", "year": "int", "doc_id": "str"}


def caller_node(raw: Any) -> Node | None:
    if raw is None or isinstance(raw, dict | str):
        return parse_filter(raw)
    node: Node = raw
    return node


def test_the_matrix_is_meaningful() -> None:
    """Every named user reads something through a group or user token, not only public, and
    is denied something in its own tenant; every tenant's ann differs."""
    public = {p: w for p, w in PEOPLE.items() if w.user is None}
    for name, who in PEOPLE.items():
        allowed = who.allowed()
        own_tenant = {d.id for d in CORPUS if d.tenant == who.tenant}
        assert allowed, name
        assert allowed < own_tenant, name
        if who.user is not None:
            assert allowed > public[f"anon@{who.tenant}"].allowed(), name
    assert PEOPLE["ann@acme"].allowed().isdisjoint(PEOPLE["ann@globex"].allowed())
    # Some caller filters leave nothing to find: the non-empty checks must also see that.
    assert not any(
        matches(caller_node(LEGAL_FILTERS["TENANT-lookalike"]), d.metadata) for d in CORPUS
    )


# -- backends ---------------------------------------------------------------------------------
def load(store: VectorStorePort, embeddings: HashEmbeddings) -> None:
    store.upsert(
        [d.id for d in CORPUS],
        [d.text for d in CORPUS],
        embeddings.embed_documents([d.text for d in CORPUS]),
        [d.metadata for d in CORPUS],
    )


BACKENDS = [
    "embedded",
    pytest.param("server", marks=[pytest.mark.server, pytest.mark.slow]),
    pytest.param("pinecone", marks=[pytest.mark.server]),
    pytest.param("pinecone-dotproduct", marks=[pytest.mark.server]),
    pytest.param("weaviate", marks=[pytest.mark.server]),
]


def partitioned(store: VectorStorePort) -> bool:
    """Stores that keep each tenant in its own partition (namespaces, tenants)."""
    return store.info.backend in ("pinecone", "weaviate")


def open_backend(
    kind: str, request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> VectorStorePort:
    """The leak-matrix collection on one backend: Chroma (embedded or a server), or the
    Pinecone and Weaviate adapters against their emulators (driven by the real SDKs)."""
    from rag_app.settings import Settings
    from rag_app.stores import open_store

    data = tmp_path_factory.mktemp("leak")
    if kind in ("embedded", "server"):
        where: dict[str, Any] = (
            {"url": request.getfixturevalue("chroma_server_url")}
            if kind == "server"
            else {"path": data / "chroma"}
        )
        return ChromaStore(collection="leak-matrix", dimension=32, embedding_model="hash", **where)
    if kind.startswith("pinecone"):
        from tests.emulators.pinecone_server import PineconeEmulator

        emu = PineconeEmulator(api_key="leak-key").start()
        request.addfinalizer(emu.stop)
        options: dict[str, Any] = {
            "controller_host": emu.url,
            "api_key": "leak-key",
            "index": "leak-matrix",
            "metric": "dotproduct" if kind.endswith("dotproduct") else "cosine",
        }
        settings = Settings(data_dir=data, store="pinecone", store_options=options)
    else:
        from tests.emulators.weaviate_server import WeaviateEmulator

        wemu = WeaviateEmulator().start()
        request.addfinalizer(wemu.stop)
        options = {"url": wemu.url, "grpc_port": wemu.grpc_port}
        settings = Settings(data_dir=data, store="weaviate", store_options=options)
    return open_store(settings, dimension=32, embedding_model="hash")


@pytest.fixture(scope="module", params=BACKENDS)
def search(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[SecureSearch]:
    embeddings = HashEmbeddings(dimension=32)
    store = open_backend(request.param, request, tmp_path_factory)
    load(store, embeddings)
    assert store.count() == len(CORPUS)
    yield SecureSearch(store, embeddings, default_k=5)
    store.close()


KINDS = [
    "dense",
    "bm25",
    "hybrid-weighted",
    "hybrid-rrf",
    "hybrid-ids-first",
    "hybrid-ids-first-nearest",
    "hybrid-ids-first-many",
    "hybrid-ids-first-scan",
    "hybrid-native",
]


def make_searcher(kind: str, dense: SecureSearch, **guard: Any) -> Searcher:
    if kind == "dense":
        return dense
    if kind == "hybrid-native":
        if not isinstance(dense.store, NativeHybrid):
            pytest.skip(f"the {dense.store.info.backend} store has no hybrid search of its own")
        raw = NativeHybridRetriever(dense.store, dense.embeddings, alpha=0.5)
        return PermissionGuard(raw, dense.store, default_k=5, **guard)
    index = KeywordIndex(dense.store, generation=lambda: 0)
    keyword = KeywordSearch(index, default_k=5, **guard)
    if kind == "bm25":
        return keyword
    if kind.startswith("hybrid-ids-first"):  # the App's fused search on a NearestIds store
        if not isinstance(dense.store, NearestIds):
            pytest.skip(f"the {dense.store.info.backend} store has no ids-only query")
        # default: exact over a copy of every vector; "nearest": no copy (Chroma's nearest
        # ids, narrow filters over vectors read from the store); "scan": no copy and the
        # nearest ids for every principal, however narrow; "many": no copy and every narrow
        # filter matching more chunks than may be read (a reader of a few percent of 1M)
        copy_bytes = 0 if kind.endswith(("nearest", "many", "scan")) else None
        ids_first = IdsFirstDense(dense.raw, index, dense.store, copy_bytes=copy_bytes)
        if kind.endswith("scan"):
            ids_first.MIN_SHARE = 0.0
        if kind.endswith("many"):
            ids_first.MAX_AMONG = 0
        return HybridSearch(
            ids_first, keyword, store=dense.store, candidates=20, default_k=5, **guard
        )
    fusion = "rrf" if kind.endswith("rrf") else "weighted"
    return HybridSearch(dense, keyword, fusion=fusion, candidates=20, default_k=5, **guard)


@pytest.fixture(scope="module", params=KINDS)
def searcher(request: pytest.FixtureRequest, search: SecureSearch) -> Searcher:
    """Every retriever over the same store (and each store backend)."""
    return make_searcher(request.param, search)


WORDS = re.compile(r"\w\w+")


def lexical(query: str, doc_id: str) -> bool:
    """BM25 only returns chunks sharing a term with the query (computed without rag_app)."""
    terms = set(WORDS.findall(query.lower()))
    return bool(terms & set(WORDS.findall(BY_ID[doc_id].text.lower())))


def findable(searcher: Searcher, query: str, ids: set[str]) -> set[str]:
    """The documents a searcher can return for `query` among `ids`."""
    if searcher.name == "bm25":
        return {i for i in ids if lexical(query, i)}
    return ids


def assert_no_leak(who: Who, hits: Sequence[StoreHit]) -> None:
    allowed = who.allowed()
    returned = [h.id for h in hits]
    assert set(returned) <= allowed, f"leaked {set(returned) - allowed}"
    forbidden = set(BY_ID) - allowed
    for hit in hits:
        assert canary(hit.id) in hit.text
        leaked = [d for d in forbidden if canary(d) in hit.text]
        assert not leaked, f"{hit.id} carries canaries of {leaked}"
        assert hit.metadata["tenant"] == who.tenant


# -- the matrix -------------------------------------------------------------------------------
@pytest.mark.parametrize("raw", LEGAL_FILTERS.values(), ids=LEGAL_FILTERS.keys())
@pytest.mark.parametrize("person", PEOPLE)
def test_search_returns_only_allowed_chunks(searcher: Searcher, person: str, raw: Any) -> None:
    who = PEOPLE[person]
    node = caller_node(raw)
    reachable = {i for i in who.allowed() if matches(node, BY_ID[i].metadata)}
    for query in QUERIES:
        result = searcher.search(who.principal, query, filter=raw, k=5)
        assert not result.denied
        assert result.dropped == 0
        assert result.retriever == searcher.name
        assert_no_leak(who, result.hits)
        assert {h.id for h in result.hits} <= reachable
        # pre-filtered: k is filled whenever enough documents are reachable (for BM25:
        # reachable and sharing a term with the query)
        assert len(result.hits) == min(5, len(findable(searcher, query, reachable))), query

    everything = searcher.search(who.principal, QUERIES[0], filter=raw, k=100)
    assert {h.id for h in everything.hits} == findable(searcher, QUERIES[0], reachable)
    assert_no_leak(who, everything.hits)


@pytest.mark.parametrize("person", PEOPLE)
def test_search_by_vector_returns_only_allowed_chunks(search: SecureSearch, person: str) -> None:
    who = PEOPLE[person]
    for doc in CORPUS:  # aim straight at every document, readable or not
        vector = search.embeddings.embed_query(doc.text)
        result = search.search_by_vector(who.principal, vector, k=3)
        assert_no_leak(who, result.hits)
        assert len(result.hits) == min(3, len(who.allowed()))
        assert (result.hits[0].id == doc.id) == (doc.id in who.allowed())


@pytest.mark.parametrize("raw", WIDENING_FILTERS.values(), ids=WIDENING_FILTERS.keys())
@pytest.mark.parametrize("known_fields", [None, KNOWN_FIELDS], ids=["open", "known-fields"])
def test_widening_filters_are_rejected_before_the_store_is_asked(
    raw: Any, known_fields: dict[str, Any] | None
) -> None:
    store = SpyStore()
    search = SecureSearch(
        store,
        HashEmbeddings(dimension=4),
        known_fields=(lambda _tenant: known_fields) if known_fields else None,  # type: ignore[arg-type, return-value]
    )
    for who in (PEOPLE["ann@acme"], PEOPLE["anon@globex"]):
        with pytest.raises(FilterError):
            search.search(who.principal, "payroll", filter=raw)
        with pytest.raises(FilterError):
            search.search_by_vector(who.principal, [1.0, 0.0, 0.0, 0.0], filter=raw)
        with pytest.raises(FilterError):
            search.effective(who.principal, raw)
    assert store.calls == []


def test_widening_filter_is_rejected_by_the_retriever(search: SecureSearch) -> None:
    retriever = PermissionAwareRetriever(
        search=search, principal=PEOPLE["ann@acme"].principal, filter={"tenant": "globex"}
    )
    with pytest.raises(FilterError):
        retriever.invoke("payroll")


# -- fail closed ------------------------------------------------------------------------------
class SpyStore:
    """Records calls; optionally wraps a real store and appends injected hits."""

    def __init__(
        self, inner: VectorStorePort | None = None, *, inject: Sequence[StoreHit] = ()
    ) -> None:
        self.inner = inner
        self.inject = list(inject)
        self.calls: list[tuple[str, Any]] = []

    @property
    def info(self) -> StoreInfo:
        return StoreInfo("spy", "memory", "spy", 4, "hash-4")

    def upsert(self, *args: Any) -> None:
        raise AssertionError("search must not write")

    def delete(self, ids: Sequence[str], *, tenant: str | None = None) -> None:
        raise AssertionError("search must not delete")

    def query(
        self, vector: Sequence[float], k: int, where: Node | None, *, tenant: str | None = None
    ) -> list[StoreHit]:
        self.calls.append(("query", where))
        hits = self.inner.query(vector, k, where, tenant=tenant) if self.inner else []
        return [*hits, *self.inject]

    def records(
        self, where: Node | None = None, *, tenant: str | None = None, with_text: bool = False
    ) -> Iterator[StoreRecord]:
        self.calls.append(("records", where))
        return iter(())

    def get(self, ids: Sequence[str], *, tenant: str | None = None) -> list[StoreRecord]:
        self.calls.append(("get", list(ids)))
        return self.inner.get(ids, tenant=tenant) if self.inner else []

    def change_token(self) -> str:
        return self.inner.change_token() if self.inner else ""

    def count(self, *, tenant: str | None = None) -> int:
        return 0

    def close(self) -> None:
        pass


class FailingStore(SpyStore):
    def __init__(self, exc: Exception) -> None:
        super().__init__()
        self.exc = exc

    def query(
        self, vector: Sequence[float], k: int, where: Node | None, *, tenant: str | None = None
    ) -> list[StoreHit]:
        self.calls.append(("query", where))
        raise self.exc


def foreign_hit(metadata: dict[str, Any], doc_id: str = "globex-doc-00") -> StoreHit:
    return StoreHit(id=doc_id, text=BY_ID[doc_id].text, metadata=metadata, score=0.99)


@pytest.mark.parametrize(
    "metadata",
    [
        {"tenant": "globex", "acl": ["public"]},
        {"tenant": "acme", "acl": ["group:eng"]},
        {"tenant": "acme", "acl": ["user:ben"]},
        {"tenant": "acme"},
        {"tenant": "acme", "acl": "public"},
        {"tenant": "acme", "acl": []},
        {"acl": ["public"]},
        {"tenant": ["acme"], "acl": ["public"]},
        {},
    ],
    ids=repr,
)
def test_forbidden_hits_from_the_store_are_dropped(
    search: SecureSearch, metadata: dict[str, Any]
) -> None:
    ann = PEOPLE["ann@acme"]
    spy = SpyStore(search.store, inject=[foreign_hit(metadata)])
    wrapped = SecureSearch(spy, search.embeddings, default_k=5)
    result = wrapped.search(ann.principal, "payroll salary", k=5)
    assert result.dropped == 1
    assert "globex-doc-00" not in {h.id for h in result.hits}
    assert len(result.hits) == 5
    assert_no_leak(ann, result.hits)
    honest = search.search(ann.principal, "payroll salary", k=5)
    assert [h.id for h in result.hits] == [h.id for h in honest.hits]


def test_every_store_query_carries_the_access_filter(search: SecureSearch) -> None:
    spy = SpyStore(search.store)
    wrapped = SecureSearch(spy, search.embeddings)
    for who in PEOPLE.values():
        for raw in LEGAL_FILTERS.values():
            wrapped.search(who.principal, "payroll", filter=raw)
            ((kind, where),) = spy.calls
            spy.calls.clear()
            assert kind == "query"
            access = access_filter(who.principal)
            caller = caller_node(raw)
            assert where == (access if caller is None else And((access, caller)))
            admitted = {d.id for d in CORPUS if matches(where, d.metadata)}
            assert admitted <= who.allowed()


class ExplodingPrincipal(Principal):
    def tokens(self) -> tuple[str, ...]:
        raise RuntimeError("directory unavailable")


@dataclass(frozen=True)
class LookAlike:
    """Quacks like ann@acme with extra groups, but is no Principal."""

    tenant: str = "acme"
    user_id: str = "ann"

    def tokens(self) -> tuple[str, ...]:
        return ("public", "group:hr", "group:eng")


@pytest.mark.parametrize(
    "principal",
    [ExplodingPrincipal("acme", "ann", frozenset({"hr"})), None, "ann", LookAlike()],
    ids=["tokens-raise", "none", "string", "look-alike"],
)
def test_a_broken_principal_gets_nothing(search: SecureSearch, principal: Any) -> None:
    spy = SpyStore(search.store)
    wrapped = SecureSearch(spy, search.embeddings)
    result = wrapped.search(principal, "payroll salary", filter={"category": "hr"})
    assert result.denied
    assert result.hits == []
    assert result.effective_filter == {}
    by_vector = wrapped.search_by_vector(principal, [0.0] * 32)
    assert by_vector.denied
    assert by_vector.hits == []
    assert spy.calls == []


def test_junk_filter_objects_never_widen(search: SecureSearch) -> None:
    spy = SpyStore(search.store)
    wrapped = SecureSearch(spy, search.embeddings)
    ann = PEOPLE["ann@acme"]
    for junk in (["tenant", "globex"], 42, object()):
        try:
            result = wrapped.search(ann.principal, "payroll", filter=junk)
        except (FilterError, AccessDenied, StoreError):
            continue
        assert result.hits == []
    assert all(where is not None for _, where in spy.calls)


@pytest.mark.parametrize(
    "exc", [StoreError("chroma is down"), RuntimeError("socket closed")], ids=repr
)
def test_a_failing_store_query_propagates(exc: Exception) -> None:
    store = FailingStore(exc)
    search = SecureSearch(store, HashEmbeddings(dimension=4))
    with pytest.raises(type(exc), match=str(exc)):
        search.search(PEOPLE["ann@acme"].principal, "payroll")
    # one filtered attempt, and no unfiltered fallback of any kind
    assert [kind for kind, _ in store.calls] == ["query"]
    assert store.calls[0][1] is not None


# -- the LangChain retriever ------------------------------------------------------------------
@pytest.mark.parametrize("raw", [None, {"category": "hr"}, '{"year": {"$gte": 2020}}'])
@pytest.mark.parametrize("person", ["ann@acme", "anon@acme", "gus@globex"])
def test_retriever_returns_what_secure_search_returns(
    searcher: Searcher, person: str, raw: Any
) -> None:
    search = searcher
    who = PEOPLE[person]
    for query in QUERIES[:4]:
        retriever = PermissionAwareRetriever(
            search=search, principal=who.principal, filter=raw, k=4
        )
        docs = retriever.invoke(query)
        hits = search.search(who.principal, query, filter=raw, k=4).hits
        assert [d.id for d in docs] == [h.id for h in hits]
        assert [d.metadata["chunk_id"] for d in docs] == [h.id for h in hits]
        assert [d.page_content for d in docs] == [h.text for h in hits]
        assert {d.id for d in docs} <= who.allowed()
        assert all(d.metadata["tenant"] == who.tenant for d in docs)


# -- BM25 and hybrid: the same guard ----------------------------------------------------------
class SpyIndex(KeywordIndex):
    """Records the filter of every keyword search; optionally breaks the pre-filter."""

    def __init__(self, store: VectorStorePort, *, broken_mask: bool = False) -> None:
        super().__init__(store, generation=lambda: 0)
        self.broken_mask = broken_mask
        self.wheres: list[Node] = []

    def search(self, query: str, k: int, where: Node) -> list[StoreHit]:
        self.wheres.append(where)
        if self.broken_mask:
            # A broken pre-filter: every chunk passes. Only the re-check stands in the way.
            return super().search(query, k, Cmp("doc_id", "$ne", "nothing"))
        return super().search(query, k, where)


class LeakyHalf:
    """A raw retriever that returns whatever it is given, ignoring access (a broken half)."""

    name = "leaky"

    def __init__(self, hits: Sequence[StoreHit], *, from_store: bool = True) -> None:
        self.hits = list(hits)
        self.from_store = from_store

    def retrieve(self, query: str, k: int, where: Node, tenant: str) -> RawHits:
        return RawHits(self.hits[:k])


@pytest.mark.parametrize("kind", ["bm25", "hybrid-weighted", "hybrid-rrf"])
@pytest.mark.parametrize("raw", WIDENING_FILTERS.values(), ids=WIDENING_FILTERS.keys())
def test_widening_filters_are_rejected_by_every_retriever(
    search: SecureSearch, kind: str, raw: Any
) -> None:
    spy_store = SpyStore(search.store)
    dense = SecureSearch(spy_store, search.embeddings, known_fields=lambda _tenant: KNOWN_FIELDS)  # type: ignore[arg-type, return-value]
    index = SpyIndex(spy_store)
    keyword = KeywordSearch(index, known_fields=lambda _tenant: KNOWN_FIELDS)  # type: ignore[arg-type, return-value]
    searcher: Searcher = keyword
    if kind != "bm25":
        searcher = HybridSearch(
            dense, keyword, fusion="rrf" if kind.endswith("rrf") else "weighted"
        )
    for who in (PEOPLE["ann@acme"], PEOPLE["anon@globex"]):
        with pytest.raises(FilterError):
            searcher.search(who.principal, "payroll", filter=raw)
        with pytest.raises(FilterError):
            searcher.effective(who.principal, raw)
    assert spy_store.calls == []
    assert index.wheres == []
    assert index.rebuilds == 0


@pytest.mark.parametrize("kind", ["bm25", "hybrid-weighted", "hybrid-rrf"])
@pytest.mark.parametrize(
    "principal",
    [ExplodingPrincipal("acme", "ann", frozenset({"hr"})), None, "ann", LookAlike()],
    ids=["tokens-raise", "none", "string", "look-alike"],
)
def test_a_broken_principal_gets_nothing_from_any_retriever(
    search: SecureSearch, kind: str, principal: Any
) -> None:
    spy_store = SpyStore(search.store)
    dense = SecureSearch(spy_store, search.embeddings)
    index = SpyIndex(spy_store)
    keyword = KeywordSearch(index)
    searcher: Searcher = keyword
    if kind != "bm25":
        searcher = HybridSearch(
            dense, keyword, fusion="rrf" if kind.endswith("rrf") else "weighted"
        )
    result = searcher.search(principal, "payroll salary", filter={"category": "hr"})
    assert result.denied
    assert result.hits == []
    assert result.effective_filter == {}
    assert spy_store.calls == []
    assert index.wheres == []
    assert index.rebuilds == 0


@pytest.mark.parametrize("person", PEOPLE)
def test_every_keyword_search_carries_the_access_filter(search: SecureSearch, person: str) -> None:
    who = PEOPLE[person]
    index = SpyIndex(search.store)
    keyword = KeywordSearch(index)
    hybrid = HybridSearch(search, keyword)
    for raw in LEGAL_FILTERS.values():
        for searcher in (keyword, hybrid):
            searcher.search(who.principal, "payroll budget", filter=raw)
            (where,) = index.wheres
            index.wheres.clear()
            access = access_filter(who.principal)
            caller = caller_node(raw)
            assert where == (access if caller is None else And((access, caller)))
            admitted = {d.id for d in CORPUS if matches(where, d.metadata)}
            assert admitted <= who.allowed()


@pytest.mark.parametrize("person", PEOPLE)
def test_a_broken_keyword_prefilter_is_caught_by_the_recheck(
    search: SecureSearch, person: str
) -> None:
    who = PEOPLE[person]
    keyword = KeywordSearch(SpyIndex(search.store, broken_mask=True))
    for query in QUERIES:
        result = keyword.search(who.principal, query, k=40)
        assert_no_leak(who, result.hits)
        lexically = {d for d in BY_ID if lexical(query, d)}
        forbidden = lexically - who.allowed()
        own_tenant = {d for d in forbidden if BY_ID[d].tenant == who.tenant}
        # Every forbidden hit is dropped. A store with tenant partitions (Pinecone
        # namespaces, Weaviate tenants) does not even find another tenant's chunk in the
        # principal's partition, so it counts as stale there rather than as an access alarm.
        assert result.dropped + result.stale == len(forbidden)
        expected = own_tenant if partitioned(search.store) else forbidden
        assert result.dropped == len(expected)
        assert {h.id for h in result.hits} == lexically & who.allowed()


@pytest.mark.parametrize("fusion", ["weighted", "rrf"])
@pytest.mark.parametrize(
    "metadata",
    [
        {"tenant": "globex", "acl": ["public"]},
        {"tenant": "acme", "acl": ["group:eng"]},
        {"tenant": "acme", "acl": "public"},
        {"acl": ["public"]},
        {},
    ],
    ids=repr,
)
def test_hybrid_rechecks_what_its_halves_return(
    search: SecureSearch, fusion: Any, metadata: dict[str, Any]
) -> None:
    ann = PEOPLE["ann@acme"]
    keyword = KeywordSearch(KeywordIndex(search.store, generation=lambda: 0))
    leaky = LeakyHalf([foreign_hit(metadata)])
    for dense, sparse, honest in ((leaky, keyword, keyword), (search, leaky, search)):
        hybrid = HybridSearch(dense, sparse, fusion=fusion)
        result = hybrid.search(ann.principal, "payroll salary", k=5)
        # confirmed against a partitioned store, the foreign chunk is not found in ann's
        # partition at all (stale); anywhere else the re-check drops it (an access alarm)
        assert result.dropped + result.stale == 1
        assert result.dropped == 1 or partitioned(search.store)
        assert "globex-doc-00" not in {h.id for h in result.hits}
        assert_no_leak(ann, result.hits)
        # the dropped hit does not cost a place: k is filled from the honest half
        available = honest.search(ann.principal, "payroll salary", k=100).hits
        assert len(result.hits) == min(5, len(available))


def test_a_failing_store_fails_keyword_search_loudly() -> None:
    store = FailingStore(StoreError("chroma is down"))

    def records(
        where: Node | None = None, *, tenant: str | None = None, with_text: bool = False
    ) -> Iterator[StoreRecord]:
        raise StoreError("chroma is down")

    store.records = records  # type: ignore[method-assign]
    keyword = KeywordSearch(KeywordIndex(store, generation=lambda: 0))
    with pytest.raises(StoreError, match="chroma is down"):
        keyword.search(PEOPLE["ann@acme"].principal, "payroll")
    hybrid = HybridSearch(SecureSearch(store, HashEmbeddings(dimension=4)), keyword)
    with pytest.raises(StoreError, match="chroma is down"):
        hybrid.search(PEOPLE["ann@acme"].principal, "payroll")
