"""Export and import of a whole index (or one tenant): backup, restore and migration between
stores.

**File format** (``FILE.jsonl.gz``, one JSON object per line, gzip):

1. a header (``type: header``): format and version, the source store (backend, location,
   collection), the embedding model and dimension, the chunking settings, the tenant filter,
   when the export began (UTC) and the record counts per tenant *at that moment*. The export
   is streamed while the store stays in use, so the final counts and checksums cannot be known
   up front: they are in the trailer;
2. one line per record (``type: record``): id, tenant, text, metadata, vector, the
   record-manager group that owns the chunk in the source's ingest state (``null`` when the
   state does not know it) and the record's own sha256 (`record_digest`);
3. one line per completely indexed source file (``type: file``) that owns exported chunks:
   its file key, source and fingerprint, so that a later incremental ingest on the target
   skips unchanged files;
4. a trailer (``type: trailer``): the final count and checksum per tenant. A tenant's checksum
   is the sum modulo 2**256 of its records' `content_digest` (id, text, metadata): independent
   of the order the store lists them in, so the same records give the same checksum on every
   store. Vectors are covered by each line's own digest, not by the tenant checksum, because
   a store may return a vector an ulp away from the one written.

The export is not a snapshot: writes that happen while it runs may or may not be in the file
(each record is exported as it was when its page was read). Run it in a quiet moment, or
accept that the next incremental ingest completes the picture.

**Import** refuses a file of another embedding model or dimension, checks every record's digest
as it reads, writes in batches through the store port (`upsert`, idempotent by id) and keeps a
resume marker (the last line whose batch is written) under ``<data_dir>/imports/``, so an
interrupted import, run again, skips what is written and never duplicates. At the end it
checks the trailer and rebuilds the ingest state (record-manager keys with their groups, the
per-tenant field catalog, document rows, completed files). A record whose group the source did
not know is recorded without a group: a later ingest of its file writes fresh chunks under the
file's own group and leaves that record alone (`rag-app delete --source` removes it).
"""

from __future__ import annotations

import datetime as dt
import gzip
import hashlib
import json
import os
import struct
import time
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import bindparam, text

from rag_app.access.filters import FieldKind
from rag_app.errors import ConfigError, RagAppError
from rag_app.ingest.metadata import field_kind
from rag_app.ingest.state import FACET_FIELDS, DocumentRow, IngestState, merge_kinds
from rag_app.stores.base import Metadata, StoreRecord, VectorScannable, VectorStorePort

if TYPE_CHECKING:
    from rag_app.app import App

FORMAT = "rag-app-export"
FORMAT_VERSION = 1
EXPORT_PAGE = 500
IMPORT_BATCH = 256
_MOD = 2**256


class TransferError(RagAppError):
    """The export file is unusable here (other model, corrupted, truncated)."""


# -- reading vectors from a store ------------------------------------------------------------
def vector_records(
    store: VectorStorePort, *, tenant: str | None = None
) -> Iterator[tuple[StoreRecord, list[float]]]:
    """Every record of `tenant` (None: all) with its vector, or a `ConfigError` for a store
    that cannot list vectors."""
    if isinstance(store, VectorScannable):
        return store.records_with_vectors(tenant=tenant)
    raise ConfigError(
        f"the {store.info.backend} store cannot export: it lacks the VectorScannable "
        "capability (records_with_vectors)"
    )


# -- digests ---------------------------------------------------------------------------------
def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":"))


def _content(record_id: str, text: str, metadata: Metadata) -> bytes:
    return _canonical({"id": record_id, "text": text, "metadata": metadata}).encode()


def record_digest(record_id: str, text: str, metadata: Metadata, vector: Sequence[float]) -> str:
    """A line's own sha256: the canonical JSON of id, text and metadata plus the vector as
    little-endian float32. It proves the *file* intact, bit for bit."""
    h = hashlib.sha256(_content(record_id, text, metadata))
    h.update(struct.pack(f"<{len(vector)}f", *vector))
    return h.hexdigest()


