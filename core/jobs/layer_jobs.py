"""Jobs that compute one derived layer of a stored heatmap (a stitched CAM, MIL attention) when the viewer or a
tile request asks for a layer that is not stored yet."""

from __future__ import annotations

import threading

from core.heatmaps.slide_heatmap import SlideHeatmap
from core.jobs.dispatch import JobDispatcher
from core.jobs.state import JobSpec, JobView, get_job

LAYER_JOB = "layer"
_SUBMIT_LOCK = threading.Lock()  # a burst of tile requests for one layer queues one job, not one each


def layer_job_spec(heat: SlideHeatmap, layer: str) -> JobSpec:
    return JobSpec(LAYER_JOB, heat.slide_id, {"heatmap": heat.key, "layer": layer})


def start_layer_job(dispatcher: JobDispatcher, heat: SlideHeatmap, layer: str, requested_by: str = "") -> JobView:
    """The job computing ``layer`` of ``heat``: the one already queued or running, else a new one sent on."""
    with _SUBMIT_LOCK:
        new, existing = dispatcher.submit([layer_job_spec(heat, layer)], requested_by)
    return get_job(dispatcher.workspace.store, (new or existing)[0])
