"""Heatmap overlay tiles rendered on demand from the small cell grids; style comes with the request."""

from __future__ import annotations

import io
import threading
from collections import OrderedDict
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from PIL import Image
from plotly.colors import get_colorscale, sample_colorscale

from core.errors import PathReviewError
from core.heatmaps.reconstruct import (
    NORMALISATIONS,
    class_area_fractions,
    normalise_per_slide,
    reconstruct_overlap_mean,
    smooth,
    tissue_argmax,
)
from core.heatmaps.slide_heatmap import METHODS, SlideHeatmap
from core.heatmaps.slide_layers import SlideLayers
from core.slides.grid import CELLS_PER_PATCH
from core.slides.quality import FLAGS

COLORMAPS = ("Viridis", "Inferno", "Magma", "Plasma", "Jet", "Hot", "YlOrRd", "RdBu_r")
# Fixed legend colours for the class map (thesis convention); benign is left transparent.
GRADE_COLOURS = {"GG3": (0, 168, 0), "GG4": (0, 92, 230), "GG5": (220, 0, 0)}
TUMOUR_LAYER = "tumour"
ARGMAX_LAYER = "argmax"
TISSUE_LAYER = "tissue"
ATTENTION_LAYER = "attention"
CAM_LAYERS = ("cam:cam", "cam:gradcam", "cam:gradcam++")  # stitched class activation maps, per method
QC_LAYERS = tuple(f"qc:{flag}" for flag in FLAGS)  # quality control: the patches carrying each flag
# Fixed legend colours for the QC layers, chosen apart from the grade colours and the H&E palette.
QC_COLOURS = {"blur": (255, 140, 0), "pen": (0, 200, 200), "fold": (120, 60, 20), "stain": (255, 0, 200)}
QC_ALPHA = 200
QC_KEEP, QC_EXCLUDE = "keep", "exclude"
TISSUE_COLOUR = (40, 40, 40)
TISSUE_ALPHA = 110


@dataclass(frozen=True)
class OverlayStyle:
    method: str = "overlap"
    layer: str = TUMOUR_LAYER  # "tumour" (1 - P(benign)), a class name, or "argmax"
    cmap: str = "Viridis"
    threshold: float = 0.0  # cells below are transparent
    norm: str = "raw"
    smooth: float = 0.0  # Gaussian sigma in cells
    qc: str = QC_KEEP  # "exclude": the probability and class maps leave out QC-flagged patches

    @classmethod
    def from_query(cls, query: dict[str, str], class_names: list[str]) -> OverlayStyle:
        """Validate untrusted request parameters; every problem is a clear ``PathReviewError``."""
        try:
            style = cls(
                method=query.get("method", "overlap"), layer=query.get("layer", TUMOUR_LAYER), cmap=query.get("cmap", "Viridis"),
                threshold=float(query.get("thr", 0.0)), norm=query.get("norm", "raw"), smooth=float(query.get("smooth", 0.0)),
                qc=query.get("qc", QC_KEEP),
            )
        except ValueError as exc:
            raise PathReviewError(f"bad heatmap style: {exc}") from exc
        if style.method not in METHODS:
            raise PathReviewError(f"method must be one of {', '.join(METHODS)}")
        if style.qc not in (QC_KEEP, QC_EXCLUDE):
            raise PathReviewError("qc must be keep or exclude")
        if style.layer not in (TUMOUR_LAYER, ARGMAX_LAYER, TISSUE_LAYER, ATTENTION_LAYER, *CAM_LAYERS, *QC_LAYERS, *class_names):
            raise PathReviewError(f"layer must be tumour, argmax, tissue or one of {', '.join(class_names)}")
        if style.cmap not in COLORMAPS:
            raise PathReviewError(f"colormap must be one of {', '.join(COLORMAPS)}")
        if style.norm not in NORMALISATIONS:
            raise PathReviewError(f"normalisation must be one of {', '.join(NORMALISATIONS)}")
        if not (0.0 <= style.threshold <= 1.0 and 0.0 <= style.smooth <= 20.0):
            raise PathReviewError("threshold must be in [0, 1] and smoothing in [0, 20] cells")
        return style


def _benign_index(h: SlideHeatmap) -> int:
    return h.class_names.index("benign") if "benign" in h.class_names else 0


def source_layer(style: OverlayStyle) -> str:
    """The derived layer (see ``slide_layers``) a style draws."""
    if style.layer in (TISSUE_LAYER, ATTENTION_LAYER, *CAM_LAYERS):
        return style.layer
    if style.layer in QC_LAYERS:
        return f"quality-map:{style.layer.removeprefix('qc:')}"
    if style.qc == QC_EXCLUDE:
        return f"kept-reconstruction:{style.method}"
    return f"reconstruction:{style.method}"


_LAYER_CACHE: OrderedDict[tuple, np.ndarray] = OrderedDict()
_LAYER_LOCK = threading.Lock()


