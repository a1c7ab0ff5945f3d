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
    assert "**cited**" in text
