"""Answer correctness by key facts (`rag_app.evaluation.answers`, `rag-app eval run --answers`):
the loader's errors, the grader's edge cases, the demo answer set checked against the documents
and the access rules, the runner and the CLI with fake chat models, and (slow) the CLI with the
bundled SmolLM2 model, for the wiring only."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from pydantic import Field
from typer.testing import CliRunner

import rag_app.llm as llm_module
from rag_app import app as app_module
from rag_app.access.permissions import can_read
from rag_app.app import App
from rag_app.chain import ChatService, PromptSet
from rag_app.chain.prompts import project_prompts_dir
from rag_app.cli import app as cli
from rag_app.evaluation.answers import (
    KINDS,
    AnswerCase,
    AnswerSetError,
    contains,
    gate_failures,
    grade_answer,
    load_answer_set,
    matches,
    normalise,
    run_answer_case,
    run_answer_set,
)
from rag_app.llm.factory import ChatLLM
from rag_app.llm.models import SMOLLM2, is_installed
from rag_app.settings import Settings
from rag_app.stores.base import scannable
from tests.chat_fakes import FailingChatModel
from tests.fakes import HashEmbeddings

ROOT = Path(__file__).resolve().parents[2]
ANSWERS = ROOT / "eval/demo/answers.jsonl"
NO_ANSWER = (ROOT / "prompts/no_answer.txt").read_text(encoding="utf-8").strip()
MINIMUMS = {
    "fact": 15,
    "table": 5,
    "negative": 5,
    "ambiguous-number": 4,
    "follow-up": 4,
    "restricted": 6,
    "not-in-corpus": 3,
}


def case(**kw: Any) -> AnswerCase:
    base: dict[str, Any] = {"id": "c", "user": "alice", "question": "q?", "kind": "fact"}
    base.update(kw)
    base["facts"] = tuple(tuple(g) for g in base.get("facts", ()))
    for key in ("sources", "forbidden", "history"):
        base[key] = tuple(base.get(key, ()))
    return AnswerCase(**base)


# -- loader ---------------------------------------------------------------------------------------
def write(tmp_path: Path, *records: Any, raw: str | None = None) -> Path:
    path = tmp_path / "answers.jsonl"
    lines = [json.dumps(r) for r in records]
    path.write_text(raw if raw is not None else "\n".join(lines) + "\n", encoding="utf-8")
    return path


GOOD = {
    "id": "a",
    "user": "alice",
    "question": "How many weeks?",
    "kind": "fact",
    "facts": [["20 weeks"]],
    "sources": ["parental-leave"],
}


def test_loader_reads_cases_with_defaults_and_skips_blank_lines(tmp_path: Path) -> None:
    refusal = {"id": "b", "user": "henry", "question": "Band?", "kind": "restricted"}
    path = write(tmp_path, raw=json.dumps(GOOD) + "\n\n" + json.dumps(refusal) + "\n")
    a, b = load_answer_set(path)
    assert a.facts == (("20 weeks",),) and a.sources == ("parental-leave",) and a.answerable
    assert a.forbidden == () and a.history == ()
    assert b.kind == "restricted" and not b.answerable and b.facts == ()
    # a one-alternative group may be a plain string
    (c,) = load_answer_set(write(tmp_path, {**GOOD, "facts": ["20 weeks", ["x", "y"]]}))
    assert c.facts == (("20 weeks",), ("x", "y"))


@pytest.mark.parametrize(
    ("record", "message"),
    [
        ({k: v for k, v in GOOD.items() if k != "user"}, "missing key(s) user"),
        ({k: v for k, v in GOOD.items() if k not in ("id", "kind")}, "missing key(s) id, kind"),
        ({**GOOD, "kind": "trivia"}, "unknown kind 'trivia'"),
        ({**GOOD, "fact": ["x"]}, "unknown key(s) fact"),
        ({**GOOD, "question": "  "}, "'question' must be a non-empty string"),
        ({k: v for k, v in GOOD.items() if k != "facts"}, "a fact case needs 'facts'"),
        ({**GOOD, "facts": []}, "a fact case needs 'facts'"),
        ({**GOOD, "sources": []}, "a fact case needs 'sources'"),
        ({**GOOD, "facts": [[]]}, "fact group 1 must be a non-empty list"),
        ({**GOOD, "facts": [["ok"], [3]]}, "fact group 2 must be a non-empty list"),
        ({**GOOD, "facts": "20 weeks"}, "'facts' must be a list of groups"),
        ({**GOOD, "forbidden": "98,000"}, "'forbidden' must be a list of non-empty strings"),
        ({**GOOD, "kind": "restricted", "sources": []}, "a restricted case expects a refusal"),
        (
            {
                "id": "r",
                "user": "henry",
                "question": "q",
                "kind": "not-in-corpus",
                "sources": ["x"],
            },
            "expects a refusal and cites no 'sources'",
        ),
        ({**GOOD, "kind": "follow-up"}, "a follow-up case needs 'history'"),
        ([GOOD], "expected a JSON object, got list"),
    ],
)
def test_loader_errors_name_the_file_line_and_problem(
    tmp_path: Path, record: Any, message: str
) -> None:
    path = write(tmp_path, GOOD | {"id": "first"}, record)
    with pytest.raises(AnswerSetError) as info:
        load_answer_set(path)
    assert str(info.value).startswith(f"{path}:2: ")
    assert message in str(info.value)


def test_loader_rejects_bad_json_duplicates_empty_and_missing_files(tmp_path: Path) -> None:
    path = write(tmp_path, raw=json.dumps(GOOD) + "\n{not json\n")
    with pytest.raises(AnswerSetError, match=rf"{re.escape(str(path))}:2: invalid JSON"):
        load_answer_set(path)
    path = write(tmp_path, GOOD, GOOD)
    with pytest.raises(AnswerSetError, match=r":2: duplicate id 'a' \(first on line 1\)"):
        load_answer_set(path)
    with pytest.raises(AnswerSetError, match="no cases"):
        load_answer_set(write(tmp_path, raw="\n\n"))
    with pytest.raises(AnswerSetError, match="no such answer set"):
        load_answer_set(tmp_path / "missing.jsonl")


# -- matching and grading -------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "needle", "found"),
    [
        ("between 98,000 and 124,000 EUR", "98,000", True),
        ("between 98 000 and 124 000 EUR", "98,000", True),
        ("between 98000 and 124000 EUR", "98 000", True),
        ("between 98\u00a0000 and 124\u202f000 EUR", "98000", True),
        ("a lump sum of 12,000 EUR", "12k", False),
        ("merit increase of 5.5 % this year", "5.5%", True),
        ("merit increase of 5.5\u00a0%", "5.5 %", True),
        ("**20 weeks** of fully paid leave", "20 weeks", True),
        ("20-week leave", "20-week", True),
        ("120 weeks", "20 weeks", False),
        ("15.5% of payroll", "5.5%", False),
        ("5.5% of payroll", "5%", False),
        ("revenue 38.45 M", "38.4", False),
        ("revenue 38.4 M EUR", "38.4", True),
        ("No, they are not eligible.", "no", True),
        ("They are not eligible.", "no", False),
        ("I know the answer.", "no", False),
        ("they are ineligible", "eligible", False),
        ("Normal range \u221285 \u00b0C to \u221275 \u00b0C", "-85", True),
        ("Monday to Friday 07:00 \u2013 19:00", "07:00 - 19:00", True),
        ("Monday to Friday 17:00", "7:00", False),
        ("cost centre CC-310", "CC-310", True),
        ("cost centre CC-3100", "CC-310", False),
        ("Weekly on Friday", "FRIDAY", True),
    ],
)
def test_matching_is_format_tolerant_and_respects_number_and_word_boundaries(
    text: str, needle: str, found: bool
) -> None:
    assert matches(text, needle) is found


def test_normalise() -> None:
    assert normalise("  98\u00a0000\tEUR\u2014**Bold**  ") == "98000 eur-bold"
    assert normalise("1,234,567 and 1 234 567") == "1234567 and 1234567"
    assert normalise("50, 100, 150 %") == "50, 100, 150%"  # a list is not one number


FACT = case(
    id="band",
    facts=[["98,000", "98k"], ["124,000", "124k"]],
    sources=["halcyon/hr/salary-bands"],
    forbidden=["16 weeks"],
)
BANDS = "demo/corpus/halcyon/hr/salary-bands-2025.md"


def test_answerable_correct_needs_every_fact_group_and_a_cited_expected_source() -> None:
    grade = grade_answer(FACT, "The L4 band is 98 000 – 124 000 EUR [1].", [BANDS], False)
    assert grade.correct and grade.missing_facts == [] and grade.cited_expected
    assert grade.why == "all facts, cited" and not grade.refused

    grade = grade_answer(FACT, "The L4 band starts at 98k EUR [1].", [BANDS], False)
    assert not grade.correct and grade.missing_facts == [["124,000", "124k"]]
    assert "missing 124,000 | 124k" in grade.why

    other = "demo/corpus/halcyon/hr/manager-guide-merit-and-promotions-2025.md"
    grade = grade_answer(FACT, "From 98,000 to 124,000 EUR [1].", [other], False)
    assert not grade.correct and not grade.cited_expected and grade.missing_facts == []
    assert f"expected source not cited (cited {other})" in grade.why
    grade = grade_answer(FACT, "From 98,000 to 124,000 EUR.", [], False)
    assert not grade.correct and "cited nothing" in grade.why


def test_answerable_refused_or_leaking_is_wrong() -> None:
    grade = grade_answer(FACT, NO_ANSWER, [], True)
    assert not grade.correct and grade.refused and grade.why.startswith("refused")
    grade = grade_answer(
        FACT, "98,000 to 124,000 EUR [1]; parents get 16 weeks [2].", [BANDS], False
    )
    assert not grade.correct and grade.leaked == ["16 weeks"] and "leaked ['16 weeks']" in grade.why


def test_negative_answers() -> None:
    negative = case(
        id="home-office",
        user="dave",
        kind="negative",
        facts=[["no", "not", "don't", "isn't"]],
        sources=["contractor-leave-and-benefits"],
        forbidden=["600 EUR"],
    )
    cited = ["demo/corpus/halcyon/all-staff/contractor-leave-and-benefits.md"]
    for answer in (
        "No, contractors do not receive a home office allowance [1].",
        "Contractors aren't eligible; the table says no [1].",
        "Contractors don't get it [1].",
    ):
        assert grade_answer(negative, answer, cited, False).correct, answer
    wrong = grade_answer(negative, "Yes: a one-time 600 EUR allowance [1].", cited, False)
    assert not wrong.correct and wrong.leaked == ["600 EUR"] and wrong.missing_facts


def test_refusal_cases_need_a_refusal_without_forbidden_strings() -> None:
    restricted = case(
        id="band-henry", user="henry", kind="restricted", forbidden=["98,000", "124,000"]
    )
    grade = grade_answer(restricted, NO_ANSWER, [], True)
    assert grade.correct and grade.why == "refused" and not grade.cited_expected
    grade = grade_answer(restricted, "Level L4 is a senior engineer level [1].", ["x"], False)
    assert not grade.correct and grade.why == "did not refuse"
    grade = grade_answer(restricted, f"{NO_ANSWER} (It is 98 000 EUR.)", [], True)
    assert not grade.correct and grade.leaked == ["98,000"]
    assert grade.why == "refused, leaked ['98,000']"


# -- the demo answer set against the documents ---------------------------------------------------
@pytest.fixture(scope="module")
def demo_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[App]:
    settings = Settings(
        data_dir=tmp_path_factory.mktemp("answers-data"), users_file=ROOT / "demo/users.yaml", k=8
    )
    app = App(settings, embeddings=HashEmbeddings(256))
    report = app.ingestor.ingest([ROOT / "demo/corpus"])
    assert report.ok and not report.rejected
    yield app
    app.close()


@pytest.fixture(scope="module")
def documents(demo_app: App) -> dict[str, tuple[dict[str, Any], list[str]]]:
    """Stored source -> (metadata, normalised chunk texts): what retrieval can return (the PDF
    as extracted, Markdown without front matter)."""
    docs: dict[str, tuple[dict[str, Any], list[str]]] = {}
    for record in scannable(demo_app.store, "read the demo corpus").records(with_text=True):
        source = str(record.metadata["source"])
        entry = docs.setdefault(source, (dict(record.metadata), []))
        entry[1].append(normalise(record.text or ""))
    assert len(docs) == 45  # 35 files + 10 FAQ records
    return docs


def test_demo_answer_set_is_valid_and_has_the_mix() -> None:
    cases = load_answer_set(ANSWERS)
    assert len(cases) >= 40
    kinds = Counter(c.kind for c in cases)
    assert set(kinds) == set(KINDS)
    for kind, minimum in MINIMUMS.items():
        assert kinds[kind] >= minimum, (kind, kinds[kind])
    users = Counter(c.user for c in cases)
    assert set(users) == {"alice", "bob", "carol", "dave", "erin", "henry", "frank", "grace"}
    assert all(c.forbidden for c in cases if c.kind == "restricted")
    assert sum(1 for c in cases if c.history) >= 5  # follow-ups (and a restricted follow-up)
    sources = {s.split("/")[0] for c in cases for s in c.sources}
    assert sources == {"halcyon", "brightwater"}


def test_every_expected_fact_is_in_a_source_the_user_may_read(
    demo_app: App, documents: dict[str, tuple[dict[str, Any], list[str]]]
) -> None:
    problems: list[str] = []
    formats: set[str] = set()
    for c in load_answer_set(ANSWERS):
        principal = demo_app.principal(c.user)
        readable = {s for s, (meta, _) in documents.items() if can_read(principal, meta)}
        expected: set[str] = set()
        for want in c.sources:
            hits = {s for s in documents if want in s}
            if not hits:
                problems.append(f"{c.id}: source {want!r} matches no document")
            for source in hits - readable:
                problems.append(f"{c.id}: {c.user} may not read expected source {source}")
            expected |= hits & readable
        formats |= {Path(s.split("#")[0]).suffix for s in expected}
        for group in c.facts:
            if not any(
                contains(t, alt) for s in expected for t in documents[s][1] for alt in group
            ):
                problems.append(f"{c.id}: no alternative of {group} is in {sorted(expected)}")
    assert not problems, "\n".join(problems)
    assert formats == {".md", ".pdf", ".html", ".txt", ".jsonl"}  # every format is asked about


def test_every_forbidden_string_is_only_in_documents_the_user_may_not_read(
    demo_app: App, documents: dict[str, tuple[dict[str, Any], list[str]]]
) -> None:
    """A forbidden string is what a leaked answer would contain: it must be in a document the
    user may not read (so the case tests something) and in none the user may read (so a correct
    answer never trips it)."""
    problems: list[str] = []
    for c in load_answer_set(ANSWERS):
        principal = demo_app.principal(c.user)
        for needle in c.forbidden:
            where = [
                s for s, (_, texts) in documents.items() if any(contains(t, needle) for t in texts)
            ]
            hidden = [s for s in where if not can_read(principal, documents[s][0])]
            visible = sorted(set(where) - set(hidden))
            if not hidden:
                problems.append(f"{c.id}: {needle!r} is in no document {c.user} may not read")
            if visible:
                problems.append(f"{c.id}: {needle!r} is in {visible}, which {c.user} may read")
    assert not problems, "\n".join(problems)


def test_expected_sources_agree_with_the_access_matrix() -> None:
    """Spot checks of the cases against demo/README.md's matrix, independently of the code."""
    cases = {c.id: c for c in load_answer_set(ANSWERS)}
    # dave (contractor, not staff) reads the 20 weeks in the contractor page only
    assert cases["leave-weeks-dave"].sources == ("halcyon/all-staff/contractor-leave-and-benefits",)
    assert cases["band-l4-henry"].kind == "restricted"
    assert {c.user for c in cases.values() if any("salary-bands" in s for s in c.sources)} == {
        "alice"
    }
    assert {c.user for c in cases.values() if any("engineering/" in s for s in c.sources)} == {
        "bob"
    }


