"""Pinecone adapter: one serverless index, one namespace per tenant, over the REST SDK.

Settings (`PineconeOptions`, environment prefix ``RAG_PINECONE_``): ``PINECONE_API_KEY`` (or
``RAG_PINECONE_API_KEY``), ``RAG_PINECONE_INDEX`` (default: ``RAG_COLLECTION`` lowercased,
``_`` -> ``-``), ``RAG_PINECONE_HOST`` (an index's data-plane URL, e.g. Pinecone Local or an
emulator: the control plane is then not used), ``RAG_PINECONE_CONTROLLER_HOST`` (default
Pinecone's), ``RAG_PINECONE_CLOUD``/``RAG_PINECONE_REGION``/``RAG_PINECONE_METRIC`` (used when
the index is created), batch size, retries, timeouts, deletion protection.

Capabilities: scanning (list ids, then fetch), a change token (a sentinel record in the
reserved namespace ``__rag_meta__``), and native hybrid search (`PineconeHybridStore`) only on
a dotproduct index: sparse-dense vectors whose sparse side comes from `rag_app.sparse`.

**Tenants.** Each tenant's records live in their own namespace (records without a tenant in
the default namespace ``""``); reads search only the named tenant's namespace, and the
portable access filter runs inside Pinecone's query as well (two walls).

**Index lifecycle.** Opening never creates anything: a missing index is created by the first
write (ingest) when ``create_if_missing`` is on, and logged; a read of a missing index is a
clear error (never a silent create). An existing index must have the embedding dimension and
was tagged with the embedding model, else `ConfigError` (as for Chroma).

**Metadata encoding** (Pinecone stores strings, numbers as 64-bit floats, booleans and lists of
strings). Reserved keys, rejected in callers' metadata: ``text`` (the chunk text, where
langchain-pinecone keeps it too) and every ``_rag_*`` key:

* ``_rag_ints``: the int-valued fields, turned back into ints on every read (Pinecone
  returns ``2020`` as ``2020.0``);
* ``_rag_lists``: which fields hold lists (``s:<field>`` for lists of strings, stored as
  they are; ``t:<field>`` for lists holding numbers or booleans, stored as typed strings
  ``i:3``, ``f:0.5``, ``b:true``, ``s:x``), always present (with a ``*`` sentinel) so that
  the filter translation never depends on how Pinecone treats a missing field.

**Filter semantics** (`translate`): Pinecone's filter language is Mongo-like but matches a
list field element-wise (``{"tags": {"$eq": "x"}}`` matches ``["x", "y"]``), while the
portable grammar keeps ``$eq/$in/$ne/$nin`` for single values and ``$contains`` for lists. The
translation adds a guard on ``_rag_lists`` to each comparison, and spells out "a missing field
passes ``$ne``/``$nin``" with ``$exists`` (how Pinecone treats a missing field under
``$ne`` is not documented). Boolean ``$in``/``$nin`` become ``$or``/``$and`` of ``$eq``/``$ne``.

Why the native SDK and not langchain-pinecone 0.2.13 for the data path (one reason a line):
* ``PineconeVectorStore.add_texts`` adds ``"text"`` to the caller's metadata dicts;
* it has no ``get_by_ids`` (the permission re-check needs records by id);
* it returns every number as a float (``2020.0``), and cannot store lists of numbers;
* it has no namespace-per-tenant guard (one namespace per store object).
`PineconeStore.as_langchain` still gives a notebook user its `PineconeVectorStore`.
"""

from __future__ import annotations

import json
import logging
import math
import random
import re
import time
import uuid
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any, TypeVar

from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from rag_app.access.filters import And, Cmp, Node, Or, matches
from rag_app.errors import ConfigError, DimensionMismatchError, StoreError
from rag_app.stores.base import (
    CollectionInfo,
    CollectionMetric,
    Metadata,
    StoreHit,
    StoreInfo,
    StoreRecord,
)
from rag_app.stores.registry import StoreSpec

if TYPE_CHECKING:
    from langchain_core.embeddings import Embeddings
    from langchain_pinecone import PineconeVectorStore

    from rag_app.sparse import SparseEncoder

log = logging.getLogger(__name__)

T = TypeVar("T")

DEFAULT_CONTROLLER = "https://api.pinecone.io"
TEXT_KEY = "text"  # where the chunk text lives (langchain-pinecone's default text_key)
RESERVED_PREFIX = "_rag_"
INTS_KEY = "_rag_ints"
LISTS_KEY = "_rag_lists"
_LISTS_SENTINEL = "*"  # keeps _rag_lists present and non-empty on every record
META_NAMESPACE = "__rag_meta__"  # holds the change-token sentinel, hidden from reads
TOKEN_ID = "rag-change-token"  # noqa: S105 - a record id, not a secret
DEFAULT_NAMESPACE_STATS_KEY = "__default__"  # how stats name the default namespace
MAX_METADATA_BYTES = 40 * 1024  # Pinecone's per-record metadata limit
MAX_REQUEST_BYTES = 2 * 1024 * 1024 * 9 // 10  # upsert requests stay under 2 MB (with margin)
MAX_TOP_K = 10_000
FETCH_BATCH = 100  # ids per fetch (they travel in the URL)
LIST_PAGE = 100
DELETE_BATCH = 1000
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
_INDEX_NAME_RE = re.compile(r"^[a-z0-9]([a-z0-9-]{0,43}[a-z0-9])?$")
_native_hybrid_note_logged = False


