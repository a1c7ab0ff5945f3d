"""Growth curve: what ingest, memory, disk, BM25 and queries cost as the corpus grows (issue 12).

One run grows one embedded Chroma collection (the default store) through the sizes given
(chunks: 10k, 50k, 200k, 1M by default), adding to the same store, and after each size
measures:

* **ingest chunks/s (vectors precomputed)**: the chunks added for this size, through the
  project's real ingestion path (`App.ingestor.ingest` on JSONL files: loading, metadata
  validation, token splitting, LangChain's indexing API with the SQL record manager, ingest
  state, `ChromaStore.upsert`), divided by the seconds those `ingest` calls took. Only the
  encoder is replaced: an `EmbeddingModel` that returns cached vectors (see below). Writing
  the input files is not timed.
* **encode rate**: measured once, when the vector cache is built, by ingesting the distinct
  SciFact corpus through the same pipeline with the real local model (onnx-int8 by default):
  the seconds spent inside ``embed_documents`` (encode chunks/s) and the whole ingest (ingest
  chunks/s *with* encoding). At ~30-60 chunks/s a million chunks would take 5-9 hours to
  encode on this machine, which is why larger sizes reuse the vectors.
* **RSS** of this process (psutil) after the ingest, after the BM25 build and after the
  queries, and the peak; the process holds embedded Chroma, the BM25 index and the ONNX model
  (for query encoding), as a serving process would.
* **disk**: allocated bytes under the data folder (Chroma, ingest state, persisted BM25).
* **BM25 build**: a full build of `KeywordIndex` (scan of every chunk's text and metadata,
  analysis, matrix, persisted under the data folder), from scratch at every size.
* **query p50/p95** of dense, BM25 and hybrid (fused) search for a *broad* user (reads ~90%
  of the chunks) and a *narrow* one (~1%), 100 SciFact train queries each, k=10, through
  ``App.searcher(kind).search(principal, query)`` (the permission guard and every re-check
  included). Query vectors are primed first, so dense and hybrid latencies exclude query
  encoding (its p50, one query at a time, is reported separately). Before the timed queries
  one other query warms each searcher x user (it pays the per-filter cold costs, e.g. the
  BM25 access mask over every chunk); its latency is reported as "cold". Every query must
  return k hits: the count of queries that returned fewer is printed (0 expected).

Corpus: the 5,183 SciFact abstracts (read from the shared dataset folder, never copied into
the repository), replicated: replica r of abstract d is the same text under id ``d-r<r>``
with metadata ``replica: r``; its chunk vectors are the cached ones for r = 0 and, for r >= 1,
those vectors plus seeded Gaussian noise (``N(0, noise^2/dim)`` per component, i.e. a noise
vector of norm ~noise) renormalised, so that no two stored vectors are identical (HNSW
degrades on exact duplicates and results would be ties). All chunks are in one tenant;
every abstract copy carries one ACL group of 100 (``group:gNN``, from a hash of replica and
id): the broad user holds groups g00-g89, the narrow user g00 only.

Each size's time is extrapolated before it starts (ingest rate, BM25 build and query time of
the size before, scaled to the new size), together with disk and memory; a size that would
not fit the wall-clock budget (``--budget-min``), the free disk or the available memory is
not started, and the reason, with its numbers, is written to the results.

Writes bench/results/growth.json (raw), growth.md (tables and notes) and growth.png.

Usage: python bench/bench_growth.py [--sizes 10000,50000,200000,1000000]
       [--data-dir /tmp/growth-data] [--cache-dir /tmp/growth-cache] [--budget-min 75]
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import hashlib
import json
import math
import os
import platform
import resource
import shutil
import statistics
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from rag_app import configure_offline  # noqa: E402

configure_offline()

import numpy as np  # noqa: E402
import psutil  # noqa: E402
from langchain_core.embeddings import Embeddings  # noqa: E402

from rag_app import monitoring  # noqa: E402
from rag_app.access.permissions import Principal, effective_filter  # noqa: E402
from rag_app.app import App, build_embeddings  # noqa: E402
from rag_app.embeddings import EmbeddingModel  # noqa: E402
from rag_app.evaluation.datasets import load_dataset  # noqa: E402
from rag_app.retrieval.bm25 import index_directory  # noqa: E402
from rag_app.settings import Settings  # noqa: E402

DATASET = ROOT.parent / "shared/datasets/scifact"
RESULTS = ROOT / "bench/results"
TENANT = "acme"
COLLECTION = "growth"
KINDS = ("dense", "bm25", "hybrid")
USERS = ("broad", "narrow")
CACHE_VERSION = 1
GB = 1e9


# -- measuring -------------------------------------------------------------------------------------
def rss() -> int:
    return int(psutil.Process().memory_info().rss)


def peak_rss() -> int:
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024  # KiB on Linux


def allocated(path: Path) -> int:
    """Bytes allocated on disk under `path` (what du counts)."""
    if not path.exists():
        return 0
    if path.is_file():
        return path.stat().st_blocks * 512
    total = 0
    for folder, _, files in os.walk(path):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(folder, name)).st_blocks * 512
    return total


def percentiles(ms: Sequence[float]) -> dict[str, float]:
    ordered = sorted(ms)
    return {
        "p50_ms": statistics.median(ordered),
        "p95_ms": ordered[math.ceil(0.95 * len(ordered)) - 1],
        "mean_ms": statistics.fmean(ordered),
        "max_ms": ordered[-1],
    }


def cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


# -- embeddings ------------------------------------------------------------------------------------
class _Delegating(Embeddings):
    """The real model's name, dimension and tokenizer (the splitter counts with it)."""

    def __init__(self, real: EmbeddingModel) -> None:
        self.real = real

    @property
    def name(self) -> str:
        return self.real.name

    @property
    def dimension(self) -> int:
        return self.real.dimension

    @property
    def max_tokens(self) -> int:
        return self.real.max_tokens

    def count_tokens(self, text: str) -> int:
        return self.real.count_tokens(text)

    def token_offsets(self, text: str) -> list[tuple[int, int]]:
        return self.real.token_offsets(text)  # type: ignore[attr-defined, no-any-return]

    def embed_query(self, text: str) -> list[float]:
        return self.real.embed_query(text)

    def embed_queries(self, texts: list[str]) -> list[list[float]]:
        return [self.embed_query(t) for t in texts]


