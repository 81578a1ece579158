"""Slide page in headless Chromium: pan, zoom, compute the heatmap, and its opacity, class and threshold controls."""

from __future__ import annotations

import re
import time

from selenium.webdriver import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import WebDriverWait

from tests.helpers import js_click

SLIDE = "P010-S1"


def _wait(browser, condition, timeout=60):
    return WebDriverWait(browser, timeout).until(condition)


def _tile_srcs(browser, kind: str) -> list[str]:
    return browser.execute_script(
        "return [...document.querySelectorAll('img.leaflet-tile-loaded')].map(i => i.src).filter(s => s.includes(arguments[0]))", kind)


def _zoom_levels(srcs: list[str]) -> set[int]:
    return {int(m.group(1)) for s in srcs if (m := re.search(r"/(\d+)/\d+/\d+\.(?:jpeg|png)", s))}


def _heat_requests(browser) -> int:
    return browser.execute_script("return performance.getEntriesByType('resource').filter(e => e.name.includes('/heatmap/')).length")


def _open_dropdown(browser, element_id: str) -> None:
    """Scroll the dropdown into view and click it, again if the page was still moving (panels rendering above)."""
    from selenium.common.exceptions import ElementClickInterceptedException

    for _ in range(10):
        element = browser.find_element(By.ID, element_id)
        browser.execute_script("window.scrollTo(0, arguments[0].getBoundingClientRect().top + window.scrollY - 200)", element)
        try:
            element.click()
            return
        except ElementClickInterceptedException:
            time.sleep(0.5)
    raise AssertionError(f"{element_id} never became clickable")


def _set_number(browser, slider_id: str, value: float) -> None:
    box = browser.find_element(By.CSS_SELECTOR, f"#{slider_id} input[type=number]")
    box.send_keys(Keys.CONTROL, "a")
    box.send_keys(str(value), Keys.TAB)  # the slider takes the typed value when the box loses focus


