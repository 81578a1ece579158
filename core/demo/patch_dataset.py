"""Labelled patches cut from demo slides (read through OpenSlide) using their ground-truth class maps."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from core.demo.slide_synthesis import BACKGROUND, BASE_MPP, MAP_UM_PER_PX
from core.slides.reader import level_for_downsample, open_slide, read_level_rgb

PATCH_PX = 64
PATCH_MPP = 2.0
PATCH_CLASSES = ("benign", "GG3", "GG4", "GG5")  # class map labels 1..4 -> 0..3


@dataclass
class SlidePatches:
    slide_id: str
    images: np.ndarray  # (N, PATCH_PX, PATCH_PX, 3) uint8
    grid_rc: np.ndarray  # (N, 2) patch row / column on the grid
    label: np.ndarray  # (N,) majority patch class, -1 when mostly background
    purity: np.ndarray  # (N,) fraction of tissue cells holding the majority class
    tissue: np.ndarray  # (N,) tissue fraction


def slide_patches(slide_id: str, path: Path, class_map: np.ndarray, min_tissue: float = 0.2) -> SlidePatches:
    """All grid patches of a slide with at least ``min_tissue`` tissue, at ``PATCH_MPP`` um/px."""
    slide = open_slide(path)
    try:
        level = level_for_downsample(slide, PATCH_MPP / BASE_MPP)
        image = read_level_rgb(slide, level)
        level_mpp = BASE_MPP * slide.level_downsamples[level]
    finally:
        slide.close()
    read_px = int(round(PATCH_PX * PATCH_MPP / level_mpp))
    cells = int(round(PATCH_PX * PATCH_MPP / MAP_UM_PER_PX))
    rows, cols = image.shape[0] // read_px, image.shape[1] // read_px
    images, rcs, labels, purity, tissue = [], [], [], [], []
    for r in range(rows):
        for c in range(cols):
            block = class_map[r * cells : (r + 1) * cells, c * cells : (c + 1) * cells]
            if block.size == 0:
                continue
            frac = float((block != BACKGROUND).mean())
            if frac < min_tissue:
                continue
            counts = np.bincount(block[block != BACKGROUND].ravel(), minlength=5)[1:]
            patch = image[r * read_px : (r + 1) * read_px, c * read_px : (c + 1) * read_px]
            if read_px != PATCH_PX:  # resolution-aware: nearest pyramid level, then resize
                step = read_px // PATCH_PX
                patch = patch.reshape(PATCH_PX, step, PATCH_PX, step, 3).mean((1, 3)).astype(np.uint8)
            images.append(patch)
            rcs.append((r, c))
            labels.append(int(counts.argmax()))
            purity.append(float(counts.max() / max(1, counts.sum())))
            tissue.append(frac)
    return SlidePatches(
        slide_id,
        np.stack(images) if images else np.zeros((0, PATCH_PX, PATCH_PX, 3), np.uint8),
        np.array(rcs, dtype=int).reshape(-1, 2),
        np.array(labels, dtype=int),
        np.array(purity),
        np.array(tissue),
    )
