from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from rag_app.access.filters import And, Cmp, Or, matches, parse_filter
from rag_app.access.permissions import (
    Principal,
    access_filter,
    can_read,
    effective_filter,
    restrict_grants,
    validate_acl,
    validate_tenant,
)
from rag_app.errors import AccessDenied, FilterError

ANN = Principal("acme", "ann", frozenset({"staff", "hr"}))
BEN = Principal("acme", "ben", frozenset({"eng"}))
ANON = Principal.anonymous("acme")

BAD_NAMES = [
    "",
    " ann",
    "ann ",
    "a b",
    "-ann",
    ".ann",
    "_ann",
    "@ann",
    "ann\n",
    "ann\nx",
    "ann/x",
    "ann:x",
    "ann,x",
    "ann*",
    "ännа",
    "a" * 129,
    42,
    None,
    b"ann",
    ["ann"],
]
GOOD_NAMES = ["a", "A", "0", "ann", "ann.smith@example.com", "x-1_2", "a" * 128]


# -- Principal ------------------------------------------------------------------------------
@pytest.mark.parametrize("name", GOOD_NAMES)
def test_valid_names_are_accepted_everywhere(name: str) -> None:
    p = Principal(name, name, frozenset({name}))
    assert (p.tenant, p.user_id, p.groups) == (name, name, frozenset({name}))


@pytest.mark.parametrize("bad", BAD_NAMES, ids=repr)
def test_bad_tenant_raises_access_denied(bad: Any) -> None:
    with pytest.raises(AccessDenied, match="invalid tenant"):
        Principal(bad)


@pytest.mark.parametrize("bad", [b for b in BAD_NAMES if b is not None], ids=repr)
def test_bad_user_id_raises_access_denied(bad: Any) -> None:
    with pytest.raises(AccessDenied, match="invalid user id"):
        Principal("acme", bad)


@pytest.mark.parametrize("bad", [b for b in BAD_NAMES if not isinstance(b, list)], ids=repr)
def test_bad_group_raises_access_denied(bad: Any) -> None:
    with pytest.raises(AccessDenied, match="invalid group"):
        Principal("acme", "ann", frozenset({"staff", bad}))


def test_groups_are_normalised_to_a_frozenset() -> None:
    p = Principal("acme", "ann", ["hr", "staff", "hr"])  # type: ignore[arg-type]
    assert p.groups == frozenset({"hr", "staff"})
    assert p == ANN
    assert hash(p) == hash(ANN)


def test_a_string_for_groups_is_rejected() -> None:
    with pytest.raises(AccessDenied):
        Principal("acme", "ann", "hr")  # type: ignore[arg-type]


def test_principal_is_immutable() -> None:
    with pytest.raises(AttributeError):
        ANN.tenant = "globex"  # type: ignore[misc]


def test_anonymous_holds_only_public() -> None:
    assert ANON.is_anonymous
    assert ANON.user_id is None
    assert ANON.tokens() == ("public",)
    assert ANON.grantable_tokens() == ("public",)
    assert ANON.describe() == "anonymous@acme (groups: -)"


def test_anonymous_principal_with_groups_still_holds_only_public() -> None:
    p = Principal("acme", None, frozenset({"hr"}))
    assert p.is_anonymous
    assert p.tokens() == ("public",)


def test_named_principal_tokens_are_stable_and_sorted() -> None:
    assert not ANN.is_anonymous
    assert ANN.tokens() == ("public", "user:ann", "group:hr", "group:staff")
    assert Principal("acme", "ann", frozenset({"hr", "staff"})).tokens() == ANN.tokens()
    assert Principal("acme", "cid").tokens() == ("public", "user:cid")
    assert ANN.grantable_tokens() == ANN.tokens()
    assert ANN.describe() == "ann@acme (groups: hr,staff)"


# -- access_filter --------------------------------------------------------------------------
def test_access_filter_of_anonymous() -> None:
    assert access_filter(ANON) == And(
        (Cmp("tenant", "$eq", "acme"), Cmp("acl", "$contains", "public"))
    )


def test_access_filter_of_named_principal() -> None:
    assert access_filter(ANN) == And(
        (
            Cmp("tenant", "$eq", "acme"),
            Or(
                (
                    Cmp("acl", "$contains", "public"),
                    Cmp("acl", "$contains", "user:ann"),
                    Cmp("acl", "$contains", "group:hr"),
                    Cmp("acl", "$contains", "group:staff"),
                )
            ),
        )
    )


