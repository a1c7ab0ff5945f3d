"""Weaviate adapter (weaviate-client v4: REST for schema and tenants, gRPC for search and batch).

Settings (`WeaviateOptions`, environment prefix ``RAG_WEAVIATE_``): ``RAG_WEAVIATE_URL`` (the
HTTP URL, e.g. ``http://127.0.0.1:8080``; an ``https://<cluster>.weaviate.cloud`` URL with an
API key is Weaviate Cloud), ``RAG_WEAVIATE_GRPC_PORT`` (default 50051) or
``RAG_WEAVIATE_GRPC_URL`` (``host:port``), ``WEAVIATE_API_KEY`` (or ``RAG_WEAVIATE_API_KEY``),
``RAG_WEAVIATE_COLLECTION`` (default: ``RAG_COLLECTION`` with its first letter upper-cased,
since Weaviate class names start with one: ``rag_app`` -> ``Rag_app``).

Layout of the collection:

* **Multi-tenant**, auto tenant creation off, no vectorizer, one self-provided cosine vector.
  Each app tenant is one Weaviate tenant, created explicitly by `upsert` (ingestion) only;
  records without a tenant go to ``_default``. App tenant names that Weaviate cannot hold
  (``.``/``@``, longer than 64) map to ``_t<hash>`` (app tenant names never contain ``_``, so
  the two never collide). A read for a tenant that does not exist returns nothing and logs it;
  it never creates the tenant. ``tenant=None`` on a read means every tenant (operator tools).
* **Ids**: Weaviate wants UUIDs: an object's uuid is ``uuid5(ID_NAMESPACE, <app id>)`` and the
  app id is kept in the ``rag_id`` property.
* **Properties** are declared explicitly so that types survive: ``text`` (the chunk, word
  tokenization, the only BM25 property), ``rag_id``, and one property per metadata field and
  *kind* (text, int, number, boolean and their lists), added (REST) before the first insert
  that needs it. Strings use ``field`` tokenization (exact, case-sensitive match). A field
  whose values have different kinds across records (``2020`` and ``2021.0``, ``1`` and
  ``True``) gets one property per kind: the first one named like the field, the others
  ``<field>__<kind>``; every property's description records its field and kind, so reads
  rebuild the metadata with the original Python types (ints stay ints, ``2.0`` stays a float)
  and filters on the field look at each of its properties. This is the widening rule: a
  field first seen as int and later as float is not an error.
* **Filters**: the portable grammar becomes ``weaviate.classes.query.Filter`` (v4); type
  mismatches (``{"draft": 1}`` on a boolean field) fold to "matches nothing" before anything is
  sent, and ``$ne``/``$nin`` also match records lacking the field (``IsNull``; the collection
  indexes null state).
* **Change token** and **the embedding model/dimension**: the token is a sentinel object in the
  reserved tenant ``_rag_meta`` (rewritten after every write), the model and dimension live in
  the collection description. Neither shows in counts, scans or searches.

Why the native client and not langchain-weaviate 0.0.8 for the port: every search of
`WeaviateVectorStore` is a ``hybrid`` call whose score is a per-query normalised number (not a
cosine similarity), its ``add_texts`` creates unknown tenants and collections with auto tenant
creation on, batch failures are only logged, and ids must already be UUIDs. `as_langchain`
still hands out that class for notebook experiments.

Known limits: text filters use Weaviate's ``field`` tokenization, which trims surrounding
whitespace and cannot index an empty string, so ``{"category": ""}`` matches nothing and
``" hr "`` equals ``"hr"``; a record re-upserted under another tenant is not removed from the
old tenant (the app's ids include the tenant, so this does not arise through ingestion);
hybrid search with ``tenant=None`` fuses per tenant and merges the fused scores.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import re
import threading
import time
import uuid
import warnings
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import partial, reduce
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlparse

from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from rag_app.access.filters import And, Cmp, Node, Or
from rag_app.errors import ConfigError, DimensionMismatchError, StoreError
from rag_app.stores.base import CollectionInfo, Metadata, StoreHit, StoreInfo, StoreRecord
from rag_app.stores.registry import StoreSpec

if TYPE_CHECKING:
    from langchain_core.embeddings import Embeddings
    from langchain_weaviate import WeaviateVectorStore

log = logging.getLogger(__name__)

MIN_SERVER_VERSION = (1, 27, 0)
#: uuid5 namespace of object ids: ``uuid5(ID_NAMESPACE, app_id)``.
ID_NAMESPACE = uuid.UUID("6f1d9a52-3c1b-5b0e-9a57-0d2a4b7e2c11")
DEFAULT_TENANT = "_default"
META_TENANT = "_rag_meta"
_RESERVED_TENANTS = frozenset({DEFAULT_TENANT, META_TENANT})
_TOKEN_UUID = uuid.uuid5(ID_NAMESPACE, "rag_app:change-token")
TEXT_PROP = "text"
ID_PROP = "rag_id"
#: Metadata keys the adapter refuses (Weaviate reserves ``id``/``vector``; ``text`` and
#: ``rag_id`` hold the chunk and the app id).
FORBIDDEN_KEYS = frozenset({"id", "vector", "_id", "_additional", TEXT_PROP, ID_PROP})
_DESCRIPTION_KEY = "rag_app"
_PAGE = 1000
_SCHEMA_TTL_S = 10.0
_FILTER_CACHE_SIZE = 256
T = TypeVar("T")
_WEAVIATE_TENANT_RE = re.compile(r"^[A-Za-z0-9-]{1,64}$")
_PROPERTY_RE = re.compile(r"^[a-z][_0-9A-Za-z]{0,230}$")
_KINDS = ("text", "int", "number", "bool", "text[]", "int[]", "number[]", "bool[]")
_DATA_TYPES = {
    "text": "text",
    "int": "int",
    "number": "number",
    "bool": "boolean",
    "text[]": "text[]",
    "int[]": "int[]",
    "number[]": "number[]",
    "bool[]": "boolean[]",
}
_KIND_OF_DATA_TYPE = {v: k for k, v in _DATA_TYPES.items()}
_NIL_UUID = "00000000-0000-0000-0000-000000000000"


def object_uuid(record_id: str) -> str:
    """The Weaviate object uuid of an app record id."""
    return str(uuid.uuid5(ID_NAMESPACE, record_id))


def weaviate_tenant(tenant: str | None) -> str:
    """The Weaviate tenant holding an app tenant's records."""
    if tenant is None:
        return DEFAULT_TENANT
    if _WEAVIATE_TENANT_RE.match(tenant):
        return tenant
    return "_t" + hashlib.sha256(tenant.encode()).hexdigest()[:40]


