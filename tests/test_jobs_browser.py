"""The Jobs page in headless Chromium: a reviewer starts a precompute, watches its progress bar move and sees the job
end — run in the server's own process (no broker), and through Redis on a Celery worker, where the slide page's
heatmap (a Dash background callback on ``CeleryManager``) runs on the worker too."""

from __future__ import annotations

import time

import pytest
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import WebDriverWait

from core.jobs.state import get_job, list_jobs
from core.workspace import open_workspace
from tests.helpers import ACCOUNTS, LiveServer, element_text, js_click, sign_in_browser


def _wait(browser, condition, timeout=90):
    return WebDriverWait(browser, timeout).until(condition)


def _label(browser, group_id: str, text: str):
    return browser.find_element(By.XPATH, f"//*[@id='{group_id}']//label[normalize-space()='{text}']")


def _job_row(browser, job_id: int) -> tuple[str, int] | None:
    """(status, progress %) of a job's row on the page, or None while it is not shown."""
    try:
        rows = browser.find_elements(By.ID, f"job-row-{job_id}")
        if not rows:
            return None
        status = rows[0].find_element(By.CSS_SELECTOR, ".job-status").text
        bar = rows[0].find_element(By.CSS_SELECTOR, ".job-progress .progress-bar")
        return status, int(float(bar.get_attribute("aria-valuenow") or 0))
    except StaleElementReferenceException:  # the table was refreshed under us
        return None


def start_cams_and_watch(browser, base_url: str, workspace_root, slide: str, timeout: float = 240) -> list[tuple[str, int]]:
    """Start the CAM precompute of one slide from the Jobs page; return the (status, progress) seen until it ended."""
    browser.get(f"{base_url}/jobs")
    _wait(browser, lambda b: b.find_elements(By.ID, "jobs-what"))
    js_click(browser, _label(browser, "jobs-what", "Heatmaps"))  # off
    js_click(browser, _label(browser, "jobs-what", "CAM + attention maps"))  # on
    js_click(browser, _label(browser, "jobs-overlap", "75 %"))
    js_click(browser, browser.find_element(By.ID, "jobs-slides"))
    # the demo has many slides and the dropdown lists a window of them: type the id, as a user would
    _wait(browser, lambda b: b.find_elements(By.CSS_SELECTOR, "#jobs-slides input, .dash-dropdown-search input, input[type='search']"))
    browser.find_elements(By.CSS_SELECTOR, "#jobs-slides input, .dash-dropdown-search input, input[type='search']")[0].send_keys(slide)
    option = f"//*[@role='option' and normalize-space(.)='{slide}']"
    _wait(browser, lambda b: b.find_elements(By.XPATH, option))
    js_click(browser, browser.find_element(By.XPATH, option))
    browser.find_element(By.TAG_NAME, "body").send_keys(Keys.ESCAPE)
    _wait(browser, lambda b: slide in b.find_element(By.ID, "jobs-slides").text)
    js_click(browser, browser.find_element(By.ID, "jobs-start"))
    _wait(browser, lambda b: "Queued 1 job" in element_text(b, "jobs-started"))
    ws = open_workspace(workspace_root)
    try:
        job = next(j for j in list_jobs(ws.store, limit=5) if j.kind == "cams" and j.subject == slide)
        seen: list[tuple[str, int]] = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            row = _job_row(browser, job.id)
            if row and (not seen or seen[-1] != row):
                seen.append(row)
            if row and row[0] in ("done", "failed", "cancelled"):
                break
            time.sleep(0.2)
        final = get_job(ws.store, job.id)
    finally:
        ws.store.dispose()
    assert seen and seen[-1] == ("done", 100), (seen, final)
    assert any(status in ("queued", "running") for status, _ in seen), seen  # it was shown before it ended
    assert any(status == "running" and 0 < progress < 100 for status, progress in seen), seen  # and its progress moved
    assert final.status == "done" and final.requested_by == ACCOUNTS["reviewer"]
    return seen


def test_jobs_page_runs_a_precompute_in_the_server_process(live_server, browser, demo_workspace):
    start_cams_and_watch(browser, live_server.url, demo_workspace, "P014-S1")
    assert "in this server's process" in browser.find_element(By.ID, "jobs-mode").text


@pytest.fixture(scope="module")
def celery_server(celery_workspace, celery_worker):
    """The app on the multi-machine workspace (PostgreSQL, Redis broker). Reached as ``localhost`` so that its sign-in
    cookie does not replace the other server's (cookies are per host name, not per port)."""
    server = LiveServer(celery_workspace)
    server.url = server.url.replace("127.0.0.1", "localhost")
    yield server
    server.stop()


def test_jobs_page_and_slide_heatmap_run_on_a_celery_worker(celery_server, browser, celery_workspace, celery_worker):
    celery_worker.ensure_running()
    sign_in_browser(browser, celery_server.url)  # another server: its own session cookie
    start_cams_and_watch(browser, celery_server.url, celery_workspace, "P015-S1")
    assert "through the broker" in browser.find_element(By.ID, "jobs-mode").text
    ws = open_workspace(celery_workspace)
    try:
        job = next(j for j in list_jobs(ws.store, limit=5) if j.subject == "P015-S1")
        assert job.runner == "celery" and job.worker.startswith("test-worker")
    finally:
        ws.store.dispose()

    # The slide page's heatmap is a background callback: with a broker it is a Celery task the worker runs.
    browser.get(f"{celery_server.url}/slide/P016-S1")
    _wait(browser, lambda b: b.find_elements(By.ID, "heat-compute"))
    js_click(browser, browser.find_element(By.ID, "heat-compute"))
    _wait(browser, lambda b: "tissue patches" in b.find_element(By.ID, "heat-status").text, timeout=180)
    assert "background_callback_" in celery_worker.output()
    ws = open_workspace(celery_workspace)
    try:
        job = next(j for j in list_jobs(ws.store, limit=5) if j.subject == "P016-S1")
        assert job.status == "done" and job.runner == "background" and job.kind == "heatmap"
        assert f":{celery_server.process.pid}" not in job.worker  # computed in the worker's process, not the server's
    finally:
        ws.store.dispose()
