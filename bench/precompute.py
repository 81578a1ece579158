"""Precompute through Celery: heatmaps of 8 demo slides run as jobs in this process, then through Redis on 1 and
on 2 Celery worker processes (``run_dashboard.py worker``), each time from an empty heatmap cache.

    python bench/precompute.py [--workspace DIR] [--slides 8] [--overlap 0.75] [--threads 1] [--device cpu]

Every job process uses ``--threads`` torch threads (this process too, for the in-process run), and each run starts
with its processes warm (model loaded, one job done), so the runs do the same work with the same compute and the
ratios measure the queue and the workers, not start-up. The reduced demo slides are 4096 x 4096 px: at the
viewer's default 0 % overlap one is ~80 patches (~0.1 s), so the default here is 75 % overlap (~1,700 patches a
slide), closer to the seconds-to-minutes a lab's slide takes; the small-job overhead is reported too.

The bound it names: ``machine_parallel_speedup``, how much faster two CPU-bound processes finish than one doing
both shares of the work (2.0 on two free cores; a VM whose vCPUs are throttled or shared gives less, and no
scheduler can scale past it). RESULT scaling_2_workers = time on 1 worker / time on 2 workers; RESULT
queue_overhead = time on 1 worker / time in this process. Each configuration is timed ``--repeats`` times (in
this process and on one worker in turn); the best is kept.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.demo_workspace import bench_workspace_root  # noqa: E402
from core.jobs.celery_app import make_celery  # noqa: E402
from core.jobs.dispatch import JobDispatcher  # noqa: E402
from core.jobs.runner import run_job_here  # noqa: E402
from core.jobs.state import JobSpec, create_jobs, list_jobs  # noqa: E402
from core.store.schema import Slide  # noqa: E402
from core.workspace import open_workspace  # noqa: E402
from tests.services import CeleryWorker, RedisServer  # noqa: E402


def clear_heatmaps(root: Path) -> None:
    shutil.rmtree(root / "cache" / "heatmaps", ignore_errors=True)
    shutil.rmtree(root / "cache" / "explanations", ignore_errors=True)


def run_in_process(ws, specs: list[JobSpec]) -> tuple[float, float]:
    """Seconds for the jobs one after another in this process, and their mean number of patches."""
    ids, _ = create_jobs(ws.store, specs, "local", "bench")
    start = time.perf_counter()
    outcomes = [run_job_here(ws, job_id) for job_id in ids]
    elapsed = time.perf_counter() - start
    assert outcomes == ["done"] * len(ids), outcomes
    jobs = list_jobs(ws.store, ids=ids, limit=len(ids))
    return elapsed, sum(j.result["patches"] for j in jobs) / len(jobs)


def run_on_workers(ws, dispatcher: JobDispatcher, specs: list[JobSpec], timeout: float = 1800) -> tuple[float, set[str]]:
    """Seconds from queueing the jobs to the last one done, and the workers that ran them."""
    start = time.perf_counter()
    ids, existing = dispatcher.submit(specs, "bench")
    assert not existing
    deadline = time.monotonic() + timeout
    while True:
        jobs = list_jobs(ws.store, ids=ids, limit=len(ids))
        if all(j.finished for j in jobs):
            break
        if time.monotonic() > deadline:
            raise RuntimeError(f"jobs still running after {timeout} s: {[(j.id, j.status) for j in jobs]}")
        time.sleep(0.05)
    elapsed = time.perf_counter() - start
    bad = [(j.id, j.status, j.message) for j in jobs if j.status != "done"]
    assert not bad, bad
    return elapsed, {j.worker.split("@")[0] for j in jobs}


SPIN = "import time\nt = time.perf_counter()\nx = 0\nfor i in range({n}): x += i\n"


def machine_parallel_speedup(n: int = 20_000_000) -> float:
    """Time for one process to do 2 units of CPU-bound work / time for two processes doing one unit each at once."""
    def run(processes: int, units: int) -> float:
        start = time.perf_counter()
        running = [subprocess.Popen([sys.executable, "-c", SPIN.format(n=n * units)]) for _ in range(processes)]
        for p in running:
            p.wait()
        return time.perf_counter() - start
    return run(1, 2) / run(2, 1)


def warm_up(ws, dispatcher: JobDispatcher, slides: list[str], workers: int) -> None:
    """Until every worker has run a job (its model loaded): jobs on slides outside the timed set, at another overlap."""
    for attempt in range(5):
        specs = [JobSpec("heatmap", s, {"overlap": 0.0, "warm_up": attempt}) for s in slides[: 2 * workers]]
        _, ran_on = run_on_workers(ws, dispatcher, specs)
        if len(ran_on) >= workers:
            return
    raise RuntimeError(f"only {len(ran_on)} of {workers} workers took warm-up jobs")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workspace", type=Path, default=None)
    parser.add_argument("--slides", type=int, default=8)
    parser.add_argument("--overlap", type=float, default=0.75)
    parser.add_argument("--threads", type=int, default=1, help="torch threads per job process")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    import torch

    from core.device import set_device_override

    set_device_override(args.device)
    torch.set_num_threads(args.threads)
    source = bench_workspace_root(args.workspace)
    with tempfile.TemporaryDirectory(prefix="bench-precompute-") as tmp:
        root = Path(tmp) / "workspace"
        shutil.copytree(source, root, ignore=shutil.ignore_patterns("cache"))  # its own case store and an empty cache
        ws = open_workspace(root)
        with ws.store.session() as s:
            all_slides = [sl.id for sl in s.query(Slide).order_by(Slide.id)]
        timed, spare = all_slides[: args.slides], all_slides[args.slides :]
        assert len(timed) == args.slides and len(spare) >= 4, "the workspace needs more slides"
        specs = [JobSpec("heatmap", s, {"overlap": args.overlap}) for s in timed]
        small = [JobSpec("heatmap", s, {"overlap": 0.0}) for s in timed]
        print(f"{len(timed)} slides, overlap {args.overlap:.0%}, {args.threads} torch thread(s) per job process, device {args.device}, "
              f"{os.cpu_count()} cores")

        machine = machine_parallel_speedup()

        def fresh(measure):
            clear_heatmaps(root)
            return measure()

        # Warm-up here: one job on a spare slide loads the model.
        run_in_process(ws, [JobSpec("heatmap", spare[0], {"overlap": 0.0, "warm_up": "here"})])
        redis = RedisServer()
        workers: list[CeleryWorker] = []
        runs: dict[str, list[float]] = {"here": [], "here small": [], "1": [], "1 small": [], "2": []}
        try:
            dispatcher = JobDispatcher(ws, make_celery(redis.url))
            for n in (1, 2):
                while len(workers) < n:
                    worker = CeleryWorker(redis.url, None, f"bench-{len(workers) + 1}", torch_threads=args.threads, device=args.device,
                                          extra_env={"PATHREVIEW_VISIBILITY_TIMEOUT": "7200"})
                    worker.start()
                    workers.append(worker)
                warm_up(ws, dispatcher, spare, n)
                for _ in range(args.repeats):
                    if n == 1:  # in this process and on one worker in turn: the speed of a shared VM drifts
                        here, patches = fresh(lambda: run_in_process(ws, specs))
                        here_small, patches_small = fresh(lambda: run_in_process(ws, small))
                        runs["here"].append(here)
                        runs["here small"].append(here_small)
                        runs["1 small"].append(fresh(lambda: run_on_workers(ws, dispatcher, small))[0])
                    elapsed, ran_on = fresh(lambda: run_on_workers(ws, dispatcher, specs))
                    runs[str(n)].append(elapsed)
                    print(f"{n} worker(s): {elapsed:.2f} s ({len(ran_on)} worker(s) took jobs)" + (f"; in this process {here:.2f} s" if n == 1 else ""))
        finally:
            for worker in workers:
                worker.stop()
            redis.stop()
            ws.store.dispose()

    machine = (machine + machine_parallel_speedup()) / 2  # before and after: the VM's speed drifts
    in_process, in_process_small = min(runs["here"]), min(runs["here small"])
    times = {1: min(runs["1"]), 2: min(runs["2"]), "small": min(runs["1 small"])}
    print(f"machine: two CPU-bound processes finish {machine:.2f}x faster than one doing both shares (mean of before and after)")
    print(f"in this process  : {in_process:7.2f} s  ({in_process / len(specs):.2f} s a slide of {patches:.0f} patches on average)")
    print(f"1 Celery worker  : {times[1]:7.2f} s")
    print(f"2 Celery workers : {times[2]:7.2f} s")
    print(f"small jobs (0 % overlap, {patches_small:.0f} patches): in process {in_process_small:.2f} s, 1 worker {times['small']:.2f} s "
          f"-> overhead {times['small'] / in_process_small:.3f} ({(times['small'] - in_process_small) / len(small) * 1000:.0f} ms a job)")
    print(f"RESULT machine_parallel_speedup={machine:.3f}")
    print(f"RESULT scaling_2_workers={times[1] / times[2]:.3f}")
    print(f"RESULT queue_overhead={times[1] / in_process:.3f}")


if __name__ == "__main__":
    main()