def content_digest(record_id: str, text: str, metadata: Metadata) -> str:
    """What the per-tenant checksums add up: id, text and metadata, not the vector. Stores
    may hand back a vector an ulp away from the one written (Chroma's cosine index does), so
    a checksum over vector bytes would differ between two faithful copies; the vectors are
    covered by each line's `record_digest` instead."""
    return hashlib.sha256(_content(record_id, text, metadata)).hexdigest()


@dataclass
class TenantSum:
    count: int = 0
    total: int = 0  # sum of digests modulo 2**256

    def add(self, digest: str) -> None:
        self.count += 1
        self.total = (self.total + int(digest, 16)) % _MOD

    def as_dict(self) -> dict[str, Any]:
        return {"count": self.count, "checksum": f"{self.total:064x}"}


def _tenant_of(metadata: Metadata) -> str:
    tenant = metadata.get("tenant")
    return tenant if isinstance(tenant, str) else ""


def _float32(vector: Sequence[float]) -> list[float]:
    """The vector as the float32 values a store keeps (exact in JSON)."""
    return list(struct.unpack(f"<{len(vector)}f", struct.pack(f"<{len(vector)}f", *vector)))


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def _groups_of(state: IngestState, keys: Sequence[str]) -> dict[str, str | None]:
    query = text(
        "SELECT key, group_id FROM upsertion_record WHERE namespace = :ns AND key IN :keys"
    ).bindparams(bindparam("keys", expanding=True))
    out: dict[str, str | None] = {}
    with state.engine.connect() as conn:
        for start in range(0, len(keys), 500):
            batch = list(keys[start : start + 500])
            for key, group in conn.execute(query, {"ns": state.namespace, "keys": batch}):
                out[str(key)] = None if group is None else str(group)
    return out


# -- export ----------------------------------------------------------------------------------
@dataclass
class ExportSummary:
    path: Path
    records: int
    tenants: dict[str, dict[str, Any]]
    files: int
    seconds: float


