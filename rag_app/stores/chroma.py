"""Chroma adapter: embedded (`PersistentClient`) or a Chroma server (`HttpClient`).

Settings (`ChromaOptions`, environment prefix ``RAG_CHROMA_``): ``RAG_CHROMA_URL`` points at a
Chroma server; unset, the collection lives under ``<data_dir>/chroma``. Capabilities: scanning
and a change token (kept in the collection's metadata); no native hybrid search.

Why the native client and not langchain-chroma 1.1.0: its
`similarity_search_by_vector_with_relevance_scores` returns the raw distance, re-adding an id
keeps stale metadata keys, and `add_texts` does not split batches to the server's limit.
"""

from __future__ import annotations

import contextlib
import logging
import math
import threading
import uuid
from collections import OrderedDict
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import numpy as np
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from rag_app.access.filters import And, Cmp, Node, Or, and_, matches_each
from rag_app.errors import ConfigError, DimensionMismatchError, StoreError
from rag_app.stores.base import CollectionInfo, Metadata, StoreHit, StoreInfo, StoreRecord
from rag_app.stores.journal import ChangeJournal
from rag_app.stores.registry import StoreSpec

log = logging.getLogger(__name__)

_PAGE = 1000
# A filtered query first looks this deep without the filter (see `ChromaStore.query`), then
# as deep as the share of hits that matched the same filter before asks for (with slack) ...
OPTIMISTIC_FACTOR = 2
OPTIMISTIC_EXTRA = 20
SHARE_SLACK = 1.2
# ... unless under this share matched (a narrow filter: Chroma's own filter is cheaper).
MIN_SHARE = 0.25
NARROW_FILTERS = 256  # filters remembered
# HNSW search depth (Chroma's default is 100): see `ChromaStore._raise_ef_search`.
EF_SEARCH = 400
# Collection metadata key holding a random token that every write through this adapter
# replaces: derived copies (the BM25 index) compare it to decide whether they are stale. It
# lives in the store, so every host sharing a Chroma server sees every other host's writes.
CHANGE_TOKEN_KEY = "rag_change_token"  # noqa: S105 - a metadata key, not a secret
# Chroma has no deletion protection of its own: `rag-app stores` keeps a flag in the
# collection's metadata and refuses to delete while it is set.
PROTECTION_KEY = "rag_deletion_protection"


def translate(node: Node) -> dict[str, Any]:
    """Portable grammar -> Chroma `where`."""
    if isinstance(node, And | Or):
        parts = [translate(item) for item in node.items]
        if len(parts) == 1:
            return parts[0]
        return {"$and" if isinstance(node, And) else "$or": parts}
    if isinstance(node, Cmp):
        value: Any = node.value
        if isinstance(value, tuple):
            values = list(value)
            # Chroma wants one type per list; ints and floats compare equal, so unify them.
            if any(isinstance(v, float) for v in values) and all(
                isinstance(v, int | float) and not isinstance(v, bool) for v in values
            ):
                values = [float(v) for v in values]
            value = values
        return {node.field: {node.op: value}}
    raise StoreError(f"cannot translate filter node {node!r}")


def _in_tenant(where: Node | None, tenant: str | None) -> Node | None:
    """Chroma has no native tenant isolation: a tenant becomes part of the filter."""
    if tenant is None:
        return where
    return and_(Cmp("tenant", "$eq", tenant), where)


def _judged(where: Node, metadatas: Sequence[Mapping[str, Any] | None]) -> list[int] | None:
    """The positions of the `metadatas` that match `where` by the grammar's own evaluator
    (`filters.matches`), or None for a filter the evaluator cannot judge (then Chroma's own
    filter decides)."""
    try:
        return [n for n, ok in enumerate(matches_each(where, metadatas)) if ok]
    except Exception:
        return None


def _subset(res: dict[str, Any], keep: list[int]) -> dict[str, Any]:
    """The rows `keep` of a `collection.get` result (its per-record lists)."""
    out = dict(res)
    for key in ("ids", "metadatas", "documents", "embeddings", "uris"):
        rows = res.get(key)
        if rows is not None:
            out[key] = [rows[n] for n in keep]
    return out