class PineconeOptions(BaseSettings):
    """Pinecone-specific settings (environment prefix ``RAG_PINECONE_``)."""

    model_config = SettingsConfigDict(
        env_prefix="RAG_PINECONE_", extra="forbid", populate_by_name=True
    )

    index: str | None = Field(
        None, description="Index name; default: RAG_COLLECTION lowercased with '_' -> '-'."
    )
    host: str | None = Field(
        None,
        description="The index's data-plane URL (e.g. http://127.0.0.1:5081 for Pinecone "
        "Local); set, the control plane is not used.",
    )
    controller_host: str | None = Field(
        None, description=f"Control-plane URL; default {DEFAULT_CONTROLLER}."
    )
    cloud: str = Field("aws", description="Serverless cloud of a created index.")
    region: str = Field("us-east-1", description="Serverless region of a created index.")
    metric: CollectionMetric = Field(
        "cosine",
        description="Metric of a created index; dotproduct enables native hybrid search.",
    )
    api_key: SecretStr | None = Field(
        None, validation_alias=AliasChoices("RAG_PINECONE_API_KEY", "PINECONE_API_KEY")
    )
    batch_size: int = Field(100, ge=1, le=1000, description="Records per upsert request.")
    max_retries: int = Field(
        5, ge=1, le=20, description="Attempts per request (429, 5xx, timeouts) in all."
    )
    retry_base_delay_s: float = Field(0.5, ge=0, description="First back-off delay.")
    timeout_s: float = Field(30.0, gt=0, description="Per-request timeout (data plane).")
    deletion_protection: bool = False
    create_if_missing: bool = Field(True, description="The first write creates a missing index.")


# -- metadata encoding -------------------------------------------------------------------------


def _encode_element(value: Any) -> str:
    if isinstance(value, bool):
        return "b:true" if value else "b:false"
    if isinstance(value, int):
        return f"i:{value}"
    if isinstance(value, float):
        return f"f:{value!r}"
    return f"s:{value}"


def _decode_element(text: str) -> Any:
    kind, _, raw = text.partition(":")
    if kind == "b":
        return raw == "true"
    if kind == "i":
        return int(raw)
    if kind == "f":
        return float(raw)
    return raw


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def encode_metadata(record_id: str, text: str, metadata: Metadata) -> dict[str, Any]:
    """The metadata Pinecone stores for one record (see the module docstring); a clear
    `StoreError` naming the record and field for what Pinecone cannot hold."""
    out: dict[str, Any] = {}
    ints: list[str] = []
    lists: list[str] = [_LISTS_SENTINEL]
    for key, value in metadata.items():
        where = f"record {record_id!r}, metadata field {key!r}"
        if not isinstance(key, str) or not key:
            raise StoreError(f"record {record_id!r}: metadata keys must be non-empty strings")
        if key == TEXT_KEY or key.startswith(RESERVED_PREFIX):
            raise StoreError(
                f"{where}: the name is reserved by the Pinecone adapter ('{TEXT_KEY}' holds the "
                f"chunk text, '{RESERVED_PREFIX}*' its type markers); rename the field"
            )
        if value is None:
            continue  # the grammar treats None as missing
        if isinstance(value, bool | str):
            out[key] = value
        elif _number(value):
            if not math.isfinite(value):
                raise StoreError(f"{where}: Pinecone cannot store {value!r}")
            if isinstance(value, int):
                if abs(value) > 2**53:
                    raise StoreError(
                        f"{where}: {value} is too large; Pinecone stores numbers as 64-bit floats"
                    )
                ints.append(key)
            out[key] = value
        elif isinstance(value, list | tuple):
            items = list(value)
            if all(isinstance(item, str) for item in items):
                out[key] = items
                lists.append(f"s:{key}")
            elif all(
                isinstance(item, bool | str)
                or (_number(item) and math.isfinite(item) and abs(item) <= 2**53)
                for item in items
            ):
                # Pinecone stores lists of strings only: numbers and booleans travel typed.
                out[key] = [_encode_element(item) for item in items]
                lists.append(f"t:{key}")
            else:
                raise StoreError(
                    f"{where}: lists may hold strings, numbers and booleans only, got {value!r}"
                )
        else:
            raise StoreError(
                f"{where}: Pinecone stores strings, numbers, booleans and lists of them, "
                f"not {type(value).__name__} ({value!r})"
            )
    out[TEXT_KEY] = text
    if ints:
        out[INTS_KEY] = ints
    out[LISTS_KEY] = lists
    size = len(json.dumps(out, separators=(",", ":"), ensure_ascii=False).encode("utf-8"))
    if size > MAX_METADATA_BYTES:
        raise StoreError(
            f"record {record_id!r}: its metadata and text take {size} bytes, over Pinecone's "
            f"limit of {MAX_METADATA_BYTES} bytes per record; use smaller chunks "
            "(RAG_CHUNK_SIZE) or fewer metadata fields. Nothing was written."
        )
    return out


def decode_metadata(raw: dict[str, Any] | None) -> tuple[str, Metadata]:
    """(text, metadata) as the caller stored them: ints, lists and types restored."""
    meta = dict(raw or {})
    text = meta.pop(TEXT_KEY, "")
    ints = meta.pop(INTS_KEY, None) or []
    lists = meta.pop(LISTS_KEY, None) or []
    for key in [k for k in meta if k.startswith(RESERVED_PREFIX)]:
        del meta[key]
    for key in ints:
        value = meta.get(key)
        if isinstance(value, float) and value.is_integer():
            meta[key] = int(value)
    for marker in lists:
        if marker.startswith("t:") and isinstance(meta.get(marker[2:]), list):
            meta[marker[2:]] = [_decode_element(str(item)) for item in meta[marker[2:]]]
    return str(text or ""), meta


