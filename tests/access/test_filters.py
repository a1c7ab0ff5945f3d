from __future__ import annotations

import pytest

from rag_app.access.filters import And, Cmp, Or, matches, parse_filter, to_dict, to_epoch
from rag_app.errors import FilterError

KNOWN = {
    "category": "str",
    "year": "int",
    "score": "float",
    "tags": "list",
    "draft": "bool",
    "created_at": "int",
}


def p(raw, **kw):
    kw.setdefault("known_fields", KNOWN)
    kw.setdefault("date_fields", ["created_at"])
    return parse_filter(raw, **kw)


def test_empty_filters_mean_no_filter():
    assert p(None) is None
    assert p({}) is None
    assert p("") is None
    assert p("  ") is None


def test_shorthand_and_operators():
    assert p({"category": "hr"}) == Cmp("category", "$eq", "hr")
    assert p('{"year": {"$gte": 2020, "$lt": 2025}}') == And(
        (Cmp("year", "$gte", 2020), Cmp("year", "$lt", 2025))
    )
    assert p({"$or": [{"category": "hr"}, {"tags": {"$contains": "x"}}]}) == Or(
        (Cmp("category", "$eq", "hr"), Cmp("tags", "$contains", "x"))
    )
    # one-item logical lists collapse
    assert p({"$and": [{"category": "hr"}]}) == Cmp("category", "$eq", "hr")
    assert p({"category": {"$in": ["a", "b"]}}) == Cmp("category", "$in", ("a", "b"))


def test_iso_dates_become_epoch_seconds_on_date_fields():
    node = p({"created_at": {"$gte": "2024-01-01"}})
    assert node == Cmp("created_at", "$gte", 1704067200)
    node = p({"created_at": {"$lt": "2024-01-01T12:00:00Z"}})
    assert node == Cmp("created_at", "$lt", 1704110400)
    assert to_epoch("2024-01-01T00:00:00+01:00") == 1704063600


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("{not json", "not valid JSON"),
        ("[1, 2]", "must be a JSON object"),
        ({"category": {"$regex": ".*"}}, "unknown operator '$regex'"),
        ({"$where": "1"}, "unknown logical operator '$where'"),
        ({"$gt": 1}, "comparison operator"),
        ({"catgory": "hr"}, "unknown field 'catgory'"),
        ({"year": {"$gt": "soon"}}, "$gt needs a number"),
        ({"category": {"$gt": 3}}, "needs a numeric or date field"),
        ({"created_at": {"$gt": "yesterday"}}, "not an ISO date"),
        ({"category": {"$in": []}}, "non-empty list"),
        ({"category": {"$in": ["a", 1]}}, "same type"),
        ({"category": ["a", "b"]}, "bare list is ambiguous"),
        ({"tags": "x"}, "holds lists"),
        ({"category": {"$contains": "x"}}, "list membership"),
        ({"$or": []}, "non-empty list"),
        ({"$or": [1]}, "expected an object"),
        ({"category": {}}, "empty operator object"),
        ({"bad-name": 1}, "invalid field name"),
        ({"category": {"a": 1}}, "unknown operator 'a'"),
        ({"category": {"$eq": {"nested": 1}}}, "expected a string, number or boolean"),
        ({"score": {"$gt": float("nan")}}, "not a finite number"),
        ({"year": {"$gte": 2021.5}}, "holds integers"),
        ({"year": {"$in": [2021, 2021.5]}}, "holds integers"),
    ],
)
def test_errors_name_the_problem(raw, message):
    with pytest.raises(FilterError) as info:
        p(raw)
    assert message in str(info.value)


def test_unknown_fields_allowed_without_schema():
    assert parse_filter({"anything": 1}) == Cmp("anything", "$eq", 1)


def test_depth_and_size_limits():
    deep: dict = {"category": "x"}
    for _ in range(12):
        deep = {"$and": [deep, {"category": "y"}]}
    with pytest.raises(FilterError, match="nested more than"):
        p(deep)
    wide = {"$or": [{"year": i} for i in range(600)]}
    with pytest.raises(FilterError, match="too large"):
        p(wide)


def test_to_dict_round_trips():
    raw = {
        "$and": [
            {"category": {"$eq": "hr"}},
            {"$or": [{"year": {"$gt": 1}}, {"tags": {"$contains": "a"}}]},
        ]
    }
    node = p(raw)
    assert p(to_dict(node)) == node


