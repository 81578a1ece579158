"""Jobs run here (no broker): the jobs table's states on SQLite and PostgreSQL, idempotent job functions with atomic
results, bounded retries, cancellation, the precompute plan and the ``precompute`` command; schema v4; moving a
case store to PostgreSQL."""

from __future__ import annotations

import shutil
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
from sqlalchemy import inspect, text

from core.demo.build import REDUCED_SPEC
from core.errors import NotFoundError, PathReviewError
from core.explain.patient_explanations import PatientExplainers
from core.heatmaps.cam_maps import STITCHED_METHODS, cam_cache_path
from core.heatmaps.slide_heatmap import HeatmapParams, cached_heatmap, heatmap_key
from core.jobs import kinds
from core.jobs.kinds import plan_precompute
from core.jobs.runner import execute_job, run_job_here, run_tracked
from core.jobs.state import (
    JobSpec,
    cancel_job,
    claim_job,
    create_jobs,
    fail_attempt,
    finish_job,
    get_job,
    list_jobs,
    report_progress,
    requeue_job,
)
from core.store.database import SCHEMA_VERSION, open_store
from core.store.reviews import record_review, review_versions
from core.store.schema import Patient, Slide
from core.store.transfer import copy_store
from core.workspace import open_workspace
from tests.helpers import assert_one_line_error, run_cli


@pytest.fixture(scope="module")
def job_root(demo_workspace, tmp_path_factory):
    """A copy of the demo with an empty cache: what a job computes here is not already there."""
    root = tmp_path_factory.mktemp("jobs") / "workspace"
    shutil.copytree(demo_workspace, root, ignore=shutil.ignore_patterns("cache"))
    return root


@pytest.fixture
def ws(job_root):
    workspace = open_workspace(job_root)
    yield workspace
    workspace.store.dispose()


def _no_partial_files(root) -> bool:
    return not list((root / "cache").rglob("*.part"))


# -- the jobs table ------------------------------------------------------------------------------

def test_asking_again_finds_the_queued_jobs_across_query_batches_and_long_subjects(empty_store, monkeypatch):
    from core.jobs import state

    monkeypatch.setattr(state, "SUBJECTS_PER_QUERY", 2)  # five subjects: three queries
    specs = [JobSpec("heatmap", f"P{i:03d}-S1", {"overlap": 0.0}) for i in range(4)] + [JobSpec("lime", "R" * 200)]
    first, none = create_jobs(empty_store, specs, "local")
    assert len(first) == 5 and none == []
    assert create_jobs(empty_store, specs + [JobSpec("heatmap", "P009-S1", {"overlap": 0.5})], "local") == ([max(first) + 1], first)


def test_job_states_are_compare_and_set(empty_store):
    spec = JobSpec("heatmap", "P001-S1", {"overlap": 0.0})
    (first,), existing = create_jobs(empty_store, [spec], "local", "alice")
    assert existing == []
    assert create_jobs(empty_store, [spec, JobSpec("lime", "P001-R1")], "local") == ([first + 1], [first])  # queued once
    job = claim_job(empty_store, first, "host:1")
    assert (job.status, job.attempts, job.worker, job.requested_by) == ("running", 1, "host:1", "alice")
    assert report_progress(empty_store, first, 0.4, "halfway")
    assert get_job(empty_store, first).progress == pytest.approx(0.4)
    cancel_job(empty_store, first, "bob")
    assert get_job(empty_store, first).status == "cancelled" and "bob" in get_job(empty_store, first).message
    assert not report_progress(empty_store, first, 0.5, "still going")  # the runner learns of the cancel here
    assert claim_job(empty_store, first, "host:2") is None  # a redelivered message of a cancelled job does nothing
    with pytest.raises(PathReviewError, match="only queued or running"):
        cancel_job(empty_store, first)
    assert requeue_job(empty_store, first, "bob").status == "queued" and get_job(empty_store, first).attempts == 0
    with pytest.raises(PathReviewError, match="only failed, cancelled or stalled"):
        requeue_job(empty_store, first)
    # Attempts are bounded: a message redelivered after its worker died counts as an attempt.
    for attempt in (1, 2, 3):
        assert claim_job(empty_store, first, f"host:{attempt}").attempts == attempt
    assert claim_job(empty_store, first, "host:4") is None
    job = get_job(empty_store, first)
    assert job.status == "failed" and "gave up after 3 attempts" in job.message and job.result == {} and job.key is None
    second = first + 1
    claim_job(empty_store, second, "host")
    assert fail_attempt(empty_store, second, "OSError: disk", retryable=True) == "queued"
    assert "try 1 of 3 failed: OSError: disk; trying again" in get_job(empty_store, second).message
    claim_job(empty_store, second, "host")
    finish_job(empty_store, second, {"key": "abc", "patches": 3})
    done = get_job(empty_store, second)
    assert (done.status, done.progress, done.key, done.result) == ("done", 1.0, "abc", {"key": "abc", "patches": 3})
    assert [j.id for j in list_jobs(empty_store)] == [second, first]
    assert [j.id for j in list_jobs(empty_store, ("done",))] == [second]
    with pytest.raises(NotFoundError):
        get_job(empty_store, 99999)