class RecordingEmbeddings(_Delegating):
    """The real model, timed, keeping every chunk text's vector (builds the cache)."""

    def __init__(self, real: EmbeddingModel) -> None:
        super().__init__(real)
        self.vectors: dict[str, list[float]] = {}
        self.seconds = 0.0
        self.encoded = 0

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        started = time.perf_counter()
        out = self.real.embed_documents(texts)
        self.seconds += time.perf_counter() - started
        self.encoded += len(texts)
        self.vectors.update(zip(texts, out, strict=True))
        return out


class PrecomputedEmbeddings(_Delegating):
    """An `EmbeddingModel` whose document vectors are the cached vectors of the same chunk
    texts, plus (for replicas r >= 1) seeded Gaussian noise of norm ~`noise`, renormalised.
    Queries: the cached query vectors, else the real model."""

    def __init__(
        self,
        real: EmbeddingModel,
        texts: Sequence[str],
        vectors: np.ndarray,
        queries: dict[str, list[float]],
        *,
        noise: float,
        seed: int,
    ) -> None:
        super().__init__(real)
        self._row = {t: i for i, t in enumerate(texts)}
        self._vectors = vectors.astype(np.float32)
        self._queries = queries
        self.noise = noise
        self.seed = seed
        self.replica = 0
        self._rng = np.random.default_rng(seed)
        self.seconds = 0.0

    def stream(self, replica: int, part: int) -> None:
        """The noise of the next writes: replica `replica`, input file `part` (seeded)."""
        self.replica = replica
        self._rng = np.random.default_rng([self.seed, replica, part])

    def perturb(self, base: np.ndarray, replica: int) -> np.ndarray:
        if replica == 0 or self.noise <= 0:
            return base
        dim = base.shape[1]
        moved = base + self._rng.standard_normal(base.shape) * (self.noise / math.sqrt(dim))
        moved /= np.linalg.norm(moved, axis=1, keepdims=True)
        return moved.astype(np.float32)

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        started = time.perf_counter()
        try:
            rows = [self._row[t] for t in texts]
        except KeyError as exc:
            raise RuntimeError(
                "a chunk text is not in the vector cache (chunking settings changed?): "
                "delete the cache folder and run again"
            ) from exc
        out = self.perturb(self._vectors[rows], self.replica).tolist()
        self.seconds += time.perf_counter() - started
        return out  # type: ignore[no-any-return]

    def embed_query(self, text: str) -> list[float]:
        cached = self._queries.get(text)
        return list(cached) if cached is not None else self.real.embed_query(text)


# -- corpus ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Abstract:
    doc_id: str
    title: str
    text: str


def abstracts(dataset: Path) -> list[Abstract]:
    out = []
    with (dataset / "corpus.jsonl").open(encoding="utf-8") as fh:
        for line in fh:
            rec = json.loads(line)
            if str(rec.get("text") or "").strip():
                out.append(Abstract(str(rec["_id"]), str(rec.get("title") or ""), rec["text"]))
    return out


def group_of(replica: int, doc_id: str, groups: int) -> int:
    digest = hashlib.sha256(f"{replica}:{doc_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % groups


def record(doc: Abstract, replica: int, groups: int) -> dict[str, Any]:
    return {
        "_id": doc.doc_id if replica == 0 else f"{doc.doc_id}-r{replica}",
        "title": doc.title or doc.doc_id,
        "text": doc.text,
        "tenant": TENANT,
        "acl": [f"group:g{group_of(replica, doc.doc_id, groups):02d}"],
        "replica": replica,
    }


def plan(
    docs: Sequence[Abstract], chunks: Sequence[int], start: int, have: int, target: int
) -> tuple[list[tuple[int, int, int]], int, int]:
    """Abstract copies from position `start` (position p is replica p // len(docs) of abstract
    p % len(docs)) until `target` chunks: ([(replica, first, stop) index ranges per replica],
    next position, chunks then)."""
    ranges: list[tuple[int, int, int]] = []
    p = start
    while have < target:
        replica, i = divmod(p, len(docs))
        if not ranges or ranges[-1][0] != replica:
            ranges.append((replica, i, i))
        have += chunks[i]
        r, first, _ = ranges[-1]
        ranges[-1] = (r, first, i + 1)
        p += 1
    return ranges, p, have


# -- the vector cache ------------------------------------------------------------------------------
def cache_key(settings: Settings, model: str, dataset: Path) -> str:
    corpus = dataset / "corpus.jsonl"
    key = {
        "version": CACHE_VERSION,
        "model": model,
        "chunk_size": settings.chunk_size,
        "chunk_overlap": settings.chunk_overlap,
        "corpus_bytes": corpus.stat().st_size,
        "corpus_sha": hashlib.sha256(corpus.read_bytes()).hexdigest()[:16],
    }
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]