def collection_name(app_collection: str) -> str:
    """A Weaviate class name from the app's collection name (``rag_app`` -> ``Rag_app``)."""
    name = re.sub(r"[^0-9A-Za-z_]", "_", app_collection)
    if not name or not name[0].isalpha():
        name = "R" + name
    return name[0].upper() + name[1:]


# -- metadata kinds ------------------------------------------------------------------------
def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _scalar_kind(value: Any) -> str | None:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, str):
        return "text"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float) and math.isfinite(value):
        return "number"
    return None


def _value_kind(value: Any, existing: Mapping[str, str]) -> str | None:
    """The property kind of one metadata value (None: the value cannot be stored)."""
    if isinstance(value, list | tuple):
        if not value:  # an empty list: whichever list kind the field already has
            return next((k for k in existing if k.endswith("[]")), "text[]")
        kinds = {_scalar_kind(v) for v in value}
        if None in kinds:
            return None
        if kinds <= {"int", "number"}:
            return "number[]" if "number" in kinds else "int[]"
        return f"{kinds.pop()}[]" if len(kinds) == 1 else None
    return _scalar_kind(value)


def _to_weaviate(kind: str, value: Any) -> Any:
    if kind == "number":
        return float(value)
    if kind == "number[]":
        return [float(v) for v in value]
    if kind.endswith("[]"):
        return list(value)
    return value


def _from_weaviate(kind: str, value: Any) -> Any:
    if kind == "int":
        return int(value)
    if kind == "number":
        return float(value)
    if kind == "int[]":
        return [int(v) for v in value]
    if kind == "number[]":
        return [float(v) for v in value]
    if kind.endswith("[]"):
        return list(value)
    return value


@dataclass(frozen=True)
class _Prop:
    name: str  # the Weaviate property
    field: str  # the metadata key
    kind: str


