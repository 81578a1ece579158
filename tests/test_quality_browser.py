"""Slide quality control and stain normalisation in headless Chromium: the QC layers with their legends, the share of
tissue each flag covers, the exclusion switch, and base tiles as the patch model sees them."""

from __future__ import annotations

from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from core.slides.quality import FLAG_LABELS
from tests.test_slide_browser import _open_dropdown, _tile_srcs

SLIDE = "P006-S1"


def _wait(browser, condition, timeout=60):
    return WebDriverWait(browser, timeout).until(condition)


def _switch(browser, element_id: str) -> None:
    box = browser.find_element(By.ID, element_id)
    browser.execute_script("arguments[0].scrollIntoView({block: 'center'}); arguments[0].click()", box)


def _choose(browser, option: str) -> None:
    """Click a dropdown option by script: the dropdown's search box may lie over the first option."""
    browser.execute_script("arguments[0].click()", browser.find_element(By.XPATH, option))


def test_quality_layers_legends_exclusion_and_normalised_tiles(live_server, browser):
    browser.get(f"{live_server.url}/slide/{SLIDE}")
    _wait(browser, lambda b: _tile_srcs(b, "/tiles/"))
    assert "Compute the heatmap" in browser.find_element(By.ID, "qc-summary").text
    browser.find_element(By.ID, "heat-compute").click()
    _wait(browser, lambda b: "tissue patches" in b.find_element(By.ID, "heat-status").text, timeout=180)

    # The slide panel: every flag with the share of tissue it covers.
    _wait(browser, lambda b: b.find_elements(By.ID, "qc-table"))
    table = browser.find_element(By.ID, "qc-table").text
    assert all(label in table for label in FLAG_LABELS.values()) and "% of tissue" in table
    assert "carry a QC flag" in browser.find_element(By.ID, "qc-excluded-note").text

    # Each QC layer: its tiles and its legend (colour, what it marks, the rule).
    for flag, label in FLAG_LABELS.items():
        _open_dropdown(browser, "heat-layer-choice")
        option = f"//*[@role='option' and contains(., 'QC: {label}')]"
        _wait(browser, lambda b, o=option: b.find_elements(By.XPATH, o))
        _choose(browser, option)
        _wait(browser, lambda b, f=flag: any(f"layer=qc%3A{f}" in s for s in _tile_srcs(b, "/heatmap/")))
        legend = _wait(browser, lambda b: b.find_elements(By.ID, "qc-legend"))[0]
        assert label in legend.text and legend.find_element(By.CLASS_NAME, "qc-swatch").is_displayed()

    # Excluding flagged patches: the map's tiles say so and the panel counts the patches left out.
    _switch(browser, "qc-exclude")
    _wait(browser, lambda b: "excluded" in b.find_element(By.ID, "qc-excluded-note").text)
    _open_dropdown(browser, "heat-layer-choice")
    _wait(browser, lambda b: b.find_elements(By.XPATH, "//*[@role='option' and contains(., 'Tumour probability')]"))
    _choose(browser, "//*[@role='option' and contains(., 'Tumour probability')]")
    _wait(browser, lambda b: any("qc=exclude" in s for s in _tile_srcs(b, "/heatmap/")))
    _wait(browser, lambda b: b.find_elements(By.ID, "mil-prediction-kept"))
    assert "Without QC-flagged patches" in browser.find_element(By.ID, "mil-prediction-kept").text

    # Show normalised: the base tiles come as the patch model (Macenko) sees them.
    assert "Macenko" in browser.find_element(By.ID, "base-normalised-note").text
    _switch(browser, "base-normalised")
    _wait(browser, lambda b: any("normalise=patch-cnn" in s for s in _tile_srcs(b, "/tiles/")))
    _switch(browser, "base-normalised")
    _wait(browser, lambda b: any("/tiles/" in s and "normalise" not in s for s in _tile_srcs(b, "/tiles/")))
