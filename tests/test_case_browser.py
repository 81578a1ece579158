"""The case page in headless Chromium: open a case from the cohort, select a visit and watch the linked panels,
record a verdict that survives a reload, export a figure and a case report (the same one the command line writes), restore
a deep link, and export from a case without a slide in a workspace without a report model."""

from __future__ import annotations

import io
import re
import time
from urllib.parse import parse_qs, urlparse

import pdfplumber
import pytest
from PIL import Image
from pypdf import PdfReader
from selenium.common.exceptions import TimeoutException
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from core.export.case_figures import CASE_FIGURES
from core.export.figure_export import read_provenance
from core.export.report_content import MODALITY_TITLES
from core.store.audit import audit_events
from core.store.cases import case_summary
from core.store.reviews import review_history
from core.workspace import open_workspace
from dashboard.pages.case import nearest_by_day
from tests.helpers import ACCOUNTS, LiveServer, click_plot_point, copy_demo, element_text, js_click, run_cli, sign_in_browser


def _wait(browser, condition, timeout=90):
    return WebDriverWait(browser, timeout).until(condition)


def _plot_data(browser, graph_id: str) -> str:
    return browser.execute_script(f"const g = document.querySelector('#{graph_id} .js-plotly-plot'); "
                                  "return g && g.data && g.data.length ? JSON.stringify([g.data[0].y, g.data[0].x]) : ''")


def _checked(browser, radio_id: str) -> str:
    found = browser.find_elements(By.CSS_SELECTOR, f"#{radio_id} input:checked")
    return found[0].get_attribute("value") if found else ""


def _downloads(browser) -> dict[str, int]:
    """Each file in the download folder and when it was written: Chromium writes a download over an earlier one of the
    same name (a patient's case report twice within a minute), so a new download is a new name or a newer file."""
    return {p.name: p.stat().st_mtime_ns for p in browser.download_dir.iterdir()}


def _new_download(browser, suffix: str, before: dict[str, int], timeout: float = 180):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done = [p for p in browser.download_dir.glob(f"*{suffix}") if before.get(p.name) != p.stat().st_mtime_ns]
        if done and not list(browser.download_dir.glob("*.crdownload")):
            return done[0].read_bytes()
        time.sleep(0.3)
    raise AssertionError(f"no {suffix} download within {timeout} s; have {sorted(p.name for p in browser.download_dir.iterdir())}")


@pytest.fixture(scope="module")
def case_patient(demo_workspace) -> dict:
    """A patient with several slides, visits and reports, so every link between panels can show."""
    ws = open_workspace(demo_workspace)
    with ws.store.session() as s:
        from core.store.schema import Patient

        for pid in sorted(s.scalars(Patient.__table__.select().with_only_columns(Patient.id))):
            case = case_summary(s, pid)
            if len(case.slides) >= 2 and len(case.visits) >= 3 and len(case.reports) >= 2:
                found = {"id": pid, "slides": [sl.id for sl in case.slides], "days": [v.day for v in case.visits],
                         "reports": {r.id: r.day for r in case.reports}}
                break
    ws.store.dispose()
    return found


