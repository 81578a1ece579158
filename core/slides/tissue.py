"""Tissue detection: Otsu threshold on saturation at low resolution, cleaned by morphology."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import openslide
from scipy import ndimage
from skimage.color import rgb2hsv
from skimage.filters import threshold_otsu
from skimage.morphology import remove_small_holes, remove_small_objects

from core.slides.reader import open_slide

TISSUE_MASK_UM_PER_PX = 16.0


@dataclass(frozen=True)
class TissueMask:
    mask: np.ndarray  # (h, w) bool
    um_per_px: float  # resolution of one mask pixel, in microns
    threshold: float  # Otsu threshold on saturation

    def fraction_in(self, x0_um: float, y0_um: float, size_um: float) -> float:
        """Tissue fraction inside a square given in microns from the slide origin."""
        s = self.um_per_px
        r0, c0 = int(y0_um // s), int(x0_um // s)
        r1, c1 = max(r0 + 1, int(np.ceil((y0_um + size_um) / s))), max(c0 + 1, int(np.ceil((x0_um + size_um) / s)))
        block = self.mask[r0:r1, c0:c1]
        return float(block.mean()) if block.size else 0.0


def detect_tissue(slide: openslide.OpenSlide, slide_mpp: float, um_per_px: float = TISSUE_MASK_UM_PER_PX) -> TissueMask:
    """Tissue mask at ``um_per_px``: saturation > Otsu, then closing, hole filling and small-object removal."""
    width, height = slide.dimensions
    target = (max(1, round(width * slide_mpp / um_per_px)), max(1, round(height * slide_mpp / um_per_px)))
    level = slide.get_best_level_for_downsample(um_per_px / slide_mpp)
    image = slide.read_region((0, 0), level, slide.level_dimensions[level]).convert("RGB").resize(target)
    saturation = rgb2hsv(np.asarray(image))[..., 1]
    threshold = float(threshold_otsu(saturation)) if saturation.max() > saturation.min() else 1.0
    mask = saturation > threshold
    mask = ndimage.binary_closing(mask, iterations=2)
    min_area = max(4, int((200 / um_per_px) ** 2))  # drop specks smaller than ~200 x 200 um
    mask = remove_small_holes(remove_small_objects(mask, max_size=min_area - 1), max_size=min_area - 1)
    return TissueMask(mask=mask, um_per_px=um_per_px, threshold=threshold)


def slide_tissue(path: Path, slide_mpp: float) -> tuple[tuple[int, int], TissueMask]:
    """A slide file's level-0 (width, height) and its tissue mask; a missing or unreadable file is a SlideReadError."""
    slide = open_slide(path)
    try:
        return slide.dimensions, detect_tissue(slide, slide_mpp)
    finally:
        slide.close()
