"""LLM-judged answer metrics: the chat chain answers a sample of the evaluation questions (as
each evaluated principal), then RAGAS 0.4 scores those answers with a judge model, several
times, because LLM judges are noisy.

* **Answers.** `answer_samples` runs `ChatService.ask` -- the same chain as the UI, with the
  run's retriever, k and principal -- on a seeded random sample of (user, question) pairs.
  Answer-level facts need no judge: refused or not, cited sources, and whether any *cited*
  source is one the principal may not read (must never happen).
* **Judging.** `judge_answers` scores every answer with the legacy RAGAS metrics (prompt-based
  JSON parsing, so any chat model works, the bundled local one included):
  ``faithfulness`` and ``response_relevancy`` (on answers that were not refusals),
  ``llm_context_precision_with_reference`` and ``llm_context_recall`` (samples with a
  reference answer) or ``llm_context_precision_without_reference`` (samples without). A sample
  whose question the principal may not answer (expected ``no-access``) gets no context metric:
  its reference is not theirs to retrieve.
* **Repeats.** The whole judging pass runs ``repeats`` times; each metric reports the mean of
  the per-repeat means and their spread (standard deviation, min, max), and each sample its
  mean over repeats.
* **No silent NaN.** Every (sample, metric, repeat) is scored on its own; an exception, a
  timeout or a NaN is recorded as a failure naming the sample, metric, repeat and reason,
  left out of the means (``n`` says how many scores each mean covers), and fails the run's
  gate. Nothing is turned into a number that was not measured.
"""

from __future__ import annotations

import asyncio
import math
import random
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from rag_app.errors import ConfigError

if TYPE_CHECKING:
    from langchain_core.embeddings import Embeddings
    from langchain_core.language_models import BaseChatModel

    from rag_app.access.permissions import Principal
    from rag_app.app import App

FAITHFULNESS = "faithfulness"
RELEVANCY = "response_relevancy"
PRECISION_REF = "llm_context_precision_with_reference"
PRECISION_NOREF = "llm_context_precision_without_reference"
RECALL = "llm_context_recall"
LLM_METRICS: tuple[str, ...] = (FAITHFULNESS, RELEVANCY, PRECISION_REF, PRECISION_NOREF, RECALL)
# our name -> (class in ragas.metrics.collections, ragas' own metric name, the sample fields
# its `ascore` takes)
_RAGAS: dict[str, tuple[str, str, tuple[str, ...]]] = {
    FAITHFULNESS: (
        "Faithfulness",
        "faithfulness",
        ("user_input", "response", "retrieved_contexts"),
    ),
    RELEVANCY: ("AnswerRelevancy", "answer_relevancy", ("user_input", "response")),
    PRECISION_REF: (
        "ContextPrecisionWithReference",
        "context_precision_with_reference",
        ("user_input", "reference", "retrieved_contexts"),
    ),
    PRECISION_NOREF: (
        "ContextPrecisionWithoutReference",
        "context_precision_without_reference",
        ("user_input", "response", "retrieved_contexts"),
    ),
    RECALL: ("ContextRecall", "context_recall", ("user_input", "retrieved_contexts", "reference")),
}

RELEVANCY_TEMPERATURE = 0.3

Progress = Callable[..., Any]


@dataclass(frozen=True)
class ModelLimits:
    """How many calls to a judge or generator model run at once, and how long one may take."""

    max_workers: int
    timeout_s: float


# The bundled local model serves one request at a time, slowly on a CPU; a remote one more.
LOCAL_LIMITS = ModelLimits(max_workers=1, timeout_s=900.0)
REMOTE_LIMITS = ModelLimits(max_workers=4, timeout_s=120.0)


def model_limits(local: bool) -> ModelLimits:
    return LOCAL_LIMITS if local else REMOTE_LIMITS


@dataclass
class AnswerSample:
    """One chat answer to score."""

    key: str  # "<user>/<query id>", as in the run's rows
    user: str
    query_id: str
    user_input: str
    response: str
    contexts: list[str]
    reference: str | None
    refused: bool
    cited: list[int]
    cited_sources: list[str]
    restricted_cited: list[str]  # cited sources the principal may not read: must stay empty
    expected: str | None  # "answer" | "no-access" | None
    outcome: str | None  # what the stored ACLs say
    seconds: float
    error: str | None = None  # the chain failed on this sample

    def applicable(self) -> list[str]:
        if self.error is not None:
            return []
        metrics: list[str] = []
        if not self.refused and self.response.strip() and self.contexts:
            metrics += [FAITHFULNESS, RELEVANCY]
        if self.contexts and self.outcome != "no-access":
            metrics += [PRECISION_REF, RECALL] if self.reference else [PRECISION_NOREF]
        return metrics


@dataclass
class JudgeConfig:
    llm: BaseChatModel
    embeddings: Embeddings
    label: str
    repeats: int = 3
    max_workers: int = LOCAL_LIMITS.max_workers
    timeout_s: float = LOCAL_LIMITS.timeout_s


