"""The HTTP edge of the chat UI: one ASGI middleware in front of every Gradio route.

Gradio keys everything per browser tab by a `session_hash` the client chooses, keeps uploaded
files in one shared folder, and answers a login form with a fixed message. `GuardMiddleware`
closes those gaps without patching Gradio:

* **Sessions belong to a user.** The first logged-in user who presents a session hash owns
  it; a request of another user with that hash (queue join/data, heartbeat, cancel, streams,
  any JSON body naming it) is refused with 403. Gradio's deep links (a snapshot of a
  session's component values, fetched by session hash) are switched off.
* **Uploads belong to their uploader.** Paths returned by ``/gradio_api/upload`` are
  recorded for the user who uploaded them (`UploadOwners`); ``/gradio_api/file=`` serves a
  file of the upload folder only to its uploader, and never proxies remote URLs. The upload
  handler accepts only the user's own paths and deletes the temporary copies when done.
* **Login** is served by a small server-rendered page (no API description for logged-out
  visitors) that posts to Gradio's ``/login``; failed attempts are throttled per user name
  and per client address (`rag_app.auth.LoginThrottle`) with a clear message (429 with
  ``Retry-After`` for API clients) and logged to the ``rag_app.audit`` logger.
* **Security headers** on every response: a Content-Security-Policy (scripts only from this
  origin or with the page's nonce, images only from this origin or ``data:``, no framing),
  X-Frame-Options, X-Content-Type-Options, Referrer-Policy.
* **Metrics**: ``/metrics`` serves the Prometheus exposition of `rag_app.monitoring` to a
  logged-in user only (401 otherwise); nothing in it names a tenant, a user or a document.
"""

from __future__ import annotations

import contextlib
import html
import json
import logging
import os
import re
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlencode

from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from rag_app import monitoring
from rag_app.auth import LoginThrottle

audit = logging.getLogger("rag_app.audit")

MAX_LOGIN_BODY = 64 * 1024
MAX_JSON_BODY = 16 * 1024 * 1024
SESSION_CAPACITY = 100_000
PAGE_PATHS = frozenset({"/"})
LOGIN_PATHS = frozenset({"/login", "/login/"})
DEEP_LINK_PATHS = frozenset({"/gradio_api/deep_link", "/gradio_api/deep_link/"})
UPLOAD_PATHS = frozenset({"/gradio_api/upload", "/gradio_api/upload/"})
METRICS_PATHS = frozenset({"/metrics", "/metrics/"})
_SESSION_IN_PATH = re.compile(
    r"^/gradio_api/(?:heartbeat/(?P<hb>[^/]+)/?|stream/(?P<st>[^/]+)/[^/]+/[^/]+/.+)$"
)
_FILE_ROUTE = re.compile(r"^/gradio_api/(?:file=|file/)(?P<path>.+)$")
_PROXY_ROUTE = re.compile(r"^/gradio_api/proxy=")
_SCRIPT_TAG = re.compile(rb"<script(?=[\s>])")


def content_security_policy(nonce: str | None = None) -> str:
    """The CSP of every response; HTML pages get a per-response nonce for Gradio's inline
    bootstrap scripts (nothing else inline may run)."""
    scripts = "'self'" + (f" 'nonce-{nonce}'" if nonce else "")
    return "; ".join(
        [
            "default-src 'self'",
            f"script-src {scripts}",
            "style-src 'self' 'unsafe-inline'",  # Svelte and Gradio's theme set inline styles
            "img-src 'self' data: blob:",
            "font-src 'self' data:",
            "media-src 'self' data: blob:",
            "connect-src 'self'",
            "worker-src 'self' blob:",
            "frame-src 'self'",
            "object-src 'none'",
            "base-uri 'self'",
            "form-action 'self'",
            "frame-ancestors 'none'",
        ]
    )


def security_headers(nonce: str | None = None) -> list[tuple[bytes, bytes]]:
    return [
        (b"content-security-policy", content_security_policy(nonce).encode()),
        (b"x-frame-options", b"DENY"),
        (b"x-content-type-options", b"nosniff"),
        (b"referrer-policy", b"no-referrer"),
        (b"cross-origin-opener-policy", b"same-origin"),
    ]


