"""Run an evaluation: ingest the dataset's corpus into its own collection (once), retrieve for
every sample as a principal through the application's own `Searcher`, score, aggregate.

* **Evaluation collection.** A dataset with a corpus is ingested with the project's `Ingestor`
  into a collection named ``eval-<name>-<hash>``, the hash covering the corpus bytes, metadata
  overrides, embedding model and chunking settings. The next run finds every file unchanged
  and embeds nothing (and the BM25 index is loaded from disk).
* **One retrieval per sample.** Each sample is searched once, deep enough to rank
  ``depth`` (100) documents; the first ``k`` chunks of that ranking are the sample's contexts
  (what a chat would see) and feed the RAGAS metrics, the document ranking (chunk hits mapped to
  document ids, max aggregation: a document ranks where its best chunk does) feeds the ranked
  metrics.
* **Permission-aware.** Samples run as a principal: anonymous ``eval`` for BEIR corpora
  without ACLs, otherwise each ``--as-user``. Relevant documents the user may not read are
  removed from the judgements (recall over permitted documents). Every retrieved chunk is
  checked, independently of `rag_app.access.permissions`, against the users file and the
  chunk's tenant/acl: the leak rate must be 0. A sample's ``expected`` outcome per user
  (``answer``: some reference visible; ``no-access``: none) is checked against the stored ACLs.
"""

from __future__ import annotations

import hashlib
import json
import platform
import re
import statistics
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rag_app.access.permissions import Principal
from rag_app.errors import ConfigError
from rag_app.evaluation.datasets import (
    DatasetError,
    EvalDataset,
    EvalSample,
    corpus_fingerprint,
)
from rag_app.evaluation.judge import LLM_METRICS
from rag_app.evaluation.metrics import (
    ID_METRICS,
    RANKED_METRICS,
    SCORED_METRICS,
    TEXT_METRICS,
    ContextSample,
    mean_of,
    ragas_scores,
    ranked_scores,
)
from rag_app.evaluation.results import (
    RESULTS_VERSION,
    EvalResults,
    LLMSection,
    MetricSummary,
    Mismatch,
    QueryRow,
    RunConfig,
    Timings,
)
from rag_app.settings import RetrieverName
from rag_app.stores.base import StoreHit

if TYPE_CHECKING:
    from rag_app.app import App

MAX_CHUNKS = 1000  # SecureSearch's k limit
Progress = Callable[..., Any]  # tqdm-like factory: (total=, desc=, unit=) -> bar


@dataclass
class RunOptions:
    retriever: RetrieverName | None = None  # default RAG_RETRIEVER
    k: int | None = None  # contexts (chunks) per sample; default RAG_K
    depth: int = 100  # documents ranked per sample for the ranked metrics
    users: Sequence[str] = ()  # () = anonymous principal of the corpus tenant; "all" expands
    limit: int | None = None  # only the first N samples (quick looks)
    show_progress: bool = True
    command: str | None = None  # the command line, for reproduction
    judge_samples: int = 0  # >0: the chat chain answers this many (user, question) pairs ...
    judge_repeats: int = 3  # ... and a judge LLM scores them this many times (RAGAS metrics)
    judge_seed: int = 0  # which pairs are sampled


@dataclass
class Who:
    """An evaluated principal and, independently of rag_app.permissions, what it may read."""

    name: str  # user name, or "anonymous@<tenant>"
    principal: Principal
    tenant: str
    tokens: frozenset[str]

    def may_read(self, metadata: Mapping[str, Any]) -> bool:
        tenant = metadata.get("tenant")
        acl = metadata.get("acl")
        if not isinstance(tenant, str) or tenant != self.tenant:
            return False
        if not isinstance(acl, list | tuple):
            return False
        return any(isinstance(t, str) and t in self.tokens for t in acl)


@dataclass
class Prepared:
    app: App
    collection: str
    ingest: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0


# -- collection -----------------------------------------------------------------------------------
def collection_name(app: App, dataset: EvalDataset) -> str:
    s = app.settings
    key = json.dumps(
        {
            "corpus": corpus_fingerprint(dataset.corpus),
            "overrides": dataset.overrides,
            "model": app.embeddings.name,
            "chunk_size": s.chunk_size,
            "chunk_overlap": s.chunk_overlap,
            "date_fields": sorted(s.date_fields),
            "version": 1,
        },
        sort_keys=True,
    )
    digest = hashlib.sha256(key.encode()).hexdigest()[:12]
    slug = re.sub(r"[^A-Za-z0-9]+", "-", dataset.name).strip("-").lower()[:30] or "dataset"
    return f"eval-{slug}-{digest}"


