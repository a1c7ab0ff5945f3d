"""Ingest state kept beside the store: LangChain's SQL record manager (chunk id -> file group,
timestamps) plus two small tables of our own:

* ``rag_files``: file key -> fingerprint of (bytes, metadata inputs, chunking settings), set
  only once a file is completely indexed, so an unchanged file is skipped without reading its
  chunks and an interrupted one is finished by the next run;
* ``rag_tenant_fields``: (tenant, metadata field) -> kind, for filter validation (unknown
  fields, wrong types). The catalog is kept per tenant so that one tenant's field names are
  never listed to, or accepted from, another tenant's users (an existence oracle otherwise).
  The older tenant-less ``rag_fields`` table is migrated from the store's records once;

Whether derived indexes (BM25) are stale is *not* decided here: this database may be private
to one host, so the store itself carries a change token (`VectorStorePort.change_token`).
"""

from __future__ import annotations

import json
import socket
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path, PurePath
from typing import Any

from sqlalchemy import (
    Column,
    Float,
    Integer,
    MetaData,
    String,
    Table,
    bindparam,
    create_engine,
    delete,
    func,
    select,
    text,
    update,
)
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Engine

from rag_app.access.filters import FieldKind

_meta = MetaData()
files_table = Table(
    "rag_files",
    _meta,
    Column("namespace", String(512), primary_key=True),
    Column("file_key", String(2048), primary_key=True),
    Column("source", String(2048), nullable=False),
    Column("fingerprint", String(128), nullable=False),
    Column("updated_at", Float, nullable=False),
)
fields_table = Table(
    "rag_fields",
    _meta,
    Column("namespace", String(512), primary_key=True),
    Column("name", String(128), primary_key=True),
    Column("kind", String(16), nullable=False),
)
tenant_fields_table = Table(
    "rag_tenant_fields",
    _meta,
    Column("namespace", String(512), primary_key=True),
    Column("tenant", String(128), primary_key=True),
    Column("name", String(128), primary_key=True),
    Column("kind", String(16), nullable=False),
)


documents_table = Table(
    "rag_documents",
    _meta,
    Column("namespace", String(512), primary_key=True),
    Column("group_id", String(2048), primary_key=True),  # the record-manager group
    Column("file_key", String(2048), nullable=False),
    Column("source", String(2048), nullable=False),
    Column("tenant", String(128), nullable=False),
    Column("acl", String(8192), nullable=False),  # JSON list of tokens
    Column("facets", String(65536), nullable=False),  # JSON: {"category": ..., "tags": [...]}
    Column("chunks", Integer, nullable=False),
    Column("updated_at", Float, nullable=False),
)
FACET_FIELDS = ("category", "tags")

# One row per ingest run (CLI, upload, repair, import, ...), for `rag-app stats`. A run is
# written as "running" when it starts, so one that was killed stays visible as such.
ingest_runs_table = Table(
    "rag_ingest_runs",
    _meta,
    Column("namespace", String(512), primary_key=True),
    Column("run_id", String(64), primary_key=True),
    Column("origin", String(32), nullable=False),
    Column("host", String(256), nullable=False),
    Column("user", String(256), nullable=True),
    Column("paths", String(8192), nullable=False),  # JSON list of what was given
    Column("started_at", Float, nullable=False),
    Column("finished_at", Float, nullable=True),
    Column("status", String(16), nullable=False),  # running | ok | partial | failed
    Column("counts", String(2048), nullable=False),  # JSON: files/chunks written, deleted...
    Column("error", String(1024), nullable=True),
)
RUNS_KEPT = 1000  # per namespace; older runs are pruned when a new one starts
RUN_STATUSES = ("running", "ok", "partial", "failed")


@dataclass(frozen=True)
class DocumentRow:
    """One ingested document (a file, or one record of a JSONL file) as the state knows it."""

    group_id: str
    file_key: str
    source: str
    tenant: str
    acl: list[str]
    facets: dict[str, Any]
    chunks: int
    updated_at: float

    @property
    def source_type(self) -> str:
        """The file type (suffix) of the file the document came from: md, pdf, jsonl, ..."""
        # Rows rebuilt from records without a record-manager group have only the source
        # ("<file>" or "<file>#<record id>" for a JSONL record).
        name = self.source.rsplit("#", 1)[0] if self.file_key.startswith("?") else self.file_key
        return PurePath(name).suffix.lower().lstrip(".") or "(none)"


