"""Jobs that compute one derived layer of a stored heatmap (a stitched CAM, MIL attention) when the viewer or a
tile request asks for a layer that is not stored yet."""

from __future__ import annotations

import threading
import time

from core.heatmaps.slide_heatmap import SlideHeatmap
from core.jobs.dispatch import JobDispatcher
from core.jobs.state import ACTIVE, JobSpec, JobView, get_job

LAYER_JOB = "layer"
RECHECK_SECONDS = 0.5  # how stale the job's progress may be in a "not ready" answer
MAX_SEEN = 256
_LOCK = threading.Lock()  # a burst of tile requests for one layer queues one job, not one each
_SEEN: dict[tuple[str, str, str], tuple[float, JobView]] = {}  # (cache folder, heatmap, layer) -> (checked at, job)


def layer_job_spec(heat: SlideHeatmap, layer: str) -> JobSpec:
    return JobSpec(LAYER_JOB, heat.slide_id, {"heatmap": heat.key, "layer": layer})


def start_layer_job(dispatcher: JobDispatcher, heat: SlideHeatmap, layer: str, requested_by: str = "") -> JobView:
    """The job computing ``layer`` of ``heat``: the one already queued or running, else a new one sent on. A job
    seen active within ``RECHECK_SECONDS`` is answered from memory: the tiles of one viewport ask together."""
    return start_job_once(dispatcher, layer_job_spec(heat, layer), (heat.key, layer), requested_by)


def start_job_once(dispatcher: JobDispatcher, spec: JobSpec, what: tuple[str, str], requested_by: str = "") -> JobView:
    """The job for ``spec`` (``what`` names its result, e.g. (heatmap key, layer)): the active one, else a new one."""
    ident = (str(dispatcher.workspace.cache_dir), *what)
    with _LOCK:
        checked_at, job = _SEEN.get(ident, (0.0, None))
        if job is not None and job.status in ACTIVE and time.monotonic() - checked_at < RECHECK_SECONDS:
            return job
        if job is not None and job.status in ACTIVE:
            job = get_job(dispatcher.workspace.store, job.id)
        if job is None or job.status not in ACTIVE:
            new, existing = dispatcher.submit([spec], requested_by)
            job = get_job(dispatcher.workspace.store, (new or existing)[0])
        _SEEN[ident] = (time.monotonic(), job)
        if len(_SEEN) > MAX_SEEN:  # forget the longest unasked
            for old in sorted(_SEEN, key=lambda k: _SEEN[k][0])[: MAX_SEEN // 2]:
                del _SEEN[old]
        return job
