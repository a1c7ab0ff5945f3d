"""A new reader's first BM25/hybrid query: the access mask over every chunk, per filter vs grouped.

Before the BM25 copy can rank for a reader, it needs the reader's access filter judged on
every chunk (a mask, then cached per filter and index version). Two ways, in one run, on the
same synthetic metadata (one tenant, each chunk one ACL group of 100, plus fields a filter
does not read, like the growth benchmark's corpus):

* **per filter** (`matches_each`): each reader's filter passes over every chunk's metadata
  once (values of the fields it reads are keyed, the filter judged per distinct key);
* **grouped** (`KeywordIndex.matching` since this benchmark): the chunks are grouped once by
  the values of the fields access filters read (`FieldGroups`), then each reader's filter is
  judged once per group and its verdicts spread over the chunks (one numpy gather).

Prints the first reader's and the median later reader's time for each, the ratio, and checks
that both give the same mask for every reader.

Usage: python bench/bench_masks.py [--chunks 1000000] [--readers 8]
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from rag_app.access.filters import FieldGroups, fields_of, matches_each  # noqa: E402
from rag_app.access.permissions import Principal, access_filter  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--chunks", type=int, default=1_000_000)
    parser.add_argument("--readers", type=int, default=8)
    parser.add_argument("--seed", type=int, default=3)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    metadatas = [
        {
            "tenant": "scifact",
            "acl": [f"group:g{rng.randrange(100):02d}"],
            "replica": n // 5183,
            "source": f"doc-{n % 5183}.jsonl",
            "title": f"abstract {n % 5183}",
        }
        for n in range(args.chunks)
    ]
    # each reader's access filter as the app builds it (tenant, and any of their tokens)
    readers = [
        access_filter(
            Principal(
                tenant="scifact",
                user_id=f"u{i}",
                groups=frozenset(f"g{g:02d}" for g in rng.sample(range(100), rng.randint(1, 90))),
            )
        )
        for i in range(args.readers)
    ]

    per_filter: list[float] = []
    masks: list[np.ndarray] = []
    for where in readers:
        start = time.perf_counter()
        masks.append(np.fromiter(matches_each(where, metadatas), dtype=bool, count=len(metadatas)))
        per_filter.append(time.perf_counter() - start)

    grouped: list[float] = []
    fields = tuple(sorted(set(fields_of(readers[0]))))
    groups: FieldGroups | None = None
    members = np.zeros(0, dtype=np.int32)
    for n, where in enumerate(readers):
        start = time.perf_counter()
        if groups is None:
            groups = FieldGroups(fields)
            members = np.array(groups.assign(metadatas), dtype=np.int32)
        mask = np.array(groups.verdicts(where), dtype=bool)[members]
        grouped.append(time.perf_counter() - start)
        if not np.array_equal(mask, masks[n]):
            raise SystemExit(f"reader {n}: the grouped mask differs from the per-filter one")

    later_old, later_new = statistics.median(per_filter[1:]), statistics.median(grouped[1:])
    print(f"{args.chunks:,} chunks, {args.readers} readers, {len(groups or [])} groups; same masks")
    print(
        f"first reader:  per filter {per_filter[0] * 1e3:8.1f} ms   "
        f"grouped {grouped[0] * 1e3:8.1f} ms"
    )
    print(
        f"later readers: per filter {later_old * 1e3:8.1f} ms   grouped {later_new * 1e3:8.1f} ms"
        f"   ({later_old / later_new:.0f}x faster, median)"
    )


if __name__ == "__main__":
    main()