# -- the store -------------------------------------------------------------------------------
class WeaviateStore:
    """`VectorStorePort` + `Scannable` + `ChangeTracking` + `NativeHybrid` over one
    multi-tenant Weaviate collection."""

    def __init__(
        self,
        *,
        url: str,
        collection: str,
        dimension: int,
        embedding_model: str,
        grpc_port: int | None = None,
        grpc_url: str | None = None,
        api_key: str | None = None,
        batch_size: int = 100,
        timeout_s: float = 30.0,
    ) -> None:
        self._url = url.rstrip("/")
        self._batch_size = max(1, batch_size)
        self._client = _connect(
            self._url,
            grpc_port=grpc_port,
            grpc_url=grpc_url,
            api_key=api_key,
            timeout_s=timeout_s,
        )
        # Tenants this object saw exist, so that a write does not list every tenant twice
        # (once for its own tenants, once for the change token's); forgotten when a write
        # fails, in case another host deleted one meanwhile.
        self._tenants_known: set[str] = set()
        try:
            self._collection = self._open_collection(collection, dimension, embedding_model)
        except BaseException:
            self._client.close()
            raise
        self._info = StoreInfo(
            backend="weaviate",
            location=self._url,
            collection=self._collection.name,
            dimension=dimension,
            embedding_model=embedding_model,
        )
        self._props: dict[str, _Prop] = {}  # Weaviate property -> field and kind
        self._fields: dict[str, dict[str, str]] = {}  # field -> kind -> property
        self._ignored: set[str] = set()  # properties that are not metadata
        self._schema_read_at = 0.0
        # Per-query work that depends only on the schema, cached (cleared with the schema):
        # the native filter of each portable filter, and each tenant's collection handle.
        self._filters: OrderedDict[str, Any] = OrderedDict()
        self._handles: dict[str, Any] = {}
        self._cache_lock = threading.Lock()
        self._refresh_schema()

    # -- opening -------------------------------------------------------------------------
    def _open_collection(self, name: str, dimension: int, embedding_model: str) -> Any:
        client = self._client
        described = {"embedding_model": embedding_model, "dimension": dimension}
        try:
            exists = client.collections.exists(name)
            if not exists:
                try:
                    _create_collection(client, name, described)
                    log.info("created Weaviate collection %s at %s", name, self._url)
                except Exception as exc:
                    if "already exists" not in str(exc):  # another host won the race
                        raise
            coll = client.collections.use(name)
            config = coll.config.get()
        except ConfigError:
            raise
        except Exception as exc:
            raise StoreError(
                f"cannot open Weaviate collection {name!r} at {self._url}: {_reason(exc)}"
            ) from exc
        if not config.multi_tenancy_config.enabled:
            raise ConfigError(
                f"Weaviate collection {name!r} at {self._url} is not multi-tenant, so it was not "
                "created by rag_app; use another RAG_WEAVIATE_COLLECTION (or RAG_COLLECTION)"
            )
        try:
            stored = json.loads(config.description or "{}").get(_DESCRIPTION_KEY) or {}
        except (ValueError, AttributeError):
            stored = {}
        if not isinstance(stored, dict) or "dimension" not in stored:
            raise ConfigError(
                f"Weaviate collection {name!r} at {self._url} was not created by rag_app (its "
                "description does not record the embedding model); use another "
                "RAG_WEAVIATE_COLLECTION (or RAG_COLLECTION)"
            )
        stored_dim, stored_model = stored.get("dimension"), stored.get("embedding_model")
        if int(str(stored_dim)) != dimension:
            raise ConfigError(
                f"collection {name!r} holds {stored_dim}-dimensional vectors from "
                f"{stored_model!r}, but the configured embedding model {embedding_model!r} "
                f"produces {dimension}. Use another RAG_COLLECTION or switch the model back."
            )
        if stored_model != embedding_model:
            raise ConfigError(
                f"collection {name!r} was built with embedding model {stored_model!r}, "
                f"not {embedding_model!r}; mixing models makes scores meaningless. Use another "
                "RAG_COLLECTION."
            )
        return coll

    @property
    def info(self) -> StoreInfo:
        return self._info

    # -- schema ----------------------------------------------------------------------------
    def _refresh_schema(self) -> None:
        try:
            config = self._collection.config.get()
        except Exception as exc:
            raise StoreError(f"cannot read the Weaviate schema: {_reason(exc)}") from exc
        props: dict[str, _Prop] = {}
        fields: dict[str, dict[str, str]] = {}
        ignored: set[str] = {TEXT_PROP, ID_PROP}
        for p in config.properties:
            if p.name in (TEXT_PROP, ID_PROP):
                continue
            field_name, kind = p.name, _KIND_OF_DATA_TYPE.get(str(p.data_type.value))
            try:
                described = json.loads(p.description or "{}").get(_DESCRIPTION_KEY)
            except (ValueError, AttributeError):
                described = None
            if isinstance(described, dict):
                field_name = str(described.get("field", field_name))
                kind = str(described.get("kind", kind))
            if kind not in _KINDS:
                ignored.add(p.name)  # a property this adapter does not write (dates, ...)
                continue
            props[p.name] = _Prop(p.name, field_name, kind)
            fields.setdefault(field_name, {})[kind] = p.name
        self._props, self._fields, self._ignored = props, fields, ignored
        self._schema_read_at = time.monotonic()
        self._filters.clear()

    def _fresh_schema(self, node: Node | None) -> None:
        """Re-read the schema when it is old, or a filter names a field not seen yet (another
        host may have added properties)."""
        stale = time.monotonic() - self._schema_read_at > _SCHEMA_TTL_S
        if stale or any(f not in self._fields for f in _fields_of(node)):
            self._refresh_schema()

    def _new_property_name(self, field_name: str, kind: str) -> str:
        taken = {p.lower() for p in self._props} | {TEXT_PROP, ID_PROP}
        suffix = kind.replace("[]", "_list")
        for candidate in (field_name, f"{field_name}__{suffix}"):
            # Weaviate lower-cases a property's first letter and compares names
            # case-insensitively; names that would change get a hashed name instead.
            if _PROPERTY_RE.match(candidate) and candidate.lower() not in taken:
                return candidate
        digest = hashlib.sha256(f"{field_name}\0{kind}".encode()).hexdigest()[:16]
        return f"f_{digest}_{suffix}"

    def _ensure_properties(self, needed: Sequence[tuple[str, str]]) -> None:
        """Add the properties of new (field, kind) pairs, in order of first appearance (the
        first kind of a field gets the field's name)."""
        from weaviate.classes.config import DataType, Property, Tokenization

        missing = [(f, k) for f, k in needed if k not in self._fields.get(f, {})]
        if not missing:
            return
        self._refresh_schema()
        for field_name, kind in missing:
            if kind in self._fields.get(field_name, {}):
                continue
            name = self._new_property_name(field_name, kind)
            is_text = kind in ("text", "text[]")
            prop = Property(
                name=name,
                data_type=DataType(_DATA_TYPES[kind]),
                description=json.dumps({_DESCRIPTION_KEY: {"field": field_name, "kind": kind}}),
                tokenization=Tokenization.FIELD if is_text else None,
                index_searchable=False if is_text else None,
            )
            try:
                self._collection.config.add_property(prop)
            except Exception as exc:
                raise StoreError(
                    f"Weaviate refused to add property {name!r} (metadata field "
                    f"{field_name!r}, {kind}): {_reason(exc)}"
                ) from exc
            log.info("added Weaviate property %s (%s %s)", name, field_name, kind)
            self._props[name] = _Prop(name, field_name, kind)
            self._fields.setdefault(field_name, {})[kind] = name
            self._filters.clear()

    # -- tenants ---------------------------------------------------------------------------
    def _tenant_names(self) -> list[str]:
        try:
            names = list(self._collection.tenants.get())
        except Exception as exc:
            raise StoreError(f"cannot list Weaviate tenants: {_reason(exc)}") from exc
        return sorted(str(n) for n in names if n != META_TENANT)

    def _read_tenants(self, tenant: str | None) -> list[str]:
        return self._tenant_names() if tenant is None else [weaviate_tenant(tenant)]

    def _ensure_tenants(self, names: set[str]) -> None:
        from weaviate.classes.tenants import Tenant

        names = names - self._tenants_known
        if not names:
            return
        missing = names - set(self._tenant_names())
        if missing:
            try:
                self._collection.tenants.create([Tenant(name=n) for n in sorted(missing)])
            except Exception as exc:
                raise StoreError(
                    f"cannot create Weaviate tenant(s) {', '.join(sorted(missing))}: {_reason(exc)}"
                ) from exc
            log.info("created Weaviate tenant(s) %s", ", ".join(sorted(missing)))
        self._tenants_known |= names

    def _per_tenant(
        self, tenant: str | None, what: str, fn: Callable[[Any], Any]
    ) -> Iterator[tuple[str, Any]]:
        """Run `fn(collection_of_tenant)` for `tenant` (None: every tenant); a tenant that does
        not exist yields nothing (logged), and is never created."""
        for name in self._read_tenants(tenant):
            try:
                result = fn(self._tenant(name))
            except Exception as exc:
                if _tenant_missing(exc):
                    log.info(
                        "Weaviate tenant %r of collection %s does not exist (no records were "
                        "ingested for it): %s returns nothing",
                        name,
                        self._info.collection,
                        what,
                    )
                    continue
                raise StoreError(f"Weaviate {what} failed: {_reason(exc)}") from exc
            yield name, result

    # -- writes ----------------------------------------------------------------------------
    def upsert(
        self,
        ids: Sequence[str],
        texts: Sequence[str],
        vectors: Sequence[Sequence[float]],
        metadatas: Sequence[Metadata],
    ) -> None:
        from weaviate.classes.data import DataObject

        if not (len(ids) == len(texts) == len(vectors) == len(metadatas)):
            raise StoreError("upsert: ids, texts, vectors and metadatas differ in length")
        if not ids:
            return
        for record_id, vec in zip(ids, vectors, strict=True):
            if len(vec) != self._info.dimension:
                raise DimensionMismatchError(
                    f"embedding of record {record_id!r} has {len(vec)} dimensions, collection "
                    f"{self._info.collection!r} expects {self._info.dimension}"
                )
        # Validate everything before anything is sent.
        planned: list[tuple[str, dict[str, tuple[str, Any]]]] = []
        needed: dict[tuple[str, str], None] = {}  # in order of first appearance
        seen_kinds: dict[str, dict[str, str]] = {f: dict(k) for f, k in self._fields.items()}
        for record_id, meta in zip(ids, metadatas, strict=True):
            tenant = meta.get("tenant")
            if tenant is not None and not isinstance(tenant, str):
                raise StoreError(f"record {record_id!r}: tenant must be a string, got {tenant!r}")
            values: dict[str, tuple[str, Any]] = {}
            for key, value in meta.items():
                if not isinstance(key, str):
                    raise StoreError(f"record {record_id!r}: metadata key {key!r} is not a string")
                if key in FORBIDDEN_KEYS:
                    raise StoreError(
                        f"record {record_id!r}: metadata key {key!r} is reserved in Weaviate "
                        f"(forbidden keys: {', '.join(sorted(FORBIDDEN_KEYS))})"
                    )
                if value is None:
                    continue
                kind = _value_kind(value, seen_kinds.get(key, {}))
                if kind is None:
                    raise StoreError(
                        f"record {record_id!r}: metadata field {key!r} holds {value!r}; Weaviate "
                        "stores strings, finite numbers, booleans and lists of one of them"
                    )
                seen_kinds.setdefault(key, {}).setdefault(kind, "")
                values[key] = (kind, value)
                needed[(key, kind)] = None
            planned.append((weaviate_tenant(tenant), values))
        self._ensure_properties(list(needed))
        self._ensure_tenants({t for t, _ in planned})

        by_tenant: dict[str, list[int]] = {}
        for n, (tenant_name, _) in enumerate(planned):
            by_tenant.setdefault(tenant_name, []).append(n)
        failures: list[str] = []
        try:
            for tenant_name, positions in by_tenant.items():
                target = self._tenant(tenant_name)
                for start in range(0, len(positions), self._batch_size):
                    chunk = positions[start : start + self._batch_size]
                    objects = []
                    for n in chunk:
                        props: dict[str, Any] = {TEXT_PROP: texts[n], ID_PROP: ids[n]}
                        for key, (kind, value) in planned[n][1].items():
                            props[self._fields[key][kind]] = _to_weaviate(kind, value)
                        objects.append(
                            DataObject(
                                properties=props,
                                uuid=object_uuid(ids[n]),
                                vector=[float(x) for x in vectors[n]],
                            )
                        )
                    failures.extend(
                        self._insert(target, tenant_name, objects, [ids[n] for n in chunk])
                    )
        except BaseException:
            self._tenants_known.clear()
            raise
        finally:
            self._touch_after_write()
        if failures:
            self._tenants_known.clear()
            shown = "; ".join(failures[:20])
            more = f" (and {len(failures) - 20} more)" if len(failures) > 20 else ""
            raise StoreError(
                f"Weaviate rejected {len(failures)} of {len(ids)} records: {shown}{more}"
            )

    @staticmethod
    def _insert(target: Any, tenant_name: str, objects: list[Any], ids: list[str]) -> list[str]:
        """Insert one batch; the failed records as ``'<id>' (tenant t): <reason>``."""
        from weaviate.exceptions import WeaviateInsertManyAllFailedError

        try:
            result = target.data.insert_many(objects)
        except WeaviateInsertManyAllFailedError as exc:
            return [f"{i!r} (tenant {tenant_name}): {_reason(exc)}" for i in ids]
        except Exception as exc:
            shown = ", ".join(repr(i) for i in ids[:10]) + (", ..." if len(ids) > 10 else "")
            raise StoreError(
                f"Weaviate batch insert of {len(ids)} records ({shown}) into tenant "
                f"{tenant_name} failed; earlier batches were written: {_reason(exc)}"
            ) from exc
        return [
            f"{ids[index]!r} (tenant {tenant_name}): {error.message}"
            for index, error in sorted(result.errors.items())
        ]

    def delete(self, ids: Sequence[str], *, tenant: str | None = None) -> None:
        from weaviate.classes.query import Filter

        wanted = [object_uuid(i) for i in dict.fromkeys(ids)]
        if not wanted:
            return
        deleted = 0
        try:
            for start in range(0, len(wanted), _PAGE):
                where = Filter.by_id().contains_any(wanted[start : start + _PAGE])
                delete_many: Callable[[Any], Any] = partial(_delete_many, where=where)
                for _, result in self._per_tenant(tenant, "delete", delete_many):
                    deleted += int(result.successful)
                    if result.failed:
                        raise StoreError(
                            f"Weaviate could not delete {result.failed} of {result.matches} records"
                        )
        finally:
            if deleted:
                self._touch_after_write()

    # -- change token ----------------------------------------------------------------------
    def change_token(self) -> str:
        """A token that changes whenever any writer (any host) changed this collection."""
        try:
            obj = self._tenant(META_TENANT).query.fetch_object_by_id(
                _TOKEN_UUID, return_properties=[TEXT_PROP]
            )
        except Exception as exc:
            if _tenant_missing(exc):
                return ""
            raise StoreError(f"cannot read the Weaviate change token: {_reason(exc)}") from exc
        return str(obj.properties.get(TEXT_PROP, "")) if obj is not None else ""

    def _touch(self) -> None:
        from weaviate.classes.data import DataObject

        self._ensure_tenants({META_TENANT})
        token = uuid.uuid4().hex
        meta = self._tenant(META_TENANT)
        try:
            result = meta.data.insert_many(
                [DataObject(properties={TEXT_PROP: token, ID_PROP: "_token"}, uuid=_TOKEN_UUID)]
            )
        except Exception as exc:
            self._tenants_known.clear()
            raise StoreError(
                f"Weaviate wrote the records but could not record the change: {_reason(exc)}"
            ) from exc
        if result.errors:
            self._tenants_known.clear()
            raise StoreError(
                "Weaviate wrote the records but could not record the change: "
                + "; ".join(e.message for e in result.errors.values())
            )

    def _touch_after_write(self) -> None:
        try:
            self._touch()
        except StoreError:
            log.warning("could not record a change of %s", self._info.collection)

    # -- reads -----------------------------------------------------------------------------
    def _check_vector(self, vector: Sequence[float]) -> list[float]:
        if len(vector) != self._info.dimension:
            raise DimensionMismatchError(
                f"query embedding has {len(vector)} dimensions, collection "
                f"{self._info.collection!r} expects {self._info.dimension}"
            )
        return [float(x) for x in vector]

    def _metadata(self, properties: Mapping[str, Any]) -> Metadata:
        if any(k not in self._props and k not in self._ignored for k in properties):
            self._refresh_schema()
        out: Metadata = {}
        for name, value in properties.items():
            prop = self._props.get(name)
            if prop is None or value is None:
                continue
            out[prop.field] = _from_weaviate(prop.kind, value)
        return out

    def _hit(self, obj: Any, score: float) -> StoreHit:
        props = obj.properties
        return StoreHit(
            id=str(props.get(ID_PROP) or obj.uuid),
            text=str(props.get(TEXT_PROP) or ""),
            metadata=self._metadata(props),
            score=score,
        )

    def _record(self, obj: Any, with_text: bool) -> StoreRecord:
        props = obj.properties
        return StoreRecord(
            id=str(props.get(ID_PROP) or obj.uuid),
            metadata=self._metadata(props),
            text=str(props.get(TEXT_PROP) or "") if with_text else None,
        )

    def query(
        self, vector: Sequence[float], k: int, where: Node | None, *, tenant: str | None = None
    ) -> list[StoreHit]:
        from weaviate.classes.query import MetadataQuery

        query_vector = self._check_vector(vector)
        return self._search(
            "vector search",
            k,
            where,
            tenant,
            lambda c, filters: c.query.near_vector(
                query_vector,
                limit=k,
                filters=filters,
                return_metadata=MetadataQuery(distance=True),
            ),
            # cosine distance -> similarity
            lambda m: 1.0 - float(m.distance if m.distance is not None else 1.0),
        )

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
        """Weaviate's hybrid search: BM25F on the chunk text and the given vector, fused with
        relativeScoreFusion (`alpha` weighs the vector side); the score is the fused score."""
        from weaviate.classes.query import HybridFusion, MetadataQuery

        query_vector = self._check_vector(vector)
        return self._search(
            "hybrid search",
            k,
            where,
            tenant,
            lambda c, filters: c.query.hybrid(
                text,
                vector=query_vector,
                alpha=float(alpha),
                limit=k,
                filters=filters,
                query_properties=[TEXT_PROP],
                fusion_type=HybridFusion.RELATIVE_SCORE,
                return_metadata=MetadataQuery(score=True),
            ),
            lambda m: float(m.score if m.score is not None else 0.0),
        )

    def _search(
        self,
        what: str,
        k: int,
        where: Node | None,
        tenant: str | None,
        run: Callable[[Any, Any], Any],
        score: Callable[[Any], float],
    ) -> list[StoreHit]:
        """One search per tenant (all tenants when None) with the translated filter; hits
        merged best first."""
        native = self.translate(where)
        if native is False or k <= 0:
            return []
        filters = None if native is True else native
        hits = [
            self._hit(obj, score(obj.metadata))
            for _, result in self._per_tenant(tenant, what, lambda c: run(c, filters))
            for obj in result.objects
        ]
        hits.sort(key=lambda h: -h.score)
        return hits[:k]

    def get(self, ids: Sequence[str], *, tenant: str | None = None) -> list[StoreRecord]:
        from weaviate.classes.query import Filter

        wanted = [object_uuid(i) for i in dict.fromkeys(ids)]
        if not wanted:
            return []
        out: list[StoreRecord] = []
        for start in range(0, len(wanted), _PAGE):
            chunk = wanted[start : start + _PAGE]
            where = Filter.by_id().contains_any(chunk)
            fetch: Callable[[Any], Any] = partial(_fetch, filters=where, limit=len(chunk))
            for _, result in self._per_tenant(tenant, "get by id", fetch):
                out.extend(self._record(obj, True) for obj in result.objects)
        return out

    def _scan(self, tenant: str | None, scan: Callable[[Any], Iterator[T]]) -> Iterator[T]:
        """Yield `scan(collection_of_tenant)` for `tenant` (None: all tenants); a tenant that
        does not exist yields nothing (logged, never created)."""
        for name in self._read_tenants(tenant):
            try:
                yield from scan(self._tenant(name))
            except StoreError:
                raise
            except Exception as exc:
                if _tenant_missing(exc):
                    log.info("Weaviate tenant %r does not exist: no records", name)
                    continue
                raise StoreError(f"Weaviate scan failed: {_reason(exc)}") from exc

    def records_with_vectors(
        self, *, tenant: str | None = None
    ) -> Iterator[tuple[StoreRecord, list[float]]]:
        """Every record of `tenant` (None: all tenants) with its text and vector, for export
        and migration (the cursor, with vectors)."""

        def scan(target: Any) -> Iterator[tuple[StoreRecord, list[float]]]:
            for obj in target.iterator(cache_size=_PAGE, include_vector=True):
                vector: Any = obj.vector
                if isinstance(vector, dict):  # named vectors: ours is the default one
                    vector = vector.get("default") or next(iter(vector.values()), [])
                yield self._record(obj, True), [float(x) for x in vector or []]

        return self._scan(tenant, scan)

    def records(
        self, where: Node | None = None, *, tenant: str | None = None, with_text: bool = False
    ) -> Iterator[StoreRecord]:
        """Every record of `tenant` (None: all tenants) matching `where`. Weaviate's cursor
        cannot be combined with a filter, so a filtered scan walks the ids with the cursor and
        applies the filter natively to each page of ids."""
        from weaviate.classes.query import Filter

        native = self.translate(where)
        if native is False:
            return iter(())

        def scan(target: Any) -> Iterator[StoreRecord]:
            if native is True:
                for obj in target.iterator(cache_size=_PAGE):
                    yield self._record(obj, with_text)
                return
            page: list[str] = []
            for obj in target.iterator(cache_size=_PAGE, return_properties=[]):
                page.append(str(obj.uuid))
                if len(page) == _PAGE:
                    yield from self._filtered_page(target, native, page, with_text, Filter)
                    page = []
            if page:
                yield from self._filtered_page(target, native, page, with_text, Filter)

        return self._scan(tenant, scan)

    def _filtered_page(
        self, target: Any, native: Any, page: list[str], with_text: bool, flt: Any
    ) -> Iterator[StoreRecord]:
        result = target.query.fetch_objects(
            filters=native & flt.by_id().contains_any(page), limit=len(page)
        )
        for obj in result.objects:
            yield self._record(obj, with_text)

    def count(self, *, tenant: str | None = None) -> int:
        return sum(
            int(result.total_count or 0)
            for _, result in self._per_tenant(
                tenant, "count", lambda c: c.aggregate.over_all(total_count=True)
            )
        )

    def close(self) -> None:
        self._client.close()

    # -- administration (`Administrable`) ----------------------------------------------
    def _describe(self, name: str, config: Any) -> CollectionInfo:
        described = _described(config)
        tenants: dict[str, int] = {}
        coll = self._client.collections.use(name)
        try:
            if config.multi_tenancy_config.enabled:
                for tenant in sorted(str(t) for t in coll.tenants.get()):
                    if tenant == META_TENANT:
                        continue
                    result = coll.with_tenant(tenant).aggregate.over_all(total_count=True)
                    tenants[tenant] = int(result.total_count or 0)
            else:
                tenants[""] = int(coll.aggregate.over_all(total_count=True).total_count or 0)
        except Exception as exc:
            raise StoreError(f"cannot count Weaviate collection {name!r}: {_reason(exc)}") from exc
        properties = {
            str(p.name): str(p.data_type.value)
            for p in config.properties
            if p.name not in (TEXT_PROP, ID_PROP)
        }
        dimension = described.get("dimension")
        return CollectionInfo(
            name=name,
            dimension=int(str(dimension)) if dimension is not None else None,
            metric=_metric_of(config),
            count=sum(tenants.values()),
            per_tenant=tenants,
            embedding_model=(
                str(described["embedding_model"]) if "embedding_model" in described else None
            ),
            deletion_protection=bool(described.get("deletion_protection", False)),
            filterable_fields=sorted(properties),
            extra={
                "location": self._url,
                "properties": properties,
                "multi_tenant": bool(config.multi_tenancy_config.enabled),
                "tenants": "one Weaviate tenant per tenant",
            },
        )

    def _config(self, name: str) -> Any:
        try:
            if not self._client.collections.exists(name):
                raise ConfigError(f"Weaviate collection {name!r} does not exist at {self._url}")
            return self._client.collections.use(name).config.get()
        except ConfigError:
            raise
        except Exception as exc:
            raise StoreError(f"cannot read Weaviate collection {name!r}: {_reason(exc)}") from exc

    def list_collections(self) -> list[CollectionInfo]:
        try:
            configs = self._client.collections.list_all(simple=False)
        except Exception as exc:
            raise StoreError(f"cannot list Weaviate collections: {_reason(exc)}") from exc
        return [self._describe(str(name), configs[name]) for name in sorted(configs)]

    def describe_collection(self, name: str) -> CollectionInfo:
        config = self._config(name)
        return self._describe(str(config.name), config)

    def create_collection(
        self,
        name: str,
        *,
        dimension: int,
        embedding_model: str,
        metric: str = "cosine",
        deletion_protection: bool = False,
        filterable_fields: Mapping[str, str] | None = None,
        cloud: str | None = None,
        region: str | None = None,
    ) -> CollectionInfo:
        """A rag_app collection whose property schema declares `filterable_fields` (catalog
        kinds; a list becomes ``text[]``) up front; fields not declared are added by the first
        write that needs them, as always."""
        from weaviate.classes.config import DataType, Property, Tokenization

        if metric != "cosine":
            raise ConfigError(f"Weaviate collections of rag_app use cosine, not {metric!r}")
        if self._client.collections.exists(name):
            raise ConfigError(f"Weaviate collection {name!r} already exists at {self._url}")
        extra: list[Any] = []
        skipped: list[str] = []
        for field_name, catalog_kind in sorted((filterable_fields or {}).items()):
            kind = _CATALOG_KINDS.get(str(catalog_kind))
            ok = _PROPERTY_RE.match(field_name) and field_name.lower() not in (TEXT_PROP, ID_PROP)
            if kind is None or not ok or field_name in FORBIDDEN_KEYS:
                skipped.append(field_name)
                continue
            is_text = kind in ("text", "text[]")
            extra.append(
                Property(
                    name=field_name,
                    data_type=DataType(_DATA_TYPES[kind]),
                    description=json.dumps({_DESCRIPTION_KEY: {"field": field_name, "kind": kind}}),
                    tokenization=Tokenization.FIELD if is_text else None,
                    index_searchable=False if is_text else None,
                )
            )
        if skipped:
            log.warning(
                "not declared up front (added by the first write instead): %s", ", ".join(skipped)
            )
        described: dict[str, Any] = {"embedding_model": embedding_model, "dimension": dimension}
        if deletion_protection:
            described["deletion_protection"] = True
        try:
            _create_collection(self._client, name, described, extra)
        except Exception as exc:
            raise StoreError(f"cannot create Weaviate collection {name!r}: {_reason(exc)}") from exc
        return self.describe_collection(name)

    def set_deletion_protection(self, name: str, enabled: bool) -> None:
        """Weaviate has no deletion protection of its own: a flag in the description."""
        config = self._config(name)
        described = _described(config)
        if not described:
            raise ConfigError(f"Weaviate collection {name!r} was not created by rag_app")
        described["deletion_protection"] = enabled
        try:
            self._client.collections.use(name).config.update(
                description=json.dumps({_DESCRIPTION_KEY: described})
            )
        except Exception as exc:
            raise StoreError(f"cannot update Weaviate collection {name!r}: {_reason(exc)}") from exc

    def delete_collection(self, name: str) -> None:
        config = self._config(name)
        if _described(config).get("deletion_protection"):
            raise ConfigError(
                f"Weaviate collection {name!r} has deletion protection on; turn it off first: "
                f"rag-app stores protect {name} --off"
            )
        try:
            self._client.collections.delete(name)
        except Exception as exc:
            raise StoreError(f"cannot delete Weaviate collection {name!r}: {_reason(exc)}") from exc
        finally:
            self._tenants_known.clear()

    # -- filters ---------------------------------------------------------------------------
    def translate(self, node: Node | None) -> Any:
        """Portable grammar -> a v4 ``Filter``, or True (matches everything) / False (matches
        nothing) when the filter folds to a constant for this collection's schema."""
        if node is None:
            return True
        self._fresh_schema(node)
        key = repr(node)  # repr keeps value types apart (True vs 1), which equality would not
        cached = self._filters.get(key)
        if cached is None:
            cached = self._translate(node)
            with self._cache_lock:
                self._filters[key] = cached
                while len(self._filters) > _FILTER_CACHE_SIZE:
                    self._filters.popitem(last=False)
        return cached

    def _tenant(self, name: str) -> Any:
        """The collection handle of one tenant (cached: `with_tenant` builds a new object)."""
        handle = self._handles.get(name)
        if handle is None:
            handle = self._handles[name] = self._collection.with_tenant(name)
        return handle

    def _translate(self, node: Node) -> Any:
        if isinstance(node, And):
            parts = [self._translate(item) for item in node.items]
            if any(p is False for p in parts):
                return False
            parts = [p for p in parts if p is not True]
            return reduce(lambda a, b: a & b, parts) if parts else True
        if isinstance(node, Or):
            parts = [self._translate(item) for item in node.items]
            if any(p is True for p in parts):
                return True
            parts = [p for p in parts if p is not False]
            return reduce(lambda a, b: a | b, parts) if parts else False
        if isinstance(node, Cmp):
            return self._cmp(node)
        raise StoreError(f"cannot translate filter node {node!r}")

    def _cmp(self, node: Cmp) -> Any:
        from weaviate.classes.query import Filter

        kinds = self._fields.get(node.field, {})
        op = node.op
        values = node.value if isinstance(node.value, tuple) else (node.value,)
        if op in ("$ne", "$nin"):
            # not (any of the values): every property of the field either lacks the record's
            # value (IsNull) or holds another one.
            parts: list[Any] = []
            for kind, prop in kinds.items():
                converted = [c for v in values if (c := _operand(kind, v)) is not None]
                if not converted:
                    continue
                by = Filter.by_property(prop)
                differs = reduce(lambda a, b: a & b, [by.not_equal(c) for c in converted])
                parts.append(differs | by.is_none(True))
            return reduce(lambda a, b: a & b, parts) if parts else True
        alternatives: list[Any] = []
        for kind, prop in kinds.items():
            by = Filter.by_property(prop)
            if op in ("$eq", "$in"):
                converted = [c for v in values if (c := _operand(kind, v)) is not None]
                if converted:
                    alternatives.append(
                        by.equal(converted[0])
                        if len(converted) == 1
                        else by.contains_any(converted)
                    )
            elif op == "$contains":
                if kind.endswith("[]"):
                    c = _operand(kind[:-2], values[0])
                    if c is not None:
                        alternatives.append(by.contains_any([c]))
            elif kind in ("int", "number"):
                bound = values[0]
                if isinstance(bound, int | float) and not isinstance(bound, bool):
                    alternatives.extend(_range(by, op, kind, bound))
        if not alternatives:
            return False
        return reduce(lambda a, b: a | b, alternatives)

    # -- LangChain -------------------------------------------------------------------------
    def as_langchain(self, embeddings: Embeddings) -> WeaviateVectorStore:
        """langchain-weaviate's `WeaviateVectorStore` over this collection, for notebook admin
        experiments.

        **It BYPASSES PERMISSIONS**: no tenant or ACL filter is applied, so any search returns
        any tenant's records (pass ``tenant=...`` yourself). Its similarity scores are
        hybrid-normalised per query, not cosine similarities, and its ``add_texts`` would
        create tenants this adapter never created; use the app to ingest.
        """
        from langchain_weaviate import WeaviateVectorStore

        warnings.warn(
            "WeaviateStore.as_langchain() BYPASSES PERMISSIONS (no tenant/ACL filtering) and its "
            "scores are hybrid-normalised; use it for admin experiments only",
            UserWarning,
            stacklevel=2,
        )
        return WeaviateVectorStore(
            client=self._client,
            index_name=self._info.collection,
            text_key=TEXT_PROP,
            embedding=embeddings,
            use_multi_tenancy=True,
        )


