"""Fusion math, document-level hybrid fusion, and the one search entry point of the App."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from rag_app.access.filters import Cmp, Node, and_, matches, parse_filter
from rag_app.access.permissions import Principal, access_filter
from rag_app.app import App
from rag_app.errors import ConfigError
from rag_app.retrieval.bm25 import KeywordSearch
from rag_app.retrieval.hybrid import (
    FusedRetriever,
    HybridSearch,
    IdsFirstDense,
    best_per_document,
    document_key,
    fuse_scores,
    min_max,
    rrf,
    weighted,
)
from rag_app.retrieval.search import RawHits, Searcher
from rag_app.settings import Settings
from rag_app.stores.base import StoreHit
from tests.fakes import HashEmbeddings

ANON = Principal.anonymous("acme")


# -- math ----------------------------------------------------------------------------------------
def test_rrf_known_values() -> None:
    fused = rrf([["a", "b", "c"], ["b", "d"]], k=60)
    assert fused["a"] == pytest.approx(1 / 61)
    assert fused["b"] == pytest.approx(1 / 62 + 1 / 61)
    assert fused["c"] == pytest.approx(1 / 63)
    assert fused["d"] == pytest.approx(1 / 62)
    assert max(fused, key=fused.__getitem__) == "b"
    weighted_rrf = rrf([["a"], ["b"]], k=1, weights=[0.75, 0.25])
    assert weighted_rrf == {"a": pytest.approx(0.375), "b": pytest.approx(0.125)}
    with pytest.raises(ValueError):
        rrf([["a"]], k=0)
    with pytest.raises(ValueError):
        rrf([["a"], ["b"]], weights=[1.0])


def test_min_max() -> None:
    assert min_max({"a": 2.0, "b": 4.0, "c": 3.0}) == {"a": 0.0, "b": 1.0, "c": 0.5}
    assert min_max({"a": 7.0, "b": 7.0}) == {"a": 1.0, "b": 1.0}
    assert min_max({}) == {}


def test_weighted_fusion() -> None:
    dense = {"a": 0.9, "b": 0.5, "c": 0.1}
    sparse = {"b": 12.0, "d": 2.0}
    fused = weighted(dense, sparse, alpha=0.5)
    # a: 0.5*1 + 0 ; b: 0.5*0.5 + 0.5*1 ; c: 0 ; d: 0
    assert fused == {
        "a": pytest.approx(0.5),
        "b": pytest.approx(0.75),
        "c": pytest.approx(0.0),
        "d": pytest.approx(0.0),
    }
    only_dense = weighted(dense, sparse, alpha=1.0)
    assert sorted(only_dense, key=lambda k: -only_dense[k])[:3] == ["a", "b", "c"]
    only_sparse = weighted(dense, sparse, alpha=0.0)
    assert max(only_sparse, key=only_sparse.__getitem__) == "b"
    with pytest.raises(ValueError):
        weighted(dense, sparse, alpha=1.5)


def test_fuse_scores_dispatch() -> None:
    dense, sparse = {"a": 0.9, "b": 0.1}, {"b": 3.0}
    assert fuse_scores(dense, sparse, method="rrf", alpha=0.5, rrf_k=60) == pytest.approx(
        {"a": 0.5 / 61, "b": 0.5 / 62 + 0.5 / 61}
    )
    assert fuse_scores(dense, sparse, method="weighted", alpha=0.5, rrf_k=60) == pytest.approx(
        {"a": 0.5, "b": 0.5}
    )
    with pytest.raises(ConfigError):
        fuse_scores(dense, sparse, method="max", alpha=0.5, rrf_k=60)  # type: ignore[arg-type]


def hit(cid: str, doc: str, score: float) -> StoreHit:
    return StoreHit(
        id=cid,
        text=f"text of {cid}",
        metadata={"tenant": "acme", "acl": ["public"], "source": doc, "doc_id": doc},
        score=score,
    )


def test_document_aggregation_is_max() -> None:
    hits = [hit("a1", "A", 0.2), hit("a2", "A", 0.7), hit("b1", "B", 0.5)]
    assert best_per_document(hits) == {"A": 0.7, "B": 0.5}
    assert document_key(StoreHit("x", "", {}, 0.0)) == "x"
    assert document_key(StoreHit("x", "", {"doc_id": "D"}, 0.0)) == "D"


class Fixed:
    """A raw retriever returning fixed hits (ranked as given)."""

    from_store = True

    def __init__(self, name: str, hits: list[StoreHit]) -> None:
        self.name = name
        self.hits = hits
        self.asked: list[int | None] = []

    def retrieve(self, query: str, k: int, where: Node, tenant: str) -> RawHits:
        self.asked.append(k)
        return RawHits(self.hits[:k])


def test_document_level_fusion_joins_chunks_of_one_document() -> None:
    # Dense finds document A through chunk a1, BM25 through chunk a3; B tops the dense half.
    # Document-level fusion puts A's chunks first.
    dense = Fixed("dense", [hit("b1", "B", 0.80), hit("a1", "A", 0.79), hit("c1", "C", 0.10)])
    sparse = Fixed("bm25", [hit("a3", "A", 9.0), hit("c1", "C", 8.0), hit("b2", "B", 1.0)])
    hybrid = HybridSearch(dense, sparse, fusion="weighted", alpha=0.5, candidates=10)
    result = hybrid.search(ANON, "q", k=5)
    docs = [h.metadata["source"] for h in result.hits]
    assert docs[:2] == ["A", "A"]
    assert result.retriever == "hybrid"
    assert set(result.details) == {h.id for h in result.hits}
    assert result.details["a3"]["bm25"] == 9.0 and "dense" not in result.details["a3"]
    assert dense.asked == [10] and sparse.asked == [10]  # candidates, not k
    chunk_level = HybridSearch(dense, sparse, fusion="weighted", alpha=0.5, level="chunk")
    chunk_ids = [h.id for h in chunk_level.search(ANON, "q", k=5).hits]
    # chunk level: a3 = 0.5*0 + 0.5*1, b1 = 0.5*1 + 0, a1 = 0.5*0.986: B splits A's chunks
    assert chunk_ids[:3] == ["a3", "b1", "a1"]
    assert hybrid.search(ANON, "q", k=2).hits == result.hits[:2]
    assert len(hybrid.search(ANON, "q", k=100).hits) == 5
    assert dense.asked[-1] == 100  # k above the candidate pool widens it


def test_rrf_hybrid_and_bad_configuration() -> None:
    dense = Fixed("dense", [hit("a1", "A", 0.9), hit("b1", "B", 0.8)])
    sparse = Fixed("bm25", [hit("b1", "B", 5.0)])
    result = HybridSearch(dense, sparse, fusion="rrf").search(ANON, "q", k=2)
    assert [h.id for h in result.hits] == ["b1", "a1"]
    with pytest.raises(ConfigError):
        HybridSearch(dense, sparse, fusion="max")  # type: ignore[arg-type]
    with pytest.raises(ConfigError):
        HybridSearch(dense, sparse, alpha=2.0)
    with pytest.raises(ConfigError):
        HybridSearch(dense, sparse, level="page")  # type: ignore[arg-type]


# -- the App's entry point ------------------------------------------------------------------------
def front(title: str, body: str, **extra: Any) -> str:
    fm = [f"title: {title}", "tenant: acme", "acl: [public]"]
    fm += [f"{k}: {json.dumps(v)}" for k, v in extra.items()]
    return "---\n" + "\n".join(fm) + "\n---\n" + body


@pytest.fixture
def app(tmp_path: Path) -> App:
    root = tmp_path / "corpus"
    root.mkdir()
    (root / "leave.md").write_text(front("Leave", "parental leave twenty weeks paid " * 3))
    (root / "hotel.md").write_text(front("Hotels", "hotel cap per night euros " * 3))
    (root / "zeta.md").write_text(front("Zeta", "zeta code XK-42 quantum widget " * 3))
    a = App(
        Settings(data_dir=tmp_path / "data", chunk_size=60, chunk_overlap=10),
        embeddings=HashEmbeddings(32),
    )
    assert a.ingestor.ingest([root]).ok
    return a


def test_app_searcher_kinds(app: App) -> None:
    assert app.searcher("dense") is app.search
    assert app.searcher() is app.searcher("hybrid")  # RAG_RETRIEVER default: hybrid
    keyword, hybrid = app.searcher("bm25"), app.searcher("hybrid")
    assert isinstance(keyword, Searcher) and isinstance(hybrid, Searcher)
    assert app.searcher("bm25") is keyword  # cached
    for kind in ("dense", "bm25", "hybrid"):
        result = app.searcher(kind).search(ANON, "XK-42 quantum widget", k=1)
        assert result.retriever == kind
        assert result.hits[0].metadata["source"].endswith("zeta.md")
    with pytest.raises(ConfigError):
        app.searcher("sparse")


def test_settings_choose_the_default_retriever(tmp_path: Path, app: App) -> None:
    hybrid_app = App(
        app.settings.model_copy(update={"retriever": "hybrid", "fusion": "rrf"}),
        embeddings=app.embeddings,
    )
    searcher = hybrid_app.searcher()
    assert isinstance(searcher, HybridSearch) and searcher.fusion == "rrf"
    docs = hybrid_app.retriever(ANON, k=2).invoke("parental leave")
    assert docs[0].metadata["retriever"] == "hybrid"
    assert docs[0].metadata["source"].endswith("leave.md")
    assert "fused" in docs[0].metadata["scores"]
    bm25_docs = hybrid_app.retriever(ANON, k=2, retriever="bm25").invoke("hotel")
    assert [d.metadata["retriever"] for d in bm25_docs] == ["bm25"]


def test_query_cli_retriever_option(
    app: App, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from rag_app import app as app_module
    from rag_app.cli import app as cli

    monkeypatch.setattr(app_module, "build_embeddings", lambda settings: HashEmbeddings(32))
    runner = CliRunner()
    for kind in ("dense", "bm25", "hybrid"):
        result = runner.invoke(
            cli,
            [
                "--data-dir",
                str(tmp_path / "data"),
                "query",
                "XK-42 quantum",
                "--tenant",
                "acme",
                "--retriever",
                kind,
                "-k",
                "1",
                "--json",
            ],
        )
        assert result.exit_code == 0, result.output
        data = json.loads(result.output)
        assert data["retriever"] == kind
        assert data["hits"][0]["source"].endswith("zeta.md")
    bad = runner.invoke(
        cli, ["--data-dir", str(tmp_path / "data"), "query", "x", "--tenant", "acme", "-r", "nope"]
    )
    assert bad.exit_code != 0


# -- the ids-first dense half (embedded Chroma) ---------------------------------------------------
TOPICS = ["parental leave", "hotel cap", "quantum widget", "payroll salary", "server outage"]
GROUPS = ["public", "group:hr", "group:eng"]


def make_acl_app(tmp_path: Path, *, vector_copy_mb: int = 64) -> App:
    """60 documents over five topics, readable by the public, by HR or by engineering."""
    root = tmp_path / "corpus"
    root.mkdir(parents=True)
    for n in range(60):
        topic = TOPICS[n % len(TOPICS)]
        acl = GROUPS[(n // 5) % len(GROUPS)]
        text = f"---\ntitle: Doc {n}\ntenant: acme\nacl: [{acl}]\n---\n{topic} note {n} " * 2
        (root / f"d{n:02d}.md").write_text(text)
    a = App(
        Settings(
            data_dir=tmp_path / "data",
            chunk_size=60,
            chunk_overlap=0,
            vector_copy_mb=vector_copy_mb,
        ),
        embeddings=HashEmbeddings(32),
    )
    assert a.ingestor.ingest([root]).ok
    return a


@pytest.fixture
def acl_app(tmp_path: Path) -> App:
    """The App's default: the dense half searches a copy of every vector exactly."""
    return make_acl_app(tmp_path)


