"""The side-by-side view in headless Chromium: a deep link restores both panes and the view; panning or zooming one
pane moves the other to the same place at the same magnification, and the link follows."""

from __future__ import annotations

import re
from urllib.parse import parse_qs, urlsplit

import pytest
from selenium.webdriver import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from core.heatmaps.slide_heatmap import compute_heatmap
from core.slides.tiles import TileService
from core.workspace import open_workspace
from tests.helpers import element_text, js_click

SLIDE = "P013-S1"


def _wait(browser, condition, timeout=60):
    return WebDriverWait(browser, timeout).until(condition)


@pytest.fixture(scope="module")
def slide(demo_workspace) -> dict:
    ws = open_workspace(demo_workspace)
    try:
        compute_heatmap(ws, SLIDE, "patch-cnn")
        g = TileService(ws).geometry(SLIDE)
    finally:
        ws.store.dispose()
    return {"width": g.width, "height": g.height, "max_zoom": g.max_zoom, "mpp": g.mpp}


def _readout(browser, pane: str) -> str:
    return element_text(browser, f"pane-{pane}-readout")


def _centre_um(readout: str) -> tuple[float, float]:
    x, y = re.search(r"centre x ([\d,]+) µm, y ([\d,]+) µm", readout).groups()
    return float(x.replace(",", "")), float(y.replace(",", "")),


def _link(browser) -> dict[str, str]:
    value = browser.find_element(By.ID, "compare-link").get_attribute("value")
    return {k: v[0] for k, v in parse_qs(urlsplit(value).query).items()}


def _in_step(browser) -> bool:
    """Both panes read out the same magnification and centre (one slide on both sides)."""
    left, right = _readout(browser, "left"), _readout(browser, "right")
    return bool(left) and left == right


def _legend_kind(browser, pane: str) -> str | None:
    found = browser.find_elements(By.ID, f"pane-{pane}-key")
    return found[0].get_attribute("data-kind") if found else None


def test_deep_link_restores_both_panes_and_they_pan_and_zoom_together(live_server, browser, slide):
    scale = 2.0 ** slide["max_zoom"]
    z = slide["max_zoom"] - 1  # zoomed in far enough that the view lies inside the map's pan limits: Leaflet keeps it there
    lat, lng = round(-slide["height"] * 0.4 / scale, 5), round(slide["width"] * 0.45 / scale, 5)
    browser.get(f"{live_server.url}/compare?left={SLIDE}&right={SLIDE}&llayer=tumour&rlayer=none&z={z}&lat={lat}&lng={lng}")
    _wait(browser, lambda b: _readout(b, "left") and _readout(b, "right"))
    assert _in_step(browser)
    x, y = _centre_um(_readout(browser, "left"))
    assert abs(x - lng * scale * slide["mpp"]) <= 1 and abs(y - -lat * scale * slide["mpp"]) <= 1
    # The tumour map and its key on the left; the bare slide on the right.
    _wait(browser, lambda b: _legend_kind(b, "left") == "colour bar")
    assert _legend_kind(browser, "right") is None
    link = _link(browser)
    assert (link["left"], link["right"], link["llayer"], link["rlayer"], link["z"]) == (SLIDE, SLIDE, "tumour", "none", str(z))
    assert float(link["lat"]) == pytest.approx(lat, abs=1e-5) and float(link["lng"]) == pytest.approx(lng, abs=1e-5)

    # Drag the right pane: the left one follows to the same place, and the link (and the address bar) to it.
    right_map = browser.find_element(By.ID, "pane-right-map")
    ActionChains(browser).move_to_element(right_map).click_and_hold().move_by_offset(-60, -30).pause(0.1) \
        .move_by_offset(-60, -30).pause(0.1).move_by_offset(-60, -30).pause(0.3).release().perform()
    _wait(browser, lambda b: _centre_um(_readout(b, "right"))[0] > x + 50)
    _wait(browser, _in_step)
    moved_x, moved_y = _centre_um(_readout(browser, "left"))
    assert moved_x > x + 50 and moved_y > y + 25  # dragged left and up: the view moved right and down the slide
    _wait(browser, lambda b: abs(float(_link(b)["lng"]) * scale * slide["mpp"] - moved_x) <= 2)
    assert abs(-float(_link(browser)["lat"]) * scale * slide["mpp"] - moved_y) <= 2
    assert parse_qs(urlsplit(browser.current_url).query)["lng"] == [_link(browser)["lng"]]

    # Zoom the left pane in with its + button: the right one follows.
    before = _readout(browser, "right").split(" · ")[0]
    js_click(browser, browser.find_element(By.CSS_SELECTOR, "#pane-left-map .leaflet-control-zoom-in"))
    _wait(browser, lambda b: _readout(b, "right").split(" · ")[0] != before)
    _wait(browser, _in_step)
    _wait(browser, lambda b: _link(b)["z"] == str(z + 1))

    # Another layer on the right: its key shows there, and the link names it.
    js_click(browser, browser.find_element(By.ID, "pane-right-layer"))
    option = "//*[@role='option' and contains(., 'Class map')]"
    _wait(browser, lambda b: b.find_elements(By.XPATH, option))
    js_click(browser, browser.find_element(By.XPATH, option))
    _wait(browser, lambda b: _legend_kind(b, "right") == "classes")
    _wait(browser, lambda b: _link(b)["rlayer"] == "argmax")
    assert _in_step(browser)  # redrawn where it was

    # The link restores both panes and the view.
    saved, readout = browser.find_element(By.ID, "compare-link").get_attribute("value"), _readout(browser, "left")
    browser.get(saved)
    _wait(browser, lambda b: _readout(b, "left") and _readout(b, "right"))
    assert _readout(browser, "left") == readout and _in_step(browser)
    _wait(browser, lambda b: _legend_kind(b, "left") == "colour bar" and _legend_kind(b, "right") == "classes")


