"""``run_dashboard.py precompute`` and ``run_dashboard.py worker``."""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from core.errors import PathReviewError
from core.jobs import WHAT

if TYPE_CHECKING:
    from core.workspace import Workspace


def add_job_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    pre = sub.add_parser("precompute", help="compute heatmaps, CAMs, SHAP and LIME for a cohort ahead of review")
    pre.add_argument("--workspace", type=Path, required=True)
    pre.add_argument("--what", default=",".join(WHAT), help=f"comma-separated, from {','.join(WHAT)} (default: all)")
    pre.add_argument("--patients", nargs="+", default=None, metavar="ID", help="these patients (default: every patient)")
    pre.add_argument("--slides", nargs="+", default=None, metavar="ID", help="these slides (heatmaps and CAMs)")
    pre.add_argument("--overlap", type=float, default=0.0, help="patch overlap of the heatmaps: 0, 0.5 or 0.75 (default 0, as the viewer)")
    pre.add_argument("--model", default=None, help="patch model (default: the workspace's first)")
    pre.add_argument("--broker", default=None, help="enqueue to Celery workers through this broker (redis://host:port/db) "
                                                    "instead of computing here")
    pre.add_argument("--wait", action="store_true", help="with --broker: follow the jobs until they finish")
    pre.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda or cuda:N (local runs)")
    pre.add_argument("--database-url", default=None, help="override the workspace's database URL")

    worker = sub.add_parser("worker", help="a Celery worker that runs precompute jobs and the app's background callbacks")
    worker.add_argument("--broker", default=None, help="redis://host:port/db (default: the workspace's broker_url)")
    worker.add_argument("--workspace", type=Path, default=None,
                        help="also run this workspace's app background callbacks (its path must be the same as the app's)")
    worker.add_argument("--database-url", default=None, help="override the workspace's database URL")
    worker.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda or cuda:N")
    worker.add_argument("--concurrency", type=int, default=1, help="jobs at once (one per GPU is usual)")
    worker.add_argument("--pool", choices=("prefork", "solo", "threads"), default="prefork",
                        help="prefork: each job in a child process that is replaced if it dies (default)")
    worker.add_argument("--torch-threads", type=int, default=None, help="torch CPU threads per job process (default: cores / concurrency)")
    worker.add_argument("--name", default=None, help="worker node name (default pathreview-<pid>@<host>)")
    worker.add_argument("--loglevel", default="INFO")


class ProgressBar:
    """A one-line progress bar on stderr (a line per finished job when stderr is not a terminal)."""

    def __init__(self, total: int, stream: TextIO = sys.stderr, width: int = 30) -> None:
        self.total, self.stream, self.width = total, stream, width
        self.tty = stream.isatty()
        self._last_line = ""

    def show(self, done: float, text: str, finished_line: str | None = None) -> None:
        filled = int(self.width * done / max(self.total, 1))
        line = f"[{'#' * filled}{'.' * (self.width - filled)}] {done:5.1f}/{self.total} {text}"[:160]
        if self.tty:
            self.stream.write("\r" + line.ljust(len(self._last_line)))
            if finished_line:
                self.stream.write("\r" + finished_line.ljust(len(line)) + "\n")
            self.stream.flush()
        elif finished_line:
            self.stream.write(f"[{int(done)}/{self.total}] {finished_line}\n")
            self.stream.flush()
        self._last_line = line


def _open(args: argparse.Namespace) -> Workspace:
    from core.device import set_device_override
    from core.workspace import open_workspace

    set_device_override(args.device)
    return open_workspace(args.workspace, args.database_url)