def _create_collection(
    client: Any, name: str, described: Mapping[str, Any], extra: Sequence[Any] = ()
) -> None:
    """Create a rag_app collection: multi-tenant (explicit tenants), self-provided cosine
    vectors, the model and dimension in its description, `extra` properties after the two
    of the adapter, and the meta tenant."""
    from weaviate.classes.config import (
        Configure,
        DataType,
        Property,
        Tokenization,
        VectorDistances,
    )
    from weaviate.classes.tenants import Tenant

    client.collections.create(
        name,
        description=json.dumps({_DESCRIPTION_KEY: dict(described)}),
        properties=[
            Property(
                name=TEXT_PROP,
                data_type=DataType.TEXT,
                tokenization=Tokenization.WORD,
                description=json.dumps({_DESCRIPTION_KEY: "chunk text"}),
            ),
            Property(
                name=ID_PROP,
                data_type=DataType.TEXT,
                tokenization=Tokenization.FIELD,
                index_searchable=False,
                description=json.dumps({_DESCRIPTION_KEY: "app record id"}),
            ),
            *extra,
        ],
        vector_config=Configure.Vectors.self_provided(
            vector_index_config=Configure.VectorIndex.hnsw(distance_metric=VectorDistances.COSINE)
        ),
        multi_tenancy_config=Configure.multi_tenancy(enabled=True, auto_tenant_creation=False),
        inverted_index_config=Configure.inverted_index(index_null_state=True),
    )
    client.collections.use(name).tenants.create([Tenant(name=META_TENANT)])