@pytest.fixture
def ids_app(tmp_path: Path) -> App:
    """No vector copy (`RAG_VECTOR_COPY_MB=0`, or a collection too large for it): the dense
    half asks Chroma for the nearest ids, or reads a narrow filter's vectors."""
    return make_acl_app(tmp_path, vector_copy_mb=0)


NARROW = {"title": {"$in": ["Doc 1", "Doc 2", "Doc 7", "Doc 40"]}}


def plain_hybrid(app: App) -> HybridSearch:
    """The fused search with the store's filtered dense query (no ids-first half)."""
    return HybridSearch(app.search, KeywordSearch(app.keyword_index), store=app.store)


PRINCIPALS = [
    Principal.anonymous("acme"),
    Principal(tenant="acme", user_id="hana", groups=frozenset({"hr"})),
    Principal(tenant="acme", user_id="eli", groups=frozenset({"eng", "hr"})),
]


class ExactDense:
    """A dense half computed without rag_app's search code: every stored vector, the filter
    judged on the store's own metadata, ties in the store's scan order. The arithmetic is
    float32 like the copy's (unit rows, one matrix-vector product), so that chunks whose
    cosines are equal in exact arithmetic (many, with hashed bag-of-words vectors) tie here
    too instead of being ordered by rounding."""

    name = "dense"
    from_store = True

    def __init__(self, app: App) -> None:
        self.app = app

    def retrieve(self, query: str, k: int, where: Node, tenant: str) -> RawHits:
        scoped = and_(Cmp("tenant", "$eq", tenant), where)
        pairs = list(self.app.store.records_with_vectors())  # type: ignore[attr-defined]
        matrix = np.asarray([v for _, v in pairs], dtype=np.float32)
        matrix /= np.linalg.norm(matrix, axis=1, keepdims=True)
        q = np.asarray(self.app.embeddings.embed_query(query), dtype=np.float32)
        scores = matrix @ (q / np.linalg.norm(q))
        scored = [
            (float(scores[n]), record)
            for n, (record, _) in enumerate(pairs)
            if scoped is None or matches(scoped, record.metadata)
        ]
        scored.sort(key=lambda pair: -pair[0])  # stable: ties keep the scan order
        return RawHits(
            [
                StoreHit(id=r.id, text=r.text or "", metadata=r.metadata, score=s)
                for s, r in scored[:k]
            ]
        )