class SessionOwners:
    """session_hash -> the user who first used it (bounded, oldest forgotten first)."""

    def __init__(self, capacity: int = SESSION_CAPACITY) -> None:
        self.capacity = capacity
        self._owners: OrderedDict[str, str] = OrderedDict()
        self._lock = threading.Lock()

    def claim(self, session_hash: str, user: str) -> str:
        """The owner of `session_hash` (`user` if nobody had it yet)."""
        with self._lock:
            owner = self._owners.setdefault(session_hash, user)
            self._owners.move_to_end(session_hash)
            while len(self._owners) > self.capacity:
                self._owners.popitem(last=False)
            return owner


def _real(path: str | os.PathLike[str]) -> str:
    return os.path.realpath(os.fspath(path))


class UploadOwners:
    """Files in Gradio's upload folder -> the users who uploaded them.

    Gradio stores an upload under ``<upload dir>/<sha256 of the content>/<name>``, so two
    users who upload the same bytes under the same name share one path: each is an owner, and
    the file is deleted when the last owner releases it.
    """

    def __init__(self) -> None:
        self._owners: dict[str, set[str]] = {}
        self._lock = threading.Lock()

    def record(self, path: str | os.PathLike[str], user: str) -> None:
        with self._lock:
            self._owners.setdefault(_real(path), set()).add(user)

    def owns(self, path: str | os.PathLike[str], user: str) -> bool:
        with self._lock:
            return user in self._owners.get(_real(path), set())

    def known(self, path: str | os.PathLike[str]) -> bool:
        with self._lock:
            return _real(path) in self._owners

    def release(self, path: str | os.PathLike[str], user: str) -> bool:
        """Forget `user`'s upload; delete the file (and its folder, if empty) once nobody
        else holds it. True if the file is gone."""
        real = _real(path)
        with self._lock:
            owners = self._owners.get(real)
            if owners is not None:
                owners.discard(user)
                if owners:
                    return False
                del self._owners[real]
            try:
                os.unlink(real)
            except FileNotFoundError:
                pass
            except OSError as exc:
                audit.warning("could not delete upload temp copy %s: %s", real, exc)
                return False
            with contextlib.suppress(OSError):  # not empty, or already gone
                os.rmdir(os.path.dirname(real))
            return True


@dataclass
class Guard:
    """What the middleware enforces (shared with the UI handlers)."""

    login_message: str = "Log in with a user from the users file."
    title: str = "Log in"
    throttle: LoginThrottle = field(default_factory=LoginThrottle)
    sessions: SessionOwners = field(default_factory=SessionOwners)
    uploads: UploadOwners = field(default_factory=UploadOwners)


def _client_address(scope: Scope) -> str:
    client = scope.get("client")
    return str(client[0]) if client else "unknown"


def _gradio_app(scope: Scope) -> Any:
    return scope.get("app")


def _auth_required(scope: Scope) -> bool:
    app = _gradio_app(scope)
    return (
        getattr(app, "auth", None) is not None or getattr(app, "auth_dependency", None) is not None
    )


def current_user(scope: Scope) -> str | None:
    """The logged-in user of this request, from Gradio's session cookie."""
    app = _gradio_app(scope)
    tokens = getattr(app, "tokens", None)
    cookie_id = getattr(app, "cookie_id", None)
    if not isinstance(tokens, dict) or cookie_id is None:
        return None
    cookies = Request(scope).cookies
    token = cookies.get(f"access-token-{cookie_id}") or cookies.get(
        f"access-token-unsecure-{cookie_id}"
    )
    user = tokens.get(token) if token else None
    return str(user) if user else None


def _header(scope_or_message: Scope | Message, name: bytes) -> str:
    for key, value in scope_or_message.get("headers", []):
        if key.lower() == name:
            return bytes(value).decode("latin-1")
    return ""


