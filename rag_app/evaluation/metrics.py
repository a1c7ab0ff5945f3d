"""Metrics: ranked retrieval metrics from ir-measures (trec_eval's definitions) and RAGAS
0.4 context metrics that need no LLM.

Nothing is averaged over silently missing values: a query that retrieved nothing scores 0 on
every ranked metric; a metric that does not apply to a sample (no reference ids, no reference
contexts) is ``None`` and the aggregate reports how many samples it covers; a metric that
*fails* or returns NaN on a sample raises `MetricError` naming the sample.
"""

from __future__ import annotations

import asyncio
import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from rag_app.errors import RagAppError
from rag_app.evaluation.judge import LLM_METRICS

# name in results -> ir-measures measure
RANKED_METRICS: dict[str, str] = {
    "ndcg@10": "nDCG@10",
    "recall@100": "R@100",
    "mrr@10": "RR@10",
    "map": "AP@100",
}
ID_METRICS = ("id_based_context_precision", "id_based_context_recall")
TEXT_METRICS = ("non_llm_context_precision_with_reference", "non_llm_context_recall")
# every per-sample metric a run can report, in report order
SCORED_METRICS = (*RANKED_METRICS, *ID_METRICS, *TEXT_METRICS, *LLM_METRICS)


class MetricError(RagAppError):
    """A metric failed (or returned NaN) on a sample; the message names the sample."""


# -- ranked metrics -------------------------------------------------------------------------------
def ranked_scores(
    qrels: Mapping[str, Mapping[str, int]],
    run: Mapping[str, Sequence[str]],
    metrics: Sequence[str] = tuple(RANKED_METRICS),
) -> dict[str, dict[str, float]]:
    """Per-query scores {metric: {query key: score}} for every query in `qrels` with at least
    one relevant document. `run` holds each query's ranked document ids (best first); a query
    missing from `run` or with an empty ranking scores 0."""
    import ir_measures

    unknown = [m for m in metrics if m not in RANKED_METRICS]
    if unknown:
        raise MetricError(f"unknown ranked metric(s) {unknown}; known: {list(RANKED_METRICS)}")
    judged = {q: dict(r) for q, r in qrels.items() if any(g > 0 for g in r.values())}
    measures = {ir_measures.parse_measure(RANKED_METRICS[m]): m for m in metrics}
    # Scores strictly decreasing by rank, so the evaluator keeps our order exactly.
    scored_run = {
        q: {doc: float(len(ranking) - i) for i, doc in enumerate(dict.fromkeys(ranking))}
        for q, ranking in run.items()
        if q in judged and ranking
    }
    out: dict[str, dict[str, float]] = {m: dict.fromkeys(judged, 0.0) for m in metrics}
    if scored_run:
        for item in ir_measures.iter_calc(list(measures), judged, scored_run):
            value = float(item.value)
            if math.isnan(value):
                raise MetricError(f"{measures[item.measure]} is NaN for query {item.query_id!r}")
            out[measures[item.measure]][item.query_id] = value
    return out


# -- RAGAS ----------------------------------------------------------------------------------------
@dataclass
class ContextSample:
    key: str  # names the sample in errors: "<user>/<query id>"
    user_input: str
    retrieved_ids: list[str]
    retrieved_contexts: list[str]
    reference_ids: list[str] | None = None
    reference_contexts: list[str] | None = None


def ragas_scores(
    samples: Sequence[ContextSample], *, show_progress: bool = True
) -> dict[str, list[float | None]]:
    """RAGAS context metrics per sample (``None`` where a metric does not apply):

    * ``id_based_context_precision`` / ``id_based_context_recall`` where reference ids exist;
    * ``non_llm_context_precision_with_reference`` / ``non_llm_context_recall`` where
      reference contexts exist (string similarity via rapidfuzz, threshold 0.5).

    A sample that retrieved nothing scores 0 on the metrics that apply to it (RAGAS itself
    would return NaN for precision)."""
    n = len(samples)
    out: dict[str, list[float | None]] = {m: [None] * n for m in (*ID_METRICS, *TEXT_METRICS)}
    id_rows: list[int] = []
    text_rows: list[int] = []
    for i, s in enumerate(samples):
        if s.reference_ids:
            if s.retrieved_ids:
                id_rows.append(i)
            else:
                for m in ID_METRICS:
                    out[m][i] = 0.0
        if s.reference_contexts:
            if s.retrieved_contexts:
                text_rows.append(i)
            else:
                for m in TEXT_METRICS:
                    out[m][i] = 0.0
    if id_rows:
        _run_ragas(samples, id_rows, ID_METRICS, out, show_progress)
    if text_rows:
        _run_ragas(samples, text_rows, TEXT_METRICS, out, show_progress)
    return out


