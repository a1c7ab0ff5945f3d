from __future__ import annotations

from datetime import date

import pytest

from rag_app.ingest.metadata import field_kind, normalize_metadata

BASE = {"title": "T", "tenant": "acme", "acl": ["public"]}


def norm(**extra):
    return normalize_metadata({**BASE, **extra}, date_fields=["created_at"])


def test_dates_become_epoch_with_iso_copy():
    out = norm(created_at=date(2024, 1, 1))
    assert out["created_at"] == 1704067200
    assert out["created_at_iso"] == "2024-01-01"
    out = norm(created_at="2024-01-01T06:00:00Z")
    assert out["created_at"] == 1704067200 + 6 * 3600


def test_single_acl_token_and_dedup():
    assert normalize_metadata({**BASE, "acl": "group:hr"}, date_fields=[])["acl"] == ["group:hr"]
    assert norm(acl=["public", "public", "user:bob"])["acl"] == ["public", "user:bob"]


def test_none_values_are_dropped_and_lists_kept():
    out = norm(owner=None, tags=["a", "b"], year=2024, ratio=0.5, draft=False)
    assert "owner" not in out
    assert out["tags"] == ["a", "b"]
    assert field_kind(out["tags"]) == "list"
    assert field_kind(out["draft"]) == "bool"
    assert field_kind(out["year"]) == "int"


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"nested": {"a": 1}}, "nested mapping"),
        ({"tags": []}, "empty list"),
        ({"tags": [1, "a"]}, "mixes types"),
        ({"tags": [{"a": 1}]}, "nested mapping"),
        ({"score": float("nan")}, "not a finite number"),
        ({"big": 2**70}, "64 bits"),
        ({"created_at": "last tuesday"}, "not an ISO date"),
        ({"created_at": True}, "must be an ISO date"),
        ({"acl": []}, "empty list"),
        ({"acl": "  "}, "invalid acl token"),
        ({"acl": ["admin"]}, "invalid acl token"),
        ({"acl": ["group:"]}, "invalid acl token"),
        ({"tenant": ""}, "invalid tenant"),
        ({"tenant": "a b"}, "invalid tenant"),
        ({"bad key": 1}, "invalid metadata key"),
        ({"title": "  "}, "missing title"),
    ],
)
def test_invalid_values_name_the_field(extra, message):
    with pytest.raises(ValueError, match=message):
        norm(**extra)


def test_required_keys():
    with pytest.raises(ValueError, match="missing required metadata tenant"):
        normalize_metadata({"title": "x", "acl": ["public"]}, date_fields=[])
