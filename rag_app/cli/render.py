"""Terminal rendering helpers."""

from __future__ import annotations

from collections.abc import Sequence

from rich.console import Console
from rich.table import Table

from rag_app.stores.base import StoreHit

HIDDEN = {"source", "title", "chunk_count", "doc_id"}


def hits_table(hits: Sequence[StoreHit]) -> None:
    console = Console()
    if not hits:
        console.print("no results (nothing you may read matches)")
        return
    table = Table(show_lines=True)
    table.add_column("#", justify="right")
    table.add_column("score", justify="right")
    table.add_column("source / title")
    table.add_column("metadata")
    table.add_column("text")
    for n, hit in enumerate(hits, start=1):
        meta = {
            k: v for k, v in hit.metadata.items() if k not in HIDDEN and not k.endswith("_iso")
        }
        for key in list(meta):
            if f"{key}_iso" in hit.metadata:
                meta[key] = hit.metadata[f"{key}_iso"]
        meta_text = "\n".join(f"{k}: {v}" for k, v in sorted(meta.items()))
        snippet = " ".join(hit.text.split())
        table.add_row(
            str(n),
            f"{hit.score:.3f}",
            f"{hit.metadata.get('source', '?')}\n{hit.metadata.get('title', '')}",
            meta_text,
            snippet[:240] + ("…" if len(snippet) > 240 else ""),
        )
    console.print(table)
