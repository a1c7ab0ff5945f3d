"""Transfer benchmark: `rag-app export` / `rag-app import` records/s per store against the raw
SDK paging and batch-write rates, measured in the same run.

Per store (Chroma embedded; Pinecone and Weaviate through the loopback emulators under
``tests/emulators``), on the same chunks and vectors (SciFact abstracts as chunks, tenants and
ACLs like ``bench_stores.py``). The vectors are built once up front, outside every timing:
by default seeded random unit vectors of the bundled MiniLM's dimension (384, float32),
labelled with its model name; ``--vectors minilm`` embeds the abstracts with the model
instead, as ``bench_stores.py`` does, which adds about 3 minutes for 2,000 abstracts on 2
cores. No transfer code path looks at vector values, and a float32 widened to a double
prints with about as many digits whatever its value, so the choice changes neither the work
nor the file size (the JSON output records which was used):

0. setup (untimed): N records are written through the adapter into a source collection/index,
   and the source's ingest state is seeded as an ingest would leave it (one record-manager
   group per abstract, document rows, the file marked complete), so that the export looks up
   real groups and writes a ``file`` line;
1. **export** records/s, three sides on the same source collection, order
   ours, raw, raw+file, raw+file, raw, ours (ABC-CBA) after one untimed warm-up pass:

   * *ours*: ``rag_app.ops.transfer.export_index`` into a fresh ``.jsonl.gz``: the header
     counts, the adapter's ``records_with_vectors`` (SDK paging + decoding into the port's
     records + vectors as Python floats), the record-manager group lookup, float32 rounding,
     two sha256 digests per record, ``json.dumps`` and gzip (level 1, as the export) of
     every line, the trailer;
   * *raw*: the raw SDK paging every record with its vector, metadata and text out of the
     same collection, at the adapter's page size, touching each record and nothing more
     (Chroma: ``collection.get(include=[embeddings, metadatas, documents], limit, offset)``;
     Pinecone: ``describe_index_stats`` for the namespaces, ``index.list(namespace)`` id
     pages + ``index.fetch(ids)``; Weaviate: per tenant ``iterator(include_vector=True)``);
   * *raw+file*: the same paging plus ``json.dumps`` of each record as the SDK returned it
     (id, text, metadata, vector) and a gzip (level 1, as the export) write, i.e. the least
     any export to a gzip JSONL file costs.

   The headline ratio ours / raw isolates everything our export adds on top of the SDK
   paging (file writing included); ours / raw+file isolates what it adds on top of a minimal
   file export (decoding, digests, state look-ups, the header and trailer);
2. **import** records/s of that export file, each side into a fresh empty collection/index
   (created outside the clock as ``bench_stores.py`` does; Weaviate's properties and tenants
   are created inside the clock on both sides, as a first write must), same order:

   * *ours*: ``rag_app.ops.transfer.import_file``: gzip + JSON read, a digest check per line,
     batches of ``IMPORT_BATCH`` through the adapter's ``upsert`` (its encoding, checks and
     change token), the record-manager update and resume marker per batch, the checksum
     check and the ingest-state rebuild at the end;
   * *raw*: the raw SDK writing the same records (payloads built from the file before the
     clock starts, exactly as the adapter sends them) in the same sequence of requests: the
     import's batches of ``IMPORT_BATCH``, split per namespace/tenant and into the adapter's
     own batch size;
   * *raw+file*: the raw writes plus reading and parsing the file (gzip + ``json.loads`` of
     every line) inside the clock.

   The two runs of each side are averaged;
3. **sanity** (the run fails loudly otherwise): each export side saw exactly the source's ids;
   every import target (ours and raw) holds exactly the source's ids, and ours hands back the
   same text and metadata per id as the source.

The emulators run in a child process on 127.0.0.1: their numbers measure adapter + SDK +
loopback HTTP/gRPC + a Python emulator, NOT the Pinecone/Weaviate cloud services. Chroma runs
in-process.

Usage: python bench/bench_transfer.py [--docs 2000] [--stores chroma,pinecone,weaviate]
                                      [--vectors random|minilm] [--dataset DIR] [--out FILE]
"""

from __future__ import annotations

import argparse
import datetime as dt
import gzip
import json
import logging
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

# bench_stores puts the repository on sys.path and switches rag_app to offline mode
from bench_stores import (
    API_KEY,
    ROOT,
    Corpus,
    _settings,
    emulator,
    load_corpus,
    missing_properties,
)

