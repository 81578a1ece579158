"""The demo's CLAM-SB head over its CLAM feature files, in headless Chromium: attention layer with its legend, the top-k
gallery, the encoder's licence, and a region refinement job that completes and draws its map."""

from __future__ import annotations

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait
from sqlalchemy import delete

from core.store.database import open_store
from core.store.schema import Job
from tests.helpers import LiveServer, chromium_driver, copy_demo, element_text, js_click, sign_in_browser

pytestmark = pytest.mark.browser

SLIDE = "P010-S1"
HEAD = "clam-sb-features"


def _wait(browser, condition, timeout=60):
    return WebDriverWait(browser, timeout).until(condition)


def _loaded_tiles(browser, fragment: str) -> list[str]:
    return browser.execute_script(
        "return [...document.querySelectorAll('img.leaflet-tile-loaded')].map(i => i.src).filter(s => s.includes(arguments[0]))", fragment)


@pytest.fixture(scope="module")
def served(demo_workspace, tmp_path_factory):
    """The slide's own copy of the demo, served, with an empty job table: the jobs other browser tests leave queued on
    the shared demo count against the reviewer's limit of jobs and would refuse the refinement."""
    root = copy_demo(demo_workspace, tmp_path_factory.mktemp("mil-browser") / "ws", (SLIDE,))
    store = open_store(f"sqlite:///{root / 'cases.db'}")
    with store.session() as s:
        s.execute(delete(Job))
    store.dispose()
    server = LiveServer(root)
    driver = chromium_driver()
    sign_in_browser(driver, server.url)
    yield server, driver
    driver.quit()
    server.stop()


def test_clam_sb_attention_gallery_and_region_refinement(served):
    live_server, browser = served
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
    # Each step waits for the magnification readout to change: the map reports its extent (which the refinement
    # reads) only once it has moved, and a click sent before the map is ready moves nothing.
    for _ in range(2):
        before = element_text(browser, "magnification")
        browser.find_element(By.CSS_SELECTOR, "#slide-map a.leaflet-control-zoom-in").click()
        _wait(browser, lambda b, shown=before: element_text(b, "magnification") not in ("", shown))
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
