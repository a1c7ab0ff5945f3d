"""BM25 refresh cost against corpus size: a full build vs an incremental refresh after a small
change, in one run on this machine.

For each corpus size N (SciFact abstracts with their titles, replicated under new ids beyond
the 5,183 abstracts; tenants and ACLs spread over them), in a temporary Chroma store:

1. full build of the `KeywordIndex` (analyse every chunk, build the postings, persist them);
2. refresh after adding 1 document, after adding 10, after an ACL change of 1 chunk and after
   deleting 1 chunk (each 3 times, on other chunks; the median), each as a ratio against the
   full build measured in the same run, with the time of each step of the refresh
   (`KeywordIndex.timings`: journal read, store reads, analysis and derivation, save; or the
   scan and the full assembly on the scan path).

Three indexes per N: ``persisted`` (what `rag-app` does: the store's change journal, a folder
with a delta log), ``memory`` (the journal, no folder) and ``scan`` (persisted, but with the
journal disabled: the scan path every store without a journal takes). The store scan of ids
and metadata is timed on its own, next to a scan with texts. Query latency: a raw scorer
query (analysis excluded) and `KeywordIndex.search` k=100 under a tenant filter, p50 over 200
SciFact queries, next to a raw query of a bm25s index over the same chunks (what the index
kept before scores were computed at query time). Vectors are random (fixed seed, 8
dimensions): BM25 never reads them.

Usage: python bench/bench_bm25.py [--sizes 2000,11000,50000] [--dataset DIR]
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from rag_app import configure_offline  # noqa: E402

configure_offline()

import numpy as np  # noqa: E402

from rag_app.access.filters import Cmp  # noqa: E402
from rag_app.retrieval.bm25 import RECOUNT_S, KeywordIndex, index_text  # noqa: E402
from rag_app.stores.chroma import ChromaStore  # noqa: E402

DIM = 8
REPEATS = 3
QUERIES = 200
GROUPS = ["hr", "eng", "finance", "staff"]


def abstracts(dataset: Path) -> list[dict[str, Any]]:
    with (dataset / "corpus.jsonl").open(encoding="utf-8") as fh:
        return [json.loads(line) for line in fh]


def chunks(source: list[dict[str, Any]], start: int, stop: int) -> Iterator[tuple[str, str, dict]]:
    """Chunk n is abstract n mod len(source), under an id of its own beyond the first round."""
    rng = random.Random(start)
    for n in range(start, stop):
        rec = source[n % len(source)]
        round_ = n // len(source)
        rid = rec["_id"] if round_ == 0 else f"{rec['_id']}-r{round_}"
        acl = rng.choice([["public"], [f"group:{rng.choice(GROUPS)}"], [f"user:u{n % 7}"]])
        meta = {
            "tenant": f"t{n % 2}",
            "acl": acl,
            "title": rec.get("title") or rid,
            "source": f"scifact/{rid}",
        }
        yield rid, rec["text"], meta


def write(store: ChromaStore, rows: list[tuple[str, str, dict]], rng: np.random.Generator) -> None:
    for start in range(0, len(rows), 1000):
        batch = rows[start : start + 1000]
        store.upsert(
            [r[0] for r in batch],
            [r[1] for r in batch],
            rng.standard_normal((len(batch), DIM)).tolist(),
            [r[2] for r in batch],
        )


def timed(fn: Callable[[], Any]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def p50_ms(fn: Callable[[str], Any], queries: list[str]) -> float:
    for q in queries[:5]:
        fn(q)  # warm up
    runs = []
    for q in queries:
        t0 = time.perf_counter()
        fn(q)
        runs.append(time.perf_counter() - t0)
    return statistics.median(runs) * 1000


def query_latency(index: KeywordIndex, queries: list[str]) -> dict[str, float]:
    """p50 ms: the index's raw scorer, its search (freshness checked before, as a fused
    search does), a bm25s index over the same chunks, and the freshness check itself
    (`current_key`) as the App's index does it and with every read on every search."""
    import bm25s

    built = index.ensure_fresh()
    model = built.model
    assert model is not None
    analysed = {q: index.analyzer(q) for q in queries}
    where = Cmp("tenant", "$eq", "t0")
    app_like = KeywordIndex(index.store, recount_s=RECOUNT_S, token_s=RECOUNT_S)
    reference = bm25s.BM25(k1=index.k1, b=index.b, method=index.method)
    reference.index(
        [
            index.analyzer(index_text(t, m, "title", 2))
            for t, m in zip(built.texts, built.metadatas, strict=True)
        ],
        show_progress=False,
    )
    return {
        "raw_ms": p50_ms(
            lambda q: model.get_scores_from_ids(model.get_tokens_ids(analysed[q])), queries
        ),
        "search_k100_ms": p50_ms(lambda q: index.search(q, 100, where, built=built), queries),
        "bm25s_raw_ms": p50_ms(
            lambda q: reference.get_scores_from_ids(reference.get_tokens_ids(analysed[q])), queries
        ),
        "freshness_app_ms": p50_ms(lambda q: app_like.current_key(), queries),
        "freshness_every_read_ms": p50_ms(lambda q: index.current_key(), queries),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", type=Path, default=ROOT.parent / "shared/datasets/scifact")
    parser.add_argument("--sizes", default="2000,11000,50000")
    parser.add_argument("--out", type=Path, default=ROOT / "bench/results/bm25.json")
    args = parser.parse_args()
    sizes = sorted(int(s) for s in args.sizes.split(","))
    source = abstracts(args.dataset)
    with (args.dataset / "queries.jsonl").open(encoding="utf-8") as fh:
        queries = [json.loads(line)["text"] for line in fh][:QUERIES]
    rng = np.random.default_rng(7)
    work = Path(tempfile.mkdtemp(prefix="rag-bench-bm25-"))
    store = ChromaStore(collection="bm25", dimension=DIM, embedding_model="random-8", path=work)
    print(f"SciFact abstracts: {len(source)}; vectors: random {DIM}-d (fixed seed), not timed")
    print(
        f"{'N':>6} {'mode':>9} {'full s':>7} {'+1 doc':>14} {'+10 docs':>14} "
        f"{'ACL of 1':>14} {'delete 1':>14}"
    )
    results: list[dict[str, Any]] = []
    have, extra = 0, 10_000_000  # ids of the added documents lie beyond every N
    for n in sizes:
        write(store, list(chunks(source, have, n)), rng)
        have = n
        scan_ids = min(timed(lambda: list(store.records(with_text=False))) for _ in range(3))
        scan_text = min(timed(lambda: list(store.records(with_text=True))) for _ in range(3))
        indexes = {
            "persisted": KeywordIndex(store, directory=work / f"bm25-{n}"),
            "memory": KeywordIndex(store),
            # a generation of its own disables the journal: the scan path
            "scan": KeywordIndex(
                store, generation=store.change_token, directory=work / f"bm25-scan-{n}"
            ),
        }
        full = {mode: timed(index.refresh) for mode, index in indexes.items()}
        # each change REPEATS times, on other chunks each time; the median refresh is reported
        changes: dict[str, Callable[[int], None]] = {
            "add 1": lambda i: write(store, list(chunks(source, extra + i, extra + i + 1)), rng),
            "add 10": lambda i: write(
                store, list(chunks(source, extra + 10 + 10 * i, extra + 20 + 10 * i)), rng
            ),
            "acl of 1": lambda i: write(
                store,
                [(r[0], r[1], {**r[2], "acl": ["user:bench"]}) for r in chunks(source, 0, i + 1)],
                rng,
            ),
            "delete 1": lambda i: store.delete([next(chunks(source, 10 + i, 11 + i))[0]]),
        }
        refresh: dict[str, dict[str, float]] = {mode: {} for mode in indexes}
        steps: dict[str, dict[str, dict[str, float]]] = {mode: {} for mode in indexes}
        for name, change in changes.items():
            runs: dict[str, list[float]] = {mode: [] for mode in indexes}
            split: dict[str, list[dict[str, float]]] = {mode: [] for mode in indexes}
            for i in range(REPEATS):
                change(i)
                for mode, index in indexes.items():
                    before = (index.incremental, index.journaled)
                    runs[mode].append(timed(index.refresh))
                    split[mode].append(dict(index.timings))
                    assert index.incremental == before[0] + 1, "the refresh was not incremental"
                    journaled = index.journaled == before[1] + 1
                    assert journaled == (mode != "scan"), f"{mode}: not the expected path"
            for mode in indexes:
                refresh[mode][name] = statistics.median(runs[mode])
                steps[mode][name] = {
                    step: statistics.median(s.get(step, 0.0) for s in split[mode])
                    for step in split[mode][0]
                }
        # put the store back to N chunks for the next size (the added ids are removed)
        store.delete([r[0] for r in chunks(source, extra, extra + 10 + 10 * REPEATS)])
        write(store, list(chunks(source, 0, 10 + REPEATS)), rng)
        for mode in indexes:
            cells = " ".join(
                f"{refresh[mode][c]:6.3f}s {refresh[mode][c] / full[mode]:5.3f}x" for c in changes
            )
            print(f"{n:>6} {mode:>9} {full[mode]:7.2f} {cells}")
            parts = ", ".join(f"{k} {v * 1000:.1f}" for k, v in steps[mode]["add 1"].items())
            print(f"{'':>6} {'':>9} +1 doc steps (ms): {parts}")
        latency = query_latency(indexes["persisted"], queries)
        print(f"{'':>6} scan of ids+metadata {scan_ids:.3f}s, with texts {scan_text:.3f}s")
        print(
            f"{'':>6} query p50: raw {latency['raw_ms']:.3f} ms (bm25s matrix "
            f"{latency['bm25s_raw_ms']:.3f}), search k=100 {latency['search_k100_ms']:.3f} ms, "
            f"freshness check {latency['freshness_app_ms']:.3f} ms as the App does it "
            f"({latency['freshness_every_read_ms']:.3f} reading token and count each time)"
        )
        results.append(
            {
                "n": n,
                "full_s": full,
                "refresh_s": refresh,
                "ratio": {m: {c: refresh[m][c] / full[m] for c in changes} for m in indexes},
                "refresh_steps_s": steps,
                "query_p50_ms": latency,
                "scan_ids_metadata_s": scan_ids,
                "scan_with_texts_s": scan_text,
            }
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps(
            {
                "vectors": f"random {DIM}-d, fixed seed",
                "modes": "persisted/memory: change journal; scan: journal disabled",
                "sizes": results,
            },
            indent=2,
        )
    )
    print(f"results written to {args.out}")


if __name__ == "__main__":
    main()