def export_index(
    app: App,
    out: Path,
    *,
    tenant: str | None = None,
    page: int = EXPORT_PAGE,
    progress: Callable[[int | None], Any] | None = None,
) -> ExportSummary:
    """Stream every record (of `tenant`) of the app's store into `out` (gzip JSONL). Written
    to ``out.partial`` and renamed at the end, so a file named `out` is always complete."""
    started = time.perf_counter()
    store, state, settings = app.store, app.state, app.settings
    info = store.info
    # Tenants the ingest state knows (the store may know more: the trailer has them all).
    names = [tenant] if tenant is not None else state.tenants()
    at_start: dict[str, Any] = {
        "total": store.count(tenant=tenant),
        "per_tenant": {t: store.count(tenant=t) for t in names},
    }
    header = {
        "type": "header",
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "started_at": _now(),
        "store": {
            "backend": info.backend,
            "location": app.store_location,
            "collection": info.collection,
        },
        "embedding": {"model": info.embedding_model, "dimension": info.dimension},
        "chunking": {
            "chunk_size": settings.chunk_size,
            "chunk_overlap": settings.chunk_overlap,
            "date_fields": sorted(settings.date_fields),
        },
        "tenant": tenant,
        "records_at_start": at_start,
        "checksum": "per tenant (in the trailer): sum mod 2**256 of sha256(canonical JSON of "
        "id, text, metadata); per record: sha256 of that JSON + float32 vector bytes",
        "note": "streamed while the store is in use: final counts and checksums are in the "
        "trailer line",
    }
    sums: dict[str, TenantSum] = {}
    file_tenants: dict[str, set[str]] = {}
    partial = out.with_name(out.name + ".partial")
    out.parent.mkdir(parents=True, exist_ok=True)
    bar = progress(at_start["total"]) if progress else None
    n = 0
    try:
        # Level 1: gzip at level 6 was half of the export's time (bench/bench_transfer.py)
        # for a file only ~9% smaller (vectors compress poorly).
        with gzip.open(partial, "wt", encoding="utf-8", compresslevel=1) as fh:
            fh.write(json.dumps(header, ensure_ascii=False) + "\n")
            buffer: list[tuple[StoreRecord, list[float]]] = []

            def flush() -> None:
                groups = _groups_of(state, [r.id for r, _ in buffer])
                for record, vector in buffer:
                    vec = _float32(vector)
                    body = record.text or ""
                    digest = record_digest(record.id, body, record.metadata, vec)
                    owner = _tenant_of(record.metadata)
                    sums.setdefault(owner, TenantSum()).add(
                        content_digest(record.id, body, record.metadata)
                    )
                    group = groups.get(record.id)
                    if group is not None:
                        file_tenants.setdefault(group.split("#", 1)[0], set()).add(owner)
                    line = {
                        "type": "record",
                        "id": record.id,
                        "tenant": owner,
                        "text": body,
                        "metadata": record.metadata,
                        "vector": vec,
                        "group": group,
                        "sha256": digest,
                    }
                    fh.write(json.dumps(line, ensure_ascii=False) + "\n")
                if bar is not None:
                    bar.update(len(buffer))
                buffer.clear()

            for item in vector_records(store, tenant=tenant):
                buffer.append(item)
                n += 1
                if len(buffer) >= page:
                    flush()
            if buffer:
                flush()
            known = state.known_files()
            fingerprints = state.fingerprints()
            files = 0
            for file_key in sorted(file_tenants):
                if file_key not in fingerprints:
                    continue  # not completely indexed at the source: the target re-ingests it
                line = {
                    "type": "file",
                    "file_key": file_key,
                    "source": known.get(file_key, ""),
                    "fingerprint": fingerprints[file_key],
                    "tenants": sorted(file_tenants[file_key]),
                }
                fh.write(json.dumps(line, ensure_ascii=False) + "\n")
                files += 1
            trailer = {
                "type": "trailer",
                "finished_at": _now(),
                "records": n,
                "files": files,
                "tenants": {t: s.as_dict() for t, s in sorted(sums.items())},
            }
            fh.write(json.dumps(trailer, ensure_ascii=False) + "\n")
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    finally:
        if bar is not None:
            bar.close()
    os.replace(partial, out)
    return ExportSummary(
        path=out,
        records=n,
        tenants={t: s.as_dict() for t, s in sorted(sums.items())},
        files=files,
        seconds=time.perf_counter() - started,
    )


# -- import ----------------------------------------------------------------------------------
@dataclass
class ImportSummary:
    path: Path
    records_written: int = 0
    records_resumed: int = 0  # already written by an interrupted earlier run
    records_skipped: int = 0  # other tenants (with --tenant)
    tenants: dict[str, dict[str, Any]] = field(default_factory=dict)
    files_marked: int = 0
    seconds: float = 0.0


def read_header(path: Path) -> dict[str, Any]:
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        return _parse_header(fh.readline(), path)


def _parse_header(line: str, path: Path) -> dict[str, Any]:
    try:
        header = json.loads(line)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise TransferError(f"{path} is not a rag-app export (line 1: {exc})") from exc
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise TransferError(f"{path} is not a rag-app export (no {FORMAT} header)")
    if header.get("version") != FORMAT_VERSION:
        raise TransferError(
            f"{path} has export format version {header.get('version')}; this rag-app reads "
            f"version {FORMAT_VERSION}"
        )
    return header


def check_compatible(header: dict[str, Any], store: VectorStorePort, path: Path) -> None:
    emb = header.get("embedding") or {}
    model, dim = emb.get("model"), emb.get("dimension")
    info = store.info
    if model != info.embedding_model or dim != info.dimension:
        raise TransferError(
            f"{path} holds vectors of embedding model {model!r} ({dim} dimensions), but the "
            f"target collection {info.collection!r} uses {info.embedding_model!r} "
            f"({info.dimension} dimensions). Import into a collection configured for "
            f"{model!r}, or re-ingest the documents with the new model."
        )


