"""`rag-app eval run | compare | generate`."""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from rag_app.errors import ConfigError
from rag_app.settings import FusionName, RetrieverName

if TYPE_CHECKING:
    from rag_app.evaluation.results import EvalResults

eval_app = typer.Typer(
    help="Evaluate retrieval (BEIR or RAGAS-style datasets) and compare runs.",
    no_args_is_help=True,
)

GATE_FAILED = 1


def _progress(enabled: bool) -> Any:
    if not enabled:
        return None
    from tqdm import tqdm

    def factory(*, total: int, desc: str, unit: str) -> Any:
        return tqdm(total=total, desc=desc, unit=unit, dynamic_ncols=True, file=sys.stderr)

    return factory


@eval_app.command("run")
def run(
    ctx: typer.Context,
    dataset: Annotated[
        Path | None,
        typer.Option(
            "--dataset",
            "-d",
            help="BEIR folder, folder with dataset.yaml, or RAGAS-style .jsonl (required "
            "unless --answers).",
            show_default=False,
        ),
    ] = None,
    answers_file: Annotated[
        Path | None,
        typer.Argument(
            metavar="FILE",
            help="With --answers: the answer set (default: answers.jsonl of the --dataset "
            "folder, else eval/demo/answers.jsonl).",
            show_default=False,
        ),
    ] = None,
    answers: Annotated[
        bool,
        typer.Option(
            "--answers",
            help="Score chat answers instead of retrieval: run the answer set [FILE] through "
            "the chat chain as each case's user and grade key facts, cited sources, refusals "
            "and forbidden strings (no LLM judge). The corpus and users come from the "
            "dataset folder (--dataset, or the answer set's folder when it has dataset.yaml).",
        ),
    ] = False,
    min_correct: Annotated[
        float | None,
        typer.Option(
            help="With --answers: exit 1 when fewer than this share (0..1) of the answerable "
            "cases are correct.",
            min=0.0,
            max=1.0,
        ),
    ] = None,
    min_refused: Annotated[
        float | None,
        typer.Option(
            help="With --answers: exit 1 when fewer than this share (0..1) of the refusal "
            "cases are correct (default 1: every one).",
            min=0.0,
            max=1.0,
        ),
    ] = None,
    split: Annotated[
        str | None, typer.Option(help="BEIR qrels split (default: test, else the first).")
    ] = None,
    retriever: Annotated[
        RetrieverName | None,
        typer.Option("--retriever", "-r", help="Retriever (default RAG_RETRIEVER)."),
    ] = None,
    k: Annotated[
        int | None, typer.Option("-k", help="Context chunks per query (default RAG_K).", min=1)
    ] = None,
    depth: Annotated[
        int, typer.Option(help="Documents ranked per query for the ranked metrics.", min=1)
    ] = 100,
    as_user: Annotated[
        list[str] | None,
        typer.Option(
            "--as-user",
            "-u",
            help="Evaluate as this user (repeatable; 'all' = every user the dataset names).",
        ),
    ] = None,
    out: Annotated[
        Path | None, typer.Option(help="Run folder (default runs/<dataset>-<retriever>-<time>).")
    ] = None,
    fail_under: Annotated[
        list[str] | None,
        typer.Option(
            "--fail-under",
            help="METRIC=VALUE: exit 1 when the metric is below VALUE (repeatable). Leaks and "
            "expected-outcome mismatches always fail.",
        ),
    ] = None,
    limit: Annotated[
        int | None, typer.Option(help="Only the first N samples (quick looks).", min=1)
    ] = None,
    fusion: Annotated[
        FusionName | None, typer.Option(help="Hybrid fusion (default RAG_FUSION).")
    ] = None,
    store: Annotated[
        str | None,
        typer.Option(
            help="Store to evaluate on: chroma | pinecone | weaviate (default RAG_STORE)."
        ),
    ] = None,
    alpha: Annotated[
        float | None, typer.Option(help="Hybrid weight of the dense half (0..1).")
    ] = None,
    judge_samples: Annotated[
        int,
        typer.Option(
            help="Also answer this many sampled (user, question) pairs with the chat chain and "
            "score the answers with RAGAS' LLM-judged metrics (faithfulness, response relevancy, "
            "LLM context precision/recall), using the configured chat model (RAG_LLM) as judge.",
            min=0,
        ),
    ] = 0,
    judge_repeats: Annotated[
        int, typer.Option(help="Judge every answer this many times (mean and spread).", min=1)
    ] = 3,
    judge_seed: Annotated[int, typer.Option(help="Seed of the judged sample.")] = 0,
    progress: Annotated[bool, typer.Option(help="Show progress bars.")] = True,
    as_json: Annotated[bool, typer.Option("--json", help="Print the aggregate as JSON.")] = False,
) -> int:
    """Evaluate a retriever on a dataset; writes results.json, queries.csv, report.md, plots.
    With --answers: score the chat chain's answers on an answer set instead."""
    from rag_app.evaluation.datasets import load_dataset

    if answers or answers_file is not None:
        if not answers:
            raise ConfigError(f"{answers_file}: an answer set is read with --answers FILE")
        if fail_under or judge_samples:
            raise ConfigError(
                "--fail-under and --judge-samples gate retrieval runs; with --answers use "
                "--min-correct and --min-refused"
            )
        return _run_answers(
            ctx,
            dataset=dataset,
            answers_file=answers_file,
            retriever=retriever,
            k=k,
            users=list(as_user or []),
            out=out,
            limit=limit,
            overrides={"fusion": fusion, "hybrid_alpha": alpha, "store": store},
            min_correct=min_correct,
            min_refused=min_refused,
            progress=progress,
            as_json=as_json,
        )
    if min_correct is not None or min_refused is not None:
        raise ConfigError("--min-correct and --min-refused gate answer runs (--answers)")
    if dataset is None:
        raise ConfigError("eval run needs --dataset PATH (or --answers [FILE] for answers)")
    from rag_app.evaluation.report import write_run
    from rag_app.evaluation.runner import (
        RunOptions,
        default_run_dir,
        gate_failures,
        parse_thresholds,
        run_evaluation,
    )

    thresholds = parse_thresholds(fail_under or [])
    _check_metric_names(thresholds)
    data = load_dataset(dataset, split=split)
    context = ctx.obj
    updates = {"fusion": fusion, "hybrid_alpha": alpha, "store": store}
    for key, value in updates.items():
        if value is not None:
            context.overrides[key] = value
    app = context.app
    options = RunOptions(
        retriever=retriever,
        k=k,
        depth=depth,
        users=list(as_user or []),
        limit=limit,
        show_progress=progress,
        command=shlex.join(["rag-app", *sys.argv[1:]]),
        judge_samples=judge_samples,
        judge_repeats=judge_repeats,
        judge_seed=judge_seed,
    )
    results = run_evaluation(app, data, options, progress=_progress(progress))
    folder = out or default_run_dir(results)
    write_run(results, folder)
    failures = gate_failures(results, thresholds)
    results_view = results.aggregate.model_dump(by_alias=True, exclude={"n"})
    if as_json:
        typer.echo(
            json.dumps(
                {"run": str(folder), "aggregate": results_view, "failures": failures}, indent=2
            )
        )
    else:
        _print_summary(results, folder)
    for failure in failures:
        typer.secho(f"FAIL {failure}", fg=typer.colors.RED, err=True)
    return GATE_FAILED if failures else 0


