"""BM25 refreshed in proportion to a change: the store's change journal (no scan), scores at
query time (no refit), a delta log (no full save), the token read cadence, and every way the
journal fails closed to the scan."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from rag_app.access import filters as filters_module
from rag_app.access.filters import And, Cmp, FieldGroups, Node, Or, matches
from rag_app.retrieval import bm25 as bm25_module
from rag_app.retrieval.bm25 import KeywordIndex, index_text
from rag_app.stores import journal as journal_module
from rag_app.stores.base import ChangeJournaling
from rag_app.stores.chroma import CHANGE_TOKEN_KEY, ChromaStore
from rag_app.stores.journal import ChangeJournal

EVERYONE = Cmp("tenant", "$ne", "nobody")
WORDS = [
    "payroll",
    "salary",
    "bands",
    "outage",
    "kubernetes",
    "cluster",
    "vault",
    "secret",
    "leave",
    "policy",
    "holiday",
    "travel",
    "expense",
    "budget",
    "forecast",
    "audit",
    "report",
    "cloud",
    "storage",
    "backup",
    "restore",
]
QUERIES = ["payroll salary", "kubernetes outage cluster", "vault secret", "audit report budget"]
QUERIES += ["leave policy holiday travel", "backup restore storage cloud", "unknownword"]
FILTERS: list[Node] = [
    EVERYONE,
    Cmp("tenant", "$eq", "acme"),
    Or((Cmp("acl", "$in", ("public",)), Cmp("acl", "$in", ("group:hr",)))),
]


def vec(n: int) -> list[float]:
    return [float((n * 7 + i) % 5 + 1) for i in range(8)]


def make_store(path: Path, name: str = "journal") -> ChromaStore:
    return ChromaStore(collection=name, dimension=8, embedding_model="fake-8", path=path)


class Corpus:
    """Random writes to a store, remembered so a test can name existing ids."""

    def __init__(self, store: ChromaStore, seed: int) -> None:
        self.store = store
        self.rng = random.Random(seed)
        self.ids: list[str] = []
        self.next = 0

    def text(self) -> str:
        return " ".join(self.rng.choice(WORDS) for _ in range(self.rng.randint(1, 12)))

    def meta(self) -> dict[str, Any]:
        meta: dict[str, Any] = {
            "tenant": self.rng.choice(["acme", "globex"]),
            "acl": [self.rng.choice(["public", "group:hr", "user:bob"])],
        }
        if self.rng.random() < 0.5:
            meta["title"] = self.rng.choice(WORDS).title()
        return meta

    def add(self, n: int) -> None:
        ids = [f"c{self.next + i}" for i in range(n)]
        self.next += n
        texts = [self.text() for _ in ids]
        self.store.upsert(ids, texts, [vec(i) for i in range(n)], [self.meta() for _ in ids])
        self.ids += ids

    def some(self, n: int) -> list[str]:
        return self.rng.sample(self.ids, min(n, len(self.ids)))

    def delete(self, n: int) -> None:
        gone = self.some(n)
        self.store.delete(gone)
        self.ids = [i for i in self.ids if i not in gone]

    def rewrite(self, n: int, *, text: bool, meta: bool) -> None:
        chosen = self.some(n)
        old = {r.id: r for r in self.store.get(chosen)}
        texts = [self.text() if text else old[i].text or "" for i in chosen]
        metas = [self.meta() if meta else old[i].metadata for i in chosen]
        self.store.upsert(chosen, texts, [vec(1)] * len(chosen), metas)

    def step(self) -> None:
        action = self.rng.choice(["add", "add", "delete", "acl", "text", "both"])
        n = self.rng.randint(1, 4)
        if action == "add" or len(self.ids) < 5:
            self.add(n)
        elif action == "delete":
            self.delete(n)
        else:
            self.rewrite(n, text=action in ("text", "both"), meta=action in ("acl", "both"))


def indexed(
    tmp_path: Path, seed: int, chunks: int, **options: Any
) -> tuple[ChromaStore, Corpus, KeywordIndex]:
    """A journaled store holding `chunks` chunks of a seeded corpus, and its index, refreshed."""
    store = make_store(tmp_path)
    corpus = Corpus(store, seed)
    corpus.add(chunks)
    index = KeywordIndex(store, **options)
    index.refresh()
    return store, corpus, index


def reference(store: ChromaStore, **kw: Any) -> KeywordIndex:
    """A full build of the store as it is now (never the journal: its own generation)."""
    token = store.change_token()
    index = KeywordIndex(store, generation=lambda: token, **kw)
    index.refresh()
    assert (index.rebuilds, index.incremental) == (1, 0)
    return index


def scores_by_id(index: KeywordIndex, query: str) -> dict[str, float]:
    built = index.ensure_fresh()
    assert built.model is not None
    scores = built.model.get_scores(index.analyzer(query))
    return {cid: float(s) for cid, s in zip(built.ids, scores, strict=True)}


def assert_same(index: KeywordIndex, full: KeywordIndex) -> None:
    """The same chunks, texts and metadata, the same score for every chunk and query, and
    the same hits under each filter (ties may sit in another row order)."""
    assert sorted(index.records(), key=lambda r: r.id) == sorted(full.records(), key=lambda r: r.id)
    for query in QUERIES:
        assert scores_by_id(index, query) == scores_by_id(full, query), query
        for where in FILTERS:
            got = index.search(query, 5, where)
            want = full.search(query, 5, where)
            assert [h.score for h in got] == [h.score for h in want]
            tied = {h.score for h in want[-1:]}  # the last place may go to either of a tie
            assert {h.id for h in got if h.score not in tied} == {
                h.id for h in want if h.score not in tied
            }
            built = index.ensure_fresh()
            mask = index.matching(built, where)  # possibly carried over from the last version
            assert mask.tolist() == [matches(where, m) for m in built.metadatas]


def no_scans(store: ChromaStore, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Count scans of the store (`records`) from now on."""
    scans: list[int] = []
    real = store.records

    def counting(*args: Any, **kw: Any) -> Any:
        scans.append(1)
        return real(*args, **kw)

    monkeypatch.setattr(store, "records", counting)
    return scans


