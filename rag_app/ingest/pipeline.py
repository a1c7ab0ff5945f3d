"""Incremental, idempotent ingestion on top of LangChain's indexing API.

Per file: fingerprint (bytes + metadata inputs + chunking settings) -> skip if unchanged and
complete; otherwise load, validate, split, and `index()` the file's chunks with the file as
the record-manager group and ``cleanup="scoped_full"``, which replaces exactly that file's old
chunks after the new ones are written. Chunk ids are content+metadata hashes (sha256), so
re-running after a crash upserts the same ids (no duplicates) and then cleans up.

``cleanup="full"`` also deletes the chunks of previously ingested files under the given
folders that no longer exist.

Every write or delete through the store port replaces the store's change token, which tells
derived indexes such as the BM25 index (on any host) that they must be rebuilt.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from langchain_core.documents import Document
from langchain_core.indexing import index

from rag_app import monitoring
from rag_app.access.filters import FieldKind
from rag_app.embeddings import EmbeddingModel
from rag_app.errors import RagAppError, RejectedInput
from rag_app.ingest.loaders import (
    SIDECAR_SUFFIX,
    LoadedFile,
    discover,
    display_source,
    load_file,
)
from rag_app.ingest.metadata import SYSTEM_KEYS, field_kind, normalize_metadata
from rag_app.ingest.splitting import TokenSplitter
from rag_app.ingest.state import FACET_FIELDS, DocumentRow, IngestState
from rag_app.ingest.tables import TABLE_ROW, Table, row_texts
from rag_app.stores.base import VectorStorePort
from rag_app.stores.langchain_adapter import PortVectorStore

log = logging.getLogger(__name__)

INDEX_BATCH = 2048
# Metadata of the extra chunks that hold one table row each (`rag_app.ingest.tables`); text
# chunks do not carry the field (filter them with {"chunk_kind": {"$ne": "table_row"}}).
CHUNK_KIND = "chunk_kind"


def document_rows(
    file_key: str, chunks: Sequence[Document], group_of: Callable[[Document], str]
) -> list[DocumentRow]:
    """One state row per document (group) among freshly indexed chunks: what stats and the
    UI's facets read instead of scanning the store."""
    by_group: dict[str, list[Document]] = {}
    for doc in chunks:
        by_group.setdefault(group_of(doc), []).append(doc)
    now = time.time()
    rows = []
    for group, docs in by_group.items():
        meta = docs[0].metadata
        rows.append(
            DocumentRow(
                group_id=group,
                file_key=file_key,
                source=str(meta["source"]),
                tenant=str(meta["tenant"]),
                acl=list(meta["acl"]),
                facets={f: meta[f] for f in FACET_FIELDS if f in meta},
                chunks=len(docs),
                updated_at=now,
            )
        )
    return rows


def _root_of(path: Path, roots: Sequence[Path]) -> Path | None:
    """The ingest root (a given file or folder) that `path` was found under."""
    resolved = path.resolve()
    for root in roots:
        r = root.resolve()
        if resolved == r or r in resolved.parents:
            return r
    return None


@dataclass
class Rejection:
    location: str
    reason: str


@dataclass
class IngestReport:
    files_seen: int = 0
    files_unchanged: int = 0
    files_indexed: int = 0
    files_removed: int = 0
    chunks_added: int = 0
    chunks_skipped: int = 0
    chunks_deleted: int = 0
    skipped: list[Rejection] = field(default_factory=list)  # not meant for ingestion
    rejected: list[Rejection] = field(default_factory=list)
    # Chunks of an earlier version that are still served because their new version was
    # rejected (nothing stored is dropped on bad input, but it is never kept silently).
    still_served: list[Rejection] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.rejected

    def counts(self) -> dict[str, int]:
        """The numbers of the run log (`IngestState.logged_run`)."""
        return {
            "files_indexed": self.files_indexed,
            "files_unchanged": self.files_unchanged,
            "files_removed": self.files_removed,
            "chunks_added": self.chunks_added,
            "chunks_deleted": self.chunks_deleted,
            "rejected": len(self.rejected),
            "still_served": len(self.still_served),
        }

    def as_dict(self) -> dict[str, Any]:
        return {
            "files_seen": self.files_seen,
            "files_unchanged": self.files_unchanged,
            "files_indexed": self.files_indexed,
            "files_removed": self.files_removed,
            "chunks_added": self.chunks_added,
            "chunks_skipped": self.chunks_skipped,
            "chunks_deleted": self.chunks_deleted,
            "rejected": [r.__dict__ for r in self.rejected],
            "skipped": [r.__dict__ for r in self.skipped],
            "still_served": [r.__dict__ for r in self.still_served],
            "seconds": round(self.seconds, 3),
        }