def _described(config: Any) -> dict[str, Any]:
    """What rag_app recorded in a collection's description ({} when not a rag_app one)."""
    try:
        stored = json.loads(config.description or "{}").get(_DESCRIPTION_KEY) or {}
    except (ValueError, AttributeError):
        return {}
    return dict(stored) if isinstance(stored, dict) else {}


def _metric_of(config: Any) -> str | None:
    try:
        vectors = config.vector_config or {}
        for named in vectors.values():
            return str(named.vector_index_config.distance_metric.value)
        return str(config.vector_index_config.distance_metric.value)
    except AttributeError:
        return None


#: field catalog kind -> adapter property kind, for properties declared at creation
_CATALOG_KINDS = {"str": "text", "int": "int", "float": "number", "bool": "bool", "list": "text[]"}


def _delete_many(collection: Any, *, where: Any) -> Any:
    return collection.data.delete_many(where=where)


def _fetch(collection: Any, *, filters: Any, limit: int) -> Any:
    return collection.query.fetch_objects(filters=filters, limit=limit)


def _operand(kind: str, value: Any) -> Any:
    """`value` as an operand for a property of scalar `kind`, or None when no record of that
    kind can equal it (the grammar keeps booleans, numbers and strings apart)."""
    if kind == "text":
        return value if isinstance(value, str) else None
    if kind == "bool":
        return value if isinstance(value, bool) else None
    if not _is_number(value):
        return None
    if kind == "int":
        return int(value) if float(value).is_integer() else None
    if kind == "number":
        return float(value)
    return None  # list kinds: $eq/$in never match a list


