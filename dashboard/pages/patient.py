"""Patient page (``/patient/<id>``): the patient panel (risk at each visit, SHAP waterfall, visit importance and
what-if edits) under the patient's title."""

from __future__ import annotations

from dash import html

from core.explain.patient_explanations import PatientExplainers
from core.workspace import Workspace
from dashboard.components import patient_panel


def layout(workspace: Workspace, explainers: PatientExplainers, patient_id: str) -> html.Div:
    expl = explainers.explain(patient_id)
    return html.Div([
        html.H2(f"Patient {patient_id}", id="patient-title"),
        html.P([html.A(f"Case {patient_id}", href=f"/case/{patient_id}"),
                f" · {len(expl.days)} visits · model {expl.model_id} · click a visit to explain it"], className="text-muted"),
        patient_panel.layout(explainers, patient_id),
    ])