def prepare(
    app: App,
    dataset: EvalDataset,
    *,
    progress: Progress | None = None,
    retriever: str | None = None,
) -> Prepared:
    """The App to evaluate against: the dataset's own collection (ingested now if needed), or
    the configured collection when the dataset brings no corpus. Its chat chain (used for
    LLM-judged metrics) retrieves with `retriever` (default RAG_RETRIEVER)."""
    retriever = retriever or app.settings.retriever
    if not dataset.corpus:
        if retriever == app.settings.retriever:
            return Prepared(app=app, collection=app.settings.collection)
        same = app.derive(retriever=retriever)  # keeps a given store, model and users
        return Prepared(app=same, collection=app.settings.collection)

    name = collection_name(app, dataset)
    # keeps a given model and users; a given store cannot hold this collection: ConfigError
    eval_app = app.derive(collection=name, retriever=retriever)
    started = time.perf_counter()

    def bar(total: int) -> Any:
        if progress is None:
            return None
        return progress(total=total, desc=f"embedding {dataset.name}", unit="chunk")

    report = eval_app.ingestor.ingest(
        dataset.corpus,
        overrides=dataset.overrides,
        progress=bar if progress is not None else None,
        origin="eval",
    )
    if report.rejected:
        shown = "; ".join(f"{r.location}: {r.reason}" for r in report.rejected[:5])
        raise DatasetError(
            f"{len(report.rejected)} corpus input(s) of {dataset.name} were rejected: {shown}"
        )
    return Prepared(
        app=eval_app,
        collection=name,
        ingest=report.as_dict(),
        seconds=time.perf_counter() - started,
    )


# -- principals -----------------------------------------------------------------------------------
def resolve_users(app: App, dataset: EvalDataset, users: Sequence[str]) -> list[Who]:
    if not users:
        tenant = dataset.overrides.get("tenant")
        if not isinstance(tenant, str):
            listed = ", ".join(dataset.users()) or "USER"
            raise ConfigError(
                f"the documents of {dataset.name} carry their own tenants and ACLs: evaluate as "
                f"a user with --as-user (e.g. {listed}, or --as-user all)"
            )
        return [
            Who(
                f"anonymous@{tenant}",
                Principal.anonymous(tenant),
                tenant,
                frozenset({"public"}),
            )
        ]
    names: list[str] = []
    for user in users:
        if user == "all":
            if not dataset.users():
                raise ConfigError(
                    f"--as-user all: {dataset.name} names no users in its samples' 'expected'"
                )
            names.extend(dataset.users())
        else:
            names.append(user)
    from rag_app.users import UserDirectory

    directory = (
        UserDirectory.load(dataset.users_file) if dataset.users_file is not None else app.users
    )
    out = []
    for name in dict.fromkeys(names):
        record = directory.record(name)
        tokens = {"public", f"user:{name}", *(f"group:{g}" for g in record.groups)}
        out.append(Who(name, directory.principal(name), record.tenant, frozenset(tokens)))
    return out


# -- document ids ---------------------------------------------------------------------------------
class DocIds:
    """Chunk metadata -> the document id the dataset judges (``doc_id`` or ``source``; a source
    matches a reference id equal to it or ending in ``/<id>``)."""

    def __init__(self, id_field: str, reference_ids: set[str]) -> None:
        self.id_field = id_field
        self.reference_ids = reference_ids
        self._cache: dict[str, str] = {}

    def __call__(self, metadata: Mapping[str, Any]) -> str:
        value = metadata.get(self.id_field)
        if value is None and self.id_field == "doc_id":
            value = metadata.get("source")
        raw = str(value) if value is not None else "?"
        if self.id_field != "source":
            return raw
        if raw not in self._cache:
            match = raw if raw in self.reference_ids else None
            if match is None:
                match = next(
                    (r for r in sorted(self.reference_ids) if raw.endswith("/" + r.lstrip("/"))),
                    raw,
                )
            self._cache[raw] = match
        return self._cache[raw]


