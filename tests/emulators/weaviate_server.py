"""In-memory test double of a Weaviate server (REST + gRPC) for the real ``weaviate-client`` v4.

The emulator speaks the wire protocol of Weaviate 1.36 closely enough for ``weaviate-client``
4.24.1 (see ``../shared/reference/wire/weaviate-client-4.24.1.txt`` for the captured requests):

* REST (Starlette app served by uvicorn in a background thread): ``/v1/meta``,
  ``/v1/.well-known/*``, ``/v1/nodes``, the schema endpoints (collections, properties, tenants)
  and the object endpoints (``POST /v1/objects``,
  ``GET|HEAD|PUT|PATCH|DELETE /v1/objects/{collection}/{id}``).
* gRPC (``grpc.server`` with a thread pool): ``weaviate.v1.Weaviate`` (``Search``,
  ``BatchObjects``, ``BatchDelete``, ``TenantsGet``, ``Aggregate``; ``BatchReferences`` and
  ``BatchStream`` answer UNIMPLEMENTED) and ``grpc.health.v1.Health/Check``.  The generated
  modules are the ones shipped inside weaviate-client (``weaviate.proto.v1`` picks the folder
  matching the installed protobuf; with protobuf 6.x that is ``weaviate/proto/v1/v6300``).

Semantics follow the Weaviate server source (github.com/weaviate/weaviate, 1.36-1.39 era); each rule
names the part it mirrors.  Where a detail could not be verified it says so in a comment.

Usage::

    with WeaviateEmulator(api_key=None) as emu:
        client = weaviate.connect_to_custom(
            http_host="127.0.0.1", http_port=emu.http_port, http_secure=False,
            grpc_host="127.0.0.1", grpc_port=emu.grpc_port, grpc_secure=False,
        )
"""

from __future__ import annotations

import asyncio
import copy
import datetime as _dt
import json
import math
import re
import socket
import struct
import threading
import time
import uuid as uuid_lib
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from concurrent import futures
from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple

import grpc
import numpy as np
import uvicorn
from google.protobuf import struct_pb2
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from weaviate.proto.v1 import (
    aggregate_pb2,
    base_pb2,
    base_search_pb2,
    batch_delete_pb2,
    batch_pb2,
    health_weaviate_pb2,
    properties_pb2,
    search_get_pb2,
    tenants_pb2,
    weaviate_pb2_grpc,
)

__all__ = [
    "DEFAULT_VERSION",
    "EmulatorError",
    "RecordedRequest",
    "WeaviateEmulator",
    "tokenize",
]

#: Server version reported by ``/v1/meta``.  The wire capture shows ``useAlphaParam: true`` (client
#: sends it for servers >= 1.36.6) and ``vectorIndexType: "hnsw"`` emitted in named-vector configs
#: (client omits it for servers >= 1.37.5), so the capture server was in [1.36.6, 1.37.5).
DEFAULT_VERSION = "1.36.9"

# Weaviate defaults (usecases/config/config_handler.go, environment.go).
QUERY_DEFAULTS_LIMIT = 10  # DefaultQueryDefaultsLimit: a Search without limit returns 10 objects
QUERY_HYBRID_MAXIMUM_RESULTS = 100  # DefaultQueryHybridMaximumResults
DEFAULT_ALPHA = 0.75  # common_filters.DefaultAlpha (used when use_alpha_param and no alpha_param)
RESERVED_PROPERTY_NAMES = ("_additional", "_id", "id")  # entities/schema/validation.go
ENGLISH_STOPWORDS = frozenset(  # adapters/repos/db/inverted/stopwords/presets.go, preset "en"
    [
        "a",
        "an",
        "and",
        "are",
        "as",
        "at",
        "be",
        "but",
        "by",
        "for",
        "if",
        "in",
        "into",
        "is",
        "it",
        "no",
        "not",
        "of",
        "on",
        "or",
        "such",
        "that",
        "the",
        "their",
        "then",
        "there",
        "these",
        "they",
        "this",
        "to",
        "was",
        "will",
        "with",
    ]
)
_PROPERTY_NAME_RE = re.compile(r"^[_A-Za-z][_0-9A-Za-z]{0,230}$")  # schema.PropertyNameRegex
_CLASS_NAME_RE = re.compile(r"^[A-Z][_0-9A-Za-z]{0,254}$")  # schema.ClassNameRegexCore
_TENANT_NAME_RE = re.compile(r"^[A-Za-z0-9\-_]{1,64}$")  # schema.TenantNameRegex
_PRIMITIVE_TYPES = (
    "text",
    "int",
    "number",
    "boolean",
    "date",
    "uuid",
    "blob",
    "text[]",
    "int[]",
    "number[]",
    "boolean[]",
    "date[]",
    "uuid[]",
)

_WEAVIATE = "/weaviate.v1.Weaviate/"
_HEALTH_CHECK = "/grpc.health.v1.Health/Check"

Filters = base_pb2.Filters
Op = base_pb2.Filters.Operator


# --------------------------------------------------------------------------------------------------
# errors


