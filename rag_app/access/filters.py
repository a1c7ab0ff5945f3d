"""One portable metadata filter grammar, parsed into a small AST that each store translates.

Grammar (Mongo-style)::

    filter    := { clause, ... }                 # several clauses are ANDed
    clause    := "$and": [filter, ...] | "$or": [filter, ...]
               | field: scalar                   # shorthand for {"$eq": scalar}
               | field: { op: value, ... }       # several operators are ANDed
    op        := $eq $ne $gt $gte $lt $lte $in $nin $contains

* ``$gt/$gte/$lt/$lte`` compare numbers; on date fields ISO strings are accepted and
  converted to epoch seconds (dates are stored that way).
* ``$in/$nin`` take a non-empty list of scalars of one type.
* ``$contains`` tests membership in a list-valued field (e.g. ``tags``).

Semantics (every store adapter and `matches` implement exactly these):
* a comparison on a field that a record lacks is false, except ``$ne`` and ``$nin``, which
  are true (such records are "not equal");
* ``$eq/$ne/$in/$nin`` compare scalars; ``$contains`` is list membership.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any, Literal, TypeAlias

from rag_app.errors import FilterError

Scalar: TypeAlias = str | int | float | bool
Op = Literal["$eq", "$ne", "$gt", "$gte", "$lt", "$lte", "$in", "$nin", "$contains"]

COMPARISON_OPS: frozenset[str] = frozenset(
    {"$eq", "$ne", "$gt", "$gte", "$lt", "$lte", "$in", "$nin", "$contains"}
)
LOGICAL_OPS: frozenset[str] = frozenset({"$and", "$or"})
RANGE_OPS: frozenset[str] = frozenset({"$gt", "$gte", "$lt", "$lte"})
FIELD_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
MAX_DEPTH = 8
MAX_NODES = 512
MAX_JSON_CHARS = 65_536  # far above any real filter; bounds parsing work on hostile input


@dataclass(frozen=True)
class Cmp:
    field: str
    op: Op
    value: Scalar | tuple[Scalar, ...]


@dataclass(frozen=True)
class And:
    items: tuple[Node, ...]


@dataclass(frozen=True)
class Or:
    items: tuple[Node, ...]


Node: TypeAlias = Cmp | And | Or

FieldKind = Literal["str", "int", "float", "bool", "list"]


def to_epoch(value: str | date | datetime) -> int | float:
    """ISO date/datetime (or date object) -> epoch seconds (UTC when no zone is given)."""
    if isinstance(value, str):
        text = value.strip()
        if text.endswith("Z"):
            text = text[:-1] + "+00:00"
        try:
            parsed: date | datetime = (
                datetime.fromisoformat(text)
                if ("T" in text or " " in text or ":" in text)
                else date.fromisoformat(text)
            )
        except ValueError as exc:
            raise ValueError(f"{value!r} is not an ISO date (YYYY-MM-DD[THH:MM[:SS]])") from exc
        value = parsed
    if isinstance(value, datetime):
        dt = value if value.tzinfo else value.replace(tzinfo=UTC)
        ts = dt.timestamp()
        return int(ts) if ts.is_integer() else ts
    if isinstance(value, date):
        return int(datetime(value.year, value.month, value.day, tzinfo=UTC).timestamp())
    raise ValueError(f"{value!r} is not a date")


def _scalar(value: Any, where: str) -> Scalar:
    if isinstance(value, bool | str):
        return value
    if isinstance(value, int):
        if abs(value) >= 2**63:
            raise FilterError(f"{where}: integer {value} is out of range")
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise FilterError(f"{where}: {value} is not a finite number")
        return value
    kind = type(value).__name__
    raise FilterError(f"{where}: expected a string, number or boolean, got {kind} {value!r}")


class FilterParser:
    """Validates and parses filters. `known_fields` (name -> kind) enables unknown-field and
    type errors; `date_fields` lists the fields whose ISO string values become epoch seconds."""

    def __init__(
        self,
        *,
        known_fields: Mapping[str, FieldKind] | None = None,
        date_fields: Iterable[str] = (),
    ) -> None:
        self.known_fields = dict(known_fields) if known_fields else None
        self.date_fields = frozenset(date_fields)
        self._nodes = 0

    def parse(self, raw: Mapping[str, Any] | str | None) -> Node | None:
        """Parse a filter (dict or JSON text). Empty/None means "no filter" and returns None."""
        if raw is None:
            return None
        if isinstance(raw, str):
            text = raw.strip()
            if not text:
                return None
            if len(text) > MAX_JSON_CHARS:
                raise FilterError(
                    f"filter is too long ({len(text)} characters, at most {MAX_JSON_CHARS})"
                )
            try:
                raw = json.loads(text)
            except json.JSONDecodeError as exc:
                raise FilterError(
                    f"filter is not valid JSON: {exc.msg} at column {exc.colno}"
                ) from None
            except RecursionError:
                # json.loads recurses once per nesting level: a deeply nested document never
                # reaches the depth check below.
                raise FilterError(
                    f"filter is nested too deeply (at most {MAX_DEPTH} levels)"
                ) from None
        if not isinstance(raw, Mapping):
            raise FilterError(
                f'filter must be a JSON object like {{"category": "hr"}}, got {type(raw).__name__}'
            )
        if not raw:
            return None
        self._nodes = 0
        return self._parse_object(raw, depth=0, path="filter")

    # -- internals ----------------------------------------------------------------------
    def _count(self, path: str) -> None:
        self._nodes += 1
        if self._nodes > MAX_NODES:
            raise FilterError(f"{path}: filter is too large (more than {MAX_NODES} conditions)")

    def _parse_object(self, obj: Mapping[str, Any], *, depth: int, path: str) -> Node:
        if depth > MAX_DEPTH:
            raise FilterError(f"{path}: filter is nested more than {MAX_DEPTH} levels deep")
        if not obj:
            raise FilterError(f"{path}: empty object; give at least one condition")
        clauses: list[Node] = []
        for key, value in obj.items():
            if not isinstance(key, str):
                raise FilterError(f"{path}: keys must be strings, got {key!r}")
            if key.startswith("$"):
                if key not in LOGICAL_OPS:
                    hint = (
                        f" ({key} is a comparison operator: put it under a field, "
                        f'e.g. {{"year": {{"{key}": ...}}}})'
                        if key in COMPARISON_OPS
                        else ""
                    )
                    raise FilterError(
                        f"{path}: unknown logical operator {key!r}; use $and or $or{hint}"
                    )
                clauses.append(self._parse_logical(key, value, depth=depth, path=f"{path}.{key}"))
            else:
                clauses.append(self._parse_field(key, value, depth=depth, path=f"{path}.{key}"))
        return clauses[0] if len(clauses) == 1 else And(tuple(clauses))

    def _parse_logical(self, key: str, value: Any, *, depth: int, path: str) -> Node:
        if not isinstance(value, list) or not value:
            raise FilterError(f"{path}: {key} takes a non-empty list of filters")
        items: list[Node] = []
        for i, item in enumerate(value):
            if not isinstance(item, Mapping):
                raise FilterError(f"{path}[{i}]: expected an object, got {type(item).__name__}")
            items.append(self._parse_object(item, depth=depth + 1, path=f"{path}[{i}]"))
        if len(items) == 1:
            return items[0]
        return And(tuple(items)) if key == "$and" else Or(tuple(items))

    def _check_field(self, field: str, path: str) -> FieldKind | None:
        if not FIELD_RE.match(field):
            raise FilterError(
                f"{path}: invalid field name {field!r} (letters, digits and _ only, "
                "not starting with a digit or $)"
            )
        if self.known_fields is None:
            return None
        if field not in self.known_fields:
            known = ", ".join(sorted(self.known_fields)) or "(none yet: ingest documents first)"
            raise FilterError(f"{path}: unknown field {field!r}; known fields: {known}")
        return self.known_fields[field]

    def _parse_field(self, field: str, value: Any, *, depth: int, path: str) -> Node:
        kind = self._check_field(field, path)
        if isinstance(value, Mapping):
            if not value:
                raise FilterError(f"{path}: empty operator object")
            clauses = []
            for op, operand in value.items():
                if not isinstance(op, str) or op not in COMPARISON_OPS:
                    allowed = " ".join(sorted(COMPARISON_OPS))
                    raise FilterError(f"{path}: unknown operator {op!r}; allowed: {allowed}")
                clauses.append(self._cmp(field, op, operand, kind, f"{path}.{op}"))
            return clauses[0] if len(clauses) == 1 else And(tuple(clauses))
        if isinstance(value, list):
            raise FilterError(
                f'{path}: a bare list is ambiguous; use {{"$in": [...]}} or {{"$contains": value}}'
            )
        return self._cmp(field, "$eq", value, kind, path)

    def _date(self, field: str, value: Any, path: str) -> Any:
        if field in self.date_fields and isinstance(value, str):
            try:
                return to_epoch(value)
            except ValueError as exc:
                raise FilterError(f"{path}: {exc}") from exc
        return value

    def _cmp(self, field: str, op: str, operand: Any, kind: FieldKind | None, path: str) -> Cmp:
        self._count(path)
        if op in ("$in", "$nin"):
            if not isinstance(operand, list) or not operand:
                raise FilterError(f"{path}: {op} takes a non-empty list of values")
            values = tuple(_scalar(self._date(field, v, path), path) for v in operand)
            if len({_type_class(v) for v in values}) > 1:
                raise FilterError(f"{path}: {op} values must all have the same type")
            for v in values:
                self._check_kind(field, op, v, kind, path)
            return Cmp(field, op, values)  # type: ignore[arg-type]
        value = _scalar(self._date(field, operand, path), path)
        if op in RANGE_OPS and (isinstance(value, bool) or not isinstance(value, int | float)):
            extra = " or an ISO date" if field in self.date_fields else ""
            raise FilterError(f"{path}: {op} needs a number{extra}, got {operand!r}")
        self._check_kind(field, op, value, kind, path)
        return Cmp(field, op, value)  # type: ignore[arg-type]

    @staticmethod
    def _check_kind(field: str, op: str, value: Scalar, kind: FieldKind | None, path: str) -> None:
        if kind is None:
            return
        if op == "$contains":
            if kind != "list":
                raise FilterError(
                    f"{path}: $contains tests list membership, but {field!r} holds single "
                    f"values; use $eq or $in"
                )
            return
        if kind == "list":
            raise FilterError(
                f'{path}: {field!r} holds lists; use {{"{field}": {{"$contains": '
                f"{json.dumps(value)}}}}}"
            )
        if op in RANGE_OPS and kind in ("str", "bool"):
            raise FilterError(f"{path}: {op} needs a numeric or date field; {field!r} is {kind}")
        if kind == "int" and isinstance(value, float) and not value.is_integer():
            # Stores disagree on int-vs-fractional comparisons (Chroma truncates the operand),
            # so the portable grammar refuses them instead of returning wrong results.
            raise FilterError(
                f"{path}: {field!r} holds integers; compare it with an integer, not {value}"
            )


def _type_class(value: Scalar) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    return "str"


def parse_filter(
    raw: Mapping[str, Any] | str | None,
    *,
    known_fields: Mapping[str, FieldKind] | None = None,
    date_fields: Iterable[str] = (),
) -> Node | None:
    return FilterParser(known_fields=known_fields, date_fields=date_fields).parse(raw)


def fields_of(node: Node | None) -> Iterator[str]:
    if node is None:
        return
    if isinstance(node, Cmp):
        yield node.field
    else:
        for item in node.items:
            yield from fields_of(item)


def and_(*nodes: Node | None) -> Node | None:
    items = tuple(n for n in nodes if n is not None)
    if not items:
        return None
    return items[0] if len(items) == 1 else And(items)


def to_dict(node: Node | None) -> dict[str, Any]:
    """Canonical grammar form of a node (for display, e.g. the UI's effective-filter view)."""
    if node is None:
        return {}
    if isinstance(node, Cmp):
        value = list(node.value) if isinstance(node.value, tuple) else node.value
        return {node.field: {node.op: value}}
    key = "$and" if isinstance(node, And) else "$or"
    return {key: [to_dict(item) for item in node.items]}


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _eq(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    return bool(a == b)


def matches(node: Node | None, metadata: Mapping[str, Any]) -> bool:
    """Evaluate `node` against one record's metadata, with the grammar's semantics."""
    if node is None:
        return True
    if isinstance(node, And):
        return all(matches(item, metadata) for item in node.items)
    if isinstance(node, Or):
        return any(matches(item, metadata) for item in node.items)
    present = node.field in metadata and metadata[node.field] is not None
    actual = metadata.get(node.field)
    op, value = node.op, node.value
    if op == "$ne":
        return not present or not _eq(actual, value)
    values = value if isinstance(value, tuple) else (value,)
    if op == "$nin":
        return not present or not any(_eq(actual, v) for v in values)
    if not present:
        return False
    if op == "$eq":
        return not isinstance(actual, list) and _eq(actual, value)
    if op == "$in":
        return not isinstance(actual, list) and any(_eq(actual, v) for v in values)
    if op == "$contains":
        return isinstance(actual, list) and any(_eq(item, value) for item in actual)
    if not (_number(actual) and _number(value)):
        return False
    if op == "$gt":
        return bool(actual > value)  # type: ignore[operator]
    if op == "$gte":
        return bool(actual >= value)  # type: ignore[operator]
    if op == "$lt":
        return bool(actual < value)  # type: ignore[operator]
    if op == "$lte":
        return bool(actual <= value)  # type: ignore[operator]
    raise FilterError(f"unsupported operator {op}")


def matches_each(node: Node | None, metadatas: Iterable[Mapping[str, Any] | None]) -> list[bool]:
    """`matches(node, m)` for every metadata in `metadatas`, evaluated once per distinct
    combination of the values of the fields `node` reads (a record's other fields cannot
    change the outcome). Many records share their tenant and ACL, so an access filter over
    500k chunks is evaluated a few hundred times instead of 500k. Values are keyed by type
    as well (True, 1 and 1.0 stay apart; a list is not its tuple); a record with a value
    that cannot be keyed is evaluated on its own."""
    groups = FieldGroups(fields_of(node))
    members = groups.assign(metadatas)
    verdicts = groups.verdicts(node)
    return [verdicts[g] for g in members]


class FieldGroups:
    """Records grouped by the values of some fields (keyed as in `matches_each`): any filter
    that reads only those fields has one verdict per group (`verdicts`), the same as
    `matches` gives each record of the group. A record with a value that cannot be keyed
    (a dict) is a group of its own. `assign` adds records (groups only grow); `copy` gives
    an independent grouping to extend while this one is being read."""

    def __init__(self, fields: Iterable[str]) -> None:
        self.fields = tuple(dict.fromkeys(fields))
        self._keys: dict[tuple[Any, ...], int] = {}
        self._members: list[Mapping[str, Any]] = []  # group -> one record of it

    def __len__(self) -> int:
        return len(self._members)

    def copy(self) -> FieldGroups:
        other = FieldGroups(self.fields)
        other._keys = dict(self._keys)
        other._members = list(self._members)
        return other

    def assign(self, metadatas: Iterable[Mapping[str, Any] | None]) -> list[int]:
        """The group of each record, in order (new groups are added for new values)."""
        fields, keys, members = self.fields, self._keys, self._members
        out: list[int] = []
        for metadata in metadatas:
            meta = metadata or {}
            try:
                key: tuple[Any, ...] | None = tuple(_frozen(meta.get(f)) for f in fields)
            except TypeError:  # an unhashable value: a group of its own
                key = None
            group = keys.get(key) if key is not None else None
            if group is None:
                group = len(members)
                members.append(meta)
                if key is not None:
                    keys[key] = group
            out.append(group)
        return out

    def verdicts(self, node: Node | None) -> list[bool]:
        """`matches(node, ...)` for each group; `node` must read only this grouping's fields."""
        unknown = set(fields_of(node)) - set(self.fields)
        if unknown:
            raise ValueError(f"the filter reads {sorted(unknown)}, not among {self.fields}")
        return [matches(node, meta) for meta in self._members]


def _frozen(value: Any) -> Any:
    if isinstance(value, list | tuple):
        return (type(value), tuple(_frozen(v) for v in value))
    hash(value)  # TypeError for anything unhashable (a dict)
    return (type(value), value)
