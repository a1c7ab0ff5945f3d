"""BM25: analysis, access pre-filter, and staying in step with the store through ingestion."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from rag_app.access.filters import Cmp, parse_filter
from rag_app.access.permissions import Principal, access_filter
from rag_app.app import App
from rag_app.retrieval import bm25 as bm25_module
from rag_app.retrieval.bm25 import KeywordIndex, KeywordSearch, index_text, same_metadata
from rag_app.settings import Settings
from rag_app.sparse import Analyzer
from rag_app.stores.chroma import ChromaStore
from tests.fakes import HashEmbeddings


def doc(title: str, body: str, *, tenant: str = "acme", acl: str = "[public]", **extra: Any) -> str:
    fm = [f"title: {title}", f"tenant: {tenant}", f"acl: {acl}"]
    fm += [f"{k}: {json.dumps(v)}" for k, v in extra.items()]
    return "---\n" + "\n".join(fm) + "\n---\n" + body


def make_app(tmp_path: Path, **settings: Any) -> App:
    s = Settings(data_dir=tmp_path / "data", chunk_size=60, chunk_overlap=10, **settings)
    return App(s, embeddings=HashEmbeddings(32))


ANON = Principal.anonymous("acme")


def bm25_sources(app: App, query: str, principal: Principal = ANON, k: int = 50) -> list[str]:
    hits = app.searcher("bm25").search(principal, query, k=k).hits
    return [str(h.metadata["source"]).rsplit("/", 1)[-1] for h in hits]


# -- analysis ------------------------------------------------------------------------------------
def test_analyzer_stems_and_drops_stopwords() -> None:
    analyzer = Analyzer()
    assert analyzer("The robots are running quickly to the docks!") == [
        "robot",
        "run",
        "quick",
        "dock",
    ]
    assert analyzer("a I of") == []  # stopwords and one-letter tokens
    plain = Analyzer(stopwords=False, stem=False)
    assert plain("The Running dogs") == ["the", "running", "dogs"]


def test_index_text_prefixes_the_title() -> None:
    assert index_text("body text", {"title": "Leave"}) == "Leave\nbody text"
    assert index_text("body", {"title": "Leave"}, title_weight=2) == "Leave\nLeave\nbody"
    # a chunk that starts with its title (a Markdown heading) gets one copy less
    assert index_text("Leave policy ...", {"title": "Leave"}, title_weight=2).count("Leave") == 2
    assert index_text("body", {}) == "body"
    assert index_text("body", {"title": "T"}, title_field=None) == "body"
    assert index_text("body", {"title": "T"}, title_weight=0) == "body"


# -- the index over a store -------------------------------------------------------------------
@pytest.fixture
def store(tmp_path: Path) -> ChromaStore:
    emb = HashEmbeddings(8)
    s = ChromaStore(collection="bm25-unit", dimension=8, embedding_model=emb.name, path=tmp_path)
    rows = [
        ("c1", "payroll salary payroll", {"tenant": "acme", "acl": ["public"], "flag": True}),
        ("c2", "salary bands confidential", {"tenant": "acme", "acl": ["group:hr"], "flag": 1}),
        ("c3", "payroll of globex", {"tenant": "globex", "acl": ["public"], "flag": True}),
        ("c4", "kubernetes outage", {"tenant": "acme", "acl": ["public"], "flag": False}),
    ]
    s.upsert(
        [r[0] for r in rows],
        [r[1] for r in rows],
        emb.embed_documents([r[1] for r in rows]),
        [r[2] for r in rows],
    )
    return s


def test_prefilter_applies_the_access_filter_before_top_k(store: ChromaStore) -> None:
    index = KeywordIndex(store, generation=lambda: 0)
    # c1 matches "payroll" best but globex's c3 must not take a place in acme's top-1 either
    hits = index.search("payroll", 1, access_filter(Principal.anonymous("globex")))
    assert [h.id for h in hits] == ["c3"]
    hits = index.search("salary", 5, access_filter(ANON))
    assert [h.id for h in hits] == ["c1"]  # c2 is hr-only
    hr = Principal("acme", "ann", frozenset({"hr"}))
    assert {h.id for h in index.search("salary", 5, access_filter(hr))} == {"c1", "c2"}
    # only chunks sharing a term with the query; none for unknown words
    assert index.search("zzz qqq", 5, access_filter(ANON)) == []
    with pytest.raises(ValueError, match="effective"):
        index.search("payroll", 5, None)  # type: ignore[arg-type]


def test_mask_cache_keeps_value_types_apart(store: ChromaStore) -> None:
    index = KeywordIndex(store, generation=lambda: 0)
    hr = Principal("acme", "ann", frozenset({"hr"}))
    keyword = KeywordSearch(index)
    as_bool = keyword.search(hr, "salary payroll", filter={"flag": True}, k=10)
    as_int = keyword.search(hr, "salary payroll", filter={"flag": 1}, k=10)
    assert [h.id for h in as_bool.hits] == ["c1"]
    assert [h.id for h in as_int.hits] == ["c2"]


def test_scores_are_ranked_and_deterministic(store: ChromaStore) -> None:
    index = KeywordIndex(store, generation=lambda: 0)
    hits = index.search("payroll salary", 10, Cmp("tenant", "$eq", "acme"))
    assert [h.id for h in hits] == ["c1", "c2"]
    assert hits[0].score > hits[1].score > 0
    assert hits == index.search("payroll salary", 10, Cmp("tenant", "$eq", "acme"))


def test_an_empty_store_has_no_hits(tmp_path: Path) -> None:
    emb = HashEmbeddings(8)
    empty = ChromaStore(collection="empty", dimension=8, embedding_model=emb.name, path=tmp_path)
    index = KeywordIndex(empty, generation=lambda: 0, directory=tmp_path / "bm25")
    assert index.search("anything", 5, access_filter(ANON)) == []
    assert index.size == 0


def test_rebuilds_when_generation_or_count_moves(store: ChromaStore, tmp_path: Path) -> None:
    generation = [0]
    index = KeywordIndex(store, generation=lambda: generation[0], directory=tmp_path / "bm25")
    where = access_filter(ANON)
    assert index.search("kubernetes", 5, where)
    assert index.rebuilds == 1
    index.search("payroll", 5, where)
    assert index.rebuilds == 1  # unchanged: no rebuild
    store.delete(["c4"])  # a write whose bump never happened (crash): the count catches it
    assert index.search("kubernetes", 5, where) == []
    assert index.rebuilds == 2
    emb = HashEmbeddings(8)
    store.upsert(
        ["c1"],
        ["kubernetes now"],
        emb.embed_documents(["kubernetes now"]),
        [{"tenant": "acme", "acl": ["public"]}],
    )  # same count: the bump tells
    generation[0] += 1
    assert [h.id for h in index.search("kubernetes", 5, where)] == ["c1"]
    assert index.rebuilds == 3


def test_the_count_is_reread_at_most_every_recount_s_while_the_token_stays(
    store: ChromaStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = [1000.0]
    monkeypatch.setattr(bm25_module, "time", SimpleNamespace(monotonic=lambda: clock[0]))
    generation = [0]
    counted: list[int] = []
    real_count = store.count

    def counting(**kw: Any) -> int:
        counted.append(1)
        return real_count(**kw)

    monkeypatch.setattr(store, "count", counting)
    index = KeywordIndex(store, generation=lambda: generation[0], recount_s=10.0)
    where = access_filter(ANON)
    assert index.search("kubernetes", 5, where)
    store.delete(["c4"])  # a write that never moved the token
    clock[0] += 5
    assert index.search("kubernetes", 5, where)  # within recount_s: the count is not re-read
    assert len(counted) == 1 and index.rebuilds == 1
    clock[0] += 6
    assert index.search("kubernetes", 5, where) == []  # re-read: the delete is seen
    assert len(counted) == 2 and index.rebuilds == 2
    generation[0] += 1  # a write through rag_app: token moved, count re-read at once
    assert index.search("kubernetes", 5, where) == []
    assert len(counted) == 3


def test_persisted_index_is_loaded_not_rebuilt(store: ChromaStore, tmp_path: Path) -> None:
    folder = tmp_path / "bm25"
    first = KeywordIndex(store, generation=lambda: 7, directory=folder)
    expected = first.search("payroll salary", 5, access_filter(ANON))
    assert first.rebuilds == 1
    second = KeywordIndex(store, generation=lambda: 7, directory=folder)
    assert second.search("payroll salary", 5, access_filter(ANON)) == expected
    assert (second.rebuilds, second.loads) == (0, 1)
    # another generation: the persisted index is stale and replaced
    third = KeywordIndex(store, generation=lambda: 8, directory=folder)
    third.search("payroll", 5, access_filter(ANON))
    assert (third.rebuilds, third.loads) == (1, 0)
    assert len([p for p in folder.iterdir() if p.name.startswith("index-")]) == 1
    # a different analyzer never reuses an index built with another
    other = KeywordIndex(
        store, generation=lambda: 8, directory=folder, analyzer=Analyzer(stem=False)
    )
    other.search("payroll", 5, access_filter(ANON))
    assert (other.rebuilds, other.loads) == (1, 0)


def test_a_corrupt_persisted_index_is_rebuilt(store: ChromaStore, tmp_path: Path) -> None:
    folder = tmp_path / "bm25"
    KeywordIndex(store, generation=lambda: 1, directory=folder).refresh()
    current = json.loads((folder / "current.json").read_text())
    (folder / current["dir"] / "chunks.jsonl").write_text("{not json\n")
    index = KeywordIndex(store, generation=lambda: 1, directory=folder)
    assert index.search("payroll", 5, access_filter(ANON))
    assert (index.rebuilds, index.loads) == (1, 0)


# -- incremental refresh -----------------------------------------------------------------------
EVERYONE = Cmp("tenant", "$ne", "nobody")  # every chunk passes (the index's own pre-filter)
QUERIES = ["payroll salary", "kubernetes outage", "salary bands", "globex payroll", "new words"]


class CountingAnalyzer(Analyzer):
    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def __call__(self, text: str) -> list[str]:
        self.calls += 1
        return super().__call__(text)


def put(store: ChromaStore, rid: str, text: str, **meta: Any) -> None:
    store.upsert([rid], [text], HashEmbeddings(8).embed_documents([text]), [meta])


def everything(index: KeywordIndex) -> list[list[Any]]:
    return [index.search(q, 10, EVERYONE) for q in QUERIES]


def test_an_incremental_refresh_equals_a_full_rebuild(store: ChromaStore) -> None:
    generation = [0]
    index = KeywordIndex(store, generation=lambda: generation[0])
    index.refresh()
    put(store, "c5", "new words about payroll", tenant="acme", acl=["public"])  # added
    store.delete(["c4"])  # deleted
    store.delete(["c3"])  # text changed: a new id, as ingestion does it
    put(store, "c3b", "payroll of globex, new words", tenant="globex", acl=["public"])
    put(store, "c1", "payroll salary payroll", tenant="acme", acl=["group:hr"])  # ACL only
    put(store, "c2", "salary bands outage", tenant="acme", acl=["group:hr"], title="Bands")
    generation[0] += 1
    index.refresh()
    assert (index.rebuilds, index.incremental) == (2, 1)
    full = KeywordIndex(store, generation=lambda: generation[0])
    full.refresh()
    assert (full.rebuilds, full.incremental) == (1, 0)
    assert index.records() == full.records()
    assert everything(index) == everything(full)  # same ids, order and (float) scores
    assert everything(index)[0]  # and there is something to compare


def test_a_small_change_reads_and_analyses_only_the_changed_chunks(
    store: ChromaStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    generation = [0]
    analyzer = CountingAnalyzer()
    index = KeywordIndex(store, generation=lambda: generation[0], analyzer=analyzer)
    index.refresh()
    assert analyzer.calls == 4
    read: list[str] = []
    real_get = store.get
    monkeypatch.setattr(store, "get", lambda ids, **kw: read.extend(ids) or real_get(ids, **kw))

    def change(action: Any) -> tuple[int, list[str]]:
        before = analyzer.calls
        read.clear()
        action()
        generation[0] += 1
        index.refresh()
        return analyzer.calls - before, sorted(read)

    assert change(lambda: put(store, "c5", "new words", tenant="acme", acl=["public"])) == (
        1,
        ["c5"],
    )
    acl = change(lambda: put(store, "c1", "payroll salary payroll", tenant="acme", acl=["x"]))
    assert acl == (1, ["c1"])
    assert change(lambda: store.delete(["c4"])) == (0, [])
    assert (index.rebuilds, index.incremental) == (4, 3)


def test_metadata_changes_are_told_apart_by_type() -> None:
    assert same_metadata({"acl": ["a"], "flag": True}, {"flag": True, "acl": ["a"]})
    assert not same_metadata({"flag": True}, {"flag": 1})  # equal in Python, not to a filter
    assert not same_metadata({"n": [1]}, {"n": [1.0]})
    assert not same_metadata({"acl": ["a"]}, {"acl": ["a", "b"]})


def test_an_acl_change_reaches_the_mask(store: ChromaStore) -> None:
    generation = [0]
    index = KeywordIndex(store, generation=lambda: generation[0])
    keyword = KeywordSearch(index)
    assert [h.id for h in index.search("salary", 1, access_filter(ANON))] == ["c1"]
    # widened: c2 (hr-only) becomes public and must take its place in a top-1 (no starvation)
    put(store, "c2", "salary bands confidential", tenant="acme", acl=["public"], flag=1)
    # narrowed: c1 becomes hr-only, and the index's own mask must drop it (no stale widening)
    put(store, "c1", "payroll salary payroll", tenant="acme", acl=["group:hr"], flag=True)
    generation[0] += 1
    assert [h.id for h in index.search("salary bands", 1, access_filter(ANON))] == ["c2"]
    assert "c1" not in {h.id for h in index.search("payroll", 5, access_filter(ANON))}
    assert index.incremental == 1
    assert [h.id for h in keyword.search(ANON, "payroll salary").hits] == ["c2"]
    # a change the index has not seen yet (token not moved): the store's record still decides
    put(store, "c2", "salary bands confidential", tenant="acme", acl=["group:hr"], flag=1)
    assert keyword.search(ANON, "salary").hits == []


@pytest.mark.parametrize("method", ["lucene", "robertson", "bm25+"])
def test_the_score_matrix_equals_bm25s_own(store: ChromaStore, method: str) -> None:
    import bm25s

    index = KeywordIndex(store, generation=lambda: 0, method=method)
    built = index.ensure_fresh()
    reference = bm25s.BM25(k1=index.k1, b=index.b, method=index.method)
    reference.index(
        [index.analyzer(index_text(r.text or "", r.metadata, "title", 2)) for r in index.records()],
        show_progress=False,
    )
    for query in QUERIES[:4]:
        tokens = index.analyzer(query)
        assert list(built.model.get_scores(tokens)) == list(reference.get_scores(tokens))


def test_an_old_format_index_is_rebuilt(store: ChromaStore, tmp_path: Path) -> None:
    """An index persisted by the previous format (no cached terms) is never loaded nor used
    as the base of a refresh, even when it was built at the current key."""
    folder = tmp_path / "bm25"
    (folder / "index-old").mkdir(parents=True)
    rows = [{"id": "c1", "text": "stale words", "metadata": {"tenant": "acme", "acl": ["public"]}}]
    (folder / "index-old" / "chunks.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    index = KeywordIndex(store, generation=lambda: 3, directory=folder)
    old = hashlib.sha256(json.dumps({**index.config, "format": 1}, sort_keys=True).encode())
    pointer = {"dir": "index-old", "key": ["3", 4], "config": old.hexdigest()[:16]}
    (folder / "current.json").write_text(json.dumps(pointer))
    assert [h.id for h in index.search("payroll", 5, access_filter(ANON))] == ["c1"]
    assert (index.rebuilds, index.incremental, index.loads) == (1, 0, 0)
    assert not (folder / "index-old").exists()
    again = KeywordIndex(store, generation=lambda: 3, directory=folder)
    assert again.size == 4 and (again.rebuilds, again.loads) == (0, 1)


def test_a_stale_persisted_index_is_refreshed_incrementally(
    store: ChromaStore, tmp_path: Path
) -> None:
    folder = tmp_path / "bm25"
    KeywordIndex(store, generation=lambda: 1, directory=folder).refresh()
    put(store, "c5", "kubernetes again", tenant="acme", acl=["public"])
    analyzer = CountingAnalyzer()
    index = KeywordIndex(store, generation=lambda: 2, directory=folder, analyzer=analyzer)
    assert {h.id for h in index.search("kubernetes", 5, access_filter(ANON))} == {"c4", "c5"}
    assert (index.rebuilds, index.incremental, index.loads, analyzer.calls) == (1, 1, 0, 2)
    # inconsistent cached terms: unreadable, so the next process builds in full
    current = json.loads((folder / "current.json").read_text())
    np.save(folder / current["dir"] / "sizes.npy", np.zeros(5, dtype=np.int64))
    full = KeywordIndex(store, generation=lambda: 3, directory=folder)
    assert full.size == 5 and (full.rebuilds, full.incremental) == (1, 0)


# -- in step with ingestion -------------------------------------------------------------------
@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    root = tmp_path / "corpus"
    root.mkdir()
    (root / "a.md").write_text(doc("Alpha handbook", "alpha apples orchard " * 5))
    (root / "b.md").write_text(doc("Beta guide", "beta bananas plantation " * 5))
    (root / "secret.md").write_text(doc("Gamma", "gamma bananas vault " * 5, acl="[group:hr]"))
    return root


def test_bm25_stays_in_step_with_add_replace_and_delete(
    tmp_path: Path, corpus: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Writes below come from other Apps (other processes): the App's index sees them once
    # it re-reads the store's token, at most RECOUNT_S later (`a_second_later`).
    clock = [1000.0]
    monkeypatch.setattr(bm25_module, "time", SimpleNamespace(monotonic=lambda: clock[0]))

    def a_second_later() -> None:
        clock[0] += bm25_module.RECOUNT_S

    app = make_app(tmp_path)
    assert app.ingestor.ingest([corpus]).ok
    g0 = app.store.change_token()
    assert g0
    assert bm25_sources(app, "apples") == ["a.md"]
    assert bm25_sources(app, "bananas") == ["b.md"]  # secret.md is hr-only
    hr = Principal("acme", "ann", frozenset({"hr"}))
    assert sorted(bm25_sources(app, "bananas", hr)) == ["b.md", "secret.md"]
    assert bm25_sources(app, "handbook") == ["a.md"]  # the title is indexed too

    # unchanged re-ingest: no write, no bump, no rebuild
    rebuilds = app.keyword_index.rebuilds
    assert make_app(tmp_path).ingestor.ingest([corpus]).files_unchanged == 3
    assert app.store.change_token() == g0
    bm25_sources(app, "apples")
    assert app.keyword_index.rebuilds == rebuilds

    # replace: the old words are gone, the new ones found (another App: another process)
    (corpus / "a.md").write_text(doc("Alpha handbook", "alpha cherries orchard " * 5))
    assert make_app(tmp_path).ingestor.ingest([corpus]).files_indexed == 1
    assert app.store.change_token() != g0
    assert bm25_sources(app, "apples") == []  # the store's record decides, stale or not
    a_second_later()
    assert bm25_sources(app, "cherries") == ["a.md"]

    # rag-app delete
    source = next(
        str(r.metadata["source"]) for r in app.store.records() if "b.md" in r.metadata["source"]
    )
    assert make_app(tmp_path).admin.delete(sources=[source]) > 0
    a_second_later()
    assert bm25_sources(app, "bananas") == []

    # --cleanup full after a file vanished
    (corpus / "secret.md").unlink()
    report = make_app(tmp_path).ingestor.ingest([corpus], cleanup="full")
    a_second_later()
    assert report.files_removed == 1
    assert bm25_sources(app, "vault", hr) == []
    assert sorted(bm25_sources(app, "alpha", hr)) == ["a.md"]

    # a fresh process loads the persisted, current index instead of rebuilding
    fresh = make_app(tmp_path)
    assert bm25_sources(fresh, "cherries") == ["a.md"]
    assert (fresh.keyword_index.rebuilds, fresh.keyword_index.loads) == (0, 1)


def reader_app(writer: App, tmp_path: Path, **settings: Any) -> App:
    """Another host on the same store, with its own state database (and BM25 folder)."""
    s = writer.settings.model_copy(
        update={"state_db_url": f"sqlite:///{tmp_path / 'reader-state.db'}", **settings}
    )
    # the same collection, like a shared server
    return App(s, embeddings=HashEmbeddings(32), store=writer.store)


@pytest.mark.parametrize("mode", ["inline", "background"])
def test_an_acl_change_by_another_host_is_never_served_from_the_index(
    tmp_path: Path, corpus: Path, mode: str
) -> None:
    hr = Principal("acme", "ann", frozenset({"hr"}))
    writer = make_app(tmp_path)
    assert writer.ingestor.ingest([corpus]).ok
    reader = reader_app(writer, tmp_path, bm25_refresh=mode)
    assert bm25_sources(reader, "vault", hr) == ["secret.md"]
    built = reader.keyword_index.rebuilds + reader.keyword_index.loads

    # The writer narrows secret.md from group:hr to user:bob (same chunk count).
    (corpus / "secret.md").write_text(doc("Gamma", "gamma bananas vault " * 5, acl="[user:bob]"))
    assert writer.ingestor.ingest([corpus]).files_indexed == 1
    assert reader.state.fingerprints() == {}  # the reader's own state saw nothing

    for retriever in ("bm25", "hybrid"):
        hits = reader.searcher(retriever).search(hr, "gamma bananas vault", k=10).hits
        assert "secret.md" not in {str(h.metadata["source"]).rsplit("/", 1)[-1] for h in hits}
    bob = Principal("acme", "bob", frozenset())
    reader.keyword_index.wait_for_refresh(30)
    assert bm25_sources(reader, "vault", bob) == ["secret.md"]
    assert reader.keyword_index.rebuilds + reader.keyword_index.loads > built


def test_a_stale_index_is_confirmed_against_the_store(tmp_path: Path, corpus: Path) -> None:
    """Even an index that cannot know about a change (its token did not move) returns the
    store's current record, or nothing when the store no longer has the chunk."""
    hr = Principal("acme", "ann", frozenset({"hr"}))
    app = make_app(tmp_path)
    assert app.ingestor.ingest([corpus]).ok
    frozen = KeywordIndex(app.store, generation=lambda: "frozen")
    keyword = KeywordSearch(frozen)
    assert [h.metadata["source"].rsplit("/", 1)[-1] for h in keyword.search(hr, "vault").hits] == [
        "secret.md"
    ]
    frozen.ensure_fresh()
    (corpus / "secret.md").write_text(doc("Gamma", "gamma bananas vault " * 5, acl="[user:bob]"))
    assert app.ingestor.ingest([corpus]).files_indexed == 1
    assert frozen.current_key()[1] == frozen.ensure_fresh().key[1]  # same count: not rebuilt
    result = keyword.search(hr, "vault")
    assert result.hits == [] and result.stale == 1
    # a metadata change under the same id (written straight to the store) is judged by the
    # store's record, not the index's copy
    (rec,) = [r for r in app.store.records(with_text=True) if "b.md" in r.metadata["source"]]
    app.store.upsert(
        [rec.id],
        [rec.text or ""],
        [app.embeddings.embed_query(rec.text or "")],
        [{**rec.metadata, "acl": ["user:bob"]}],
    )
    anon_hits = keyword.search(ANON, "bananas plantation").hits
    assert rec.id not in {h.id for h in anon_hits}
    assert keyword.search(ANON, "bananas plantation").dropped == 1


def test_caller_filters_apply_to_bm25(tmp_path: Path, corpus: Path) -> None:
    (corpus / "c.md").write_text(doc("Cider", "apples cider " * 5, category="drinks"))
    app = make_app(tmp_path)
    app.ingestor.ingest([corpus])
    keyword = app.searcher("bm25")
    hits = keyword.search(ANON, "apples", filter={"category": "drinks"}).hits
    assert [str(h.metadata["source"]).rsplit("/", 1)[-1] for h in hits] == ["c.md"]
    assert keyword.effective(ANON, {"category": "drinks"})["$and"][1] == {
        "category": {"$eq": "drinks"}
    }
    assert parse_filter({"category": "drinks"}) is not None


def test_top_k_orders_exactly_like_a_full_sort_ties_included() -> None:
    from rag_app.retrieval.bm25 import top_k

    rng = np.random.default_rng(5)
    for _ in range(300):
        n = int(rng.integers(1, 400))
        rows = np.sort(rng.choice(10_000, n, replace=False))
        scores = rng.integers(0, 6, n).astype(np.float64)  # many ties
        k = int(rng.integers(1, 60))
        full = rows[np.lexsort((rows, -scores))][:k]
        assert top_k(rows, scores, k).tolist() == full.tolist()