def assert_same_rankings(fused: Searcher, reference: Searcher) -> int:
    compared = 0
    for principal in PRINCIPALS:
        for query in [*TOPICS, "note 7", "leave hotel", "nothing matches zzz"]:
            for k in (1, 5, 30):
                for caller in (None, {"title": {"$ne": "Doc 3"}}, NARROW):
                    a = fused.search(principal, query, k=k, filter=caller)
                    b = reference.search(principal, query, k=k, filter=caller)
                    assert [(h.id, h.text, h.metadata) for h in a.hits] == [
                        (h.id, h.text, h.metadata) for h in b.hits
                    ], (principal, query, k, caller)
                    assert [h.score for h in a.hits] == pytest.approx([h.score for h in b.hits])
                    assert all(h.text for h in a.hits)  # confirmed: the store's text
                    compared += 1
    return compared


def test_the_vector_copy_ranks_exactly_as_a_fused_search_over_exact_dense_hits(
    acl_app: App,
) -> None:
    fused = acl_app.searcher("hybrid")
    half = fused.raw.dense
    assert isinstance(fused, HybridSearch) and isinstance(half, IdsFirstDense)
    reference = HybridSearch(
        ExactDense(acl_app), KeywordSearch(acl_app.keyword_index), store=acl_app.store
    )
    assert assert_same_rankings(fused, reference) == 3 * 8 * 3 * 3
    assert half.exact > 0 and half.narrow > 0  # both exact paths ran
    assert half.fallbacks < 3 * 8 * 3 * 3
    assert half.vectors_read == acl_app.store.count()  # read once for every search