# -- running with fake chat models ----------------------------------------------------------------
_DOCUMENT = re.compile(r'<document id="(\d+)" source="([^"]*)">')


class OracleChatModel(GenericFakeChatModel):
    """Answers from the prompt: a follow-up is rewritten as itself; an answer cites the first
    context document whose source an answerable case with this question expects, with the first
    alternative of each fact group; anything else gets the no-answer phrase."""

    cases: list[Any] = Field(default_factory=list)
    answers: list[tuple[str, str | None]] = Field(default_factory=list)  # (question, source)

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        prompt = "\n".join(str(m.content) for m in messages)
        follow_ups = re.findall(r"Follow-up message: (.*)\n", prompt)
        if follow_ups:  # the last one: the prompt's worked example comes first
            return self._reply(follow_ups[-1].strip())
        question = prompt.rsplit("Question: ", 1)[1].split("\n", 1)[0].strip()
        context = [(int(n), source) for n, source in _DOCUMENT.findall(prompt)]
        for c in self.cases:
            if not c.answerable or c.question != question:
                continue
            for n, source in context:
                if any(want in source for want in c.sources):
                    self.answers.append((question, source))
                    facts = " and ".join(g[0] for g in c.facts)
                    return self._reply(f"According to the documents: {facts} [{n}].")
        self.answers.append((question, None))
        return self._reply(NO_ANSWER)

    @staticmethod
    def _reply(text: str) -> ChatResult:
        return ChatResult(generations=[ChatGeneration(message=AIMessage(text))])


