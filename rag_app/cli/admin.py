"""`rag-app stats`, `rag-app delete`, `rag-app users`."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from rag_app.errors import FilterError, RagAppError


def stats(
    ctx: typer.Context,
    documents: Annotated[
        bool, typer.Option("--documents", help="Also list every document with its chunks.")
    ] = False,
    last: Annotated[
        int, typer.Option("--last", min=0, max=1000, help="How many recent ingests to show.")
    ] = 10,
    as_json: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False,
) -> int:
    """Counts per tenant, source type and store, and the last ingests (from the ingest
    state: no store scan)."""
    data = ctx.obj.app.admin.stats(last_runs=last)
    if as_json:
        typer.echo(json.dumps(data, indent=2))
        return 0
    console = Console()
    console.print(
        f"{data['location']} (collection {data['collection']}): {data['chunks']} chunks in "
        f"{data['documents']} documents"
    )
    tenants = list(data["per_tenant"])
    table = Table("source type", "documents", "chunks", *tenants, title="Per source type")
    for row in data["per_source_type"]:
        table.add_row(
            row["type"],
            str(row["documents"]),
            str(row["chunks"]),
            *(str(row["per_tenant"].get(t, 0)) for t in tenants),
        )
    table.add_row(
        "all",
        str(data["documents"]),
        str(data["chunks"]),
        *(str(data["per_tenant"][t]) for t in tenants),
        style="bold",
    )
    console.print(table)
    table = Table("store", "documents", "chunks", title="Stores in this state database")
    for row in data["stores"]:
        mark = " (current)" if row["current"] else ""
        table.add_row(row["store"] + mark, str(row["documents"]), str(row["chunks"]))
    console.print(table)
    if last:
        console.print(_runs_table(data["last_ingests"], data["location"]))
    if documents:
        table = Table("tenant", "source", "type", "chunks", "ingested", title="Documents")
        for row in data["per_source"]:
            table.add_row(
                row["tenant"],
                row["source"],
                row["type"],
                str(row["chunks"]),
                _when(row["updated_at"]),
            )
        console.print(table)
    return 0


def _when(ts: float | None, fmt: str = "%Y-%m-%d %H:%M:%S") -> str:
    if ts is None:
        return "-"
    return datetime.fromtimestamp(ts, tz=UTC).strftime(fmt)


_COUNT_LABELS = {
    "files_indexed": "{} indexed",
    "files_unchanged": "{} unchanged",
    "files_removed": "{} removed",
    "chunks_added": "+{} chunks",
    "chunks_deleted": "-{} chunks",
    "rejected": "{} REJECTED",
    "still_served": "{} still served",
    "records_written": "{} records",
    "records_resumed": "{} resumed",
    "records_skipped": "{} skipped",
    "files_marked": "{} files",
}


def _runs_table(runs: list[dict[str, Any]], current: str) -> Table:
    other_stores = any(r["store"] != current for r in runs)
    columns = ["started (UTC)", "origin", "status", "s", "what", "result"]
    table = Table(*columns, *(["store"] if other_stores else []), title="Last ingests")
    for run in runs:
        parts = [_COUNT_LABELS.get(k, k + " {}").format(v) for k, v in run["counts"].items() if v]
        if run["error"]:
            parts.append(run["error"])
        status = "running or killed" if run["status"] == "running" else run["status"]
        who = f" by {run['user']}" if run["user"] else ""
        table.add_row(
            _when(run["started_at"], "%m-%d %H:%M"),
            f"{run['origin']}{who}@{run['host']}",
            status,
            "-" if run["seconds"] is None else f"{run['seconds']:.0f}",
            " ".join(run["paths"]),
            ", ".join(parts) or "nothing new",
            *([run["store"]] if other_stores else []),
        )
    return table


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
    from rag_app.ops.admin import UnboundedDelete

    admin = ctx.obj.app.admin
    try:
        plan = admin.plan_delete(sources=source or [], filter=filter_, older_than=age)
    except UnboundedDelete as exc:  # e.g. --filter '{}'
        raise FilterError(
            "refusing to delete without a filter: give --source, --filter or --older-than"
        ) from exc
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
    n = admin.delete(plan=plan)
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