def documents_in_store(app: App, doc_ids: DocIds) -> dict[str, dict[str, Any]]:
    """Document id -> metadata of one of its chunks (tenant and acl are per document)."""
    from rag_app.stores.base import scannable

    docs: dict[str, dict[str, Any]] = {}
    for record in scannable(app.store, "list its documents for evaluation").records():
        docs.setdefault(doc_ids(record.metadata), dict(record.metadata))
    return docs


# -- the run --------------------------------------------------------------------------------------
def _retrieve(
    searcher: Any, principal: Principal, query: str, k: int, depth: int, doc_ids: DocIds
) -> list[StoreHit]:
    chunks = min(MAX_CHUNKS, max(k, depth * 3))
    while True:
        hits = list(searcher.search(principal, query, k=chunks).hits)
        docs = {doc_ids(h.metadata) for h in hits}
        if len(docs) >= depth or len(hits) < chunks or chunks >= MAX_CHUNKS:
            return hits
        chunks = min(MAX_CHUNKS, chunks * 2)


@dataclass
class _Context:
    """What a run searches with: the evaluation App and searcher, the principals, and the
    reference documents found in the store (with their metadata, for access checks)."""

    prepared: Prepared
    whos: list[Who]
    searcher: Any
    doc_ids: DocIds
    stored: dict[str, dict[str, Any]]
    index_seconds: float
    scan_seconds: float

    @property
    def app(self) -> App:
        return self.prepared.app


@dataclass
class _Retrieved:
    """Per (user, sample): the report row, the judgements and ranking for ir-measures, the
    contexts for RAGAS, and the latencies."""

    rows: list[QueryRow] = field(default_factory=list)
    qrels: dict[str, dict[str, int]] = field(default_factory=dict)
    run: dict[str, list[str]] = field(default_factory=dict)
    contexts: list[ContextSample] = field(default_factory=list)
    cases: dict[str, tuple[Who, Any]] = field(default_factory=dict)
    latencies: list[float] = field(default_factory=list)
    mismatches: list[Mismatch] = field(default_factory=list)
    seconds: float = 0.0


def run_evaluation(
    app: App,
    dataset: EvalDataset,
    options: RunOptions,
    *,
    progress: Progress | None = None,
    judge: Any = None,
) -> EvalResults:
    """Evaluate and return the results document (what ``results.json`` holds): prepare the
    collection and principals, retrieve for every (user, sample), score, judge if asked."""
    started = time.perf_counter()
    retriever = options.retriever or app.settings.retriever
    k = options.k or app.settings.k
    if not 1 <= k <= MAX_CHUNKS:
        raise ConfigError(f"-k must be between 1 and {MAX_CHUNKS}")
    if not 1 <= options.depth <= MAX_CHUNKS:
        raise ConfigError(f"depth must be between 1 and {MAX_CHUNKS}")
    if options.judge_samples < 0 or options.judge_repeats < 1:
        raise ConfigError("--judge-samples must be >= 0 and --judge-repeats >= 1")
    samples = dataset.samples[: options.limit] if options.limit else dataset.samples

    ctx = _context(app, dataset, options, samples, retriever, progress)
    found = _retrieve_all(ctx, samples, k, options, retriever, progress)
    t_metrics = time.perf_counter()
    _score(found)
    metric_seconds = time.perf_counter() - t_metrics
    llm_section = None
    if options.judge_samples:
        llm_section = _judge(
            ctx.app, found.rows, found.cases, options, k=k, progress=progress, judge=judge
        )
        _add_judged(found.rows, llm_section)

    aggregate = summarize(found.rows, found.mismatches)
    if llm_section is not None:
        aggregate.llm_failures = len(llm_section.failures)
        aggregate.restricted_sources_in_answers = (
            llm_section.answers_summary.restricted_sources_in_context
        )
    per_user = (
        {who.name: summarize([r for r in found.rows if r.user == who.name], []) for who in ctx.whos}
        if len(ctx.whos) > 1
        else {}
    )
    return EvalResults(
        schema_version=RESULTS_VERSION,
        created=datetime.now(UTC).isoformat(timespec="seconds"),
        dataset=dataset.describe(),
        config=_config(ctx, options, retriever, k),
        ingest=ctx.prepared.ingest,
        timings=Timings(
            ingest_s=round(ctx.prepared.seconds, 3),
            bm25_index_s=round(ctx.index_seconds, 3),
            store_scan_s=round(ctx.scan_seconds, 3),
            retrieval_s=round(found.seconds, 3),
            query_ms_mean=round(1000 * statistics.fmean(found.latencies), 2)
            if found.latencies
            else None,
            query_ms_p95=round(1000 * _quantile(found.latencies, 0.95), 2)
            if found.latencies
            else None,
            metrics_s=round(metric_seconds, 3),
            total_s=round(time.perf_counter() - started, 3),
        ),
        aggregate=aggregate,
        per_user=per_user,
        expectation_mismatches=found.mismatches,
        llm=llm_section,
        queries=found.rows,
    )


