"""Annotations in headless Chromium: draw a polygon, classify, reshape and delete it, find its history after a reload;
show and hide two reviewers' layers; a verdict's region pans the viewer. Screens at 1366 x 768 and 1920 x 1080."""

from __future__ import annotations

import math
import os
import re
import tempfile
import time
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pytest
from selenium.webdriver import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from core.slides.tiles import TileService
from core.store.annotations import RegionDraft, add_regions, current_regions, region_history
from core.store.cases import case_summary
from core.store.reviews import record_review
from core.workspace import open_workspace
from dashboard.components.annotation_layer import region_view
from tests.helpers import ACCOUNTS, LiveServer, chromium_driver, copy_demo, js_click, sign_in_browser

pytestmark = pytest.mark.browser
SLIDE = "P001-S1"
SECOND = "second-reader"
SCREENS = Path(os.environ.get("PATHREVIEW_SCREENS", tempfile.mkdtemp(prefix="annotation-screens-")))


def _wait(browser, condition, timeout=60):
    return WebDriverWait(browser, timeout).until(condition)


def rect(x0: float, y0: float, x1: float, y1: float) -> dict:
    return {"type": "Polygon", "coordinates": [[[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]]]}


@pytest.fixture(scope="module")
def served(demo_workspace, tmp_path_factory):
    """A copy of the demo with a second reviewer's tumour region and a verdict that names it, served."""
    root = copy_demo(demo_workspace, tmp_path_factory.mktemp("annotation-browser") / "ws", (SLIDE,))
    ws = open_workspace(root)
    region, = add_regions(ws.store, SLIDE, [RegionDraft(rect(1236, 568, 1836, 968), "tumour pattern 3")], SECOND)
    record_review(ws.store, "P001", "slide", "disagree", "missed focus", [], False, SECOND, 0, regions=[region.region_id])
    server = LiveServer(root)
    driver = chromium_driver(1400, 1000)
    sign_in_browser(driver, server.url)
    yield server, driver, ws, region
    driver.quit()
    server.stop()
    ws.store.dispose()


def _paths(browser) -> int:
    """Regions drawn as vector paths on the map (the drawing layer's shape included)."""
    return browser.execute_script("return document.querySelectorAll('#slide-map .leaflet-overlay-pane path.leaflet-interactive').length")


def _message(browser) -> str:
    found = browser.find_elements(By.ID, "annotation-message")
    return found[0].text if found else ""


def _choose(browser, dropdown_id: str, text: str) -> None:
    """Open a dropdown and click the option with this text."""
    js_click(browser, dropdown_id)
    option = f"//*[@role='option' and normalize-space(.)='{text}']"
    js_click(browser, _wait(browser, lambda b: b.find_elements(By.XPATH, option))[0])  # the open list can sit under the fold


def _map_click(browser, dx: int, dy: int) -> None:
    the_map = browser.find_element(By.ID, "slide-map")
    ActionChains(browser).move_to_element_with_offset(the_map, dx, dy).pause(0.15).click().perform()


def _vertices(browser) -> int:
    """Vertices placed so far in the shape being drawn."""
    return len(browser.find_elements(By.CSS_SELECTOR, "#slide-map .leaflet-marker-pane .leaflet-editing-icon"))


def _add_vertex(browser, dx: int, dy: int) -> None:
    """Click a vertex into the shape being drawn. Leaflet.draw ignores a click that comes while it still
    re-enables its markers after the last one (a 50 ms timer), which a loaded machine can stretch; click again then."""
    wanted = _vertices(browser) + 1
    for _ in range(3):
        _map_click(browser, dx, dy)
        try:
            WebDriverWait(browser, 3).until(lambda b: _vertices(b) >= wanted)
            return
        except Exception:
            continue
    raise AssertionError(f"the map did not take a vertex at offset ({dx}, {dy})")


