"""Where a workspace's jobs run: on Celery workers when a broker is configured, else in a thread of this process."""

from __future__ import annotations

from typing import TYPE_CHECKING

from core.errors import PathReviewError
from core.jobs.runner import LocalJobRunner
from core.jobs.state import JobSpec, JobView, cancel_job, create_jobs, requeue_job, set_task_id
from core.workspace import Workspace, resolve_database_url

if TYPE_CHECKING:
    from celery import Celery


class JobDispatcher:
    """Queue jobs and send them on. With ``celery_app`` the job task goes through the broker to the workers;
    without, a local runner (one thread) works through them. Either way the jobs table says where each stands."""

    def __init__(self, workspace: Workspace, celery_app: Celery | None = None) -> None:
        self.workspace = workspace
        self.celery_app = celery_app
        self._local = LocalJobRunner(workspace) if celery_app is None else None

    @property
    def mode(self) -> str:
        return "celery" if self.celery_app is not None else "local"

    def submit(self, specs: list[JobSpec], requested_by: str = "") -> tuple[list[int], list[int]]:
        """(new job ids, ids of the same jobs already queued or running); the new ones are sent on."""
        new, existing = create_jobs(self.workspace.store, specs, self.mode, requested_by)
        self.send(new)
        return new, existing

    def send(self, job_ids: list[int]) -> None:
        if self.celery_app is None:
            assert self._local is not None  # made in __init__ whenever there is no Celery app
            self._local.submit(job_ids)
            return
        from core.jobs.celery_app import TASK_NAME

        # The worker opens the same workspace path (a shared mount) and, unless overridden here, its own database URL.
        configured = resolve_database_url(self.workspace.config.database_url, self.workspace.root)
        database_url = None if self.workspace.store.url == configured else self.workspace.store.url
        for job_id in job_ids:
            try:
                result = self.celery_app.send_task(TASK_NAME, args=[str(self.workspace.root), database_url, job_id])
            except Exception as exc:  # noqa: BLE001 - kombu raises many kinds when the broker is down
                raise PathReviewError(f"cannot reach the job broker at {redacted_url(self.celery_app.conf.broker_url)}: {exc}; "
                                     f"job {job_id} stays queued — retry it from the Jobs page") from exc
            set_task_id(self.workspace.store, job_id, result.id, "celery")

    def cancel(self, job_id: int, user: str = "") -> JobView:
        return cancel_job(self.workspace.store, job_id, user)

    def retry(self, job_id: int, user: str = "") -> JobView:
        job = requeue_job(self.workspace.store, job_id, user)
        self.send([job_id])
        return job


def redacted_url(url: str | None) -> str:
    """A broker URL without its password."""
    if not url or "@" not in url:
        return url or ""
    scheme, rest = url.split("://", 1) if "://" in url else ("", url)
    credentials, host = rest.rsplit("@", 1)
    user = credentials.split(":", 1)[0]
    return f"{scheme}://{user + ':***@' if user or ':' in credentials else ''}{host}"
