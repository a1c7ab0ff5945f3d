"""Gradio chat UI: a thin shell over `App` services.

* Login with Gradio's `auth`, checked against the users file (scrypt hashes); the logged-in
  name (`gr.Request.username`) is the only way a principal is chosen.
* Per-browser-session state lives in `gr.State` (chat history, last turn); nothing mutable is
  shared between sessions except the services themselves, which keep no per-user state.
* Chat answers stream; the sources panel lists the chunks behind the [n] markers; filters
  (category, tags, date range, free JSON) are validated and shown as the effective filter
  (access filter AND user filter); uploads go into the user's tenant with an ACL the user may
  grant; feedback is appended to a JSONL log.
"""

from __future__ import annotations

import html
import logging
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import gradio as gr

from rag_app.errors import AccessDenied, FilterError, RagAppError
from rag_app.ingest.loaders import display_source
from rag_app.ui.filters import as_pretty_json, build_ui_filter, facet_choices, grant_choices

if TYPE_CHECKING:
    from rag_app.app import App
    from rag_app.chain.events import SourceRecord
    from rag_app.retrieval.permissions import Principal

log = logging.getLogger(__name__)

TITLE = "rag_app — permission-aware document chat"
UPLOAD_TYPES = [".md", ".markdown", ".txt", ".html", ".htm", ".pdf", ".jsonl"]


class UIError(RagAppError):
    """Shown to the user in the page."""


def _principal(app: App, request: gr.Request | None) -> Principal:
    username = getattr(request, "username", None) if request is not None else None
    if not username:
        raise UIError("You are not logged in.")
    try:
        return app.principal(username)
    except (AccessDenied, RagAppError) as exc:
        raise UIError(f"Your account cannot be used: {exc}") from exc


def shown_source(source: str, data_dir: Sequence[str] | None) -> str:
    """A source path as users see it: uploads live under the server's data dir (given as its
    absolute and working-directory-relative forms), whose location is none of their business
    (``uploads/<tenant>/<user>/<file>``)."""
    for prefix in data_dir or ():
        stem = prefix.rstrip("/") + "/"
        if prefix and source.startswith(stem):
            return source[len(stem) :]
    return source


def render_sources(
    sources: Sequence[SourceRecord],
    cited: Sequence[int] = (),
    *,
    data_dir: Sequence[str] | None = None,
) -> str:
    """Markdown for the sources panel: every retrieved chunk, cited ones marked."""
    if not sources:
        return "_No sources: nothing you may read matched._"
    cited_set = set(cited)
    lines: list[str] = []
    for src in sources:
        mark = "**cited**" if src.n in cited_set else "not cited"
        meta = src.metadata
        shown = {
            k: meta.get(f"{k}_iso", meta[k])
            for k in ("category", "created_at", "tags", "acl", "tenant")
            if k in meta
        }
        meta_text = " · ".join(
            f"{k}: {', '.join(map(str, v)) if isinstance(v, list) else v}" for k, v in shown.items()
        )
        score = f"{src.score:.3f}" if src.score is not None else "-"
        snippet = " ".join(src.snippet.split())
        lines.append(
            f"**[{src.n}] {html.escape(src.title)}** — {mark}, score {score}  \n"
            f"`{html.escape(shown_source(src.source, data_dir))}`  \n"
            f"<small>{html.escape(meta_text)}</small>  \n"
            f"<small><i>{html.escape(snippet)}</i></small>\n"
        )
    return "\n".join(lines)


def render_details(
    *,
    original: str = "",
    question: str = "",
    rewritten: bool = False,
    effective: dict[str, Any] | None = None,
    timings: Any = None,
    error: str | None = None,
    status: str | None = None,
) -> str:
    parts = []
    if error:
        parts.append(f"**Error:** {html.escape(error)}")
    if status:
        parts.append(f"_{html.escape(status)}_")
    if question:
        if rewritten:
            parts.append(
                f"**Standalone question (rewritten from the follow-up):** {html.escape(question)}"
            )
        else:
            parts.append(f"**Question used for retrieval:** {html.escape(question)}")
    if effective is not None:
        parts.append("**Effective filter** (access filter AND your filter):")
        parts.append(f"```json\n{as_pretty_json(effective)}\n```")
    if timings is not None:
        first = f"{timings.first_token_s:.2f}s" if timings.first_token_s is not None else "n/a"
        parts.append(
            f"retrieval {timings.retrieval_s:.2f}s · first token {first} · "
            f"total {timings.total_s:.2f}s"
        )
    return "\n\n".join(parts)


