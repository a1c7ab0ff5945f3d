"""Chat benchmark: time to first token against the model's own floor, prompt size, generation
speed and answer correctness, for the current chat configuration and the previous one, in one
run on the same model and hardware.

Setup: the demo corpus is ingested with the real embedding model into a temporary (or given)
data folder; the bundled local model runs in the in-process llama.cpp server; every case of
the demo answer set (`eval/demo/answers.jsonl`: facts, table look-ups, negative answers,
numbers found in several documents, follow-ups, restricted and not-in-corpus questions) is
asked as its user, graded by key facts (`rag_app.evaluation.answers`, no LLM judge).

Configurations (each runs every case, one configuration after the other: alternating them
case by case would defeat the model server's prompt cache, which keeps the last prompt's
prefix, and that cache is part of what is measured):

* ``previous``: the prompt files of before this change (`bench/baseline_prompts/`) and whole
  chunks in the prompt (``context_select=chunks``): what the app did before, except that it
  retrieves from today's index (table rows are indexed as sentences for both);
* ``current``: the project's prompt files and the passages' best sentences within
  ``--context-tokens`` (``context_select=sentences``).

Per turn, the model server's own counters (llama.cpp ``/metrics``) are read before the graded
question and after it, giving the prompt tokens the model actually evaluated in that turn (the
condense call of a follow-up included; tokens served from the prompt cache are not evaluated)
and the seconds it spent on them. The **floor** of a turn is its evaluated prompt tokens divided
by the prompt-eval rate measured over the whole run (all turns of both configurations): the
least time any pipeline needs before the first answer token on this model and machine. TTFT /
floor shows what is spent on anything else (retrieval, passage selection, the rewrite's
generated tokens, HTTP). Reported for first turns and follow-ups separately.

Usage: python bench/bench_chat.py [--model default] [--limit N] [--kinds fact,table]
                                  [--context-tokens 320] [--configs previous,current]

``--configs rewrite`` runs today's pipeline with follow-ups rewritten by the model
(``chat_followup=rewrite``) instead of joined to the previous question.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from rag_app import configure_offline  # noqa: E402

configure_offline()

from rag_app.app import App  # noqa: E402
from rag_app.chain import ChatService, PromptSet  # noqa: E402
from rag_app.evaluation.answers import (  # noqa: E402
    AnswerCase,
    AnswerTurn,
    load_answer_set,
    run_answer_case,
)
from rag_app.llm.factory import build_local_llm  # noqa: E402
from rag_app.settings import Settings  # noqa: E402

ANSWERS = ROOT / "eval/demo/answers.jsonl"
BASELINE_PROMPTS = ROOT / "bench/baseline_prompts"
WARM_UP = "Warm-up: what is the HR-200?"  # not a case of the answer set


@dataclass
class Measured:
    config: str
    turn: AnswerTurn
    evaluated_tokens: float  # prompt tokens the model evaluated in the graded turn
    prompt_seconds: float
    generated_tokens: float
    generated_seconds: float
    floor_s: float | None = None

    @property
    def follow_up(self) -> bool:
        return bool(self.turn.case.history)


@dataclass
class Config:
    name: str
    service: ChatService
    measured: list[Measured] = field(default_factory=list)


def counters(server: Any) -> dict[str, float]:
    return dict(server.counters())


def _q(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def _r(value: float | None, digits: int = 2) -> float | None:
    return None if value is None else round(value, digits)


def summarise(config: Config) -> dict[str, Any]:
    rows = config.measured
    turns = [m.turn for m in rows]
    answerable = [t for t in turns if t.case.answerable]
    refusal = [t for t in turns if not t.case.answerable]
    out: dict[str, Any] = {
        "answerable_correct": f"{sum(t.grade.correct for t in answerable)}/{len(answerable)}",
        "answerable_rate": _r(
            sum(t.grade.correct for t in answerable) / len(answerable) if answerable else None, 3
        ),
        "refusals_correct": f"{sum(t.grade.correct for t in refusal)}/{len(refusal)}",
        "leaks": sum(bool(t.grade.leaked) for t in turns),
        "errors": sum(t.error is not None for t in turns),
        "unsupported_marked": sum(t.unsupported for t in turns),
        "answerable_refused": sum(t.refused for t in answerable),
        "revised": sum(t.revised_from is not None for t in turns),
        "total_s_median": _r(statistics.median([t.total_s for t in turns])) if turns else None,
        "per_kind": {},
    }
    for kind in sorted({t.case.kind for t in turns}):
        of_kind = [t for t in turns if t.case.kind == kind]
        out["per_kind"][kind] = f"{sum(t.grade.correct for t in of_kind)}/{len(of_kind)}"
    prompts = [t.prompt_tokens for t in turns if t.prompt_tokens]
    out["prompt_tokens_median"] = statistics.median(prompts) if prompts else None
    out["evaluated_tokens_median"] = statistics.median([m.evaluated_tokens for m in rows])
    rates = [t.tokens_per_s for t in turns if t.tokens_per_s]
    out["tokens_per_s_median"] = _r(statistics.median(rates), 1) if rates else None
    for label, group in (
        ("first", [m for m in rows if not m.follow_up]),
        ("follow_up", [m for m in rows if m.follow_up]),
    ):
        ttft = [m.turn.ttft_s for m in group if m.turn.ttft_s is not None]
        ratio = [
            m.turn.ttft_s / m.floor_s
            for m in group
            if m.turn.ttft_s is not None and m.floor_s and m.floor_s > 0
        ]
        out[label] = {
            "turns": len(group),
            "ttft_median_s": _r(statistics.median(ttft)) if ttft else None,
            "ttft_p90_s": _r(_q(ttft, 0.9)),
            "floor_median_s": _r(statistics.median([m.floor_s for m in group if m.floor_s]))
            if any(m.floor_s for m in group)
            else None,
            "ttft_over_floor_median": _r(statistics.median(ratio), 3) if ratio else None,
            "ttft_over_floor_p90": _r(_q(ratio, 0.9), 3),
        }
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="default", help="bundled model name or GGUF path")
    parser.add_argument("--answers", type=Path, default=ANSWERS)
    parser.add_argument("--data-dir", type=Path, default=None, help="reuse an ingested folder")
    parser.add_argument("--limit", type=int, default=None, help="first N cases only")
    parser.add_argument("--cases", default=None, help="only these case ids (comma-separated)")
    parser.add_argument("--kinds", default=None, help="only these case kinds (comma-separated)")
    parser.add_argument("--context-tokens", type=int, default=None)
    parser.add_argument("--configs", default="previous,current")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--out", type=Path, default=ROOT / "bench/results/chat.json")
    args = parser.parse_args()

    cases: list[AnswerCase] = load_answer_set(args.answers)
    if args.kinds:
        wanted = {k.strip() for k in args.kinds.split(",")}
        cases = [c for c in cases if c.kind in wanted]
    if args.cases:
        ids = {c.strip() for c in args.cases.split(",")}
        cases = [c for c in cases if c.id in ids]
    if args.limit:
        cases = cases[: args.limit]

    tmp = None
    data_dir = args.data_dir
    if data_dir is None:
        tmp = tempfile.TemporaryDirectory(prefix="bench-chat-")
        data_dir = Path(tmp.name)
    base = Settings(
        data_dir=data_dir,
        users_file=ROOT / "demo/users.yaml",
        llm_temperature=0.0,
        llm_threads=args.threads,
    )
    if args.context_tokens:
        base = base.model_copy(update={"context_tokens": args.context_tokens})
    app = App(base)
    t = time.perf_counter()
    report = app.ingestor.ingest([ROOT / "demo/corpus"])
    print(f"demo corpus: {report.chunks_added} chunks added in {time.perf_counter() - t:.1f}s")

    t = time.perf_counter()
    llm = build_local_llm(base.model_copy(update={"llm_model_path": Path(args.model)}))
    startup_s = time.perf_counter() - t
    server = llm.server
    if server is None:
        raise SystemExit("the benchmark needs the local model server")
    variants = {
        "previous": (
            # the pipeline before this issue: whole chunks, the old prompts, no check that
            # answers again, no asker's name, follow-ups rewritten by the model (the index,
            # with table rows, is shared)
            base.model_copy(
                update={
                    "context_select": "chunks",
                    "grounding": "mark",
                    "chat_asker_name": False,
                    "chat_followup": "rewrite",
                }
            ),
            PromptSet(BASELINE_PROMPTS),
        ),
        "current": (base, app.prompts),
        # today's pipeline with the model's rewrite of follow-ups (not run by default)
        "rewrite": (base.model_copy(update={"chat_followup": "rewrite"}), app.prompts),
    }
    configs = [
        Config(
            name,
            ChatService(
                app.search,
                llm.model,
                variants[name][1],
                variants[name][0],
                count_tokens=app.embeddings.count_tokens,
                # the app's own retriever (hybrid by default), as `App.chat` builds it
                retriever_factory=lambda principal, filter, k: app.retriever(
                    principal, filter=filter, k=k
                ),
                llm_label=llm.describe(),
            ),
        )
        for name in [c.strip() for c in args.configs.split(",") if c.strip()]
    ]
    print(
        f"model {llm.name}: started in {startup_s:.1f}s; {len(cases)} cases x "
        f"{len(configs)} configurations; load average {os.getloadavg()} on {os.cpu_count()} CPUs"
    )
    try:
        for config in configs:
            # warm-up, not measured: caches, and the server's prompt cache holds this
            # configuration's fixed prompt part, as it does in steady use
            for _ in config.service.stream(
                config.service.new_session(), app.principal("henry"), WARM_UP
            ):
                pass
            for case in cases:
                before: dict[str, float] = {}
                at_revise: dict[str, float] = {}

                def snap(into: dict[str, float] = before) -> None:
                    into.update(counters(server))

                def snap_revise(into: dict[str, float] = at_revise) -> None:
                    into.update(counters(server))

                turn = run_answer_case(
                    config.service,
                    app.principal(case.user),
                    case,
                    before_question=snap,
                    before_revise=snap_revise,
                )
                after = counters(server)
                # the floor is the first answer's prompt (what the first token waited for);
                # a re-answer's tokens are counted in generated_* and total time only
                first_call = at_revise or after
                measured = Measured(
                    config.name,
                    turn,
                    evaluated_tokens=first_call["prompt_tokens_total"]
                    - before.get("prompt_tokens_total", 0.0),
                    prompt_seconds=first_call["prompt_seconds_total"]
                    - before.get("prompt_seconds_total", 0.0),
                    generated_tokens=after["tokens_predicted_total"]
                    - before.get("tokens_predicted_total", 0.0),
                    generated_seconds=after["tokens_predicted_seconds_total"]
                    - before.get("tokens_predicted_seconds_total", 0.0),
                )
                config.measured.append(measured)
                print(
                    f"  {config.name:8} {'OK ' if turn.grade.correct else 'BAD'} {case.id:34} "
                    f"ttft {turn.ttft_s or 0:5.1f}s prompt {turn.prompt_tokens or 0:5} "
                    f"evaluated {measured.evaluated_tokens:5.0f} total {turn.total_s:5.1f}s"
                    f"{' revised' if turn.revised_from is not None else ''}  {turn.grade.why}",
                    flush=True,
                )
    finally:
        llm.close()

    every = [m for c in configs for m in c.measured]
    tokens = sum(m.evaluated_tokens for m in every)
    seconds = sum(m.prompt_seconds for m in every)
    rate = tokens / seconds if seconds > 0 else None
    gen_rate = sum(m.generated_tokens for m in every) / max(
        1e-9, sum(m.generated_seconds for m in every)
    )
    for m in every:
        m.floor_s = m.evaluated_tokens / rate if rate else None
    results: dict[str, Any] = {
        "model": llm.name,
        "startup_s": round(startup_s, 1),
        "cases": len(cases),
        "context_tokens": base.context_tokens,
        "prompt_eval_tokens_per_s": _r(rate, 1),
        "generation_tokens_per_s": _r(gen_rate, 1),
        "cpus": os.cpu_count(),
        "load_average_at_end": os.getloadavg(),
        "configs": {c.name: summarise(c) for c in configs},
        "turns": [
            {
                "config": m.config,
                **m.turn.as_dict(),
                "evaluated_tokens": m.evaluated_tokens,
                "prompt_seconds": round(m.prompt_seconds, 3),
                "floor_s": _r(m.floor_s, 3),
            }
            for m in every
        ],
    }
    print(
        f"\nprompt eval {results['prompt_eval_tokens_per_s']} tokens/s, generation "
        f"{results['generation_tokens_per_s']} tokens/s (server counters, whole run)"
    )
    keys = [
        ("answerable correct", lambda s: s["answerable_correct"]),
        ("refusals correct", lambda s: s["refusals_correct"]),
        ("leaks / errors", lambda s: f"{s['leaks']} / {s['errors']}"),
        ("prompt tokens (median)", lambda s: s["prompt_tokens_median"]),
        ("evaluated tokens (median)", lambda s: s["evaluated_tokens_median"]),
        (
            "first turn TTFT median / p90",
            lambda s: f"{s['first']['ttft_median_s']} / {s['first']['ttft_p90_s']} s",
        ),
        ("first turn TTFT / floor (median)", lambda s: s["first"]["ttft_over_floor_median"]),
        (
            "follow-up TTFT median / p90",
            lambda s: f"{s['follow_up']['ttft_median_s']} / {s['follow_up']['ttft_p90_s']} s",
        ),
        ("follow-up TTFT / floor (median)", lambda s: s["follow_up"]["ttft_over_floor_median"]),
        ("tokens/s (median)", lambda s: s["tokens_per_s_median"]),
        ("claims marked unsupported", lambda s: s["unsupported_marked"]),
        ("answers revised after the check", lambda s: s["revised"]),
        ("whole turn median (s)", lambda s: s["total_s_median"]),
    ]
    names = list(results["configs"])
    print(f"\n{'':34}" + "".join(f"{n:>22}" for n in names))
    for label, get in keys:
        print(f"{label:34}" + "".join(f"{get(results['configs'][n])!s:>22}" for n in names))
    for name in names:
        print(f"  per kind ({name}): {results['configs'][name]['per_kind']}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2, ensure_ascii=False))
    print(f"\nresults written to {args.out}")
    app.close()
    if tmp is not None:
        tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