from rag_app.app import App
from rag_app.embeddings import LocalEmbeddings
from rag_app.ops.transfer import IMPORT_BATCH, export_index, import_file
from rag_app.stores import open_store
from rag_app.stores.base import Scannable, StoreRecord, VectorStorePort

ROUNDS = ("ours", "raw", "raw_file", "raw_file", "raw", "ours")  # ABC-CBA
SIDES = ("ours", "raw", "raw_file")
FILE_KEY = "scifact.jsonl"

# (id, text, metadata, vector) as the SDK returned them
RawItem = tuple[str, Any, Any, Any]


@dataclass
class Driver:
    """One store's sides.

    ``open_adapter(name)``: a fresh adapter store on collection/index `name` (created).
    ``native(adapter)``: the SDK handle of the adapter's collection/index.
    ``raw_pages(handle)``: every record of a collection/index through the raw SDK.
    ``raw_import(r, source, records)``: (write, handle) for a fresh native target, `write`
    sending the pre-built payloads of `records` (the export file's record lines, in order)."""

    name: str
    note: str
    open_adapter: Callable[[str], VectorStorePort]
    native: Callable[[VectorStorePort], Any]
    raw_pages: Callable[[Any], Iterator[RawItem]]
    raw_import: Callable[
        [int, VectorStorePort, list[dict[str, Any]]], tuple[Callable[[], None], Any]
    ]
    settings: Callable[[str], Any]
    cleanup: list[Callable[[], None]] = field(default_factory=list)


def _chunks(records: list[dict[str, Any]]) -> Iterator[list[dict[str, Any]]]:
    """The import's batches (`import_file` calls the adapter's upsert once per batch)."""
    for start in range(0, len(records), IMPORT_BATCH):
        yield records[start : start + IMPORT_BATCH]


def _grouped(batch: list[dict[str, Any]], key: Callable[[dict[str, Any]], str]) -> dict[str, Any]:
    out: dict[str, list[dict[str, Any]]] = {}
    for rec in batch:
        out.setdefault(key(rec), []).append(rec)
    return out


# -- drivers -------------------------------------------------------------------------------------


def chroma_driver(work: Path, dim: int, model: str) -> Driver:
    from rag_app.stores.chroma import _PAGE, ChromaStore

    def settings(name: str) -> Any:
        return _settings(work, "chroma", name)

    def open_adapter(name: str) -> VectorStorePort:
        return open_store(settings(name), dimension=dim, embedding_model=model)

    def native(adapter: VectorStorePort) -> Any:
        assert isinstance(adapter, ChromaStore)
        return adapter._collection

    def raw_pages(coll: Any) -> Iterator[RawItem]:
        offset = 0
        while True:
            res = coll.get(
                include=["embeddings", "metadatas", "documents"], limit=_PAGE, offset=offset
            )
            ids = res["ids"]
            docs, metas, vecs = res["documents"], res["metadatas"], res["embeddings"]
            for n, rid in enumerate(ids):
                yield rid, docs[n], metas[n], vecs[n]
            if len(ids) < _PAGE:
                return
            offset += len(ids)

    def raw_import(
        r: int, source: VectorStorePort, records: list[dict[str, Any]]
    ) -> tuple[Callable[[], None], Any]:
        assert isinstance(source, ChromaStore)
        coll = source._client.get_or_create_collection(
            name=f"xfer_raw{r}",
            embedding_function=None,
            configuration={"hnsw": {"space": "cosine"}},
        )
        size = source._max_batch
        plan: list[dict[str, Any]] = []
        for chunk in _chunks(records):
            for s in range(0, len(chunk), size):
                part = chunk[s : s + size]
                plan.append(
                    {
                        "ids": [x["id"] for x in part],
                        "documents": [x["text"] for x in part],
                        "embeddings": [x["vector"] for x in part],
                        "metadatas": [x["metadata"] for x in part],
                    }
                )

        def write() -> None:
            for kwargs in plan:
                coll.upsert(**kwargs)

        return write, coll

    return Driver(
        "chroma",
        "embedded PersistentClient in a temp dir (in-process)",
        open_adapter,
        native,
        raw_pages,
        raw_import,
        settings,
    )