def test_draw_classify_reshape_delete_and_find_the_history(served):
    server, browser, ws, _ = served
    browser.get(f"{server.url}/slide/{SLIDE}")
    _wait(browser, lambda b: b.find_elements(By.CSS_SELECTOR, ".leaflet-draw-draw-polygon"))
    browser.execute_script("document.getElementById('slide-map').scrollIntoView({block: 'start'})")
    before = {r.region_id for r in current_regions(ws.store, SLIDE)}
    # Draw a polygon: four clicks, then Leaflet.draw's Finish.
    browser.find_element(By.CSS_SELECTOR, ".leaflet-draw-draw-polygon").click()
    for dx, dy in ((-120, -80), (40, -90), (60, 50), (-100, 70)):
        _add_vertex(browser, dx, dy)
    [a for a in browser.find_elements(By.CSS_SELECTOR, ".leaflet-draw-actions a") if a.text == "Finish"][0].click()
    _wait(browser, lambda b: "Saved a" in _message(b))
    drawn = [r for r in current_regions(ws.store, SLIDE) if r.region_id not in before]
    assert len(drawn) == 1 and drawn[0].author == ACCOUNTS["reviewer"] and len(drawn[0].geometry["coordinates"][0]) == 5
    region_id = drawn[0].region_id
    _wait(browser, lambda b: "v1" in b.find_element(By.ID, "annotation-history").text)
    # Classify it.
    _choose(browser, "annotation-class", "tumour pattern 5")
    browser.find_element(By.ID, "annotation-comment").send_keys("solid sheets")
    js_click(browser, "annotation-save")
    _wait(browser, lambda b: "version 2" in _message(b))
    assert current_regions(ws.store, SLIDE)[-1].class_name == "tumour pattern 5"
    # Reshape it: the edit tool, drag a vertex, save.
    browser.execute_script("document.getElementById('slide-map').scrollIntoView({block: 'start'})")
    time.sleep(0.5)
    browser.find_element(By.CSS_SELECTOR, ".leaflet-draw-edit-edit").click()
    handle = _wait(browser, lambda b: b.find_elements(By.CSS_SELECTOR, ".leaflet-editing-icon"))[0]
    ActionChains(browser).click_and_hold(handle).move_by_offset(15, 10).move_by_offset(15, 10).release().perform()
    [a for a in browser.find_elements(By.CSS_SELECTOR, ".leaflet-draw-actions a") if a.text == "Save"][0].click()
    _wait(browser, lambda b: "new shape (version 3)" in _message(b))
    assert region_history(ws.store, region_id)[0].geometry != region_history(ws.store, region_id)[1].geometry
    # Delete it.
    js_click(browser, "annotation-delete")
    _wait(browser, lambda b: "Deleted" in _message(b))
    assert region_id not in {r.region_id for r in current_regions(ws.store, SLIDE)}
    # After a reload the slide's history lists every version, the deletion first.
    browser.refresh()
    box = _wait(browser, lambda b: b.find_elements(By.ID, "annotation-slide-history-box"))[0]
    js_click(browser, box.find_element(By.TAG_NAME, "summary"))
    text = _wait(browser, lambda b: b.find_element(By.ID, "annotation-slide-history-list").text)
    lines = [line for line in text.splitlines() if region_id[:8] in line]
    assert [re.search(r"v(\d)", line).group(1) for line in lines] == ["4", "3", "2", "1"] and "deleted" in lines[0]