DEFAULT_ANSWERS = Path("eval/demo/answers.jsonl")
ANSWERS_NAME = "answers.jsonl"


def _answers_path(answers_file: Path | None, dataset: Path | None) -> Path:
    """FILE; else answers.jsonl in the --dataset folder; else eval/demo/answers.jsonl of the
    working directory or of the project (the checkout holding the rag_app package)."""
    if answers_file is not None:
        return answers_file
    if dataset is not None:
        folder = dataset if dataset.is_dir() else dataset.parent
        candidate = folder / ANSWERS_NAME
        if not candidate.is_file():
            raise ConfigError(f"{dataset}: no {ANSWERS_NAME} there; give the answer set as FILE")
        return candidate
    project = Path(__file__).resolve().parents[2] / DEFAULT_ANSWERS
    for candidate in (DEFAULT_ANSWERS, project):
        if candidate.is_file():
            return candidate
    raise ConfigError(f"no answer set at {DEFAULT_ANSWERS}; give one: --answers FILE")


def _run_answers(
    ctx: typer.Context,
    *,
    dataset: Path | None,
    answers_file: Path | None,
    retriever: RetrieverName | None,
    k: int | None,
    users: list[str],
    out: Path | None,
    limit: int | None,
    overrides: dict[str, Any],
    min_correct: float | None,
    min_refused: float | None,
    progress: bool,
    as_json: bool,
) -> int:
    """`eval run --answers`: the answer set through the chat chain, graded by key facts."""
    from rag_app.evaluation.answers import gate_failures, load_answer_set, run_answer_set
    from rag_app.evaluation.datasets import MANIFEST, load_dataset
    from rag_app.evaluation.runner import prepare
    from rag_app.users import UserDirectory

    path = _answers_path(answers_file, dataset)
    cases = load_answer_set(path)
    if dataset is None and (path.parent / MANIFEST).is_file():
        dataset = path.parent  # the answer set's own folder brings the corpus and users
    wanted = [u for u in users if u != "all"]
    if wanted and "all" not in users:
        cases = [c for c in cases if c.user in wanted]
        if not cases:
            raise ConfigError(f"{path}: no case is asked by {', '.join(wanted)}")
    if limit:
        cases = cases[:limit]

    context = ctx.obj
    for key, value in overrides.items():
        if value is not None:
            context.overrides[key] = value
    app = context.app
    collection = app.settings.collection
    directory = app.users
    eapp = app
    if dataset is not None:
        data = load_dataset(dataset)
        prepared = prepare(app, data, progress=_progress(progress), retriever=retriever)
        eapp, collection = prepared.app, prepared.collection
        if data.users_file is not None:
            directory = UserDirectory.load(data.users_file)
    elif retriever is not None and retriever != app.settings.retriever:
        eapp = app.derive(retriever=retriever)
    for user in dict.fromkeys(c.user for c in cases):
        directory.principal(user)  # an unknown user fails before the model starts
    err = _stderr()
    try:
        if eapp.settings.llm == "local" and not as_json:
            err.print("[dim]starting the local chat model…[/dim]")
        service = eapp.chat

        def show(turn: Any) -> None:
            if progress and not as_json:
                from rich.markup import escape

                mark = "OK " if turn.grade.correct else "BAD"
                line = f"{mark} {turn.case.id} ({turn.total_s:.1f} s): {turn.grade.why}"
                err.print(f"[dim]{escape(line)}[/dim]")

        report = run_answer_set(service, directory.principal, cases, on_turn=show, k=k)
        model = service.llm_label or type(service.llm).__name__
    finally:
        eapp.close_chat()
        if eapp is not app:
            eapp.close()
    failures = gate_failures(
        report, min_correct=min_correct, min_refused=1.0 if min_refused is None else min_refused
    )
    summary = report.summary()
    config = {
        "answers": str(path),
        "dataset": str(dataset) if dataset is not None else None,
        "collection": collection,
        "retriever": retriever or app.settings.retriever,
        "k": k or app.settings.k,
        "model": model,
        "users": sorted({c.user for c in cases}),
        "limit": limit,
        "min_correct": min_correct,
        "min_refused": 1.0 if min_refused is None else min_refused,
        "command": shlex.join(["rag-app", *sys.argv[1:]]),
    }
    document = {"config": config, **report.as_dict(), "failures": failures}
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        (out / "answers.json").write_text(
            json.dumps(document, indent=2, ensure_ascii=False), encoding="utf-8"
        )
    if as_json:
        typer.echo(json.dumps(document, indent=2, ensure_ascii=False))
    else:
        _print_answers(report, summary, config, out)
    for failure in failures:
        typer.secho(f"FAIL {failure}", fg=typer.colors.RED, err=True)
    return GATE_FAILED if failures else 0


