"""The review form in headless Chromium: a second reviewer starts from an empty form with the first reviewer's verdict
read-only beside it and a consensus line, and a viewer gets disabled inputs and a message when a save is forced."""

from __future__ import annotations

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from core.store.reviews import record_review, review_history, review_versions
from core.store.schema import Patient
from core.workspace import open_workspace
from tests.helpers import ACCOUNTS, element_text, js_click, sign_in_browser

FIRST_REVIEWER = "first-reviewer"


def _wait(browser, condition, timeout=60):
    return WebDriverWait(browser, timeout).until(condition)


def _part(browser, kind: str, modality: str, tag: str = "*"):
    return browser.find_element(By.XPATH, f"//{tag}[contains(@id, '\"type\":\"{kind}\"') and contains(@id, '\"modality\":\"{modality}\"')]")


def _switch(browser, modality: str):
    """The sign-off switch's checkbox (dbc.Switch puts its id on the input itself)."""
    element = _part(browser, "review-signoff", modality)
    return element if element.tag_name == "input" else element.find_element(By.CSS_SELECTOR, "input")


def _consensus(browser, modality: str) -> str:
    return _part(browser, "review-consensus", modality).text


@pytest.fixture(scope="module")
def reviewed_patient(demo_workspace) -> str:
    """A patient whose patient verdict another reviewer saved and signed off, with a comment and a flag."""
    ws = open_workspace(demo_workspace)
    with ws.store.session() as s:
        pid = sorted(s.scalars(Patient.__table__.select().with_only_columns(Patient.id)))[-1]
    record_review(ws.store, pid, "patient", "agree", "Onset fits the visits.", ["teaching case"], True, FIRST_REVIEWER,
                  review_versions(ws.store, pid)["patient"])
    ws.store.dispose()
    return pid


def test_a_second_reviewer_starts_from_an_empty_form(live_server, browser, demo_workspace, reviewed_patient):
    pid = reviewed_patient
    browser.get(f"{live_server.url}/case/{pid}")
    _wait(browser, lambda b: element_text(b, "case-title") == f"Case {pid}")
    # Nothing of the first reviewer's verdict is in this reviewer's form ...
    assert not _part(browser, "review-verdict", "patient").find_elements(By.CSS_SELECTOR, "input:checked")
    assert _part(browser, "review-comment", "patient", "textarea").get_attribute("value") == ""
    assert not _part(browser, "review-flags", "patient").find_elements(By.CSS_SELECTOR, "input:checked")
    assert not _switch(browser, "patient").is_selected()
    # ... it is beside it, read-only, with the consensus so far.
    others = _part(browser, "review-others", "patient").text
    assert FIRST_REVIEWER in others and "Onset fits the visits." in others and "teaching case" in others
    assert "one reviewer signed off" in _consensus(browser, "patient") and f"{FIRST_REVIEWER}: agree" in _consensus(browser, "patient")

    # The second reviewer disagrees and signs off: the consensus line says so, and their entry carries only their words.
    js_click(browser, _part(browser, "review-verdict", "patient").find_element(By.CSS_SELECTOR, "input[value='disagree']"))
    js_click(browser, _switch(browser, "patient"))
    js_click(browser, _part(browser, "review-save", "patient", "button"))
    _wait(browser, lambda b: "reviewers disagree" in _consensus(b, "patient"))
    assert f"{ACCOUNTS['reviewer']}: disagree" in _consensus(browser, "patient")
    ws = open_workspace(demo_workspace)
    mine = review_history(ws.store, pid)[0]
    ws.store.dispose()
    assert (mine.user, mine.verdict, mine.comment, mine.flags, mine.signed_off) == (ACCOUNTS["reviewer"], "disagree", "", (), True)

    # On reload the form holds this reviewer's own last verdict, not the first reviewer's.
    browser.refresh()
    _wait(browser, lambda b: element_text(b, "case-title") == f"Case {pid}")
    checked = _part(browser, "review-verdict", "patient").find_elements(By.CSS_SELECTOR, "input:checked")
    assert [c.get_attribute("value") for c in checked] == ["disagree"]
    assert _part(browser, "review-comment", "patient", "textarea").get_attribute("value") == ""


def test_a_viewer_gets_disabled_inputs_and_a_refused_save_says_why(live_server, browser, reviewed_patient):
    sign_in_browser(browser, live_server.url, "viewer")
    try:
        browser.get(f"{live_server.url}/case/{reviewed_patient}")
        _wait(browser, lambda b: element_text(b, "case-title") == f"Case {reviewed_patient}")
        for modality in ("slide", "patient", "report"):
            form = _part(browser, "review-save", modality, "button").find_element(By.XPATH, "./ancestor::div[contains(@class, 'review-modality')]")
            inputs = form.find_elements(By.CSS_SELECTOR, "input[type=radio], input[type=checkbox], textarea, button")
            assert len(inputs) >= 3 + 5 + 3 and all(not i.is_enabled() for i in inputs), modality
        assert "may view verdicts but not record them" in element_text(browser, "review-who")

        # A save forced past the disabled inputs (a hand-made request of the save callback) is refused by the server,
        # and the page says why.
        browser.execute_script("""
            fetch('/_dash-dependencies').then(r => r.json()).then(deps => {
                const save = deps.find(d => d.output.includes('review-message.children'));
                fetch('/_dash-update-component', {method: 'POST', headers: {'Content-Type': 'application/json'},
                      body: JSON.stringify({output: save.output, outputs: [], inputs: [], state: [], changedPropIds: []})});
            });""")
        _wait(browser, lambda b: "may not do this" in element_text(b, "refusal-message"))
        assert "viewer" in element_text(browser, "refusal-message") and "reviewer" in element_text(browser, "refusal-message")
    finally:
        sign_in_browser(browser, live_server.url, "reviewer")