@dataclass
class Failure:
    key: str
    metric: str
    repeat: int
    reason: str

    def __str__(self) -> str:
        return f"{self.metric} failed on sample {self.key} (repeat {self.repeat}): {self.reason}"


@dataclass
class JudgeResult:
    # sample key -> metric -> repeat -> score (a failed score is absent, see `failures`)
    scores: dict[str, dict[str, dict[int, float]]] = field(default_factory=dict)
    failures: list[Failure] = field(default_factory=list)
    seconds: float = 0.0

    def sample_mean(self, key: str, metric: str) -> float | None:
        values = self.scores.get(key, {}).get(metric)
        return statistics.fmean(values.values()) if values else None

    def repeat_means(self, metric: str) -> list[float]:
        """The mean over samples of each repeat that scored `metric` at least once."""
        by_repeat: dict[int, list[float]] = {}
        for per in self.scores.values():
            for repeat, value in per.get(metric, {}).items():
                by_repeat.setdefault(repeat, []).append(value)
        return [statistics.fmean(by_repeat[r]) for r in sorted(by_repeat)]

    def aggregate(self) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        for metric in LLM_METRICS:
            means = self.repeat_means(metric)
            if not means:
                continue
            n = sum(1 for per in self.scores.values() if per.get(metric))
            out[metric] = {
                "mean": statistics.fmean(means),
                "std": statistics.stdev(means) if len(means) > 1 else 0.0,
                "min": min(means),
                "max": max(means),
                "repeat_means": means,
                "samples": n,
            }
        return out


# -- answers --------------------------------------------------------------------------------------
def choose(keys: Sequence[str], size: int, seed: int) -> list[str]:
    """A seeded random sample of `size` keys, in their original order."""
    if size >= len(keys):
        return list(keys)
    picked = set(random.Random(seed).sample(list(keys), size))  # noqa: S311 - sampling
    return [k for k in keys if k in picked]


def answer_samples(
    app: App,
    items: Sequence[tuple[str, Principal, Callable[[Mapping[str, Any]], bool], Any, Any]],
    *,
    k: int,
    progress: Progress | None = None,
) -> list[AnswerSample]:
    """Ask the chat chain each question as its principal. `items`: (key, principal, may_read,
    sample, row) where may_read checks a chunk's metadata independently of the permission code
    and row is the run's row for that (user, sample)."""
    from rag_app.chain.service import ChatError

    service = app.chat
    bar = progress(total=len(items), desc="answering", unit="question") if progress else None
    out: list[AnswerSample] = []
    try:
        for key, principal, may_read, sample, row in items:
            started = time.perf_counter()
            user, _, query_id = key.partition("/")
            answer = AnswerSample(
                key=key,
                user=user,
                query_id=query_id,
                user_input=sample.user_input,
                response="",
                contexts=[],
                reference=sample.reference,
                refused=False,
                cited=[],
                cited_sources=[],
                restricted_cited=[],
                expected=row.get("expected"),
                outcome=row.get("outcome"),
                seconds=0.0,
            )
            try:
                result = service.ask(principal, sample.user_input, k=k)
            except ChatError as exc:
                answer.error = f"{exc.stage}: {exc}"
            else:
                by_n = {s.n: s for s in result.sources}
                answer.response = result.answer
                answer.contexts = [s.text or s.snippet for s in result.sources]
                answer.refused = result.refused
                answer.cited = list(result.cited)
                answer.cited_sources = [by_n[n].source for n in result.cited if n in by_n]
                answer.restricted_cited = sorted(
                    {s.source for s in result.sources if not may_read(s.metadata)}
                )
            answer.seconds = time.perf_counter() - started
            out.append(answer)
            if bar is not None:
                bar.update(1)
    finally:
        if bar is not None:
            bar.close()
    return out


def answer_summary(answers: Sequence[AnswerSample]) -> dict[str, Any]:
    """Judge-free facts about the answers (counts, refusals where expected, restricted cites)."""
    ok = [a for a in answers if a.error is None]
    no_access = [a for a in ok if a.outcome == "no-access"]
    answerable = [a for a in ok if a.outcome == "answer"]
    return {
        "answers": len(answers),
        "chain_errors": len(answers) - len(ok),
        "refused": sum(1 for a in ok if a.refused),
        "cited_any": sum(1 for a in ok if a.cited),
        "no_access_refused": sum(1 for a in no_access if a.refused),
        "no_access_samples": len(no_access),
        "answerable_answered": sum(1 for a in answerable if not a.refused),
        "answerable_samples": len(answerable),
        "restricted_sources_in_context": sum(len(a.restricted_cited) for a in ok),
        "answer_s_mean": round(statistics.fmean(a.seconds for a in answers), 2)
        if answers
        else None,
    }


