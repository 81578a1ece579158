"""Region refinement, as CLAM's ROI heatmaps (``create_heatmaps.py`` with ``overlap``): re-extract features in a region
the reviewer selects, with the head's own patch encoder, at 50 % or 75 % overlap, run the head over those patches, and
place the fine map on a grid whose cell is the patch stride.

As in CLAM, the region's patches form their own bag (attention is relative within it), and their percentile scores are
taken against the whole slide's attention scores when those are stored (CLAM's ``use_ref_scores``:
``percentileofscore(ref_scores, score)``), else within the region. The encoder comes from the head's manifest
(``patch_encoder``): the built-in ``vit`` (timm key layout) or a lab's ``package.module:factory``, with weights the lab
supplied, checked against their hash.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from scipy.stats import percentileofscore

from core.cache import content_key, explanation_path, load_arrays, save_arrays
from core.device import autocast, compute_device
from core.errors import ModelLoadError, PathReviewError
from core.features.files import FeatureFileError
from core.features.maps import top_k
from core.heatmaps.reconstruct import reconstruct_overlap_mean
from core.models.clam import AttentionMIL
from core.models.manifest import InputSpec, PatchEncoderSpec
from core.models.registry import read_weights, resolve_architecture
from core.models.vit import VisionTransformer
from core.slides.grid import PatchGrid
from core.slides.patches import read_patch_batches
from core.slides.slide_stain import slide_input
from core.slides.stain import model_input
from core.slides.tissue import slide_tissue
from core.store.cases import slide_record
from core.workspace import Workspace

REFINE_OVERLAPS = (0.5, 0.75)
MAX_REGION_PATCHES = 20_000  # a region needing more patches is refused: select a smaller one
REFINE_FORMAT = 1
READ_WORKERS = max(2, min(8, (os.cpu_count() or 2) // 2))  # OpenSlide reader threads feeding the encoder
ProgressCallback = Callable[[int, int], None]  # (patches done, total)


@dataclass(frozen=True)
class Region:
    """A level-0 rectangle (x, y: top-left) and the overlap to refine it at."""

    x: int
    y: int
    width: int
    height: int
    overlap: float

    @property
    def key_parts(self) -> tuple[int, int, int, int, float]:
        return self.x, self.y, self.width, self.height, self.overlap


@dataclass
class RefinedRegion:
    """The fine map of one region: per-patch scores and where the patches lie."""

    region: Region
    origins: np.ndarray  # (N, 2) level-0 top-left of each patch
    stride0: float  # level-0 pixels between neighbouring patches (the fine grid's cell)
    patch0: float  # level-0 side of one patch
    attention_raw: np.ndarray  # (N,) the explaining branch's raw attention within the region's bag
    percentiles: np.ndarray  # (N,) 0-100, against the whole slide's scores when stored (see the module's note)
    instance_scores: np.ndarray | None  # (N, C)
    probabilities: np.ndarray  # (C,) the head's reading of the region's bag
    percentile_reference: str  # "slide" or "region"
    encoder: str
    seconds: float
    device: str

    def cell_grid(self, values: np.ndarray) -> tuple[np.ndarray, tuple[float, float]]:
        """``values`` (N,) or (N, C) averaged over overlapping patches on the stride grid: ((C, rows, cols), level-0
        origin of the grid)."""
        per_patch = max(1, int(round(self.patch0 / self.stride0)))
        x0, y0 = self.origins.min(axis=0) if len(self.origins) else (self.region.x, self.region.y)
        cells = np.round((self.origins - (x0, y0)) / self.stride0).astype(np.int64)[:, ::-1]  # (row, col)
        shape = (int(cells[:, 0].max()) + per_patch, int(cells[:, 1].max()) + per_patch) if len(cells) else (0, 0)
        return reconstruct_overlap_mean(values.reshape(len(values), -1), cells, per_patch, shape), (float(x0), float(y0))

    def top_patches(self, k: int = 8) -> np.ndarray:
        return top_k(self.attention_raw, k)


_ENCODERS: dict[tuple[str, str], torch.nn.Module] = {}
_ENCODERS_LOCK = threading.Lock()


def load_patch_encoder(model_dir: Path, spec: PatchEncoderSpec, device: torch.device | None = None) -> torch.nn.Module:
    """The encoder a head's features came from, with the lab's weights (hash checked, ``weights_only``, strict keys)."""
    device = device or compute_device()
    ident = (str(model_dir / spec.weights), spec.weights_sha256)
    with _ENCODERS_LOCK:
        if ident in _ENCODERS:
            return _ENCODERS[ident]
    if spec.architecture != "vit" and ":" not in spec.architecture:
        raise ModelLoadError(f"patch encoder {spec.name}: architecture must be 'vit' or an import path 'package.module:factory'")
    factory = VisionTransformer if spec.architecture == "vit" else resolve_architecture(spec.architecture)
    state = read_weights(model_dir / spec.weights, spec.weights_sha256)
    try:
        module = factory(**spec.params)
        module.load_state_dict(state, strict=True)
    except (TypeError, RuntimeError, ValueError) as exc:
        raise ModelLoadError(f"patch encoder {spec.name}: weights do not fit architecture {spec.architecture}: {exc}") from exc
    module = module.to(device).eval()
    with _ENCODERS_LOCK:
        _ENCODERS[ident] = module
    return module


def region_grid(path: Path, slide_mpp: float, spec: PatchEncoderSpec, region: Region, min_tissue: float = 0.2) -> PatchGrid:
    """The encoder's patches inside ``region`` at its overlap, on a lattice anchored at the slide's origin (so two
    regions share their patches), keeping those with at least ``min_tissue`` tissue, as the feature files do."""
    if region.overlap not in REFINE_OVERLAPS:
        raise PathReviewError(f"refinement overlap must be one of {', '.join(f'{o:.0%}' for o in REFINE_OVERLAPS)}")
    (width, height), tissue = slide_tissue(path, slide_mpp)
    patch0 = spec.patch_size_px * spec.mpp / slide_mpp
    stride0 = patch0 * (1 - region.overlap)
    x1, y1 = min(region.x + region.width, width), min(region.y + region.height, height)
    first_c, first_r = int(np.ceil(max(region.x, 0) / stride0)), int(np.ceil(max(region.y, 0) / stride0))
    last_c, last_r = int((x1 - patch0) // stride0), int((y1 - patch0) // stride0)
    count = max(0, last_c - first_c + 1) * max(0, last_r - first_r + 1)
    if count == 0:
        raise PathReviewError(f"the region is smaller than one patch of the encoder ({patch0:.0f} level-0 px); select a larger region")
    if count > MAX_REGION_PATCHES:
        raise PathReviewError(f"the region holds {count:,} patches at {region.overlap:.0%} overlap (at most {MAX_REGION_PATCHES:,}); "
                              "select a smaller region")
    origins, fractions = [], []
    patch_um = spec.patch_size_px * spec.mpp
    for r in range(first_r, last_r + 1):
        for c in range(first_c, last_c + 1):
            x0, y0 = c * stride0, r * stride0
            fraction = tissue.fraction_in(x0 * slide_mpp, y0 * slide_mpp, patch_um)
            if fraction >= min_tissue:
                origins.append((round(x0), round(y0)))
                fractions.append(fraction)
    if not origins:
        raise PathReviewError("no tissue in the selected region; select a region over tissue")
    points = np.array(origins, dtype=np.int64).reshape(-1, 2)
    return PatchGrid(width, height, slide_mpp, spec.patch_size_px, spec.mpp, region.overlap, points,
                     np.zeros_like(points), np.array(fractions))


def encode_patches(path: Path, grid: PatchGrid, encoder: torch.nn.Module, spec: PatchEncoderSpec, device: torch.device,
                   batch_size: int = 64, progress: ProgressCallback | None = None, workers: int = READ_WORKERS,
                   stain: InputSpec | None = None) -> np.ndarray:
    """(N, D) float32 embeddings of the grid's patches, stain-normalised as ``stain`` says (the encoder's declared
    normalisation bound to the slide, when it fits stains per slide). OpenSlide reads run in threads ahead of the
    encoder, so reading and compute overlap; mixed precision on CUDA."""
    mean = torch.tensor(spec.channel_mean, device=device).view(1, 3, 1, 1)
    std = torch.tensor(spec.channel_std, device=device).view(1, 3, 1, 1)
    stain = stain or spec.stain_input()
    out: np.ndarray | None = None
    done = 0
    for indices, patches in read_patch_batches(path, grid, batch_size, workers=workers, prefetch=2 * workers):
        x = model_input(patches, stain, device)  # stain-normalised as the encoder declares, as its features were made
        with torch.inference_mode(), autocast(device):
            embedded = encoder((x - mean) / std).float().cpu().numpy()
        if out is None:
            out = np.empty((len(grid), embedded.shape[1]), np.float32)
        out[indices] = embedded
        done += len(indices)
        if progress is not None:
            progress(done, len(grid))
    assert out is not None  # the grid is never empty (region_grid refuses that)
    return out



def _refined_path(workspace: Workspace, slide_id: str, model_id: str, region: Region) -> Path:
    manifest = workspace.manifest(model_id)
    encoder_sha = manifest.patch_encoder.weights_sha256 if manifest.patch_encoder else ""
    return explanation_path(workspace.cache_dir, "mil-refine", refine_key(slide_id, model_id, manifest.weights_sha256, encoder_sha, region), ".npz")


def refine_key(slide_id: str, model_id: str, head_sha: str, encoder_sha: str, region: Region) -> str:
    return content_key("mil-refine", REFINE_FORMAT, slide_id, model_id, head_sha, encoder_sha, *region.key_parts)


def refine_region(workspace: Workspace, slide_id: str, model_id: str, region: Region, reference_scores: np.ndarray | None,
                  progress: ProgressCallback | None = None) -> RefinedRegion:
    """Re-extract, run the head, store and return the region's fine map (the stored one when already computed)."""
    stored = stored_refinement(workspace, slide_id, model_id, region)
    if stored is not None:
        return stored
    manifest = workspace.manifest(model_id)
    if manifest.patch_encoder is None:
        raise PathReviewError(f"model {model_id} does not name its patch encoder; region refinement needs the encoder's weights")
    head = workspace.model(model_id)
    if not isinstance(head.module, AttentionMIL):
        raise PathReviewError(f"model {model_id} ({manifest.architecture}) has no attention to refine; use an ABMIL or CLAM head")
    with workspace.store.session() as s:
        record = slide_record(s, slide_id)
        path, slide_mpp = workspace.slides_dir / record.file, float(record.mpp)
    spec = manifest.patch_encoder
    started = time.perf_counter()
    device = head.device
    encoder = load_patch_encoder(workspace.models_dir / model_id, spec, device)
    grid = region_grid(path, slide_mpp, spec, region)
    features = encode_patches(path, grid, encoder, spec, device, progress=progress,
                              stain=slide_input(workspace, slide_id, spec.stain_input()))
    if features.shape[1] != head.module.embed_dim:
        raise FeatureFileError(f"patch encoder {spec.name} gives {features.shape[1]} dimensions but model {model_id} reads "
                               f"{head.module.embed_dim}; the manifest names another encoder than the one the head was trained on")
    with torch.inference_mode():
        logits, raw, instances = head.module.eval().explain(torch.from_numpy(features).to(device))
    probabilities = torch.softmax(logits.float(), 0).cpu().numpy()
    raw_np = raw.float().cpu().numpy()
    branch = int(np.argmax(probabilities)) if raw_np.shape[0] > 1 else 0
    scores = raw_np[branch]
    if reference_scores is not None and len(reference_scores):
        percentiles, reference = np.asarray(percentileofscore(reference_scores, scores), np.float32), "slide"
    else:
        percentiles, reference = np.asarray(percentileofscore(scores, scores), np.float32), "region"
    patch0 = spec.patch_size_px * spec.mpp / slide_mpp
    result = RefinedRegion(region, grid.origins, patch0 * (1 - region.overlap), patch0, scores.astype(np.float32), percentiles,
                           None if instances is None else instances.float().cpu().numpy(), probabilities, reference, spec.name,
                           time.perf_counter() - started, device.type)
    extra = {} if result.instance_scores is None else {"instance_scores": result.instance_scores}
    save_arrays(_refined_path(workspace, slide_id, model_id, region), origins=result.origins, stride0=np.array(result.stride0),
                patch0=np.array(result.patch0), attention_raw=result.attention_raw, percentiles=result.percentiles,
                probabilities=result.probabilities, percentile_reference=np.array(reference), encoder=np.array(spec.name),
                seconds=np.array(result.seconds), device=np.array(result.device), **extra)
    return result


def stored_refinement(workspace: Workspace, slide_id: str, model_id: str, region: Region) -> RefinedRegion | None:
    data = load_arrays(_refined_path(workspace, slide_id, model_id, region))
    if data is None:
        return None
    return RefinedRegion(region, data["origins"], float(data["stride0"]), float(data["patch0"]), data["attention_raw"],
                         data["percentiles"], data.get("instance_scores"), data["probabilities"], str(data["percentile_reference"]),
                         str(data["encoder"]), float(data["seconds"]), str(data["device"]))