def pinecone_driver(work: Path, dim: int, model: str, url: str) -> Driver:
    from pinecone import Pinecone, ServerlessSpec

    from rag_app.stores.pinecone import (
        DEFAULT_NAMESPACE_STATS_KEY,
        FETCH_BATCH,
        LIST_PAGE,
        META_NAMESPACE,
        PineconeStore,
        encode_metadata,
    )

    pc = Pinecone(api_key=API_KEY, host=url)
    batch_size = 100  # the adapter's default (PineconeOptions.batch_size)

    def settings(name: str) -> Any:
        return _settings(
            work,
            "pinecone",
            "bench",
            api_key=API_KEY,
            controller_host=url,
            index=name.replace("_", "-"),
            batch_size=batch_size,
        )

    def open_adapter(name: str) -> VectorStorePort:
        store = open_store(settings(name), dimension=dim, embedding_model=model)
        assert isinstance(store, PineconeStore)
        store.create_index()  # index creation is setup, outside the clock
        return store

    def native(adapter: VectorStorePort) -> Any:
        assert isinstance(adapter, PineconeStore)
        return adapter._index

    def raw_pages(index: Any) -> Iterator[RawItem]:
        stats = index.describe_index_stats()
        for ns in stats.namespaces or {}:
            if ns == META_NAMESPACE:
                continue
            namespace = "" if ns == DEFAULT_NAMESPACE_STATS_KEY else ns
            for ids in index.list(namespace=namespace, limit=LIST_PAGE):
                for s in range(0, len(ids), FETCH_BATCH):
                    found = index.fetch(ids=ids[s : s + FETCH_BATCH], namespace=namespace).vectors
                    for rid, vec in found.items():
                        yield rid, None, vec.metadata, vec.values

    def raw_import(
        r: int, source: VectorStorePort, records: list[dict[str, Any]]
    ) -> tuple[Callable[[], None], Any]:
        name = f"xfer-raw{r}"
        pc.create_index(
            name=name,
            dimension=dim,
            metric="cosine",
            spec=ServerlessSpec(cloud="aws", region="us-east-1"),
        )
        index = pc.Index(host=pc.describe_index(name).host)
        plan: list[tuple[str, list[dict[str, Any]]]] = []
        for chunk in _chunks(records):
            for namespace, recs in _grouped(chunk, lambda x: x["tenant"]).items():
                payloads = [
                    {
                        "id": x["id"],
                        "values": x["vector"],
                        "metadata": encode_metadata(x["id"], x["text"], x["metadata"]),
                    }
                    for x in recs
                ]
                for s in range(0, len(payloads), batch_size):
                    plan.append((namespace, payloads[s : s + batch_size]))

        def write() -> None:
            for namespace, vectors in plan:
                index.upsert(vectors=vectors, namespace=namespace)

        return write, index

    return Driver(
        "pinecone",
        f"emulator at {url} (child process; REST over loopback)",
        open_adapter,
        native,
        raw_pages,
        raw_import,
        settings,
    )


