"""Synthetic prostate-like whole-slide images with a known tissue-class map.

A slide is drawn from a low-resolution class map (one pixel per
``MAP_UM_PER_PX`` microns) and a bank of seamless textures, one per class.
Every pyramid level is rendered from the same map and a downsampled texture
bank, so levels agree without ever holding the level-0 image in memory.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tifffile
from scipy import ndimage

BASE_MPP = 0.5
MAP_UM_PER_PX = 16.0
TILE = 512
BANK = 1024  # texture period in level-0 pixels (512 um)

BACKGROUND, BENIGN, GG3, GG4, GG5 = range(5)
CLASS_NAMES = ("background", "benign", "GG3", "GG4", "GG5")


@dataclass(frozen=True)
class SlidePlan:
    """What one synthetic slide shows: its size and its tumour patterns."""

    width: int
    height: int
    patterns: tuple[int, ...]  # tumour classes present, primary first
    seed: int


def _disk_offsets(radius: float) -> tuple[np.ndarray, np.ndarray]:
    r = int(np.ceil(radius))
    yy, xx = np.mgrid[-r : r + 1, -r : r + 1]
    keep = xx**2 + yy**2 <= radius**2
    return yy[keep], xx[keep]


def _stamp_disks(img: np.ndarray, centres: np.ndarray, radius: float, colour: tuple[int, int, int], rng: np.random.Generator) -> None:
    """Paint disks on a torus so the bank tiles seamlessly."""
    dy, dx = _disk_offsets(radius)
    h, w = img.shape[:2]
    for cy, cx in centres:
        jitter = rng.integers(-12, 13, size=3)
        img[(cy + dy) % h, (cx + dx) % w] = np.clip(np.asarray(colour) + jitter, 0, 255)


def _glands(img: np.ndarray, rng: np.random.Generator, count: int, r_lumen: float, nuclei_per_gland: int, nucleus_r: float = 4.0) -> None:
    """Glands: a white lumen ringed by purple nuclei."""
    centres = rng.integers(0, BANK, size=(count, 2))
    for cy, cx in centres:
        r = r_lumen * rng.uniform(0.7, 1.3)
        _stamp_disks(img, np.array([[cy, cx]]), r + 2 * nucleus_r, (215, 150, 200), rng)
        _stamp_disks(img, np.array([[cy, cx]]), r, (245, 235, 240), rng)
        angles = rng.uniform(0, 2 * np.pi, nuclei_per_gland)
        ring = np.stack([cy + (r + nucleus_r) * np.sin(angles), cx + (r + nucleus_r) * np.cos(angles)], 1)
        _stamp_disks(img, ring.astype(int), nucleus_r, (95, 60, 150), rng)


def texture_bank(seed: int = 0) -> np.ndarray:
    """One seamless ``BANK x BANK`` RGB texture per class at 0.5 um/px."""
    rng = np.random.default_rng(seed)
    bank = np.empty((len(CLASS_NAMES), BANK, BANK, 3), np.uint8)
    noise = lambda s: rng.normal(0, s, (BANK, BANK, 1))  # noqa: E731
    bank[BACKGROUND] = np.clip(242 + noise(2.0), 0, 255)
    # Stroma: pink with fibre streaks and sparse elongated nuclei.
    streaks = ndimage.gaussian_filter(rng.normal(0, 1, (BANK, BANK)), (1.5, 12), mode="wrap")[..., None]
    stroma = np.array([232, 165, 195]) + 60 * streaks * np.array([0.3, 0.6, 0.4]) + noise(4.0)
    for c in range(BENIGN, GG5 + 1):
        bank[c] = np.clip(stroma, 0, 255)
    for c in range(BENIGN, GG5 + 1):
        _stamp_disks(bank[c], rng.integers(0, BANK, (300, 2)), 3.0, (120, 80, 160), rng)
    # Benign: few large glands with wide lumens.
    _glands(bank[BENIGN], rng, count=6, r_lumen=70, nuclei_per_gland=90)
    # Pattern 3: many discrete, small, well-formed glands.
    _glands(bank[GG3], rng, count=70, r_lumen=18, nuclei_per_gland=22)
    # Pattern 4: fused cribriform sheets punched by small lumens.
    sheet = ndimage.gaussian_filter(rng.random((BANK, BANK)), 40, mode="wrap")
    fused = sheet > np.quantile(sheet, 0.35)
    bank[GG4][fused] = (200, 130, 190)
    _stamp_disks(bank[GG4], np.argwhere(fused)[rng.choice(fused.sum(), 2200)], 3.5, (90, 55, 145), rng)
    _stamp_disks(bank[GG4], np.argwhere(fused)[rng.choice(fused.sum(), 260)], 6.0, (245, 235, 240), rng)
    # Pattern 5: solid sheets of crowded dark nuclei, no lumens.
    bank[GG5][:] = np.clip(np.array([170, 105, 175]) + noise(6.0), 0, 255)
    _stamp_disks(bank[GG5], rng.integers(0, BANK, (9000, 2)), 4.0, (70, 40, 125), rng)
    return bank


def _smooth_field(rng: np.random.Generator, shape: tuple[int, int], sigma: float) -> np.ndarray:
    f = ndimage.gaussian_filter(rng.normal(0, 1, shape), sigma)
    return (f - f.mean()) / (f.std() + 1e-9)


def class_map(plan: SlidePlan) -> np.ndarray:
    """Class label per ``MAP_UM_PER_PX`` cell: background, benign tissue and tumour regions."""
    rng = np.random.default_rng(plan.seed)
    h = int(np.ceil(plan.height * BASE_MPP / MAP_UM_PER_PX))
    w = int(np.ceil(plan.width * BASE_MPP / MAP_UM_PER_PX))
    yy, xx = np.mgrid[0:h, 0:w] / np.array([h, w])[:, None, None]
    # Tissue: a few overlapping ellipses with ragged borders.
    tissue_score = -np.ones((h, w))
    for _ in range(rng.integers(2, 4)):
        cy, cx = rng.uniform(0.3, 0.7, 2)
        ry, rx = rng.uniform(0.18, 0.32, 2)
        tissue_score = np.maximum(tissue_score, 1 - ((yy - cy) / ry) ** 2 - ((xx - cx) / rx) ** 2)
    tissue = tissue_score + 0.25 * _smooth_field(rng, (h, w), max(2, h / 40)) > 0
    tissue = ndimage.binary_opening(tissue, iterations=2)
    labels = np.where(tissue, BENIGN, BACKGROUND).astype(np.uint8)
    # Tumour foci inside tissue; the primary pattern gets the larger share.
    tissue_cells = np.argwhere(tissue)
    for rank, pattern in enumerate(plan.patterns):
        for _ in range(2 if rank == 0 else 1):
            cy, cx = tissue_cells[rng.integers(len(tissue_cells))] / np.array([h, w])
            radius = rng.uniform(0.09, 0.14) * (1.0 if rank == 0 else 0.7)
            blob = 1 - ((yy - cy) ** 2 + (xx - cx) ** 2) / radius**2
            blob += 0.3 * _smooth_field(rng, (h, w), max(2, h / 50))
            labels[(blob > 0) & tissue] = pattern
    return labels


def _level_bank(bank: np.ndarray, downsample: int) -> np.ndarray:
    if downsample == 1:
        return bank
    n, s = bank.shape[0], BANK // downsample
    return bank.reshape(n, s, downsample, s, downsample, 3).mean((2, 4)).astype(np.uint8)


def _render_tile(labels: np.ndarray, lbank: np.ndarray, downsample: int, ty: int, tx: int, th: int, tw: int) -> np.ndarray:
    """RGB tile at a pyramid level: texture looked up by the upsampled class map."""
    cell = MAP_UM_PER_PX / BASE_MPP / downsample  # level pixels per map cell
    ys = ((ty + np.arange(th)) / cell).astype(int).clip(0, labels.shape[0] - 1)
    xs = ((tx + np.arange(tw)) / cell).astype(int).clip(0, labels.shape[1] - 1)
    tile_labels = labels[np.ix_(ys, xs)]
    period = lbank.shape[1]
    ry, rx = (ty + np.arange(th)) % period, (tx + np.arange(tw)) % period
    first = tile_labels[0, 0]
    if (tile_labels == first).all():
        return lbank[first][np.ix_(ry, rx)]
    return lbank[tile_labels, ry[:, None], rx[None, :]]


def write_slide(path: Path, plan: SlidePlan, bank: np.ndarray, quality: int = 80) -> np.ndarray:
    """Write a pyramidal JPEG-tiled TIFF (OpenSlide generic TIFF); return its class map."""
    labels = class_map(plan)
    tmp = path.with_name(path.name + ".part")
    with tifffile.TiffWriter(tmp, bigtiff=True) as writer:
        level = 0
        while True:
            ds = 2**level
            w, h = -(-plan.width // ds), -(-plan.height // ds)
            lbank = _level_bank(bank, ds)

            def tiles(w: int = w, h: int = h, lbank: np.ndarray = lbank, ds: int = ds) -> Iterator[np.ndarray]:
                for ty in range(0, h, TILE):
                    for tx in range(0, w, TILE):
                        yield _render_tile(labels, lbank, ds, ty, tx, TILE, TILE)

            px_per_cm = 1e4 / (BASE_MPP * ds)
            writer.write(
                tiles(), shape=(h, w, 3), dtype=np.uint8, tile=(TILE, TILE),
                compression="jpeg", compressionargs={"level": quality}, photometric="rgb",
                resolution=(px_per_cm, px_per_cm), resolutionunit="CENTIMETER",
                subfiletype=0 if level == 0 else 1,
                description=f"Synthetic prostate demo slide; level downsample {ds}" if level == 0 else None,
            )
            if max(w, h) <= 2 * TILE or level >= 6:
                break
            level += 1
    tmp.replace(path)
    return labels


_BANK: np.ndarray | None = None


def write_slide_job(path: str, plan: SlidePlan, bank_seed: int) -> np.ndarray:
    """Process-pool entry: the texture bank is built once per worker process."""
    global _BANK
    if _BANK is None:
        _BANK = texture_bank(bank_seed)
    return write_slide(Path(path), plan, _BANK)