def test_the_app_uses_ids_first_and_ranks_exactly_as_the_plain_fused_search(
    ids_app: App,
) -> None:
    acl_app = ids_app
    fused = acl_app.searcher("hybrid")
    assert isinstance(fused, HybridSearch) and isinstance(fused.raw.dense, IdsFirstDense)
    assert fused.raw.dense.copy_bytes == 0
    plain = plain_hybrid(acl_app)
    compared = assert_same_rankings(fused, plain)
    assert compared == 3 * 8 * 3 * 3
    # the anonymous reader sees a third of the chunks: above MIN_SHARE, so no fallback for it
    assert fused.raw.dense.fallbacks < compared
    assert fused.raw.dense.exact == 0 and fused.raw.dense.vectors_read == 0


def test_a_narrow_filter_is_answered_among_the_ids_the_copy_says_match(acl_app: App) -> None:
    half = acl_app.searcher("hybrid").raw.dense
    assert isinstance(half, IdsFirstDense)
    before = (half.narrow, half.fallbacks)
    result = acl_app.searcher("hybrid").search(PRINCIPALS[2], "note", k=5, filter=NARROW)
    assert (half.narrow, half.fallbacks) == (before[0] + 1, before[1])
    assert result.hits and {h.metadata["title"] for h in result.hits} <= set(NARROW["title"]["$in"])


