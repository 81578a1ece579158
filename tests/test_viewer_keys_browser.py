"""The viewer's overlay key per layer type, its magnification readout, and the keyboard, in headless Chromium."""

from __future__ import annotations

import math
from urllib.parse import urlsplit

import pytest
from selenium.webdriver import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait
from sqlalchemy import select

from core.heatmaps.grade_group import display_class_name
from core.heatmaps.overlay import GRADE_COLOURS
from core.heatmaps.slide_heatmap import compute_heatmap
from core.slides.tiles import TileService
from core.store.cases import slide_record
from core.store.schema import Patient
from core.workspace import open_workspace
from tests.helpers import element_text, js_click

SLIDE = "P013-S1"


def _wait(browser, condition, timeout=60):
    return WebDriverWait(browser, timeout).until(condition)


def _key(browser, key: str) -> None:
    ActionChains(browser).send_keys(key).perform()


def _legend(browser) -> dict:
    found = browser.find_elements(By.ID, "heat-legend-key")
    if not found:
        return {}
    return {"kind": found[0].get_attribute("data-kind"), "cmap": found[0].get_attribute("data-cmap"),
            "threshold": found[0].get_attribute("data-threshold"), "text": found[0].text}


def _magnification(mpp: float, max_zoom: int, zoom: int) -> str:
    """The readout as assets/slide_viewer.js writes it."""
    um = mpp * 2 ** (max_zoom - zoom)
    m = 10 / um
    digits = 0 if m >= 10 else 1 if m >= 1 else 2

    def half_up(value: float) -> float:  # as JavaScript's toFixed rounds 1.25 (exact in binary): up, where Python rounds to even
        return math.floor(value * 10**digits + 0.5) / 10**digits
    return f"≈ {half_up(m):.{digits}f}×"


@pytest.fixture(scope="module")
def slide(demo_workspace) -> dict:
    ws = open_workspace(demo_workspace)
    try:
        heat = compute_heatmap(ws, SLIDE, "patch-cnn")
        g = TileService(ws).geometry(SLIDE)
        with ws.store.session() as s:
            patient = slide_record(s, SLIDE).patient_id
            later = sorted(p for p in s.scalars(select(Patient.id)) if p > patient)
    finally:
        ws.store.dispose()
    return {"classes": heat.class_names, "mpp": g.mpp, "max_zoom": g.max_zoom, "patient": patient, "next_patient": later[0]}


def test_every_layer_type_has_its_key_following_the_style(live_server, browser, slide):
    browser.get(f"{live_server.url}/slide/{SLIDE}")
    _wait(browser, lambda b: _legend(b).get("kind") == "colour bar")
    legend = _legend(browser)
    assert "Tumour probability (1 − benign) (raw probability)" in legend["text"] and "below 0.5: not drawn" in legend["text"]
    assert (legend["cmap"], legend["threshold"]) == ("Viridis", "0.5")

    browser.get(f"{live_server.url}/slide/{SLIDE}?cmap=Magma&thr=0.3&norm=percentile")
    _wait(browser, lambda b: _legend(b).get("cmap") == "Magma")
    legend = _legend(browser)
    assert legend["threshold"] == "0.3" and "1st–99th percentile per slide" in legend["text"] and "below 0.3" in legend["text"]

    browser.get(f"{live_server.url}/slide/{SLIDE}?layer=argmax")
    _wait(browser, lambda b: _legend(b).get("kind") == "classes")
    text = _legend(browser)["text"]
    drawn = [c for c in slide["classes"] if c in GRADE_COLOURS]
    assert all(display_class_name(c) in text for c in drawn) and "benign: not drawn" in text

    browser.get(f"{live_server.url}/slide/{SLIDE}?layer=tissue")
    _wait(browser, lambda b: _legend(b).get("kind") == "tissue")

    # The case page shows the same key.
    browser.get(f"{live_server.url}/case/{slide['patient']}?slide={SLIDE}&layer={drawn[0]}")
    _wait(browser, lambda b: f"P({display_class_name(drawn[0])})" in _legend(b).get("text", ""))


def test_keys_zoom_pick_a_magnification_and_set_the_verdict(live_server, browser, slide):
    browser.get(f"{live_server.url}/case/{slide['patient']}?slide={SLIDE}&z={slide['max_zoom'] - 3}&lat=-0.01&lng=0.01")
    _wait(browser, lambda b: element_text(b, "magnification").startswith("≈"))
    start = slide["max_zoom"] - 3
    assert element_text(browser, "magnification").startswith(_magnification(slide["mpp"], slide["max_zoom"], start))
    browser.find_element(By.TAG_NAME, "body").click()
    _key(browser, "+")
    _wait(browser, lambda b: element_text(b, "magnification").startswith(_magnification(slide["mpp"], slide["max_zoom"], start + 1)))
    for expected in (start, start - 1):  # one key at a time: each acts on the zoom the last one left
        _key(browser, "-")
        _wait(browser, lambda b, z=expected: element_text(b, "magnification").startswith(_magnification(slide["mpp"], slide["max_zoom"], z)))
    # Key 4 is the 10x preset: the zoom whose µm per pixel is nearest 1 µm.
    ten_x = round(slide["max_zoom"] + math.log2(10 * slide["mpp"] / 10))
    _key(browser, "4")
    _wait(browser, lambda b: element_text(b, "magnification").startswith(_magnification(slide["mpp"], slide["max_zoom"], ten_x)))
    js_click(browser, "mag-preset-1")  # the 2.5x button
    two_and_half = max(round(slide["max_zoom"] + math.log2(2.5 * slide["mpp"] / 10)), 0)
    _wait(browser, lambda b: element_text(b, "magnification").startswith(_magnification(slide["mpp"], slide["max_zoom"], two_and_half)))

    # ? shows the keys.
    _key(browser, "?")
    _wait(browser, lambda b: "agree, disagree, uncertain" in element_text(b, "keys-help-table"))
    _key(browser, "\ue00c")  # Escape closes it
    _wait(browser, lambda b: not b.find_elements(By.ID, "keys-help-table"))

    # d sets "disagree" on the focused modality: the patient panel, once clicked.
    browser.find_element(By.CSS_SELECTOR, "#case-patient-card .card-header").click()
    _key(browser, "d")
    radio = "//*[contains(@id, '\"type\":\"review-verdict\"') and contains(@id, '\"modality\":\"patient\"')]//input[@value='disagree']"
    _wait(browser, lambda b: b.find_element(By.XPATH, radio).is_selected())
    slide_radio = "//*[contains(@id, '\"type\":\"review-verdict\"') and contains(@id, '\"modality\":\"slide\"')]//input"
    assert not any(r.is_selected() for r in browser.find_elements(By.XPATH, slide_radio))

    # n opens the next case of the worklist (by patient id).
    browser.find_element(By.ID, "case-title").click()
    _key(browser, "n")
    _wait(browser, lambda b: urlsplit(b.current_url).path == f"/case/{slide['next_patient']}")
    _wait(browser, lambda b: element_text(b, "case-title") == f"Case {slide['next_patient']}")
