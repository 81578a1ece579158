"""Pixels of a slide region at an output size, read from the nearest pyramid level, with a heatmap composited on top."""

from __future__ import annotations

import math

import numpy as np
import openslide
from PIL import Image, ImageCms

from core.export.slide_region import SlideRegion
from core.heatmaps.overlay import OverlayStyle, overlay_rgba
from core.heatmaps.slide_heatmap import SlideHeatmap
from core.slides.reader import level_for_downsample, srgb_transform

STRIP_LEVEL_PIXELS = 16 << 20  # at most this many pyramid-level pixels are read at once
LANCZOS_SUPPORT = 3  # Lanczos-3: output pixels reach 3 source pixels per unit of downscale on each side


def read_region_rgb(slide: openslide.OpenSlide, region: SlideRegion, out_width: int, out_height: int) -> np.ndarray:
    """(out_height, out_width, 3) uint8 RGB of a level-0 region, read at the coarsest level that is still at least as
    fine as the output and resampled with Lanczos; read in strips, so a slide without a pyramid costs bounded memory."""
    level = level_for_downsample(slide, region.width / out_width)
    ds = slide.level_downsamples[level]
    level_w, level_h = slide.level_dimensions[level]
    fx0, fy0, fw, fh = region.x / ds, region.y / ds, region.width / ds, region.height / ds
    pad = math.ceil(LANCZOS_SUPPORT * max(1.0, fw / out_width, fh / out_height)) + 1  # the filter's support past a strip's edges
    ix0, ix1 = max(0, math.floor(fx0) - pad), min(level_w, math.ceil(fx0 + fw) + pad)
    rows_per_strip = max(1, int(STRIP_LEVEL_PIXELS / max(1, ix1 - ix0) / max(fh / out_height, 1.0)))
    to_srgb = srgb_transform(slide)
    out = np.empty((out_height, out_width, 3), np.uint8)
    for r0 in range(0, out_height, rows_per_strip):
        r1 = min(out_height, r0 + rows_per_strip)
        sy0, sy1 = fy0 + r0 * fh / out_height, fy0 + r1 * fh / out_height
        iy0, iy1 = max(0, math.floor(sy0) - pad), min(level_h, math.ceil(sy1) + pad)
        rgba = slide.read_region((round(ix0 * ds), round(iy0 * ds)), level, (ix1 - ix0, iy1 - iy0))
        strip = Image.alpha_composite(Image.new("RGBA", rgba.size, "white"), rgba).convert("RGB")  # no data reads as white glass
        if to_srgb is not None:
            ImageCms.applyTransform(strip, to_srgb, inPlace=True)
        box = (fx0 - ix0, sy0 - iy0, fx0 + fw - ix0, sy1 - iy0)
        out[r0:r1] = np.asarray(strip.resize((out_width, r1 - r0), Image.Resampling.LANCZOS, box=box))
    return out


def grid_on_pixels(grid: np.ndarray, cell_level0: float, region: SlideRegion, out_width: int, out_height: int) -> np.ndarray:
    """The heatmap's cell grid sampled at each output pixel's centre (nearest cell, as the viewer's tiles); NaN off the grid."""
    xs = region.x + (np.arange(out_width) + 0.5) * region.width / out_width
    ys = region.y + (np.arange(out_height) + 0.5) * region.height / out_height
    cols, rows = np.floor(xs / cell_level0).astype(np.int64), np.floor(ys / cell_level0).astype(np.int64)
    inside_c = (cols >= 0) & (cols < grid.shape[1])
    inside_r = (rows >= 0) & (rows < grid.shape[0])
    values = np.full((out_height, out_width), np.nan, np.float32)
    values[np.ix_(inside_r, inside_c)] = grid[np.ix_(rows[inside_r], cols[inside_c])]
    return values


def composite(base: np.ndarray, rgba: np.ndarray, opacity: float) -> np.ndarray:
    """``rgba`` over ``base`` with its alpha scaled by ``opacity`` (the viewer's client-side opacity)."""
    alpha = rgba[..., 3:4].astype(np.float32) / 255.0 * opacity
    mixed = base.astype(np.float32) * (1 - alpha) + rgba[..., :3].astype(np.float32) * alpha
    return np.clip(np.rint(mixed), 0, 255).astype(np.uint8)


def heat_pixels(heat: SlideHeatmap, grid: np.ndarray, style: OverlayStyle, region: SlideRegion,
                out_width: int, out_height: int) -> np.ndarray:
    """RGBA overlay of a heatmap layer grid over the region at output resolution."""
    return overlay_rgba(grid_on_pixels(grid, heat.cell_level0, region, out_width, out_height), style, heat.class_names)