# -- the journal refresh equals a full build -------------------------------------------------
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_random_changes_from_the_journal_equal_a_full_build(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, seed: int
) -> None:
    monkeypatch.setattr(bm25_module, "MERGE_MIN", 12)  # merges happen within the run too
    store = make_store(tmp_path / "chroma")
    corpus = Corpus(store, seed)
    corpus.add(40)
    index = KeywordIndex(store, directory=tmp_path / "bm25")
    index.refresh()
    scans = no_scans(store, monkeypatch)
    for step in range(25):
        corpus.step()
        index.refresh()
        assert index.journaled == step + 1 and scans == [], "refreshed by a scan"
        for where in FILTERS:  # masks cached now are carried to the next version
            index.search("payroll", 3, where)
        if step % 6 == 5:
            assert_same(index, reference(store))
            scans.clear()
    assert_same(index, reference(store))
    # a new process loads the base and its delta log: the same index, no build
    again = KeywordIndex(store, directory=tmp_path / "bm25")
    assert_same(again, index)
    assert (again.loads, again.rebuilds) == (1, 0)


@pytest.mark.parametrize("method", ["lucene", "robertson", "bm25+"])
def test_scores_after_journal_changes_equal_bm25s_own(tmp_path: Path, method: str) -> None:
    import bm25s

    _, corpus, index = indexed(tmp_path, 5, 30, method=method)
    for _ in range(6):
        corpus.step()
    index.refresh()
    assert index.journaled == 1
    built = index.ensure_fresh()
    ref = bm25s.BM25(k1=index.k1, b=index.b, method=method)
    ref.index(
        [
            index.analyzer(index_text(t, m, "title", 2))
            for t, m in zip(built.texts, built.metadatas, strict=True)
        ],
        show_progress=False,
    )
    for query in QUERIES[:-1]:
        tokens = index.analyzer(query)
        assert built.model is not None
        assert list(built.model.get_scores(tokens)) == list(ref.get_scores(tokens))


