"""Every derived layer of a loaded heatmap, owned by one object per heatmap: the reconstructions (overlap mean and
bilinear class maps), the class map (tissue argmax), the tissue mask, the stitched CAMs, MIL attention and quality
control (``quality_layers``).

A layer is named ``kind`` or ``kind:variant`` (``reconstruction:bilinear``, ``cam:gradcam``, ``attention``). Its
kind, registered once in ``LAYER_KINDS``, says how it is computed. Each layer is computed at most once per loaded
heatmap (a per-layer lock: a second caller waits for the first and reads its result) and kept here. Whole-slide
model work (``background`` kinds) is computed only through ``compute`` (by a job, an export, the method
comparison); ``get`` — what a tile request calls — returns it only once it is stored, and raises ``LayerNotReady``
otherwise. Adding a kind (MIL features, annotations) is one module defining a ``LayerKind`` and one line below.
"""

from __future__ import annotations

import threading
from collections import OrderedDict

import numpy as np

from core.errors import PathReviewError
from core.heatmaps.attention import MIL_ATTENTION
from core.heatmaps.cam_maps import STITCHED_CAM
from core.heatmaps.layer_kind import LayerKind, Layers, LayerStore, Progress
from core.heatmaps.quality_layers import QUALITY_KINDS
from core.heatmaps.reconstruct import reconstruct_bilinear, reconstruct_overlap_mean, tissue_argmax
from core.heatmaps.slide_heatmap import METHODS, SlideHeatmap
from core.slides.grid import CELLS_PER_PATCH
from core.workspace import Workspace


def _method(layers: Layers, variant: str) -> str:
    if variant not in METHODS:
        raise PathReviewError(f"reconstruction method must be one of {', '.join(METHODS)}")
    return variant


def _reconstruction(layers: Layers, method: str, progress: Progress | None) -> np.ndarray:
    h = layers.heat
    if method == "overlap":
        return reconstruct_overlap_mean(h.probs, h.cell_index, CELLS_PER_PATCH, h.cell_shape)
    return reconstruct_bilinear(h.probs, h.cell_index, CELLS_PER_PATCH, h.stride_cells, h.cell_shape)


def _no_variant(layers: Layers, variant: str) -> str:
    if variant:
        raise PathReviewError("the tissue layer has no variants")
    return variant


# (C, rows, cols) per-class probability maps, by reconstruction method.
RECONSTRUCTION = LayerKind("reconstruction", variant=_method, compute=_reconstruction)
# (rows, cols) class index per tissue cell (-1 elsewhere), from the reconstruction of the same method.
CLASS_MAP = LayerKind("class-map", variant=_method,
                      compute=lambda layers, method, progress: tissue_argmax(layers.get(f"reconstruction:{method}"), layers.heat.tissue))
# (rows, cols) bool tissue mask on the cell grid.
TISSUE = LayerKind("tissue", variant=_no_variant, compute=lambda layers, variant, progress: layers.heat.tissue)

LAYER_KINDS: dict[str, LayerKind] = {kind.name: kind for kind in (RECONSTRUCTION, CLASS_MAP, TISSUE, STITCHED_CAM, MIL_ATTENTION, *QUALITY_KINDS)}


class SlideLayers(LayerStore):
    """The derived layers of one loaded heatmap in one workspace (``slide_layers`` hands out one per heatmap)."""

    def __init__(self, workspace: Workspace, heat: SlideHeatmap, kinds: dict[str, LayerKind] = LAYER_KINDS) -> None:
        super().__init__(workspace, kinds, "heatmap layer")
        self.heat = heat


_OWNERS: OrderedDict[tuple[str, str], SlideLayers] = OrderedDict()
_OWNERS_LOCK = threading.Lock()
_MAX_OWNERS = 32


def slide_layers(workspace: Workspace, heat: SlideHeatmap) -> SlideLayers:
    """The layers of this loaded heatmap in this workspace: the same object for every caller of the process, so a
    layer a job or an earlier request computed is reused."""
    ident = (str(workspace.cache_dir), heat.key)
    with _OWNERS_LOCK:
        layers = _OWNERS.get(ident)
        if layers is None or layers.heat is not heat:  # a reloaded heatmap starts afresh
            layers = _OWNERS[ident] = SlideLayers(workspace, heat)
            while len(_OWNERS) > _MAX_OWNERS:
                _OWNERS.popitem(last=False)
        _OWNERS.move_to_end(ident)
        return layers