def run_precompute(args: argparse.Namespace) -> int:
    """0 when every job is done, 1 when some failed or were cancelled; user errors raise ``PathReviewError``."""
    from core.jobs.kinds import plan_precompute
    from core.jobs.runner import run_job_here, worker_name
    from core.jobs.state import create_jobs, get_job

    if args.wait and not args.broker:
        raise PathReviewError("--wait follows jobs on Celery workers; give --broker too (local runs always wait)")
    workspace = _open(args)
    specs = plan_precompute(workspace, args.what, args.patients, args.slides, args.overlap, args.model)
    if not specs:
        print("nothing to precompute for this selection", file=sys.stderr)
        return 0
    if args.broker:
        from core.jobs.celery_app import make_celery
        from core.jobs.dispatch import JobDispatcher, redacted_url

        dispatcher = JobDispatcher(workspace, make_celery(args.broker))
        new, existing = dispatcher.submit(specs, requested_by="precompute")
        ids = new + existing
        print(f"queued {len(new)} jobs on {redacted_url(args.broker)}"
              + (f" ({len(existing)} already queued or running)" if existing else "") + f": job ids {_ranges(ids)}", flush=True)
        if not args.wait:
            return 0
        return _follow(workspace, ids)
    new, existing = create_jobs(workspace.store, specs, "local", "precompute")
    bar = ProgressBar(len(new))
    failed = 0
    for n, job_id in enumerate(new):
        job = get_job(workspace.store, job_id)
        label = f"{job.kind} {job.subject}"

        def show(fraction: float, message: str, n: int = n, label: str = label) -> None:
            bar.show(n + fraction, f"{label}: {message}")

        status = run_job_here(workspace, job_id, worker_name("precompute"), on_progress=show)
        job = get_job(workspace.store, job_id)
        failed += status != "done"
        bar.show(n + 1, label, f"{status:9s} {label}: {job.message}")
    if existing:
        print(f"{len(existing)} of the jobs were already queued or running elsewhere: {_ranges(existing)}", file=sys.stderr)
    print(f"{len(new) - failed} done, {failed} failed or cancelled", flush=True)
    return 1 if failed else 0


def _follow(workspace: Workspace, ids: list[int], poll: float = 0.5) -> int:
    from core.jobs.state import list_jobs

    bar = ProgressBar(len(ids))
    reported: set[int] = set()
    while True:
        jobs = list_jobs(workspace.store, ids=ids, limit=len(ids))
        for job in jobs:
            if job.finished and job.id not in reported:
                reported.add(job.id)
                bar.show(len(reported), "", f"{job.status:9s} {job.kind} {job.subject}: {job.message}")
        running = [j for j in jobs if j.status == "running"]
        done = sum(j.progress if not j.finished else 1.0 for j in jobs)
        bar.show(done, ", ".join(f"{j.kind} {j.subject} {100 * j.progress:.0f}%" for j in running[:3]))
        if len(reported) == len(ids):
            break
        time.sleep(poll)
    failed = sum(j.status != "done" for j in jobs)
    print(f"{len(ids) - failed} done, {failed} failed or cancelled", flush=True)
    return 1 if failed else 0


def _ranges(ids: list[int]) -> str:
    ids = sorted(ids)
    parts, start = [], None
    for i, v in enumerate(ids):
        if start is None:
            start = v
        if i + 1 == len(ids) or ids[i + 1] != v + 1:
            parts.append(f"{start}" if start == v else f"{start}-{v}")
            start = None
    return ", ".join(parts)


def run_worker(args: argparse.Namespace, register_app: Callable[[Workspace, object], None] | None = None) -> int:
    """Start a Celery worker (blocks until it is stopped). ``register_app(workspace, celery_app)`` builds the Dash app
    against this Celery app, so its background callbacks are tasks this worker knows."""
    from core.device import set_device_override
    from core.workspace import open_workspace

    set_device_override(args.device)
    workspace = open_workspace(args.workspace, args.database_url) if args.workspace else None
    broker = args.broker or (workspace.config.broker_url if workspace else None)
    if not broker:
        raise PathReviewError("a worker needs a broker: give --broker redis://host:port/db, or a --workspace whose workspace.toml "
                             "names broker_url")
    if args.concurrency < 1:
        raise PathReviewError("--concurrency must be at least 1")
    threads = args.torch_threads or max(1, (os.cpu_count() or 1) // args.concurrency)
    os.environ["PATHREVIEW_TORCH_THREADS"] = str(threads)  # read by each pool process as it starts
    import torch

    torch.set_num_threads(threads)  # the solo and threads pools run jobs in this process
    from core.jobs.celery_app import make_celery

    celery_app = make_celery(broker)
    if workspace is not None and register_app is not None:
        register_app(workspace, celery_app)
        workspace.store.engine.dispose()  # pool processes open their own connections
    name = args.name or f"pathreview-{os.getpid()}@%h"
    celery_app.worker_main(["worker", f"--loglevel={args.loglevel}", f"--concurrency={args.concurrency}", f"--pool={args.pool}",
                            f"--hostname={name}", "--without-gossip", "--without-mingle"])
    return 0
