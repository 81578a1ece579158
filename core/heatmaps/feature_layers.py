"""The layers a MIL head over a lab's feature files adds to a slide, owned per (slide, head) like ``slide_layers`` owns
a patch heatmap's: the same ``LayerKind`` contract (computed once, ``background`` kinds only by a job, "not ready" to a
tile request until stored).

Layers (``kind:variant``):

- ``prediction`` (background): the head over the slide's feature file, one pass — class probabilities, raw attention,
  instance scores — stored in the workspace cache by content (feature file, head weights);
- ``attention:raw`` and ``attention:percentile``: the explaining branch's attention on the cell grid (``maps``), raw
  (shown min-max scaled, its range in the legend) or as CLAM's percentile scores (0-100);
- ``instance:<class>``: that class's instance score (CLAM's instance classifiers) on the grid;
- ``refine:<key>`` (background): a region's fine map, stored by its refinement job (``refinement``).
"""

from __future__ import annotations

import io
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import numpy as np
from PIL import Image

from core.cache import content_key, explanation_path, load_arrays, save_arrays
from core.errors import PathReviewError
from core.features.feature_sets import feature_set_dir, read_feature_set, slide_features
from core.features.maps import GridMap, SlidePrediction, place_on_grid, predict_while_reading, to_percentiles
from core.heatmaps.layer_kind import LayerKind, Layers, LayerStore, Progress
from core.heatmaps.overlay import OverlayStyle, overlay_rgba
from core.heatmaps.region_refinement import RefinedRegion, Region, refine_region, stored_refinement
from core.models.clam import AttentionMIL
from core.slides.reader import level_for_downsample, open_slide, slide_fingerprint
from core.store.cases import slide_record
from core.workspace import Workspace

MIL_FORMAT = 1


def feature_heads(workspace: Workspace) -> list[str]:
    """MIL heads that read a workspace feature set (rather than a patch model's embeddings)."""
    return [m for m, man in workspace.manifests.items() if man.task == "mil" and man.feature_set]


def heads_for_slide(workspace: Workspace, slide_id: str) -> list[str]:
    """The feature-set heads whose feature set holds this slide."""
    out = []
    for model_id in feature_heads(workspace):
        set_name = workspace.manifest(model_id).feature_set
        try:
            if set_name and slide_id in read_feature_set(workspace.root, set_name).slides:
                out.append(model_id)
        except PathReviewError:
            continue  # a set named by a manifest but not registered: the Models page shows that; no layers here
    return out


@dataclass
class MilSlideResult:
    """A head's stored reading of one slide's feature file."""

    model_id: str
    prediction: SlidePrediction
    coords: np.ndarray  # (N, 2) level-0 top-left of each feature's patch
    side: int  # level-0 patch side (the grid's cell)
    slide_size: tuple[int, int]

    def branch_scores(self) -> np.ndarray:
        return self.prediction.attention_raw[self.prediction.branch()]


def _feature_file(workspace: Workspace, model_id: str, slide_id: str) -> Path:
    manifest = workspace.manifest(model_id)
    assert manifest.feature_set is not None
    entry = read_feature_set(workspace.root, manifest.feature_set).slides.get(slide_id)
    if entry is None:
        raise PathReviewError(f"feature set {manifest.feature_set!r} has no features for slide {slide_id}")
    return feature_set_dir(workspace.root, manifest.feature_set) / entry.features


def _prediction_path(workspace: Workspace, model_id: str, slide_id: str) -> Path:
    fingerprint = slide_fingerprint(_feature_file(workspace, model_id, slide_id))
    key = content_key("mil-features", MIL_FORMAT, slide_id, model_id, workspace.manifest(model_id).weights_sha256, fingerprint)
    return explanation_path(workspace.cache_dir, "mil-features", key, ".npz")


def compute_slide_prediction(workspace: Workspace, slide_id: str, model_id: str) -> MilSlideResult:
    """Read and check the slide's feature file, run the head once, store the result."""
    manifest = workspace.manifest(model_id)
    if not manifest.feature_set:
        raise PathReviewError(f"model {model_id} does not read a feature set")
    head = workspace.model(model_id)
    if not isinstance(head.module, AttentionMIL):
        raise PathReviewError(f"model {model_id} ({manifest.architecture}) gives no per-patch attention; its maps need an ABMIL or CLAM head")
    with workspace.store.session() as s:
        record = slide_record(s, slide_id)
        size = (int(record.width), int(record.height))
    set_name, module = manifest.feature_set, head.module
    prediction, fs = predict_while_reading(module, lambda on_block: slide_features(workspace.root, workspace.store, set_name, slide_id,
                                                                                   module.embed_dim, on_block))
    extra = {} if prediction.instance_scores is None else {"instance_scores": prediction.instance_scores}
    save_arrays(_prediction_path(workspace, model_id, slide_id), probabilities=prediction.probabilities,
                attention_raw=prediction.attention_raw, coords=fs.coords, side=np.array(fs.geometry.patch_size_level0),
                slide_size=np.array(size), **extra)
    return MilSlideResult(model_id, prediction, fs.coords, fs.geometry.patch_size_level0, size)


