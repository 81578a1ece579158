"""A MIL head's maps from a slide's feature file, on a cell grid at the features' patch size: no full-resolution canvas.

Placement. The grid's cell is one patch side at level 0 (``patch_size_level0``), its origin the slide's (0, 0). A patch
whose top-left corner is (x, y) covers, in cell units, the unit square at (x / side, y / side); it adds its value to the
(up to) four cells that square overlaps, weighted by the overlapped area, and each cell shows sum(w v) / sum(w). Patches
on the cell lattice fill one cell each; patches that overlap (TRIDENT ``overlap``, CLAM's per-contour origins) are
averaged where they overlap, as CLAM's ``visHeatmap`` averages overlapping patches per pixel. A cell no patch touches
is NaN.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from scipy.stats import rankdata

from core.features.files import FeatureFileError, FeatureSet, OnBlock, check_fits
from core.models.clam import AttentionMIL, AttentionStream


@dataclass
class GridMap:
    values: np.ndarray  # (rows, cols) or (channels, rows, cols) float32; NaN where no patch lies
    coverage: np.ndarray  # (rows, cols) float32: summed overlap area, in cells, of the patches on each cell
    cell: int  # level-0 pixels per cell side


def grid_shape(slide_dimensions: tuple[int, int], cell: int) -> tuple[int, int]:
    width, height = slide_dimensions
    return -(-height // cell), -(-width // cell)


def place_on_grid(values: np.ndarray, coords: np.ndarray, side: int, slide_dimensions: tuple[int, int]) -> GridMap:
    """``values`` (N,) or (N, C) per patch -> the area-weighted average on the cell grid (see the module's note)."""
    rows, cols = grid_shape(slide_dimensions, side)
    per_channel = values.reshape(len(values), -1).astype(np.float64)
    col0, fx = np.divmod(coords[:, 0], side)
    row0, fy = np.divmod(coords[:, 1], side)
    fx, fy = fx / side, fy / side
    weight = np.zeros(rows * cols)
    total = np.zeros((per_channel.shape[1], rows * cols))
    for dr, wy in ((0, 1.0 - fy), (1, fy)):
        for dc, wx in ((0, 1.0 - fx), (1, fx)):
            r, c = row0 + dr, col0 + dc
            w = wy * wx
            keep = (w > 0) & (r < rows) & (c < cols)
            flat = (r * cols + c)[keep]
            weight += np.bincount(flat, weights=w[keep], minlength=rows * cols)
            for ch in range(per_channel.shape[1]):
                total[ch] += np.bincount(flat, weights=(w * per_channel[:, ch])[keep], minlength=rows * cols)
    with np.errstate(invalid="ignore", divide="ignore"):
        averaged = np.where(weight > 0, total / weight, np.nan).astype(np.float32)
    shaped = averaged.reshape(-1, rows, cols)
    return GridMap(shaped[0] if values.ndim == 1 else shaped, weight.reshape(rows, cols).astype(np.float32), side)


def to_percentiles(scores: np.ndarray) -> np.ndarray:
    """CLAM ``vis_utils/heatmap_utils.py`` / ``create_heatmaps.py``: rankdata(scores, 'average') / N * 100."""
    return np.asarray(rankdata(scores, "average") / len(scores) * 100, dtype=np.float32)


def top_k(scores: np.ndarray, k: int, invert: bool = False) -> np.ndarray:
    """CLAM's ``top_k``: indices of the k highest scores, highest first (lowest first with ``invert``)."""
    order = np.argsort(scores, kind="stable")
    return order[:k] if invert else order[::-1][:k]


@dataclass
class SlidePrediction:
    """A head's reading of one slide's features."""

    probabilities: np.ndarray  # (C,) softmax of the logits
    attention_raw: np.ndarray  # (K, N) scores before the softmax over patches; K = 1, or C for CLAM-MB
    instance_scores: np.ndarray | None  # (N, C) CLAM's instance classifiers; None for a head without them

    @property
    def predicted(self) -> int:
        return int(np.argmax(self.probabilities))

    def branch(self) -> int:
        """The attention branch that explains the prediction: the predicted class's for CLAM-MB, else the only one."""
        return self.predicted if self.attention_raw.shape[0] > 1 else 0

    def top_patches(self, k: int = 8) -> tuple[np.ndarray, np.ndarray]:
        """(top-k, bottom-k) patch indices by the explaining branch's raw attention, as CLAM samples them."""
        scores = self.attention_raw[self.branch()]
        return top_k(scores, k), top_k(scores, k, invert=True)


def predict(head: AttentionMIL, fs: FeatureSet, device: torch.device | None = None) -> SlidePrediction:
    """Run an attention head over a slide's features once (no copy of the features on CPU)."""
    device = device or next(head.parameters()).device
    bag = torch.from_numpy(fs.features).to(device)
    with torch.inference_mode():
        logits, raw, instances = head.eval().explain(bag)
    return SlidePrediction(torch.softmax(logits.float(), 0).cpu().numpy(), raw.float().cpu().numpy(),
                           None if instances is None else instances.float().cpu().numpy())


def predict_while_reading(head: AttentionMIL, read: Callable[[OnBlock], FeatureSet], device: torch.device | None = None,
                          ) -> tuple[SlidePrediction, FeatureSet]:
    """Read a feature file with ``read`` (a reader taking ``on_block``) and run the head on each block of rows as it
    arrives: the reader hands blocks over on a second thread while it reads the next, so on CUDA the copy to the
    device and the kernels overlap the reading. Same result as ``predict`` on the whole file.

    Blocks go to the device straight from the reader's array: measured on an H200 with 20,000 x 1,024 features, a
    copy through pinned staging buffers was slower (the extra host copy costs more than the pinned transfer saves)."""
    device = device or next(head.parameters()).device
    streams: list[AttentionStream] = []

    def on_block(start: int, rows: np.ndarray, total: int) -> None:
        if not streams:
            if rows.shape[1] != head.embed_dim:
                raise FeatureFileError(f"features have {rows.shape[1]} dimensions but the model reads {head.embed_dim}; they come "
                                       "from a different patch encoder than the one the model was trained on")
            streams.append(AttentionStream(head, total, torch.empty(0, device=device)))
        streams[0].add(torch.from_numpy(rows).to(device))

    with torch.inference_mode():
        head.eval()
        fs = read(on_block)
        logits, raw, instances = streams[0].result()
        prediction = SlidePrediction(torch.softmax(logits.float(), 0).cpu().numpy(), raw.float().cpu().numpy(),
                                     None if instances is None else instances.float().cpu().numpy())
    return prediction, fs


def attention_map(prediction: SlidePrediction, fs: FeatureSet, slide_dimensions: tuple[int, int],
                  percentiles: bool = False) -> GridMap:
    """The explaining branch's raw attention, or its CLAM percentile (0-100), on the cell grid."""
    scores = prediction.attention_raw[prediction.branch()]
    return place_on_grid(to_percentiles(scores) if percentiles else scores, fs.coords, fs.geometry.patch_size_level0, slide_dimensions)


def instance_map(prediction: SlidePrediction, fs: FeatureSet, slide_dimensions: tuple[int, int]) -> GridMap:
    """Per-class instance scores (C, rows, cols) on the cell grid."""
    if prediction.instance_scores is None:
        raise ValueError("this head has no instance classifiers")
    return place_on_grid(prediction.instance_scores, fs.coords, fs.geometry.patch_size_level0, slide_dimensions)


def slide_attention_map_from_file(head: AttentionMIL, read: Callable[[OnBlock], FeatureSet], slide_dimensions: tuple[int, int],
                                  percentiles: bool = False, slide_name: str | None = None) -> tuple[SlidePrediction, GridMap]:
    """``slide_attention_map`` with the head run while the file is read (``predict_while_reading``); the file is checked
    against the slide once read, before anything is placed."""
    prediction, fs = predict_while_reading(head, read)
    check_fits(fs, slide_dimensions, head.embed_dim, slide_name)
    return prediction, attention_map(prediction, fs, slide_dimensions, percentiles)


def slide_attention_map(head: AttentionMIL, fs: FeatureSet, slide_dimensions: tuple[int, int], percentiles: bool = False,
                        slide_name: str | None = None) -> tuple[SlidePrediction, GridMap]:
    """Check the file against the slide and the head, run the head, and place its attention."""
    check_fits(fs, slide_dimensions, head.embed_dim, slide_name)
    prediction = predict(head, fs)
    return prediction, attention_map(prediction, fs, slide_dimensions, percentiles)
