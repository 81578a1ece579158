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
# Rendered, never annotated: glands between pattern 3 and 4 (small, crowded, partly fused, with slit lumens), which
# pathologists grade either way (tangentially cut pattern 3, or poorly formed pattern 4); the annotator's call decides.
POORLY_FORMED = 5
TEXTURE_NAMES = (*CLASS_NAMES, "poorly formed glands")
FOCUS_SIGMA = 1.5  # map cells: small foci (a few glands, 50-100 um across) whatever the slide's size


@dataclass(frozen=True)
class SlidePlan:
    """What one synthetic slide shows: its size, the specimen it comes from, its tumour and its artefacts."""

    width: int
    height: int
    kind: str  # biopsy (thin core strips) | prostatectomy (one large section)
    patterns: tuple[int, ...]  # tumour classes present, primary first
    seed: int
    secondary_share: float = 0.3  # of the tumour area, when there are two patterns
    tumour_fraction: float = 0.3  # of the tissue
    blur: bool = False  # an out-of-focus region
    pen: bool = False  # a pen mark circling part of the tissue
    focal_secondary: bool = False  # the second pattern as small scattered foci (a few glands each), not one region
    minor_share: float = 0.0  # of the tumour area: small foci of pattern 4 within the primary pattern
    poorly_formed_share: float = 0.0  # of the tumour area: small foci of poorly formed glands within the primary pattern
    poorly_formed_as: int = GG3  # the annotator's grade of those glands: GG3 or GG4
    outline: float = 0.0  # the annotator's habit: generous (> 0, outlines pushed out more often) or tight (< 0)
    lab: int = 0  # where the slide was cut and stained: 0 the lab's own, else a referring hospital's (``LAB_STAINS``)


@dataclass(frozen=True)
class SlideMaps:
    truth: np.ndarray  # class per map cell, as rendered (``POORLY_FORMED`` included)
    annotation: np.ndarray  # the ground-truth mask as an annotator drew it: boundaries off by a cell or two
    artefacts: np.ndarray  # 0 none, BLURRED, INKED


BLURRED, INKED = 1, 2
CORES_PER_BIOPSY_SLIDE = 3


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


def _fused_sheet(img: np.ndarray, rng: np.random.Generator, fused: np.ndarray, nuclei: int, lumens: int) -> None:
    img[fused] = (200, 130, 190)
    cells = np.argwhere(fused)
    _stamp_disks(img, cells[rng.choice(len(cells), nuclei)], 3.5, (90, 55, 145), rng)
    _stamp_disks(img, cells[rng.choice(len(cells), lumens)], 6.0, (245, 235, 240), rng)


def texture_bank(seed: int = 0) -> np.ndarray:
    """One seamless ``BANK x BANK`` RGB texture per rendered class (``TEXTURE_NAMES``) at 0.5 um/px."""
    rng = np.random.default_rng(seed)
    bank = np.empty((len(TEXTURE_NAMES), BANK, BANK, 3), np.uint8)
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
    # Pattern 3: many discrete, small, well-formed glands, and a few small fused clusters: the two patterns overlap,
    # as they do for pathologists (tangentially cut pattern 3 glands pass for fused ones).
    _glands(bank[GG3], rng, count=70, r_lumen=18, nuclei_per_gland=22)
    clusters = ndimage.gaussian_filter(rng.random((BANK, BANK)), 25, mode="wrap")
    _fused_sheet(bank[GG3], rng, clusters > np.quantile(clusters, 0.88), nuclei=400, lumens=45)
    # Pattern 4: fused cribriform sheets punched by small lumens, beside poorly formed discrete glands.
    sheet = ndimage.gaussian_filter(rng.random((BANK, BANK)), 40, mode="wrap")
    _fused_sheet(bank[GG4], rng, sheet > np.quantile(sheet, 0.5), nuclei=1700, lumens=200)
    _glands(bank[GG4], rng, count=30, r_lumen=12, nuclei_per_gland=16)
    # Pattern 5: solid sheets of crowded dark nuclei, no lumens.
    bank[GG5][:] = np.clip(np.array([170, 105, 175]) + noise(6.0), 0, 255)
    _stamp_disks(bank[GG5], rng.integers(0, BANK, (9000, 2)), 4.0, (70, 40, 125), rng)
    # Poorly formed glands (drawn last, so the other textures keep their draws): pattern 3's small glands, smaller and
    # more crowded, with small fused clusters between pattern 3's and pattern 4's share.
    bank[POORLY_FORMED] = np.clip(stroma, 0, 255)
    _stamp_disks(bank[POORLY_FORMED], rng.integers(0, BANK, (300, 2)), 3.0, (120, 80, 160), rng)
    _glands(bank[POORLY_FORMED], rng, count=60, r_lumen=10, nuclei_per_gland=16)
    clusters = ndimage.gaussian_filter(rng.random((BANK, BANK)), 30, mode="wrap")
    _fused_sheet(bank[POORLY_FORMED], rng, clusters > np.quantile(clusters, 0.72), nuclei=900, lumens=90)
    return bank


