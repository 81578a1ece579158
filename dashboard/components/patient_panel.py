"""The patient panel: risk at each visit, SHAP waterfall (with its background), visit importance and what-if edits,
with its callbacks. The patient page and the case page both show it."""

from __future__ import annotations

import dash_ag_grid as dag
import dash_bootstrap_components as dbc
from dash import Dash, Input, Output, State, dcc, html, no_update

from core.errors import PathReviewError
from core.explain.patient_explanations import (
    DEFAULT_BACKGROUND,
    ELAPSED_FEATURE,
    MAX_BACKGROUND_VISITS,
    PatientExplainers,
    PatientExplanation,
    VisitEditError,
    salient_features,
)
from core.export.patient_figures import visit_figures
from core.workspace import Workspace


def _stores(patient_id: str, selected: int) -> list:
    return [dcc.Store(id="patient-id", data=patient_id), dcc.Store(id="selected-visit", data=selected), dcc.Store(id="whatif-store", data=None)]


def _selected(explainers: PatientExplainers, patient_id: str, visit: int | None) -> int:
    expl = explainers.explain(patient_id)
    return visit if visit is not None and 0 <= visit < len(expl.days) else len(expl.days) - 1


RISK_PX = 324  # the risk plot's height with its toolbar strip (the figure's own 300 px, as exported)
COMPACT_RISK_PX = 250  # on the case page, so that the verdicts below it are on the first screen


def _risk_graph(height_px: int = RISK_PX) -> dcc.Graph:
    # The figure fills the graph's height (show_patient drops its fixed one): each page chooses how tall it is.
    return dcc.Graph(id="patient-risk", config={"displaylogo": False, "responsive": True}, style={"height": f"{height_px}px"})


def _visit_outcome() -> list:
    return [html.Div(id="visit-outcome"), html.Div(id="visit-salient", className="mt-2")]


def _importance() -> list:
    return [
        dcc.Graph(id="patient-importance", config={"displaylogo": False}),
        html.P("Visit importance (Ferreira et al.): tanh(4 (0.7 occlusion + 0.3 output change)); red raises the final "
               "prediction, blue lowers it. The first visit has no earlier output, so, as in the authors' reference code, "
               "its score is tanh(4 occlusion).", className="small text-muted", id="importance-caption"),
    ]


def _waterfall() -> list:
    return [
        html.Div([dbc.Label("SHAP background", html_for="shap-background", className="small me-2 mb-0"),
                  dbc.RadioItems(id="shap-background", options=BACKGROUND_OPTIONS, value=DEFAULT_BACKGROUND, inline=True,
                                 className="small")], className="d-flex flex-wrap align-items-center"),
        html.Div(id="shap-background-note", className="small text-muted"),
        dcc.Graph(id="visit-waterfall", config={"displaylogo": False}),
    ]


def _what_if(heading: bool = True) -> list:
    return [
        html.H5("Edit visit (what-if)") if heading else "",
        html.P("Values are checked against the model's plausible ranges. The stored visit is never changed.",
               className="small text-muted"),
        dag.AgGrid(
            id="visit-edit-table", className="whatif-grid",
            columnDefs=[{"field": "feature", "headerName": "Feature", "minWidth": 110},
                        # The one column to edit, tinted as a form field; a click starts the edit. Plain text, not a
                        # number editor inferred from the first row: categorical values are words, and a mistyped
                        # number reaches the server's check, which names the problem, instead of vanishing.
                        {"field": "value", "headerName": "Value", "editable": True, "cellDataType": False, "minWidth": 80,
                         "cellClass": "whatif-value"},
                        {"field": "unit", "headerName": "Unit", "minWidth": 70},
                        {"field": "range", "headerName": "Plausible", "minWidth": 80}],
            rowData=[], columnSize="responsiveSizeToFit", style={"height": None, "width": "100%"},
            # Cells wrap: every column fits the narrow side column at 1366 px (tests/test_layout_browser.py).
            defaultColDef={"wrapText": True, "autoHeight": True, "wrapHeaderText": True, "autoHeaderHeight": True,
                           "sortable": False, "suppressHeaderMenuButton": True, "suppressMovable": True, "resizable": True},
            dashGridOptions={"domLayout": "autoHeight", "singleClickEdit": True, "stopEditingWhenCellsLoseFocus": True},
        ),
        html.Div([dbc.Button("Apply what-if", id="visit-edit-apply", color="primary", size="sm", className="me-2"),
                  dbc.Button("Reset", id="visit-edit-reset", color="secondary", size="sm", outline=True)], className="mt-2"),
        html.Div(id="visit-edit-errors", className="mt-2"),
        html.Div(id="visit-edit-comparison", className="mt-2"),
    ]


