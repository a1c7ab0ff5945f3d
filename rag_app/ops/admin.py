"""The index's administration: what `rag-app stats` counts and what `rag-app delete` removes.

`IndexAdmin` works on the parts the composition root builds (`rag_app.app.App`: settings,
store, ingest state), reached through `App.admin`. It opens nothing until asked: `stats` reads
only the ingest state (no store scan, no embedding model, and no store opened just to spell
the collection's name). The wording an operator sees is the CLI's (`rag_app.cli.admin`).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from rag_app.access.filters import FieldKind, Node, parse_filter
from rag_app.errors import FilterError
from rag_app.stores.base import Metadata, scannable

if TYPE_CHECKING:
    from rag_app.ingest.state import IngestState
    from rag_app.settings import Settings
    from rag_app.stores.base import VectorStorePort


class IndexParts(Protocol):
    """What the admin service uses of the composition root (`rag_app.app.App`)."""

    @property
    def settings(self) -> Settings: ...

    @property
    def store(self) -> VectorStorePort:
        """The store (opened on first use)."""
        ...

    @property
    def state(self) -> IngestState: ...

    @property
    def store_location(self) -> str: ...

    def built(self, part: str) -> bool:
        """Whether `part` (e.g. ``"store"``) is already built or given, without building it."""
        ...


class UnboundedDelete(FilterError):
    """A delete named neither sources, nor a filter that selects something, nor an age."""


@dataclass(frozen=True)
class DeletePlan:
    """The chunks a delete will remove (shown to the operator before confirming)."""

    ids: list[str]
    per_source: dict[str, int]  # source -> chunks


class IndexAdmin:
    """Stats and deletes over one App's store and ingest state."""

    def __init__(self, parts: IndexParts) -> None:
        self._parts = parts

    def admin_filter(self, raw: Mapping[str, Any] | str | None) -> Node | None:
        """Operator filters (delete/stats) may name tenant and acl. They go through the same
        validation as query filters, against every tenant's field catalog (unknown fields and
        comparisons a store would evaluate wrongly, e.g. a fractional bound on an int field,
        are errors): a delete must never remove more than the filter says."""
        known: dict[str, FieldKind] = {"tenant": "str", "acl": "list"}
        known.update(self._parts.state.fields())
        return parse_filter(raw, known_fields=known, date_fields=self._parts.settings.date_fields)

    def stats(self, *, last_runs: int = 10) -> dict[str, Any]:
        """Counts per tenant, source type and category for the configured store, the totals
        of every store this state database knows, and the last ingest runs. All from the
        ingest state: no store scan, no embedding model."""
        parts = self._parts
        state = parts.state
        per_tenant: Counter[str] = Counter()
        per_category: Counter[str] = Counter()
        types: dict[str, Counter[str]] = {}
        docs = state.documents()
        for doc in docs:
            per_tenant[doc.tenant] += doc.chunks
            kind = types.setdefault(doc.source_type, Counter())
            kind["documents"] += 1
            kind["chunks"] += doc.chunks
            kind[f"tenant:{doc.tenant}"] += doc.chunks
            category = doc.facets.get("category")
            if category is not None:
                per_category[str(category)] += doc.chunks
        here = parts.store_location
        stores = [
            {"store": ns, "documents": n_docs, "chunks": n_chunks, "current": ns == here}
            for ns, (n_docs, n_chunks) in state.document_totals().items()
        ]
        if not any(s["current"] for s in stores):
            stores.append({"store": here, "documents": 0, "chunks": 0, "current": True})
        return {
            "store": parts.settings.store,
            "location": here,
            # the store's own spelling when it is open (Weaviate capitalises), else as set
            "collection": parts.store.info.collection
            if parts.built("store")
            else parts.settings.collection,
            "chunks": sum(per_tenant.values()),
            "documents": len(docs),
            "per_tenant": dict(sorted(per_tenant.items())),
            "per_source_type": [
                {
                    "type": kind,
                    "documents": c["documents"],
                    "chunks": c["chunks"],
                    "per_tenant": {
                        k.removeprefix("tenant:"): v
                        for k, v in sorted(c.items())
                        if k.startswith("tenant:")
                    },
                }
                for kind, c in sorted(types.items())
            ],
            "per_category": dict(sorted(per_category.items())),
            "per_source": [
                {
                    "tenant": d.tenant,
                    "source": d.source,
                    "type": d.source_type,
                    "chunks": d.chunks,
                    "updated_at": d.updated_at,
                }
                for d in sorted(docs, key=lambda d: (d.tenant, d.source))
            ],
            "stores": stores,
            "last_ingests": [r.as_dict() for r in state.runs(limit=last_runs, every_store=True)],
        }

    def plan_delete(
        self,
        *,
        sources: Iterable[str] = (),
        filter: Any = None,
        older_than: float | None = None,
        now: float | None = None,
    ) -> DeletePlan:
        """What a delete by source or (operator) filter would remove, without removing it.
        `older_than` (seconds) keeps only chunks older than that: by their ``created_at``
        (epoch seconds) where they have one, else by their document's ingest time (the
        ingest state's ``updated_at``); alone, it selects among every chunk. Selecting
        nothing to narrow by (no source, an empty filter, no age) is an `UnboundedDelete`."""
        sources = [s for s in sources if s]
        where: Node | None
        if sources:
            raw: dict[str, Any] = (
                {"source": sources[0]} if len(sources) == 1 else {"source": {"$in": sources}}
            )
            where = parse_filter(raw)  # sources are exact strings: no catalog needed
        else:
            where = self.admin_filter(filter)
        if where is None and older_than is None:
            raise UnboundedDelete(
                "refusing to delete without a filter: name sources, a filter or a maximum age"
            )
        scan = scannable(self._parts.store, "find the records to delete")
        found: list[tuple[str, Metadata]] = [(r.id, r.metadata) for r in scan.records(where)]
        if sources and not found:
            # A JSONL file's records have sources "<file>#<id>": match them by prefix.
            prefixes = tuple(f"{s}#" for s in sources)
            found = [
                (r.id, r.metadata)
                for r in scan.records()
                if str(r.metadata.get("source", "")).startswith(prefixes)
            ]
        if older_than is not None:
            cutoff = (time.time() if now is None else now) - older_than
            ingested = {(d.tenant, d.source): d.updated_at for d in self._parts.state.documents()}

            def is_old(metadata: Metadata) -> bool:
                created = metadata.get("created_at")
                if isinstance(created, int | float) and not isinstance(created, bool):
                    return float(created) < cutoff
                key = (str(metadata.get("tenant", "")), str(metadata.get("source", "")))
                at = ingested.get(key)
                return at is not None and at < cutoff

            found = [(i, m) for i, m in found if is_old(m)]
        touched: Counter[str] = Counter(str(m.get("source", "")) for _, m in found)
        return DeletePlan(ids=[i for i, _ in found], per_source=dict(touched))

    def delete(
        self, *, sources: Iterable[str] = (), filter: Any = None, plan: DeletePlan | None = None
    ) -> int:
        """Delete chunks by source or by an (operator) filter (or a `plan_delete` result);
        keeps the ingest state in step, so a later ingest of the same file adds it back."""
        plan = plan or self.plan_delete(sources=sources, filter=filter)
        if plan.ids:
            self._parts.store.delete(plan.ids)
            state = self._parts.state
            state.delete_chunk_records(plan.ids)
            state.forget_sources(plan.per_source)
            state.remove_chunks_of_sources(plan.per_source)
        return len(plan.ids)
