from __future__ import annotations

import json
from pathlib import Path

import pytest

from rag_app.errors import RejectedInput
from rag_app.ingest.loaders import discover, load_file

MB = 1_000_000


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def test_markdown_front_matter_and_title_from_heading(tmp_path):
    f = write(tmp_path / "a.md", "---\ntenant: acme\nacl: [public]\ntags: [x]\n---\n# Hello\nBody")
    loaded = load_file(f, max_bytes=MB)
    (doc,) = loaded.docs
    assert doc.metadata["tenant"] == "acme"
    assert doc.metadata["title"] == "Hello"
    assert doc.text.strip().startswith("# Hello")


def test_sidecar_overrides_front_matter_and_cli_overrides_both(tmp_path):
    f = write(tmp_path / "a.txt", "---\ntenant: acme\ncategory: faq\n---\nBody text")
    write(tmp_path / "a.txt.meta.json", json.dumps({"category": "hr", "acl": ["group:hr"]}))
    (doc,) = load_file(f, max_bytes=MB, overrides={"tenant": "globex"}).docs
    assert doc.metadata["category"] == "hr"
    assert doc.metadata["acl"] == ["group:hr"]
    assert doc.metadata["tenant"] == "globex"


def test_invalid_front_matter_is_rejected_with_line(tmp_path):
    f = write(tmp_path / "bad.md", "---\ntitle: [unclosed\nacl: x\n---\nbody")
    with pytest.raises(RejectedInput, match="invalid front matter"):
        load_file(f, max_bytes=MB)


def test_invalid_sidecar(tmp_path):
    f = write(tmp_path / "a.md", "body")
    write(tmp_path / "a.md.meta.json", "{nope")
    with pytest.raises(RejectedInput, match="invalid sidecar"):
        load_file(f, max_bytes=MB)
    write(tmp_path / "a.md.meta.json", "[1]")
    with pytest.raises(RejectedInput, match="JSON object"):
        load_file(f, max_bytes=MB)


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("empty.md", b"", "empty file"),
        ("bin.txt", b"abc\x00\x01\x02", "binary"),
        ("latin.txt", "caf\u00e9".encode("latin-1"), "not UTF-8"),
        ("only-fm.md", b"---\ntitle: x\n---\n   \n", "no text content"),
        ("img.png", b"\x89PNG", "unsupported file type .png"),
        ("broken.pdf", b"%PDF-1.4 garbage", "unreadable PDF"),
    ],
)
def test_bad_files_are_rejected_with_reason(tmp_path, name, content, message):
    f = tmp_path / name
    f.write_bytes(content)
    with pytest.raises(RejectedInput, match=message):
        load_file(f, max_bytes=MB)


def test_oversized_file(tmp_path):
    f = tmp_path / "big.txt"
    f.write_text("x" * 2000)
    with pytest.raises(RejectedInput, match=r"over the 0\.0 MB limit"):
        load_file(f, max_bytes=1000)


def test_html_text_and_title(tmp_path):
    f = write(
        tmp_path / "p.html",
        "<html><head><title>Page T</title><script>var x=1;</script></head><body>"
        "<h1>Head</h1><p>Para one.</p><ul><li>item</li></ul></body></html>",
    )
    (doc,) = load_file(f, max_bytes=MB).docs
    assert doc.metadata["title"] == "Page T"
    assert "Para one." in doc.text and "# Head" in doc.text and "- item" in doc.text
    assert "var x" not in doc.text


def test_jsonl_beir_layout_and_bad_lines(tmp_path):
    lines = [
        json.dumps(
            {"_id": "d1", "title": "One", "text": "first", "tenant": "t", "acl": ["public"]}
        ),
        "not json",
        json.dumps({"_id": "d2", "text": ""}),
        json.dumps({"_id": "d1", "text": "dup"}),
        json.dumps({"text": "no id"}),
        json.dumps({"_id": 3, "text": "third", "metadata": {"category": "x"}}),
    ]
    f = write(tmp_path / "corpus.jsonl", "\n".join(lines) + "\n")
    loaded = load_file(f, max_bytes=MB)
    assert [d.doc_id for d in loaded.docs] == ["d1", "3"]
    assert loaded.docs[0].source.endswith("corpus.jsonl#d1")
    assert loaded.docs[1].metadata["category"] == "x"
    assert loaded.docs[1].metadata["title"] == "3"
    reasons = [r.reason for r in loaded.rejected]
    assert len(reasons) == 4
    assert any("invalid JSON" in r for r in reasons)
    assert any("duplicate _id" in r for r in reasons)
    assert any("no 'text'" in r for r in reasons)
    assert any("missing '_id'" in r for r in reasons)
    assert all(r.location and r.location.startswith(str(f)) for r in loaded.rejected)


def test_pdf_from_demo_corpus():
    pdfs = sorted(Path("demo/corpus").rglob("*.pdf"))
    if not pdfs:
        pytest.skip("demo corpus has no PDF")
    (doc,) = load_file(pdfs[0], max_bytes=50 * MB).docs
    assert len(doc.text) > 100
    assert doc.metadata["tenant"]


def test_discover_walks_sorted_skips_hidden_and_sidecars(tmp_path):
    write(tmp_path / "b.md", "x")
    write(tmp_path / "a" / "c.txt", "x")
    write(tmp_path / "a" / "c.txt.meta.json", "{}")
    write(tmp_path / ".hidden" / "d.md", "x")
    write(tmp_path / "e.xyz", "x")
    found = discover([tmp_path, tmp_path / "nope"])
    assert [p.relative_to(tmp_path).as_posix() for p in found.files] == ["b.md", "a/c.txt"]
    assert [p.name for p, _ in found.skipped] == ["e.xyz"]
    assert found.missing == [tmp_path / "nope"]
