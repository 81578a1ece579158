"""A lab's models from the command line (``models add|list|remove``, ``fit``, ``predict``, ``check``), and a cohort with
bad visit values: the patients the model cannot read are flagged and left out, every other view still renders."""

from __future__ import annotations

import math
import tomllib
from pathlib import Path

import pytest
import torch
from sqlalchemy import select

from core.models.sequence import VisitSequenceNet
from core.store.schema import InvalidAttribute, Prediction, Visit
from run_dashboard import main
from tests.cohort_files import FEATURES, write_labelled_cohort
from tests.helpers import add_test_accounts

pytestmark = pytest.mark.store  # the command line against a real SQLite case store

LAB_PARAMS = {"n_numeric": 2, "category_sizes": [2], "cell": "lstm", "hidden": 8, "elapsed_time": True}


@pytest.fixture(scope="module")
def lab_workspace(tmp_path_factory) -> Path:
    """120 patients imported; a lab's own LSTM added (no missing-value policy: it needs every value) and a GRU fitted here."""
    folder = tmp_path_factory.mktemp("lab")
    files = write_labelled_cohort(folder, 120)
    root = folder / "ws"
    assert main(["import", "--workspace", str(root), "--patients", str(files["patients"]), "--visits", str(files["visits"])]) == 0
    torch.manual_seed(0)
    torch.save(VisitSequenceNet(**LAB_PARAMS).state_dict(), folder / "lab_lstm.pt")
    (folder / "params.toml").write_text("n_numeric = 2\ncategory_sizes = [2]\ncell = \"lstm\"\nhidden = 8\nelapsed_time = true\n")
    (folder / "input.toml").write_text(f"features = {FEATURES!r}\nfeature_means = [75.0, 9.0]\nfeature_stds = [12.0, 2.0]\n"
                                       "elapsed_time = true\nelapsed_scale_days = 30.0\n[categorical]\nonset_type = [\"spinal\", \"bulbar\"]\n")
    assert main(["models", "add", "--workspace", str(root), "--id", "lab-lstm", "--task", "sequence", "--architecture", "visit_sequence_net",
                 "--weights", str(folder / "lab_lstm.pt"), "--params", str(folder / "params.toml"), "--input", str(folder / "input.toml"),
                 "--class-names", "no NIV,NIV within 90 days"]) == 0
    assert main(["fit", "--workspace", str(root), "--task", "sequence", "--id", "fitted-gru", "--class-names", "no NIV,NIV within 90 days",
                 "--sidecar", str(files["sidecar"]), "--max-epochs", "15", "--bootstrap", "200"]) == 0
    add_test_accounts(root)
    return root