def test_two_reviewers_layers_are_shown_and_hidden(served):
    server, browser, ws, _ = served
    add_regions(ws.store, SLIDE, [RegionDraft(rect(300, 300, 900, 700), "benign")], ACCOUNTS["reviewer"])
    browser.get(f"{server.url}/slide/{SLIDE}")
    checklist = _wait(browser, lambda b: b.find_elements(By.ID, "annotation-authors"))[0]
    _wait(browser, lambda b: {SECOND, ACCOUNTS["reviewer"]} <= set(b.find_element(By.ID, "annotation-authors").text.splitlines()))
    # Both regions lie inside the demo slide (3072 x 1536 px) and are drawn as vectors beside the viewer's fixed markers.
    _wait(browser, lambda b: b.find_element(By.ID, "annotation-view-mode").text == "2 regions in view.")
    shown = _wait(browser, lambda b: _paths(b) >= 2 and _paths(b))
    for label in checklist.find_elements(By.TAG_NAME, "label"):
        if label.text == SECOND:
            js_click(browser, label)
    _wait(browser, lambda b: _paths(b) == shown - 1)
    for label in browser.find_element(By.ID, "annotation-authors").find_elements(By.TAG_NAME, "label"):
        if label.text == SECOND:
            js_click(browser, label)
    _wait(browser, lambda b: _paths(b) == shown)
    # A click on a region selects it: its author, class, numbers and history.
    browser.execute_script("document.getElementById('slide-map').scrollIntoView({block: 'start'})")
    second = [p for p in browser.find_elements(By.CSS_SELECTOR, "#slide-map .leaflet-overlay-pane path.leaflet-interactive")
              if p.get_attribute("stroke") == "#ffc800"]  # tumour pattern 3: the second reader's region
    # A click event on that region's own path: a pointer aimed at its centre can land on another region drawn over it.
    browser.execute_script(
        "const p = arguments[0], r = p.getBoundingClientRect();"
        "p.dispatchEvent(new MouseEvent('click', {bubbles: true, cancelable: true, view: window,"
        " clientX: r.x + r.width / 2, clientY: r.y + r.height / 2}));", second[0])
    _wait(browser, lambda b: b.find_elements(By.ID, "annotation-selected-title"))
    assert browser.find_element(By.ID, "annotation-selected-title").text == f"Region by {SECOND}: tumour pattern 3"
    assert "0.0600 mm²" in browser.find_element(By.ID, "annotation-details").text  # 600 x 400 px at 0.5 µm/px
    for width, height in ((1366, 768), (1920, 1080)):
        browser.set_window_size(width, height)
        time.sleep(1.0)
        browser.execute_script("document.getElementById('annotation-card').scrollIntoView({block: 'start'})")
        browser.save_screenshot(str(SCREENS / f"slide-annotations-{width}x{height}.png"))
        browser.execute_script("document.getElementById('slide-map').scrollIntoView({block: 'start'})")
        browser.save_screenshot(str(SCREENS / f"slide-map-{width}x{height}.png"))
    browser.set_window_size(1400, 1000)


def test_clicking_a_verdicts_region_pans_the_viewer(served):
    server, browser, ws, region = served
    max_zoom = TileService(ws).geometry(SLIDE).max_zoom
    expected = region_view(region, max_zoom)  # centre (1536, 768) px, the middle of the slide, zoomed to fit the 600 x 400 px region
    assert (expected["lng"] * 2**max_zoom, -expected["lat"] * 2**max_zoom) == (1536, 768)
    with ws.store.session() as s:
        unreadable = next(sl.id for sl in case_summary(s, "P001").slides if sl.id != SLIDE)  # its file is not in this copy

    def shown_view(b) -> dict:
        query = parse_qs(urlparse(b.find_element(By.ID, "case-link").get_attribute("value")).query)
        return {k: float(query[k][0]) for k in ("lat", "lng", "z") if k in query} | {"slide": query.get("slide", [""])[0]}

    def at_region(b) -> bool:
        view = shown_view(b)
        return (view["slide"] == SLIDE and view.get("z") == expected["z"] and abs(view["lat"] - expected["lat"]) * 2**max_zoom < 2
                and abs(view["lng"] - expected["lng"]) * 2**max_zoom < 2)

    def region_link(b):
        link = _wait(b, lambda b: b.find_elements(By.CSS_SELECTOR, ".review-region-link"))[0]
        assert SECOND in link.text and "tumour pattern 3" in link.text
        return link

    def selected_title(b) -> str:
        return _wait(b, lambda b: b.find_elements(By.ID, "annotation-selected-title"))[0].text

    # Another slide of the case is shown, one that cannot be opened: the link switches the viewer to the region's slide.
    browser.get(f"{server.url}/case/P001?slide={unreadable}")
    _wait(browser, lambda b: b.find_elements(By.ID, "slide-error"))
    js_click(browser, region_link(browser))
    _wait(browser, at_region)
    assert selected_title(browser) == f"Region by {SECOND}: tumour pattern 3"

    # The region's own slide, shown elsewhere at another zoom: the link pans and zooms the viewer to the region.
    away = {"z": expected["z"] - 1, "lat": -0.1, "lng": 0.2}
    browser.get(f"{server.url}/case/P001?slide={SLIDE}&z={away['z']}&lat={away['lat']}&lng={away['lng']}")
    _wait(browser, lambda b: all(shown_view(b).get(k) == v for k, v in away.items()))  # the link's view is restored
    assert not browser.find_elements(By.ID, "annotation-selected-title")
    js_click(browser, region_link(browser))
    _wait(browser, at_region)
    assert selected_title(browser) == f"Region by {SECOND}: tumour pattern 3"  # and it is selected, its numbers and history shown
    browser.set_window_size(1366, 768)
    time.sleep(1.0)
    browser.execute_script("document.getElementById('case-slide-card').scrollIntoView({block: 'start'})")
    browser.save_screenshot(str(SCREENS / "case-verdict-region-1366x768.png"))
    browser.set_window_size(1400, 1000)


