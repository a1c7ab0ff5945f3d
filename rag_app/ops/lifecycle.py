"""Store lifecycle (`rag-app stores list | describe | create | protect | delete`) and the
retention age of `rag-app delete --older-than`.

The store adapters do the work through the `Administrable` capability; this module picks the
defaults (the embedding model's dimension, the field catalog's filterable fields) and renders
what an operator sees.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from rag_app.errors import ConfigError
from rag_app.stores.base import Administrable, CollectionInfo, administrable

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$", re.IGNORECASE)
#: Fields every record of the app carries (filterable in every store).
BASE_FIELDS: Mapping[str, str] = {"tenant": "str", "acl": "list"}


def parse_duration(text: str) -> float:
    """``90d``, ``12h``, ``2w``, ``30m``, ``45s`` -> seconds; a `ConfigError` otherwise."""
    match = _DURATION_RE.match(text or "")
    if not match:
        raise ConfigError(
            f"invalid duration {text!r}: use a number and a unit, e.g. 90d, 12h, 2w, 30m or 45s"
        )
    seconds = float(match.group(1)) * _UNITS[match.group(2).lower()]
    if seconds <= 0:
        raise ConfigError(f"invalid duration {text!r}: it must be longer than zero")
    return seconds


def admin_store(app: Any) -> Administrable:
    """The configured store's administration (a clear error when it has none)."""
    return administrable(app.store, "list, create or delete collections")


def filterable_fields(app: Any) -> dict[str, str]:
    """Fields to declare filterable on a new collection: the app's own (tenant, acl) and the
    field catalog of the current collection (every tenant)."""
    fields = dict(BASE_FIELDS)
    fields.update({k: str(v) for k, v in app.state.fields().items()})
    return fields


def create(
    app: Any,
    name: str,
    *,
    dimension: int | None = None,
    metric: str = "cosine",
    deletion_protection: bool = False,
    cloud: str | None = None,
    region: str | None = None,
    with_catalog: bool = True,
) -> CollectionInfo:
    """Create collection `name` for the configured embedding model (its dimension unless
    `dimension` is given) with the field catalog's fields filterable where the store
    declares them."""
    store = admin_store(app)
    model = app.embeddings
    return store.create_collection(
        name,
        dimension=dimension or int(model.dimension),
        embedding_model=str(model.name),
        metric=metric,
        deletion_protection=deletion_protection,
        filterable_fields=filterable_fields(app) if with_catalog else None,
        cloud=cloud,
        region=region,
    )


def _tenant_label(tenant: str) -> str:
    return tenant if tenant else "(no tenant)"


def summary_row(info: CollectionInfo) -> list[str]:
    """name, dimension, metric, records, tenants (for `stores list`)."""
    tenants = ", ".join(_tenant_label(t) for t in info.per_tenant) or "-"
    if len(tenants) > 60:
        tenants = f"{len(info.per_tenant)} tenants"
    return [
        info.name,
        str(info.dimension) if info.dimension is not None else "?",
        info.metric or "?",
        str(info.count),
        tenants,
    ]


def describe_lines(info: CollectionInfo) -> list[str]:
    """Everything `stores describe` prints."""
    lines = [
        f"name: {info.name}",
        f"dimension: {info.dimension if info.dimension is not None else 'unknown'}",
        f"metric: {info.metric or 'unknown'}",
        f"embedding model: {info.embedding_model or 'unknown (not created by rag_app?)'}",
        f"deletion protection: {'on' if info.deletion_protection else 'off'}",
        f"records: {info.count}",
    ]
    if info.per_tenant:
        lines.append("records per tenant:")
        lines.extend(f"  {n:8d}  {_tenant_label(t)}" for t, n in info.per_tenant.items())
    if info.filterable_fields:
        lines.append(f"filterable fields: {', '.join(info.filterable_fields)}")
    for key, value in info.extra.items():
        if isinstance(value, Mapping):
            value = ", ".join(f"{k}={v}" for k, v in value.items()) or "-"
        lines.append(f"{key}: {value}")
    return lines


def loss_lines(info: CollectionInfo) -> list[str]:
    """What deleting `info` loses."""
    lines = [f"this deletes {info.name} and its {info.count} records:"]
    lines.extend(f"  {n:8d}  {_tenant_label(t)}" for t, n in info.per_tenant.items())
    return lines


def protection_refusal(info: CollectionInfo) -> str:
    return (
        f"{info.name} has deletion protection on, so it is not deleted; turn it off first "
        f"with: rag-app stores protect {info.name} --off"
    )
