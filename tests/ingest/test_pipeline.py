"""Incremental, idempotent ingestion against embedded Chroma with a fake embedder."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rag_app.app import App
from rag_app.settings import Settings
from tests.fakes import ExplodingEmbeddings, HashEmbeddings, WrongDimensionEmbeddings


def doc(title: str, body: str, *, tenant: str = "acme", acl: str = "[public]", **extra) -> str:
    fm = [f"title: {title}", f"tenant: {tenant}", f"acl: {acl}"]
    fm += [f"{k}: {json.dumps(v)}" for k, v in extra.items()]
    return "---\n" + "\n".join(fm) + "\n---\n" + body


def paragraphs(word: str, n: int) -> str:
    return "\n\n".join(f"{word} paragraph {i} " + " ".join([word] * 40) for i in range(n))


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    root = tmp_path / "corpus"
    (root / "sub").mkdir(parents=True)
    (root / "a.md").write_text(doc("A", paragraphs("alpha", 6), created_at="2024-05-01"))
    (root / "b.md").write_text(doc("B", paragraphs("beta", 2), acl="[group:hr]"))
    (root / "sub" / "c.txt").write_text(doc("C", paragraphs("gamma", 3), tenant="globex"))
    return root


def make_app(tmp_path: Path, embeddings=None, **settings) -> App:
    s = Settings(data_dir=tmp_path / "data", chunk_size=60, chunk_overlap=10, **settings)
    return App(s, embeddings=embeddings or HashEmbeddings(32))


def ids_by_source(app: App) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for rec in app.store.records():
        out.setdefault(rec.metadata["source"].rsplit("/", 1)[-1], set()).add(rec.id)
    return out


def test_first_ingest_then_reingest_embeds_nothing(tmp_path, corpus):
    emb = HashEmbeddings(32)
    app = make_app(tmp_path, emb)
    first = app.ingestor.ingest([corpus])
    assert first.ok and first.files_indexed == 3
    assert first.chunks_added == app.store.count() > 3
    before = ids_by_source(app)
    embedded = emb.texts_embedded

    again = make_app(tmp_path, emb).ingestor.ingest([corpus])
    assert again.files_unchanged == 3 and again.files_indexed == 0
    assert again.chunks_added == 0
    assert emb.texts_embedded == embedded  # nothing re-embedded
    assert ids_by_source(make_app(tmp_path, emb)) == before


def test_chunk_ids_are_deterministic(tmp_path, corpus):
    a = make_app(tmp_path / "one")
    a.ingestor.ingest([corpus])
    b = make_app(tmp_path / "two")
    b.ingestor.ingest([corpus])
    assert ids_by_source(a) == ids_by_source(b)


def test_changed_file_replaces_exactly_its_chunks(tmp_path, corpus):
    app = make_app(tmp_path)
    app.ingestor.ingest([corpus])
    before = ids_by_source(app)
    (corpus / "a.md").write_text(doc("A", paragraphs("delta", 2)))
    report = app.ingestor.ingest([corpus])
    assert report.files_indexed == 1 and report.files_unchanged == 2
    after = ids_by_source(app)
    assert after["b.md"] == before["b.md"] and after["c.txt"] == before["c.txt"]
    assert not (after["a.md"] & before["a.md"])
    assert report.chunks_deleted == len(before["a.md"])
    texts = [r.text for r in app.store.records(with_text=True) if "a.md" in r.metadata["source"]]
    assert texts and all("delta" in t and "alpha" not in t for t in texts)


def test_cleanup_full_removes_vanished_files_only_under_given_roots(tmp_path, corpus):
    other = tmp_path / "other"
    other.mkdir()
    (other / "d.md").write_text(doc("D", "delta text"))
    app = make_app(tmp_path)
    app.ingestor.ingest([corpus, other])
    (corpus / "sub" / "c.txt").unlink()

    incremental = app.ingestor.ingest([corpus])
    assert incremental.files_removed == 0
    assert "c.txt" in ids_by_source(app)

    full = app.ingestor.ingest([corpus], cleanup="full")
    assert full.files_removed == 1
    remaining = ids_by_source(app)
    assert "c.txt" not in remaining
    assert "d.md" in remaining  # outside the given roots: untouched


def test_crash_mid_ingest_is_completed_without_duplicates(tmp_path, corpus):
    crashing = ExplodingEmbeddings(fail_on_call=2, exc=KeyboardInterrupt(), dimension=32)
    app = make_app(tmp_path, crashing)
    with pytest.raises(KeyboardInterrupt):
        app.ingestor.ingest([corpus])
    partial = app.store.count()

    clean = HashEmbeddings(32)
    app2 = make_app(tmp_path, clean)
    report = app2.ingestor.ingest([corpus])
    assert report.ok
    reference = make_app(tmp_path / "ref")
    reference.ingestor.ingest([corpus])
    assert ids_by_source(app2) == ids_by_source(reference)
    assert app2.store.count() == reference.store.count() >= partial
    # The file indexed before the crash is not embedded again.
    assert report.files_unchanged >= 1


def test_bad_inputs_are_reported_and_nothing_stored_is_lost(tmp_path, corpus):
    app = make_app(tmp_path)
    app.ingestor.ingest([corpus])
    before = ids_by_source(app)

    # b.md becomes invalid; new bad files appear next to a new good one.
    (corpus / "b.md").write_text("---\ntitle: [broken\n---\nbody")
    (corpus / "empty.md").write_text("")
    (corpus / "bin.txt").write_bytes(b"\x00\x01\x02binary")
    (corpus / "nested.md").write_text(doc("N", "text", owner={"name": "x"}))
    (corpus / "mixed.md").write_text(doc("M", "text", tags=[1, "a"]))
    (corpus / "notenant.md").write_text("---\ntitle: x\nacl: [public]\n---\nbody")
    (corpus / "good.md").write_text(doc("G", "good new document"))
    report = app.ingestor.ingest([corpus])

    rejected = {Path(r.location).name: r.reason for r in report.rejected}
    assert set(rejected) == {"b.md", "empty.md", "bin.txt", "nested.md", "mixed.md", "notenant.md"}
    assert "invalid front matter" in rejected["b.md"]
    assert "nested mapping" in rejected["nested.md"]
    assert "mixes types" in rejected["mixed.md"]
    assert "missing required metadata tenant" in rejected["notenant.md"]
    after = ids_by_source(app)
    assert after["b.md"] == before["b.md"]  # old chunks of the now-invalid file are kept
    assert "good.md" in after


def test_wrong_dimension_vectors_reject_only_that_file(tmp_path, corpus):
    (corpus / "w.md").write_text(doc("W", "this one has WRONGDIM inside"))
    app = make_app(tmp_path, WrongDimensionEmbeddings(dimension=32))
    report = app.ingestor.ingest([corpus])
    assert [Path(r.location).name for r in report.rejected] == ["w.md"]
    assert "dimensions" in report.rejected[0].reason
    assert report.files_indexed == 3
    assert "w.md" not in ids_by_source(app)


def test_jsonl_with_bad_lines_lands_good_records_and_retries_next_time(tmp_path):
    corpus = tmp_path / "c"
    corpus.mkdir()
    lines = [
        {"_id": "1", "title": "one", "text": "first record", "tenant": "t", "acl": ["public"]},
        {"_id": "2", "title": "two", "text": "second record", "tenant": "t", "acl": []},
        {"_id": "3", "title": "three", "text": "third record", "tenant": "t", "acl": ["public"]},
    ]
    (corpus / "corpus.jsonl").write_text("\n".join(json.dumps(x) for x in lines))
    app = make_app(tmp_path)
    report = app.ingestor.ingest([corpus])
    assert len(report.rejected) == 1 and report.rejected[0].location.endswith("#2")
    sources = sorted(r.metadata["source"].split("#")[1] for r in app.store.records())
    assert sources == ["1", "3"]
    lines[1]["acl"] = ["public"]
    (corpus / "corpus.jsonl").write_text("\n".join(json.dumps(x) for x in lines))
    report = app.ingestor.ingest([corpus])
    assert report.ok
    assert sorted(r.metadata["source"].split("#")[1] for r in app.store.records()) == [
        "1",
        "2",
        "3",
    ]


def test_overrides_set_tenant_and_acl(tmp_path):
    corpus = tmp_path / "c"
    corpus.mkdir()
    (corpus / "x.md").write_text("---\ntitle: X\ntenant: evil\n---\nhello")
    app = make_app(tmp_path)
    report = app.ingestor.ingest([corpus], overrides={"tenant": "acme", "acl": ["group:hr"]})
    assert report.ok
    (rec,) = list(app.store.records())
    assert rec.metadata["tenant"] == "acme" and rec.metadata["acl"] == ["group:hr"]


def test_delete_by_source_and_reingest_adds_back(tmp_path, corpus):
    app = make_app(tmp_path)
    app.ingestor.ingest([corpus])
    source = next(
        r.metadata["source"] for r in app.store.records() if "b.md" in r.metadata["source"]
    )
    n = app.admin.delete(sources=[source])
    assert n > 0 and "b.md" not in ids_by_source(app)
    report = app.ingestor.ingest([corpus])
    assert report.files_indexed == 1
    assert "b.md" in ids_by_source(app)


def test_field_catalog_feeds_filter_validation(tmp_path, corpus):
    app = make_app(tmp_path)
    app.ingestor.ingest([corpus])
    fields = app.state.fields()
    assert fields["created_at"] == "int" and fields["acl"] == "list"
    assert fields["title"] == "str"


# -- issue 8: partial ingests never keep a record's superseded, wider chunks ----------------------
def jsonl(path: Path, rows: list[dict]) -> None:
    path.write_text("\n".join(json.dumps(r) for r in rows))


def test_a_bad_record_does_not_keep_the_old_chunks_of_a_good_one(tmp_path):
    from rag_app.access.permissions import Principal

    corpus = tmp_path / "c"
    corpus.mkdir()
    rows = [
        {
            "_id": "r1",
            "title": "Pay",
            "text": "salary band secret",
            "tenant": "t",
            "acl": ["public"],
        },
        {"_id": "r2", "title": "Two", "text": "second record", "tenant": "t", "acl": ["public"]},
    ]
    for row in rows:
        row["acl"] = ["public"]
    jsonl(corpus / "docs.jsonl", rows)
    app = make_app(tmp_path)
    assert app.ingestor.ingest([corpus]).ok
    henry = Principal("t", "henry", frozenset({"staff"}))
    assert app.search.search(henry, "salary band", k=5).hits

    # r1 narrows to group:hr while r2 loses its text (rejected)
    rows[0]["acl"] = ["group:hr"]
    rows[1]["text"] = ""
    jsonl(corpus / "docs.jsonl", rows)
    report = app.ingestor.ingest([corpus])
    assert [r.location.rsplit(":", 1)[-1] for r in report.rejected] == ["2"]
    by_record: dict[str, list[list[str]]] = {}
    for rec in app.store.records():
        by_record.setdefault(rec.metadata["doc_id"], []).append(rec.metadata["acl"])
    assert by_record["r1"] == [["group:hr"]]  # the old public r1 chunk is gone
    assert by_record["r2"] == [["public"]]  # r2 keeps its previous version...
    (kept,) = report.still_served  # ...and the report says so
    assert "r2" in kept.reason and "public" in kept.reason and "still served" in kept.reason
    for retriever in ("dense", "bm25", "hybrid"):
        hits = app.searcher(retriever).search(henry, "salary band secret", k=10).hits
        assert all(h.metadata["doc_id"] != "r1" for h in hits), retriever

    # fixed input: r2 is replaced, nothing is reported any more
    rows[1]["text"] = "second record again"
    jsonl(corpus / "docs.jsonl", rows)
    report = app.ingestor.ingest([corpus])
    assert report.ok and report.still_served == []
    # a record removed from the file goes with a complete ingest
    jsonl(corpus / "docs.jsonl", rows[:1])
    assert app.ingestor.ingest([corpus]).ok
    assert {rec.metadata["doc_id"] for rec in app.store.records()} == {"r1"}


def test_invalid_front_matter_reports_the_previous_version_still_served(tmp_path, corpus):
    app = make_app(tmp_path)
    app.ingestor.ingest([corpus])
    (corpus / "b.md").write_text("---\ntitle: [broken\n---\nbody")
    report = app.ingestor.ingest([corpus])
    (kept,) = report.still_served
    assert kept.location.endswith("b.md")
    assert "still served" in kept.reason and "group:hr" in kept.reason
    assert "rag-app delete --source" in kept.reason


# -- issue 8: display paths, reserved derived keys, per-tenant field catalog -----------------------
def test_sources_outside_the_working_directory_are_relative_to_the_ingest_root(
    tmp_path, corpus, monkeypatch
):
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    app = make_app(tmp_path)
    assert app.ingestor.ingest([corpus]).ok
    sources = {rec.metadata["source"] for rec in app.store.records()}
    assert sources == {"corpus/a.md", "corpus/b.md", "corpus/sub/c.txt"}
    assert not any(str(tmp_path) in s for s in sources)


@pytest.mark.parametrize("key", ["acl_iso", "tenant_iso", "category_iso", "created_at_iso"])
def test_derived_iso_keys_are_reserved(tmp_path, key):
    corpus = tmp_path / "c"
    corpus.mkdir()
    (corpus / "x.md").write_text(doc("X", "text", created_at="2024-01-01", **{key: "lie"}))
    app = make_app(tmp_path)
    report = app.ingestor.ingest([corpus])
    assert len(report.rejected) == 1 and f"{key!r} is reserved" in report.rejected[0].reason
    assert app.store.count() == 0


def test_field_catalog_is_per_tenant(tmp_path, corpus):
    from rag_app.access.permissions import Principal
    from rag_app.errors import FilterError

    (corpus / "d.md").write_text(doc("D", "delta", tenant="globex", globex_only="x"))
    app = make_app(tmp_path)
    assert app.ingestor.ingest([corpus]).ok
    assert "globex_only" in app.state.fields("globex")
    assert "globex_only" not in app.state.fields("acme")
    assert "created_at" not in app.state.fields("globex")
    acme = Principal("acme", "ann", frozenset())
    with pytest.raises(FilterError) as err:
        app.search.search(acme, "delta", filter={"nope": "x"})
    assert "globex_only" not in str(err.value) and "created_at" in str(err.value)
    with pytest.raises(FilterError, match="unknown field 'globex_only'"):
        app.search.search(acme, "delta", filter={"globex_only": "x"})
    globex = Principal("globex", "gus", frozenset())
    assert app.search.search(globex, "delta", filter={"globex_only": "x"}).hits


def test_an_old_tenantless_catalog_is_migrated_from_the_store(tmp_path, corpus):
    from sqlalchemy import delete

    from rag_app.ingest.state import fields_table, tenant_fields_table

    app = make_app(tmp_path)
    app.ingestor.ingest([corpus])
    with app.state.engine.begin() as conn:  # what a database of the previous version holds
        conn.execute(delete(tenant_fields_table))
        conn.execute(
            fields_table.insert().values(namespace=app.state.namespace, name="acl", kind="list")
        )
    fresh = make_app(tmp_path)
    assert fresh.state.fields("globex")["title"] == "str"
    assert "created_at" in fresh.state.fields("acme") and "created_at" not in fresh.state.fields(
        "globex"
    )
    assert not fresh.state.needs_field_migration()


# -- issue 8: deletes are validated like queries ----------------------------------------------
def test_delete_filters_are_validated_against_the_catalog(tmp_path):
    from rag_app.errors import FilterError

    corpus = tmp_path / "c"
    corpus.mkdir()
    for year in (2020, 2021, 2022):
        (corpus / f"y{year}.md").write_text(doc(f"Y{year}", f"year {year}", year=year))
    app = make_app(tmp_path)
    assert app.ingestor.ingest([corpus]).ok
    before = app.store.count()
    with pytest.raises(FilterError, match="holds integers"):
        app.admin.delete(filter='{"year": {"$gte": 2021.5}}')
    with pytest.raises(FilterError, match="unknown field 'yaer'"):
        app.admin.delete(filter='{"yaer": 2021}')
    assert app.store.count() == before  # nothing lost
    plan = app.admin.plan_delete(filter='{"year": {"$gte": 2022}}')
    assert list(plan.per_source) == [s for s in plan.per_source if s.endswith("y2022.md")]
    assert app.admin.delete(plan=plan) == len(plan.ids) > 0
    assert app.store.count() == before - len(plan.ids)
