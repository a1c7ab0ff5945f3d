"""`rag-app serve`: the Gradio chat UI."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def serve(
    ctx: typer.Context,
    host: Annotated[str, typer.Option(help="Address to listen on.", envvar="RAG_UI_HOST")] = (
        "127.0.0.1"
    ),
    port: Annotated[int, typer.Option(help="Port.", envvar="RAG_UI_PORT")] = 7860,
    ingest: Annotated[
        list[Path] | None,
        typer.Option(help="Ingest these paths first (incremental; unchanged files cost nothing)."),
    ] = None,
) -> int:
    """Start the chat UI in the browser (login with a user from the users file)."""
    import os

    from rag_app.ui.app import launch

    # A server keeps answering from the current BM25 index (re-checked against the store)
    # while a changed store is re-indexed on a worker thread, unless configured otherwise.
    if "RAG_BM25_REFRESH" not in os.environ:
        ctx.obj.overrides.setdefault("bm25_refresh", "background")
    app = ctx.obj.app
    if ingest:
        report = app.ingestor.ingest(ingest, origin="serve")
        typer.echo(
            f"ingest: {report.files_indexed} indexed, {report.files_unchanged} unchanged, "
            f"{len(report.rejected)} rejected"
        )
    typer.echo(f"Starting the chat UI on http://{host}:{port} (Ctrl-C to stop)")
    launch(
        app,
        host=host,
        port=port,
        metrics_port=app.settings.metrics_port,
        slow_query_ms=app.settings.slow_query_ms,
    )
    return 0


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)
