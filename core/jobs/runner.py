"""Running one job, wherever it runs: in this process, in a Dash background callback, or as a Celery task.

``execute_job`` claims the job (counting the attempt), runs its kind's function with a progress reporter that
writes to the jobs table (and stops the work when the job was cancelled), and records the outcome: done only once
the result is complete in the cache; a ``PathReviewError`` (bad input a person must fix) fails at once; anything
else is retried until the job's attempts are used up, then reported as failed.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from types import FrameType
from typing import NoReturn

import psutil

from core.errors import PathReviewError
from core.jobs.kinds import JOB_KINDS
from core.jobs.state import JobSpec, cancel_job, claim_job, create_jobs, fail_attempt, finish_job, get_job, report_progress
from core.workspace import Workspace

log = logging.getLogger(__name__)
RETRY = "retry"  # execute_job's outcome when the job is queued for another attempt
OnProgress = Callable[[float, str], None]


class JobCancelled(PathReviewError):
    """The job was cancelled while it ran; its partial work was discarded."""


def worker_name(kind: str = "") -> str:
    return f"{kind + ' ' if kind else ''}{socket.gethostname()}:{os.getpid()}"


class ProgressReporter:
    """``(fraction, message)`` from a job function: written to the jobs table at most every ``interval`` seconds
    (which is also when a cancel is noticed), and passed on to ``on_progress`` (e.g. a Dash progress bar)."""

    def __init__(self, workspace: Workspace, job_id: int, interval: float = 0.5, on_progress: OnProgress | None = None) -> None:
        self.workspace, self.job_id, self.interval, self.on_progress = workspace, job_id, interval, on_progress
        self._last = 0.0

    def __call__(self, fraction: float, message: str = "") -> None:
        if self.on_progress is not None:
            self.on_progress(fraction, message)
        now = time.monotonic()
        if now - self._last < self.interval and fraction < 1.0:
            return
        self._last = now
        if not report_progress(self.workspace.store, self.job_id, fraction, message):
            raise JobCancelled(f"job {self.job_id} was cancelled")


def execute_job(workspace: Workspace, job_id: int, worker: str = "", on_progress: OnProgress | None = None,
                interval: float = 0.5) -> str:
    """Run one attempt of job ``job_id``; return its status afterwards: done, failed, cancelled, or ``RETRY``."""
    job = claim_job(workspace.store, job_id, worker or worker_name())
    if job is None:
        return get_job(workspace.store, job_id).status
    function = JOB_KINDS.get(job.kind)
    if function is None:
        fail_attempt(workspace.store, job_id, f"unknown kind of job {job.kind!r}", retryable=False)
        return "failed"
    reporter = ProgressReporter(workspace, job_id, interval, on_progress)
    try:
        reporter(0.0, "started" if job.attempts == 1 else f"started again (try {job.attempts} of {job.max_attempts})")
        result = function(workspace, job.subject, job.params, reporter)
    except JobCancelled:
        return "cancelled"
    except PathReviewError as exc:
        fail_attempt(workspace.store, job_id, str(exc), retryable=False)
        return "failed"
    except Exception as exc:  # noqa: BLE001 - a transient fault (device, I/O, database): another attempt may succeed
        log.exception("job %s (%s %s) attempt %s failed", job_id, job.kind, job.subject, job.attempts)
        status = fail_attempt(workspace.store, job_id, f"{type(exc).__name__}: {exc}", retryable=True)
        return RETRY if status == "queued" else status
    finish_job(workspace.store, job_id, result, _summary(job.kind, result))
    return "done"


def _summary(kind: str, result: dict) -> str:
    # How a result was computed, when the user should know (e.g. on the CPU after the GPU ran out of memory), is kept.
    notices = "".join(f" {n}" for n in result.get("notices", []))
    if kind == "heatmap":
        return f"{result['patches']} tissue patches.{notices}"
    if kind == "cams":
        return f"{len(result['methods'])} CAM layers, {len(result['attention'])} attention maps.{notices}"
    if kind == "layer":
        return f"{result['layer']} stored.{notices}"
    if kind == "mil":
        return f"{result['model_id']}: {result['patches']} patches."
    if kind == "mil-refine":
        return f"{result['patches']} patches re-extracted in {result['seconds']} s on {result['device']}."
    if kind == "shap":
        return f"{result['patients']} patients ({result['computed']} computed, {result['from_cache']} already stored)"
    if kind == "lime":
        return f"predicted {result['predicted']}, {result['stability']} across seeds"
    return ""


def run_job_here(workspace: Workspace, job_id: int, worker: str = "", on_progress: OnProgress | None = None,
                 retry_delay: float = 1.0) -> str:
    """Run a job in this process until it is finished, retrying as ``execute_job`` says."""
    while True:
        outcome = execute_job(workspace, job_id, worker, on_progress)
        if outcome != RETRY:
            return outcome
        time.sleep(retry_delay)


def run_tracked(workspace: Workspace, spec: JobSpec, on_progress: OnProgress | None = None, requested_by: str = "",
                runner: str = "background") -> tuple[int, str]:
    """Record a job and run it right here (e.g. in a Dash background callback), so the Jobs page shows it too.
    Returns (job id, final status). A job of the same spec that a live process is running is waited for; one that
    is only queued, or whose process is gone, is taken over and run here."""
    new, existing = create_jobs(workspace.store, [spec], runner, requested_by)
    job_id = new[0] if new else existing[0]
    job = get_job(workspace.store, job_id)
    while job.status == "running" and not job.stalled() and not _process_gone(job.worker):
        if on_progress is not None:
            on_progress(job.progress, job.message)
        time.sleep(0.5)
        job = get_job(workspace.store, job_id)
    if job.finished:
        return job_id, job.status
    with _cancel_on_sigterm(workspace, job_id):
        return job_id, run_job_here(workspace, job_id, worker_name(runner), on_progress)


def _process_gone(worker: str) -> bool:
    """True when ``worker`` names a process of this host (``host:pid``) that no longer exists."""
    host, _, pid = worker.rpartition(" ")[2].rpartition(":")
    return host == socket.gethostname() and pid.isdigit() and not psutil.pid_exists(int(pid))


@contextlib.contextmanager
def _cancel_on_sigterm(workspace: Workspace, job_id: int) -> Iterator[None]:
    """A background callback's cancel button terminates its process (SIGTERM): the job is then marked cancelled."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum: int, frame: FrameType | None) -> NoReturn:
        with contextlib.suppress(PathReviewError):
            cancel_job(workspace.store, job_id, "")
        raise JobCancelled(f"job {job_id} was cancelled")

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


class LocalJobRunner:
    """Jobs of an app without a broker: run one at a time in a thread of the app's process."""

    def __init__(self, workspace: Workspace, threads: int = 1) -> None:
        self.workspace = workspace
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="pathreview-job")

    def submit(self, job_ids: list[int]) -> None:
        for job_id in job_ids:
            self._pool.submit(self._run, job_id)

    def _run(self, job_id: int) -> None:
        try:
            run_job_here(self.workspace, job_id, worker_name("in-process"))
        except Exception:  # noqa: BLE001 - the job table keeps the outcome; a crash here must not kill the pool
            log.exception("in-process job %s crashed", job_id)