def stored_slide_prediction(workspace: Workspace, slide_id: str, model_id: str) -> MilSlideResult | None:
    data = load_arrays(_prediction_path(workspace, model_id, slide_id))
    if data is None:
        return None
    prediction = SlidePrediction(data["probabilities"], data["attention_raw"], data.get("instance_scores"))
    return MilSlideResult(model_id, prediction, data["coords"], int(data["side"]), (int(data["slide_size"][0]), int(data["slide_size"][1])))


@dataclass
class DisplayGrid:
    """What a tile shows: values in [0, 1] (NaN: no patch) on a grid of ``cell`` level-0 pixels from ``origin``, and
    the range the colours stand for (for the legend)."""

    values: np.ndarray
    cell: float
    origin: tuple[float, float]
    low: float
    high: float
    label: str


def _scaled(grid: GridMap, low: float, high: float, label: str) -> DisplayGrid:
    span = high - low if high > low else 1.0
    return DisplayGrid(((grid.values - low) / span).astype(np.float32), float(grid.cell), (0.0, 0.0), low, high, label)


class MilLayers(LayerStore):
    """The MIL-feature layers of one slide for one head (``mil_layers`` hands out one per pair and process). Its kinds
    read only ``workspace``, ``get`` and this owner's slide and head (through ``owner``), never ``heat``."""

    def __init__(self, workspace: Workspace, slide_id: str, model_id: str) -> None:
        super().__init__(workspace, MIL_LAYER_KINDS, "MIL layer")
        self.slide_id, self.model_id = slide_id, model_id


def owner(layers: Layers) -> MilLayers:
    return cast(MilLayers, layers)


def _attention_variant(layers: Layers, variant: str) -> str:
    if variant not in ("raw", "percentile"):
        raise PathReviewError("the attention layer is 'attention:raw' or 'attention:percentile'")
    return variant


def _attention(layers: Layers, variant: str, progress: Progress | None) -> DisplayGrid:
    result: MilSlideResult = layers.get("prediction")
    scores = result.branch_scores()
    if variant == "percentile":
        grid = place_on_grid(to_percentiles(scores), result.coords, result.side, result.slide_size)
        return _scaled(grid, 0.0, 100.0, "attention percentile (CLAM)")
    grid = place_on_grid(scores, result.coords, result.side, result.slide_size)
    return _scaled(grid, float(np.nanmin(scores)), float(np.nanmax(scores)), "raw attention score")


def _instance_variant(layers: Layers, variant: str) -> str:
    classes = layers.workspace.manifest(owner(layers).model_id).class_names
    if variant not in classes:
        raise PathReviewError(f"instance scores are per class: one of {', '.join(classes)}")
    return variant


def _instance(layers: Layers, variant: str, progress: Progress | None) -> DisplayGrid:
    result: MilSlideResult = layers.get("prediction")
    if result.prediction.instance_scores is None:
        raise PathReviewError("this head has no instance classifiers; its per-patch scores are its attention")
    index = layers.workspace.manifest(owner(layers).model_id).class_names.index(variant)
    grid = place_on_grid(result.prediction.instance_scores[:, index], result.coords, result.side, result.slide_size)
    return _scaled(grid, 0.0, 1.0, f"instance score: {variant}")


def _prediction_stored(layers: Layers, variant: str) -> MilSlideResult | None:
    mil = owner(layers)
    return stored_slide_prediction(mil.workspace, mil.slide_id, mil.model_id)


def _prediction_compute(layers: Layers, variant: str, progress: Progress | None) -> MilSlideResult:
    mil = owner(layers)
    return compute_slide_prediction(mil.workspace, mil.slide_id, mil.model_id)


def _no_variant(layers: Layers, variant: str) -> str:
    if variant:
        raise PathReviewError("the prediction layer has no variants")
    return variant


def parse_region(variant: str) -> Region:
    """``x,y,width,height,overlap`` (level-0 pixels; overlap 0.5 or 0.75)."""
    try:
        x, y, w, h, overlap = variant.split(",")
        return Region(int(x), int(y), int(w), int(h), float(overlap))
    except ValueError as exc:
        raise PathReviewError("a refined region is named 'refine:x,y,width,height,overlap' in level-0 pixels") from exc


def region_name(region: Region) -> str:
    return f"refine:{region.x},{region.y},{region.width},{region.height},{region.overlap:g}"


def _refine_variant(layers: Layers, variant: str) -> str:
    region = parse_region(variant)
    return region_name(region).partition(":")[2]


