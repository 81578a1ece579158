"""The case page's export card: one figure as PNG, SVG or PDF, and the case report (PDF or offline HTML) as a
background job with progress.

The view to export is read as named parts. The case page owns its id, the chosen report and the shown slide; each
panel that can be on it owns a part (the patient panel: visit, what-if and SHAP background; the report panel: LIME settings; the slide
viewer: heatmap, overlay and viewport), mirrored in the browser into a store the page places beside the panel. The
export reads the parts present, so a case without a slide or a report, or a workspace without a report model, exports
what it has."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime

import dash_bootstrap_components as dbc
from dash import ALL, Dash, Input, Output, State, dcc, html, no_update

from core.errors import PathReviewError
from core.explain.patient_explanations import DEFAULT_BACKGROUND, PatientExplainers
from core.export.case_figures import CASE_FIGURES, CaseView, case_figure
from core.export.case_report import build_case_report, case_report_filename
from core.export.figure_export import FORMATS, export_figure, export_filename
from core.jobs.forked import forked_job_workspace
from core.workspace import Workspace
from dashboard.auth import requires_role

log = logging.getLogger(__name__)
VIEW_PART = "case-view-part"
# Each part's values by name, from the panel's components.
VIEW_PARTS = {
    "patient": {"visit": ("selected-visit", "data"), "what_if": ("whatif-store", "data"), "background": ("shap-background", "value")},
    "report": {"lime_class": ("lime-class", "value"), "num_features": ("lime-num-features", "value"),
               "num_samples": ("lime-num-samples", "value"), "seed": ("lime-seed", "value"), "kernel_width": ("lime-kernel-width", "value")},
    "slide": {"heat_key": ("heat-key", "data"), "layer": ("heat-layer-choice", "value"), "method": ("heat-method", "value"),
              "cmap": ("heat-cmap", "value"), "threshold": ("heat-threshold", "value"), "norm": ("heat-norm", "value"),
              "smooth": ("heat-smooth", "value"), "opacity": ("heat-opacity", "value"), "bounds": ("slide-map", "bounds"),
              "slide_ctx": ("slide-ctx", "data"), "annotation_authors": ("annotation-authors", "value"),
              "brightness": ("base-brightness", "value"), "contrast": ("base-contrast", "value"), "gamma": ("base-gamma", "value")},
}
# What names the view: the page's own values, the parts present, and the export card's slide area.
VIEW_STATE = dict(
    patient_id=State("case-id", "data"), report_id=State("case-report-choice", "value"), slide_id=State("case-selected-slide", "data"),
    parts=State({"type": VIEW_PART, "part": ALL}, "data"),
    region_mode=State("export-region-mode", "value"), region=State("export-region", "value"), width=State("export-width", "value"),
)


def view_part(name: str) -> dcc.Store:
    """The store of part ``name`` of the view; the case page puts it beside the panel that owns the part."""
    return dcc.Store(id={"type": VIEW_PART, "part": name}, data=None)


def _region_um(region_mode: str | None, region: str | None) -> list[float] | None:
    if region_mode != "region":
        return None
    try:
        region_um = [float(v) for v in (region or "").replace(";", ",").split(",")]
    except ValueError:
        region_um = []
    if len(region_um) != 4:
        raise PathReviewError("give the region as x, y, width, height in µm, e.g. 1000, 2000, 800, 600")
    return region_um


def case_view(view: dict) -> CaseView:
    """The view from ``VIEW_STATE``'s values; a part the page does not have leaves its defaults."""
    parts: dict = {}
    for part in view.get("parts") or []:
        parts.update(part if isinstance(part, dict) else {})
    try:
        output_width = int(view.get("width") or 1200)
    except (TypeError, ValueError) as exc:
        raise PathReviewError("the export width must be a whole number of pixels") from exc
    layer = parts.get("layer")
    style = {"layer": layer, "method": parts.get("method"), "cmap": parts.get("cmap"), "threshold": float(parts.get("threshold") or 0),
             "norm": parts.get("norm"), "smooth": float(parts.get("smooth") or 0)}
    opacity = parts.get("opacity")
    region_mode = view.get("region_mode")
    lime = {k: parts[k] for k in ("num_features", "num_samples", "seed", "kernel_width") if parts.get(k) is not None}
    return CaseView(patient_id=view.get("patient_id"), visit=parts.get("visit"), what_if=parts.get("what_if"), report_id=view.get("report_id"),
                    lime={"class_name": parts.get("lime_class"), **lime}, heat_key=parts.get("heat_key"), slide_id=view.get("slide_id"),
                    style=style if layer else {}, opacity=float(opacity if opacity is not None else 0.5),
                    bounds=None if region_mode == "slide" else parts.get("bounds"),  # no bounds and no region: the whole slide
                    max_zoom=(parts.get("slide_ctx") or {}).get("max_zoom"), region_um=_region_um(region_mode, view.get("region")),
                    output_width=output_width, background=parts.get("background") or DEFAULT_BACKGROUND,
                    annotation_authors=parts.get("annotation_authors"),
                    adjustment={k: parts[k] for k in ("brightness", "contrast", "gamma") if parts.get(k) is not None})