def weaviate_driver(work: Path, dim: int, model: str, url: str, grpc_port: int) -> Driver:
    from weaviate.classes.data import DataObject
    from weaviate.classes.tenants import Tenant

    from rag_app.stores.weaviate import (
        _PAGE,
        ID_PROP,
        META_TENANT,
        TEXT_PROP,
        WeaviateStore,
        object_uuid,
        weaviate_tenant,
    )

    opened: list[WeaviateStore] = []

    def settings(name: str) -> Any:
        return _settings(work, "weaviate", name, url=url, grpc_port=grpc_port)

    def open_at(name: str) -> WeaviateStore:
        store = open_store(settings(name), dimension=dim, embedding_model=model)
        assert isinstance(store, WeaviateStore)
        opened.append(store)  # the adapter creates the collection at open
        return store

    def open_adapter(name: str) -> VectorStorePort:
        return open_at(name)

    def native(adapter: VectorStorePort) -> Any:
        assert isinstance(adapter, WeaviateStore)
        return adapter._collection

    def raw_pages(coll: Any) -> Iterator[RawItem]:
        for tenant in sorted(str(t) for t in coll.tenants.get()):
            if tenant == META_TENANT:
                continue
            for obj in coll.with_tenant(tenant).iterator(include_vector=True, cache_size=_PAGE):
                props = obj.properties
                yield str(props[ID_PROP]), props[TEXT_PROP], props, obj.vector

    def raw_import(
        r: int, source: VectorStorePort, records: list[dict[str, Any]]
    ) -> tuple[Callable[[], None], Any]:
        # A fresh collection created by the adapter's open (outside the clock, as for ours);
        # the clock covers what a first write must do on it: add the metadata properties (the
        # source's definitions), create the tenants, insert the batches.
        assert isinstance(source, WeaviateStore)
        holder = open_at(f"xfer_raw{r}")
        properties = missing_properties(source, holder)
        tenants = sorted({weaviate_tenant(x["tenant"]) for x in records})
        coll = holder._collection
        size = source._batch_size
        plan: list[tuple[str, list[Any]]] = []
        for chunk in _chunks(records):
            for tenant, recs in _grouped(chunk, lambda x: weaviate_tenant(x["tenant"])).items():
                objects = [
                    DataObject(
                        properties={TEXT_PROP: x["text"], ID_PROP: x["id"], **x["metadata"]},
                        uuid=object_uuid(x["id"]),
                        vector=x["vector"],
                    )
                    for x in recs
                ]
                for s in range(0, len(objects), size):
                    plan.append((tenant, objects[s : s + size]))

        def write() -> None:
            for prop in properties:
                coll.config.add_property(prop)
            coll.tenants.create([Tenant(name=t) for t in tenants])
            for tenant, objects in plan:
                result = coll.with_tenant(tenant).data.insert_many(objects)
                if result.errors:
                    raise SystemExit(f"raw Weaviate insert failed: {result.errors}")

        return write, coll

    def close_all() -> None:
        for store in opened:
            store.close()

    return Driver(
        "weaviate",
        f"emulator at {url}, gRPC :{grpc_port} (child process; REST + gRPC over loopback)",
        open_adapter,
        native,
        raw_pages,
        raw_import,
        settings,
        cleanup=[close_all],
    )


# -- the measurements ----------------------------------------------------------------------------


def _jsonable(value: Any) -> Any:
    return value.tolist() if hasattr(value, "tolist") else str(value)


def raw_export_to_file(pages: Iterator[RawItem], out: Path) -> list[str]:
    """The least an export to gzip JSONL costs: each record as the SDK returned it."""
    ids: list[str] = []
    with gzip.open(out, "wt", encoding="utf-8", compresslevel=1) as fh:
        for rid, text, meta, vec in pages:
            line = {"id": rid, "text": text, "metadata": meta, "vector": vec}
            fh.write(json.dumps(line, ensure_ascii=False, default=_jsonable) + "\n")
            ids.append(rid)
    return ids


def read_records(path: Path) -> list[dict[str, Any]]:
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        lines = [json.loads(line) for line in fh]
    return [x for x in lines if x.get("type") == "record"]


