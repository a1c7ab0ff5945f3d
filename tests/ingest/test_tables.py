"""Tables indexed as one sentence per row: parsing (Markdown, HTML), the row sentences, and the
extra chunks in the ingestion pipeline (metadata, incremental updates, permissions)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from bs4 import BeautifulSoup

from rag_app.access.permissions import Principal
from rag_app.app import App
from rag_app.ingest.loaders import load_file
from rag_app.ingest.tables import (
    Table,
    html_table,
    is_unit,
    markdown_tables,
    render_markdown,
    row_sentences,
    row_texts,
    split_row,
)
from rag_app.ops.verify import verify
from rag_app.settings import Settings
from tests.fakes import HashEmbeddings

MB = 1_000_000
SALARY_BANDS = Path("demo/corpus/halcyon/hr/salary-bands-2025.md")
L4 = (
    "Level L4: title examples Senior engineer, senior product manager; minimum 98,000 EUR; "
    "midpoint 111,000 EUR; maximum 124,000 EUR; bonus target 8 %"
)


# -- Markdown ----------------------------------------------------------------------------------
def test_salary_bands_l4_sentence_exactly() -> None:
    (doc,) = load_file(SALARY_BANDS, max_bytes=MB).docs
    (table,) = doc.tables
    assert table.context == "Rotterdam bands (annual base salary, EUR, full-time)"
    sentences = table.sentences()
    assert len(sentences) == 7
    assert sentences[3] == L4
    assert row_texts(doc.metadata["title"], [table])[3] == (
        "Salary Bands 2025 (Confidential) — Rotterdam bands (annual base salary, EUR, "
        "full-time) — " + L4
    )
    # the table stays in the text as written
    assert "| L4 | Senior engineer, senior product manager | 98,000 |" in doc.text


def test_header_units_follow_values_and_remarks_stay_with_the_name() -> None:
    text = (
        "## Pay\n\n"
        "| Level | Minimum (EUR) | Payload [kg] | Change (%) | Per night (room only) | Owner(s) |\n"
        "|---|---|---|---|---|---|\n"
        "| L4 | 98,000 | up to 1,500 | +2.7 | 160 | Ann |\n"
        "| L5 | 1,000 per month | 20 kg | | | |\n"
    )
    (table,) = markdown_tables(text)
    assert table.sentences() == [
        "Level L4: minimum 98,000 EUR, payload up to 1,500 kg, change +2.7 %, "
        "per night (room only) 160, owner(s) Ann",
        "Level L5: minimum (EUR) 1,000 per month, payload 20 kg",
    ]
    assert is_unit("M EUR") and is_unit("EUR/month") and is_unit("kg")
    assert not is_unit("room only") and not is_unit("s") and not is_unit("USA")


def test_context_currency_applies_to_plain_number_columns_only() -> None:
    text = (
        "### Budget (EUR)\n\n"
        "| Team | Budget | Note | Heads |\n|---|---|---|---|\n"
        "| 10 | 1,200 | 5 % up | 4 |\n| 20 | 800 | flat | 3 |\n"
    )
    (table,) = markdown_tables(text)
    # the first column is a key, "Note" is text; "Heads" holds plain numbers too (the rule is
    # per column, documented), so it gets the unit as well
    assert table.sentences()[0] == "Team 10: budget 1,200 EUR, note 5 % up, heads 4 EUR"
    two = "## Prices (EUR, USD)\n\n| Item | Price |\n|---|---|\n| x | 5 |\n"
    assert markdown_tables(two)[0].sentences() == ["Item x: price 5"]  # two currencies: none


def test_markdown_edge_cases() -> None:
    text = "\n".join(
        [
            "Intro paragraph.",
            "",
            "Name | Value | Notes",  # no outer pipes
            ":--- | ---: | :---:",  # alignment colons
            r"pipe \| inside | **42** | `code` and [link](http://x)",  # escaped pipe, markup
            "short | 7",  # ragged: padded
            "| long | 8 | n | extra |",  # ragged: extra cell kept without a name
            "only-first | |",  # nothing beyond the first cell: no sentence
            "",
            "after the blank line | not a row",
            "",
            "```",
            "| in | code |",
            "|----|------|",
            "| x | y |",
            "```",
            "",
            "| a | b |",
            "|---|",  # delimiter of another width: not a table
            "| c | d |",
        ]
    )
    (table,) = markdown_tables(text)
    assert table.headers == ("Name", "Value", "Notes")
    assert table.context == ""
    assert table.sentences() == [
        "pipe | inside: value 42, notes code and link",
        "short: value 7",
        "long: value 8, notes n, extra",
    ]


def test_split_row_escapes_and_outer_pipes() -> None:
    assert split_row(r"| a \| b | c |") == ["a | b", "c"]
    assert split_row("a | b") == ["a", "b"]
    assert split_row(r"| a | b \|") == ["a", "b |"]


def test_context_is_caption_else_nearest_heading() -> None:
    text = (
        "# Doc\n\n## Section one\n\nText.\n\n| K | V |\n|---|---|\n| a | 1 |\n\n"
        "Setext heading\n--------------\n\n| K | V |\n|---|---|\n| b | 2 |\n\n"
        "Table 3: Captioned rates\n\n| K | V |\n|---|---|\n| c | 3 |\n\n"
        "## Last\n\n| K | V |\n|---|---|\n| d | 4 |\n\nTable: Caption below\n"
    )
    contexts = [t.context for t in markdown_tables(text)]
    assert contexts == ["Section one", "Setext heading", "Captioned rates", "Caption below"]


def test_single_column_and_header_only_tables_are_not_indexed() -> None:
    assert markdown_tables("| a |\n|---|\n| b |\n") == []
    assert markdown_tables("| a | b |\n|---|---|\n\ntext\n") == []


def test_row_texts_skip_context_the_title_already_says() -> None:
    table = Table(headers=("Key", "Value"), rows=(("a", "1"),), context="Salary bands")
    assert row_texts("Salary bands 2025", [table]) == ["Salary bands 2025 — Key a: value 1"]
    assert row_texts("Pay", [table]) == ["Pay — Salary bands — Key a: value 1"]


def test_semicolons_are_used_in_every_row_when_any_value_has_a_comma() -> None:
    table = Table(headers=("Key", "Aa", "Bb"), rows=(("x", "1, 2", "3"), ("y", "4", "5")))
    assert row_sentences(table) == ["Key x: aa 1, 2; bb 3", "Key y: aa 4; bb 5"]
    # one-letter and acronym-like names are kept as written
    table = Table(headers=("K", "A", "Q3 2025", "EBITDA"), rows=(("x", "1", "2", "3"),))
    assert row_sentences(table) == ["K x: A 1, Q3 2025 2, EBITDA 3"]


# -- HTML ----------------------------------------------------------------------------------------
def _table(html: str, context: str = "") -> Table | None:
    tag = BeautifulSoup(html, "html.parser").find("table")
    assert tag is not None
    return html_table(tag, context=context)


def test_html_thead_colspan_rowspan_and_caption() -> None:
    table = _table(
        "<table><caption>Rates 2025</caption>"
        "<thead><tr><th rowspan='2'>Site</th><th colspan='2'>Night (EUR)</th></tr>"
        "<tr><th>Min</th><th>Max</th></tr></thead>"
        "<tbody><tr><td rowspan='2'>Lyon</td><td>90</td><td>120</td></tr>"
        "<tr><td colspan='2'>closed</td></tr>"
        "<tr><td>Paris</td><td>1,100</td><td>150</td></tr></tbody></table>",
        context="ignored: the caption wins",
    )
    assert table is not None
    assert table.context == "Rates 2025"
    assert table.headers == ("Site", "Night (EUR) Min", "Night (EUR) Max")
    assert table.rows == (("Lyon", "90", "120"), ("Lyon", "closed", ""), ("Paris", "1,100", "150"))
    assert table.sentences()[0] == "Lyon: night (EUR) Min 90, night (EUR) Max 120"


def test_html_header_choice() -> None:
    # no <th> at all: the first row is the header
    plain = _table("<table><tr><td>K</td><td>V</td></tr><tr><td>a</td><td>1</td></tr></table>")
    assert plain is not None and plain.headers == ("K", "V") and plain.rows == (("a", "1"),)
    # row headers (<th> first in every row): no header row
    keyed = _table(
        "<table><tr><th>Owner</th><td>Ann</td></tr><tr><th>Due</th><td>May</td></tr></table>"
    )
    assert keyed is not None and keyed.headers == ("", "")
    assert keyed.sentences() == ["Owner: Ann", "Due: May"]
    # one column: not a table for rows
    assert _table("<table><tr><th>A</th></tr><tr><td>b</td></tr></table>") is None


def test_html_loader_keeps_a_markdown_table_and_lists_its_rows(tmp_path: Path) -> None:
    f = tmp_path / "p.html"
    f.write_text(
        "<html><head><title>Policy</title></head><body><h2>Levels</h2>"
        "<table><tr><th>Level</th><th>Who | may see</th></tr>"
        "<tr><td><p>Public</p></td><td>Anyone</td></tr></table>"
        "<table><tr><td><table><tr><th>Xx</th><th>Yy</th></tr><tr><td>x1</td><td>y1</td></tr>"
        "</table></td><td>layout cell</td></tr></table>"
        "<p>After.</p></body></html>"
    )
    (doc,) = load_file(f, max_bytes=MB).docs
    assert "| Level | Who \\| may see |\n|---|---|\n| Public | Anyone |" in doc.text
    assert "\n\nPublic\n\n" not in doc.text  # cells are not repeated as blocks
    assert "layout cell" in doc.text and "After." in doc.text
    assert [t.sentences() for t in doc.tables] == [
        ["Public: who | may see Anyone"],
        ["Xx x1: yy y1"],
    ]
    assert doc.tables[0].context == "Levels"
    # the rendered table reads back as the same table
    (again,) = markdown_tables(render_markdown(doc.tables[0]))
    assert again.rows == doc.tables[0].rows and again.headers == doc.tables[0].headers


def test_demo_html_table_rows() -> None:
    (doc,) = load_file(
        Path("demo/corpus/halcyon/all-staff/security-policy.html"), max_bytes=MB
    ).docs
    (table,) = doc.tables
    assert table.sentences()[2] == (
        "Confidential: examples Customer site maps, source code, unpublished results; "
        "who may see it People whose role requires it"
    )


def test_pdf_tables_are_not_detected() -> None:
    # pypdf's text has no table structure; the demo PDF has lists, not tables.
    (doc,) = load_file(
        Path("demo/corpus/halcyon/all-staff/expense-claim-form-guide.pdf"), max_bytes=50 * MB
    ).docs
    assert doc.tables == []


# -- pipeline -----------------------------------------------------------------------------------
def front(title: str, *, tenant: str = "acme", acl: str = "[public]", **extra: object) -> str:
    lines = [f"title: {title}", f"tenant: {tenant}", f"acl: {acl}"]
    lines += [f"{k}: {json.dumps(v)}" for k, v in extra.items()]
    return "---\n" + "\n".join(lines) + "\n---\n"


BANDS = (
    "# Bands\n\nSome text about bands.\n\n## Rotterdam (EUR)\n\n"
    "| Level | Minimum | Maximum |\n|---|---|---|\n"
    "| L1 | 42,000 | 52,000 |\n| L2 | 52,000 | 66,000 |\n| L3 | 72,000 | 94,000 |\n\n"
    "Closing words.\n"
)


def make_app(tmp_path: Path, name: str = "data") -> App:
    s = Settings(data_dir=tmp_path / name, chunk_size=60, chunk_overlap=10)
    return App(s, embeddings=HashEmbeddings(32))


def row_records(app: App) -> dict[str, dict]:
    return {r.id: r.metadata for r in app.store.records() if r.metadata.get("chunk_kind")}


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    root = tmp_path / "corpus"
    root.mkdir()
    (root / "bands.md").write_text(
        front("Salary bands", acl="[group:hr]", category="hr", tags=["pay"]) + BANDS
    )
    (root / "plain.md").write_text(front("Plain") + "No table here.\n")
    return root


def test_row_chunks_inherit_the_documents_metadata(tmp_path: Path, corpus: Path) -> None:
    app = make_app(tmp_path)
    report = app.ingestor.ingest([corpus])
    assert report.ok, report.rejected
    records = list(app.store.records())
    bands = [r for r in records if r.metadata["source"].endswith("bands.md")]
    rows = [r for r in bands if r.metadata.get("chunk_kind") == "table_row"]
    texts = [r for r in bands if "chunk_kind" not in r.metadata]
    assert len(rows) == 3 and texts
    assert not any("chunk_kind" in r.metadata for r in records if r not in bands)
    n_text = len(texts)
    assert sorted(r.metadata["chunk_index"] for r in rows) == [n_text, n_text + 1, n_text + 2]
    for r in bands:
        meta = r.metadata
        assert meta["chunk_count"] == n_text + 3
        assert meta["tenant"] == "acme" and meta["acl"] == ["group:hr"]
        assert meta["title"] == "Salary bands" and meta["category"] == "hr"
        assert meta["tags"] == ["pay"] and meta["source"] == texts[0].metadata["source"]
        assert meta["doc_id"] == texts[0].metadata["doc_id"]
    got = {r.id: r for r in app.store.get([r.id for r in rows])}
    assert sorted(h.text for h in got.values()) == [
        "Salary bands — Rotterdam (EUR) — Level L1: minimum 42,000 EUR, maximum 52,000 EUR",
        "Salary bands — Rotterdam (EUR) — Level L2: minimum 52,000 EUR, maximum 66,000 EUR",
        "Salary bands — Rotterdam (EUR) — Level L3: minimum 72,000 EUR, maximum 94,000 EUR",
    ]
    # the field catalog knows the new field (filters on it validate), stats count the rows
    assert app.state.fields("acme")["chunk_kind"] == "str"
    hr = Principal("acme", "ann", frozenset({"hr"}))
    only_rows = app.search.search(hr, "L2 minimum", k=10, filter={"chunk_kind": "table_row"})
    assert only_rows.hits and all(h.id in got for h in only_rows.hits)
    no_rows = app.search.search(hr, "L2 minimum", k=50, filter={"chunk_kind": {"$ne": "table_row"}})
    assert no_rows.hits and not any(h.id in got for h in no_rows.hits)
    # chunk_count agrees with what is stored: verify finds nothing wrong
    assert verify(app).ok


def test_row_chunk_ids_are_deterministic_and_reingest_adds_nothing(
    tmp_path: Path, corpus: Path
) -> None:
    one, two = make_app(tmp_path, "one"), make_app(tmp_path, "two")
    one.ingestor.ingest([corpus])
    two.ingestor.ingest([corpus])
    assert set(row_records(one)) == set(row_records(two))
    assert len(row_records(one)) == 3
    before = {r.id for r in one.store.records()}
    again = make_app(tmp_path, "one").ingestor.ingest([corpus])
    assert again.files_unchanged == 2 and again.chunks_added == 0
    assert {r.id for r in make_app(tmp_path, "one").store.records()} == before


def test_an_edited_row_replaces_exactly_its_row_chunk(tmp_path: Path, corpus: Path) -> None:
    app = make_app(tmp_path)
    app.ingestor.ingest([corpus])
    before = row_records(app)
    (corpus / "bands.md").write_text(
        front("Salary bands", acl="[group:hr]", category="hr", tags=["pay"])
        + BANDS.replace("| L2 | 52,000 | 66,000 |", "| L2 | 53,000 | 66,000 |")
    )
    report = app.ingestor.ingest([corpus])
    assert report.ok and report.files_indexed == 1
    after = row_records(app)
    assert len(after) == 3
    gone, new = set(before) - set(after), set(after) - set(before)
    assert len(gone) == 1 and len(new) == 1
    (text,) = [r.text for r in app.store.get(list(new))]
    assert "Level L2: minimum 53,000 EUR" in text
    assert app.store.get(list(gone)) == []


def test_removed_table_and_deleted_file_take_their_rows(tmp_path: Path, corpus: Path) -> None:
    app = make_app(tmp_path)
    app.ingestor.ingest([corpus])
    (corpus / "bands.md").write_text(
        front("Salary bands", acl="[group:hr]") + "# Bands\n\nNo more table.\n"
    )
    app.ingestor.ingest([corpus])
    assert row_records(app) == {}
    (corpus / "bands.md").write_text(front("Salary bands", acl="[group:hr]") + BANDS)
    app.ingestor.ingest([corpus])
    assert len(row_records(app)) == 3
    (corpus / "bands.md").unlink()
    report = app.ingestor.ingest([corpus], cleanup="full")
    assert report.files_removed == 1
    assert row_records(app) == {}
    assert all(not r.metadata["source"].endswith("bands.md") for r in app.store.records())


@pytest.mark.parametrize("kind", ["dense", "bm25", "hybrid"])
def test_restricted_table_rows_are_not_returned_without_access(
    tmp_path: Path, corpus: Path, kind: str
) -> None:
    app = make_app(tmp_path)
    app.ingestor.ingest([corpus])
    rows = row_records(app)
    query = "Level L2 minimum 52,000 EUR maximum"
    hr = Principal("acme", "ann", frozenset({"hr"}))
    staff = Principal("acme", "bob", frozenset({"staff"}))
    other = Principal("globex", "gus", frozenset({"hr"}))
    hr_hits = app.searcher(kind).search(hr, query, k=10).hits
    assert any(h.id in rows for h in hr_hits)
    for who in (staff, other):
        hits = app.searcher(kind).search(who, query, k=50).hits
        assert not any(h.id in rows for h in hits)
        assert not any(h.metadata["source"].endswith("bands.md") for h in hits)


def test_documents_may_not_set_chunk_kind(tmp_path: Path) -> None:
    root = tmp_path / "c"
    root.mkdir()
    (root / "x.md").write_text(front("X", chunk_kind="table_row") + "Body.\n")
    report = make_app(tmp_path).ingestor.ingest([root])
    assert [r.reason for r in report.rejected] == ["metadata key(s) chunk_kind are reserved"]


def test_a_huge_row_is_split_to_the_chunk_size(tmp_path: Path) -> None:
    root = tmp_path / "c"
    root.mkdir()
    long_cell = " ".join(f"word{i}" for i in range(150))
    (root / "x.md").write_text(front("X") + f"| K | V |\n|---|---|\n| a | {long_cell} |\n")
    app = make_app(tmp_path)
    assert app.ingestor.ingest([root]).ok
    rows = row_records(app)
    assert len(rows) >= 3  # 150 words over chunks of at most 60 "tokens"
    for r in app.store.get(list(rows)):
        assert len(r.text.split()) <= 60


def test_yes_no_cells_read_as_header_colon_value_and_plain_names_lose_a_generic_header():
    text = (
        "## Facilities and perks\n\n| Item | Contractors |\n|---|---|\n"
        "| Home office allowance | no |\n| Staff canteen | yes, at the staff price |\n"
    )
    assert markdown_tables(text)[0].sentences() == [
        "Home office allowance, contractors: no",
        "Staff canteen, contractors: yes, at the staff price",
    ]
    hotels = "| Location | Maximum per night |\n|---|---|\n| London | 180 GBP |\n| L4 | 1 |\n"
    # a name reads on its own; a short code keeps the header before it
    assert markdown_tables(hotels)[0].sentences() == [
        "London: maximum per night 180 GBP",
        "Location L4: maximum per night 1",
    ]


def test_plain_text_tables_with_a_dash_rule_are_read_by_column():
    text = (
        "1. ROTA\n\n"
        "Week starting   Primary             Secondary\n"
        "-------------   -----------------   -----------------\n"
        "13 Oct 2025     Sanne de Graaf      Mehdi Benali\n"
        "17 Nov 2025     Sanne de Graaf      Julia Nowak\n"
        "\n"
        "Swaps are allowed.\n"
    )
    (table,) = markdown_tables(text)
    assert table.context == "1. ROTA"
    assert table.sentences() == [
        "Week starting 13 Oct 2025: primary Sanne de Graaf, secondary Mehdi Benali",
        "Week starting 17 Nov 2025: primary Sanne de Graaf, secondary Julia Nowak",
    ]
    # a line whose words cross the columns ends the table; one dash run is not a rule
    crossing = "A     B\n---   ---\nxx yyyy z\n"
    assert markdown_tables(crossing) == []
    assert markdown_tables("Title\n-----\ntext\n") == []
