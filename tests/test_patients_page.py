"""Cohort views of the sequence model: numbers from the store, and the page in headless Chromium."""

from __future__ import annotations

import numpy as np
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait
from sqlalchemy import func, select

from core.explain.cohort_explanations import cohort_shap, dataset_overview, filtered_patient_ids, visit_importance_page
from core.explain.patient_explanations import PatientExplainers
from core.store.schema import Patient, Visit


def test_cohort_explanationss_match_the_store(workspace):
    explainers = PatientExplainers(workspace)
    everyone = filtered_patient_ids(explainers)
    stage = filtered_patient_ids(explainers, {"clinical_stage": "cT1c"})
    with workspace.store.session() as s:
        assert len(everyone) == s.scalar(select(func.count()).select_from(Patient))
        assert 0 < len(stage) == s.scalar(select(func.count()).select_from(Patient).where(Patient.attributes["clinical_stage"].as_string() == "cT1c"))
        n_visits = s.scalar(select(func.count()).select_from(Visit))
    overview = dataset_overview(explainers, everyone)
    assert overview.visits == n_visits == sum(overview.sequence_lengths) and overview.patients == len(everyone)
    assert sum(overview.label_counts.values()) == n_visits and min(overview.visit_intervals) > 0
    shap_values = cohort_shap(explainers, stage)
    assert shap_values.phi.shape[0] == sum(len(explainers.explain(p).days) for p in stage)
    importance = shap_values.mean_abs()
    assert list(importance.values()) == sorted(importance.values(), reverse=True)
    ids, scores = visit_importance_page(explainers, everyone, page=1, page_size=15)
    assert ids == everyone[15:30] and all(np.all(np.abs(s) <= 1) for s in scores)


def test_patients_page_filters_and_pages(live_server, browser):
    browser.get(f"{live_server.url}/patients")
    wait = WebDriverWait(browser, 60)
    wait.until(lambda b: "page 1 of" in b.find_element(By.ID, "patients-page-status").text)
    total = int(browser.find_element(By.ID, "patients-page-status").text.split()[0])
    wait.until(lambda b: b.find_elements(By.CSS_SELECTOR, "#cohort-beeswarm .js-plotly-plot"))
    browser.execute_script("arguments[0].click()", browser.find_element(By.ID, "patients-next"))
    wait.until(lambda b: "page 2 of" in b.find_element(By.ID, "patients-page-status").text)
    # Dash writes a pattern id as JSON; its quotes cannot go in a CSS id selector, so it is matched by XPath.
    browser.find_element(By.XPATH, """//*[@id='{"name":"clinical_stage","type":"patients-attribute"}']""").click()
    wait.until(lambda b: b.find_elements(By.XPATH, "//*[@role='option' and normalize-space(.)='cT1c']"))
    browser.find_element(By.XPATH, "//*[@role='option' and normalize-space(.)='cT1c']").click()
    wait.until(lambda b: "page 1 of" in b.find_element(By.ID, "patients-page-status").text)
    assert int(browser.find_element(By.ID, "patients-page-status").text.split()[0]) < total