class _GradioProgress:
    """Adapter: the ingestor's progress protocol -> gr.Progress."""

    def __init__(self, progress: Any, total: int) -> None:
        self.progress, self.total, self.done = progress, total, 0
        self.progress((0, total), desc="embedding", unit="chunks")

    def update(self, n: int) -> None:
        self.done += n
        self.progress((self.done, self.total), desc="embedding", unit="chunks")

    def close(self) -> None:
        pass


def build_ui(app: App) -> gr.Blocks:
    settings = app.settings
    feedback_log = settings.data_dir / "feedback.jsonl"
    upload_root = settings.data_dir / "uploads"
    data_dir = (settings.data_dir.resolve().as_posix(), display_source(settings.data_dir))

    # -- handlers (closures over the App; per-user state comes in as gr.State) -------------
    def on_load(request: gr.Request) -> tuple[Any, ...]:
        try:
            principal = _principal(app, request)
            cats, tags = facet_choices(app.store, principal)
            grants = grant_choices(principal)
            record = app.users.record(str(principal.user_id))
            who = (
                f"Logged in as **{html.escape(record.display_name or str(principal.user_id))}**"
                f" (`{principal.user_id}`, tenant `{principal.tenant}`, groups: "
                f"{', '.join(sorted(principal.groups)) or '-'})"
            )
            default_grant = [f"user:{principal.user_id}"]
            return (
                who,
                gr.update(choices=cats, value=[]),
                gr.update(choices=tags, value=[]),
                gr.update(choices=grants, value=default_grant),
            )
        except RagAppError as exc:
            return (f"⚠️ {exc}", gr.update(), gr.update(), gr.update())

    def current_filter(
        cats: list[str], tags: list[str], date_from: str, date_to: str, json_text: str
    ) -> dict[str, Any] | None:
        return build_ui_filter(cats, tags, date_from, date_to, json_text)

    def check_filter(
        cats: list[str],
        tags: list[str],
        date_from: str,
        date_to: str,
        json_text: str,
        request: gr.Request,
    ) -> str:
        try:
            principal = _principal(app, request)
            flt = current_filter(cats, tags, date_from, date_to, json_text)
            effective = app.search.effective(principal, flt)
        except RagAppError as exc:
            return f"⚠️ **Filter problem:** {html.escape(str(exc))}"
        return (
            "**Effective filter** (access filter AND your filter):\n\n"
            f"```json\n{as_pretty_json(effective)}\n```"
        )

    def respond(
        message: str,
        history: list[dict[str, Any]] | None,
        session: Any,
        cats: list[str],
        tags: list[str],
        date_from: str,
        date_to: str,
        json_text: str,
        request: gr.Request,
    ) -> Iterator[tuple[Any, ...]]:
        from rag_app.chain.events import Done, Error, Rewrite, Sources, Token

        history = list(history or [])
        message = (message or "").strip()
        if not message:
            yield history, "", session, gr.update(), gr.update(), None
            return
        history.append({"role": "user", "content": message})
        history.append({"role": "assistant", "content": ""})
        try:
            principal = _principal(app, request)
            flt = current_filter(cats, tags, date_from, date_to, json_text)
            effective = app.search.effective(principal, flt)
            chat = app.chat
            if session is None:
                session = chat.new_session()
        except FilterError as exc:
            history[-1]["content"] = f"⚠️ Filter problem: {exc}"
            yield history, "", session, gr.update(), render_details(error=str(exc)), None
            return
        except RagAppError as exc:
            history[-1]["content"] = f"⚠️ {exc}"
            yield history, "", session, gr.update(), render_details(error=str(exc)), None
            return
        except Exception as exc:  # store/model could not even be opened
            log.warning("chat setup failed", exc_info=True)
            text = f"The service is unavailable right now ({type(exc).__name__}: {exc})."
            history[-1]["content"] = f"⚠️ {text}"
            yield history, "", session, gr.update(), render_details(error=text), None
            return

        question, rewritten = message, False
        # Until this turn's own events arrive, say what is happening rather than show the
        # previous turn's sources, or the raw follow-up as if it were the retrieval question
        # (condensing a follow-up takes tens of seconds with the local model).
        sources_md: Any = "_Searching the documents you can access…_"
        if len(session):
            details = render_details(effective=effective, status="Rewriting the follow-up…")
        else:
            details = render_details(original=message, question=message, effective=effective)
        answer = ""
        yield history, "", session, sources_md, details, None
        for event in chat.stream(session, principal, message, flt):
            if isinstance(event, Rewrite):
                question, rewritten = event.question, event.rewritten
                details = render_details(
                    original=message, question=question, rewritten=rewritten, effective=effective
                )
                yield history, "", session, sources_md, details, None
            elif isinstance(event, Sources):
                sources_md = render_sources(event.sources, data_dir=data_dir)
                yield history, "", session, sources_md, details, None
            elif isinstance(event, Token):
                answer += event.text
                history[-1]["content"] = answer
                yield history, "", session, sources_md, details, None
            elif isinstance(event, Done):
                history[-1]["content"] = event.answer
                sources_md = render_sources(event.sources, event.cited, data_dir=data_dir)
                details = render_details(
                    original=message,
                    question=question,
                    rewritten=rewritten,
                    effective=effective,
                    timings=event.timings,
                )
                last = {
                    "question": message,
                    "rewritten_question": question if rewritten else None,
                    "answer": event.answer,
                    "refused": event.refused,
                    "sources": [
                        {
                            "n": s.n,
                            "id": s.id,
                            "title": s.title,
                            "source": shown_source(s.source, data_dir),
                            "score": s.score,
                            "cited": s.n in event.cited,
                        }
                        for s in event.sources
                    ],
                    "session_id": getattr(session, "session_id", None),
                }
                yield history, "", session, sources_md, details, last
            elif isinstance(event, Error):
                history[-1]["content"] = f"⚠️ {event.message}"
                if isinstance(sources_md, str) and sources_md.startswith("_Searching"):
                    sources_md = "_No sources: this turn failed._"
                details = render_details(
                    original=message, question=question, effective=effective, error=event.message
                )
                yield history, "", session, sources_md, details, None

    def clear_chat(session: Any) -> tuple[Any, ...]:
        if session is not None:
            session.clear()
        return [], session, "_Ask a question to see its sources._", "", None

    def upload(
        files: list[Any] | None,
        acl: list[str],
        request: gr.Request,
        progress: gr.Progress = gr.Progress(),  # noqa: B008 - Gradio's injection idiom
    ) -> str:
        from rag_app.ingest.upload import ingest_uploads

        if not files:
            return "⚠️ Choose one or more files first."
        try:
            principal = _principal(app, request)
            paths = [Path(f if isinstance(f, str) else getattr(f, "name", f)) for f in files]
            report = ingest_uploads(
                app.ingestor,
                principal,
                paths,
                acl=acl or [],
                upload_root=upload_root,
                progress=lambda total: _GradioProgress(progress, total),
            )
        except RagAppError as exc:
            return f"⚠️ Upload refused: {html.escape(str(exc))}"
        lines = [
            f"Indexed {report.files_indexed} file(s), {report.chunks_added} chunk(s) written "
            f"({report.files_unchanged} unchanged), visible to: {', '.join(acl)}."
        ]
        for item in report.rejected:
            lines.append(f"- ⚠️ `{html.escape(Path(item.location).name)}`: {item.reason}")
        return "\n".join(lines)

    def send_feedback(
        rating: str, comment: str, last: dict[str, Any] | None, request: gr.Request
    ) -> str:
        from rag_app.feedback import Feedback, append_feedback

        if not last:
            return "Ask a question first; feedback applies to the last answer."
        try:
            principal = _principal(app, request)
            append_feedback(
                feedback_log,
                Feedback(
                    user=str(principal.user_id),
                    tenant=principal.tenant,
                    question=last["question"],
                    answer=last["answer"],
                    rating="up" if rating == "up" else "down",
                    sources=last["sources"],
                    comment=(comment or "").strip(),
                    rewritten_question=last.get("rewritten_question"),
                    session_id=last.get("session_id"),
                ),
            )
        except (RagAppError, OSError) as exc:
            return f"⚠️ Could not save feedback: {exc}"
        return "Thanks, your feedback was recorded."

    # -- layout -------------------------------------------------------------------------
    with gr.Blocks(title=TITLE, analytics_enabled=False) as demo:
        session_state = gr.State(None)
        last_turn = gr.State(None)
        gr.Markdown(f"## {TITLE}")
        who = gr.Markdown("", elem_id="who")
        with gr.Row():
            with gr.Column(scale=3):
                chatbot = gr.Chatbot(label="Chat", height=480, elem_id="chatbot")
                with gr.Row():
                    msg = gr.Textbox(
                        placeholder="Ask about the documents you can access…",
                        show_label=False,
                        scale=5,
                        elem_id="msg",
                    )
                    send = gr.Button("Send", variant="primary", scale=1, elem_id="send")
                    clear = gr.Button("New chat", scale=1)
                with gr.Accordion(
                    "Details: rewritten question, effective filter, timings", open=False
                ):
                    details = gr.Markdown("", elem_id="details")
                with gr.Row():
                    up = gr.Button("Helpful", scale=0, elem_id="thumbs-up")
                    down = gr.Button("Not helpful", scale=0, elem_id="thumbs-down")
                    comment = gr.Textbox(placeholder="Optional comment", show_label=False, scale=4)
                feedback_status = gr.Markdown("", elem_id="feedback-status")
            with gr.Column(scale=2):
                with gr.Tab("Sources"):
                    sources = gr.Markdown("_Ask a question to see its sources._", elem_id="sources")
                with gr.Tab("Filters"):
                    categories = gr.Dropdown(
                        label="Category",
                        multiselect=True,
                        choices=[],
                        elem_id="f-category",
                        allow_custom_value=True,
                    )
                    tag_box = gr.Dropdown(
                        label="Tags (any)",
                        multiselect=True,
                        choices=[],
                        elem_id="f-tags",
                        allow_custom_value=True,
                    )
                    with gr.Row():
                        date_from = gr.Textbox(label="Created from (YYYY-MM-DD)")
                        date_to = gr.Textbox(label="Created to (YYYY-MM-DD)")
                    json_filter = gr.Textbox(
                        label='JSON filter, e.g. {"department": "people"}',
                        lines=3,
                        elem_id="f-json",
                    )
                    check = gr.Button("Check filter")
                    filter_view = gr.Markdown("", elem_id="effective-filter")
                with gr.Tab("Upload"):
                    files = gr.File(
                        label="Documents", file_count="multiple", file_types=UPLOAD_TYPES
                    )
                    # Choices are what the user may grant; the server checks again on upload.
                    grants = gr.Dropdown(
                        label="Who may read them",
                        choices=[],
                        multiselect=True,
                        allow_custom_value=True,
                        elem_id="grants",
                    )
                    upload_btn = gr.Button("Upload and index")
                    upload_status = gr.Markdown("", elem_id="upload-status")

        filter_inputs = [categories, tag_box, date_from, date_to, json_filter]
        chat_outputs = [chatbot, msg, session_state, sources, details, last_turn]
        demo.load(on_load, None, [who, categories, tag_box, grants])
        send.click(
            respond, [msg, chatbot, session_state, *filter_inputs], chat_outputs, api_name="chat"
        )
        msg.submit(
            respond,
            [msg, chatbot, session_state, *filter_inputs],
            chat_outputs,
            api_visibility="private",
        )
        clear.click(
            clear_chat, [session_state], [chatbot, session_state, sources, details, last_turn]
        )
        check.click(check_filter, filter_inputs, [filter_view], api_name="check_filter")
        upload_btn.click(upload, [files, grants], [upload_status], api_name="upload")

        def thumbs_up(c: str, last: dict[str, Any] | None, request: gr.Request) -> str:
            return send_feedback("up", c, last, request)

        def thumbs_down(c: str, last: dict[str, Any] | None, request: gr.Request) -> str:
            return send_feedback("down", c, last, request)

        up.click(thumbs_up, [comment, last_turn], [feedback_status], api_name="feedback_up")
        down.click(thumbs_down, [comment, last_turn], [feedback_status], api_name="feedback_down")
    return demo


def launch(
    app: App,
    *,
    host: str = "127.0.0.1",
    port: int = 7860,
    prevent_thread_lock: bool = False,
) -> gr.Blocks:
    """Start the UI with login. Returns the running Blocks (for tests)."""
    demo = build_ui(app)
    users = app.users  # fail now (clear error) if the users file is broken

    def auth(username: str, password: str) -> bool:
        return users.authenticate(username, password)

    demo.queue(default_concurrency_limit=4)
    demo.launch(
        server_name=host,
        server_port=port,
        auth=auth,
        auth_message="Log in with a user from the users file (demo: alice / alice-demo).",
        prevent_thread_lock=prevent_thread_lock,
        show_error=False,
        quiet=True,
    )
    return demo