def _smooth_field(rng: np.random.Generator, shape: tuple[int, int], sigma: float) -> np.ndarray:
    f = ndimage.gaussian_filter(rng.normal(0, 1, shape), sigma)
    return (f - f.mean()) / (f.std() + 1e-9)


def _biopsy_tissue(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """Thin needle cores laid side by side: wavy strips with tapered ends, some broken in two."""
    tissue = np.zeros((h, w), bool)
    xx = np.arange(w)[None, :]
    yy = np.arange(h)[:, None]
    band = h / CORES_PER_BIOPSY_SLIDE
    for k in range(CORES_PER_BIOPSY_SLIDE):
        x0, x1 = rng.uniform(0.02, 0.12) * w, rng.uniform(0.82, 0.98) * w
        centre = (k + 0.5) * band + rng.uniform(-0.06, 0.06) * band + rng.uniform(0.5, 1.5) * np.sin(
            2 * np.pi * xx / w * rng.uniform(0.5, 1.5) + rng.uniform(0, 2 * np.pi))
        half = band * rng.uniform(0.3, 0.36) * (1 + 0.12 * _smooth_field(rng, (1, w), 6.0))
        half = half * np.clip(np.minimum(xx - x0, x1 - xx) / 4.0, 0, 1)  # tapered ends
        half = np.minimum(half, np.minimum(centre - k * band, (k + 1) * band - centre) - 1.0)  # cores never touch
        core = (np.abs(yy - centre) < half) & (xx >= x0) & (xx <= x1)
        if rng.random() < 0.4:  # a fragmented core
            gap = rng.uniform(x0 + 0.3 * (x1 - x0), x1 - 0.3 * (x1 - x0))
            core &= np.abs(xx - gap) > rng.uniform(1.0, 2.5)
        tissue |= core
    return tissue


def _section_tissue(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """A whole-mount prostatectomy section: one large rounded slice with a ragged rim and the urethra."""
    yy, xx = np.mgrid[0:h, 0:w] / np.array([h, w])[:, None, None]
    cy, cx = rng.uniform(0.47, 0.53, 2)
    score = 1 - ((yy - cy) / rng.uniform(0.38, 0.44)) ** 2 - ((xx - cx) / rng.uniform(0.4, 0.46)) ** 2
    tissue = score + 0.15 * _smooth_field(rng, (h, w), max(2, h / 30)) > 0
    urethra = ((yy - cy + 0.08) / 0.04) ** 2 + ((xx - cx) / 0.03) ** 2 < 1
    return ndimage.binary_opening(tissue & ~urethra, iterations=2)


def _foci(rng: np.random.Generator, where: np.ndarray, n_cells: float) -> np.ndarray:
    """About ``n_cells`` cells of ``where`` in small foci of a few glands each."""
    if n_cells <= 0 or not where.any():
        return np.zeros_like(where)
    field = ndimage.gaussian_filter(rng.normal(0, 1, where.shape), FOCUS_SIGMA)
    return where & (field >= np.quantile(field[where], 1 - min(1.0, n_cells / where.sum())))


def _tumour(rng: np.random.Generator, plan: SlidePlan, tissue: np.ndarray) -> np.ndarray:
    """Class per cell (``POORLY_FORMED`` included): background, benign tissue, and the plan's patterns over its share
    of the tissue. Biopsy foci run along the cores; the second pattern takes ``secondary_share`` of the tumour; minor
    pattern 4 and poorly formed glands are small foci in the primary pattern."""
    labels = np.where(tissue, BENIGN, BACKGROUND).astype(np.uint8)
    if not plan.patterns or not tissue.any():
        return labels
    h, w = tissue.shape
    sigma = (1.5, 8.0) if plan.kind == "biopsy" else (max(2.0, h / 14), max(2.0, w / 14))
    focus = ndimage.gaussian_filter(rng.normal(0, 1, (h, w)), sigma)
    tumour = tissue & (focus >= np.quantile(focus[tissue], 1 - plan.tumour_fraction))
    labels[tumour] = plan.patterns[0]
    n_tumour = float(tumour.sum())
    if len(plan.patterns) > 1 and plan.focal_secondary:
        labels[_foci(rng, tumour, plan.secondary_share * n_tumour)] = plan.patterns[1]
    elif len(plan.patterns) > 1:
        split = ndimage.gaussian_filter(rng.normal(0, 1, (h, w)), tuple(x / 2 for x in sigma))
        labels[tumour & (split >= np.quantile(split[tumour], 1 - plan.secondary_share))] = plan.patterns[1]
    labels[_foci(rng, labels == plan.patterns[0], plan.minor_share * n_tumour)] = GG4
    labels[_foci(rng, labels == plan.patterns[0], plan.poorly_formed_share * n_tumour)] = POORLY_FORMED
    return labels


def _annotated(rng: np.random.Generator, truth: np.ndarray, poorly_formed_as: int, outline: float) -> np.ndarray:
    """The mask an annotator draws: poorly formed glands graded as the annotator calls them, and tumour outlines pushed
    out here and pulled in there by a cell or two, out more often for a generous annotator (``outline`` > 0), in more
    often for a tight one. Small foci grow or shrink by much more than their share: minimal pattern 4 is where
    annotators disagree most."""
    truth = np.where(truth == POORLY_FORMED, poorly_formed_as, truth).astype(np.uint8)
    tissue = truth != BACKGROUND
    field = _smooth_field(rng, truth.shape, 4.0)
    grown = ndimage.grey_dilation(truth, size=(3, 3))
    shrunk = ndimage.grey_erosion(np.where(tissue, truth, 255).astype(np.uint8), size=(3, 3))
    annotation = truth.copy()
    outwards = tissue & (field > 0.6 - outline)
    annotation[outwards] = grown[outwards]
    inwards = tissue & (field < -0.6 - outline)
    annotation[inwards] = np.maximum(shrunk[inwards], BENIGN)
    return annotation


def _artefacts(rng: np.random.Generator, plan: SlidePlan, truth: np.ndarray) -> np.ndarray:
    h, w = truth.shape
    artefacts = np.zeros((h, w), np.uint8)
    yy, xx = np.mgrid[0:h, 0:w]
    cells = np.argwhere(truth != BACKGROUND)
    if plan.blur and len(cells):
        cy, cx = cells[rng.integers(len(cells))]
        ry, rx = rng.uniform(0.2, 0.35) * h, rng.uniform(0.12, 0.25) * w
        artefacts[((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 < 1] = BLURRED
    if plan.pen and len(cells):
        tumour = np.argwhere(truth >= GG3)
        cy, cx = (tumour if len(tumour) else cells)[rng.integers(len(tumour) if len(tumour) else len(cells))]
        radius = rng.uniform(0.12, 0.25) * min(h, w) + 3
        angle = np.arctan2(yy - cy, xx - cx)
        start = rng.uniform(-np.pi, np.pi)
        arc = np.mod(angle - start, 2 * np.pi) < rng.uniform(3.5, 5.5)  # most of a circle, as a marker ring
        artefacts[(np.abs(np.hypot(yy - cy, xx - cx) - radius) < 1.3) & arc] = INKED
    return artefacts


def class_map(plan: SlidePlan) -> SlideMaps:
    """The slide's classes per ``MAP_UM_PER_PX`` cell as rendered, as annotated, and where its artefacts are."""
    rng = np.random.default_rng(plan.seed)
    h = int(np.ceil(plan.height * BASE_MPP / MAP_UM_PER_PX))
    w = int(np.ceil(plan.width * BASE_MPP / MAP_UM_PER_PX))
    tissue = _biopsy_tissue(rng, h, w) if plan.kind == "biopsy" else _section_tissue(rng, h, w)
    truth = _tumour(rng, plan, tissue)
    return SlideMaps(truth, _annotated(rng, truth, plan.poorly_formed_as, plan.outline), _artefacts(rng, plan, truth))


PEN_COLOURS = ((40, 70, 160), (30, 120, 70), (40, 40, 50))  # blue, green, black marker
# Each lab's staining protocol as a per-channel optical-density gain (R, G, B) over the slide's own variation: the
# lab's own (1, 1, 1); a referring hospital whose slides come out darker (longer in the dyes, or thicker sections) and
# one whose come out paler (fresher differentiation, or thinner sections).
LAB_STAINS = ((1.0, 1.0, 1.0), (1.6, 1.6, 1.6), (0.65, 0.65, 0.65))
STAIN_BATCH_SD = 0.1
WHITE_BALANCE = (0.96, 1.0)
LAB_NAMES = ("own lab", "hospital A", "hospital B")


class TextureBanks:
    """The unstained textures at every pyramid level, made once per process and shared by its slides: the bank, its
    blurred copy, and the bank under each pen colour. Each level's textures are 2x2 means of the previous level's."""

    def __init__(self, bank: np.ndarray, blurred: np.ndarray) -> None:
        self.bank, self.blurred = bank, blurred
        self._levels: dict[tuple[str, int], np.ndarray] = {}

    def level(self, variant: str, level: int) -> np.ndarray:
        key = (variant, level)
        if key not in self._levels:
            self._levels[key] = self._source(variant) if level == 0 else _level_bank(self.level(variant, level - 1), 2)
        return self._levels[key]

    def _source(self, variant: str) -> np.ndarray:
        if variant == "plain":
            return self.bank
        if variant == "blurred":
            return self.blurred
        ink = np.array(PEN_COLOURS[int(variant.removeprefix("ink"))]) / 255.0
        return (self.bank * (0.35 + 0.65 * ink)).astype(np.uint8)


@dataclass(frozen=True)
class SlideStain:
    """A slide's stain and scanner colour (a per-channel optical-density gain, its lab's protocol times the slide's own
    variation, and a white balance, as lookup tables), the texture variants its artefacts need, and per artefact value
    (none, BLURRED, INKED) the offset of its variant's textures in the slide's bank (a cell's texture is class + offset)."""

    luts: np.ndarray  # (3, 256) uint8
    variants: tuple[str, ...]
    offsets: np.ndarray

    def bank(self, banks: TextureBanks, level: int) -> np.ndarray:
        """This slide's textures at a pyramid level (the scanner's colour applied to each level's textures)."""
        out = np.concatenate([banks.level(v, level) for v in self.variants])
        for c in range(3):
            out[..., c] = self.luts[c][out[..., c]]
        return out


def slide_stain(plan: SlidePlan) -> SlideStain:
    rng = np.random.default_rng([plan.seed, 1])
    # Within one lab slides vary from batch to batch (log gain SD 0.1 per channel) and scanners' white balance a little.
    gain = np.exp(rng.normal(0, STAIN_BATCH_SD, 3)) * np.asarray(LAB_STAINS[plan.lab])
    white = rng.uniform(WHITE_BALANCE[0], WHITE_BALANCE[1], 3)
    levels = np.arange(256) / 255.0
    luts = np.stack([np.clip(255 * white[c] * levels ** gain[c], 0, 255) for c in range(3)]).astype(np.uint8)
    n = len(TEXTURE_NAMES)
    variants, offsets = ["plain"], np.zeros(3, np.uint8)
    if plan.blur:
        offsets[BLURRED] = n * len(variants)
        variants.append("blurred")
    if plan.pen:
        offsets[INKED] = n * len(variants)
        variants.append(f"ink{int(rng.integers(len(PEN_COLOURS)))}")
    return SlideStain(luts, tuple(variants), offsets)


def _level_bank(bank: np.ndarray, downsample: int) -> np.ndarray:
    if downsample == 1:
        return bank
    n, s = bank.shape[0], bank.shape[1] // downsample
    return bank.reshape(n, s, downsample, s, downsample, 3).astype(np.float32).mean((2, 4)).round().astype(np.uint8)


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


def write_slide(path: Path, plan: SlidePlan, banks: TextureBanks, quality: int = 80) -> SlideMaps:
    """Write a pyramidal JPEG-tiled TIFF (OpenSlide generic TIFF); return its maps."""
    maps = class_map(plan)
    stain = slide_stain(plan)
    labels = maps.truth + stain.offsets[maps.artefacts]
    tmp = path.with_name(path.name + ".part")
    with tifffile.TiffWriter(tmp, bigtiff=True) as writer:
        level = 0
        while True:
            ds = 2**level
            w, h = -(-plan.width // ds), -(-plan.height // ds)
            lbank = stain.bank(banks, level)

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
    return maps


_BANKS: TextureBanks | None = None


def artefact_boxes(maps: SlideMaps) -> dict[str, list[list[int]]]:
    """Bounding boxes [x0, y0, x1, y1] in level-0 pixels of each artefact, by kind (blur, pen)."""
    scale = MAP_UM_PER_PX / BASE_MPP
    boxes: dict[str, list[list[int]]] = {}
    for name, value in (("blur", BLURRED), ("pen", INKED)):
        ys, xs = np.nonzero(maps.artefacts == value)
        if len(ys):
            boxes[name] = [[int(xs.min() * scale), int(ys.min() * scale), int((xs.max() + 1) * scale), int((ys.max() + 1) * scale)]]
    return boxes


def write_slide_job(path: str, plan: SlidePlan, bank_seed: int) -> SlideMaps:
    """Process-pool entry: the texture banks are built once per worker process."""
    global _BANKS
    if _BANKS is None:
        bank = texture_bank(bank_seed)
        _BANKS = TextureBanks(bank, ndimage.gaussian_filter(bank, (0, 4, 4, 0), mode="wrap"))
    return write_slide(Path(path), plan, _BANKS)