def chat_service(app: App, model: Any) -> ChatService:
    return ChatService(
        app.search,
        model,
        PromptSet(project_prompts_dir()),
        app.settings,
        count_tokens=app.embeddings.count_tokens,
    )


def test_run_answer_set_with_an_oracle_model(demo_app: App) -> None:
    cases = load_answer_set(ANSWERS)
    oracle = OracleChatModel(messages=iter([]), cases=cases)
    seen: list[str] = []
    report = run_answer_set(
        chat_service(demo_app, oracle),
        demo_app.principal,
        cases,
        on_turn=lambda turn: seen.append(turn.case.id),
    )
    assert seen == [c.id for c in cases] == [t.case.id for t in report.turns]
    summary = report.summary()
    for turn in report.turns:
        # (the oracle cites the first passage of the right document, which need not hold
        # the figure: the grounding check may mark it, see tests/chain/test_grounding.py)
        assert turn.error is None and turn.total_s > 0 and turn.unsupported >= 0
        assert turn.prompt_tokens is None  # Done carries no prompt tokens (yet)
        if turn.case.answerable:
            # correct exactly when retrieval put an expected source in front of the oracle
            assert turn.grade.correct is bool(turn.cited_sources), turn.grade
            assert turn.grade.correct is not turn.refused
            if turn.grade.correct:
                assert turn.ttft_s is not None and turn.tokens > 0
        else:
            assert turn.refused and turn.grade.correct, turn.grade
    kinds = Counter(c.kind for c in cases)
    assert summary["cases"] == len(cases)
    assert summary["per_kind"].keys() == kinds.keys()
    assert {k: v["total"] for k, v in summary["per_kind"].items()} == dict(kinds)
    answerable = sum(1 for c in cases if c.answerable)
    assert summary["answerable"]["total"] == answerable
    assert summary["refusal"] == {
        "correct": len(cases) - answerable,
        "total": len(cases) - answerable,
        "rate": 1.0,
    }
    assert summary["answerable"]["correct"] >= answerable // 2  # hashing retrieval is rough
    assert summary["leaks"] == 0 and summary["errors"] == 0
    assert summary["ttft_median_s"] is not None and summary["total_median_s"] is not None
    assert gate_failures(report) == []  # every refusal case correct, no leak, no error
    perfect = summary["answerable"]["rate"] == 1.0
    assert (gate_failures(report, min_correct=1.0) == []) is perfect


