"""`rag-app ingest`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from rag_app.errors import RagAppError
from rag_app.settings import CleanupMode


def _parse_meta(pairs: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise RagAppError(f"--meta expects KEY=VALUE, got {pair!r}")
        text = value.strip()
        # JSON values (numbers, booleans, lists) are accepted; anything else is a string.
        try:
            out[key.strip()] = json.loads(text)
        except json.JSONDecodeError:
            out[key.strip()] = text
    return out


def ingest(
    ctx: typer.Context,
    paths: Annotated[list[Path], typer.Argument(help="Files and folders to ingest.")],
    tenant: Annotated[
        str | None, typer.Option(help="Tenant for every document (overrides the files).")
    ] = None,
    acl: Annotated[
        list[str] | None,
        typer.Option(help="ACL token for every document (repeatable): public, group:G, user:U."),
    ] = None,
    meta: Annotated[
        list[str] | None, typer.Option(help="Extra metadata KEY=VALUE (repeatable).")
    ] = None,
    cleanup: Annotated[
        CleanupMode,
        typer.Option(
            help="incremental: replace changed files; full: also remove files that vanished "
            "from the given folders."
        ),
    ] = "incremental",
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> int:
    """Ingest files (.md .txt .html .pdf .jsonl) incrementally; unchanged files cost nothing."""
    overrides = _parse_meta(meta or [])
    if tenant:
        overrides["tenant"] = tenant
    if acl:
        overrides["acl"] = acl
    app = ctx.obj.app

    def bar(total: int) -> Any:
        from tqdm import tqdm

        return tqdm(total=total, unit="chunk", desc="embedding", dynamic_ncols=True)

    report = app.ingestor.ingest(
        paths,
        overrides=overrides,
        cleanup=cleanup,
        progress=bar if progress else None,
        origin="cli",
    )
    if as_json:
        typer.echo(json.dumps(report.as_dict(), indent=2))
    else:
        typer.echo(
            f"files: {report.files_seen} seen, {report.files_indexed} indexed, "
            f"{report.files_unchanged} unchanged, {report.files_removed} removed | chunks: "
            f"{report.chunks_added} written, {report.chunks_skipped} unchanged, "
            f"{report.chunks_deleted} deleted | {report.seconds:.1f}s"
        )
        for item in report.skipped:
            typer.echo(f"skipped  {item.location}: {item.reason}")
        for item in report.rejected:
            typer.secho(f"REJECTED {item.location}: {item.reason}", fg=typer.colors.RED, err=True)
        for item in report.still_served:
            typer.secho(
                f"STILL SERVED {item.location}: {item.reason}", fg=typer.colors.YELLOW, err=True
            )
    if report.rejected:
        typer.secho(
            f"{len(report.rejected)} input(s) rejected; everything else was ingested"
            + (
                f"; {len(report.still_served)} document(s) still serve their previous version."
                if report.still_served
                else "."
            ),
            fg=typer.colors.YELLOW,
            err=True,
        )
        return 1
    return 0


def register(app: typer.Typer) -> None:
    app.command("ingest")(ingest)
