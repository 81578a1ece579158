"""Macenko stain normalisation of 4,096 patches (224 x 224): batched in torch on the device (CUDA when present) against
the reference, torchstain's numpy backend (``torchstain/numpy/normalizers/macenko.py``, 1.4.1), applied patch by
patch, on the same patches with the same target, in the same run. Reports the speed ratio and the largest pixel
difference.

    python bench/stain.py [--patches 4096] [--size 224] [--batch 64] [--workers W] [--block 1024] [--reference-patches N]

On the CPU the torch batches go to W threads (default: one per core this process may use), each running torch on
one thread: the cores are used without torch's intra-op threads meeting at a barrier after every operation, which
stalls whenever another process holds a core (on a shared machine, most of the time). The reference runs as it
comes: one patch after another, numpy with its BLAS at its default threads. The two take turns, ``--block`` patches
at a time, each timed on its own: on a shared machine the load changes over minutes, and taking turns exposes both
to the same changes (one method's whole run, then the other's, does not).

Needs only numpy, torch, numba (the CPU's fused passes, ``core/slides/stain_cpu.py``) and torchstain (pure numpy).
``--reference-patches`` times the reference on the first N patches only (its time is scaled to all of them) and
compares those N; by default it runs on every patch.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from torchstain.numpy.normalizers.macenko import NumpyMacenkoNormalizer  # noqa: E402

from core.slides.stain import macenko_normalise  # noqa: E402

HAEMATOXYLIN = np.array([0.65, 0.70, 0.29])
EOSIN = np.array([0.07, 0.99, 0.11])


def _smooth(rng: np.random.Generator, size: int, cells: int) -> np.ndarray:
    """A smooth random field: coarse noise upsampled (cheap), in [0, 1]."""
    coarse = rng.random((cells, cells))
    field = np.kron(coarse, np.ones((size // cells + 1, size // cells + 1)))[:size, :size]
    return (field + np.roll(field, size // (2 * cells), 0) + np.roll(field, size // (2 * cells), 1)) / 3


def synthetic_patches(n: int, size: int, seed: int = 0) -> np.ndarray:
    """H&E-like uint8 patches by Beer-Lambert: 64 tissue layouts (nuclei, stroma, glass) under per-patch stain vectors
    and intensities, as slides from several labs."""
    rng = np.random.default_rng(seed)
    layouts = []
    yy, xx = np.mgrid[0:size, 0:size]
    for _ in range(64):
        nuclei = np.zeros((size, size))
        for cy, cx, r in zip(rng.uniform(0, size, 120), rng.uniform(0, size, 120), rng.uniform(2, 5, 120), strict=True):
            box = (slice(max(0, int(cy - r)), int(cy + r) + 1), slice(max(0, int(cx - r)), int(cx + r) + 1))
            nuclei[box] = np.maximum(nuclei[box], ((yy[box] - cy) ** 2 + (xx[box] - cx) ** 2 <= r * r) * rng.uniform(0.9, 1.6))
        eosin = 0.4 + 0.5 * _smooth(rng, size, 8)
        glass = _smooth(rng, size, 4) > rng.uniform(0.7, 0.9)
        layouts.append((np.where(glass, 0, nuclei + 0.05), np.where(glass, 0, eosin)))
    out = np.empty((n, size, size, 3), np.uint8)
    for i in range(n):
        h, e = layouts[i % len(layouts)]
        h_vec = np.abs(HAEMATOXYLIN + rng.normal(0, 0.06, 3))
        e_vec = np.abs(EOSIN + rng.normal(0, 0.06, 3))
        od = rng.uniform(0.7, 1.3) * (h[..., None] * h_vec / np.linalg.norm(h_vec) + e[..., None] * e_vec / np.linalg.norm(e_vec))
        out[i] = np.clip(245 * np.exp(-np.rot90(od, i % 4)) + rng.normal(0, 2, (size, size, 3)), 0, 255).astype(np.uint8)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--patches", type=int, default=4096)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--batch", type=int, default=None, help="patches per torch batch (default 64 on CPU, 512 on CUDA)")
    parser.add_argument("--workers", type=int, default=None, help="CPU only: threads taking torch batches (default: one per core)")
    parser.add_argument("--block", type=int, default=1024, help="patches timed by one method, then the other")
    parser.add_argument("--reference-patches", type=int, default=None)
    args = parser.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    batch = args.batch or (512 if device.type == "cuda" else 64)
    workers = 1 if device.type == "cuda" else (args.workers or len(os.sched_getaffinity(0)))
    patches = synthetic_patches(args.patches, args.size)
    reference = NumpyMacenkoNormalizer()
    reference.fit(patches[0])  # the target: the first patch, for both
    target, max_c = torch.tensor(reference.HERef), torch.tensor(reference.maxCRef)
    n_ref = min(args.reference_patches or args.patches, args.patches)

    if workers > 1:
        torch.set_num_threads(1)  # each worker's torch on one thread (threads started later inherit it)
    expected, got = np.empty_like(patches[:n_ref]), np.empty_like(patches)
    # the result arrays' pages are touched before any timing: the first write to fresh memory costs a page fault
    # per 4 KiB (a few hundred ms for these 600 MB), the harness's cost and not either normaliser's
    expected.fill(0)
    got.fill(0)

    def normalise(start: int) -> None:
        images = torch.from_numpy(patches[start : start + batch]).to(device, non_blocking=True)
        got[start : start + batch] = macenko_normalise(images, target, max_c).cpu().numpy()

    normalise(0)  # warm-up (kernels, allocator)
    if device.type == "cuda":
        torch.cuda.synchronize()
    # Block by block, the reference then torch on the same patches: on a shared machine the load drifts over minutes,
    # and both then meet the same drift.
    block = max(batch, args.block // batch * batch)
    reference_s = torch_s = 0.0
    with ThreadPoolExecutor(workers) as pool:
        for first in range(0, args.patches, block):
            last = min(first + block, args.patches)
            started = time.perf_counter()
            for i in range(first, min(last, n_ref)):
                expected[i] = reference.normalize(patches[i], stains=False)[0]
            reference_s += time.perf_counter() - started
            started = time.perf_counter()
            list(pool.map(normalise, range(first, last, batch)))
            if device.type == "cuda":
                torch.cuda.synchronize()
            torch_s += time.perf_counter() - started
    reference_s *= args.patches / n_ref

    diff = np.abs(got[:n_ref].astype(int) - expected)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {workers} worker(s) of {torch.get_num_threads()} torch thread(s)"
    print(f"device: {device} ({name}); {args.patches} patches of {args.size} x {args.size}, torch batches of {batch}")
    print(f"reference (torchstain numpy, per patch): {reference_s:.2f} s"
          + (f" (timed on {n_ref} patches, scaled)" if n_ref < args.patches else ""))
    print(f"torch batched: {torch_s:.2f} s; pixels differing: {(diff > 0).mean():.2e}, largest difference {diff.max()} / 255")
    print(f"RESULT macenko_vs_reference={reference_s / torch_s:.2f}")
    print(f"RESULT macenko_max_abs_diff={diff.max() / 255:.5f}")
    if device.type == "cuda":
        print(f"RESULT macenko_patches_per_s_cuda={args.patches / torch_s:.0f}")


if __name__ == "__main__":
    main()
