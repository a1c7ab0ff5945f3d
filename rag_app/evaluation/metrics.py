"""Metrics: ranked retrieval metrics from ir-measures (trec_eval's definitions) and RAGAS
0.4 context metrics that need no LLM.

Nothing is averaged over silently missing values: a query that retrieved nothing scores 0 on
every ranked metric; a metric that does not apply to a sample (no reference ids, no reference
contexts) is ``None`` and the aggregate reports how many samples it covers; a metric that
*fails* or returns NaN on a sample raises `MetricError` naming the sample.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

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


def ragas_scores(samples: Sequence[ContextSample]) -> dict[str, list[float | None]]:
    """RAGAS' context metrics that need no LLM, per sample (``None`` where one does not apply):

    * ``id_based_context_precision`` / ``id_based_context_recall`` where reference ids exist:
      the share of distinct retrieved ids that are references, and of references retrieved;
    * ``non_llm_context_precision_with_reference`` / ``non_llm_context_recall`` where
      reference contexts exist. A retrieved context is relevant when its best string
      similarity to a reference is >= 0.5, and precision is the average precision over those
      verdicts in rank order; a reference is recalled when its best similarity to a retrieved
      context is > 0.5. Similarity is 1 - the normalised Levenshtein distance (rapidfuzz), as
      in ragas' `NonLLMStringSimilarity`.

    These are RAGAS 0.4's definitions (``IDBasedContextPrecision/Recall`` and
    ``NonLLMContextPrecisionWithReference``/``NonLLMContextRecall``, thresholds and the
    asymmetric ``>=``/``>`` included). ragas deprecates those classes and its current
    ``ragas.metrics.collections`` has no replacement, so they are computed here; a test checks
    them against ragas' own classes while ragas still ships them. A sample that retrieved
    nothing scores 0 on the metrics that apply to it (RAGAS itself would return NaN)."""
    n = len(samples)
    out: dict[str, list[float | None]] = {m: [None] * n for m in (*ID_METRICS, *TEXT_METRICS)}
    similarity = _string_similarity()
    for i, s in enumerate(samples):
        try:
            if s.reference_ids:
                precision, recall = _id_scores(s.retrieved_ids, s.reference_ids)
                out[ID_METRICS[0]][i], out[ID_METRICS[1]][i] = precision, recall
            if s.reference_contexts:
                precision, recall = _text_scores(
                    s.retrieved_contexts, s.reference_contexts, similarity
                )
                out[TEXT_METRICS[0]][i], out[TEXT_METRICS[1]][i] = precision, recall
        except Exception as exc:  # named, never turned into a number
            raise MetricError(
                f"context metric failed on sample {s.key}: {type(exc).__name__}: {exc}"
            ) from exc
        for name in (*ID_METRICS, *TEXT_METRICS):
            value = out[name][i]
            if value is not None and math.isnan(value):
                raise MetricError(f"{name} returned nan for sample {s.key}")
    return out


TEXT_THRESHOLD = 0.5  # ragas' default for both non-LLM context metrics


def _id_scores(retrieved: Sequence[str], reference: Sequence[str]) -> tuple[float, float]:
    got = {str(x) for x in retrieved}
    want = {str(x) for x in reference}
    if not got:
        return 0.0, 0.0
    hits = len(got & want)
    return hits / len(got), hits / len(want)


def _text_scores(
    retrieved: Sequence[str], reference: Sequence[str], similarity: Callable[[str, str], float]
) -> tuple[float, float]:
    if not retrieved:
        return 0.0, 0.0
    table = [[similarity(r, ref) for ref in reference] for r in retrieved]
    verdicts = [1 if max(row) >= TEXT_THRESHOLD else 0 for row in table]
    hits = 0
    numerator = 0.0
    for rank, verdict in enumerate(verdicts, start=1):
        hits += verdict
        numerator += hits / rank * verdict
    precision = numerator / (sum(verdicts) + 1e-10)  # ragas' average precision, epsilon kept
    recalled = [max(table[i][j] for i in range(len(retrieved))) for j in range(len(reference))]
    recall = sum(1 for v in recalled if v > TEXT_THRESHOLD) / len(reference)
    return precision, recall


def _string_similarity() -> Callable[[str, str], float]:
    """ragas' `NonLLMStringSimilarity` with its default measure: 1 - the normalised Levenshtein
    distance (rapidfuzz), as a plain function (ragas' own is async, one event loop per pair)."""
    from rapidfuzz.distance import Levenshtein

    def similarity(retrieved: str, reference: str) -> float:
        return 1.0 - float(Levenshtein.normalized_distance(retrieved, reference))

    return similarity


# -- aggregation ----------------------------------------------------------------------------------
def mean_of(values: Sequence[float | None]) -> tuple[float | None, int]:
    """Mean over applicable values (None = not applicable) and how many there were."""
    present = [v for v in values if v is not None]
    if not present:
        return None, 0
    return sum(present) / len(present), len(present)