@dataclass
class _Prepared:
    file_key: str
    source: str
    fingerprint: str
    chunks: list[Document]
    kinds: dict[str, dict[str, FieldKind]]  # tenant -> field -> kind
    # One record-manager group per record (JSONL) instead of one per file, so that a record's
    # new chunks replace exactly its old ones even when another record of the file is bad.
    per_record: bool = False
    # Some records were rejected: their previously stored chunks are kept (and reported), the
    # accepted records still replace theirs, and the file is not marked complete, so the next
    # run processes it again.
    partial: bool = False

    def group_of(self, doc: Document) -> str:
        if self.per_record:
            return f"{self.file_key}#{doc.metadata['doc_id']}"
        return self.file_key


ProgressFactory = Callable[[int], Any]  # total chunks -> object with update(n) and close()


class Ingestor:
    def __init__(
        self,
        *,
        store: VectorStorePort,
        embeddings: EmbeddingModel,
        state: IngestState,
        splitter: TokenSplitter,
        date_fields: Sequence[str],
        max_file_bytes: int,
        embed_batch_size: int = 32,
        settings_fingerprint: str = "",
    ) -> None:
        self.store = store
        self.embeddings = embeddings
        self.state = state
        self.splitter = splitter
        self.date_fields = list(date_fields)
        self.max_file_bytes = max_file_bytes
        self.settings_fingerprint = settings_fingerprint
        self.vectorstore = PortVectorStore(
            store,
            embeddings,  # type: ignore[arg-type]
            embed_batch_size=embed_batch_size,
        )

    # -- public API ---------------------------------------------------------------------
    def ingest(
        self,
        paths: Iterable[Path | str],
        *,
        overrides: Mapping[str, Any] | None = None,
        cleanup: Literal["incremental", "full"] = "incremental",
        progress: ProgressFactory | None = None,
        source_root: Path | None = None,
        origin: str = "api",
    ) -> IngestReport:
        """Ingest files and folders. Documents are named (`source`) relative to the working
        directory, else to the folder holding the given path (or `source_root`'s parent).
        The run is recorded in the metrics (`rag_app.monitoring`) and, with `origin` (cli,
        upload, repair, ...), in the state database's run log (`rag-app stats`)."""
        paths = [Path(p) for p in paths]
        uploader = (overrides or {}).get("uploaded_by")
        with self.state.logged_run(
            origin=origin,
            paths=[str(p) for p in paths],
            user=None if uploader is None else str(uploader),
        ) as run:
            try:
                report = self._ingest(
                    paths,
                    overrides=overrides,
                    cleanup=cleanup,
                    progress=progress,
                    source_root=source_root,
                )
            except Exception as exc:
                monitoring.metrics().record_error("ingest", exc)
                raise
            run.status = "ok" if report.ok else "partial"
            run.counts = report.counts()
        monitoring.metrics().record_ingest(report)
        return report

    def _ingest(
        self,
        paths: Iterable[Path | str],
        *,
        overrides: Mapping[str, Any] | None,
        cleanup: Literal["incremental", "full"],
        progress: ProgressFactory | None,
        source_root: Path | None,
    ) -> IngestReport:
        started = time.perf_counter()
        report = IngestReport()
        roots = [Path(p) for p in paths]
        found = discover(roots)
        for missing in found.missing:
            report.rejected.append(Rejection(str(missing), "no such file or folder"))
        for path, why in found.skipped:
            report.skipped.append(Rejection(str(path), why))
        report.files_seen = len(found.files)

        overrides = dict(overrides or {})
        known = self.state.fingerprints()
        prepared: list[_Prepared] = []
        seen_keys: set[str] = set()
        for path in found.files:
            file_key = str(path.resolve())
            seen_keys.add(file_key)
            source = display_source(path, root=source_root or _root_of(path, roots))
            try:
                fingerprint = self._fingerprint(path, source, overrides)
            except OSError as exc:
                report.rejected.append(Rejection(str(path), f"cannot read file: {exc}"))
                continue
            if known.get(file_key) == fingerprint:
                report.files_unchanged += 1
                continue
            item = self._prepare(path, file_key, source, fingerprint, overrides, report)
            if item is not None:
                prepared.append(item)

        total = sum(len(p.chunks) for p in prepared)
        bar = progress(total) if (progress and total) else None
        self.vectorstore.on_progress = bar.update if bar is not None else None
        try:
            for item in prepared:
                self._index_file(item, report)
        finally:
            self.vectorstore.on_progress = None
            if bar is not None:
                bar.close()

        if cleanup == "full":
            self._remove_vanished(roots, seen_keys, report)
        report.seconds = time.perf_counter() - started
        return report

    def remove_files(self, file_keys: Iterable[str]) -> int:
        """Delete every chunk of the given files (store, record manager and file marks)."""
        deleted = 0
        for key in file_keys:
            ids = self.state.chunk_ids_of(key)
            if ids:
                self.store.delete(ids)
                self.state.delete_chunk_records(ids)
                deleted += len(ids)
            self.state.forget_files([key])
            self.state.forget_documents(file_keys=[key])
        return deleted

    # -- steps --------------------------------------------------------------------------
    def _fingerprint(self, path: Path, source: str, overrides: Mapping[str, Any]) -> str:
        digest = hashlib.sha256()
        digest.update(path.read_bytes())
        sidecar = path.with_name(path.name + SIDECAR_SUFFIX)
        if sidecar.exists():
            digest.update(b"\0sidecar\0" + sidecar.read_bytes())
        digest.update(
            b"\0overrides\0" + json.dumps(overrides, sort_keys=True, default=str).encode()
        )
        digest.update(b"\0source\0" + source.encode())
        digest.update(b"\0settings\0" + self.settings_fingerprint.encode())
        return digest.hexdigest()

    def _prepare(
        self,
        path: Path,
        file_key: str,
        source: str,
        fingerprint: str,
        overrides: Mapping[str, Any],
        report: IngestReport,
    ) -> _Prepared | None:
        rejected_before = len(report.rejected)
        try:
            loaded: LoadedFile = load_file(
                path, max_bytes=self.max_file_bytes, overrides=overrides, source=source
            )
        except RejectedInput as exc:
            report.rejected.append(Rejection(exc.location or str(path), exc.reason))
            self._report_still_served(file_key, source, report)
            return None
        for rej in loaded.rejected:
            report.rejected.append(Rejection(rej.location or str(path), rej.reason))

        chunks: list[Document] = []
        kinds: dict[str, dict[str, FieldKind]] = {}
        for doc in loaded.docs:
            location = str(path) if doc.doc_id == doc.source else f"{path}#{doc.doc_id}"
            reserved = sorted(SYSTEM_KEYS & set(doc.metadata))
            if reserved:
                report.rejected.append(
                    Rejection(location, f"metadata key(s) {', '.join(reserved)} are reserved")
                )
                continue
            try:
                meta = normalize_metadata(doc.metadata, date_fields=self.date_fields)
            except ValueError as exc:
                report.rejected.append(Rejection(location, f"invalid metadata: {exc}"))
                continue
            try:
                pieces = self.splitter.split(doc.text)
            except Exception as exc:
                report.rejected.append(Rejection(location, f"cannot split text: {exc}"))
                continue
            if not pieces:
                report.rejected.append(Rejection(location, "no text content"))
                continue
            rows = self._table_rows(doc.tables, str(meta["title"]))
            meta["source"] = doc.source
            meta["doc_id"] = doc.doc_id
            meta["chunk_count"] = len(pieces) + len(rows)
            tenant_kinds = kinds.setdefault(str(meta["tenant"]), {})
            for key, value in meta.items():
                tenant_kinds[key] = field_kind(value)
            tenant_kinds["chunk_index"] = "int"
            if rows:
                tenant_kinds[CHUNK_KIND] = "str"
            for n, piece in enumerate(pieces):
                chunk_meta = dict(meta)
                chunk_meta["chunk_index"] = n
                chunks.append(Document(page_content=piece, metadata=chunk_meta))
            for n, row in enumerate(rows, start=len(pieces)):
                chunk_meta = dict(meta)
                chunk_meta["chunk_index"] = n
                chunk_meta[CHUNK_KIND] = TABLE_ROW
                chunks.append(Document(page_content=row, metadata=chunk_meta))
        if not chunks:
            # A file whose every record failed keeps whatever it had stored before: say so.
            self._report_still_served(file_key, source, report)
            return None
        partial = len(report.rejected) > rejected_before
        per_record = path.suffix.lower() == ".jsonl"
        return _Prepared(
            file_key, source, fingerprint, chunks, kinds, per_record=per_record, partial=partial
        )

    def _table_rows(self, tables: Sequence[Table], title: str) -> list[str]:
        """The extra chunks of a document's tables: one row sentence each, prefixed by the
        title and the table's caption or heading (a row over the chunk size is split)."""
        out: list[str] = []
        for text in row_texts(title, tables):
            if self.splitter.counter.count_tokens(text) <= self.splitter.chunk_size:
                out.append(text)
            else:
                out.extend(self.splitter.split(text))
        return out

    def _report_still_served(
        self, file_key: str, source: str, report: IngestReport, groups: Iterable[str] = ()
    ) -> None:
        """Tell the caller which chunks of a previous version stay in the store because their
        new version was rejected (all of the file's groups, or only `groups`)."""
        all_groups = self.state.chunk_groups_of(file_key)
        wanted = set(groups)
        kept = {g: ids for g, ids in all_groups.items() if not wanted or g in wanted}
        ids = [i for group_ids in kept.values() for i in group_ids]
        if not ids:
            return
        acls: set[str] = set()
        try:
            for record in self.store.get(ids[:200]):
                acl = record.metadata.get("acl")
                if isinstance(acl, list):
                    acls.update(str(a) for a in acl)
        except RagAppError:
            log.warning("could not read the ACL of %s's previous chunks", source)
        records = sorted(g.split("#", 1)[1] for g in kept if "#" in g)
        which = f" (records {', '.join(records[:10])}{' ...' if len(records) > 10 else ''})"
        readers = f", readable by {', '.join(sorted(acls))}" if acls else ""
        report.still_served.append(
            Rejection(
                source,
                f"{len(ids)} chunk(s) of the previous version{which if records else ''} are "
                f"still served{readers}; fix the input and ingest again, or remove them with "
                f"`rag-app delete --source {source}`",
            )
        )

    def _index_file(self, item: _Prepared, report: IngestReport) -> None:
        # scoped_full: the old chunks of every group (file, or record of a JSONL file) that this
        # run wrote are removed once its new chunks are in, also when other records were bad.
        try:
            result = index(
                item.chunks,
                self.state.record_manager,
                self.vectorstore,
                cleanup="scoped_full",
                source_id_key=item.group_of,
                key_encoder="sha256",
                batch_size=INDEX_BATCH,
            )
        except RagAppError as exc:
            report.rejected.append(Rejection(item.source, str(exc)))
            return
        except Exception as exc:
            log.exception("indexing %s failed", item.source)
            report.rejected.append(Rejection(item.source, f"{type(exc).__name__}: {exc}"))
            return
        for tenant, kinds in item.kinds.items():
            self.state.record_fields(kinds, tenant=tenant)
        self.state.record_documents(document_rows(item.file_key, item.chunks, item.group_of))
        written = {item.group_of(doc) for doc in item.chunks}
        leftover = [g for g in self.state.chunk_groups_of(item.file_key) if g not in written]
        deleted = 0
        if item.partial:
            # Groups this run did not write: records that were rejected now (or vanished in a
            # line that no longer parses). Their old chunks stay, and the report says so.
            if leftover:
                self._report_still_served(item.file_key, item.source, report, leftover)
            self.state.forget_files([item.file_key])
        else:
            # Records removed from the file (and a pre-per-record group) go with it.
            deleted = self._delete_groups(item.file_key, leftover)
            self.state.mark_complete(item.file_key, item.source, item.fingerprint)
        report.files_indexed += 1
        report.chunks_added += int(result["num_added"]) + int(result["num_updated"])
        report.chunks_skipped += int(result["num_skipped"])
        report.chunks_deleted += int(result["num_deleted"]) + deleted

    def _delete_groups(self, file_key: str, groups: Sequence[str]) -> int:
        if not groups:
            return 0
        by_group = self.state.chunk_groups_of(file_key)
        ids = [i for g in groups for i in by_group.get(g, [])]
        if ids:
            self.store.delete(ids)
            self.state.delete_chunk_records(ids)
        self.state.forget_documents(groups=groups)
        return len(ids)

    def _remove_vanished(
        self, roots: Sequence[Path], seen_keys: set[str], report: IngestReport
    ) -> None:
        resolved_roots = [r.resolve() for r in roots]
        vanished = []
        for key in self.state.known_files():
            if key in seen_keys:
                continue
            key_path = Path(key)
            under_root = any(key_path == r or r in key_path.parents for r in resolved_roots)
            if under_root and not key_path.exists():
                vanished.append(key)
        if vanished:
            report.chunks_deleted += self.remove_files(vanished)
            report.files_removed += len(vanished)