def layout(explainers: PatientExplainers, patient_id: str, visit: int | None = None, narrow: bool = False) -> html.Div:
    """Risk trajectory, visit importance, SHAP waterfall and what-if edits; ``visit`` (0-based) is the one explained
    first (default: the last)."""
    selected = _selected(explainers, patient_id, visit)
    # In a narrow column the panel's two columns stack.
    main, side = ({"xs": 12}, {"xs": 12}) if narrow else ({"lg": 7}, {"lg": 5})
    return html.Div([
        *_stores(patient_id, selected),
        dbc.Row([dbc.Col(_risk_graph(), **main), dbc.Col(_visit_outcome(), **side)]),
        *_importance(),
        dbc.Row([dbc.Col(_waterfall(), **main), dbc.Col(_what_if(), **side)]),
    ])


def case_sections(explainers: PatientExplainers, patient_id: str, visit: int | None = None) -> tuple[html.Div, html.Div, list]:
    """The panel in the case page's three places: the risk plot (on the first screen, with the panel's stores), the
    selected visit's explanation (outcome, influential values, visit importance, SHAP waterfall), and the what-if
    editor (the case page folds it away)."""
    selected = _selected(explainers, patient_id, visit)
    risk = html.Div([*_stores(patient_id, selected), _risk_graph(COMPACT_RISK_PX)], className="case-risk")
    details = html.Div([*_visit_outcome(), *_importance(), *_waterfall()])
    return risk, details, _what_if(heading=False)


BACKGROUND_OPTIONS = [{"label": "all-zero visit (paper)", "value": "zero"}, {"label": "cohort mean", "value": "cohort"},
                      {"label": f"{MAX_BACKGROUND_VISITS} sampled cohort visits", "value": "sampled"}]


def background_note(expl: PatientExplanation, t: int) -> html.Div:
    """Which background the waterfall starts from, and its expected value at this visit (it changes from visit to visit)."""
    return html.Div([
        html.Span(f"Background: {expl.background.description}. "),
        html.Span(f"Expected value at visit {t + 1}: "), html.B(f"{expl.shap.base[t]:.3f}", id="visit-expected-value"),
        html.Span(" — the output with this visit's features taken from the background after the real earlier visits, "
                  "so it differs from visit to visit."),
    ], id="shap-background-text")


def _edit_rows(workspace: Workspace, expl: PatientExplanation, t: int) -> list[dict]:
    spec = workspace.manifest(expl.model_id).input
    rows = []
    for name, value in expl.feature_values(t).items():
        if name == ELAPSED_FEATURE and t == 0:
            continue  # the first visit has no gap to edit
        if name in spec.categorical:
            plausible, unit = " / ".join(spec.categorical[name]), ""
        elif name == ELAPSED_FEATURE:
            plausible, unit = "> 0", "days since previous visit"
        else:
            low, high = spec.feature_ranges.get(name, [None, None])
            plausible = "" if low is None else f"{low:g} – {high:g}"
            unit = spec.feature_units.get(name, "")
        rows.append({"feature": name, "value": value, "unit": unit, "range": plausible})
    return rows


def _outcome(expl: PatientExplanation, t: int, positive: str) -> dbc.Card:
    label = expl.labels[t]
    return dbc.Card(dbc.CardBody([
        html.H6(f"Visit {t + 1} · day {expl.days[t]:.0f}", className="card-title"),
        html.Div([html.Span(f"P({positive}) = "), html.B(f"{expl.shap.output[t]:.3f}", id="visit-output")], className="fs-5"),
        html.Div(f"Recorded label: {'n/a' if label is None else label}", className="small text-muted"),
        html.Div(f"Expected value at this visit {expl.shap.base[t]:.3f}; additivity residual {expl.shap.additivity_residual:.1e}",
                 className="small text-muted"),
    ]), id="visit-outcome-card")


def _check_visit(expl: PatientExplanation, t: object) -> int:
    """A visit index from the browser; anything else came from a hand-made request (answered 400)."""
    if isinstance(t, bool) or not isinstance(t, int) or not 0 <= t < len(expl.days):
        raise PathReviewError(f"patient {expl.patient_id} has no visit {t!r:.20}")
    return t


def clicked_visit(click: object) -> int | None:
    """The visit index a click on the risk trajectory chose, from the clicked point's customdata; None when the
    click carried no visit."""
    points = click.get("points") if isinstance(click, dict) else None
    visit = points[0].get("customdata") if isinstance(points, list) and points and isinstance(points[0], dict) else None
    return visit if isinstance(visit, int) and not isinstance(visit, bool) else None