def _marker_path(app: App, header_line: str, tenant: str | None) -> Path:
    key = hashlib.sha256(
        "\n".join([header_line.strip(), app.store_location, tenant or "*"]).encode()
    ).hexdigest()[:24]
    return app.settings.data_dir / "imports" / f"{key}.json"


def _read_marker(path: Path) -> int:
    try:
        return int(json.loads(path.read_text())["line"])
    except (OSError, ValueError, KeyError, TypeError):
        return 0


def _write_marker(path: Path, source: Path, line: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"file": str(source), "line": line, "at": _now()}))
    os.replace(tmp, path)


@dataclass
class _Doc:
    metadata: Metadata
    chunks: int = 0


@dataclass
class _StateBuilder:
    """What the import learns about the ingest state, written at the end."""

    kinds: dict[str, dict[str, FieldKind]] = field(default_factory=dict)
    docs: dict[str, _Doc] = field(default_factory=dict)
    files: list[dict[str, Any]] = field(default_factory=list)

    def add(self, metadata: Metadata, group: str | None) -> None:
        tenant = _tenant_of(metadata)
        kinds = self.kinds.setdefault(tenant, {})
        for key, value in metadata.items():
            if value is None:
                continue
            kind = field_kind(value)
            kinds[key] = kind if key not in kinds else merge_kinds(kinds[key], kind)
        name = group if group is not None else f"?{metadata.get('source', '')}"
        self.docs.setdefault(name, _Doc(metadata)).chunks += 1

    def write(self, state: IngestState) -> int:
        for tenant, kinds in self.kinds.items():
            if tenant:
                state.record_fields(kinds, tenant=tenant)
        now = time.time()
        rows = []
        for group, doc in self.docs.items():
            meta = doc.metadata
            rows.append(
                DocumentRow(
                    group_id=group,
                    file_key=group.split("#", 1)[0],
                    source=str(meta.get("source", "")),
                    tenant=_tenant_of(meta),
                    acl=[str(a) for a in meta.get("acl") or []],
                    facets={f: meta[f] for f in FACET_FIELDS if f in meta},
                    chunks=doc.chunks,
                    updated_at=now,
                )
            )
        state.record_documents(rows)
        for f in self.files:
            state.mark_complete(str(f["file_key"]), str(f["source"]), str(f["fingerprint"]))
        return len(self.files)


def import_file(
    app: App,
    path: Path,
    *,
    tenant: str | None = None,
    batch: int = IMPORT_BATCH,
    progress: Callable[[int | None], Any] | None = None,
) -> ImportSummary:
    """Import an export file into the app's store and ingest state (see the module doc).
    The import is logged as an ingest run (origin ``import``) for `rag-app stats`."""
    paths = [str(path)] if tenant is None else [f"{path} (tenant {tenant})"]
    with app.state.logged_run(origin="import", paths=paths) as run:
        summary = _import_file(app, path, tenant=tenant, batch=batch, progress=progress)
        run.counts = {
            "records_written": summary.records_written,
            "records_resumed": summary.records_resumed,
            "records_skipped": summary.records_skipped,
            "files_marked": summary.files_marked,
        }
    return summary