def _view(server, max_zoom: int, z: int, x: float, y: float) -> str:
    """The slide page centred on level-0 pixel (x, y) at zoom ``z`` (a deep link)."""
    scale = 2.0**max_zoom
    return f"{server.url}/slide/{SLIDE}?z={z}&lat={-y / scale}&lng={x / scale}"


def _map_ready(browser) -> None:
    _wait(browser, lambda b: b.find_elements(By.CSS_SELECTOR, ".leaflet-draw-draw-freehand"))
    browser.execute_script("document.getElementById('slide-map').scrollIntoView({block: 'start'})")
    time.sleep(0.5)


def _select_at(browser, dx: int, dy: int) -> None:
    """Click the region at this offset from the map's centre until it is selected (drawn in the editing pane); a click
    can come before the regions in view are drawn on a loaded machine."""
    the_map = browser.find_element(By.ID, "slide-map")
    _wait(browser, lambda b: b.find_elements(By.CSS_SELECTOR, "#slide-map path.leaflet-interactive"))
    for _ in range(3):
        ActionChains(browser).move_to_element_with_offset(the_map, dx, dy).pause(0.15).click().perform()
        try:
            _wait(browser, lambda b: b.find_elements(By.CSS_SELECTOR, "#slide-map .leaflet-annotation-editing-pane path"), timeout=5)
            return
        except Exception:
            continue


def test_a_freehand_stroke_is_simplified_and_saved_in_slide_coordinates(served):
    server, browser, ws, _ = served
    max_zoom = TileService(ws).geometry(SLIDE).max_zoom
    z, centre = max_zoom - 1, (2000.0, 700.0)  # one screen pixel is two level-0 pixels
    browser.get(_view(server, max_zoom, z, *centre))
    _map_ready(browser)
    tool = browser.find_element(By.CSS_SELECTOR, ".leaflet-draw-draw-freehand")
    assert tool.get_attribute("title") == "Draw freehand: press, drag around the region and release"
    before = {r.region_id for r in current_regions(ws.store, SLIDE)}
    _choose(browser, "annotation-class", "disagree with model")
    browser.execute_script("document.getElementById('slide-map').scrollIntoView({block: 'start'})")
    time.sleep(0.3)

    # A circle of radius 60 screen pixels around the map's centre, 120 points, drawn with the button held.
    tool.click()
    _wait(browser, lambda b: "annotation-freehand-active" in b.find_element(By.ID, "slide-map").get_attribute("class"))
    the_map = browser.find_element(By.ID, "slide-map")
    radius, steps = 60, 120
    points = [(round(radius * math.cos(2 * math.pi * i / steps)), round(radius * math.sin(2 * math.pi * i / steps))) for i in range(steps + 1)]
    chain = ActionChains(browser, duration=5).move_to_element_with_offset(the_map, *points[0]).click_and_hold()
    for (x0, y0), (x1, y1) in zip(points, points[1:], strict=False):
        chain.move_by_offset(x1 - x0, y1 - y0)
    chain.release().perform()
    _wait(browser, lambda b: "Saved a disagree with model region" in _message(b))
    message = _message(browser)
    assert "freehand stroke of" in message and "simplified to" in message
    drawn = [r for r in current_regions(ws.store, SLIDE) if r.region_id not in before]
    assert len(drawn) == 1
    region = drawn[0]
    assert (region.author, region.version, region.class_name, region.geometry["type"]) == (ACCOUNTS["reviewer"], 1, "disagree with model", "Polygon")
    assert [v.version for v in region_history(ws.store, region.region_id)] == [1]
    ring = region.geometry["coordinates"][0][:-1]
    assert 8 <= len(ring) < steps / 2  # simplified to one screen pixel, far fewer vertices than the stroke's points
    # In slide coordinates: every vertex on the drawn circle, 120 level-0 px around the view's centre (a screen pixel is
    # two level-0 pixels; the map's centre and the pointer's origin are whole screen pixels, so allow two of them).
    distances = [math.dist(p, centre) for p in ring]
    assert all(abs(d - 2 * radius) <= 2 * 2 for d in distances), (min(distances), max(distances))
    _wait(browser, lambda b: "v1" in b.find_element(By.ID, "annotation-history").text)
    for width, height in ((1366, 768), (1920, 1080)):
        browser.set_window_size(width, height)
        time.sleep(1.0)
        browser.execute_script("document.getElementById('slide-map').scrollIntoView({block: 'start'})")
        browser.find_element(By.CSS_SELECTOR, ".leaflet-draw-draw-freehand").click()  # the tool shown taken up
        time.sleep(0.3)
        browser.save_screenshot(str(SCREENS / f"slide-freehand-{width}x{height}.png"))
        webdriver_escape(browser)
    browser.set_window_size(1400, 1000)

    # A twitch of the mouse is refused with a message, and nothing is stored.
    _map_ready(browser)
    browser.find_element(By.CSS_SELECTOR, ".leaflet-draw-draw-freehand").click()
    the_map = browser.find_element(By.ID, "slide-map")
    ActionChains(browser, duration=5).move_to_element_with_offset(the_map, 200, 100).click_and_hold().move_by_offset(3, 0) \
        .move_by_offset(0, 3).move_by_offset(-3, 0).release().perform()
    _wait(browser, lambda b: "too small" in _message(b))
    assert len(current_regions(ws.store, SLIDE)) == len(before) + 1


