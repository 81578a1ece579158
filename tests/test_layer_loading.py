"""A heatmap layer that is whole-slide model work (a stitched CAM) and not stored yet: its tiles answer "not ready"
at once while a job computes it, and the viewer shows it loading, then shows it."""

from __future__ import annotations

import re
import time
from concurrent.futures import ThreadPoolExecutor

import requests
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from core.heatmaps.cam_maps import cam_cache_path
from core.heatmaps.slide_heatmap import HeatmapParams, compute_heatmap
from core.jobs.state import get_job, list_jobs
from core.workspace import open_workspace
from tests.helpers import sign_in

TILE_SLIDE = "P022-S1"
VIEWER_SLIDE = "P021-S1"


def _heatmap(root, slide_id: str, params: HeatmapParams = HeatmapParams()):
    ws = open_workspace(root)
    return ws, compute_heatmap(ws, slide_id, "patch-cnn", params)


def test_a_tile_of_an_uncomputed_cam_layer_answers_not_ready_and_a_job_computes_the_layer(live_server, demo_workspace):
    # A grid no other test uses: its stitched CAMs are stored nowhere yet.
    ws, heat = _heatmap(demo_workspace, TILE_SLIDE, HeatmapParams(overlap=0.0, min_tissue=0.35))
    try:
        cam_file = cam_cache_path(ws, heat, "gradcam")
        assert not cam_file.exists()
        session = requests.Session()
        sign_in(session, base=live_server.url)
        url = f"{live_server.url}/slides/{TILE_SLIDE}/heatmap/{heat.key}/10/0/0.png?layer=cam%3Agradcam"
        with ThreadPoolExecutor(6) as pool:  # a viewport's worth of tiles at once
            burst = list(pool.map(lambda _: session.get(url, timeout=30), range(6)))
        assert not cam_file.exists()  # the requests did not compute the layer
        for response in burst:
            assert response.status_code == 202 and response.headers["X-Layer-Status"] in ("queued", "running")
            assert "no-store" in response.headers["Cache-Control"] and response.headers["Retry-After"]
            body = response.json()
            assert body["layer"] == "cam:gradcam" and body["status"] == response.headers["X-Layer-Status"]
        job_ids = {r.json()["job"] for r in burst}
        assert len(job_ids) == 1  # one job for the burst
        job = get_job(ws.store, job_ids.pop())
        assert job.kind == "layer" and job.subject == TILE_SLIDE and job.params == {"heatmap": heat.key, "layer": "cam:gradcam"}

        deadline = time.monotonic() + 180
        response = session.get(url, timeout=30)
        while response.status_code == 202 and time.monotonic() < deadline:
            time.sleep(0.5)
            response = session.get(url, timeout=30)
        assert response.status_code == 200 and response.headers["Content-Type"] == "image/png", response.text
        assert cam_file.is_file()
        done = get_job(ws.store, job.id)
        assert done.status == "done" and done.progress == 1.0 and "cam:gradcam stored" in done.message
        assert sum(j.kind == "layer" and j.params.get("heatmap") == heat.key for j in list_jobs(ws.store, limit=50)) == 1
        # An unknown layer is still a bad request, not a job.
        bad = session.get(url.replace("cam%3Agradcam", "cam%3Anope"), timeout=30)
        assert bad.status_code == 400
    finally:
        ws.store.dispose()


def _tile_srcs(browser, kind: str) -> list[str]:
    return browser.execute_script(
        "return [...document.querySelectorAll('img.leaflet-tile-loaded')].map(i => i.src).filter(s => s.includes(arguments[0]))", kind)


def test_the_viewer_shows_an_uncomputed_layer_loading_then_shows_it(live_server, browser, demo_workspace):
    ws, heat = _heatmap(demo_workspace, VIEWER_SLIDE)  # the grid the viewer opens with
    try:
        cam_cache_path(ws, heat, "gradcam++").unlink(missing_ok=True)  # another test may have stored it
        browser.get(f"{live_server.url}/slide/{VIEWER_SLIDE}")
        wait = WebDriverWait(browser, 60)
        wait.until(lambda b: any("layer=tumour" in s for s in _tile_srcs(b, "/heatmap/")))
        loading = browser.find_element(By.ID, "heat-layer-loading")
        assert not loading.is_displayed()

        dropdown = browser.find_element(By.ID, "heat-layer-choice")
        browser.execute_script("arguments[0].scrollIntoView({block: 'center'})", dropdown)
        dropdown.click()
        option = "//*[@role='option' and contains(., 'Grad-CAM++ (stitched')]"
        wait.until(lambda b: b.find_elements(By.XPATH, option))
        browser.find_element(By.XPATH, option).click()

        # Loading: the indicator names the layer, and the previous overlay is gone.
        wait.until(lambda b: b.find_element(By.ID, "heat-layer-loading").is_displayed())
        texts = [browser.find_element(By.ID, "heat-layer-loading").text]
        assert "Grad-CAM++" in texts[0]
        assert not any("layer=tumour" in s for s in _tile_srcs(browser, "/heatmap/"))
        deadline = time.monotonic() + 180
        while browser.find_element(By.ID, "heat-layer-loading").is_displayed() and time.monotonic() < deadline:
            texts.append(browser.find_element(By.ID, "heat-layer-loading").text)
            time.sleep(0.2)
        assert any(re.search(r"(computing Grad-CAM\+\+… \d+ %|waiting to compute Grad-CAM\+\+)", t) for t in texts), texts
        assert not any(t.startswith("Could not") for t in texts), texts

        # Then the layer.
        WebDriverWait(browser, 60).until(lambda b: any("layer=cam%3Agradcam%2B%2B" in s for s in _tile_srcs(b, "/heatmap/")))
        assert cam_cache_path(ws, heat, "gradcam++").is_file()
        legend = browser.find_element(By.ID, "heat-legend-key")  # the layer's key over the map: its colour bar, named
        assert legend.is_displayed() and legend.get_attribute("data-kind") == "colour bar"
        assert "Grad-CAM++ (min–max per slide)" in legend.text
    finally:
        ws.store.dispose()