async def _read_body(receive: Receive, limit: int) -> bytes | None:
    """The whole request body, or None if it is larger than `limit`."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return b"".join(chunks)
        body = message.get("body", b"")
        size += len(body)
        if size > limit:
            return None
        chunks.append(body)
        if not message.get("more_body", False):
            return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


@dataclass
class _Response:
    status: int = 500
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    body: bytes = b""


async def _capture(app: ASGIApp, scope: Scope, receive: Receive) -> _Response:
    out = _Response()
    parts: list[bytes] = []

    async def send(message: Message) -> None:
        if message["type"] == "http.response.start":
            out.status = int(message["status"])
            out.headers = list(message.get("headers", []))
        elif message["type"] == "http.response.body":
            parts.append(message.get("body", b""))

    await app(scope, receive, send)
    out.body = b"".join(parts)
    return out


async def _send_response(
    send: Send,
    status: int,
    body: bytes,
    *,
    content_type: str,
    headers: Iterable[tuple[bytes, bytes]] = (),
    head: bool = False,
) -> None:
    all_headers = [
        (b"content-type", content_type.encode()),
        (b"content-length", str(len(body)).encode()),
        (b"cache-control", b"no-store"),
        *headers,
    ]
    await send({"type": "http.response.start", "status": status, "headers": all_headers})
    await send({"type": "http.response.body", "body": b"" if head else body})


async def _send_json(
    send: Send, status: int, detail: str, headers: Iterable[tuple[bytes, bytes]] = ()
) -> None:
    body = json.dumps({"detail": detail}).encode()
    await _send_response(send, status, body, content_type="application/json", headers=headers)


def _with_headers(
    headers: list[tuple[bytes, bytes]], extra: list[tuple[bytes, bytes]]
) -> list[tuple[bytes, bytes]]:
    names = {k.lower() for k, _ in extra}
    return [(k, v) for k, v in headers if k.lower() not in names] + extra


def _set_length(headers: list[tuple[bytes, bytes]], length: int) -> list[tuple[bytes, bytes]]:
    return [(k, v) for k, v in headers if k.lower() != b"content-length"] + [
        (b"content-length", str(length).encode())
    ]


def login_page(guard: Guard, *, message: str | None = None, error: bool = False) -> bytes:
    """The login form for logged-out visitors: no script, no API description."""
    note = ""
    if message:
        role = "alert" if error else "status"
        note = f'<p class="msg" role="{role}" id="login-message">{html.escape(message)}</p>'
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{html.escape(guard.title)}</title>
<style>
body{{font-family:system-ui,sans-serif;background:#f7f7f8;color:#1f2937;margin:0}}
main{{max-width:420px;margin:10vh auto;background:#fff;padding:2rem;border-radius:12px;
box-shadow:0 1px 4px #0002}}
label{{display:block;margin:1rem 0 .3rem}}
input{{width:100%;box-sizing:border-box;padding:.55rem;font-size:1rem;border:1px solid #ccc;
border-radius:6px}}
button{{margin-top:1.4rem;width:100%;padding:.6rem;font-size:1rem;border:0;border-radius:6px;
background:#f97316;color:#fff;cursor:pointer}}
.msg{{padding:.6rem;border-radius:6px;background:#fee2e2;color:#991b1b}}
</style></head>
<body><main>
<h1>{html.escape(guard.title)}</h1>
<p>{html.escape(guard.login_message)}</p>
{note}
<form method="post" action="login?form=1">
<label for="username">username</label>
<input id="username" name="username" autocomplete="username" required autofocus>
<label for="password">password</label>
<input id="password" name="password" type="password" autocomplete="current-password" required>
<button type="submit">Login</button>
</form>
</main></body></html>
"""
    return page.encode("utf-8")