def _stderr() -> Any:
    from rich.console import Console

    return Console(stderr=True, highlight=False, soft_wrap=True)


def _print_answers(
    report: Any, summary: dict[str, Any], config: dict[str, Any], out: Path | None
) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    console = Console(highlight=False)
    table = Table(
        "",
        "user",
        "kind",
        "question",
        "why",
        title=f"{Path(config['answers']).name} · {config['retriever']} · k={config['k']} · "
        f"{config['model']}",
    )
    for turn in report.turns:
        question = turn.case.question
        if turn.case.history:
            question = " → ".join([*turn.case.history, question])
        table.add_row(
            "[green]OK[/green]" if turn.grade.correct else "[red]BAD[/red]",
            escape(turn.case.user),
            turn.case.kind,
            escape(question),
            escape(turn.grade.why),
        )
    console.print(table)

    def share(s: dict[str, Any]) -> str:
        rate = "-" if s["rate"] is None else f"{s['rate']:.1%}"
        return f"{s['correct']}/{s['total']} ({rate})"

    kinds = " · ".join(f"{k} {share(s)}" for k, s in summary["per_kind"].items())
    ttft = summary["ttft_median_s"]
    console.print(
        f"answerable correct {share(summary['answerable'])} · refusal cases correct "
        f"{share(summary['refusal'])} · leaks {summary['leaks']} · errors {summary['errors']}"
    )
    console.print(f"per kind: {kinds}")
    console.print(
        f"median first token {'-' if ttft is None else f'{ttft} s'} (p90 "
        f"{summary['ttft_p90_s'] or '-'} s) · median turn {summary['total_median_s'] or '-'} s"
        + (f" · wrote {out / 'answers.json'}" if out is not None else "")
    )


