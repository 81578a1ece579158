"""The cohort grid's sort and column filters: from a link into AG Grid's models, and from the grid's models into the
store's terms, with what cannot be used named."""

from __future__ import annotations

import pytest

from core.errors import PathReviewError
from core.store.cohort import ColumnFilter
from dashboard.components.grid_query import grid_state_from_query, store_filters, store_sort

SORTABLE = ["patient_id", "slides", "score:mil-lse"]
KINDS = {"patient_id": "text", "slides": "number", "score:mil-lse": "number"}


def test_a_link_gives_the_grid_its_sort_and_filters():
    query = {"sort": "-score:mil-lse", "f.patient_id": "contains:P0:1", "f.slides": "inRange:1:3", "f.score:mil-lse": "blank",
             "worklist": "flagged"}
    sort, filters, problems = grid_state_from_query(query, SORTABLE, KINDS)
    assert problems == [] and sort == [{"colId": "score:mil-lse", "sort": "desc"}]
    assert filters == {"patient_id": {"filterType": "text", "type": "contains", "filter": "P0:1"},
                       "slides": {"filterType": "number", "type": "inRange", "filter": 1.0, "filterTo": 3.0},
                       "score:mil-lse": {"filterType": "number", "type": "blank"}}
    # What the grid then asks for is what the store is given.
    assert store_sort(sort, SORTABLE) == ("score:mil-lse", True) and store_sort([], SORTABLE) == ("patient_id", False)
    assert store_filters(filters, KINDS) == [ColumnFilter("patient_id", "contains", "P0:1"), ColumnFilter("slides", "inRange", 1.0, 3.0),
                                             ColumnFilter("score:mil-lse", "blank")]


def test_what_a_link_cannot_use_is_named_and_left_out():
    query = {"sort": "grade", "f.nothing": "equals:1", "f.slides": "contains:3", "f.score:mil-lse": "greaterThan:nan",
             "f.patient_id": "equals:P001"}
    sort, filters, problems = grid_state_from_query(query, SORTABLE, KINDS)
    assert sort == [] and filters == {"patient_id": {"filterType": "text", "type": "equals", "filter": "P001"}}
    assert problems == ["sort 'grade' is not a column that sorts", "filter 'nothing' is not a column that filters",
                        "filter 'contains' of 'slides' is not one of equals, notEqual, greaterThan, greaterThanOrEqual, "
                        "lessThan, lessThanOrEqual, inRange, blank, notBlank",
                        "filter 'greaterThan:nan' of 'score:mil-lse' needs a number"]


@pytest.mark.parametrize("model", [
    {"grade": {"filterType": "text", "type": "contains", "filter": "2"}},
    {"slides": {"filterType": "text", "type": "contains", "filter": "2"}},
    {"slides": {"filterType": "number", "type": "startsWith", "filter": 2}},
    {"slides": {"filterType": "number", "type": "equals", "filter": "2"}},
    {"slides": {"filterType": "number", "type": "inRange", "filter": 2}},
    {"patient_id": {"filterType": "text", "type": "contains", "filter": None}},
])
def test_a_filter_model_the_store_cannot_apply_is_refused(model):
    with pytest.raises(PathReviewError):
        store_filters(model, KINDS)


def test_a_sort_the_store_cannot_apply_is_refused():
    with pytest.raises(PathReviewError):
        store_sort([{"colId": "grade", "sort": "asc"}], SORTABLE)