# -- filter translation ------------------------------------------------------------------------


def _is_list(field: str) -> dict[str, Any]:
    return {LISTS_KEY: {"$in": [f"s:{field}", f"t:{field}"]}}


def _not_list(field: str) -> dict[str, Any]:
    return {LISTS_KEY: {"$nin": [f"s:{field}", f"t:{field}"]}}


def _all(*parts: dict[str, Any]) -> dict[str, Any]:
    return parts[0] if len(parts) == 1 else {"$and": list(parts)}


def _any(*parts: dict[str, Any]) -> dict[str, Any]:
    return parts[0] if len(parts) == 1 else {"$or": list(parts)}


def _element_codes(value: Any) -> list[str]:
    """The typed-list strings equal to `value` under the grammar (1 == 1.0, True != 1)."""
    if isinstance(value, bool):
        return [_encode_element(value)]
    if isinstance(value, str):
        return [_encode_element(value)]
    codes = [_encode_element(float(value))]
    if float(value).is_integer():
        codes.insert(0, f"i:{int(value)}")
        if value == 0:
            codes.append("f:-0.0")
    return codes


def _cmp(node: Cmp) -> dict[str, Any]:
    field, op, value = node.field, node.op, node.value
    values = list(value) if isinstance(value, tuple) else [value]
    missing = {field: {"$exists": False}}
    if op == "$eq":
        return _all({field: {"$eq": value}}, _not_list(field))
    if op == "$in":
        if isinstance(values[0], bool):
            return _all(_any(*({field: {"$eq": v}} for v in values)), _not_list(field))
        return _all({field: {"$in": values}}, _not_list(field))
    if op == "$ne":
        return _any(missing, _is_list(field), {field: {"$ne": value}})
    if op == "$nin":
        if isinstance(values[0], bool):
            present = _all(*({field: {"$ne": v}} for v in values))
        else:
            present = {field: {"$nin": values}}
        return _any(missing, _is_list(field), present)
    if op in ("$gt", "$gte", "$lt", "$lte"):
        return {field: {op: value}}  # lists and non-numbers never compare as numbers
    if op == "$contains":
        typed = _all({field: {"$in": _element_codes(value)}}, {LISTS_KEY: {"$in": [f"t:{field}"]}})
        if isinstance(value, str):
            native = _all({field: {"$in": [value]}}, {LISTS_KEY: {"$in": [f"s:{field}"]}})
            return _any(native, typed)
        return typed
    raise StoreError(f"cannot translate operator {op} for Pinecone")


def translate(node: Node) -> dict[str, Any]:
    """Portable grammar -> Pinecone's metadata filter, with the grammar's exact semantics on
    records written by this adapter (see the module docstring)."""
    if isinstance(node, And | Or):
        parts = [translate(item) for item in node.items]
        return _all(*parts) if isinstance(node, And) else _any(*parts)
    if isinstance(node, Cmp):
        return _cmp(node)
    raise StoreError(f"cannot translate filter node {node!r}")


# -- the store -----------------------------------------------------------------------------------


