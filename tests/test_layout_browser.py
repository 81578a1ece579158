"""Layout at the two screen sizes reviewers use (1366×768 laptops, 1920×1080 monitors), in headless Chromium: no column
of the worklist (the cohort page's grid, sorted or not) or of the what-if table (the patient page) is clipped, and no
Plotly toolbar lies over its figure's title."""

from __future__ import annotations

import pytest
from selenium.webdriver.support.ui import WebDriverWait
from sqlalchemy import select

from core.heatmaps.slide_heatmap import compute_heatmap
from core.store.cases import slide_record
from core.store.schema import Visit
from core.workspace import open_workspace
from tests.helpers import headless_chromium, sign_in_browser

SIZES = ("1366,768", "1920,1080")
SLIDE = "P013-S1"

# For each cell and heading of an AG Grid: its text must lie inside its box (a clipped or ellipsised text runs past it),
# and the cell must not hide any of its content (scrollWidth past clientWidth); the grid must not scroll sideways.
CLIPPED_GRID = """
const grid = document.getElementById(arguments[0]);
if (!grid) { return ["no grid " + arguments[0]]; }
const problems = [];
for (const box of grid.querySelectorAll(".ag-center-cols-viewport, .ag-header-viewport, .ag-body-horizontal-scroll-viewport")) {
    if (box.scrollWidth > box.clientWidth + 1) { problems.push("the grid scrolls sideways: " + box.scrollWidth + " > " + box.clientWidth); }
}
for (const cell of grid.querySelectorAll(".ag-cell, .ag-header-cell-text, .ag-header-group-text")) {
    const r = cell.getBoundingClientRect();
    if (!r.width || !cell.textContent.trim()) { continue; }
    const range = document.createRange();
    range.selectNodeContents(cell);
    const t = range.getBoundingClientRect();
    const what = cell.className.split(" ")[0] + " '" + cell.textContent.trim().slice(0, 40) + "'";
    if (t.left < r.left - 1 || t.right > r.right + 1 || t.bottom > r.bottom + 1) {
        problems.push(what + ": text " + Math.round(t.width) + "x" + Math.round(t.height) + " px in " + Math.round(r.width) + "x" + Math.round(r.height));
    }
    if (cell.scrollWidth > cell.clientWidth + 1 || cell.scrollHeight > cell.clientHeight + 1) { problems.push(what + ": content hidden"); }
}
// A heading's sort arrow and filter button (where shown) must not lie over its words.
for (const heading of grid.querySelectorAll(".ag-header-cell")) {
    const text = heading.querySelector(".ag-header-cell-text");
    if (!text) { continue; }
    const range = document.createRange();
    range.selectNodeContents(text);
    const t = range.getBoundingClientRect();
    for (const mark of heading.querySelectorAll(".ag-sort-indicator-icon:not(.ag-hidden), .ag-header-cell-filter-button")) {
        const m = mark.getBoundingClientRect();
        if (!m.width || getComputedStyle(mark).opacity === "0") { continue; }
        if (m.left < t.right && t.left < m.right && m.top < t.bottom && t.top < m.bottom) {
            problems.push("heading '" + text.textContent + "': " + mark.className.split(" ").slice(0, 2).join(" ") + " over its words");
        }
    }
}
return problems;
"""

# Every shown Plotly figure: the rectangle of its toolbar and of its title must not meet.
MODEBAR_OVER_TITLE = """
const problems = [];
for (const plot of document.querySelectorAll(".js-plotly-plot")) {
    const bar = plot.querySelector(".modebar");
    const title = plot.querySelector(".gtitle");
    if (!bar || !title) { continue; }
    const a = bar.getBoundingClientRect(), b = title.getBoundingClientRect();
    if (!a.width || !b.width) { continue; }
    if (a.left < b.right && b.left < a.right && a.top < b.bottom && b.top < a.bottom) {
        problems.push((plot.parentElement.id || plot.id || "a figure") + ": '" + title.textContent.slice(0, 50) + "'");
    }
}
return problems;
"""


def _wait(driver, condition, timeout=90):
    return WebDriverWait(driver, timeout).until(condition)


