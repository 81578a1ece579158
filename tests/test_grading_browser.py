"""Grades and honest metrics in headless Chromium: the Models page's threshold control, confidence intervals and
calibration plot; the slide panel's grade group; the worklist's model vs report grade group."""

from __future__ import annotations

from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import WebDriverWait

from dashboard.pages.cohort import GRADE_COLUMN
from tests.helpers import element_text, grid_column, js_click

MODEL = "mil-lse"  # its positive slides score 0.6-0.9: a high threshold loses them
SLIDE, PATIENT = "P010-S1", "P010"


def _wait(browser, condition, timeout=90):
    return WebDriverWait(browser, timeout).until(condition)


def _by_pattern(browser, kind: str, model: str = MODEL):
    found = browser.find_elements(By.XPATH, f"//*[contains(@id, '\"type\":\"{kind}\"') and contains(@id, '\"{model}\"')]")
    return found[0] if found else None


def _confusion_cells(browser) -> list[str]:
    """The confusion matrix's texts (counts and shares), its title left out."""
    graph = _by_pattern(browser, "model-confusion")
    return [line for line in graph.text.splitlines() if "threshold" not in line] if graph else []


def test_models_page_threshold_changes_the_operating_point_and_confusion_matrix(live_server, browser):
    browser.get(f"{live_server.url}/models")
    _wait(browser, lambda b: _by_pattern(b, "model-operating-point") is not None)
    assert "Synthetic demo data" in element_text(browser, "demo-notice")
    card = browser.find_element(By.ID, f"model-{MODEL}")
    intervals = [e.text for e in card.find_elements(By.CLASS_NAME, "metric-ci")]
    assert len(intervals) == 3 and all(t.startswith("95 % CI ") for t in intervals), intervals
    assert "resampling patients" in _by_pattern(browser, "model-ci-note").text
    calibration = _by_pattern(browser, "model-calibration")
    assert calibration is not None and "Calibration" in calibration.text and "Brier" in calibration.text

    before = _by_pattern(browser, "model-operating-point").text
    cells_before = _confusion_cells(browser)
    assert "At threshold 0.50" in before and "Sensitivity" in before and "NPV" in before
    box = _by_pattern(browser, "model-threshold").find_element(By.CSS_SELECTOR, "input[type=number]")
    browser.execute_script("arguments[0].scrollIntoView({block: 'center'})", box)
    box.send_keys(Keys.CONTROL, "a")
    box.send_keys("0.95", Keys.TAB)
    _wait(browser, lambda b: "At threshold 0.95" in _by_pattern(b, "model-operating-point").text)
    after = _by_pattern(browser, "model-operating-point").text
    _wait(browser, lambda b: "threshold 0.95" in _by_pattern(b, "model-confusion").text)
    sensitivity = float(after.split("Sensitivity ")[1].split()[0])
    assert sensitivity < float(before.split("Sensitivity ")[1].split()[0])  # a higher threshold misses positives
    assert _confusion_cells(browser) != cells_before


def test_slide_panel_worklist_and_case_report_show_grade_groups(live_server, browser, workspace):
    browser.get(f"{live_server.url}/slide/{SLIDE}")
    _wait(browser, lambda b: b.find_elements(By.ID, "heat-compute"))
    js_click(browser, "heat-compute")
    _wait(browser, lambda b: element_text(b, "grade-group-value"), timeout=300)
    value = element_text(browser, "grade-group-value")
    assert value.startswith("ISUP grade group") or value == "No tumour"
    assert "10%" in element_text(browser, "grade-rule") and "ISUP 2014" in element_text(browser, "grade-rule")
    assert "Gleason pattern" in browser.find_element(By.ID, "grade-fractions").text
    assert "GG3" not in browser.find_element(By.ID, "grade-fractions").text
    # The other specimen type applies the other rule, and says so.
    other = browser.find_element(By.XPATH, "//*[@id='grade-specimen']//input[not(@checked)]")
    js_click(browser, other)
    _wait(browser, lambda b: "Radical prostatectomy" in element_text(b, "grade-rule") or "Needle biopsy" in element_text(b, "grade-rule"))

    browser.get(f"{live_server.url}/")
    _wait(browser, lambda b: PATIENT in grid_column(b, "cohort-table", "patient_id"))
    cell = grid_column(browser, "cohort-table", GRADE_COLUMN)[grid_column(browser, "cohort-table", "patient_id").index(PATIENT)]
    assert " vs " in cell, cell
    headers = [h.text for h in browser.find_elements(By.CSS_SELECTOR, "#cohort-table .ag-header-cell-text")]
    assert headers.count("pattern 4/5 present") == 0 and "mil-attention" in headers and "mil-lse" in headers
    agreement = cell.split(" · ")[-1]
    if agreement in ("agree", "disagree"):  # the filter keeps the patient on its side only
        js_click(browser, browser.find_element(By.XPATH, f"//*[@id='cohort-grade']//label[starts-with(normalize-space(), '{agreement.title()}')]"))
        _wait(browser, lambda b: f"grade groups: {agreement}" in element_text(b, "cohort-status"))
        _wait(browser, lambda b: grid_column(b, "cohort-table", GRADE_COLUMN)
              and all(c.endswith(agreement) for c in grid_column(b, "cohort-table", GRADE_COLUMN)))

    # The case report lists the slide's grade beside its report's.
    from core.export.case_figures import default_case_view
    from core.export.case_report import case_report_content

    outputs = case_report_content(workspace, default_case_view(workspace, PATIENT), []).model_outputs
    graded = [o for o in outputs if o["subject"].startswith(f"slide {SLIDE}")]
    assert graded and graded[0]["output"].startswith("class map: ") and "grade group" in graded[0]["output"]
    assert graded[0]["label"].startswith("report ")
