"""The results of an evaluation run, typed: what ``results.json`` holds and ``eval compare``
writes to ``compare.json``.

The models keep the JSON keys (and their order) that version 1 of the file always had, so a
results file written before these models existed reads as it is and writes back byte for byte.
Two sections hold per-metric values under the metric's own name (``"ndcg@10": 0.71``): the
aggregate (`MetricSummary`) and each per-query row (`QueryRow`). In Python they are the
``metrics`` mapping of the model, flattened into the object in JSON.

``schema_version`` (``"version"`` in the file) is the contract: a change of shape bumps it, and
`read_results` says so by name instead of failing later with a KeyError. A file that is not
valid for its version is rejected with the file, the JSON location and the problem.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    ValidationError,
    field_validator,
    model_serializer,
    model_validator,
)

from rag_app.errors import RagAppError
from rag_app.evaluation.judge import LLM_METRICS
from rag_app.evaluation.metrics import SCORED_METRICS
from rag_app.settings import FusionName, RetrieverName

RESULTS_VERSION: Final = 1  # bump on any change of shape; keep reading the old ones
RESULTS_FILE = "results.json"

Outcome = Literal["answer", "no-access"]
IdField = Literal["doc_id", "source"]
DatasetKind = Literal["beir", "ragas"]


class ResultsError(RagAppError):
    """A results file is missing, unreadable, of another schema version, or malformed (the
    message names the file and what is wrong)."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


def _flat_metrics(data: Any, names: tuple[str, ...]) -> Any:
    """JSON -> model: the metric-named keys of an object move into its ``metrics`` mapping."""
    if not isinstance(data, Mapping):
        return data
    out = dict(data)
    metrics = dict(out.pop("metrics", None) or {})
    for name in names:
        if name in out:
            metrics[name] = out.pop(name)
    out["metrics"] = metrics
    return out


def _check_metric_names(values: Mapping[str, Any], names: tuple[str, ...]) -> None:
    unknown = sorted(set(values) - set(names))
    if unknown:
        raise ValueError(f"unknown metric(s) {', '.join(unknown)}; known: {', '.join(names)}")


# -- the run's inputs -----------------------------------------------------------------------------
class DatasetInfo(_Model):
    """The evaluated dataset, as `EvalDataset.describe` records it."""

    name: str
    kind: DatasetKind
    path: str
    split: str | None
    samples: int
    corpus: list[str]
    overrides: dict[str, Any]
    id_field: IdField
    users_file: str | None


class RunConfig(_Model):
    """How the run retrieved (for reproduction and for `eval compare`)."""

    retriever: RetrieverName
    k: int
    depth: int
    users: list[str]
    limit: int | None
    collection: str
    store: str
    embedding_model: str
    chunk_size: int
    chunk_overlap: int
    fusion: FusionName
    hybrid_alpha: float
    rrf_k: int
    hybrid: dict[str, Any]  # the searcher's own configuration
    bm25: dict[str, Any] | None  # the BM25 index' configuration (bm25 and hybrid runs)
    command: str | None
    python: str
    platform: str


class Timings(_Model):
    ingest_s: float
    bm25_index_s: float
    store_scan_s: float
    retrieval_s: float
    query_ms_mean: float | None
    query_ms_p95: float | None
    metrics_s: float
    total_s: float