def webdriver_escape(browser) -> None:
    """Esc: the freehand tool is put down."""
    from selenium.webdriver.common.keys import Keys

    ActionChains(browser).send_keys(Keys.ESCAPE).perform()
    _wait(browser, lambda b: "annotation-freehand-active" not in b.find_element(By.ID, "slide-map").get_attribute("class"))


def test_a_selected_polygon_is_dragged_whole_and_saved_as_a_new_version(served):
    server, browser, ws, _ = served
    pentagon = {"type": "Polygon", "coordinates": [[[2400, 1000], [2600, 1020], [2640, 1200], [2480, 1300], [2360, 1160], [2400, 1000]]]}
    region, = add_regions(ws.store, SLIDE, [RegionDraft(pentagon, "artefact")], ACCOUNTS["reviewer"])
    max_zoom = TileService(ws).geometry(SLIDE).max_zoom
    z = max_zoom - 1  # one screen pixel is two level-0 pixels
    browser.get(_view(server, max_zoom, z, 2500, 1150))
    _map_ready(browser)
    # Select it: a click at the view's centre, inside the pentagon and clear of other regions.
    the_map = browser.find_element(By.ID, "slide-map")
    _select_at(browser, 0, 0)
    assert browser.find_element(By.ID, "annotation-selected-title").text == f"Region by {ACCOUNTS['reviewer']}: artefact"
    # Press on it and drag 40 px right and 25 px down, in steps; then release.
    ActionChains(browser, duration=20).move_to_element_with_offset(the_map, 0, 0).click_and_hold().move_by_offset(10, 5) \
        .move_by_offset(10, 5).move_by_offset(10, 5).move_by_offset(10, 10).pause(0.2).release().perform()
    _wait(browser, lambda b: "Moved the region (version 2)" in _message(b))
    history = region_history(ws.store, region.region_id)
    assert [v.version for v in history] == [2, 1] and history[0].user == ACCOUNTS["reviewer"] and history[0].class_name == "artefact"
    # Moved by exactly 40 x 25 screen pixels, 80 x 50 level-0 pixels, every vertex.
    old, new = history[1].geometry["coordinates"][0], history[0].geometry["coordinates"][0]
    assert [[x + 80, y + 50] for x, y in old] == new
    _wait(browser, lambda b: "v2" in b.find_element(By.ID, "annotation-history").text)
    assert [re.search(r"v(\d)", li.text).group(1) for li in browser.find_elements(By.CSS_SELECTOR, "#annotation-history li")] == ["2", "1"]
    # The moved region under the pointer shows how to move it again.
    ActionChains(browser).move_to_element_with_offset(the_map, 30, 20).pause(0.5).perform()
    _wait(browser, lambda b: b.find_elements(By.CSS_SELECTOR, ".leaflet-annotation-editing-pane .leaflet-tooltip"))
    browser.save_screenshot(str(SCREENS / "slide-moved-region-1400x1000.png"))
    # A short press (a click) moves nothing.
    _wait(browser, lambda b: b.find_elements(By.CSS_SELECTOR, "#slide-map .leaflet-annotation-editing-pane path"))
    ActionChains(browser).move_to_element_with_offset(the_map, 40, 25).click_and_hold().move_by_offset(1, 0).release().perform()
    time.sleep(1.0)
    assert [v.version for v in region_history(ws.store, region.region_id)] == [2, 1]


