"""`rag-app ask` (one question) and `rag-app chat` (a conversation on stdin)."""

from __future__ import annotations

import json
import sys
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape

from rag_app.errors import RagAppError

UserOpt = Annotated[str | None, typer.Option("--user", "-u", help="User from the users file.")]
TenantOpt = Annotated[
    str | None, typer.Option(help="Tenant for anonymous access (no --user).", show_default=False)
]
FilterOpt = Annotated[
    str | None,
    typer.Option("--filter", "-f", help='Metadata filter as JSON, e.g. \'{"category": "hr"}\'.'),
]
KOpt = Annotated[
    int | None, typer.Option("-k", help="Chunks retrieved per question.", min=1, max=1000)
]


def _err() -> Console:
    return Console(stderr=True, highlight=False, soft_wrap=True)


def _source_lines(done: Any) -> list[str]:
    lines = []
    for s in done.sources:
        mark = "*" if s.n in done.cited else " "
        score = f"{s.score:.3f}" if s.score is not None else "-"
        lines.append(f"{mark}[{s.n}] {s.title} — {s.source} (score {score})")
    return lines


def _run_turn(
    app: Any,
    session: Any,
    principal: Any,
    text: str,
    filter_: str | None,
    k: int | None,
    as_json: bool,
) -> Any:
    from rag_app.chain import Done, Error, Rewrite, Token

    out = Console(highlight=False, soft_wrap=True)
    err = _err()
    done = None
    for event in app.chat.stream(session, principal, text, filter_, k=k):
        if isinstance(event, Rewrite) and event.rewritten and not as_json:
            err.print(f"[dim]searching for: {escape(event.question)}[/dim]")
        elif isinstance(event, Token) and not as_json:
            sys.stdout.write(event.text)
            sys.stdout.flush()
        elif isinstance(event, Error):
            if not as_json:
                sys.stdout.write("\n")
            raise RagAppError(event.message)
        elif isinstance(event, Done):
            done = event
    if done is None:  # pragma: no cover - a turn always ends with Done or Error
        raise RagAppError("the chat turn ended without an answer")
    if as_json:
        out.print_json(
            json.dumps(
                {
                    "principal": principal.describe(),
                    "question": done.question,
                    "answer": done.answer,
                    "cited": done.cited,
                    "refused": done.refused,
                    "sources": [
                        {
                            "n": s.n,
                            "id": s.id,
                            "title": s.title,
                            "source": s.source,
                            "score": s.score,
                            "snippet": s.snippet,
                            "metadata": s.metadata,
                        }
                        for s in done.sources
                    ],
                    "timings": {
                        "rewrite_s": round(done.timings.rewrite_s, 3),
                        "retrieval_s": round(done.timings.retrieval_s, 3),
                        "first_token_s": None
                        if done.timings.first_token_s is None
                        else round(done.timings.first_token_s, 3),
                        "total_s": round(done.timings.total_s, 3),
                    },
                    "tokens": done.tokens,
                },
                ensure_ascii=False,
            )
        )
        return done
    sys.stdout.write("\n\n")
    if done.sources:
        out.print("Sources (* = cited):")
        for line in _source_lines(done):
            out.print(escape(line))
    else:
        out.print("Sources: none you may read match this question.")
    t = done.timings
    first = f"{t.first_token_s:.1f}s" if t.first_token_s is not None else "-"
    err.print(
        f"[dim]retrieval {t.retrieval_s:.2f}s · first token {first} · total {t.total_s:.1f}s"
        f" · {done.tokens} tokens[/dim]"
    )
    return done


def _start(app: Any, as_json: bool) -> None:
    if app.settings.llm == "local" and not as_json:
        _err().print("[dim]starting the local chat model…[/dim]")
    app.chat  # noqa: B018 - builds the model (and starts the local server) now


def ask(
    ctx: typer.Context,
    question: Annotated[str, typer.Argument(help="The question.")],
    user: UserOpt = None,
    tenant: TenantOpt = None,
    filter_: FilterOpt = None,
    k: KOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> int:
    """Answer a question from the documents USER may read, citing them as [1], [2]..."""
    app = ctx.obj.app
    principal = ctx.obj.principal(user, tenant)
    try:
        _start(app, as_json)
        session = app.chat_session()
        _run_turn(app, session, principal, question, filter_, k, as_json)
    finally:
        app.close_chat()
    return 0


def chat(
    ctx: typer.Context,
    user: UserOpt = None,
    tenant: TenantOpt = None,
    filter_: FilterOpt = None,
    k: KOpt = None,
) -> int:
    """A conversation: one question per line on stdin (follow-ups use the history)."""
    app = ctx.obj.app
    principal = ctx.obj.principal(user, tenant)
    err = _err()
    try:
        _start(app, False)
        session = app.chat_session()
        err.print(f"[dim]as {escape(principal.describe())}; empty line or Ctrl-D ends[/dim]")
        while True:
            if sys.stdin.isatty():
                err.print("[bold]> [/bold]", end="")
            line = sys.stdin.readline()
            if not line or not line.strip():
                break
            try:
                _run_turn(app, session, principal, line.strip(), filter_, k, False)
            except RagAppError as exc:
                err.print(f"[red]Error: {escape(str(exc))}[/red]")
    finally:
        app.close_chat()
    return 0


def register(app: typer.Typer) -> None:
    app.command("ask")(ask)
    app.command("chat")(chat)