def test_case_review_from_the_cohort(live_server, browser, demo_workspace, case_patient):
    pid = case_patient["id"]
    browser.get(f"{live_server.url}/cohort")
    link = _wait(browser, lambda b: b.find_elements(By.CSS_SELECTOR, f"a[href='/case/{pid}']"))[0]
    js_click(browser, link)
    _wait(browser, lambda b: element_text(b, "case-title") == f"Case {pid}")

    # Default: the last visit, its waterfall, and the report nearest it with LIME highlights.
    _wait(browser, lambda b: _plot_data(b, "visit-waterfall"))
    _wait(browser, lambda b: b.find_elements(By.ID, "report-highlighted"))
    last = len(case_patient["days"])
    assert f"visit {last}" in element_text(browser, "visit-chip-report")
    waterfall_before, report_before = _plot_data(browser, "visit-waterfall"), _checked(browser, "case-report-choice")

    # Select the first visit on the risk trajectory: waterfall, chips and report follow.
    # The panels may still be redrawing from the page's first callbacks; a click that lands mid-redraw is lost, as it
    # would be for a person, who would click again.
    _wait(browser, lambda b: b.find_element(By.ID, "case-link").get_attribute("value"))
    for _attempt in range(4):
        click_plot_point(browser, "patient-risk", 0)
        try:
            _wait(browser, lambda b: "visit 1 ·" in element_text(b, "visit-chip-report"), timeout=15)
            break
        except TimeoutException:
            continue
    _wait(browser, lambda b: "visit 1 ·" in element_text(b, "visit-chip-report") and "visit 1 ·" in element_text(b, "visit-chip-slide"))
    _wait(browser, lambda b: _plot_data(b, "visit-waterfall") not in ("", waterfall_before))
    reports = case_patient["reports"]
    first_day = case_patient["days"][0]
    expected_report = nearest_by_day(reports, first_day)  # its tie rules are tested in test_case_page
    assert expected_report != report_before, "the demo's reports should spread over the visits"
    _wait(browser, lambda b: _checked(b, "case-report-choice") == expected_report)
    _wait(browser, lambda b: b.find_elements(By.ID, "report-highlighted"))
    assert parse_qs(urlparse(browser.current_url).query)["visit"] == ["1"]

    # Record a verdict and see it after a reload.
    js_click(browser, browser.find_element(By.XPATH, "//div[contains(@id, '\"modality\":\"patient\"') and contains(@id, 'review-verdict')]"
                                                   "//input[@value='disagree']"))
    comment = browser.find_element(By.XPATH, "//textarea[contains(@id, '\"modality\":\"patient\"')]")
    comment.send_keys("Risk rises too early for this onset.")
    js_click(browser, browser.find_element(By.XPATH, "//button[contains(@id, '\"modality\":\"patient\"') and contains(@id, 'review-save')]"))
    _wait(browser, lambda b: "version 1" in element_text(b, "review-saved"))
    browser.refresh()
    _wait(browser, lambda b: "Risk rises too early" in element_text(b, "review-history-table"))
    assert "disagree" in element_text(browser, "review-history-table") and ACCOUNTS["reviewer"] in element_text(browser, "review-history-table")
    assert element_text(browser, "review-status-badge") == "in review"
    ws = open_workspace(demo_workspace)
    assert [(e.modality, e.verdict, e.user) for e in review_history(ws.store, pid)] == [("patient", "disagree", ACCOUNTS["reviewer"])]
    ws.store.dispose()

    # Export the waterfall as PNG, drawn from the cohort-mean background: its provenance names that background.
    _wait(browser, lambda b: _plot_data(b, "visit-waterfall"))
    js_click(browser, browser.find_element(By.CSS_SELECTOR, "#shap-background input[value='cohort']"))
    _wait(browser, lambda b: "cohort mean visit" in element_text(b, "shap-background-text"))
    before = _downloads(browser)
    js_click(browser, "export-figure-run")
    png = _new_download(browser, ".png", before)
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    assert Image.open(io.BytesIO(png)).size[0] >= 1000
    assert read_provenance(png, "png")["settings"]["background"] == "cohort"

    # Generate the case report as PDF with every figure: the case page, then the modalities, two to four figures a page.
    _wait(browser, lambda b: b.find_elements(By.ID, "report-highlighted"))
    before = _downloads(browser)
    js_click(browser, "case-report-run")
    pdf = _new_download(browser, ".pdf", before, timeout=300)
    reader = PdfReader(io.BytesIO(pdf))
    assert 2 <= len(reader.pages) <= 1 + len(CASE_FIGURES) // 2 + 1
    first_page = reader.pages[0].extract_text()
    assert pid in first_page and "Risk rises too early" in first_page
    assert "case-report-done" in browser.page_source

    # The same report as one offline HTML file; the audit trail records both as exports, and only what was sent.
    js_click(browser, browser.find_element(By.CSS_SELECTOR, "#report-format input[value='html']"))
    before = _downloads(browser)
    _wait(browser, lambda b: b.find_element(By.ID, "case-report-run").is_enabled())
    js_click(browser, "case-report-run")
    page = _new_download(browser, ".html", before, timeout=300).decode("utf-8")
    assert page.startswith("<!DOCTYPE html>") and f"Case {pid}" in page and "Risk rises too early" in page
    assert page.count('src="data:image/svg+xml;base64,') == len(CASE_FIGURES)
    ws = open_workspace(demo_workspace)
    exports = [e.detail for e in audit_events(ws.store, action="export") if e.target == pid and e.detail.get("what") == "case report"]
    ws.store.dispose()
    assert sorted((e["format"], e["outcome"]) for e in exports) == [("html", "exported"), ("pdf", "exported")]


