"""Ingest state kept beside the store: LangChain's SQL record manager (chunk id -> file group,
timestamps) plus two small tables of our own:

* ``rag_files``: file key -> fingerprint of (bytes, metadata inputs, chunking settings), set
  only once a file is completely indexed, so an unchanged file is skipped without reading its
  chunks and an interrupted one is finished by the next run;
* ``rag_fields``: metadata field -> kind, for filter validation (unknown fields, wrong types);
* ``rag_generation``: a change counter per store, bumped after every write or delete of chunks
  (ingest, ``--cleanup full``, ``rag-app delete``). Derived indexes kept beside the store (the
  BM25 index, `rag_app.retrieval.bm25`) remember the generation they were built at and rebuild
  from the store's records when it moved on.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from sqlalchemy import (
    Column,
    Float,
    Integer,
    MetaData,
    String,
    Table,
    create_engine,
    delete,
    select,
    update,
)
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Engine

from rag_app.retrieval.filters import FieldKind

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
generation_table = Table(
    "rag_generation",
    _meta,
    Column("namespace", String(512), primary_key=True),
    Column("generation", Integer, nullable=False),
)


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

    def chunk_ids_of(self, file_key: str) -> list[str]:
        return list(self.record_manager.list_keys(group_ids=[file_key]))

    def delete_chunk_records(self, ids: Sequence[str]) -> None:
        if ids:
            self.record_manager.delete_keys(list(ids))

    # -- change counter -----------------------------------------------------------------
    def generation(self) -> int:
        """How many times chunks of this store were written or deleted (0: never)."""
        with self.engine.connect() as conn:
            row = conn.execute(
                select(generation_table.c.generation).where(
                    generation_table.c.namespace == self.namespace
                )
            ).first()
        return int(row[0]) if row else 0

    def bump_generation(self) -> int:
        """Record that the store's chunks changed (call after the change, also after a failed
        or partial one). Returns the new generation."""
        with self.engine.begin() as conn:
            changed = conn.execute(
                update(generation_table)
                .where(generation_table.c.namespace == self.namespace)
                .values(generation=generation_table.c.generation + 1)
            ).rowcount
            if not changed:
                conn.execute(
                    generation_table.insert().values(namespace=self.namespace, generation=1)
                )
            row = conn.execute(
                select(generation_table.c.generation).where(
                    generation_table.c.namespace == self.namespace
                )
            ).first()
        return int(row[0]) if row else 0

    # -- fields -------------------------------------------------------------------------
    def record_fields(self, kinds: Mapping[str, FieldKind]) -> None:
        if not kinds:
            return
        existing = self.fields()
        new = {k: v for k, v in kinds.items() if existing.get(k) != v}
        if not new:
            return
        with self.engine.begin() as conn:
            for name, kind in new.items():
                merged = kind
                old = existing.get(name)
                if old is not None and old != kind:
                    # int and float mix into float; anything else becomes a string column.
                    merged = "float" if {old, kind} <= {"int", "float"} else "str"
                    if merged == old:
                        continue
                conn.execute(
                    delete(fields_table).where(
                        fields_table.c.namespace == self.namespace, fields_table.c.name == name
                    )
                )
                conn.execute(
                    fields_table.insert().values(namespace=self.namespace, name=name, kind=merged)
                )

    def fields(self) -> dict[str, FieldKind]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(fields_table.c.name, fields_table.c.kind).where(
                    fields_table.c.namespace == self.namespace
                )
            ).all()
        return {name: kind for name, kind in rows}

    def close(self) -> None:
        self.engine.dispose()