def _context(
    app: App,
    dataset: EvalDataset,
    options: RunOptions,
    samples: Sequence[EvalSample],
    retriever: str,
    progress: Progress | None,
) -> _Context:
    """Ingest (once) and open what the run searches; check the references exist."""
    prepared = prepare(app, dataset, progress=progress, retriever=retriever)
    eapp = prepared.app
    whos = resolve_users(app, dataset, options.users)
    searcher = eapp.searcher(retriever)
    reference_ids = {d for s in samples for d in s.relevant}
    doc_ids = DocIds(dataset.id_field, reference_ids)
    t0 = time.perf_counter()
    stored = documents_in_store(eapp, doc_ids)
    missing = sorted(reference_ids - set(stored))
    if missing and dataset.corpus and dataset.kind == "ragas":
        raise DatasetError(
            f"{dataset.name}: reference_context_ids not found in the corpus: "
            + ", ".join(missing[:10])
        )
    index_seconds = 0.0
    if retriever in ("bm25", "hybrid"):
        t_index = time.perf_counter()
        eapp.keyword_index.refresh()
        index_seconds = time.perf_counter() - t_index
    scan_seconds = time.perf_counter() - t0 - index_seconds
    return _Context(prepared, whos, searcher, doc_ids, stored, index_seconds, scan_seconds)


def _retrieve_all(
    ctx: _Context,
    samples: Sequence[EvalSample],
    k: int,
    options: RunOptions,
    retriever: str,
    progress: Progress | None,
) -> _Retrieved:
    """Search every sample as every user; one report row per (user, sample)."""
    found = _Retrieved()
    t0 = time.perf_counter()
    # every query is known now: embed them in batches, not one per search
    ctx.app.query_vectors.prime(s.user_input for s in samples)
    total = len(ctx.whos) * len(samples)
    bar = (
        progress(total=total, desc=f"retrieving ({retriever})", unit="query") if progress else None
    )
    try:
        for who in ctx.whos:
            for sample in samples:
                _retrieve_case(ctx, found, who, sample, k, options.depth)
                if bar is not None:
                    bar.update(1)
    finally:
        if bar is not None:
            bar.close()
    found.seconds = time.perf_counter() - t0
    return found


def _retrieve_case(
    ctx: _Context, found: _Retrieved, who: Who, sample: EvalSample, k: int, depth: int
) -> None:
    """Search one sample as one user and record what the metrics and the report need."""
    key = f"{who.name}/{sample.id}"
    found.cases[key] = (who, sample)
    relevant = {d: g for d, g in sample.relevant.items() if g > 0}
    permitted = {
        d: g for d, g in relevant.items() if d in ctx.stored and who.may_read(ctx.stored[d])
    }
    hidden = set(relevant) - set(permitted)
    outcome = "answer" if permitted else "no-access"
    expected = sample.expected.get(who.name)
    if relevant and expected is not None and expected != outcome:
        found.mismatches.append(
            Mismatch(user=who.name, query_id=sample.id, expected=expected, actual=outcome)
        )
    t_query = time.perf_counter()
    hits = _retrieve(ctx.searcher, who.principal, sample.user_input, k, depth, ctx.doc_ids)
    found.latencies.append(time.perf_counter() - t_query)
    ranking = list(dict.fromkeys(ctx.doc_ids(h.metadata) for h in hits))[:depth]
    top = hits[:k]
    leaked = [h.id for h in hits if not who.may_read(h.metadata)]
    if permitted:
        found.qrels[key] = permitted
        found.run[key] = ranking
    context_ids = list(dict.fromkeys(ctx.doc_ids(h.metadata) for h in top))
    applies_text = bool(sample.reference_contexts) and (not relevant or bool(permitted))
    found.contexts.append(
        ContextSample(
            key=key,
            user_input=sample.user_input,
            retrieved_ids=context_ids,
            retrieved_contexts=[h.text for h in top],
            reference_ids=sorted(permitted) or None,
            reference_contexts=sample.reference_contexts if applies_text else None,
        )
    )
    found.rows.append(
        QueryRow(
            key=key,
            user=who.name,
            query_id=sample.id,
            query=sample.user_input,
            relevant=len(relevant),
            permitted=len(permitted),
            expected=expected,
            outcome=outcome if relevant else None,
            retrieved_chunks=len(hits),
            leaked_chunks=len(leaked),
            leaked_ids=leaked,
            restricted_sources=sorted(hidden & set(ranking)),
            top_documents=ranking[:10],
            context_ids=context_ids,
            latency_ms=round(found.latencies[-1] * 1000, 2),
        )
    )