def random_vectors(n: int, dim: int) -> list[list[float]]:
    """Seeded unit vectors, float32 like every store keeps them."""
    import numpy as np

    rng = np.random.default_rng(7)
    vecs = rng.standard_normal((n, dim)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    return [list(map(float, row)) for row in vecs.tolist()]


def seed_state(app: App, corpus: Corpus) -> None:
    """The source's ingest state as an ingest of the JSONL file leaves it: one record-manager
    group per record, document rows and the per-tenant field catalog, the file complete."""
    state = app.state
    groups = [f"{FILE_KEY}#{m['doc_id']}" for m in corpus.metadatas]
    state.record_manager.update(corpus.ids, group_ids=groups)
    state.rebuild_from_records(
        StoreRecord(id=i, metadata=m) for i, m in zip(corpus.ids, corpus.metadatas, strict=True)
    )
    state.mark_complete(FILE_KEY, FILE_KEY, "bench-fingerprint")


def _check_ids(where: str, got: list[str], want: set[str]) -> None:
    if len(got) != len(want) or set(got) != want:
        missing, extra = len(want - set(got)), len(set(got) - want)
        raise SystemExit(
            f"{where}: {len(got)} records, {len(set(got))} distinct; {missing} of the source's "
            f"{len(want)} ids missing, {extra} unknown ids"
        )


def run_store(driver: Driver, corpus: Corpus, work: Path, embeddings: Any) -> dict[str, Any]:
    n = len(corpus)
    want = set(corpus.ids)
    source = driver.open_adapter("xfer_src")
    assert isinstance(source, Scannable)
    source.upsert(corpus.ids, corpus.texts, corpus.vectors, corpus.metadatas)
    src_app = App(driver.settings("xfer_src"), embeddings=embeddings, store=source)
    seed_state(src_app, corpus)
    handle = driver.native(source)
    files = work / "files"
    files.mkdir(parents=True, exist_ok=True)

    # 1. export ---------------------------------------------------------------------------
    _check_ids(f"{driver.name} warm-up raw paging", [x[0] for x in driver.raw_pages(handle)], want)
    times: dict[str, list[float]] = {s: [] for s in SIDES}
    export_file: Path | None = None
    file_bytes: dict[str, int] = {}
    for r, side in enumerate(ROUNDS):
        out = files / f"{side}{r}.jsonl.gz"
        t0 = time.perf_counter()
        if side == "ours":
            summary = export_index(src_app, out)
            times[side].append(time.perf_counter() - t0)
            if summary.records != n or summary.files != 1:
                raise SystemExit(f"{driver.name}: export wrote {summary.records} records")
            export_file = export_file or out
            ids = [x["id"] for x in read_records(out)]
        elif side == "raw":
            ids = [x[0] for x in driver.raw_pages(handle)]
            times[side].append(time.perf_counter() - t0)
        else:
            ids = raw_export_to_file(driver.raw_pages(handle), out)
            times[side].append(time.perf_counter() - t0)
        if side != "raw":
            file_bytes[side] = out.stat().st_size
        _check_ids(f"{driver.name} export ({side}, round {r})", ids, want)
    assert export_file is not None
    export_s = {s: statistics.mean(v) for s, v in times.items()}
    export_times = times

    # 2. import ---------------------------------------------------------------------------
    records = read_records(export_file)
    before = {r.id: (r.text, r.metadata) for r in source.records(with_text=True)}
    times = {s: [] for s in SIDES}
    for r, side in enumerate(ROUNDS):
        if side == "ours":
            target = driver.open_adapter(f"xfer_a{r}")
            assert isinstance(target, Scannable)
            app = App(driver.settings(f"xfer_a{r}"), embeddings=embeddings, store=target)
            app.state  # noqa: B018  (the state database is opened outside the clock)
            t0 = time.perf_counter()
            summary_in = import_file(app, export_file)
            times[side].append(time.perf_counter() - t0)
            if summary_in.records_written != n or summary_in.files_marked != 1:
                raise SystemExit(f"{driver.name}: import wrote {summary_in.records_written}")
            if target.count() != n:
                raise SystemExit(f"{driver.name}: import target counts {target.count()} records")
            after = {x.id: (x.text, x.metadata) for x in target.records(with_text=True)}
            _check_ids(f"{driver.name} import (ours, round {r})", list(after), want)
            if after != before:
                bad = sorted(k for k in before if before[k] != after.get(k))
                raise SystemExit(
                    f"{driver.name}: {len(bad)} imported records differ from the source, "
                    f"e.g. {bad[0]}: {after.get(bad[0])} != {before[bad[0]]}"
                )
            target.close()
        else:
            write, native = driver.raw_import(r, source, records)
            t0 = time.perf_counter()
            if side == "raw_file":
                read_records(export_file)  # parsed inside the clock, payloads pre-built
            write()
            times[side].append(time.perf_counter() - t0)
            got = [x[0] for x in driver.raw_pages(native)]
            _check_ids(f"{driver.name} import ({side}, round {r})", got, want)
    import_s = {s: statistics.mean(v) for s, v in times.items()}
    source.close()

    def rate(seconds: float) -> float:
        return round(n / seconds, 1)

    return {
        "store": driver.name,
        "where": driver.note,
        "records": n,
        "rounds": list(ROUNDS),
        "export_seconds": {s: [round(t, 4) for t in v] for s, v in export_times.items()},
        "export_per_s": {s: rate(t) for s, t in export_s.items()},
        "export_ours_vs_raw": round(export_s["raw"] / export_s["ours"], 3),
        "export_ours_vs_raw_file": round(export_s["raw_file"] / export_s["ours"], 3),
        "export_file_bytes": file_bytes,
        "import_seconds": {s: [round(t, 4) for t in v] for s, v in times.items()},
        "import_per_s": {s: rate(t) for s, t in import_s.items()},
        "import_ours_vs_raw": round(import_s["raw"] / import_s["ours"], 3),
        "import_ours_vs_raw_file": round(import_s["raw_file"] / import_s["ours"], 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--dataset", type=Path, default=ROOT.parent / "shared/datasets/scifact")
    parser.add_argument("--docs", type=int, default=2000)
    parser.add_argument("--stores", default="chroma,pinecone,weaviate")
    parser.add_argument(
        "--vectors",
        choices=("random", "minilm"),
        default="random",
        help="seeded random unit vectors (default) or the abstracts embedded with MiniLM",
    )
    parser.add_argument("--out", type=Path, default=ROOT / "bench/results/transfer.json")
    args = parser.parse_args()
    stores = [s.strip() for s in args.stores.split(",") if s.strip()]
    unknown = set(stores) - {"chroma", "pinecone", "weaviate"}
    if unknown:
        raise SystemExit(f"unknown store(s): {', '.join(sorted(unknown))}")
    logging.getLogger("rag_app.stores").setLevel(logging.ERROR)  # index/tenant creation notes

    ids, texts, metas = load_corpus(args.dataset, args.docs)
    embeddings = LocalEmbeddings()
    dim, model = embeddings.dimension, embeddings.name
    t0 = time.perf_counter()
    if args.vectors == "minilm":
        vectors = embeddings.embed_documents(texts)
        how = f"embedded with {model}"
    else:
        vectors = random_vectors(len(texts), dim)
        how = f"seeded random unit vectors labelled {model}"
    t_vec = time.perf_counter() - t0
    corpus = Corpus(ids, texts, vectors, metas)
    print(
        f"corpus: {len(corpus)} SciFact abstracts as chunks, {dim}-d vectors {how} (built once "
        f"up front in {t_vec:.1f} s, excluded from every timing); import batch {IMPORT_BATCH}"
    )
    work = Path(tempfile.mkdtemp(prefix="rag-bench-transfer-"))
    results: list[dict[str, Any]] = []
    started = time.perf_counter()
    try:
        for name in stores:
            print(f"[{name}] ...", flush=True)
            if name == "chroma":
                driver = chroma_driver(work / name, dim, model)
                results.append(run_store(driver, corpus, work / name, embeddings))
                continue
            with emulator(name) as addr:
                if name == "pinecone":
                    driver = pinecone_driver(work / name, dim, model, addr[0])
                else:
                    driver = weaviate_driver(work / name, dim, model, addr[0], int(addr[1]))
                try:
                    results.append(run_store(driver, corpus, work / name, embeddings))
                finally:
                    for fn in driver.cleanup:
                        fn()
    finally:
        shutil.rmtree(work, ignore_errors=True)  # export files and Chroma data (~100 MB)

    print()
    print(
        f"{'store':9}|{'export rec/s':>13}{'raw':>9}{'ratio':>7}{'raw+file':>10}{'ratio':>7} |"
        f"{'import rec/s':>13}{'raw':>9}{'ratio':>7}{'raw+file':>10}{'ratio':>7}"
    )
    for r in results:
        e, i = r["export_per_s"], r["import_per_s"]
        print(
            f"{r['store']:9}|{e['ours']:13.1f}{e['raw']:9.1f}{r['export_ours_vs_raw']:7.3f}"
            f"{e['raw_file']:10.1f}{r['export_ours_vs_raw_file']:7.3f} |"
            f"{i['ours']:13.1f}{i['raw']:9.1f}{r['import_ours_vs_raw']:7.3f}"
            f"{i['raw_file']:10.1f}{r['import_ours_vs_raw_file']:7.3f}"
        )
    print(
        "ratio = our throughput / raw SDK throughput (mean of 2 runs each, order ABC-CBA). "
        "raw = SDK paging only / SDK batch writes of pre-built payloads; raw+file adds the "
        "gzip JSONL write (export) or read + parse (import)"
    )
    for r in results:
        print(f"  {r['store']}: {r['where']}")
    print(
        "  emulator numbers measure adapter + SDK + loopback HTTP/gRPC + a Python emulator, "
        "not the Pinecone/Weaviate cloud services"
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps(
            {
                "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                "machine": {
                    "cpu_count": os.cpu_count(),
                    "platform": platform.platform(),
                    "python": platform.python_version(),
                },
                "records": len(corpus),
                "embedding": {"model": model, "dimension": dim, "vectors": args.vectors},
                "import_batch": IMPORT_BATCH,
                "wall_seconds": round(time.perf_counter() - started, 1),
                "stores": results,
            },
            indent=2,
        )
    )
    print(f"results written to {args.out}")


if __name__ == "__main__":
    main()
