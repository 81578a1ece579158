"""The Celery application: a Redis broker (also the result backend, which Dash's ``CeleryManager`` needs) and one
task, ``pathreview.run_job``, that runs a job of the jobs table on a worker.

Delivery: the task is acknowledged only after it ran (``acks_late``) and a worker process that dies mid-task
gives its message back (``reject_on_worker_lost``); a whole worker host that dies leaves its message unacknowledged
in Redis, which hands it to another worker after the visibility timeout. Attempts are counted in the jobs table,
so redeliveries and retries together stay within the job's ``max_attempts``.

``celery -A core.jobs.celery_app worker`` reads the broker from ``PATHREVIEW_BROKER_URL``; ``run_dashboard.py
worker --broker URL`` is the same worker with the device, torch threads and the app's background callbacks set up.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

from celery import Celery, Task
from celery.signals import worker_process_init
from sqlalchemy.exc import SQLAlchemyError

from core.jobs.runner import RETRY, execute_job
from core.workspace import Workspace, open_workspace

TASK_NAME = "pathreview.run_job"
QUEUE = "pathreview"
RETRY_DELAY_S = float(os.environ.get("PATHREVIEW_RETRY_DELAY", 5))  # seconds before another attempt after a failure
UNREACHABLE_STORE_RETRIES = 10
DEFAULT_VISIBILITY_TIMEOUT_S = 7200  # longer than the longest job, or a running job is handed out twice


def visibility_timeout() -> int:
    return int(os.environ.get("PATHREVIEW_VISIBILITY_TIMEOUT", DEFAULT_VISIBILITY_TIMEOUT_S))


def make_celery(broker_url: str) -> Celery:
    """A Celery app on ``broker_url`` (redis://host:port/db) with the job task registered."""
    timeout = visibility_timeout()
    app = Celery("pathreview", broker=broker_url, backend=broker_url, set_as_current=False)
    app.conf.update(
        task_serializer="json", result_serializer="json", accept_content=["json"],
        task_default_queue=QUEUE, worker_prefetch_multiplier=1, task_track_started=True, result_expires=24 * 3600,
        broker_connection_retry_on_startup=True, broker_connection_timeout=5,
        task_publish_retry_policy={"max_retries": 3, "interval_start": 0, "interval_step": 0.5, "interval_max": 2},
        # Unacknowledged messages of a lost worker are handed out again after the timeout; look for them often.
        broker_transport_options={"visibility_timeout": timeout, "unacked_restore_interval": max(1, min(10, timeout // 4)),
                                  "unacked_restore_throttle": 1},
        worker_hijack_root_logger=False,
    )
    app.task(name=TASK_NAME, bind=True, acks_late=True, reject_on_worker_lost=True, max_retries=None, ignore_result=True)(_run_job_task)
    return app


_WORKSPACES: dict[tuple[str, str | None], Workspace] = {}
_WORKSPACES_LOCK = threading.Lock()


def worker_workspace(root: str, database_url: str | None) -> Workspace:
    """The workspace a job names, opened once per worker process (its models stay loaded between jobs)."""
    key = (str(Path(root)), database_url)
    with _WORKSPACES_LOCK:
        if key not in _WORKSPACES:
            _WORKSPACES[key] = open_workspace(Path(root), database_url)
        return _WORKSPACES[key]


def _run_job_task(task: Task, root: str, database_url: str | None, job_id: int) -> str:
    try:
        outcome = execute_job(worker_workspace(root, database_url), int(job_id), worker=task.request.hostname or "")
    except SQLAlchemyError as exc:  # the case store is unreachable from this worker: try later, a bounded number of times
        raise task.retry(exc=exc, countdown=max(30.0, RETRY_DELAY_S), max_retries=UNREACHABLE_STORE_RETRIES) from exc
    if outcome == RETRY:
        raise task.retry(countdown=RETRY_DELAY_S)  # bounded by the job's attempts in the jobs table
    return outcome


@worker_process_init.connect
def _init_worker_process(**_kwargs: object) -> None:
    """In each pool process: its own torch thread count (the parent's OpenMP pool does not survive fork) and no
    database connection inherited from the parent."""
    threads = os.environ.get("PATHREVIEW_TORCH_THREADS")
    if threads:
        import torch

        torch.set_num_threads(int(threads))
    with _WORKSPACES_LOCK:
        for workspace in _WORKSPACES.values():
            workspace.store.engine.dispose(close=False)


app = make_celery(os.environ.get("PATHREVIEW_BROKER_URL", "redis://127.0.0.1:6379/0"))