def test_a_narrow_filter_with_too_many_vectors_to_read_takes_the_nearest_ids(
    ids_app: App, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without a copy, a narrow filter matching more than MAX_AMONG chunks (a reader of a few
    percent of 1M chunks) asks the store for the nearest ids, as deep as its share needs,
    instead of Chroma's own filter (seconds at 1M): the same hits as the plain fused search."""
    monkeypatch.setattr(IdsFirstDense, "MAX_AMONG", 1)  # every narrow filter matches more
    fused = ids_app.searcher("hybrid")
    half = fused.raw.dense
    assert isinstance(half, IdsFirstDense)
    plain = plain_hybrid(ids_app)
    before = (half.narrow, half.fallbacks, half.vectors_read)
    for query in [*TOPICS, "note 7"]:
        got = fused.search(PRINCIPALS[2], query, k=5, filter=NARROW)
        want = plain.search(PRINCIPALS[2], query, k=5, filter=NARROW)
        assert [h.id for h in got.hits] == [h.id for h in want.hits], query
    # neither a slice of vectors read nor the store's filtered query
    assert (half.narrow, half.fallbacks, half.vectors_read) == before
    monkeypatch.setattr(IdsFirstDense, "MAX_DEPTH", 1)  # too deep for the share: store's filter
    fused.search(PRINCIPALS[2], "note", k=5, filter=NARROW)
    assert half.fallbacks == before[1] + 1


def test_a_narrow_filter_falls_back_when_a_chunk_of_the_copy_is_gone(ids_app: App) -> None:
    acl_app = ids_app
    half = acl_app.searcher("hybrid").raw.dense
    assert isinstance(half, IdsFirstDense)
    built = acl_app.keyword_index.current()
    where = and_(access_filter(PRINCIPALS[2]), parse_filter(NARROW))
    gone = next(r.id for r in acl_app.store.records(parse_filter(NARROW)))
    acl_app.store.delete([gone])  # the copy still holds it: Chroma rejects the unknown id
    before = (half.narrow, half.fallbacks)
    found = half.retrieve_in(built, "note", 5, where, "acme")
    assert (half.narrow, half.fallbacks) == (before[0], before[1] + 1)
    assert found.hits and gone not in {h.id for h in found.hits}


def test_ids_first_falls_back_when_the_store_has_a_chunk_the_copy_lacks(ids_app: App) -> None:
    acl_app = ids_app
    half = acl_app.searcher("hybrid").raw.dense
    assert isinstance(half, IdsFirstDense)
    built = acl_app.keyword_index.current()
    text = "zebra crossing " * 4
    meta = {"tenant": "acme", "acl": ["public"], "source": "new.md", "title": "New"}
    acl_app.store.upsert(["new-1"], [text], [acl_app.embeddings.embed_query(text)], [meta])
    before = half.fallbacks
    found = half.retrieve_in(built, "zebra crossing", 5, access_filter(PRINCIPALS[0]), "acme")
    assert half.fallbacks == before + 1
    assert found.hits[0].id == "new-1"  # the store's own filtered query found it


@pytest.mark.parametrize("copy_mb", [64, 0], ids=["vector-copy", "nearest-ids"])
def test_a_stale_copy_cannot_leak_a_chunk_whose_acl_was_narrowed(
    tmp_path: Path, copy_mb: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    acl_app = make_acl_app(tmp_path, vector_copy_mb=copy_mb)
    fused = acl_app.searcher("hybrid")
    anon = PRINCIPALS[0]
    first = fused.search(anon, "parental leave", k=3).hits[0]
    assert first.metadata["acl"] == ["public"]
    stale = acl_app.keyword_index.current()  # the copy before the change
    record = acl_app.store.get([first.id])[0]
    narrowed = {**record.metadata, "acl": ["group:hr"]}
    vector = acl_app.embeddings.embed_query(record.text or "")
    acl_app.store.upsert([first.id], [record.text or ""], [vector], [narrowed])
    monkeypatch.setattr(acl_app.keyword_index, "current", lambda: stale)
    result = fused.search(anon, "parental leave", k=3)
    assert first.id not in {h.id for h in result.hits}
    assert all(h.metadata["acl"] == ["public"] for h in result.hits)
    assert result.dropped >= 1  # the copy admitted it, the store's record did not


def test_a_narrow_filter_reads_its_vectors_once_per_index_version(
    ids_app: App, monkeypatch: pytest.MonkeyPatch
) -> None:
    acl_app = ids_app
    fused = acl_app.searcher("hybrid")
    half = fused.raw.dense
    assert isinstance(half, IdsFirstDense)
    reads: list[int] = []
    real = acl_app.store.vectors_of

    def counting(ids: Any) -> Any:
        reads.append(len(ids))
        return real(ids)

    monkeypatch.setattr(acl_app.store, "vectors_of", counting)
    reader = PRINCIPALS[2]
    first = fused.search(reader, "note", k=5, filter=NARROW)
    again = fused.search(reader, "parental leave", k=5, filter=NARROW)
    assert len(reads) == 1 and reads[0] >= 4  # one read, reused by the second search
    assert first.hits and again.hits
    # a chunk deleted after its vector was read: the cached slice still names it, and the
    # guard's confirmation drops it as stale (nothing is returned that the store lacks)
    gone = first.hits[0].id
    stale_built = acl_app.keyword_index.current()
    acl_app.store.delete([gone])
    monkeypatch.setattr(acl_app.keyword_index, "current", lambda: stale_built)
    after = fused.search(reader, "note", k=5, filter=NARROW)
    assert gone not in {h.id for h in after.hits} and after.stale >= 1
    assert len(reads) == 1
    # a new index version reads the vectors again
    monkeypatch.undo()
    monkeypatch.setattr(acl_app.store, "vectors_of", counting)
    fused.search(reader, "note", k=5, filter=NARROW)
    assert len(reads) == 2


def test_slices_of_an_older_index_version_are_dropped(acl_app: App) -> None:
    """A cached slice holds its index version; once the index moved on, the old slices go
    (else they would keep the whole old index in memory)."""
    fused = acl_app.searcher("hybrid")
    half = fused.raw.dense
    assert isinstance(half, IdsFirstDense)
    reader = PRINCIPALS[2]
    fused.search(reader, "note", k=5, filter=NARROW)
    other = {"title": {"$in": ["Doc 5", "Doc 6"]}}
    fused.search(reader, "note", k=5, filter=other)
    assert len(half._slices) == 2
    text = "brand new chunk " * 3
    meta = {"tenant": "acme", "acl": ["group:eng"], "source": "n.md", "title": "Doc 5"}
    acl_app.store.upsert(["n-1"], [text], [acl_app.embeddings.embed_query(text)], [meta])
    result = fused.search(reader, "brand new chunk", k=5, filter=other)
    assert len(half._slices) == 1  # only the new version's slice is kept
    assert "n-1" in {h.id for h in result.hits}  # the refreshed copy and slice know it


# -- the vector copy (exact dense half) -----------------------------------------------------------
def counting_reads(app: App, monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    reads: list[list[str]] = []
    real = app.store.vectors_of  # type: ignore[attr-defined]

    def counting(ids: Any) -> Any:
        reads.append(list(ids))
        return real(ids)

    monkeypatch.setattr(app.store, "vectors_of", counting)
    return reads


def test_the_vector_copy_follows_the_index_reading_only_new_chunks(
    acl_app: App, monkeypatch: pytest.MonkeyPatch
) -> None:
    fused = acl_app.searcher("hybrid")
    half = fused.raw.dense
    assert isinstance(half, IdsFirstDense)
    reads = counting_reads(acl_app, monkeypatch)
    reader = PRINCIPALS[2]
    fused.search(reader, "parental leave", k=5)
    fused.search(reader, "hotel cap", k=5)
    fused.search(reader, "note", k=5, filter=NARROW)  # a narrow slice: cut from the copy
    total = acl_app.store.count()
    assert [len(r) for r in reads] == [total]  # one read of everything, then none
    # one new chunk and one deleted: the next version reads the new chunk's vector only
    text = "zebra crossing " * 4
    meta = {"tenant": "acme", "acl": ["public"], "source": "z.md", "title": "Zebra"}
    acl_app.store.upsert(["z-1"], [text], [acl_app.embeddings.embed_query(text)], [meta])
    gone = fused.search(reader, "quantum widget", k=1).hits[0].id
    acl_app.store.delete([gone])
    found = fused.search(reader, "zebra crossing", k=5)
    assert reads[1:] == [["z-1"]]
    assert found.hits[0].id == "z-1"
    # a chunk rewritten under its id (here its ACL): the index reads it again, so does the copy
    record = acl_app.store.get(["z-1"])[0]
    vector = acl_app.embeddings.embed_query(record.text or "")
    acl_app.store.upsert(["z-1"], [record.text or ""], [vector], [{**meta, "acl": ["group:hr"]}])
    assert fused.search(reader, "zebra crossing", k=1).hits[0].metadata["acl"] == ["group:hr"]
    assert reads[2:] == [["z-1"]]
    assert gone not in {h.id for h in fused.search(reader, "quantum widget", k=30).hits}
    # the copy is the current store's: one row per chunk, each the stored vector, normalised
    copy = half.vectors(acl_app.keyword_index.current())
    assert copy is not None and copy.matrix.shape == (acl_app.store.count(), 32)
    built = acl_app.keyword_index.current()
    stored = dict(
        (r.id, v)
        for r, v in acl_app.store.records_with_vectors()  # type: ignore[attr-defined]
    )
    for n, cid in enumerate(built.ids):
        v = np.asarray(stored[cid], dtype=np.float32)
        assert np.allclose(copy.matrix[n], v / np.linalg.norm(v), atol=1e-6)


def test_the_exact_half_returns_only_chunks_its_filter_admits(acl_app: App) -> None:
    """The raw half, before the guard: every hit matches the effective filter (the mask is
    applied to the full product), k is filled when enough chunks match, best first."""
    half = acl_app.searcher("hybrid").raw.dense
    assert isinstance(half, IdsFirstDense)
    built = acl_app.keyword_index.current()
    for principal in PRINCIPALS:
        where = access_filter(principal)
        scoped = and_(Cmp("tenant", "$eq", "acme"), where)
        admitted = sum(1 for m in built.metadatas if matches(scoped, m))
        for k in (1, 10, 200):
            before = half.exact
            hits = half.retrieve_in(built, "parental leave", k, where, "acme").hits
            assert half.exact == before + 1
            assert len(hits) == min(k, admitted)
            assert all(matches(scoped, h.metadata) for h in hits)
            assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)


def test_no_copy_when_it_does_not_fit_or_cannot_be_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    small = make_acl_app(tmp_path / "small", vector_copy_mb=0)
    half = small.searcher("hybrid").raw.dense
    assert isinstance(half, IdsFirstDense)
    half.copy_bytes = 32 * 4 * small.store.count() - 1  # one float short
    assert half.vectors(small.keyword_index.current()) is None
    assert small.searcher("hybrid").search(ANON, "parental leave", k=3).hits
    assert half.exact == 0 and half.vectors_read == 0
    # an index version naming a chunk the store lost: no copy for it (read once), the
    # store's nearest ids answer instead, and nothing gone is returned
    app = make_acl_app(tmp_path / "gone")
    half = app.searcher("hybrid").raw.dense
    assert isinstance(half, IdsFirstDense)
    built = app.keyword_index.current()
    app.store.delete([built.ids[0]])
    reads = counting_reads(app, monkeypatch)
    where = access_filter(ANON)
    first = half.retrieve_in(built, "parental leave", 5, where, "acme")
    second = half.retrieve_in(built, "hotel cap", 5, where, "acme")
    assert len(reads) == 1 and half.exact == 0
    assert first.hits and second.hits
    assert built.ids[0] not in {h.id for h in [*first.hits, *second.hits]}


@pytest.mark.parametrize("fusion", ["weighted", "rrf"])
@pytest.mark.parametrize("level", ["document", "chunk"])
def test_fusing_rows_equals_fusing_hits(
    acl_app: App, fusion: str, level: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With the vector copy both halves are rows of the keyword index, fused without hit
    objects (`_fuse_rows`): the same hits, scores and per-hit details as fusing the halves'
    hits (`_fuse`), bit for bit."""
    index = acl_app.keyword_index
    half = IdsFirstDense(acl_app.search.raw, index, acl_app.store)  # type: ignore[arg-type]
    fused = FusedRetriever(
        half,
        KeywordSearch(index).raw,
        fusion=fusion,
        level=level,
        candidates=20,  # type: ignore[arg-type]
    )
    compared = 0
    for principal in PRINCIPALS:
        where = access_filter(principal)
        for caller in (None, {"title": {"$ne": "Doc 3"}}):
            scoped = where if caller is None else and_(where, parse_filter(caller))
            for query in [*TOPICS, "note 7", "leave hotel", "nothing matches zzz"]:
                for k in (1, 5, 30):
                    before = half.exact
                    rows = fused.retrieve(query, k, scoped, "acme")
                    assert half.exact == before + 1  # the row path ran
                    with monkeypatch.context() as m:
                        m.setattr(half, "exact_rows", lambda *a: None)
                        hits = fused.retrieve(query, k, scoped, "acme")
                    assert [(h.id, h.score, h.metadata) for h in rows.hits] == [
                        (h.id, h.score, h.metadata) for h in hits.hits
                    ]
                    assert rows.details == hits.details
                    compared += 1
    assert compared == 3 * 2 * 8 * 3
