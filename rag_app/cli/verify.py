"""`rag-app verify [--repair]`: compare the ingest state with the store."""

from __future__ import annotations

import json
from typing import Annotated

import typer


def verify(
    ctx: typer.Context,
    repair: Annotated[
        bool,
        typer.Option(
            "--repair",
            help="Re-ingest files with missing chunks, delete orphan and invalid records (each "
            "deleted id is listed), add unknown fields to the catalog, rebuild document rows.",
        ),
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False,
    examples: Annotated[int, typer.Option(min=0, help="Examples shown per problem kind.")] = 5,
) -> int:
    """Check that the store and the ingest state agree. Exit code 1 when anything is wrong
    (after --repair: when anything could not be repaired), 0 when clean."""
    from rag_app.ops.verify import render, render_repair
    from rag_app.ops.verify import repair as run_repair
    from rag_app.ops.verify import verify as run_verify

    app = ctx.obj.app
    report = run_verify(app, examples=examples)
    if not repair:
        if as_json:
            typer.echo(json.dumps(report.as_dict(), indent=2, default=str))
        else:
            for line in render(report):
                typer.echo(line)
        return 0 if report.ok else 1
    result = run_repair(app, report) if not report.ok else None
    if as_json:
        data = report.as_dict()
        data["repair"] = result.as_dict() if result else None
        typer.echo(json.dumps(data, indent=2, default=str))
    else:
        for line in render(report):
            typer.echo(line)
        if result is not None:
            for line in render_repair(result):
                typer.echo(line)
    return 1 if result is not None and result.not_repaired else 0


def register(app: typer.Typer) -> None:
    app.command("verify")(verify)