def test_follow_up_history_runs_first_in_the_same_session(demo_app: App) -> None:
    (c,) = [x for x in load_answer_set(ANSWERS) if x.id == "followup-contractors-alice"]
    oracle = OracleChatModel(messages=iter([]), cases=[c])
    turn = run_answer_case(chat_service(demo_app, oracle), demo_app.principal(c.user), c)
    # the history turn was answered (refused: no case has that question here), then the
    # follow-up, joined to the question before it, was answered
    # (a refusal over a passage that holds the question is asked once more: same question)
    joined = f"{c.history[0]} {c.question}"  # what is searched
    shown = f'{c.question} (This follows the question: "{c.history[0]}")'  # what the model reads
    assert list(dict.fromkeys(q for q, _ in oracle.answers)) == [c.history[0], shown]
    assert oracle.answers[0][0] == c.history[0] and oracle.answers[-1][0] == shown
    assert turn.rewrite == joined and turn.error is None


def test_a_leaky_model_fails_the_refusal_cases_and_the_gate(demo_app: App) -> None:
    cases = [c for c in load_answer_set(ANSWERS) if c.id in ("band-l4-henry", "dress-code-henry")]
    model = GenericFakeChatModel(
        # twice per case: the check against the sources has it answer once more
        messages=iter([AIMessage("The L4 band is 98,000 to 124,000 EUR [1].")] * 4)
    )
    report = run_answer_set(chat_service(demo_app, model), demo_app.principal, cases)
    band, dress = report.turns
    assert not band.grade.correct and band.grade.leaked == ["98,000", "124,000"]
    assert not dress.grade.correct and dress.grade.why == "did not refuse"
    summary = report.summary()
    assert summary["leaks"] == 1 and summary["leaked_cases"] == ["band-l4-henry"]
    assert summary["refusal"] == {"correct": 0, "total": 2, "rate": 0.0}
    failures = gate_failures(report)
    assert any("forbidden string: band-l4-henry" in f for f in failures)
    assert any("refusal cases correct 0/2" in f for f in failures)
    assert not any("refusal" in f for f in gate_failures(report, min_refused=0.0))


