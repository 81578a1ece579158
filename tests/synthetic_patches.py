"""H&E-like patches made by Beer-Lambert from haematoxylin and eosin concentration fields, with known defects:
out of focus (Gaussian blur), pen ink strokes, folds (a region where the section lies double or more), and stain
shifts (other stain vectors and intensities, as another lab or scanner gives)."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

HAEMATOXYLIN = np.array([0.65, 0.70, 0.29])  # Ruifrok and Johnston's OD vectors
EOSIN = np.array([0.07, 0.99, 0.11])
INKS = {"green": (40, 150, 60), "blue": (30, 70, 200), "cyan": (30, 160, 190)}


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v)


def concentrations(rng: np.random.Generator, px: int) -> tuple[np.ndarray, np.ndarray]:
    """Haematoxylin (nuclei) and eosin (stroma) concentration fields of one patch, with some glass."""
    eosin = 0.6 + 0.25 * ndimage.gaussian_filter(rng.normal(0, 1, (px, px)), (1, 4))
    nuclei = np.zeros((px, px))
    yy, xx = np.mgrid[0:px, 0:px]
    for _ in range(int(px * px / 180)):
        cy, cx, r = rng.uniform(0, px), rng.uniform(0, px), rng.uniform(2.0, 4.0)
        nuclei = np.maximum(nuclei, (((yy - cy) ** 2 + (xx - cx) ** 2) <= r * r) * rng.uniform(0.9, 1.6))
    haematoxylin = nuclei + 0.08 * rng.random((px, px))
    glass = ndimage.gaussian_filter(rng.normal(0, 1, (px, px)), 6) > rng.uniform(0.5, 0.8)
    return np.where(glass, 0, haematoxylin), np.where(glass, 0, eosin.clip(0.05, None))


def render(h: np.ndarray, e: np.ndarray, rng: np.random.Generator, h_vector: np.ndarray = HAEMATOXYLIN,
           e_vector: np.ndarray = EOSIN, io: float = 245.0) -> np.ndarray:
    od = h[..., None] * _unit(h_vector) + e[..., None] * _unit(e_vector)
    return np.clip(io * np.exp(-od) + rng.normal(0, 2.0, od.shape), 0, 255).astype(np.uint8)


def he_patch(rng: np.random.Generator, px: int = 96, h_vector: np.ndarray = HAEMATOXYLIN, e_vector: np.ndarray = EOSIN,
             intensity: float = 1.0) -> np.ndarray:
    h, e = concentrations(rng, px)
    return render(intensity * h, intensity * e, rng, h_vector, e_vector)


def blurred(patch: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return ndimage.gaussian_filter(patch.astype(float), (rng.uniform(1.8, 3.0), rng.uniform(1.8, 3.0), 0)).round().astype(np.uint8)


def with_pen(patch: np.ndarray, rng: np.random.Generator, ink: str) -> np.ndarray:
    """A marker stroke (a band a fifth to a third of the patch wide) across the patch, blended over the tissue."""
    px = patch.shape[0]
    yy, xx = np.mgrid[0:px, 0:px]
    angle = rng.uniform(0, np.pi)
    distance = (xx - px / 2) * np.cos(angle) + (yy - px / 2) * np.sin(angle) - rng.uniform(-px / 4, px / 4)
    band = np.abs(distance) < rng.uniform(px / 10, px / 6)
    out = patch.astype(float)
    out[band] = 0.2 * out[band] + 0.8 * np.asarray(INKS[ink], float)
    return out.clip(0, 255).astype(np.uint8)


def with_fold(rng: np.random.Generator, px: int = 96) -> np.ndarray:
    """A patch most of which lies folded: two to three layers of section, so its stain is that much denser."""
    h, e = concentrations(rng, px)
    h2, e2 = concentrations(rng, px)
    yy, _ = np.mgrid[0:px, 0:px]
    fold = yy > rng.uniform(0.0, 0.25) * px
    layers = rng.uniform(2.2, 3.0)
    h = np.where(fold, layers * np.maximum(h, 0.3) + h2, h)
    e = np.where(fold, layers * np.maximum(e, 0.5) + e2, e)
    return render(h, e, rng)


def shifted_stain(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, float]:
    """Another lab's stain: haematoxylin and eosin vectors turned and a different intensity."""
    h = _unit(HAEMATOXYLIN + rng.normal(0, 0.08, 3).clip(-0.15, 0.15))
    e = _unit(EOSIN + rng.normal(0, 0.08, 3).clip(-0.15, 0.15))
    return np.abs(h), np.abs(e), rng.uniform(0.7, 1.4)