def layer_grid(layers: SlideLayers, style: OverlayStyle) -> np.ndarray:
    """The (rows, cols) grid a style shows: probabilities in [0, 1] (NaN = no data), or class indices for argmax.
    A stitched CAM or attention layer must be stored first (``LayerNotReady`` otherwise)."""
    h = layers.heat
    key = (str(layers.workspace.cache_dir), h.key, style.method, style.layer, style.norm, style.smooth, style.qc)
    with _LAYER_LOCK:
        if key in _LAYER_CACHE:
            _LAYER_CACHE.move_to_end(key)
            return _LAYER_CACHE[key]
    source = layers.get(source_layer(style))
    if style.layer == TISSUE_LAYER:
        grid = source.astype(np.float32)
    elif style.layer in QC_LAYERS:
        grid = np.where(h.tissue, source, np.nan).astype(np.float32)  # share of the patches over a cell with the flag
    elif style.layer in CAM_LAYERS:
        grid = normalise_per_slide(np.where(h.tissue, source, np.nan), style.norm if style.norm != "raw" else "minmax")
    elif style.layer == ATTENTION_LAYER:
        cells = reconstruct_overlap_mean(source.weights[:, None], h.cell_index, CELLS_PER_PATCH, h.cell_shape)[0]
        grid = normalise_per_slide(np.where(h.tissue, cells, np.nan), "minmax")  # attention is relative within a slide
    else:
        maps = source if style.smooth <= 0 else np.stack([smooth(m, style.smooth) for m in source])
        if style.layer == ARGMAX_LAYER:
            grid = tissue_argmax(maps, h.tissue).astype(np.float32)
        else:
            grid = 1 - maps[_benign_index(h)] if style.layer == TUMOUR_LAYER else maps[h.class_names.index(style.layer)]
            grid = normalise_per_slide(np.where(h.tissue, grid, np.nan), style.norm)
    with _LAYER_LOCK:
        _LAYER_CACHE[key] = grid
        while len(_LAYER_CACHE) > 64:
            _LAYER_CACHE.popitem(last=False)
    return grid


@lru_cache(maxsize=len(COLORMAPS))
def colour_lut(cmap: str) -> np.ndarray:
    """(256, 3) uint8 lookup table of a Plotly colour scale."""
    colours = sample_colorscale(get_colorscale(cmap), list(np.linspace(0, 1, 256)), colortype="tuple")
    return (np.array(colours) * 255).round().astype(np.uint8)


def colorbar_colours(cmap: str, n: int = 9) -> list[str]:
    return [f"rgb({r},{g},{b})" for r, g, b in colour_lut(cmap)[np.linspace(0, 255, n).astype(int)]]


def overlay_rgba(values: np.ndarray, style: OverlayStyle, class_names: list[str]) -> np.ndarray:
    """Colours of a layer's values (cell grid values sampled at pixels): the viewer's overlay tiles and exported slide
    figures both use these rules. Transparent outside tissue, where no patch informs the cell, and below the threshold."""
    rgba = np.zeros((*values.shape, 4), np.uint8)
    if style.layer == TISSUE_LAYER:
        rgba[values == 1] = (*TISSUE_COLOUR, TISSUE_ALPHA)
    elif style.layer in QC_LAYERS:  # a cell is marked when most patches over it carry the flag
        rgba[np.nan_to_num(values, nan=0.0) >= 0.5] = (*QC_COLOURS[style.layer.removeprefix("qc:")], QC_ALPHA)
    elif style.layer == ARGMAX_LAYER:
        for name, colour in GRADE_COLOURS.items():
            if name in class_names:
                hit = values == class_names.index(name)
                rgba[hit, :3] = colour
                rgba[hit, 3] = 255
    else:
        visible = np.isfinite(values) & (np.nan_to_num(values, nan=-1) >= style.threshold)
        rgba[visible, :3] = colour_lut(style.cmap)[(np.clip(values[visible], 0, 1) * 255).astype(np.uint8)]
        rgba[visible, 3] = 255
    return rgba


def render_overlay_tile(layers: SlideLayers, style: OverlayStyle, z: int, x: int, y: int, max_zoom: int, tile_size: int = 256) -> bytes:
    """RGBA PNG for Deep Zoom tile (z, x, y): transparent outside tissue, where no patch informs the cell,
    and below the threshold."""
    h = layers.heat
    grid = layer_grid(layers, style)
    scale = 2.0 ** (max_zoom - z)
    px = (np.arange(tile_size) + 0.5) * scale
    cols = ((x * tile_size * scale + px) / h.cell_level0).astype(np.int64)
    rows = ((y * tile_size * scale + px) / h.cell_level0).astype(np.int64)
    inside_c, inside_r = cols < grid.shape[1], rows < grid.shape[0]
    values = np.full((tile_size, tile_size), np.nan, np.float32)
    values[np.ix_(inside_r, inside_c)] = grid[np.ix_(rows[inside_r], cols[inside_c])]
    rgba = overlay_rgba(values, style, h.class_names)
    buffer = io.BytesIO()
    Image.fromarray(rgba, "RGBA").save(buffer, "PNG", compress_level=1)
    return buffer.getvalue()


def grade_fractions(layers: SlideLayers, method: str = "overlap", qc: str = QC_KEEP) -> dict[str, float]:
    """Share of tissue area per class from the tissue-masked argmax (the class map), of the patches without a QC flag
    when ``qc`` is "exclude"."""
    names = layers.heat.class_names
    class_map = layers.get(f"{'kept-class-map' if qc == QC_EXCLUDE else 'class-map'}:{method}")
    return dict(zip(names, class_area_fractions(class_map, len(names)).round(4).tolist(), strict=True))
