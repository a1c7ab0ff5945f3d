"""Gradio chat UI: a thin shell over `App` services.

* Login with Gradio's `auth`, checked against the users file (scrypt hashes), behind the
  login page, throttling and security headers of `rag_app.ui.security`; the logged-in name
  (`gr.Request.username`) is the only way a principal is chosen.
* Per-browser-session state lives in `gr.State` (chat session and shown history, last turn)
  and records the user it belongs to: state presented with another user's request is
  refused and replaced by a fresh one (Gradio keys state by a client-chosen session hash;
  the middleware also refuses another user's session hash, this is the second line). The
  chain only ever sees the server-side session, never the history a client sends.
* Model output is made safe before it is rendered (`rag_app.ui.markdown`): no images, links
  or raw HTML from an answer ever reach the browser as such.
* Chat answers stream; the sources panel lists the retrieved passages grouped by document,
  each with its own relevance and the number the answer cites it by, and each [n] in the
  answer links to its passage (`rag_app.ui.sources`: anchors and CSS `:target`, no script);
  sentences the grounding check could not find in their cited sources are marked; filters
  (category, tags, date range, free JSON) are validated and shown as the effective filter
  (access filter AND user filter); uploads go into the user's tenant with an ACL the user may
  grant; feedback is appended to a JSONL log.
"""

from __future__ import annotations

import html
import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import gradio as gr

from rag_app.errors import AccessDenied, FilterError, RagAppError
from rag_app.ingest.loaders import display_source
from rag_app.ui.filters import as_pretty_json, build_ui_filter, facet_choices, grant_choices
from rag_app.ui.markdown import escape_markdown, safe_answer_markdown
from rag_app.ui.security import Guard
from rag_app.ui.sources import (
    UI_CSS,
    render_answer,
    render_sources,
    shown_source,
)

if TYPE_CHECKING:
    from rag_app.access.permissions import Principal
    from rag_app.app import App
    from rag_app.chain.events import SourceRecord
    from rag_app.chain.history import ChatSession

log = logging.getLogger(__name__)
audit = logging.getLogger("rag_app.audit")

TITLE = "rag_app — permission-aware document chat"
UPLOAD_TYPES = [".md", ".markdown", ".txt", ".html", ".htm", ".pdf", ".jsonl"]

LOGIN_MESSAGE = "Log in with a user from the users file (demo: alice / alice-demo)."
# Abandoned uploads (never submitted) are swept from Gradio's upload folder after an hour.
UPLOAD_SWEEP = (600, 3600)


REVISING = "_The first answer did not match its sources; answering again…_"
REVISED_NOTE = "\n\n_Answered again: the first answer did not match the sources it cited._"


class UIError(RagAppError):
    """Shown to the user in the page."""


@dataclass
class ChatState:
    """One browser tab's conversation: the chain's session and the history shown, owned by
    the user who started it."""

    owner: str
    session: ChatSession
    history: list[dict[str, Any]] = field(default_factory=list)
    turns: int = 0  # answer turns so far (never reset): anchors of the sources panel

    def next_turn(self) -> int:
        self.turns += 1
        return self.turns


def _username(request: gr.Request | None) -> str:
    username = getattr(request, "username", None) if request is not None else None
    if not username:
        raise UIError("You are not logged in.")
    return str(username)


def owned_state(state: Any, user: str) -> ChatState | None:
    """`state` if it is a conversation of `user`; None (start afresh) otherwise."""
    if state is None:
        return None
    if isinstance(state, ChatState) and state.owner == user:
        return state
    owner = state.owner if isinstance(state, ChatState) else type(state).__name__
    audit.warning("chat state of %r presented by %r: refused, starting a new one", owner, user)
    return None


def owned_turn(last: Any, user: str) -> dict[str, Any] | None:
    """The last answer (feedback target) if it belongs to `user`."""
    if not last:
        return None
    if isinstance(last, dict) and last.get("owner") == user:
        return last
    owner = last.get("owner") if isinstance(last, dict) else None
    audit.warning("last turn of %r presented by %r: refused", owner, user)
    return None