class PineconeRequestError(StoreError):
    """A Pinecone request failed (after the retries its status allows)."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


def _namespace(tenant: str | None) -> str:
    if tenant is None:
        return ""
    if not isinstance(tenant, str):
        raise StoreError(f"tenant must be a string, got {tenant!r}")
    if tenant in (META_NAMESPACE, DEFAULT_NAMESPACE_STATS_KEY):
        raise StoreError(f"tenant name {tenant!r} is reserved by the Pinecone adapter")
    return tenant


def _host_of(index: Any) -> str:
    """The data-plane URL an SDK index client talks to ("" when unknown)."""
    config = getattr(index, "_config", None)
    return str(getattr(config, "host", "") or "")


def _floats(vector: Sequence[float]) -> list[float]:
    return [float(x) for x in vector]  # the SDK rejects ints and numpy floats


class PineconeStore:
    """`VectorStorePort` + `Scannable` + `ChangeTracking` over one Pinecone index."""

    def __init__(
        self,
        *,
        index_name: str,
        dimension: int,
        embedding_model: str,
        options: PineconeOptions,
        client: Any,
        index: Any | None,
        metric: str,
    ) -> None:
        self._name = index_name
        self._options = options
        self._client = client
        self._index = index
        self._metric = metric
        self._closed = False
        host = options.host or _host_of(index)
        controller = options.controller_host or DEFAULT_CONTROLLER
        self._info = StoreInfo(
            backend="pinecone",
            location=str(host or f"{controller} (index {index_name} not created yet)"),
            collection=index_name,
            dimension=dimension,
            embedding_model=embedding_model,
            extra={"metric": metric, "tenants": "one namespace per tenant"},
        )

    # -- plumbing ----------------------------------------------------------------------------
    @property
    def info(self) -> StoreInfo:
        return self._info

    def _call(self, what: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """One SDK call with bounded retries (exponential back-off with jitter) on 429, 5xx
        and timeouts. The SDK's own urllib3 retries are switched off at open time, so
        ``max_retries`` bounds the attempts in all."""
        import urllib3.exceptions
        from pinecone.exceptions import PineconeApiException

        attempts = self._options.max_retries
        for attempt in range(1, attempts + 1):
            try:
                return fn(*args, **kwargs)
            except PineconeApiException as exc:
                status = getattr(exc, "status", None)
                reason = str(getattr(exc, "body", None) or getattr(exc, "reason", "") or exc)
                if status not in RETRY_STATUSES or attempt == attempts:
                    tries = f" after {attempt} attempts" if attempt > 1 else ""
                    raise PineconeRequestError(
                        f"Pinecone {what} on index {self._name!r} failed with HTTP {status}"
                        f"{tries}: {reason.strip()[:500]}",
                        status,
                    ) from exc
                why = f"HTTP {status}"
            except (urllib3.exceptions.HTTPError, OSError) as exc:
                if attempt == attempts:
                    raise PineconeRequestError(
                        f"Pinecone {what} on index {self._name!r} failed after {attempt} "
                        f"attempts (timeout or connection error): {exc}"
                    ) from exc
                why = type(exc).__name__
            delay = min(20.0, self._options.retry_base_delay_s * 2 ** (attempt - 1))
            delay *= 0.5 + random.random() / 2  # noqa: S311 - jitter, not cryptography
            log.warning(
                "Pinecone %s: %s (attempt %d of %d); retrying in %.2fs",
                what,
                why,
                attempt,
                attempts,
                delay,
            )
            time.sleep(delay)
        raise AssertionError("unreachable")  # pragma: no cover

    def _data(self, what: str, method: str, **kwargs: Any) -> Any:
        index = self._require_index(what)
        fn = getattr(index, method)
        return self._call(what, fn, _request_timeout=self._options.timeout_s, **kwargs)

    def _require_index(self, purpose: str) -> Any:
        if self._closed:
            raise StoreError(f"the Pinecone store of index {self._name!r} is closed")
        if self._index is None:
            raise StoreError(
                f"Pinecone index {self._name!r} does not exist yet, so it cannot {purpose}: "
                "ingest documents first (the first write creates it), or check "
                "RAG_PINECONE_INDEX"
            )
        return self._index

    def _ensure_index(self) -> Any:
        if self._index is None and not self._closed:
            self._index = _create_index(self)
            self._info = replace(self._info, location=_host_of(self._index))
        return self._index

    def create_index(self) -> None:
        """Create the index now if it is missing (normally the first write does)."""
        self._ensure_index()

    def _check_dimension(self, vectors: Sequence[Sequence[float]]) -> None:
        for vec in vectors:
            if len(vec) != self._info.dimension:
                raise DimensionMismatchError(
                    f"embedding has {len(vec)} dimensions, Pinecone index "
                    f"{self._info.collection!r} expects {self._info.dimension}"
                )

    def _stats_namespaces(self) -> dict[str, int]:
        """namespace ("" = default) -> record count, without the meta namespace."""
        if self._index is None:
            return {}
        stats = self._data("describe_index_stats", "describe_index_stats")
        out: dict[str, int] = {}
        for name, summary in (stats.namespaces or {}).items():
            key = "" if name == DEFAULT_NAMESPACE_STATS_KEY else str(name)
            if key != META_NAMESPACE:
                out[key] = out.get(key, 0) + int(summary.vector_count or 0)
        return out

    # -- writes ------------------------------------------------------------------------------
    def _sparse(self, text: str) -> dict[str, list[Any]] | None:
        return None  # dense only; PineconeHybridStore adds sparse values

    def upsert(
        self,
        ids: Sequence[str],
        texts: Sequence[str],
        vectors: Sequence[Sequence[float]],
        metadatas: Sequence[Metadata],
    ) -> None:
        if not (len(ids) == len(texts) == len(vectors) == len(metadatas)):
            raise StoreError("upsert: ids, texts, vectors and metadatas differ in length")
        self._check_dimension(vectors)
        # Everything is validated and encoded before the first request is sent.
        by_namespace: dict[str, list[tuple[dict[str, Any], int]]] = {}
        for record_id, text, vector, metadata in zip(ids, texts, vectors, metadatas, strict=True):
            if not isinstance(record_id, str) or not record_id:
                raise StoreError(f"record ids must be non-empty strings, got {record_id!r}")
            namespace = _namespace(metadata.get("tenant"))
            record: dict[str, Any] = {
                "id": record_id,
                "values": _floats(vector),
                "metadata": encode_metadata(record_id, text, metadata),
            }
            sparse = self._sparse(text)
            if sparse is not None and sparse["indices"]:
                record["sparse_values"] = sparse
            size = len(json.dumps(record["metadata"], ensure_ascii=False).encode())
            size += 24 * (len(vector) + 2 * len(sparse["indices"] if sparse else ())) + 64
            by_namespace.setdefault(namespace, []).append((record, size))
        if not ids:
            return
        self._ensure_index()
        try:
            for namespace, records in by_namespace.items():
                for batch in _batches(records, self._options.batch_size, MAX_REQUEST_BYTES):
                    self._data("upsert", "upsert", vectors=batch, namespace=namespace)
        except BaseException:
            self._touch_after_failure()
            raise
        self._touch()

    def delete(self, ids: Sequence[str], *, tenant: str | None = None) -> None:
        wanted = list(dict.fromkeys(ids))
        if not wanted or self._index is None:
            return
        namespaces = [_namespace(tenant)] if tenant is not None else list(self._stats_namespaces())
        try:
            for namespace in namespaces:
                for start in range(0, len(wanted), DELETE_BATCH):
                    batch = wanted[start : start + DELETE_BATCH]
                    try:
                        self._data("delete", "delete", ids=batch, namespace=namespace)
                    except PineconeRequestError as exc:
                        if exc.status != 404:  # a namespace that does not exist holds nothing
                            raise
        except BaseException:
            self._touch_after_failure()
            raise
        self._touch()

    # -- reads -------------------------------------------------------------------------------
    def _hits(self, response: Any) -> list[StoreHit]:
        hits = []
        for match in response.matches or []:
            text, metadata = decode_metadata(match.metadata)
            hits.append(
                StoreHit(id=match.id, text=text, metadata=metadata, score=float(match.score))
            )
        return hits

    def query(
        self, vector: Sequence[float], k: int, where: Node | None, *, tenant: str | None = None
    ) -> list[StoreHit]:
        self._check_dimension([vector])
        namespace = _namespace(tenant)
        if k < 1:
            return []
        kwargs: dict[str, Any] = {
            "vector": _floats(vector),
            "top_k": min(k, MAX_TOP_K),
            "namespace": namespace,
            "include_metadata": True,
            "include_values": False,
        }
        if where is not None:
            kwargs["filter"] = translate(where)
        return self._hits(self._data("query", "query", **kwargs))

    def get(self, ids: Sequence[str], *, tenant: str | None = None) -> list[StoreRecord]:
        wanted = list(dict.fromkeys(ids))
        if not wanted:
            return []
        return list(self._fetch(wanted, _namespace(tenant), with_text=True))

    def _fetch(self, ids: list[str], namespace: str, *, with_text: bool) -> Iterator[StoreRecord]:
        for record, _ in self._fetch_with_values(ids, namespace):
            yield record if with_text else StoreRecord(id=record.id, metadata=record.metadata)

    def _fetch_with_values(
        self, ids: list[str], namespace: str
    ) -> Iterator[tuple[StoreRecord, Sequence[float]]]:
        """The records of `ids` that exist (with text), each with its vector as the SDK
        returned it, in batches."""
        for start in range(0, len(ids), FETCH_BATCH):
            batch = ids[start : start + FETCH_BATCH]
            response = self._data("fetch", "fetch", ids=batch, namespace=namespace)
            found = response.vectors or {}
            for record_id in batch:
                vector = found.get(record_id)
                if vector is None:
                    continue  # deleted since it was listed
                text, metadata = decode_metadata(vector.metadata)
                record = StoreRecord(id=record_id, metadata=metadata, text=text)
                yield record, vector.values or []

    def _listed(self, tenant: str | None) -> Iterator[tuple[str, list[str]]]:
        """Pages of ids as (namespace, ids) for `tenant` (None: every namespace). Pinecone
        lists ids only, by prefix, a page at a time."""
        if self._index is None:
            return
        namespaces = [_namespace(tenant)] if tenant is not None else list(self._stats_namespaces())
        for namespace in namespaces:
            token: str | None = None
            while True:
                kwargs: dict[str, Any] = {"namespace": namespace, "limit": LIST_PAGE}
                if token:
                    kwargs["pagination_token"] = token
                page = self._data("list", "list_paginated", **kwargs)
                page_ids = [v.id for v in (page.vectors or [])]
                yield namespace, page_ids
                pagination = getattr(page, "pagination", None)
                token = getattr(pagination, "next", None) if pagination else None
                if not token or not page_ids:
                    break

    def records_with_vectors(
        self, *, tenant: str | None = None
    ) -> Iterator[tuple[StoreRecord, list[float]]]:
        """Every record of `tenant` (None: every namespace) with its text and vector, for
        export and migration: pages of listed ids, fetched with their values."""
        for namespace, page_ids in self._listed(tenant):
            for record, values in self._fetch_with_values(page_ids, namespace):
                yield record, [float(x) for x in values]

    def records(
        self, where: Node | None = None, *, tenant: str | None = None, with_text: bool = False
    ) -> Iterator[StoreRecord]:
        """Every record (of `tenant`, or of every namespace when None) matching `where`.
        Pinecone lists ids only (by prefix), so this lists a page of ids, fetches them, and
        filters in Python with the grammar's reference semantics."""
        for namespace, page_ids in self._listed(tenant):
            for record in self._fetch(page_ids, namespace, with_text=with_text):
                if matches(where, record.metadata):
                    yield record

    def count(self, *, tenant: str | None = None) -> int:
        namespaces = self._stats_namespaces()
        if tenant is None:
            return sum(namespaces.values())
        return namespaces.get(_namespace(tenant), 0)

    # -- change tracking ---------------------------------------------------------------------
    def change_token(self) -> str:
        """A token that every write (from any host) replaces: a sentinel record's metadata."""
        if self._index is None:
            return ""
        response = self._data("fetch", "fetch", ids=[TOKEN_ID], namespace=META_NAMESPACE)
        vector = (response.vectors or {}).get(TOKEN_ID)
        return str((vector.metadata or {}).get("token", "")) if vector is not None else ""

    def _sentinel_metadata(self) -> dict[str, Any] | None:
        response = self._data("fetch", "fetch", ids=[TOKEN_ID], namespace=META_NAMESPACE)
        vector = (response.vectors or {}).get(TOKEN_ID)
        return dict(vector.metadata or {}) if vector is not None else None

    def _touch_after_failure(self) -> None:
        # Earlier batches of a failed call may have been written: record a change, without
        # hiding the error that is on its way up.
        try:
            self._touch()
        except StoreError:
            log.warning("could not record a partial change of Pinecone index %s", self._name)

    def _touch(self) -> None:
        """Record that the index changed (after every write or delete)."""
        if self._index is None:
            return
        unit = [0.0] * self._info.dimension
        unit[0] = 1.0
        record = {
            "id": TOKEN_ID,
            "values": unit,
            "metadata": {
                "token": uuid.uuid4().hex,
                "embedding_model": self._info.embedding_model,
                "dimension": self._info.dimension,
            },
        }
        try:
            self._data("record the change", "upsert", vectors=[record], namespace=META_NAMESPACE)
        except StoreError as exc:
            raise StoreError(
                f"Pinecone wrote the records but could not record the change: {exc}"
            ) from exc

    # -- the rest ----------------------------------------------------------------------------
    def as_langchain(
        self, embeddings: Embeddings, *, tenant: str | None = None
    ) -> PineconeVectorStore:
        """langchain-pinecone's `PineconeVectorStore` over this index and `tenant`'s namespace,
        for admin experiments in a notebook.

        WARNING: it BYPASSES PERMISSIONS (no tenant guard, no access filter, no re-check), and
        it reads the raw stored metadata: numbers as floats, the adapter's ``_rag_*`` markers,
        typed lists as strings. Never hand it to end users.
        """
        from langchain_pinecone import PineconeVectorStore

        warnings.warn(
            "as_langchain() returns a PineconeVectorStore that BYPASSES PERMISSIONS; use it for "
            "admin experiments only",
            UserWarning,
            stacklevel=2,
        )
        return PineconeVectorStore(
            index=self._require_index("give a LangChain store"),
            embedding=embeddings,
            text_key=TEXT_KEY,
            namespace=_namespace(tenant) or None,
        )

    def close(self) -> None:
        index, self._index = self._index, None
        if index is not None:
            try:
                index.close()
            except Exception:  # closing is best effort
                log.debug("closing the Pinecone index client failed", exc_info=True)
        self._closed = True

    # -- administration (`Administrable`): the control plane -----------------------------------
    def _control(self, purpose: str) -> Any:
        if self._options.host:
            raise ConfigError(
                f"cannot {purpose}: RAG_PINECONE_HOST points at one index's data plane, so the "
                "control plane is not used; unset it (RAG_PINECONE_CONTROLLER_HOST selects "
                "another control plane)"
            )
        return self._client

    def _describe_model(self, model: Any) -> CollectionInfo:
        data = model.to_dict() if hasattr(model, "to_dict") else dict(model)
        name, host = str(data["name"]), str(data.get("host") or "")
        tenants: dict[str, int] = {}
        if host:
            index = self._client.Index(host=host)
            try:
                stats = self._call(
                    "describe_index_stats",
                    index.describe_index_stats,
                    _request_timeout=self._options.timeout_s,
                )
            finally:
                try:
                    index.close()
                except Exception:  # best effort
                    log.debug("closing an index client failed", exc_info=True)
            for ns, summary in (stats.namespaces or {}).items():
                key = "" if ns == DEFAULT_NAMESPACE_STATS_KEY else str(ns)
                if key != META_NAMESPACE:
                    tenants[key] = tenants.get(key, 0) + int(summary.vector_count or 0)
        tags = _tags(model)
        serverless = (data.get("spec") or {}).get("serverless") or {}
        dimension = data.get("dimension")
        return CollectionInfo(
            name=name,
            dimension=int(dimension) if dimension is not None else None,
            metric=str(data.get("metric") or ""),
            count=sum(tenants.values()),
            per_tenant=dict(sorted(tenants.items())),
            embedding_model=tags.get("embedding_model"),
            deletion_protection=str(data.get("deletion_protection")) == "enabled",
            extra={
                "host": host,
                "cloud": serverless.get("cloud"),
                "region": serverless.get("region"),
                "tags": tags,
                "tenants": "one namespace per tenant",
            },
        )

    def list_collections(self) -> list[CollectionInfo]:
        client = self._control("list indexes")
        listed = self._call("list_indexes", client.list_indexes)
        return sorted((self._describe_model(m) for m in listed), key=lambda c: c.name)

    def _describe_index(self, name: str) -> Any:
        client = self._control("describe an index")
        try:
            return self._call("describe_index", client.describe_index, name)
        except PineconeRequestError as exc:
            if exc.status == 404:
                raise ConfigError(f"Pinecone index {name!r} does not exist") from exc
            raise

    def describe_collection(self, name: str) -> CollectionInfo:
        return self._describe_model(self._describe_index(name))

    def create_collection(
        self,
        name: str,
        *,
        dimension: int,
        embedding_model: str,
        metric: str = "cosine",
        deletion_protection: bool = False,
        filterable_fields: Any = None,
        cloud: str | None = None,
        region: str | None = None,
    ) -> CollectionInfo:
        """A serverless index tagged with the embedding model. `filterable_fields` is not
        sent: the SDK (7.3.0, API 2025-04) has selective metadata indexing (`metadata_config`)
        for pod indexes only, so a serverless index indexes every metadata field."""
        from pinecone import ServerlessSpec

        if metric not in ("cosine", "dotproduct"):
            raise ConfigError(
                f"rag_app's Pinecone indexes use cosine or dotproduct (hybrid), not {metric!r}"
            )
        if not _INDEX_NAME_RE.match(name):
            raise ConfigError(
                f"{name!r} is not a valid Pinecone index name: 1-45 lowercase letters, digits "
                "or '-', not starting or ending with '-'"
            )
        client = self._control("create an index")
        cloud, region = cloud or self._options.cloud, region or self._options.region
        try:
            self._call(
                "create_index",
                client.create_index,
                name=name,
                dimension=dimension,
                metric=metric,
                spec=ServerlessSpec(cloud=cloud, region=region),
                deletion_protection="enabled" if deletion_protection else "disabled",
                tags={"app": "rag_app", "embedding_model": embedding_model[:120]},
            )
        except PineconeRequestError as exc:
            if exc.status == 409:
                raise ConfigError(f"Pinecone index {name!r} already exists") from exc
            raise
        log.warning("created Pinecone index %r (serverless %s/%s)", name, cloud, region)
        return self.describe_collection(name)

    def set_deletion_protection(self, name: str, enabled: bool) -> None:
        self._describe_index(name)  # a clear error when missing
        client = self._control("configure an index")
        self._call(
            "configure_index",
            client.configure_index,
            name=name,
            deletion_protection="enabled" if enabled else "disabled",
        )

    def delete_collection(self, name: str) -> None:
        client = self._control("delete an index")
        try:
            self._call("delete_index", client.delete_index, name)
        except PineconeRequestError as exc:
            if exc.status == 403:
                raise ConfigError(
                    f"Pinecone index {name!r} has deletion protection on; turn it off first: "
                    f"rag-app stores protect {name} --off"
                ) from exc
            if exc.status == 404:
                raise ConfigError(f"Pinecone index {name!r} does not exist") from exc
            raise
        if name == self._name:
            self._index = None  # this store's index is gone


