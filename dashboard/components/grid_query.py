"""A server-side AG Grid's sort and column filters (its sort and filter models) as the store's terms, and as address
parameters: ``sort=<column>`` (``sort=-<column>`` highest first) and one ``f.<column>=<how>[:<value>[:<to>]]`` per
filtered column, e.g. ``f.patient_id=contains:P01``, ``f.slides=inRange:1:3``, ``f.review=blank``. Filters take one
condition each (``maxNumConditions`` 1), so a link holds the whole filter."""

from __future__ import annotations

import math
from collections.abc import Mapping

from core.errors import PathReviewError
from core.store.cohort import FILTER_KINDS, ColumnFilter, finite_number

FILTER_PREFIX = "f."
AG_FILTERS = {"text": "agTextColumnFilter", "number": "agNumberColumnFilter"}


def column_filter(kind: str) -> dict:
    """The column definition parts of a filter of ``kind`` ("text" or "number"), one condition, as the store reads it."""
    return {"filter": AG_FILTERS[kind],
            "filterParams": {"maxNumConditions": 1, "filterOptions": list(FILTER_KINDS[kind]), "debounceMs": 400}}


def store_sort(sort_model: list[dict] | None, sortable: list[str], default: str = "patient_id") -> tuple[str, bool]:
    """(column, descending) of the grid's sort; ``default`` ascending without one."""
    if not sort_model:
        return default, False
    first = sort_model[0]
    if first.get("colId") not in sortable or first.get("sort") not in ("asc", "desc"):
        raise PathReviewError(f"cannot sort by {first.get('colId')!r}; choose one of {', '.join(sortable)}")
    return first["colId"], first["sort"] == "desc"


def _number(value: object, column: str) -> float:
    if not finite_number(value):
        raise PathReviewError(f"the filter on {column!r} needs a number, not {value!r}")
    return float(value)


def store_filters(filter_model: Mapping[str, dict] | None, kinds: Mapping[str, str]) -> list[ColumnFilter]:
    """The grid's filter model as the store's column filters."""
    filters = []
    for column, model in (filter_model or {}).items():
        kind = kinds.get(column)
        if kind is None or model.get("filterType") != kind:
            raise PathReviewError(f"cannot filter {column!r} with a {model.get('filterType')!r} filter")
        op = model.get("type")
        if op not in FILTER_KINDS[kind]:
            raise PathReviewError(f"a {kind} filter is one of {', '.join(FILTER_KINDS[kind])}, not {op!r}")
        if op in ("blank", "notBlank"):
            filters.append(ColumnFilter(column, op))
        elif kind == "text":
            if not isinstance(model.get("filter"), str):
                raise PathReviewError(f"the filter on {column!r} needs a text")
            filters.append(ColumnFilter(column, op, model["filter"][:64]))
        else:
            to = _number(model.get("filterTo"), column) if op == "inRange" else None
            filters.append(ColumnFilter(column, op, _number(model.get("filter"), column), to))
    return filters


def grid_state_from_query(query: Mapping[str, str], sortable: list[str], kinds: Mapping[str, str]) -> tuple[list[dict], dict, list[str]]:
    """A link's sort and filters as AG Grid's sort model and filter model, and a line for each value that cannot be used."""
    problems: list[str] = []
    sort_model: list[dict] = []
    sort = query.get("sort", "")
    if sort:
        column = sort.removeprefix("-")
        if column in sortable:
            sort_model = [{"colId": column, "sort": "desc" if sort.startswith("-") else "asc"}]
        else:
            problems.append(f"sort {sort[:40]!r} is not a column that sorts")
    filter_model: dict[str, dict] = {}
    for key, value in query.items():
        if not key.startswith(FILTER_PREFIX):
            continue
        column, (op, _, rest) = key.removeprefix(FILTER_PREFIX), value.partition(":")
        kind = kinds.get(column)
        if kind is None:
            problems.append(f"filter {column[:40]!r} is not a column that filters")
        elif op not in FILTER_KINDS[kind]:
            problems.append(f"filter {op[:40]!r} of {column[:40]!r} is not one of {', '.join(FILTER_KINDS[kind])}")
        elif op in ("blank", "notBlank"):
            filter_model[column] = {"filterType": kind, "type": op}
        elif kind == "text":
            filter_model[column] = {"filterType": kind, "type": op, "filter": rest[:64]}
        else:
            low, _, high = rest.partition(":") if op == "inRange" else (rest, "", "")
            try:
                numbers = [float(v) for v in ((low, high) if op == "inRange" else (low,))]
                if not all(math.isfinite(n) for n in numbers):
                    raise ValueError
            except ValueError:
                problems.append(f"filter {value[:40]!r} of {column[:40]!r} needs {'two numbers' if op == 'inRange' else 'a number'}")
                continue
            filter_model[column] = {"filterType": kind, "type": op, "filter": numbers[0]}
            if op == "inRange":
                filter_model[column]["filterTo"] = numbers[1]
    return sort_model, filter_model, problems


# The same encoding in the browser, for the address bar: getRowsRequest's models -> query parameters set on ``query``.
ADDRESS_JS = """
function (query, request) {
    const sort = (request.sortModel || [])[0];
    if (sort) { query.set("sort", (sort.sort === "desc" ? "-" : "") + sort.colId); }
    for (const [column, model] of Object.entries(request.filterModel || {})) {
        let text = model.type;
        if (model.filter !== undefined && model.filter !== null) { text += ":" + model.filter; }
        if (model.type === "inRange") { text += ":" + model.filterTo; }
        query.set("FILTER_PREFIX" + column, text);
    }
}
""".replace("FILTER_PREFIX", FILTER_PREFIX)