class GuardMiddleware:
    """ASGI middleware enforcing `Guard` (see the module docstring)."""

    def __init__(self, app: ASGIApp, guard: Guard) -> None:
        self.app = app
        self.guard = guard

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        nonce = secrets.token_urlsafe(18)
        headers = security_headers()
        page_headers = security_headers(nonce)

        async def send_secured(message: Message) -> None:
            if message["type"] == "http.response.start":
                current = list(message.get("headers", []))
                # A page marked with this response's nonce keeps its nonce policy.
                own = (
                    page_headers
                    if (b"content-security-policy", page_headers[0][1]) in current
                    else headers
                )
                message = {**message, "headers": _with_headers(current, own)}
            await send(message)

        root = str(scope.get("root_path") or "")
        path = str(scope["path"])
        if root and path.startswith(root):
            path = path[len(root) :] or "/"
        method = str(scope["method"])
        await self._route(scope, receive, send_secured, path, method, nonce, page_headers)

    async def _route(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        path: str,
        method: str,
        nonce: str,
        page_headers: list[tuple[bytes, bytes]],
    ) -> None:
        if path in DEEP_LINK_PATHS:
            await _send_json(send, 404, "deep links are disabled on this server")
            return
        if path in LOGIN_PATHS and method == "POST":
            await self._login(scope, receive, send)
            return
        user = current_user(scope)
        if path in METRICS_PATHS:
            await self._metrics(send, method, user)
            return
        if path in PAGE_PATHS and method in ("GET", "HEAD"):
            if user is None and _auth_required(scope):
                await _send_response(
                    send,
                    200,
                    login_page(self.guard),
                    content_type="text/html; charset=utf-8",
                    head=method == "HEAD",
                )
                return
            await self._page(scope, receive, send, nonce, page_headers)
            return
        if _PROXY_ROUTE.match(path):
            await _send_json(send, 404, "proxying remote URLs is disabled on this server")
            return
        file_match = _FILE_ROUTE.match(path)
        if file_match and not self._may_fetch(scope, file_match["path"], user):
            await _send_json(send, 404, "file not found")
            return
        if path.startswith("/gradio_api/"):
            checked = await self._check_session(scope, receive, send, path, method, user)
            if checked is None:
                return
            receive = checked
        if path in UPLOAD_PATHS and method == "POST" and user is not None:
            await self._upload(scope, receive, send, user)
            return
        await self.app(scope, receive, send)

    # -- metrics ------------------------------------------------------------------------
    async def _metrics(self, send: Send, method: str, user: str | None) -> None:
        """The Prometheus exposition, for a logged-in user only."""
        if user is None:
            await _send_json(send, 401, "log in to read the metrics")
            return
        if method not in ("GET", "HEAD"):
            await _send_json(send, 405, "method not allowed", [(b"allow", b"GET, HEAD")])
            return
        await _send_response(
            send,
            200,
            monitoring.metrics().render(),
            content_type=monitoring.CONTENT_TYPE,
            head=method == "HEAD",
        )

    # -- pages --------------------------------------------------------------------------
    async def _page(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        nonce: str,
        page_headers: list[tuple[bytes, bytes]],
    ) -> None:
        """Gradio's page for a logged-in user, its inline scripts marked with the nonce (and
        any deep-link parameter dropped)."""
        query = [
            (k, v)
            for k, v in parse_qsl(scope.get("query_string", b"").decode("latin-1"))
            if k != "deep_link"
        ]
        scope = {**scope, "query_string": urlencode(query).encode("latin-1")}
        response = await _capture(self.app, scope, receive)
        body = response.body
        meta = {"headers": response.headers}
        if _header(meta, b"content-type").startswith("text/html") and not _header(
            meta, b"content-encoding"
        ):
            body = _SCRIPT_TAG.sub(f'<script nonce="{nonce}"'.encode(), body)
        headers = _set_length(_with_headers(response.headers, page_headers), len(body))
        await send({"type": "http.response.start", "status": response.status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    # -- login --------------------------------------------------------------------------
    async def _login(self, scope: Scope, receive: Receive, send: Send) -> None:
        body = await _read_body(receive, MAX_LOGIN_BODY)
        if body is None:
            await _send_json(send, 413, "login request too large")
            return
        form = await _parse_form(scope, body)
        username = str(form.get("username") or "").strip()
        address = _client_address(scope)
        html_form = ("form", "1") in parse_qsl(scope.get("query_string", b"").decode())
        ticket, throttled = self.guard.throttle.begin(username, address)
        if throttled is not None:
            audit.warning(
                "login throttled: user=%r address=%s (%s)", username, address, throttled.scope
            )
            retry = [(b"retry-after", str(max(1, int(throttled.retry_after_s + 0.999))).encode())]
            if html_form:
                page = login_page(self.guard, message=throttled.message, error=True)
                await _send_response(
                    send, 429, page, content_type="text/html; charset=utf-8", headers=retry
                )
            else:
                await _send_json(send, 429, throttled.message, headers=retry)
            return
        started = time.perf_counter()
        response = await _capture(self.app, scope, _replay(body, receive))
        elapsed = time.perf_counter() - started
        if response.status == 200:
            self.guard.throttle.succeeded(username, address, ticket)
            audit.info("login ok: user=%r address=%s (%.2fs)", username, address, elapsed)
            if html_form:
                cookies = [(k, v) for k, v in response.headers if k.lower() == b"set-cookie"]
                await _send_response(
                    send,
                    303,
                    b"",
                    content_type="text/plain",
                    headers=[(b"location", b"./"), *cookies],
                )
                return
        elif response.status in (400, 401):
            audit.warning("login failed: user=%r address=%s (%.2fs)", username, address, elapsed)
            if html_form:
                page = login_page(
                    self.guard, message="Incorrect user name or password.", error=True
                )
                await _send_response(send, 401, page, content_type="text/html; charset=utf-8")
                return
        headers = _set_length(response.headers, len(response.body))
        await send({"type": "http.response.start", "status": response.status, "headers": headers})
        await send({"type": "http.response.body", "body": response.body})

    # -- sessions -----------------------------------------------------------------------
    async def _check_session(
        self, scope: Scope, receive: Receive, send: Send, path: str, method: str, user: str | None
    ) -> Receive | None:
        """The receive channel to go on with, or None if the request was refused."""
        hashes: list[str] = []
        query = parse_qsl(scope.get("query_string", b"").decode("latin-1"))
        hashes += [v for k, v in query if k == "session_hash"]
        in_path = _SESSION_IN_PATH.match(path)
        if in_path:
            hashes.append(in_path["hb"] or in_path["st"])
        content_type = _header(scope, b"content-type")
        if method == "POST" and content_type.startswith("application/json"):
            body = await _read_body(receive, MAX_JSON_BODY)
            if body is None:
                await _send_json(send, 413, "request too large")
                return None
            receive = _replay(body, receive)
            try:
                data = json.loads(body or b"null")
            except ValueError:
                data = None
            if isinstance(data, dict) and isinstance(data.get("session_hash"), str):
                hashes.append(data["session_hash"])
        if not hashes:
            return receive
        if user is None:
            if _auth_required(scope):
                await _send_json(send, 401, "not logged in")
                return None
            return receive
        for session_hash in hashes:
            owner = self.guard.sessions.claim(session_hash, user)
            if owner != user:
                audit.warning(
                    "session of %r presented by %r refused (%s %s, address %s)",
                    owner,
                    user,
                    method,
                    path,
                    _client_address(scope),
                )
                await _send_json(send, 403, "this session belongs to another user")
                return None
        return receive

    # -- uploads and files --------------------------------------------------------------
    async def _upload(self, scope: Scope, receive: Receive, send: Send, user: str) -> None:
        response = await _capture(self.app, scope, receive)
        if response.status == 200:
            try:
                paths = json.loads(response.body)
            except ValueError:
                paths = []
            for p in paths if isinstance(paths, list) else []:
                if isinstance(p, str):
                    self.guard.uploads.record(p, user)
        headers = _set_length(response.headers, len(response.body))
        await send({"type": "http.response.start", "status": response.status, "headers": headers})
        await send({"type": "http.response.body", "body": response.body})

    def _may_fetch(self, scope: Scope, raw: str, user: str | None) -> bool:
        if re.match(r"^[A-Za-z][A-Za-z0-9+.-]*://", raw):
            return False  # never proxy remote URLs
        upload_dir = getattr(_gradio_app(scope), "uploaded_file_dir", None)
        if not upload_dir:
            return True
        real = _real(raw)
        base = _real(upload_dir)
        if real != base and not real.startswith(base.rstrip(os.sep) + os.sep):
            return True  # Gradio's own rules decide about other files
        return user is not None and self.guard.uploads.owns(real, user)


async def _parse_form(scope: Scope, body: bytes) -> FormData | dict[str, str]:
    content_type = _header(scope, b"content-type")
    if content_type.startswith("application/x-www-form-urlencoded") or not content_type:
        return dict(parse_qsl(body.decode("utf-8", "replace")))
    request = Request(scope, _replay(body, _never))
    try:
        return await request.form(max_files=0, max_fields=16)
    except Exception:  # malformed multipart: no user name to count
        return {}


async def _never() -> Message:
    return {"type": "http.disconnect"}


__all__ = [
    "Guard",
    "GuardMiddleware",
    "SessionOwners",
    "UploadOwners",
    "content_security_policy",
    "current_user",
    "login_page",
    "security_headers",
]
