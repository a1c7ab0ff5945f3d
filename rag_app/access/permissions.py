"""Principals, access filters and the per-hit access check.

A document carries ``tenant`` (one string) and ``acl`` (a list of tokens: ``public``,
``user:<id>``, ``group:<name>``). A principal may read a document iff the tenants are equal
and the document's acl shares a token with the principal's tokens. Anonymous principals hold
only ``public``.

Everything here fails closed: a malformed principal raises `AccessDenied`; callers turn any
error into "no documents".
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from rag_app.access.filters import Cmp, Node, Or, and_, fields_of
from rag_app.errors import AccessDenied, FilterError

TENANT_FIELD = "tenant"
ACL_FIELD = "acl"
RESERVED_FILTER_FIELDS = frozenset({TENANT_FIELD, ACL_FIELD})
PUBLIC = "public"

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,127}\Z")
ACL_TOKEN_RE = re.compile(r"^(public|(user|group):[A-Za-z0-9][A-Za-z0-9._@-]{0,127})$")


def _valid_name(kind: str, value: Any) -> str:
    if not isinstance(value, str) or not NAME_RE.match(value):
        raise AccessDenied(
            f"invalid {kind} {value!r}: use letters, digits, '.', '_', '@' or '-' "
            "(at most 128 characters)"
        )
    return value


@dataclass(frozen=True)
class Principal:
    """Who is asking. `user_id=None` means anonymous."""

    tenant: str
    user_id: str | None = None
    groups: frozenset[str] = field(default_factory=frozenset)
    # the person's name, for the chat to read "my"/"I" as them; never used for access
    display_name: str | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        _valid_name("tenant", self.tenant)
        if self.user_id is not None:
            _valid_name("user id", self.user_id)
        if isinstance(self.groups, str | bytes) or not isinstance(
            self.groups, frozenset | set | list | tuple
        ):
            raise AccessDenied(f"groups must be a collection of names, got {self.groups!r}")
        if not isinstance(self.groups, frozenset):
            object.__setattr__(self, "groups", frozenset(self.groups))
        for group in self.groups:
            _valid_name("group", group)

    @classmethod
    def anonymous(cls, tenant: str) -> Principal:
        return cls(tenant=tenant)

    @property
    def is_anonymous(self) -> bool:
        return self.user_id is None

    def tokens(self) -> tuple[str, ...]:
        """ACL tokens this principal holds, in a stable order."""
        if self.is_anonymous:
            return (PUBLIC,)
        return (PUBLIC, f"user:{self.user_id}", *(f"group:{g}" for g in sorted(self.groups)))

    def grantable_tokens(self) -> tuple[str, ...]:
        """Tokens this principal may put on documents it uploads (never wider than itself)."""
        return self.tokens()

    def describe(self) -> str:
        who = "anonymous" if self.is_anonymous else self.user_id
        groups = ",".join(sorted(self.groups)) or "-"
        return f"{who}@{self.tenant} (groups: {groups})"


def access_filter(principal: Principal) -> Node:
    """The filter every store query must AND in: same tenant AND acl shares a token."""
    if not isinstance(principal, Principal):
        raise AccessDenied(f"expected a Principal, got {type(principal).__name__}")
    tokens = principal.tokens()
    acl_clauses = tuple(Cmp(ACL_FIELD, "$contains", tok) for tok in tokens)
    acl: Node = acl_clauses[0] if len(acl_clauses) == 1 else Or(acl_clauses)
    combined = and_(Cmp(TENANT_FIELD, "$eq", principal.tenant), acl)
    if combined is None:  # unreachable: both parts are present
        raise AccessDenied("could not build an access filter")
    return combined


def reject_reserved_fields(node: Node | None) -> None:
    """Callers may narrow access with their own filter, never name tenant or acl."""
    named = sorted(set(fields_of(node)) & RESERVED_FILTER_FIELDS)
    if named:
        raise FilterError(
            f"filters may not use {', '.join(repr(n) for n in named)}: access is decided by "
            "the logged-in user's tenant and groups"
        )


def effective_filter(principal: Principal, caller: Node | None) -> Node:
    """Access filter AND caller filter. Raises on a reserved field in the caller filter."""
    reject_reserved_fields(caller)
    combined = and_(access_filter(principal), caller)
    if combined is None:
        raise AccessDenied("could not build an access filter")
    return combined


def can_read(principal: Principal, metadata: Mapping[str, Any] | None) -> bool:
    """Per-hit re-check (defense in depth). Anything malformed is a 'no'."""
    if not isinstance(principal, Principal) or not isinstance(metadata, Mapping):
        return False
    tenant = metadata.get(TENANT_FIELD)
    acl = metadata.get(ACL_FIELD)
    if not isinstance(tenant, str) or tenant != principal.tenant:
        return False
    if not isinstance(acl, list | tuple) or not acl:
        return False
    held = set(principal.tokens())
    return any(isinstance(tok, str) and tok in held for tok in acl)


def validate_acl(acl: Any) -> list[str]:
    """Normalise a document's acl: a non-empty list of valid tokens (a single string is one
    token). Raises ValueError naming the bad token."""
    if isinstance(acl, str):
        acl = [acl]
    if not isinstance(acl, list | tuple) or not acl:
        raise ValueError("acl must be a non-empty list of tokens such as public, group:hr")
    tokens: list[str] = []
    for tok in acl:
        if not isinstance(tok, str) or not ACL_TOKEN_RE.match(tok.strip()):
            raise ValueError(
                f"invalid acl token {tok!r}: expected 'public', 'user:<id>' or 'group:<name>'"
            )
        if tok.strip() not in tokens:
            tokens.append(tok.strip())
    return tokens


def validate_tenant(tenant: Any) -> str:
    if not isinstance(tenant, str) or not NAME_RE.match(tenant):
        raise ValueError(f"invalid tenant {tenant!r}")
    return tenant


def restrict_grants(principal: Principal, requested: Iterable[str]) -> list[str]:
    """ACL tokens a principal asks to grant on an upload, checked against what it holds."""
    allowed = set(principal.grantable_tokens())
    tokens = validate_acl(list(requested))
    denied = [t for t in tokens if t not in allowed]
    if denied:
        raise AccessDenied(f"you cannot grant {', '.join(denied)}")
    return tokens