@dataclass(frozen=True)
class LookAlike:
    tenant: str = "acme"
    user_id: str | None = "ann"

    def tokens(self) -> tuple[str, ...]:
        return ("public", "group:admin")


@pytest.mark.parametrize("who", [None, "acme", {"tenant": "acme"}, LookAlike()], ids=repr)
def test_access_filter_refuses_anything_but_a_principal(who: Any) -> None:
    with pytest.raises(AccessDenied):
        access_filter(who)
    with pytest.raises(AccessDenied):
        effective_filter(who, None)
    assert can_read(who, {"tenant": "acme", "acl": ["public"]}) is False


METADATA_GRID: list[dict[str, Any]] = [
    {"tenant": "acme", "acl": ["public"]},
    {"tenant": "acme", "acl": ["group:hr"]},
    {"tenant": "acme", "acl": ["group:eng", "user:ann"]},
    {"tenant": "acme", "acl": ["user:ben"]},
    {"tenant": "acme", "acl": ["group:finance"]},
    {"tenant": "globex", "acl": ["public", "group:hr", "user:ann"]},
    {"tenant": "acme"},
    {"acl": ["public"]},
    {"tenant": "ACME", "acl": ["public"]},
]


@pytest.mark.parametrize("principal", [ANN, BEN, ANON], ids=lambda p: p.describe())
def test_access_filter_and_can_read_agree(principal: Principal) -> None:
    node = access_filter(principal)
    for meta in METADATA_GRID:
        assert matches(node, meta) == can_read(principal, meta), meta


# -- effective_filter -----------------------------------------------------------------------
def test_effective_filter_without_caller_filter_is_the_access_filter() -> None:
    assert effective_filter(ANN, None) == access_filter(ANN)


def test_effective_filter_puts_the_access_filter_first() -> None:
    caller = parse_filter({"$or": [{"category": "hr"}, {"category": {"$ne": "hr"}}]})
    assert caller is not None
    assert effective_filter(ANN, caller) == And((access_filter(ANN), caller))


RESERVED_FILTERS = [
    {"tenant": "globex"},
    {"acl": {"$contains": "public"}},
    {"category": "hr", "tenant": "acme"},
    {"$or": [{"category": "hr"}, {"acl": {"$ne": "x"}}]},
    {"$and": [{"category": "hr"}, {"$or": [{"year": 1}, {"tenant": {"$in": ["a", "b"]}}]}]},
    {
        "$or": [
            {"$and": [{"$or": [{"$and": [{"year": 1}, {"acl": {"$nin": ["x"]}}]}]}]},
            {"year": 2},
        ]
    },
]


@pytest.mark.parametrize("raw", RESERVED_FILTERS)
def test_effective_filter_rejects_reserved_fields_anywhere(raw: dict[str, Any]) -> None:
    node = parse_filter(raw)
    with pytest.raises(FilterError, match=r"tenant|acl"):
        effective_filter(ANN, node)


@pytest.mark.parametrize(
    "node",
    [
        Cmp("tenant", "$eq", "globex"),
        Or((Cmp("category", "$eq", "hr"), Cmp("acl", "$contains", "group:hr"))),
        And((Cmp("year", "$gt", 1), Or((Cmp("x", "$eq", 1), Cmp("tenant", "$ne", "acme"))))),
    ],
)
def test_effective_filter_rejects_reserved_fields_in_hand_built_nodes(node: Any) -> None:
    with pytest.raises(FilterError):
        effective_filter(ANON, node)


@pytest.mark.parametrize("field", ["Tenant", "ACL", "tenants", "acl_copy", "my_tenant"])
def test_fields_that_only_resemble_reserved_names_are_allowed(field: str) -> None:
    node = parse_filter({field: "x"})
    assert effective_filter(ANN, node) == And((access_filter(ANN), Cmp(field, "$eq", "x")))


