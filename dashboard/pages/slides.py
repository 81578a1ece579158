"""Slides page (``/slides``): a cohort triaged by a MIL head over the lab's feature files. Per slide: the head's
probability, its most attended patches as a strip, and whether the call disagrees with the slide's label; sortable."""

from __future__ import annotations

import dash_bootstrap_components as dbc
from dash import Dash, Input, Output, State, dcc, html

from core.errors import PathReviewError
from core.heatmaps.feature_layers import feature_heads, read_patches_at
from core.heatmaps.feature_triage import DECISION, TriageRow, sort_rows, triage_rows
from core.jobs.dispatch import JobDispatcher
from core.jobs.state import JobSpec
from core.workspace import Workspace
from dashboard.auth import current_username, requires_role
from dashboard.components.patch_inspector import png_data_uri

SORT_LABELS = {"disagreement": "disagreement with label first", "probability-desc": "probability, highest first",
               "probability-asc": "probability, lowest first", "slide": "slide id"}
STRIP_PX = 56


def layout(workspace: Workspace) -> html.Div:
    heads = feature_heads(workspace)
    if not heads:
        return html.Div([html.H2("Slides"), html.P("No MIL head over feature files in this workspace; see docs/workspace.md, "
                                                   "“Bring a CLAM or TRIDENT project”.", className="text-muted", id="slides-empty")])
    return html.Div([
        html.H2("Slides"),
        html.P(f"Each slide's prediction by a MIL head over the lab's feature files, its most attended patches, and whether "
               f"the head's call (probability ≥ {DECISION}) disagrees with the slide's recorded label. Open a slide to see "
               "its attention layers and refine a region.", className="text-muted"),
        dbc.Row([
            dbc.Col([dbc.Label("Head"), dcc.Dropdown(id="slides-head", options=heads, value=heads[0], clearable=False)], md=5),
            dbc.Col([dbc.Label("Sort by"), dcc.Dropdown(id="slides-sort", options=[{"label": v, "value": k} for k, v in SORT_LABELS.items()],
                                                        value="disagreement", clearable=False)], md=4),
            dbc.Col(dbc.Button("Compute missing predictions", id="slides-compute", size="sm", color="secondary", className="mt-4"), md=3),
        ], className="mb-2"),
        html.Div(id="slides-compute-status", className="small text-muted"),
        dcc.Loading(html.Div(id="slides-table")),
    ])


def _strip(workspace: Workspace, row: TriageRow) -> html.Div:
    if row.probability is None or not len(row.top_origins):
        return html.Div("not computed", className="small text-muted")
    images = read_patches_at(workspace, row.slide_id, row.top_origins, row.side, STRIP_PX)
    return html.Div([html.Img(src=png_data_uri(image), width=STRIP_PX, height=STRIP_PX, className="me-1", alt=f"top patch {i + 1}")
                     for i, image in enumerate(images)], className="d-flex")


def _agreement(row: TriageRow) -> html.Span:
    if row.disagrees is None:
        return html.Span("—", className="text-muted")
    return html.Span("disagrees", className="fw-bold text-danger") if row.disagrees else html.Span("agrees", className="text-success")


def triage_table(workspace: Workspace, model_id: str, rows: list[TriageRow]) -> dbc.Table:
    score_class = workspace.manifest(model_id).score_class
    header = html.Thead(html.Tr([html.Th(h) for h in ("Slide", "Patient", f"Label (1: {score_class})", f"P({score_class})",
                                                      "Top patches", "Head vs label")]))
    body = [html.Tr([
        html.Td(html.A(r.slide_id, href=f"/slide/{r.slide_id}")), html.Td(html.A(r.patient_id, href=f"/case/{r.patient_id}")),
        html.Td("—" if r.label is None else str(r.label)), html.Td("—" if r.probability is None else f"{r.probability:.3f}"),
        html.Td(_strip(workspace, r)), html.Td(_agreement(r)),
    ], className="slides-row") for r in rows]
    return dbc.Table([header, html.Tbody(body)], size="sm", hover=True, responsive=True, id="slides-triage")


def register_callbacks(app: Dash, workspace: Workspace, dispatcher: JobDispatcher) -> None:
    @app.callback(Output("slides-table", "children"), Input("slides-head", "value"), Input("slides-sort", "value"))
    def show_slides(model_id, sort):
        try:
            rows = sort_rows(triage_rows(workspace, model_id), sort)
        except PathReviewError as exc:
            return dbc.Alert(str(exc), color="warning")
        return triage_table(workspace, model_id, rows)

    @app.callback(Output("slides-compute-status", "children"), Input("slides-compute", "n_clicks"), State("slides-head", "value"),
                  prevent_initial_call=True)
    @requires_role("reviewer")
    def compute_missing(_clicks, model_id):
        missing = [r.slide_id for r in triage_rows(workspace, model_id) if r.probability is None]
        if not missing:
            return "Every slide's prediction is stored."
        new, existing = dispatcher.submit([JobSpec("mil", s, {"model_id": model_id}) for s in missing], current_username())
        return f"{len(new)} jobs queued ({len(existing)} already running); the Jobs page shows them. Reload this page when they finish."


def nav_item() -> dbc.NavItem:
    return dbc.NavItem(dbc.NavLink("Slides", href="/slides", active="exact"))
