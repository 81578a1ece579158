"""Patient page in headless Chromium: pick a visit, what-if edit, invalid value, reset; stored visits untouched; SHAP background."""

from __future__ import annotations

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from core.store.cases import case_summary
from core.workspace import open_workspace
from tests.helpers import click_plot_point, edit_grid_cell, element_text, grid_cell, js_click

PATIENT = "P006"


def _wait(browser, condition, timeout=60):
    return WebDriverWait(browser, timeout).until(condition)


def _waterfall_labels(browser) -> str:
    return browser.execute_script(
        "const g = document.querySelector('#visit-waterfall .js-plotly-plot'); return g && g.data ? JSON.stringify([g.data[0].y, g.data[0].x]) : ''")


def _edit_cell(browser, feature: str, value: str) -> None:
    edit_grid_cell(browser, "visit-edit-table", "feature", feature, "value", value)


def _stored_visits(demo_workspace):
    ws = open_workspace(demo_workspace)
    with ws.store.session() as s:
        visits = [(v.id, v.day, dict(v.features), v.label) for v in case_summary(s, PATIENT).visits]
    ws.store.dispose()
    return visits


def test_visit_selection_what_if_invalid_value_and_reset(live_server, browser, demo_workspace):
    stored = _stored_visits(demo_workspace)
    browser.get(f"{live_server.url}/patient/{PATIENT}")
    _wait(browser, lambda b: "Visit" in element_text(b, "visit-outcome-card"))
    last_visit_label = element_text(browser, "visit-outcome-card").splitlines()[0]

    # Click the third visit on the risk trajectory.
    click_plot_point(browser, "patient-risk", 2)
    _wait(browser, lambda b: element_text(b, "visit-outcome-card").startswith("Visit 3"))
    assert element_text(browser, "visit-outcome-card").splitlines()[0] != last_visit_label
    stored_text = _wait(browser, lambda b: element_text(b, "visit-output"))
    stored_output = float(stored_text)
    waterfall_before = _waterfall_labels(browser)

    # What-if: a PSA that has shot up at this visit raises the predicted risk of progression.
    _edit_cell(browser, "psa", "80")
    _edit_cell(browser, "psa_density", "2.5")
    js_click(browser, "visit-edit-apply")
    _wait(browser, lambda b: element_text(b, "whatif-output"))  # drawn, with its number
    assert float(element_text(browser, "whatif-output")) > stored_output
    _wait(browser, lambda b: _waterfall_labels(b) != waterfall_before)
    assert "psa = 80" in _waterfall_labels(browser)
    assert "what-if" in browser.execute_script("return JSON.stringify(document.querySelector('#patient-risk .js-plotly-plot').data.map(t => t.name))")

    # An invalid value gets a message per cell.
    _edit_cell(browser, "psa", "abc")
    _edit_cell(browser, "free_psa_percent", "90")
    js_click(browser, "visit-edit-apply")
    _wait(browser, lambda b: b.find_elements(By.ID, "visit-edit-alert"))
    alert = element_text(browser, "visit-edit-alert")
    assert "psa: 'abc' is not a number" in alert and "free_psa_percent: must be between 1 and 60" in alert

    # Reset restores the stored values and drops the what-if.
    js_click(browser, "visit-edit-reset")
    _wait(browser, lambda b: not b.find_elements(By.ID, "whatif-output") and not b.find_elements(By.ID, "visit-edit-alert"))
    _wait(browser, lambda b: grid_cell(b, "visit-edit-table", "feature", "psa", "value").text == str(stored[2][2]["psa"]))
    _wait(browser, lambda b: element_text(b, "visit-output") == stored_text)  # the visit's card is drawn again after the reset

    assert _stored_visits(demo_workspace) == stored  # a what-if never writes


def _live_text(browser, element_id: str) -> str:
    """The element's text read in one script call: the note is re-rendered as the background changes, so an element
    found in one call can be gone by the next."""
    return browser.execute_script("const e = document.getElementById(arguments[0]); return e ? e.innerText : ''", element_id)


def _background_input(browser, kind: str):
    return browser.find_element(By.CSS_SELECTOR, f"#shap-background input[value='{kind}']")


def test_shap_background_selector_changes_the_waterfall_and_its_expected_value(live_server, browser, demo_workspace):
    from core.explain.patient_explanations import PatientExplainers

    ws = open_workspace(demo_workspace)
    explainers = PatientExplainers(ws)
    expected = {kind: explainers.explain(PATIENT, background=kind) for kind in ("zero", "cohort", "sampled")}
    ws.store.dispose()
    last = len(expected["zero"].days) - 1
    browser.get(f"{live_server.url}/patient/{PATIENT}")
    _wait(browser, lambda b: "Background" in _live_text(b, "shap-background-text"))
    assert "all-zero visit" in _live_text(browser, "shap-background-text")
    assert float(_live_text(browser, "visit-expected-value")) == round(float(expected["zero"].shap.base[last]), 3)
    assert _background_input(browser, "zero").is_selected()
    for kind, words in (("cohort", "cohort mean visit"), ("sampled", "32 cohort visits sampled")):
        before = _waterfall_labels(browser)
        js_click(browser, _background_input(browser, kind))
        _wait(browser, lambda b, words=words: words in _live_text(b, "shap-background-text"))
        _wait(browser, lambda b, before=before: _waterfall_labels(b) not in ("", before))
        assert float(_live_text(browser, "visit-expected-value")) == round(float(expected[kind].shap.base[last]), 3)
        start = browser.execute_script("return document.querySelector('#visit-waterfall .js-plotly-plot').data[0].x[0]")
        assert start == pytest.approx(float(expected[kind].shap.base[last]), abs=1e-9)  # the waterfall starts at that expected value
        assert _background_input(browser, kind).is_selected()
