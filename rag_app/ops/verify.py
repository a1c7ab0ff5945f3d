"""`rag-app verify [--repair]`: compare the ingest state with the store.

What is checked (through the store port; the store must be `Scannable`):

* ``orphan_chunks``: records in the store that no file accounts for (their id is not a key of
  the record manager). They pass the access checks, so they *are* served: reported, and
  deleted only by ``--repair`` (which lists every id it deletes);
* ``missing_chunks``: record-manager keys whose record is not in the store (files that lost
  chunks behind the state's back);
* ``chunk_count_mismatch``: files marked complete whose documents hold another number of
  chunks than their chunks' ``chunk_count`` says;
* ``invalid_access``: records without a valid ``tenant``/``acl``. Such a record is never
  served (the access filter and the per-hit re-check both reject it), so it is dead weight;
* ``wrong_dimension``: the store's dimension against the embedding model's, and each vector's
  length when the store can return vectors (`VectorScannable`); otherwise skipped with a note;
* ``unknown_fields``: metadata fields (or wider kinds) that the tenant's field catalog does not
  know, which filters on those fields would reject;
* ``document_mismatch``: document rows of the state (stats, facets) that disagree with the
  store's chunks per source.

``--repair`` re-ingests files whose chunks are missing when the file still exists (else it
forgets the missing chunks and says so), deletes orphan chunks and invalid records, adds
unknown fields to the catalog, rebuilds the document rows, then verifies again and lists
what it could not repair.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import text

from rag_app.access.filters import FieldKind
from rag_app.access.permissions import validate_acl, validate_tenant
from rag_app.ingest.metadata import field_kind
from rag_app.ingest.state import IngestState, merge_kinds
from rag_app.stores.base import Metadata, StoreRecord, VectorScannable, scannable

if TYPE_CHECKING:
    from rag_app.app import App

KINDS: dict[str, str] = {
    "orphan_chunks": "chunks in the store that no file accounts for (served, but untracked)",
    "missing_chunks": "files whose chunks are missing from the store",
    "chunk_count_mismatch": "files marked complete whose chunk count differs",
    "invalid_access": "records without a valid tenant/acl (never served)",
    "wrong_dimension": "vectors of the wrong dimension",
    "unknown_fields": "metadata fields the field catalog does not know",
    "document_mismatch": "document rows (stats) that disagree with the store",
}


@dataclass
class Problem:
    kind: str
    count: int = 0
    examples: list[dict[str, Any]] = field(default_factory=list)

    def add(self, example: dict[str, Any], limit: int) -> None:
        self.count += 1
        if len(self.examples) < limit:
            self.examples.append(example)


@dataclass
class VerifyReport:
    store: str
    records: int = 0
    tracked_keys: int = 0
    complete_files: int = 0
    problems: dict[str, Problem] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    # Full lists (not only examples) that a repair works from.
    orphan_ids: list[str] = field(default_factory=list)
    invalid_ids: list[str] = field(default_factory=list)
    files_to_reingest: dict[str, list[str]] = field(default_factory=dict)  # file -> missing ids
    unknown_fields: dict[str, dict[str, FieldKind]] = field(default_factory=dict)
    records_by_id: dict[str, Metadata] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not any(p.count for p in self.problems.values())

    def problem(self, kind: str) -> Problem:
        return self.problems.setdefault(kind, Problem(kind))

    def as_dict(self) -> dict[str, Any]:
        return {
            "store": self.store,
            "ok": self.ok,
            "records": self.records,
            "tracked_keys": self.tracked_keys,
            "complete_files": self.complete_files,
            "problems": {
                kind: {
                    "description": KINDS[kind],
                    "count": self.problem(kind).count,
                    "examples": self.problem(kind).examples,
                }
                for kind in KINDS
            },
            "notes": list(self.notes),
        }


@dataclass
class RepairReport:
    deleted: list[dict[str, Any]] = field(default_factory=list)  # every record deleted
    reingested: list[str] = field(default_factory=list)
    forgotten: list[dict[str, Any]] = field(default_factory=list)
    fields_added: list[dict[str, str]] = field(default_factory=list)
    documents_rebuilt: bool = False
    not_repaired: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "deleted": self.deleted,
            "reingested": self.reingested,
            "forgotten": self.forgotten,
            "fields_added": self.fields_added,
            "documents_rebuilt": self.documents_rebuilt,
            "not_repaired": self.not_repaired,
        }


# -- helpers ----------------------------------------------------------------------------------
def access_problem(meta: Mapping[str, Any]) -> str | None:
    """Why a record can never be served (None: its tenant and acl are valid)."""
    try:
        validate_tenant(meta.get("tenant"))
    except ValueError as exc:
        return str(exc)
    acl = meta.get("acl")
    if not isinstance(acl, list | tuple):
        return f"acl {acl!r} is not a list of tokens"
    try:
        validate_acl(list(acl))
    except ValueError as exc:
        return str(exc)
    if any(tok != tok.strip() for tok in acl):
        return f"acl {list(acl)!r} has tokens with surrounding spaces"
    return None


def tracked_groups(state: IngestState) -> dict[str, str]:
    """Every record-manager key of this store -> its group (a file key, or ``file#record``)."""
    query = text("SELECT key, group_id FROM upsertion_record WHERE namespace = :ns")
    with state.engine.connect() as conn:
        return {str(k): str(g) for k, g in conn.execute(query, {"ns": state.namespace})}


def file_of(group: str) -> str:
    return group.split("#", 1)[0]


def source_root(file_key: str, source: str | None) -> Path | None:
    """The ingest root that gives `file_key` the document name `source` again (see
    `display_source`): the folder whose parent `source` is relative to."""
    if not source:
        return None
    parts = Path(source.split("#", 1)[0]).parts
    path = Path(file_key)
    if not parts or path.parts[-len(parts) :] != parts:
        return None
    return path if len(parts) == 1 else path.parents[len(parts) - 2]


def _scan(app: App) -> Iterator[StoreRecord]:
    store = scannable(app.store, "be verified against the ingest state")
    return store.records()


# -- verification -----------------------------------------------------------------------------
def verify(app: App, *, examples: int = 5) -> VerifyReport:
    """Compare the ingest state with the store; nothing is changed."""
    store = app.store
    state = app.state
    report = VerifyReport(store=store.info.backend)
    for kind in KINDS:
        report.problem(kind)

    records: dict[str, Metadata] = {}
    for record in _scan(app):
        records[record.id] = dict(record.metadata)
    report.records_by_id = records
    report.records = len(records)
    groups = tracked_groups(state)
    report.tracked_keys = len(groups)
    complete = state.known_files()
    report.complete_files = len(complete)
    documents = state.documents()
    sources_of_file: dict[str, str] = dict(complete)
    for row in documents:
        sources_of_file.setdefault(row.file_key, row.source)

    def source_of(meta: Mapping[str, Any]) -> str:
        return str(meta.get("source", ""))

    # Records with invalid tenant/acl (never served) and orphans (served, untracked).
    invalid: set[str] = set()
    for rid, meta in records.items():
        why = access_problem(meta)
        if why is not None:
            invalid.add(rid)
            report.invalid_ids.append(rid)
            report.problem("invalid_access").add(
                {"id": rid, "source": source_of(meta), "reason": why}, examples
            )
    for rid, meta in records.items():
        if rid not in groups and rid not in invalid:
            report.orphan_ids.append(rid)
            report.problem("orphan_chunks").add(
                {"id": rid, "source": source_of(meta), "tenant": meta.get("tenant")}, examples
            )
    if report.invalid_ids:
        report.notes.append(
            "records without a valid tenant/acl are never served (the access filter and the "
            "per-hit re-check reject them); --repair deletes them"
        )

    # Files whose chunks are missing.
    missing_by_file: dict[str, list[str]] = {}
    tracked_by_file: Counter[str] = Counter()
    for key, group in groups.items():
        tracked_by_file[file_of(group)] += 1
        if key not in records:
            missing_by_file.setdefault(file_of(group), []).append(key)
    for file_key, missing in sorted(missing_by_file.items()):
        report.files_to_reingest[file_key] = missing
        report.problem("missing_chunks").add(
            {
                "file": file_key,
                "source": sources_of_file.get(file_key),
                "missing": len(missing),
                "tracked": tracked_by_file[file_key],
                "on_disk": Path(file_key).is_file(),
            },
            examples,
        )
    # Invalid records of tracked files: the file is re-ingested after they are deleted.
    for rid in report.invalid_ids:
        if rid in groups:
            report.files_to_reingest.setdefault(file_of(groups[rid]), [])

    # Complete files whose documents hold another number of chunks than `chunk_count` says.
    stored_per_group: Counter[str] = Counter()
    expected_per_group: dict[str, set[int]] = {}
    for rid, meta in records.items():
        tracked = groups.get(rid)
        if tracked is None:
            continue
        stored_per_group[tracked] += 1
        count = meta.get("chunk_count")
        if isinstance(count, int) and not isinstance(count, bool):
            expected_per_group.setdefault(tracked, set()).add(count)
    for group in sorted(stored_per_group):
        file_key = file_of(group)
        if file_key not in complete or file_key in missing_by_file:
            continue
        expected = expected_per_group.get(group, set())
        stored = stored_per_group[group]
        if expected and expected != {stored}:
            report.files_to_reingest.setdefault(file_key, [])
            report.problem("chunk_count_mismatch").add(
                {
                    "file": file_key,
                    "group": group,
                    "source": sources_of_file.get(file_key),
                    "stored": stored,
                    "expected": sorted(expected),
                },
                examples,
            )
    for file_key in sorted(complete):
        if tracked_by_file[file_key] == 0:
            report.files_to_reingest.setdefault(file_key, [])
            report.problem("chunk_count_mismatch").add(
                {
                    "file": file_key,
                    "group": file_key,
                    "source": complete[file_key],
                    "stored": 0,
                    "expected": "at least 1 (the file is marked complete)",
                },
                examples,
            )

    _check_dimensions(app, records, report, examples)

    # Metadata fields the tenant's catalog does not know (or knows with a narrower kind).
    seen: dict[str, dict[str, FieldKind]] = {}
    for rid, meta in records.items():
        if rid in invalid:
            continue
        kinds = seen.setdefault(str(meta["tenant"]), {})
        for name, value in meta.items():
            if value is None:
                continue
            kind = field_kind(value)
            kinds[name] = kind if name not in kinds else merge_kinds(kinds[name], kind)
    for tenant in sorted(seen):
        catalog = state.fields(tenant)
        for name, kind in sorted(seen[tenant].items()):
            known = catalog.get(name)
            if known is not None and merge_kinds(known, kind) == known:
                continue
            report.unknown_fields.setdefault(tenant, {})[name] = kind
            example: dict[str, Any] = {"tenant": tenant, "field": name, "kind": kind}
            if known is not None:
                example["catalog_kind"] = known
            report.problem("unknown_fields").add(example, examples)

    # Document rows against the store's tracked, valid chunks, per source.
    store_docs: Counter[tuple[str, str]] = Counter()
    for rid, meta in records.items():
        if rid in groups and rid not in invalid:
            store_docs[(str(meta["tenant"]), source_of(meta))] += 1
    state_docs: Counter[tuple[str, str]] = Counter()
    for row in documents:
        state_docs[(row.tenant, row.source)] += row.chunks
    for tenant, source in sorted(set(store_docs) | set(state_docs)):
        a, b = state_docs.get((tenant, source), 0), store_docs.get((tenant, source), 0)
        if a != b:
            report.problem("document_mismatch").add(
                {"tenant": tenant, "source": source, "state_chunks": a, "store_chunks": b},
                examples,
            )
    return report


def _check_dimensions(
    app: App, records: Mapping[str, Metadata], report: VerifyReport, examples: int
) -> None:
    store = app.store
    declared = store.info.dimension
    expected = app.embeddings.dimension
    problem = report.problem("wrong_dimension")
    if declared != expected:
        problem.add(
            {
                "store_dimension": declared,
                "model_dimension": expected,
                "reason": f"the store holds {declared}-dimensional vectors, the embedding "
                f"model {app.embeddings.name!r} produces {expected}",
            },
            examples,
        )
    if not isinstance(store, VectorScannable):
        report.notes.append(
            f"per-vector dimension check skipped: the {store.info.backend} store does not "
            f"return stored vectors (it checks each vector against {declared} dimensions on "
            "write)"
        )
        return
    for record, vector in store.records_with_vectors():
        if record.id in records and len(vector) != expected:
            problem.add(
                {
                    "id": record.id,
                    "source": records[record.id].get("source"),
                    "dimension": len(vector),
                },
                examples,
            )


# -- repair -----------------------------------------------------------------------------------
def repair(app: App, report: VerifyReport) -> RepairReport:
    """Fix what `report` found, as far as possible; nothing still served is lost except the
    orphans and invalid records, which are listed in the result."""
    state = app.state
    store = app.store
    result = RepairReport()
    records = report.records_by_id
    groups = tracked_groups(state)

    # 1. Records that are never served (invalid tenant/acl) and untracked orphans.
    doomed = [(rid, "invalid tenant/acl") for rid in report.invalid_ids]
    doomed += [(rid, "orphan (no file accounts for it)") for rid in report.orphan_ids]
    if doomed:
        ids = [rid for rid, _ in doomed]
        store.delete(ids)
        state.delete_chunk_records([rid for rid in ids if rid in groups])
        for rid, why in doomed:
            meta = records.get(rid, {})
            result.deleted.append(
                {
                    "id": rid,
                    "source": meta.get("source"),
                    "tenant": meta.get("tenant"),
                    "acl": meta.get("acl"),
                    "why": why,
                }
            )

    # 2. Files with missing chunks (or a wrong count): re-ingest, or forget what is gone.
    sources = dict(state.known_files())
    for row in state.documents():
        sources.setdefault(row.file_key, row.source)
    for file_key, missing in sorted(report.files_to_reingest.items()):
        # The record manager would skip keys it still has: forget the missing ones first.
        state.delete_chunk_records(missing)
        state.forget_files([file_key])
        path = Path(file_key)
        if path.is_file():
            ingest = app.ingestor.ingest(
                [path],
                source_root=source_root(file_key, sources.get(file_key)),
                origin="repair",
            )
            if ingest.ok and state.fingerprint(file_key) is not None:
                result.reingested.append(file_key)
            else:
                reasons = "; ".join(f"{r.location}: {r.reason}" for r in ingest.rejected)
                result.not_repaired.append(
                    f"{file_key}: re-ingest failed ({reasons or 'file not completed'})"
                )
            continue
        remaining = state.chunk_ids_of(file_key)
        if not remaining:
            state.forget_documents(file_keys=[file_key])
        result.forgotten.append(
            {"file": file_key, "missing_chunks": len(missing), "remaining_chunks": len(remaining)}
        )
        if remaining:
            result.not_repaired.append(
                f"{file_key} no longer exists: {len(missing)} missing chunk(s) forgotten; its "
                f"{len(remaining)} remaining chunk(s) are still served (remove them with "
                f"`rag-app delete --source {sources.get(file_key, file_key)}`)"
            )

    # 3. Unknown fields of the records that stay.
    deleted_ids = {d["id"] for d in result.deleted}
    present: dict[str, set[str]] = {}
    for rid, meta in records.items():
        if rid not in deleted_ids:
            names = present.setdefault(str(meta.get("tenant")), set())
            names.update(name for name, value in meta.items() if value is not None)
    for tenant, kinds in sorted(report.unknown_fields.items()):
        still = {n: k for n, k in kinds.items() if n in present.get(tenant, set())}
        if still:
            state.record_fields(still, tenant=tenant)
            result.fields_added += [
                {"tenant": tenant, "field": n, "kind": k} for n, k in sorted(still.items())
            ]

    # 4. Document rows: rebuilt from the store's tracked, valid chunks when they disagree.
    after = verify(app, examples=0)
    if after.problem("document_mismatch").count:
        tracked = tracked_groups(state)
        keep = [
            StoreRecord(id=rid, metadata=meta)
            for rid, meta in after.records_by_id.items()
            if rid in tracked and access_problem(meta) is None
        ]
        state.forget_documents(groups=[row.group_id for row in state.documents()])
        state.rebuild_from_records(keep)
        result.documents_rebuilt = True
        after = verify(app, examples=0)

    for kind, problem in after.problems.items():
        if problem.count:
            result.not_repaired.append(f"{problem.count} x {KINDS[kind]}")
    return result


# -- text output ------------------------------------------------------------------------------
def _fmt(example: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in example.items())


def render(report: VerifyReport) -> Iterable[str]:
    yield (
        f"{report.store}: {report.records} records in the store, {report.tracked_keys} tracked "
        f"by the ingest state, {report.complete_files} complete files"
    )
    if report.ok:
        yield "no problems found"
    for kind, description in KINDS.items():
        problem = report.problem(kind)
        if not problem.count:
            continue
        yield f"{problem.count:6d}  {description}"
        for example in problem.examples:
            yield f"          {_fmt(example)}"
        if problem.count > len(problem.examples):
            yield f"          ... and {problem.count - len(problem.examples)} more"
    for note in report.notes:
        yield f"note: {note}"


def render_repair(result: RepairReport) -> Iterable[str]:
    if result.deleted:
        yield f"deleted {len(result.deleted)} record(s) from the store:"
        for d in result.deleted:
            yield f"  {d['id']}  source={d['source']} tenant={d['tenant']} ({d['why']})"
    for file_key in result.reingested:
        yield f"re-ingested {file_key}"
    for f in result.forgotten:
        yield (f"forgot {f['missing_chunks']} missing chunk(s) of {f['file']} (no longer on disk)")
    for f in result.fields_added:
        yield f"added field {f['field']} ({f['kind']}) to tenant {f['tenant']}'s catalog"
    if result.documents_rebuilt:
        yield "rebuilt the document rows from the store"
    if result.not_repaired:
        yield "could not repair:"
        for line in result.not_repaired:
            yield f"  {line}"
    else:
        yield "repaired; the index and the ingest state agree"
