"""End to end through real services (tests/services.py): precompute jobs go through Redis to a Celery worker process
and their results appear in the workspace cache and in the app (case store on PostgreSQL); a worker killed mid-task
is replaced and the job runs again; a failing task is retried a bounded number of times through Celery, then
reported, and a reviewer's retry completes it."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import time

from plotly.utils import PlotlyJSONEncoder

from core.explain.patient_explanations import PatientExplainers
from core.heatmaps.cam_maps import STITCHED_METHODS, cam_cache_path
from core.heatmaps.slide_heatmap import HeatmapParams, cached_heatmap
from core.jobs.celery_app import make_celery
from core.jobs.dispatch import JobDispatcher
from core.jobs.state import get_job, list_jobs
from core.workspace import open_workspace
from tests.helpers import REPO


def _cli(worker, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPO / "run_dashboard.py"), *args], capture_output=True, text=True, timeout=600, cwd=REPO,
                          env=worker.env)


def _wait_for(condition, timeout: float, what: str, worker=None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}" + (f"; worker log:\n{worker.output()}" if worker else ""))


def _job_ids(output: str) -> list[int]:
    found = re.search(r"job ids ([\d, -]+)", output)
    assert found, output
    ids = []
    for part in found.group(1).split(","):
        low, _, high = part.strip().partition("-")
        ids += list(range(int(low), int(high or low) + 1))
    return ids


def _as_json(component) -> str:
    return json.dumps(component, cls=PlotlyJSONEncoder)


def test_precompute_goes_through_redis_to_the_worker_and_shows_in_the_app(celery_workspace, celery_worker, redis_server):
    celery_worker.ensure_running()
    heatmaps = _cli(celery_worker, "precompute", "--workspace", str(celery_workspace), "--what", "heatmaps",
                    "--slides", "P001-S1", "P002-S1", "--broker", redis_server.url, "--wait")
    assert heatmaps.returncode == 0, heatmaps.stderr + celery_worker.output()
    assert "queued 2 jobs" in heatmaps.stdout and "2 done, 0 failed or cancelled" in heatmaps.stdout
    shap = _cli(celery_worker, "precompute", "--workspace", str(celery_workspace), "--what", "shap", "--patients", "P003",
                "--broker", redis_server.url, "--wait")
    assert shap.returncode == 0, shap.stderr + celery_worker.output()
    ids = _job_ids(heatmaps.stdout) + _job_ids(shap.stdout)
    ws = open_workspace(celery_workspace)
    try:
        assert ws.store.engine.dialect.name == "postgresql"
        jobs = {j.id: j for j in list_jobs(ws.store, ids=ids)}
        assert [jobs[i].status for i in ids] == ["done"] * 3
        assert all(j.runner == "celery" and j.worker.startswith("test-worker") and j.attempts == 1 for j in jobs.values())
        # In the cache: the heatmaps under the keys the jobs recorded, the SHAP values read back rather than recomputed.
        for job_id, slide in zip(ids, ("P001-S1", "P002-S1"), strict=False):
            heat = cached_heatmap(ws, slide, "patch-cnn")
            assert heat is not None and heat.key == jobs[job_id].key
            assert (ws.cache_dir / "heatmaps" / f"{heat.key}.npz").is_file()
        assert jobs[ids[2]].result["computed"] == 1
        assert PatientExplainers(ws).explain("P003").source == "cache"
        # In the app: background callbacks go to the workers; the slide page opens with the worker's heatmap; the Jobs
        # page lists the jobs as done.
        from dash import CeleryManager

        from core.slides.tiles import TileService
        from dashboard.app import create_app, render_page

        app = create_app(ws)
        assert isinstance(app._background_manager, CeleryManager)
        tiles = TileService(ws)
        assert f'"data": "{jobs[ids[0]].key}"' in _as_json(render_page(ws, tiles, "/slide/P001-S1"))
        jobs_page = _as_json(render_page(ws, tiles, "/jobs"))
        assert all(f"job-row-{i}" in jobs_page for i in ids) and "through the broker" in jobs_page
    finally:
        ws.store.dispose()


def test_a_worker_killed_mid_task_is_replaced_and_its_job_runs_again(celery_workspace, celery_worker, redis_server):
    celery_worker.ensure_running()
    queued = _cli(celery_worker, "precompute", "--workspace", str(celery_workspace), "--what", "cams", "--slides", "P004-S1",
                  "--overlap", "0.75", "--broker", redis_server.url)
    assert queued.returncode == 0, queued.stderr
    (job_id,) = _job_ids(queued.stdout)
    ws = open_workspace(celery_workspace)
    try:
        # Mid-task: the heatmap part is stored, the CAM layers are being computed.
        _wait_for(lambda: (j := get_job(ws.store, job_id)).status == "running" and j.progress >= 0.3, 180,
                  "the CAM job to be half way", celery_worker)
        celery_worker.kill()
        killed = get_job(ws.store, job_id)
        heat = cached_heatmap(ws, "P004-S1", "patch-cnn", HeatmapParams(overlap=0.75))
        cam_files = [cam_cache_path(ws, heat, m) for m in STITCHED_METHODS]
        assert killed.status == "running" and killed.attempts == 1 and killed.progress < 1
        assert not all(f.exists() for f in cam_files), "the worker was killed too late: the job had finished"
        # A new worker; Redis hands it the unacknowledged task once the visibility timeout has passed.
        celery_worker.start()
        done = _wait_for(lambda: (j := get_job(ws.store, job_id)).finished and j, 180, "the job to run again", celery_worker)
        assert done.status == "done" and done.attempts == 2, (done, celery_worker.output())
        assert done.worker.startswith(f"test-worker-{celery_worker.starts}@")
        assert all(f.is_file() for f in cam_files) and not list((celery_workspace / "cache").rglob("*.part"))
    finally:
        ws.store.dispose()


def test_a_failing_task_is_retried_a_bounded_number_of_times_then_reported(celery_workspace, celery_worker, redis_server):
    celery_worker.ensure_running()
    heatmaps_dir = celery_workspace / "cache" / "heatmaps"
    aside = heatmaps_dir.with_name("heatmaps-aside")
    if heatmaps_dir.exists():
        heatmaps_dir.rename(aside)
    heatmaps_dir.write_text("not a folder: every heatmap write fails, as on a broken share")
    try:
        failed = _cli(celery_worker, "precompute", "--workspace", str(celery_workspace), "--what", "heatmaps", "--slides", "P005-S1",
                      "--broker", redis_server.url, "--wait")
    finally:
        heatmaps_dir.unlink()
        if aside.exists():
            aside.rename(heatmaps_dir)
    assert failed.returncode == 1 and "0 done, 1 failed or cancelled" in failed.stdout, failed.stderr
    (job_id,) = _job_ids(failed.stdout)
    ws = open_workspace(celery_workspace)
    try:
        job = get_job(ws.store, job_id)
        assert job.status == "failed" and job.attempts == 3 and job.message.endswith("(after 3 attempts)"), job
        assert "Error" in job.message and job.key is None and job.result == {}
        assert cached_heatmap(ws, "P005-S1", "patch-cnn") is None  # nothing partial was kept or marked done
        assert celery_worker.output().count("Retry in") >= 2  # Celery sent the task back twice
        # The share is back: a reviewer presses Retry and the job completes.
        JobDispatcher(ws, make_celery(redis_server.url)).retry(job_id, "test-reviewer")
        done = _wait_for(lambda: (j := get_job(ws.store, job_id)).finished and j, 120, "the retried job", celery_worker)
        assert done.status == "done" and done.attempts == 1 and cached_heatmap(ws, "P005-S1", "patch-cnn") is not None
    finally:
        ws.store.dispose()
        shutil.rmtree(aside, ignore_errors=True)
