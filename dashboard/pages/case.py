"""Case overview (``/case/<patient_id>``): one patient's slides, visits and reports with stored model outputs."""

from __future__ import annotations

import dash_bootstrap_components as dbc
from dash import dash_table, dcc, html

from core.store.cases import CaseSummary, case_summary
from core.workspace import Workspace
from dashboard.figures.visit_risk import visit_risk_figure


def _models_of(workspace: Workspace, task: str) -> list[str]:
    return [m for m, manifest in workspace.manifests.items() if manifest.task == task]


def _score_badge(score: float | None, label: str) -> html.Span:
    if score is None:
        return html.Span("no stored output", className="text-muted small")
    colour = "danger" if score >= 0.5 else "success"
    return dbc.Badge(f"{label}: {score:.2f}", color=colour, className="me-1 score-badge")


def _slides_section(workspace: Workspace, case: CaseSummary) -> dbc.Card:
    mil = _models_of(workspace, "mil")
    cards = []
    for slide in case.slides:
        badges = [_score_badge(case.score(m, "slide", slide.id), workspace.manifest(m).positive_class or m) for m in mil]
        cards.append(dbc.Col(dbc.Card([
            html.A(html.Img(src=f"/slides/{slide.id}/thumbnail.jpeg", className="card-img-top slide-thumb", alt=f"slide {slide.id}"),
                   href=f"/slide/{slide.id}"),
            dbc.CardBody([
                html.A(slide.id, href=f"/slide/{slide.id}", className="fw-semibold slide-link"),
                html.Div(f"{slide.width:,} x {slide.height:,} px at {slide.mpp} µm/px", className="small text-muted"),
                html.Div("ground-truth mask available" if slide.mask_file else "", className="small text-muted"),
                html.Div(badges),
            ]),
        ]), md=4, className="mb-3"))
    return dbc.Card([dbc.CardHeader("Slides"), dbc.CardBody(dbc.Row(cards) if cards else html.P("No slides for this patient."))], className="mb-4")


def _visits_section(workspace: Workspace, case: CaseSummary) -> dbc.Card:
    if not case.visits:
        return dbc.Card([dbc.CardHeader("Visits"), dbc.CardBody(html.P("No visits recorded."))], className="mb-4")
    body = []
    for model_id in _models_of(workspace, "sequence"):
        manifest = workspace.manifest(model_id)
        risks = [case.score(model_id, "visit", str(v.id)) for v in case.visits]
        body.append(dcc.Graph(
            figure=visit_risk_figure([v.day for v in case.visits], risks, [v.label for v in case.visits],
                                     f"{manifest.positive_class or manifest.name} ({model_id})"),
            config={"displaylogo": False}, id=f"visit-risk-{model_id}",
        ))
    names = [k for k in case.visits[0].features]
    rows = [{"day": v.day, **v.features, "label": v.label} for v in case.visits]
    body.append(dash_table.DataTable(
        columns=[{"id": "day", "name": "Day"}, *({"id": n, "name": n} for n in names), {"id": "label", "name": "Label"}],
        data=rows, style_table={"overflowX": "auto"}, style_cell={"fontFamily": "inherit", "fontSize": "0.85rem"},
    ))
    header = dbc.CardHeader(["Visits", html.A("Explain visits and try what-if edits", href=f"/patient/{case.patient.id}",
                                              className="small ms-3 patient-link")])
    return dbc.Card([header, dbc.CardBody(body)], className="mb-4")


def _reports_section(workspace: Workspace, case: CaseSummary) -> dbc.Card:
    models = _models_of(workspace, "report")
    items = []
    for report in case.reports:
        badges = [_score_badge(case.score(m, "report", report.id), workspace.manifest(m).positive_class or m) for m in models]
        explain = html.A("Explain and edit", href=f"/report/{report.id}", className="small ms-2 report-link")
        items.append(dbc.AccordionItem([html.Div([*badges, explain], className="mb-2"), html.Pre(report.text, className="report-text")],
                                       title=f"{report.id}" + ("" if report.label is None else f" (recorded label {report.label})")))
    content = dbc.Accordion(items, start_collapsed=False, always_open=True) if items else html.P("No reports.")
    return dbc.Card([dbc.CardHeader("Reports"), dbc.CardBody(content)], className="mb-4")


def layout(workspace: Workspace, patient_id: str) -> html.Div:
    with workspace.store.session() as s:
        case = case_summary(s, patient_id)
    p = case.patient
    summary = " · ".join(x for x in [f"age {p.age:.0f}" if p.age is not None else "", p.sex or "", f"{p.onset_type} onset" if p.onset_type else ""] if x)
    return html.Div([
        html.H2(f"Case {p.id}", id="case-title"),
        html.P(summary, className="text-muted"),
        _slides_section(workspace, case),
        _visits_section(workspace, case),
        _reports_section(workspace, case),
    ])
