"""`rag-app stores list | describe | create | protect | delete`: the collections (indexes) on
the configured store's server."""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from rag_app.stores.base import CollectionMetric

stores_app = typer.Typer(
    name="stores",
    help="List, describe, create and delete the collections (indexes) of the configured store.",
    no_args_is_help=True,
)


def list_cmd(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False,
) -> int:
    """Every collection with its dimension, metric, record count and tenants (namespaces)."""
    from rag_app.ops.lifecycle import admin_store, summary_row

    infos = admin_store(ctx.obj.app).list_collections()
    if as_json:
        typer.echo(json.dumps([asdict(i) for i in infos], indent=2, default=str))
        return 0
    if not infos:
        typer.echo("no collections")
        return 0
    table = Table("name", "dimension", "metric", "records", "tenants")
    for info in infos:
        table.add_row(*summary_row(info))
    Console().print(table)
    return 0


def describe_cmd(
    ctx: typer.Context,
    name: Annotated[
        str | None,
        typer.Argument(help="Collection / index name (default: the configured one)."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False,
) -> int:
    """One collection in full: embedding model, deletion protection, counts per tenant."""
    from rag_app.ops.lifecycle import admin_store, describe_lines

    app = ctx.obj.app
    store = admin_store(app)
    info = store.describe_collection(name or app.store.info.collection)
    if as_json:
        typer.echo(json.dumps(asdict(info), indent=2, default=str))
    else:
        for line in describe_lines(info):
            typer.echo(line)
    return 0


def create_cmd(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Collection / index name (the store's own).")],
    dimension: Annotated[
        int | None,
        typer.Option(
            min=1, help="Vector dimension (default: the embedding model's).", show_default=False
        ),
    ] = None,
    metric: Annotated[
        CollectionMetric,
        typer.Option(help="cosine (every store) or dotproduct (Pinecone, native hybrid)."),
    ] = "cosine",
    deletion_protection: Annotated[
        bool,
        typer.Option(
            "--deletion-protection/--no-deletion-protection",
            help="Refuse deletion until turned off.",
        ),
    ] = False,
    cloud: Annotated[
        str | None, typer.Option(help="Pinecone serverless cloud.", show_default=False)
    ] = None,
    region: Annotated[
        str | None, typer.Option(help="Pinecone serverless region.", show_default=False)
    ] = None,
) -> int:
    """Create an empty collection for the configured embedding model; the field catalog's
    fields are declared filterable where the store takes a schema (Weaviate)."""
    from rag_app.ops.lifecycle import create, describe_lines

    info = create(
        ctx.obj.app,
        name,
        dimension=dimension,
        metric=metric,
        deletion_protection=deletion_protection,
        cloud=cloud,
        region=region,
    )
    typer.echo(f"created {info.name}")
    for line in describe_lines(info):
        typer.echo(f"  {line}")
    return 0


def protect_cmd(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Collection / index name.")],
    off: Annotated[bool, typer.Option("--off", help="Turn deletion protection off.")] = False,
) -> int:
    """Turn deletion protection on (or off with --off)."""
    from rag_app.ops.lifecycle import admin_store

    admin_store(ctx.obj.app).set_deletion_protection(name, not off)
    typer.echo(f"deletion protection of {name}: {'off' if off else 'on'}")
    return 0


def delete_cmd(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Collection / index name.")],
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
) -> int:
    """Delete a collection and every record in it. Refuses while deletion protection is on;
    says what will be lost and asks for confirmation unless --yes."""
    from rag_app.errors import ConfigError
    from rag_app.ops.lifecycle import admin_store, loss_lines, protection_refusal

    store = admin_store(ctx.obj.app)
    info = store.describe_collection(name)
    if info.deletion_protection:
        raise ConfigError(protection_refusal(info))
    for line in loss_lines(info):
        typer.echo(line)
    if not yes and not typer.confirm(
        f"Delete {name} and its {info.count} records? This cannot be undone", default=False
    ):
        raise typer.Abort()
    store.delete_collection(name)
    typer.echo(f"deleted {name}")
    return 0


stores_app.command("list")(list_cmd)
stores_app.command("describe")(describe_cmd)
stores_app.command("create")(create_cmd)
stores_app.command("protect")(protect_cmd)
stores_app.command("delete")(delete_cmd)


def register(app: typer.Typer) -> None:
    app.add_typer(stores_app, name="stores")
