"""Hybrid search on a grown store: the ways of running the fused search's dense half, on the
same queries, in one run, for a narrow user (reads ~1% of the chunks) and a broad one (~90%).

Narrow user:

* ``copy`` (what the App does while every vector fits in ``RAG_VECTOR_COPY_MB``): an exact
  cosine search over the matching chunks' rows of the App's copy of every stored vector
  (`rag_app.retrieval.hybrid.IdsFirstDense.vectors`), cut once per filter and index version;
* ``slice`` (no copy): the same search over the matching chunks' vectors read from the store
  once per filter and index version (`IdsFirstDense._slice`);
* ``ids``: a Chroma query restricted to those chunks' ids (the first version of ids-first);
* ``where``: Chroma's own filtered query (the plain fused search, before ids-first).

Broad user:

* ``copy``: one exact product over the copy, the filter applied as the BM25 copy's mask;
* ``nearest`` (no copy): Chroma's ids-only HNSW query, deep enough for the filter's share,
  judged against the mask;
* ``where``: the plain fused search (Chroma's query, filtered by `ChromaStore.query`).

Each is timed behind the permission guard as every reader calls it (query vectors cached),
after one cold query (for ``copy``, the first reads every vector; for ``slice``, the
matching ones). The share of queries whose hit ids agree with ``where`` is printed (exact
and HNSW searches may differ where HNSW misses a neighbour).

Run it on a store grown by ``bench/bench_growth.py --keep-data`` (same ``--data-dir``; without
``--keep-data`` the growth run removes its store).

Usage: python bench/bench_narrow.py [--data-dir /tmp/growth-data] [--queries 100]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from rag_app import configure_offline  # noqa: E402

configure_offline()

import numpy as np  # noqa: E402
from bench_growth import COLLECTION, TENANT, percentiles  # noqa: E402

from rag_app import monitoring  # noqa: E402
from rag_app.access.permissions import Principal  # noqa: E402
from rag_app.app import App  # noqa: E402
from rag_app.evaluation.datasets import load_dataset  # noqa: E402
from rag_app.retrieval.bm25 import KeywordSearch  # noqa: E402
from rag_app.retrieval.hybrid import HybridSearch, IdsFirstDense  # noqa: E402
from rag_app.retrieval.search import RawHits  # noqa: E402
from rag_app.settings import Settings  # noqa: E402
from rag_app.stores.base import StoreHit  # noqa: E402

DATASET = ROOT.parent / "shared/datasets/scifact"


class IdsRestricted(IdsFirstDense):
    """The narrow path as first written: Chroma's query restricted to the matching ids (read
    straight from the collection: the store port no longer offers it)."""

    def _among(  # type: ignore[override]
        self,
        built: Any,
        copy: Any,
        mask: Any,
        matching: int,
        vector: Any,
        query: str,
        k: int,
        where: Any,
        tenant: str,
        key: str,
    ) -> RawHits:
        rows = np.flatnonzero(mask)
        ids = [built.ids[n] for n in rows]
        res = self.store._collection.query(  # type: ignore[attr-defined]
            query_embeddings=[list(vector)], ids=ids, n_results=k, include=["distances"]
        )
        row_of = dict(zip(ids, rows.tolist(), strict=True))
        return RawHits(
            [
                StoreHit(cid, "", built.metadatas[row_of[cid]], 1.0 - float(d))
                for cid, d in zip(res["ids"][0], res["distances"][0], strict=True)
            ]
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", type=Path, default=Path("/tmp/growth-data"))
    parser.add_argument("--dataset", type=Path, default=DATASET)
    parser.add_argument("--queries", type=int, default=100)
    parser.add_argument("--out", type=Path, default=ROOT / "bench/results/narrow.json")
    args = parser.parse_args()

    if not (args.data_dir / "chroma").is_dir():
        raise SystemExit(
            f"no grown store under {args.data_dir}: run bench/bench_growth.py --keep-data "
            f"--data-dir {args.data_dir} first"
        )
    monitoring.configure(slow_query_ms=3_600_000)  # every search is timed here
    app = App(Settings(data_dir=args.data_dir, collection=COLLECTION, k=10))
    if app.store.count() == 0:
        raise SystemExit(f"the {COLLECTION!r} collection under {args.data_dir} is empty")
    samples = load_dataset(args.dataset, split="train").samples
    queries = [s.user_input for s in samples[: args.queries]]
    warm = samples[args.queries].user_input
    app.query_vectors.prime([*queries, warm])
    t = time.perf_counter()
    app.keyword_index.ensure_fresh()
    print(f"{app.store.count():,} chunks; BM25 index ready in {time.perf_counter() - t:.1f} s")
    narrow = Principal(tenant=TENANT, user_id="narrow", groups=frozenset({"g00"}))
    broad = Principal(
        tenant=TENANT, user_id="broad", groups=frozenset(f"g{n:02d}" for n in range(90))
    )
    keyword = KeywordSearch(app.keyword_index).raw

    def fused(dense: Any) -> HybridSearch:
        return HybridSearch(dense, keyword, store=app.store)

    def no_copy(kind: type[IdsFirstDense] = IdsFirstDense) -> IdsFirstDense:
        return kind(app.search.raw, app.keyword_index, app.store, copy_bytes=0)  # type: ignore[arg-type]

    copy = app.searcher("hybrid")  # the App's: a copy of every vector while it fits
    users: dict[str, tuple[Principal, dict[str, Any]]] = {
        "narrow": (
            narrow,
            {
                "where": fused(app.search),
                "ids": fused(no_copy(IdsRestricted)),
                "slice": fused(no_copy()),
                "copy": copy,
            },
        ),
        "broad": (
            broad,
            {"where": fused(app.search), "nearest": fused(no_copy()), "copy": copy},
        ),
    }
    results: dict[str, Any] = {"chunks": app.store.count(), "queries": len(queries)}
    for user, (principal, searchers) in users.items():
        print(f"{user} user:")
        hits: dict[str, list[list[str]]] = {}
        rows: dict[str, Any] = {}
        for name, searcher in searchers.items():
            t = time.perf_counter()
            searcher.search(principal, warm, k=10)
            cold = (time.perf_counter() - t) * 1000
            ms, got = [], []
            for q in queries:
                t = time.perf_counter()
                found = searcher.search(principal, q, k=10)
                ms.append((time.perf_counter() - t) * 1000)
                got.append([h.id for h in found.hits])
            hits[name] = got
            rows[name] = {**percentiles(ms), "cold_ms": cold}
        base = rows["where"]["p50_ms"]
        for name in searchers:
            same = sum(a == b for a, b in zip(hits[name], hits["where"], strict=True))
            rows[name]["same_hits_as_where"] = same / len(queries)
            row = rows[name]
            print(
                f"  {name:7} p50 {row['p50_ms']:8.1f} ms  p95 {row['p95_ms']:8.1f} ms  "
                f"cold {row['cold_ms']:8.1f} ms  {base / row['p50_ms']:6.1f}x faster than "
                f"where  same hits as where: {same}/{len(queries)}"
            )
        results[user] = rows
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2))
    print(f"results written to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
