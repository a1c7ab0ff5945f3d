"""`rag-app stats`, `rag-app delete`, `rag-app users`."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from rag_app.errors import RagAppError


def stats(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False,
) -> int:
    """Chunk and document counts per tenant and source."""
    data = ctx.obj.app.stats()
    if as_json:
        typer.echo(json.dumps(data, indent=2))
        return 0
    console = Console()
    console.print(
        f"{data['store']} {data['location']} collection={data['collection']} "
        f"model={data['embedding_model']}: {data['chunks']} chunks in {data['documents']} "
        "documents"
    )
    table = Table("tenant", "chunks")
    for tenant, n in data["per_tenant"].items():
        table.add_row(tenant, str(n))
    console.print(table)
    table = Table("tenant", "source", "chunks")
    for row in data["per_source"]:
        table.add_row(row["tenant"], row["source"], str(row["chunks"]))
    console.print(table)
    return 0


def delete(
    ctx: typer.Context,
    source: Annotated[
        list[str] | None, typer.Option(help="Source to delete (repeatable), as shown by stats.")
    ] = None,
    filter_: Annotated[
        str | None, typer.Option("--filter", help="Delete every chunk matching this JSON filter.")
    ] = None,
    older_than: Annotated[
        str | None,
        typer.Option(
            "--older-than",
            help="Only chunks older than this (90d, 12h, 2w, 30m): by their created_at (epoch "
            "seconds), else by when their document was ingested. Alone: among every chunk.",
            show_default=False,
        ),
    ] = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
) -> int:
    """Delete chunks by source, filter and/or age (a later ingest of the same file adds it
    back). Prints what will be removed and asks for confirmation unless --yes."""
    if source and filter_:
        raise RagAppError("give at most one of --source or --filter (with or without --older-than)")
    if not (source or filter_ or older_than):
        raise RagAppError("give --source, --filter or --older-than")
    age: float | None = None
    if older_than is not None:
        from rag_app.ops.lifecycle import parse_duration

        age = parse_duration(older_than)
    app = ctx.obj.app
    plan = app.plan_delete(sources=source or [], filter=filter_, older_than=age)
    if not plan.ids:
        typer.echo("nothing matches; nothing deleted")
        return 0
    typer.echo(f"this will delete {len(plan.ids)} chunks of {len(plan.per_source)} document(s):")
    shown = sorted(plan.per_source.items())
    for name, n in shown[:20]:
        typer.echo(f"  {n:6d}  {name}")
    if len(shown) > 20:
        typer.echo(f"  ... and {len(shown) - 20} more documents")
    if not yes and not typer.confirm(f"Delete these {len(plan.ids)} chunks?", default=False):
        raise typer.Abort()
    n = app.delete(plan=plan)
    typer.echo(f"deleted {n} chunks")
    return 0


def users(ctx: typer.Context) -> int:
    """List users with their tenant and groups."""
    directory = ctx.obj.app.users
    table = Table("user", "tenant", "groups")
    for name in directory.names():
        record = directory.record(name)
        table.add_row(name, record.tenant, ", ".join(record.groups))
    Console().print(table)
    return 0


def hash_password_cmd(
    password: Annotated[
        str,
        typer.Option(prompt=True, hide_input=True, confirmation_prompt=True, help="Password."),
    ],
) -> int:
    """Print an scrypt hash to paste as `password_hash:` in the users file."""
    from rag_app.auth import hash_password

    typer.echo(hash_password(password))
    return 0


def register(app: typer.Typer) -> None:
    app.command("stats")(stats)
    app.command("delete")(delete)
    app.command("users")(users)
    app.command("hash-password")(hash_password_cmd)
