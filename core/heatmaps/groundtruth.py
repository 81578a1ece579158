"""Agreement between a thresholded heatmap and a ground-truth annotation mask."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from core.errors import PathReviewError


@dataclass(frozen=True)
class SegmentationScores:
    """Scores over the scored cells (the tissue, as Belharbi et al. score within the image). With no tumour in the truth
    F1+ and Dice are undefined when nothing is predicted (NaN) and 0 otherwise: such slides are reported apart."""

    dice: float  # Dice of the predicted foreground (same as F1+)
    f1_foreground: float  # F1+ : Dice on the foreground
    f1_background: float  # F1- : Dice on the background
    predicted_fraction: float  # share of the scored cells predicted as tumour
    true_fraction: float
    empty_truth: bool  # the truth has no tumour within the scored cells


def dice(pred: np.ndarray, true: np.ndarray) -> float:
    """2|P & T| / (|P| + |T|); NaN when both are empty (nothing to agree on, not a perfect score)."""
    total = pred.sum() + true.sum()
    return float("nan") if total == 0 else float(2 * (pred & true).sum() / total)


def segmentation_scores(pred: np.ndarray, true: np.ndarray, within: np.ndarray | None = None) -> SegmentationScores:
    """F1+, F1- and Dice of ``pred`` against ``true`` over the cells ``within`` (default: all cells)."""
    pred, true = pred.astype(bool), true.astype(bool)
    if pred.shape != true.shape:
        raise ValueError(f"prediction {pred.shape} and ground truth {true.shape} differ in shape")
    if within is not None:
        if within.shape != pred.shape:
            raise ValueError(f"scored cells {within.shape} and prediction {pred.shape} differ in shape")
        pred, true = pred[within.astype(bool)], true[within.astype(bool)]
    fg = dice(pred, true)
    share = (lambda a: float(a.mean())) if pred.size else (lambda a: float("nan"))
    return SegmentationScores(fg, fg, dice(~pred, ~true), share(pred), share(true), not bool(true.any()))


def read_label_mask(path: Path) -> np.ndarray:
    try:
        return np.asarray(Image.open(path))
    except (OSError, ValueError) as exc:
        raise PathReviewError(f"ground-truth mask {path.name} cannot be read: {exc}") from exc


def mask_on_cells(labels: np.ndarray, mask_um_per_px: float, cell_um: float, shape: tuple[int, int]) -> np.ndarray:
    """Resample a label image to the heatmap's cell grid (label at each cell centre)."""
    rr = np.minimum(((np.arange(shape[0]) + 0.5) * cell_um / mask_um_per_px).astype(int), labels.shape[0] - 1)
    cc = np.minimum(((np.arange(shape[1]) + 0.5) * cell_um / mask_um_per_px).astype(int), labels.shape[1] - 1)
    return labels[np.ix_(rr, cc)]


TUMOUR_LABEL_MIN = 2  # label images: 0 background, 1 benign tissue, >= 2 tumour (any grade)


def tumour_agreement(tumour_probability: np.ndarray, tissue: np.ndarray, labels: np.ndarray, mask_um_per_px: float,
                     cell_um: float, threshold: float = 0.5) -> SegmentationScores:
    """Scores of the thresholded tumour map against the mask, over tissue cells only."""
    pred = np.nan_to_num(tumour_probability, nan=0.0) >= threshold
    true = mask_on_cells(labels, mask_um_per_px, cell_um, tumour_probability.shape) >= TUMOUR_LABEL_MIN
    return segmentation_scores(pred, true, within=tissue)
