"""Encoder benchmark: the local model's backends (RAG_EMBED_BACKEND) on SciFact, in one run.

For each backend (torch = sentence-transformers, onnx, onnx-int8):

1. quality: the 5,183 SciFact abstracts (title + " " + text, truncated by the model at its
   256-token limit, as the app's encoder does) and the queries with relevance judgments are
   encoded; nDCG@10 by exact cosine search in numpy (the same code for every backend);
2. corpus throughput (texts/s, and process CPU seconds) of that encoding, batch size
   RAG_EMBED_BATCH_SIZE (64), the backends taking turns on slices of 512 abstracts (the
   machine's speed drifts);
3. ingestion-shaped throughput: abstracts split by the app's TokenSplitter (chunk_size 200)
   and embedded through `LocalEmbeddings.embed_documents` in batches of 64, as the ingestor
   does; backends alternate over two rounds (the machine's speed drifts), best round kept;
4. single-query latency (`embed_query`, p50), and the cold start: a fresh interpreter to the
   first query vector (imports and model load, the export cached) and its peak RSS;
5. vectors against torch's: the largest absolute difference of a coordinate and the smallest
   cosine over the corpus.

Ratios are against torch measured in the same run. The ONNX exports are made from the bundled
weights into a fresh temporary cache (export time reported) unless --cache-dir is given.

Usage: python bench/bench_encoder.py [--dataset DIR] [--split train] [--backends ...]
       [--ingest-docs 200] [--queries-latency 100] [--out bench/results/encoder.json]
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from rag_app import configure_offline  # noqa: E402

configure_offline()

from rag_app.embeddings import LocalEmbeddings  # noqa: E402
from rag_app.ingest.splitting import TokenSplitter  # noqa: E402
from rag_app.settings import Settings  # noqa: E402

QUALITY_BAR = 0.005  # a backend is kept only within this much nDCG@10 of torch


def load_beir(dataset: Path, split: str) -> tuple[list[str], list[str], list[str], list[str], dict]:
    doc_ids: list[str] = []
    doc_texts: list[str] = []
    with (dataset / "corpus.jsonl").open(encoding="utf-8") as fh:
        for line in fh:
            rec = json.loads(line)
            doc_ids.append(str(rec["_id"]))
            title = (rec.get("title") or "").strip()
            doc_texts.append(f"{title} {rec['text']}".strip())
    qrels: dict[str, dict[str, int]] = {}
    with (dataset / "qrels" / f"{split}.tsv").open(encoding="utf-8") as fh:
        for row in csv.DictReader(fh, delimiter="\t"):
            if int(row["score"]) > 0:
                qrels.setdefault(str(row["query-id"]), {})[str(row["corpus-id"])] = int(
                    row["score"]
                )
    query_ids: list[str] = []
    query_texts: list[str] = []
    with (dataset / "queries.jsonl").open(encoding="utf-8") as fh:
        for line in fh:
            rec = json.loads(line)
            if str(rec["_id"]) in qrels:
                query_ids.append(str(rec["_id"]))
                query_texts.append(rec["text"])
    return doc_ids, doc_texts, query_ids, query_texts, qrels


def ndcg_at_10(
    doc_vecs: np.ndarray,
    query_vecs: np.ndarray,
    doc_ids: list[str],
    query_ids: list[str],
    qrels: dict[str, dict[str, int]],
) -> float:
    """Mean nDCG@10 (graded gains 2^rel - 1, log2 discount) by exact cosine search."""
    scores = query_vecs @ doc_vecs.T  # unit vectors: dot product = cosine
    top = np.argpartition(-scores, 10, axis=1)[:, :10]
    values = []
    for qi, qid in enumerate(query_ids):
        ranked = top[qi][np.argsort(-scores[qi, top[qi]], kind="stable")]
        rel = qrels[qid]
        dcg = sum(
            (2 ** rel.get(doc_ids[d], 0) - 1) / math.log2(rank + 2) for rank, d in enumerate(ranked)
        )
        ideal = sorted(rel.values(), reverse=True)[:10]
        idcg = sum((2**g - 1) / math.log2(rank + 2) for rank, g in enumerate(ideal))
        values.append(dcg / idcg if idcg else 0.0)
    return float(np.mean(values))


def encode(emb: LocalEmbeddings, texts: list[str], batch: int) -> tuple[np.ndarray, float]:
    t0 = time.perf_counter()
    vecs = emb.model.encode(
        texts, batch_size=batch, normalize_embeddings=True, show_progress_bar=False
    )
    return np.asarray(vecs, dtype=np.float32), time.perf_counter() - t0


class CpuClock:
    """Process CPU seconds (all threads): less sensitive than wall time to other processes
    on the machine, though a thread pool spinning while it waits for a core also counts."""

    def __init__(self) -> None:
        self.total = 0.0

    def __enter__(self) -> CpuClock:
        self._start = time.process_time()
        return self

    def __exit__(self, *exc: object) -> None:
        self.total += time.process_time() - self._start


COLD_START = """
import sys, time
t0 = time.perf_counter()
sys.path.insert(0, {root!r})
from rag_app import configure_offline
configure_offline()
from pathlib import Path
from rag_app.embeddings import LocalEmbeddings
LocalEmbeddings(backend={backend!r}, cache_dir=Path({cache!r})).embed_query("first query")
seconds = time.perf_counter() - t0
# VmHWM: this program's peak RSS (ru_maxrss would count the parent's pages forked before exec)
with open("/proc/self/status") as status:
    peak_kb = next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))