# -- judging --------------------------------------------------------------------------------------
def _metric(name: str, config: JudgeConfig) -> Any:
    """The ragas 0.4 collections metric for `name`, judging with `config.llm`."""
    import ragas.metrics.collections as rc

    from rag_app.evaluation.ragas_models import ChatModelLLM, ModelEmbeddings

    class_name, ragas_name, _ = _RAGAS[name]
    factory = getattr(rc, class_name)
    if name == RELEVANCY:
        # Its three generated questions are meant to differ: sample them as ragas' legacy
        # metric did (the judge model itself is deterministic).
        llm = ChatModelLLM(config.llm.bind(temperature=RELEVANCY_TEMPERATURE))
        metric = factory(llm=llm, embeddings=ModelEmbeddings(config.embeddings))
    else:
        metric = factory(llm=ChatModelLLM(config.llm))
    if metric.name != ragas_name:  # a renamed metric in a newer ragas must not go unnoticed
        raise ConfigError(f"ragas metric {class_name} is now called {metric.name!r}")
    return metric


def ragas_llm(llm: BaseChatModel) -> Any:
    """`llm` behind ragas 0.4's current LLM interface (for its test-set generator)."""
    from rag_app.evaluation.ragas_models import ChatModelLLM

    return ChatModelLLM(llm)


def ragas_embeddings(embeddings: Embeddings) -> Any:
    """`embeddings` behind ragas 0.4's current embedding interface."""
    from rag_app.evaluation.ragas_models import ModelEmbeddings

    return ModelEmbeddings(embeddings)


def _inputs(answer: AnswerSample, name: str) -> dict[str, Any]:
    fields = {
        "user_input": answer.user_input,
        "response": answer.response,
        "retrieved_contexts": list(answer.contexts),
        "reference": answer.reference,
    }
    return {f: fields[f] for f in _RAGAS[name][2]}


def judge_answers(
    answers: Sequence[AnswerSample],
    config: JudgeConfig,
    *,
    progress: Progress | None = None,
) -> JudgeResult:
    """Score every applicable (answer, metric) `config.repeats` times."""
    if config.repeats < 1:
        raise ConfigError("--judge-repeats must be at least 1")
    started = time.perf_counter()
    needed = sorted({m for a in answers for m in a.applicable()}, key=LLM_METRICS.index)
    metrics = {name: _metric(name, config) for name in needed}
    jobs = [(a, m) for a in answers for m in a.applicable()]
    result = JudgeResult()
    bar = (
        progress(total=len(jobs) * config.repeats, desc=f"judging ({config.label})", unit="score")
        if progress
        else None
    )

    async def score(answer: AnswerSample, name: str, repeat: int) -> None:
        try:
            value = await asyncio.wait_for(
                metrics[name].ascore(**_inputs(answer, name)), timeout=config.timeout_s
            )
        except TimeoutError:
            result.failures.append(
                Failure(
                    answer.key, name, repeat, f"no answer from the judge in {config.timeout_s} s"
                )
            )
        except Exception as exc:  # a judge failure is recorded, named and fails the gate
            result.failures.append(Failure(answer.key, name, repeat, short_error(exc)))
        else:
            value = getattr(value, "value", value)  # a MetricResult
            if not isinstance(value, int | float) or math.isnan(float(value)):
                result.failures.append(
                    Failure(answer.key, name, repeat, f"the metric returned {value!r}")
                )
            else:
                result.scores.setdefault(answer.key, {}).setdefault(name, {})[repeat] = float(value)
        finally:
            if bar is not None:
                bar.update(1)

    async def one_pass(repeat: int) -> None:
        gate = asyncio.Semaphore(max(1, config.max_workers))

        async def guarded(answer: AnswerSample, name: str) -> None:
            async with gate:
                await score(answer, name, repeat)

        await asyncio.gather(*(guarded(a, m) for a, m in jobs))

    async def all_passes() -> None:
        # One event loop for every pass: the model clients keep connections bound to it.
        for repeat in range(1, config.repeats + 1):
            await one_pass(repeat)

    try:
        run_coroutine(all_passes())
    finally:
        if bar is not None:
            bar.close()
    result.seconds = time.perf_counter() - started
    return result


def short_error(exc: BaseException) -> str:
    """``Type: first line of the message`` (at most 300 characters of it)."""
    text = str(exc).strip()
    detail = text.splitlines()[0][:300] if text else ""
    return f"{type(exc).__name__}: {detail}" if detail else type(exc).__name__


def run_coroutine(coro: Any) -> Any:
    """`asyncio.run`, also from code that already runs an event loop (Jupyter)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coro).result()


def answers_as_dicts(answers: Sequence[AnswerSample], judged: JudgeResult) -> list[dict[str, Any]]:
    rows = []
    for a in answers:
        row = asdict(a)
        row["scores"] = {
            m: {
                "mean": judged.sample_mean(a.key, m),
                "repeats": [judged.scores[a.key][m][r] for r in sorted(judged.scores[a.key][m])],
            }
            for m in LLM_METRICS
            if m in judged.scores.get(a.key, {})
        }
        rows.append(row)
    return rows