# -- running jobs here ---------------------------------------------------------------------------

def test_transient_failures_are_retried_a_bounded_number_of_times_then_reported(ws, monkeypatch):
    calls = []

    def flaky(workspace, subject, params, progress):
        calls.append(subject)
        progress(0.5, "working")
        if subject == "always" or len(calls) < 3:
            raise OSError("the shared filesystem went away")
        return {"key": "k", "patches": 1}

    monkeypatch.setitem(kinds.JOB_KINDS, "heatmap", flaky)
    (job_id,), _ = create_jobs(ws.store, [JobSpec("heatmap", "always")], "local")
    assert run_job_here(ws, job_id, retry_delay=0) == "failed"
    job = get_job(ws.store, job_id)
    assert calls == ["always"] * 3 and job.attempts == 3
    assert job.message == "OSError: the shared filesystem went away (after 3 attempts)" and job.key is None and job.result == {}
    calls.clear()
    (job_id,), _ = create_jobs(ws.store, [JobSpec("heatmap", "third time lucky")], "local")
    assert run_job_here(ws, job_id, retry_delay=0) == "done"
    assert get_job(ws.store, job_id).attempts == 3 and len(calls) == 3


def test_a_user_error_fails_at_once_with_its_message(ws):
    with ws.store.session() as s:
        if s.get(Slide, "P001-GONE") is None:
            s.add(Slide(id="P001-GONE", patient_id="P001", file="gone.tiff", mpp=0.5, width=4096, height=4096))
    (job_id,), _ = create_jobs(ws.store, [JobSpec("heatmap", "P001-GONE")], "local")
    assert execute_job(ws, job_id) == "failed"
    job = get_job(ws.store, job_id)
    assert job.attempts == 1 and "gone.tiff is missing" in job.message


def test_cancelling_a_running_job_stops_it_and_stores_nothing(ws):
    params = HeatmapParams(overlap=0.75)
    slide = "P011-S1"
    path = ws.slides_dir / f"{slide}.tiff"
    key = heatmap_key(path, ws.manifest("patch-cnn").weights_sha256, params, ws.manifest("patch-cnn").input)
    (job_id,), _ = create_jobs(ws.store, [JobSpec("heatmap", slide, {"overlap": 0.75})], "local")
    seen = []

    def reviewer_cancels(fraction, message):  # the first progress report: a reviewer presses Cancel on the Jobs page
        seen.append(fraction)
        if len(seen) == 2:
            cancel_job(ws.store, job_id, "alice")

    assert execute_job(ws, job_id, on_progress=reviewer_cancels, interval=0) == "cancelled"
    assert get_job(ws.store, job_id).status == "cancelled" and max(seen) < 1
    assert not (ws.cache_dir / "heatmaps" / f"{key}.npz").exists() and _no_partial_files(ws.root)


