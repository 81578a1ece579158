"""The jobs table: where each job stands, shared by every process through the case store.

Every change of status is one conditional UPDATE (compare-and-set on the status), so the app, Celery workers and
local runners on any number of hosts can race on a job without losing a cancel or running a finished job again.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import func, select, update

from core.errors import NotFoundError, PathReviewError
from core.store.database import CaseStore, rows_matched
from core.store.schema import Job, as_utc, utc_now

ACTIVE = ("queued", "running")
FINISHED = ("done", "failed", "cancelled")
DEFAULT_MAX_ATTEMPTS = 3
STALLED_AFTER = timedelta(minutes=5)  # a running job with no progress for this long: its worker is probably gone
MAX_MESSAGE_CHARS = 2000
SUBJECTS_PER_QUERY = 500


@dataclass(frozen=True)
class JobSpec:
    """What to compute: a kind of job, its subject (slide, report, patients) and its parameters."""

    kind: str
    subject: str
    params: dict = field(default_factory=dict)


@dataclass(frozen=True)
class JobView:
    id: int
    kind: str
    subject: str
    params: dict
    key: str | None
    status: str
    progress: float
    message: str
    attempts: int
    max_attempts: int
    runner: str
    worker: str
    task_id: str | None
    result: dict
    requested_by: str
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, row: Job) -> JobView:
        return cls(row.id, row.kind, row.subject, dict(row.params or {}), row.key, row.status, float(row.progress or 0.0),
                   row.message or "", row.attempts, row.max_attempts, row.runner, row.worker or "", row.task_id,
                   dict(row.result or {}), row.requested_by or "", as_utc(row.created_at), as_utc(row.updated_at))

    @property
    def finished(self) -> bool:
        return self.status in FINISHED

    def stalled(self, now: datetime | None = None) -> bool:
        return self.status == "running" and (now or utc_now()) - self.updated_at > STALLED_AFTER


def _clip(message: str) -> str:
    return message if len(message) <= MAX_MESSAGE_CHARS else message[: MAX_MESSAGE_CHARS - 1] + "…"


def create_jobs(store: CaseStore, specs: list[JobSpec], runner: str, requested_by: str = "",
                max_attempts: int = DEFAULT_MAX_ATTEMPTS) -> tuple[list[int], list[int]]:
    """(ids of new queued jobs, ids of jobs already queued or running for the same spec): asking twice queues once."""
    new, existing = [], []
    subjects = sorted({spec.subject[:128] for spec in specs})
    with store.session() as s:
        # Only the active jobs on these subjects, a bounded number of ids per query: a precompute queued by another
        # reviewer is not read for each click.
        active = [j for start in range(0, len(subjects), SUBJECTS_PER_QUERY) for j in s.scalars(
            select(Job).where(Job.status.in_(ACTIVE), Job.subject.in_(subjects[start : start + SUBJECTS_PER_QUERY])))]
        by_spec = {(j.kind, j.subject, _canonical(j.params)): j.id for j in active}
        for spec in specs:
            spec_key = (spec.kind, spec.subject[:128], _canonical(spec.params))
            if spec_key in by_spec:
                existing.append(by_spec[spec_key])
                continue
            row = Job(kind=spec.kind, subject=spec.subject[:128], params=dict(spec.params), status="queued", progress=0.0, message="",
                      attempts=0, max_attempts=max_attempts, runner=runner, worker="", result={}, requested_by=requested_by[:64],
                      created_at=utc_now(), updated_at=utc_now())
            s.add(row)
            s.flush()
            by_spec[spec_key] = row.id
            new.append(row.id)
    return new, existing


def _canonical(params: dict) -> str:
    return json.dumps(params or {}, sort_keys=True)


def get_job(store: CaseStore, job_id: int) -> JobView:
    with store.session() as s:
        row = s.get(Job, job_id)
        if row is None:
            raise NotFoundError(f"no job {job_id} in this workspace")
        return JobView.of(row)


def list_jobs(store: CaseStore, statuses: tuple[str, ...] | None = None, limit: int = 100, ids: list[int] | None = None) -> list[JobView]:
    """Newest first."""
    query = select(Job).order_by(Job.id.desc()).limit(limit)
    if statuses:
        query = query.where(Job.status.in_(statuses))
    if ids is not None:
        query = query.where(Job.id.in_(ids))
    with store.session() as s:
        return [JobView.of(r) for r in s.scalars(query)]


def active_job(store: CaseStore, spec: JobSpec) -> JobView | None:
    """The queued or running job of exactly this spec (what ``create_jobs`` would not queue twice), if any."""
    with store.session() as s:
        rows = s.scalars(select(Job).where(Job.status.in_(ACTIVE), Job.kind == spec.kind, Job.subject == spec.subject[:128])
                         .order_by(Job.id.desc()))
        return next((JobView.of(r) for r in rows if _canonical(r.params) == _canonical(spec.params)), None)


def active_job_count(store: CaseStore, requested_by: str) -> int:
    """How many jobs this user has queued or running: the per-user concurrency limit counts them."""
    with store.session() as s:
        return s.scalar(select(func.count()).select_from(Job).where(Job.requested_by == requested_by, Job.status.in_(ACTIVE))) or 0


def _set(store: CaseStore, job_id: int, when: tuple[str, ...], **values: object) -> bool:
    """Compare-and-set: update the job only while its status is one of ``when``; True when it was."""
    with store.session() as s:
        result = s.execute(update(Job).where(Job.id == job_id, Job.status.in_(when)).values(updated_at=utc_now(), **values))
        return rows_matched(result) == 1


def claim_job(store: CaseStore, job_id: int, worker: str) -> JobView | None:
    """Start an attempt: the job is running and its attempt counted. None when it must not run: cancelled or done
    meanwhile, or out of attempts (a worker running it was lost too often: it is then marked failed)."""
    with store.session() as s:
        result = s.execute(update(Job).where(Job.id == job_id, Job.status.in_(ACTIVE), Job.attempts < Job.max_attempts)
                           .values(status="running", attempts=Job.attempts + 1, worker=worker[:128], progress=0.0,
                                   updated_at=utc_now()))
        claimed = rows_matched(result) == 1
    job = get_job(store, job_id)
    if claimed:
        return job
    if job.status in ACTIVE:  # attempts used up by workers that died mid-run (the message was redelivered)
        _set(store, job_id, ACTIVE, status="failed",
             message=_clip(f"gave up after {job.attempts} attempts; the last one stopped without finishing "
                           f"(its worker was lost). {job.message}".strip()))
    return None


def report_progress(store: CaseStore, job_id: int, fraction: float, message: str) -> bool:
    """Record progress of a running job; False when it is no longer running (it was cancelled)."""
    return _set(store, job_id, ("running",), progress=max(0.0, min(1.0, float(fraction))), message=_clip(message))


def finish_job(store: CaseStore, job_id: int, result: dict, message: str = "") -> None:
    """Done, with its result summary. Called only once the result is complete in the cache."""
    _set(store, job_id, ("running", "queued", "cancelled"), status="done", progress=1.0, result=result,
         key=result.get("key"), message=_clip(message))


def fail_attempt(store: CaseStore, job_id: int, message: str, retryable: bool) -> str:
    """After a failed attempt: queued again when retryable and attempts remain, else failed. Returns the new status."""
    job = get_job(store, job_id)
    if retryable and job.attempts < job.max_attempts:
        _set(store, job_id, ("running",), status="queued", message=_clip(f"try {job.attempts} of {job.max_attempts} failed: "
                                                                         f"{message}; trying again"))
        return "queued"
    suffix = f" (after {job.attempts} attempts)" if retryable else ""
    _set(store, job_id, ("running", "queued"), status="failed", message=_clip(message + suffix))
    return "failed"


def cancel_job(store: CaseStore, job_id: int, user: str = "") -> JobView:
    """A queued job will not start; a running one stops at its next progress report. Nothing partial is kept."""
    job = get_job(store, job_id)
    if job.status not in ACTIVE:
        raise PathReviewError(f"job {job_id} is {job.status}; only queued or running jobs can be cancelled")
    who = f" by {user}" if user else ""
    _set(store, job_id, ACTIVE, status="cancelled", message=f"cancelled{who} while {job.status}")
    return get_job(store, job_id)


def requeue_job(store: CaseStore, job_id: int, user: str = "") -> JobView:
    """Retry a failed or cancelled job (or one whose worker stalled): queued again with fresh attempts."""
    job = get_job(store, job_id)
    if not (job.status in ("failed", "cancelled") or job.stalled()):
        raise PathReviewError(f"job {job_id} is {job.status}; only failed, cancelled or stalled jobs can be retried")
    who = f" by {user}" if user else ""
    _set(store, job_id, (job.status,), status="queued", attempts=0, progress=0.0, message=f"retry requested{who}")
    return get_job(store, job_id)


def set_task_id(store: CaseStore, job_id: int, task_id: str, runner: str) -> None:
    with store.session() as s:
        s.execute(update(Job).where(Job.id == job_id).values(task_id=task_id, runner=runner))
