"""The case page's export card: one figure as PNG, SVG or PDF, and the case report (PDF or offline HTML) as a
background job with progress."""

from __future__ import annotations

from datetime import UTC, datetime

import dash_bootstrap_components as dbc
from dash import Dash, Input, Output, State, dcc, html, no_update

from core.errors import PathReviewError
from core.explain.patient_explanations import DEFAULT_BACKGROUND, PatientExplainers
from core.export.case_report import case_report_html, case_report_pdf
from core.export.figure_export import FORMATS, export_figure, export_filename
from core.jobs.forked import forked_job_workspace
from dashboard.figures.case_figures import CASE_FIGURES, CaseView, case_figure, case_report_content

# Everything that names the view being exported; read by both export callbacks, in this order.
VIEW_STATES = [
    State("case-id", "data"), State("selected-visit", "data"), State("whatif-store", "data"), State("case-report-choice", "value"),
    State("lime-class", "value"), State("lime-num-features", "value"), State("lime-num-samples", "value"), State("lime-seed", "value"),
    State("lime-kernel-width", "value"), State("case-selected-slide", "data"), State("heat-key", "data"), State("heat-layer-choice", "value"),
    State("heat-method", "value"), State("heat-cmap", "value"), State("heat-threshold", "value"), State("heat-norm", "value"),
    State("heat-smooth", "value"), State("heat-opacity", "value"), State("slide-map", "bounds"), State("slide-ctx", "data"),
    State("export-region-mode", "value"), State("export-region", "value"), State("export-width", "value"), State("shap-background", "value"),
]


def case_view(patient_id, visit, what_if, report_id, lime_class, num_features, num_samples, seed, kernel_width, slide_id, heat_key,
              layer, method, cmap, threshold, norm, smooth, opacity, bounds, slide_ctx, region_mode, region, width, background) -> CaseView:
    """The view from the page's state, in ``VIEW_STATES`` order."""
    region_um = None
    if region_mode == "region":
        try:
            region_um = [float(v) for v in (region or "").replace(";", ",").split(",")]
        except ValueError:
            region_um = None
        if region_um is None or len(region_um) != 4:
            raise PathReviewError("give the region as x, y, width, height in µm, e.g. 1000, 2000, 800, 600")
    style = {"layer": layer, "method": method, "cmap": cmap, "threshold": float(threshold or 0), "norm": norm, "smooth": float(smooth or 0)}
    if region_mode == "slide":
        bounds = None  # no bounds and no region: the whole slide
    try:
        output_width = int(width or 1200)
    except (TypeError, ValueError) as exc:
        raise PathReviewError("the export width must be a whole number of pixels") from exc
    return CaseView(patient_id=patient_id, visit=visit, what_if=what_if, report_id=report_id,
                    lime={"class_name": lime_class, "num_features": num_features, "num_samples": num_samples, "seed": seed,
                          "kernel_width": kernel_width},
                    heat_key=heat_key, slide_id=slide_id, style=style if layer else {}, opacity=float(opacity if opacity is not None else 0.5),
                    bounds=bounds, max_zoom=(slide_ctx or {}).get("max_zoom"), region_um=region_um, output_width=output_width,
                    background=background or DEFAULT_BACKGROUND)


def card(read_only: bool = False) -> dbc.Card:
    """``read_only``: the signed-in role may not export (the server refuses it too)."""
    options = [{"label": label, "value": name} for name, label in CASE_FIGURES.items()]
    return dbc.Card([
        dbc.CardHeader("Export"),
        dbc.CardBody(dbc.Row([
            dbc.Col([
                html.H6("Figure"),
                dcc.Dropdown(id="export-figure", options=options, value="waterfall", clearable=False),
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
                ], className="mt-2 small"),
                dbc.Button("Export figure", id="export-figure-run", color="primary", size="sm", className="mt-2", disabled=read_only),
                dcc.Loading(html.Div(id="export-figure-message", className="mt-2 small")),
                dcc.Download(id="figure-download"),
            ], md=6),
            dbc.Col([
                html.H6("Case report"),
                dbc.Checklist(id="report-figures", options=options, value=list(CASE_FIGURES), className="small"),
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


def register_callbacks(app: Dash, workspace, explainers: PatientExplainers) -> None:
    @app.callback(Output("figure-download", "data"), Output("export-figure-message", "children"),
                  Input("export-figure-run", "n_clicks"), State("export-figure", "value"), State("export-format", "value"), *VIEW_STATES,
                  prevent_initial_call=True)
    def export_one_figure(_clicks, name, fmt, *state):
        try:
            view = case_view(*state)
            figure = case_figure(workspace, explainers, name, view)
            data = export_figure(figure.figure, fmt, figure.provenance, **_figure_size(name, figure.figure))
        except PathReviewError as exc:
            return no_update, dbc.Alert(str(exc), color="warning", id="export-error")
        filename = export_filename(f"{view.patient_id}-{name}", fmt)
        return dcc.send_bytes(data, filename), html.Span(f"Exported {filename} ({len(data) / 1024:.0f} KiB).", id="export-done")

    @app.callback(
        Output("case-report-download", "data"), Output("case-report-message", "children"),
        Input("case-report-run", "n_clicks"), State("report-figures", "value"), State("report-format", "value"), *VIEW_STATES,
        background=True, prevent_initial_call=True,
        progress=[Output("case-report-progress", "value"), Output("case-report-progress", "label")],
        running=[(Output("case-report-run", "disabled"), True, False), (Output("case-report-cancel", "disabled"), False, True)],
        cancel=[Input("case-report-cancel", "n_clicks")],
    )
    def generate_case_report(set_progress, _clicks, names, fmt, *state):
        job_workspace = forked_job_workspace(workspace)
        names = [n for n in CASE_FIGURES if n in (names or [])]
        total = len(names) + 1  # the figures, then the document
        try:
            view = case_view(*state)
            job_explainers = PatientExplainers(job_workspace)
            figures = []
            for done, name in enumerate(names):
                set_progress((round(100 * done / total), f"figure {done + 1}/{len(names)}: {CASE_FIGURES[name]}"))
                figures.append(case_figure(job_workspace, job_explainers, name, view))
            set_progress((round(100 * len(names) / total), "writing the document"))
            content = case_report_content(job_workspace, view, figures)
            data = case_report_pdf(content) if fmt == "pdf" else case_report_html(content).encode("utf-8")
        except PathReviewError as exc:
            return no_update, dbc.Alert(f"Could not build the case report: {exc}", color="warning", id="case-report-error")
        set_progress((100, "done"))
        stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M")
        filename = export_filename(f"case-{view.patient_id}-{stamp}", fmt)
        return dcc.send_bytes(data, filename), html.Span(f"{filename}: {len(figures)} figures, {len(data) / 1024:.0f} KiB.",
                                                        id="case-report-done")


def _figure_size(name: str, figure) -> dict:
    """Slide figures are sized by their image; the others at a page-friendly size."""
    if name == "slide":
        layout = figure.layout
        return {"width": int(layout.width or 1200), "height": int(layout.height or 900), "scale": 1.0}
    return {"width": 1000, "height": 600, "scale": 2.0}