def test_slide_viewer_pans_zooms_and_shows_the_heatmap(live_server, browser):
    browser.get(f"{live_server.url}/slide/{SLIDE}")
    _wait(browser, lambda b: _tile_srcs(b, "/tiles/"))
    start_levels = _zoom_levels(_tile_srcs(browser, "/tiles/"))
    assert "µm" in browser.find_element(By.ID, "scale-bar-text").text

    # Zoom in: tiles of the next Deep Zoom level load and the scale bar shortens its unit.
    scale_before = browser.find_element(By.ID, "scale-bar-text").text
    browser.find_element(By.CSS_SELECTOR, "#slide-map a.leaflet-control-zoom-in").click()
    _wait(browser, lambda b: max(_zoom_levels(_tile_srcs(b, "/tiles/"))) > max(start_levels))
    _wait(browser, lambda b: b.find_element(By.ID, "scale-bar-text").text != scale_before)

    # Pan: drag the map; the viewport reaches the overview box.
    box_before = browser.find_element(By.ID, "overview-box").get_attribute("style")
    ActionChains(browser).drag_and_drop_by_offset(browser.find_element(By.ID, "slide-map"), 180, 120).perform()
    _wait(browser, lambda b: b.find_element(By.ID, "overview-box").get_attribute("style") != box_before)

    # Compute the heatmap as a background job with progress; its tiles appear.
    browser.find_element(By.ID, "heat-compute").click()
    _wait(browser, lambda b: "tissue patches" in b.find_element(By.ID, "heat-status").text, timeout=120)
    _wait(browser, lambda b: _tile_srcs(b, "/heatmap/"))
    assert "100" in (browser.find_element(By.CSS_SELECTOR, "#heat-progress .progress-bar").get_attribute("aria-valuenow") or "")
    _wait(browser, lambda b: b.find_elements(By.ID, "ground-truth-table"))
    assert "Dice" in browser.find_element(By.ID, "ground-truth-table").text

    # Opacity is applied in the browser: the layer fades and no heatmap tile is fetched again.
    layer_opacity = "return [...document.querySelectorAll('.leaflet-layer')].find(l => l.querySelector('img[src*=\"/heatmap/\"]')).style.opacity"
    requests_before = _heat_requests(browser)
    _set_number(browser, "heat-opacity", 0.9)
    _wait(browser, lambda b: b.execute_script(layer_opacity) == "0.9")
    assert _heat_requests(browser) == requests_before

    # Threshold and class change the tile URLs, so tiles are fetched anew.
    _set_number(browser, "heat-threshold", 0.8)
    _wait(browser, lambda b: any("thr=0.8" in s for s in _tile_srcs(b, "/heatmap/")))
    _open_dropdown(browser, "heat-layer-choice")
    _wait(browser, lambda b: b.find_elements(By.XPATH, "//*[@role='option' and contains(., 'Class map')]"))
    js_click(browser, browser.find_element(By.XPATH, "//*[@role='option' and contains(., 'Class map')]"))  # the long layer list scrolls
    _wait(browser, lambda b: any("layer=argmax" in s for s in _tile_srcs(b, "/heatmap/")))

    # A click on the tissue selects the patch under the cursor and opens the inspector with CAM overlays.
    slide_map = browser.find_element(By.ID, "slide-map")
    for dx, dy in [(0, 0), (-60, 0), (60, 0), (0, -60), (0, 60), (-120, -60), (120, 60), (-60, 120), (60, -120)]:
        previous = browser.find_element(By.ID, "selected-patch-info").text
        ActionChains(browser).move_to_element_with_offset(slide_map, dx, dy).click().perform()
        _wait(browser, lambda b, prev=previous: b.find_element(By.ID, "selected-patch-info").text not in ("", prev) or prev.startswith("No"))
        if browser.find_element(By.ID, "selected-patch-info").text.startswith("Patch"):
            break
    assert re.search(r"Patch \d+ at", browser.find_element(By.ID, "selected-patch-info").text)
    _wait(browser, lambda b: len(b.find_elements(By.CSS_SELECTOR, "#patch-inspector-panel img.cam-overlay")) == 4, timeout=30)
    captions = browser.find_element(By.ID, "patch-inspector-panel").text
    assert all(m in captions for m in ("CAM", "Grad-CAM", "Grad-CAM++", "Score-CAM")) and "±" in captions

    # A stitched Grad-CAM layer at sub-patch resolution.
    _open_dropdown(browser, "heat-layer-choice")
    _wait(browser, lambda b: b.find_elements(By.XPATH, "//*[@role='option' and contains(., 'Grad-CAM (stitched')]"))
    js_click(browser, browser.find_element(By.XPATH, "//*[@role='option' and contains(., 'Grad-CAM (stitched')]"))  # the long layer list scrolls
    _wait(browser, lambda b: any("layer=cam%3Agradcam" in s and "gradcam%2B" not in s for s in _tile_srcs(b, "/heatmap/")))

    # MIL: the slide prediction, the caveat, an attention layer and a top-k gallery whose tiles pan the viewer.
    _wait(browser, lambda b: b.find_elements(By.CSS_SELECTOR, "#topk-gallery img"))
    assert "P(pattern 4/5 present)" in browser.find_element(By.ID, "mil-prediction").text
    assert "not patch-level predictions" in browser.find_element(By.ID, "attention-caveat").text
    _open_dropdown(browser, "heat-layer-choice")
    _wait(browser, lambda b: b.find_elements(By.XPATH, "//*[@role='option' and contains(., 'MIL attention')]"))
    js_click(browser, browser.find_element(By.XPATH, "//*[@role='option' and contains(., 'MIL attention')]"))  # the long layer list scrolls
    _wait(browser, lambda b: any("layer=attention" in s for s in _tile_srcs(b, "/heatmap/")))
    box_before = browser.find_element(By.ID, "overview-box").get_attribute("style")
    tile = browser.find_elements(By.CSS_SELECTOR, "#topk-gallery img")[0]
    browser.execute_script("arguments[0].scrollIntoView({block: 'center'}); arguments[0].click()", tile)
    _wait(browser, lambda b: b.find_element(By.ID, "overview-box").get_attribute("style") != box_before)
    _wait(browser, lambda b: "Patch" in b.find_element(By.ID, "patch-inspector").text)  # the tile is inspected too


    # Method comparison against the ground truth, with the all-ones lower bound.
    browser.execute_script("arguments[0].scrollIntoView({block: 'center'}); arguments[0].click()", browser.find_element(By.ID, "comparison-run"))
    _wait(browser, lambda b: b.find_elements(By.ID, "method-comparison-table"))
    table = browser.find_element(By.ID, "method-comparison-table").text
    assert all(m in table for m in ("patch classifier", "Grad-CAM++", "MIL attention", "all-ones (lower bound)"))


def test_reopened_slide_shows_the_stored_heatmap_at_once(live_server, browser):
    browser.get(f"{live_server.url}/slide/{SLIDE}")
    _wait(browser, lambda b: _tile_srcs(b, "/heatmap/"), timeout=30)
    assert browser.find_element(By.ID, "heat-status").text == ""  # nothing was recomputed


def test_unknown_slide_page(live_server, browser):
    browser.get(f"{live_server.url}/slide/NOPE")
    _wait(browser, lambda b: b.find_elements(By.ID, "page-error"))
    assert "no slide 'NOPE'" in browser.find_element(By.ID, "page-error").text
