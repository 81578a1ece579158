"""Cohort and Models pages in headless Chromium against the real server."""

from __future__ import annotations

from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import WebDriverWait

from core.slides.tiles import TILE_SIZE
from tests.helpers import grid_column, grid_page_button, grid_sort


def _wait(browser, timeout=30):
    return WebDriverWait(browser, timeout)


def _column(browser, column: str) -> list[str]:
    return grid_column(browser, "cohort-table", column)


def _patient_ids(browser) -> list[str]:
    return _column(browser, "patient_id")


def _wait_for_rows(browser, previous: list[str] | None = None) -> list[str]:
    _wait(browser).until(lambda b: len(_patient_ids(b)) == 15 and _patient_ids(b) != previous)
    return _patient_ids(browser)


def test_cohort_pages_sorts_and_opens_a_case(live_server, browser):
    browser.get(live_server.url + "/")
    first = _wait_for_rows(browser)
    assert first[:3] == ["P001", "P002", "P003"] and len(first) == 15
    assert "page 1 of 4" in browser.find_element(By.ID, "cohort-status").text

    grid_page_button(browser, "cohort-table", "Next Page")
    second = _wait_for_rows(browser, first)
    assert second[0] == "P016" and not set(first) & set(second)
    _wait(browser).until(lambda b: "page 2 of 4" in b.find_element(By.ID, "cohort-status").text)

    grid_page_button(browser, "cohort-table", "Last Page")
    last = _wait_for_rows(browser, second)
    assert last[-1] == "P060" and len(last) == 15

    # Sorting by the report model's score, highest first, is done by the server.
    grid_page_button(browser, "cohort-table", "First Page")
    before = _wait_for_rows(browser, last)
    grid_sort(browser, "cohort-table", "score:report-tfidf")  # ascending
    ascending = _wait_for_rows(browser, before)
    grid_sort(browser, "cohort-table", "score:report-tfidf")  # descending
    descending = _wait_for_rows(browser, ascending)
    scores = [float(v) for v in _column(browser, "score:report-tfidf")]
    assert scores == sorted(scores, reverse=True) and scores[0] > 0.5
    _wait(browser).until(lambda b: "sort=-score%3Areport-tfidf" in b.current_url)

    target = descending[0]
    browser.find_element(By.LINK_TEXT, target).click()
    _wait(browser).until(EC.url_contains(f"/case/{target}"))
    _wait(browser).until(EC.text_to_be_present_in_element((By.ID, "case-title"), f"Case {target}"))
    thumbs = browser.find_elements(By.CSS_SELECTOR, "img.slide-strip-image")
    assert thumbs
    _wait(browser).until(lambda b: b.execute_script("return arguments[0].complete && arguments[0].naturalWidth > 0", thumbs[0]))
    _wait(browser).until(EC.presence_of_element_located((By.ID, "report-highlighted")))


def test_unknown_case_shows_a_message(live_server, browser):
    browser.get(live_server.url + "/case/P999")
    alert = _wait(browser).until(EC.presence_of_element_located((By.ID, "page-error")))
    assert "no patient 'P999'" in alert.text


def test_models_page_shows_metrics_roc_and_confusion(live_server, browser):
    browser.get(live_server.url + "/")
    _wait_for_rows(browser)
    browser.find_element(By.LINK_TEXT, "Models").click()
    _wait(browser).until(EC.url_contains("/models"))
    _wait(browser).until(lambda b: len(b.find_elements(By.CSS_SELECTOR, ".model-card")) == 7)  # five demo models, two heads over its CLAM files
    # ROC and confusion for the patch CNN; ROC, confusion at the threshold and calibration for each binary model
    _wait(browser).until(lambda b: len(b.find_elements(By.CSS_SELECTOR, ".model-card .js-plotly-plot")) == 20)
    text = browser.find_element(By.ID, "model-progression-gru").text
    assert "AUC" in text and "progression within 12 months" in text
    assert browser.find_elements(By.CSS_SELECTOR, "#model-report-tfidf .heatmaplayer, #model-report-tfidf .hm")


def test_pages_run_under_the_content_security_policy(live_server, browser):
    """The case page (Plotly figures, the dash-leaflet viewer with tiles, the report) and the slide page work with the
    policy the server sends, and the browser reports no violation of it."""
    added = browser.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": (
        "window.__cspViolations = [];"
        "document.addEventListener('securitypolicyviolation', e => window.__cspViolations.push(e.violatedDirective + ' ' + e.blockedURI));")})
    try:
        browser.get(live_server.url + "/case/P001")
        _wait(browser, 60).until(EC.presence_of_element_located((By.ID, "report-highlighted")))
        _wait(browser, 60).until(lambda b: b.find_elements(By.CSS_SELECTOR, "#patient-risk .main-svg"))
        _wait(browser, 60).until(lambda b: b.execute_script(
            "return [...document.querySelectorAll('#slide-map img.leaflet-tile')].some(i => i.complete && i.naturalWidth > 0)"))
        browser.get(live_server.url + "/slide/P001-S1")
        _wait(browser, 60).until(lambda b: b.execute_script(
            "return [...document.querySelectorAll('#slide-map img.leaflet-tile')].some(i => i.complete && i.naturalWidth > 0)"))
        assert browser.execute_script("return window.__cspViolations") == []
    finally:
        browser.execute_cdp_cmd("Page.removeScriptToEvaluateOnNewDocument", {"identifier": added["identifier"]})


def test_sign_out_from_the_navigation_bar_ends_the_session(live_server, browser):
    from tests.helpers import sign_in_browser

    try:
        browser.get(live_server.url + "/")
        _wait_for_rows(browser)
        browser.find_element(By.ID, "sign-out").click()
        _wait(browser).until(EC.url_contains("/login"))
        browser.get(live_server.url + "/patients")
        _wait(browser).until(EC.url_contains("/login"))
    finally:
        sign_in_browser(browser, live_server.url)


BASE_TILE_SCALES = """
return [...document.querySelectorAll('#slide-map img.leaflet-tile')]
  .filter(i => i.src.includes('/tiles/') && i.complete && i.naturalWidth > 0)
  .map(i => { const r = i.getBoundingClientRect();
              return [i.naturalWidth, i.naturalHeight, r.width / i.naturalWidth, r.height / i.naturalHeight]; });
"""


def test_edge_tiles_of_the_slide_are_not_stretched(live_server, browser):
    """A Deep Zoom level's right and bottom tiles are narrower than the tile size: they are shown at their own size,
    at the scale of every other tile, so the tissue lies under the overlays drawn for it."""
    browser.get(live_server.url + "/slide/P001-S1")
    _wait(browser, 60).until(lambda b: b.execute_script(BASE_TILE_SCALES) and not b.find_elements(By.CSS_SELECTOR, ".leaflet-zoom-anim"))
    tiles = browser.execute_script(BASE_TILE_SCALES)
    assert any(w < TILE_SIZE or h < TILE_SIZE for w, h, _, _ in tiles), tiles  # the view holds an edge tile, or the check is empty
    scale = tiles[0][2]
    assert all(abs(sx - scale) < 0.02 * scale and abs(sy - scale) < 0.02 * scale for _, _, sx, sy in tiles), tiles