# -- per query and aggregated ---------------------------------------------------------------------
class QueryRow(_Model):
    """One (user, sample): what was retrieved, leaked, and how it scored. ``metrics`` holds
    every metric computed for the run (``None`` where it does not apply to this sample); in
    JSON they follow ``latency_ms`` under their own names."""

    key: str  # "<user>/<query id>"
    user: str
    query_id: str
    query: str
    relevant: int
    permitted: int
    expected: Outcome | None
    outcome: Outcome | None
    retrieved_chunks: int
    leaked_chunks: int
    leaked_ids: list[str]
    restricted_sources: list[str]
    top_documents: list[str]
    context_ids: list[str]
    latency_ms: float
    metrics: dict[str, float | None] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _gather(cls, data: Any) -> Any:
        return _flat_metrics(data, SCORED_METRICS)

    @field_validator("metrics")
    @classmethod
    def _known(cls, value: dict[str, float | None]) -> dict[str, float | None]:
        _check_metric_names(value, SCORED_METRICS)
        return value

    @model_serializer(mode="wrap")
    def _flatten(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        data: dict[str, Any] = handler(self)
        metrics = data.pop("metrics", None) or {}
        return {**data, **metrics}


class MetricSummary(_Model):
    """Means over the samples each metric applies to (``n``: how many), and the permission
    counters. In JSON the metrics follow ``samples`` under their own names; a metric that
    applied to no sample is absent."""

    samples: int
    metrics: dict[str, float] = Field(default_factory=dict)
    leak_rate: float
    leaked_chunks: int
    retrieved_chunks: int
    no_access_samples: int
    restricted_source_hits: int
    expectation_mismatches: int
    n: dict[str, int]
    # only in a run's aggregate, and only with LLM-judged answers (absent otherwise)
    llm_failures: int | None = None
    restricted_sources_in_answers: int | None = None

    @model_validator(mode="before")
    @classmethod
    def _gather(cls, data: Any) -> Any:
        return _flat_metrics(data, SCORED_METRICS)

    @field_validator("metrics", "n")
    @classmethod
    def _known(cls, value: dict[str, Any]) -> dict[str, Any]:
        _check_metric_names(value, SCORED_METRICS)
        return value

    @model_serializer(mode="wrap")
    def _flatten(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        data: dict[str, Any] = handler(self)
        out: dict[str, Any] = {}
        if "samples" in data:
            out["samples"] = data.pop("samples")
        out.update(data.pop("metrics", None) or {})
        out.update(data)
        for optional in ("llm_failures", "restricted_sources_in_answers"):
            if out.get(optional, 0) is None:
                del out[optional]
        return out

    def numbers(self) -> dict[str, float]:
        """Every numeric value by its JSON name: what ``--fail-under`` may gate on."""
        return {
            name: float(value)
            for name, value in self.model_dump(by_alias=True).items()
            if isinstance(value, int | float) and not isinstance(value, bool)
        }


class Mismatch(_Model):
    """A sample whose expected outcome for a user contradicts the stored ACLs."""

    user: str
    query_id: str
    expected: Outcome
    actual: Outcome


# -- LLM-judged answers ---------------------------------------------------------------------------
class JudgeRunConfig(_Model):
    judge: str
    chat_model: str
    samples: int
    repeats: int
    seed: int
    max_workers: int
    timeout_s: float


class JudgedMetric(_Model):
    """One LLM-judged metric: the mean of the per-repeat means and their spread."""

    mean: float
    std: float
    min: float
    max: float
    repeat_means: list[float]
    samples: int


class AnswersSummary(_Model):
    answers: int
    chain_errors: int
    refused: int
    cited_any: int
    no_access_refused: int
    no_access_samples: int
    answerable_answered: int
    answerable_samples: int
    restricted_sources_in_context: int
    answer_s_mean: float | None


class JudgeTimings(_Model):
    answers_s: float
    judging_s: float


class SampleScore(_Model):
    mean: float | None
    repeats: list[float]


class JudgedAnswer(_Model):
    """One chat answer (`rag_app.evaluation.judge.AnswerSample`) and its judged scores."""

    key: str
    user: str
    query_id: str
    user_input: str
    response: str
    contexts: list[str]
    reference: str | None
    refused: bool
    cited: list[int]
    cited_sources: list[str]
    restricted_cited: list[str]
    expected: Outcome | None
    outcome: Outcome | None
    seconds: float
    error: str | None  # the chat chain failed on this sample
    scores: dict[str, SampleScore]  # metric -> the judge's scores (absent: not applicable)

    @field_validator("scores")
    @classmethod
    def _known(cls, value: dict[str, SampleScore]) -> dict[str, SampleScore]:
        _check_metric_names(value, LLM_METRICS)
        return value


class LLMSection(_Model):
    """``eval run --judge-samples``: the sampled answers and what the judge made of them."""

    config: JudgeRunConfig
    aggregate: dict[str, JudgedMetric]
    answers_summary: AnswersSummary
    failures: list[str]
    timings: JudgeTimings
    answers: list[JudgedAnswer]

    @field_validator("aggregate")
    @classmethod
    def _known(cls, value: dict[str, JudgedMetric]) -> dict[str, JudgedMetric]:
        _check_metric_names(value, LLM_METRICS)
        return value


# -- the file -------------------------------------------------------------------------------------
class EvalResults(_Model):
    """``results.json``."""

    schema_version: Literal[1] = Field(RESULTS_VERSION, alias="version")
    created: str  # ISO 8601, UTC
    dataset: DatasetInfo
    config: RunConfig
    ingest: dict[str, Any]  # the ingest report of the evaluation collection (empty: none)
    timings: Timings
    aggregate: MetricSummary
    per_user: dict[str, MetricSummary]  # only when several users were evaluated
    expectation_mismatches: list[Mismatch]
    llm: LLMSection | None
    queries: list[QueryRow]

    def to_json(self) -> str:
        """The file's text (the same layout as every results.json before these models)."""
        return json.dumps(self.model_dump(by_alias=True), indent=2, ensure_ascii=False) + "\n"

    def write(self, folder: Path) -> Path:
        path = folder / RESULTS_FILE
        path.write_text(self.to_json(), encoding="utf-8")
        return path


def read_results(path: Path) -> EvalResults:
    """A run folder's (or a file's) results; `ResultsError` names the file and the problem."""
    file = path / RESULTS_FILE if path.is_dir() else path
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ResultsError(f"{path}: no {RESULTS_FILE} (is it a run folder?)") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ResultsError(f"{file}: cannot read results: {exc}") from exc
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise ResultsError(f"{file}: cannot read results: {exc}") from exc
    return parse_results(data, source=file)


def parse_results(data: Any, *, source: Path | str) -> EvalResults:
    """Validate a decoded results document; `source` names it in errors."""
    if not isinstance(data, dict) or "aggregate" not in data or "queries" not in data:
        raise ResultsError(f"{source}: not an evaluation results file")
    version = data.get("version")
    if "version" not in data:
        raise ResultsError(
            f"{source}: results file without a schema 'version' (this rag_app reads version "
            f"{RESULTS_VERSION})"
        )
    if type(version) is not int or version != RESULTS_VERSION:
        newer = type(version) is int and version > RESULTS_VERSION
        raise ResultsError(
            f"{source}: results schema version {version!r} is not supported: this rag_app "
            f"reads version {RESULTS_VERSION}"
            + ("; the file was written by a newer rag_app" if newer else "")
        )
    try:
        return EvalResults.model_validate(data)
    except ValidationError as exc:
        raise ResultsError(
            f"{source}: not a valid results file (schema version {RESULTS_VERSION}): "
            + validation_problems(exc)
        ) from None


def validation_problems(exc: ValidationError, *, limit: int = 5) -> str:
    """``where: what`` for the first `limit` errors, ``where`` as a JSON path of the file."""
    errors = exc.errors()
    shown = [f"{_location(e['loc'])}: {e['msg']}" for e in errors[:limit]]
    more = len(errors) - limit
    return "; ".join(shown) + (f" (and {more} more)" if more > 0 else "")


def _location(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if part == "metrics":  # flattened into the object in JSON
            continue
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(document)"


# -- runs read back, and their comparison ---------------------------------------------------------
@dataclass(frozen=True)
class LoadedRun:
    """A run's results and the folder (or file) they were read from."""

    path: Path
    results: EvalResults

    @property
    def label(self) -> str:
        return self.path.name or "run"


def load_run(path: Path) -> LoadedRun:
    return LoadedRun(path, read_results(path))


class PairedTest(_Model):
    """Paired tests of run - baseline over the samples both scored."""

    n: int
    mean_delta: float | None
    t_pvalue: float | None
    perm_pvalue: float | None
    significant: bool = False


class MetricComparison(_Model):
    metric: str
    values: list[float | None]  # per run
    deltas: list[float | None]  # per run: value - baseline value
    tests: list[PairedTest | None]  # per run (None: the baseline, or no per-sample values)


class ComparedRun(_Model):
    label: str
    path: str
    config: RunConfig
    dataset: str


class Comparison(_Model):
    """``compare.json``: the first run is the baseline."""

    runs: list[ComparedRun]
    alpha: float
    metrics: list[MetricComparison]

    def to_json(self) -> str:
        return json.dumps(self.model_dump(by_alias=True), indent=2)
