"""Document metadata: merge the sources (front matter < sidecar < CLI), validate, normalise.

Every stored chunk carries ``source``, ``title``, ``tenant``, ``acl`` plus user fields. Values
must be something every store can hold: strings, finite numbers, booleans, or non-empty lists
of one scalar type. Dates (in the configured date fields) become epoch seconds, with the ISO
text kept in ``<field>_iso`` for display.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from datetime import date, datetime
from typing import Any

from rag_app.access.filters import FieldKind, to_epoch
from rag_app.access.permissions import validate_acl, validate_tenant

KEY_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
# Set by the ingestion pipeline; documents may not supply them.
SYSTEM_KEYS = frozenset(
    {"source", "chunk_index", "chunk_count", "doc_id", "content_hash", "chunk_kind"}
)
# ``<field>_iso`` is the display copy the app derives from a date field; a document that set
# one itself could make the UI show a value other than the one access and filters use.
DERIVED_SUFFIX = "_iso"
REQUIRED_KEYS = ("tenant", "acl")
MAX_STRING = 8192
MAX_LIST = 256


def _describe(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _check_scalar(key: str, value: Any) -> str | int | float | bool:
    if isinstance(value, bool | str):
        if isinstance(value, str) and len(value) > MAX_STRING:
            raise ValueError(f"field {key!r} is longer than {MAX_STRING} characters")
        return value
    if isinstance(value, int):
        if abs(value) >= 2**63:
            raise ValueError(f"field {key!r}: integer {value} does not fit in 64 bits")
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"field {key!r}: {value} is not a finite number")
        return value
    if isinstance(value, Mapping):
        raise ValueError(
            f"field {key!r} holds a nested mapping {_describe(value)}; stores accept only "
            "strings, numbers, booleans and non-empty lists of one type"
        )
    raise ValueError(f"field {key!r} has unsupported type {type(value).__name__}")


def _check_value(key: str, value: Any) -> Any:
    if isinstance(value, list | tuple):
        if not value:
            raise ValueError(f"field {key!r} is an empty list; stores cannot hold empty lists")
        if len(value) > MAX_LIST:
            raise ValueError(f"field {key!r} has more than {MAX_LIST} items")
        items = [_check_scalar(key, v) for v in value]
        kinds = {type(v) for v in items}
        if len(kinds) > 1:
            names = ", ".join(sorted(k.__name__ for k in kinds))
            raise ValueError(f"field {key!r} mixes types in one list ({names}); use one type")
        return items
    if isinstance(value, datetime | date):
        # Not a declared date field: keep the ISO text (add the field to RAG_DATE_FIELDS to
        # make it range-filterable).
        return value.isoformat()
    return _check_scalar(key, value)


def normalize_metadata(raw: Mapping[str, Any], *, date_fields: Iterable[str]) -> dict[str, Any]:
    """Validate and normalise one document's metadata (raises ValueError with the reason)."""
    dates = set(date_fields)
    out: dict[str, Any] = {}
    for key, value in raw.items():
        if not isinstance(key, str) or not KEY_RE.match(key):
            raise ValueError(
                f"invalid metadata key {key!r} (letters, digits and _ only, at most 64)"
            )
        if key.endswith(DERIVED_SUFFIX):
            raise ValueError(
                f"metadata key {key!r} is reserved: '<field>{DERIVED_SUFFIX}' keys are derived "
                "by the app from date fields"
            )
        if value is None:
            continue
        if key in dates:
            if isinstance(value, datetime | date | str):
                try:
                    epoch = to_epoch(value)
                except ValueError as exc:
                    raise ValueError(f"field {key!r}: {exc}") from exc
                out[key] = epoch
                out[f"{key}_iso"] = value.isoformat() if isinstance(value, date) else str(value)
                continue
            if isinstance(value, int | float) and not isinstance(value, bool):
                out[key] = _check_scalar(key, value)
                continue
            raise ValueError(f"field {key!r} must be an ISO date, got {_describe(value)}")
        out[key] = _check_value(key, value)
    missing = [k for k in REQUIRED_KEYS if k not in out]
    if missing:
        raise ValueError(
            f"missing required metadata {', '.join(missing)} (set it in front matter, a "
            "sidecar <file>.meta.json, or with --tenant/--acl)"
        )
    try:
        out["tenant"] = validate_tenant(out["tenant"])
        out["acl"] = validate_acl(out["acl"])
    except ValueError as exc:
        raise ValueError(str(exc)) from exc
    title = out.get("title")
    if not isinstance(title, str) or not title.strip():
        raise ValueError("missing title")
    return out


def field_kind(value: Any) -> FieldKind:
    if isinstance(value, list):
        return "list"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float"
    return "str"