def _check_metric_names(thresholds: dict[str, float]) -> None:
    from rag_app.evaluation.metrics import SCORED_METRICS

    known = {*SCORED_METRICS, "leak_rate", "samples", "llm_failures"}
    for name in thresholds:
        if name not in known:
            raise ConfigError(
                f"--fail-under: unknown metric {name!r}; known: {', '.join(sorted(known))}"
            )


def _print_summary(results: EvalResults, folder: Path) -> None:
    from rich.console import Console
    from rich.table import Table

    from rag_app.evaluation.metrics import SCORED_METRICS

    agg, cfg, t = results.aggregate, results.config, results.timings
    console = Console(highlight=False)
    table = Table(
        "metric",
        "value",
        "samples",
        title=f"{results.dataset.name} · {cfg.retriever} · k={cfg.k} · as {', '.join(cfg.users)}",
    )
    for metric in SCORED_METRICS:
        if metric in agg.metrics:
            table.add_row(metric, f"{agg.metrics[metric]:.4f}", str(agg.n.get(metric, "")))
    table.add_row("leak_rate", f"{agg.leak_rate:.4f}", str(agg.retrieved_chunks))
    console.print(table)
    llm = results.llm
    if llm is not None:
        judged = Table(
            "LLM-judged metric",
            "mean",
            "spread (sd over repeats)",
            "min..max",
            "samples",
            title=f"judge {llm.config.judge} · {llm.config.repeats} repeat(s)",
        )
        for metric, s in llm.aggregate.items():
            judged.add_row(
                metric,
                f"{s.mean:.4f}",
                f"±{s.std:.4f}",
                f"{s.min:.3f}..{s.max:.3f}",
                str(s.samples),
            )
        console.print(judged)
        a = llm.answers_summary
        console.print(
            f"answers {a.answers} · refused {a.refused} · cited {a.cited_any} · "
            f"no-access refused {a.no_access_refused}/{a.no_access_samples} · "
            f"answerable answered {a.answerable_answered}/{a.answerable_samples} · "
            f"judge failures {len(llm.failures)} · answering {llm.timings.answers_s} s"
            f" · judging {llm.timings.judging_s} s"
        )
    console.print(
        f"no-access samples {agg.no_access_samples} · restricted sources retrieved "
        f"{agg.restricted_source_hits} · expectation mismatches {agg.expectation_mismatches}"
    )
    console.print(
        f"ingest {t.ingest_s} s · retrieval {t.retrieval_s} s "
        f"({t.query_ms_mean} ms/query) · total {t.total_s} s · wrote {folder}"
    )


