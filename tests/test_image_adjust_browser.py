"""The slide tiles' brightness, contrast and gamma in headless Chromium: a change of gamma makes the browser fetch other
tile bytes from the server (not a CSS filter over the same ones), the deep link carries it, and reset brings back the
plain tiles."""

from __future__ import annotations

import base64
import json
import re
import tempfile

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import WebDriverWait

from core.store.cases import slide_record
from tests.helpers import js_click, sign_in_browser

SLIDE = "P010-S1"
TILE = re.compile(r"/slides/[^/]+/tiles/(\d+/\d+/\d+)\.jpeg(\?.*)?$")


def _wait(browser, condition, timeout=60):
    return WebDriverWait(browser, timeout).until(condition)


@pytest.fixture(scope="module")
def logging_browser(live_server):
    """Headless Chromium that keeps its network log, so the test reads the bytes of each tile it received."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    from tests.system_packages import ensure_chromium

    chromium, chromedriver = ensure_chromium()
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1366,900",
                 f"--user-data-dir={tempfile.mkdtemp(prefix='chromium-')}"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"performance": "ALL"})
    driver = webdriver.Chrome(service=Service(chromedriver), options=options)
    driver.set_page_load_timeout(60)
    try:
        sign_in_browser(driver, live_server.url)
        yield driver
    finally:
        driver.quit()


def _received_tiles(browser) -> dict[tuple[str, str], bytes]:
    """The base tiles the browser received since the last call: (z/x/y, query) -> the bytes of the response."""
    tiles = {}
    for entry in browser.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message["method"] != "Network.responseReceived":
            continue
        response = message["params"]["response"]
        match = TILE.search(response["url"])
        if not match or response["status"] != 200:
            continue
        body = browser.execute_cdp_cmd("Network.getResponseBody", {"requestId": message["params"]["requestId"]})
        data = base64.b64decode(body["body"]) if body["base64Encoded"] else body["body"].encode("latin-1")
        tiles[(match.group(1), match.group(2) or "")] = data
    return tiles


def _shown_tile_srcs(browser) -> list[str]:
    return browser.execute_script(
        "return [...document.querySelectorAll('#slide-map img.leaflet-tile-loaded')].map(i => i.src).filter(s => s.includes('/tiles/'))")


def test_gamma_changes_the_tiles_the_browser_receives_and_the_link(live_server, logging_browser, workspace):
    browser = logging_browser
    with workspace.store.session() as s:
        patient_id = slide_record(s, SLIDE).patient_id
    browser.get(f"{live_server.url}/case/{patient_id}?slide={SLIDE}")
    _wait(browser, lambda b: _shown_tile_srcs(b))
    _wait(browser, lambda b: b.find_element(By.ID, "case-link").get_attribute("value"))
    plain = _received_tiles(browser)
    assert plain and all(query == "" for _, query in plain)  # at the defaults the plain tiles, no query
    assert "gamma" not in browser.find_element(By.ID, "case-link").get_attribute("value")

    js_click(browser, browser.find_element(By.CSS_SELECTOR, "#base-adjust summary"))
    thumb = _wait(browser, lambda b: b.find_element(By.CSS_SELECTOR, "#base-gamma [role=slider]"))
    browser.execute_script("arguments[0].scrollIntoView({block: 'center'}); arguments[0].focus()", thumb)
    thumb.send_keys(Keys.END)  # the slider's keys, as a keyboard user sets it: End is its largest value, 4
    _wait(browser, lambda b: (srcs := _shown_tile_srcs(b)) and all("gamma=4" in s for s in srcs))
    adjusted = _received_tiles(browser)
    both = [address for address, query in adjusted if query == "?gamma=4" and (address, "") in plain]
    assert both, f"no tile was received both plain and with gamma 4: {sorted(adjusted)[:5]}"
    assert all(adjusted[(a, "?gamma=4")] != plain[(a, "")] for a in both)  # other bytes, from the server
    _wait(browser, lambda b: "gamma=4" in b.find_element(By.ID, "case-link").get_attribute("value"))
    assert "gamma=4" in browser.current_url

    # The link opens the same view: the slider at 2 and the adjusted tiles.
    browser.get(browser.find_element(By.ID, "case-link").get_attribute("value"))
    _wait(browser, lambda b: (srcs := _shown_tile_srcs(b)) and all("gamma=4" in s for s in srcs))
    assert _wait(browser, lambda b: b.find_element(By.CSS_SELECTOR, "#base-gamma [role=slider]")).get_attribute("aria-valuenow") == "4"

    js_click(browser, "base-adjust-reset")
    _wait(browser, lambda b: (srcs := _shown_tile_srcs(b)) and not any("gamma" in s for s in srcs))
    _wait(browser, lambda b: "gamma" not in b.find_element(By.ID, "case-link").get_attribute("value"))


def test_a_bad_gamma_in_the_link_is_named(live_server, logging_browser):
    browser = logging_browser
    browser.get(f"{live_server.url}/slide/{SLIDE}?gamma=bright&contrast=9")
    problems = _wait(browser, lambda b: b.find_element(By.ID, "viewer-link-problems"))
    assert "gamma 'bright' is not a number" in problems.text and "contrast '9' is outside 0.25–4" in problems.text
    assert all("gamma" not in s and "contrast" not in s for s in _wait(browser, lambda b: _shown_tile_srcs(b)))
