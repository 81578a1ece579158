"""Report page in headless Chromium: explain, edit, re-predict, bad edits, and the stored report untouched."""

from __future__ import annotations

from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from core.store.schema import Report
from core.workspace import open_workspace
from tests.helpers import js_click

# A needle biopsy of Gleason 5+5 (total score 10), ISUP grade group 5, poorly differentiated: the report model reads it as
# high grade, and as low grade once the edit below rewrites its grade as 3+3, grade group 1, well differentiated.
REPORT = "P024-R1"


def _wait(browser, condition, timeout=60):
    return WebDriverWait(browser, timeout).until(condition)


def _set_text(browser, text: str) -> None:
    # Set the textarea the way typing does, so React sees the change.
    browser.execute_script("""
        const el = document.getElementById('report-edit');
        const setter = Object.getOwnPropertyDescriptor(window.HTMLTextAreaElement.prototype, 'value').set;
        setter.call(el, arguments[0]);
        el.dispatchEvent(new Event('input', {bubbles: true}));
    """, text)


def test_editing_a_report_changes_prediction_and_highlights_but_not_the_store(live_server, browser, demo_workspace):
    ws = open_workspace(demo_workspace)
    with ws.store.session() as s:
        stored_before = s.get(Report, REPORT).text
    browser.get(f"{live_server.url}/report/{REPORT}")
    _wait(browser, lambda b: b.find_elements(By.CSS_SELECTOR, "#report-highlighted .lime-word"))
    assert "high grade" in browser.find_element(By.ID, "report-predicted-class").text
    assert browser.find_element(By.ID, "lime-stability-badge").text
    original_weights = {e.text.lower(): e.get_attribute("data-weight") for e in browser.find_elements(By.CSS_SELECTOR, "#report-highlighted .lime-word")}
    assert any(w in original_weights for w in ("5", "poorly"))

    edited = (stored_before.replace("5+5", "3+3").replace("4+5", "3+3").replace("5+4", "3+3").replace("4+4", "3+3")
              .replace("score 10", "score 6").replace("score 9", "score 6").replace("score 8", "score 6")
              .replace("= 10", "= 6").replace("= 9", "= 6").replace("= 8", "= 6").replace("=10", "=6").replace("=9", "=6").replace("=8", "=6")
              .replace("group 5", "group 1").replace("group 4", "group 1").replace("poorly", "well"))
    _set_text(browser, edited)
    js_click(browser, "report-edit-run")
    _wait(browser, lambda b: b.find_elements(By.ID, "edited-probability"))
    before_after = browser.find_element(By.ID, "report-edit-result").text
    new_probability = float(browser.find_element(By.ID, "edited-probability").text)
    assert new_probability < 0.5, before_after  # the edit now reads as low grade
    assert browser.find_elements(By.CSS_SELECTOR, "#report-word-diff .word-added")
    assert browser.find_elements(By.CSS_SELECTOR, "#report-word-diff .word-removed")
    edited_words = {e.text.lower() for e in browser.find_elements(By.CSS_SELECTOR, "#edited-highlighted .lime-word")}
    assert "well" in edited_words or "3" in edited_words

    # A bad edit gets a message, and the last good result stays.
    _set_text(browser, "the and of")
    js_click(browser, "report-edit-run")
    _wait(browser, lambda b: b.find_elements(By.ID, "report-edit-alert"))
    assert "no words the model reads" in browser.find_element(By.ID, "report-edit-alert").text

    with ws.store.session() as s:
        assert s.get(Report, REPORT).text == stored_before
    ws.store.dispose()