class ChromaStore:
    """`VectorStorePort` over one Chroma collection (cosine space)."""

    def __init__(
        self,
        *,
        collection: str,
        dimension: int,
        embedding_model: str,
        path: Path | None = None,
        url: str | None = None,
    ) -> None:
        import chromadb
        from chromadb.config import Settings as ChromaSettings

        # per filter, the share of unfiltered hits that matched it (see `query`)
        self._shares: OrderedDict[str, float] = OrderedDict()
        self._shares_lock = threading.Lock()
        # writes through this object (`local_writes`), and which ids each write touched
        # (`changes_since`): a journal beside embedded data; none for a server (other hosts)
        self._writes = 0
        self._writes_lock = threading.Lock()
        self._journal: ChangeJournal | None = None
        chroma_settings = ChromaSettings(anonymized_telemetry=False)
        try:
            if url:
                parsed = urlparse(url)
                if parsed.scheme not in ("http", "https") or not parsed.hostname:
                    raise ConfigError(f"invalid Chroma URL {url!r}; expected http://host:port")
                self._client = chromadb.HttpClient(
                    host=parsed.hostname,
                    port=parsed.port or (443 if parsed.scheme == "https" else 8000),
                    ssl=parsed.scheme == "https",
                    settings=chroma_settings,
                )
                location = url
            else:
                if path is None:
                    raise ConfigError("embedded Chroma needs a data path")
                path.mkdir(parents=True, exist_ok=True)
                self._client = chromadb.PersistentClient(path=str(path), settings=chroma_settings)
                location = str(path)
                self._journal = ChangeJournal(path, collection)
            self._collection = self._client.get_or_create_collection(
                name=collection,
                embedding_function=None,  # never let Chroma load its default ONNX model
                configuration={"hnsw": {"space": "cosine", "ef_search": EF_SEARCH}},
                metadata={"embedding_model": embedding_model, "dimension": dimension},
            )
            self._raise_ef_search()
        except ConfigError:
            raise
        except Exception as exc:
            where = url or str(path)
            raise StoreError(
                f"cannot open Chroma collection {collection!r} at {where}: {exc}"
            ) from exc

        meta = self._collection.metadata or {}
        stored_model, stored_dim = meta.get("embedding_model"), meta.get("dimension")
        if stored_dim is not None and int(stored_dim) != dimension:
            raise ConfigError(
                f"collection {collection!r} holds {stored_dim}-dimensional vectors from "
                f"{stored_model!r}, but the configured embedding model {embedding_model!r} "
                f"produces {dimension}. Use another RAG_COLLECTION or switch the model back."
            )
        if stored_model is not None and stored_model != embedding_model:
            raise ConfigError(
                f"collection {collection!r} was built with embedding model {stored_model!r}, "
                f"not {embedding_model!r}; mixing models makes scores meaningless. Use another "
                "RAG_COLLECTION."
            )
        self._info = StoreInfo(
            backend="chroma-server" if url else "chroma",
            location=location,
            collection=collection,
            dimension=dimension,
            embedding_model=embedding_model,
        )
        try:
            self._max_batch = int(self._client.get_max_batch_size())
        except Exception:
            self._max_batch = 5000

    @property
    def info(self) -> StoreInfo:
        return self._info

    def upsert(
        self,
        ids: Sequence[str],
        texts: Sequence[str],
        vectors: Sequence[Sequence[float]],
        metadatas: Sequence[Metadata],
    ) -> None:
        if not (len(ids) == len(texts) == len(vectors) == len(metadatas)):
            raise StoreError("upsert: ids, texts, vectors and metadatas differ in length")
        for vec in vectors:
            if len(vec) != self._info.dimension:
                raise DimensionMismatchError(
                    f"embedding has {len(vec)} dimensions, collection "
                    f"{self._info.collection!r} expects {self._info.dimension}"
                )
        for start in range(0, len(ids), self._max_batch):
            end = start + self._max_batch
            batch_ids = list(ids[start:end])
            batch_meta = [dict(m) for m in metadatas[start:end]]
            try:
                self._clear_dropped_keys(batch_ids, batch_meta)
                self._collection.upsert(
                    ids=batch_ids,
                    documents=list(texts[start:end]),
                    embeddings=[list(v) for v in vectors[start:end]],  # type: ignore[arg-type]
                    metadatas=[m or None for m in batch_meta],  # type: ignore[misc]
                )
            except Exception as exc:
                self._touch_after_failure(ids)
                raise StoreError(f"Chroma rejected the write: {exc}") from exc
        if ids:
            self._touch(ids)

    def _clear_dropped_keys(self, ids: list[str], metadatas: list[Metadata]) -> None:
        """Chroma's upsert merges metadata into an existing record; the port promises
        replacement, so keys the new metadata lacks are set to None (which removes them)."""
        existing = self._collection.get(ids=ids, include=["metadatas"])
        if not existing["ids"]:
            return
        old = dict(zip(existing["ids"], existing.get("metadatas") or [], strict=False))
        for record_id, meta in zip(ids, metadatas, strict=True):
            for key in (old.get(record_id) or {}).keys() - meta.keys():
                meta[key] = None

    def delete(self, ids: Sequence[str], *, tenant: str | None = None) -> None:
        native: Any = {"tenant": {"$eq": tenant}} if tenant is not None else None
        try:
            for start in range(0, len(ids), self._max_batch):
                batch = list(ids[start : start + self._max_batch])
                if batch:
                    self._collection.delete(ids=batch, where=native)
        except Exception as exc:
            self._touch_after_failure(ids)
            raise StoreError(f"Chroma delete failed: {exc}") from exc
        if ids:
            self._touch(ids)

    def _touch_after_failure(self, ids: Sequence[str]) -> None:
        # Earlier batches of a failed call may have been written: all of them are journaled
        # (what was written is among them).
        try:
            self._touch(ids)
        except StoreError:
            log.warning("could not record a partial change of %s", self._info.collection)

    def _raise_ef_search(self) -> None:
        """A collection made with Chroma's default search depth (ef_search 100) gets
        `EF_SEARCH`: with it, a query's top 100 on SciFact holds 99.9% of the exact top 100
        (97.6% with 100), at no measurable cost. Only the search setting changes, no data;
        a server that refuses the change keeps the old depth."""
        try:
            hnsw = (self._collection.configuration_json or {}).get("hnsw") or {}
            if int(hnsw.get("ef_search") or 0) < EF_SEARCH:
                self._collection.modify(configuration={"hnsw": {"ef_search": EF_SEARCH}})
        except Exception as exc:
            log.warning("could not raise ef_search of %s: %s", self._collection.name, exc)

    def query(
        self, vector: Sequence[float], k: int, where: Node | None, *, tenant: str | None = None
    ) -> list[StoreHit]:
        """Top-k among the records matching `where` (in `tenant`).

        Chroma evaluates a ``where`` filter over the collection's metadata on every query
        (about 60 ms at 11k records here, against 2 ms for the vector search itself). So a
        filtered query is first tried *without* the filter, `OPTIMISTIC_FACTOR` times as
        deep, and the filter is applied here to the hits' metadata with the grammar's own
        evaluator (`filters.matches`, the one the BM25 masks use): when at least k hits
        match, they are exactly the k best matching records (any better matching record
        would be among the deeper unfiltered hits). Otherwise the query runs with Chroma's
        filter as before. The share of hits that matched is remembered per filter: the next
        query with it looks just as deep as that share needs, or, under `MIN_SHARE` (a
        narrow filter), goes to Chroma's filter directly. Either way every hit is re-checked
        by the permission guard."""
        where = _in_tenant(where, tenant)
        if where is None:
            return self._query(vector, k, None)
        key = repr(where)
        with self._shares_lock:
            share = self._shares.get(key)  # share of unfiltered hits that matched last time
        if share is None or share >= MIN_SHARE:
            # deep enough for k matches at the share seen before (twice as deep at first)
            depth = k * OPTIMISTIC_FACTOR if share is None else math.ceil(k / share * SHARE_SLACK)
            depth = max(depth, k + OPTIMISTIC_EXTRA)
            hits = self._query(vector, depth, None)
            keep = _judged(where, [h.metadata for h in hits])
            if keep is None:  # a filter the evaluator cannot judge: Chroma's own filter,
                self._remember(key, 0.0)  # now and from now on
            else:
                self._remember(key, len(keep) / len(hits) if hits else 1.0)
                # (fewer hits than asked: the whole collection was seen)
                if len(keep) >= k or len(hits) < depth:
                    return [hits[n] for n in keep[:k]]
        hits = self._query(vector, k, translate(where))
        # Chroma's filter matches a little more than the grammar says (a fractional bound on
        # an int field); where the evaluator cannot judge, Chroma's answer stands
        keep = _judged(where, [h.metadata for h in hits])
        return hits if keep is None else [hits[n] for n in keep]

    def nearest_ids(self, vector: Sequence[float], k: int) -> list[tuple[str, float]]:
        """The ids and scores of the k nearest records of the whole collection, no filter and
        nothing else read: most of a Chroma query's time goes to reading the hits' metadata
        (about 8 ms of 10 for 120 hits at 11k records here). For callers that judge the
        candidates against a copy of the metadata and confirm what they keep against the
        store (`rag_app.retrieval.hybrid.IdsFirstDense`)."""
        try:
            embeddings: Any = [list(vector)]
            res = self._collection.query(
                query_embeddings=embeddings, n_results=k, include=["distances"]
            )
        except Exception as exc:
            raise StoreError(f"Chroma query failed: {exc}") from exc
        ids = res["ids"][0]
        dists = (res.get("distances") or [[]])[0] or [1.0] * len(ids)
        return [(i, 1.0 - float(d)) for i, d in zip(ids, dists, strict=True)]

    def vectors_of(self, ids: Sequence[str]) -> np.ndarray:
        """The stored vectors of `ids`, in that order (float32, one row each); `StoreError`
        when any of them is not in the collection."""
        wanted = list(ids)
        try:
            res = self._collection.get(ids=wanted, include=["embeddings"])
        except Exception as exc:
            raise StoreError(f"Chroma get by id failed: {exc}") from exc
        rows = res.get("embeddings")
        got = dict(zip(res["ids"], rows if rows is not None else [], strict=True))
        missing = sum(1 for i in wanted if i not in got)
        if missing:
            raise StoreError(f"{missing} of {len(wanted)} ids are not in the collection")
        return np.asarray([got[i] for i in wanted], dtype=np.float32).reshape(len(wanted), -1)

    def _remember(self, key: str, share: float) -> None:
        with self._shares_lock:
            self._shares[key] = share
            self._shares.move_to_end(key)
            while len(self._shares) > NARROW_FILTERS:
                self._shares.popitem(last=False)

    def _query(
        self, vector: Sequence[float], k: int, native: dict[str, Any] | None
    ) -> list[StoreHit]:
        kwargs: dict[str, Any] = {
            "query_embeddings": [list(vector)],
            "n_results": k,
            "include": ["documents", "metadatas", "distances"],
        }
        if native is not None:
            kwargs["where"] = native
        try:
            res = self._collection.query(**kwargs)
        except Exception as exc:
            raise StoreError(f"Chroma query failed: {exc}") from exc
        ids = res["ids"][0]
        docs = (res.get("documents") or [[]])[0] or [""] * len(ids)
        metas = (res.get("metadatas") or [[]])[0] or [{}] * len(ids)
        dists = (res.get("distances") or [[]])[0] or [1.0] * len(ids)
        return [
            StoreHit(id=i, text=d or "", metadata=dict(m or {}), score=1.0 - float(dist))
            for i, d, m, dist in zip(ids, docs, metas, dists, strict=True)
        ]

    def _pages(self, where: Node | None, include: list[Any]) -> Iterator[dict[str, Any]]:
        """`collection.get` results a page at a time for `where`: the matching ids first, in
        one call, then their records by id, a page per call. Offset paging made a full scan
        quadratic (a page at offset 499k of 500k cost 10x one at 0: Chroma walks the offset),
        and it skips or repeats records when a writer changes the collection mid-scan; by id,
        a record deleted meanwhile is left out and one added meanwhile is not seen.

        Each page is checked against `where` again with the filter grammar's evaluator, so a
        record changed meanwhile to no longer match is left out (a delete by filter never
        removes more than its filter says). Not with Chroma's filter: with ids and `where`
        together, Chroma evaluates `where` over the whole collection on every page."""
        native = translate(where) if where is not None else None
        if where is not None and "metadatas" not in include:
            include = [*include, "metadatas"]

        def get(**kwargs: Any) -> Any:
            try:
                return self._collection.get(**kwargs)
            except Exception as exc:
                raise StoreError(f"Chroma scan failed: {exc}") from exc

        ids = get(where=native, include=[])["ids"]
        for start in range(0, len(ids), _PAGE):
            page = ids[start : start + _PAGE]
            res = get(ids=page, include=include)
            if where is not None:
                keep = _judged(where, res.get("metadatas") or [])
                if keep is None:  # a filter the evaluator cannot judge: Chroma's own
                    res = get(ids=page, where=native, include=include)
                elif len(keep) < len(res["ids"]):
                    res = _subset(res, keep)
            if res["ids"]:
                yield res

    def records(
        self, where: Node | None = None, *, tenant: str | None = None, with_text: bool = False
    ) -> Iterator[StoreRecord]:
        include: list[Any] = ["metadatas", "documents"] if with_text else ["metadatas"]
        for res in self._pages(_in_tenant(where, tenant), include):
            ids = res["ids"]
            metas = res.get("metadatas") or [{}] * len(ids)
            docs = res.get("documents") if with_text else None
            for n, record_id in enumerate(ids):
                yield StoreRecord(
                    id=record_id,
                    metadata=dict(metas[n] or {}),
                    text=(docs[n] if docs else None),
                )

    def count(self, *, tenant: str | None = None) -> int:
        if tenant is None:
            return int(self._collection.count())
        native: Any = {"tenant": {"$eq": tenant}}
        return len(self._collection.get(where=native, include=[])["ids"])

    def close(self) -> None:
        # PersistentClient keeps no sockets; dropping references is enough.
        self._collection = None  # type: ignore[assignment]

    def get(self, ids: Sequence[str], *, tenant: str | None = None) -> list[StoreRecord]:
        """The current records (text and metadata) of `ids` that still exist, in one call.
        Chroma has no tenant partitions, so `tenant` does not narrow the look-up: a record of
        another tenant comes back as it is, and the caller's re-check drops it (and logs it
        as an access alarm instead of a stale hit)."""
        wanted = list(dict.fromkeys(ids))
        if not wanted:
            return []
        try:
            res = self._collection.get(ids=wanted, include=["metadatas", "documents"])
        except Exception as exc:
            raise StoreError(f"Chroma get by id failed: {exc}") from exc
        got_ids = res["ids"]
        metas = res.get("metadatas") or [{}] * len(got_ids)
        docs = res.get("documents") or [""] * len(got_ids)
        return [
            StoreRecord(id=i, metadata=dict(m or {}), text=d or "")
            for i, m, d in zip(got_ids, metas, docs, strict=True)
        ]

    def records_with_vectors(
        self, *, tenant: str | None = None
    ) -> Iterator[tuple[StoreRecord, list[float]]]:
        """Every record of `tenant` (None: all) with its text and vector (export, migration)."""
        include: list[Any] = ["metadatas", "documents", "embeddings"]
        for res in self._pages(_in_tenant(None, tenant), include):
            ids = res["ids"]
            metas = res.get("metadatas") or [{}] * len(ids)
            docs = res.get("documents") or [""] * len(ids)
            vectors = res.get("embeddings")
            for n, record_id in enumerate(ids):
                record = StoreRecord(
                    id=record_id, metadata=dict(metas[n] or {}), text=docs[n] or ""
                )
                yield record, ([float(x) for x in vectors[n]] if vectors is not None else [])

    def change_token(self) -> str:
        """A token that changes whenever any writer (any host) changed this collection."""
        try:
            fresh = self._client.get_collection(self._info.collection, embedding_function=None)
        except Exception as exc:
            raise StoreError(f"cannot read Chroma collection metadata: {exc}") from exc
        return str((fresh.metadata or {}).get(CHANGE_TOKEN_KEY, ""))

    @property
    def local_writes(self) -> int:
        """Writes and deletes through this object so far (failed ones too)."""
        return self._writes

    def changes_since(self, token: str, until: str) -> frozenset[str] | None:
        """The ids written between the change tokens `token` and `until`, from the journal
        beside embedded data; None when it cannot vouch for them (or for a server, where
        other hosts write without it): then scan."""
        if self._journal is None:
            return None
        return self._journal.changes_since(token, until)

    def _touch(self, ids: Sequence[str] | None = None) -> None:
        """Record that the collection changed (after every write or delete), and in the
        journal which `ids` changed (None: not known)."""
        try:
            journal = self._journal
            with contextlib.ExitStack() as stack:
                if journal is not None:
                    try:
                        stack.enter_context(journal.locked())
                    except OSError as exc:  # no entry for the new token: readers scan
                        log.warning("change journal %s unusable: %s", journal.path, exc)
                        journal = None
                prev, new = self._replace_token()
                try:
                    if journal is not None:
                        journal.append(prev, new, ids)
                except OSError as exc:  # the new token has no entry: readers scan
                    log.warning("could not journal a change of %s: %s", self._info.collection, exc)
        finally:
            # after the token moved: a reader that sees this count also sees the new token
            with self._writes_lock:
                self._writes += 1

    def _replace_token(self) -> tuple[str, str]:
        """Give the collection a new change token; (old token, new token)."""
        try:
            fresh = self._client.get_collection(self._info.collection, embedding_function=None)
            meta = {k: v for k, v in (fresh.metadata or {}).items() if not k.startswith("hnsw:")}
            prev = str(meta.get(CHANGE_TOKEN_KEY, ""))
            meta[CHANGE_TOKEN_KEY] = new = uuid.uuid4().hex
            self._collection.modify(metadata=meta)
        except Exception as exc:
            raise StoreError(
                f"Chroma wrote the records but could not record the change: {exc}"
            ) from exc
        return prev, new

    # -- administration (`Administrable`) -------------------------------------------------
    def _admin_collection(self, name: str) -> Any:
        try:
            return self._client.get_collection(name, embedding_function=None)
        except Exception as exc:
            raise ConfigError(
                f"Chroma collection {name!r} does not exist at {self._info.location}"
            ) from exc

    def _describe(self, coll: Any, *, per_tenant: bool = True) -> CollectionInfo:
        meta = dict(coll.metadata or {})
        tenants: dict[str, int] = {}
        if per_tenant:
            offset = 0
            while True:
                res = coll.get(include=["metadatas"], limit=_PAGE, offset=offset)
                ids = res["ids"]
                for m in res.get("metadatas") or []:
                    key = str((m or {}).get("tenant", ""))
                    tenants[key] = tenants.get(key, 0) + 1
                if len(ids) < _PAGE:
                    break
                offset += len(ids)
        try:
            space = (coll.configuration_json or {}).get("hnsw", {}).get("space")
        except Exception:
            space = None
        dimension = meta.get("dimension")
        return CollectionInfo(
            name=str(coll.name),
            dimension=int(dimension) if dimension is not None else None,
            metric=str(space or meta.get("hnsw:space") or "l2"),
            count=int(coll.count()),
            per_tenant=dict(sorted(tenants.items())),
            embedding_model=str(meta["embedding_model"]) if "embedding_model" in meta else None,
            deletion_protection=bool(meta.get(PROTECTION_KEY, False)),
            extra={"location": self._info.location, "tenants": "a metadata field (no isolation)"},
        )

    def list_collections(self) -> list[CollectionInfo]:
        try:
            collections = list(self._client.list_collections())
        except Exception as exc:
            raise StoreError(f"cannot list Chroma collections: {exc}") from exc
        return sorted((self._describe(c) for c in collections), key=lambda c: c.name)

    def describe_collection(self, name: str) -> CollectionInfo:
        return self._describe(self._admin_collection(name))

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
        """Chroma indexes every metadata field, so `filterable_fields` needs no declaration;
        the adapter scores by cosine similarity, so no other metric is accepted."""
        if metric != "cosine":
            raise ConfigError(f"Chroma collections of rag_app use cosine, not {metric!r}")
        if name in {str(c.name) for c in self._client.list_collections()}:
            raise ConfigError(f"Chroma collection {name!r} already exists")
        meta: dict[str, Any] = {"embedding_model": embedding_model, "dimension": dimension}
        if deletion_protection:
            meta[PROTECTION_KEY] = True
        try:
            coll = self._client.create_collection(
                name=name,
                embedding_function=None,
                configuration={"hnsw": {"space": "cosine", "ef_search": EF_SEARCH}},
                metadata=meta,
            )
        except Exception as exc:
            raise StoreError(f"cannot create Chroma collection {name!r}: {exc}") from exc
        return self._describe(coll, per_tenant=False)

    def set_deletion_protection(self, name: str, enabled: bool) -> None:
        coll = self._admin_collection(name)
        meta = {k: v for k, v in (coll.metadata or {}).items() if not k.startswith("hnsw:")}
        if enabled:
            meta[PROTECTION_KEY] = True
        else:
            meta.pop(PROTECTION_KEY, None)
            meta[PROTECTION_KEY] = False  # Chroma merges metadata: overwrite, not omit
        try:
            coll.modify(metadata=meta)
        except Exception as exc:
            raise StoreError(f"cannot update Chroma collection {name!r}: {exc}") from exc

    def delete_collection(self, name: str) -> None:
        coll = self._admin_collection(name)
        if (coll.metadata or {}).get(PROTECTION_KEY):
            raise ConfigError(
                f"Chroma collection {name!r} has deletion protection on; turn it off first: "
                f"rag-app stores protect {name} --off"
            )
        try:
            # Records first, then the collection: Chroma 1.5's delete_collection leaves the
            # records' list-valued metadata on disk, and the next records written anywhere in
            # this Chroma inherit it (chroma-core/chroma#7594; seen as stray `tags` here).
            while True:
                ids = coll.get(limit=_PAGE, include=[])["ids"]
                if not ids:
                    break
                coll.delete(ids=ids)
            self._client.delete_collection(name)
        except Exception as exc:
            raise StoreError(f"cannot delete Chroma collection {name!r}: {exc}") from exc


class ChromaOptions(BaseSettings):
    """Chroma-specific settings (environment prefix ``RAG_CHROMA_``)."""

    model_config = SettingsConfigDict(env_prefix="RAG_CHROMA_", extra="forbid")

    url: str | None = Field(
        None, description="Chroma server URL (e.g. http://127.0.0.1:8000); unset = embedded."
    )


def _location(settings: Any, options: ChromaOptions) -> str:
    where = options.url or str((settings.data_dir / "chroma").resolve())
    return f"chroma:{where}:{settings.collection}"


def _open(request: Any) -> ChromaStore:
    options: ChromaOptions = request.options
    return ChromaStore(
        collection=request.settings.collection,
        dimension=request.dimension,
        embedding_model=request.embedding_model,
        path=None if options.url else request.settings.data_dir / "chroma",
        url=options.url,
    )


SPEC = StoreSpec(name="chroma", settings_model=ChromaOptions, open=_open, location=_location)
