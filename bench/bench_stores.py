"""Store benchmark: the permission layer and the store adapters against the raw SDKs.

Per store (Chroma embedded; Pinecone and Weaviate through the loopback emulators under
``tests/emulators``), everything measured in one run on the same chunks and vectors, and
printed as ratios against a baseline measured in the same run:

1. ingest chunks/s: the adapter's ``upsert`` of every chunk (its own batching, metadata
   encoding, tenant/schema checks and change token) vs the raw SDK writing the same records
   the same way (same batch size, same payloads, built before the clock starts) into a
   separate fresh collection/index. ABBA order (adapter, raw, raw, adapter), each into a fresh
   collection, so that machine drift is shared; the two runs of each side are averaged;
2. query latency: ``SecureSearch.search_by_vector`` as rotating principals with a caller
   filter (access filter AND caller filter, pre-filtered query, per-hit re-check) vs the raw
   SDK query with the same native filter (built beforehand with the adapter's own translation)
   and the same namespace/tenant. The adapter's bare ``query`` (no guard) is timed too, to show
   where the overhead sits. The three are interleaved per query, in rotating order;
3. sanity: for every query the guarded search, the bare adapter and the raw SDK return the
   same ids in the same order (the run fails loudly otherwise), and the re-check drops nothing.

Embeddings are computed once up front (bundled MiniLM), so embedding time is excluded from
every side. SciFact abstracts are taken as chunks directly (one chunk per abstract).

The emulators run in a child process on 127.0.0.1: their numbers measure the adapter + SDK +
local HTTP/gRPC + a brute-force Python server, NOT the cloud services. Chroma runs in-process.

Usage: python bench/bench_stores.py [--docs 300] [--queries 200]
                                    [--stores chroma,pinecone,weaviate] [--dataset DIR]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from rag_app import configure_offline  # noqa: E402

configure_offline()

from rag_app.access.filters import Cmp, and_  # noqa: E402
from rag_app.access.permissions import Principal, effective_filter  # noqa: E402
from rag_app.embeddings import LocalEmbeddings  # noqa: E402
from rag_app.retrieval.search import SecureSearch  # noqa: E402
from rag_app.settings import Settings  # noqa: E402
from rag_app.stores import open_store  # noqa: E402
from rag_app.stores.base import VectorStorePort  # noqa: E402

GROUPS = ["hr", "eng", "finance", "staff"]
TENANTS = ("t0", "t1")
CALLER_FILTER = {"year": {"$gte": 2005}}
API_KEY = "bench-key"
WARMUP = 5
INGEST_ROUNDS = ("adapter", "raw", "raw", "adapter")  # ABBA


@dataclass
class Corpus:
    ids: list[str]
    texts: list[str]
    vectors: list[list[float]]
    metadatas: list[dict[str, Any]]

    def __len__(self) -> int:
        return len(self.ids)

    def by_tenant(self) -> dict[str, list[int]]:
        out: dict[str, list[int]] = {}
        for n, meta in enumerate(self.metadatas):
            out.setdefault(meta["tenant"], []).append(n)
        return out


def load_corpus(dataset: Path, n_docs: int) -> tuple[list[str], list[str], list[dict[str, Any]]]:
    """SciFact abstracts as chunks, with tenants and ACLs spread over them like
    bench_foundation's corpus (so filters do real work), and the ingestor's system keys."""
    rng = random.Random(7)
    ids: list[str] = []
    texts: list[str] = []
    metas: list[dict[str, Any]] = []
    with (dataset / "corpus.jsonl").open() as src:
        for line in src:
            if len(ids) >= n_docs:
                break
            rec = json.loads(line)
            text = (rec.get("text") or "").strip()
            if not text:
                continue
            n = len(ids)
            tenant = "t1" if n % 2 else "t0"
            acl = rng.choice(
                [["public"], [f"group:{rng.choice(GROUPS)}"], [f"user:u{n % 7}"], ["group:staff"]]
            )
            source = f"scifact.jsonl#{rec['_id']}"
            ids.append(hashlib.sha256(f"{tenant}\0{source}\0{0}\0{text}".encode()).hexdigest()[:32])
            texts.append(text)
            metas.append(
                {
                    "tenant": tenant,
                    "acl": acl,
                    "title": rec.get("title") or rec["_id"],
                    "year": 2000 + n % 25,
                    "source": source,
                    "doc_id": str(rec["_id"]),
                    "chunk_count": 1,
                    "chunk_index": 0,
                }
            )
    return ids, texts, metas


def load_queries(dataset: Path, n: int) -> list[str]:
    out: list[str] = []
    with (dataset / "queries.jsonl").open() as fh:
        for line in fh:
            out.append(json.loads(line)["text"])
            if len(out) >= n:
                break
    return out


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


# -- emulators in a child process ----------------------------------------------------------

_EMULATOR_CODE = {
    "pinecone": (
        "from tests.emulators.pinecone_server import PineconeEmulator\n"
        "emu = PineconeEmulator(api_key={key!r}).start()\n"
        "print(emu.url, flush=True)\n"
    ),
    "weaviate": (
        "from tests.emulators.weaviate_server import WeaviateEmulator\n"
        "emu = WeaviateEmulator().start()\n"
        "print(emu.url, emu.grpc_port, flush=True)\n"
    ),
}


@contextmanager
def emulator(kind: str) -> Iterator[list[str]]:
    """Start an emulator in a child process (its own interpreter, so the server does not share
    the benchmark's GIL); yields what it printed (its addresses). Stopped by closing stdin."""
    code = (
        "import sys\n" + _EMULATOR_CODE[kind].format(key=API_KEY) + "sys.stdin.read()\nemu.stop()\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().split()
        if not line:
            raise SystemExit(f"the {kind} emulator did not start (exit code {proc.wait(10)})")
        yield line
    finally:
        if proc.stdin:
            proc.stdin.close()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        if proc.stdout:
            proc.stdout.close()


# -- per-store drivers -------------------------------------------------------------------------


@dataclass
class Target:
    """One store's adapter side and raw side.

    ``open_adapter(round)``: a fresh adapter store. ``raw_setup(round, adapter)``: (a writer
    that writes every chunk through the raw SDK, the native collection/index it writes to),
    for a fresh collection/index set up outside the clock. ``raw_query(adapter, native,
    principal)``: the raw SDK query ``(vector, k) -> ids`` with the native filter built
    beforehand."""

    name: str
    note: str
    open_adapter: Callable[[int], VectorStorePort]
    raw_setup: Callable[[int, VectorStorePort], tuple[Callable[[], None], Any]]
    raw_query: Callable[[VectorStorePort, Any, Principal], Callable[[list[float], int], list[str]]]
    cleanup: list[Callable[[], None]] = field(default_factory=list)


def _settings(work: Path, store: str, collection: str, **options: Any) -> Settings:
    return Settings(
        data_dir=work / "data",
        store=store,
        collection=collection,
        store_options=options,
        users_file=ROOT / "demo/users.yaml",
    )


def chroma_target(work: Path, corpus: Corpus, dim: int, model: str) -> Target:
    from rag_app.stores.chroma import ChromaStore, translate

    def open_adapter(r: int) -> VectorStorePort:
        return open_store(
            _settings(work, "chroma", f"bench_a{r}"), dimension=dim, embedding_model=model
        )

    def raw_setup(r: int, adapter: VectorStorePort) -> tuple[Callable[[], None], Any]:
        assert isinstance(adapter, ChromaStore)
        client = adapter._client
        coll = client.get_or_create_collection(
            name=f"bench_raw{r}",
            embedding_function=None,
            configuration={"hnsw": {"space": "cosine"}},
        )
        batch = adapter._max_batch
        ids, docs = corpus.ids, corpus.texts
        vecs, metas = corpus.vectors, [dict(m) for m in corpus.metadatas]

        def write() -> None:
            for s in range(0, len(ids), batch):
                coll.upsert(
                    ids=ids[s : s + batch],
                    documents=docs[s : s + batch],
                    embeddings=vecs[s : s + batch],  # type: ignore[arg-type]
                    metadatas=metas[s : s + batch],  # type: ignore[arg-type]
                )

        return write, coll

    def raw_query(adapter: VectorStorePort, native: Any, principal: Principal) -> Any:
        coll = native
        caller = _caller_node()
        # exactly what the adapter sends: Chroma has no tenant isolation, so the adapter adds
        # tenant == <tenant> in front of the access filter (which names the tenant as well)
        where = translate(
            and_(Cmp("tenant", "$eq", principal.tenant), effective_filter(principal, caller))  # type: ignore[arg-type]
        )

        def query(vec: list[float], k: int) -> list[str]:
            res = coll.query(
                query_embeddings=[vec],
                n_results=k,
                where=where,
                include=["documents", "metadatas", "distances"],
            )
            return list(res["ids"][0])

        return query

    return Target(
        "chroma",
        "embedded PersistentClient in a temp dir (in-process)",
        open_adapter,
        raw_setup,
        raw_query,
    )


def _caller_node() -> Any:
    from rag_app.access.filters import parse_filter

    return parse_filter(CALLER_FILTER)


def pinecone_target(work: Path, corpus: Corpus, dim: int, model: str, url: str) -> Target:
    from pinecone import Pinecone, ServerlessSpec

    from rag_app.stores.pinecone import PineconeStore, encode_metadata, translate

    pc = Pinecone(api_key=API_KEY, host=url)
    batch_size = 100

    def open_adapter(r: int) -> VectorStorePort:
        store = open_store(
            _settings(
                work,
                "pinecone",
                "bench",
                api_key=API_KEY,
                controller_host=url,
                index=f"bench-a{r}",
                batch_size=batch_size,
            ),
            dimension=dim,
            embedding_model=model,
        )
        assert isinstance(store, PineconeStore)
        store.create_index()  # index creation is setup, outside the clock
        return store

    # payloads exactly as the adapter sends them (text and type markers in the metadata)
    by_ns: dict[str, list[dict[str, Any]]] = {}
    for rid, text, vec, meta in zip(
        corpus.ids, corpus.texts, corpus.vectors, corpus.metadatas, strict=True
    ):
        by_ns.setdefault(meta["tenant"], []).append(
            {
                "id": rid,
                "values": [float(x) for x in vec],
                "metadata": encode_metadata(rid, text, meta),
            }
        )

    def raw_setup(r: int, adapter: VectorStorePort) -> tuple[Callable[[], None], Any]:
        name = f"bench-raw{r}"
        pc.create_index(
            name=name,
            dimension=dim,
            metric="cosine",
            spec=ServerlessSpec(cloud="aws", region="us-east-1"),
        )
        index = pc.Index(host=pc.describe_index(name).host)

        def write() -> None:
            for namespace, records in by_ns.items():
                for s in range(0, len(records), batch_size):
                    index.upsert(vectors=records[s : s + batch_size], namespace=namespace)

        return write, index

    def raw_query(adapter: VectorStorePort, native: Any, principal: Principal) -> Any:
        index = native
        flt = translate(effective_filter(principal, _caller_node()))

        def query(vec: list[float], k: int) -> list[str]:
            res = index.query(
                vector=vec,
                top_k=k,
                namespace=principal.tenant,
                filter=flt,
                include_metadata=True,
                include_values=False,
            )
            return [m.id for m in res.matches or []]

        return query

    return Target(
        "pinecone",
        f"emulator at {url} (child process; REST over loopback)",
        open_adapter,
        raw_setup,
        raw_query,
    )


def missing_properties(source: Any, target: Any) -> list[Any]:
    """The Weaviate property definitions of `source`'s collection that `target`'s lacks, as
    the raw SDK would add them (both are `WeaviateStore` adapters)."""
    from weaviate.classes.config import DataType, Property

    existing = {p.name for p in target._collection.config.get().properties}
    return [
        Property(
            name=p.name,
            data_type=DataType(p.data_type.value),
            description=p.description,
            tokenization=p.tokenization,
            index_searchable=p.index_searchable,
            index_filterable=p.index_filterable,
        )
        for p in source._collection.config.get().properties
        if p.name not in existing
    ]


def weaviate_target(
    work: Path, corpus: Corpus, dim: int, model: str, url: str, grpc_port: int
) -> Target:
    from weaviate.classes.data import DataObject
    from weaviate.classes.query import MetadataQuery
    from weaviate.classes.tenants import Tenant

    from rag_app.stores.weaviate import (
        ID_PROP,
        TEXT_PROP,
        WeaviateStore,
        object_uuid,
        weaviate_tenant,
    )

    opened: list[VectorStorePort] = []

    def open_at(collection: str) -> WeaviateStore:
        store = open_store(
            _settings(work, "weaviate", collection, url=url, grpc_port=grpc_port),
            dimension=dim,
            embedding_model=model,
        )
        assert isinstance(store, WeaviateStore)
        opened.append(store)
        return store

    def open_adapter(r: int) -> VectorStorePort:
        return open_at(f"bench_a{r}")  # the adapter creates the collection at open

    def raw_setup(r: int, adapter: VectorStorePort) -> tuple[Callable[[], None], Any]:
        # A fresh collection created by the adapter's open (outside the clock, as for the
        # adapter side); the clock then covers what the raw SDK must do on a fresh collection,
        # as the adapter's first upsert does: add the metadata properties (the definitions the
        # adapter chose, read from its collection), create the tenants, insert the batches.
        holder = open_at(f"bench_raw{r}")
        properties = missing_properties(adapter, holder)
        tenants = [Tenant(name=weaviate_tenant(t)) for t in TENANTS]
        coll = holder._collection
        objects: dict[str, list[Any]] = {}
        for n in range(len(corpus)):
            meta = corpus.metadatas[n]
            props = {TEXT_PROP: corpus.texts[n], ID_PROP: corpus.ids[n], **meta}
            objects.setdefault(weaviate_tenant(meta["tenant"]), []).append(
                DataObject(
                    properties=props,
                    uuid=object_uuid(corpus.ids[n]),
                    vector=[float(x) for x in corpus.vectors[n]],
                )
            )
        batch_size = adapter._batch_size  # type: ignore[attr-defined]

        def write() -> None:
            for prop in properties:
                coll.config.add_property(prop)
            coll.tenants.create(tenants)
            for tenant, objs in objects.items():
                target = coll.with_tenant(tenant)
                for s in range(0, len(objs), batch_size):
                    result = target.data.insert_many(objs[s : s + batch_size])
                    if result.errors:
                        raise SystemExit(f"raw Weaviate insert failed: {result.errors}")

        return write, coll

    def raw_query(adapter: VectorStorePort, native: Any, principal: Principal) -> Any:
        coll = native.with_tenant(weaviate_tenant(principal.tenant))
        flt = adapter.translate(effective_filter(principal, _caller_node()))  # type: ignore[attr-defined]
        if flt is True or flt is False:
            raise SystemExit(f"the Weaviate filter folded to a constant ({flt})")

        def query(vec: list[float], k: int) -> list[str]:
            res = coll.query.near_vector(
                vec, limit=k, filters=flt, return_metadata=MetadataQuery(distance=True)
            )
            return [str(o.properties.get(ID_PROP)) for o in res.objects]

        return query

    def close_all() -> None:
        for store in opened:
            store.close()

    return Target(
        "weaviate",
        f"emulator at {url}, gRPC :{grpc_port} (child process; REST + gRPC over loopback)",
        open_adapter,
        raw_setup,
        raw_query,
        cleanup=[close_all],
    )


# -- the measurements ----------------------------------------------------------------------------


def run_store(
    target: Target,
    corpus: Corpus,
    embeddings: LocalEmbeddings,
    qvectors: list[list[float]],
    principals: list[Principal],
    k: int,
) -> dict[str, Any]:
    n = len(corpus)
    # 1. ingest, ABBA ---------------------------------------------------------------------
    times: dict[str, list[float]] = {"adapter": [], "raw": []}
    adapter: VectorStorePort | None = None
    raw_handle: Any = None
    first_adapter: VectorStorePort | None = None
    for r, side in enumerate(INGEST_ROUNDS):
        if side == "adapter":
            store = target.open_adapter(r)
            t0 = time.perf_counter()
            store.upsert(corpus.ids, corpus.texts, corpus.vectors, corpus.metadatas)
            times["adapter"].append(time.perf_counter() - t0)
            if first_adapter is None:
                first_adapter = store
            if adapter is not None and adapter is not first_adapter:
                adapter.close()
            adapter = store
        else:
            assert first_adapter is not None
            write, raw_handle = target.raw_setup(r, first_adapter)
            t0 = time.perf_counter()
            write()
            times["raw"].append(time.perf_counter() - t0)
    assert adapter is not None and first_adapter is not None
    if first_adapter is not adapter:
        first_adapter.close()
    for tenant, positions in corpus.by_tenant().items():
        if adapter.count(tenant=tenant) != len(positions):
            raise SystemExit(f"{target.name}: adapter holds {adapter.count(tenant=tenant)} records")
    t_adapter = statistics.mean(times["adapter"])
    t_raw = statistics.mean(times["raw"])

    # 2. query latency, interleaved ----------------------------------------------------------
    search = SecureSearch(adapter, embeddings, default_k=k)
    caller = search.parse_caller_filter(CALLER_FILTER, principals[0])
    wheres = {p: effective_filter(p, caller) for p in principals}
    raw_q = {p: target.raw_query(adapter, raw_handle, p) for p in principals}

    def guarded(p: Principal, vec: list[float]) -> list[str]:
        res = search.search_by_vector(p, vec, filter=CALLER_FILTER, k=k)
        if res.dropped or res.denied:
            raise SystemExit(f"{target.name}: re-check dropped {res.dropped} hits / denied")
        return [h.id for h in res.hits]

    def bare(p: Principal, vec: list[float]) -> list[str]:
        return [h.id for h in adapter.query(vec, k, wheres[p], tenant=p.tenant)]

    def raw(p: Principal, vec: list[float]) -> list[str]:
        return raw_q[p](vec, k)

    sides: dict[str, Callable[[Principal, list[float]], list[str]]] = {
        "guarded": guarded,
        "adapter": bare,
        "raw": raw,
    }
    lat: dict[str, list[float]] = {s: [] for s in sides}
    order = list(sides)
    empty = 0
    for i, vec in enumerate(qvectors[:WARMUP] + qvectors):
        p = principals[i % len(principals)]
        got: dict[str, list[str]] = {}
        # rotate who goes first, independently of the principal (which cycles with i % 3)
        first = (i // len(principals)) % len(order)
        rot = order[first:] + order[:first]
        for s in rot:
            t0 = time.perf_counter()
            got[s] = sides[s](p, vec)
            dt = time.perf_counter() - t0
            if i >= WARMUP:
                lat[s].append(dt)
        if not (got["guarded"] == got["adapter"] == got["raw"]):
            raise SystemExit(
                f"{target.name}: query {i} as {p.describe()} returned different ids:\n"
                f"  guarded {got['guarded']}\n  adapter {got['adapter']}\n  raw     {got['raw']}"
            )
        empty += i >= WARMUP and not got["raw"]
    if empty == len(qvectors):
        raise SystemExit(f"{target.name}: every query returned nothing; the sanity check is void")
    adapter.close()

    def ms(values: list[float], q: float) -> float:
        return round(pct(values, q) * 1000, 3)

    g, a, w = lat["guarded"], lat["adapter"], lat["raw"]
    return {
        "store": target.name,
        "where": target.note,
        "chunks": n,
        "ingest_rounds": list(INGEST_ROUNDS),
        "ingest_adapter_seconds": [round(t, 4) for t in times["adapter"]],
        "ingest_raw_seconds": [round(t, 4) for t in times["raw"]],
        "ingest_adapter_chunks_per_s": round(n / t_adapter, 1),
        "ingest_raw_chunks_per_s": round(n / t_raw, 1),
        "ingest_adapter_vs_raw": round(t_raw / t_adapter, 3),  # throughput ratio (goal ~1)
        "queries": len(w),
        "k": k,
        "queries_with_hits": len(qvectors) - empty,
        "query_p50_ms": ms(g, 0.5),
        "query_p95_ms": ms(g, 0.95),
        "adapter_query_p50_ms": ms(a, 0.5),
        "adapter_query_p95_ms": ms(a, 0.95),
        "raw_query_p50_ms": ms(w, 0.5),
        "raw_query_p95_ms": ms(w, 0.95),
        "query_p50_ratio": round(pct(g, 0.5) / pct(w, 0.5), 3),
        "query_p95_ratio": round(pct(g, 0.95) / pct(w, 0.95), 3),
        "query_mean_ratio": round(statistics.mean(g) / statistics.mean(w), 3),
        "adapter_p50_ratio": round(pct(a, 0.5) / pct(w, 0.5), 3),
        "guard_overhead_p50_ms": round((pct(g, 0.5) - pct(a, 0.5)) * 1000, 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", type=Path, default=ROOT.parent / "shared/datasets/scifact")
    parser.add_argument("--docs", type=int, default=300)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--stores", default="chroma,pinecone,weaviate")
    parser.add_argument("--out", type=Path, default=ROOT / "bench/results/stores.json")
    args = parser.parse_args()
    stores = [s.strip() for s in args.stores.split(",") if s.strip()]
    unknown = set(stores) - {"chroma", "pinecone", "weaviate"}
    if unknown:
        raise SystemExit(f"unknown store(s): {', '.join(sorted(unknown))}")
    logging.getLogger("rag_app.stores").setLevel(logging.ERROR)  # index/tenant creation notes

    ids, texts, metas = load_corpus(args.dataset, args.docs)
    queries = load_queries(args.dataset, args.queries)
    embeddings = LocalEmbeddings()
    t0 = time.perf_counter()
    vectors = embeddings.embed_documents(texts)
    qvectors = embeddings.embed_documents(queries)
    t_embed = time.perf_counter() - t0
    corpus = Corpus(ids, texts, vectors, metas)
    dim, model = embeddings.dimension, embeddings.name
    print(
        f"corpus: {len(corpus)} SciFact abstracts as chunks over tenants {', '.join(TENANTS)}, "
        f"{len(queries)} queries, {dim}-d {model} (embedded once up front in {t_embed:.1f} s, "
        "excluded from every timing)"
    )
    print(
        "query = SecureSearch.search_by_vector (guard: access AND caller filter "
        f"{CALLER_FILTER}, re-check) vs the adapter's bare query vs the raw SDK, same native "
        "filter and namespace/tenant, interleaved"
    )
    principals = [
        Principal(tenant="t0", user_id="u1", groups=frozenset({"hr", "staff"})),
        Principal(tenant="t1", user_id="u3", groups=frozenset({"eng"})),
        Principal.anonymous("t0"),
    ]
    k = Settings().k
    work = Path(tempfile.mkdtemp(prefix="rag-bench-stores-"))
    results: list[dict[str, Any]] = []
    for name in stores:
        print(f"[{name}] ...", flush=True)
        if name == "chroma":
            target = chroma_target(work / "chroma", corpus, dim, model)
            results.append(run_store(target, corpus, embeddings, qvectors, principals, k))
            continue
        with emulator(name) as addr:
            if name == "pinecone":
                target = pinecone_target(work / name, corpus, dim, model, addr[0])
            else:
                target = weaviate_target(work / name, corpus, dim, model, addr[0], int(addr[1]))
            try:
                results.append(run_store(target, corpus, embeddings, qvectors, principals, k))
            finally:
                for fn in target.cleanup:
                    fn()

    print()
    print(
        f"{'store':9}|{'ingest chunks/s':>16}{'raw':>9}{'ratio':>7} |{'query p50 ms':>13}"
        f"{'adapter':>9}{'raw':>8}{'ratio':>7} |{'p95 ms':>8}{'raw':>8}{'ratio':>7}"
    )
    for r in results:
        print(
            f"{r['store']:9}|{r['ingest_adapter_chunks_per_s']:16.1f}"
            f"{r['ingest_raw_chunks_per_s']:9.1f}{r['ingest_adapter_vs_raw']:7.3f} |"
            f"{r['query_p50_ms']:13.3f}{r['adapter_query_p50_ms']:9.3f}"
            f"{r['raw_query_p50_ms']:8.3f}{r['query_p50_ratio']:7.3f} |"
            f"{r['query_p95_ms']:8.3f}{r['raw_query_p95_ms']:8.3f}{r['query_p95_ratio']:7.3f}"
        )
    print(
        "ingest ratio = adapter throughput / raw throughput (mean of 2 ABBA runs each); query "
        "ratios = guarded / raw (goal <= 1.1x); 'adapter' = the adapter's query without the guard"
    )
    for r in results:
        print(f"  {r['store']}: {r['where']}")
    print(
        "  emulator numbers measure adapter + SDK + local HTTP/gRPC + a Python brute-force "
        "server, not the Pinecone/Weaviate cloud services"
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps(
            {
                "docs": len(corpus),
                "queries": len(queries),
                "k": k,
                "caller_filter": CALLER_FILTER,
                "principals": [p.describe() for p in principals],
                "stores": results,
            },
            indent=2,
        )
    )
    print(f"results written to {args.out}")


if __name__ == "__main__":
    main()
