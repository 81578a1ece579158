"""Patches of a grid read at a model's resolution: the best pyramid level, then a resize to the input size."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

from core.slides.grid import PatchGrid
from core.slides.reader import level_for_downsample, open_slide


def _patch_reader(path: Path, grid: PatchGrid) -> Callable[[np.ndarray], np.ndarray]:
    """A function reading patches (by index) into a uint8 (n, px, px, 3) array. One OpenSlide handle per
    thread: reads of the best pyramid level for the model's resolution, then a resize to the input size."""
    local = threading.local()
    size0 = grid.patch_level0

    def read(indices: np.ndarray) -> np.ndarray:
        if not hasattr(local, "slide"):
            local.slide = open_slide(path)
            local.level = level_for_downsample(local.slide, grid.patch_mpp / grid.slide_mpp)
            local.downsample = local.slide.level_downsamples[local.level]
        read_px = max(1, int(round(size0 / local.downsample)))
        out = np.empty((len(indices), grid.patch_px, grid.patch_px, 3), np.uint8)
        for k, i in enumerate(indices):
            x, y = grid.origins[i]
            region = local.slide.read_region((int(x), int(y)), local.level, (read_px, read_px)).convert("RGB")
            if read_px != grid.patch_px:
                region = region.resize((grid.patch_px, grid.patch_px), Image.Resampling.BILINEAR)
            out[k] = np.asarray(region)
        return out

    return read


def read_patches(path: Path, grid: PatchGrid, indices: np.ndarray) -> np.ndarray:
    """Patches ``indices`` of ``grid`` at model resolution, as uint8 (n, px, px, 3)."""
    return _patch_reader(path, grid)(np.asarray(indices))


def read_patch_batches(path: Path, grid: PatchGrid, batch_size: int, workers: int = 2, prefetch: int = 4) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yield (indices, patches) in order while up to ``prefetch`` later batches are being read."""
    read = _patch_reader(path, grid)
    batches = [np.arange(s, min(s + batch_size, len(grid))) for s in range(0, len(grid), batch_size)]
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="slide-reader") as pool:
        pending: list[tuple[np.ndarray, Future]] = []
        next_batch = 0
        while pending or next_batch < len(batches):
            while next_batch < len(batches) and len(pending) < prefetch:
                pending.append((batches[next_batch], pool.submit(read, batches[next_batch])))
                next_batch += 1
            indices, future = pending.pop(0)
            try:
                yield indices, future.result()
            except GeneratorExit:
                for _, f in pending:
                    f.cancel()
                raise