@dataclass(frozen=True)
class IngestRun:
    """One ingest run as recorded in the state database."""

    run_id: str
    namespace: str
    origin: str
    host: str
    user: str | None
    paths: list[str]
    started_at: float
    finished_at: float | None
    status: str
    counts: dict[str, int]
    error: str | None

    def as_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "store": self.namespace,
            "origin": self.origin,
            "host": self.host,
            "user": self.user,
            "paths": self.paths,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "seconds": None
            if self.finished_at is None
            else round(self.finished_at - self.started_at, 3),
            "status": self.status,
            "counts": self.counts,
            "error": self.error,
        }


@dataclass
class RunOutcome:
    """What a logged run sets before it ends (`IngestState.logged_run`)."""

    status: str = "ok"
    counts: dict[str, int] = field(default_factory=dict)


class IngestState:
    def __init__(self, url: str, namespace: str) -> None:
        from langchain_classic.indexes import SQLRecordManager

        if url.startswith("sqlite:///"):
            Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        self.engine: Engine = create_engine(url)
        self.namespace = namespace
        self.record_manager = SQLRecordManager(namespace, engine=self.engine)
        self.record_manager.create_schema()
        _meta.create_all(self.engine)

    # -- files --------------------------------------------------------------------------
    def fingerprint(self, file_key: str) -> str | None:
        with self.engine.connect() as conn:
            row = conn.execute(
                select(files_table.c.fingerprint).where(
                    files_table.c.namespace == self.namespace,
                    files_table.c.file_key == file_key,
                )
            ).first()
        return row[0] if row else None

    def fingerprints(self) -> dict[str, str]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(files_table.c.file_key, files_table.c.fingerprint).where(
                    files_table.c.namespace == self.namespace
                )
            ).all()
        return {k: f for k, f in rows}

    def mark_complete(self, file_key: str, source: str, fingerprint: str) -> None:
        values = {
            "namespace": self.namespace,
            "file_key": file_key,
            "source": source,
            "fingerprint": fingerprint,
            "updated_at": time.time(),
        }
        with self.engine.begin() as conn:
            if self.engine.dialect.name == "sqlite":
                stmt = sqlite_insert(files_table).values(**values)
                conn.execute(
                    stmt.on_conflict_do_update(
                        index_elements=["namespace", "file_key"],
                        set_={k: stmt.excluded[k] for k in ("source", "fingerprint", "updated_at")},
                    )
                )
            else:
                conn.execute(
                    delete(files_table).where(
                        files_table.c.namespace == self.namespace,
                        files_table.c.file_key == file_key,
                    )
                )
                conn.execute(files_table.insert().values(**values))

    def known_files(self) -> dict[str, str]:
        """file_key -> source for every completely indexed file."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(files_table.c.file_key, files_table.c.source).where(
                    files_table.c.namespace == self.namespace
                )
            ).all()
        return {k: s for k, s in rows}

    def forget_files(self, file_keys: Iterable[str]) -> None:
        keys = list(file_keys)
        if not keys:
            return
        with self.engine.begin() as conn:
            conn.execute(
                delete(files_table).where(
                    files_table.c.namespace == self.namespace,
                    files_table.c.file_key.in_(keys),
                )
            )

    def forget_sources(self, sources: Iterable[str]) -> None:
        """Drop the 'complete' mark of files whose source (without '#record') is listed."""
        bases = {s.split("#", 1)[0] for s in sources}
        if not bases:
            return
        with self.engine.begin() as conn:
            conn.execute(
                delete(files_table).where(
                    files_table.c.namespace == self.namespace,
                    files_table.c.source.in_(sorted(bases)),
                )
            )

    def chunk_groups_of(self, file_key: str) -> dict[str, list[str]]:
        """Record-manager groups of one file -> their chunk ids. A single-document file is one
        group (its file key); a JSONL file has one group per record (``<file key>#<id>``)."""
        prefix = file_key.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "#%"
        query = text(
            "SELECT key, group_id FROM upsertion_record WHERE namespace = :ns AND "
            "(group_id = :fk OR group_id LIKE :prefix ESCAPE '\\')"
        )
        groups: dict[str, list[str]] = {}
        with self.engine.connect() as conn:
            for key, group in conn.execute(
                query, {"ns": self.namespace, "fk": file_key, "prefix": prefix}
            ):
                groups.setdefault(str(group), []).append(str(key))
        return groups

    def chunk_ids_of(self, file_key: str) -> list[str]:
        """Every chunk id of one file (all of its groups)."""
        return [key for keys in self.chunk_groups_of(file_key).values() for key in keys]

    def delete_chunk_records(self, ids: Sequence[str]) -> None:
        if ids:
            self.record_manager.delete_keys(list(ids))

    # -- documents (stats and facets without scanning the store) -------------------------
    def record_documents(self, rows: Iterable[DocumentRow]) -> None:
        """Insert or replace the rows of documents that were just (re)indexed."""
        rows = list(rows)
        if not rows:
            return
        table = documents_table
        with self.engine.begin() as conn:
            conn.execute(
                delete(table).where(
                    table.c.namespace == self.namespace,
                    table.c.group_id.in_([r.group_id for r in rows]),
                )
            )
            conn.execute(
                table.insert(),
                [
                    {
                        "namespace": self.namespace,
                        "group_id": r.group_id,
                        "file_key": r.file_key,
                        "source": r.source,
                        "tenant": r.tenant,
                        "acl": json.dumps(r.acl),
                        "facets": json.dumps(r.facets, ensure_ascii=False),
                        "chunks": r.chunks,
                        "updated_at": r.updated_at,
                    }
                    for r in rows
                ],
            )

    def forget_documents(
        self, *, groups: Iterable[str] = (), file_keys: Iterable[str] = ()
    ) -> None:
        groups, file_keys = list(groups), list(file_keys)
        table = documents_table
        with self.engine.begin() as conn:
            if groups:
                conn.execute(
                    delete(table).where(
                        table.c.namespace == self.namespace, table.c.group_id.in_(groups)
                    )
                )
            if file_keys:
                conn.execute(
                    delete(table).where(
                        table.c.namespace == self.namespace, table.c.file_key.in_(file_keys)
                    )
                )

    def remove_chunks_of_sources(self, removed: Mapping[str, int]) -> None:
        """After a delete by source or filter: `removed` maps source -> chunks deleted. A
        document that lost all its chunks is forgotten; others keep a smaller count."""
        if not removed:
            return
        table = documents_table
        with self.engine.begin() as conn:
            for source, n in removed.items():
                row = conn.execute(
                    select(table.c.group_id, table.c.chunks).where(
                        table.c.namespace == self.namespace, table.c.source == source
                    )
                ).first()
                if row is None:
                    continue
                where = (table.c.namespace == self.namespace) & (table.c.group_id == row[0])
                if row[1] - n <= 0:
                    conn.execute(delete(table).where(where))
                else:
                    conn.execute(update(table).where(where).values(chunks=row[1] - n))

    def documents(self, *, tenant: str | None = None) -> list[DocumentRow]:
        table = documents_table
        query = select(table).where(table.c.namespace == self.namespace)
        if tenant is not None:
            query = query.where(table.c.tenant == tenant)
        with self.engine.connect() as conn:
            rows = conn.execute(query.order_by(table.c.tenant, table.c.source)).mappings().all()
        return [
            DocumentRow(
                group_id=r["group_id"],
                file_key=r["file_key"],
                source=r["source"],
                tenant=r["tenant"],
                acl=list(json.loads(r["acl"])),
                facets=dict(json.loads(r["facets"])),
                chunks=int(r["chunks"]),
                updated_at=float(r["updated_at"]),
            )
            for r in rows
        ]

    def tenants(self) -> list[str]:
        """The tenants that have documents in this store, sorted."""
        table = documents_table
        query = (
            select(table.c.tenant)
            .where(table.c.namespace == self.namespace)
            .distinct()
            .order_by(table.c.tenant)
        )
        with self.engine.connect() as conn:
            return [str(t) for (t,) in conn.execute(query)]

    def document_totals(self) -> dict[str, tuple[int, int]]:
        """Every store (namespace) this state database knows: namespace -> (documents,
        chunks)."""
        table = documents_table
        query = select(
            table.c.namespace, func.count(table.c.group_id), func.sum(table.c.chunks)
        ).group_by(table.c.namespace)
        with self.engine.connect() as conn:
            return {
                str(ns): (int(docs), int(chunks or 0))
                for ns, docs, chunks in conn.execute(query.order_by(table.c.namespace))
            }

    # -- ingest runs --------------------------------------------------------------------
    def begin_run(self, *, origin: str, paths: Sequence[str], user: str | None = None) -> str:
        """Record that an ingest run started; returns its id for `finish_run`."""
        table = ingest_runs_table
        run_id = uuid.uuid4().hex
        shown = [p[:512] for p in paths[:50]]
        if len(paths) > 50:
            shown.append(f"... {len(paths) - 50} more")
        with self.engine.begin() as conn:
            conn.execute(
                table.insert().values(
                    namespace=self.namespace,
                    run_id=run_id,
                    origin=origin[:32],
                    host=socket.gethostname()[:256],
                    user=None if user is None else user[:256],
                    paths=json.dumps(shown, ensure_ascii=False)[:8192],
                    started_at=time.time(),
                    finished_at=None,
                    status="running",
                    counts="{}",
                    error=None,
                )
            )
            keep = (
                select(table.c.run_id)
                .where(table.c.namespace == self.namespace)
                .order_by(table.c.started_at.desc())
                .limit(RUNS_KEPT)
            )
            conn.execute(
                delete(table).where(
                    table.c.namespace == self.namespace, table.c.run_id.not_in(keep)
                )
            )
        return run_id

    @contextmanager
    def logged_run(
        self, *, origin: str, paths: Sequence[str], user: str | None = None
    ) -> Iterator[RunOutcome]:
        """Log the run of the `with` block: started now; at the end, the status and counts
        the block set on the yielded outcome, or ``failed`` with the exception (re-raised)."""
        outcome = RunOutcome()
        run_id = self.begin_run(origin=origin, paths=paths, user=user)
        try:
            yield outcome
        except BaseException as exc:
            self.finish_run(
                run_id, status="failed", counts={}, error=f"{type(exc).__name__}: {exc}"
            )
            raise
        self.finish_run(run_id, status=outcome.status, counts=outcome.counts)

    def finish_run(
        self,
        run_id: str,
        *,
        status: str,
        counts: Mapping[str, int],
        error: str | None = None,
    ) -> None:
        if status not in RUN_STATUSES[1:]:
            raise ValueError(f"unknown run status {status!r}")
        table = ingest_runs_table
        with self.engine.begin() as conn:
            conn.execute(
                update(table)
                .where(table.c.namespace == self.namespace, table.c.run_id == run_id)
                .values(
                    finished_at=time.time(),
                    status=status,
                    counts=json.dumps({k: int(v) for k, v in counts.items()}),
                    error=None if error is None else error[:1024],
                )
            )

    def runs(self, *, limit: int = 10, every_store: bool = False) -> list[IngestRun]:
        """The latest ingest runs, newest first: of this store, or of every store."""
        table = ingest_runs_table
        query = select(table).order_by(table.c.started_at.desc()).limit(limit)
        if not every_store:
            query = query.where(table.c.namespace == self.namespace)
        with self.engine.connect() as conn:
            rows = conn.execute(query).mappings().all()
        return [
            IngestRun(
                run_id=r["run_id"],
                namespace=r["namespace"],
                origin=r["origin"],
                host=r["host"],
                user=r["user"],
                paths=list(json.loads(r["paths"])),
                started_at=float(r["started_at"]),
                finished_at=None if r["finished_at"] is None else float(r["finished_at"]),
                status=r["status"],
                counts={str(k): int(v) for k, v in json.loads(r["counts"]).items()},
                error=r["error"],
            )
            for r in rows
        ]

    def has_documents(self) -> bool:
        with self.engine.connect() as conn:
            row = conn.execute(
                select(documents_table.c.group_id)
                .where(documents_table.c.namespace == self.namespace)
                .limit(1)
            ).first()
        return row is not None

    # -- fields -------------------------------------------------------------------------
    def record_fields(self, kinds: Mapping[str, FieldKind], *, tenant: str) -> None:
        """Add `kinds` to `tenant`'s field catalog (a field seen with two kinds is widened:
        int + float -> float, anything else -> str)."""
        if not kinds:
            return
        existing = self.fields(tenant)
        updates: dict[str, FieldKind] = {}
        for name, kind in kinds.items():
            old = existing.get(name)
            if old is None:
                updates[name] = kind
            elif old != kind:
                merged = merge_kinds(old, kind)
                if merged != old:
                    updates[name] = merged
        if not updates:
            return
        table = tenant_fields_table
        with self.engine.begin() as conn:
            for name, kind in updates.items():
                conn.execute(
                    delete(table).where(
                        table.c.namespace == self.namespace,
                        table.c.tenant == tenant,
                        table.c.name == name,
                    )
                )
                conn.execute(
                    table.insert().values(
                        namespace=self.namespace, tenant=tenant, name=name, kind=kind
                    )
                )

    def fields(self, tenant: str | None = None) -> dict[str, FieldKind]:
        """The field catalog of `tenant`; None: the union over every tenant (for operators,
        e.g. `rag-app delete --filter`), kinds widened where tenants disagree."""
        table = tenant_fields_table
        query = select(table.c.name, table.c.kind).where(table.c.namespace == self.namespace)
        if tenant is not None:
            query = query.where(table.c.tenant == tenant)
        with self.engine.connect() as conn:
            rows = conn.execute(query).all()
        out: dict[str, FieldKind] = {}
        for name, kind in rows:
            out[name] = kind if name not in out else merge_kinds(out[name], kind)
        return out

    def needs_field_migration(self) -> bool:
        """True when only the old tenant-less catalog holds this store's fields."""
        with self.engine.connect() as conn:
            new = conn.execute(
                select(tenant_fields_table.c.name)
                .where(tenant_fields_table.c.namespace == self.namespace)
                .limit(1)
            ).first()
            if new is not None:
                return False
            old = conn.execute(
                select(fields_table.c.name)
                .where(fields_table.c.namespace == self.namespace)
                .limit(1)
            ).first()
        return old is not None

    def rebuild_from_records(self, records: Iterable[Any]) -> int:
        """Rebuild the per-tenant field catalog and the document rows from the store's
        records (the migration from a state database of an earlier version). Returns the
        number of records read."""
        from rag_app.ingest.metadata import field_kind

        per_tenant: dict[str, dict[str, FieldKind]] = {}
        docs: dict[str, dict[str, Any]] = {}
        ids: list[str] = []
        n = 0
        for record in records:
            n += 1
            meta = record.metadata
            tenant = meta.get("tenant")
            if not isinstance(tenant, str):
                continue
            kinds = per_tenant.setdefault(tenant, {})
            for key, value in meta.items():
                if value is None:
                    continue
                kind = field_kind(value)
                kinds[key] = kind if key not in kinds else merge_kinds(kinds[key], kind)
            ids.append(record.id)
            source = str(meta.get("source", ""))
            doc = docs.setdefault(source, {"meta": meta, "ids": []})
            doc["ids"].append(record.id)
        for tenant, kinds in per_tenant.items():
            self.record_fields(kinds, tenant=tenant)
        group_of = self._groups_of_keys(ids)
        rows = []
        now = time.time()
        for source, doc in docs.items():
            meta = doc["meta"]
            group = next((group_of[i] for i in doc["ids"] if i in group_of), f"?{source}")
            rows.append(
                DocumentRow(
                    group_id=group,
                    file_key=group.split("#", 1)[0],
                    source=source,
                    tenant=str(meta["tenant"]),
                    acl=[str(a) for a in meta.get("acl") or []],
                    facets={f: meta[f] for f in FACET_FIELDS if f in meta},
                    chunks=len(doc["ids"]),
                    updated_at=now,
                )
            )
        self.record_documents(rows)
        with self.engine.begin() as conn:
            conn.execute(delete(fields_table).where(fields_table.c.namespace == self.namespace))
        return n

    def _groups_of_keys(self, keys: Sequence[str]) -> dict[str, str]:
        out: dict[str, str] = {}
        query = text(
            "SELECT key, group_id FROM upsertion_record WHERE namespace = :ns AND key IN :keys"
        ).bindparams(bindparam("keys", expanding=True))
        with self.engine.connect() as conn:
            for start in range(0, len(keys), 500):
                batch = list(keys[start : start + 500])
                for key, group in conn.execute(query, {"ns": self.namespace, "keys": batch}):
                    out[str(key)] = str(group)
        return out

    def close(self) -> None:
        self.engine.dispose()


def merge_kinds(a: FieldKind, b: FieldKind) -> FieldKind:
    """The kind of a field seen with kinds `a` and `b`."""
    if a == b:
        return a
    return "float" if {a, b} <= {"int", "float"} else "str"