def _score(found: _Retrieved) -> None:
    """Ranked metrics (ir-measures) and RAGAS' non-LLM metrics into every row."""
    ranked = ranked_scores(found.qrels, found.run)
    ragas = ragas_scores(found.contexts)
    for n, row in enumerate(found.rows):
        for metric in RANKED_METRICS:
            row.metrics[metric] = ranked[metric].get(row.key)
        for metric in (*ID_METRICS, *TEXT_METRICS):
            row.metrics[metric] = ragas[metric][n]


def _add_judged(rows: list[QueryRow], llm_section: LLMSection) -> None:
    by_key = {a.key: a for a in llm_section.answers}
    for row in rows:
        answer = by_key.get(row.key)
        for metric in LLM_METRICS:
            score = answer.scores.get(metric) if answer is not None else None
            row.metrics[metric] = score.mean if score is not None else None


def _config(ctx: _Context, options: RunOptions, retriever: str, k: int) -> RunConfig:
    """The run's configuration, as the results document records it."""
    settings = ctx.app.settings
    index = ctx.app.keyword_index if retriever in ("bm25", "hybrid") else None
    return RunConfig(
        retriever=retriever,
        k=k,
        depth=options.depth,
        users=[w.name for w in ctx.whos],
        limit=options.limit,
        collection=ctx.prepared.collection,
        store=ctx.app.store.info.backend,
        embedding_model=ctx.app.embeddings.name,
        chunk_size=settings.chunk_size,
        chunk_overlap=settings.chunk_overlap,
        fusion=settings.fusion,
        hybrid_alpha=settings.hybrid_alpha,
        rrf_k=settings.rrf_k,
        hybrid=getattr(ctx.searcher, "config", {}),
        bm25=index.config if index is not None else None,
        command=options.command,
        python=sys.version.split()[0],
        platform=platform.platform(),
    )


def _judge(
    eapp: App,
    rows: Sequence[QueryRow],
    cases: Mapping[str, tuple[Who, Any]],
    options: RunOptions,
    *,
    k: int,
    progress: Progress | None,
    judge: Any,
) -> LLMSection:
    """Answer a sample of the rows with the chat chain and score the answers with a judge."""
    from rag_app.evaluation.judge import (
        answer_samples,
        answer_summary,
        answers_as_dicts,
        choose,
        judge_answers,
    )

    # Samples that judge nothing (no reference, no relevant documents) still get answers.
    keys = choose([r.key for r in rows], options.judge_samples, options.judge_seed)
    # answer_samples reads the row's expected and actual outcome
    row_of = {r.key: {"expected": r.expected, "outcome": r.outcome} for r in rows}
    items = [
        (key, cases[key][0].principal, cases[key][0].may_read, cases[key][1], row_of[key])
        for key in keys
    ]
    t_answers = time.perf_counter()
    try:
        answers = answer_samples(eapp, items, k=k, progress=progress)
        answers_s = time.perf_counter() - t_answers
        config = judge if judge is not None else judge_config(eapp, options.judge_repeats)
        config.repeats = options.judge_repeats
        judged = judge_answers(answers, config, progress=progress)
    finally:
        eapp.close_chat()
    return LLMSection.model_validate(
        {
            "config": {
                "judge": config.label,
                "chat_model": (eapp.chat_llm.name if eapp.built("chat_llm") else None)
                or config.label,
                "samples": len(keys),
                "repeats": config.repeats,
                "seed": options.judge_seed,
                "max_workers": config.max_workers,
                "timeout_s": config.timeout_s,
            },
            "aggregate": judged.aggregate(),
            "answers_summary": answer_summary(answers),
            "failures": [str(f) for f in judged.failures],
            "timings": {"answers_s": round(answers_s, 2), "judging_s": round(judged.seconds, 2)},
            "answers": answers_as_dicts(answers, judged),
        }
    )


