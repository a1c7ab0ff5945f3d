"""Retrieval latency against its floor, on SciFact, in one run.

The floor of a hybrid query is what no implementation can avoid on this machine: encoding
the query, an exact numpy dot product over every stored vector, and a raw bm25s query. Each
searcher (dense, BM25, hybrid; behind the permission guard, as every reader calls it) is
timed on the same queries, in the same run, and printed as a ratio against that floor.
``hybrid`` is the App's fused search, whose dense half (`rag_app.retrieval.hybrid.IdsFirstDense`)
searches the App's copy of every stored vector exactly; ``hybrid_nearest`` is the same half
without the copy (Chroma's ids-only HNSW query, what a collection larger than
``RAG_VECTOR_COPY_MB`` gets); ``hybrid_plain`` is the fused search with the store's filtered
dense query, the baseline ids-first replaced. The
Chroma query with and without its ``where`` filter is shown too (the filter evaluation is what
`ChromaStore.query` avoids for broad filters), with the recall of the store's top 100 against
the exact top 100.

The corpus is ingested once into the evaluation collection of `rag-app eval run` (same name,
so an earlier run's index is reused): give the same ``--data-dir``.

Usage: python bench/bench_retrieval.py [--data-dir DIR] [--queries 200] [--k 10,300]
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from rag_app import configure_offline  # noqa: E402

configure_offline()

import numpy as np  # noqa: E402

from rag_app.access.permissions import Principal, effective_filter  # noqa: E402
from rag_app.app import App  # noqa: E402
from rag_app.evaluation.datasets import load_dataset  # noqa: E402
from rag_app.evaluation.runner import prepare  # noqa: E402
from rag_app.retrieval.bm25 import KeywordSearch, index_text  # noqa: E402
from rag_app.retrieval.hybrid import HybridSearch, IdsFirstDense  # noqa: E402
from rag_app.settings import Settings  # noqa: E402
from rag_app.stores.chroma import _in_tenant, translate  # noqa: E402

DATASET = ROOT.parent / "shared/datasets/scifact"


def timed(queries: list[str], fn: Callable[[str], Any]) -> dict[str, float]:
    out = []
    for q in queries:
        t = time.perf_counter()
        fn(q)
        out.append((time.perf_counter() - t) * 1000)
    out.sort()
    return {"p50_ms": statistics.median(out), "p95_ms": out[int(0.95 * (len(out) - 1))]}


def plain_bm25s(keyword: Any, built: Any) -> Any:
    """bm25s' own index (`BM25.index`) over the index's chunks, analysed as the app does."""
    import bm25s
    from bm25s.tokenization import Tokenized

    logging.getLogger("bm25s").setLevel(logging.WARNING)
    vocab: dict[str, int] = {}
    ids = [
        [
            vocab.setdefault(token, len(vocab))
            for token in keyword.analyzer(
                index_text(text, meta, keyword.title_field, keyword.title_weight)
            )
        ]
        for text, meta in zip(built.texts, built.metadatas, strict=True)
    ]
    model = bm25s.BM25(k1=keyword.k1, b=keyword.b, method=keyword.method)
    model.index(Tokenized(ids=ids, vocab=vocab), show_progress=False)
    return model


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", type=Path, default=Path("/tmp/rag-bench-retrieval"))
    parser.add_argument("--dataset", type=Path, default=DATASET)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--k", default="10,300", help="depths to time (comma-separated)")
    parser.add_argument("--out", type=Path, default=ROOT / "bench/results/retrieval.json")
    args = parser.parse_args()

    base = Settings(data_dir=args.data_dir)
    app = App(base)
    dataset = load_dataset(args.dataset, split="train")
    t = time.perf_counter()
    prepared = prepare(app, dataset, retriever="hybrid")
    eapp = prepared.app
    seconds = time.perf_counter() - t
    print(f"collection {prepared.collection}: {eapp.store.count()} chunks ({seconds:.1f}s)")
    principal = Principal.anonymous(str(dataset.overrides.get("tenant", "eval")))
    where = effective_filter(principal, None)
    queries = [s.user_input for s in dataset.samples][: args.queries]

    # the floor's parts
    encoder = eapp.embeddings
    vectors = {q: encoder.embed_query(q) for q in queries}
    ids: list[str] = []
    rows: list[list[float]] = []
    for record, vector in eapp.store.records_with_vectors():  # type: ignore[attr-defined]
        ids.append(record.id)
        rows.append(vector)
    matrix = np.asarray(rows, dtype=np.float32)
    keyword = eapp.keyword_index
    keyword.ensure_fresh()
    results: dict[str, Any] = {"chunks": len(ids), "queries": len(queries)}
    results["encode"] = timed(queries, encoder.embed_query)
    results["numpy_exact"] = timed(
        queries, lambda q: np.argpartition(-(matrix @ np.asarray(vectors[q], np.float32)), 300)
    )
    # a raw bm25s query: analyse, score every chunk, top 300 (no filter, no freshness check),
    # on a plain bm25s index of the same analysed chunks (bm25s precomputes its score matrix;
    # the app's index scores at query time so that a change never refits the matrix)
    built = keyword.current()
    raw_model = plain_bm25s(keyword, built)

    def raw_bm25(q: str) -> Any:
        scores = raw_model.get_scores_from_ids(raw_model.get_tokens_ids(keyword.analyzer(q)))
        return np.argpartition(-np.asarray(scores), 300)[:300]

    agree = sum(
        np.array_equal(
            np.asarray(
                raw_model.get_scores_from_ids(raw_model.get_tokens_ids(keyword.analyzer(q)))
            ),
            np.asarray(
                built.model.get_scores_from_ids(built.model.get_tokens_ids(keyword.analyzer(q)))
            ),
        )
        for q in queries
    )
    results["bm25s_equal_scores"] = f"{agree}/{len(queries)}"
    print(f"bm25s and the app's scorer: identical scores for {agree}/{len(queries)} queries")
    # the app's own scorer, same query (part of `bm25_index` below; not the floor)
    results["bm25_app_scorer"] = timed(
        queries,
        lambda q: built.model.get_scores_from_ids(built.model.get_tokens_ids(keyword.analyzer(q))),
    )

    results["bm25_raw"] = timed(queries, raw_bm25)
    # the index's own search (freshness check, access mask, hits): not part of the floor
    results["bm25_index"] = timed(queries, lambda q: keyword.search(q, 300, where))
    floor = sum(results[p]["p50_ms"] for p in ("encode", "numpy_exact", "bm25_raw"))
    results["floor_p50_ms"] = floor

    # Chroma's own query, with and without its where filter, and recall against exact
    collection = eapp.store._collection  # type: ignore[attr-defined]
    native = translate(_in_tenant(where, principal.tenant))
    for n in (100, 300):
        results[f"chroma_where_{n}"] = timed(
            queries,
            lambda q, n=n: collection.query(
                query_embeddings=[vectors[q]], n_results=n, where=native, include=["metadatas"]
            ),
        )
        results[f"chroma_no_where_{n}"] = timed(
            queries,
            lambda q, n=n: collection.query(
                query_embeddings=[vectors[q]], n_results=n, include=["metadatas"]
            ),
        )
    recall = []
    for q in queries:
        exact = {ids[i] for i in np.argsort(-(matrix @ np.asarray(vectors[q], np.float32)))[:100]}
        got = {h.id for h in eapp.store.query(vectors[q], 100, where, tenant=principal.tenant)}
        recall.append(len(exact & got) / 100)
    results["store_recall_at_100_vs_exact"] = statistics.mean(recall)

    # the searchers, as every reader calls them, with the query's vector cached (its
    # encoding is the floor's first part, the same for every searcher): p50 + encode p50
    eapp.query_vectors.prime(queries)
    # the fused search with the store's filtered dense query, as before the ids-first half
    keyword = KeywordSearch(eapp.keyword_index)
    plain = HybridSearch(eapp.search, keyword, store=eapp.store)
    nearest = HybridSearch(
        IdsFirstDense(eapp.search.raw, eapp.keyword_index, eapp.store, copy_bytes=0),  # type: ignore[arg-type]
        keyword,
        store=eapp.store,
    )
    extra = {"hybrid_plain": plain, "hybrid_nearest": nearest}
    for k in [int(x) for x in args.k.split(",")]:
        for kind in ("dense", "bm25", "hybrid", "hybrid_nearest", "hybrid_plain"):
            searcher = extra[kind] if kind in extra else eapp.searcher(kind)
            row = timed(queries, lambda q, s=searcher, k=k: s.search(principal, q, k=k))
            encode = results["encode"]["p50_ms"] if kind != "bm25" else 0.0
            row["with_encode_p50_ms"] = row["p50_ms"] + encode
            row["x_floor"] = row["with_encode_p50_ms"] / floor
            results[f"{kind}_k{k}"] = row

    print(f"floor p50 {floor:.1f} ms = encode + numpy exact + raw bm25s")
    for key, value in results.items():
        if isinstance(value, dict):
            extra = (
                f"  + encode {value['with_encode_p50_ms']:7.2f} ms = {value['x_floor']:.2f}x floor"
                if "x_floor" in value
                else ""
            )
            print(f"  {key:22} p50 {value['p50_ms']:8.2f} ms  p95 {value['p95_ms']:8.2f}{extra}")
    print(f"  store recall@100 vs exact: {results['store_recall_at_100_vs_exact']:.4f}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2))
    print(f"results written to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
