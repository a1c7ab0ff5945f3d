"""Terminal rendering helpers."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rich.console import Console
from rich.markup import escape

from rag_app.stores.base import StoreHit

SHOWN_FIRST = ("category", "created_at", "tenant", "acl", "tags")
HIDDEN = {"source", "title", "chunk_count", "doc_id", "chunk_index", "chunk_kind"}


def _fmt(value: Any, limit: int = 60) -> str:
    text = ", ".join(map(str, value)) if isinstance(value, list) else str(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def describe_metadata(meta: dict[str, Any]) -> str:
    shown: dict[str, Any] = {}
    for key in (*SHOWN_FIRST, *sorted(meta)):
        if key in shown or key in HIDDEN or key.endswith("_iso") or key not in meta:
            continue
        shown[key] = meta.get(f"{key}_iso", meta[key])
    return " · ".join(f"{k}={_fmt(v)}" for k, v in shown.items())


def hits_table(hits: Sequence[StoreHit], *, snippet_chars: int = 280) -> None:
    console = Console(highlight=False, soft_wrap=True)
    if not hits:
        console.print("no results (nothing you may read matches)")
        return
    for n, hit in enumerate(hits, start=1):
        meta = hit.metadata
        chunk = meta.get("chunk_index")
        count = meta.get("chunk_count")
        where = f" [chunk {chunk + 1}/{count}]" if isinstance(chunk, int) and count else ""
        console.print(
            f"[bold]{n}.[/bold] [cyan]{hit.score:.3f}[/cyan]  "
            f"[bold]{escape(str(meta.get('source', '?')))}[/bold]{escape(where)}"
        )
        console.print(f"   [green]{escape(str(meta.get('title', '')))}[/green]")
        console.print(f"   [dim]{escape(describe_metadata(meta))}[/dim]")
        snippet = " ".join(hit.text.split())
        if len(snippet) > snippet_chars:
            snippet = snippet[: snippet_chars - 1] + "…"
        console.print(f"   {escape(snippet)}")
        console.print()
