"""What the chat model reads: the best sentences of the retrieved passages within a budget."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest

from rag_app.app import build_embeddings
from rag_app.chain.events import SourceRecord
from rag_app.chain.select import (
    UnitCache,
    select_excerpts,
    split_pieces,
    split_units,
    summary_request,
    whole_document,
)
from rag_app.settings import Settings


@pytest.fixture(scope="module")
def model() -> Any:
    """The bundled embedding model: selection is judged on real similarities."""
    return build_embeddings(Settings())


def bow(text: str) -> list[float]:
    return MODEL[0].embed_query(text)


def embed(texts: list[str]) -> list[list[float]]:
    return MODEL[0].embed_documents(texts)


MODEL: list[Any] = []


@pytest.fixture(autouse=True)
def _use(model: Any) -> None:
    MODEL[:] = [model]


def words(text: str) -> int:
    return len(text.split())


def source(n: int, text: str, title: str = "Doc") -> SourceRecord:
    return SourceRecord(
        n=n, id=f"c{n}", title=title, source=f"d{n}.md", snippet="", score=None, text=text
    )


LEAVE = (
    "Employees get 20 weeks of paid parental leave. The leave can start before the birth. "
    "Contractors are not eligible for paid parental leave. They may take 4 weeks of unpaid "
    "leave instead. Leave requests go to HR."
)
OFFTOPIC = "The espresso machine on floor 3 is descaled every Friday afternoon."
TABLE = (
    "## Salary bands\n\n| Level | Minimum | Midpoint | Maximum |\n|---|---|---|---|\n"
    "| L3 | 72,000 | 83,000 | 94,000 |\n| L4 | 98,000 | 111,000 | 124,000 |\n"
    "| L5 | 120,000 | 136,000 | 152,000 |"
)


def select(question: str, sources: Sequence[SourceRecord], budget: int) -> list[SourceRecord]:
    return select_excerpts(
        question, bow(question), sources, embed=embed, count_tokens=words, budget_tokens=budget
    )


def test_units_are_sentences_and_whole_table_rows() -> None:
    units = split_units(
        TABLE + "\n\nThe bands are reviewed yearly. Offers above the midpoint "
        "need approval, e.g. for L5."
    )
    assert "| L4 | 98,000 | 111,000 | 124,000 |" in units
    assert not any(set(u) <= set("|-: ") for u in units)  # no delimiter row
    assert "The bands are reviewed yearly." in units
    assert units[-1].startswith("Offers above the midpoint")
    assert split_units("") == []


def test_the_answering_sentence_and_the_one_after_it_fit_the_budget() -> None:
    (out,) = select("Are contractors eligible for paid parental leave?", [source(1, LEAVE)], 30)
    assert out.excerpt is not None
    assert "Contractors are not eligible for paid parental leave." in out.excerpt
    assert "4 weeks of unpaid leave" in out.excerpt  # the next sentence, budget allowing
    assert words(out.excerpt.replace("…", "")) <= 30 + 2
    assert out.text == LEAVE and out.n == 1  # the source itself is unchanged


def test_table_rows_stay_whole_and_numbering_and_order_are_kept() -> None:
    sources = [source(1, LEAVE, "Leave"), source(2, TABLE, "Salary bands")]
    out = select("What is the salary band for level L4?", sources, 40)
    assert [s.n for s in out] == [1, 2] and [s.id for s in out] == ["c1", "c2"]
    assert "| L4 | 98,000 | 111,000 | 124,000 |" in (out[1].excerpt or "")
    assert out[0].excerpt == ""  # nothing of the leave policy was worth the budget


def test_the_best_unit_is_kept_even_over_budget_and_everything_fits_when_allowed() -> None:
    (tiny,) = select("contractors parental leave", [source(1, LEAVE)], 1)
    assert tiny.excerpt and "Contractors" in tiny.excerpt
    (roomy,) = select("contractors parental leave", [source(1, LEAVE)], 10_000)
    assert roomy.excerpt and "They may take 4 weeks of unpaid leave instead." in roomy.excerpt
    (unrelated,) = select("contractors parental leave", [source(1, LEAVE + " " + OFFTOPIC)], 10_000)
    # the budget is a ceiling: units far below the best one are not read, room or not
    assert unrelated.excerpt and "espresso" not in unrelated.excerpt


def test_left_out_text_is_marked_and_excerpts_come_from_the_passage() -> None:
    (out,) = select("Where do leave requests go?", [source(1, LEAVE)], 8)
    assert out.excerpt is not None and out.excerpt.startswith("…")
    for piece in out.excerpt.split("…"):
        assert " ".join(piece.split()) in " ".join(LEAVE.split())


def test_units_are_embedded_once_per_passage_text() -> None:
    calls: list[int] = []

    def counting(texts: list[str]) -> list[list[float]]:
        calls.append(len(texts))
        return embed(texts)

    cache = UnitCache(max_passages=2)
    for question in ("contractors", "leave requests", "birth"):
        select_excerpts(
            question,
            bow(question),
            [source(1, LEAVE)],
            embed=counting,
            count_tokens=words,
            budget_tokens=10,
            cache=cache,
        )
    assert len(calls) == 1
    changed = source(1, LEAVE + " New sentence.")
    select_excerpts(
        "x", bow("x"), [changed], embed=counting, count_tokens=words, budget_tokens=10, cache=cache
    )
    assert len(calls) == 2  # a changed passage is a new entry


def test_a_list_item_brings_the_line_that_introduces_it():
    text = (
        "The warranty does not cover:\n\n"
        "- damage caused by collisions the robot could not detect,\n"
        "  including forklift impacts;\n"
        "- cosmetic damage."
    )
    pieces = split_pieces(text)
    assert [p.text for p in pieces] == [
        "The warranty does not cover:",
        "- damage caused by collisions the robot could not detect, including forklift impacts;",
        "- cosmetic damage.",
    ]
    assert [p.needs for p in pieces] == [None, 0, 0]


def test_a_plain_text_table_is_cut_into_rows_that_bring_their_header():
    text = (
        "Week starting   Primary\n-------------   -------\n"
        "13 Oct 2025     Sanne\n17 Nov 2025     Julia\n"
    )
    pieces = split_pieces(text)
    assert [p.text for p in pieces] == [
        "Week starting   Primary",
        "13 Oct 2025     Sanne",
        "17 Nov 2025     Julia",
    ]
    assert [p.needs for p in pieces] == [None, 0, 0]


def test_a_heading_over_a_list_scopes_every_item_and_not_the_first_item():
    pieces = split_pieces("## Not reimbursed\n\n- Fines and penalties.\n- Alcohol.")
    assert [p.text for p in pieces] == ["## Not reimbursed", "- Fines and penalties.", "- Alcohol."]
    assert [p.needs for p in pieces] == [None, 0, 0]


def test_a_chosen_line_that_introduces_items_brings_its_best_items() -> None:
    text = (
        "Each expense type has a code that Finance uses for accounting:\n\n"
        "- T20 Train tickets, second class.\n"
        "- H10 Hotel room, without breakfast.\n"
        "- M30 Meals on the road.\n"
        "- P40 Parking at the airport."
    )
    question = "Which expense type code is used for accounting?"
    (out,) = select(question, [source(1, text)], 40)
    assert out.excerpt.startswith("Each expense type has a code")
    assert out.excerpt.count("\n- ") >= 1  # never the introducing line alone


def test_an_introducing_line_brings_its_best_item_before_the_budget_fills() -> None:
    # sentences of other passages that share the question's words would fill the budget
    # before the items were looked at; the intro without its item is worth nothing
    codes = source(
        1,
        "Each expense type has a code that Finance uses for accounting:\n\n"
        "- T20 Train tickets, second class.\n- H10 Hotel room, without breakfast.",
    )
    others = [
        source(
            n,
            f"Finance uses the expense type code of claim {n} for accounting. The code of each "
            "expense type is set by Finance.",
        )
        for n in range(2, 6)
    ]
    question = "Which expense type code does Finance use for a hotel?"
    out = select(question, [codes, *others], 45)
    assert "Each expense type has a code" in out[0].excerpt
    assert "- H10 Hotel room" in out[0].excerpt


def test_a_summary_request_reads_the_best_document_whole_in_document_order() -> None:
    assert summary_request("Summarise the customer feedback page.")
    assert summary_request("Give me an overview of the remote work policy")
    assert not summary_request("How many weeks of paid parental leave do employees get?")

    def part(n: int, doc: str, index: int, text: str) -> SourceRecord:
        return SourceRecord(
            n=n,
            id=f"c{n}",
            title=doc,
            source=f"{doc}.md",
            snippet="",
            score=None,
            text=text,
            metadata={"chunk_index": index},
        )

    sources = [
        part(1, "feedback", 3, "Third part of the feedback page."),
        part(2, "leave", 0, LEAVE),
        part(3, "feedback", 0, "Survey: 214 responses, satisfaction 4.3 out of 5."),
        part(4, "feedback", 7, "A long tail part " * 20),
    ]
    out = whole_document(sources, count_tokens=words, budget_tokens=20)
    shown = [s for s in out if s.excerpt]
    # the best document's passages, whole and in document order, within the budget
    assert [s.id for s in shown] == ["c3", "c1"]
    assert all(s.excerpt == s.text for s in shown)
    assert {s.id for s in out if s.excerpt == ""} == {"c2", "c4"}
    # the first passage is read even over budget
    assert [
        s.id for s in whole_document(sources, count_tokens=words, budget_tokens=1) if s.excerpt
    ] == ["c3"]


def test_rows_of_other_dates_are_left_out_when_one_has_the_date_asked() -> None:
    rota = source(
        1,
        "## On-call rota\n"
        "- Week starting 06 Oct 2025: primary Bob Okafor, secondary Sanne de Graaf\n"
        "- Week starting 13 Oct 2025: primary Sanne de Graaf, secondary Mehdi Benali\n"
        "- Week starting 20 Oct 2025: primary Mehdi Benali, secondary Bob Okafor",
    )
    question = "Who is the secondary on call in the week starting 13 October 2025?"
    (out,) = select(question, [rota], 200)
    assert "13 Oct 2025: primary Sanne de Graaf, secondary Mehdi Benali" in out.excerpt
    assert "06 Oct" not in out.excerpt and "20 Oct" not in out.excerpt
