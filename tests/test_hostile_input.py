"""Hostile and malformed input through the real app (Flask test client, signed in): odd ids in every URL, oversized
and malformed callback requests, non-finite what-if values, a huge report edit, code-carrying model files and bad
workspace files. Each gets a clear message and a 4xx (or a page that says so), and nothing is written."""

from __future__ import annotations

import json

import pytest
import torch
from sqlalchemy import func, select

from core.errors import ModelLoadError, WorkspaceError
from core.explain.text import MAX_EDITED_REPORT_CHARS
from core.models.manifest import read_manifest, write_manifest
from core.models.registry import file_sha256, load_model
from core.store.reviews import review_history
from core.store.schema import AuditEvent, Review
from core.workspace import attribute_texts, read_workspace_config
from dashboard.request_limits import MAX_REQUEST_BYTES
from tests.helpers import callback_dependency, post_callback
from tests.load.reviewers import callback_body, find_component


def _rows_written(workspace) -> tuple[int, int]:
    with workspace.store.session() as s:
        return s.scalar(select(func.count()).select_from(Review)), s.scalar(select(func.count()).select_from(AuditEvent))


def _render(client, app, pathname):
    response = post_callback(client, app, "page-content.children", {("url", "pathname"): pathname, ("url", "search"): ""},
                              ["url.pathname"])
    assert response.status_code == 200, (pathname, response.data[:300])
    return response.get_json()["response"]["page-content"]["children"]


HOSTILE_IDS = ["..", "%2e%2e", "%2E%2E%2Fcases.db", "..%2F..%2Fworkspace.toml", "%00", "P001%00", "\x00", "P001\x00.tiff", "A" * 5000,
               "%" + "41" * 3000, "é", "%C3%A9", "\u202eP001", "P001%0d%0aSet-Cookie:x", "<script>alert(1)</script>", "%2F", "P001%2F..",
               " ", "%20"]


@pytest.mark.parametrize("kind", ["case", "patient", "report", "slide"])
def test_hostile_ids_in_page_paths_show_a_message_and_write_nothing(client, app, workspace, kind):
    before = _rows_written(workspace)
    for page_id in HOSTILE_IDS:
        page = _render(client, app, f"/{kind}/{page_id}")
        error = find_component(page, "page-error")
        assert error is not None, (kind, page_id)
        text = json.dumps(error["children"])
        assert ("There is no" in text or "no " in text) and "Traceback" not in text, text[:200]
        assert len(text) < 1000  # an absurd id is not echoed back in full
    assert _rows_written(workspace) == before  # not even a case_open audit event


def test_page_shell_for_hostile_paths_is_never_a_server_error(client):
    for path in ["/case/..%2F..%2Fcases.db", "/case/%00", "/patient/" + "A" * 5000, "/report/%C3%A9", "/slide/%2e%2e", "/case/P001/../../x"]:
        response = client.get(path, headers={"Accept": "text/html"})
        assert response.status_code in (200, 404), (path, response.status_code)
        assert b"Traceback" not in response.data


@pytest.mark.parametrize("url", [
    "/slides/%00/tiles/0/0/0.jpeg", "/slides/P001-S1%00/tiles/0/0/0.jpeg", "/slides/" + "A" * 5000 + "/tiles/0/0/0.jpeg",
    "/slides/%C3%A9/tiles/0/0/0.jpeg", "/slides/P001-S1/tiles/0/0/" + "9" * 5000 + ".jpeg", "/slides/P001-S1/tiles/%2e%2e/0/0.jpeg",
    "/slides/%2e%2e%2f%2e%2e%2fcases.db/thumbnail.jpeg", "/slides/P001-S1/heatmap/" + "a" * 5000 + "/0/0/0.png",
    "/slides/P001-S1/heatmap/%00/0/0/0.png", "/slides/P001-S1/thumbnail.jpeg%00.png", "/slides/.hidden/thumbnail.jpeg",
])
def test_hostile_tile_addresses_are_404(client, url):
    response = client.get(url)
    assert response.status_code == 404, (url, response.status_code)
    assert b"Traceback" not in response.data