def test_deep_link_restores_the_view(live_server, browser, case_patient):
    pid, slide_id = case_patient["id"], case_patient["slides"][1]
    browser.get(f"{live_server.url}/case/{pid}?slide={slide_id}&visit=2&layer=argmax&z=10&lat=-0.2500&lng=0.3000")
    _wait(browser, lambda b: "visit 2 ·" in element_text(b, "visit-chip-patient"))
    selected = browser.find_element(By.CSS_SELECTOR, ".slide-strip-item.selected")
    assert slide_id in selected.text
    _wait(browser, lambda b: "Class map (argmax)" in element_text(b, "heat-layer-choice"))
    _wait(browser, lambda b: "z=10" in b.find_element(By.ID, "case-link").get_attribute("value"))
    query = parse_qs(urlparse(browser.find_element(By.ID, "case-link").get_attribute("value")).query)
    assert query["slide"] == [slide_id] and query["visit"] == ["2"] and query["layer"] == ["argmax"]
    assert (float(query["lat"][0]), float(query["lng"][0])) == (-0.25, 0.3)
    assert "visit 2 ·" in element_text(browser, "visit-outcome-card").lower() or "Visit 2" in element_text(browser, "visit-outcome-card")

    # A colleague opening the link copied with the button beside it sees the same view.
    browser.execute_cdp_cmd("Browser.grantPermissions", {"origin": live_server.url, "permissions": ["clipboardReadWrite", "clipboardSanitizedWrite"]})
    js_click(browser, "case-link-copy")
    read_clipboard = "navigator.clipboard.readText().then(arguments[0], e => arguments[0]('no clipboard: ' + e))"
    copied = _wait(browser, lambda b: b.execute_async_script(read_clipboard).startswith(live_server.url) and b.execute_async_script(read_clipboard))
    assert copied == browser.find_element(By.ID, "case-link").get_attribute("value")
    browser.get(copied)
    _wait(browser, lambda b: "visit 2 ·" in element_text(b, "visit-chip-report"))
    assert slide_id in browser.find_element(By.CSS_SELECTOR, ".slide-strip-item.selected").text

    # Switching slides from the strip replaces the viewer.
    other = case_patient["slides"][0]
    js_click(browser, browser.find_element(By.XPATH, f"//button[contains(@id, '\"slide\":\"{other}\"')]"))
    _wait(browser, lambda b: f"slide={other}" in b.find_element(By.ID, "case-link").get_attribute("value"))
    assert other in browser.find_element(By.CSS_SELECTOR, ".slide-strip-item.selected").text


def test_folded_panels_keep_their_state_in_the_link(live_server, browser, case_patient):
    pid, slide_id = case_patient["id"], case_patient["slides"][0]
    browser.get(f"{live_server.url}/case/{pid}?slide={slide_id}&open=whatif,nosuchpanel")
    assert "panel 'nosuchpanel' is not one of" in _wait(browser, lambda b: b.find_element(By.ID, "case-link-problems")).text
    _wait(browser, lambda b: "open=whatif" in b.find_element(By.ID, "case-link").get_attribute("value"))
    assert browser.find_element(By.ID, "visit-edit-table").is_displayed()  # the link unfolds it
    assert not browser.find_element(By.ID, "comparison-run").is_displayed()  # the others stay folded
    # The patch heatmap is drawn alone at first: once the feature-file MIL head has read the slide, its layer is None
    # and its key stays hidden (on the slide page it is drawn; tests/test_mil_browser.py).
    _wait(browser, lambda b: "P(pattern 4/5 present)" in element_text(b, "milf-prediction"))
    assert not browser.find_element(By.ID, "milf-legend").is_displayed()
    assert "None" in element_text(browser, "milf-layer-choice")

    # Unfolding the method comparison and folding the what-if editor: the link says so, and opens the page that way.
    js_click(browser, browser.find_element(By.XPATH, "//button[contains(@class, 'accordion-button') and contains(., 'Method comparison')]"))
    js_click(browser, browser.find_element(By.XPATH, "//button[contains(@class, 'accordion-button') and contains(., 'Edit visit')]"))
    _wait(browser, lambda b: "open=comparison&" in b.find_element(By.ID, "case-link").get_attribute("value") + "&")
    browser.get(browser.find_element(By.ID, "case-link").get_attribute("value"))
    _wait(browser, lambda b: b.find_element(By.ID, "comparison-run").is_displayed())
    assert not browser.find_element(By.ID, "visit-edit-table").is_displayed()


