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
    n = app.delete(sources=[source])
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
