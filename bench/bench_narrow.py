"""Narrow-ACL hybrid search on a grown store: three ways of running the fused search's dense
half for a user who reads ~1% of the chunks, on the same queries, in one run.

* ``slice`` (what the App does): an exact cosine search over the stored vectors of the chunks
  the BM25 copy says the user may match, read from the store once per filter and index
  version (`rag_app.retrieval.hybrid.IdsFirstDense._slice`);
* ``ids``: a Chroma query restricted to those chunks' ids (this change's first version);
* ``where``: Chroma's own filtered query (the plain fused search, before ids-first).

Each is timed behind the permission guard as every reader calls it (query vectors cached),
after one cold query (which, for ``slice``, reads the vectors). The three must return the
same hits: the share of queries whose hit ids agree with ``where`` is printed.

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
    keyword = KeywordSearch(app.keyword_index).raw
    searchers = {
        "where": HybridSearch(app.search, keyword, store=app.store),
        "ids": HybridSearch(
            IdsRestricted(app.search.raw, app.keyword_index, app.store),  # type: ignore[arg-type]
            keyword,
            store=app.store,
        ),
        "slice": app.searcher("hybrid"),
    }
    results: dict[str, Any] = {"chunks": app.store.count(), "queries": len(queries)}
    hits: dict[str, list[list[str]]] = {}
    for name, searcher in searchers.items():
        t = time.perf_counter()
        searcher.search(narrow, warm, k=10)
        cold = (time.perf_counter() - t) * 1000
        ms, got = [], []
        for q in queries:
            t = time.perf_counter()
            found = searcher.search(narrow, q, k=10)
            ms.append((time.perf_counter() - t) * 1000)
            got.append([h.id for h in found.hits])
        hits[name] = got
        results[name] = {**percentiles(ms), "cold_ms": cold}
    base = results["where"]["p50_ms"]
    for name in searchers:
        same = sum(a == b for a, b in zip(hits[name], hits["where"], strict=True))
        results[name]["same_hits_as_where"] = same / len(queries)
        row = results[name]
        print(
            f"  {name:6} p50 {row['p50_ms']:8.1f} ms  p95 {row['p95_ms']:8.1f} ms  "
            f"cold {row['cold_ms']:8.1f} ms  {base / row['p50_ms']:6.1f}x faster than where  "
            f"same hits as where: {same}/{len(queries)}"
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2))
    print(f"results written to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