def _outline(pdf: bytes) -> tuple[int, list[str], list[str]]:
    """The case report's pages, headings and figure titles, read from where its lines lie on the page (pdfplumber): the
    case page's title, then each modality's heading on the pages after it, and each figure's numbered title
    ("Fig. 1 · Risk at each visit"; two side by side read as one line). The footer's provenance lines are left out."""
    with pdfplumber.open(io.BytesIO(pdf)) as document:
        pages = [[line["text"] for line in sorted(page.extract_text_lines(), key=lambda line: (line["top"], line["x0"]))]
                 for page in document.pages]
    sections = set(MODALITY_TITLES.values())
    headings = pages[0][:1] + [line for page in pages[1:] for line in page if line.removesuffix(" (continued)") in sections]
    figures = [title for page in pages for line in page for title in re.split(r" (?=Fig\. \d+ · )", line) if re.match(r"Fig\. \d+ · ", title)]
    return len(pages), headings, figures


def test_the_command_line_writes_the_case_report_the_page_builds(live_server, browser, demo_workspace, tmp_path):
    browser.get(f"{live_server.url}/case/P001")
    _wait(browser, lambda b: _plot_data(b, "visit-waterfall"))
    _wait(browser, lambda b: b.find_elements(By.ID, "report-highlighted"))
    before = _downloads(browser)
    js_click(browser, "case-report-run")
    from_page = _outline(_new_download(browser, ".pdf", before, timeout=300))

    out = tmp_path / "P001.pdf"
    result = run_cli("report", "--workspace", str(demo_workspace), "--patient", "P001", "--out", str(out), timeout=300)
    assert result.returncode == 0, result.stderr
    from_cli = _outline(out.read_bytes())
    assert from_cli == from_page
    pages, headings, figures = from_cli
    assert pages >= 2 and headings[0] == "Case P001" and len(headings) >= 2
    assert [title.split(" · ")[0] for title in figures] == [f"Fig. {n}" for n in range(1, len(figures) + 1)] and figures
    ws = open_workspace(demo_workspace)
    exports = [e for e in audit_events(ws.store, action="export") if e.target == "P001" and e.detail.get("what") == "case report"]
    ws.store.dispose()
    assert {e.user for e in exports} >= {ACCOUNTS["reviewer"]} and any(e.user.startswith("command line (") for e in exports)


NO_SLIDE_PATIENT = "P002"  # not P001, whose case report the test above downloads (same file name within a minute)


def test_export_from_a_case_without_a_slide_in_a_workspace_without_a_report_model(live_server, browser, demo_workspace, tmp_path):
    """The export reads only the parts of the view the page has: no slide viewer and no LIME controls here. A patient
    of its own, so no download of an earlier test in the same minute has the same file name."""
    from sqlalchemy import delete

    from core.store.schema import Slide

    root = copy_demo(demo_workspace, tmp_path / "ws")
    config = root / "workspace.toml"
    config.write_text(config.read_text().replace('    "report-tfidf",\n', ""))
    ws = open_workspace(root)
    assert ws.models_for("report") == []
    with ws.store.session() as s:
        s.execute(delete(Slide).where(Slide.patient_id == NO_SLIDE_PATIENT))
        last_visit = len(case_summary(s, NO_SLIDE_PATIENT).visits)
    ws.store.dispose()
    server = LiveServer(root)
    try:
        sign_in_browser(browser, server.url)
        browser.get(f"{server.url}/case/{NO_SLIDE_PATIENT}")
        _wait(browser, lambda b: _plot_data(b, "visit-waterfall"))
        _wait(browser, lambda b: b.find_elements(By.ID, "report-plain-text"))
        assert "No slides for this patient." in element_text(browser, "case-slide-card")
        assert not browser.find_elements(By.ID, "slide-map") and not browser.find_elements(By.ID, "lime-class")

        before = _downloads(browser)
        js_click(browser, "export-figure-run")
        assert _new_download(browser, ".png", before, timeout=120).startswith(b"\x89PNG\r\n\x1a\n")
        before = _downloads(browser)
        js_click(browser, "case-report-run")
        _, headings, figures = _outline(_new_download(browser, ".pdf", before, timeout=300))
        # No slide section; the report section holds the report's lines but no LIME figure, as there is no report model.
        assert headings == [f"Case {NO_SLIDE_PATIENT}", "Patient (visits)", "Report"]
        assert figures == ["Fig. 1 · Risk at each visit", "Fig. 2 · Visit importance", f"Fig. 3 · SHAP waterfall, visit {last_visit}"]
    finally:
        server.stop()
        sign_in_browser(browser, live_server.url)