def test_a_small_change_reads_only_the_written_ids(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store, corpus, index = indexed(tmp_path, 9, 30)
    corpus.add(1)
    corpus.rewrite(1, text=False, meta=True)
    corpus.delete(1)
    scans = no_scans(store, monkeypatch)
    read: list[str] = []
    real_get = store.get
    monkeypatch.setattr(store, "get", lambda ids, **kw: read.extend(ids) or real_get(ids, **kw))
    index.refresh()
    assert scans == [] and index.journaled == 1
    assert len(read) == 3  # the three written ids, each once
    assert_same(index, reference(store))


# -- failing closed to the scan ------------------------------------------------------------
def refreshed_by(index: KeywordIndex) -> str:
    journaled, incremental, rebuilds = index.journaled, index.incremental, index.rebuilds
    index.refresh()
    if index.journaled > journaled:
        return "journal"
    if index.incremental > incremental:
        return "scan"
    return "full" if index.rebuilds > rebuilds else "none"


def test_a_write_without_a_journal_entry_is_found_by_the_scan(tmp_path: Path) -> None:
    store, corpus, index = indexed(tmp_path, 4, 10)
    # another writer (no journal) changes an ACL and moves the token: same count
    rec = store.get([corpus.ids[0]])[0]
    store._collection.upsert(
        ids=[rec.id], documents=[rec.text], embeddings=[vec(0)], metadatas=[{"tenant": "zz"}]
    )
    meta = dict(store._collection.metadata or {})
    meta[CHANGE_TOKEN_KEY] = "foreign"
    store._collection.modify(metadata=meta)
    assert refreshed_by(index) == "scan"
    assert_same(index, reference(store))
    # the chain from "foreign" on works again
    corpus.add(2)
    assert refreshed_by(index) == "journal"


def test_a_write_that_did_not_move_the_token_is_caught_by_the_count(tmp_path: Path) -> None:
    store, corpus, index = indexed(tmp_path, 4, 10)
    store._collection.delete(ids=[corpus.ids[3]])  # no token, no entry: only the count moved
    assert refreshed_by(index) == "scan"  # the journal's empty change does not explain it
    assert_same(index, reference(store))


def test_a_corrupt_or_ambiguous_or_pruned_journal_falls_back_to_the_scan(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store, corpus, index = indexed(tmp_path, 6, 10)
    journal = store._journal
    assert journal is not None
    corpus.add(1)
    with journal.path.open("ab") as fh:
        fh.write(b"{not json\n")
    assert refreshed_by(index) == "scan"
    # the next write finds no torn tail, so the bad line stays: still a scan
    corpus.add(1)
    assert refreshed_by(index) == "scan"

    # a crash mid-append: the token moved, its entry torn; the next writer starts afresh
    with journal.locked():
        prev, new = store._replace_token()
        with journal.path.open("ab") as fh:
            fh.write(json.dumps({"prev": prev, "next": new, "ids": ["c0"]}).encode()[:20])
    corpus.add(1)
    assert journal.path.read_bytes().count(b"\n") == 1
    assert refreshed_by(index) == "scan"  # the torn entry's change is not vouched for
    corpus.add(1)
    assert refreshed_by(index) == "journal"

    # two entries leaving one token: which happened is unknown
    token = store.change_token()
    corpus.add(1)
    with journal.locked():
        journal.append(token, "elsewhere", ["c0"])
    assert store.changes_since(token, store.change_token()) is None
    assert refreshed_by(index) == "scan"

    # a write too large to list
    monkeypatch.setattr(journal_module, "MAX_IDS", 2)
    corpus.add(3)
    assert refreshed_by(index) == "scan"
    monkeypatch.setattr(journal_module, "MAX_IDS", 10_000)

    # pruned: entries older than the newest half are gone
    corpus.add(1)
    assert refreshed_by(index) == "journal"
    token = store.change_token()
    size = journal.path.stat().st_size
    monkeypatch.setattr(journal_module, "MAX_BYTES", 250)  # about two entries
    for _ in range(4):
        corpus.add(1)
    assert journal.path.stat().st_size < min(size, 400)
    assert store.changes_since(token, store.change_token()) is None
    assert refreshed_by(index) == "scan"
    assert_same(index, reference(store))


def test_a_write_that_failed_part_way_journals_every_id_it_was_given(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from rag_app.errors import StoreError

    store, _, index = indexed(tmp_path, 8, 10)
    before = store.change_token()
    monkeypatch.setattr(store, "_max_batch", 2)
    real = store._collection.upsert
    calls: list[int] = []

    def flaky(**kw: Any) -> Any:
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("disk full")
        return real(**kw)

    monkeypatch.setattr(store._collection, "upsert", flaky)
    ids = ["n1", "n2", "n3", "n4"]
    with pytest.raises(StoreError, match="rejected"):
        store.upsert(ids, ["payroll"] * 4, [vec(1)] * 4, [{"tenant": "acme"}] * 4)
    assert store.changes_since(before, store.change_token()) == frozenset(ids)
    assert refreshed_by(index) == "journal"
    assert {"n1", "n2"} <= {r.id for r in index.records()}
    assert_same(index, reference(store))


def test_two_processes_extend_one_chain(tmp_path: Path) -> None:
    store = make_store(tmp_path)
    start = store.change_token()
    script = (
        "import sys; from pathlib import Path\n"
        "from rag_app.stores.chroma import ChromaStore\n"
        "s = ChromaStore(collection='journal', dimension=8, embedding_model='fake-8',"
        " path=Path(sys.argv[1]))\n"
        "for n in range(15):\n"
        "    s.upsert([f'p{n}'], ['words'], [[1.0] * 8], [{'tenant': 'acme'}])\n"
    )
    child = subprocess.Popen(
        [sys.executable, "-c", script, str(tmp_path)], cwd=Path(__file__).resolve().parents[2]
    )
    for n in range(15):
        store.upsert([f"m{n}"], ["words"], [vec(n)], [{"tenant": "acme"}])
    assert child.wait(120) == 0
    ids = store.changes_since(start, store.change_token())
    assert ids == {f"p{n}" for n in range(15)} | {f"m{n}" for n in range(15)}


def test_without_a_journal_file_nothing_is_vouched_for(tmp_path: Path) -> None:
    store = make_store(tmp_path)
    assert isinstance(store, ChangeJournaling)
    journal = ChangeJournal(Path("/nonexistent"), "x")
    assert journal.changes_since("a", "a") == frozenset()
    assert journal.changes_since("a", "b") is None  # no file: nothing vouched for
    # a store without a journal (a Chroma server: other hosts write without it) is scanned
    corpus = Corpus(store, 2)
    corpus.add(5)
    index = KeywordIndex(store)
    index.refresh()
    store._journal = None
    before = index.ensure_fresh().key[0]
    corpus.add(1)
    assert store.changes_since(before, store.change_token()) is None
    assert refreshed_by(index) == "scan"


def test_a_change_written_around_rag_app_is_scanned_for_within_rescan_s(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = [1000.0]
    monkeypatch.setattr(bm25_module, "time", SimpleNamespace(monotonic=lambda: clock[0]))
    store, corpus, index = indexed(tmp_path, 21, 10, rescan_s=600.0)
    victim = corpus.ids[0]
    rec = store.get([victim])[0]

    def around_rag_app(tenant: str) -> None:  # an ACL edited in Chroma itself: no token move
        store._collection.upsert(
            ids=[victim], documents=[rec.text], embeddings=[vec(0)], metadatas=[{"tenant": tenant}]
        )

    around_rag_app("x1")
    corpus.add(1)
    clock[0] += 599
    assert refreshed_by(index) == "journal"
    assert index.ensure_fresh().docs[victim].metadata["tenant"] != "x1"  # not seen yet
    clock[0] += 1
    corpus.add(1)
    assert refreshed_by(index) == "scan"  # the last scan is rescan_s old
    assert index.ensure_fresh().docs[victim].metadata["tenant"] == "x1"
    assert_same(index, reference(store))
    corpus.add(1)
    assert refreshed_by(index) == "journal"  # and the clock starts again


# -- the token read cadence ----------------------------------------------------------------
def test_the_token_is_reread_at_most_every_token_s_unless_this_store_wrote(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = [1000.0]
    monkeypatch.setattr(bm25_module, "time", SimpleNamespace(monotonic=lambda: clock[0]))
    store = make_store(tmp_path)
    corpus = Corpus(store, 3)
    corpus.add(10)
    reads: list[int] = []
    real_token = store.change_token
    monkeypatch.setattr(store, "change_token", lambda: reads.append(1) or real_token())
    index = KeywordIndex(store, recount_s=10.0, token_s=10.0)
    index.refresh()
    assert len(reads) == 1
    for _ in range(3):
        index.search("payroll", 5, EVERYONE)
    assert len(reads) == 1  # within token_s and no write here: the token is not read

    # a write through this very store object is seen at once
    store.upsert(["w1"], ["zebra"], [vec(1)], [{"tenant": "acme"}])
    assert [h.id for h in index.search("zebra", 5, EVERYONE)] == ["w1"]
    assert len(reads) == 2

    # another process's write (another store object on the same data): within token_s
    other = make_store(tmp_path)
    other.upsert(["w2"], ["okapi"], [vec(2)], [{"tenant": "acme"}])
    clock[0] += 5
    assert index.search("okapi", 5, EVERYONE) == []
    clock[0] += 6
    assert [h.id for h in index.search("okapi", 5, EVERYONE)] == ["w2"]
    assert len(reads) == 3


# -- persistence in proportion ---------------------------------------------------------------
def published(folder: Path) -> dict[str, Any]:
    return dict(json.loads((folder / "current.json").read_text()))


def load_published(store: ChromaStore, folder: Path) -> Any:
    """What a new process finds published under `folder` (without refreshing it)."""
    reader = KeywordIndex(store, directory=folder)
    pointer = reader._pointer()
    assert pointer is not None
    loaded = reader._load(pointer)
    assert loaded is not None
    return loaded


def test_a_small_change_is_appended_to_the_delta_log(tmp_path: Path) -> None:
    store = make_store(tmp_path / "chroma")
    corpus = Corpus(store, 11)
    corpus.add(30)
    folder = tmp_path / "bm25"
    index = KeywordIndex(store, directory=folder)
    index.refresh()
    first = published(folder)
    assert first["log_bytes"] == 0
    corpus.add(1)
    corpus.delete(1)
    index.refresh()
    second = published(folder)
    assert second["dir"] == first["dir"] and second["log_bytes"] > 0
    assert second["key"] == list(index.ensure_fresh().key)
    assert (folder / first["dir"] / "log.jsonl").stat().st_size == second["log_bytes"]
    loaded = KeywordIndex(store, directory=folder)
    assert_same(loaded, index)
    # loaded, it goes on appending to the same log
    corpus.add(1)
    loaded.refresh()
    assert published(folder)["log_bytes"] > second["log_bytes"]
    assert_same(KeywordIndex(store, directory=folder), reference(store))


def test_a_crash_between_the_log_append_and_the_pointer_leaves_the_old_index(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = make_store(tmp_path / "chroma")
    corpus = Corpus(store, 12)
    corpus.add(20)
    folder = tmp_path / "bm25"
    index = KeywordIndex(store, directory=folder)
    index.refresh()
    corpus.add(1)
    index.refresh()
    before = published(folder)
    old_key = tuple(before["key"])

    def crash(*args: Any) -> None:
        raise OSError("power cut")

    corpus.add(2)
    monkeypatch.setattr(KeywordIndex, "_publish", crash)
    index.refresh()  # the log was appended, the pointer not replaced
    monkeypatch.undo()
    log_file = folder / before["dir"] / "log.jsonl"
    assert log_file.stat().st_size > before["log_bytes"]
    assert published(folder) == before
    assert load_published(store, folder).key == old_key  # the old version
    # the next writer drops what the crash left and appends after the published end
    other = KeywordIndex(store, directory=folder)
    other.refresh()
    assert other.journaled == 1
    assert log_file.stat().st_size == published(folder)["log_bytes"]
    assert_same(KeywordIndex(store, directory=folder), reference(store))


def test_a_crash_during_a_full_save_leaves_the_old_index(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = make_store(tmp_path / "chroma")
    corpus = Corpus(store, 13)
    corpus.add(20)
    folder = tmp_path / "bm25"
    KeywordIndex(store, directory=folder).refresh()
    before = published(folder)
    corpus.add(1)

    def crash(*args: Any, **kw: Any) -> None:
        raise OSError("power cut")

    monkeypatch.setattr(np, "save", crash)
    fresh = KeywordIndex(store, generation=lambda: "other", directory=folder)
    fresh.refresh()  # a full save (another key): dies half way through the new folder
    monkeypatch.undo()
    assert published(folder) == before
    assert load_published(store, folder).key == tuple(before["key"])


def test_a_log_shorter_than_its_pointer_is_not_loaded(tmp_path: Path) -> None:
    store = make_store(tmp_path / "chroma")
    corpus = Corpus(store, 14)
    corpus.add(20)
    folder = tmp_path / "bm25"
    index = KeywordIndex(store, directory=folder)
    index.refresh()
    corpus.add(1)
    index.refresh()
    pointer = published(folder)
    log_file = folder / pointer["dir"] / "log.jsonl"
    log_file.write_bytes(log_file.read_bytes()[:-5])
    again = KeywordIndex(store, directory=folder)
    again.refresh()
    assert (again.loads, again.rebuilds, again.incremental) == (0, 1, 0)
    assert_same(again, reference(store))


def test_the_log_is_compacted_into_a_new_base(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(bm25_module, "LOG_MIN_BYTES", 0)
    store = make_store(tmp_path / "chroma")
    corpus = Corpus(store, 15)
    corpus.add(20)
    folder = tmp_path / "bm25"
    index = KeywordIndex(store, directory=folder)
    index.refresh()
    first = published(folder)["dir"]
    dirs = set()
    for _ in range(12):
        corpus.add(2)
        index.refresh()
        dirs.add(published(folder)["dir"])
    assert index.journaled == 12
    assert len(dirs - {first}) >= 1  # saved in full again once the log outgrew its share
    assert len([p for p in folder.iterdir() if p.name.startswith("index-")]) == 1
    assert_same(KeywordIndex(store, directory=folder), reference(store))


# -- filters judged per group of rows --------------------------------------------------------
def access_filter(tenant: str, tokens: tuple[str, ...]) -> Node:
    """An access filter's shape: the tenant and any of the reader's ACL tokens."""
    readable = Or(tuple(Cmp("acl", "$contains", t) for t in tokens))
    return And((Cmp("tenant", "$eq", tenant), readable))


def counted_assign(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """How many rows each `FieldGroups.assign` call grouped, from now on."""
    calls: list[int] = []
    real = FieldGroups.assign

    def counting(self: FieldGroups, metadatas: Any) -> list[int]:
        rows = list(metadatas)
        calls.append(len(rows))
        return real(self, rows)

    monkeypatch.setattr(FieldGroups, "assign", counting)
    return calls


def test_another_readers_filter_reuses_the_grouping_of_the_rows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, _, index = indexed(tmp_path, seed=4, chunks=80)
    built = index.ensure_fresh()
    grouped = counted_assign(monkeypatch)
    judged: list[int] = []
    real_matches = filters_module.matches

    def counting_matches(node: Any, metadata: Any) -> bool:
        judged.append(1)
        return real_matches(node, metadata)

    monkeypatch.setattr(filters_module, "matches", counting_matches)
    readers = [("acme", ("public",)), ("acme", ("group:hr", "user:bob")), ("globex", ("user:bob",))]
    for n, (tenant, tokens) in enumerate(readers):
        judged.clear()
        where = access_filter(tenant, tokens)
        mask = index.matching(built, where)
        calls = len(judged)  # `matches` recurses: up to 5 calls per verdict for this filter
        assert mask.tolist() == [real_matches(where, m) for m in built.metadatas]
        # judged once per (tenant, acl) combination (2 x 3 here), never once per row
        assert 0 < calls <= 5 * 6 < len(built.ids)
        # the rows were grouped for the first reader only; the others reuse it
        assert grouped == [len(built.ids)], n


def test_a_new_filter_on_a_derived_version_uses_the_carried_grouping(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, corpus, index = indexed(tmp_path, seed=5, chunks=60)
    index.matching(index.ensure_fresh(), access_filter("acme", ("public",)))
    grouped = counted_assign(monkeypatch)
    tokens = ["public", "group:hr", "user:bob"]
    rng = random.Random(5)
    for step in range(15):
        corpus.step()
        index.refresh()
        built = index.ensure_fresh()
        where = access_filter(rng.choice(["acme", "globex"]), tuple(rng.sample(tokens, 2)))
        mask = index.matching(built, where)  # not cached: judged through the carried grouping
        assert mask.tolist() == [matches(where, m) for m in built.metadatas], step
    assert index.journaled == 15
    # only the rows each version appended were grouped, never the whole index again
    assert grouped and max(grouped) <= 4 < len(corpus.ids)