@pytest.mark.parametrize(("body", "content_type", "message"), [
    (b"{not json", "application/json", b"not valid JSON"),
    (b"[" * 50_000 + b"]" * 50_000, "application/json", b"not valid JSON"),  # nesting deeper than the parser's recursion limit
    (b"[1, 2]", "application/json", b"must be a JSON object"),
    (b'"just a string"', "application/json", b"must be a JSON object"),
    (b"{}", "application/json", b"must name its output"),
    (b'{"output": "no-such-component.children"}', "application/json", b"names no callback"),
    (b'{"output": "page-content.children", "inputs": 5}', "application/json", b"'inputs' must be a list"),
    (b'{"output": "page-content.children", "outputs": {}, "inputs": [], "state": []}', "application/json", b"takes 1 inputs"),
    (b'{"output": "page-content.children", "outputs": {}, "inputs": [7], "state": [{"id": "url", "property": "search"}]}',
     "application/json", b"inputs[0] must be an object"),
    (b'{"output": "page-content.children", "outputs": {}, "inputs": [{"id": "case-id", "property": "data", "value": 1}],'
     b' "state": [{"id": "url", "property": "search"}]}', "application/json", b"inputs[0] must be the 'pathname' property of url"),
    (b'{"output": "page-content.children", "changedPropIds": [{"a": 1}]}', "application/json", b"changedPropIds"),
    (b'{"output": "page-content.children", "outputs": {}, "inputs": [{"id": "url", "property": "pathname", "value": ["/case/P001"]}],'
     b' "state": [{"id": "url", "property": "search", "value": ""}]}', "application/json", b"url.pathname: Input should be a valid string"),
])
def test_malformed_callback_requests_are_400_with_a_message(client, workspace, body, content_type, message):
    before = _rows_written(workspace)
    response = client.post("/_dash-update-component", data=body, content_type=content_type)
    assert response.status_code == 400, response.data[:300]
    assert message in response.data and b"nothing was done" in response.data
    assert _rows_written(workspace) == before


def test_a_callback_request_that_is_not_json_is_415(client, workspace):
    before = _rows_written(workspace)
    response = client.post("/_dash-update-component", data=b'{"output": "page-content.children"}', content_type="text/plain")
    assert response.status_code == 415 and b"nothing was done" in response.data
    assert _rows_written(workspace) == before


def test_review_save_with_the_wrong_shape_is_400_and_saves_nothing(client, app, workspace):
    good = callback_body(callback_dependency(app, "review-versions.data"), {}, [], {"modality": ["slide", "patient", "report"]})
    history = review_history(workspace.store, "P001")
    for broken in ({**good, "outputs": good["outputs"][:2]}, {**good, "state": good["state"][:-1]},
                   {**good, "inputs": [{"id": "review-save", "property": "n_clicks", "value": 1}]}):
        response = client.post("/_dash-update-component", json=broken)
        assert response.status_code == 400, response.data[:300]
    assert review_history(workspace.store, "P001") == history


def test_oversized_request_is_413_before_anything_runs(client, workspace):
    before = _rows_written(workspace)
    padding = "x" * (MAX_REQUEST_BYTES + 1)
    response = client.post("/_dash-update-component", data=json.dumps({"output": "page-content.children", "pad": padding}),
                           content_type="application/json")
    assert response.status_code == 413 and b"MiB" in response.data
    assert client.post("/login", data={"username": "x", "password": padding}).status_code == 413
    assert _rows_written(workspace) == before


def _what_if(client, app, values: dict, visit: int = 2, patient_id: str = "P001"):
    rows = [{"feature": name, "value": value} for name, value in values.items()]
    return post_callback(client, app, "whatif-store.data@", {("visit-edit-apply", "n_clicks"): 1, ("visit-edit-table", "rowData"): rows,
                                                               ("selected-visit", "data"): visit, ("patient-id", "data"): patient_id},
                          ["visit-edit-apply.n_clicks"])


def test_non_finite_what_if_values_get_a_message_per_field(client, app, workspace):
    spec = workspace.manifest(workspace.models_for("sequence")[0]).input
    f1, f2, f3, f4 = spec.features[:4]
    before = _rows_written(workspace)
    response = _what_if(client, app, {f1: "NaN", f2: "inf", f3: "1e999", f4: "-Infinity"})
    assert response.status_code == 200
    answer = response.get_json()["response"]
    assert answer["whatif-store"]["data"] is None  # nothing is computed from the edit
    messages = json.dumps(answer["visit-edit-errors"]["children"])
    for name, raw in ((f1, "NaN"), (f2, "inf"), (f3, "1e999"), (f4, "-Infinity")):
        assert f"{name}: '{raw}' is not a finite number" in messages, messages[:500]
    assert _rows_written(workspace) == before  # no what_if audit event for a refused edit


@pytest.mark.parametrize(("visit", "store"), [
    ("abc", None), (None, None), (10_000, None), (True, None),
    (2, "not a dict"), (2, {"visit": "x", "values": []}), (2, {"visit": 2, "values": {"age": float("inf")}}),
])
def test_hand_made_patient_callbacks_are_4xx_never_500(client, app, visit, store):
    show = post_callback(client, app, "patient-risk.figure", {("selected-visit", "data"): visit, ("whatif-store", "data"): store,
                                                               ("patient-id", "data"): "P001"}, ["whatif-store.data"])
    assert show.status_code in (200, 400), show.data[:300]
    rows = post_callback(client, app, "..visit-edit-table.rowData", {("selected-visit", "data"): visit, ("patient-id", "data"): "P001"},
                          ["selected-visit.data"])
    assert rows.status_code in (200, 400), rows.data[:300]
    applied = post_callback(client, app, "whatif-store.data@", {("visit-edit-apply", "n_clicks"): 1, ("visit-edit-table", "rowData"): "rows",
                                                                  ("selected-visit", "data"): visit, ("patient-id", "data"): ["P001"]},
                             ["visit-edit-apply.n_clicks"])
    assert applied.status_code == 400 and b"nothing was done" in applied.data