def _range(by: Any, op: str, kind: str, value: int | float) -> list[Any]:
    if kind == "number":
        v = float(value)
        fn = {
            "$gt": by.greater_than,
            "$gte": by.greater_or_equal,
            "$lt": by.less_than,
            "$lte": by.less_or_equal,
        }[op]
        return [fn(v)]
    # an int property takes integral operands only: x > 2021.5 <=> x > 2021, x >= 2021.5 <=>
    # x >= 2022, and so on
    low, high = math.floor(value), math.ceil(value)
    if op == "$gt":
        return [by.greater_than(low)]
    if op == "$gte":
        return [by.greater_or_equal(high)]
    if op == "$lt":
        return [by.less_than(high)]
    return [by.less_or_equal(low)]


def _fields_of(node: Node | None) -> Iterator[str]:
    if node is None:
        return
    if isinstance(node, Cmp):
        yield node.field
    else:
        for item in node.items:
            yield from _fields_of(item)


def _reason(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text if len(text) <= 500 else text[:497] + "..."


def _tenant_missing(exc: BaseException) -> bool:
    return "tenant not found" in str(exc)


# -- connecting ------------------------------------------------------------------------------
def _connect(
    url: str,
    *,
    grpc_port: int | None,
    grpc_url: str | None,
    api_key: str | None,
    timeout_s: float,
) -> Any:
    """Connect without the client's init checks (they look the client version up on the public
    package index), then check the server version and the gRPC port ourselves, failing fast."""
    import weaviate
    from weaviate.classes.init import AdditionalConfig, Auth, Timeout

    parsed = urlparse(url)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise ConfigError(
            f"invalid RAG_WEAVIATE_URL {url!r}; expected http(s)://host[:port], e.g. "
            "http://127.0.0.1:8080"
        )
    secure = parsed.scheme == "https"
    host = parsed.hostname
    http_port = parsed.port or (443 if secure else 8080)
    cloud = host.endswith((".weaviate.cloud", ".weaviate.network"))
    if grpc_url:
        target = grpc_url.split("://", 1)[-1].rstrip("/")
        grpc_host, _, port_text = target.rpartition(":")
        if not grpc_host or not port_text.isdigit():
            raise ConfigError(f"invalid RAG_WEAVIATE_GRPC_URL {grpc_url!r}; expected host:port")
        grpc_secure = grpc_url.startswith(("https://", "grpcs://")) or secure
        g_port = int(port_text)
    elif cloud:
        grpc_host, g_port, grpc_secure = f"grpc-{host}", 443, True
    else:
        grpc_host, g_port, grpc_secure = host, grpc_port or 50051, secure
    if cloud and not api_key:
        raise ConfigError(f"Weaviate Cloud at {url} needs an API key: set WEAVIATE_API_KEY")
    try:
        client = weaviate.connect_to_custom(
            http_host=host,
            http_port=http_port,
            http_secure=secure,
            grpc_host=grpc_host,
            grpc_port=g_port,
            grpc_secure=grpc_secure,
            auth_credentials=Auth.api_key(api_key) if api_key else None,
            additional_config=AdditionalConfig(
                timeout=Timeout(init=min(timeout_s, 10), query=timeout_s, insert=timeout_s)
            ),
            skip_init_checks=True,
        )
    except Exception as exc:
        raise _connect_error(url, exc) from exc
    try:
        _check_version(client, url)
        _check_grpc(grpc_host, g_port, grpc_secure, timeout=min(timeout_s, 5.0))
    except BaseException:
        client.close()
        raise
    return client


def _connect_error(url: str, exc: BaseException) -> StoreError | ConfigError:
    text = str(exc)
    if "version" in text and "not supported" in text:
        needed = ".".join(map(str, MIN_SERVER_VERSION[:2]))
        return ConfigError(
            f"Weaviate at {url} is too old for rag_app (it needs {needed} or newer): {_reason(exc)}"
        )
    if "401" in text or "403" in text or "nauthorized" in text or "anonymous access" in text:
        return StoreError(
            f"Weaviate at {url} refused the credentials: "
            + (
                "the API key is wrong or lacks access (WEAVIATE_API_KEY)"
                if "invalid api key" in text or "403" in text
                else "set WEAVIATE_API_KEY (or check it)"
            )
            + f" [{_reason(exc)}]"
        )
    return StoreError(f"cannot reach Weaviate at {url} (RAG_WEAVIATE_URL): {_reason(exc)}")


def _check_version(client: Any, url: str) -> None:
    try:
        meta = client.get_meta()
    except Exception as exc:
        raise _connect_error(url, exc) from exc
    version = str(meta.get("version", ""))
    parts = tuple(int(p) for p in re.findall(r"\d+", version)[:3])
    if len(parts) < 2 or parts < MIN_SERVER_VERSION:
        needed = ".".join(map(str, MIN_SERVER_VERSION[:2]))
        raise ConfigError(
            f"Weaviate at {url} runs version {version or 'unknown'}; rag_app needs {needed} or "
            "newer"
        )


def _check_grpc(host: str, port: int, secure: bool, *, timeout: float) -> None:
    """The gRPC health check with a short deadline (the client would otherwise notice a dead
    gRPC port only at the first query, after about a minute of retries)."""
    import grpc
    from weaviate.proto.v1 import health_weaviate_pb2

    target = f"{host}:{port}"
    channel = (
        grpc.secure_channel(target, grpc.ssl_channel_credentials())
        if secure
        else grpc.insecure_channel(target)
    )
    try:
        check = channel.unary_unary(
            "/grpc.health.v1.Health/Check",
            request_serializer=health_weaviate_pb2.WeaviateHealthCheckRequest.SerializeToString,
            response_deserializer=health_weaviate_pb2.WeaviateHealthCheckResponse.FromString,
        )
        reply = check(health_weaviate_pb2.WeaviateHealthCheckRequest(), timeout=timeout)
    except grpc.RpcError as exc:
        detail = exc.details() if hasattr(exc, "details") else str(exc)
        raise StoreError(
            f"Weaviate's gRPC port {target} does not answer ({detail}); the client needs it for "
            "search and batch import: check RAG_WEAVIATE_GRPC_PORT / RAG_WEAVIATE_GRPC_URL and "
            "that the port is published"
        ) from exc
    finally:
        channel.close()
    if reply.status != health_weaviate_pb2.WeaviateHealthCheckResponse.SERVING:
        raise StoreError(f"Weaviate's gRPC service at {target} is not serving")


# -- settings and spec -----------------------------------------------------------------------
class WeaviateOptions(BaseSettings):
    """Weaviate-specific settings (environment prefix ``RAG_WEAVIATE_``)."""

    model_config = SettingsConfigDict(
        env_prefix="RAG_WEAVIATE_", extra="forbid", populate_by_name=True
    )

    url: str | None = Field(
        None,
        description="Weaviate HTTP URL, e.g. http://127.0.0.1:8080 "
        "(https://<cluster>.weaviate.cloud with an API key: Weaviate Cloud).",
    )
    grpc_port: int | None = Field(
        None, ge=1, le=65535, description="gRPC port on the URL's host (default 50051)."
    )
    grpc_url: str | None = Field(
        None, description="gRPC address host:port, when not the URL's host (overrides grpc_port)."
    )
    api_key: SecretStr | None = Field(
        None,
        # by name in store_options (populate_by_name), else from one of these variables
        validation_alias=AliasChoices("RAG_WEAVIATE_API_KEY", "WEAVIATE_API_KEY"),
        description="API key (WEAVIATE_API_KEY).",
    )
    collection: str | None = Field(
        None,
        pattern=r"^[A-Z][_0-9A-Za-z]{0,254}$",
        description="Weaviate collection (class) name; default: RAG_COLLECTION with an "
        "upper-case first letter.",
    )
    batch_size: int = Field(100, ge=1, le=10_000, description="Objects per batch insert.")
    timeout_s: float = Field(30.0, gt=0, description="Query and insert timeout in seconds.")


def _collection_of(settings: Any, options: WeaviateOptions) -> str:
    return options.collection or collection_name(settings.collection)


def _require_url(options: WeaviateOptions) -> str:
    if not options.url:
        raise ConfigError(
            "RAG_STORE=weaviate needs the server's HTTP URL: set RAG_WEAVIATE_URL (e.g. "
            "http://127.0.0.1:8080)"
        )
    return options.url.rstrip("/")


def _location(settings: Any, options: WeaviateOptions) -> str:
    return f"weaviate:{_require_url(options)}:{_collection_of(settings, options)}"


def _open(request: Any) -> WeaviateStore:
    options: WeaviateOptions = request.options
    return WeaviateStore(
        url=_require_url(options),
        collection=_collection_of(request.settings, options),
        dimension=request.dimension,
        embedding_model=request.embedding_model,
        grpc_port=options.grpc_port,
        grpc_url=options.grpc_url,
        api_key=options.api_key.get_secret_value() if options.api_key else None,
        batch_size=options.batch_size,
        timeout_s=options.timeout_s,
    )


SPEC = StoreSpec(name="weaviate", settings_model=WeaviateOptions, open=_open, location=_location)