def test_job_functions_are_idempotent_and_write_complete_results(ws):
    specs = [JobSpec("heatmap", "P002-S1", {"overlap": 0.0}), JobSpec("cams", "P002-S1", {"overlap": 0.0}),
             JobSpec("shap", "P002", {"patients": ["P002", "P003"]}), JobSpec("lime", "P002-R1", {})]
    first, _ = create_jobs(ws.store, specs, "local")
    assert [run_job_here(ws, j) for j in first] == ["done"] * 4
    jobs = [get_job(ws.store, j) for j in first]
    heat = cached_heatmap(ws, "P002-S1", "patch-cnn")
    assert jobs[0].key == jobs[1].key == heat.key and jobs[0].result["patches"] == len(heat.probs)
    heat_file = ws.cache_dir / "heatmaps" / f"{heat.key}.npz"
    cam_files = [cam_cache_path(ws, heat, m) for m in STITCHED_METHODS]
    assert all(f.is_file() for f in cam_files) and jobs[1].result["attention"]
    assert jobs[2].result == {"patients": 2, "computed": 2, "from_cache": 0, "model_id": "progression-gru", "left_out": []}
    assert jobs[3].result["source"] == "computed"
    stamps = [f.stat().st_mtime_ns for f in [heat_file, *cam_files]]
    again, _ = create_jobs(ws.store, specs, "local")  # the earlier jobs are done: these are new ones
    assert set(again).isdisjoint(first)
    assert [run_job_here(ws, j) for j in again] == ["done"] * 4
    jobs = [get_job(ws.store, j) for j in again]
    assert jobs[2].result["from_cache"] == 2 and jobs[3].result["source"] == "cache"
    assert [f.stat().st_mtime_ns for f in [heat_file, *cam_files]] == stamps  # found, not recomputed
    assert _no_partial_files(ws.root)


def test_shap_read_from_the_cache_equals_the_computed_one_and_what_if_still_works(ws):
    computed = PatientExplainers(ws).explain("P004")
    stored = PatientExplainers(ws).explain("P004")
    assert (computed.source, stored.source) == ("computed", "cache")
    np.testing.assert_array_equal(computed.shap.phi, stored.shap.phi)
    np.testing.assert_array_equal(computed.shap.output, stored.shap.output)
    values = {k: v for k, v in stored.feature_values(1).items()}
    a = PatientExplainers(ws)
    a._cache[(computed.model_id, "P004")] = computed
    edited_from_computed = a.what_if("P004", 1, values)
    edited_from_stored = PatientExplainers(ws).what_if("P004", 1, values)
    np.testing.assert_allclose(edited_from_stored.shap.phi, edited_from_computed.shap.phi, atol=1e-12)
    np.testing.assert_allclose(edited_from_stored.shap.phi[0], stored.shap.phi[0])


def test_a_background_callback_job_is_recorded(ws):
    progress = []
    job_id, status = run_tracked(ws, JobSpec("heatmap", "P003-S1", {"model_id": "patch-cnn", "overlap": 0.0}),
                                 lambda f, m: progress.append((f, m)))
    job = get_job(ws.store, job_id)
    assert status == "done" and job.runner == "background" and job.key == cached_heatmap(ws, "P003-S1", "patch-cnn").key
    assert progress[-1][0] == 1.0 and "patches" in progress[-1][1]


def test_a_slow_job_of_the_same_spec_is_waited_for_not_repeated(ws, monkeypatch):
    started, release = threading.Event(), threading.Event()

    def slow(workspace, subject, params, progress):
        started.set()
        release.wait(30)
        return {"key": "slow", "patches": 0}

    monkeypatch.setitem(kinds.JOB_KINDS, "heatmap", slow)
    spec = JobSpec("heatmap", "P012-S1", {"waited": True})
    outcome = {}
    first = threading.Thread(target=lambda: outcome.setdefault("first", run_tracked(ws, spec)))
    first.start()
    assert started.wait(30)
    second = threading.Thread(target=lambda: outcome.setdefault("second", run_tracked(ws, spec)))
    second.start()
    release.set()
    first.join(30)
    second.join(30)
    assert outcome["first"] == outcome["second"] and outcome["first"][1] == "done"


# -- planning and the command --------------------------------------------------------------------