class EmulatorError(Exception):
    """An error the emulated server reports: REST status + gRPC status code + message."""

    def __init__(
        self,
        message: str,
        http_status: int = 422,
        grpc_code: grpc.StatusCode = grpc.StatusCode.UNKNOWN,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.http_status = http_status
        self.grpc_code = grpc_code


def _not_found(message: str) -> EmulatorError:
    return EmulatorError(message, 404, grpc.StatusCode.NOT_FOUND)


def _unimplemented(what: str) -> EmulatorError:
    return EmulatorError(
        f"weaviate emulator: {what} is not supported", 501, grpc.StatusCode.UNIMPLEMENTED
    )


class RecordedRequest(NamedTuple):
    """One request seen by the emulator.

    ``protocol`` is ``"rest"`` or ``"grpc"``; for REST ``method`` is the HTTP verb and ``path`` the
    URL
    path; for gRPC ``method`` is the short method name (``"Search"``) and ``path`` the full one
    (``"/weaviate.v1.Weaviate/Search"``).  ``tenant`` is the tenant named by the request when known.
    """

    protocol: Literal["rest", "grpc"]
    method: str
    path: str
    tenant: str | None = None


@dataclass
class _Fault:
    protocol: Literal["rest", "grpc"]
    match: str
    times: int
    status: int = 503
    code: grpc.StatusCode | None = grpc.StatusCode.UNAVAILABLE
    delay_s: float = 0.0
    message: str = "injected fault"


# --------------------------------------------------------------------------------------------------
# helpers: tokenization, dates, uuids, floats


def tokenize(text: str, tokenization: str | None) -> list[str]:
    """Split ``text`` like Weaviate's ``entities/tokenizer`` does.

    ``word`` (the default for text): split on every non letter/digit rune and lowercase;
    ``lowercase``: split on whitespace and lowercase; ``whitespace``: split on whitespace;
    ``field``: the whole trimmed value; ``trigram``: trigrams of the lowercased alphanumerics.
    The CJK tokenizers (gse, kagome) are approximated by ``word`` (not verified).
    """
    tok = tokenization or "word"
    if tok == "field":
        stripped = text.strip()
        return [stripped] if stripped else []
    if tok == "whitespace":
        return text.split()
    if tok == "lowercase":
        return text.lower().split()
    if tok == "trigram":
        joined = "".join(re.findall(r"[^\W_]+", text)).lower()
        return [joined[i : i + 3] for i in range(len(joined) - 2)]
    return [t.lower() for t in re.findall(r"[^\W_]+", text)]


def _tokenize_with_wildcards(text: str, tokenization: str | None) -> list[str]:
    """Tokenizer for ``Like`` values: like :func:`tokenize` but ``*`` and ``?`` are kept
    (mirrors ``tokenizeWordWithWildcards``)."""
    tok = tokenization or "word"
    if tok in ("field", "whitespace", "lowercase"):
        return tokenize(text, tok)
    return [t.lower() for t in re.findall(r"(?:[^\W_]|[*?])+", text) if t]


def _like_regex(pattern: str) -> re.Pattern[str]:
    out = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.compile(f"^{out}$", re.DOTALL)


def _parse_date(value: Any) -> _dt.datetime:
    """Parse an RFC3339 date, the only format Weaviate accepts (``time.Parse(time.RFC3339, v)``)."""
    if not isinstance(value, str):
        raise ValueError(value)
    s = value.strip()
    if not re.match(r"^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$", s):
        raise ValueError(value)
    s = s.replace("z", "Z").replace("t", "T")
    if s.endswith("Z"):
        s = s[:-1] + "+00:00"
    frac = re.search(r"\.(\d+)", s)
    if frac and len(frac.group(1)) > 6:
        s = s.replace(frac.group(0), "." + frac.group(1)[:6])
    return _dt.datetime.fromisoformat(s)


def _format_date(value: _dt.datetime) -> str:
    """Format like Go's ``time.RFC3339Nano`` (trailing fractional zeros dropped, ``Z`` for UTC)."""
    base = value.strftime("%Y-%m-%dT%H:%M:%S")
    if value.microsecond:
        base += ("." + f"{value.microsecond:06d}").rstrip("0")
    off = value.utcoffset()
    if off is None or off == _dt.timedelta(0):
        return base + "Z"
    total = int(off.total_seconds() // 60)
    sign = "+" if total >= 0 else "-"
    total = abs(total)
    return f"{base}{sign}{total // 60:02d}:{total % 60:02d}"


def _parse_uuid(value: str) -> str:
    """Validate an id like Go's ``uuid.Parse`` and return its canonical lowercase form."""
    s = value.strip() if isinstance(value, str) else ""
    if len(s) not in (32, 36, 38, 45):
        raise EmulatorError(f"invalid UUID length: {len(s)}")
    try:
        return str(uuid_lib.UUID(s))
    except ValueError:
        raise EmulatorError("invalid UUID format") from None


def _go_type(value: Any) -> str:
    """Go type name of a decoded JSON/Struct value (as printed in Weaviate's validation errors)."""
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "float64"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "[]interface {}"
    if isinstance(value, dict):
        return "map[string]interface {}"
    return "<nil>" if value is None else type(value).__name__


def _go_float32(x: float) -> str:
    """Format a float32 like Go's ``%v`` (shortest repr; exponent form below 1e-4 or from 1e21)."""
    f = np.float32(x)
    if f == 0 or not np.isfinite(f):
        return "0" if f == 0 else str(f)
    exp = math.floor(math.log10(abs(float(f))))
    if exp < -4 or exp >= 21:
        return np.format_float_scientific(f, unique=True, trim="-", exp_digits=2)
    return np.format_float_positional(f, unique=True, trim="-")


def _f32(x: float) -> float:
    return float(np.float32(x))


def _vector_from_bytes(raw: bytes) -> np.ndarray:
    return np.frombuffer(raw, dtype="<f4").astype(np.float32)


# --------------------------------------------------------------------------------------------------
# data model


@dataclass
class _Prop:
    name: str
    data_type: str  # "text", "text[]", "int", ...
    tokenization: str | None
    index_filterable: bool
    index_searchable: bool
    index_range_filters: bool
    raw: dict[str, Any]

    @property
    def base_type(self) -> str:
        return self.data_type[:-2] if self.data_type.endswith("[]") else self.data_type

    @property
    def is_array(self) -> bool:
        return self.data_type.endswith("[]")

    def to_json(self) -> dict[str, Any]:
        out = dict(self.raw)
        out.update(
            {
                "name": self.name,
                "dataType": [self.data_type],
                "indexFilterable": self.index_filterable,
                "indexSearchable": self.index_searchable,
                "indexRangeFilters": self.index_range_filters,
            }
        )
        if self.tokenization is not None:
            out["tokenization"] = self.tokenization
        else:
            out.pop("tokenization", None)
        return out


@dataclass
class _Object:
    uuid: str
    properties: dict[str, Any]
    vectors: dict[str, np.ndarray]  # "" = the legacy unnamed vector
    created_ms: int
    updated_ms: int
    doc_id: int


@dataclass
class _Shard:
    objects: dict[str, _Object] = field(default_factory=dict)
    dims: dict[str, int] = field(default_factory=dict)  # per vector name, set by the first insert


@dataclass
class _Collection:
    name: str
    config: dict[str, Any]
    props: dict[str, _Prop]
    shards: dict[str, _Shard] = field(default_factory=dict)  # "" for a single-tenant collection
    tenants: dict[str, str] = field(default_factory=dict)  # name -> HOT|COLD|FROZEN

    @property
    def mt(self) -> dict[str, Any]:
        return self.config.get("multiTenancyConfig") or {}

    @property
    def mt_enabled(self) -> bool:
        return bool(self.mt.get("enabled"))

    @property
    def named_vectors(self) -> list[str] | None:
        vc = self.config.get("vectorConfig")
        return list(vc.keys()) if vc else None

    def distance_of(self, vector_name: str) -> str:
        if vector_name and self.config.get("vectorConfig"):
            vic = self.config["vectorConfig"][vector_name].get("vectorIndexConfig") or {}
        else:
            vic = self.config.get("vectorIndexConfig") or {}
        return str(vic.get("distance", "cosine"))

    @property
    def bm25(self) -> tuple[float, float]:
        cfg = (self.config.get("invertedIndexConfig") or {}).get("bm25") or {}
        return float(cfg.get("k1", 1.2)), float(cfg.get("b", 0.75))

    @property
    def stopwords(self) -> frozenset[str]:
        cfg = (self.config.get("invertedIndexConfig") or {}).get("stopwords") or {}
        base = set(ENGLISH_STOPWORDS) if cfg.get("preset", "en") == "en" else set()
        base |= set(cfg.get("additions") or [])
        base -= set(cfg.get("removals") or [])
        return frozenset(base)

    def to_json(self) -> dict[str, Any]:
        out = copy.deepcopy(self.config)
        out["properties"] = [p.to_json() for p in self.props.values()]
        return out


_HNSW_DEFAULTS: dict[str, Any] = {
    "skip": False,
    "cleanupIntervalSeconds": 300,
    "maxConnections": 32,
    "efConstruction": 128,
    "ef": -1,
    "dynamicEfMin": 100,
    "dynamicEfMax": 500,
    "dynamicEfFactor": 8,
    "vectorCacheMaxObjects": 1000000000000,
    "flatSearchCutoff": 40000,
    "distance": "cosine",
    "pq": {
        "enabled": False,
        "bitCompression": False,
        "segments": 0,
        "centroids": 256,
        "trainingLimit": 100000,
        "encoder": {"type": "kmeans", "distribution": "log-normal"},
    },
    "bq": {"enabled": False},
    "sq": {"enabled": False, "trainingLimit": 100000, "rescoreLimit": 20},
    "rq": {"enabled": False, "bits": 8, "rescoreLimit": 20},
    "filterStrategy": "acorn",
    "multivector": {
        "enabled": False,
        "muvera": {"enabled": False, "ksim": 4, "dprojections": 16, "repetitions": 10},
        "aggregation": "maxSim",
    },
}
_FLAT_DEFAULTS: dict[str, Any] = {
    "distance": "cosine",
    "vectorCacheMaxObjects": 1000000000000,
    "pq": {"enabled": False},
    "bq": {"enabled": False},
    "sq": {"enabled": False},
    "rq": {"enabled": False},
    "multivector": {"enabled": False},
}


def _deep_merge(base: dict[str, Any], override: dict[str, Any] | None) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for k, v in (override or {}).items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _deep_merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def _index_config(index_type: str, given: dict[str, Any] | None) -> dict[str, Any]:
    if index_type == "flat":
        return _deep_merge(_FLAT_DEFAULTS, given)
    return _deep_merge(_HNSW_DEFAULTS, given)


# --------------------------------------------------------------------------------------------------
# the store


class _Store:
    """All server state, guarded by one re-entrant lock."""

    def __init__(self, *, auto_schema: bool, query_defaults_limit: int) -> None:
        self.lock = threading.RLock()
        self.collections: dict[str, _Collection] = {}
        self.auto_schema = auto_schema
        self.query_defaults_limit = query_defaults_limit
        self._doc_counter = 0

    def _next_doc_id(self) -> int:
        self._doc_counter += 1
        return self._doc_counter

    # ----------------------------------------------------------------- schema

    def get_collection(self, name: str) -> _Collection:
        coll = self.collections.get(name) or self.collections.get(name[:1].upper() + name[1:])
        if coll is None:
            raise EmulatorError(
                f"could not find class {name} in schema", 404, grpc.StatusCode.UNKNOWN
            )
        return coll

    def create_collection(self, body: dict[str, Any]) -> _Collection:
        """``POST /v1/schema``: normalise the class like Weaviate's schema handler."""
        name = str(body.get("class") or "")
        if not name:
            raise EmulatorError("class name is required")
        name = name[0].upper() + name[1:]  # Weaviate upper-cases the first letter
        if not _CLASS_NAME_RE.match(name):
            raise EmulatorError(f"'{name}' is not a valid class name")
        with self.lock:
            if any(c.lower() == name.lower() for c in self.collections):
                raise EmulatorError(f"class name {name} already exists")
            cfg: dict[str, Any] = {"class": name}
            if body.get("description"):
                cfg["description"] = body["description"]
            inv = _deep_merge(
                {
                    "bm25": {"b": 0.75, "k1": 1.2},
                    "cleanupIntervalSeconds": 60,
                    "indexNullState": False,
                    "indexPropertyLength": False,
                    "indexTimestamps": False,
                    "stopwords": {"additions": None, "preset": "en", "removals": None},
                    "usingBlockMaxWAND": True,
                },
                body.get("invertedIndexConfig"),
            )
            cfg["invertedIndexConfig"] = inv
            # the wire shows LangChain sending "MultiTenancyConfig" (capital M); Go's JSON decoding
            # is
            # case-insensitive, so the real server accepts it too
            mt_in = body.get("multiTenancyConfig") or body.get("MultiTenancyConfig") or {}
            mt = {
                "enabled": bool(mt_in.get("enabled", False)),
                "autoTenantCreation": bool(mt_in.get("autoTenantCreation", False)),
                "autoTenantActivation": bool(mt_in.get("autoTenantActivation", False)),
            }
            cfg["multiTenancyConfig"] = mt
            cfg["replicationConfig"] = _deep_merge(
                {"asyncEnabled": False, "deletionStrategy": "TimeBasedResolution", "factor": 1},
                body.get("replicationConfig"),
            )
            if mt["enabled"]:
                cfg["shardingConfig"] = {
                    "virtualPerPhysical": 0,
                    "desiredCount": 0,
                    "actualCount": 0,
                    "desiredVirtualCount": 0,
                    "actualVirtualCount": 0,
                    "key": "",
                    "strategy": "",
                    "function": "",
                }
            else:
                cfg["shardingConfig"] = {
                    "virtualPerPhysical": 128,
                    "desiredCount": 1,
                    "actualCount": 1,
                    "desiredVirtualCount": 128,
                    "actualVirtualCount": 128,
                    "key": "_id",
                    "strategy": "hash",
                    "function": "murmur3",
                }
            if body.get("moduleConfig"):
                cfg["moduleConfig"] = copy.deepcopy(body["moduleConfig"])
            if body.get("vectorConfig"):
                vcs: dict[str, Any] = {}
                for vname, vc in body["vectorConfig"].items():
                    itype = vc.get("vectorIndexType") or "hnsw"
                    vcs[vname] = {
                        "vectorizer": copy.deepcopy(vc.get("vectorizer") or {"none": {}}),
                        "vectorIndexType": itype,
                        "vectorIndexConfig": _index_config(itype, vc.get("vectorIndexConfig")),
                    }
                cfg["vectorConfig"] = vcs
            else:
                itype = body.get("vectorIndexType") or "hnsw"
                cfg["vectorizer"] = body.get("vectorizer") or "none"
                cfg["vectorIndexType"] = itype
                cfg["vectorIndexConfig"] = _index_config(itype, body.get("vectorIndexConfig"))
            coll = _Collection(name=name, config=cfg, props={})
            for p in body.get("properties") or []:
                prop = self._make_prop(p)
                if prop.name in coll.props:
                    raise EmulatorError(f"property '{prop.name}' already exists")
                coll.props[prop.name] = prop
            if not mt["enabled"]:
                coll.shards[""] = _Shard()
            self.collections[name] = coll
            return coll

    @staticmethod
    def _make_prop(p: dict[str, Any]) -> _Prop:
        """Validate and default one property (usecases/schema/property.go, validation.go)."""
        name = str(p.get("name") or "")
        if not _PROPERTY_NAME_RE.match(name):
            raise EmulatorError(f"'{name}' is not a valid property name")
        if name in RESERVED_PROPERTY_NAMES:
            raise EmulatorError(f"'{name}' is a reserved property name")
        dts = p.get("dataType") or []
        if len(dts) != 1:
            raise EmulatorError(f"property '{name}': dataType must have exactly one entry")
        dt = str(dts[0])
        if dt == "string":
            dt = "text"
        if dt == "string[]":
            dt = "text[]"
        if dt not in _PRIMITIVE_TYPES:
            # cross-references, object, geoCoordinates, phoneNumber are not emulated
            raise _unimplemented(f"property data type {dt!r}")
        is_text = dt in ("text", "text[]")
        tokenization = p.get("tokenization")
        if is_text:
            tokenization = tokenization or "word"
        elif tokenization:
            raise EmulatorError(
                # validation message not verified
                f"Tokenization is not allowed for data type '{dt}'"
            )
        raw = {k: v for k, v in p.items() if k in ("description", "moduleConfig", "textAnalyzer")}
        return _Prop(
            name=name,
            data_type=dt,
            tokenization=tokenization if is_text else None,
            index_filterable=bool(p.get("indexFilterable", True)),
            index_searchable=bool(p.get("indexSearchable", is_text)) and is_text,
            index_range_filters=bool(p.get("indexRangeFilters", False)),
            raw=raw,
        )

    def add_property(self, collection: str, body: dict[str, Any]) -> _Prop:
        with self.lock:
            coll = self.get_collection(collection)
            prop = self._make_prop(body)
            if prop.name in coll.props:
                raise EmulatorError(f"property '{prop.name}' already exists")
            coll.props[prop.name] = prop
            return prop

    def update_collection(self, collection: str, body: dict[str, Any]) -> _Collection:
        """``PUT /v1/schema/{c}``: applies mutable settings (MT auto flags, bm25, stopwords)."""
        with self.lock:
            coll = self.get_collection(collection)
            mt_in = body.get("multiTenancyConfig") or {}
            if mt_in and bool(mt_in.get("enabled", coll.mt_enabled)) != coll.mt_enabled:
                raise EmulatorError(
                    "enabling/disabling multi-tenancy on an existing class is not supported"
                )
            for key in ("autoTenantCreation", "autoTenantActivation"):
                if key in mt_in:
                    coll.config["multiTenancyConfig"][key] = bool(mt_in[key])
            if body.get("invertedIndexConfig"):
                inv = coll.config["invertedIndexConfig"]
                for key in ("bm25", "stopwords", "cleanupIntervalSeconds"):
                    if key in body["invertedIndexConfig"]:
                        inv[key] = copy.deepcopy(body["invertedIndexConfig"][key])
            if body.get("description") is not None:
                coll.config["description"] = body["description"]
            return coll

    def delete_collection(self, name: str) -> None:
        with self.lock:
            for key in list(self.collections):
                if key.lower() == name.lower():
                    del self.collections[key]

    # ----------------------------------------------------------------- tenants

    def _require_mt(self, coll: _Collection) -> None:
        if not coll.mt_enabled:
            raise EmulatorError(f"multi-tenancy is not enabled for class {coll.name!r}")

    @staticmethod
    def _norm_status(status: str | None) -> str:
        s = (status or "HOT").upper()
        return {"ACTIVE": "HOT", "INACTIVE": "COLD", "OFFLOADED": "FROZEN"}.get(s, s)

    def add_tenants(self, collection: str, tenants: list[dict[str, Any]]) -> list[dict[str, str]]:
        """``POST /v1/schema/{c}/tenants``: re-creating an existing tenant is a no-op."""
        with self.lock:
            coll = self.get_collection(collection)
            self._require_mt(coll)
            out = []
            for t in tenants:
                name = str(t.get("name") or "")
                if not _TENANT_NAME_RE.match(name):
                    raise EmulatorError(
                        f"tenant name should only contain alphanumeric characters (a-z, A-Z, 0-9), "
                        "underscore (_), and hyphen (-), with a length between 1 and 64 "
                        f"characters: {name!r}"
                    )
                status = self._norm_status(t.get("activityStatus"))
                if status not in ("HOT", "COLD"):
                    raise EmulatorError(f"invalid activity status {status!r} for tenant {name!r}")
                if name not in coll.tenants:
                    coll.tenants[name] = status
                    coll.shards[name] = _Shard()
                out.append({"name": name, "activityStatus": coll.tenants[name]})
            return out

    def update_tenants(
        self, collection: str, tenants: list[dict[str, Any]]
    ) -> list[dict[str, str]]:
        with self.lock:
            coll = self.get_collection(collection)
            self._require_mt(coll)
            out = []
            for t in tenants:
                name = str(t.get("name") or "")
                if name not in coll.tenants:
                    raise EmulatorError(f'tenant not found: "{name}"', 422)
                coll.tenants[name] = self._norm_status(t.get("activityStatus"))
                out.append({"name": name, "activityStatus": coll.tenants[name]})
            return out

    def delete_tenants(self, collection: str, names: list[str]) -> None:
        with self.lock:
            coll = self.get_collection(collection)
            self._require_mt(coll)
            for n in names:
                coll.tenants.pop(n, None)
                coll.shards.pop(n, None)

    def list_tenants(
        self, collection: str, names: Sequence[str] | None = None
    ) -> list[tuple[str, str]]:
        with self.lock:
            coll = self.get_collection(collection)
            self._require_mt(coll)
            items = sorted(coll.tenants.items())
            if names is not None:
                wanted = set(names)
                items = [(n, s) for n, s in items if n in wanted]
            return items

    def shard_for(
        self, coll: _Collection, tenant: str | None, *, for_write: bool = False
    ) -> _Shard:
        """Resolve the shard a request addresses (adapters/repos/db/multitenancy/validator.go).

        * multi-tenant collection without tenant: ``class X has multi-tenancy enabled, but request
          was
          without tenant``;
        * single-tenant collection with a tenant: ``... multi-tenancy disabled, but request was with
          tenant``;
        * unknown tenant: ``tenant not found: "t"`` -- unless ``for_write`` and
          ``autoTenantCreation``
          is on, in which case the tenant is created (usecases/objects auto tenant creation);
        * non-HOT tenant: ``tenant not active: 't'`` unless ``autoTenantActivation``.
        """
        if not coll.mt_enabled:
            if tenant:
                raise EmulatorError(
                    f"class {coll.name} has multi-tenancy disabled, but request was with tenant"
                )
            return coll.shards[""]
        if not tenant:
            raise EmulatorError(
                f"class {coll.name} has multi-tenancy enabled, but request was without tenant"
            )
        status = coll.tenants.get(tenant)
        if status is None:
            if for_write and coll.mt.get("autoTenantCreation"):
                coll.tenants[tenant] = "HOT"
                coll.shards[tenant] = _Shard()
                return coll.shards[tenant]
            raise EmulatorError(f'tenant not found: "{tenant}"')
        if status != "HOT":
            if coll.mt.get("autoTenantActivation"):
                coll.tenants[tenant] = "HOT"
            else:
                raise EmulatorError(f"tenant not active: '{tenant}'")
        return coll.shards[tenant]

    # ----------------------------------------------------------------- objects

    def _coerce(
        self, coll: _Collection, prop: _Prop, value: Any, *, from_int_array: bool = False
    ) -> Any:
        """Validate a property value like ``usecases/objects/validation/properties_validation.go``.

        Struct (gRPC) and JSON (REST) numbers arrive as float64; ``int`` accepts integral values
        only.
        """
        where = f"property '{prop.name}' on class '{coll.name}'"
        kind_name = {
            "text": "text",
            "int": "integer",
            "number": "number",
            "boolean": "boolean",
            "date": "date",
            "uuid": "uuid",
            "blob": "blob",
        }[prop.base_type]

        def scalar(v: Any) -> Any:
            bt = prop.base_type
            if bt in ("text", "blob"):
                if not isinstance(v, str):
                    raise ValueError(f"not a string, but {_go_type(v)}")
                return v
            if bt == "int":
                if isinstance(v, bool) or not isinstance(v, (int, float)) or float(v) != int(v):
                    raise ValueError(f"requires an integer, the given value is '{v}'")
                return int(v)
            if bt == "number":
                if isinstance(v, bool) or not isinstance(v, (int, float)):
                    raise ValueError(f"requires a float, the given value is '{v}'")
                return float(v)
            if bt == "boolean":
                if not isinstance(v, bool):
                    raise ValueError(f"not a bool, but {_go_type(v)}")
                return v
            if bt == "date":
                try:
                    return _format_date(_parse_date(v))
                except (ValueError, TypeError):
                    raise ValueError(
                        "requires a string with a RFC3339 formatted date, but the given value is "
                        f"'{v}'"
                    ) from None
            if bt == "uuid":
                try:
                    if not isinstance(v, str):
                        raise ValueError(v)
                    return str(uuid_lib.UUID(v))
                except ValueError:
                    raise ValueError(
                        f"requires a string of UUID format, but the given value is '{v}'"
                    ) from None
            raise ValueError(f"unsupported type {bt}")

        try:
            if value is None:
                return None
            if prop.is_array:
                if not isinstance(value, list):
                    raise ValueError(f"not a {prop.base_type} array, but {_go_type(value)}")
                return [scalar(v) for v in value]
            return scalar(value)
        except ValueError as exc:
            arr = " array" if prop.is_array else ""
            raise EmulatorError(f"invalid {kind_name}{arr} {where}: {exc}") from None

    def _infer_type(self, value: Any) -> str:
        """Auto-schema type inference (usecases/objects/auto_schema.go): strings that parse as
        RFC3339
        become ``date``, as UUID ``uuid``; every JSON/Struct number becomes ``number``
        (AUTOSCHEMA_DEFAULT_NUMBER); ints sent as IntArrayProperties become ``int[]``."""

        def one(v: Any) -> str:
            if isinstance(v, bool):
                return "boolean"
            if isinstance(v, int):
                return "int"
            if isinstance(v, float):
                return "number"
            if isinstance(v, str):
                try:
                    _parse_date(v)
                    return "date"
                except ValueError:
                    pass
                try:
                    uuid_lib.UUID(v)
                    return "uuid"
                except ValueError:
                    return "text"
            raise EmulatorError(f"auto-schema cannot infer a data type for {v!r}")

        if isinstance(value, list):
            if not value:
                raise EmulatorError("auto-schema cannot infer a data type for an empty list")
            return one(value[0]) + "[]"
        t = one(value)
        return "number" if t == "int" else t

    def _prepare_properties(self, coll: _Collection, raw: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in raw.items():
            if key in RESERVED_PROPERTY_NAMES:
                raise EmulatorError(f"'{key}' is a reserved property name")
            prop = coll.props.get(key)
            if prop is None:
                if not self.auto_schema:
                    raise EmulatorError(
                        f"no such prop with name '{key}' found in class '{coll.name}' in the "
                        "schema. "
                        "Check your schema files for which properties in this class are available"
                    )
                if value is None:
                    continue
                if not _PROPERTY_NAME_RE.match(key):
                    raise EmulatorError(f"'{key}' is not a valid property name")
                prop = self._make_prop({"name": key, "dataType": [self._infer_type(value)]})
                coll.props[key] = prop
            coerced = self._coerce(coll, prop, value)
            if coerced is not None:
                out[key] = coerced
        return out

    def _prepare_vectors(
        self,
        coll: _Collection,
        shard: _Shard,
        single: np.ndarray | None,
        named: dict[str, np.ndarray],
    ) -> dict[str, np.ndarray]:
        names = coll.named_vectors
        vecs: dict[str, np.ndarray] = {}
        if names is None:
            if named:
                raise EmulatorError(
                    f"collection {coll.name} does not have named vectors configured, "
                    f"but target vectors were given: {sorted(named)}"
                )
            if single is not None and single.size:
                vecs[""] = single
        else:
            for vname, vec in named.items():
                if vname not in names:
                    raise EmulatorError(
                        f"collection {coll.name} does not have a vector named {vname!r}"
                    )
                vecs[vname] = vec
            if single is not None and single.size:
                # a legacy (unnamed) vector is accepted when exactly one named vector exists (as the
                # wire capture shows for vector_config=Configure.Vectors.self_provided())
                if len(names) != 1:
                    raise EmulatorError(
                        f"collection {coll.name} is configured with named vectors, please specify "
                        "the target vector"
                    )
                vecs.setdefault(names[0], single)
        for vname, vec in vecs.items():
            dims = shard.dims.get(vname)
            if dims is not None and dims != vec.shape[0]:
                # adapters/repos/db/vector/hnsw/insert.go (errors.Wrapf(ErrWrongDimensions, ...))
                raise EmulatorError(
                    f"new node has a vector with length {vec.shape[0]}. Existing nodes have "
                    "vectors with "
                    f"length {dims}: vector dimensions do not match the index dimensions"
                )
        return vecs

    def put_object(
        self,
        collection: str,
        tenant: str | None,
        obj_id: str,
        raw_props: dict[str, Any],
        single: np.ndarray | None,
        named: dict[str, np.ndarray],
        *,
        mode: Literal["upsert", "create", "replace", "merge"] = "upsert",
    ) -> _Object:
        """Insert or replace one object.  Batch imports upsert (same id = replace, new doc id)."""
        with self.lock:
            coll = self.get_collection(collection)
            uid = _parse_uuid(obj_id)
            shard = self.shard_for(coll, tenant, for_write=True)
            existing = shard.objects.get(uid)
            if mode == "create" and existing is not None:
                raise EmulatorError(f"id '{uid}' already exists")
            if mode in ("replace", "merge") and existing is None:
                raise _not_found(f"object {uid} not found")
            props = self._prepare_properties(coll, raw_props)
            if mode == "merge" and existing is not None:
                props = {**existing.properties, **props}
                if single is None and not named:
                    named = dict(existing.vectors)
            vecs = self._prepare_vectors(coll, shard, single, named)
            now = int(time.time() * 1000)
            obj = _Object(
                uuid=uid,
                properties=props,
                vectors=vecs,
                created_ms=existing.created_ms if existing else now,
                updated_ms=now,
                doc_id=self._next_doc_id(),
            )
            for vname, vec in vecs.items():
                shard.dims.setdefault(vname, int(vec.shape[0]))
            shard.objects[uid] = obj
            return obj

    def get_object(self, collection: str, tenant: str | None, obj_id: str) -> _Object | None:
        with self.lock:
            coll = self.get_collection(collection)
            shard = self.shard_for(coll, tenant)
            return shard.objects.get(_parse_uuid(obj_id))

    def delete_object(self, collection: str, tenant: str | None, obj_id: str) -> bool:
        with self.lock:
            coll = self.get_collection(collection)
            shard = self.shard_for(coll, tenant)
            return shard.objects.pop(_parse_uuid(obj_id), None) is not None


# --------------------------------------------------------------------------------------------------
# filters


class _FilterEvaluator:
    """Evaluates a ``weaviate.v1.Filters`` message against stored objects.

    Mirrors ``adapters/handlers/grpc/v1/filters.go`` (parsing, int/number coercion) and
    ``adapters/repos/db/inverted/searcher.go`` (semantics of the inverted index):

    * text values are tokenized with the property's tokenization; ``Equal`` matches when *every*
      token of the value occurs in the property (for arrays: in any element) -- so with the default
      ``word`` tokenization ``Equal("a/b.md")`` also matches ``"b/a.md"``; use ``field`` for exact
      ids;
    * ``NotEqual`` is the complement of ``Equal`` (objects without the property match);
    * ``ContainsAny``/``ContainsAll`` are OR/AND of one ``Equal`` per value, ``ContainsNone`` is NOT
      ANY;
    * range operators match when any element (any token for text) satisfies the comparison;
    * ``Like`` supports ``*`` and ``?`` on tokens; ``IsNull`` needs ``indexNullState``;
    * ``_id`` compares the object uuid, ``_creationTimeUnix``/``_lastUpdateTimeUnix`` need
      ``indexTimestamps``.
    """

    def __init__(self, coll: _Collection, filters: Filters) -> None:
        self.coll = coll
        self.root = self._compile(filters)

    def __call__(self, obj: _Object) -> bool:
        return self.root(obj)

    # compile once so that type errors surface before any object is looked at
    def _compile(self, f: Filters) -> Callable[[_Object], bool]:
        op = f.operator
        if op in (Op.OPERATOR_AND, Op.OPERATOR_OR, Op.OPERATOR_NOT):
            children = [self._compile(c) for c in f.filters]
            if op == Op.OPERATOR_AND:
                return lambda o: all(c(o) for c in children)
            if op == Op.OPERATOR_OR:
                return lambda o: any(c(o) for c in children)
            if len(children) != 1:
                raise EmulatorError("operator Not requires exactly one operand")
            only = children[0]
            return lambda o: not only(o)
        if op == Op.OPERATOR_UNSPECIFIED:
            raise EmulatorError(f"unknown filter operator {op}")
        if f.HasField("target"):
            if f.target.WhichOneof("target") != "property":
                raise _unimplemented("filters on references or reference counts")
            prop_name = f.target.property
        else:
            if len(f.on) != 1:
                raise _unimplemented("filters on reference paths")
            prop_name = f.on[0]
        kind = f.WhichOneof("test_value")
        if kind is None and op != Op.OPERATOR_IS_NULL:
            raise EmulatorError(f"unknown value type {None}")
        value: Any = getattr(f, kind) if kind else None
        if kind and kind.endswith("_array"):
            value = list(value.values)
        if kind == "value_geo":
            raise _unimplemented("geo filters")
        if prop_name in ("_id", "id"):
            return self._compile_id(op, kind, value)
        if prop_name in ("_creationTimeUnix", "_lastUpdateTimeUnix"):
            return self._compile_timestamp(op, prop_name, kind, value)
        if prop_name.startswith("len("):
            raise _unimplemented("property length filters")
        prop = self.coll.props.get(prop_name)
        if prop is None:
            raise EmulatorError(
                f"no such prop with name '{prop_name}' found in class '{self.coll.name}' in the "
                "schema. "
                "Check your schema files for which properties in this class are available"
            )
        if op == Op.OPERATOR_IS_NULL:
            if kind != "value_boolean":
                raise EmulatorError(f"operator IsNull requires a booleanValue, got {kind} instead")
            if not (self.coll.config.get("invertedIndexConfig") or {}).get("indexNullState"):
                raise EmulatorError(
                    "Nullstate must be indexed to be filterable! Add `indexNullState: true` to the "
                    "invertedIndexConfig"
                )
            want_null = bool(value)
            return lambda o: (o.properties.get(prop.name) in (None, [])) == want_null
        return self._compile_property(op, prop, kind, value)

    def _type_error(self, kind: str | None, prop: _Prop) -> EmulatorError:
        want = {
            "text": "valueText",
            "date": "valueText",
            "uuid": "valueText",
            "blob": "valueText",
            "int": "valueInt",
            "number": "valueNumber",
            "boolean": "valueBoolean",
        }[prop.base_type]
        got = re.sub(r"_(\w)", lambda m: m.group(1).upper(), kind or "none")
        # message of entities/filters/filters_validator.go; over gRPC the real server fails later
        # with a
        # different message -- not verified
        return EmulatorError(
            f'data type filter cannot use "{got}" on type "{prop.data_type}", use "{want}" instead'
        )

    def _values_for(self, op: int, prop: _Prop, kind: str | None, value: Any) -> list[Any]:
        """Typed list of comparison values (one for scalar operators)."""
        bt = prop.base_type
        is_contains = op in (
            Op.OPERATOR_CONTAINS_ANY,
            Op.OPERATOR_CONTAINS_ALL,
            Op.OPERATOR_CONTAINS_NONE,
        )
        vals = value if isinstance(value, list) else [value]
        if kind and kind.endswith("_array") and not is_contains:
            raise EmulatorError(f"operator {Op.Name(op)} needs a single value, got an array")
        base_kind = (kind or "").replace("_array", "")
        if bt in ("text", "uuid", "blob"):
            if base_kind != "value_text":
                raise self._type_error(kind, prop)
            return [str(v) for v in vals]
        if bt == "date":
            if base_kind != "value_text":
                raise self._type_error(kind, prop)
            try:
                return [_parse_date(v) for v in vals]
            except ValueError:
                raise EmulatorError(f"invalid date value in filter: {vals!r}") from None
        if bt == "int":
            if base_kind == "value_number":  # filters.go: float -> int when integral
                out = []
                for v in vals:
                    if float(v) != int(v):
                        raise EmulatorError(f"expected an integer value, got {v}")
                    out.append(int(v))
                return out
            if base_kind != "value_int":
                raise self._type_error(kind, prop)
            return [int(v) for v in vals]
        if bt == "number":
            if base_kind not in ("value_number", "value_int"):
                raise self._type_error(kind, prop)
            return [float(v) for v in vals]
        if bt == "boolean":
            if base_kind != "value_boolean":
                raise self._type_error(kind, prop)
            return [bool(v) for v in vals]
        raise _unimplemented(f"filters on {prop.data_type}")

    def _compile_property(
        self, op: int, prop: _Prop, kind: str | None, value: Any
    ) -> Callable[[_Object], bool]:
        values = self._values_for(op, prop, kind, value)
        bt = prop.base_type
        tok = prop.tokenization

        def elements(o: _Object) -> list[Any]:
            v = o.properties.get(prop.name)
            if v is None:
                return []
            items = v if isinstance(v, list) else [v]
            if bt == "date":
                return [_parse_date(x) for x in items]
            return items

        def tokens(o: _Object) -> set[str]:
            out: set[str] = set()
            for e in elements(o):
                out.update(tokenize(e, tok))
            return out

        def equal(o: _Object, val: Any) -> bool:
            if bt == "text":
                want = tokenize(val, tok)
                if not want:
                    return False
                have = tokens(o)
                return all(t in have for t in want)
            if bt == "uuid":
                val = val.lower()
            return any(e == val for e in elements(o))

        def compare(o: _Object, val: Any, fn: Callable[[Any, Any], bool]) -> bool:
            items: Iterable[Any] = tokens(o) if bt == "text" else elements(o)
            if bt == "text" and tok in (None, "word", "lowercase"):
                val = str(val).lower()
            return any(fn(e, val) for e in items)

        first = values[0] if values else None
        if op == Op.OPERATOR_EQUAL:
            return lambda o: equal(o, first)
        if op == Op.OPERATOR_NOT_EQUAL:
            return lambda o: not equal(o, first)
        cmp_ops: dict[int, Callable[[Any, Any], bool]] = {
            Op.OPERATOR_GREATER_THAN: lambda a, b: a > b,
            Op.OPERATOR_GREATER_THAN_EQUAL: lambda a, b: a >= b,
            Op.OPERATOR_LESS_THAN: lambda a, b: a < b,
            Op.OPERATOR_LESS_THAN_EQUAL: lambda a, b: a <= b,
        }
        if op in cmp_ops:
            if bt == "boolean":
                raise EmulatorError("range operators are not supported on boolean properties")
            fn = cmp_ops[op]
            return lambda o: compare(o, first, fn)
        if op == Op.OPERATOR_LIKE:
            if bt != "text":
                raise EmulatorError(
                    f"operator Like is only supported on text properties, not {prop.data_type}"
                )
            patterns = [_like_regex(p) for p in _tokenize_with_wildcards(str(first), tok)]
            return lambda o: (
                bool(patterns) and all(any(p.match(t) for t in tokens(o)) for p in patterns)
            )
        if op == Op.OPERATOR_CONTAINS_ANY:
            return lambda o: any(equal(o, v) for v in values)
        if op == Op.OPERATOR_CONTAINS_ALL:
            return lambda o: all(equal(o, v) for v in values)
        if op == Op.OPERATOR_CONTAINS_NONE:
            return lambda o: not any(equal(o, v) for v in values)
        if op == Op.OPERATOR_WITHIN_GEO_RANGE:
            raise _unimplemented("WithinGeoRange")
        raise EmulatorError(f"unknown filter operator {op}")

    def _compile_id(self, op: int, kind: str | None, value: Any) -> Callable[[_Object], bool]:
        if kind not in ("value_text", "value_text_array"):
            raise EmulatorError(
                'using ["_id"] to filter by uuid: must use "valueText" to specify the id'
            )
        vals = [str(v).lower() for v in (value if isinstance(value, list) else [value])]
        first = vals[0] if vals else ""
        table: dict[int, Callable[[_Object], bool]] = {
            Op.OPERATOR_EQUAL: lambda o: o.uuid == first,
            Op.OPERATOR_NOT_EQUAL: lambda o: o.uuid != first,
            Op.OPERATOR_GREATER_THAN: lambda o: o.uuid > first,
            Op.OPERATOR_GREATER_THAN_EQUAL: lambda o: o.uuid >= first,
            Op.OPERATOR_LESS_THAN: lambda o: o.uuid < first,
            Op.OPERATOR_LESS_THAN_EQUAL: lambda o: o.uuid <= first,
            Op.OPERATOR_CONTAINS_ANY: lambda o: o.uuid in vals,
            Op.OPERATOR_CONTAINS_ALL: lambda o: all(o.uuid == v for v in vals),
            Op.OPERATOR_CONTAINS_NONE: lambda o: o.uuid not in vals,
            Op.OPERATOR_LIKE: lambda o: bool(_like_regex(first).match(o.uuid)),
        }
        if op not in table:
            raise EmulatorError(f"operator {Op.Name(op)} cannot be used on uuid/uuid[] props")
        return table[op]

    def _compile_timestamp(
        self, op: int, prop_name: str, kind: str | None, value: Any
    ) -> Callable[[_Object], bool]:
        if not (self.coll.config.get("invertedIndexConfig") or {}).get("indexTimestamps"):
            raise EmulatorError(
                "Timestamps must be indexed to be filterable! Add `IndexTimestamps: true` to the "
                "InvertedIndexConfig"
            )
        if kind not in ("value_text", "value_text_array"):
            raise EmulatorError(
                f'using ["{prop_name}"] to filter by timestamp: must use "valueText" or "valueDate"'
            )

        def to_ms(v: str) -> int:
            if v.isdigit():
                return int(v)
            return int(_parse_date(v).timestamp() * 1000)

        vals = [to_ms(str(v)) for v in (value if isinstance(value, list) else [value])]
        first = vals[0]

        def get(o: _Object) -> int:
            return o.created_ms if prop_name == "_creationTimeUnix" else o.updated_ms

        table: dict[int, Callable[[_Object], bool]] = {
            Op.OPERATOR_EQUAL: lambda o: get(o) == first,
            Op.OPERATOR_NOT_EQUAL: lambda o: get(o) != first,
            Op.OPERATOR_GREATER_THAN: lambda o: get(o) > first,
            Op.OPERATOR_GREATER_THAN_EQUAL: lambda o: get(o) >= first,
            Op.OPERATOR_LESS_THAN: lambda o: get(o) < first,
            Op.OPERATOR_LESS_THAN_EQUAL: lambda o: get(o) <= first,
            Op.OPERATOR_CONTAINS_ANY: lambda o: get(o) in vals,
        }
        if op not in table:
            raise EmulatorError(f"operator {Op.Name(op)} is not supported on {prop_name}")
        return table[op]


# --------------------------------------------------------------------------------------------------
# search


@dataclass
class _Hit:
    obj: _Object
    distance: float | None = None
    score: float | None = None
    explain: str | None = None


def _distances(metric: str, matrix: np.ndarray, query: np.ndarray) -> np.ndarray:
    """Brute-force distances in float32 like Weaviate's distancers
    (adapters/repos/db/vector/hnsw/distancer).

    cosine: ``1 - cos`` (vectors are normalised at insert); dot: ``-dot``; l2-squared; manhattan;
    hamming.
    """
    m = matrix.astype(np.float32)
    q = query.astype(np.float32)
    if metric == "cosine":
        mn = m / np.maximum(np.linalg.norm(m, axis=1, keepdims=True), np.float32(1e-30))
        qn = q / max(float(np.linalg.norm(q)), 1e-30)
        return (np.float32(1.0) - mn @ qn.astype(np.float32)).astype(np.float32)
    if metric == "dot":
        return (-(m @ q)).astype(np.float32)
    if metric == "l2-squared":
        return ((m - q) ** 2).sum(axis=1).astype(np.float32)
    if metric == "manhattan":
        return np.abs(m - q).sum(axis=1).astype(np.float32)
    if metric == "hamming":
        return (m != q).sum(axis=1).astype(np.float32)
    raise EmulatorError(f"unsupported distance metric {metric!r}")


class _Searcher:
    """Executes one Search request on one shard (usecases/traverser/explorer.go)."""

    def __init__(self, store: _Store, coll: _Collection, shard: _Shard) -> None:
        self.store = store
        self.coll = coll
        self.shard = shard

    # -- candidate sets

    def candidates(self, filters: Filters | None) -> list[_Object]:
        objs = sorted(self.shard.objects.values(), key=lambda o: o.doc_id)
        if filters is None:
            return objs
        match = _FilterEvaluator(self.coll, filters)
        return [o for o in objs if match(o)]

    # -- vector search

    def resolve_target(self, target_vectors: Sequence[str]) -> str:
        names = self.coll.named_vectors
        if names is None:
            if target_vectors:
                raise EmulatorError(
                    f"class {self.coll.name} does not have named vectors, but target vectors were "
                    "given"
                )
            return ""
        if target_vectors:
            if len(target_vectors) > 1:
                raise _unimplemented("multi-target vector search")
            if target_vectors[0] not in names:
                raise EmulatorError(
                    f"target vector {target_vectors[0]!r} not found in class {self.coll.name}"
                )
            return target_vectors[0]
        if len(names) == 1:
            return names[0]
        raise EmulatorError(
            "multiple target vectors exist: please specify which target vector(s) to search with "
            "target_vector"
        )

    def vector_hits(self, objs: list[_Object], query: np.ndarray, target: str) -> list[_Hit]:
        with_vec = [o for o in objs if target in o.vectors]
        if not with_vec:
            return []
        dims = self.shard.dims.get(target)
        if dims is not None and dims != query.shape[0]:
            raise EmulatorError(
                f"vector search: vector lengths don't match: {query.shape[0]} vs {dims}"
            )
        matrix = np.stack([o.vectors[target] for o in with_vec])
        d = _distances(self.coll.distance_of(target), matrix, query)
        order = np.argsort(d, kind="stable")
        return [_Hit(obj=with_vec[i], distance=float(d[i])) for i in order]

    # -- bm25

    def bm25_hits(
        self, objs: list[_Object], query: str, properties: Sequence[str], operator: Any | None
    ) -> list[_Hit]:
        """BM25F as in Weaviate's block-max WAND searcher
        (adapters/repos/db/inverted/bm25_searcher*.go).

        * query terms: the query is tokenized per property tokenization; for ``word`` the stopword
          list
          is removed and duplicate terms become a boost (AnalyzeAndCountDuplicates);
        * N = objects in the shard (unfiltered); n per term = df summed over the searched properties
          divided by the number of properties where it occurs (integer division);
          idf = ln(1 + (N - n + 0.5) / (n + 0.5)) * duplicates;
        * one average length for all searched properties: the mean of the per-property mean lengths
          (length = number of tokens, stopwords included);
        * per (property, term): tf = f / (f + k1 * (1 - b + b * len / avgLen)), score += tf * idf *
          boost;
          object score = sum over properties; only objects matching at least one term are returned;
        * ``SearchOperatorOptions`` AND requires all terms within a property; OR with
          ``minimum_or_tokens_match`` requires that many.
        """
        coll = self.coll
        k1, b = coll.bm25
        boosts: dict[str, float] = {}
        if properties:
            for spec in properties:
                name, _, boost = spec.partition("^")
                name = name[:1].lower() + name[1:] if name not in coll.props else name
                if name not in coll.props:
                    raise EmulatorError(
                        f"no such prop with name '{name}' found in class '{coll.name}' in the "
                        "schema. "
                        "Check your schema files for which properties in this class are available"
                    )
                prop = coll.props[name]
                if prop.base_type != "text":
                    raise EmulatorError(
                        f"cannot handle datatype '{prop.data_type}' of property '{name}'"
                    )
                if not prop.index_searchable:
                    raise EmulatorError(
                        f"Search index for property '{name}' not found: the property needs "
                        "indexSearchable"
                    )  # MissingIndexError, wording not verified
                boosts[name] = float(boost) if boost else 1.0
        else:
            boosts = {
                n: 1.0
                for n, p in coll.props.items()
                if p.base_type == "text" and p.index_searchable
            }
        if not boosts:
            return []
        all_objs = list(self.shard.objects.values())
        n_docs = float(len(all_objs))
        stop = coll.stopwords

        def doc_tokens(o: _Object, prop: _Prop) -> list[str]:
            v = o.properties.get(prop.name)
            if v is None:
                return []
            out: list[str] = []
            for e in v if isinstance(v, list) else [v]:
                out.extend(tokenize(e, prop.tokenization))
            return out

        # per property: query terms with duplicate boosts, term frequencies per doc, lengths
        terms_by_prop: dict[str, Counter[str]] = {}
        tf: dict[str, dict[str, Counter[str]]] = {}
        lengths: dict[str, dict[str, int]] = {}
        means: list[float] = []
        for name in boosts:
            prop = coll.props[name]
            q = tokenize(query, prop.tokenization)
            if prop.tokenization in (None, "word"):
                q = [t for t in q if t not in stop]
            terms_by_prop[name] = Counter(q)
            tf[name] = {}
            lengths[name] = {}
            for o in all_objs:
                toks = doc_tokens(o, prop)
                if o.properties.get(name) is None:
                    continue
                tf[name][o.uuid] = Counter(toks)
                lengths[name][o.uuid] = len(toks)
            if lengths[name]:
                means.append(sum(lengths[name].values()) / len(lengths[name]))
        avg_len = sum(means) / len(means) if means else 0.0
        if avg_len == 0 or math.isnan(avg_len):
            avg_len = 40.0  # bm25_searcher.go fallback
        # idf per term over the properties sharing a tokenization (one group per tokenization)
        idf: dict[tuple[str, str], float] = {}
        by_tok: dict[str | None, list[str]] = {}
        for name in boosts:
            by_tok.setdefault(coll.props[name].tokenization, []).append(name)
        for names in by_tok.values():
            all_terms = set().union(*(terms_by_prop[n].keys() for n in names))
            for term in all_terms:
                dfs = [sum(1 for c in tf[n].values() if c.get(term)) for n in names]
                nonzero = sum(1 for d in dfs if d > 0)
                if nonzero == 0:
                    continue
                n_t = float(sum(dfs) // nonzero)
                big_n = max(n_docs, n_t)
                base = math.log(1.0 + (big_n - n_t + 0.5) / (n_t + 0.5))
                for n in names:
                    idf[(n, term)] = base * terms_by_prop[n].get(term, 1)

        mode_and = False
        min_match = 0
        if operator is not None:
            if operator.operator == base_search_pb2.SearchOperatorOptions.OPERATOR_AND:
                mode_and = True
            elif operator.operator == base_search_pb2.SearchOperatorOptions.OPERATOR_AND_CROSS:
                raise _unimplemented("BM25 operator AND_CROSS")
            elif operator.HasField("minimum_or_tokens_match"):
                min_match = int(operator.minimum_or_tokens_match)

        hits: list[_Hit] = []
        for o in objs:
            total = 0.0
            matched_any = False
            explain: list[str] = []
            for pname, pboost in boosts.items():
                counts = tf[pname].get(o.uuid)
                qterms = terms_by_prop[pname]
                if counts is None or not qterms:
                    continue
                present = [t for t in qterms if counts.get(t)]
                if mode_and and len(present) < len(qterms):
                    continue
                if min_match and len(present) < min_match:
                    continue
                length = lengths[pname][o.uuid]
                for t in present:
                    f = float(counts[t])
                    tfn = f / (f + k1 * (1 - b + b * length / avg_len))
                    total += tfn * idf.get((pname, t), 0.0) * pboost
                    matched_any = True
                    explain.append(
                        f"BM25F_{t}_frequency:{_go_float32(f)}, "
                        f"BM25F_{t}_propLength:{_go_float32(length)}"
                    )
            if matched_any:
                # explainScore wording of the real server not verified
                hits.append(_Hit(obj=o, score=_f32(total), explain=", " + ", ".join(explain)))
        hits.sort(key=lambda h: (-(h.score or 0.0), h.obj.doc_id))
        return hits

    # -- hybrid

    def hybrid_hits(
        self, req: search_get_pb2.SearchRequest, objs: list[_Object], limit: int, offset: int
    ) -> list[_Hit]:
        """Hybrid search (usecases/traverser/hybrid/searcher.go + hybrid_fusion.go).

        keyword set (weight 1 - alpha) if alpha < 1 and the query is non-empty; vector set (weight
        alpha)
        if alpha > 0.  relativeScoreFusion (default): per set min-max normalise (bm25 score, and
        ``1 - distance`` for vectors), multiply by the weight, sum per object; if all scores of a
        set
        are equal each gets the weight.  rankedFusion: ``weight / (rank + 60)``.  Each sub-search
        returns up to max(100, offset + limit) objects (QUERY_HYBRID_MAXIMUM_RESULTS; the exact
        sub-search limit of the real server was not verified).
        """
        hs = req.hybrid_search
        if hs.use_alpha_param:
            alpha = float(hs.alpha_param) if hs.HasField("alpha_param") else DEFAULT_ALPHA
        else:
            alpha = float(hs.alpha)
        alpha = float(np.float32(alpha))
        sub_limit = max(QUERY_HYBRID_MAXIMUM_RESULTS, offset + limit)
        sets: list[tuple[str, float, list[_Hit], list[float]]] = []
        if alpha < 1 and hs.query:
            kw = self.bm25_hits(
                objs,
                hs.query,
                list(hs.properties),
                hs.bm25_search_operator if hs.HasField("bm25_search_operator") else None,
            )[:sub_limit]
            sets.append(("keyword", 1 - alpha, kw, [h.score or 0.0 for h in kw]))
        below_cutoff: set[str] | None = None
        if alpha > 0:
            query_vec, targets = self._hybrid_vector(hs)
            if query_vec is None:
                # the real server asks the vectorizer module for a vector; collections here have
                # none
                raise EmulatorError(
                    f"no vector or modules provided for hybrid search on class {self.coll.name}: "
                    "pass a vector (the collection has no vectorizer)"
                )
            target = self.resolve_target(targets)
            vh = self.vector_hits(objs, query_vec, target)
            if hs.HasField("vector_distance"):
                vh = [h for h in vh if (h.distance or 0.0) <= hs.vector_distance]
                below_cutoff = {h.obj.uuid for h in vh}
            vh = vh[:sub_limit]
            sets.append(("vector", alpha, vh, [_f32(1 - (h.distance or 0.0)) for h in vh]))
        if below_cutoff is not None and sets and sets[0][0] == "keyword":
            name, w, kw, sc = sets[0]
            keep = [i for i, h in enumerate(kw) if h.obj.uuid in below_cutoff]
            sets[0] = (name, w, [kw[i] for i in keep], [sc[i] for i in keep])
        ranked = hs.fusion_type == base_search_pb2.Hybrid.FUSION_TYPE_RANKED
        fused: dict[str, _Hit] = {}
        secondary: dict[str, float] = {}
        for name, weight, hits, scores in sets:
            w32 = float(np.float32(weight))
            lo = min(scores) if scores else 0.0
            hi = max(scores) if scores else 0.0
            for rank, (hit, raw) in enumerate(zip(hits, scores, strict=False)):
                uid = hit.obj.uuid
                if ranked:
                    s = _f32(weight / (rank + 60))
                    piece = (
                        f"Hybrid (Result Set {name}) Document {uid} contributed "
                        f"{_go_float32(s)} to the score"
                    )
                else:
                    s = w32 if hi == lo else _f32(w32 * ((raw - lo) / (hi - lo)))
                    piece = (
                        f"Hybrid (Result Set {name}) Document {uid}: original score "
                        f"{_go_float32(raw)}, "
                        f"normalized score: {_go_float32(s)}"
                    )
                prev = fused.get(uid)
                if prev is None:
                    fused[uid] = _Hit(
                        obj=hit.obj, score=s, explain="\n" + piece, distance=hit.distance
                    )
                else:
                    prev.score = _f32((prev.score or 0.0) + s)
                    if ranked:
                        prev.explain = f"{prev.explain}\n{piece}"
                    else:
                        prev.explain = "\n" + piece + " - " + (prev.explain or "")
                    if hit.distance is not None:
                        prev.distance = hit.distance
                secondary[uid] = raw
        out = list(fused.values())
        # sort: score desc, then secondary sort value desc, then id asc (hybrid_fusion.go)
        out.sort(key=lambda h: (-(h.score or 0.0), -secondary[h.obj.uuid], h.obj.uuid))
        return out

    def _hybrid_vector(self, hs: base_search_pb2.Hybrid) -> tuple[np.ndarray | None, list[str]]:
        targets = list(hs.target_vectors) or list(hs.targets.target_vectors)
        if len(hs.vectors) > 0:
            if len(hs.vectors) > 1:
                raise EmulatorError(
                    f"hybrid: only 1 vector supported, found {len(hs.vectors)} vectors"
                )
            return _vector_from_bytes(hs.vectors[0].vector_bytes), targets
        if hs.vector_bytes:
            return _vector_from_bytes(hs.vector_bytes), targets
        if len(hs.vector) > 0:
            return np.asarray(list(hs.vector), dtype=np.float32), targets
        if hs.HasField("near_vector"):
            nv = hs.near_vector
            vec, t2 = _near_vector_query(nv)
            return vec, targets or t2
        if hs.HasField("near_text"):
            raise _unimplemented("hybrid near_text (needs a vectorizer module)")
        return None, targets


def _near_vector_query(nv: base_search_pb2.NearVector) -> tuple[np.ndarray, list[str]]:
    targets = list(nv.target_vectors) or list(nv.targets.target_vectors)
    if len(nv.vectors) > 0:
        if nv.vectors[0].type == base_pb2.Vectors.VECTOR_TYPE_MULTI_FP32:
            raise _unimplemented("multi-vector (ColBERT) search")
        return _vector_from_bytes(nv.vectors[0].vector_bytes), targets
    if nv.vector_bytes:
        return _vector_from_bytes(nv.vector_bytes), targets
    if len(nv.vector) > 0:
        return np.asarray(list(nv.vector), dtype=np.float32), targets
    if len(nv.vector_for_targets) > 0:
        vft = nv.vector_for_targets[0]
        raw = vft.vectors[0].vector_bytes if len(vft.vectors) else vft.vector_bytes
        return _vector_from_bytes(raw), [vft.name]
    if len(nv.vector_per_target) > 0:
        name, raw = next(iter(nv.vector_per_target.items()))
        return _vector_from_bytes(raw), [name]
    raise EmulatorError("near_vector: no vector given")


# --------------------------------------------------------------------------------------------------
# proto conversion


def _props_from_batch(p: batch_pb2.BatchObject.Properties) -> dict[str, Any]:
    """Decode BatchObject.Properties like adapters/handlers/grpc/v1/batch/parse.go (Struct numbers
    are
    float64, typed arrays keep their type)."""
    out: dict[str, Any] = {}
    for key, value in p.non_ref_properties.fields.items():
        out[key] = _struct_value(value)
    for arr in p.text_array_properties:
        out[arr.prop_name] = list(arr.values)
    for arr in p.int_array_properties:
        out[arr.prop_name] = [int(v) for v in arr.values]
    for arr in p.boolean_array_properties:
        out[arr.prop_name] = [bool(v) for v in arr.values]
    for arr in p.number_array_properties:
        if arr.values_bytes:
            out[arr.prop_name] = [float(v) for v in np.frombuffer(arr.values_bytes, dtype="<f8")]
        else:
            out[arr.prop_name] = [float(v) for v in arr.values]
    for name in p.empty_list_props:
        out[name] = []
    if len(p.object_properties) or len(p.object_array_properties):
        raise _unimplemented("object / object[] properties")
    if len(p.single_target_ref_props) or len(p.multi_target_ref_props):
        raise _unimplemented("cross-references")
    return out


def _struct_value(v: struct_pb2.Value) -> Any:
    kind = v.WhichOneof("kind")
    if kind == "null_value" or kind is None:
        return None
    if kind == "number_value":
        return float(v.number_value)
    if kind == "string_value":
        return v.string_value
    if kind == "bool_value":
        return bool(v.bool_value)
    if kind == "list_value":
        return [_struct_value(x) for x in v.list_value.values]
    return {k: _struct_value(x) for k, x in v.struct_value.fields.items()}


def _to_value(prop: _Prop, v: Any) -> properties_pb2.Value:
    """Encode a stored property like adapters/handlers/grpc/v1/mapping.go (uses_125_api replies)."""
    bt = prop.base_type
    if v is None:
        return properties_pb2.Value(null_value=struct_pb2.NULL_VALUE)
    if prop.is_array:
        lv = properties_pb2.ListValue()
        if bt == "text" or bt == "blob":
            lv.text_values.values.extend(v)
        elif bt == "int":
            lv.int_values.values = struct.pack(f"<{len(v)}q", *v)
        elif bt == "number":
            lv.number_values.values = struct.pack(f"<{len(v)}d", *v)
        elif bt == "boolean":
            lv.bool_values.values.extend(v)
        elif bt == "date":
            lv.date_values.values.extend(v)
        elif bt == "uuid":
            lv.uuid_values.values.extend(v)
        return properties_pb2.Value(list_value=lv)
    if bt == "text" or bt == "blob":
        return (
            properties_pb2.Value(text_value=v)
            if bt == "text"
            else properties_pb2.Value(blob_value=v)
        )
    if bt == "int":
        return properties_pb2.Value(int_value=int(v))
    if bt == "number":
        return properties_pb2.Value(number_value=float(v))
    if bt == "boolean":
        return properties_pb2.Value(bool_value=bool(v))
    if bt == "date":
        return properties_pb2.Value(date_value=v)
    if bt == "uuid":
        return properties_pb2.Value(uuid_value=v)
    raise EmulatorError(f"cannot encode {prop.data_type}")


def _rest_object(
    coll: _Collection, obj: _Object, tenant: str | None, include_vector: bool = True
) -> dict[str, Any]:
    out: dict[str, Any] = {
        "class": coll.name,
        "id": obj.uuid,
        "properties": copy.deepcopy(obj.properties),
        "creationTimeUnix": obj.created_ms,
        "lastUpdateTimeUnix": obj.updated_ms,
    }
    if tenant:
        out["tenant"] = tenant
    if include_vector:
        if "" in obj.vectors:
            out["vector"] = [float(x) for x in obj.vectors[""]]
        named = {k: [float(x) for x in v] for k, v in obj.vectors.items() if k}
        if named:
            out["vectors"] = named
    return out


# --------------------------------------------------------------------------------------------------
# gRPC servicer


class _Servicer(weaviate_pb2_grpc.WeaviateServicer):
    def __init__(self, store: _Store) -> None:
        self.store = store

    @staticmethod
    def _fail(context: grpc.ServicerContext, exc: EmulatorError) -> Any:
        context.abort(exc.grpc_code, exc.message)

    # -------------------------------------------------------------- Search

    def Search(
        self, request: search_get_pb2.SearchRequest, context: grpc.ServicerContext
    ) -> search_get_pb2.SearchReply:
        start = time.time()
        try:
            return self._search(request, start)
        except EmulatorError as exc:
            return self._fail(context, exc)

    def _search(
        self, req: search_get_pb2.SearchRequest, start: float
    ) -> search_get_pb2.SearchReply:
        store = self.store
        for field_name, what in (
            ("group_by", "group_by"),
            ("generative", "generative search"),
            ("rerank", "rerank"),
            ("near_text", "near_text (needs a vectorizer module)"),
            ("near_image", "near_image"),
            ("near_audio", "near_audio"),
            ("near_video", "near_video"),
            ("near_depth", "near_depth"),
            ("near_thermal", "near_thermal"),
            ("near_imu", "near_imu"),
            ("boost", "boost"),
        ):
            if req.HasField(field_name):
                raise _unimplemented(what)
        with store.lock:
            coll = store.get_collection(req.collection)
            shard = store.shard_for(coll, req.tenant or None)
            searcher = _Searcher(store, coll, shard)
            filters = req.filters if req.HasField("filters") else None
            limit = int(req.limit) if req.limit > 0 else store.query_defaults_limit
            offset = int(req.offset)
            searches = [
                n
                for n in ("near_vector", "near_object", "hybrid_search", "bm25_search")
                if req.HasField(n)
            ]
            if len(searches) > 1:
                raise EmulatorError(
                    f"conflict: {' and '.join(searches)} cannot be combined, choose one"
                )
            if req.sort_by and searches:
                raise EmulatorError("sorting cannot be combined with search")
            show_distance = False
            if req.after:
                if filters is not None or offset > 0 or req.sort_by:
                    params = [
                        p
                        for p, on in (
                            ("offset", offset > 0),
                            ("where", filters is not None),
                            ("sort", bool(req.sort_by)),
                        )
                        if on
                    ]
                    raise EmulatorError(
                        "explorer: cursor api: invalid 'after' parameter: "
                        f"{','.join(params)} cannot be set with after and limit parameters"
                    )
                try:
                    after = str(uuid_lib.UUID(req.after))
                except ValueError:
                    raise EmulatorError(
                        "explorer: cursor api: invalid 'after' parameter: after parameter "
                        f"'{req.after}' "
                        "is not a valid uuid"
                    ) from None
                # cursor: objects in uuid order (the LSM objects bucket is keyed by uuid)
                objs = sorted(shard.objects.values(), key=lambda o: o.uuid)
                hits = [_Hit(obj=o) for o in objs if o.uuid > after][:limit]
            elif req.HasField("near_vector") or req.HasField("near_object"):
                objs = searcher.candidates(filters)
                if req.HasField("near_vector"):
                    nv = req.near_vector
                    if nv.HasField("distance") and nv.HasField("certainty"):
                        raise EmulatorError("near_vector: cannot provide distance and certainty")
                    query, targets = _near_vector_query(nv)
                    dist_thr = nv.distance if nv.HasField("distance") else None
                    cert_thr = nv.certainty if nv.HasField("certainty") else None
                else:
                    no = req.near_object
                    if not no.id:
                        raise EmulatorError("near_object: id is required")
                    targets = list(no.target_vectors) or list(no.targets.target_vectors)
                    src = shard.objects.get(_parse_uuid(no.id))
                    target0 = searcher.resolve_target(targets)
                    if src is None or target0 not in src.vectors:
                        raise EmulatorError(
                            f"vector not found for object {no.id}"
                        )  # wording not verified
                    query = src.vectors[target0]
                    dist_thr = no.distance if no.HasField("distance") else None
                    cert_thr = no.certainty if no.HasField("certainty") else None
                target = searcher.resolve_target(targets)
                hits = searcher.vector_hits(objs, query, target)
                if dist_thr is not None:
                    hits = [h for h in hits if (h.distance or 0.0) <= dist_thr]
                if cert_thr is not None:
                    hits = [h for h in hits if 1 - (h.distance or 0.0) / 2 >= cert_thr]
                hits = hits[offset : offset + limit]
                show_distance = True
            elif req.HasField("bm25_search"):
                bm = req.bm25_search
                if not bm.query:
                    raise EmulatorError(
                        "explorer: get class: keyword search (bm25) must have query set"
                    )
                objs = searcher.candidates(filters)
                hits = searcher.bm25_hits(
                    objs,
                    bm.query,
                    list(bm.properties),
                    bm.search_operator if bm.HasField("search_operator") else None,
                )[offset : offset + limit]
            elif req.HasField("hybrid_search"):
                objs = searcher.candidates(filters)
                hits = searcher.hybrid_hits(req, objs, limit, offset)[offset : offset + limit]
            else:
                objs = searcher.candidates(filters)
                if filters is None:
                    objs = sorted(
                        objs, key=lambda o: o.uuid
                    )  # unfiltered listing walks the objects bucket
                if req.sort_by:
                    objs = self._sort(coll, objs, req.sort_by)
                hits = [_Hit(obj=o) for o in objs[offset : offset + limit]]
            reply = search_get_pb2.SearchReply()
            for h in hits:
                reply.results.append(self._result(coll, h, req, show_distance))
            reply.took = float(time.time() - start)
            return reply

    @staticmethod
    def _sort(
        coll: _Collection, objs: list[_Object], sort_by: Sequence[search_get_pb2.SortBy]
    ) -> list[_Object]:
        out = list(objs)
        for s in reversed(list(sort_by)):
            path = s.path[0] if s.path else ""
            if path in ("_id", "id"):
                out.sort(key=lambda o: o.uuid, reverse=not s.ascending)
                continue
            if path in ("_creationTimeUnix", "_lastUpdateTimeUnix"):
                out.sort(
                    key=lambda o: o.created_ms if path == "_creationTimeUnix" else o.updated_ms,
                    reverse=not s.ascending,
                )
                continue
            if path not in coll.props:
                raise EmulatorError(
                    f"invalid 'sort' parameter: no such prop with name '{path}' found in class "
                    f"'{coll.name}'"
                )
            prop = coll.props[path]
            present = [o for o in out if o.properties.get(path) is not None]
            missing = [o for o in out if o.properties.get(path) is None]

            def key(o: _Object, prop: _Prop = prop) -> Any:
                v = o.properties[prop.name]
                if prop.base_type == "date":
                    return [_parse_date(x) for x in v] if isinstance(v, list) else _parse_date(v)
                return v

            present.sort(key=key, reverse=not s.ascending)
            # objects without the value come first in ascending order (nil sorts lowest; not
            # verified)
            out = missing + present if s.ascending else present + missing
        return out

    @staticmethod
    def _result(
        coll: _Collection, h: _Hit, req: search_get_pb2.SearchRequest, show_distance: bool
    ) -> search_get_pb2.SearchResult:
        md = req.metadata
        meta = search_get_pb2.MetadataResult(id_as_bytes=uuid_lib.UUID(h.obj.uuid).bytes)
        if show_distance and h.distance is not None:
            if md.distance:
                meta.distance = _f32(h.distance)
                meta.distance_present = True
            if md.certainty:
                target = next(iter(h.obj.vectors), "")
                if coll.distance_of(target) == "cosine":
                    meta.certainty = _f32(1 - h.distance / 2)
                    meta.certainty_present = True
        if h.score is not None and md.score:
            meta.score = _f32(h.score)
            meta.score_present = True
        if h.explain is not None and md.explain_score:
            meta.explain_score = h.explain
            meta.explain_score_present = True
        if md.creation_time_unix:
            meta.creation_time_unix = h.obj.created_ms
            meta.creation_time_unix_present = True
        if md.last_update_time_unix:
            meta.last_update_time_unix = h.obj.updated_ms
            meta.last_update_time_unix_present = True
        if md.is_consistent:
            meta.is_consistent = True
            meta.is_consistent_present = True
        if md.vector or len(md.vectors):
            if coll.named_vectors is None:
                if "" in h.obj.vectors:
                    meta.vector_bytes = h.obj.vectors[""].astype("<f4").tobytes()
            else:
                wanted = list(md.vectors) or list(h.obj.vectors)
                for name in wanted:
                    if name in h.obj.vectors:
                        meta.vectors.append(
                            base_pb2.Vectors(
                                name=name,
                                vector_bytes=h.obj.vectors[name].astype("<f4").tobytes(),
                                type=base_pb2.Vectors.VECTOR_TYPE_SINGLE_FP32,
                            )
                        )
        props = search_get_pb2.PropertiesResult(target_collection=coll.name)
        if req.HasField("properties"):
            pr = req.properties
            if len(pr.ref_properties) or len(pr.object_properties):
                raise _unimplemented("returning references or nested object properties")
            names = (
                list(coll.props) if pr.return_all_nonref_properties else list(pr.non_ref_properties)
            )
        else:
            names = list(coll.props)  # no PropertiesRequest: all non-ref properties (wire capture)
        for name in names:
            prop = coll.props.get(name)
            if prop is None:
                raise EmulatorError(
                    f"no such prop with name '{name}' found in class '{coll.name}' in the schema. "
                    "Check your schema files for which properties in this class are available"
                )
            if name in h.obj.properties:
                props.non_ref_props.fields[name].CopyFrom(_to_value(prop, h.obj.properties[name]))
        return search_get_pb2.SearchResult(properties=props, metadata=meta)

    # -------------------------------------------------------------- BatchObjects

    def BatchObjects(
        self, request: batch_pb2.BatchObjectsRequest, context: grpc.ServicerContext
    ) -> batch_pb2.BatchObjectsReply:
        """Per-object errors are returned in ``BatchObjectsReply.errors`` (index + message), never
        as a
        failed RPC (adapters/handlers/grpc/v1/batch/handler.go); the client turns them into
        ``BatchObjectReturn.errors`` and only raises when *every* object failed."""
        start = time.time()
        reply = batch_pb2.BatchObjectsReply()
        for i, obj in enumerate(request.objects):
            try:
                props = _props_from_batch(obj.properties) if obj.HasField("properties") else {}
                single: np.ndarray | None = None
                if obj.vector_bytes:
                    single = _vector_from_bytes(obj.vector_bytes)
                elif len(obj.vector):
                    single = np.asarray(list(obj.vector), dtype=np.float32)
                named: dict[str, np.ndarray] = {}
                for v in obj.vectors:
                    if v.type == base_pb2.Vectors.VECTOR_TYPE_MULTI_FP32:
                        raise _unimplemented("multi-vector (ColBERT) objects")
                    named[v.name] = _vector_from_bytes(v.vector_bytes)
                self.store.put_object(
                    obj.collection, obj.tenant or None, obj.uuid, props, single, named
                )
            except EmulatorError as exc:
                reply.errors.append(
                    batch_pb2.BatchObjectsReply.BatchError(index=i, error=exc.message)
                )
        reply.took = float(time.time() - start)
        return reply

    def BatchReferences(self, request: Any, context: grpc.ServicerContext) -> Any:
        return self._fail(context, _unimplemented("cross-references (BatchReferences)"))

    def BatchStream(self, request_iterator: Any, context: grpc.ServicerContext) -> Any:
        return self._fail(context, _unimplemented("server-side batching (BatchStream)"))

    # -------------------------------------------------------------- BatchDelete

    def BatchDelete(
        self, request: batch_delete_pb2.BatchDeleteRequest, context: grpc.ServicerContext
    ) -> batch_delete_pb2.BatchDeleteReply:
        """Delete by filter (adapters/handlers/grpc/v1/batch_delete.go): ``matches`` counts the
        matched
        objects; with ``dry_run`` nothing is deleted but every match still counts as successful;
        ``verbose`` lists the objects with their 16-byte uuids."""
        start = time.time()
        try:
            store = self.store
            with store.lock:
                coll = store.get_collection(request.collection)
                if not request.HasField("filters"):
                    raise EmulatorError("batch delete params: no filters in batch delete request")
                tenant = request.tenant if request.HasField("tenant") else None
                shard = store.shard_for(coll, tenant or None)
                matched = _Searcher(store, coll, shard).candidates(request.filters)
                reply = batch_delete_pb2.BatchDeleteReply(matches=len(matched))
                for o in matched:
                    if not request.dry_run:
                        shard.objects.pop(o.uuid, None)
                    reply.successful += 1
                    if request.verbose:
                        reply.objects.append(
                            batch_delete_pb2.BatchDeleteObject(
                                uuid=uuid_lib.UUID(o.uuid).bytes, successful=True, error=""
                            )
                        )
                reply.took = float(time.time() - start)
                return reply
        except EmulatorError as exc:
            return self._fail(context, exc)

    # -------------------------------------------------------------- TenantsGet

    def TenantsGet(
        self, request: tenants_pb2.TenantsGetRequest, context: grpc.ServicerContext
    ) -> tenants_pb2.TenantsGetReply:
        status_map = {
            "HOT": tenants_pb2.TENANT_ACTIVITY_STATUS_HOT,
            "COLD": tenants_pb2.TENANT_ACTIVITY_STATUS_COLD,
            "FROZEN": tenants_pb2.TENANT_ACTIVITY_STATUS_FROZEN,
        }
        try:
            names = list(request.names.values) if request.HasField("names") else None
            items = self.store.list_tenants(request.collection, names)
        except EmulatorError as exc:
            return self._fail(
                context, EmulatorError(f"get tenants: {exc.message}", grpc_code=exc.grpc_code)
            )
        return tenants_pb2.TenantsGetReply(
            tenants=[
                tenants_pb2.Tenant(
                    name=n,
                    activity_status=status_map.get(
                        s, tenants_pb2.TENANT_ACTIVITY_STATUS_UNSPECIFIED
                    ),
                )
                for n, s in items
            ]
        )

    # -------------------------------------------------------------- Aggregate

    def Aggregate(
        self, request: aggregate_pb2.AggregateRequest, context: grpc.ServicerContext
    ) -> aggregate_pb2.AggregateReply:
        """Total count (``objects_count``) over a tenant, optionally filtered.  Property
        aggregations,
        group-by and search-restricted aggregations are not emulated."""
        start = time.time()
        try:
            if (
                len(request.aggregations)
                or request.HasField("group_by")
                or request.WhichOneof("search")
            ):
                raise _unimplemented("property aggregations, group_by or search in Aggregate")
            store = self.store
            with store.lock:
                coll = store.get_collection(request.collection)
                shard = store.shard_for(coll, request.tenant or None)
                filters = request.filters if request.HasField("filters") else None
                count = len(_Searcher(store, coll, shard).candidates(filters))
            single = aggregate_pb2.AggregateReply.Single()
            if request.objects_count:
                single.objects_count = count
            return aggregate_pb2.AggregateReply(
                took=float(time.time() - start), single_result=single
            )
        except EmulatorError as exc:
            return self._fail(context, exc)


class _Interceptor(grpc.ServerInterceptor):
    """Records calls, enforces the API key (``authorization: Bearer <key>`` metadata ->
    UNAUTHENTICATED like Weaviate's auth interceptor) and applies injected faults."""

    def __init__(self, emulator: WeaviateEmulator) -> None:
        self.emu = emulator

    def intercept_service(self, continuation: Any, details: grpc.HandlerCallDetails) -> Any:
        method = details.method
        short = method.rsplit("/", 1)[-1]
        self.emu._record(RecordedRequest("grpc", short, method))
        handler = continuation(details)
        if handler is None:
            return None
        md = {k.lower(): v for k, v in (details.invocation_metadata or ())}
        if self.emu.api_key is not None and method != _HEALTH_CHECK:
            auth = md.get("authorization", "")
            if not auth:
                return _aborting(
                    handler,
                    grpc.StatusCode.UNAUTHENTICATED,
                    "extract auth: anonymous access not enabled, please provide an auth scheme "
                    "such as OIDC or API key",
                    0.0,
                )
            if auth != f"Bearer {self.emu.api_key}":
                return _aborting(
                    handler,
                    grpc.StatusCode.UNAUTHENTICATED,
                    "extract auth: invalid api key: unauthorized",
                    0.0,
                )
        fault = self.emu._take_fault("grpc", short, method)
        if fault is not None:
            if fault.code is None:
                time.sleep(fault.delay_s)
                return handler
            return _aborting(handler, fault.code, fault.message, fault.delay_s)
        return handler


def _aborting(handler: Any, code: grpc.StatusCode, message: str, delay_s: float) -> Any:
    def fail(_request: Any, context: grpc.ServicerContext) -> Any:
        if delay_s:
            time.sleep(delay_s)
        context.abort(code, message)

    if handler.request_streaming and handler.response_streaming:
        return grpc.stream_stream_rpc_method_handler(
            fail,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )
    return grpc.unary_unary_rpc_method_handler(
        fail,
        request_deserializer=handler.request_deserializer,
        response_serializer=handler.response_serializer,
    )


def _health_handler() -> grpc.GenericRpcHandler:
    """``grpc.health.v1.Health/Check`` (grpcio-health-checking is not a dependency of the client, so
    the
    service is served with a generic handler; the client uses wire-compatible WeaviateHealthCheck*
    messages)."""

    def check(
        _req: health_weaviate_pb2.WeaviateHealthCheckRequest, _ctx: grpc.ServicerContext
    ) -> Any:
        return health_weaviate_pb2.WeaviateHealthCheckResponse(
            status=health_weaviate_pb2.WeaviateHealthCheckResponse.SERVING
        )

    return grpc.method_handlers_generic_handler(
        "grpc.health.v1.Health",
        {
            "Check": grpc.unary_unary_rpc_method_handler(
                check,
                request_deserializer=health_weaviate_pb2.WeaviateHealthCheckRequest.FromString,
                response_serializer=health_weaviate_pb2.WeaviateHealthCheckResponse.SerializeToString,
            )
        },
    )


# --------------------------------------------------------------------------------------------------
# REST


def _err(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": [{"message": message}]}, status_code=status)


class _Rest:
    """The REST routes; every request goes through :meth:`dispatch` (recording, auth, faults)."""

    def __init__(self, emulator: WeaviateEmulator) -> None:
        self.emu = emulator
        self.store = emulator._store
        R = re.compile
        self.routes: list[tuple[str, re.Pattern[str], Callable[..., Any]]] = [
            ("GET", R(r"^/v1/meta$"), self.meta),
            ("GET", R(r"^/v1/\.well-known/openid-configuration$"), self.oidc),
            ("GET", R(r"^/v1/\.well-known/(ready|live)$"), self.ok),
            ("GET", R(r"^/v1/nodes(/.*)?$"), self.nodes),
            ("GET", R(r"^/pypi/weaviate-client/json$"), self.pypi),
            ("GET", R(r"^/v1/schema$"), self.schema_list),
            ("POST", R(r"^/v1/schema$"), self.schema_create),
            ("GET", R(r"^/v1/schema/(?P<c>[^/]+)$"), self.schema_get),
            ("PUT", R(r"^/v1/schema/(?P<c>[^/]+)$"), self.schema_update),
            ("DELETE", R(r"^/v1/schema/(?P<c>[^/]+)$"), self.schema_delete),
            ("POST", R(r"^/v1/schema/(?P<c>[^/]+)/properties$"), self.property_add),
            ("GET", R(r"^/v1/schema/(?P<c>[^/]+)/tenants$"), self.tenants_get),
            ("POST", R(r"^/v1/schema/(?P<c>[^/]+)/tenants$"), self.tenants_add),
            ("PUT", R(r"^/v1/schema/(?P<c>[^/]+)/tenants$"), self.tenants_update),
            ("DELETE", R(r"^/v1/schema/(?P<c>[^/]+)/tenants$"), self.tenants_delete),
            ("GET", R(r"^/v1/schema/(?P<c>[^/]+)/tenants/(?P<t>[^/]+)$"), self.tenant_get),
            ("HEAD", R(r"^/v1/schema/(?P<c>[^/]+)/tenants/(?P<t>[^/]+)$"), self.tenant_get),
            ("POST", R(r"^/v1/objects$"), self.object_create),
            ("GET", R(r"^/v1/objects/(?P<c>[^/]+)/(?P<id>[^/]+)$"), self.object_get),
            ("HEAD", R(r"^/v1/objects/(?P<c>[^/]+)/(?P<id>[^/]+)$"), self.object_head),
            ("PUT", R(r"^/v1/objects/(?P<c>[^/]+)/(?P<id>[^/]+)$"), self.object_replace),
            ("PATCH", R(r"^/v1/objects/(?P<c>[^/]+)/(?P<id>[^/]+)$"), self.object_merge),
            ("DELETE", R(r"^/v1/objects/(?P<c>[^/]+)/(?P<id>[^/]+)$"), self.object_delete),
        ]

    async def dispatch(self, request: Request) -> Response:
        path = request.url.path
        method = request.method
        tenant = request.query_params.get("tenant")
        self.emu._record(RecordedRequest("rest", method, path, tenant))
        public = path.startswith("/v1/.well-known/") or path.startswith("/pypi/")
        if self.emu.api_key is not None and not public:
            auth = request.headers.get("authorization", "")
            if not auth:
                return JSONResponse(
                    {
                        "code": 401,
                        "message": "anonymous access not enabled, please provide an auth scheme "
                        "such as OIDC",
                    },
                    status_code=401,
                )
            if auth != f"Bearer {self.emu.api_key}":
                return JSONResponse(
                    {"code": 401, "message": "unauthorized: invalid api key"}, status_code=401
                )
        fault = self.emu._take_fault("rest", path, path)
        if fault is not None:
            if fault.delay_s:
                await asyncio.sleep(fault.delay_s)
            if fault.status:
                return _err(fault.status, fault.message)
        for verb, pattern, fn in self.routes:
            m = pattern.match(path)
            if m and verb == method:
                body: Any = None
                raw = await request.body()
                if raw:
                    try:
                        body = json.loads(raw)
                    except json.JSONDecodeError:
                        return _err(400, "could not parse the request body as JSON")
                try:
                    return fn(request, body, **m.groupdict())
                except EmulatorError as exc:
                    return _err(exc.http_status, exc.message)
        if any(p.match(path) for _, p, _ in self.routes):
            return _err(405, f"method {method} not allowed")
        return _err(404, f"path {path} was not found")

    # --- misc
    def meta(self, request: Request, body: Any) -> Response:
        return JSONResponse(
            {
                "hostname": f"http://127.0.0.1:{self.emu.http_port}",
                "modules": {},
                "version": self.emu.version,
                "grpcMaxMessageSize": 104858000,
            }
        )

    def oidc(self, request: Request, body: Any) -> Response:
        return _err(404, "OIDC is not configured")  # 404 = no OIDC (api key or anonymous)

    def ok(self, request: Request, body: Any, **_: Any) -> Response:
        return Response(status_code=200)

    def nodes(self, request: Request, body: Any, **_: Any) -> Response:
        with self.store.lock:
            count = sum(
                len(s.objects) for c in self.store.collections.values() for s in c.shards.values()
            )
            shards = sum(len(c.shards) for c in self.store.collections.values())
        return JSONResponse(
            {
                "nodes": [
                    {
                        "name": "weaviate-emulator-0",
                        "status": "HEALTHY",
                        "version": self.emu.version,
                        "gitHash": "emulator",
                        "stats": {"objectCount": count, "shardCount": shards},
                        "batchStats": {"queueLength": 0, "ratePerSecond": 0},
                        "shards": None,
                    }
                ]
            }
        )

    def pypi(self, request: Request, body: Any) -> Response:
        """Stand-in for https://pypi.org/pypi/weaviate-client/json (the client's best-effort version
        look-up), so tests can point ``weaviate.connect.v4.PYPI_PACKAGE_URL`` here."""
        return JSONResponse({"info": {"version": self.emu.client_version}})

    # --- schema
    def schema_list(self, request: Request, body: Any) -> Response:
        with self.store.lock:
            return JSONResponse({"classes": [c.to_json() for c in self.store.collections.values()]})

    def schema_create(self, request: Request, body: Any) -> Response:
        if not isinstance(body, dict):
            raise EmulatorError("body must be a class object")
        return JSONResponse(self.store.create_collection(body).to_json())

    def schema_get(self, request: Request, body: Any, c: str) -> Response:
        with self.store.lock:
            try:
                coll = self.store.get_collection(c)
            except EmulatorError:
                return Response(status_code=404)
            return JSONResponse(coll.to_json())

    def schema_update(self, request: Request, body: Any, c: str) -> Response:
        return JSONResponse(self.store.update_collection(c, body or {}).to_json())

    def schema_delete(self, request: Request, body: Any, c: str) -> Response:
        self.store.delete_collection(c)
        return Response(status_code=200)

    def property_add(self, request: Request, body: Any, c: str) -> Response:
        return JSONResponse(self.store.add_property(c, body or {}).to_json())

    # --- tenants
    def tenants_get(self, request: Request, body: Any, c: str) -> Response:
        items = self.store.list_tenants(c)
        return JSONResponse([{"name": n, "activityStatus": s} for n, s in items])

    def tenants_add(self, request: Request, body: Any, c: str) -> Response:
        return JSONResponse(self.store.add_tenants(c, list(body or [])))

    def tenants_update(self, request: Request, body: Any, c: str) -> Response:
        return JSONResponse(self.store.update_tenants(c, list(body or [])))

    def tenants_delete(self, request: Request, body: Any, c: str) -> Response:
        self.store.delete_tenants(c, [str(n) for n in (body or [])])
        return Response(status_code=200)

    def tenant_get(self, request: Request, body: Any, c: str, t: str) -> Response:
        for name, status in self.store.list_tenants(c):
            if name == t:
                if request.method == "HEAD":
                    return Response(status_code=200)
                return JSONResponse({"name": name, "activityStatus": status})
        return Response(status_code=404)

    # --- objects
    @staticmethod
    def _vectors(body: dict[str, Any]) -> tuple[np.ndarray | None, dict[str, np.ndarray]]:
        single = np.asarray(body["vector"], dtype=np.float32) if body.get("vector") else None
        named = {k: np.asarray(v, dtype=np.float32) for k, v in (body.get("vectors") or {}).items()}
        return single, named

    def object_create(self, request: Request, body: Any) -> Response:
        if not isinstance(body, dict):
            raise EmulatorError("body must be an object")
        obj_id = body.get("id") or str(uuid_lib.uuid4())
        single, named = self._vectors(body)
        coll = self.store.get_collection(str(body.get("class") or ""))
        tenant = body.get("tenant") or request.query_params.get("tenant")
        obj = self.store.put_object(
            coll.name, tenant, obj_id, body.get("properties") or {}, single, named, mode="create"
        )
        return JSONResponse(_rest_object(coll, obj, tenant))

    def object_get(self, request: Request, body: Any, c: str, id: str) -> Response:
        tenant = request.query_params.get("tenant")
        coll = self.store.get_collection(c)
        obj = self.store.get_object(c, tenant, id)
        if obj is None:
            return Response(status_code=404)
        include = "vector" in (request.query_params.get("include") or "")
        return JSONResponse(_rest_object(coll, obj, tenant, include_vector=include))

    def object_head(self, request: Request, body: Any, c: str, id: str) -> Response:
        obj = self.store.get_object(c, request.query_params.get("tenant"), id)
        return Response(status_code=204 if obj is not None else 404)

    def _write(
        self, request: Request, body: Any, c: str, id: str, mode: Literal["replace", "merge"]
    ) -> Response:
        body = body if isinstance(body, dict) else {}
        single, named = self._vectors(body)
        tenant = body.get("tenant") or request.query_params.get("tenant")
        coll = self.store.get_collection(c)
        obj = self.store.put_object(
            coll.name, tenant, id, body.get("properties") or {}, single, named, mode=mode
        )
        if mode == "merge":
            return Response(status_code=204)
        return JSONResponse(_rest_object(coll, obj, tenant))

    def object_replace(self, request: Request, body: Any, c: str, id: str) -> Response:
        return self._write(request, body, c, id, "replace")

    def object_merge(self, request: Request, body: Any, c: str, id: str) -> Response:
        return self._write(request, body, c, id, "merge")

    def object_delete(self, request: Request, body: Any, c: str, id: str) -> Response:
        deleted = self.store.delete_object(c, request.query_params.get("tenant"), id)
        return Response(status_code=204 if deleted else 404)


# --------------------------------------------------------------------------------------------------
# the emulator


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class WeaviateEmulator:
    """A Weaviate server double on 127.0.0.1 (REST on ``http_port``, gRPC on ``grpc_port``).

    Args:
        api_key: when set, REST needs ``Authorization: Bearer <key>`` (else 401) and gRPC the
            ``authorization`` metadata (else UNAUTHENTICATED); ``/v1/.well-known/*`` and the gRPC
            health check stay public.
        version: reported by ``/v1/meta`` (the client changes its requests by server version).
        auto_schema: unknown properties in inserts are added to the schema with an inferred type,
            as Weaviate does by default (AUTOSCHEMA_ENABLED=true).  False -> per-object error.
        query_defaults_limit: limit applied to a Search without limit (QUERY_DEFAULTS_LIMIT, 10).
        grpc_workers: thread-pool size of the gRPC server.
    """

    def __init__(
        self,
        *,
        api_key: str | None = None,
        version: str = DEFAULT_VERSION,
        auto_schema: bool = True,
        query_defaults_limit: int = QUERY_DEFAULTS_LIMIT,
        grpc_workers: int = 8,
        client_version: str = "4.24.1",
    ) -> None:
        self.api_key = api_key
        self.version = version
        self.client_version = client_version
        self._store = _Store(auto_schema=auto_schema, query_defaults_limit=query_defaults_limit)
        self._grpc_workers = grpc_workers
        self._lock = threading.Lock()
        self._faults: list[_Fault] = []
        self._requests: list[RecordedRequest] = []
        self._http_port = 0
        self._grpc_port = 0
        self._uvicorn: uvicorn.Server | None = None
        self._http_thread: threading.Thread | None = None
        self._grpc_server: grpc.Server | None = None
        self._started = False

    # ----------------------------------------------------------------- lifecycle

    def start(self) -> WeaviateEmulator:
        """Start both servers on free loopback ports; returns self."""
        if self._started:
            return self
        rest = _Rest(self)
        app = Starlette(
            routes=[
                Route(
                    "/{path:path}",
                    rest.dispatch,
                    methods=["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"],
                )
            ]
        )
        self._http_port = _free_port()
        config = uvicorn.Config(
            app,
            host="127.0.0.1",
            port=self._http_port,
            log_level="error",
            access_log=False,
            lifespan="off",
        )
        server = uvicorn.Server(config)
        # uvicorn installs no signal handlers when run outside the main thread
        thread = threading.Thread(target=server.run, name="weaviate-emulator-http", daemon=True)
        thread.start()
        deadline = time.time() + 10
        while not server.started:
            if not thread.is_alive() or time.time() > deadline:
                raise RuntimeError("weaviate emulator: the HTTP server did not start")
            time.sleep(0.01)
        self._uvicorn, self._http_thread = server, thread

        gserver = grpc.server(
            futures.ThreadPoolExecutor(
                max_workers=self._grpc_workers, thread_name_prefix="weaviate-emulator-grpc"
            ),
            interceptors=[_Interceptor(self)],
            options=[
                ("grpc.max_receive_message_length", 104858000),
                ("grpc.max_send_message_length", 104858000),
                ("grpc.so_reuseport", 0),
            ],
        )
        weaviate_pb2_grpc.add_WeaviateServicer_to_server(_Servicer(self._store), gserver)
        gserver.add_generic_rpc_handlers((_health_handler(),))
        self._grpc_port = gserver.add_insecure_port("127.0.0.1:0")
        gserver.start()
        self._grpc_server = gserver
        self._started = True
        return self

    def stop(self) -> None:
        """Stop both servers (idempotent)."""
        if self._grpc_server is not None:
            self._grpc_server.stop(grace=None)
            self._grpc_server = None
        if self._uvicorn is not None:
            self._uvicorn.should_exit = True
            if self._http_thread is not None:
                self._http_thread.join(timeout=5)
            self._uvicorn = None
            self._http_thread = None
        self._started = False

    def __enter__(self) -> WeaviateEmulator:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    # ----------------------------------------------------------------- addresses

    @property
    def http_port(self) -> int:
        return self._http_port

    @property
    def grpc_port(self) -> int:
        return self._grpc_port

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<http_port>`` (what ``RAG_WEAVIATE_URL`` would hold)."""
        return f"http://127.0.0.1:{self._http_port}"

    @property
    def pypi_url(self) -> str:
        """A local stand-in for the client's package-index version look-up."""
        return f"{self.url}/pypi/weaviate-client/json"

    # ----------------------------------------------------------------- fault injection

    def kill_grpc(self) -> None:
        """Stop only the gRPC server: the port is then dead (connection refused)."""
        if self._grpc_server is not None:
            self._grpc_server.stop(grace=None).wait(5)
            self._grpc_server = None

    def inject_rest(
        self,
        path_prefix: str,
        status: int = 503,
        times: int = 1,
        *,
        delay_s: float = 0.0,
        message: str = "injected fault",
    ) -> None:
        """The next ``times`` REST requests whose path starts with ``path_prefix`` (e.g.
        ``/v1/schema``)
        get ``status`` with a Weaviate-style error body, after ``delay_s`` seconds.  ``status=0``
        only
        delays (to provoke client timeouts) and then serves the request normally."""
        with self._lock:
            self._faults.append(
                _Fault(
                    "rest",
                    path_prefix,
                    times,
                    status=status,
                    code=None,
                    delay_s=delay_s,
                    message=message,
                )
            )

    def inject_grpc(
        self,
        method_name: str,
        code: grpc.StatusCode | None = grpc.StatusCode.UNAVAILABLE,
        times: int = 1,
        *,
        delay_s: float = 0.0,
        message: str = "injected fault",
    ) -> None:
        """The next ``times`` gRPC calls of ``method_name`` (short ``"Search"`` or full
        ``"/weaviate.v1.Weaviate/Search"``; ``"Check"`` is the health check; ``"*"`` any) fail with
        ``code`` after ``delay_s`` seconds.  ``code=None`` only delays and then serves normally."""
        with self._lock:
            self._faults.append(
                _Fault(
                    "grpc",
                    method_name,
                    times,
                    status=0,
                    code=code,
                    delay_s=delay_s,
                    message=message,
                )
            )

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    def _take_fault(self, protocol: str, short: str, full: str) -> _Fault | None:
        with self._lock:
            for f in self._faults:
                if f.protocol != protocol or f.times <= 0:
                    continue
                if protocol == "rest":
                    hit = full.startswith(f.match)
                else:
                    hit = f.match in ("*", short, full)
                if hit:
                    f.times -= 1
                    if f.times <= 0:
                        self._faults.remove(f)
                    return f
        return None

    # ----------------------------------------------------------------- recording

    def _record(self, req: RecordedRequest) -> None:
        with self._lock:
            self._requests.append(req)

    @property
    def requests(self) -> list[RecordedRequest]:
        """A copy of every request seen so far, in arrival order."""
        with self._lock:
            return list(self._requests)

    def rest_calls(self) -> list[tuple[str, str]]:
        """``(HTTP method, path)`` of the REST requests seen so far."""
        return [(r.method, r.path) for r in self.requests if r.protocol == "rest"]

    def grpc_calls(self) -> list[str]:
        """Short names (``"Search"``, ``"BatchObjects"``, ``"Check"``) of the gRPC calls so far."""
        return [r.method for r in self.requests if r.protocol == "grpc"]

    def clear_requests(self) -> None:
        with self._lock:
            self._requests.clear()

    # ----------------------------------------------------------------- introspection for tests

    def object_count(self, collection: str, tenant: str | None = None) -> int:
        """Objects stored in a collection's shard (tenant), read directly (bypasses the API)."""
        with self._store.lock:
            coll = self._store.get_collection(collection)
            shard = coll.shards.get(tenant or "")
            return len(shard.objects) if shard else 0

    def tenant_names(self, collection: str) -> list[str]:
        with self._store.lock:
            return sorted(self._store.get_collection(collection).tenants)

    def reset(self) -> None:
        """Drop every collection, fault and recorded request."""
        with self._store.lock:
            self._store.collections.clear()
        self.clear_faults()
        self.clear_requests()


def uuid_bytes_to_str(raw: bytes) -> str:
    """Helper for tests reading raw replies: 16 big-endian bytes -> canonical uuid string."""
    return str(uuid_lib.UUID(bytes=raw))
