"""The patient and report panels do each piece of work once: a what-if is explained when it is shown, not also when it
is applied; an edited report is compared with the stored report's explanation from the cache."""

from __future__ import annotations

import json

from core.explain.patient_explanations import PatientExplainers
from core.explain.report_explanations import report_explanation, report_model_id, stored_report_text
from core.explain.text import LimeSettings
from tests.helpers import post_callback


def test_a_what_if_is_explained_once(client, app, monkeypatch):
    rows = post_callback(client, app, "..visit-edit-table.rowData", {("selected-visit", "data"): 1, ("patient-id", "data"): "P003"},
                         ["selected-visit.data"]).get_json()["response"]["visit-edit-table"]["rowData"]
    rows = [{**r, "value": 55 if r["feature"] == "psa" else r["value"]} for r in rows]
    explained = []
    what_if = PatientExplainers.what_if
    monkeypatch.setattr(PatientExplainers, "what_if", lambda self, *a, **k: explained.append(a) or what_if(self, *a, **k))

    applied = post_callback(client, app, "whatif-store.data@", {("visit-edit-apply", "n_clicks"): 1, ("visit-edit-table", "rowData"): rows,
                                                                ("selected-visit", "data"): 1, ("patient-id", "data"): "P003"},
                            ["visit-edit-apply.n_clicks"]).get_json()["response"]
    store = applied["whatif-store"]["data"]
    assert store == {"visit": 1, "values": {r["feature"]: r["value"] for r in rows}} and explained == []
    shown = post_callback(client, app, "patient-risk.figure", {("selected-visit", "data"): 1, ("whatif-store", "data"): store,
                                                               ("patient-id", "data"): "P003"}, ["whatif-store.data"])
    assert shown.status_code == 200 and "whatif-comparison" in shown.get_data(as_text=True)
    assert len(explained) == 1

    rows[0] = {**rows[0], "value": "not a number"}  # a bad edit is still refused when applied, cell by cell
    refused = post_callback(client, app, "whatif-store.data@", {("visit-edit-apply", "n_clicks"): 1, ("visit-edit-table", "rowData"): rows,
                                                                ("selected-visit", "data"): 1, ("patient-id", "data"): "P003"},
                            ["visit-edit-apply.n_clicks"]).get_json()["response"]
    assert refused["whatif-store"]["data"] is None and rows[0]["feature"] in json.dumps(refused["visit-edit-errors"])
    assert len(explained) == 1


def test_an_edited_report_is_compared_with_the_cached_explanation_of_the_stored_one(client, app, workspace, monkeypatch):
    import dashboard.components.report_panel as report_panel

    model_id = report_model_id(workspace)
    class_name = workspace.manifest(model_id).class_names[-1]
    values = {("report-id", "data"): "P002-R1", ("lime-class", "value"): class_name, ("lime-num-features", "value"): 6,
              ("lime-num-samples", "value"): 400, ("lime-seed", "value"): 0, ("lime-kernel-width", "value"): 25}
    shown = post_callback(client, app, "report-highlights.children", {**values, ("lime-run", "n_clicks"): 1}, ["lime-run.n_clicks"])
    assert shown.status_code == 200
    text = stored_report_text(workspace, "P002-R1")
    cached, _, source = report_explanation(workspace, model_id, text, LimeSettings(num_samples=400))
    assert source == "cache"  # the panel explained and stored it
    explained = []
    explain = report_panel.explain_report
    monkeypatch.setattr(report_panel, "explain_report", lambda t, *a, **k: explained.append(t) or explain(t, *a, **k))

    edited = text + " extensive carcinoma"
    result = post_callback(client, app, "report-edit-result.children", {**values, ("report-edit", "value"): edited,
                                                                        ("report-edit-run", "n_clicks"): 1}, ["report-edit-run.n_clicks"])
    assert result.status_code == 200 and "edited-probability" in result.get_data(as_text=True)
    assert explained == [edited]
    before = next(c for c in cached.classes if c.class_name == class_name).probability
    assert f"{before:.3f}" in json.dumps(result.get_json()["response"]["report-edit-result"]["children"])
