"""Faults while the app runs: a slide file deleted, truncated or replaced under the tile service's cached handle; a
heatmap job killed halfway; the GPU out of memory even for one patch; the case database locked by another process.
Each ends with a clear message, a correct status code and nothing half-written.

The GPU cannot run here: ``SimulatedGpuNet`` stands in for it (the real patch net behind a device with room for a
given number of patches per batch, which raises CUDA's out-of-memory error above that). Everything else is real."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from core.device import DeviceMemoryError
from core.errors import PathReviewError
from core.heatmaps.inference import PatchClassifier, predict_slide
from core.heatmaps.slide_heatmap import STALE_PART_SECONDS, HeatmapParams, cached_heatmap, compute_heatmap, heatmap_key
from core.jobs.runner import run_tracked
from core.jobs.state import JobSpec, get_job
from core.models.registry import LoadedModel
from core.slides.grid import patch_grid
from core.slides.reader import open_slide
from core.slides.tissue import detect_tissue
from core.store.database import open_store
from core.store.reviews import record_review, review_history, review_versions
from core.workspace import open_workspace
from dashboard.app import create_app
from tests.helpers import REPO, copy_demo, sign_in

SLIDE, OTHER = "P001-S1", "P003-S1"


def _copy(demo_workspace, dest, slides=(SLIDE, OTHER)):
    """The demo with only ``slides`` and an empty cache."""
    return copy_demo(demo_workspace, dest, slides, keep_cache=False)


# -- slide files changing under the running app ------------------------------------------------------------------------

@pytest.fixture
def running_app(demo_workspace, tmp_path):
    ws = open_workspace(_copy(demo_workspace, tmp_path / "ws"))
    client = create_app(ws).server.test_client()
    sign_in(client)
    yield ws, client, ws.slides_dir / f"{SLIDE}.tiff"
    ws.store.dispose()


TILES = [f"/slides/{SLIDE}/tiles/{z}/{x}/{y}.jpeg" for z, x, y in ((12, 1, 1), (11, 0, 0), (10, 1, 0), (8, 0, 0))]


def test_deleted_slide_answers_missing_not_stale_tiles(running_app):
    ws, client, path = running_app
    before = {url: client.get(url).data for url in TILES}  # opened, and every tile in the tile cache
    kept = path.read_bytes()
    path.unlink()
    for url in TILES:
        response = client.get(url)
        assert response.status_code == 422 and b"is missing from the workspace" in response.data, url
    assert client.get(f"/slides/{SLIDE}/thumbnail.jpeg").status_code == 422
    assert client.get(f"/slides/{OTHER}/tiles/12/0/0.jpeg").status_code == 200  # other slides keep working
    path.write_bytes(kept)  # put back: served again, the same pixels
    assert {url: client.get(url).data for url in TILES} == before


def test_truncated_slide_answers_unreadable(running_app):
    ws, client, path = running_app
    assert all(client.get(url).status_code == 200 for url in TILES)
    with open(path, "r+b") as fh:
        fh.truncate(path.stat().st_size // 3)
    for url in TILES:
        response = client.get(url)
        assert response.status_code == 422 and b"cannot be read by OpenSlide" in response.data, (url, response.data[:200])


def test_slide_damaged_in_place_never_serves_a_server_error(running_app):
    ws, client, path = running_app
    slide = open_slide(path)
    width, height = slide.dimensions
    slide.close()
    top = int(np.ceil(np.log2(max(width, height))))  # the full-resolution Deep Zoom level
    urls = [f"/slides/{SLIDE}/tiles/{z}/{x}/{y}.jpeg" for z in (top - 1, top) for x in range(0, 16, 3) for y in range(0, 16, 5)
            if x * 256 * 2 ** (top - z) < width and y * 256 * 2 ** (top - z) < height]  # tiles that exist at that level
    assert all(client.get(url).status_code == 200 for url in urls)
    size = path.stat().st_size
    with open(path, "r+b") as fh:  # same file, same size, tile data overwritten (a failing disk, a bad copy)
        fh.seek(4096)
        fh.write(b"\0" * (size // 2))
    statuses = {url: client.get(url) for url in urls}
    assert all(r.status_code in (200, 422) for r in statuses.values())
    unreadable = [r for r in statuses.values() if r.status_code == 422]
    assert unreadable and all(b"cannot be read by OpenSlide" in r.data for r in unreadable)


def test_replaced_slide_serves_its_new_pixels(running_app):
    ws, client, path = running_app
    old = {url: client.get(url).data for url in TILES}
    other = {url: client.get(url.replace(SLIDE, OTHER)).data for url in TILES}
    assert old != other
    replacement = path.with_name("rescan.part")
    shutil.copyfile(ws.slides_dir / f"{OTHER}.tiff", replacement)
    os.replace(replacement, path)  # a re-scan dropped in under the same name
    assert {url: client.get(url).data for url in TILES} == other


# -- a heatmap job killed halfway --------------------------------------------------------------------------------------

JOB = """
import sys, time
from core.heatmaps.slide_heatmap import compute_heatmap
from core.workspace import open_workspace
ws = open_workspace(sys.argv[1])
def progress(done, total):
    print(done, total, flush=True)
    time.sleep(0.3)  # a slow job: the test kills it between batches
