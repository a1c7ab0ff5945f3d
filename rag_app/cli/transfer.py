"""`rag-app export` and `rag-app import`: backup, restore and migration between stores."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer


def _bar(desc: str) -> Any:
    def factory(total: int | None) -> Any:
        from tqdm import tqdm

        return tqdm(total=total, desc=desc, unit="rec", dynamic_ncols=True, file=sys.stderr)

    return factory


def export(
    ctx: typer.Context,
    out: Annotated[Path, typer.Option("--out", "-o", help="Output file (FILE.jsonl.gz).")],
    tenant: Annotated[
        str | None, typer.Option(help="Export only this tenant.", show_default=False)
    ] = None,
    page_size: Annotated[
        int,
        typer.Option(
            min=1,
            help="Records written to the file per batch (the store adapter pages its own reads).",
        ),
    ] = 500,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
) -> int:
    """Export every chunk (id, text, metadata, vector) with a header and checksums."""
    from rag_app.ops.transfer import export_index

    summary = export_index(
        ctx.obj.app,
        out,
        tenant=tenant,
        page=page_size,
        progress=None if quiet else _bar("export"),
    )
    per_tenant = ", ".join(f"{t or '?'}={v['count']}" for t, v in summary.tenants.items())
    typer.echo(
        f"exported {summary.records} records ({per_tenant or 'none'}) and {summary.files} "
        f"file marks to {summary.path} in {summary.seconds:.1f}s"
    )
    return 0


def import_(
    ctx: typer.Context,
    file: Annotated[Path, typer.Argument(help="An export file (FILE.jsonl.gz).", exists=True)],
    tenant: Annotated[
        str | None, typer.Option(help="Import only this tenant.", show_default=False)
    ] = None,
    batch_size: Annotated[int, typer.Option(min=1, help="Records written per batch.")] = 256,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
) -> int:
    """Import an export file into the configured store and collection (resumable)."""
    from rag_app.ops.transfer import import_file

    summary = import_file(
        ctx.obj.app,
        file,
        tenant=tenant,
        batch=batch_size,
        progress=None if quiet else _bar("import"),
    )
    resumed = f", {summary.records_resumed} already written" if summary.records_resumed else ""
    skipped = f", {summary.records_skipped} of other tenants skipped" if tenant else ""
    typer.echo(
        f"imported {summary.records_written} records{resumed}{skipped}; checksums match for "
        f"{len(summary.tenants)} tenant(s); {summary.files_marked} file marks restored "
        f"in {summary.seconds:.1f}s"
    )
    return 0


def register(app: typer.Typer) -> None:
    app.command("export")(export)
    app.command("import")(import_)