def test_chat_errors_are_incorrect_and_named(demo_app: App) -> None:
    cases = [
        c for c in load_answer_set(ANSWERS) if c.id in ("leave-weeks-alice", "followup-tier1-henry")
    ]
    model = FailingChatModel.raising(RuntimeError("model exploded"))
    report = run_answer_set(chat_service(demo_app, model), demo_app.principal, cases)
    first, second = report.turns
    assert first.error == "answer: Answering with the chat model failed: model exploded"
    assert second.error is not None and second.error.startswith("history turn 1 failed (answer)")
    for turn in report.turns:
        assert not turn.grade.correct and turn.grade.why.startswith("error: ")
        assert turn.grade.missing_facts == [list(g) for g in turn.case.facts]
    summary = report.summary()
    assert summary["errors"] == 2 and summary["error_cases"] == [c.id for c in cases]
    assert any("chat error" in f for f in gate_failures(report))


def test_unknown_user_fails_before_any_question(demo_app: App) -> None:
    model = FailingChatModel.raising(AssertionError("must not be called"))
    cases = [case(user="alice", facts=[["x"]], sources=["y"]), case(id="d", user="zoe")]
    with pytest.raises(Exception, match="unknown user 'zoe'"):
        run_answer_set(chat_service(demo_app, model), demo_app.principal, cases)
    assert model.calls == 0