def _parts(geometry: dict) -> list:
    """A polygon's or multipolygon's parts, each a list of rings."""
    return geometry["coordinates"] if geometry["type"] == "MultiPolygon" else [geometry["coordinates"]]


def test_a_region_with_a_hole_and_one_in_two_parts_are_dragged_whole(served):
    server, browser, ws, _ = served
    donut = {"type": "Polygon", "coordinates": [[[300, 300], [700, 300], [700, 700], [300, 700], [300, 300]],
                                                [[450, 450], [550, 450], [550, 550], [450, 550], [450, 450]]]}
    pair = {"type": "MultiPolygon", "coordinates": [[[[300, 900], [420, 900], [420, 1020], [300, 1020], [300, 900]]],
                                                    [[[560, 900], [680, 900], [680, 1020], [560, 1020], [560, 900]]]]}
    regions = add_regions(ws.store, SLIDE, [RegionDraft(donut, "artefact"), RegionDraft(pair, "benign")], ACCOUNTS["reviewer"])
    max_zoom = TileService(ws).geometry(SLIDE).max_zoom
    z = max_zoom - 1  # one screen pixel is two level-0 pixels
    # Each region: select it with a click on its solid part (left of the view's centre), then drag that point 30 x 20 px.
    for region, centre in zip(regions, [(500.0, 500.0), (490.0, 960.0)], strict=True):
        browser.get(_view(server, max_zoom, z, *centre))
        _map_ready(browser)
        the_map = browser.find_element(By.ID, "slide-map")
        _select_at(browser, -70, 0)
        assert browser.find_element(By.ID, "annotation-selected-title").text == f"Region by {ACCOUNTS['reviewer']}: {region.class_name}"
        ActionChains(browser, duration=20).move_to_element_with_offset(the_map, -70, 0).click_and_hold().move_by_offset(10, 5) \
            .move_by_offset(10, 5).move_by_offset(10, 10).pause(0.2).release().perform()
        _wait(browser, lambda b: "Moved the region (version 2)" in _message(b))
        old, new = (v.geometry for v in reversed(region_history(ws.store, region.region_id)))
        assert new["type"] == old["type"]
        # Every vertex of every ring, holes and parts included, moved by exactly 30 x 20 screen pixels (60 x 40 level-0).
        assert [[[[x + 60, y + 40] for x, y in ring] for ring in part] for part in _parts(old)] == _parts(new)
    browser.save_screenshot(str(SCREENS / "slide-moved-multipart-1400x1000.png"))

    # The region with a hole, now at (360-760, 340-740), is reshaped with the pencil: a vertex dragged, the hole kept.
    browser.get(_view(server, max_zoom, z, 560.0, 540.0))
    _map_ready(browser)
    _select_at(browser, -70, 0)
    browser.find_element(By.CSS_SELECTOR, ".leaflet-draw-edit-edit").click()
    handles = _wait(browser, lambda b: b.find_elements(By.CSS_SELECTOR, ".leaflet-editing-icon"))
    assert len(handles) == 8  # four corners of the outer ring, four of the hole
    ActionChains(browser).click_and_hold(handles[0]).move_by_offset(15, 10).move_by_offset(15, 10).release().perform()
    [a for a in browser.find_elements(By.CSS_SELECTOR, ".leaflet-draw-actions a") if a.text == "Save"][0].click()
    _wait(browser, lambda b: "new shape (version 3)" in _message(b))
    moved, reshaped = (v.geometry["coordinates"] for v in region_history(ws.store, regions[0].region_id)[1::-1])
    assert len(reshaped) == 2 and reshaped[0] != moved[0]
    assert sorted(map(tuple, reshaped[1][:-1])) == sorted(map(tuple, moved[1][:-1]))  # the hole, as it was
