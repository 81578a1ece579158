"""Patch grids: where a model's patches lie on a slide, resolution-aware, with optional overlap."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from core.errors import PathReviewError
from core.slides.tissue import TissueMask

OVERLAPS = (0.0, 0.5, 0.75)
CELLS_PER_PATCH = 4  # reconstruction grids have 4 x 4 cells per patch (the stride at 75 % overlap)


@dataclass(frozen=True)
class PatchGrid:
    """Patches of ``patch_px`` pixels at ``patch_mpp``; positions in level-0 pixels."""

    slide_width: int
    slide_height: int
    slide_mpp: float
    patch_px: int
    patch_mpp: float
    overlap: float
    origins: np.ndarray  # (N, 2) top-left (x, y) in level-0 pixels
    cell_index: np.ndarray  # (N, 2) top-left (row, col) on the reconstruction cell grid
    tissue_fraction: np.ndarray  # (N,)

    @property
    def patch_level0(self) -> float:
        """Patch side length in level-0 pixels."""
        return self.patch_px * self.patch_mpp / self.slide_mpp

    @property
    def cell_level0(self) -> float:
        return self.patch_level0 / CELLS_PER_PATCH

    @property
    def stride_cells(self) -> int:
        return int(round(CELLS_PER_PATCH * (1 - self.overlap)))

    @property
    def cell_shape(self) -> tuple[int, int]:
        """(rows, cols) of the reconstruction grid covering the whole slide."""
        return (int(np.ceil(self.slide_height / self.cell_level0)), int(np.ceil(self.slide_width / self.cell_level0)))

    def __len__(self) -> int:
        return len(self.origins)


def patch_grid(
    width: int, height: int, slide_mpp: float, patch_px: int, patch_mpp: float, tissue: TissueMask,
    overlap: float = 0.0, min_tissue: float = 0.2,
) -> PatchGrid:
    """All patches lying fully inside the slide with at least ``min_tissue`` tissue."""
    if overlap not in OVERLAPS:
        raise PathReviewError(f"overlap must be one of {', '.join(f'{o:.0%}' for o in OVERLAPS)}")
    if not 0.0 <= min_tissue <= 1.0:
        raise PathReviewError("minimum tissue fraction must be between 0 and 1")
    if patch_mpp < slide_mpp * 0.99:
        raise PathReviewError(f"the model reads {patch_mpp} um/px, finer than this slide's {slide_mpp} um/px")
    size0 = patch_px * patch_mpp / slide_mpp
    stride_cells = int(round(CELLS_PER_PATCH * (1 - overlap)))
    stride0 = size0 * stride_cells / CELLS_PER_PATCH
    rows = int((height - size0) // stride0) + 1 if height >= size0 else 0
    cols = int((width - size0) // stride0) + 1 if width >= size0 else 0
    origins, cells, fractions = [], [], []
    patch_um = patch_px * patch_mpp
    for r in range(rows):
        for c in range(cols):
            x0, y0 = c * stride0, r * stride0
            frac = tissue.fraction_in(x0 * slide_mpp, y0 * slide_mpp, patch_um)
            if frac >= min_tissue:
                origins.append((round(x0), round(y0)))
                cells.append((r * stride_cells, c * stride_cells))
                fractions.append(frac)
    return PatchGrid(
        width, height, slide_mpp, patch_px, patch_mpp, overlap,
        np.array(origins, dtype=np.int64).reshape(-1, 2), np.array(cells, dtype=np.int64).reshape(-1, 2), np.array(fractions),
    )