def _import_file(
    app: App,
    path: Path,
    *,
    tenant: str | None,
    batch: int,
    progress: Callable[[int | None], Any] | None,
) -> ImportSummary:
    started = time.perf_counter()
    store, state = app.store, app.state
    summary = ImportSummary(path=path)
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        header_line = fh.readline()
        header = _parse_header(header_line, path)
        check_compatible(header, store, path)
        if tenant is not None and header.get("tenant") not in (None, tenant):
            raise TransferError(
                f"{path} holds only tenant {header.get('tenant')!r}, not {tenant!r}"
            )
        marker = _marker_path(app, header_line, tenant)
        done = _read_marker(marker)
        at_start = header.get("records_at_start") or {}
        total = (
            (at_start.get("per_tenant") or {}).get(tenant)
            if tenant is not None
            else at_start.get("total")
        )
        bar = progress(total) if progress else None
        sums: dict[str, TenantSum] = {}
        builder = _StateBuilder()
        pending: list[tuple[dict[str, Any], int]] = []
        trailer: dict[str, Any] | None = None
        dimension = store.info.dimension

        def flush() -> None:
            if not pending:
                return
            recs = [r for r, _ in pending]
            store.upsert(
                [r["id"] for r in recs],
                [r["text"] for r in recs],
                [r["vector"] for r in recs],
                [r["metadata"] for r in recs],
            )
            state.record_manager.update(
                [r["id"] for r in recs], group_ids=[r.get("group") for r in recs]
            )
            _write_marker(marker, path, pending[-1][1])
            summary.records_written += len(pending)
            if bar is not None:
                bar.update(len(pending))
            pending.clear()

        try:
            lineno = 1
            for raw in fh:
                lineno += 1
                if trailer is not None:
                    raise TransferError(f"{path} line {lineno}: data after the trailer")
                try:
                    obj = json.loads(raw)
                except json.JSONDecodeError as exc:
                    raise TransferError(
                        f"{path} line {lineno} is corrupted (not JSON: {exc})"
                    ) from exc
                kind = obj.get("type") if isinstance(obj, dict) else None
                if kind == "trailer":
                    trailer = obj
                    continue
                if kind == "file":
                    wanted = tenant is None or set(obj.get("tenants") or []) == {tenant}
                    if wanted:
                        builder.files.append(obj)
                    continue
                if kind != "record":
                    raise TransferError(f"{path} line {lineno}: unknown line type {kind!r}")
                try:
                    digest = record_digest(obj["id"], obj["text"], obj["metadata"], obj["vector"])
                except (KeyError, TypeError, struct.error) as exc:
                    raise TransferError(f"{path} line {lineno} is corrupted ({exc})") from exc
                if digest != obj.get("sha256"):
                    raise TransferError(
                        f"{path} line {lineno} (record {obj['id']!r}) is corrupted: its "
                        "checksum does not match"
                    )
                owner = _tenant_of(obj["metadata"])
                if owner != obj.get("tenant"):
                    raise TransferError(f"{path} line {lineno}: tenant field disagrees")
                sums.setdefault(owner, TenantSum()).add(
                    content_digest(obj["id"], obj["text"], obj["metadata"])
                )
                if tenant is not None and owner != tenant:
                    summary.records_skipped += 1
                    continue
                if len(obj["vector"]) != dimension:
                    raise TransferError(
                        f"{path} line {lineno}: vector has {len(obj['vector'])} dimensions, "
                        f"not {dimension}"
                    )
                builder.add(obj["metadata"], obj.get("group"))
                if lineno <= done:
                    summary.records_resumed += 1
                    if bar is not None:
                        bar.update(1)
                    continue
                pending.append((obj, lineno))
                if len(pending) >= batch:
                    flush()
            flush()
        except (EOFError, gzip.BadGzipFile, zlib.error) as exc:
            raise TransferError(
                f"{path} is truncated or damaged after line {lineno}: {exc}. Records up to "
                "there are written; export again and re-run the import."
            ) from exc
        finally:
            if bar is not None:
                bar.close()

    if trailer is None:
        raise TransferError(
            f"{path} has no trailer: the export did not finish. The records it holds are "
            "written; export again and re-run the import."
        )
    expected: dict[str, Any] = trailer.get("tenants") or {}
    check = [tenant] if tenant is not None else sorted(set(expected) | set(sums))
    for name in check:
        got = (sums.get(name) or TenantSum()).as_dict()
        want = expected.get(name) or TenantSum().as_dict()
        if got != want:
            raise TransferError(
                f"{path}: tenant {name!r} has {got['count']} records with checksum "
                f"{got['checksum'][:16]}..., the trailer says {want['count']} with "
                f"{want['checksum'][:16]}...; the file is damaged"
            )
        summary.tenants[name] = got
    summary.files_marked = builder.write(state)
    marker.unlink(missing_ok=True)
    summary.seconds = time.perf_counter() - started
    return summary
