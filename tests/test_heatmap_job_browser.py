"""The slide viewer's heatmap job in headless Chromium: Cancel ends as "cancelled" on the progress bar, in the job's
state and on the Jobs page; a heatmap stored at 75 % overlap is restored on reload; the deep link carries overlap,
colour map, threshold, normalisation and opacity, and names the values it cannot use."""

from __future__ import annotations

from urllib.parse import parse_qs, urlparse

from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from core.heatmaps.slide_heatmap import HeatmapParams, cached_heatmap, compute_heatmap
from core.jobs.state import ACTIVE, list_jobs
from core.store.cases import slide_record
from core.workspace import open_workspace
from tests.helpers import element_text, js_click

CANCELLED_SLIDE = "P012-S1"
RESTORED_SLIDE = "P011-S1"


def _wait(browser, condition, timeout=90):
    return WebDriverWait(browser, timeout).until(condition)


def _progress(browser) -> tuple[int, str]:
    bar = browser.find_elements(By.CSS_SELECTOR, "#heat-progress .progress-bar")
    return (int(float(bar[0].get_attribute("aria-valuenow") or 0)), bar[0].text) if bar else (0, "")


def _checked(browser, radio_id: str) -> str:
    found = browser.find_elements(By.CSS_SELECTOR, f"#{radio_id} input:checked")
    return found[0].get_attribute("value") if found else ""


def _heat_tile_srcs(browser) -> list[str]:
    return browser.execute_script("return [...document.querySelectorAll('img.leaflet-tile')].map(i => i.src).filter(s => s.includes('/heatmap/'))")


def test_cancel_ends_as_cancelled_everywhere(live_server, browser, demo_workspace):
    browser.get(f"{live_server.url}/slide/{CANCELLED_SLIDE}")
    _wait(browser, lambda b: b.find_elements(By.ID, "heat-compute"))
    js_click(browser, browser.find_element(By.XPATH, "//*[@id='heat-overlap']//label[normalize-space()='75 %']"))
    js_click(browser, "heat-compute")
    # Cancel as soon as the job is recorded: the reduced demo's slides compute in seconds.
    ws = open_workspace(demo_workspace)
    try:
        _wait(browser, lambda b: b.find_element(By.ID, "heat-cancel").is_enabled() and any(
            j.kind == "heatmap" and j.subject == CANCELLED_SLIDE and j.status in ACTIVE for j in list_jobs(ws.store, limit=10)), timeout=120)
    finally:
        ws.store.dispose()
    js_click(browser, "heat-cancel")
    _wait(browser, lambda b: "cancelled" in element_text(b, "heat-cancelled"))
    assert _progress(browser)[0] == 0  # the bar empties; the status line under it says "cancelled"
    assert "nothing was stored" in element_text(browser, "heat-status")

    ws = open_workspace(demo_workspace)
    try:
        job = next(j for j in list_jobs(ws.store, limit=10) if j.kind == "heatmap" and j.subject == CANCELLED_SLIDE)
        assert job.status == "cancelled" and "cancelled by" in job.message
        assert cached_heatmap(ws, CANCELLED_SLIDE, "patch-cnn", HeatmapParams(overlap=0.75)) is None
    finally:
        ws.store.dispose()
    browser.get(f"{live_server.url}/jobs")
    _wait(browser, lambda b: b.find_elements(By.ID, f"job-row-{job.id}"))
    assert browser.find_element(By.CSS_SELECTOR, f"#job-row-{job.id} .job-status").text == "cancelled"
    assert "this server" in browser.find_element(By.CSS_SELECTOR, f"#job-row-{job.id} .job-runs-on").text


def test_a_75_percent_heatmap_is_restored_and_the_link_carries_the_style(live_server, browser, demo_workspace):
    ws = open_workspace(demo_workspace)
    try:
        heat = compute_heatmap(ws, RESTORED_SLIDE, "patch-cnn", HeatmapParams(overlap=0.75))
        with ws.store.session() as s:
            patient = slide_record(s, RESTORED_SLIDE).patient_id
    finally:
        ws.store.dispose()

    browser.get(f"{live_server.url}/case/{patient}?slide={RESTORED_SLIDE}")
    _wait(browser, lambda b: any(f"/heatmap/{heat.key}/" in s for s in _heat_tile_srcs(b)))
    assert _checked(browser, "heat-overlap") == "0.75"
    _wait(browser, lambda b: "overlap=75" in b.find_element(By.ID, "case-link").get_attribute("value"))

    # A link with a style: it is restored, and written back the same.
    browser.get(f"{live_server.url}/case/{patient}?slide={RESTORED_SLIDE}&overlap=75&cmap=Magma&thr=0.3&norm=minmax&opacity=0.8")
    _wait(browser, lambda b: any("cmap=Magma" in s and "thr=0.3" in s and "norm=minmax" in s for s in _heat_tile_srcs(b)))
    _wait(browser, lambda b: "cmap=Magma" in b.find_element(By.ID, "case-link").get_attribute("value"))
    query = parse_qs(urlparse(browser.find_element(By.ID, "case-link").get_attribute("value")).query)
    assert {k: query[k] for k in ("overlap", "cmap", "thr", "norm", "opacity")} == {
        "overlap": ["75"], "cmap": ["Magma"], "thr": ["0.3"], "norm": ["minmax"], "opacity": ["0.8"]}
    assert not browser.find_elements(By.ID, "viewer-link-problems")

    # Values it cannot use are named, not dropped silently.
    browser.get(f"{live_server.url}/case/{patient}?slide={RESTORED_SLIDE}&overlap=33&cmap=Rainbow&thr=2&visit=99")
    _wait(browser, lambda b: b.find_elements(By.ID, "viewer-link-problems"))
    problems = element_text(browser, "viewer-link-problems")
    assert "patch overlap '33'" in problems and "colour map 'Rainbow'" in problems and "threshold 2 is outside 0–1" in problems
    assert "visit '99'" in element_text(browser, "case-link-problems")