def test_a_bad_link_value_is_named_and_the_slide_viewer_links_here(live_server, browser, slide):
    browser.get(f"{live_server.url}/compare?left={SLIDE}&right=nope&rlayer=sparkles&z=99&lat=1&lng=1")
    _wait(browser, lambda b: element_text(b, "compare-link-problems"))
    problems = element_text(browser, "compare-link-problems")
    assert "'nope' is not one of this patient's slides" in problems and "'sparkles' is not offered" in problems
    assert "position" in problems
    _wait(browser, lambda b: _readout(b, "left") and _readout(b, "right"))

    browser.get(f"{live_server.url}/slide/{SLIDE}?layer=argmax")
    _wait(browser, lambda b: element_text(b, "magnification").startswith("≈"))
    _wait(browser, lambda b: "z=" in (b.find_element(By.ID, "side-by-side-link").get_attribute("href") or ""))
    href = browser.find_element(By.ID, "side-by-side-link").get_attribute("href")
    query = {k: v[0] for k, v in parse_qs(urlsplit(href).query).items()}
    assert (query["left"], query["right"], query["llayer"], query["rlayer"]) == (SLIDE, SLIDE, "argmax", "none")
    js_click(browser, "side-by-side-link")
    _wait(browser, lambda b: _legend_kind(b, "left") == "classes")
    _wait(browser, _in_step)


def _pane_tile_srcs(browser, pane: str) -> list[str]:
    return browser.execute_script(
        "return [...document.querySelectorAll('#pane-' + arguments[0] + '-map img.leaflet-tile-loaded')].map(i => i.src)"
        ".filter(s => s.includes('/tiles/'))", pane)


def test_each_pane_keeps_its_own_tile_adjustment_from_the_slide_viewer(live_server, browser, slide):
    # The slide viewer's gamma goes to both panes of its side-by-side link.
    browser.get(f"{live_server.url}/slide/{SLIDE}?gamma=1.5")
    _wait(browser, lambda b: "gamma=1.5" in (b.find_element(By.ID, "side-by-side-link").get_attribute("href") or ""))
    query = {k: v[0] for k, v in parse_qs(urlsplit(browser.find_element(By.ID, "side-by-side-link").get_attribute("href")).query).items()}
    assert query["lgamma"] == query["rgamma"] == "1.5"
    js_click(browser, "side-by-side-link")
    _wait(browser, lambda b: (srcs := _pane_tile_srcs(b, "left")) and all("gamma=1.5" in s for s in srcs))
    _wait(browser, lambda b: (srcs := _pane_tile_srcs(b, "right")) and all("gamma=1.5" in s for s in srcs))

    # Reset on the right pane only: its tiles are plain again, the left pane's stay adjusted, and the link says so.
    js_click(browser, browser.find_element(By.CSS_SELECTOR, "#pane-right-adjust summary"))
    js_click(browser, "pane-right-adjust-reset")
    _wait(browser, lambda b: (srcs := _pane_tile_srcs(b, "right")) and not any("gamma" in s for s in srcs))
    assert all("gamma=1.5" in s for s in _pane_tile_srcs(browser, "left"))
    _wait(browser, lambda b: "rgamma" not in _link(b) and _link(b).get("lgamma") == "1.5")