def _principal(app: App, request: gr.Request | None) -> Principal:
    username = _username(request)
    try:
        return app.principal(username)
    except (AccessDenied, RagAppError) as exc:
        raise UIError(f"Your account cannot be used: {exc}") from exc


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
        parts.append(f"**Error:** {escape_markdown(error)}")
    if status:
        parts.append(f"_{escape_markdown(status)}_")
    if question:
        if rewritten:  # written by the model: plain text only
            parts.append(
                "**Standalone question (rewritten from the follow-up):** "
                f"{escape_markdown(question)}"
            )
        else:
            parts.append(f"**Question used for retrieval:** {escape_markdown(question)}")
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


@dataclass
class TurnView:
    """What the chat components show after one step of a turn: the conversation, the
    session state, the sources panel, the details panel and the last finished turn (for
    feedback). `gr.update()` leaves a component as it is."""

    history: list[dict[str, Any]]
    state: ChatState | None
    sources: Any = field(default_factory=gr.update)
    details: Any = field(default_factory=gr.update)
    last: dict[str, Any] | None = None

    def outputs(self) -> tuple[Any, ...]:
        """The outputs in the order the chat event lists them (the message box emptied)."""
        return self.history, "", self.state, self.sources, self.details, self.last


class ChatTurn:
    """One chat turn of `user` in the browser: the conversation is the server-side
    `ChatState` of the logged-in user (another user's state is refused); the history shown
    is rebuilt from it. `run` yields a `TurnView` whenever something visible changed."""

    def __init__(
        self,
        app: App,
        user: str,
        request: gr.Request,
        data_dir: tuple[str, str],
        date_fields: tuple[str, ...],
    ) -> None:
        self.app = app
        self.user = user
        self.request = request
        self.data_dir = data_dir
        self.date_fields = date_fields

    def run(
        self, message: str, state: Any, read_filter: Callable[[], dict[str, Any] | None]
    ) -> Iterator[TurnView]:
        owned = owned_state(state, self.user)
        history = list(owned.history) if owned is not None else []
        message = (message or "").strip()
        if not message:
            yield TurnView(history, owned)
            return
        history.append({"role": "user", "content": safe_answer_markdown(message)})
        history.append({"role": "assistant", "content": ""})
        try:
            principal = _principal(self.app, self.request)
            flt = read_filter()
            effective = self.app.search.effective(principal, flt)
            chat = self.app.chat
            if owned is None:
                owned = ChatState(owner=self.user, session=chat.new_session())
        except FilterError as exc:
            yield self._failed(history, owned, f"Filter problem: {exc}")
            return
        except RagAppError as exc:
            yield self._failed(history, owned, str(exc))
            return
        except Exception as exc:  # store/model could not even be opened
            log.warning("chat setup failed", exc_info=True)
            text = f"The service is unavailable right now ({type(exc).__name__}: {exc})."
            yield self._failed(history, owned, text)
            return
        owned.history = history
        yield from self._stream(chat, owned, principal, message, flt, effective)

    @staticmethod
    def _failed(history: list[dict[str, Any]], owned: ChatState | None, text: str) -> TurnView:
        history[-1]["content"] = f"⚠️ {safe_answer_markdown(text)}"
        if owned is not None:
            owned.history = history
        return TurnView(history, owned, details=render_details(error=text))

    def _stream(
        self,
        chat: Any,
        owned: ChatState,
        principal: Principal,
        message: str,
        flt: dict[str, Any] | None,
        effective: dict[str, Any],
    ) -> Iterator[TurnView]:
        from rag_app.chain.events import Done, Error, Revise, Rewrite, Sources, Token

        history, session = owned.history, owned.session
        turn = owned.next_turn()  # anchors of this answer's passages: src-<turn>-<n>
        valid: set[int] = set()  # the source numbers this answer may cite (and link)
        titles: dict[int, str] = {}
        question, rewritten = message, False
        # Until this turn's own events arrive, say what is happening rather than show the
        # previous turn's sources, or the raw follow-up as if it were the retrieval question.
        view = TurnView(history, owned, sources="_Searching the documents you can access…_")
        if len(session):
            view.details = render_details(effective=effective, status="Reading the follow-up…")
        else:
            view.details = render_details(original=message, question=message, effective=effective)
        answer = ""
        yield view
        for event in chat.stream(session, principal, message, flt):
            view.last = None
            if isinstance(event, Rewrite):
                question, rewritten = event.question, event.rewritten
                view.details = render_details(
                    original=message, question=question, rewritten=rewritten, effective=effective
                )
            elif isinstance(event, Sources):
                valid = {s.n for s in event.sources}
                titles = {s.n: s.title for s in event.sources}
                view.sources = self._sources(event.sources, turn)
            elif isinstance(event, Token):
                answer += event.text
                history[-1]["content"] = render_answer(
                    answer, turn=turn, valid=valid, titles=titles
                )
            elif isinstance(event, Revise):
                # the answer failed the check against the sources: it is answered again
                answer = ""
                history[-1]["content"] = REVISING
            elif isinstance(event, Done):
                valid = {s.n for s in event.sources}
                titles = {s.n: s.title for s in event.sources}
                history[-1]["content"] = render_answer(
                    event.answer,
                    turn=turn,
                    valid=valid,
                    titles=titles,
                    unsupported=event.unsupported,
                ) + (REVISED_NOTE if event.revised_from is not None else "")
                view.sources = self._sources(event.sources, turn, event.cited)
                view.details = render_details(
                    original=message,
                    question=question,
                    rewritten=rewritten,
                    effective=effective,
                    timings=event.timings,
                )
                view.last = self._last_turn(event, message, question, rewritten, session)
            elif isinstance(event, Error):
                history[-1]["content"] = f"⚠️ {safe_answer_markdown(event.message)}"
                if isinstance(view.sources, str) and view.sources.startswith("_Searching"):
                    view.sources = "_No sources: this turn failed._"
                view.details = render_details(
                    original=message, question=question, effective=effective, error=event.message
                )
            yield view

    def _sources(
        self, sources: Sequence[SourceRecord], turn: int, cited: Sequence[int] = ()
    ) -> str:
        return render_sources(
            sources, cited, turn=turn, data_dir=self.data_dir, date_fields=self.date_fields
        )

    def _last_turn(
        self, event: Any, message: str, question: str, rewritten: bool, session: Any
    ) -> dict[str, Any]:
        """The finished turn, kept for feedback (owned by the user who asked)."""
        return {
            "owner": self.user,
            "question": message,
            "rewritten_question": question if rewritten else None,
            "answer": event.answer,
            "refused": event.refused,
            "sources": [
                {
                    "n": s.n,
                    "id": s.id,
                    "title": s.title,
                    "source": shown_source(s.source, self.data_dir),
                    "score": s.score,
                    "passage_score": s.passage_score,
                    "cited": s.n in event.cited,
                }
                for s in event.sources
            ],
            "session_id": getattr(session, "session_id", None),
            "unsupported": [
                {"sentence": c.sentence, "values": list(c.values), "cited": list(c.cited)}
                for c in event.unsupported
            ],
        }


