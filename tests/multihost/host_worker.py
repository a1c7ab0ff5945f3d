"""One "host" of a multi-host deployment, as a separate process: settings from the environment
(RAG_CHROMA_URL, RAG_COLLECTION, RAG_DATA_DIR, RAG_STATE_DB_URL, RAG_BM25_REFRESH), commands as
JSON lines on stdin, one JSON answer per line on stdout. Run with ``python -m``."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

from rag_app.access.permissions import Principal
from rag_app.app import App
from rag_app.retrieval.bm25 import RECOUNT_S
from rag_app.settings import Settings
from tests.fakes import HashEmbeddings


def handle(app: App, cmd: dict[str, Any]) -> dict[str, Any]:
    op = cmd["op"]
    if op == "search":
        principal = Principal(cmd["tenant"], cmd.get("user"), frozenset(cmd.get("groups", [])))
        result = app.searcher(cmd["retriever"]).search(
            principal, cmd["query"], filter=cmd.get("filter"), k=cmd.get("k", 10)
        )
        return {
            "hits": [
                {
                    "id": h.id,
                    "source": h.metadata.get("source"),
                    "tenant": h.metadata.get("tenant"),
                    "acl": h.metadata.get("acl"),
                    "text": h.text,
                }
                for h in result.hits
            ],
            "stale": result.stale,
            "dropped": result.dropped,
        }
    if op == "ingest":
        return app.ingestor.ingest([Path(cmd["path"])]).as_dict()
    if op == "delete":
        return {"deleted": app.admin.delete(sources=cmd["sources"])}
    if op == "wait":
        # another host's write is seen once the index re-reads the store's token, at most
        # RECOUNT_S after its last read: let that pass, look, then wait for the refresh
        time.sleep(RECOUNT_S)
        app.keyword_index.current()
        app.keyword_index.wait_for_refresh(60)
        return {"ok": True}
    raise ValueError(f"unknown op {op!r}")


def main() -> None:
    app = App(Settings(), embeddings=HashEmbeddings(32))
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        if not line.strip():
            continue
        try:
            out = handle(app, json.loads(line))
        except Exception as exc:  # reported to the test, which fails on it
            out = {"error": f"{type(exc).__name__}: {exc}"}
        print(json.dumps(out), flush=True)
    app.close()


if __name__ == "__main__":
    main()
