"""Run outputs: results.json, queries.csv, report.md and PNG plots; and run comparison with
paired significance tests (scipy: paired t-test and a paired randomization test)."""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rag_app.errors import RagAppError
from rag_app.evaluation.metrics import SCORED_METRICS
from rag_app.evaluation.results import (
    ComparedRun,
    Comparison,
    EvalResults,
    LLMSection,
    LoadedRun,
    MetricComparison,
    PairedTest,
    QueryRow,
)

SHORT = {
    "id_based_context_precision": "ctx_precision(id)",
    "id_based_context_recall": "ctx_recall(id)",
    "non_llm_context_precision_with_reference": "ctx_precision(text)",
    "non_llm_context_recall": "ctx_recall(text)",
}
CSV_COLUMNS = (
    "user",
    "query_id",
    "query",
    "relevant",
    "permitted",
    "expected",
    "outcome",
    *SCORED_METRICS,
    "retrieved_chunks",
    "leaked_chunks",
    "restricted_sources",
    "top_documents",
    "latency_ms",
)


def _fmt(value: Any, digits: int = 4) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


# -- one run --------------------------------------------------------------------------------------
def write_run(results: EvalResults, out: Path) -> list[Path]:
    """Write every output of a run into `out`; returns the files written."""
    out.mkdir(parents=True, exist_ok=True)
    written = [results.write(out), out / "queries.csv", out / "report.md"]
    with (out / "queries.csv").open("w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(CSV_COLUMNS)
        for query in results.queries:
            row = query.model_dump(by_alias=True)
            writer.writerow(
                [
                    ";".join(map(str, row.get(c) or []))
                    if isinstance(row.get(c), list)
                    else ("" if row.get(c) is None else row.get(c))
                    for c in CSV_COLUMNS
                ]
            )
    written += plot_run(results, out)
    (out / "report.md").write_text(markdown_report(results, plots=written[3:]), encoding="utf-8")
    return written


def markdown_report(results: EvalResults, *, plots: Sequence[Path] = ()) -> str:
    cfg, agg, ds = results.config, results.aggregate, results.dataset
    lines = [
        f"# Evaluation: {ds.name} ({cfg.retriever})",
        "",
        f"{results.created} · {ds.kind} dataset `{ds.path}`"
        + (f" split `{ds.split}`" if ds.split else "")
        + f" · {agg.samples} samples · k={cfg.k} chunks · ranked depth {cfg.depth} docs"
        + f" · as {', '.join(cfg.users)}",
        "",
        "## Metrics",
        "",
        "| metric | value | samples |",
        "|---|---|---|",
    ]
    for metric in SCORED_METRICS:
        if metric in agg.metrics:
            lines.append(f"| {metric} | {_fmt(agg.metrics[metric])} | {agg.n.get(metric, '')} |")
    lines += [
        "",
        "## Permissions",
        "",
        f"- leak rate: **{_fmt(agg.leak_rate)}** ({agg.leaked_chunks} of "
        f"{agg.retrieved_chunks} retrieved chunks outside the principal's access)",
        f"- samples whose every reference is hidden from the user (expected: refusal): "
        f"{agg.no_access_samples}; of them retrieving a restricted source: "
        f"{agg.restricted_source_hits}",
        f"- expected outcomes contradicted by the stored ACLs: {agg.expectation_mismatches}",
    ]
    for m in results.expectation_mismatches[:20]:
        lines.append(f"  - {m.user} / {m.query_id}: expected {m.expected}, ACLs give {m.actual}")
    lines += _llm_section(results.llm)
    per_user = results.per_user
    if per_user:
        shown = [m for m in SCORED_METRICS if any(m in u.metrics for u in per_user.values())]
        lines += [
            "",
            "## Per user",
            "",
            "| user | samples | no-access | leak rate | " + " | ".join(shown) + " |",
            "|---|---|---|---|" + "---|" * len(shown),
        ]
        for user, u in per_user.items():
            lines.append(
                f"| {user} | {u.samples} | {u.no_access_samples} | {_fmt(u.leak_rate)} | "
                + " | ".join(_fmt(u.metrics.get(m)) for m in shown)
                + " |"
            )
    main = (
        "ndcg@10"
        if "ndcg@10" in agg.metrics
        else next((m for m in SCORED_METRICS if m in agg.metrics), None)
    )
    if main:
        scored = [(value, r) for r in results.queries if (value := r.metrics.get(main)) is not None]
        worst = sorted(scored, key=lambda pair: pair[0])[:10]
        lines += ["", f"## Lowest {main}", "", f"| user | query | {main} | top documents |"]
        lines.append("|---|---|---|---|")
        for value, r in worst:
            query = r.query.replace("|", "/")[:90]
            docs = ", ".join(r.top_documents[:3])
            lines.append(f"| {r.user} | {query} | {_fmt(value)} | {docs} |")
    t = results.timings
    lines += [
        "",
        "## Timings",
        "",
        f"ingest {t.ingest_s} s · BM25 index {t.bm25_index_s} s · retrieval "
        f"{t.retrieval_s} s (mean {t.query_ms_mean} ms, p95 {t.query_ms_p95} ms per "
        f"query) · metrics {t.metrics_s} s · total {t.total_s} s",
        "",
        "## Configuration (for reproduction)",
        "",
        "```json",
        json.dumps(cfg.model_dump(by_alias=True), indent=2),
        "```",
    ]
    if plots:
        lines += ["", "## Plots", ""] + [f"![{p.stem}]({p.name})" for p in plots]
    return "\n".join(lines) + "\n"


def _llm_section(llm: LLMSection | None) -> list[str]:
    if llm is None:
        return []
    cfg, a = llm.config, llm.answers_summary
    lines = [
        "",
        "## LLM-judged answer metrics",
        "",
        f"The chat chain answered {a.answers} sampled question(s) (seed {cfg.seed}); "
        f"judge `{cfg.judge}` scored each answer {cfg.repeats} time(s). Mean of the "
        "per-repeat means, and their spread:",
        "",
        "| metric | mean | sd over repeats | min | max | samples |",
        "|---|---|---|---|---|---|",
    ]
    for metric, m in llm.aggregate.items():
        lines.append(
            f"| {metric} | {_fmt(m.mean)} | {_fmt(m.std)} | {_fmt(m.min)} | "
            f"{_fmt(m.max)} | {m.samples} |"
        )
    lines += [
        "",
        f"- refused {a.refused} of {a.answers}; cited at least one source: {a.cited_any}",
        f"- questions the user may not answer (expected refusal): refused "
        f"{a.no_access_refused} of {a.no_access_samples}; answerable questions answered "
        f"{a.answerable_answered} of {a.answerable_samples}",
        f"- sources outside the user's access in any answer's context: "
        f"{a.restricted_sources_in_context} (must be 0); chain errors: {a.chain_errors}",
        f"- judge failures (left out of the means, fail the gate): {len(llm.failures)}",
    ]
    lines += [f"  - {f}" for f in llm.failures[:20]]
    lines += ["", "| user | question | refused | answer |", "|---|---|---|---|"]
    for answer in llm.answers[:30]:
        text = " ".join((answer.response or answer.error or "").split())
        question = answer.user_input.replace("|", "/")[:80]
        lines.append(
            f"| {answer.user} | {question} | {answer.refused} | {text.replace('|', '/')[:240]} |"
        )
    return lines


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_run(results: EvalResults, out: Path) -> list[Path]:
    """metrics.png (aggregate per metric) and distribution.png (per-query scores)."""
    plt = _pyplot()
    agg = results.aggregate.metrics
    metrics = [m for m in SCORED_METRICS if m in agg]
    written: list[Path] = []
    if not metrics:
        return written
    label = f"{results.dataset.name} · {results.config.retriever}"
    fig, ax = plt.subplots(figsize=(max(5.0, 1.3 * len(metrics)), 3.6))
    values = [float(agg[m]) for m in metrics]
    bars = ax.bar([SHORT.get(m, m) for m in metrics], values, color="#4C72B0")
    ax.bar_label(bars, labels=[f"{v:.3f}" for v in values], fontsize=8)
    ax.set_ylim(0, 1.05)
    ax.set_title(label)
    ax.tick_params(axis="x", labelrotation=30, labelsize=8)
    fig.tight_layout()
    fig.savefig(out / "metrics.png", dpi=110)
    plt.close(fig)
    written.append(out / "metrics.png")

    series = {SHORT.get(m, m): _scores(results.queries, m) for m in metrics}
    fig, ax = plt.subplots(figsize=(max(5.0, 1.3 * len(series)), 3.6))
    ax.boxplot(list(series.values()), showmeans=True)
    ax.set_xticks(range(1, len(series) + 1), list(series), rotation=30, fontsize=8)
    ax.set_ylim(-0.05, 1.05)
    ax.set_title(f"per-query distribution · {label}")
    fig.tight_layout()
    fig.savefig(out / "distribution.png", dpi=110)
    plt.close(fig)
    written.append(out / "distribution.png")
    return written


# -- comparison -----------------------------------------------------------------------------------
def _scores(rows: Sequence[QueryRow], metric: str) -> list[float]:
    return [v for r in rows if (v := r.metrics.get(metric)) is not None]


def paired_test(a: Sequence[float], b: Sequence[float], *, seed: int = 0) -> dict[str, Any]:
    """Paired t-test and paired randomization (sign-flip permutation) test of b - a."""
    import warnings

    import numpy as np
    from scipy import stats

    x, y = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    diff = y - x
    out: dict[str, Any] = {
        "n": len(x),
        "mean_delta": float(np.mean(diff)) if len(x) else None,
        "t_pvalue": None,
        "perm_pvalue": None,
    }
    if len(x) < 2:
        return out
    if np.allclose(diff, 0.0):
        out.update(t_pvalue=1.0, perm_pvalue=1.0)
        return out
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        # a constant, non-zero difference has no variance at all: as significant as it gets
        tp = 0.0 if np.allclose(diff, diff[0]) else float(stats.ttest_rel(y, x).pvalue)
        perm = stats.permutation_test(
            (x, y),
            lambda u, v, axis=-1: np.mean(v - u, axis=axis),
            permutation_type="samples",
            vectorized=True,
            n_resamples=10_000 if len(x) > 13 else np.inf,
            alternative="two-sided",
            random_state=seed,
        )
    out["t_pvalue"] = tp if math.isfinite(tp) else 1.0
    out["perm_pvalue"] = float(perm.pvalue)
    return out


def compare_runs(runs: Sequence[LoadedRun], *, alpha: float = 0.05) -> Comparison:
    """Baseline = the first run. Per metric: values, deltas and paired tests over the samples
    (user/query) both runs scored."""
    if len(runs) < 2:
        raise RagAppError("compare needs at least two runs")
    base = runs[0].results
    metrics = [m for m in SCORED_METRICS if all(m in r.results.aggregate.metrics for r in runs)]
    extra = ["leak_rate"]
    table: list[MetricComparison] = []
    for metric in metrics + extra:
        row = MetricComparison(metric=metric, values=[], deltas=[], tests=[])
        base_value = _aggregate_value(base, metric)
        base_scores = {q.key: q.metrics.get(metric) for q in base.queries}
        for i, loaded in enumerate(runs):
            run = loaded.results
            value = _aggregate_value(run, metric)
            row.values.append(value)
            row.deltas.append(None if value is None or base_value is None else value - base_value)
            if i == 0 or metric in extra:
                row.tests.append(None)
                continue
            scores = {q.key: q.metrics.get(metric) for q in run.queries}
            pairs = [
                (b, s)
                for k in sorted(base_scores.keys() & scores.keys())
                if (b := base_scores[k]) is not None and (s := scores[k]) is not None
            ]
            test = PairedTest(**paired_test([b for b, _ in pairs], [s for _, s in pairs]))
            test.significant = test.perm_pvalue is not None and test.perm_pvalue < alpha
            row.tests.append(test)
        table.append(row)
    return Comparison(
        runs=[
            ComparedRun(
                label=r.label,
                path=str(r.path),
                config=r.results.config,
                dataset=r.results.dataset.name,
            )
            for r in runs
        ],
        alpha=alpha,
        metrics=table,
    )


def _aggregate_value(results: EvalResults, metric: str) -> float | None:
    """A metric's mean, or leak_rate, from a run's aggregate (None: not computed)."""
    if metric == "leak_rate":
        return results.aggregate.leak_rate
    return results.aggregate.metrics.get(metric)


def comparison_markdown(comparison: Comparison) -> str:
    runs = comparison.runs
    head = "| metric | " + " | ".join(r.label for r in runs) + " |"
    lines = [
        "# Comparison",
        "",
        "Baseline: " + runs[0].label + ". Δ = run − baseline; p = paired randomization test "
        "(10,000 sign flips) / paired t-test over the samples both runs scored; * = p < "
        f"{comparison.alpha}.",
        "",
        head,
        "|---|" + "---|" * len(runs),
    ]
    for row in comparison.metrics:
        cells = []
        for i, value in enumerate(row.values):
            cell = _fmt(value)
            delta = row.deltas[i]
            if i > 0 and delta is not None:
                cell += f" (Δ {delta:+.4f}"
                test = row.tests[i]
                if test is not None and test.perm_pvalue is not None:
                    star = "*" if test.significant else ""
                    cell += f", p={test.perm_pvalue:.3g}/{test.t_pvalue:.3g}{star}"
                cell += ")"
            cells.append(cell)
        lines.append(f"| {row.metric} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "| run | dataset | retriever | k | fusion | alpha | users |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in runs:
        c = r.config
        lines.append(
            f"| {r.label} | {r.dataset} | {c.retriever} | {c.k} | "
            f"{c.fusion} | {c.hybrid_alpha} | {', '.join(c.users)} |"
        )
    return "\n".join(lines) + "\n"


def plot_comparison(comparison: Comparison, out: Path) -> Path:
    """Grouped bars: each metric per configuration."""
    import numpy as np

    plt = _pyplot()
    rows = [r for r in comparison.metrics if r.metric in SCORED_METRICS]
    runs = comparison.runs
    x = np.arange(len(rows))
    width = 0.8 / max(1, len(runs))
    fig, ax = plt.subplots(figsize=(max(6.0, 1.4 * len(rows)), 3.8))
    for i, run in enumerate(runs):
        values = [float(r.values[i] or 0.0) for r in rows]
        ax.bar(x + i * width, values, width, label=run.label)
    ax.set_xticks(x + width * (len(runs) - 1) / 2, [SHORT.get(r.metric, r.metric) for r in rows])
    ax.tick_params(axis="x", labelrotation=30, labelsize=8)
    ax.set_ylim(0, 1.05)
    ax.legend(fontsize=7)
    ax.set_title("metric per configuration")
    fig.tight_layout()
    out.mkdir(parents=True, exist_ok=True)
    path = out / "compare.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
