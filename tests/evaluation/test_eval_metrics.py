"""Metrics on tiny hand-made judgements with values worked out by hand."""

from __future__ import annotations

import asyncio
import math
import random
import warnings
from typing import Any

import pytest

from rag_app.evaluation import metrics as metrics_module
from rag_app.evaluation.metrics import (
    ContextSample,
    MetricError,
    mean_of,
    ragas_scores,
    ranked_scores,
)
from rag_app.evaluation.report import paired_test

QRELS = {"q1": {"d1": 1, "d2": 1}, "q2": {"d3": 1}, "q3": {"d4": 1}, "q4": {"d5": 0}}
RUN = {"q1": ["d1", "x", "d2"], "q2": ["x", "d3"], "q3": []}


def legacy_metric(class_name: str) -> Any:
    """A metric class of ragas.metrics: ragas 0.4 deprecates that import, and
    ragas.metrics.collections has no ID-based or non-LLM context metric, so rag_app computes
    them itself and checks itself against these while ragas ships them."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import ragas.metrics

        return getattr(ragas.metrics, class_name)


def test_ranked_metrics_known_values() -> None:
    scores = ranked_scores(QRELS, RUN)
    log2 = math.log2
    assert scores["ndcg@10"]["q1"] == pytest.approx((1 + 1 / log2(4)) / (1 + 1 / log2(3)))
    assert scores["ndcg@10"]["q2"] == pytest.approx(1 / log2(3))
    assert scores["mrr@10"] == pytest.approx({"q1": 1.0, "q2": 0.5, "q3": 0.0})
    assert scores["map"] == pytest.approx({"q1": (1 + 2 / 3) / 2, "q2": 0.5, "q3": 0.0})
    assert scores["recall@100"] == pytest.approx({"q1": 1.0, "q2": 1.0, "q3": 0.0})
    # a judged query with an empty ranking scores 0; a query without positives is not scored
    assert scores["ndcg@10"]["q3"] == 0.0
    assert "q4" not in scores["ndcg@10"]


def test_ranked_metrics_keep_our_order_and_cut_off() -> None:
    ranking = [f"x{i}" for i in range(10)] + ["d1"]  # rank 11: outside @10
    scores = ranked_scores({"q": {"d1": 1}}, {"q": ranking})
    assert scores["ndcg@10"]["q"] == 0.0 and scores["mrr@10"]["q"] == 0.0
    assert scores["recall@100"]["q"] == 1.0
    with pytest.raises(MetricError, match="unknown ranked metric"):
        ranked_scores(QRELS, RUN, metrics=["p@5"])


def test_ragas_id_and_text_metrics() -> None:
    samples = [
        ContextSample("u/a", "q", ["d1", "x", "y", "d2"], ["t"] * 4, ["d1", "d2", "d9"]),
        ContextSample("u/b", "q", [], [], ["d1"]),  # nothing retrieved
        ContextSample(
            "u/c",
            "q",
            ["d1"],
            ["the cat sat on the mat", "completely unrelated text here"],
            None,
            ["the cat sat on a mat", "a passage nobody retrieved at all"],
        ),
        ContextSample("u/d", "q", ["d1"], ["t"], None, None),  # nothing to score against
    ]
    out = ragas_scores(samples)
    assert out["id_based_context_precision"] == [pytest.approx(0.5), 0.0, None, None]
    assert out["id_based_context_recall"] == [pytest.approx(2 / 3), 0.0, None, None]
    # one of two retrieved contexts matches a reference (average precision over verdicts
    # [1, 0] = 1), one of two references is recalled
    assert out["non_llm_context_precision_with_reference"][2] == pytest.approx(1.0)
    assert out["non_llm_context_recall"][2] == pytest.approx(0.5)
    assert out["non_llm_context_recall"][:2] == [None, None]
    assert mean_of(out["id_based_context_recall"]) == (pytest.approx(1 / 3), 2)
    assert mean_of([None, None]) == (None, 0)


def test_context_metrics_match_ragas_own_classes() -> None:
    """rag_app computes RAGAS' non-LLM context metrics itself (ragas deprecates the classes and
    has no current replacement): on random samples, every score equals ragas' own."""
    from ragas import SingleTurnSample

    rng = random.Random(7)
    vocab = [
        "cell",
        "protein",
        "gene",
        "virus",
        "tumour",
        "dose",
        "trial",
        "mouse",
        "blood",
        "brain",
        "risk",
        "rate",
    ]

    def text() -> str:
        return " ".join(rng.choice(vocab) for _ in range(rng.randint(3, 12)))

    def near(t: str) -> str:  # a light edit: similar enough to match, or not
        words = t.split()
        words[rng.randrange(len(words))] = rng.choice(vocab)
        return " ".join(words)

    samples = []
    for n in range(120):
        references = [text() for _ in range(rng.randint(1, 4))]
        retrieved = [near(rng.choice(references)) if rng.random() < 0.5 else text()]
        retrieved += [text() for _ in range(rng.randint(0, 5))]
        rng.shuffle(retrieved)
        ids = [f"d{rng.randint(0, 9)}" for _ in range(rng.randint(1, 8))]
        wanted = [f"d{rng.randint(0, 9)}" for _ in range(rng.randint(1, 4))]
        samples.append(ContextSample(f"u/{n}", "q", ids, retrieved, wanted, references))
    ours = ragas_scores(samples)
    classes = {
        "id_based_context_precision": "IDBasedContextPrecision",
        "id_based_context_recall": "IDBasedContextRecall",
        "non_llm_context_precision_with_reference": "NonLLMContextPrecisionWithReference",
        "non_llm_context_recall": "NonLLMContextRecall",
    }

    async def theirs(name: str, s: ContextSample) -> float:
        sample = SingleTurnSample(
            user_input=s.user_input,
            retrieved_contexts=s.retrieved_contexts,
            reference_contexts=s.reference_contexts,
            retrieved_context_ids=s.retrieved_ids,
            reference_context_ids=s.reference_ids,
        )
        return float(await legacy_metric(classes[name])().single_turn_ascore(sample))

    matched = {name: 0 for name in classes}
    for name in classes:
        for i, s in enumerate(samples):
            expected = asyncio.run(theirs(name, s))
            assert ours[name][i] == pytest.approx(expected, abs=1e-9), (name, s.key)
            matched[name] += 1
    assert matched == dict.fromkeys(classes, len(samples))
    # both verdicts occur, so the thresholds were really exercised
    assert 0 < sum(v == 1.0 for v in ours["non_llm_context_recall"]) < len(samples)