def card(figure_names: list[str], read_only: bool = False) -> dbc.Card:
    """``figure_names``: the ``CASE_FIGURES`` the case has; ``read_only``: the signed-in role may not export (the server
    refuses it too)."""
    options = [{"label": CASE_FIGURES[name], "value": name} for name in figure_names]
    if not options:
        return dbc.Card([dbc.CardHeader("Export"), dbc.CardBody(html.P("This case has no figures to export.", className="text-muted small"))],
                        className="mb-3", id="case-export-card")
    return dbc.Card([
        dbc.CardHeader("Export"),
        dbc.CardBody(dbc.Row([
            dbc.Col([
                html.H6("Figure"),
                dcc.Dropdown(id="export-figure", options=options, value="waterfall" if "waterfall" in figure_names else figure_names[0],
                             clearable=False),
                dbc.RadioItems(id="export-format", options=[{"label": f.upper(), "value": f} for f in FORMATS], value="png", inline=True,
                               className="mt-2"),
                html.Div([
                    dbc.Label("Slide area", className="small mb-0"),
                    dbc.RadioItems(id="export-region-mode", options=[{"label": "current view", "value": "view"},
                                                                     {"label": "whole slide", "value": "slide"},
                                                                     {"label": "region (µm)", "value": "region"}],
                                   value="view", inline=True, className="small"),
                    dbc.Input(id="export-region", placeholder="x, y, width, height in µm", size="sm", className="mt-1"),
                    dbc.InputGroup([dbc.InputGroupText("width px"), dbc.Input(id="export-width", type="number", value=1200, min=100, max=4000)],
                                   size="sm", className="mt-1"),
                ], className="mt-2 small", style={} if "slide" in figure_names else {"display": "none"}),
                dbc.Button("Export figure", id="export-figure-run", color="primary", size="sm", className="mt-2", disabled=read_only),
                dcc.Loading(html.Div(id="export-figure-message", className="mt-2 small")),
                dcc.Download(id="figure-download"),
            ], md=6),
            dbc.Col([
                html.H6("Case report"),
                dbc.Checklist(id="report-figures", options=options, value=list(figure_names), className="small"),
                dbc.RadioItems(id="report-format", options=[{"label": "PDF", "value": "pdf"}, {"label": "HTML (offline)", "value": "html"}],
                               value="pdf", inline=True, className="mt-2"),
                html.Div([dbc.Button("Generate case report", id="case-report-run", color="primary", size="sm", className="me-2",
                                     disabled=read_only),
                          dbc.Button("Cancel", id="case-report-cancel", color="secondary", size="sm", outline=True, disabled=True)],
                         className="mt-2"),
                dbc.Progress(id="case-report-progress", value=0, label="", className="mt-2", style={"height": "18px"}),
                html.Div(id="case-report-message", className="mt-1 small"),
                dcc.Download(id="case-report-download"),
            ], md=6),
        ])),
    ], className="mb-3", id="case-export-card")


