"""Ingestion throughput: rag_app's pipeline against the standard LangChain path, same chunks.

The standard path is what a LangChain tutorial writes: ``HuggingFaceEmbeddings`` (the same
bundled all-MiniLM-L6-v2 weights, on torch, LangChain's default encode arguments) into
``langchain_chroma.Chroma.add_documents``. rag_app's path is ``rag-app ingest``'s: load, split,
hash, record manager, embed with the configured encoder, write, ingest state. Both get exactly
the chunk texts rag_app stored (read back from its store), so they embed the same tokens.

Measured in one run, in the order ABBA (ours, LangChain, LangChain, ours) and each side's
faster run kept, so a drift in the machine's load falls on both sides:

1. chunks/s of each path, and the ratio (issue 12's goal: at least 2x);
2. rag_app on torch as a reference (what the encoder change gives, apart from the pipeline);
3. the incremental guarantees after the timed runs: re-ingesting the unchanged corpus embeds
   nothing, and editing the end of one abstract embeds only chunks of that abstract (at least
   one, at most all of them; both counted at the embedding model, not taken from the report).

Model loading (and the one-time ONNX export) happens before the timed regions on both sides.

Needs the LangChain integrations, which the project does not depend on:
    .venv/bin/pip install --no-deps langchain-chroma==1.1.0 langchain-huggingface==1.2.3
(``--no-deps``: langchain-huggingface pins huggingface_hub<2, while transformers 5 needs 2.x;
its ``HuggingFaceEmbeddings`` works with either.)

Usage: python bench/bench_ingest.py [--docs 600] [--dataset DIR] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from rag_app import configure_offline  # noqa: E402

configure_offline()

from rag_app.app import App  # noqa: E402
from rag_app.embeddings import LocalEmbeddings, bundled_minilm_path  # noqa: E402
from rag_app.settings import DEFAULT_EMBED_BACKEND, Settings  # noqa: E402


class Counting:
    """Counts the texts an embedding model is asked to embed (the incremental checks)."""

    def __init__(self, inner: LocalEmbeddings) -> None:
        self.inner = inner
        self.texts = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        self.texts += len(texts)
        return self.inner.embed_documents(texts)

    def embed_query(self, text: str) -> list[float]:
        return self.inner.embed_query(text)


def write_corpus(dataset: Path, n_docs: int, out: Path) -> list[dict[str, Any]]:
    rows = []
    with (dataset / "corpus.jsonl").open() as src:
        for line in src:
            if len(rows) >= n_docs:
                break
            rec = json.loads(line)
            rows.append(
                {
                    "_id": rec["_id"],
                    "title": rec.get("title") or rec["_id"],
                    "text": rec["text"],
                    "tenant": "t0",
                    "acl": ["public"],
                }
            )
    out.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return rows


def ours(work: Path, corpus: Path, embeddings: Any) -> tuple[float, int, App]:
    shutil.rmtree(work, ignore_errors=True)
    app = App(
        Settings(data_dir=work, embed_batch_size=embeddings.batch_size), embeddings=embeddings
    )
    ingestor = app.ingestor  # the store opened, as LangChain's Chroma is, before the clock
    t0 = time.perf_counter()
    report = ingestor.ingest([corpus])
    seconds = time.perf_counter() - t0
    if not report.ok:
        raise SystemExit(f"ingest rejected inputs: {report.rejected[:3]}")
    return seconds, report.chunks_added, app


def langchain(work: Path, docs: list[Any], embeddings: Any) -> float:
    from langchain_chroma import Chroma

    shutil.rmtree(work, ignore_errors=True)
    store = Chroma(
        collection_name="bench", embedding_function=embeddings, persist_directory=str(work)
    )
    t0 = time.perf_counter()
    store.add_documents(docs)
    seconds = time.perf_counter() - t0
    if store._collection.count() != len(docs):
        raise SystemExit("langchain-chroma stored fewer chunks than it was given")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", type=Path, default=ROOT.parent / "shared/datasets/scifact")
    parser.add_argument("--docs", type=int, default=600)
    parser.add_argument(
        "--batch-size", type=int, default=None, help="rag_app's (default: RAG_EMBED_BATCH_SIZE)"
    )
    parser.add_argument("--out", type=Path, default=ROOT / "bench/results/ingest.json")
    args = parser.parse_args()
    try:
        from langchain_core.documents import Document
        from langchain_huggingface import HuggingFaceEmbeddings
    except ImportError as exc:
        raise SystemExit(
            f"{exc}: install the LangChain integrations this benchmark compares against:\n"
            "  .venv/bin/pip install --no-deps langchain-chroma==1.1.0 "
            "langchain-huggingface==1.2.3"
        ) from None

    tmp = Path(tempfile.mkdtemp(prefix="rag-bench-ingest-"))
    corpus = tmp / "corpus" / "scifact.jsonl"
    corpus.parent.mkdir()
    rows = write_corpus(args.dataset, args.docs, corpus)

    # every model loaded (and the ONNX export made) before any timed region
    batch = args.batch_size or Settings().embed_batch_size
    default = Counting(LocalEmbeddings(backend=DEFAULT_EMBED_BACKEND, batch_size=batch))
    torch_model = Counting(LocalEmbeddings(backend="torch", batch_size=batch))
    lc_embeddings = HuggingFaceEmbeddings(model_name=str(bundled_minilm_path()))
    for model in (default, torch_model):
        model.embed_documents(["warm up the model"] * 8)
    lc_embeddings.embed_documents(["warm up the model"] * 8)

    # 1. ABBA: ours (default encoder), LangChain, LangChain, ours
    runs: dict[str, list[float]] = {"ours": [], "langchain": []}
    seconds, n_chunks, app = ours(tmp / "ours-1", corpus, default)
    runs["ours"].append(seconds)
    stored = list(app.store.records(with_text=True))
    app.close()
    docs = [
        Document(page_content=r.text or "", metadata={"source": str(r.metadata.get("source"))})
        for r in stored
    ]
    for i in (1, 2):
        runs["langchain"].append(langchain(tmp / f"lc-{i}", docs, lc_embeddings))
    seconds, again, app = ours(tmp / "ours-2", corpus, default)
    if again != n_chunks:
        raise SystemExit(f"the second ingest stored {again} chunks, the first {n_chunks}")
    runs["ours"].append(seconds)

    # 3. incremental guarantees, on the second store (counted at the model)
    default.texts = 0
    report = App(app.settings, embeddings=default).ingestor.ingest([corpus])
    reembedded_unchanged = default.texts
    if report.chunks_added or reembedded_unchanged:
        raise SystemExit(f"re-ingest of the unchanged corpus embedded {reembedded_unchanged}")
    edited = dict(rows[0], text=rows[0]["text"] + " (edited)")
    corpus.write_text("".join(json.dumps(r) + "\n" for r in [edited, *rows[1:]]))
    edited_chunks = sum(
        1 for r in stored if str(r.metadata.get("source", "")).endswith(f"#{rows[0]['_id']}")
    )
    default.texts = 0
    report = App(app.settings, embeddings=default).ingestor.ingest([corpus])
    reembedded_edit = default.texts
    app.close()
    if not 0 < reembedded_edit <= edited_chunks:
        raise SystemExit(
            f"editing one abstract ({edited_chunks} chunks) embedded {reembedded_edit} chunks"
        )

    # 2. reference: rag_app's pipeline on the torch encoder (one run, after the ABBA)
    torch_seconds, _, tapp = ours(tmp / "ours-torch", corpus, torch_model)
    tapp.close()

    best = {k: min(v) for k, v in runs.items()}
    cps = {k: n_chunks / v for k, v in best.items()}
    torch_cps = n_chunks / torch_seconds
    result = {
        "load_average_1_5_15": [round(x, 2) for x in os.getloadavg()],
        "docs": len(rows),
        "chunks": n_chunks,
        "encoder": DEFAULT_EMBED_BACKEND,
        "batch_size": batch,
        "encoder_workers": getattr(default.inner.model, "workers", None),
        "runs_seconds": {k: [round(x, 2) for x in v] for k, v in runs.items()},
        "langchain_chunks_per_s": round(cps["langchain"], 2),
        "ours_chunks_per_s": round(cps["ours"], 2),
        "ours_vs_langchain": round(cps["ours"] / cps["langchain"], 2),
        "ours_torch_chunks_per_s": round(torch_cps, 2),
        "ours_torch_vs_langchain": round(torch_cps / cps["langchain"], 2),
        "reingest_unchanged_embedded": reembedded_unchanged,
        "edit_one_abstract": {
            "chunks_of_that_abstract_before": edited_chunks,
            "embedded": reembedded_edit,
            "added": report.chunks_added,
        },
    }
    shutil.rmtree(tmp, ignore_errors=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    load = result["load_average_1_5_15"]
    print(f"{n_chunks} chunks of {len(rows)} SciFact abstracts; load average {load}")
    print(f"{'path':<44}{'chunks/s':>10}{'x LangChain':>13}")
    print(f"{'LangChain (HuggingFaceEmbeddings + Chroma)':<44}{cps['langchain']:>10.1f}{1:>13.2f}")
    print(
        f"{'rag_app ingest, ' + DEFAULT_EMBED_BACKEND:<44}{cps['ours']:>10.1f}"
        f"{cps['ours'] / cps['langchain']:>13.2f}"
    )
    print(f"{'rag_app ingest, torch':<44}{torch_cps:>10.1f}{torch_cps / cps['langchain']:>13.2f}")
    print(
        f"re-ingest unchanged: {reembedded_unchanged} chunks embedded; one abstract edited: "
        f"{reembedded_edit} embedded ({edited_chunks} chunks before)"
    )
    print(f"-> {args.out}")


if __name__ == "__main__":
    main()