# -- can_read -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("principal", "metadata", "expected"),
    [
        (ANN, {"tenant": "acme", "acl": ["public"]}, True),
        (ANN, {"tenant": "acme", "acl": ["group:hr"]}, True),
        (ANN, {"tenant": "acme", "acl": ["user:ann"]}, True),
        (ANN, {"tenant": "acme", "acl": ("group:staff",)}, True),
        (ANN, {"tenant": "acme", "acl": [1, None, "group:hr"]}, True),
        (ANN, {"tenant": "acme", "acl": ["group:eng", "user:ben"]}, False),
        (ANN, {"tenant": "globex", "acl": ["public"]}, False),
        (ANN, {"tenant": "globex", "acl": ["group:hr", "user:ann"]}, False),
        (ANN, {"tenant": "ACME", "acl": ["public"]}, False),
        (ANN, {"tenant": ["acme"], "acl": ["public"]}, False),
        (ANN, {"tenant": None, "acl": ["public"]}, False),
        (ANN, {"acl": ["public"]}, False),
        (ANN, {"tenant": "acme"}, False),
        (ANN, {"tenant": "acme", "acl": None}, False),
        (ANN, {"tenant": "acme", "acl": []}, False),
        (ANN, {"tenant": "acme", "acl": ()}, False),
        (ANN, {"tenant": "acme", "acl": "public"}, False),
        (ANN, {"tenant": "acme", "acl": "group:hr"}, False),
        (ANN, {"tenant": "acme", "acl": {"public": True}}, False),
        (ANN, {"tenant": "acme", "acl": {"public"}}, False),
        (ANN, {"tenant": "acme", "acl": [1, None, ["public"], b"public"]}, False),
        (ANN, {"tenant": "acme", "acl": ["PUBLIC", " public", "group:HR", "user:Ann"]}, False),
        (ANN, {}, False),
        (ANN, None, False),
        (ANN, [("tenant", "acme"), ("acl", ["public"])], False),
        (ANON, {"tenant": "acme", "acl": ["public"]}, True),
        (ANON, {"tenant": "acme", "acl": ["group:hr", "user:ann"]}, False),
        (BEN, {"tenant": "acme", "acl": ["group:hr"]}, False),
    ],
)
def test_can_read(principal: Principal, metadata: Any, expected: bool) -> None:
    assert can_read(principal, metadata) is expected


# -- validate_acl / validate_tenant / restrict_grants -----------------------------------------
@pytest.mark.parametrize(
    ("acl", "expected"),
    [
        ("public", ["public"]),
        (["public"], ["public"]),
        (("group:hr", "user:ann"), ["group:hr", "user:ann"]),
        ([" group:hr ", "group:hr", "user:ann\n"], ["group:hr", "user:ann"]),
        (["user:ann.smith@example.com"], ["user:ann.smith@example.com"]),
    ],
)
def test_validate_acl_normalises(acl: Any, expected: list[str]) -> None:
    assert validate_acl(acl) == expected


@pytest.mark.parametrize(
    "acl",
    [
        None,
        "",
        [],
        (),
        5,
        {"public"},
        {"public": 1},
        ["Public"],
        ["admin"],
        ["group:"],
        ["group:hr eng"],
        ["group:hr,eng"],
        ["user:*"],
        ["user:-ann"],
        ["role:admin"],
        ["group:hr", 3],
        [["public"]],
        ["public", None],
    ],
    ids=repr,
)
def test_validate_acl_rejects(acl: Any) -> None:
    with pytest.raises(ValueError, match="acl"):
        validate_acl(acl)


def test_validate_tenant() -> None:
    assert validate_tenant("acme") == "acme"
    for bad in ("", "acme\n", "ac me", "-acme", None, 3):
        with pytest.raises(ValueError, match="invalid tenant"):
            validate_tenant(bad)


def test_restrict_grants_allows_tokens_the_principal_holds() -> None:
    assert restrict_grants(ANN, ["public", "group:hr", "user:ann"]) == [
        "public",
        "group:hr",
        "user:ann",
    ]
    assert restrict_grants(ANN, [" group:staff ", "group:staff"]) == ["group:staff"]
    assert restrict_grants(ANON, ["public"]) == ["public"]


@pytest.mark.parametrize(
    ("principal", "requested", "denied"),
    [
        (ANN, ["group:eng"], "group:eng"),
        (ANN, ["public", "user:ben"], "user:ben"),
        (BEN, ["group:hr", "group:eng"], "group:hr"),
        (ANON, ["group:hr"], "group:hr"),
        (ANON, ["user:ann"], "user:ann"),
    ],
)
def test_restrict_grants_denies_wider_tokens(
    principal: Principal, requested: list[str], denied: str
) -> None:
    with pytest.raises(AccessDenied, match=denied):
        restrict_grants(principal, requested)


@pytest.mark.parametrize("requested", [[], ["admin"], ["group:"], [1]], ids=repr)
def test_restrict_grants_rejects_malformed_tokens(requested: list[Any]) -> None:
    with pytest.raises(ValueError, match="acl"):
        restrict_grants(ANN, requested)
