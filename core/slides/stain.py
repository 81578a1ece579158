"""Stain normalisation in torch, batched, on whatever device the images are on: Macenko and Reinhard.

Both follow torchstain's numpy backend (EIDOSLAB/torchstain, ``torchstain/numpy/normalizers/macenko.py`` and
``reinhard.py``, version 1.4.1) formula for formula, so that one patch normalised here equals the reference's
output within 2/255 (tests/test_stain.py checks it on the same images):

- Macenko (ISBI 2009): optical density OD = -log((I + 1) / Io), Io = 240; pixels with any OD < beta = 0.15 are
  transparent and left out of the fit; the eigenvectors of the covariance of the remaining OD vectors span the
  stain plane; the alpha = 1st and 99th percentiles of the angle of each pixel in that plane give the two stain
  vectors (the one with the larger red OD is haematoxylin); concentrations are the least-squares solution over all
  pixels, scaled so that their 99th percentile matches the target's ``max_concentrations``; the image is rebuilt
  with the target's stain matrix, clipped to 255 and truncated to uint8 as the reference does.
- Reinhard: RGB in [0, 1] to CIE L*a*b* (sRGB/D65, torchstain's matrices); each channel is standardised by the
  image's own mean and (population) standard deviation, then scaled to the target's; back to RGB, times 255,
  truncated to uint8.

Choices the reference leaves open, stated here and in docs/methods.md: each image of a batch (a patch, or a tile
for the viewer) is fitted on its own, as the reference fits one image; an image with fewer than
``MIN_STAINED_FRACTION`` of its pixels stained (glass) has no stain to estimate and passes through unchanged. A model
that declares ``stain_fit = "slide"`` has its images rebuilt from their slide's estimate instead (``macenko_transfer``;
the estimate: ``core/slides/slide_stain.py``).

Macenko's per-pixel work is arranged for speed without changing the method (bench/stain.py measures it against the
reference): OD is read from a 256-entry table (computed in float64) instead of a logarithm per pixel; the angle
percentiles are taken on a ratio that orders pixels as their angle does (``_fit`` says when), so no arctangent is
taken per pixel; each percentile picks its two order statistics exactly from a few candidates of the row (on the
CPU, the values past a threshold sampled from the row, ``_host_order_statistics``; on CUDA, a fifth of the row,
``_extremes``) and interpolates them as numpy does; the few numbers per image between the per-pixel steps are
worked out in numpy float64, as the reference does; the image is rebuilt as 2 ** (log2 Io - log2(e) HE C), the
same number as Io exp(-HE C) up to float rounding; on the CPU a batch goes a few images at a time through
working memory allocated once per call. On the CPU, where each torch kernel is a pass over the batch's memory, the
per-pixel steps that need no more than the pixel itself run fused, one compiled loop each (``core/slides/stain_cpu.py``):
the optical densities with the stained-pixel mask and the covariance's sums (in float64); the projections onto the stain
plane with their ratio; the clip, truncation to uint8 and interleaving of the rebuilt channels. The percentiles'
selection runs in numpy there (``np.partition``, ``np.flatnonzero``), exact as torch's. The CPU's output therefore
equals torch's step-by-step path (CUDA's) up to float rounding, and the reference's within the same 2/255.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch

if TYPE_CHECKING:  # only the type: this module runs with torch, numpy and numba alone (bench/stain.py)
    from types import ModuleType

    from core.models.manifest import InputSpec

MACENKO_IO = 240.0  # transmitted light intensity
MACENKO_ALPHA = 1.0  # percentile of the angle distribution taken as the extreme stain directions
MACENKO_BETA = 0.15  # OD below which a pixel counts as transparent
# torchstain's (and Macenko's reference code's) default target.
REFERENCE_STAIN_MATRIX = ((0.5626, 0.2159), (0.7201, 0.8012), (0.4062, 0.5581))
REFERENCE_MAX_CONCENTRATIONS = (1.9705, 1.0308)
MIN_STAINED_FRACTION = 0.01
CPU_CHUNK = 8  # images per step on the CPU (fastest for 224-pixel patches; 44 bytes of working memory a pixel)
_GROUPS = 8  # a row is seen as 8 rows of columns when its extreme values are picked (``_extremes``)
_SAMPLE_STRIDE = 128  # on the CPU, every 128th value of a row is sampled for a selection threshold
_SAMPLE_SLACK = 4  # sampled values more than the deepest rank needs (``_host_order_statistics``)

_RGB_TO_XYZ = ((0.412453, 0.357580, 0.180423), (0.212671, 0.715160, 0.072169), (0.019334, 0.119193, 0.950227))
_WHITE_D65 = (0.95047, 1.0, 1.08883)


@dataclass(frozen=True)
class MacenkoStains:
    """What Macenko's method estimates for each image of a batch."""

    stain_matrix: torch.Tensor  # (B, 3, 2) unit OD vectors, columns haematoxylin, eosin
    concentrations: torch.Tensor  # (B, 2, N) per pixel
    max_concentrations: torch.Tensor  # (B, 2) 99th percentile of each stain's concentration
    fitted: torch.Tensor  # (B,) bool: enough stained pixels to estimate the stains


