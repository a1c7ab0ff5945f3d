"""`rag-app eval run | compare | generate`."""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from rag_app.errors import ConfigError

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
        Path,
        typer.Option(
            "--dataset", "-d", help="BEIR folder, folder with dataset.yaml, or RAGAS-style .jsonl."
        ),
    ],
    split: Annotated[
        str | None, typer.Option(help="BEIR qrels split (default: test, else the first).")
    ] = None,
    retriever: Annotated[
        str | None, typer.Option("--retriever", "-r", help="dense | bm25 | hybrid.")
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
    fusion: Annotated[str | None, typer.Option(help="Hybrid fusion: rrf | weighted.")] = None,
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
    """Evaluate a retriever on a dataset; writes results.json, queries.csv, report.md, plots."""
    from rag_app.evaluation.datasets import load_dataset
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
    if retriever is not None and retriever not in ("dense", "bm25", "hybrid"):
        raise ConfigError(f"--retriever must be dense, bm25 or hybrid, not {retriever!r}")
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
    results_view = {k: v for k, v in results["aggregate"].items() if k != "n"}
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


def _check_metric_names(thresholds: dict[str, float]) -> None:
    from rag_app.evaluation.runner import SCORED_METRICS

    known = {*SCORED_METRICS, "leak_rate", "samples", "llm_failures"}
    for name in thresholds:
        if name not in known:
            raise ConfigError(
                f"--fail-under: unknown metric {name!r}; known: {', '.join(sorted(known))}"
            )


def _print_summary(results: dict[str, Any], folder: Path) -> None:
    from rich.console import Console
    from rich.table import Table

    from rag_app.evaluation.runner import SCORED_METRICS

    agg, cfg, t = results["aggregate"], results["config"], results["timings"]
    console = Console(highlight=False)
    table = Table(
        "metric",
        "value",
        "samples",
        title=f"{results['dataset']['name']} · {cfg['retriever']} · k={cfg['k']} · "
        f"as {', '.join(cfg['users'])}",
    )
    for metric in SCORED_METRICS:
        if metric in agg:
            table.add_row(metric, f"{agg[metric]:.4f}", str(agg["n"].get(metric, "")))
    table.add_row("leak_rate", f"{agg['leak_rate']:.4f}", str(agg["retrieved_chunks"]))
    console.print(table)
    llm = results.get("llm")
    if llm:
        judged = Table(
            "LLM-judged metric",
            "mean",
            "spread (sd over repeats)",
            "min..max",
            "samples",
            title=f"judge {llm['config']['judge']} · {llm['config']['repeats']} repeat(s)",
        )
        for metric, s in llm["aggregate"].items():
            judged.add_row(
                metric,
                f"{s['mean']:.4f}",
                f"±{s['std']:.4f}",
                f"{s['min']:.3f}..{s['max']:.3f}",
                str(s["samples"]),
            )
        console.print(judged)
        a = llm["answers_summary"]
        console.print(
            f"answers {a['answers']} · refused {a['refused']} · cited {a['cited_any']} · "
            f"no-access refused {a['no_access_refused']}/{a['no_access_samples']} · "
            f"answerable answered {a['answerable_answered']}/{a['answerable_samples']} · "
            f"judge failures {len(llm['failures'])} · answering {llm['timings']['answers_s']} s"
            f" · judging {llm['timings']['judging_s']} s"
        )
    console.print(
        f"no-access samples {agg['no_access_samples']} · restricted sources retrieved "
        f"{agg['restricted_source_hits']} · expectation mismatches "
        f"{agg['expectation_mismatches']}"
    )
    console.print(
        f"ingest {t['ingest_s']} s · retrieval {t['retrieval_s']} s "
        f"({t['query_ms_mean']} ms/query) · total {t['total_s']} s · wrote {folder}"
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
    from rag_app.evaluation.report import (
        compare_runs,
        comparison_markdown,
        load_results,
        plot_comparison,
    )

    comparison = compare_runs([load_results(p) for p in runs], alpha=alpha)
    text = comparison_markdown(comparison)
    typer.echo(text)
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        (out / "compare.md").write_text(text, encoding="utf-8")
        (out / "compare.json").write_text(json.dumps(comparison, indent=2), encoding="utf-8")
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

    paths = [*(docs or []), *(corpus or [])]
    if not paths:
        raise ConfigError("eval generate: give the documents with --docs PATH (repeatable)")
    personas = [_persona(p) for p in persona or []] or [DEFAULT_PERSONA]
    app = ctx.obj.app
    local = app.settings.llm == "local"
    options = GenerateOptions(
        size=size,
        max_docs=max_docs or None,
        seed=seed,
        personas=personas,
        max_workers=1 if local else 4,
        timeout_s=900.0 if local else 120.0,
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