def write_jsonl(path: Path, rows: Iterator[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")


def build_cache(
    cache: Path,
    settings: Settings,
    real: EmbeddingModel,
    docs: Sequence[Abstract],
    queries: Sequence[str],
    groups: int,
    scratch: Path,
) -> None:
    """Ingest every abstract once through the real pipeline with the real model (timed), and
    keep each chunk text's vector, each abstract's chunk count and the queries' vectors."""
    shutil.rmtree(scratch, ignore_errors=True)
    recording = RecordingEmbeddings(real)
    app = App(
        settings.model_copy(update={"data_dir": scratch, "collection": "growth-encode"}),
        embeddings=recording,  # type: ignore[arg-type]
    )
    source = scratch / "input" / "scifact-r0.jsonl"
    write_jsonl(source, (record(d, 0, groups) for d in docs))
    print(f"encoding the {len(docs)} SciFact abstracts through the pipeline (one time) ...")
    load_before = load()
    started = time.perf_counter()
    report = app.ingestor.ingest([source], origin="bench")
    seconds = time.perf_counter() - started
    if report.rejected:
        raise RuntimeError(f"the encode pass rejected input: {report.rejected[:3]}")
    per_doc = {d.source.rsplit("#", 1)[-1]: d.chunks for d in app.state.documents()}
    stored = app.store.count()
    app.close()
    texts = list(recording.vectors)
    vectors = np.asarray([recording.vectors[t] for t in texts], dtype=np.float32)
    qstart = time.perf_counter()
    qvectors = real.embed_queries(list(queries))  # type: ignore[attr-defined]
    qseconds = time.perf_counter() - qstart
    meta = {
        "built_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "model": real.name,
        "backend": getattr(real, "backend", None),
        "abstracts": len(docs),
        "chunks": stored,
        "distinct_texts": len(texts),
        "ingest_with_encoding_s": seconds,
        "ingest_with_encoding_chunks_per_s": stored / seconds,
        "encode_s": recording.seconds,
        "encode_chunks_per_s": recording.encoded / recording.seconds,
        "queries_batch_encode_s": qseconds,
        "loadavg_before": load_before,
        "loadavg_after": load(),
    }
    cache.mkdir(parents=True, exist_ok=True)
    np.save(cache / "vectors.npy", vectors)
    (cache / "texts.json").write_text(json.dumps(texts))
    (cache / "chunks.json").write_text(json.dumps([per_doc[d.doc_id] for d in docs]))
    (cache / "queries.json").write_text(json.dumps(dict(zip(queries, qvectors, strict=True))))
    (cache / "meta.json").write_text(json.dumps(meta, indent=2))
    shutil.rmtree(scratch, ignore_errors=True)
    print(
        f"  {stored} chunks: ingest with encoding {meta['ingest_with_encoding_chunks_per_s']:.1f}"
        f" chunks/s, encoding alone {meta['encode_chunks_per_s']:.1f} chunks/s"
    )


# -- one size --------------------------------------------------------------------------------------
def timed_queries(
    search: Callable[[str], int], queries: Sequence[str], k: int
) -> tuple[dict[str, float], int, list[int]]:
    ms: list[float] = []
    counts: list[int] = []
    for q in queries:
        t = time.perf_counter()
        n = search(q)
        ms.append((time.perf_counter() - t) * 1000)
        counts.append(n)
    return percentiles(ms), sum(1 for n in counts if n < k), counts


def readable_chunks(app: App, principal: Principal) -> int:
    tokens = set(principal.tokens())
    return sum(
        d.chunks for d in app.state.documents(tenant=principal.tenant) if tokens.intersection(d.acl)
    )


def measure_queries(
    app: App,
    users: dict[str, Principal],
    queries: Sequence[str],
    warm: str,
    k: int,
) -> dict[str, Any]:
    """Each searcher x user: one cold query, then the timed ones. A search that returns fewer
    than k hits is *starved* when the user could read at least k chunks it may match: any
    readable chunk for dense and hybrid (the dense half ranks them all), a readable chunk that
    shares a term with the query for BM25 (counted with the raw index, up to 1000)."""
    out: dict[str, Any] = {}
    for user, principal in users.items():
        readable = readable_chunks(app, principal)
        where = effective_filter(principal, None)
        for kind in KINDS:
            searcher = app.searcher(kind)

            def run(q: str, s: Any = searcher, p: Principal = principal) -> int:
                return len(s.search(p, q, k=k).hits)

            t = time.perf_counter()
            cold_hits = run(warm)
            cold_ms = (time.perf_counter() - t) * 1000
            stats, short, counts = timed_queries(run, queries, k)
            starved = 0
            for q, n in zip(queries, counts, strict=True):
                if n >= k:
                    continue
                if kind == "bm25":
                    could = len(app.keyword_index.search(q, 1000, where))
                else:
                    could = readable
                starved += n < min(k, could)
            out[f"{kind}/{user}"] = {
                **stats,
                "cold_ms": cold_ms,
                "cold_hits": cold_hits,
                "short_queries": short,
                "starved_queries": starved,
                "min_hits": min(counts),
            }
            print(
                f"    {kind:6} {user:6} p50 {stats['p50_ms']:8.1f} ms  p95 "
                f"{stats['p95_ms']:8.1f} ms  cold {cold_ms:8.1f} ms  <k: {short} "
                f"(starved: {starved})"
            )
    return out


def bm25_full_build(app: App) -> float:
    """A full build from the store (the persisted index and the one in memory removed)."""
    # the searchers built on the old index go with it (the App builds them again)
    searchers = vars(app).get("_searchers")
    if isinstance(searchers, dict):
        searchers.clear()
    vars(app).pop("keyword_index", None)  # a cached_property: built again on next use
    gc.collect()
    shutil.rmtree(index_directory(app.settings.data_dir, app.store_location), ignore_errors=True)
    started = time.perf_counter()
    app.keyword_index.ensure_fresh()
    return time.perf_counter() - started


def bm25_small_refresh(app: App) -> float:
    """Seconds for the BM25 index to catch up with a small change: one chunk's ACL changed
    through the App's store (journaled), then `ensure_fresh()`; the change is undone after."""
    index = app.keyword_index
    index.ensure_fresh()
    cid = index.current().ids[0]
    record = app.store.get([cid])[0]
    vector = app.store.vectors_of([cid])[0].tolist()  # type: ignore[attr-defined]
    changed = {**record.metadata, "acl": [*record.metadata.get("acl", []), "group:refresh"]}
    app.store.upsert([cid], [record.text or ""], [vector], [changed])
    started = time.perf_counter()
    index.ensure_fresh()
    seconds = time.perf_counter() - started
    app.store.upsert([cid], [record.text or ""], [vector], [dict(record.metadata)])
    index.ensure_fresh()
    return seconds


# -- output ----------------------------------------------------------------------------------------
def human(n: float) -> str:
    if n >= 1_000_000:
        return f"{n / 1_000_000:.3g}M"
    if n >= 1000:
        return f"{n / 1000:.3g}k"
    return str(int(n))


def tables(result: dict[str, Any]) -> str:
    rows = result["sizes"]
    k = result["config"]["k"]
    lines = [
        "| chunks | ingest chunks/s (vectors precomputed) | RSS after ingest / BM25 / "
        "queries (GB) | peak RSS (GB) | disk (GB): total = Chroma + state + BM25 | "
        "BM25 full build (s) | BM25 refresh after 1 ACL change (ms) | load avg (1 min) |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        d = r["disk_bytes"]
        lines.append(
            f"| {r['chunks']:,} | {r['ingest_chunks_per_s']:.0f} "
            f"| {r['rss_after_ingest'] / GB:.2f} / {r['rss_after_bm25'] / GB:.2f} / "
            f"{r['rss_after_queries'] / GB:.2f} | {r['peak_rss'] / GB:.2f} "
            f"| {d['total'] / GB:.2f} = {d['chroma'] / GB:.2f} + {d['state'] / GB:.2f} + "
            f"{d['bm25'] / GB:.2f} | {r['bm25_build_s']:.1f} | "
            f"{refresh_ms(r)} | {r['loadavg'][0]:.2f} |"
        )
    lines += [
        "",
        f"Query latency, ms, p50 / p95 (k={k}; query encoding excluded; cold = the first query "
        "of each searcher x user, not in p50/p95):",
        "",
        "| chunks | "
        + " | ".join(f"{kind} {user}" for user in USERS for kind in KINDS)
        + " | queries < k (starved) |",
        "|---:|" + "---:|" * (len(KINDS) * len(USERS)) + "---:|",
    ]
    for r in rows:
        q = r["queries"]
        cells = [
            f"{q[f'{kind}/{user}']['p50_ms']:.1f} / {q[f'{kind}/{user}']['p95_ms']:.1f}"
            for user in USERS
            for kind in KINDS
        ]
        short = sum(v["short_queries"] for v in q.values())
        starved = sum(v["starved_queries"] for v in q.values())
        lines.append(f"| {r['chunks']:,} | " + " | ".join(cells) + f" | {short} ({starved}) |")
    lines += [
        "",
        "Cold first query (ms): ",
        "",
        "| chunks | " + " | ".join(f"{kind} {user}" for user in USERS for kind in KINDS) + " |",
        "|---:|" + "---:|" * (len(KINDS) * len(USERS)),
    ]
    for r in rows:
        q = r["queries"]
        cells = [f"{q[f'{kind}/{user}']['cold_ms']:.0f}" for user in USERS for kind in KINDS]
        lines.append(f"| {r['chunks']:,} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def refresh_ms(row: dict[str, Any]) -> str:
    """The small-change refresh in ms ("-" in results of runs before it was measured)."""
    value = row.get("bm25_refresh_s")
    return f"{value * 1000:.0f}" if isinstance(value, int | float) else "-"


def growth_lines(result: dict[str, Any]) -> list[str]:
    """Each cost's growth as the exponent e of cost ~ chunks^e (log-log slope), over the
    whole range and over the last two sizes: 0 flat, 1 linear, 2 quadratic."""
    rows = result["sizes"]
    if len(rows) < 2:
        return []
    metrics: list[tuple[str, Callable[[dict[str, Any]], float]]] = [
        ("ingest seconds per chunk (vectors precomputed)", lambda r: 1 / r["ingest_chunks_per_s"]),
        ("RSS after queries", lambda r: r["rss_after_queries"]),
        ("disk", lambda r: r["disk_bytes"]["total"]),
        ("BM25 full build", lambda r: r["bm25_build_s"]),
        ("BM25 refresh after 1 ACL change", lambda r: r.get("bm25_refresh_s") or 0.0),
    ]
    for user in USERS:
        for kind in KINDS:
            key = f"{kind}/{user}"
            metrics.append((f"{kind} {user} p50", lambda r, key=key: r["queries"][key]["p50_ms"]))
    metrics.append(
        ("BM25 broad cold query (access mask)", lambda r: r["queries"]["bm25/broad"]["cold_ms"])
    )

    def slope(a: dict[str, Any], b: dict[str, Any], f: Callable[[dict[str, Any]], float]) -> str:
        fa, fb = f(a), f(b)
        if fa <= 0 or fb <= 0:
            return "-"
        return f"{math.log(fb / fa) / math.log(b['chunks'] / a['chunks']):.2f}"

    first, before, last = rows[0], rows[-2], rows[-1]
    lines = [
        "How each cost grew: e in cost ~ chunks^e (0 flat, 1 linear, 2 quadratic), "
        f"from {human(first['target'])} to {human(last['target'])} and over the last step "
        f"({human(before['target'])} to {human(last['target'])}):",
        "",
        f"| cost | e, {human(first['target'])}-{human(last['target'])} | "
        f"e, {human(before['target'])}-{human(last['target'])} |",
        "|---|---:|---:|",
    ]
    for name, f in metrics:
        lines.append(f"| {name} | {slope(first, last, f)} | {slope(before, last, f)} |")
    return lines


def markdown(result: dict[str, Any]) -> str:
    cfg = result["config"]
    enc = result["encode"]
    machine = result["machine"]
    rows = result["sizes"]
    users = result["users"]
    largest = rows[-1]["chunks"] if rows else 0
    stop = result.get("stopped")
    lines = [
        "# Growth curve (issue 12)",
        "",
        f"Generated by `bench/bench_growth.py` on {result['finished_at']} "
        f"(run took {result['wall_s'] / 60:.1f} min): `{result['command']}`. Raw numbers: "
        "`growth.json` (not committed); plot: `growth.png`.",
        "",
        tables(result),
        "",
        *growth_lines(result),
        "",
        f"Encoding (measured {enc['built_at']} when the vector cache was built, "
        f"{enc['chunks']:,} chunks of the {enc['abstracts']:,} SciFact abstracts through the "
        f"same pipeline with the real model `{enc['model']}`, load avg "
        f"{enc['loadavg_before']} before and {enc['loadavg_after']} after):"
        f" **{enc['encode_chunks_per_s']:.1f} chunks/s** encoding alone, "
        f"**{enc['ingest_with_encoding_chunks_per_s']:.1f} chunks/s** for the whole ingest "
        f"with encoding. One query encoded alone: p50 {result['query_encode']['p50_ms']:.1f} ms"
        " (not in the latencies above).",
        "",
        "## Where it stopped",
        "",
    ]
    if stop:
        lines.append(f"Largest size measured: **{largest:,} chunks**. {stop}")
    else:
        lines.append(f"Every requested size was measured (largest: {largest:,} chunks).")
    lines += [
        "",
        "## Notes",
        "",
        f"* Machine: {machine['cpus']} CPUs ({machine['cpu']}), "
        f"{machine['memory_gb']:.0f} GB RAM, Python {machine['python']}, chromadb "
        f"{machine['chromadb']}, no GPU; shared with other work, so numbers are contended: "
        f"load average at start {machine['loadavg_start']}, per size in the table "
        f"(1 min), at the end {machine['loadavg_end']}.",
        "* Store: embedded Chroma (`PersistentClient`, HNSW cosine, ef_search 400) in "
        f"`{cfg['data_dir']}`; one collection grown size after size (each size adds to it).",
        f"* Corpus: the {enc['abstracts']:,} SciFact abstracts ({enc['chunks']:,} chunks at "
        f"{cfg['chunk_size']} tokens) replicated; replica r of an abstract has id `<id>-r<r>` "
        "and metadata `replica: r`, the same text and chunks. Replica 0 stores the model's "
        "vectors; replicas r >= 1 store them plus seeded Gaussian noise of norm "
        f"~{cfg['noise']} (`N(0, {cfg['noise']}^2/384)` per component), renormalised: cosine "
        f"to the original {result['noise_check']['cos_to_original']:.3f}, between two replicas "
        f"{result['noise_check']['cos_between_replicas']:.3f} on average (no two stored "
        "vectors are equal; a query's nearest neighbours are mostly replicas of the same few "
        "abstracts, a denser neighbourhood than a real corpus of that size would have). BM25 "
        "sees identical texts in every replica (ties are broken by index order).",
        f"* Access: one tenant; each abstract copy carries one of {cfg['groups']} ACL groups "
        f"(hash of replica and id). Broad user: groups g00-g{cfg['broad_groups'] - 1:02d} "
        f"(reads {users['broad']['share'] * 100:.1f}% of the chunks at the largest size); "
        f"narrow user: g00 (reads {users['narrow']['share'] * 100:.2f}%, "
        f"{users['narrow']['readable']:,} chunks). Dense search for the broad user runs "
        "Chroma unfiltered a little deeper and filters the hits (`ChromaStore.query`); for "
        "the narrow user Chroma evaluates its `where` filter (a narrow filter is what "
        "Chroma's own filter is for); BM25 masks every chunk by the filter (cached per filter). "
        "Hybrid's dense half (`IdsFirstDense`) judges candidates with the BM25 copy's masks: "
        "while every vector fits in `RAG_VECTOR_COPY_MB` (64 MB: the 10k size only) an exact "
        "product over the App's copy of the vectors, above it Chroma's ids-only HNSW query "
        "for the broad user, and for the narrow user an exact product over the matching "
        "chunks' vectors, read once per filter and index version (`bench/bench_narrow.py` "
        "times these paths side by side).",
        f"* Queries: the first {cfg['queries']} SciFact train queries, k={cfg['k']}, each "
        "searcher x user once in a row, as `App.searcher(kind).search(principal, query, k)`: "
        "permission guard, store query or BM25 plus the confirmation of BM25 hits against the "
        "store, and (hybrid) weighted document-level fusion of 100 candidates per half. Query "
        "vectors were primed, so no latency includes encoding a query. 'queries < k' counts "
        "the timed searches (all users and searchers) that returned fewer than k hits; "
        "'starved' those of them where the user can read at least k chunks the search may "
        "return (any readable chunk for dense and hybrid; for BM25 a readable chunk sharing a "
        "term with the query, counted on the raw index): a BM25 search for the narrow user "
        "can be short because fewer than k of its chunks contain a query term, never because "
        "the filter cut the list. Starved must be 0.",
        "* Ingest chunks/s: chunks added for the size / seconds of the `Ingestor.ingest` calls "
        f"(one JSONL file of at most {cfg['docs_per_file']:,} abstracts per call), vectors "
        "precomputed (the encoder replaced by a look-up: "
        f"{result['lookup_s_total']:.1f} s of the whole run's ingest time). Everything else "
        "of ingestion is measured: loading, validation, splitting, ids, record manager, state, "
        "Chroma upsert and HNSW insert.",
        "* RSS: this process (embedded Chroma, BM25 index, the ONNX model for queries, Python "
        "objects of the pipeline), after a `gc.collect()`; peak = `ru_maxrss` so far.",
        "* Disk: allocated bytes under the data folder: Chroma (SQLite with texts, metadata and "
        "its full-text index, plus HNSW files), the ingest state (SQLite record manager and "
        "document catalog), the persisted BM25 index; input files excluded.",
        "* BM25 full build: `KeywordIndex.ensure_fresh()` with no index in memory or on disk: "
        "reads every chunk's text and metadata from Chroma (`ChromaStore.records`: the ids "
        "listed once, then pages of 1,000 by id), analyses, fits, persists.",
        "* BM25 refresh after 1 ACL change: one chunk's metadata rewritten through the App's "
        "store (which journals the ids it writes), then `ensure_fresh()`: the index re-reads "
        "that id only (no scan, no refit) and appends to its log on disk.",
    ]
    return "\n".join(lines) + "\n"


def plot(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = result["sizes"]
    xs = [r["chunks"] for r in rows]
    fig, axes = plt.subplots(2, 2, figsize=(12, 9))
    ax = axes[0][0]
    for user, style in (("broad", "-"), ("narrow", "--")):
        for kind, marker in zip(KINDS, "osD", strict=True):
            ys = [r["queries"][f"{kind}/{user}"]["p50_ms"] for r in rows]
            ax.plot(xs, ys, style, marker=marker, label=f"{kind} {user}")
    ax.set(xscale="log", yscale="log", xlabel="chunks", ylabel="ms", title="query p50 (k=10)")
    ax.legend(fontsize=8)
    ax.grid(True, which="both", alpha=0.3)
    ax = axes[0][1]
    ax.plot(xs, [r["ingest_chunks_per_s"] for r in rows], "-o", label="vectors precomputed")
    enc = result["encode"]
    ax.axhline(
        enc["ingest_with_encoding_chunks_per_s"],
        color="red",
        ls=":",
        label=f"with encoding (measured once, {enc['chunks']:,} chunks)",
    )
    ax.set(xscale="log", xlabel="chunks", ylabel="chunks/s", title="ingest rate (per size step)")
    ax.set_ylim(bottom=0)
    ax.legend(fontsize=8)
    ax.grid(True, which="both", alpha=0.3)
    ax = axes[1][0]
    ax.plot(xs, [r["rss_after_queries"] / GB for r in rows], "-o", label="RSS after queries")
    ax.plot(xs, [r["peak_rss"] / GB for r in rows], "-^", label="peak RSS")
    ax.plot(xs, [r["disk_bytes"]["total"] / GB for r in rows], "-s", label="disk")
    ax.set(xscale="log", yscale="log", xlabel="chunks", ylabel="GB", title="memory and disk")
    ax.legend(fontsize=8)
    ax.grid(True, which="both", alpha=0.3)
    ax = axes[1][1]
    ax.plot(xs, [r["bm25_build_s"] for r in rows], "-o", label="BM25 full build")
    ax.plot(
        xs, [r["ingest_s"] for r in rows], "-s", label="ingest of the chunks added for the size"
    )
    ax.set(xscale="log", yscale="log", xlabel="chunks", ylabel="s", title="build times")
    ax.legend(fontsize=8)
    ax.grid(True, which="both", alpha=0.3)
    fig.suptitle(
        "rag_app growth curve: embedded Chroma, SciFact replicated "
        f"({result['machine']['cpus']} CPUs, contended)"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# -- main ------------------------------------------------------------------------------------------
def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="10000,50000,200000,1000000")
    parser.add_argument("--data-dir", type=Path, default=Path("/tmp/growth-data"))
    parser.add_argument("--cache-dir", type=Path, default=Path("/tmp/growth-cache"))
    parser.add_argument("--dataset", type=Path, default=DATASET)
    parser.add_argument("--queries", type=int, default=100)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--groups", type=int, default=100)
    parser.add_argument("--broad-groups", type=int, default=90)
    parser.add_argument("--noise", type=float, default=0.25, help="norm of a replica's noise")
    parser.add_argument("--seed", type=int, default=12)
    parser.add_argument("--docs-per-file", type=int, default=2500)
    parser.add_argument(
        "--budget-min",
        type=float,
        default=75.0,
        help="wall-clock budget of the whole run: a size whose estimate does not fit is not "
        "started (0: no limit)",
    )
    parser.add_argument("--out-dir", type=Path, default=RESULTS)
    parser.add_argument(
        "--keep-data", action="store_true", help="keep the data folder (default: removed)"
    )
    parser.add_argument(
        "--render",
        type=Path,
        metavar="GROWTH_JSON",
        help="measure nothing: write growth.md and growth.png again from this growth.json",
    )
    args = parser.parse_args()
    if args.render:
        return render_again(args.render, args.out_dir)
    sizes = sorted({int(float(s)) for s in args.sizes.split(",") if s.strip()})
    run_started = time.perf_counter()
    load_start = load()

    settings = Settings(data_dir=args.data_dir, collection=COLLECTION, k=args.k)
    # the slow-search log line is for operators; here every search is timed (metrics are
    # still recorded, as in any process)
    monitoring.configure(slow_query_ms=3_600_000)
    real = build_embeddings(settings)
    docs = abstracts(args.dataset)
    samples = load_dataset(args.dataset, split="train").samples
    queries = [s.user_input for s in samples[: args.queries]]
    warm = samples[args.queries].user_input
    cache = args.cache_dir / cache_key(settings, real.name, args.dataset)
    if not (cache / "meta.json").exists():
        build_cache(
            cache,
            settings,
            real,
            docs,
            [*queries, warm],
            args.groups,
            args.data_dir.with_name(args.data_dir.name + "-encode"),
        )
    encode_meta = json.loads((cache / "meta.json").read_text())
    texts = json.loads((cache / "texts.json").read_text())
    vectors = np.load(cache / "vectors.npy")
    chunks = json.loads((cache / "chunks.json").read_text())
    query_vectors = json.loads((cache / "queries.json").read_text())
    fake = PrecomputedEmbeddings(
        real, texts, vectors, query_vectors, noise=args.noise, seed=args.seed
    )
    print(
        f"vector cache {cache}: {len(texts)} chunk texts of {len(docs)} abstracts "
        f"({sum(chunks)} chunks per copy)"
    )

    # the noise, checked on a sample of the cached vectors
    sample = vectors[: min(2000, len(vectors))].astype(np.float32)
    fake.stream(1, 0)
    one = fake.perturb(sample, 1)
    fake.stream(2, 0)
    two = fake.perturb(sample, 2)
    noise_check = {
        "cos_to_original": float(np.mean(np.sum(sample * one, axis=1))),
        "cos_between_replicas": float(np.mean(np.sum(one * two, axis=1))),
        "equal_vectors": int(np.sum(np.all(one == two, axis=1))),
    }

    # query encoding, one at a time (what every dense or hybrid search adds when not cached)
    real.embed_query(warm)
    enc_ms = []
    for q in queries:
        t = time.perf_counter()
        real.embed_query(q)
        enc_ms.append((time.perf_counter() - t) * 1000)
    query_encode = percentiles(enc_ms)

    shutil.rmtree(args.data_dir, ignore_errors=True)
    app = App(settings, embeddings=fake)  # type: ignore[arg-type]
    app.query_vectors.prime([*queries, warm])
    inputs = args.data_dir / "input"
    broad = Principal(
        tenant=TENANT,
        user_id="broad",
        groups=frozenset(f"g{g:02d}" for g in range(args.broad_groups)),
    )
    narrow = Principal(tenant=TENANT, user_id="narrow", groups=frozenset({"g00"}))
    users = {"broad": broad, "narrow": narrow}

    result: dict[str, Any] = {
        "command": " ".join(["python", "bench/bench_growth.py", *sys.argv[1:]]),
        "config": {
            "sizes": sizes,
            "data_dir": str(args.data_dir),
            "queries": len(queries),
            "k": args.k,
            "groups": args.groups,
            "broad_groups": args.broad_groups,
            "noise": args.noise,
            "seed": args.seed,
            "docs_per_file": args.docs_per_file,
            "chunk_size": settings.chunk_size,
            "chunk_overlap": settings.chunk_overlap,
            "budget_min": args.budget_min,
            "store": "chroma (embedded)",
        },
        "machine": {
            "cpus": os.cpu_count(),
            "cpu": cpu_model(),
            "memory_gb": psutil.virtual_memory().total / GB,
            "python": platform.python_version(),
            "chromadb": __import__("chromadb").__version__,
            "loadavg_start": load_start,
        },
        "encode": encode_meta,
        "query_encode": query_encode,
        "noise_check": noise_check,
        "sizes": [],
    }
    position, have, part = 0, 0, 0
    for target in sizes:
        elapsed = time.perf_counter() - run_started
        if result["sizes"]:
            why = too_big(result["sizes"], target, elapsed, args.budget_min)
            if why:
                result["stopped"] = why
                print(f"stopping before {target:,}: {why}")
                break
        ranges, position, planned = plan(docs, chunks, position, have, target)
        print(f"size {human(target)}: adding {planned - have:,} chunks ...")
        ingest_s = 0.0
        added = 0
        load_ingest = []
        for replica, first, stop in ranges:
            for lo in range(first, stop, args.docs_per_file):
                hi = min(stop, lo + args.docs_per_file)
                path = inputs / f"scifact-r{replica}-{lo}.jsonl"
                write_jsonl(path, (record(d, replica, args.groups) for d in docs[lo:hi]))
                fake.stream(replica, part)
                part += 1
                t = time.perf_counter()
                report = app.ingestor.ingest([path], origin="bench")
                ingest_s += time.perf_counter() - t
                path.unlink()
                if report.rejected:
                    raise RuntimeError(f"rejected input: {report.rejected[:3]}")
                added += report.chunks_added
                load_ingest.append(os.getloadavg()[0])
        have = app.store.count()
        if have != planned:
            raise RuntimeError(f"the store holds {have} chunks, {planned} were planned")
        gc.collect()
        row: dict[str, Any] = {
            "target": target,
            "chunks": have,
            "added": added,
            "ingest_s": ingest_s,
            "ingest_chunks_per_s": added / ingest_s,
            "rss_after_ingest": rss(),
        }
        print(
            f"  ingest {added:,} chunks in {ingest_s:.1f} s = {row['ingest_chunks_per_s']:.0f} "
            f"chunks/s; RSS {row['rss_after_ingest'] / GB:.2f} GB"
        )
        row["bm25_build_s"] = bm25_full_build(app)
        gc.collect()
        row["rss_after_bm25"] = rss()
        row["bm25_refresh_s"] = bm25_small_refresh(app)
        print(
            f"  BM25 full build {row['bm25_build_s']:.1f} s; refresh after one ACL change "
            f"{row['bm25_refresh_s'] * 1000:.0f} ms; RSS {row['rss_after_bm25'] / GB:.2f} GB"
        )
        data = args.data_dir
        row["disk_bytes"] = {
            "chroma": allocated(data / "chroma"),
            "state": allocated(data / "state.db"),
            "bm25": allocated(data / "bm25"),
        }
        row["disk_bytes"]["total"] = allocated(data) - allocated(inputs)
        t = time.perf_counter()
        row["queries"] = measure_queries(app, users, queries, warm, args.k)
        row["queries_s"] = time.perf_counter() - t
        gc.collect()
        row["rss_after_queries"] = rss()
        row["peak_rss"] = peak_rss()
        row["loadavg"] = load()
        row["loadavg_during_ingest_mean"] = statistics.fmean(load_ingest) if load_ingest else None
        row["elapsed_s"] = time.perf_counter() - run_started
        row["disk_free"] = shutil.disk_usage(args.data_dir).free
        row["memory_available"] = psutil.virtual_memory().available
        result["sizes"].append(row)
        print(
            f"  disk {row['disk_bytes']['total'] / GB:.2f} GB; "
            f"RSS {row['rss_after_queries'] / GB:.2f} GB (peak {row['peak_rss'] / GB:.2f}); "
            f"queries {row['queries_s']:.0f} s; load "
            f"{row['loadavg']}; {row['elapsed_s'] / 60:.1f} min so far"
        )
        write_outputs(result, app, users, args, fake, run_started)

    write_outputs(result, app, users, args, fake, run_started)
    print()
    print(tables(result))
    if result.get("stopped"):
        print(f"\nstopped: {result['stopped']}")
    print(f"\nresults written to {args.out_dir}/growth.{{json,md,png}}")
    app.close()
    if not args.keep_data:
        shutil.rmtree(args.data_dir, ignore_errors=True)
    return 0


def growth_exponent(rows: Sequence[dict[str, Any]], key: str) -> float:
    """How `key` grew with the chunk count over the last two sizes (time ~ chunks^e), clamped
    to [1, 2.5]: at least linear, and a quadratic part (e.g. a scan with offset paging) is
    extrapolated as such."""
    if len(rows) < 2 or rows[-2][key] <= 0:
        return 1.0
    a, b = rows[-2], rows[-1]
    e = math.log(b[key] / a[key]) / math.log(b["chunks"] / a["chunks"])
    return min(2.5, max(1.0, e))


def too_big(
    rows: Sequence[dict[str, Any]], target: int, elapsed: float, budget_min: float
) -> str | None:
    """Why the next size should not be started (time, disk, memory), from the sizes so far."""
    last = rows[-1]
    scale = target / last["chunks"]
    add = target - last["chunks"]
    # The ingest rate falls as the store grows: the next step runs at most at 80% of the last
    # one's rate, or lower if it fell faster between the last two steps.
    fall = 0.8
    if len(rows) >= 2:
        fall = min(fall, last["ingest_chunks_per_s"] / rows[-2]["ingest_chunks_per_s"])
    rate = last["ingest_chunks_per_s"] * fall
    ingest = add / rate
    e_bm25 = growth_exponent(rows, "bm25_build_s")
    e_queries = growth_exponent(rows, "queries_s")
    bm25 = last["bm25_build_s"] * scale**e_bm25
    queries = last["queries_s"] * scale**e_queries
    estimate = ingest + bm25 + queries
    disk = last["disk_bytes"]["total"] * scale
    memory = last["peak_rss"] * scale
    budget = budget_min * 60
    numbers = (
        f"estimated from the sizes up to {last['chunks']:,} chunks: ingest of "
        f"{add:,} chunks {ingest / 60:.0f} min (at {rate:.0f} chunks/s, {fall:.0%} of the last "
        f"step's rate), BM25 full build {bm25 / 60:.0f} min (time ~ chunks^{e_bm25:.2f} over "
        f"the last two sizes), queries {queries / 60:.0f} min (~ chunks^{e_queries:.2f}) = "
        f"{estimate / 60:.0f} min, after {elapsed / 60:.0f} min already spent, against a "
        f"{budget_min:g}-minute budget; disk ~{disk / GB:.1f} GB of "
        f"{last['disk_free'] / GB:.0f} GB free; peak RSS ~{memory / GB:.1f} GB of "
        f"{last['memory_available'] / GB:.1f} GB available (both linear)"
    )
    reasons = []
    if budget and elapsed + estimate > budget:
        reasons.append("time")
    if disk > 0.8 * last["disk_free"]:
        reasons.append("disk: over 80% of the free disk")
    if memory > 0.8 * last["memory_available"]:
        reasons.append("memory: over 80% of the available memory")
    if not reasons:
        return None
    return f"{target:,} chunks not started ({'; '.join(reasons)}): {numbers}."


def write_outputs(
    result: dict[str, Any],
    app: App,
    users: dict[str, Principal],
    args: Any,
    fake: PrecomputedEmbeddings,
    run_started: float,
) -> None:
    if not result["sizes"]:
        return
    total = result["sizes"][-1]["chunks"]
    result["users"] = {}
    for name, principal in users.items():
        readable = readable_chunks(app, principal)
        result["users"][name] = {
            "groups": len(principal.groups),
            "readable": readable,
            "share": readable / total,
        }
    result["lookup_s_total"] = fake.seconds
    result["machine"]["loadavg_end"] = load()
    result["finished_at"] = datetime.now(UTC).isoformat(timespec="seconds")
    result["wall_s"] = time.perf_counter() - run_started
    render(result, args.out_dir)


def render(result: dict[str, Any], out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "growth.json").write_text(json.dumps(result, indent=2))
    (out_dir / "growth.md").write_text(markdown(result))
    plot(result, out_dir / "growth.png")


def render_again(path: Path, out_dir: Path) -> int:
    """growth.md and growth.png again from a growth.json (the stop reason recomputed from its
    numbers with this script's estimate)."""
    result = json.loads(path.read_text())
    rows = result["sizes"]
    if result.get("stopped") and rows:
        after = [n for n in result["config"]["sizes"] if n > rows[-1]["target"]]
        if after:
            why = too_big(rows, after[0], rows[-1]["elapsed_s"], result["config"]["budget_min"])
            if why and why != result["stopped"]:
                result.setdefault("stopped_as_printed_by_the_run", result["stopped"])
                result["stopped"] = why
    render(result, out_dir)
    print(tables(result))
    if result.get("stopped"):
        print(f"\nstopped: {result['stopped']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