class PineconeHybridStore(PineconeStore):
    """`PineconeStore` on a dotproduct index, plus `NativeHybrid`: records carry BM25-style
    sparse vectors (`rag_app.sparse.SparseEncoder`), and a hybrid query weighs the dense
    vector by ``alpha`` and the sparse one by ``1 - alpha`` (Pinecone's convex combination)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        from rag_app.sparse import SparseEncoder

        self._encoder: SparseEncoder = SparseEncoder()

    def _sparse(self, text: str) -> dict[str, list[Any]] | None:
        return self._encoder.encode_document(text)

    def hybrid_query(
        self,
        text: str,
        vector: Sequence[float],
        k: int,
        where: Node | None,
        *,
        tenant: str | None,
        alpha: float,
    ) -> list[StoreHit]:
        if not 0.0 <= alpha <= 1.0:
            raise StoreError(f"hybrid alpha must be between 0 and 1, got {alpha}")
        self._check_dimension([vector])
        namespace = _namespace(tenant)
        if k < 1:
            return []
        # A dense query of zeros is rejected: alpha 0 keeps a negligible dense part.
        dense_weight = max(alpha, 1e-6)
        kwargs: dict[str, Any] = {
            "vector": [float(x) * dense_weight for x in vector],
            "top_k": min(k, MAX_TOP_K),
            "namespace": namespace,
            "include_metadata": True,
            "include_values": False,
        }
        sparse = self._encoder.encode_query(text)
        if sparse["indices"] and alpha < 1.0:
            kwargs["sparse_vector"] = {
                "indices": sparse["indices"],
                "values": [float(v) * (1.0 - alpha) for v in sparse["values"]],
            }
        if where is not None:
            kwargs["filter"] = translate(where)
        return self._hits(self._data("hybrid query", "query", **kwargs))


def _batches(
    records: list[tuple[dict[str, Any], int]], size: int, max_bytes: int
) -> Iterator[list[dict[str, Any]]]:
    batch: list[dict[str, Any]] = []
    total = 0
    for record, nbytes in records:
        if batch and (len(batch) >= size or total + nbytes > max_bytes):
            yield batch
            batch, total = [], 0
        batch.append(record)
        total += nbytes
    if batch:
        yield batch


# -- opening -------------------------------------------------------------------------------------


def index_name(settings: Any, options: PineconeOptions) -> str:
    """The index name: RAG_PINECONE_INDEX, else RAG_COLLECTION made a valid Pinecone name."""
    name = options.index or str(settings.collection).lower().replace("_", "-")
    if not _INDEX_NAME_RE.match(name):
        source = "RAG_PINECONE_INDEX" if options.index else "RAG_COLLECTION"
        raise ConfigError(
            f"{name!r} (from {source}) is not a valid Pinecone index name: 1-45 lowercase "
            "letters, digits or '-', not starting or ending with '-'; set RAG_PINECONE_INDEX"
        )
    return name


def _client(options: PineconeOptions) -> Any:
    from pinecone import Pinecone
    from urllib3.util.retry import Retry

    if options.api_key is None or not options.api_key.get_secret_value():
        raise ConfigError(
            "the Pinecone store needs an API key: set PINECONE_API_KEY (or "
            "RAG_PINECONE_API_KEY); any non-empty value works for Pinecone Local"
        )
    kwargs: dict[str, Any] = {"api_key": options.api_key.get_secret_value()}
    if options.controller_host:
        kwargs["host"] = options.controller_host
    client = Pinecone(**kwargs)
    # Our own retry loop (PineconeStore._call) bounds the attempts: the SDK's urllib3 layer
    # would otherwise retry 5xx five more times under each of them.
    client._openapi_config.retries = Retry(total=0, raise_on_status=False)
    return client


def _tags(description: Any) -> dict[str, str]:
    """An index description's tags (an SDK model, or missing)."""
    try:
        raw = description.to_dict().get("tags")
    except AttributeError:
        raw = getattr(description, "tags", None)
    return {str(k): str(v) for k, v in dict(raw or {}).items()}