def build_ui(app: App, guard: Guard | None = None) -> gr.Blocks:
    """The chat UI. `guard` is shared with the HTTP middleware that `launch` installs: it
    knows which uploaded temp files belong to whom (without it, no upload is accepted)."""
    guard = guard or Guard()
    settings = app.settings
    feedback_log = settings.data_dir / "feedback.jsonl"
    upload_root = settings.data_dir / "uploads"
    data_dir = (settings.data_dir.resolve().as_posix(), display_source(settings.data_dir))
    date_fields = tuple(settings.date_fields)

    # -- handlers (closures over the App; per-user state comes in as gr.State) -------------
    def on_load(request: gr.Request) -> tuple[Any, ...]:
        try:
            principal = _principal(app, request)
            cats, tags = facet_choices(app.state, principal)
            grants = grant_choices(principal)
            record = app.users.record(str(principal.user_id))
            who = (
                f"Logged in as **{escape_markdown(record.display_name or str(principal.user_id))}**"
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
            return (f"⚠️ {escape_markdown(str(exc))}", gr.update(), gr.update(), gr.update())

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
            return f"⚠️ **Filter problem:** {escape_markdown(str(exc))}"
        return (
            "**Effective filter** (access filter AND your filter):\n\n"
            f"```json\n{as_pretty_json(effective)}\n```"
        )

    def respond(
        message: str,
        state: Any,
        cats: list[str],
        tags: list[str],
        date_from: str,
        date_to: str,
        json_text: str,
        request: gr.Request,
    ) -> Iterator[tuple[Any, ...]]:
        """One chat turn (see `chat_turn`), as the outputs of the chat components."""
        try:
            user = _username(request)
        except UIError as exc:
            failed = [{"role": "assistant", "content": f"⚠️ {exc}"}]
            yield TurnView(failed, None, details=render_details(error=str(exc))).outputs()
            return
        turn = ChatTurn(app, user, request, data_dir, date_fields)
        filter_parts = (cats, tags, date_from, date_to, json_text)
        for view in turn.run(message, state, lambda: current_filter(*filter_parts)):
            yield view.outputs()

    def clear_chat(state: Any, request: gr.Request) -> tuple[Any, ...]:
        owned = owned_state(state, getattr(request, "username", None) or "")
        if owned is not None:
            owned.session.clear()
            owned.history = []
        return [], owned, "_Ask a question to see its sources._", "", None

    def upload(
        files: list[Any] | None,
        acl: list[str],
        request: gr.Request,
        progress: gr.Progress = gr.Progress(),  # noqa: B008 - Gradio's injection idiom
    ) -> tuple[str, Any]:
        """Ingest the user's own uploads (temp copies Gradio stored for this user only), then
        delete those temp copies whatever the outcome."""
        from rag_app.ingest.upload import ingest_uploads

        if not files:
            return "⚠️ Choose one or more files first.", gr.update()
        paths = [Path(f if isinstance(f, str) else getattr(f, "name", f)) for f in files]
        try:
            principal = _principal(app, request)
            user = str(principal.user_id)
            foreign = [p for p in paths if not guard.uploads.owns(p, user)]
            if foreign:
                audit.warning(
                    "upload of temp files not uploaded by %r refused: %s",
                    user,
                    ", ".join(map(str, foreign)),
                )
                raise AccessDenied(
                    f"{', '.join(p.name for p in foreign)} was not uploaded by you "
                    "(choose the file again)"
                )
            try:
                report = ingest_uploads(
                    app.ingestor,
                    principal,
                    paths,
                    acl=acl or [],
                    upload_root=upload_root,
                    progress=lambda total: _GradioProgress(progress, total),
                )
            finally:
                for path in paths:
                    guard.uploads.release(path, user)
        except RagAppError as exc:
            return f"⚠️ Upload refused: {escape_markdown(str(exc))}", gr.update()
        if report.files_indexed and settings.retriever != "dense":
            # Re-index BM25 now, off the request path; searches meanwhile use the current
            # index (its hits are confirmed against the store) plus dense retrieval.
            app.keyword_index.refresh_in_background()
        lines = [
            f"Indexed {report.files_indexed} file(s), {report.chunks_added} chunk(s) written "
            f"({report.files_unchanged} unchanged), visible to: "
            f"{escape_markdown(', '.join(acl))}."
        ]
        for item in report.rejected:
            lines.append(
                f"- ⚠️ `{html.escape(Path(item.location).name)}`: {escape_markdown(item.reason)}"
            )
        for item in report.still_served:
            lines.append(
                f"- ⚠️ `{html.escape(Path(item.location).name)}`: {escape_markdown(item.reason)}"
            )
        return "\n".join(lines), None

    def send_feedback(
        rating: str, comment: str, last: dict[str, Any] | None, request: gr.Request
    ) -> str:
        from rag_app.feedback import Feedback, append_feedback

        try:
            principal = _principal(app, request)
            turn = owned_turn(last, str(principal.user_id))
            if turn is None:
                return "Ask a question first; feedback applies to the last answer."
            append_feedback(
                feedback_log,
                Feedback(
                    user=str(principal.user_id),
                    tenant=principal.tenant,
                    question=turn["question"],
                    answer=turn["answer"],
                    rating="up" if rating == "up" else "down",
                    sources=turn["sources"],
                    comment=(comment or "").strip(),
                    rewritten_question=turn.get("rewritten_question"),
                    session_id=turn.get("session_id"),
                ),
            )
        except (RagAppError, OSError) as exc:
            return f"⚠️ Could not save feedback: {escape_markdown(str(exc))}"
        return "Thanks, your feedback was recorded."

    # -- layout -------------------------------------------------------------------------
    with gr.Blocks(title=TITLE, analytics_enabled=False, delete_cache=UPLOAD_SWEEP) as demo:
        session_state = gr.State(None)
        last_turn = gr.State(None)
        gr.Markdown(f"## {TITLE}")
        who = gr.Markdown("", elem_id="who")
        with gr.Row():
            with gr.Column(scale=3):
                chatbot = gr.Chatbot(
                    label="Chat", height=480, elem_id="chatbot", sanitize_html=True
                )
                with gr.Row():
                    msg = gr.Textbox(
                        placeholder="Ask about the documents you can access…",
                        show_label=False,
                        scale=5,
                        elem_id="msg",
                    )
                    send = gr.Button("Send", variant="primary", scale=1, elem_id="send")
                    clear = gr.Button("New chat", scale=1, elem_id="new-chat")
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
                    # HTML of rag_app.ui.sources (document text escaped there, and
                    # sanitised again by Gradio); `$$` in a document is not maths
                    sources = gr.Markdown(
                        "_Ask a question to see its sources._",
                        elem_id="sources",
                        latex_delimiters=[],
                    )
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
        send.click(respond, [msg, session_state, *filter_inputs], chat_outputs, api_name="chat")
        msg.submit(
            respond, [msg, session_state, *filter_inputs], chat_outputs, api_visibility="private"
        )
        clear.click(
            clear_chat, [session_state], [chatbot, session_state, sources, details, last_turn]
        )
        check.click(check_filter, filter_inputs, [filter_view], api_name="check_filter")
        upload_btn.click(upload, [files, grants], [upload_status, files], api_name="upload")

        def thumbs_up(c: str, last: dict[str, Any] | None, request: gr.Request) -> str:
            return send_feedback("up", c, last, request)

        def thumbs_down(c: str, last: dict[str, Any] | None, request: gr.Request) -> str:
            return send_feedback("down", c, last, request)

        up.click(thumbs_up, [comment, last_turn], [feedback_status], api_name="feedback_up")
        down.click(thumbs_down, [comment, last_turn], [feedback_status], api_name="feedback_down")
    return demo


# Password checks run in worker threads (never on the event loop), two at a time at most.
AUTH_CONCURRENCY = 2


def launch(
    app: App,
    *,
    host: str = "127.0.0.1",
    port: int = 7860,
    prevent_thread_lock: bool = False,
    guard: Guard | None = None,
    metrics_port: int | None = None,
    slow_query_ms: float | None = None,
) -> gr.Blocks:
    """Start the UI with login behind `GuardMiddleware` (login page and throttling, session
    and upload ownership, no deep links, security headers, ``/metrics`` for a logged-in
    user). With `metrics_port`, the metrics are also served on that loopback port (no login:
    for a local Prometheus agent); `slow_query_ms` sets the slow-query log threshold.
    Returns the running Blocks."""
    from rag_app import monitoring

    monitoring.configure(slow_query_ms=slow_query_ms)
    if metrics_port:
        monitoring.start_metrics_server(metrics_port)
    import anyio
    from starlette.middleware import Middleware

    from rag_app.ui.security import GuardMiddleware

    guard = guard or Guard(login_message=LOGIN_MESSAGE, title=TITLE)
    demo = build_ui(app, guard)
    users = app.users  # fail now (clear error) if the users file is broken
    limiter = anyio.CapacityLimiter(AUTH_CONCURRENCY)

    async def auth(username: str, password: str) -> bool:
        return await anyio.to_thread.run_sync(
            users.authenticate, username, password, limiter=limiter
        )

    demo.queue(default_concurrency_limit=4)
    demo.launch(
        server_name=host,
        server_port=port,
        auth=auth,  # type: ignore[arg-type]  # Gradio awaits a coroutine function
        auth_message=LOGIN_MESSAGE,
        css=UI_CSS,
        prevent_thread_lock=prevent_thread_lock,
        show_error=False,
        quiet=True,
        ssr_mode=False,
        run_history=False,
        app_kwargs={"middleware": [Middleware(GuardMiddleware, guard=guard)]},
    )
    return demo