def judge_config(eapp: App, repeats: int) -> Any:
    """The judge: the configured chat model's endpoint (local server or OpenAI), deterministic
    and non-streaming, with the evaluation app's embeddings for response relevancy."""
    from rag_app.evaluation.judge import JudgeConfig, model_limits
    from rag_app.llm.factory import build_judge_model

    chat_llm = eapp.chat_llm
    model = build_judge_model(chat_llm, eapp.settings)
    local = chat_llm.backend == "local"
    limits = model_limits(local)
    return JudgeConfig(
        llm=model,
        embeddings=eapp.embeddings,  # type: ignore[arg-type]
        label=chat_llm.describe() if not local else f"local:{chat_llm.name}",
        repeats=repeats,
        max_workers=limits.max_workers,
        timeout_s=limits.timeout_s,
    )


def _quantile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def summarize(rows: Sequence[QueryRow], mismatches: Sequence[Any]) -> MetricSummary:
    """Means over the samples each metric applies to, plus permission counters."""
    means: dict[str, float] = {}
    counts: dict[str, int] = {}
    for metric in SCORED_METRICS:
        mean, n = mean_of([r.metrics.get(metric) for r in rows])
        if mean is not None and n:
            means[metric] = mean
            counts[metric] = n
    retrieved = sum(r.retrieved_chunks for r in rows)
    leaked = sum(r.leaked_chunks for r in rows)
    no_access = [r for r in rows if r.outcome == "no-access"]
    return MetricSummary(
        samples=len(rows),
        metrics=means,
        leak_rate=leaked / retrieved if retrieved else 0.0,
        leaked_chunks=leaked,
        retrieved_chunks=retrieved,
        no_access_samples=len(no_access),
        restricted_source_hits=sum(1 for r in rows if r.restricted_sources),
        expectation_mismatches=len(mismatches),
        n=counts,
    )


# -- gates ----------------------------------------------------------------------------------------
def parse_thresholds(items: Sequence[str]) -> dict[str, float]:
    out: dict[str, float] = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise ConfigError(f"--fail-under expects METRIC=VALUE, got {item!r}")
        try:
            out[name.strip()] = float(value)
        except ValueError:
            raise ConfigError(f"--fail-under {item!r}: {value!r} is not a number") from None
    return out


def gate_failures(results: EvalResults, thresholds: Mapping[str, float]) -> list[str]:
    """Why this run fails its gate (empty: it passes). Leaks and expectation mismatches always
    fail; each threshold fails when its metric is below it (or was not computed)."""
    agg = results.aggregate
    failures: list[str] = []
    if agg.leaked_chunks:
        failures.append(
            f"leak: {agg.leaked_chunks} retrieved chunk(s) the principal may not read "
            f"(leak rate {agg.leak_rate:.4f})"
        )
    if agg.restricted_source_hits:
        failures.append(f"{agg.restricted_source_hits} sample(s) retrieved a restricted source")
    if agg.expectation_mismatches:
        failures.append(
            f"{agg.expectation_mismatches} sample(s) whose expected outcome differs from the "
            "stored ACLs (see expectation_mismatches)"
        )
    llm = results.llm
    if llm is not None:
        for failure in llm.failures:
            failures.append(f"judge: {failure}")
        for answer in llm.answers:
            if answer.error:
                failures.append(f"chat chain failed on sample {answer.key}: {answer.error}")
    if agg.restricted_sources_in_answers:
        failures.append(
            f"{agg.restricted_sources_in_answers} answer context(s) held a source the "
            "principal may not read"
        )
    numeric = agg.numbers()
    for name, minimum in thresholds.items():
        if name not in numeric:
            if name in SCORED_METRICS:
                failures.append(f"{name} was not computed for this dataset (gate {minimum})")
                continue
            raise ConfigError(
                f"--fail-under: unknown metric {name!r}; this run has: {', '.join(sorted(numeric))}"
            )
        value = numeric[name]
        if value < minimum:
            failures.append(f"{name} = {value:.4f} is below {minimum}")
    return failures


def default_run_dir(results: EvalResults, root: Path = Path("runs")) -> Path:
    name = re.sub(r"[^A-Za-z0-9]+", "-", results.dataset.name).strip("-").lower()
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    return root / f"{name}-{results.config.retriever}-{stamp}"
