"""Slide quality control per patch, batched in torch on the model's device: out-of-focus, pen ink, folds and
over-dark tissue, and stain vectors unlike the model's training set.

The measures (one row per patch, ``METRICS``) and the rules that flag a patch from them (``QualityThresholds``):

- ``laplacian_variance``: variance of the 4-neighbour Laplacian ([[0, 1, 0], [1, -4, 1], [0, 1, 0]], OpenCV's
  ``Laplacian`` with ksize 1) of the grey image (ITU-R 601 luma, 0-255), over the patch's tissue pixels (Pech-Pacheco
  et al., ICPR 2000). Out of focus below ``blur_laplacian_variance``. The measure depends on resolution: the default
  suits patches read at about 1-2 µm/px; a lab reading at 0.25 µm/px should raise it.
- ``pen_fraction``: share of the patch's pixels whose hue lies outside H&E. Haematoxylin is purple-blue (hue about
  240-300°), eosin pink to red (300-360° and 0-20°); green, cyan and blue markers over tissue lie at 60-235°.
  A pixel is ink when its hue is in [``PEN_HUE_MIN``, ``PEN_HUE_MAX``) with saturation at least
  ``PEN_MIN_SATURATION`` and value at least ``PEN_MIN_VALUE``. Red and black inks cannot be told from eosin and dark tissue by hue; black ink is caught as
  over-dark. Flagged at ``pen_fraction`` or more.
- ``dark_fraction``: share of the tissue pixels with luma below ``DARK_LUMA`` (folds, where the section lies double,
  thick or crushed regions, black ink). Flagged at ``dark_fraction`` or more: scattered dark nuclei stay well below.
- ``stain_vector``: the patch's Macenko haematoxylin and eosin unit OD vectors (``core/slides/stain.py``). Its outlier
  score against the training statistics in the model's manifest is the root mean square of the six components'
  z-scores; flagged above ``stain_outlier_z``. Patches without enough stain to estimate score NaN and are not flagged.

A tissue pixel is one with saturation at least ``TISSUE_MIN_SATURATION`` or value below ``TISSUE_MAX_VALUE`` (glass
is bright and grey).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from core.cache import content_key, explanation_path, load_arrays, save_arrays
from core.models.manifest import StainStatistics
from core.slides.stain import macenko_stains

FLAGS = ("blur", "pen", "fold", "stain")
FLAG_LABELS = {"blur": "Out of focus", "pen": "Pen ink", "fold": "Fold / over-dark", "stain": "Stain outlier"}
METRICS = ("laplacian_variance", "pen_fraction", "dark_fraction")
PEN_HUE_MIN, PEN_HUE_MAX = 60.0, 235.0  # degrees
PEN_MIN_SATURATION, PEN_MIN_VALUE = 0.3, 0.15
DARK_LUMA = 80.0
TISSUE_MIN_SATURATION, TISSUE_MAX_VALUE = 0.08, 0.8


@dataclass(frozen=True)
class QualityThresholds:
    blur_laplacian_variance: float = 40.0  # grey levels squared
    pen_fraction: float = 0.05
    dark_fraction: float = 0.5
    stain_outlier_z: float = 3.0


@dataclass
class PatchQuality:
    """Measures of N patches: ``metrics`` (N, 3) in ``METRICS`` order, ``stain_vectors`` (N, 6) haematoxylin R, G,
    B then eosin R, G, B (NaN where the patch has too little stain)."""

    metrics: np.ndarray
    stain_vectors: np.ndarray

    def flags(self, thresholds: QualityThresholds = QualityThresholds(), statistics: StainStatistics | None = None) -> dict[str, np.ndarray]:
        """(N,) bool per flag. Without the model's training statistics no patch is a stain outlier."""
        lap, pen, dark = self.metrics.T
        score = stain_outlier_scores(self.stain_vectors, statistics)
        return {
            "blur": lap < thresholds.blur_laplacian_variance,
            "pen": pen >= thresholds.pen_fraction,
            "fold": dark >= thresholds.dark_fraction,
            "stain": np.nan_to_num(score, nan=0.0) > thresholds.stain_outlier_z,
        }


def stain_outlier_scores(vectors: np.ndarray, statistics: StainStatistics | None) -> np.ndarray:
    """(N,) root mean square z-score of each patch's stain vector against the training statistics (NaN without them)."""
    if statistics is None:
        return np.full(len(vectors), np.nan)
    z = (vectors - np.asarray(statistics.vector_means)) / np.maximum(np.asarray(statistics.vector_stds), 1e-6)
    return np.sqrt((z**2).mean(1))


def stain_statistics(vectors: np.ndarray) -> StainStatistics:
    """The training set's stain statistics for the manifest, from its patches' stain vectors (NaN rows left out)."""
    fitted = vectors[np.isfinite(vectors).all(1)]
    if len(fitted) < 2:
        raise ValueError("fewer than two training patches carry enough stain to estimate stain statistics")
    return StainStatistics(vector_means=fitted.mean(0).tolist(), vector_stds=fitted.std(0).tolist(), n_patches=len(fitted))