def _metric_objects(names: Sequence[str]) -> list[Any]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        from ragas.metrics import (
            IDBasedContextPrecision,
            IDBasedContextRecall,
            NonLLMContextPrecisionWithReference,
            NonLLMContextRecall,
        )
    factories: dict[str, Any] = {
        "id_based_context_precision": IDBasedContextPrecision,
        "id_based_context_recall": IDBasedContextRecall,
        "non_llm_context_precision_with_reference": NonLLMContextPrecisionWithReference,
        "non_llm_context_recall": NonLLMContextRecall,
    }
    metrics = [factories[name]() for name in names]
    for name, metric in zip(names, metrics, strict=True):
        if metric.name != name:  # a renamed metric in a newer ragas must not go unnoticed
            raise MetricError(f"ragas metric {name!r} is now called {metric.name!r}")
    return metrics


def _sample(s: ContextSample, names: Sequence[str]) -> Any:
    from ragas import SingleTurnSample

    if names == ID_METRICS:
        return SingleTurnSample(
            user_input=s.user_input,
            retrieved_context_ids=list(s.retrieved_ids),
            reference_context_ids=list(s.reference_ids or []),
        )
    return SingleTurnSample(
        user_input=s.user_input,
        retrieved_contexts=list(s.retrieved_contexts),
        reference_contexts=list(s.reference_contexts or []),
    )


def _run_ragas(
    samples: Sequence[ContextSample],
    rows: list[int],
    names: Sequence[str],
    out: dict[str, list[float | None]],
    show_progress: bool,
) -> None:
    from ragas import EvaluationDataset, evaluate

    metrics = _metric_objects(names)
    dataset = EvaluationDataset(samples=[_sample(samples[i], names) for i in rows])
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # evaluate() -> @experiment
            result: Any = evaluate(
                dataset,
                metrics=metrics,
                raise_exceptions=True,  # ragas' default (False) turns failures into NaN
                show_progress=show_progress,
            )
    except Exception as exc:
        culprit = _find_failing_sample(samples, rows, names, metrics)
        where = f" on sample {culprit}" if culprit else ""
        raise MetricError(f"ragas metric failed{where}: {type(exc).__name__}: {exc}") from exc
    scores = result.scores
    if len(scores) != len(rows):
        raise MetricError(f"ragas returned {len(scores)} scores for {len(rows)} samples")
    for row, score in zip(rows, scores, strict=True):
        for name in names:
            value = score.get(name)
            if value is None or not isinstance(value, int | float) or math.isnan(value):
                raise MetricError(
                    f"ragas metric {name} returned {value!r} for sample {samples[row].key}"
                )
            out[name][row] = float(value)


def _find_failing_sample(
    samples: Sequence[ContextSample], rows: list[int], names: Sequence[str], metrics: list[Any]
) -> str | None:
    """Score samples one by one to name the first that fails."""

    async def probe() -> str | None:
        for i in rows:
            sample = _sample(samples[i], names)
            for metric in metrics:
                try:
                    await metric.single_turn_ascore(sample)
                except Exception:
                    return samples[i].key
        return None

    try:
        return asyncio.run(probe())
    except Exception:
        return None


# -- aggregation ----------------------------------------------------------------------------------
def mean_of(values: Sequence[float | None]) -> tuple[float | None, int]:
    """Mean over applicable values (None = not applicable) and how many there were."""
    present = [v for v in values if v is not None]
    if not present:
        return None, 0
    return sum(present) / len(present), len(present)