def _refine_stored(layers: Layers, variant: str) -> RefinedRegion | None:
    mil = owner(layers)
    return stored_refinement(mil.workspace, mil.slide_id, mil.model_id, parse_region(variant))


def _refine_compute(layers: Layers, variant: str, progress: Progress | None) -> RefinedRegion:
    mil = owner(layers)
    slide = stored_slide_prediction(mil.workspace, mil.slide_id, mil.model_id)
    return refine_region(mil.workspace, mil.slide_id, mil.model_id, parse_region(variant),
                         None if slide is None else slide.branch_scores(), progress)


PREDICTION = LayerKind("prediction", compute=_prediction_compute, variant=_no_variant, stored=_prediction_stored, background=True)
ATTENTION = LayerKind("attention", compute=_attention, variant=_attention_variant, needs=("prediction",))
INSTANCE = LayerKind("instance", compute=_instance, variant=_instance_variant, needs=("prediction",))
REFINE = LayerKind("refine", compute=_refine_compute, variant=_refine_variant, stored=_refine_stored, background=True)
MIL_LAYER_KINDS: dict[str, LayerKind] = {k.name: k for k in (PREDICTION, ATTENTION, INSTANCE, REFINE)}


def refined_display(refined: RefinedRegion, show: str) -> DisplayGrid:
    """The fine map as a tile shows it: ``percentile`` (0-100, against the slide's scores) or ``raw`` attention."""
    values = refined.percentiles if show == "percentile" else refined.attention_raw
    (grid,), origin = refined.cell_grid(values)
    low, high = (0.0, 100.0) if show == "percentile" else (float(values.min()), float(values.max()))
    span = high - low if high > low else 1.0
    label = f"region attention percentile (vs {refined.percentile_reference})" if show == "percentile" else "region raw attention"
    return DisplayGrid(((grid - low) / span).astype(np.float32), refined.stride0, origin, low, high, label)


_OWNERS: OrderedDict[tuple[str, str, str], MilLayers] = OrderedDict()
_OWNERS_LOCK = threading.Lock()


def mil_layers(workspace: Workspace, slide_id: str, model_id: str) -> MilLayers:
    if model_id not in feature_heads(workspace):
        raise PathReviewError(f"model {model_id} is not a MIL head over a feature set")
    ident = (str(workspace.cache_dir), slide_id, model_id)
    with _OWNERS_LOCK:
        layers = _OWNERS.get(ident)
        if layers is None:
            layers = _OWNERS[ident] = MilLayers(workspace, slide_id, model_id)
            while len(_OWNERS) > 64:
                _OWNERS.popitem(last=False)
        _OWNERS.move_to_end(ident)
        return layers


def render_display_tile(grid: DisplayGrid, cmap: str, threshold: float, z: int, x: int, y: int, max_zoom: int,
                        tile_size: int = 256) -> bytes:
    """RGBA PNG of Deep Zoom tile (z, x, y), sampling the grid at each pixel: no canvas beyond the tile."""
    scale = 2.0 ** (max_zoom - z)
    px = (np.arange(tile_size) + 0.5) * scale
    cols = np.floor((x * tile_size * scale + px - grid.origin[0]) / grid.cell).astype(np.int64)
    rows = np.floor((y * tile_size * scale + px - grid.origin[1]) / grid.cell).astype(np.int64)
    inside_c = (cols >= 0) & (cols < grid.values.shape[1])
    inside_r = (rows >= 0) & (rows < grid.values.shape[0])
    values = np.full((tile_size, tile_size), np.nan, np.float32)
    values[np.ix_(inside_r, inside_c)] = grid.values[np.ix_(rows[inside_r], cols[inside_c])]
    rgba = overlay_rgba(values, OverlayStyle(layer="mil", cmap=cmap, threshold=threshold), [])
    buffer = io.BytesIO()
    Image.fromarray(rgba, "RGBA").save(buffer, "PNG", compress_level=1)
    return buffer.getvalue()


def read_patches_at(workspace: Workspace, slide_id: str, origins: np.ndarray, side0: float, px: int = 96) -> list[np.ndarray]:
    """The patches at these level-0 top-left corners, ``side0`` level-0 pixels wide, read through OpenSlide at the
    pyramid level nearest ``px`` pixels per patch: uint8 (px, px, 3) each."""
    with workspace.store.session() as s:
        path = workspace.slides_dir / slide_record(s, slide_id).file
    slide = open_slide(path)
    try:
        level = level_for_downsample(slide, side0 / px)
        downsample = slide.level_downsamples[level]
        read_px = max(1, int(round(side0 / downsample)))
        out = []
        for x0, y0 in np.asarray(origins).reshape(-1, 2):
            region = slide.read_region((int(x0), int(y0)), level, (read_px, read_px)).convert("RGB")
            out.append(np.asarray(region.resize((px, px), Image.Resampling.BILINEAR)))
        return out
    finally:
        slide.close()