def _hsv(rgb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Hue in degrees, saturation and value in [0, 1] of (B, 3, H, W) RGB in [0, 1] (the hexcone model)."""
    value, argmax = rgb.max(1)
    minimum = rgb.min(1).values
    chroma = value - minimum
    safe = chroma.clamp_min(1e-12)
    r, g, b = rgb.unbind(1)
    hue = torch.where(argmax == 0, ((g - b) / safe) % 6, torch.where(argmax == 1, (b - r) / safe + 2, (r - g) / safe + 4)) * 60.0
    saturation = torch.where(value > 0, chroma / value.clamp_min(1e-12), torch.zeros_like(value))
    return torch.where(chroma > 0, hue, torch.zeros_like(hue)), saturation, value


_LAPLACIAN = torch.tensor([[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]])
_LUMA = (0.299, 0.587, 0.114)


@torch.no_grad()
def measure_patches(patches: np.ndarray | torch.Tensor, device: torch.device) -> PatchQuality:
    """The measures of uint8 (B, H, W, 3) patches, computed in one batched pass on ``device``."""
    images = torch.from_numpy(np.ascontiguousarray(patches)) if isinstance(patches, np.ndarray) else patches
    images = images.to(device)
    if len(images) == 0:
        return PatchQuality(np.zeros((0, len(METRICS))), np.zeros((0, 6)))
    rgb = images.permute(0, 3, 1, 2).float() / 255.0
    hue, saturation, value = _hsv(rgb)
    luma = (rgb * torch.tensor(_LUMA, device=device)[None, :, None, None]).sum(1) * 255.0  # (B, H, W)
    tissue = (saturation >= TISSUE_MIN_SATURATION) | (value < TISSUE_MAX_VALUE)
    laplacian = torch.nn.functional.conv2d(luma[:, None], _LAPLACIAN.to(device)[None, None])[:, 0]  # valid: (B, H-2, W-2)
    inner = tissue[:, 1:-1, 1:-1].float()
    n_inner = inner.sum((1, 2)).clamp_min(1)
    mean = (laplacian * inner).sum((1, 2)) / n_inner
    variance = (((laplacian - mean[:, None, None]) ** 2) * inner).sum((1, 2)) / n_inner
    ink = (hue >= PEN_HUE_MIN) & (hue < PEN_HUE_MAX) & (saturation >= PEN_MIN_SATURATION) & (value >= PEN_MIN_VALUE)
    n_tissue = tissue.float().sum((1, 2))
    dark = ((luma < DARK_LUMA) & tissue).float().sum((1, 2)) / n_tissue.clamp_min(1)
    metrics = torch.stack([variance, ink.float().mean((1, 2)), dark], 1)
    stains = macenko_stains(images.to(torch.uint8))
    vectors = stains.stain_matrix.transpose(1, 2).reshape(len(images), 6)  # haematoxylin R, G, B, then eosin
    vectors = torch.where(stains.fitted[:, None], vectors, torch.full_like(vectors, float("nan")))
    return PatchQuality(metrics.double().cpu().numpy(), vectors.double().cpu().numpy())


@dataclass
class QualityAccumulator:
    """Collects the measures batch by batch during the heatmap's pass over the slide (``predict_slide``'s observer), on
    the device the patch net ran the batch on."""

    total: int
    _metrics: list[np.ndarray] = field(default_factory=list)
    _vectors: list[np.ndarray] = field(default_factory=list)
    _indices: list[np.ndarray] = field(default_factory=list)

    def __call__(self, indices: np.ndarray, patches: np.ndarray, device: torch.device) -> None:
        try:
            measured = measure_patches(patches, device)
        except torch.OutOfMemoryError:  # the measures need far less than the net: the CPU does them
            measured = measure_patches(patches, torch.device("cpu"))
        self._indices.append(np.asarray(indices))
        self._metrics.append(measured.metrics)
        self._vectors.append(measured.stain_vectors)

    def result(self) -> PatchQuality:
        """The measures of every patch, in grid order."""
        metrics = np.full((self.total, len(METRICS)), np.nan)
        vectors = np.full((self.total, 6), np.nan)
        for idx, m, v in zip(self._indices, self._metrics, self._vectors, strict=True):
            metrics[idx], vectors[idx] = m, v
        return PatchQuality(metrics, vectors)


QUALITY_CACHE_FORMAT = 1


def quality_cache_path(cache_dir: Path, heatmap_key: str) -> Path:
    """Where a slide's patch measures are kept: keyed by the heatmap's content key (slide file, patch grid and model)
    and this file's format, so they are never stale."""
    return explanation_path(cache_dir, "quality", content_key("slide-quality", QUALITY_CACHE_FORMAT, heatmap_key), ".npz")


def save_quality(path: Path, quality: PatchQuality) -> None:
    save_arrays(path, metrics=quality.metrics, stain_vectors=quality.stain_vectors)


def load_quality(path: Path) -> PatchQuality | None:
    stored = load_arrays(path)
    return None if stored is None else PatchQuality(stored["metrics"], stored["stain_vectors"])