# -- the CLI --------------------------------------------------------------------------------------
@pytest.fixture
def fake_cli(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Any:
    """`rag-app eval run --answers` with the hash embedder and a chat model built by `make`."""
    emb = HashEmbeddings(256)
    monkeypatch.setattr(app_module, "build_embeddings", lambda settings: emb)
    state: dict[str, Any] = {}

    def build(settings: Settings, **kw: Any) -> ChatLLM:
        state["model"] = state["make"]()
        return ChatLLM(model=state["model"], name="fake", backend="fake")

    monkeypatch.setattr(llm_module, "build_chat_llm", build)

    def run(make: Any, *args: str) -> tuple[int, str, str]:
        state["make"] = make
        result = CliRunner().invoke(
            cli,
            ["--data-dir", str(tmp_path / "data"), "eval", "run", "--no-progress", *args],
            standalone_mode=False,
            catch_exceptions=True,
        )
        if result.exception is not None:
            raise result.exception
        return int(result.return_value or 0), result.stdout, result.stderr

    return run


def subset(tmp_path: Path, *ids: str) -> Path:
    lines = [
        line
        for line in ANSWERS.read_text(encoding="utf-8").splitlines()
        if json.loads(line)["id"] in ids
    ]
    path = tmp_path / "subset.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


CLI_CASES = ("leave-weeks-alice", "contractor-paid-leave-dave", "band-l4-henry", "dress-code-henry")


def test_cli_answers_json_with_the_dataset_corpus(fake_cli: Any, tmp_path: Path) -> None:
    path = subset(tmp_path, *CLI_CASES)
    cases = load_answer_set(path)
    out = tmp_path / "run"
    code, stdout, _ = fake_cli(
        lambda: OracleChatModel(messages=iter([]), cases=cases),
        "--answers", str(path), "--dataset", "eval/demo", "--json", "--out", str(out),
    )  # fmt: skip
    document = json.loads(stdout)
    assert document == json.loads((out / "answers.json").read_text(encoding="utf-8"))
    summary = document["summary"]
    assert summary["cases"] == 4 and summary["errors"] == 0 and summary["leaks"] == 0
    assert summary["answerable"]["total"] == 2
    assert summary["refusal"] == {"correct": 2, "total": 2, "rate": 1.0}
    assert [t["id"] for t in document["turns"]] == list(CLI_CASES)
    config = document["config"]
    assert config["answers"] == str(path) and config["collection"].startswith("eval-demo-")
    assert config["model"] == "fake:fake" and config["min_refused"] == 1.0
    assert code == (1 if document["failures"] else 0)
    for turn in document["turns"]:
        if turn["correct"] and turn["kind"] != "restricted" and turn["kind"] != "not-in-corpus":
            assert turn["cited_sources"] and not turn["refused"]


def test_cli_answers_table_gates_and_filters(fake_cli: Any, tmp_path: Path) -> None:
    path = subset(tmp_path, *CLI_CASES)

    def refuser() -> Any:
        return GenericFakeChatModel(messages=iter([AIMessage(NO_ANSWER)] * 10))

    code, stdout, stderr = fake_cli(
        refuser, "--answers", str(path), "--dataset", "eval/demo", "--min-correct", "0.5"
    )
    assert code == 1  # no answerable case is right
    assert "answerable cases correct 0/2 (0.0%) is below 50.0%" in stderr
    assert "OK" in stdout and "BAD" in stdout and "henry" in stdout and "restricted" in stdout
    assert "answerable correct 0/2" in stdout and "refusal cases correct 2/2" in stdout
    # only henry's cases; refusals are all right, and no answerable gate was asked for
    code, stdout, _ = fake_cli(
        refuser, "--answers", str(path), "-d", "eval/demo", "--as-user", "henry", "--json"
    )
    document = json.loads(stdout)
    assert code == 0 and [t["id"] for t in document["turns"]] == [
        "band-l4-henry",
        "dress-code-henry",
    ]
    # the default answer set of the dataset folder, first 2 cases
    code, stdout, _ = fake_cli(refuser, "--answers", "-d", "eval/demo", "--limit", "2", "--json")
    document = json.loads(stdout)
    assert document["config"]["answers"].endswith("eval/demo/answers.jsonl")
    assert [t["id"] for t in document["turns"]] == [c.id for c in load_answer_set(ANSWERS)[:2]]


def test_cli_answers_input_errors(fake_cli: Any, tmp_path: Path) -> None:
    from rag_app.errors import AccessDenied, ConfigError

    def never() -> Any:
        raise AssertionError("no model for a bad input")

    with pytest.raises(ConfigError, match="read with --answers"):
        fake_cli(never, str(ANSWERS))
    with pytest.raises(ConfigError, match="with --answers use --min-correct"):
        fake_cli(never, "--answers", "--fail-under", "ndcg@10=0.9")
    with pytest.raises(ConfigError, match="gate answer runs"):
        fake_cli(never, "-d", "eval/demo", "--min-correct", "0.9")
    with pytest.raises(ConfigError, match="needs --dataset"):
        fake_cli(never)
    with pytest.raises(ConfigError, match="no case is asked by nobody"):
        fake_cli(never, "--answers", str(ANSWERS), "--as-user", "nobody")
    stranger = write(tmp_path, {**GOOD, "user": "zoe"})
    with pytest.raises(AccessDenied, match="unknown user 'zoe'"):
        fake_cli(never, "--answers", str(stranger), "-d", "eval/demo")
    bad = write(tmp_path, {**GOOD, "kind": "trivia"})
    with pytest.raises(AnswerSetError, match=rf"{re.escape(str(bad))}:1: unknown kind"):
        fake_cli(never, "--answers", str(bad))


# -- the bundled small model (wiring only) -------------------------------------------------------
@pytest.mark.slow
@pytest.mark.skipif(
    not is_installed(SMOLLM2),
    reason=f"the SmolLM2 weights package is not installed ({SMOLLM2.pip})",
)
def test_cli_answers_with_smollm2(tmp_path: Path) -> None:
    """SmolLM2-135M through `rag-app eval run --answers` (real embedding model, in-process
    llama.cpp server): the report is complete and counted right. Its accuracy is not judged."""
    path = subset(tmp_path, "support-hours-dave", "followup-tier1-henry", "band-l4-henry")
    env = {
        **os.environ,
        "RAG_DATA_DIR": str(tmp_path / "data"),
        "RAG_LLM": "local",
        "RAG_LLM_MODEL_PATH": "smollm2",
        "RAG_LLM_TEMPERATURE": "0",
        "RAG_LLM_MAX_TOKENS": "48",
        "RAG_LLM_CONTEXT_TOKENS": "2048",
        "RAG_K": "2",
    }
    args = [
        sys.executable, "-m", "rag_app.cli", "eval", "run", "--answers", str(path),
        "--dataset", "eval/demo", "--no-progress", "--json", "--min-refused", "0",
    ]  # fmt: skip
    proc = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode in (0, 1), proc.stdout + proc.stderr  # 1: a leak; never bad input
    document = json.loads(proc.stdout)
    summary = document["summary"]
    assert summary["cases"] == 3 and summary["errors"] == 0, document
    assert summary["answerable"]["total"] == 2 and summary["refusal"]["total"] == 1
    assert set(summary["per_kind"]) == {"fact", "follow-up", "restricted"}
    assert "smollm2" in document["config"]["model"].lower()
    for turn in document["turns"]:
        assert turn["answer"].strip() and turn["total_s"] > 0
        assert turn["refused"] or turn["tokens"] > 0
    assert (proc.returncode == 1) is bool(document["failures"])


def test_a_negative_answer_that_says_yes_is_wrong() -> None:
    case = AnswerCase(
        id="neg",
        user="erin",
        question="Does the warranty cover forklift damage?",
        kind="negative",
        facts=(("not cover", "not covered", "not"),),
        sources=("warranty",),
    )
    src = ["demo/corpus/halcyon/public/warranty.md"]
    wrong = "Yes, it covers collisions the robot could not detect [1]."
    assert not grade_answer(case, wrong, src, refused=False).correct
    assert "yes" in grade_answer(case, wrong, src, refused=False).why
    assert grade_answer(case, "No, forklift damage is not covered [1].", src, False).correct
