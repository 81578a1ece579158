"""Patients page (``/patients``): the sequence model across the cohort. Visit importance (paged on the server),
feature importance with subgroup filters, and a dataset overview."""

from __future__ import annotations

from urllib.parse import quote

import dash_bootstrap_components as dbc
from dash import ALL, Dash, Input, Output, State, ctx, dcc, html, no_update
from sqlalchemy import select

from core.explain.cohort_explanations import cohort_shap, dataset_overview, filtered_patient_ids, visit_importance_page
from core.explain.patient_explanations import PatientExplainers
from core.export.patient_figures import cohort_importance_figure
from core.store.schema import Patient
from core.workspace import Workspace
from dashboard.figures.cohort_figures import dataset_overview_figure, feature_importance_figure, shap_beeswarm_figure

PAGE_SIZE = 20
FILTER = "patients-attribute"  # a subgroup filter: {"type": FILTER, "name": <patient attribute>}
MAX_FILTER_VALUES = 20  # an attribute with more distinct text values than this is not offered as a filter


def subgroup_filters(workspace: Workspace) -> dict[str, list[str]]:
    """Declared patient attributes a subgroup can be chosen by: those whose values are text, 2 to 20 distinct ones."""
    with workspace.store.session() as s:
        stored = list(s.scalars(select(Patient.attributes)))
    filters = {}
    for name in workspace.patient_attributes():
        values = {v.get(name) for v in stored if v and v.get(name) is not None}
        if all(isinstance(v, str) for v in values) and 2 <= len(values) <= MAX_FILTER_VALUES:
            filters[name] = sorted(str(v) for v in values)
    return filters


def _chosen(values: list[str | None], ids: list[dict]) -> dict[str, str]:
    return {i["name"]: v for i, v in zip(ids, values) if v}


def layout(workspace: Workspace) -> html.Div:
    attributes = workspace.patient_attributes()
    filters = [dbc.Col([dbc.Label(attributes[name].label), dcc.Dropdown(id={"type": FILTER, "name": name}, options=values, placeholder="all")],
                       md=3) for name, values in subgroup_filters(workspace).items()]
    return html.Div([
        dcc.Store(id="patients-page", data=0),
        html.H2("Patients"),
        html.P("What drives the sequence model across the cohort. Filter a subgroup; click a patient row to open it.",
               className="text-muted"),
        dbc.Row(filters, className="mb-3"),
        html.Div(id="patients-left-out"),
        dbc.Row([
            dbc.Col(dcc.Graph(id="cohort-feature-importance", config={"displaylogo": False}), lg=5),
            dbc.Col(dcc.Graph(id="cohort-beeswarm", config={"displaylogo": False}), lg=7),
        ]),
        html.Div([
            dbc.Button("‹ Previous", id="patients-prev", size="sm", outline=True, color="secondary", className="me-2"),
            dbc.Button("Next ›", id="patients-next", size="sm", outline=True, color="secondary", className="me-2"),
            html.Span(id="patients-page-status", className="small text-muted"),
        ], className="mt-3"),
        dcc.Graph(id="cohort-visit-importance", config={"displaylogo": False}),
        dcc.Graph(id="cohort-overview", config={"displaylogo": False}),
    ])


def left_out_notice(left_out: dict[str, str], shown: int = 10) -> html.Div | None:
    """'3 patients left out: …' above the cohort plots, naming each patient and why the model cannot read its visits."""
    if not left_out:
        return None
    noun = "patient" if len(left_out) == 1 else "patients"
    items = [html.Li([dcc.Link(pid, href=f"/patient/{quote(pid, safe='')}"), f": {why}"]) for pid, why in list(left_out.items())[:shown]]
    more = [html.Li(f"and {len(left_out) - shown} more (run check for the full list)")] if len(left_out) > shown else []
    return dbc.Alert([html.Strong(f"{len(left_out)} {noun} left out of these plots: "), "the model cannot read their visits.",
                      html.Ul(items + more, className="mb-0 small")], color="warning", id="patients-left-out-alert", className="py-2")


def register_callbacks(app: Dash, workspace: Workspace, explainers: PatientExplainers) -> None:
    @app.callback(
        Output("patients-page", "data"),
        Input("patients-prev", "n_clicks"), Input("patients-next", "n_clicks"), Input({"type": FILTER, "name": ALL}, "value"),
        State({"type": FILTER, "name": ALL}, "id"), State("patients-page", "data"), prevent_initial_call=True,
    )
    def turn_page(_prev, _next, values, ids, page):
        if isinstance(ctx.triggered_id, dict):  # a filter changed
            return 0
        total = len(filtered_patient_ids(explainers, _chosen(values, ids)))
        last = max(0, (total - 1) // PAGE_SIZE)
        return max(0, page - 1) if ctx.triggered_id == "patients-prev" else min(last, page + 1)

    @app.callback(
        Output("cohort-visit-importance", "figure"), Output("patients-page-status", "children"),
        Input("patients-page", "data"), Input({"type": FILTER, "name": ALL}, "value"), State({"type": FILTER, "name": ALL}, "id"),
    )
    def show_importance_page(page, values, filter_ids):
        ids = filtered_patient_ids(explainers, _chosen(values, filter_ids))
        shown, scores = visit_importance_page(explainers, ids, page, PAGE_SIZE)
        pages = max(1, -(-len(ids) // PAGE_SIZE))
        return cohort_importance_figure(shown, scores), f"{len(ids)} patients · page {page + 1} of {pages}"

    @app.callback(
        Output("cohort-feature-importance", "figure"), Output("cohort-beeswarm", "figure"), Output("cohort-overview", "figure"),
        Output("patients-left-out", "children"),
        Input({"type": FILTER, "name": ALL}, "value"), State({"type": FILTER, "name": ALL}, "id"),
    )
    def show_cohort(values, filter_ids):
        ids = filtered_patient_ids(explainers, _chosen(values, filter_ids))
        shap_values = cohort_shap(explainers, ids)
        return (feature_importance_figure(shap_values.mean_abs()), shap_beeswarm_figure(shap_values),
                dataset_overview_figure(dataset_overview(explainers, ids)), left_out_notice(shap_values.left_out))

    @app.callback(Output("url", "href", allow_duplicate=True), Input("cohort-visit-importance", "clickData"), prevent_initial_call=True)
    def open_patient(click):
        points = (click or {}).get("points") or []
        return f"/patient/{points[0]['y']}" if points else no_update


def nav_item() -> dbc.NavItem:
    return dbc.NavItem(dbc.NavLink("Patients", href="/patients", active="exact"))
