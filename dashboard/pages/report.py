"""Report page (``/report/<report_id>``): the report panel (the text with LIME word weights, both classes, stability,
and editing) under the report's title."""

from __future__ import annotations

from dash import html

from core.explain.report_explanations import report_model_id, stored_report
from core.workspace import Workspace
from dashboard.components import report_panel


def layout(workspace: Workspace, report_id: str) -> html.Div:
    report = stored_report(workspace, report_id)
    label = ""
    if report.label is not None and workspace.models_for("report"):
        label = f" · recorded label: {workspace.manifest(report_model_id(workspace)).class_names[report.label]}"
    return html.Div([
        html.H2(f"Report {report_id}", id="report-title"),
        html.P([html.A(f"Case {report.patient_id}", href=f"/case/{report.patient_id}"), label], className="text-muted"),
        report_panel.layout(workspace, report_id),
    ])
