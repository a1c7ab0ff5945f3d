from __future__ import annotations

import pytest

from rag_app.access.filters import parse_filter
from rag_app.access.permissions import Principal
from rag_app.errors import FilterError
from rag_app.ingest.state import DocumentRow, IngestState
from rag_app.ui.filters import build_ui_filter, facet_choices


def test_controls_combine_into_one_grammar_filter():
    assert build_ui_filter() is None
    assert build_ui_filter(["hr"]) == {"category": "hr"}
    flt = build_ui_filter(
        ["hr", "policy"], ["leave", "pay"], "2025-01-01", "2025-12-31", '{"department": "people"}'
    )
    assert flt == {
        "$and": [
            {"category": {"$in": ["hr", "policy"]}},
            {"$or": [{"tags": {"$contains": "leave"}}, {"tags": {"$contains": "pay"}}]},
            {"created_at": {"$gte": "2025-01-01"}},
            {"created_at": {"$lte": "2025-12-31"}},
            {"department": "people"},
        ]
    }
    # and it is valid grammar, with dates converted
    parse_filter(flt, date_fields=["created_at"])


@pytest.mark.parametrize(("text", "message"), [("{bad", "not valid JSON"), ("[1]", "object")])
def test_json_box_errors_are_clear(text, message):
    with pytest.raises(FilterError, match=message):
        build_ui_filter(json_text=text)


def test_facets_only_from_readable_documents(tmp_path):
    state = IngestState(f"sqlite:///{tmp_path / 'state.db'}", namespace="facets")
    rows = [
        ("a", "t", ["public"], {"category": "faq", "tags": ["x"]}),
        ("b", "t", ["group:hr"], {"category": "secret-cat", "tags": ["hidden"]}),
        ("c", "u", ["public"], {"category": "other-tenant", "tags": ["y"]}),
    ]
    state.record_documents(
        DocumentRow(g, g, f"{g}.md", tenant, acl, facets, 1, 0.0) for g, tenant, acl, facets in rows
    )
    cats, tags = facet_choices(state, Principal.anonymous("t"))
    assert cats == ["faq"] and tags == ["x"]
    cats, tags = facet_choices(state, Principal("t", "ann", frozenset({"hr"})))
    assert cats == ["faq", "secret-cat"] and tags == ["hidden", "x"]
