"""The Sources panel grouped by document, citation links and unsupported-claim markers
(`rag_app.ui.sources`), checked on the HTML a browser would get."""

from __future__ import annotations

import re

import pytest
from bs4 import BeautifulSoup, Tag

from rag_app.chain.events import SourceRecord, UnsupportedClaim
from rag_app.ui.sources import (
    format_score,
    group_sources,
    link_citations,
    passage_id,
    render_answer,
    render_sources,
)

POLICY = "demo/corpus/halcyon/all-staff/parental-leave-policy.md"
HANDBOOK = "demo/corpus/halcyon/all-staff/employee-handbook.md"


def record(
    n: int,
    source: str = POLICY,
    *,
    title: str = "Parental Leave Policy",
    snippet: str = "",
    score: float | None = 0.9538,
    passage: float | None = None,
    text: str = "",
    metadata: dict | None = None,
) -> SourceRecord:
    return SourceRecord(
        n=n,
        id=f"c{n}",
        title=title,
        source=source,
        snippet=snippet or f"passage {n} of {title}",
        score=score,
        metadata=metadata if metadata is not None else {"tenant": "halcyon", "acl": ["public"]},
        text=text or snippet or f"passage {n} of {title}",
        passage_score=passage,
    )


def fused() -> list[SourceRecord]:
    """Document-level fusion: three chunks of the policy share its score, then the handbook."""
    return [
        record(1, passage=0.8312, snippet="Birth parents get 20 weeks of paid leave."),
        record(2, passage=0.6104, snippet="This policy replaces the 2022 policy."),
        record(3, passage=0.4271, snippet="Phased return after your 20 weeks."),
        record(4, HANDBOOK, title="Employee Handbook", score=0.84, passage=0.7839),
    ]


def soup(markup: str) -> BeautifulSoup:
    return BeautifulSoup(markup, "html.parser")


def texts(tags: list[Tag]) -> list[str]:
    return [" ".join(t.get_text(" ").split()) for t in tags]


# -- grouping ------------------------------------------------------------------------------
def test_passages_are_grouped_under_their_document_in_retrieval_order() -> None:
    groups = group_sources(fused())
    assert [g.source for g in groups] == [POLICY, HANDBOOK]
    assert [g.numbers for g in groups] == [[1, 2, 3], [4]]
    assert groups[0].best_passage_score == pytest.approx(0.8312)
    assert groups[0].score == pytest.approx(0.9538)
    # a later passage of an earlier document still joins its document; numbers stay sorted
    mixed = group_sources([record(1), record(2, HANDBOOK, title="H"), record(3)])
    assert [g.numbers for g in mixed] == [[1, 3], [2]]


def test_three_chunks_of_one_document_are_one_entry_with_three_scored_passages() -> None:
    page = soup(render_sources(fused(), [1], turn=7))
    docs = page.select(".rag-sources > section.rag-doc")
    assert len(docs) == 2
    policy, handbook = docs
    assert texts(policy.select(".rag-doc-title")) == ["Parental Leave Policy"]
    assert POLICY in policy.select_one(".rag-doc-path").get_text()
    assert "best passage 0.83" in policy.select_one(".rag-score").get_text()
    passages = policy.select("li.rag-passage")
    assert [p["id"] for p in passages] == ["src-7-1", "src-7-2", "src-7-3"]
    assert texts([p.select_one(".rag-n") for p in passages]) == ["[1]", "[2]", "[3]"]
    # each passage its own relevance (not the document's shared 0.95)
    relevance = texts([p.select_one(".rag-rel") for p in passages])
    assert relevance == ["relevance 0.83", "relevance 0.61", "relevance 0.43"]
    assert "0.95" not in " ".join(relevance)
    assert texts([p.select_one(".rag-snippet") for p in passages])[0] == (
        "Birth parents get 20 weeks of paid leave."
    )
    # cited passages are marked as cited, the others not
    assert "rag-cited" in passages[0]["class"] and "rag-cited" not in passages[1]["class"]
    assert texts(passages[0].select(".rag-badge")) == ["cited"]
    assert texts(passages[1].select(".rag-badge")) == ["not cited"]
    assert [p["id"] for p in handbook.select("li.rag-passage")] == ["src-7-4"]
    assert "2 documents" in page.select_one(".rag-summary").get_text()
    # one line: a Markdown HTML block ends at a blank line
    assert "\n" not in render_sources(fused(), [1], turn=7)


def test_anchor_ids_differ_per_answer_turn() -> None:
    first = soup(render_sources(fused(), turn=1))
    second = soup(render_sources(fused(), turn=2))
    ids = {t["id"] for t in first.select("[id]")} | {t["id"] for t in second.select("[id]")}
    assert len(ids) == 8 and passage_id(2, 3) == "src-2-3"


