"""Turn the UI's filter controls into one grammar filter, and list facet choices that the
logged-in user may see (choices come only from documents the user can read)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

from rag_app.access.permissions import Principal, can_read
from rag_app.errors import FilterError
from rag_app.ingest.state import IngestState


def build_ui_filter(
    categories: Sequence[str] | None = None,
    tags: Sequence[str] | None = None,
    date_from: str | None = None,
    date_to: str | None = None,
    json_text: str | None = None,
    *,
    date_field: str = "created_at",
) -> dict[str, Any] | None:
    """Combine the controls (AND). Any tag matches (OR within tags). Dates are ISO strings,
    converted by the grammar. The JSON box must hold an object; errors name the problem."""
    clauses: list[dict[str, Any]] = []
    cats = [c for c in (categories or []) if c]
    if cats:
        clauses.append({"category": cats[0]} if len(cats) == 1 else {"category": {"$in": cats}})
    tag_list = [t for t in (tags or []) if t]
    if tag_list:
        tag_clauses = [{"tags": {"$contains": t}} for t in tag_list]
        clauses.append(tag_clauses[0] if len(tag_clauses) == 1 else {"$or": tag_clauses})
    if date_from and date_from.strip():
        clauses.append({date_field: {"$gte": date_from.strip()}})
    if date_to and date_to.strip():
        clauses.append({date_field: {"$lte": date_to.strip()}})
    if json_text and json_text.strip():
        try:
            extra = json.loads(json_text)
        except json.JSONDecodeError as exc:
            raise FilterError(
                f"JSON filter is not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})"
            ) from None
        if not isinstance(extra, dict):
            raise FilterError('JSON filter must be an object, e.g. {"category": "hr"}')
        if extra:
            clauses.append(extra)
    if not clauses:
        return None
    return clauses[0] if len(clauses) == 1 else {"$and": clauses}


def facet_choices(
    state: IngestState, principal: Principal, *, limit: int = 200
) -> tuple[list[str], list[str]]:
    """Categories and tags present in documents `principal` may read (from the ingest
    state's document rows, each checked with the same rule as every hit)."""
    categories: set[str] = set()
    tags: set[str] = set()
    for doc in state.documents(tenant=principal.tenant):
        if not can_read(principal, {"tenant": doc.tenant, "acl": doc.acl}):
            continue
        category = doc.facets.get("category")
        if isinstance(category, str):
            categories.add(category)
        value = doc.facets.get("tags")
        if isinstance(value, list):
            tags.update(t for t in value if isinstance(t, str))
    return sorted(categories)[:limit], sorted(tags)[:limit]


def grant_choices(principal: Principal) -> list[str]:
    return list(principal.grantable_tokens())


def as_pretty_json(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False)


def non_empty(values: Iterable[str] | None) -> list[str]:
    return [v for v in (values or []) if v]
