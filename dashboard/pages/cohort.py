"""Cohort page: every patient with patient-level model outputs; paged and sorted by the database."""

from __future__ import annotations

import dash_bootstrap_components as dbc
from dash import Dash, Input, Output, dash_table, html

from core.store.cohort import cohort_page
from core.workspace import Workspace

PAGE_SIZE = 15
_BASE_COLUMNS = [
    ("patient_id", "Patient"), ("age", "Age"), ("sex", "Sex"), ("onset_type", "Onset"),
    ("slides", "Slides"), ("visits", "Visits"), ("reports", "Reports"),
]


def scored_models(workspace: Workspace) -> list[str]:
    """Models whose outputs are summarised per patient (all but patch-level models)."""
    return [m for m, manifest in workspace.manifests.items() if manifest.task != "patch"]


def layout(workspace: Workspace) -> html.Div:
    columns = [{"id": "patient_id", "name": "Patient", "presentation": "markdown"}]
    columns += [{"id": c, "name": n} for c, n in _BASE_COLUMNS[1:]]
    tooltips = {}
    for model_id in scored_models(workspace):
        m = workspace.manifest(model_id)
        columns.append({"id": f"score:{model_id}", "name": m.positive_class or m.class_names[-1],
                        "type": "numeric", "format": {"specifier": ".2f"}})
        tooltips[f"score:{model_id}"] = f"{m.name} [{model_id}]"
    return html.Div([
        html.H2("Cohort"),
        html.P(f"{workspace.name}. Open a case to review its slides, visits and reports. Scores are the "
               "stored model outputs per patient (highest over a patient's slides and reports; latest visit).",
               className="text-muted"),
        dash_table.DataTable(
            id="cohort-table", columns=columns, page_current=0, page_size=PAGE_SIZE, page_action="custom",
            sort_action="custom", sort_mode="single", sort_by=[], markdown_options={"link_target": "_self"},
            tooltip_header=tooltips, tooltip_delay=0, tooltip_duration=None,
            style_table={"overflowX": "auto"}, style_cell={"fontFamily": "inherit", "padding": "6px"},
            style_header={"fontWeight": "600", "backgroundColor": "#f3f5f8"},
        ),
        html.Div(id="cohort-status", className="text-muted small mt-2"),
    ])


def register_callbacks(app: Dash, workspace: Workspace) -> None:
    @app.callback(
        Output("cohort-table", "data"), Output("cohort-table", "page_count"), Output("cohort-status", "children"),
        Input("cohort-table", "page_current"), Input("cohort-table", "page_size"), Input("cohort-table", "sort_by"),
    )
    def show_cohort_page(page, page_size, sort_by):
        sort = (sort_by or [{"column_id": "patient_id", "direction": "asc"}])[0]
        with workspace.store.session() as s:
            result = cohort_page(s, scored_models(workspace), page or 0, page_size or PAGE_SIZE,
                                 sort["column_id"], sort["direction"] == "desc")
        for row in result.rows:
            row["patient_id"] = f"[{row['patient_id']}](/case/{row['patient_id']})"
        pages = max(1, -(-result.total // (page_size or PAGE_SIZE)))
        return result.rows, pages, f"{result.total} patients · page {(page or 0) + 1} of {pages}"


def nav_item() -> dbc.NavItem:
    return dbc.NavItem(dbc.NavLink("Cohort", href="/", active="exact"))