compute_heatmap(ws, sys.argv[2], ws.models_for("patch")[0], progress=progress, batch_size=8, workers=1)
print("finished", flush=True)
"""


def test_killed_heatmap_job_leaves_nothing_that_loads_and_can_be_retried(demo_workspace, tmp_path):
    root = _copy(demo_workspace, tmp_path / "ws", slides=(SLIDE,))
    ws = open_workspace(root)
    model_id = ws.models_for("patch")[0]
    key = heatmap_key(ws.slides_dir / f"{SLIDE}.tiff", ws.manifest(model_id).weights_sha256, HeatmapParams(), ws.manifest(model_id).input)
    cache = ws.cache_dir / "heatmaps"
    job = subprocess.Popen([sys.executable, "-c", JOB, str(root), SLIDE], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        done, total = (int(v) for v in job.stdout.readline().split())  # the first batch is through
        assert 0 < done < total
        os.kill(job.pid, signal.SIGKILL)
        job.wait(30)
    finally:
        if job.poll() is None:
            job.kill()
    assert job.returncode == -signal.SIGKILL
    assert not (cache / f"{key}.npz").exists()
    assert cached_heatmap(ws, SLIDE, model_id) is None
    # What a job killed while writing leaves: a complete-looking temporary file. It is never read as a result.
    cache.mkdir(parents=True, exist_ok=True)
    fresh_part, stale_part = cache / f"{key}.npz.0000fresh.part", cache / f"{key}.npz.0000stale.part"
    for part in (fresh_part, stale_part):
        part.write_bytes(b"PK\x03\x04 half a zip archive")
    old = time.time() - STALE_PART_SECONDS - 60
    os.utime(stale_part, (old, old))
    assert cached_heatmap(ws, SLIDE, model_id) is None

    heat = compute_heatmap(ws, SLIDE, model_id)  # the retry
    assert heat is not None and heat.key == key and len(heat.probs) == total
    assert (cache / f"{key}.npz").is_file() and cached_heatmap(ws, SLIDE, model_id).key == key
    assert not stale_part.exists() and fresh_part.exists()  # old leftovers are swept; a running job's file is left alone
    ws.store.dispose()


# -- out of GPU memory -------------------------------------------------------------------------------------------------

class CallLog(list):
    """Batch sizes the simulated device was asked for; shared by every copy of the net."""

    def __deepcopy__(self, memo):
        return self


class SimulatedGpuNet(torch.nn.Module):
    """The real patch net on a device with room for ``room`` patches per batch: above that, CUDA's out-of-memory error.
    Moved to the CPU, it has all the room it needs (and the log notes the move)."""

    def __init__(self, net: torch.nn.Module, room: int | None, log: CallLog) -> None:
        super().__init__()
        self.net, self.room, self.log = net, room, log
        self.fc, self.embedding_dim = net.fc, net.embedding_dim

    def _allocate(self, x: torch.Tensor) -> None:
        self.log.append(("gpu" if self.room is not None else "cpu", len(x)))
        if self.room is not None and len(x) > self.room:
            raise torch.cuda.OutOfMemoryError(f"CUDA out of memory. Tried to allocate {len(x) * 0.25:.2f} GiB (simulated)")

    def features(self, x: torch.Tensor) -> torch.Tensor:
        self._allocate(x)
        return self.net.features(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._allocate(x)
        return self.net(x)

    def to(self, *args, **kwargs):
        device = torch._C._nn._parse_to(*args, **kwargs)[0]
        if device is not None and device.type == "cpu":
            self.room = None
        return super().to(*args, **kwargs)


# The stand-in for an accelerator's device: tensors can be moved there (no memory is used), nothing runs there.
ACCELERATOR = torch.device("meta")


@pytest.fixture(scope="module")
def patch_net(workspace):
    return workspace.model(workspace.models_for("patch")[0]).module


@pytest.fixture(scope="module")
def patches():
    return np.random.default_rng(0).integers(0, 256, (20, 64, 64, 3), dtype=np.uint8)


def test_batch_halves_and_the_size_that_fitted_is_kept(patch_net, patches):
    log = CallLog()
    classifier = PatchClassifier(SimulatedGpuNet(patch_net, room=5, log=log), torch.device("cpu"), batch_size=16)
    probs, emb = classifier(patches, embed=True)
    expected, expected_emb = PatchClassifier(patch_net, torch.device("cpu"), 16)(patches, embed=True)
    assert np.allclose(probs, expected, atol=1e-5) and np.allclose(emb, expected_emb, atol=1e-5)
    assert [n for _, n in log[:3]] == [16, 8, 4] and classifier.batch_size == 4 and classifier.notices == []
    log.clear()
    classifier(patches[:8])  # the next batch of the job starts at the size that fitted
    assert [n for _, n in log] == [4, 4]


def test_out_of_memory_for_one_patch_falls_back_to_the_cpu_with_a_notice(patch_net, patches):
    log, notices = CallLog(), []
    classifier = PatchClassifier(SimulatedGpuNet(patch_net, room=0, log=log), ACCELERATOR, batch_size=8, notices=notices)
    probs, emb = classifier(patches, embed=True)
    expected, expected_emb = PatchClassifier(patch_net, torch.device("cpu"), 8)(patches, embed=True)
    assert np.allclose(probs, expected, atol=1e-5) and np.allclose(emb, expected_emb, atol=1e-5)
    assert log[:4] == [("gpu", 8), ("gpu", 4), ("gpu", 2), ("gpu", 1)]
    assert all(where == "cpu" for where, _ in log[4:]) and [n for _, n in log[4:]] == [8, 8, 4]  # back to the full batch
    assert len(notices) == 1 and "ran out of memory even for one patch" in notices[0] and "CPU" in notices[0]
    assert classifier.device.type == "cpu"
    classifier(patches[:3])  # the rest of the job stays on the CPU; one notice
    assert log[-1] == ("cpu", 3) and len(notices) == 1


def test_out_of_memory_on_the_cpu_is_a_clear_error(patch_net, patches):
    always = SimulatedGpuNet(patch_net, room=0, log=CallLog())
    always.to = lambda *a, **k: always  # a device that never has room, even after a move
    with pytest.raises(DeviceMemoryError, match="ran out of memory even for one item"):
        PatchClassifier(always, torch.device("cpu"), batch_size=4)(patches)


def test_heatmap_computed_after_a_fallback_says_so_on_the_result_and_in_the_cache(demo_workspace, tmp_path):
    root = _copy(demo_workspace, tmp_path / "ws", slides=(SLIDE,))
    ws = open_workspace(root)
    model_id = ws.models_for("patch")[0]
    real = ws.model(model_id)
    log = CallLog()
    # The simulated accelerator (the meta device) computes nothing, so the net reads the slide unnormalised here.
    unnormalised = real.manifest.model_copy(update={"input": real.manifest.input.model_copy(update={"stain_normalisation": "none"})})
    ws.manifests[model_id] = unnormalised
    ws._models[model_id] = LoadedModel(unnormalised, SimulatedGpuNet(real.module, room=0, log=log), ACCELERATOR, real.vocabulary)
    heat = compute_heatmap(ws, SLIDE, model_id, batch_size=16)
    assert len(heat.notices) == 1 and "CPU" in heat.notices[0] and log[0] == ("gpu", 16)
    # The same numbers as on the CPU all along; the notice is stored with the result, so the slide page shows it later.
    path, slide = ws.slides_dir / f"{SLIDE}.tiff", open_slide(ws.slides_dir / f"{SLIDE}.tiff")
    tissue = detect_tissue(slide, heat.slide_mpp)
    slide.close()
    spec = real.manifest.input
    grid = patch_grid(*heat.slide_size, heat.slide_mpp, spec.patch_size_px, spec.mpp, tissue, 0.0, HeatmapParams().min_tissue)
    assert np.allclose(heat.probs, predict_slide(path, grid, real.module, torch.device("cpu"), 16), atol=1e-5)
    from core.heatmaps import slide_heatmap

    slide_heatmap._LOADED.clear()
    assert cached_heatmap(ws, SLIDE, model_id).notices == heat.notices
    # A precompute job that finds this heatmap passes the notice on to the Jobs page and the command line.
    job = get_job(ws.store, run_tracked(ws, JobSpec("heatmap", SLIDE, {"model_id": model_id}))[0])
    assert job.status == "done" and job.result["notices"] == heat.notices and heat.notices[0] in job.message
    ws.store.dispose()


# -- the case database locked by another process -----------------------------------------------------------------------

HOLD_LOCK = """
import sqlite3, sys, time
db = sqlite3.connect(sys.argv[1], isolation_level=None)
db.execute("BEGIN IMMEDIATE")  # the write lock, as another writer (an import, a backup) holds it
db.execute("CREATE TABLE IF NOT EXISTS lock_holder_writes (note TEXT)")
db.execute("INSERT INTO lock_holder_writes VALUES ('written while holding the lock')")
print("locked", flush=True)
time.sleep(float(sys.argv[2]))
db.execute("COMMIT")
"""


@pytest.fixture
def store_copy(demo_workspace, tmp_path):
    shutil.copyfile(demo_workspace / "cases.db", tmp_path / "cases.db")
    return tmp_path / "cases.db"


def _hold_lock(db_path, seconds: float) -> subprocess.Popen:
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(db_path), str(seconds)], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "locked"
    return holder


def _holder_rows(db_path) -> int:
    import sqlite3

    with sqlite3.connect(db_path) as db:
        return db.execute("SELECT count(*) FROM lock_holder_writes").fetchone()[0]


def test_a_save_waits_for_another_writer_and_both_writes_are_kept(store_copy):
    store = open_store(f"sqlite:///{store_copy}", busy_timeout_s=20)
    version = review_versions(store, "P002")["report"]
    holder = _hold_lock(store_copy, 2.0)
    try:
        entry = record_review(store, "P002", "report", "disagree", "saved while locked", [], False, "alice", version)
    finally:
        holder.wait(30)
    assert holder.returncode == 0
    assert entry.version == version + 1
    assert review_history(store, "P002")[0].comment == "saved while locked" and _holder_rows(store_copy) == 1
    store.dispose()


def test_a_save_refused_after_the_bounded_wait_says_so_and_writes_nothing(store_copy):
    store = open_store(f"sqlite:///{store_copy}", busy_timeout_s=0.5)
    history = review_history(store, "P002")
    holder = _hold_lock(store_copy, 4.0)
    try:
        with pytest.raises(PathReviewError, match="did not accept the verdict .*nothing was saved"):
            record_review(store, "P002", "report", "agree", "refused", [], False, "alice", review_versions(store, "P002")["report"])
    finally:
        holder.wait(30)
    assert review_history(store, "P002") == history and _holder_rows(store_copy) == 1
    entry = record_review(store, "P002", "report", "agree", "after the lock", [], False, "alice", review_versions(store, "P002")["report"])
    assert review_history(store, "P002")[0] == entry  # the lock is gone: the same save goes through
    store.dispose()
