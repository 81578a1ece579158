"""Agreement between a thresholded heatmap and a ground-truth annotation mask."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from core.errors import PathReviewError


@dataclass(frozen=True)
class SegmentationScores:
    dice: float  # Dice of the predicted foreground (same as F1+)
    f1_foreground: float  # F1+ : Dice on the foreground
    f1_background: float  # F1- : Dice on the background
    predicted_fraction: float
    true_fraction: float


def dice(pred: np.ndarray, true: np.ndarray) -> float:
    """2|P & T| / (|P| + |T|); 1.0 when both are empty."""
    total = pred.sum() + true.sum()
    return 1.0 if total == 0 else float(2 * (pred & true).sum() / total)


def segmentation_scores(pred: np.ndarray, true: np.ndarray) -> SegmentationScores:
    pred, true = pred.astype(bool), true.astype(bool)
    if pred.shape != true.shape:
        raise ValueError(f"prediction {pred.shape} and ground truth {true.shape} differ in shape")
    fg = dice(pred, true)
    return SegmentationScores(fg, fg, dice(~pred, ~true), float(pred.mean()), float(true.mean()))


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
    """Scores of the thresholded tumour map (cells outside tissue count as negative) against the mask."""
    pred = (np.nan_to_num(tumour_probability, nan=0.0) >= threshold) & tissue
    true = mask_on_cells(labels, mask_um_per_px, cell_um, tumour_probability.shape) >= TUMOUR_LABEL_MIN
    return segmentation_scores(pred, true)