def _lerp(low: np.ndarray, high: np.ndarray, frac: np.ndarray) -> np.ndarray:
    """numpy's linear interpolation between neighbouring order statistics (``_lerp``: from the nearer end)."""
    diff = high - low
    return np.where(frac >= 0.5, high - diff * (1 - frac), low + diff * frac)


def _percentile_ranks(count: np.ndarray, q: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Ranks (from the smallest) of the two order statistics that numpy's linear ``percentile`` interpolates
    between among ``count`` numbers, and the weight of the upper one."""
    last = np.maximum(count - 1, 0)
    pos = (q / 100.0) * last
    lo = np.floor(pos).astype(np.int64)
    return lo, np.minimum(lo + 1, last), pos - lo


def _extremes(values: torch.Tensor, k: int, largest: bool) -> torch.Tensor:
    """(B, k) the k smallest (largest) values of each row of (B, N) ``values`` (no NaN), in order, exactly, in torch
    (the CUDA path; the CPU's is ``_host_order_statistics``). Each row is laid out as ``_GROUPS`` rows of
    N / _GROUPS columns; the k columns with the most extreme extremes hold the k most extreme values of the row, ties
    included (a column left out is no more extreme than the k chosen ones' extremes), so N / _GROUPS extremes and
    then k x _GROUPS candidates are ranked rather than the whole row: a fifth of it for a percentile's k of N / 100."""
    b, n = values.shape
    width = n // _GROUPS
    if k * _GROUPS * 2 > n:  # a short row or a deep rank: ranking the row is as cheap
        return values.topk(k, 1, largest=largest).values
    grouped = values[:, : width * _GROUPS].view(b, _GROUPS, width)  # column j: values j, j + width, ...
    extreme = grouped.amax(1) if largest else grouped.amin(1)
    columns = extreme.topk(k, 1, largest=largest, sorted=False).indices
    candidates = grouped.gather(2, columns[:, None, :].expand(b, _GROUPS, k)).view(b, -1)
    if n > width * _GROUPS:
        candidates = torch.cat([candidates, values[:, width * _GROUPS :]], 1)
    return candidates.topk(k, 1, largest=largest).values


def _host_order_statistics(values: np.ndarray, ranks: np.ndarray, largest: bool) -> np.ndarray:
    """``order_statistics`` in numpy, for the CPU, where selecting among many tied values (a ratio of table values
    repeats) made numpy's and torch's selections slow. A threshold is read off every ``_SAMPLE_STRIDE``-th value of a
    row: a value of the row at least as extreme as ``_SAMPLE_SLACK`` more sampled values than the deepest rank needs,
    so that usually about 1.5 x that rank plus a few strides of values are at least as extreme. Those values are the
    candidates; when there are at least as many as the deepest rank needs, they hold every value of those ranks, ties
    included, and the ranks are picked from them; otherwise (rare) from the whole row. Exact either way. NaN, which
    no comparison selects, is left out as the filling infinity is."""
    b, n = values.shape
    k = int(ranks.max()) + 1
    fill = -np.inf if largest else np.inf
    sample = values[:, ::_SAMPLE_STRIDE].copy()
    sample[np.isnan(sample)] = fill
    width = sample.shape[1]
    m = min(width - 1, -(-k * 3 // (2 * _SAMPLE_STRIDE)) + _SAMPLE_SLACK)  # ceil(1.5 k / stride) + slack
    if largest:
        sample.partition(width - 1 - m, axis=1)
        chosen = np.flatnonzero(values >= sample[:, width - 1 - m, None])
    else:
        sample.partition(m, axis=1)
        chosen = np.flatnonzero(values <= sample[:, m, None])
    bounds = np.searchsorted(chosen, np.arange(b + 1) * n)  # each row's candidates, in order of the rows
    counts = np.diff(bounds)
    candidates = values.ravel()[chosen]  # a copy: partitioned in place below
    at = counts[:, None] - 1 - ranks if largest else ranks  # the ranks' places among each row's candidates
    out = np.empty(ranks.shape, values.dtype)
    # Python ints: numpy's scalars cost more per row than the selection itself
    for row, (start, end, places) in enumerate(zip(bounds[:-1].tolist(), bounds[1:].tolist(), at.tolist(), strict=True)):
        if end - start >= k:
            among = candidates[start:end]
        else:
            among = np.nan_to_num(values[row], nan=fill, posinf=np.inf, neginf=-np.inf)
            places = (n - 1 - ranks[row] if largest else ranks[row]).tolist()
        among.partition(places)
        out[row] = among[places]
    return out


def order_statistics(values: torch.Tensor, ranks: torch.Tensor, largest: bool = False) -> torch.Tensor:
    """(B, K) the values at ``ranks`` (B, K) of each row of (B, N) ``values``, rank 0 the smallest (the largest with
    ``largest``). Values to leave out are NaN, or +inf (-inf with ``largest``), so that they rank last."""
    if ranks.numel() == 0:
        return values.new_zeros(ranks.shape)
    if values.device.type == "cpu":
        return torch.from_numpy(_host_order_statistics(values.numpy(), ranks.numpy(), largest))
    filled = torch.nan_to_num(values, float("-inf") if largest else float("inf"), float("inf"), float("-inf"))
    return _extremes(filled, int(ranks.max()) + 1, largest).gather(1, ranks)


def _pick(values: torch.Tensor, ranks: np.ndarray, largest: bool) -> np.ndarray:
    """``order_statistics`` with the ranks and the values on the host, in float64."""
    return order_statistics(values, torch.from_numpy(ranks).to(values.device), largest).double().cpu().numpy()


def masked_percentile(values: torch.Tensor, q: float, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Row-wise ``np.percentile(row[mask_row], q)`` with numpy's default linear interpolation, for (B, N) values.
    Only the order statistics needed are selected (``order_statistics`` from the nearer end), not a full sort.
    Rows with an empty mask give NaN."""
    b, n = values.shape
    count = np.full(b, n) if mask is None else mask.sum(1).cpu().numpy()
    lo, hi, frac = _percentile_ranks(count, q)
    if q <= 50:  # ranks counted from the bottom; masked-out values rank last
        filled = values if mask is None else torch.where(mask, values, float("inf"))
        picked = _pick(filled, np.stack([lo, hi], 1), largest=False)
    else:  # ranks counted from the top
        filled = values if mask is None else torch.where(mask, values, float("-inf"))
        last = np.maximum(count - 1, 0)
        picked = _pick(filled, np.stack([last - lo, last - hi], 1), largest=True)
    with np.errstate(invalid="ignore"):
        out = np.where(count > 0, _lerp(picked[:, 0], picked[:, 1], frac), np.nan)
    return torch.from_numpy(out).to(values.device, values.dtype)


def _channels(images: torch.Tensor) -> torch.Tensor:
    """(B, H, W, 3) images as (B, N, 3) pixels, a view."""
    if images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f"images must be (batch, height, width, 3), got {tuple(images.shape)}")
    return images.reshape(images.shape[0], -1, 3)


@functools.lru_cache(maxsize=8)
def _od_table(io: float, device: torch.device) -> torch.Tensor:
    """The optical density of each of the 256 intensities, computed in float64 once: a gather per pixel value
    instead of a logarithm."""
    return torch.from_numpy(-np.log((np.arange(256) + 1.0) / io)).to(device, torch.float32)


class _Buffers:
    """Per-pixel working memory for up to ``size`` images of ``n`` pixels, reused from one chunk of a batch to the
    next: on the CPU, fresh memory costs a page fault per page, more than the arithmetic done in it."""

    def __init__(self, size: int, n: int, device: torch.device) -> None:
        def empty(*shape: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
            return torch.empty(size, *shape, dtype=dtype, device=device)

        self.od = empty(3, n)  # optical densities, then the rebuilt image's integers on CUDA (``rebuilt``)
        self.kept = empty(3, n)  # the intensities (``intensities``), the stained pixels' OD, then the rebuilt image
        self.pair = empty(2, n)  # projections onto the stain plane, then the concentrations
        self.stained = empty(n)
        self.key = empty(n)
        self.brightest = empty(n, dtype=torch.int32)  # each pixel's brightest channel
        # int32 views of float32 memory not in use at the time: fewer bytes to keep in the caches
        self.intensities = self.kept.view(torch.int32)
        self.rebuilt = self.od.view(torch.int32)


def _intensities(images: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """(B, 3, N) int32 intensities of (B, H, W, 3) uint8-valued images: channels apart, as indices (one pass)."""
    if images.device.type == "cpu":  # numpy's transposing copy is faster than torch's on the CPU
        np.copyto(out.numpy(), _channels(images).numpy().transpose(0, 2, 1), casting="unsafe")
        return out
    return out.copy_(_channels(images).transpose(1, 2))


def _od(intensities: torch.Tensor, io: float, out: torch.Tensor) -> torch.Tensor:
    """(B, 3, N) float32 OD = -log((I + 1) / Io) of (B, 3, N) int32 intensities, into ``out``."""
    return torch.index_select(_od_table(float(io), intensities.device), 0, intensities.view(-1), out=out.view(-1)).view(out.shape)


def optical_density(images: torch.Tensor, io: float = MACENKO_IO) -> torch.Tensor:
    """(B, 3, N) OD = -log((I + 1) / Io) of uint8-valued (B, H, W, 3) images."""
    buf = _Buffers(len(images), _channels(images).shape[1], images.device)
    return _od(_intensities(images, buf.intensities), io, buf.od)


def _cpu_loops() -> ModuleType:
    """The CPU's compiled loops (``core/slides/stain_cpu.py``), imported on first use: numba and its LLVM cost a
    fraction of a second to load, which every importer of this module (the tile server, the command line) would pay
    though most never normalise stain on the CPU."""
    from core.slides import stain_cpu

    return stain_cpu


def _pixel_bytes(images: torch.Tensor) -> np.ndarray:
    """(B, N, 3) uint8 pixels of (B, H, W, 3) uint8-valued CPU images, contiguous, for the compiled loops (which index
    the OD table with them unchecked)."""
    pixels = _channels(images).numpy()
    if pixels.dtype != np.uint8:
        if pixels.size and (pixels.min() < 0 or pixels.max() > 255 or not np.array_equal(pixels, np.round(pixels))):
            raise ValueError("images must hold integer intensities 0 to 255")
        pixels = pixels.astype(np.uint8)
    return np.ascontiguousarray(pixels)


def _stained_limit(io: float, beta: float) -> int:
    """The largest intensity whose OD -log((I + 1) / Io) is at least beta: I <= Io exp(-beta) - 1."""
    return int(np.floor(io * np.exp(-beta) - 1.0))


def _stained_pixels(intensities: torch.Tensor, io: float, beta: float, brightest: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """(B, N) float 1 for the reference's ODhat pixels (no channel's OD below beta), else 0, computed on the integer
    intensities (``_stained_limit``), by arithmetic rather than a comparison. The CPU's is fused into
    ``stain_cpu.od_and_moments``."""
    torch.amax(intensities, 1, out=brightest)
    return out.copy_(brightest.neg_().add_(_stained_limit(io, beta) + 1).clamp_(0, 1))


@dataclass(frozen=True)
class _Fit:
    """Macenko's estimates for a chunk of images: the few numbers per image on the host in float64, as the
    reference computes them; the concentrations where the pixels are."""

    stain_matrix: np.ndarray  # (B, 3, 2)
    max_concentrations: np.ndarray  # (B, 2)
    fitted: np.ndarray  # (B,) bool
    concentrations: torch.Tensor  # (B, 2, N)


def macenko_stains(images: torch.Tensor, io: float = MACENKO_IO, alpha: float = MACENKO_ALPHA, beta: float = MACENKO_BETA) -> MacenkoStains:
    """Stain matrix, concentrations and their 99th percentiles of every image of a (B, H, W, 3) batch."""
    fit = _fit(images, io, alpha, beta, _Buffers(len(images), _channels(images).shape[1], images.device))
    device = images.device
    return MacenkoStains(torch.from_numpy(fit.stain_matrix).to(device, torch.float32), fit.concentrations,
                         torch.from_numpy(fit.max_concentrations).to(device, torch.float32), torch.from_numpy(fit.fitted).to(device))


def _fit(images: torch.Tensor, io: float, alpha: float, beta: float, buf: _Buffers) -> _Fit:
    """Macenko's estimates of a (B, H, W, 3) batch, worked out in ``buf`` (where the concentrations stay, valid until
    its next use). The per-pixel steps run in torch on the images' device; the per-image arithmetic between them
    (covariance, eigenvectors, angles, stain vectors, pseudo-inverse, percentile interpolation) runs in numpy on
    the host, three small transfers per batch: on the CPU, torch's fixed cost per call on such tiny arrays was
    larger than the per-pixel work of a few images."""
    b, n, device = len(images), _channels(images).shape[1], images.device
    if b == 0:
        return _Fit(np.zeros((0, 3, 2)), np.zeros((0, 2)), np.zeros(0, bool), buf.pair[:0])
    # (B, 3, N) optical densities; the stained pixels' (transparent ones zeroed); (B, N) 1 where stained, else 0
    od, kept, stained = buf.od[:b], buf.kept[:b], buf.stained[:b]
    if device.type == "cpu":  # one fused pass (core/slides/stain_cpu.py)
        sums_of = np.empty((b, 10))
        _cpu_loops().od_and_moments(_pixel_bytes(images), _od_table(float(io), device).numpy(), _stained_limit(io, beta),
                                 od.numpy(), kept.numpy(), stained.numpy(), sums_of)
        second = sums_of[:, [0, 1, 2, 1, 3, 4, 2, 4, 5]].reshape(b, 3, 3)
        sums, count = sums_of[:, 6:9], np.rint(sums_of[:, 9]).astype(np.int64)
    else:
        intensities = _intensities(images, buf.intensities[:b])
        _od(intensities, io, od)
        _stained_pixels(intensities, io, beta, buf.brightest[:b], stained)
        torch.mul(od, stained[:, None], out=kept)
        # sums of products, sums and counts over the stained pixels
        moments = torch.cat([(kept @ kept.transpose(1, 2)).view(b, 9), kept.sum(2), stained.sum(1, keepdim=True)], 1).double().cpu().numpy()
        second, sums, count = moments[:, :9].reshape(b, 3, 3), moments[:, 9:12], np.rint(moments[:, 12]).astype(np.int64)
    fitted = count >= max(2, int(np.ceil(MIN_STAINED_FRACTION * n)))
    c = np.maximum(count, 2)[:, None, None].astype(np.float64)
    cov = (second - sums[:, :, None] * sums[:, None, :] / c) / (c - 1)  # np.cov: unbiased
    cov[~fitted] = np.eye(3)
    eigvecs = np.linalg.eigh(cov)[1]  # ascending eigenvalues: the reference's own routine
    plane = eigvecs[:, :, 1:3]  # (B, 3, 2) the two largest
    plane_t = torch.from_numpy(plane.transpose(0, 2, 1).astype(np.float32)).to(device)
    # phi = atan2(That_1, That_0) is ranked through a key that falls as phi rises. When the largest eigenvector's
    # components share a sign s, every stained OD vector (all components >= beta > 0) projects onto it with sign s,
    # so phi = s pi / 2 - atan(That_0 / That_1): the ratio is the key (0 / 0, NaN, where transparent) and no
    # arctangent is taken per pixel. Otherwise (not seen on H&E) the key is -phi.
    largest = eigvecs[:, :, 2]
    one_sided = (largest > 0).all(1) | (largest < 0).all(1) | ~fitted  # unfitted: no estimate to make
    if device.type == "cpu":  # projections and their ratio in one fused pass (core/slides/stain_cpu.py)
        key = buf.key[:b]
        _cpu_loops().projection_ratio(kept.numpy(), plane_t.numpy(), key.numpy())
    else:
        projected = torch.bmm(plane_t, kept, out=buf.pair[:b])  # (B, 2, N); (0, 0) where transparent
        key = torch.div(projected[:, 0], projected[:, 1], out=buf.key[:b])
    if not one_sided.all():
        other = torch.from_numpy(np.flatnonzero(~one_sided)).to(device)
        projected_other = torch.bmm(plane_t[other], kept[other])
        angles = torch.atan2(projected_other[:, 1], projected_other[:, 0]).neg_()
        key[other] = torch.where(stained[other] > 0, angles, float("nan"))
    last = np.maximum(count - 1, 0)
    lo, hi, frac = _percentile_ranks(count, alpha)  # the alpha-th percentile of phi: from the top of the key
    lo_max, hi_max, frac_max = _percentile_ranks(count, 100 - alpha)
    low_key = _pick(key, np.stack([lo, hi], 1), largest=True)  # transparent pixels' NaN ranks last
    high_key = _pick(key, np.stack([last - lo_max, last - hi_max], 1), largest=False)
    side = np.where(largest[:, 0] > 0, 0.5, -0.5)[:, None] * np.pi
    with np.errstate(invalid="ignore"):
        low_phi, high_phi = (np.where(one_sided[:, None], side - np.arctan(k), -k) for k in (low_key, high_key))
        min_phi = _lerp(low_phi[:, 0], low_phi[:, 1], frac)
        max_phi = _lerp(high_phi[:, 0], high_phi[:, 1], frac_max)
        v_min = np.einsum("bij,bj->bi", plane, np.stack([np.cos(min_phi), np.sin(min_phi)], 1))  # (B, 3)
        v_max = np.einsum("bij,bj->bi", plane, np.stack([np.cos(max_phi), np.sin(max_phi)], 1))
    haematoxylin_first = (v_min[:, 0] > v_max[:, 0])[:, None]
    stain_matrix = np.stack([np.where(haematoxylin_first, v_min, v_max), np.where(haematoxylin_first, v_max, v_min)], 2)
    fitted &= np.isfinite(stain_matrix).all((1, 2))
    stain_matrix[~fitted] = REFERENCE_STAIN_MATRIX  # nothing to estimate: any valid matrix will do
    inverse = torch.from_numpy(_pseudo_inverse(stain_matrix).astype(np.float32)).to(device)
    concentrations = torch.bmm(inverse, od, out=buf.pair[:b])  # (B, 2, N) least squares
    lo, hi, frac = _percentile_ranks(np.full(2 * b, n), 99)
    picked = _pick(concentrations.view(2 * b, n), np.stack([n - 1 - lo, n - 1 - hi], 1), largest=True)
    max_c = _lerp(picked[:, 0], picked[:, 1], frac).reshape(b, 2)
    fitted &= np.isfinite(max_c).all(1) & (max_c > 0).all(1)
    return _Fit(stain_matrix, max_c, fitted, concentrations)


def _pseudo_inverse(matrices: np.ndarray) -> np.ndarray:
    """(B, 2, 3) pseudo-inverses of (B, 3, 2) matrices, (A^T A)^-1 A^T, what np.linalg.lstsq solves with: in closed
    form; by SVD for a matrix of nearly parallel columns, where lstsq's minimum-norm solution differs."""
    gram = matrices.transpose(0, 2, 1) @ matrices  # (B, 2, 2)
    det = gram[:, 0, 0] * gram[:, 1, 1] - gram[:, 0, 1] * gram[:, 1, 0]
    adjugate = np.stack([gram[:, 1, 1], -gram[:, 0, 1], -gram[:, 1, 0], gram[:, 0, 0]], 1).reshape(-1, 2, 2)
    singular = ~(det > 1e-9 * gram[:, 0, 0] * gram[:, 1, 1])
    with np.errstate(divide="ignore", invalid="ignore"):
        out = adjugate / det[:, None, None] @ matrices.transpose(0, 2, 1)
    if singular.any():
        out[singular] = np.linalg.pinv(matrices[singular])
    return out


def _rebuild(fit: _Fit, stain_matrix: np.ndarray, max_concentrations: np.ndarray, io: float, work: torch.Tensor) -> torch.Tensor:
    """(B, 3, N) channels Io exp(-HE_target C / scale), into ``work``, (B, 3, N) float32 room (clipped at 255 by the
    caller)."""
    scale = np.where(fit.fitted[:, None], fit.max_concentrations / max_concentrations, 1.0)  # (B, 2)
    mixing = stain_matrix[None] / scale[:, None, :] * np.log2(np.e)  # (B, 3, 2), in base 2
    mixing_t = torch.from_numpy(mixing.astype(np.float32)).to(work.device)
    # log2(Io) - mixing C in one batched product: 2 to that is Io exp(-HE C / scale) (exp2: faster than exp)
    torch.baddbmm(work.new_full((1, 1, 1), float(np.log2(io))), mixing_t, fit.concentrations, alpha=-1, out=work)
    return torch.exp2(work, out=work)


def _given(images: torch.Tensor, stain_matrix: np.ndarray, max_concentrations: np.ndarray, io: float, buf: _Buffers) -> _Fit:
    """Macenko's estimates of a (B, H, W, 3) batch when they are known already (a slide's, ``macenko_transfer``): every
    image shares the (3, 2) stain matrix and (2,) maximum concentrations; only the concentrations are solved for."""
    b = len(images)
    od = _od(_intensities(images, buf.intensities[:b]), io, buf.od[:b])
    inverse = torch.from_numpy(_pseudo_inverse(stain_matrix[None]).astype(np.float32)).to(images.device)
    concentrations = torch.matmul(inverse, od, out=buf.pair[:b])  # (1, 2, 3) @ (B, 3, N): least squares per pixel
    return _Fit(np.repeat(stain_matrix[None], b, 0), np.repeat(max_concentrations[None], b, 0), np.ones(b, bool), concentrations)


def _rebuilt_images(images: torch.Tensor, estimate: Callable[[torch.Tensor, _Buffers], _Fit], stain_matrix: torch.Tensor,
                    max_concentrations: torch.Tensor, io: float) -> torch.Tensor:
    """(B, H, W, 3) uint8 images rebuilt with the target's (3, 2) stain matrix and (2,) 99th-percentile concentrations
    from the estimates ``estimate`` makes of each chunk in the working memory it is given; images it could not fit
    come back unchanged. On the CPU the batch is taken ``CPU_CHUNK`` images at a time, so that each step's working set
    stays in the caches."""
    target = stain_matrix.detach().cpu().double().numpy()
    target_max = max_concentrations.detach().cpu().double().numpy()
    step = max(1, len(images) if images.device.type != "cpu" else min(len(images), CPU_CHUNK))
    out = torch.empty(images.shape, dtype=torch.uint8, device=images.device)
    buf = _Buffers(step, _channels(images).shape[1], images.device)
    for s in range(0, len(images), step):
        chunk, into = images[s : s + step], _channels(out[s : s + step])
        fit = estimate(chunk, buf)
        rebuilt = _rebuild(fit, target, target_max, io, buf.kept[: len(chunk)])
        # clipped at 255 and truncated to integers as the reference's astype(np.uint8), channels interleaved
        if images.device.type == "cpu":  # one fused pass (core/slides/stain_cpu.py)
            _cpu_loops().interleaved_bytes(rebuilt.numpy(), into.numpy())
        else:  # float to int32 then to uint8 (faster than float to uint8), then one strided copy per channel
            integers = buf.rebuilt[: len(chunk)].copy_(rebuilt.clamp_max_(255))
            for channel in range(3):
                into[:, :, channel].copy_(integers[:, channel])
        if not fit.fitted.all():
            unfitted = torch.from_numpy(np.flatnonzero(~fit.fitted)).to(images.device)
            into[unfitted] = _channels(chunk)[unfitted].to(torch.uint8)
    return out


def macenko_normalise(images: torch.Tensor, stain_matrix: torch.Tensor, max_concentrations: torch.Tensor,
                      io: float = MACENKO_IO, alpha: float = MACENKO_ALPHA, beta: float = MACENKO_BETA) -> torch.Tensor:
    """(B, H, W, 3) uint8 images, each with its own stains estimated from itself, rebuilt with the target's (3, 2)
    stain matrix and (2,) 99th-percentile concentrations; images without enough stain come back unchanged."""
    return _rebuilt_images(images, lambda chunk, buf: _fit(chunk, io, alpha, beta, buf), stain_matrix, max_concentrations, io)


def macenko_transfer(images: torch.Tensor, source_matrix: torch.Tensor, source_max: torch.Tensor, stain_matrix: torch.Tensor,
                     max_concentrations: torch.Tensor, io: float = MACENKO_IO) -> torch.Tensor:
    """(B, H, W, 3) uint8 images whose stains were estimated elsewhere (their slide's: ``source_matrix`` (3, 2),
    ``source_max`` (2,)), rebuilt with the target's as ``macenko_normalise`` rebuilds an image with its own: the same
    colour gives the same colour wherever it is on the slide."""
    source = source_matrix.detach().cpu().double().numpy()
    source_c = source_max.detach().cpu().double().numpy()
    return _rebuilt_images(images, lambda chunk, buf: _given(chunk, source, source_c, io, buf), stain_matrix, max_concentrations, io)


def fit_macenko(image: torch.Tensor) -> tuple[list[list[float]], list[float]]:
    """The target (stain matrix, max concentrations) of one (H, W, 3) image, as the reference's ``fit``; a mosaic of
    training patches is one image."""
    stains = macenko_stains(image[None])
    if not bool(stains.fitted[0]):
        raise ValueError("the target image has too few stained pixels to estimate its stains")
    return stains.stain_matrix[0].double().cpu().tolist(), stains.max_concentrations[0].double().cpu().tolist()


def rgb_to_lab(rgb: torch.Tensor) -> torch.Tensor:
    """(..., 3) RGB in [0, 1] to L* (0..100), a*, b*, as torchstain's ``rgb2lab`` followed by ``lab_split``."""
    arr = torch.where(rgb > 0.04045, ((rgb + 0.055) / 1.055) ** 2.4, rgb / 12.92)
    xyz = arr @ torch.tensor(_RGB_TO_XYZ, dtype=rgb.dtype, device=rgb.device).T
    xyz = xyz / torch.tensor(_WHITE_D65, dtype=rgb.dtype, device=rgb.device)
    f = torch.where(xyz > 0.008856, xyz.clamp_min(0) ** (1.0 / 3.0), 7.787 * xyz + 16.0 / 116.0)
    x, y, z = f.unbind(-1)
    return torch.stack([116.0 * y - 16.0, 500.0 * (x - y), 200.0 * (y - z)], -1)


def lab_to_rgb(lab: torch.Tensor) -> torch.Tensor:
    """Inverse of ``rgb_to_lab`` (torchstain's ``lab2rgb``), clipped to [0, 1]."""
    y = (lab[..., 0] + 16.0) / 116.0
    xyz = torch.stack([lab[..., 1] / 500.0 + y, y, y - lab[..., 2] / 200.0], -1)
    xyz = torch.where(xyz > 0.2068966, xyz**3, (xyz - 16.0 / 116.0) / 7.787)
    xyz = xyz * torch.tensor(_WHITE_D65, dtype=lab.dtype, device=lab.device)
    to_rgb = torch.linalg.inv(torch.tensor(_RGB_TO_XYZ, dtype=torch.float64)).to(lab.device, lab.dtype)
    rgb = xyz @ to_rgb.T
    rgb = torch.where(rgb > 0.0031308, 1.055 * rgb.clamp_min(0) ** (1 / 2.4) - 0.055, rgb * 12.92)
    return rgb.clamp(0, 1)


def lab_statistics(images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per image (B, 3) means and population standard deviations of L*, a*, b*."""
    lab = rgb_to_lab(images.reshape(images.shape[0], -1, 3).float() / 255.0)
    return lab.mean(1), lab.std(1, unbiased=False)


def reinhard_normalise(images: torch.Tensor, target_means: torch.Tensor, target_stds: torch.Tensor,
                       source_means: torch.Tensor | None = None, source_stds: torch.Tensor | None = None) -> torch.Tensor:
    """(B, H, W, 3) uint8 images with each L*a*b* channel standardised and scaled to the target's (3,) means and
    standard deviations; a flat channel (zero spread) keeps its values. Each image is standardised by its own
    statistics, or by ``source_means`` and ``source_stds`` (3,) when given (its slide's)."""
    lab = rgb_to_lab(images.reshape(images.shape[0], -1, 3).float() / 255.0)
    if source_means is not None and source_stds is not None:
        means = source_means.to(images.device, torch.float32).view(1, 1, 3).expand(len(images), 1, 3)
        stds = source_stds.to(images.device, torch.float32).view(1, 1, 3).expand(len(images), 1, 3)
    else:
        means, stds = lab.mean(1, keepdim=True), lab.std(1, unbiased=False, keepdim=True)
    target_means = target_means.to(images.device, torch.float32)
    target_stds = target_stds.to(images.device, torch.float32)
    flat = stds <= 0
    standardised = torch.where(flat, lab - means, (lab - means) / torch.where(flat, torch.ones_like(stds), stds))
    out = lab_to_rgb(standardised * torch.where(flat, torch.ones_like(stds), target_stds) + target_means)
    return (out * 255).reshape(images.shape).to(torch.uint8)


def fit_reinhard(image: torch.Tensor) -> tuple[list[float], list[float]]:
    """The target (L*a*b* means, standard deviations) of one (H, W, 3) image, as the reference's ``fit``."""
    means, stds = lab_statistics(image[None])
    return means[0].double().cpu().tolist(), stds[0].double().cpu().tolist()


def normalise_stain(images: torch.Tensor, spec: InputSpec) -> torch.Tensor:
    """(B, H, W, 3) uint8 images normalised as a model's manifest declares (``spec.stain_normalisation``), on the
    images' device; unchanged for ``"none"``. With ``stain_fit = "slide"`` the images' stains are their slide's
    (``spec.stain_source``, bound by ``core.slides.slide_stain``), not each image's own."""
    target, method = spec.stain_target, spec.stain_normalisation
    if method == "none" or len(images) == 0:
        return images
    source = spec.stain_source if spec.stain_fit == "slide" else None
    if spec.stain_fit == "slide":
        if source is None:
            raise ValueError("this model estimates stains per slide (stain_fit = \"slide\"): normalise a slide's patches "
                             "with the slide's estimate (core.slides.slide_stain.slide_input)")
        if not (source.stain_matrix or source.lab_means):  # the slide holds too little stain to estimate
            return images
    if method == "macenko" and target.stain_matrix and target.max_concentrations:
        matrix, max_c = torch.tensor(target.stain_matrix), torch.tensor(target.max_concentrations)
        if source is not None and source.stain_matrix and source.max_concentrations:
            return macenko_transfer(images, torch.tensor(source.stain_matrix), torch.tensor(source.max_concentrations), matrix, max_c)
        return macenko_normalise(images, matrix, max_c)
    if method == "reinhard" and target.lab_means and target.lab_stds:
        means, stds = torch.tensor(target.lab_means), torch.tensor(target.lab_stds)
        if source is not None and source.lab_means and source.lab_stds:
            return reinhard_normalise(images, means, stds, torch.tensor(source.lab_means), torch.tensor(source.lab_stds))
        return reinhard_normalise(images, means, stds)
    return images


def model_input(patches: np.ndarray | torch.Tensor, spec: InputSpec, device: torch.device) -> torch.Tensor:
    """What a patch model reads: uint8 (n, h, w, 3) patches moved to ``device``, stain-normalised as its manifest
    declares, as float (n, 3, h, w) in [0, 1]. Inference, CAMs, the patch inspector and training all call this."""
    images = torch.from_numpy(np.ascontiguousarray(patches)) if isinstance(patches, np.ndarray) else patches
    images = normalise_stain(images.to(device, non_blocking=True), spec)
    return images.permute(0, 3, 1, 2).float().div_(255)
