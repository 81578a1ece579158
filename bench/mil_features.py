"""A CLAM-SB attention map from a CLAM feature file (20,000 patches x 1,024 dims): the whole build (read and check the
file, run the head, place the attention on the patch-size cell grid) against reading the file alone with h5py; our
placement against a naive per-patch Python loop; and the build's peak memory against the feature matrix's size.
The head runs on the GPU when there is one, on each block of rows while the next is read (``predict_while_reading``).

    python bench/mil_features.py [--patches 20000] [--dim 1024] [--repeats 7]

The build is timed after one untimed build (the device's libraries and kernels load on first use), best of
``--repeats``, and split into phases that add up to it: reading (h5py on the calling thread, while a second thread
screens each block read for NaN and hands it to the head: on CUDA the copy to the device and the kernel launches, on
CPU the head itself), waiting for the head's result, and checking the file against the slide plus
placement. How long the second thread was busy is printed beside them: it overlaps the reading.

Peak memory is measured in a fresh subprocess, as resident set sizes, so torch's allocations count as well as numpy's:
its resident set (psutil) just before the build against its peak resident set (Linux ``VmHWM``, reset to the current
size through ``/proc/self/clear_refs`` just before the build) just after it. getrusage's ru_maxrss would not do: Linux
carries it over from the parent across fork and exec. What any process pays once before its first map is loaded
before the reset and reported apart, not counted: the head's first forward on a tiny bag (on CUDA: the context and the
CUDA libraries).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import h5py
import numpy as np
import psutil
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from core.device import compute_device  # noqa: E402
from core.features.files import FeatureSet, check_fits, read_clam_h5  # noqa: E402
from core.features.maps import (  # noqa: E402
    GridMap,
    attention_map,
    place_on_grid,
    predict,
    predict_while_reading,
    slide_attention_map,
    slide_attention_map_from_file,
)
from core.models.clam import CLAMSB  # noqa: E402
from tests.feature_files import clam_patch_attrs, write_clam  # noqa: E402

SIDE = 256
COLUMNS = 200


def synthetic(root: Path, patches: int, dim: int) -> tuple[Path, Path, tuple[int, int]]:
    rows = -(-patches // COLUMNS)
    dims = (COLUMNS * SIDE, rows * SIDE)
    idx = np.arange(patches)
    coords = np.stack([(idx % COLUMNS) * SIDE, (idx // COLUMNS) * SIDE], axis=1)
    features = np.random.default_rng(0).normal(size=(patches, dim)).astype(np.float32)
    # extract_features_fp writes in DataLoader batches of 256 patches, each appended with save_hdf5
    patches_h5, h5, _ = write_clam(root, "bench", features, coords, clam_patch_attrs("bench", level_dim=dims), batch=256)
    return h5, patches_h5, dims


def read_alone(h5: Path) -> tuple[np.ndarray, np.ndarray]:
    with h5py.File(h5, "r") as fh:
        return fh["features"][:], fh["coords"][:]


def head(dim: int) -> CLAMSB:
    torch.manual_seed(0)
    return CLAMSB(gate=True, size_arg="small", dropout=0.25, n_classes=2, embed_dim=dim).to(compute_device()).eval()


def build(h5: Path, patches_h5: Path, dims: tuple[int, int], model: CLAMSB) -> GridMap:
    """Read and check the file with the head run on each block as it is read, then place the attention."""
    return slide_attention_map_from_file(model, lambda on_block: read_clam_h5(h5, patches_h5, on_block), dims)[1]


PHASES = ("reading (h5py; screen and hand-over on a second thread)", "waiting for the head's result", "check + placement")


def phased_build(h5: Path, patches_h5: Path, dims: tuple[int, int], model: CLAMSB) -> list[float]:
    """``build``, step by step as ``slide_attention_map_from_file`` does it, timing each phase (seconds, in PHASES order,
    then the second thread's busy time, which overlaps the first phase)."""
    in_blocks, read_time = [0.0], [0.0]

    def read(on_block: Callable[[int, np.ndarray, int], None]) -> FeatureSet:
        def timed(start: int, rows: np.ndarray, total: int) -> None:
            t = time.perf_counter()
            on_block(start, rows, total)
            in_blocks[0] += time.perf_counter() - t
        t = time.perf_counter()
        fs = read_clam_h5(h5, patches_h5, timed)
        read_time[0] = time.perf_counter() - t
        return fs

    t0 = time.perf_counter()
    prediction, fs = predict_while_reading(model, read)
    t1 = time.perf_counter()
    check_fits(fs, dims, model.embed_dim)
    attention_map(prediction, fs, dims)
    t2 = time.perf_counter()
    return [read_time[0], t1 - t0 - read_time[0], t2 - t1, in_blocks[0]]


def naive_placement(values: np.ndarray, coords: np.ndarray, side: int, dims: tuple[int, int]) -> np.ndarray:
    """The same area-weighted average, one patch and one cell at a time."""
    rows, cols = -(-dims[1] // side), -(-dims[0] // side)
    total = [[0.0] * cols for _ in range(rows)]
    weight = [[0.0] * cols for _ in range(rows)]
    for value, (x, y) in zip(values.tolist(), coords.tolist()):
        c0, fx = divmod(x, side)
        r0, fy = divmod(y, side)
        for r, wy in ((r0, 1 - fy / side), (r0 + 1, fy / side)):
            for c, wx in ((c0, 1 - fx / side), (c0 + 1, fx / side)):
                if wy * wx > 0 and r < rows and c < cols:
                    total[r][c] += wy * wx * value
                    weight[r][c] += wy * wx
    return np.array([[t / w if w > 0 else np.nan for t, w in zip(tr, wr)] for tr, wr in zip(total, weight)], dtype=np.float32)


def best_of(repeats: int, fn: Callable[[], object]) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def peak_rss() -> int:
    """This process's peak resident set since exec or the last reset (``VmHWM``), in bytes."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM in /proc/self/status: this bench measures peak memory on Linux")


def peak_memory_child(h5: str, patches_h5: str, width: int, height: int, dim: int) -> None:
    model = head(dim)
    torch.set_grad_enabled(False)
    loaded = psutil.Process().memory_info().rss
    # a one-off cost of a process's first map, not of a build: the head's first forward (on CUDA the context and the
    # CUDA libraries load here)
    with torch.inference_mode():
        model.explain(torch.zeros((8, dim), device=compute_device()))
    if compute_device().type == "cuda":
        torch.cuda.synchronize()
    warmed = psutil.Process().memory_info().rss
    Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current resident set
    before = psutil.Process().memory_info().rss
    build(Path(h5), Path(patches_h5), (width, height), model)
    print(json.dumps({"before": before, "peak": peak_rss(), "first_forward": warmed - loaded}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--patches", type=int, default=20000)
    parser.add_argument("--dim", type=int, default=1024)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--peak-child", nargs=5, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.peak_child:
        h5, patches_h5, width, height, dim = args.peak_child
        peak_memory_child(h5, patches_h5, int(width), int(height), int(dim))
        return
    torch.set_num_threads(max(1, torch.get_num_threads()))
    with tempfile.TemporaryDirectory() as tmp:
        h5, patches_h5, dims = synthetic(Path(tmp), args.patches, args.dim)
        matrix_bytes = args.patches * args.dim * 4
        print(f"{args.patches} patches x {args.dim} dims ({matrix_bytes / 2**20:.0f} MiB float32, {h5.stat().st_size / 2**20:.0f} MiB "
              f"file) on a {dims[0]} x {dims[1]} px slide; head CLAM-SB small gated on {compute_device()}, "
              f"{torch.get_num_threads()} torch threads")
        model = head(args.dim)
        read_alone(h5)  # warm the page cache for every timing alike
        t_read = best_of(args.repeats, lambda: read_alone(h5))
        build(h5, patches_h5, dims, model)  # untimed: the head's first run loads the device's kernels
        *phases, handing = min((phased_build(h5, patches_h5, dims, model) for _ in range(args.repeats)), key=lambda p: sum(p[:3]))
        t_build = sum(phases)
        fs = read_clam_h5(h5, patches_h5)
        t_file = best_of(args.repeats, lambda: read_clam_h5(h5, patches_h5))
        t_head = best_of(args.repeats, lambda: predict(model, fs))
        prediction, grid = slide_attention_map(model, fs, dims)
        scores = prediction.attention_raw[0]
        t_place = best_of(args.repeats, lambda: place_on_grid(scores, fs.coords, SIDE, dims))
        t_naive = best_of(1, lambda: naive_placement(scores, fs.coords, SIDE, dims))
        np.testing.assert_allclose(naive_placement(scores, fs.coords, SIDE, dims), grid.values, rtol=1e-5, equal_nan=True)
        print(f"read alone (h5py features + coords): {t_read * 1000:.0f} ms")
        print(f"map build: {t_build * 1000:.0f} ms = read and check {t_file * 1000:.0f} ms + head {t_head * 1000:.0f} ms "
              f"+ placement {t_place * 1000:.1f} ms; without the head, {(t_file + t_place) / t_read:.2f} x the read")
        print(f"map build phases (best build, {t_build * 1000:.0f} ms): "
              + " + ".join(f"{name} {t * 1000:.1f} ms" for name, t in zip(PHASES, phases))
              + f"; the second thread was busy {handing * 1000:.1f} ms of the reading")
        print(f"naive per-patch placement loop: {t_naive * 1000:.0f} ms (same map)")
        child = subprocess.run([sys.executable, __file__, "--peak-child", str(h5), str(patches_h5), str(dims[0]), str(dims[1]),
                                str(args.dim)], capture_output=True, text=True, check=True)
        mem = json.loads(child.stdout.strip().splitlines()[-1])
        extra = mem["peak"] - mem["before"]
        print(f"peak resident set over the build: +{extra / 2**20:.0f} MiB against a {matrix_bytes / 2**20:.0f} MiB feature matrix "
              f"(loaded before it and not counted, once per process: the head's first forward on {compute_device()} "
              f"+{mem['first_forward'] / 2**20:.0f} MiB)")
    print(f"RESULT mil_map_vs_read={t_build / t_read:.2f}")
    print(f"RESULT mil_map_vs_naive={t_naive / t_place:.1f}")
    print(f"RESULT mil_peak_mem_ratio={extra / matrix_bytes:.2f}")


if __name__ == "__main__":
    main()
