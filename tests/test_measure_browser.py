"""The viewer's ruler and area tool in headless Chromium: the label of a line between two clicked points reads their
distance on the slide, from the slide file's µm per pixel; the area tool's label reads the clicked triangle's area."""

from __future__ import annotations

import math
import re

import openslide
import pytest
from selenium.webdriver import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from core.slides.tiles import TileService
from core.store.cases import slide_record
from core.workspace import open_workspace
from tests.helpers import element_text, js_click

SLIDE = "P013-S1"
UNITS_UM = {"µm": 1.0, "mm": 1000.0, "µm²": 1.0, "mm²": 1e6}


def _wait(browser, condition, timeout=60):
    return WebDriverWait(browser, timeout).until(condition)


@pytest.fixture(scope="module")
def slide(demo_workspace) -> dict:
    """The slide's size and zoom levels, and its µm per pixel as the file states it (OpenSlide's mpp-x/-y)."""
    ws = open_workspace(demo_workspace)
    try:
        with ws.store.session() as s:
            path = ws.slides_dir / slide_record(s, SLIDE).file
        g = TileService(ws).geometry(SLIDE)
    finally:
        ws.store.dispose()
    with openslide.OpenSlide(path) as f:
        mpp_x, mpp_y = float(f.properties[openslide.PROPERTY_NAME_MPP_X]), float(f.properties[openslide.PROPERTY_NAME_MPP_Y])
    return {"width": g.width, "height": g.height, "max_zoom": g.max_zoom, "mpp_x": mpp_x, "mpp_y": mpp_y}


def _label(browser) -> str:
    labels = [e.text for e in browser.find_elements(By.CSS_SELECTOR, ".measure-label") if e.text]
    return labels[0] if labels else ""


def _reading(label: str) -> tuple[float, float]:
    """A label's value in µm (or µm²) and half its last shown digit, the rounding it may carry."""
    number, unit = re.fullmatch(r"([\d,]+(?:\.(\d+))?) (µm²|mm²|µm|mm)", label).group(1, 3)
    decimals = len(number.partition(".")[2])
    return float(number.replace(",", "")) * UNITS_UM[unit], 0.5 * 10**-decimals * UNITS_UM[unit]


def _open_at(browser, live_server, slide, z: int) -> None:
    scale = 2.0 ** slide["max_zoom"]
    lat, lng = -slide["height"] / 2 / scale, slide["width"] / 2 / scale
    browser.get(f"{live_server.url}/slide/{SLIDE}?z={z}&lat={lat}&lng={lng}")
    _wait(browser, lambda b: element_text(b, "magnification").startswith("≈"))
    assert not browser.find_elements(By.ID, "viewer-link-problems")  # the view is the link's: zoom z


def _click_at(browser, offsets: list[tuple[int, int]], after: list[str]) -> None:
    """Click the map at these offsets from its centre, one at a time, each after the tool has taken the one before."""
    the_map = browser.find_element(By.ID, "slide-map")
    for (dx, dy), reading in zip(offsets, after, strict=True):
        ActionChains(browser).move_to_element_with_offset(the_map, dx, dy).pause(0.2).click().perform()
        _wait(browser, lambda b, r=reading: r in element_text(b, "measure-readout"))


@pytest.mark.parametrize("levels_below_full", [1, 3])  # a length in µm, then one in mm
def test_the_ruler_reads_the_distance_between_two_clicked_points(live_server, browser, slide, levels_below_full):
    z = slide["max_zoom"] - levels_below_full
    _open_at(browser, live_server, slide, z)
    tool = browser.find_element(By.ID, "measure-tool")
    assert f"{slide['mpp_x']:.4g} µm/px" in tool.get_attribute("title") and "slide file" in tool.get_attribute("title")
    js_click(browser, browser.find_element(By.CSS_SELECTOR, "#measure-mode input[value='ruler']"))
    _wait(browser, lambda b: "click two points" in element_text(b, "measure-readout"))
    # Two points 300 screen px across and 100 down from each other: at zoom z a screen pixel is 2^(max_zoom - z) level-0 pixels.
    _click_at(browser, [(-150, -50), (150, 50)], ["second point", "Length"])
    per_px = 2.0 ** (slide["max_zoom"] - z)
    expected = math.hypot(300 * per_px * slide["mpp_x"], 100 * per_px * slide["mpp_y"])
    label = _label(browser)
    value, rounding = _reading(label)
    assert abs(value - expected) <= rounding + 1e-6 * expected, (label, expected)
    assert label.endswith("mm" if expected >= 1000 else "µm")
    assert element_text(browser, "measure-readout") == f"Length {label}"
    assert element_text(browser, "selected-patch-info") == ""  # the clicks measured; they did not select a patch

    # The area tool: a right triangle of legs 200 and 150 screen px.
    js_click(browser, browser.find_element(By.CSS_SELECTOR, "#measure-mode input[value='area']"))
    _wait(browser, lambda b: not _label(b))
    _click_at(browser, [(-100, -75), (100, -75), (-100, 75)], ["next corner", "third corner", "Area"])
    expected_area = 0.5 * (200 * per_px * slide["mpp_x"]) * (150 * per_px * slide["mpp_y"])
    value, rounding = _reading(_label(browser))
    assert abs(value - expected_area) <= rounding + 1e-6 * expected_area, (_label(browser), expected_area)

    js_click(browser, "measure-clear")
    _wait(browser, lambda b: not _label(b))
    # Off: a click selects a patch again (or says to compute the heatmap first) rather than measuring.
    js_click(browser, browser.find_element(By.CSS_SELECTOR, "#measure-mode input[value='off']"))
    ActionChains(browser).move_to_element_with_offset(browser.find_element(By.ID, "slide-map"), 0, 0).click().perform()
    _wait(browser, lambda b: element_text(b, "selected-patch-info") != "")
    assert not _label(browser)
