"""The demo's CLAM-SB head over its CLAM feature files, in headless Chromium: attention layer with its legend, the top-k
gallery, the encoder's licence, and a region refinement job that completes and draws its map."""

from __future__ import annotations

from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from tests.helpers import js_click

SLIDE = "P010-S1"
HEAD = "clam-sb-features"


def _wait(browser, condition, timeout=60):
    return WebDriverWait(browser, timeout).until(condition)


def _loaded_tiles(browser, fragment: str) -> list[str]:
    return browser.execute_script(
        "return [...document.querySelectorAll('img.leaflet-tile-loaded')].map(i => i.src).filter(s => s.includes(arguments[0]))", fragment)


def test_clam_sb_attention_gallery_and_region_refinement(live_server, browser):
    browser.get(f"{live_server.url}/slide/{SLIDE}")
    _wait(browser, lambda b: b.find_elements(By.ID, "milf-head"))
    assert HEAD in browser.find_element(By.ID, "milf-head").text

    # The attention layer (CLAM percentiles by default) is drawn from the feature file, with its legend.
    _wait(browser, lambda b: _loaded_tiles(b, f"/mil/{HEAD}/"))
    assert all("layer=attention%3Apercentile" in src for src in _loaded_tiles(browser, f"/mil/{HEAD}/"))
    legend = browser.find_element(By.ID, "milf-legend")
    assert legend.is_displayed() and "attention percentile" in legend.text and "100" in legend.text

    # The prediction with its top-k and bottom-k patches, read through OpenSlide; the encoder's licence.
    _wait(browser, lambda b: b.find_elements(By.CSS_SELECTOR, "#milf-topk img"))
    assert len(browser.find_elements(By.CSS_SELECTOR, "#milf-topk img")) == 6
    assert len(browser.find_elements(By.CSS_SELECTOR, "#milf-bottomk img")) == 6
    assert browser.execute_script("return [...document.querySelectorAll('#milf-topk img')].every(i => i.naturalWidth === 96)")
    assert "P(pattern 4/5 present)" in browser.find_element(By.ID, "milf-prediction-line").text
    assert "licence: CC0-1.0" in browser.find_element(By.ID, "milf-licence").text

    # Zoom in twice, then refine the region in view: the job completes and its fine map is drawn over the slide.
    for _ in range(2):
        browser.find_element(By.CSS_SELECTOR, "#slide-map a.leaflet-control-zoom-in").click()
        browser.implicitly_wait(0)
    _wait(browser, lambda b: "leaflet-zoom-anim" not in b.find_element(By.ID, "slide-map").get_attribute("class"))
    js_click(browser, browser.find_element(By.ID, "milf-refine"))
    _wait(browser, lambda b: "Refining" in b.find_element(By.ID, "milf-refine-status").text or
          "Refinement done" in b.find_element(By.ID, "milf-refine-status").text)
    _wait(browser, lambda b: "Refinement done" in b.find_element(By.ID, "milf-refine-status").text, timeout=240)
    _wait(browser, lambda b: b.find_elements(By.ID, "milf-refined-summary"))  # drawn by the next callback
    summary = browser.find_element(By.ID, "milf-refined-summary").text
    assert "50% overlap" in summary and "against the slide's scores" in summary
    _wait(browser, lambda b: _loaded_tiles(b, "layer=refine%3A"))
    assert browser.find_elements(By.CSS_SELECTOR, "#milf-refined-topk img")
    assert "percentile" in browser.find_element(By.ID, "milf-refined-legend").text