print(seconds, peak_kb / 1024)
"""


def cold_start(backend: str, cache: Path, rounds: int = 2) -> tuple[float, float]:
    """Seconds from a fresh interpreter to the first query vector (imports, model load; the
    ONNX export already cached) and that process's peak RSS in MB; best of `rounds`."""
    code = COLD_START.format(root=str(ROOT), backend=backend, cache=str(cache))
    best = (math.inf, math.inf)
    for _ in range(rounds):
        out = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True
        ).stdout.split()
        best = min(best, (float(out[-2]), float(out[-1])))
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", type=Path, default=ROOT.parent / "shared/datasets/scifact")
    parser.add_argument("--split", default="train")
    parser.add_argument("--backends", default="torch,onnx,onnx-int8")
    parser.add_argument("--slice", type=int, default=512, help="abstracts per turn")
    parser.add_argument("--ingest-docs", type=int, default=200)
    parser.add_argument("--queries-latency", type=int, default=100)
    parser.add_argument("--cache-dir", type=Path, default=None)
    parser.add_argument("--out", type=Path, default=ROOT / "bench/results/encoder.json")
    parser.add_argument(
        "--startup-only",
        action="store_true",
        help="only the cold start of each backend (time to the first query vector, RSS)",
    )
    args = parser.parse_args()
    if args.startup_only:
        cache = args.cache_dir or Path(tempfile.mkdtemp(prefix="rag-bench-onnx-"))
        for backend in [b.strip() for b in args.backends.split(",") if b.strip()]:
            cold_start(backend, cache, rounds=1)  # exports into the cache if needed
            seconds, rss = cold_start(backend, cache)
            print(f"{backend:10s} cold start {seconds:5.2f} s, peak RSS {rss:6.0f} MB")
        if args.cache_dir is None:
            shutil.rmtree(cache, ignore_errors=True)
        return

    import torch

    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    if backends[0] != "torch":
        backends.insert(0, "torch")
    settings = Settings()
    batch = settings.embed_batch_size
    cache = args.cache_dir or Path(tempfile.mkdtemp(prefix="rag-bench-onnx-"))
    doc_ids, doc_texts, query_ids, query_texts, qrels = load_beir(args.dataset, args.split)
    print(
        f"SciFact ({args.split}): {len(doc_texts)} abstracts, {len(query_texts)} queries with "
        f"judgments; batch {batch}; torch threads {torch.get_num_threads()}; cache {cache}"
    )

    models: dict[str, LocalEmbeddings] = {}
    rows: dict[str, dict[str, float | str]] = {}
    for backend in backends:
        emb = LocalEmbeddings(batch_size=batch, backend=backend, cache_dir=cache)  # type: ignore[arg-type]
        t0 = time.perf_counter()
        emb.model.encode(["warm up the model"] * 8, batch_size=8)
        rows[backend] = {"name": emb.name, "load_or_export_s": round(time.perf_counter() - t0, 2)}
        models[backend] = emb
        print(f"{backend:10s} loaded ({emb.name}) in {rows[backend]['load_or_export_s']} s")

    # The corpus in slices, backends taking turns on each slice, so that a drift in the
    # machine's speed (other processes) is shared by all of them.
    doc_parts: dict[str, list[np.ndarray]] = {b: [] for b in backends}
    doc_time = dict.fromkeys(backends, 0.0)
    doc_cpu = {b: CpuClock() for b in backends}
    for start in range(0, len(doc_texts), args.slice):
        part = doc_texts[start : start + args.slice]
        for backend in backends:
            with doc_cpu[backend]:
                vecs, elapsed = encode(models[backend], part, batch)
            doc_parts[backend].append(vecs)
            doc_time[backend] += elapsed
        done = min(start + args.slice, len(doc_texts))
        print(
            f"  {done}/{len(doc_texts)} abstracts: "
            + ", ".join(f"{b} {done / doc_time[b]:.1f}/s" for b in backends),
            flush=True,
        )
    vectors: dict[str, np.ndarray] = {}
    for backend in backends:
        doc_vecs = np.concatenate(doc_parts[backend])
        query_vecs, query_s = encode(models[backend], query_texts, batch)
        vectors[backend] = doc_vecs
        ndcg = ndcg_at_10(doc_vecs, query_vecs, doc_ids, query_ids, qrels)
        rows[backend].update(
            {
                "ndcg@10": round(ndcg, 4),
                "corpus_texts_per_s": round(len(doc_texts) / doc_time[backend], 2),
                "corpus_cpu_s": round(doc_cpu[backend].total, 1),
                "query_texts_per_s": round(len(query_texts) / query_s, 2),
            }
        )
        print(f"{backend:10s} nDCG@10 {ndcg:.4f}")

    # ingestion-shaped batches: the app's chunks, embed_documents in batches of 64
    splitter = TokenSplitter(
        models["torch"], chunk_size=settings.chunk_size, chunk_overlap=settings.chunk_overlap
    )
    chunks = [c for text in doc_texts[: args.ingest_docs] for c in splitter.split(text)]
    best: dict[str, float] = {}
    for _ in range(2):
        for backend in backends:
            emb = models[backend]
            t0 = time.perf_counter()
            for start in range(0, len(chunks), batch):
                emb.embed_documents(chunks[start : start + batch])
            elapsed = time.perf_counter() - t0
            best[backend] = min(best.get(backend, math.inf), elapsed)
    # single queries: each backend runs them in a block (taking turns query by query would
    # measure one runtime's thread pool still spinning while the other's runs), two rounds,
    # the better median kept
    latency: dict[str, float] = {}
    for _ in range(2):
        for backend in backends:
            times = []
            for text in query_texts[: args.queries_latency]:
                t0 = time.perf_counter()
                models[backend].embed_query(text)
                times.append(time.perf_counter() - t0)
            latency[backend] = min(latency.get(backend, math.inf), statistics.median(times))
    for backend in backends:
        seconds, rss = cold_start(backend, cache)
        rows[backend]["cold_start_s"] = round(seconds, 2)
        rows[backend]["cold_start_rss_mb"] = round(rss)

    base = rows["torch"]
    ref = vectors["torch"]
    for backend in backends:
        row = rows[backend]
        row["ingest_chunks_per_s"] = round(len(chunks) / best[backend], 2)
        row["query_p50_ms"] = round(latency[backend] * 1000, 2)
        diff = vectors[backend] - ref
        row["max_abs_diff_vs_torch"] = float(f"{float(np.abs(diff).max()):.3g}")
        row["min_cosine_vs_torch"] = round(float((vectors[backend] * ref).sum(1).min()), 6)
        row["ndcg_delta"] = round(float(row["ndcg@10"]) - float(base["ndcg@10"]), 4)
        row["passes"] = "yes" if abs(float(row["ndcg_delta"])) <= QUALITY_BAR else "no"
        for key in ("corpus_texts_per_s", "ingest_chunks_per_s"):
            row[key.replace("_per_s", "_x")] = round(float(row[key]) / float(base[key]), 2)
        row["query_p50_x"] = round(float(base["query_p50_ms"]) / float(row["query_p50_ms"]), 2)
        row["corpus_cpu_x"] = round(float(base["corpus_cpu_s"]) / float(row["corpus_cpu_s"]), 2)

    print(
        f"\n{len(chunks)} ingestion chunks from {args.ingest_docs} abstracts "
        f"(chunk_size {settings.chunk_size}); ratios vs torch in this run (higher = faster)\n"
    )
    header = (
        "| backend | nDCG@10 | Δ vs torch | passes | corpus texts/s | x | corpus CPU s | x "
        "| ingest chunks/s | x | query p50 ms | x | max abs diff | min cos | load/export s "
        "| cold start s | RSS MB |"
    )
    print(header)
    print("|" + "---|" * (header.count("|") - 1))
    for backend in backends:
        r = rows[backend]
        print(
            f"| {backend} | {r['ndcg@10']:.4f} | {r['ndcg_delta']:+.4f} | {r['passes']} "
            f"| {r['corpus_texts_per_s']} | {r['corpus_texts_x']}x | {r['corpus_cpu_s']} "
            f"| {r['corpus_cpu_x']}x | {r['ingest_chunks_per_s']} "
            f"| {r['ingest_chunks_x']}x | {r['query_p50_ms']} | {r['query_p50_x']}x "
            f"| {r['max_abs_diff_vs_torch']} | {r['min_cosine_vs_torch']} "
            f"| {r['load_or_export_s']} | {r['cold_start_s']} | {r['cold_start_rss_mb']} |"
        )
    result = {
        "load_average_1_5_15": [round(x, 2) for x in os.getloadavg()],
        "dataset": str(args.dataset),
        "split": args.split,
        "docs": len(doc_texts),
        "queries": len(query_texts),
        "ingest_chunks": len(chunks),
        "batch_size": batch,
        "torch_threads": torch.get_num_threads(),
        "backends": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(f"\nresults written to {args.out}")
    if args.cache_dir is None:
        shutil.rmtree(cache, ignore_errors=True)


if __name__ == "__main__":
    main()
