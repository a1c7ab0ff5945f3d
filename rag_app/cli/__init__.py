"""`rag-app` command line. One module per command group; options also read RAG_* variables."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from rag_app.errors import ConfigError, RagAppError

app = typer.Typer(
    name="rag-app",
    help="Permission-aware RAG: ingest documents, query them as a user, manage the index.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


class Context:
    """Per-invocation state: settings overrides from global options, the App once built."""

    def __init__(self, overrides: dict[str, Any]) -> None:
        self.overrides = {k: v for k, v in overrides.items() if v is not None}
        self._app: Any = None

    @property
    def app(self) -> Any:
        if self._app is None:
            from pydantic import ValidationError

            from rag_app.app import App
            from rag_app.settings import Settings

            try:
                settings = Settings(**self.overrides)
            except ValidationError as exc:
                problems = "; ".join(
                    f"{'.'.join(map(str, e['loc'])) or 'settings'}: {e['msg']}"
                    for e in exc.errors()
                )
                raise RagAppError(f"invalid settings: {problems}") from exc
            self._app = App(settings)
        return self._app

    def principal(self, user: str | None, tenant: str | None) -> Any:
        """The principal of --user, or an anonymous one of --tenant."""
        app = self.app
        if not user and not tenant:
            raise ConfigError("give --user NAME, or --tenant NAME for anonymous access")
        return app.principal(user, tenant=tenant)

    def close(self) -> None:
        if self._app is not None:
            self._app.close()


@app.callback()
def _global(
    ctx: typer.Context,
    data_dir: Annotated[
        Path | None, typer.Option(help="Data folder (env RAG_DATA_DIR).", show_default=False)
    ] = None,
    collection: Annotated[
        str | None, typer.Option(help="Collection name (env RAG_COLLECTION).", show_default=False)
    ] = None,
    store: Annotated[
        str | None,
        typer.Option(
            help="Vector store: chroma, pinecone or weaviate (env RAG_STORE); each store reads "
            "its own variables (RAG_CHROMA_URL, RAG_PINECONE_*, RAG_WEAVIATE_*).",
            show_default=False,
        ),
    ] = None,
    users_file: Annotated[
        Path | None, typer.Option(help="Users file (env RAG_USERS_FILE).", show_default=False)
    ] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Debug logging.")] = False,
) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    context = Context(
        {
            "data_dir": data_dir,
            "collection": collection,
            "store": store,
            "users_file": users_file,
        }
    )
    ctx.obj = context
    ctx.call_on_close(context.close)


def _register() -> None:
    from rag_app.cli import admin, chat, cost, ingest, query, stores, transfer, ui, verify

    ingest.register(app)
    query.register(app)
    admin.register(app)
    chat.register(app)
    ui.register(app)
    verify.register(app)
    transfer.register(app)
    stores.register(app)
    cost.register(app)
    __import__("rag_app.cli.eval", fromlist=["register"]).register(app)  # rag-app eval ...


_register()


def _usage_errors() -> tuple[type[Any], ...]:
    """Click's exception classes: typer >= 0.29 raises its own vendored copies."""
    import click

    kinds: list[type[Any]] = [click.ClickException]
    try:
        from typer._click.exceptions import ClickException as VendoredClickException
    except ImportError:  # typer without a vendored click
        pass
    else:
        kinds.append(VendoredClickException)
    return tuple(kinds)


def main() -> None:
    from rag_app import configure_offline

    configure_offline()
    try:
        result = app(standalone_mode=False)
    except RagAppError as exc:
        typer.secho(f"Error: {exc}", fg=typer.colors.RED, err=True)
        sys.exit(2)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        typer.secho("Aborted.", err=True)
        sys.exit(130)
    except KeyboardInterrupt:
        typer.secho("Interrupted; the next run completes the work.", err=True)
        sys.exit(130)
    except Exception as exc:  # usage errors (a bad option value) and the like
        if isinstance(exc, _usage_errors()):
            exc.show()
            sys.exit(exc.exit_code)
        raise
    if isinstance(result, int) and not isinstance(result, bool):
        sys.exit(result)
