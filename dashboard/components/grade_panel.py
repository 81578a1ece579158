"""The slide's Gleason score and ISUP grade group from its class map, beside the grade percentages, with the specimen
type the rule depends on and the grade the paired report states."""

from __future__ import annotations

import dash_bootstrap_components as dbc
from dash import Dash, Input, Output, State, html

from core.errors import PathReviewError
from core.heatmaps.grade_comparison import slide_specimen
from core.heatmaps.grade_group import SPECIMEN_LABELS, SPECIMEN_TYPES, SpecimenType, grading_rule_text, slide_grade
from core.heatmaps.overlay import QC_EXCLUDE, QC_KEEP, grade_fractions
from core.heatmaps.slide_grades import record_slide_grade
from core.heatmaps.slide_heatmap import slide_heatmap_by_key
from core.heatmaps.slide_layers import slide_layers
from core.models.report_grade import report_grade
from core.store.schema import Report
from core.workspace import Workspace

HIDDEN = {"display": "none"}


def layout(workspace: Workspace, slide_id: str) -> html.Div:
    """Hidden until the slide has a heatmap; the specimen type starts as the paired report names it."""
    _, choice = slide_specimen(workspace, slide_id)
    return html.Div([
        html.H6("Slide grade from the class map", className="mb-1"),
        html.Div([
            html.Span("Specimen:", className="small me-2"),
            dbc.RadioItems(id="grade-specimen", options=[{"label": SPECIMEN_LABELS[s], "value": s} for s in SPECIMEN_TYPES],
                           value=choice.specimen, inline=True, className="d-inline-block small"),
        ]),
        html.Div(f"Specimen type {choice.source}.", className="small text-muted", id="grade-specimen-source"),
        html.Div(id="grade-group", className="mt-1"),
    ], id="grade-panel", className="grade-panel mt-2", style=HIDDEN)


def register_callbacks(app: Dash, workspace: Workspace) -> None:
    @app.callback(Output("grade-group", "children"), Output("grade-panel", "style"),
                  Input("heat-key", "data"), Input("heat-method", "value"), Input("grade-specimen", "value"), Input("qc-exclude", "value"),
                  State("slide-ctx", "data"))
    def show_slide_grade(key, method, specimen: SpecimenType | None, exclude, ctx):
        heat = slide_heatmap_by_key(workspace, key, ctx["slide_id"])
        if heat is None:
            return "", HIDDEN
        layers = slide_layers(workspace, heat)
        record_slide_grade(workspace, layers)  # the worklist compares it with the report
        try:  # without the QC-flagged patches when the viewer's switch says so
            grade = slide_grade(grade_fractions(layers, method or "overlap", QC_EXCLUDE if exclude else QC_KEEP), specimen or "biopsy")
        except PathReviewError:  # the QC measures are still being computed
            grade, exclude = slide_grade(grade_fractions(layers, method or "overlap"), specimen or "biopsy"), False
        report_id, _ = slide_specimen(workspace, ctx["slide_id"])
        stated = ""
        if report_id is not None:
            with workspace.store.session() as s:
                report = s.get(Report, report_id)
                text = report.text if report is not None else ""
            said = report_grade(text)
            verdict = "" if said.grade_group is None or grade.grade_group == said.grade_group else " (disagrees with the model)"
            stated = html.Div([f"Report {report_id} states: ", html.B(said.summary), verdict], className="small", id="grade-report")
        group = "No tumour" if grade.grade_group == 0 else f"ISUP grade group {grade.grade_group}"
        group += " (QC-flagged patches excluded)" if exclude else ""
        return [
            html.Div([html.Span(group, className="fs-5 fw-semibold me-2", id="grade-group-value"),
                      html.Span(grade.summary, className="small", id="grade-group-summary")]),
            stated,
            html.Div(grading_rule_text(grade.specimen), className="small text-muted", id="grade-rule"),
        ], {}