def _dimension_of(description: Any) -> int | None:
    try:
        value = description.to_dict().get("dimension")
    except AttributeError:
        value = getattr(description, "dimension", None)
    return int(value) if value is not None else None


def _check_existing(store: PineconeStore, dimension: int | None, model: str | None) -> None:
    name, info = store._name, store.info
    if dimension is not None and int(dimension) != info.dimension:
        raise ConfigError(
            f"Pinecone index {name!r} holds {int(dimension)}-dimensional vectors"
            f"{f' from {model!r}' if model else ''}, but the configured embedding model "
            f"{info.embedding_model!r} produces {info.dimension}. Use another "
            "RAG_PINECONE_INDEX or switch the model back."
        )
    if model is not None and model != info.embedding_model:
        raise ConfigError(
            f"Pinecone index {name!r} was built with embedding model {model!r}, not "
            f"{info.embedding_model!r}; mixing models makes scores meaningless. Use another "
            "RAG_PINECONE_INDEX."
        )


def _create_index(store: PineconeStore) -> Any:
    """Create the (missing) serverless index of `store` and return its data-plane client."""
    from pinecone import ServerlessSpec

    options, name, info = store._options, store._name, store.info
    if not options.create_if_missing:
        raise ConfigError(
            f"Pinecone index {name!r} does not exist and RAG_PINECONE_CREATE_IF_MISSING is off; "
            "create it or check RAG_PINECONE_INDEX"
        )
    client = store._client
    try:
        store._call(
            "create_index",
            client.create_index,
            name=name,
            dimension=info.dimension,
            metric=store._metric,
            spec=ServerlessSpec(cloud=options.cloud, region=options.region),
            deletion_protection="enabled" if options.deletion_protection else "disabled",
            tags={"app": "rag_app", "embedding_model": info.embedding_model[:120]},
        )
        log.warning(
            "created Pinecone index %r (serverless %s/%s, %s, %d dimensions)",
            name,
            options.cloud,
            options.region,
            store._metric,
            info.dimension,
        )
    except PineconeRequestError as exc:
        if exc.status != 409:  # 409: another process created it meanwhile
            raise
    description = store._call("describe_index", client.describe_index, name)
    _check_existing(store, _dimension_of(description), _tags(description).get("embedding_model"))
    return client.Index(host=description.host)