def register_callbacks(app: Dash, workspace: Workspace, explainers: PatientExplainers) -> None:
    @app.callback(Output("selected-visit", "data"), Input("patient-risk", "clickData"), prevent_initial_call=True)
    def select_visit(click):
        visit = clicked_visit(click)
        return no_update if visit is None else visit

    @app.callback(
        Output("visit-edit-table", "rowData"), Output("whatif-store", "data"), Output("visit-edit-errors", "children"),
        Input("selected-visit", "data"), Input("visit-edit-reset", "n_clicks"), State("patient-id", "data"),
    )
    def show_stored_visit(t, _reset, patient_id):
        expl = explainers.explain(patient_id)
        return _edit_rows(workspace, expl, _check_visit(expl, t)), None, ""

    @app.callback(
        Output("whatif-store", "data", allow_duplicate=True), Output("visit-edit-errors", "children", allow_duplicate=True),
        Input("visit-edit-apply", "n_clicks"), State("visit-edit-table", "rowData"), State("selected-visit", "data"),
        State("patient-id", "data"), State("shap-background", "value"), prevent_initial_call=True,
    )
    def apply_what_if(_clicks, rows, t, patient_id, background):
        rows = rows if isinstance(rows, list) else []
        values = {r["feature"]: r.get("value") for r in rows if isinstance(r, dict) and isinstance(r.get("feature"), str)}
        try:
            # Checked only: show_patient explains the edit, once.
            explainers.check_what_if(patient_id, t, values, background=background or DEFAULT_BACKGROUND)
        except VisitEditError as exc:
            return None, dbc.Alert([html.Div(f"{name}: {message}", className="cell-error") for name, message in exc.errors.items()],
                                   color="danger", id="visit-edit-alert")
        except PathReviewError as exc:
            return None, dbc.Alert(str(exc), color="danger", id="visit-edit-alert")
        return {"visit": t, "values": values}, ""

    @app.callback(
        Output("patient-risk", "figure"), Output("patient-importance", "figure"), Output("visit-outcome", "children"),
        Output("visit-salient", "children"), Output("visit-waterfall", "figure"), Output("visit-edit-comparison", "children"),
        Output("shap-background-note", "children"),
        Input("selected-visit", "data"), Input("whatif-store", "data"), Input("shap-background", "value"), State("patient-id", "data"),
    )
    def show_patient(t, what_if, background, patient_id):
        background = background or DEFAULT_BACKGROUND  # a request that names none gets the page's default
        stored = explainers.explain(patient_id, background=background)
        _check_visit(stored, t)
        what_if = what_if if isinstance(what_if, dict) else None
        manifest = workspace.manifest(stored.model_id)
        positive = manifest.score_class
        edited = explainers.what_if(patient_id, what_if.get("visit"), what_if.get("values"), background=background) if what_if else None
        shown = edited or stored
        risk, importance, waterfall = visit_figures(stored, edited, t, positive,
                                                    f"Visit {t + 1}: from expected value to output" + (" (what-if)" if edited else ""))
        # As tall as the page's graph (_risk_graph), its key under the axis title at any height; exports keep theirs.
        risk.update_layout(height=None, autosize=True, margin={"b": 62},
                           legend={"orientation": "h", "yref": "container", "y": 0, "yanchor": "bottom"})
        salient = html.Div([html.H6("Most influential values at this visit"),
                            html.Ul([html.Li(f"{name} = {value}: {phi:+.3f}") for name, value, phi in salient_features(shown, t)])],
                           id="visit-salient-list")
        comparison = ""
        if edited:
            last = len(stored.days) - 1
            comparison = dbc.Table([html.Tbody([
                html.Tr([html.Th(""), html.Th("stored"), html.Th("what-if")]),
                html.Tr([html.Td(f"P at visit {t + 1}"), html.Td(f"{stored.shap.output[t]:.3f}"),
                         html.Td(f"{edited.shap.output[t]:.3f}", id="whatif-output")]),
                html.Tr([html.Td("P at last visit"), html.Td(f"{stored.shap.output[last]:.3f}"), html.Td(f"{edited.shap.output[last]:.3f}")]),
                html.Tr([html.Td(f"importance of visit {t + 1}"), html.Td(f"{stored.importance['score'][t]:+.2f}"),
                         html.Td(f"{edited.importance['score'][t]:+.2f}")]),
            ])], size="sm", id="whatif-comparison")
        return risk, importance, _outcome(shown, t, positive), salient, waterfall, comparison, background_note(shown, t)