def _mirror(keys: list[str]) -> str:
    """A client-side function that names its inputs' values (a value not yet set is null)."""
    return f"function(...values) {{ const keys = {json.dumps(keys)}; return Object.fromEntries(keys.map((k, i) => [k, values[i] ?? null])); }}"


def register_callbacks(app: Dash, workspace: Workspace, explainers: PatientExplainers) -> None:
    # Each part follows its panel in the browser: no server round trip, and nothing runs for a panel the page lacks.
    for name, fields in VIEW_PARTS.items():
        app.clientside_callback(_mirror(list(fields)), Output({"type": VIEW_PART, "part": name}, "data"),
                                *(Input(component, prop) for component, prop in fields.values()))

    @app.callback(output=[Output("figure-download", "data"), Output("export-figure-message", "children")],
                  inputs=dict(_clicks=Input("export-figure-run", "n_clicks")),
                  state=dict(name=State("export-figure", "value"), fmt=State("export-format", "value"), view=VIEW_STATE),
                  prevent_initial_call=True)
    @requires_role("reviewer")
    def export_one_figure(_clicks, name, fmt, view):
        try:
            shown = case_view(view)
            figure = case_figure(workspace, explainers, name, shown)
            data = export_figure(figure.figure, fmt, figure.provenance, **_figure_size(name, figure.figure))
        except PathReviewError as exc:
            return no_update, dbc.Alert(str(exc), color="warning", id="export-error")
        filename = export_filename(f"{shown.patient_id}-{name}", fmt)
        return dcc.send_bytes(data, filename), html.Span(f"Exported {filename} ({len(data) / 1024:.0f} KiB).", id="export-done")

    @app.callback(
        output=[Output("case-report-download", "data"), Output("case-report-message", "children")],
        inputs=dict(_clicks=Input("case-report-run", "n_clicks")),
        state=dict(names=State("report-figures", "value"), fmt=State("report-format", "value"), view=VIEW_STATE),
        background=True, prevent_initial_call=True,
        progress=[Output("case-report-progress", "value"), Output("case-report-progress", "label")],
        running=[(Output("case-report-run", "disabled"), True, False), (Output("case-report-cancel", "disabled"), False, True)],
        cancel=[Input("case-report-cancel", "n_clicks")],
    )
    @requires_role("reviewer")
    def generate_case_report(set_progress, _clicks, names, fmt, view):
        job_workspace = forked_job_workspace(workspace)
        try:
            shown = case_view(view)
            data, figures = build_case_report(job_workspace, PatientExplainers(job_workspace), shown, names or [], fmt,
                                              lambda fraction, step: set_progress((round(100 * fraction), step)))
            filename = case_report_filename(shown.patient_id, fmt, datetime.now(UTC).strftime("%Y%m%d-%H%M"))
        except PathReviewError as exc:
            set_progress((0, "not built"))
            return no_update, dbc.Alert(f"Could not build the case report: {exc}", color="warning", id="case-report-error")
        except Exception as exc:  # noqa: BLE001 - the bar must not freeze without a word, whatever went wrong
            log.exception("case report of %s failed", (view or {}).get("patient_id"))
            set_progress((0, "failed"))
            return no_update, dbc.Alert(f"Could not build the case report ({type(exc).__name__}: {exc}); nothing was downloaded. "
                                        "Try again, or choose fewer figures.", color="danger", id="case-report-error")
        set_progress((100, "done"))
        return dcc.send_bytes(data, filename), html.Span(f"{filename}: {figures} figures, {len(data) / 1024:.0f} KiB.", id="case-report-done")


def _figure_size(name: str, figure) -> dict:
    """Slide figures are sized by their image; the others at a page-friendly size."""
    if name == "slide":
        layout = figure.layout
        return {"width": int(layout.width or 1200), "height": int(layout.height or 900), "scale": 1.0}
    return {"width": 1000, "height": 600, "scale": 2.0}
