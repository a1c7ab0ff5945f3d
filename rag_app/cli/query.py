"""`rag-app query`."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from rag_app.cli.render import hits_table
from rag_app.settings import RetrieverName


def query(
    ctx: typer.Context,
    text: Annotated[str, typer.Argument(help="The question or search text.")],
    user: Annotated[
        str | None, typer.Option("--user", "-u", help="User from the users file.")
    ] = None,
    tenant: Annotated[
        str | None, typer.Option(help="Tenant for anonymous access (no --user).")
    ] = None,
    filter_: Annotated[
        str | None,
        typer.Option(
            "--filter", "-f", help='Metadata filter as JSON, e.g. \'{"category": "hr"}\'.'
        ),
    ] = None,
    k: Annotated[int | None, typer.Option("-k", help="Number of chunks.", min=1, max=1000)] = None,
    retriever: Annotated[
        RetrieverName | None,
        typer.Option(
            "--retriever", "-r", help="dense | bm25 | hybrid (default: RAG_RETRIEVER, hybrid)."
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print hits as JSON.")] = False,
) -> int:
    """Search as a user: only documents that user may read are returned."""
    app = ctx.obj.app
    principal = ctx.obj.principal(user, tenant)
    searcher = app.searcher(retriever)
    result = searcher.search(principal, text, filter=filter_, k=k)
    if as_json:
        typer.echo(
            json.dumps(
                {
                    "principal": principal.describe(),
                    "retriever": result.retriever,
                    "effective_filter": result.effective_filter,
                    "hits": [
                        {
                            "rank": n,
                            "id": h.id,
                            "score": round(h.score, 6),
                            "source": h.metadata.get("source"),
                            "title": h.metadata.get("title"),
                            "metadata": h.metadata,
                            "text": h.text,
                            **({"scores": result.details[h.id]} if h.id in result.details else {}),
                        }
                        for n, h in enumerate(result.hits, start=1)
                    ],
                },
                indent=2,
                ensure_ascii=False,
            )
        )
    else:
        typer.echo(f"as {principal.describe()} ({result.retriever})")
        hits_table(result.hits)
    return 0


def register(app: typer.Typer) -> None:
    app.command("query")(query)
