# ruff: noqa: E501  (real error messages are kept on one line so they can be grepped)
"""In-memory emulator of Pinecone's REST API (control plane + serverless data plane).

The emulator is a *test double*: CI cannot reach Pinecone, so the tests drive the
real ``pinecone`` SDK (7.3.0, API version ``2025-04``) against this server on
127.0.0.1.  It mirrors the documented behaviour of the real service; every rule
below says which real behaviour it copies, and the places where the exact wording
of an error message could not be verified against the live service are marked
``UNVERIFIED``.

Topology
--------
* ``PineconeEmulator.url`` is the **control plane** (``/indexes`` ...).  Point the
  SDK at it with ``Pinecone(api_key=..., host=emulator.url)``.
* Every created index gets its **own data-plane port**; ``describe_index`` returns
  it as ``host`` (``http://127.0.0.1:PORT``), so ``pc.Index(name=...)`` and
  ``pc.Index(host=...)`` both work exactly like against the real service, where
  each index has its own DNS host.  All ports are served by one uvicorn event loop
  running in one background thread; the ASGI app tells the ports apart with the
  ASGI ``scope["server"]`` (local address).

Sources used for the semantics: Pinecone OpenAPI specs ``2025-04``
(github.com/pinecone-io/pinecone-api), docs.pinecone.io ("Filter by metadata",
"Delete data", "Known limitations", "Query data"), error bodies quoted in public
issue threads (e.g. ``{"code":3,"message":"Vector dimension 1536 does not match the
dimension of the index 3072","details":[]}``), and the SDK's generated models.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import concurrent.futures
import contextlib
import json
import math
import re
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np
import uvicorn
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import Receive, Scope, Send

__all__ = ["EmulatorError", "Fault", "PineconeEmulator", "RecordedRequest"]

JSON = Any

# --- Limits of the real service (docs.pinecone.io/reference/api/database-limits) ---
MAX_METADATA_BYTES = 40 * 1024  # "Max metadata size per record is 40 KB" -> 40960 bytes
MAX_REQUEST_BYTES = 2 * 1024 * 1024  # "Max size for an upsert request is 2MB"
MAX_UPSERT_VECTORS = 1000  # OAS 2025-04: UpsertRequest.vectors maxLength 1000
MAX_DELETE_IDS = 1000  # OAS 2025-04: DeleteRequest.ids maxLength 1000
MAX_TOP_K = 10000  # OAS 2025-04: QueryRequest.topK maximum 10000
MAX_DIMENSION = 20000  # OAS 2025-04: CreateIndexRequest.dimension maximum 20000
MAX_ID_LENGTH = 512  # OAS 2025-04: id maxLength 512
DEFAULT_LIST_LIMIT = 100  # OAS 2025-04: /vectors/list limit default 100

#: Regions a serverless index can be created in (docs "Cloud regions"). Unknown
#: pairs get the real 404 "Resource cloud: X region: Y not found."
SERVERLESS_REGIONS: dict[str, set[str]] = {
    "aws": {"us-east-1", "us-west-2", "eu-west-1"},
    "gcp": {"us-central1", "europe-west4"},
    "azure": {"eastus2"},
}

_INDEX_NAME_RE = re.compile(r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?$")

# gRPC status codes used by the data plane's ``rpcStatus`` error body.
_GRPC_INVALID_ARGUMENT = 3
_GRPC_NOT_FOUND = 5
_GRPC_RESOURCE_EXHAUSTED = 8
_GRPC_INTERNAL = 13
_GRPC_UNAVAILABLE = 14
_GRPC_UNAUTHENTICATED = 16
_GRPC_UNKNOWN = 2

_STATUS_TO_GRPC: dict[int, int] = {
    400: _GRPC_INVALID_ARGUMENT,
    401: _GRPC_UNAUTHENTICATED,
    404: _GRPC_NOT_FOUND,
    429: _GRPC_RESOURCE_EXHAUSTED,
    500: _GRPC_INTERNAL,
    502: _GRPC_UNAVAILABLE,
    503: _GRPC_UNAVAILABLE,
    504: 4,  # DEADLINE_EXCEEDED
}
_STATUS_TO_CONTROL_CODE: dict[int, str] = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "FORBIDDEN",
    404: "NOT_FOUND",
    409: "ALREADY_EXISTS",
    422: "UNPROCESSABLE_ENTITY",
    429: "RESOURCE_EXHAUSTED",
    500: "UNKNOWN",
    502: "UNAVAILABLE",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}
_DEFAULT_FAULT_MESSAGES: dict[int, str] = {
    429: "Too Many Requests",
    500: "Internal server error",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}

CONTROL_OPS = ("create_index", "list_indexes", "describe_index", "delete_index", "configure_index")
DATA_OPS = ("upsert", "query", "fetch", "update", "delete", "list", "describe_index_stats")


class EmulatorError(Exception):
    """An API error; rendered in the error shape of the plane that raised it."""

    def __init__(self, status: int, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code


class RecordedRequest(NamedTuple):
    """One request as received: ``path`` includes the query string (``/vectors/fetch?ids=a``).

    ``body`` is the decoded JSON body (``None`` for GET/DELETE or an unparsable body).
    """

    method: str
    path: str
    body: JSON


@dataclass
class Fault:
    """A pending fault: the next ``times`` requests matching ``target`` fail or stall.

    ``target`` is an operation name (see ``CONTROL_OPS``/``DATA_OPS``), a path prefix
    starting with ``/``, or ``"*"`` for every request.  ``times=None`` means forever
    (until ``reset_faults``).
    """

    target: str
    status: int | None
    times: int | None
    delay_s: float | None
    message: str | None
    index: str | None

    def matches(self, op: str, path: str, index: str | None) -> bool:
        if self.index is not None and self.index != index:
            return False
        if self.target == "*":
            return True
        if self.target.startswith("/"):
            return path.startswith(self.target)
        return self.target == op


@dataclass
class _Record:
    id: str
    values: list[float]
    sparse: tuple[list[int], list[float]] | None
    metadata: dict[str, Any]


@dataclass
class _Index:
    name: str
    dimension: int | None
    metric: str
    vector_type: str
    deletion_protection: str
    tags: dict[str, str]
    cloud: str
    region: str
    port: int
    deleted: bool = False
    # namespace ("" is the default namespace) -> id -> record
    namespaces: dict[str, dict[str, _Record]] = field(default_factory=dict)


# ---------------------------------------------------------------------------
# Metadata validation and filter evaluation (pure functions, unit-testable)
# ---------------------------------------------------------------------------


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def normalize_metadata(metadata: Any) -> dict[str, Any]:
    """Validate a metadata object and return it with every number as a float.

    Mirrors docs.pinecone.io "Supported metadata types": values are strings,
    numbers ("gets converted to a 64 bit floating point"), booleans or lists of
    strings; nested objects, nulls, and lists of non-strings are rejected with 400.
    UNVERIFIED: the exact wording of the rejection message.
    """
    if metadata is None:
        return {}
    if not isinstance(metadata, dict):
        raise EmulatorError(400, "Metadata must be a JSON object")
    out: dict[str, Any] = {}
    for key, value in metadata.items():
        if isinstance(value, (bool, str)):
            out[key] = value
        elif _is_number(value):
            if not math.isfinite(float(value)):
                raise EmulatorError(
                    400, f"Metadata value for field '{key}' must be a finite number"
                )
            out[key] = float(value)
        elif isinstance(value, list) and all(isinstance(item, str) for item in value):
            out[key] = list(value)
        else:
            shown = json.dumps(value, separators=(",", ":"))
            raise EmulatorError(
                400,
                "Metadata value must be a string, number, boolean or list of strings, "
                f"got '{shown}' for field '{key}'",
            )
    return out


def metadata_size(metadata: dict[str, Any]) -> int:
    """Size of a record's metadata in bytes (compact JSON, UTF-8).

    UNVERIFIED: Pinecone measures its internal encoding; compact JSON is a close proxy.
    """
    return len(json.dumps(metadata, separators=(",", ":"), ensure_ascii=False).encode("utf-8"))


def check_metadata_size(metadata: dict[str, Any]) -> None:
    """Reject metadata over 40 KB with the real message
    ("Metadata size is N bytes, which exceeds the limit of 40960 bytes per vector")."""
    size = metadata_size(metadata)
    if size > MAX_METADATA_BYTES:
        raise EmulatorError(
            400,
            f"Metadata size is {size} bytes, which exceeds the limit of {MAX_METADATA_BYTES} bytes per vector",
        )


_COMPARISON_OPS = {"$eq", "$ne", "$gt", "$gte", "$lt", "$lte", "$in", "$nin", "$exists"}


def validate_filter(flt: Any) -> None:
    """Reject malformed filters with a 400, like the real service does.

    UNVERIFIED: the exact wording of these messages.
    """
    if not isinstance(flt, dict):
        raise EmulatorError(400, "Filter must be a JSON object")
    for key, cond in flt.items():
        if key in ("$and", "$or"):
            if not isinstance(cond, list) or not cond:
                raise EmulatorError(
                    400, f"Invalid filter: {key} requires a non-empty array of filters"
                )
            for sub in cond:
                validate_filter(sub)
            continue
        if key.startswith("$"):
            raise EmulatorError(400, f"Invalid filter operator {key} at top level")
        if isinstance(cond, dict):
            if not cond:
                raise EmulatorError(400, f"Invalid filter for field '{key}': empty operator object")
            for op, operand in cond.items():
                _validate_operator(key, op, operand)
        else:
            _validate_operator(key, "$eq", cond)


def _validate_operator(fieldname: str, op: str, operand: Any) -> None:
    if op not in _COMPARISON_OPS:
        raise EmulatorError(400, f"Invalid filter operator {op} for field '{fieldname}'")
    if op in ("$eq", "$ne"):
        if not (isinstance(operand, (str, bool)) or _is_number(operand)):
            raise EmulatorError(
                400,
                f"Invalid value for operator {op} on field '{fieldname}': expected a string, number or boolean",
            )
    elif op in ("$gt", "$gte", "$lt", "$lte"):
        if not _is_number(operand):
            raise EmulatorError(
                400, f"Invalid value for operator {op} on field '{fieldname}': expected a number"
            )
    elif op in ("$in", "$nin"):
        if not isinstance(operand, list):
            raise EmulatorError(
                400, f"Invalid value for operator {op} on field '{fieldname}': expected an array"
            )
        for item in operand:
            if not (isinstance(item, (str, bool)) or _is_number(item)):
                raise EmulatorError(
                    400,
                    f"Invalid value in {op} array on field '{fieldname}': expected strings or numbers",
                )
    elif op == "$exists" and not isinstance(operand, bool):
        raise EmulatorError(
            400,
            f"Invalid value for operator $exists on field '{fieldname}': expected a boolean",
        )


def _scalar_equal(stored: Any, wanted: Any) -> bool:
    """Type-strict equality; numbers compare as 64-bit floats, booleans are not numbers."""
    if isinstance(stored, bool) or isinstance(wanted, bool):
        return isinstance(stored, bool) and isinstance(wanted, bool) and stored == wanted
    if _is_number(stored) and _is_number(wanted):
        return float(stored) == float(wanted)
    if isinstance(stored, str) and isinstance(wanted, str):
        return stored == wanted
    return False


def _elements(stored: Any) -> list[Any]:
    """A list field is matched element-wise ("matches when any value in the array satisfies it")."""
    return list(stored) if isinstance(stored, list) else [stored]


def matches_filter(
    metadata: dict[str, Any], flt: dict[str, Any] | None, *, ne_matches_missing: bool = True
) -> bool:
    """Evaluate Pinecone's metadata filter language against one record's metadata.

    Semantics (docs.pinecone.io "Filter by metadata"; the language "is based on
    MongoDB's query and projection operators"):

    * top-level keys are ANDed; ``$and`` / ``$or`` take arrays of sub-filters;
    * ``{"f": v}`` is shorthand for ``{"f": {"$eq": v}}``; several operators on one
      field are ANDed (``{"year": {"$gte": 2000, "$lt": 2010}}``);
    * list-of-strings fields: ``$eq``/``$in`` match when ANY element matches;
      ``$ne``/``$nin`` match only when NO element matches;
    * ``$gt/$gte/$lt/$lte`` only match numbers (compared as floats);
    * ``$exists: true/false`` tests presence of the field;
    * a missing field never matches ``$eq/$in/$gt...``.  For ``$ne``/``$nin`` the
      emulator follows MongoDB (a missing field matches) -- UNVERIFIED against the
      live service; pass ``ne_matches_missing=False`` to the emulator to flip it.
    """
    if not flt:
        return True
    for key, cond in flt.items():
        if key == "$and":
            if not all(
                matches_filter(metadata, sub, ne_matches_missing=ne_matches_missing) for sub in cond
            ):
                return False
            continue
        if key == "$or":
            if not any(
                matches_filter(metadata, sub, ne_matches_missing=ne_matches_missing) for sub in cond
            ):
                return False
            continue
        ops = cond if isinstance(cond, dict) else {"$eq": cond}
        for op, operand in ops.items():
            if not _match_op(metadata, key, op, operand, ne_matches_missing):
                return False
    return True


def _match_op(
    metadata: dict[str, Any], key: str, op: str, operand: Any, ne_matches_missing: bool
) -> bool:
    present = key in metadata
    if op == "$exists":
        return present == bool(operand)
    if not present:
        return ne_matches_missing if op in ("$ne", "$nin") else False
    elements = _elements(metadata[key])
    if op == "$eq":
        return any(_scalar_equal(e, operand) for e in elements)
    if op == "$ne":
        return not any(_scalar_equal(e, operand) for e in elements)
    if op == "$in":
        return any(_scalar_equal(e, w) for e in elements for w in operand)
    if op == "$nin":
        return not any(_scalar_equal(e, w) for e in elements for w in operand)
    numbers = [float(e) for e in elements if _is_number(e)]
    bound = float(operand)
    if op == "$gt":
        return any(n > bound for n in numbers)
    if op == "$gte":
        return any(n >= bound for n in numbers)
    if op == "$lt":
        return any(n < bound for n in numbers)
    if op == "$lte":
        return any(n <= bound for n in numbers)
    raise EmulatorError(
        400, f"Invalid filter operator {op}"
    )  # pragma: no cover - validated earlier


# ---------------------------------------------------------------------------
# Small request helpers
# ---------------------------------------------------------------------------


def _get(body: dict[str, Any], camel: str, snake: str | None = None, default: Any = None) -> Any:
    """Read a field by its JSON (camelCase) or proto (snake_case) name; grpc-gateway accepts both."""
    if camel in body:
        return body[camel]
    if snake is not None and snake in body:
        return body[snake]
    return default


def _namespace_key(namespace: str | None) -> str:
    """``""``, missing and ``"__default__"`` all address the default namespace (docs: "To target
    the default namespace, use "__default__"")."""
    if namespace is None or namespace == "__default__":
        return ""
    return namespace


def _parse_sparse(raw: Any, what: str = "Sparse vector") -> tuple[list[int], list[float]] | None:
    """Validate ``{"indices": [...], "values": [...]}`` (OAS SparseValues: same length, indices >= 0).

    UNVERIFIED: the exact wording of the messages.
    """
    if raw is None:
        return None
    if not isinstance(raw, dict) or "indices" not in raw or "values" not in raw:
        raise EmulatorError(400, f"{what} must have 'indices' and 'values'")
    indices, values = raw["indices"], raw["values"]
    if not isinstance(indices, list) or not isinstance(values, list):
        raise EmulatorError(400, f"{what} indices and values must be arrays")
    if len(indices) != len(values):
        raise EmulatorError(
            400,
            f"{what} indices and values must have the same length, got {len(indices)} indices and {len(values)} values",
        )
    if any(not isinstance(i, int) or isinstance(i, bool) or i < 0 or i >= 2**32 for i in indices):
        raise EmulatorError(400, f"{what} indices must be non-negative 32-bit integers")
    if len(set(indices)) != len(indices):
        raise EmulatorError(400, f"{what} has duplicate indices")
    if any(not _is_number(v) for v in values):
        raise EmulatorError(400, f"{what} values must be numbers")
    return [int(i) for i in indices], [float(v) for v in values]


def _parse_dense(raw: Any) -> list[float]:
    if raw is None:
        return []
    if not isinstance(raw, list) or any(not _is_number(v) for v in raw):
        raise EmulatorError(400, "Vector values must be an array of numbers")
    return [float(v) for v in raw]


def _sparse_dot(a: tuple[list[int], list[float]], b: tuple[list[int], list[float]] | None) -> float:
    if b is None:
        return 0.0
    lookup = dict(zip(b[0], b[1], strict=True))
    return float(sum(v * lookup.get(i, 0.0) for i, v in zip(a[0], a[1], strict=True)))


def _sparse_json(sparse: tuple[list[int], list[float]]) -> dict[str, Any]:
    return {"indices": list(sparse[0]), "values": list(sparse[1])}


def _encode_token(last_id: str) -> str:
    return base64.urlsafe_b64encode(json.dumps({"after": last_id}).encode()).decode()


def _decode_token(token: str) -> str:
    try:
        data = json.loads(base64.urlsafe_b64decode(token.encode()).decode())
        after = data["after"]
        if not isinstance(after, str):
            raise ValueError
        return after
    except (ValueError, KeyError, TypeError, binascii.Error, UnicodeDecodeError):
        # UNVERIFIED message.
        raise EmulatorError(400, "Invalid pagination token") from None


# ---------------------------------------------------------------------------
# The emulator
# ---------------------------------------------------------------------------


class PineconeEmulator:
    """Pinecone REST control plane + per-index data planes on 127.0.0.1.

    Usage::

        with PineconeEmulator(api_key="test-key") as emu:
            pc = Pinecone(api_key="test-key", host=emu.url)
            pc.create_index("idx", dimension=4, metric="cosine",
                            spec=ServerlessSpec(cloud="aws", region="us-east-1"))
            index = pc.Index("idx")               # resolves the host via describe_index
            index = pc.Index(host=emu.index_url("idx"))

    Args:
        api_key: if given, every request must carry exactly this ``Api-Key`` (else 401
            "Invalid API Key"); if ``None`` any non-empty key is accepted.
        port: control-plane port (``0`` = pick a free one).
        stats_filter_supported: the real serverless service rejects
            ``describe_index_stats`` with a filter (400, "Serverless and starter indexes do
            not support describing index stats with metadata filtering.").  ``False``
            (default) mirrors that; ``True`` evaluates the filter instead.
        default_namespace_stats_key: key under which ``describe_index_stats`` reports
            the default namespace.  Current serverless indexes report ``"__default__"``;
            pass ``""`` for the older convention.
        ne_matches_missing: whether ``$ne``/``$nin`` match records lacking the field
            (MongoDB semantics, the default; UNVERIFIED for Pinecone).
    """

    def __init__(
        self,
        api_key: str | None = None,
        *,
        port: int = 0,
        stats_filter_supported: bool = False,
        default_namespace_stats_key: str = "__default__",
        ne_matches_missing: bool = True,
    ) -> None:
        self.api_key = api_key
        self.stats_filter_supported = stats_filter_supported
        self.default_namespace_stats_key = default_namespace_stats_key
        self.ne_matches_missing = ne_matches_missing
        self._requested_port = port
        self._lock = threading.RLock()
        self._indexes: dict[str, _Index] = {}
        self._port_to_index: dict[int, _Index] = {}
        self._faults: list[Fault] = []
        self._requests: list[RecordedRequest] = []
        self._control_port: int | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._servers: list[tuple[uvicorn.Server, concurrent.futures.Future[None]]] = []

    # ----- lifecycle -------------------------------------------------------

    def __enter__(self) -> PineconeEmulator:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> PineconeEmulator:
        """Start the event-loop thread and the control-plane server; returns ``self``."""
        if self._loop is not None:
            return self
        loop = asyncio.new_event_loop()
        ready = threading.Event()

        def run() -> None:
            asyncio.set_event_loop(loop)
            loop.call_soon(ready.set)
            loop.run_forever()

        self._loop = loop
        self._thread = threading.Thread(target=run, name="pinecone-emulator", daemon=True)
        self._thread.start()
        ready.wait(5)
        self._control_port = self._serve_new_port(self._requested_port)
        return self

    def stop(self) -> None:
        """Stop every server and the loop thread.  Data is discarded."""
        loop = self._loop
        if loop is None:
            return
        for server, _ in self._servers:
            server.should_exit = True
        deadline = time.monotonic() + 5
        for _, fut in self._servers:
            with contextlib.suppress(Exception):  # best-effort shutdown
                fut.result(timeout=max(0.1, deadline - time.monotonic()))
        loop.call_soon_threadsafe(loop.stop)
        if self._thread is not None:
            self._thread.join(5)
        loop.close()
        self._loop = None
        self._thread = None
        self._servers = []

    def _serve_new_port(self, port: int = 0) -> int:
        """Bind+listen a socket now (so the port accepts connections immediately) and
        hand it to a new uvicorn server on the shared loop."""
        assert self._loop is not None, "emulator not started"
        # proto=IPPROTO_TCP so asyncio sets TCP_NODELAY on accepted connections (else ~40 ms per request).
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", port))
        sock.listen(128)
        sock.setblocking(False)
        bound_port = int(sock.getsockname()[1])
        config = uvicorn.Config(
            self._asgi,
            lifespan="off",
            log_level="warning",
            access_log=False,
            timeout_graceful_shutdown=1,
            loop="asyncio",
            interface="asgi3",
        )
        server = uvicorn.Server(config)
        fut = asyncio.run_coroutine_threadsafe(server.serve(sockets=[sock]), self._loop)
        self._servers.append((server, fut))
        if threading.current_thread() is self._thread:
            # Called from a request handler on the loop itself (create_index): waiting
            # would block the loop; the socket already listens, so clients just queue.
            return bound_port
        deadline = time.monotonic() + 5
        while not server.started and time.monotonic() < deadline:
            if fut.done():
                fut.result()  # re-raise startup errors
            time.sleep(0.005)
        return bound_port

    # ----- public helpers ---------------------------------------------------

    @property
    def port(self) -> int:
        """Control-plane port."""
        if self._control_port is None:
            raise RuntimeError("emulator not started")
        return self._control_port

    @property
    def url(self) -> str:
        """Control-plane base URL, e.g. ``http://127.0.0.1:PORT``."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def control_url(self) -> str:
        """Alias of :attr:`url`."""
        return self.url

    def index_url(self, name: str) -> str:
        """Data-plane base URL (the ``host``) of index ``name``."""
        with self._lock:
            idx = self._indexes.get(name)
            if idx is None:
                raise KeyError(name)
            return f"http://127.0.0.1:{idx.port}"

    @property
    def requests(self) -> list[RecordedRequest]:
        """Every request received so far (a copy), oldest first, faulted ones included."""
        with self._lock:
            return list(self._requests)

    def clear_requests(self) -> None:
        with self._lock:
            self._requests.clear()

    def inject(
        self,
        target: str,
        status: int | None = None,
        times: int | None = 1,
        delay_s: float | None = None,
        *,
        message: str | None = None,
        index: str | None = None,
    ) -> Fault:
        """Make the next ``times`` requests matching ``target`` fail and/or stall.

        Args:
            target: an operation name (``"upsert"``, ``"query"``, ``"fetch"``,
                ``"update"``, ``"delete"``, ``"list"``, ``"describe_index_stats"``,
                ``"create_index"``, ``"list_indexes"``, ``"describe_index"``,
                ``"delete_index"``, ``"configure_index"``), a path prefix such as
                ``"/vectors/"`` or ``"/indexes"``, or ``"*"``.
            status: HTTP status to answer with (e.g. 429, 500, 503); the body uses the
                plane's real error shape.  ``None`` = answer normally (after the delay).
            times: how many matching requests are affected; ``None`` = until ``reset_faults``.
            delay_s: sleep this long before answering (to trigger client timeouts).
            message: error message (default: "Too Many Requests" for 429, etc.).
            index: restrict to requests for this index (data plane, or control-plane
                requests naming it).
        """
        if status is None and delay_s is None:
            raise ValueError("inject() needs a status and/or a delay_s")
        if target not in CONTROL_OPS + DATA_OPS and target != "*" and not target.startswith("/"):
            raise ValueError(f"unknown fault target {target!r}")
        fault = Fault(target, status, times, delay_s, message, index)
        with self._lock:
            self._faults.append(fault)
        return fault

    def reset_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    def reset(self) -> None:
        """Drop every index, fault and recorded request (servers keep running)."""
        with self._lock:
            for idx in self._indexes.values():
                idx.deleted = True
            self._indexes.clear()
            self._faults.clear()
            self._requests.clear()

    # ----- ASGI entry point ---------------------------------------------------

    async def _asgi(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":  # pragma: no cover - lifespan is off
            return
        request = Request(scope, receive)
        port = int((scope.get("server") or ("", 0))[1])
        response = await self._handle(request, port)
        await response(scope, receive, send)

    async def _handle(self, request: Request, port: int) -> Response:
        is_control = port == self._control_port
        raw = await request.body()
        method = request.method.upper()
        path = request.url.path
        query = request.url.query
        body: JSON = None
        body_error = False
        if raw:
            try:
                body = json.loads(raw)
            except (ValueError, UnicodeDecodeError):
                body_error = True
        with self._lock:
            self._requests.append(
                RecordedRequest(method, path + (f"?{query}" if query else ""), body)
            )
            idx = None if is_control else self._port_to_index.get(port)
        render = self._control_error if is_control else self._data_error
        try:
            if is_control:
                op, name = self._control_route(method, path)
                fault_index = name
            else:
                op = self._data_route(method, path)
                fault_index = idx.name if idx is not None else None
            fault = self._take_fault(op, path, fault_index)
            if fault is not None:
                if fault.delay_s:
                    await asyncio.sleep(fault.delay_s)
                if fault.status is not None:
                    return render(
                        fault.status,
                        fault.message or _DEFAULT_FAULT_MESSAGES.get(fault.status, "Error"),
                    )
            self._check_auth(request)
            if body_error:
                if is_control:
                    raise EmulatorError(
                        400, "Failed to parse the request body as JSON", "INVALID_ARGUMENT"
                    )
                raise EmulatorError(400, "Invalid JSON body")
            if is_control:
                return self._dispatch_control(op, name, body)
            if len(raw) > MAX_REQUEST_BYTES:
                size_mb = math.ceil(len(raw) / (1024 * 1024))
                # Real: "Request size 3MB exceeds the maximum supported size of 2MB"
                raise EmulatorError(
                    400, f"Request size {size_mb}MB exceeds the maximum supported size of 2MB"
                )
            if idx is None or idx.deleted:
                raise EmulatorError(404, "Index not found")  # UNVERIFIED: real host stops resolving
            return self._dispatch_data(op, idx, body if isinstance(body, dict) else {}, request)
        except EmulatorError as err:
            return render(err.status, err.message, err.code)

    def _take_fault(self, op: str, path: str, index: str | None) -> Fault | None:
        with self._lock:
            for fault in self._faults:
                if fault.matches(op, path, index):
                    if fault.times is not None:
                        fault.times -= 1
                        if fault.times <= 0:
                            self._faults.remove(fault)
                    return fault
        return None

    def _check_auth(self, request: Request) -> None:
        """Every request needs an ``Api-Key`` header (real: 401 UNAUTHENTICATED)."""
        key = request.headers.get("api-key", "")
        if not key:
            raise EmulatorError(
                401, "Invalid API Key", "UNAUTHENTICATED"
            )  # UNVERIFIED wording for a missing key
        if self.api_key is not None and key != self.api_key:
            raise EmulatorError(401, "Invalid API Key", "UNAUTHENTICATED")

    @staticmethod
    def _control_error(status: int, message: str, code: str | None = None) -> Response:
        """Control-plane ``ErrorResponse``: ``{"error": {"code", "message"}, "status"}`` (OAS 2025-04)."""
        code = code or _STATUS_TO_CONTROL_CODE.get(status, "UNKNOWN")
        return JSONResponse(
            {"error": {"code": code, "message": message}, "status": status}, status_code=status
        )

    @staticmethod
    def _data_error(status: int, message: str, code: str | None = None) -> Response:
        """Data-plane ``rpcStatus``: ``{"code": <grpc int>, "message", "details": []}`` (OAS 2025-04)."""
        grpc_code = _STATUS_TO_GRPC.get(status, _GRPC_UNKNOWN)
        return JSONResponse(
            {"code": grpc_code, "message": message, "details": []}, status_code=status
        )

    # ----- control plane -------------------------------------------------------

    @staticmethod
    def _control_route(method: str, path: str) -> tuple[str, str | None]:
        parts = [p for p in path.split("/") if p]
        if parts == ["indexes"]:
            if method == "GET":
                return "list_indexes", None
            if method == "POST":
                return "create_index", None
        elif len(parts) == 2 and parts[0] == "indexes":
            op = {
                "GET": "describe_index",
                "DELETE": "delete_index",
                "PATCH": "configure_index",
            }.get(method)
            if op:
                return op, parts[1]
        raise EmulatorError(404, f"Not found: {method} {path}", "NOT_FOUND")

    def _dispatch_control(self, op: str, name: str | None, body: JSON) -> Response:
        if op == "list_indexes":
            with self._lock:
                return JSONResponse(
                    {"indexes": [self._index_model(i) for i in self._indexes.values()]}
                )
        if op == "create_index":
            return self._create_index(body)
        assert name is not None
        with self._lock:
            idx = self._indexes.get(name)
            if idx is None:
                raise EmulatorError(
                    404, f"Index {name} not found.", "NOT_FOUND"
                )  # OAS example wording
            if op == "describe_index":
                return JSONResponse(self._index_model(idx))
            if op == "delete_index":
                if idx.deletion_protection == "enabled":
                    # OAS 2025-04 example, 403 FORBIDDEN
                    raise EmulatorError(
                        403,
                        "Deletion protection is enabled for this index. Disable deletion protection before retrying.",
                        "FORBIDDEN",
                    )
                idx.deleted = True
                del self._indexes[name]
                return Response(status_code=202)
            # configure_index
            if not isinstance(body, dict):
                raise EmulatorError(
                    422,
                    "Failed to deserialize the JSON body into the target type",
                    "UNPROCESSABLE_ENTITY",
                )
            if "spec" in body and body["spec"] is not None:
                # Serverless indexes cannot be scaled with a pod spec.
                raise EmulatorError(
                    400,
                    "Configuring the spec of a serverless index is not supported.",
                    "INVALID_ARGUMENT",
                )  # UNVERIFIED
            dp = body.get("deletion_protection")
            if dp is not None:
                if dp not in ("enabled", "disabled"):
                    raise EmulatorError(
                        422,
                        f"Failed to deserialize the JSON body into the target type: deletion_protection: unknown variant `{dp}`, expected `enabled` or `disabled`",
                        "UNPROCESSABLE_ENTITY",
                    )
                idx.deletion_protection = dp
            tags = body.get("tags")
            if tags is not None:
                if not isinstance(tags, dict) or any(not isinstance(v, str) for v in tags.values()):
                    raise EmulatorError(
                        400, "Tags must be an object of string values", "INVALID_ARGUMENT"
                    )
                for key, value in tags.items():
                    # OAS example "Update tag0 and delete tag1": an empty value removes the tag.
                    if value == "":
                        idx.tags.pop(key, None)
                    else:
                        idx.tags[key] = value
            return JSONResponse(self._index_model(idx), status_code=202)

    def _create_index(self, body: JSON) -> Response:
        """POST /indexes (serverless only). Mirrors OAS 2025-04 validation: 422 for bodies
        that do not deserialize (missing ``spec``/``name``, unknown enum variant), 400 for
        invalid values, 404 for unknown cloud/region, 409 for an existing name, 201 + IndexModel."""

        def unprocessable(detail: str) -> EmulatorError:
            return EmulatorError(
                422,
                f"Failed to deserialize the JSON body into the target type: {detail}",
                "UNPROCESSABLE_ENTITY",
            )

        if not isinstance(body, dict):
            raise unprocessable("expected a JSON object")
        for required in ("name", "spec"):
            if required not in body:
                raise unprocessable(f"missing field `{required}`")
        name = body["name"]
        if not isinstance(name, str):
            raise unprocessable("name: invalid type, expected a string")
        if not (1 <= len(name) <= 45) or not _INDEX_NAME_RE.match(name):
            raise EmulatorError(
                400,
                "Index name must contain only lowercase alphanumeric characters or hyphens, "
                "and must not begin or end with a hyphen.",  # OAS example wording; length 1-45
                "INVALID_ARGUMENT",
            )
        vector_type = body.get("vector_type") or "dense"
        if vector_type not in ("dense", "sparse"):
            raise unprocessable(
                f"vector_type: unknown variant `{vector_type}`, expected `dense` or `sparse`"
            )
        metric = body.get("metric")
        if metric is None:
            metric = (
                "dotproduct" if vector_type == "sparse" else "cosine"
            )  # OAS: dense defaults to cosine
        if metric not in ("cosine", "euclidean", "dotproduct"):
            raise unprocessable(
                f"metric: unknown variant `{metric}`, expected one of `cosine`, `euclidean`, `dotproduct`"
            )
        dimension = body.get("dimension")
        if vector_type == "dense":
            if dimension is None:
                raise EmulatorError(
                    400, "Dimension must be specified for dense indexes.", "INVALID_ARGUMENT"
                )  # UNVERIFIED
            if (
                not isinstance(dimension, int)
                or isinstance(dimension, bool)
                or not (1 <= dimension <= MAX_DIMENSION)
            ):
                raise EmulatorError(
                    400,
                    f"Dimension must be an integer between 1 and {MAX_DIMENSION}.",
                    "INVALID_ARGUMENT",
                )  # UNVERIFIED
        else:
            if dimension is not None:
                raise EmulatorError(
                    400, "Dimension should not be specified for sparse indexes.", "INVALID_ARGUMENT"
                )  # UNVERIFIED
            if metric != "dotproduct":
                # OAS: "If the 'vector_type' is 'sparse', the metric must be 'dotproduct'."
                raise EmulatorError(
                    400, "Sparse vector indexes must use the metric dotproduct.", "INVALID_ARGUMENT"
                )  # UNVERIFIED
        dp = body.get("deletion_protection") or "disabled"
        if dp not in ("enabled", "disabled"):
            raise unprocessable(
                f"deletion_protection: unknown variant `{dp}`, expected `enabled` or `disabled`"
            )
        tags = body.get("tags") or {}
        if not isinstance(tags, dict) or any(not isinstance(v, str) for v in tags.values()):
            raise EmulatorError(400, "Tags must be an object of string values.", "INVALID_ARGUMENT")
        spec = body["spec"]
        if not isinstance(spec, dict) or "serverless" not in spec:
            if isinstance(spec, dict) and ("pod" in spec or "byoc" in spec):
                raise EmulatorError(
                    400, "The emulator only supports serverless indexes.", "INVALID_ARGUMENT"
                )
            raise unprocessable("spec: expected one of `serverless`, `pod`, `byoc`")
        serverless = spec["serverless"]
        if (
            not isinstance(serverless, dict)
            or "cloud" not in serverless
            or "region" not in serverless
        ):
            raise unprocessable("spec.serverless: missing field `cloud` or `region`")
        cloud, region = serverless["cloud"], serverless["region"]
        if cloud not in SERVERLESS_REGIONS:
            raise unprocessable(
                f"spec.serverless.cloud: unknown variant `{cloud}`, expected one of `gcp`, `aws`, `azure`"
            )
        if region not in SERVERLESS_REGIONS[cloud]:
            raise EmulatorError(
                404, f"Resource cloud: {cloud} region: {region} not found.", "NOT_FOUND"
            )  # OAS example
        with self._lock:
            if name in self._indexes:
                raise EmulatorError(
                    409, "Resource already exists.", "ALREADY_EXISTS"
                )  # OAS example
        port = self._serve_new_port()
        idx = _Index(
            name=name,
            dimension=dimension if vector_type == "dense" else None,
            metric=metric,
            vector_type=vector_type,
            deletion_protection=dp,
            tags={str(k): v for k, v in tags.items() if v != ""},
            cloud=cloud,
            region=region,
            port=port,
        )
        with self._lock:
            if name in self._indexes:  # lost a race with a concurrent create
                raise EmulatorError(409, "Resource already exists.", "ALREADY_EXISTS")
            self._indexes[name] = idx
            self._port_to_index[port] = idx
            return JSONResponse(self._index_model(idx), status_code=201)

    @staticmethod
    def _index_model(idx: _Index) -> dict[str, Any]:
        """``IndexModel`` (OAS 2025-04).  The emulator's indexes are ready at once."""
        model: dict[str, Any] = {
            "name": idx.name,
            "metric": idx.metric,
            "host": f"http://127.0.0.1:{idx.port}",
            "spec": {"serverless": {"cloud": idx.cloud, "region": idx.region}},
            "status": {"ready": True, "state": "Ready"},
            "vector_type": idx.vector_type,
            "deletion_protection": idx.deletion_protection,
        }
        if idx.dimension is not None:
            model["dimension"] = idx.dimension
        if idx.tags:
            model["tags"] = dict(idx.tags)
        return model

    # ----- data plane ----------------------------------------------------------

    @staticmethod
    def _data_route(method: str, path: str) -> str:
        routes = {
            ("POST", "/vectors/upsert"): "upsert",
            ("POST", "/query"): "query",
            ("GET", "/vectors/fetch"): "fetch",
            ("POST", "/vectors/update"): "update",
            ("POST", "/vectors/delete"): "delete",
            ("GET", "/vectors/list"): "list",
            ("POST", "/describe_index_stats"): "describe_index_stats",
            ("GET", "/describe_index_stats"): "describe_index_stats",
        }
        op = routes.get((method, path.rstrip("/") or "/"))
        if op is None:
            raise EmulatorError(404, f"Not found: {method} {path}")
        return op

    def _dispatch_data(
        self, op: str, idx: _Index, body: dict[str, Any], request: Request
    ) -> Response:
        body_handlers: dict[str, Callable[[_Index, dict[str, Any]], dict[str, Any]]] = {
            "upsert": self._upsert,
            "query": self._query,
            "update": self._update,
            "delete": self._delete,
            "describe_index_stats": self._stats,
        }
        with self._lock:
            if op == "fetch":
                return JSONResponse(self._fetch(idx, request))
            if op == "list":
                return JSONResponse(self._list(idx, request))
            return JSONResponse(body_handlers[op](idx, body))

    def _validate_record_vectors(
        self, idx: _Index, values: list[float], sparse: tuple[list[int], list[float]] | None
    ) -> None:
        if idx.vector_type == "dense":
            if len(values) != idx.dimension:
                # Real: {"code":3,"message":"Vector dimension 1536 does not match the dimension of the index 3072"}
                raise EmulatorError(
                    400,
                    f"Vector dimension {len(values)} does not match the dimension of the index {idx.dimension}",
                )
        else:
            if values:
                raise EmulatorError(
                    400, "Dense vectors are not supported for sparse indexes; use sparseValues"
                )  # UNVERIFIED
            if sparse is None or not sparse[0]:
                raise EmulatorError(
                    400, "Sparse vector must contain at least one value"
                )  # UNVERIFIED

    def _upsert(self, idx: _Index, body: dict[str, Any]) -> dict[str, Any]:
        """POST /vectors/upsert: all-or-nothing validation, then overwrite by id."""
        vectors = body.get("vectors")
        if not isinstance(vectors, list) or not vectors:
            raise EmulatorError(
                400, "Upsert request must contain at least one vector"
            )  # UNVERIFIED
        if len(vectors) > MAX_UPSERT_VECTORS:
            # UNVERIFIED wording; the limit is the OAS maxLength.
            raise EmulatorError(
                400,
                f"Upsert request can contain at most {MAX_UPSERT_VECTORS} vectors, got {len(vectors)}",
            )
        records: list[_Record] = []
        for raw in vectors:
            if not isinstance(raw, dict):
                raise EmulatorError(400, "Each vector must be a JSON object")
            vid = raw.get("id")
            if not isinstance(vid, str) or not vid:
                raise EmulatorError(400, "Vector ID must be a non-empty string")  # UNVERIFIED
            if len(vid) > MAX_ID_LENGTH:
                raise EmulatorError(
                    400, f"Vector ID exceeds the maximum length of {MAX_ID_LENGTH}"
                )  # UNVERIFIED
            values = _parse_dense(raw.get("values"))
            sparse = _parse_sparse(_get(raw, "sparseValues", "sparse_values"))
            self._validate_record_vectors(idx, values, sparse)
            metadata = normalize_metadata(raw.get("metadata"))
            check_metadata_size(metadata)
            records.append(_Record(vid, values, sparse, metadata))
        ns = idx.namespaces.setdefault(_namespace_key(body.get("namespace")), {})
        for rec in records:
            ns[rec.id] = rec
        return {"upsertedCount": len(records)}

    def _query(self, idx: _Index, body: dict[str, Any]) -> dict[str, Any]:
        """POST /query: brute-force scoring.

        * cosine -> cosine similarity; dotproduct -> dot product; euclidean -> the
          *squared* Euclidean distance (docs: "Querying indexes with this metric returns a
          similarity score equal to the squared Euclidean distance"), lower is better.
        * hybrid (``sparseVector`` with ``vector``) is only allowed on dotproduct indexes
          (docs "Known limitations"); score = dense dot + sparse dot.
        * matches best first, ties broken by id; an unknown namespace or query id gives
          no matches.
        """
        top_k = _get(body, "topK", "top_k")
        if top_k is None:
            raise EmulatorError(400, "Missing required field topK")  # UNVERIFIED
        if not isinstance(top_k, int) or isinstance(top_k, bool) or not (1 <= top_k <= MAX_TOP_K):
            raise EmulatorError(
                400, f"Invalid value for topK: {top_k}. It must be between 1 and {MAX_TOP_K}"
            )  # UNVERIFIED
        if _get(body, "queries") is not None:
            raise EmulatorError(
                400, "The deprecated 'queries' field is not supported by the emulator"
            )
        vector = body.get("vector")
        query_id = body.get("id")
        sparse_q = _parse_sparse(_get(body, "sparseVector", "sparse_vector"), "Sparse query vector")
        if vector is not None and query_id is not None:
            raise EmulatorError(
                400, "Cannot provide both 'id' and 'vector' in the same query"
            )  # UNVERIFIED
        flt = body.get("filter")
        if flt is not None:
            validate_filter(flt)
        include_values = bool(_get(body, "includeValues", "include_values", False))
        include_metadata = bool(_get(body, "includeMetadata", "include_metadata", False))
        ns_name = body.get("namespace") or ""
        ns = idx.namespaces.get(_namespace_key(body.get("namespace")), {})

        dense_q: list[float] | None = None
        if query_id is not None:
            if not isinstance(query_id, str):
                raise EmulatorError(400, "Query id must be a string")
            source = ns.get(query_id)
            if source is None:
                return {"matches": [], "namespace": ns_name, "usage": {"readUnits": 1}}
            if idx.vector_type == "dense":
                dense_q = source.values
            else:
                sparse_q = source.sparse
        elif vector is not None:
            dense_q = _parse_dense(vector)
        if idx.vector_type == "dense":
            if dense_q is None:
                raise EmulatorError(
                    400, "Query must contain either 'vector' or 'id' for dense indexes"
                )  # UNVERIFIED
            if len(dense_q) != idx.dimension:
                # Real: "Query vector dimension 1536 does not match the dimension of the index 768"
                raise EmulatorError(
                    400,
                    f"Query vector dimension {len(dense_q)} does not match the dimension of the index {idx.dimension}",
                )
            if sparse_q is not None and idx.metric != "dotproduct":
                # Docs "Known limitations": only dotproduct indexes support querying sparse-dense vectors.
                raise EmulatorError(
                    400,
                    f"Sparse-dense queries are only supported for indexes with the dotproduct metric, this index uses {idx.metric}",
                )  # UNVERIFIED wording
        else:
            if dense_q:
                raise EmulatorError(
                    400,
                    "Dense query vectors are not supported for sparse indexes; use sparseVector",
                )  # UNVERIFIED
            if sparse_q is None:
                raise EmulatorError(
                    400, "Query must contain 'sparseVector' or 'id' for sparse indexes"
                )  # UNVERIFIED

        candidates = [
            rec
            for rec in ns.values()
            if flt is None
            or matches_filter(rec.metadata, flt, ne_matches_missing=self.ne_matches_missing)
        ]
        scored: list[tuple[float, str, _Record]] = []
        if candidates:
            if idx.vector_type == "dense":
                assert dense_q is not None
                q = np.asarray(dense_q, dtype=np.float64)
                mat = np.asarray([rec.values for rec in candidates], dtype=np.float64)
                if idx.metric == "cosine":
                    norms = np.linalg.norm(mat, axis=1) * np.linalg.norm(q)
                    dots = mat @ q
                    scores = np.divide(dots, norms, out=np.zeros_like(dots), where=norms > 0)
                elif idx.metric == "dotproduct":
                    scores = mat @ q
                else:
                    diff = mat - q
                    scores = np.einsum("ij,ij->i", diff, diff)
                score_list = [float(s) for s in scores]
                if sparse_q is not None:
                    score_list = [
                        s + _sparse_dot(sparse_q, rec.sparse)
                        for s, rec in zip(score_list, candidates, strict=True)
                    ]
            else:
                assert sparse_q is not None
                score_list = [_sparse_dot(sparse_q, rec.sparse) for rec in candidates]
            scored = [(s, rec.id, rec) for s, rec in zip(score_list, candidates, strict=True)]
        if idx.metric == "euclidean":
            scored.sort(key=lambda t: (t[0], t[1]))
        else:
            scored.sort(key=lambda t: (-t[0], t[1]))
        matches = []
        for score, rid, rec in scored[:top_k]:
            match: dict[str, Any] = {
                "id": rid,
                "score": score,
                "values": list(rec.values) if include_values else [],
            }
            if include_values and rec.sparse is not None:
                match["sparseValues"] = _sparse_json(rec.sparse)
            if include_metadata and rec.metadata:
                match["metadata"] = dict(rec.metadata)
            matches.append(match)
        return {
            "matches": matches,
            "namespace": ns_name,
            "usage": {"readUnits": max(1, math.ceil(len(ns) / 1000))},
        }

    def _fetch(self, idx: _Index, request: Request) -> dict[str, Any]:
        """GET /vectors/fetch?ids=a&ids=b&namespace=ns: unknown ids are simply absent."""
        ids = request.query_params.getlist("ids")
        if not ids:
            raise EmulatorError(400, "No IDs provided for fetch query")  # UNVERIFIED
        ns_raw = request.query_params.get("namespace")
        ns = idx.namespaces.get(_namespace_key(ns_raw), {})
        vectors: dict[str, Any] = {}
        for vid in ids:
            rec = ns.get(vid)
            if rec is None:
                continue
            out: dict[str, Any] = {"id": rec.id, "values": list(rec.values)}
            if rec.sparse is not None:
                out["sparseValues"] = _sparse_json(rec.sparse)
            if rec.metadata:
                out["metadata"] = dict(rec.metadata)
            vectors[vid] = out
        return {"vectors": vectors, "namespace": ns_raw or "", "usage": {"readUnits": 1}}

    def _update(self, idx: _Index, body: dict[str, Any]) -> dict[str, Any]:
        """POST /vectors/update: ``values``/``sparseValues`` replace, ``setMetadata`` merges
        key by key (OAS: "the values of the fields specified in it will be added or overwrite
        the previous value").  UNVERIFIED: updating an unknown id is a silent no-op."""
        vid = body.get("id")
        if not isinstance(vid, str) or not vid:
            raise EmulatorError(400, "Vector ID must be a non-empty string")  # UNVERIFIED
        values_raw = body.get("values")
        sparse = _parse_sparse(_get(body, "sparseValues", "sparse_values"))
        set_md_raw = _get(body, "setMetadata", "set_metadata")
        set_md = normalize_metadata(set_md_raw) if set_md_raw is not None else None
        ns = idx.namespaces.get(_namespace_key(body.get("namespace")))
        rec = ns.get(vid) if ns is not None else None
        if rec is None:
            return {}
        new_values = _parse_dense(values_raw) if values_raw is not None else rec.values
        new_sparse = sparse if sparse is not None else rec.sparse
        if values_raw is not None or sparse is not None:
            self._validate_record_vectors(idx, new_values, new_sparse)
        new_md = dict(rec.metadata)
        if set_md is not None:
            new_md.update(set_md)
            check_metadata_size(new_md)
        rec.values, rec.sparse, rec.metadata = new_values, new_sparse, new_md
        return {}

    def _delete(self, idx: _Index, body: dict[str, Any]) -> dict[str, Any]:
        """POST /vectors/delete by ``ids``, ``deleteAll`` or ``filter`` (mutually exclusive).

        * Serverless indexes support delete by metadata filter (docs "Delete data").
        * Deleting from a namespace that does not exist gives 404 "Namespace not found"
          (observed on serverless; ``{"code":5,"message":"Namespace not found"}``).
        * ``deleteAll`` deletes the namespace itself.
        """
        ids = body.get("ids")
        delete_all = bool(_get(body, "deleteAll", "delete_all", False))
        flt = body.get("filter")
        given = sum(x for x in (ids is not None, delete_all, flt is not None))
        if given == 0:
            raise EmulatorError(
                400, "Delete request must specify one of ids, deleteAll or filter"
            )  # UNVERIFIED
        if given > 1:
            raise EmulatorError(
                400, "ids, deleteAll and filter are mutually exclusive"
            )  # UNVERIFIED
        if ids is not None:
            if not isinstance(ids, list) or any(not isinstance(i, str) for i in ids):
                raise EmulatorError(400, "ids must be an array of strings")
            if len(ids) > MAX_DELETE_IDS:
                raise EmulatorError(
                    400, f"Delete request can contain at most {MAX_DELETE_IDS} ids"
                )  # UNVERIFIED
        if flt is not None:
            validate_filter(flt)
        key = _namespace_key(body.get("namespace"))
        ns = idx.namespaces.get(key)
        if ns is None:
            raise EmulatorError(404, "Namespace not found")
        if delete_all:
            del idx.namespaces[key]
        elif ids is not None:
            for vid in ids:
                ns.pop(vid, None)
        else:
            for vid in [
                r.id
                for r in ns.values()
                if matches_filter(r.metadata, flt, ne_matches_missing=self.ne_matches_missing)
            ]:
                del ns[vid]
        if not ns and key in idx.namespaces:
            # UNVERIFIED: the emulator drops a namespace once it holds no records.
            del idx.namespaces[key]
        return {}

    def _list(self, idx: _Index, request: Request) -> dict[str, Any]:
        """GET /vectors/list: ids with ``prefix`` in bitwise ("C" collation) order, ``limit``
        per page (default 100), ``pagination.next`` only while more ids remain."""
        params = request.query_params
        prefix = params.get("prefix") or ""
        limit_raw = params.get("limit")
        try:
            limit = int(limit_raw) if limit_raw not in (None, "") else DEFAULT_LIST_LIMIT
        except ValueError:
            raise EmulatorError(400, f"Invalid limit: {limit_raw}") from None
        if limit < 1:
            raise EmulatorError(400, "limit must be greater than 0")  # UNVERIFIED
        token = params.get("paginationToken")
        ns_raw = params.get("namespace")
        ns = idx.namespaces.get(_namespace_key(ns_raw), {})
        ids = sorted((vid for vid in ns if vid.startswith(prefix)), key=lambda s: s.encode("utf-8"))
        if token:
            after = _decode_token(token).encode("utf-8")
            ids = [vid for vid in ids if vid.encode("utf-8") > after]
        page = ids[:limit]
        out: dict[str, Any] = {
            "vectors": [{"id": vid} for vid in page],
            "namespace": ns_raw or "",
            "usage": {"readUnits": 1},
        }
        if len(ids) > limit:
            out["pagination"] = {"next": _encode_token(page[-1])}
        return out

    def _stats(self, idx: _Index, body: dict[str, Any]) -> dict[str, Any]:
        """POST /describe_index_stats -> ``IndexDescription``.

        Serverless rejects a ``filter`` (OAS: "Serverless indexes do not support filtering
        describe_index_stats by metadata"); see ``stats_filter_supported``.
        """
        flt = body.get("filter")
        if flt is not None:
            if not self.stats_filter_supported:
                raise EmulatorError(
                    400,
                    "Serverless and starter indexes do not support describing index stats with metadata filtering.",
                )
            validate_filter(flt)
        namespaces: dict[str, Any] = {}
        total = 0
        for name, ns in idx.namespaces.items():
            count = (
                len(ns)
                if flt is None
                else sum(
                    1
                    for r in ns.values()
                    if matches_filter(r.metadata, flt, ne_matches_missing=self.ne_matches_missing)
                )
            )
            total += len(
                ns
            )  # OAS: totalVectorCount is "regardless of whether a metadata filter expression was passed"
            if count:
                namespaces[name if name else self.default_namespace_stats_key] = {
                    "vectorCount": count
                }
        out: dict[str, Any] = {
            "namespaces": namespaces,
            "indexFullness": 0.0,
            "totalVectorCount": total,
            "metric": idx.metric,
            "vectorType": idx.vector_type,
        }
        if idx.dimension is not None:
            out["dimension"] = idx.dimension
        return out