@eval_app.command("compare")
def compare(
    runs: Annotated[list[Path], typer.Argument(help="Run folders (the first is the baseline).")],
    out: Annotated[
        Path | None, typer.Option(help="Also write compare.md, compare.json, compare.png here.")
    ] = None,
    alpha: Annotated[float, typer.Option(help="Significance level.")] = 0.05,
) -> int:
    """Side-by-side metrics with deltas and paired significance tests."""
    from rag_app.evaluation.report import compare_runs, comparison_markdown, plot_comparison
    from rag_app.evaluation.results import load_run

    comparison = compare_runs([load_run(p) for p in runs], alpha=alpha)
    text = comparison_markdown(comparison)
    typer.echo(text)
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        (out / "compare.md").write_text(text, encoding="utf-8")
        (out / "compare.json").write_text(comparison.to_json(), encoding="utf-8")
        plot_comparison(comparison, out)
    return 0


@eval_app.command("generate")
def generate(
    ctx: typer.Context,
    docs: Annotated[
        list[Path] | None,
        typer.Option("--docs", help="Documents (files or folders) to write questions about."),
    ] = None,
    corpus: Annotated[
        list[Path] | None, typer.Argument(help="More documents (same as --docs).", hidden=True)
    ] = None,
    size: Annotated[int, typer.Option(help="Number of questions.", min=1)] = 10,
    out: Annotated[
        Path, typer.Option(help="Dataset folder to write (questions.jsonl, dataset.yaml).")
    ] = Path("eval/generated"),
    max_docs: Annotated[
        int, typer.Option(help="Documents sampled into RAGAS' knowledge graph (0: all).", min=0)
    ] = 20,
    seed: Annotated[int, typer.Option(help="Seed for the document and scenario sampling.")] = 0,
    persona: Annotated[
        list[str] | None,
        typer.Option(
            help="NAME: DESCRIPTION of who asks (repeatable; default: a reader of the documents)."
        ),
    ] = None,
) -> int:
    """Generate a test set from your documents with RAGAS' test set generator, using the
    configured chat model (RAG_LLM: the bundled local model or OpenAI)."""
    from rag_app.evaluation.generate import DEFAULT_PERSONA, GenerateOptions, generate_testset
    from rag_app.evaluation.judge import model_limits

    paths = [*(docs or []), *(corpus or [])]
    if not paths:
        raise ConfigError("eval generate: give the documents with --docs PATH (repeatable)")
    personas = [_persona(p) for p in persona or []] or [DEFAULT_PERSONA]
    app = ctx.obj.app
    limits = model_limits(app.settings.llm == "local")
    options = GenerateOptions(
        size=size,
        max_docs=max_docs or None,
        seed=seed,
        personas=personas,
        max_workers=limits.max_workers,
        timeout_s=limits.timeout_s,
    )
    report = generate_testset(
        app,
        paths,
        out=out,
        options=options,
        progress=lambda message: typer.echo(message, err=True),
    )
    for line in report.skipped:
        typer.secho(f"skipped {line}", fg=typer.colors.YELLOW, err=True)
    typer.echo(
        f"wrote {report.written} question(s) from {report.documents} document(s) to "
        f"{report.questions} in {report.seconds:.0f} s; evaluate with:\n"
        f"  rag-app eval run --dataset {out} --as-user USER"
    )
    return 0


def _persona(text: str) -> tuple[str, str]:
    name, sep, description = text.partition(":")
    if not sep or not name.strip() or not description.strip():
        raise ConfigError(f"--persona expects 'NAME: DESCRIPTION', got {text!r}")
    return name.strip(), description.strip()


def register(app: typer.Typer) -> None:
    app.add_typer(eval_app, name="eval")