@pytest.fixture(scope="module")
def patient(demo_workspace) -> str:
    """The slide's patient (one with visits), with the slide's heatmap computed, so that the case page draws every panel."""
    ws = open_workspace(demo_workspace)
    try:
        compute_heatmap(ws, SLIDE, "patch-cnn")
        with ws.store.session() as s:
            patient_id = slide_record(s, SLIDE).patient_id
            assert s.scalars(select(Visit).where(Visit.patient_id == patient_id)).first() is not None
        return patient_id
    finally:
        ws.store.dispose()


@pytest.fixture(scope="module", params=SIZES)
def screen(request, live_server):
    driver = headless_chromium(request.param)
    try:
        sign_in_browser(driver, live_server.url)
        yield driver
    finally:
        driver.quit()


def _figures_drawn(driver, ids: list[str]) -> bool:
    return all(driver.find_elements("css selector", f"#{i} .gtitle") for i in ids)


def test_no_worklist_or_what_if_column_is_clipped(live_server, screen, patient):
    screen.get(f"{live_server.url}/")
    _wait(screen, lambda d: d.find_elements("css selector", "#cohort-table .ag-cell a"))
    assert screen.execute_script(CLIPPED_GRID, "cohort-table") == []
    # The narrowest score column, sorted and filtered: its heading makes room for the sort and filter marks.
    screen.get(f"{live_server.url}/?sort=-score:mil-lse&f.score:mil-lse=greaterThan:0.5")
    _wait(screen, lambda d: d.find_elements("css selector", "#cohort-table .ag-cell a"))
    _wait(screen, lambda d: d.find_elements("css selector", "#cohort-table .ag-header-cell[col-id='score:mil-lse'] .ag-sort-descending-icon"))
    assert screen.execute_script(CLIPPED_GRID, "cohort-table") == []

    screen.get(f"{live_server.url}/patient/{patient}")
    _wait(screen, lambda d: d.find_elements("css selector", "#visit-edit-table .ag-cell"))
    assert screen.execute_script(CLIPPED_GRID, "visit-edit-table") == []


@pytest.mark.parametrize(("page", "figures"), [
    ("/patient/{patient}", ["patient-risk", "patient-importance", "visit-waterfall"]),
    ("/case/{patient}?slide=" + SLIDE, ["patient-risk", "patient-importance", "visit-waterfall", "grade-fractions"]),
    ("/models", []),
    ("/patients", []),
])
def test_no_plotly_toolbar_lies_over_its_title(live_server, screen, patient, page, figures):
    screen.get(live_server.url + page.format(patient=patient))
    _wait(screen, lambda d: d.find_elements("css selector", ".js-plotly-plot .gtitle"))
    _wait(screen, lambda d: _figures_drawn(d, figures))
    assert screen.execute_script(MODEBAR_OVER_TITLE) == []


# The page rectangle (top and bottom, from the top of the page) of each element matched, and whether it is shown.
PAGE_RECTS = """
return [...document.querySelectorAll(arguments[0])].map(function (el) {
    const r = el.getBoundingClientRect();
    return {top: r.top + window.scrollY, bottom: r.bottom + window.scrollY, shown: r.width > 0 && r.height > 0};
});
"""


def test_the_case_page_first_screen_holds_the_viewer_the_risk_plot_and_the_verdicts(live_server, screen, patient):
    """At 1366 x 768 (and at 1920 x 1080) the viewer, the risk plot and the three verdict choices lie within the first
    screen height of the page: a reviewer sees them together without scrolling."""
    screen_height = int(screen.get_window_size()["height"])
    screen.get(f"{live_server.url}/case/{patient}?slide={SLIDE}")
    _wait(screen, lambda d: _figures_drawn(d, ["patient-risk"]) and d.find_elements("css selector", "#slide-map .leaflet-tile-loaded"))
    for selector in ("#slide-map", "#patient-risk .main-svg", "[id*='review-verdict'] input"):
        rects = screen.execute_script(PAGE_RECTS, selector)
        assert rects and all(r["shown"] for r in rects), f"{selector} is not shown"
        assert all(0 <= r["top"] and r["bottom"] <= screen_height for r in rects), (selector, rects, screen_height)
    # The secondary panels are folded away, each under its own title, and open from the link.
    folded = screen.execute_script("return [...document.querySelectorAll('.fold .accordion-button.collapsed')].map(b => b.textContent)")
    assert {"Patch inspector", "Method comparison against the ground truth", "Edit visit (what-if)"} <= set(folded)