def test_unknown_patient_in_a_callback_is_404_with_its_message(client, app):
    response = post_callback(client, app, "patient-risk.figure", {("selected-visit", "data"): 0, ("patient-id", "data"): "P999"},
                              ["selected-visit.data"])
    assert response.status_code == 404 and b"P999" in response.data


def test_huge_report_edit_is_refused_before_anything_is_computed(client, app, workspace, monkeypatch):
    import dashboard.components.report_panel as report_page

    explained = []
    monkeypatch.setattr(report_page, "explain_report", lambda *a, **k: explained.append(a) or pytest.fail("explained"))
    before = _rows_written(workspace)
    values = {("report-edit-run", "n_clicks"): 1, ("report-edit", "value"): "carcinoma " * (MAX_EDITED_REPORT_CHARS // 10 + 1),
              ("report-id", "data"): "P001-R1", ("lime-class", "value"): workspace.manifest(workspace.models_for("report")[0]).class_names[0],
              ("lime-num-features", "value"): 6, ("lime-num-samples", "value"): 500, ("lime-seed", "value"): 0, ("lime-kernel-width", "value"): 25}
    for edited, expected in ((values[("report-edit", "value")], "limited to 100,000 characters"),
                             ("word " * 5000, "limited to 3,000")):
        response = post_callback(client, app, "report-edit-result.children", {**values, ("report-edit", "value"): edited},
                                  ["report-edit-run.n_clicks"])
        assert response.status_code == 200
        answer = response.get_json()["response"]
        assert expected in json.dumps(answer["report-edit-error"]["children"])
    not_text = post_callback(client, app, "report-edit-result.children", {**values, ("report-edit", "value"): {"not": "text"}},
                             ["report-edit-run.n_clicks"])
    assert not_text.status_code == 400 and b"report-edit.value: Input should be a valid string" in not_text.data
    assert explained == [] and _rows_written(workspace) == before


def test_full_module_checkpoint_is_refused_with_a_clear_message(workspace, tmp_path):
    """torch.save of a whole module pickles its classes: loading it would import and run code. It is refused."""
    import shutil

    folder = tmp_path / "progression-gru"
    shutil.copytree(workspace.models_dir / "progression-gru", folder)
    net = load_model(folder, torch.device("cpu")).module
    torch.save(net, folder / "weights.pt")
    write_manifest(folder, read_manifest(folder).model_copy(update={"weights": "weights.pt", "weights_sha256": file_sha256(folder / "weights.pt")}))
    with pytest.raises(ModelLoadError) as refused:
        load_model(folder, torch.device("cpu"))
    message = str(refused.value)
    assert "refused to load weights.pt" in message and "run code" in message and ".safetensors" in message


def test_workspace_file_with_unknown_keys_and_wrong_types_names_every_problem(tmp_path):
    (tmp_path / "workspace.toml").write_text('name = 7\ncolour = "blue"\nmodels = "niv-gru"\n[database]\nurl = "x"\n')
    with pytest.raises(WorkspaceError) as bad:
        read_workspace_config(tmp_path)
    message = str(bad.value)
    for problem in ("name", "colour", "models", "database"):
        assert problem in message, message
    assert "workspace.toml is invalid" in message


def test_patient_attribute_declarations_are_checked_and_shown_with_their_units(tmp_path):
    (tmp_path / "workspace.toml").write_text('name = "x"\n[patient_attributes.age]\nlabel = "Age"\nunit = "years"\n'
                                             '[patient_attributes.psa]\nlabel = "PSA"\nunit = "ng/mL"\n[patient_attributes.stage]\nlabel = "Stage"\n')
    declared = read_workspace_config(tmp_path).patient_attributes
    assert list(declared) == ["age", "psa", "stage"]  # the order the file gives
    values = {"stage": "cT2a", "age": 67.0, "psa": 6.4321, "unknown": 1}
    assert attribute_texts(declared, values) == [("Age", "67 years"), ("PSA", "6.43 ng/mL"), ("Stage", "cT2a")]
    assert declared["psa"].text(12.0, with_unit=False) == "12" and declared["age"].text(None) == ""
    for bad in ('[patient_attributes."age; DROP"]\nlabel = "A"\n', '[patient_attributes.age]\nlabel = ""\n',
                '[patient_attributes.age]\nlabel = "Age"\ncolour = "red"\n'):
        (tmp_path / "workspace.toml").write_text('name = "x"\n' + bad)
        with pytest.raises(WorkspaceError, match="patient_attributes"):
            read_workspace_config(tmp_path)