def test_a_nan_from_a_context_metric_is_an_error_naming_the_sample(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real = metrics_module._id_scores

    def nan_for_b(retrieved: Any, reference: Any) -> tuple[float, float]:
        return (1.0, math.nan) if "zzz" in retrieved else real(retrieved, reference)

    monkeypatch.setattr(metrics_module, "_id_scores", nan_for_b)
    samples = [
        ContextSample("ann/q1", "q", ["d1"], ["t"], ["d1"]),
        ContextSample("ann/q2", "q", ["zzz"], ["t"], ["d1"]),
    ]
    with pytest.raises(MetricError, match="id_based_context_recall returned nan for sample ann/q2"):
        ragas_scores(samples)


def test_a_failing_context_metric_names_the_sample(monkeypatch: pytest.MonkeyPatch) -> None:
    real = metrics_module._id_scores

    def boom(retrieved: Any, reference: Any) -> tuple[float, float]:
        if "bad" in retrieved:
            raise RuntimeError("broken sample")
        return real(retrieved, reference)

    monkeypatch.setattr(metrics_module, "_id_scores", boom)
    samples = [
        ContextSample("bob/ok", "q", ["d1"], ["t"], ["d1"]),
        ContextSample("bob/broken", "q", ["bad"], ["t"], ["d1"]),
    ]
    with pytest.raises(MetricError, match=r"failed on sample bob/broken.*broken sample"):
        ragas_scores(samples)
    assert metrics_module.RANKED_METRICS["ndcg@10"] == "nDCG@10"


def test_paired_test() -> None:
    base = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.2, 0.3, 0.1, 0.4, 0.5, 0.3, 0.2, 0.6, 0.4, 0.1]
    better = [b + 0.2 for b in base]
    result = paired_test(base, better)
    assert result["n"] == len(base)
    assert result["mean_delta"] == pytest.approx(0.2)
    assert result["perm_pvalue"] < 0.01 and result["t_pvalue"] < 0.01
    same = paired_test(base, base)
    assert same["perm_pvalue"] == 1.0 and same["mean_delta"] == 0.0
    noisy = paired_test([0.0, 1.0, 0.0, 1.0], [1.0, 0.0, 1.0, 0.0])
    assert noisy["perm_pvalue"] > 0.5
