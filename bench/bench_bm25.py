"""BM25 refresh cost against corpus size: a full build vs an incremental refresh after a small
change, in one run on this machine.

For each corpus size N (SciFact abstracts with their titles, replicated under new ids beyond
the 5,183 abstracts; tenants and ACLs spread over them), in a temporary Chroma store:

1. full build of the `KeywordIndex` (analyse every chunk, compute the matrix, persist it);
2. refresh after adding 1 document, after adding 10, after an ACL change of 1 chunk and after
   deleting 1 chunk (each 3 times, on other chunks; the median), each as a ratio against the
   full build measured in the same run.

Both are measured twice per N: with persistence under a folder (what `rag-app` does) and in
memory only. The store scan the refresh needs (ids and metadata) is timed on its own, next to
a scan with texts. Vectors are random (fixed seed, 8 dimensions): BM25 never reads them.

Usage: python bench/bench_bm25.py [--sizes 2000,5000,11000] [--dataset DIR]
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

from rag_app.retrieval.bm25 import KeywordIndex  # noqa: E402
from rag_app.stores.chroma import ChromaStore  # noqa: E402

DIM = 8
REPEATS = 3
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", type=Path, default=ROOT.parent / "shared/datasets/scifact")
    parser.add_argument("--sizes", default="2000,5000,11000")
    parser.add_argument("--out", type=Path, default=ROOT / "bench/results/bm25.json")
    args = parser.parse_args()
    sizes = sorted(int(s) for s in args.sizes.split(","))
    source = abstracts(args.dataset)
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
        for name, change in changes.items():
            runs: dict[str, list[float]] = {mode: [] for mode in indexes}
            for i in range(REPEATS):
                change(i)
                for mode, index in indexes.items():
                    before = index.incremental
                    runs[mode].append(timed(index.refresh))
                    assert index.incremental == before + 1, "the refresh was not incremental"
            for mode in indexes:
                refresh[mode][name] = statistics.median(runs[mode])
        # put the store back to N chunks for the next size (the added ids are removed)
        store.delete([r[0] for r in chunks(source, extra, extra + 10 + 10 * REPEATS)])
        write(store, list(chunks(source, 0, 10 + REPEATS)), rng)
        for mode in indexes:
            cells = " ".join(
                f"{refresh[mode][c]:6.3f}s {refresh[mode][c] / full[mode]:5.3f}x" for c in changes
            )
            print(f"{n:>6} {mode:>9} {full[mode]:7.2f} {cells}")
        print(f"{'':>6} scan of ids+metadata {scan_ids:.3f}s, with texts {scan_text:.3f}s")
        results.append(
            {
                "n": n,
                "full_s": full,
                "refresh_s": refresh,
                "ratio": {m: {c: refresh[m][c] / full[m] for c in changes} for m in indexes},
                "scan_ids_metadata_s": scan_ids,
                "scan_with_texts_s": scan_text,
            }
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps({"vectors": f"random {DIM}-d, fixed seed", "sizes": results}, indent=2)
    )
    print(f"results written to {args.out}")


if __name__ == "__main__":
    main()