def test_scores_are_formatted_for_people() -> None:
    assert format_score(0.8312) == "0.83"
    assert format_score(1.0) == "1.00"
    assert format_score(0.016393) == "0.0164"  # reciprocal-rank fusion: still distinct
    assert format_score(0.016129) == "0.0161"
    assert format_score(0.0) == "0.00"
    assert format_score(None) == "–" and format_score(float("nan")) == "–"
    assert format_score(3e-7) == "3.0e-07"


def test_without_passage_scores_the_document_shows_its_score() -> None:
    page = soup(render_sources([record(1, score=0.5), record(2, score=0.5)]))
    assert "score 0.50" in page.select_one(".rag-score").get_text()
    assert texts(page.select(".rag-rel")) == ["relevance –", "relevance –"]


def test_score_parts_explain_the_relevance() -> None:
    src = record(1, passage=0.7, metadata={"scores": {"dense": 0.71, "bm25": 12.5}})
    rel = soup(render_sources([src])).select_one(".rag-rel")
    assert (
        rel["title"] == "this passage's own relevance to the question (dense 0.71 · keyword 12.50)"
    )


def test_hostile_document_text_is_plain_text() -> None:
    evil = record(
        1,
        title='<img src=x onerror=alert(1)> ![t](https://evil.example/t.png) "q"',
        source='x.md"><script>alert(1)</script>',
        snippet="**bold** [link](https://evil.example/l) <b>b</b> $$x$$ www.evil.example",
        text="line one\n\n\n<script>alert(2)</script>\n`code`",
        metadata={"tenant": "halcyon", "acl": ["<i>public</i>"], "tags": ["![g](https://e/x)"]},
    )
    markup = render_sources([evil], [1])
    page = soup(markup)
    names = {t.name for t in page.find_all(True)}
    assert names <= {"div", "p", "section", "strong", "span", "code", "small", "ul", "li"} | {
        "details",
        "summary",
        "br",
    }, names
    assert not any(a for t in page.find_all(True) for a in t.attrs if a.startswith("on"))
    # nothing that Markdown could turn into a link, an image, emphasis, code or maths
    for pattern in ("![", "](", "<img", "<script", "<b>", "**", "$$", "https://", "www.", "`"):
        assert pattern not in markup, pattern
    # ... but readers see the text as it is
    assert page.select_one(".rag-doc-title").get_text().startswith("<img src=x onerror=")
    assert "[link](https://evil.example/l)" in page.select_one(".rag-snippet").get_text()
    assert page.select_one(".rag-doc-path code").get_text() == evil.source
    assert "\n" not in markup


# -- the answer ----------------------------------------------------------------------------
def links(markup: str) -> list[tuple[str, str]]:
    return [(a["href"], a.get_text()) for a in soup(markup).select("a")]


def test_citations_link_to_their_passage_of_this_turn() -> None:
    answer = "Birth parents get 20 weeks [1]. It replaced the old one [2][3]; see [1, 4]."
    out = render_answer(answer, turn=3, valid={1, 2, 3, 4})
    assert links(out) == [
        ("#src-3-1", "[1]"),
        ("#src-3-2", "[2]"),
        ("#src-3-3", "[3]"),
        ("#src-3-1", "1"),
        ("#src-3-4", "4"),
    ]
    assert all(a["class"] == ["rag-cite"] for a in soup(out).select("a"))


def test_only_valid_plain_citations_are_linked() -> None:
    answer = (
        "No such source [99]. Escaped \\[1]. Not a number [one]. In code `[1]` and\n"
        "```\n[2]\n```\n"
        "A link [1](https://evil.example/x) and [2](\nhttps://evil.example/y). Mixed [1, 99]."
    )
    out = render_answer(answer, turn=1, valid={1, 2})
    assert "[99]" in out and "\\[1]" in out and "`[1]`" in out and "```\n[2]\n```" in out
    hrefs = [href for href, _ in links(out)]
    assert hrefs == ["#src-1-1"]  # only the 1 of [1, 99]
    assert "https://evil.example" not in out.replace("`https://evil.example/x`", "").replace(
        "`https://evil.example/y`", ""
    )
    assert link_citations("[1]", valid=(), turn=1) == "[1]"


