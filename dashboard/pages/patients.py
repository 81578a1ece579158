"""Patients page (``/patients``): the sequence model across the cohort. Visit importance (paged on the server),
feature importance with subgroup filters, and a dataset overview."""

from __future__ import annotations

import dash_bootstrap_components as dbc
from dash import Dash, Input, Output, State, dcc, html, no_update

from core.explain.cohort_explanations import cohort_shap, dataset_overview, filtered_patient_ids, visit_importance_page
from core.explain.patient_explanations import PatientExplainers
from core.export.patient_figures import cohort_importance_figure
from core.store.schema import Patient
from core.workspace import Workspace
from dashboard.figures.cohort_figures import dataset_overview_figure, feature_importance_figure, shap_beeswarm_figure

PAGE_SIZE = 20


def _choices(workspace: Workspace, column) -> list[str]:
    with workspace.store.session() as s:
        return sorted({v for v in s.scalars(Patient.__table__.select().with_only_columns(column)) if v})


def layout(workspace: Workspace) -> html.Div:
    sexes = _choices(workspace, Patient.sex)
    onsets = _choices(workspace, Patient.onset_type)
    return html.Div([
        dcc.Store(id="patients-page", data=0),
        html.H2("Patients"),
        html.P("What drives the sequence model across the cohort. Filter a subgroup; click a patient row to open it.",
               className="text-muted"),
        dbc.Row([
            dbc.Col([dbc.Label("Sex"), dcc.Dropdown(id="patients-sex", options=sexes, placeholder="all")], md=3),
            dbc.Col([dbc.Label("Onset type"), dcc.Dropdown(id="patients-onset", options=onsets, placeholder="all")], md=3),
        ], className="mb-3"),
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


def register_callbacks(app: Dash, workspace: Workspace, explainers: PatientExplainers) -> None:
    @app.callback(
        Output("patients-page", "data"),
        Input("patients-prev", "n_clicks"), Input("patients-next", "n_clicks"), Input("patients-sex", "value"),
        Input("patients-onset", "value"), State("patients-page", "data"), prevent_initial_call=True,
    )
    def turn_page(_prev, _next, sex, onset, page):
        from dash import ctx

        if ctx.triggered_id in ("patients-sex", "patients-onset"):
            return 0
        total = len(filtered_patient_ids(explainers, sex, onset))
        last = max(0, (total - 1) // PAGE_SIZE)
        return max(0, page - 1) if ctx.triggered_id == "patients-prev" else min(last, page + 1)

    @app.callback(
        Output("cohort-visit-importance", "figure"), Output("patients-page-status", "children"),
        Input("patients-page", "data"), Input("patients-sex", "value"), Input("patients-onset", "value"),
    )
    def show_importance_page(page, sex, onset):
        ids = filtered_patient_ids(explainers, sex, onset)
        shown, scores = visit_importance_page(explainers, ids, page, PAGE_SIZE)
        pages = max(1, -(-len(ids) // PAGE_SIZE))
        return cohort_importance_figure(shown, scores), f"{len(ids)} patients · page {page + 1} of {pages}"

    @app.callback(
        Output("cohort-feature-importance", "figure"), Output("cohort-beeswarm", "figure"), Output("cohort-overview", "figure"),
        Input("patients-sex", "value"), Input("patients-onset", "value"),
    )
    def show_cohort(sex, onset):
        ids = filtered_patient_ids(explainers, sex, onset)
        shap_values = cohort_shap(explainers, ids)
        return (feature_importance_figure(shap_values.mean_abs()), shap_beeswarm_figure(shap_values),
                dataset_overview_figure(dataset_overview(explainers, ids)))

    @app.callback(Output("url", "href", allow_duplicate=True), Input("cohort-visit-importance", "clickData"), prevent_initial_call=True)
    def open_patient(click):
        points = (click or {}).get("points") or []
        return f"/patient/{points[0]['y']}" if points else no_update


def nav_item() -> dbc.NavItem:
    return dbc.NavItem(dbc.NavLink("Patients", href="/patients", active="exact"))
