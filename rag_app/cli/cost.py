"""`rag-app cost estimate`: storage, query and embedding costs of the corpus on each store,
from a dated price table."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

cost_app = typer.Typer(
    name="cost",
    help="Estimate what the corpus costs on Pinecone, Weaviate Cloud, Chroma and OpenAI.",
    no_args_is_help=True,
)


def estimate_cmd(
    ctx: typer.Context,
    vectors: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="Estimate for N vectors shaped like the measured records (default: the "
            "records in the configured store).",
            show_default=False,
        ),
    ] = None,
    queries_per_month: Annotated[
        int | None,
        typer.Option(
            min=0,
            help="Searches per month (default 100,000, printed as an assumption).",
            show_default=False,
        ),
    ] = None,
    prices: Annotated[
        Path | None,
        typer.Option(
            envvar="RAG_PRICE_TABLE",
            help="Price table (TOML; env RAG_PRICE_TABLE). Default: the dated table shipped in "
            "rag_app/data/prices.toml.",
            show_default=False,
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False,
) -> int:
    """Measure the configured store (records, dimension, metadata and text bytes per record,
    tiktoken cl100k_base tokens of every chunk) and price it for Pinecone serverless, Weaviate
    Cloud, Chroma (self-hosted and Cloud) and OpenAI embeddings. Every line shows its formula
    and inputs; the output names the price table's date and path."""
    from rag_app.ops.cost import estimate_app, render

    result = estimate_app(
        ctx.obj.app, vectors=vectors, queries_per_month=queries_per_month, prices=prices
    )
    if as_json:
        typer.echo(json.dumps(result.as_dict(), indent=2, default=str))
    else:
        for line in render(result):
            typer.echo(line)
    return 0


cost_app.command("estimate")(estimate_cmd)


def register(app: typer.Typer) -> None:
    app.add_typer(cost_app, name="cost")