def test_hostile_answers_stay_escaped_around_the_links() -> None:
    answer = (
        '<a href="javascript:alert(1)">[1]</a> <img src=x onerror=alert(1)> [1]'
        ' ![x](https://evil.example/?q=secret) "[2]" <script>alert(1)</script>'
        " [1]<b onclick=x>"
    )
    out = render_answer(answer, turn=2, valid={1, 2}, titles={1: '"><img src=x onerror=y>'})
    # every tag in the output is one of ours: citation links (and nothing else here)
    for tag in re.findall(r"<(?!/)[^>]*>", out):
        assert re.fullmatch(
            r'<a href="#src-2-\d" class="rag-cite" data-n="\d" title="[^"<>]*">', tag
        ), tag
    assert "&lt;script" in out and "&lt;img" in out and "javascript:alert" in out
    assert "![" not in out
    a = soup(out).select("a")
    assert [x["href"] for x in a] == ["#src-2-1", "#src-2-1", "#src-2-2", "#src-2-1"]
    assert a[0]["title"] == 'source [1]: "><img src=x onerror=y>'  # an attribute, as text


def test_rendered_answer_html_has_only_our_links() -> None:
    """Through a CommonMark renderer with raw HTML on (as the Chatbot's marked does)."""
    markdown_it = pytest.importorskip("markdown_it")
    answer = (
        "It is 16 weeks [1].\n\n[click](\n//evil.example/x) [a\nb](//evil.example/y) "
        "<img src=//evil.example/i> ![i](//evil.example/p.gif) [2]: //evil.example/r\n"
        "[x][2] <https://evil.example/auto>"
    )
    out = render_answer(answer, turn=4, valid={1, 2})
    rendered = markdown_it.MarkdownIt("commonmark", {"html": True}).render(out)
    page = soup(rendered)
    assert not page.select("img, script")
    # [2] mid-line is a citation, not a reference definition; `[x][2]` no reference link
    assert [a["href"] for a in page.select("a")] == ["#src-4-1", "#src-4-2", "#src-4-2"], rendered
    assert "evil" not in " ".join(str(a) for a in page.select("a"))


def test_unsupported_claims_are_marked_after_their_sentence_and_noted() -> None:
    answer = "The L4 band is 98,000 to 124,000 EUR [1]. Leave is 20 weeks [2]."
    claim = UnsupportedClaim(
        sentence="The L4 band is 98,000 to 124,000 EUR [1].", values=["124,000"], cited=[1]
    )
    out = render_answer(answer, turn=1, valid={1, 2}, unsupported=[claim])
    page = soup(out)
    (marker,) = page.select(".rag-unsupported")
    assert marker.get_text() == "(⚠ not found in the cited sources: 124,000)"
    # right after the sentence it belongs to (and its citation), before the next one
    assert out.index("124,000 EUR") < out.index("rag-unsupported") < out.index("Leave is")
    note = page.select_one(".rag-unsupported-note").get_text()
    assert "1 statement" in note and "not found in the cited sources" in note
    assert [href for href, _ in links(out)] == ["#src-1-1", "#src-1-2"]


def test_unsupported_claims_not_found_in_the_text_are_listed_in_the_note() -> None:
    claims = [
        UnsupportedClaim(sentence="Nowhere <b>in</b> the answer 5 [1].", values=["5"], cited=[1]),
        UnsupportedClaim(sentence="It costs 7 EUR.", values=["<i>7</i>", "**8**"], cited=[]),
    ]
    out = render_answer("It costs 7 EUR. Fine [1].", turn=1, valid={1}, unsupported=claims)
    page = soup(out)
    assert len(page.select(".rag-unsupported")) == 1  # the second, found in the answer
    note = page.select_one(".rag-unsupported-note")
    assert "2 statements" in note.get_text() and "Nowhere" in note.get_text()
    # hostile claim text stays text
    assert not page.select("b, i") and "&lt;b&gt;" in out and "\\*\\*8\\*\\*" in out


def test_markers_inside_code_go_to_the_note_and_marker_characters_are_dropped() -> None:
    claim = UnsupportedClaim(sentence="x = 42.", values=["42"], cited=[])
    out = render_answer("Run `x = 42.` now \ue0000\ue001.", turn=1, valid=(), unsupported=[claim])
    assert "\ue000" not in out and "\ue001" not in out
    assert 'rag-unsupported"' not in out  # no inline marker inside code
    assert "`x = 42.`" in out  # the code as written
    note = soup(out).select_one(".rag-unsupported-note").get_text()
    assert "x = 42" in note.replace("\\", "")  # Markdown-escaped


def test_no_claims_no_note() -> None:
    out = render_answer("Leave is 20 weeks [1].", turn=1, valid={1})
    assert "rag-unsupported" not in out
    assert soup(out).get_text() == "Leave is 20 weeks [1]."