def open_pinecone(
    options: PineconeOptions, *, index_name: str, dimension: int, embedding_model: str
) -> PineconeStore:
    """Open (never create) the index: `PineconeHybridStore` on a dotproduct index, else
    `PineconeStore`. A missing index is created by the first write."""
    client = _client(options)
    index: Any = None
    metric: str = options.metric
    dimension_found: int | None = None
    model_found: str | None = None
    probe = PineconeStore(
        index_name=index_name,
        dimension=dimension,
        embedding_model=embedding_model,
        options=options,
        client=client,
        index=None,
        metric=metric,
    )
    if options.host:
        index = client.Index(host=options.host)
        probe._index = index
        stats = probe._data("describe_index_stats", "describe_index_stats")
        dimension_found = getattr(stats, "dimension", None)
        metric = str(getattr(stats, "metric", None) or options.metric)
    else:
        try:
            description = probe._call("describe_index", client.describe_index, index_name)
        except PineconeRequestError as exc:
            if exc.status != 404:
                raise
            description = None
        if description is not None:
            metric = str(description.metric)
            dimension_found = _dimension_of(description)
            model_found = _tags(description).get("embedding_model")
            index = client.Index(host=description.host)
    cls = PineconeHybridStore if metric == "dotproduct" else PineconeStore
    if metric != "dotproduct":
        global _native_hybrid_note_logged
        if not _native_hybrid_note_logged:
            _native_hybrid_note_logged = True
            log.info(
                "Pinecone index %r uses the %s metric: native hybrid search needs a dotproduct "
                "index (RAG_PINECONE_METRIC=dotproduct on a new index); hybrid retrieval fuses "
                "BM25 and dense search in the app instead",
                index_name,
                metric,
            )
    store = cls(
        index_name=index_name,
        dimension=dimension,
        embedding_model=embedding_model,
        options=options,
        client=client,
        index=index,
        metric=metric,
    )
    _check_existing(store, dimension_found, model_found)
    if index is not None:
        sentinel = store._sentinel_metadata()  # also written where the control plane is absent
        if sentinel is not None:
            _check_existing(
                store,
                None,
                str(sentinel["embedding_model"]) if "embedding_model" in sentinel else None,
            )
    return store


def _location(settings: Any, options: PineconeOptions) -> str:
    where = options.host or options.controller_host or DEFAULT_CONTROLLER
    return f"pinecone:{where}:{index_name(settings, options)}"


def _open(request: Any) -> PineconeStore:
    options: PineconeOptions = request.options
    return open_pinecone(
        options,
        index_name=index_name(request.settings, options),
        dimension=request.dimension,
        embedding_model=request.embedding_model,
    )


SPEC = StoreSpec(name="pinecone", settings_model=PineconeOptions, open=_open, location=_location)