def test_plan_precompute(ws):
    specs = plan_precompute(ws, "heatmaps,shap,lime", ["P001", "P002"])
    kinds_ = [s.kind for s in specs]
    assert kinds_.count("heatmap") >= 2 and kinds_.count("shap") == 1 and kinds_.count("lime") >= 2
    assert next(s for s in specs if s.kind == "shap").params == {"patients": ["P001", "P002"]}
    with ws.store.session() as s:
        patients = s.query(Patient).count()
    everyone = plan_precompute(ws, ["shap"])
    assert sum(len(s.params["patients"]) for s in everyone) == patients and all(len(s.params["patients"]) <= 32 for s in everyone)
    assert [s.subject for s in plan_precompute(ws, "cams", slides=["P005-S1"], overlap=0.5)] == ["P005-S1"]
    with pytest.raises(PathReviewError, match="cannot precompute maps"):
        plan_precompute(ws, "maps")
    with pytest.raises(NotFoundError, match="no patient 'P999'"):
        plan_precompute(ws, "heatmaps", ["P999"])
    with pytest.raises(PathReviewError, match="overlap"):
        plan_precompute(ws, "heatmaps", ["P001"], overlap=1.5)


def test_precompute_command_runs_here_with_a_progress_bar(job_root):
    result = run_cli("precompute", "--workspace", str(job_root), "--what", "heatmaps,lime", "--patients", "P006", timeout=600)
    assert result.returncode == 0, result.stderr
    assert "done      heatmap P006-S1" in result.stderr and "lime P006-R1" in result.stderr
    assert result.stdout.strip().endswith("0 failed or cancelled")
    ws = open_workspace(job_root)
    try:
        assert cached_heatmap(ws, "P006-S1", "patch-cnn") is not None
        assert list((job_root / "cache" / "explanations" / "lime").glob("*.json"))
    finally:
        ws.store.dispose()
    for args, message in ((("--what", "maps"), "cannot precompute maps"), (("--patients", "P999"), "no patient 'P999'"),
                          (("--wait",), "--wait follows jobs on Celery workers")):
        assert_one_line_error(run_cli("precompute", "--workspace", str(job_root), *args, timeout=600), message)
    no_broker = run_cli("worker", "--device", "cpu", timeout=600)
    assert no_broker.returncode == 2 and "a worker needs a broker" in no_broker.stderr


# -- schema v4 and PostgreSQL --------------------------------------------------------------------

def test_v4_adds_the_jobs_table_to_an_older_store(empty_store):
    assert SCHEMA_VERSION >= 4
    with empty_store.engine.begin() as conn:
        conn.execute(text("DROP TABLE jobs"))
        conn.execute(text("DELETE FROM schema_version WHERE version >= 4"))
    empty_store.dispose()
    reopened = open_store(empty_store.url)
    try:
        assert "jobs" in inspect(reopened.engine).get_table_names() and reopened.schema_version() == SCHEMA_VERSION
        assert create_jobs(reopened, [JobSpec("lime", "R1")], "local")[0] == [1]
    finally:
        reopened.dispose()


def test_a_workspace_store_moves_to_postgresql_and_keeps_working(demo_workspace, postgres_database):
    counts = copy_store(f"sqlite:///{demo_workspace / 'cases.db'}", postgres_database)
    assert counts["patients"] == REDUCED_SPEC.n_patients and counts["slides"] >= REDUCED_SPEC.n_patients and counts["users"] >= 3
    store = open_store(postgres_database)
    try:
        # ids inserted by the copy do not collide with new rows
        seen = review_versions(store, "P040")["slide"]
        assert record_review(store, "P040", "slide", "agree", "", [], False, "alice", seen).version == seen + 1
        assert create_jobs(store, [JobSpec("lime", "P001-R1")], "local")[0]
    finally:
        store.dispose()
    with pytest.raises(PathReviewError, match="already has rows"):
        copy_store(f"sqlite:///{demo_workspace / 'cases.db'}", postgres_database)


def test_a_job_left_running_by_a_dead_process_is_taken_over(ws):
    """The server (or its background process) died mid-job: the next request for the same heatmap runs it."""
    import socket

    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    spec = JobSpec("heatmap", "P013-S1", {"model_id": "patch-cnn", "overlap": 0.0})
    (job_id,), _ = create_jobs(ws.store, [spec], "background")
    claim_job(ws.store, job_id, f"background {socket.gethostname()}:{gone.pid}")
    started = time.monotonic()
    assert run_tracked(ws, spec) == (job_id, "done")
    assert time.monotonic() - started < 60 and get_job(ws.store, job_id).attempts == 2