def test_models_add_registers_a_loading_model_and_list_shows_it(lab_workspace, capsys):
    config = tomllib.loads((lab_workspace / "workspace.toml").read_text())
    assert config["models"] == ["lab-lstm", "fitted-gru"] and set(config["manifest_sha256"]) == {"lab-lstm", "fitted-gru"}
    manifest = tomllib.loads((lab_workspace / "models" / "lab-lstm" / "model.toml").read_text())
    assert manifest["weights"] == "weights.pt" and manifest["input"]["elapsed_scale_days"] == 30.0
    capsys.readouterr()
    assert main(["models", "list", "--workspace", str(lab_workspace)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[1].split()[:3] == ["lab-lstm", "sequence", "visit_sequence_net"] and out[1].split()[-1] == "0"
    assert out[2].split()[0] == "fitted-gru" and out[2].split()[-1] == "360"  # 120 patients x (2 visits + the patient)


def test_models_add_refuses_weights_that_do_not_fit_and_leaves_nothing(lab_workspace, tmp_path, capsys):
    torch.save(VisitSequenceNet(n_numeric=3).state_dict(), tmp_path / "other.pt")
    capsys.readouterr()
    assert main(["models", "add", "--workspace", str(lab_workspace), "--id", "misfit", "--task", "sequence", "--architecture",
                 "visit_sequence_net", "--weights", str(tmp_path / "other.pt"), "--class-names", "a,b"]) == 2
    assert "error: model misfit: weights do not fit architecture visit_sequence_net" in capsys.readouterr().err
    assert not (lab_workspace / "models" / "misfit").exists()
    assert "misfit" not in tomllib.loads((lab_workspace / "workspace.toml").read_text())["models"]


def test_fit_writes_held_out_metrics_with_patient_bootstrap_intervals(lab_workspace):
    manifest = tomllib.loads((lab_workspace / "models" / "fitted-gru" / "model.toml").read_text())
    m = manifest["metrics"]
    assert 0.5 < m["auc"] <= 1 and m["auc_ci95"][0] <= m["auc"] <= m["auc_ci95"][1]
    assert m["n_patients_test"] == 24 and m["bootstrap_resamples"] == 200 and m["calibration"].startswith("Platt scaling on 18 ")
    spec = manifest["input"]
    assert spec["features"] == ["alsfrs_respiratory", "fvc_percent"] and spec["categorical"] == {"onset_type": ["bulbar", "spinal"]}
    assert spec["feature_units"] == {"fvc_percent": "% predicted", "alsfrs_respiratory": "points"}
    assert spec["feature_ranges"]["fvc_percent"] == [10.0, 130.0]
    assert spec["missing"] == {"alsfrs_respiratory": "cohort_mean", "fvc_percent": "carry_forward", "onset_type": "carry_forward"}
    assert spec["elapsed_scale_days"] == 100.0


def break_three_patients(root: Path) -> None:
    """L00001's first visit has no FVC (None), L00002's lacks its ALSFRS-R key, and a NaN for L00003 is refused."""
    from core.workspace import open_workspace

    ws = open_workspace(root)
    with ws.store.session() as s:
        first = s.scalars(select(Visit).where(Visit.patient_id == "L00001").order_by(Visit.day)).first()
        first.features = {**first.features, "fvc_percent": None}
        second = s.scalars(select(Visit).where(Visit.patient_id == "L00002").order_by(Visit.day)).first()
        second.features = {k: v for k, v in second.features.items() if k != "alsfrs_respiratory"}
    with pytest.raises(InvalidAttribute, match="visit feature 'fvc_percent' is nan; store a finite number"):
        with ws.store.session() as s:
            s.scalars(select(Visit).where(Visit.patient_id == "L00003")).first().features = {"fvc_percent": math.nan}
    ws.store.dispose()


def test_a_none_a_nan_and_a_missing_key_leave_the_cohort_working(lab_workspace, capsys):
    from core.workspace import open_workspace

    break_three_patients(lab_workspace)
    capsys.readouterr()
    assert main(["check", "--workspace", str(lab_workspace)]) == 1
    table = capsys.readouterr().out.splitlines()
    assert table[1:] == [
        "visits       lab-lstm: L00001  patient 'L00001', visit on day 0: no value for fvc_percent and the model declares no missing-value "
        "policy for it (carry_forward, cohort_mean or exclude_visit)",
        "visits       lab-lstm: L00002  patient 'L00002', visit on day 0: no value for alsfrs_respiratory and the model declares no "
        "missing-value policy for it (carry_forward, cohort_mean or exclude_visit)"]

    capsys.readouterr()
    assert main(["predict", "--workspace", str(lab_workspace)]) == 0
    out = capsys.readouterr().out
    assert "lab-lstm: 354 predictions stored; 2 patients left out (L00001, L00002)" in out
    assert "fitted-gru: 360 predictions stored" in out  # its declared policies fill both values

    from core.explain.cohort_explanations import cohort_shap, filtered_patient_ids, visit_importance_page
    from core.explain.patient_explanations import PatientExplainers
    from dashboard.pages.patients import left_out_notice

    ws = open_workspace(lab_workspace)
    explainers = PatientExplainers(ws)
    everyone = filtered_patient_ids(explainers)[:12]
    shap_values = cohort_shap(explainers, everyone)
    assert list(shap_values.left_out) == ["L00001", "L00002"] and len(shap_values.patient_ids) == 10
    assert all(math.isfinite(v) for v in shap_values.mean_abs().values())
    shown, _ = visit_importance_page(explainers, everyone, page=0, page_size=5)
    assert shown == ["L00000", "L00003", "L00004"]
    assert "2 patients left out of these plots" in str(left_out_notice(shap_values.left_out))
    ws.store.dispose()


def test_a_changed_model_leaves_its_scores_stale_until_predict(lab_workspace, tmp_path, capsys):
    from core.workspace import open_workspace

    torch.manual_seed(1)
    torch.save(VisitSequenceNet(**LAB_PARAMS).state_dict(), tmp_path / "retrained.pt")
    ws = open_workspace(lab_workspace)
    with ws.store.session() as s:
        before = {r for r in s.scalars(select(Prediction.weights_sha256).where(Prediction.model_id == "fitted-gru"))}
    ws.store.dispose()
    assert main(["fit", "--workspace", str(lab_workspace), "--task", "sequence", "--id", "fitted-gru", "--max-epochs", "3",
                 "--bootstrap", "50", "--seed", "3"]) == 0
    ws = open_workspace(lab_workspace)
    with ws.store.session() as s:
        after = {r for r in s.scalars(select(Prediction.weights_sha256).where(Prediction.model_id == "fitted-gru"))}
    assert len(after) == 1 and after != before and after == {ws.manifest("fitted-gru").weights_sha256}
    ws.store.dispose()


def test_models_remove_takes_its_predictions(lab_workspace, tmp_path, capsys):
    from core.workspace import open_workspace

    torch.save(VisitSequenceNet(**LAB_PARAMS).state_dict(), tmp_path / "spare.pt")
    args = ["--workspace", str(lab_workspace), "--id", "spare"]
    assert main(["models", "add", *args, "--task", "sequence", "--architecture", "visit_sequence_net", "--weights", str(tmp_path / "spare.pt"),
                 "--params", str(lab_workspace.parent / "params.toml"), "--input", str(lab_workspace.parent / "input.toml"), "--class-names", "a,b"]) == 0
    assert main(["predict", "--workspace", str(lab_workspace), "--models", "spare"]) == 0
    capsys.readouterr()
    assert main(["models", "remove", *args]) == 0
    assert capsys.readouterr().out.startswith("model spare removed with its ")
    ws = open_workspace(lab_workspace)
    with ws.store.session() as s:
        assert s.scalar(select(Prediction.id).where(Prediction.model_id == "spare")) is None
    assert "spare" not in ws.config.models and not (lab_workspace / "models" / "spare").exists()
    ws.store.dispose()


def test_platt_scaling_matches_an_unregularised_logistic_regression():
    import numpy as np
    from sklearn.linear_model import LogisticRegression

    from core.training.fit_sequence import fit_platt

    rng = np.random.default_rng(0)
    logits = rng.normal(2, 2, 300)
    labels = (rng.random(300) < 1 / (1 + np.exp(-(0.5 * logits - 1.5)))).astype(int)
    reference = LogisticRegression(C=1e12, tol=1e-10, max_iter=10_000).fit(logits[:, None], labels)
    a, b = fit_platt(logits, labels)
    assert a == pytest.approx(reference.coef_[0, 0], abs=1e-4) and b == pytest.approx(reference.intercept_[0], abs=1e-4)


def test_import_warns_of_visits_a_sequence_model_cannot_read(lab_workspace, tmp_path, capsys):
    from tests.cohort_files import write_csv

    patients = write_csv(tmp_path / "patients.csv", ["patient_id"], [["L09999"]])
    visits = write_csv(tmp_path / "visits.csv", ["patient_id", "day", *FEATURES, "onset_type"], [["L09999", "0", "", "9", "spinal"]])
    capsys.readouterr()
    assert main(["import", "--workspace", str(lab_workspace), "--patients", str(patients), "--visits", str(visits), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert ("warning: 1 imported patients' visits do not fit model lab-lstm, e.g. patient 'L09999', visit on day 0: no value for "
            "fvc_percent and the model declares no missing-value policy") in out
    assert "fitted-gru" not in out  # its policies fill the value


@pytest.mark.browser
def test_flagged_patients_are_listed_and_every_page_still_renders_in_a_browser(lab_workspace):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    from tests.helpers import LiveServer, element_text, headless_chromium, sign_in_browser

    break_three_patients(lab_workspace)
    server = LiveServer(lab_workspace)
    browser = headless_chromium()
    try:
        sign_in_browser(browser, server.url)
        wait = WebDriverWait(browser, 120)
        browser.get(f"{server.url}/patients")
        wait.until(lambda b: b.find_elements(By.ID, "patients-left-out-alert"))
        notice = element_text(browser, "patients-left-out-alert")
        assert notice.startswith("2 patients left out of these plots") and "L00001" in notice and "L00002" in notice
        wait.until(lambda b: b.find_elements(By.CSS_SELECTOR, "#cohort-beeswarm .js-plotly-plot"))
        assert browser.execute_script("return document.querySelector('#cohort-feature-importance .js-plotly-plot').data[0].x.length") == 4
        browser.get(f"{server.url}/")
        wait.until(lambda b: "L00000" in b.page_source and b.find_elements(By.CSS_SELECTOR, "#cohort-table .ag-cell"))
        for pid in ("L00000", "L00001", "L00002", "L00004"):
            browser.get(f"{server.url}/case/{pid}")
            wait.until(lambda b, p=pid: f"Case {p}" in b.page_source)
        browser.get(f"{server.url}/patient/L00004")
        wait.until(lambda b: "Visit" in element_text(b, "visit-outcome-card"))
        browser.get(f"{server.url}/patient/L00001")
        wait.until(lambda b: "do not fit model lab-lstm" in b.page_source and "no value for fvc_percent" in b.page_source)
    finally:
        browser.quit()
        server.stop()