META = {"category": "hr", "year": 2024, "score": 0.5, "tags": ["a", "b"], "draft": True}


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ({"category": "hr"}, True),
        ({"category": {"$ne": "hr"}}, False),
        ({"missing": {"$ne": "x"}}, True),  # $ne is true for a missing field
        ({"missing": {"$nin": ["x"]}}, True),
        ({"missing": "x"}, False),
        ({"missing": {"$gt": 1}}, False),
        ({"year": {"$gte": 2024}}, True),
        ({"year": {"$gt": 2024}}, False),
        ({"score": {"$lt": 1}}, True),
        ({"year": {"$in": [2023, 2024]}}, True),
        ({"year": {"$nin": [2023, 2024]}}, False),
        ({"tags": {"$contains": "a"}}, True),
        ({"tags": {"$contains": "z"}}, False),
        ({"draft": True}, True),
        ({"draft": 1}, False),  # booleans never equal numbers
        ({"$or": [{"category": "x"}, {"year": 2024}]}, True),
        ({"$and": [{"category": "hr"}, {"year": 1}]}, False),
    ],
)
def test_matches_reference_semantics(raw, expected):
    assert matches(parse_filter(raw), META) is expected


def test_deeply_nested_json_is_a_named_error_not_a_recursion_error():
    deep = '{"$and": [' * 50_000 + "{}" + "]}" * 50_000
    with pytest.raises(FilterError, match=r"too long|nested too deeply"):
        parse_filter(deep)
    # short enough to pass the length bound, still too deep for json.loads
    deep = "[" * 30_000 + "]" * 30_000
    with pytest.raises(FilterError, match="nested too deeply"):
        parse_filter(deep)
    nested: dict = {"a": 1}
    for _ in range(20):
        nested = {"$and": [nested]}
    with pytest.raises(FilterError, match="nested more than"):
        parse_filter(nested)


def test_matches_each_agrees_with_matches_on_random_filters_and_records():
    """The per-distinct-values shortcut gives every record exactly `matches`' verdict, with
    values that compare equal across types (True / 1 / 1.0, a list / its tuple), missing and
    None fields, and an unhashable value."""
    import random

    from rag_app.access.filters import matches_each

    rng = random.Random(11)
    values = [True, False, 1, 1.0, 0, 2, 2.5, "a", "b", "1", None, ["a", "b"], ["b"], [1], []]
    fields = ["f", "g", "h"]
    ops = ["$eq", "$ne", "$gt", "$gte", "$lt", "$lte", "$in", "$nin", "$contains"]
    scalars = [True, False, 1, 1.0, 0, 2, 2.5, "a", "b", "1"]

    def node(depth=0):
        if depth < 2 and rng.random() < 0.35:
            items = tuple(node(depth + 1) for _ in range(rng.randint(2, 3)))
            return And(items) if rng.random() < 0.5 else Or(items)
        op = rng.choice(ops)
        if op in ("$in", "$nin"):
            return Cmp(rng.choice(fields), op, tuple(rng.sample(scalars, 3)))
        return Cmp(rng.choice(fields), op, rng.choice(scalars))

    def record():
        meta = {f: rng.choice(values) for f in fields if rng.random() < 0.8}
        if rng.random() < 0.05:
            meta["f"] = {"nested": 1}  # unhashable
        return meta

    records = [record() for _ in range(400)] + [None]
    checked = 0
    for _ in range(300):
        where = node()
        expected = [matches(where, m or {}) for m in records]
        assert matches_each(where, records) == expected, where
        checked += len(records)
    assert checked == 300 * 401
    # one grouping of the records by every field serves every filter (the index keeps one per
    # field set and reuses it across readers): the same verdicts, spread over the records
    from rag_app.access.filters import FieldGroups

    groups = FieldGroups(fields)
    members = groups.assign(records)
    assert len(groups) < len(records)  # records share values: fewer groups than records
    for _ in range(100):
        where = node()
        verdicts = groups.verdicts(where)
        assert [verdicts[g] for g in members] == [matches(where, m or {}) for m in records]
    grown = groups.copy()
    grown.assign([{"f": "new value"}])
    assert len(grown) == len(groups) + 1  # the copy grew; the original did not
    with pytest.raises(ValueError, match="reads"):
        FieldGroups(["f"]).verdicts(Cmp("g", "$eq", 1))  # a field the grouping ignores
