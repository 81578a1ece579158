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
``MIN_STAINED_FRACTION`` of its pixels stained (glass) has no stain to estimate and passes through unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch

if TYPE_CHECKING:  # only the type: this module runs with torch and numpy alone (bench/stain.py)
    from core.models.manifest import InputSpec

MACENKO_IO = 240.0  # transmitted light intensity
MACENKO_ALPHA = 1.0  # percentile of the angle distribution taken as the extreme stain directions
MACENKO_BETA = 0.15  # OD below which a pixel counts as transparent
# torchstain's (and Macenko's reference code's) default target.
REFERENCE_STAIN_MATRIX = ((0.5626, 0.2159), (0.7201, 0.8012), (0.4062, 0.5581))
REFERENCE_MAX_CONCENTRATIONS = (1.9705, 1.0308)
MIN_STAINED_FRACTION = 0.01

_RGB_TO_XYZ = ((0.412453, 0.357580, 0.180423), (0.212671, 0.715160, 0.072169), (0.019334, 0.119193, 0.950227))
_WHITE_D65 = (0.95047, 1.0, 1.08883)


@dataclass(frozen=True)
class MacenkoStains:
    """What Macenko's method estimates for each image of a batch."""

    stain_matrix: torch.Tensor  # (B, 3, 2) unit OD vectors, columns haematoxylin, eosin
    concentrations: torch.Tensor  # (B, 2, N) per pixel
    max_concentrations: torch.Tensor  # (B, 2) 99th percentile of each stain's concentration
    fitted: torch.Tensor  # (B,) bool: enough stained pixels to estimate the stains


def masked_percentile(values: torch.Tensor, q: float, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Row-wise ``np.percentile(row[mask_row], q)`` with numpy's default linear interpolation, for (B, N) values.
    Only the order statistics needed are selected (``topk`` from the nearer end), not a full sort.
    Rows with an empty mask give NaN."""
    b, n = values.shape
    count = torch.full((b,), n, device=values.device) if mask is None else mask.sum(1)
    pos = (q / 100.0) * (count - 1).clamp_min(0).to(torch.float64)
    lo = pos.floor().long()
    hi = torch.minimum(lo + 1, (count - 1).clamp_min(0))
    frac = (pos - lo.to(torch.float64)).to(values.dtype)
    if q <= 50:  # ranks counted from the bottom; masked-out values sort last
        filled = values if mask is None else torch.where(mask, values, float("inf"))
        ordered = filled.topk(min(n, int(hi.max()) + 1 if b else 1), 1, largest=False).values
        rank_lo, rank_hi = lo, hi
    else:  # ranks counted from the top
        filled = values if mask is None else torch.where(mask, values, float("-inf"))
        rank_lo, rank_hi = (count - 1 - lo).clamp_min(0), (count - 1 - hi).clamp_min(0)
        ordered = filled.topk(min(n, int(rank_lo.max()) + 1 if b else 1), 1, largest=True).values
    at_lo, at_hi = ordered.gather(1, rank_lo[:, None])[:, 0], ordered.gather(1, rank_hi[:, None])[:, 0]
    out = at_lo + (at_hi - at_lo) * frac
    return torch.where(count > 0, out, torch.full_like(out, float("nan")))


def _channels(images: torch.Tensor) -> torch.Tensor:
    """(B, H, W, 3) images as contiguous (B, 3, N) pixels of the same dtype (one copy of the smallest form)."""
    if images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f"images must be (batch, height, width, 3), got {tuple(images.shape)}")
    return images.reshape(images.shape[0], -1, 3).transpose(1, 2).contiguous()


def optical_density(images: torch.Tensor, io: float = MACENKO_IO) -> torch.Tensor:
    """(B, 3, N) OD = -log((I + 1) / Io) of uint8-valued (B, H, W, 3) images."""
    return _channels(images).float().add_(1.0).log_().neg_().add_(float(np.log(io)))


def _stained_pixels(channels: torch.Tensor, io: float, beta: float) -> torch.Tensor:
    """(B, N) the reference's ODhat mask, no channel's OD below beta, computed on the integer intensities:
    -log((I + 1) / Io) >= beta exactly when I <= Io exp(-beta) - 1."""
    return channels.amax(1) <= int(np.floor(io * np.exp(-beta) - 1.0))


def macenko_stains(images: torch.Tensor, io: float = MACENKO_IO, alpha: float = MACENKO_ALPHA, beta: float = MACENKO_BETA) -> MacenkoStains:
    """Stain matrix, concentrations and their 99th percentiles of every image of a (B, H, W, 3) batch."""
    channels = _channels(images)
    od = channels.float().add_(1.0).log_().neg_().add_(float(np.log(io)))  # (B, 3, N) optical density
    b, _, n = od.shape
    stained = _stained_pixels(channels, io, beta)  # (B, N)
    count = stained.sum(1)
    fitted = count >= max(2, int(np.ceil(MIN_STAINED_FRACTION * n)))
    kept = od * stained[:, None]
    sums = kept.sum(2).double()  # (B, 3)
    second = torch.einsum("bin,bjn->bij", kept, kept).double()  # (B, 3, 3) sums of products over stained pixels
    c = count.clamp_min(2).to(torch.float64)[:, None, None]
    cov = (second - sums[:, :, None] * sums[:, None, :] / c) / (c - 1)  # np.cov: unbiased
    cov = torch.where(fitted[:, None, None], cov, torch.eye(3, dtype=cov.dtype, device=cov.device))
    _, eigvecs = torch.linalg.eigh(cov)  # ascending eigenvalues, as np.linalg.eigh
    plane = eigvecs[:, :, 1:3]  # (B, 3, 2) the two largest
    projected = plane.transpose(1, 2).to(od.dtype) @ od  # (B, 2, N)
    phi = torch.atan2(projected[:, 1], projected[:, 0])
    min_phi = masked_percentile(phi, alpha, stained).to(torch.float64)
    max_phi = masked_percentile(phi, 100 - alpha, stained).to(torch.float64)
    v_min = (plane @ torch.stack([min_phi.cos(), min_phi.sin()], 1)[..., None])[..., 0]  # (B, 3)
    v_max = (plane @ torch.stack([max_phi.cos(), max_phi.sin()], 1)[..., None])[..., 0]
    haematoxylin_first = (v_min[:, 0] > v_max[:, 0])[:, None]
    stain_matrix = torch.stack([torch.where(haematoxylin_first, v_min, v_max), torch.where(haematoxylin_first, v_max, v_min)], 2)
    fitted = fitted & torch.isfinite(stain_matrix).all(2).all(1)
    reference = torch.tensor(REFERENCE_STAIN_MATRIX, dtype=stain_matrix.dtype, device=stain_matrix.device)
    stain_matrix = torch.where(fitted[:, None, None], stain_matrix, reference)  # nothing to estimate: any valid matrix will do
    concentrations = torch.linalg.pinv(stain_matrix).to(od.dtype) @ od  # (B, 2, N) least squares, as np.linalg.lstsq
    max_c = masked_percentile(concentrations.reshape(2 * b, n), 99).reshape(b, 2)
    fitted = fitted & torch.isfinite(max_c).all(1) & (max_c > 0).all(1)
    return MacenkoStains(stain_matrix.to(od.dtype), concentrations, max_c, fitted)


def macenko_normalise(images: torch.Tensor, stain_matrix: torch.Tensor, max_concentrations: torch.Tensor,
                      io: float = MACENKO_IO, alpha: float = MACENKO_ALPHA, beta: float = MACENKO_BETA) -> torch.Tensor:
    """(B, H, W, 3) uint8 images rebuilt with the target's (3, 2) stain matrix and (2,) 99th-percentile
    concentrations; images without enough stain come back unchanged."""
    stains = macenko_stains(images, io, alpha, beta)
    target = stain_matrix.to(images.device, torch.float32)
    scale = stains.max_concentrations / max_concentrations.to(images.device, torch.float32)  # (B, 2)
    scale = torch.where(stains.fitted[:, None], scale, torch.ones_like(scale))
    rebuilt = ((target / scale[:, None, :]) @ stains.concentrations).neg_().exp_().mul_(io).clamp_max_(255)  # (B, 3, N)
    out = rebuilt.to(torch.uint8).transpose(1, 2).reshape(images.shape)  # truncation, as the reference's astype(np.uint8)
    if bool(stains.fitted.all()):
        return out
    return torch.where(stains.fitted[:, None, None, None], out, images.to(torch.uint8))


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


def reinhard_normalise(images: torch.Tensor, target_means: torch.Tensor, target_stds: torch.Tensor) -> torch.Tensor:
    """(B, H, W, 3) uint8 images with each L*a*b* channel standardised and scaled to the target's (3,) means and
    standard deviations; a flat channel (zero spread) keeps its values."""
    lab = rgb_to_lab(images.reshape(images.shape[0], -1, 3).float() / 255.0)
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
    images' device; unchanged for ``"none"``."""
    target = spec.stain_target
    if spec.stain_normalisation == "macenko" and target.stain_matrix and target.max_concentrations:
        return macenko_normalise(images, torch.tensor(target.stain_matrix), torch.tensor(target.max_concentrations))
    if spec.stain_normalisation == "reinhard" and target.lab_means and target.lab_stds:
        return reinhard_normalise(images, torch.tensor(target.lab_means), torch.tensor(target.lab_stds))
    return images


def model_input(patches: np.ndarray | torch.Tensor, spec: InputSpec, device: torch.device) -> torch.Tensor:
    """What a patch model reads: uint8 (n, h, w, 3) patches moved to ``device``, stain-normalised as its manifest
    declares, as float (n, 3, h, w) in [0, 1]. Inference, CAMs, the patch inspector and training all call this."""
    images = torch.from_numpy(np.ascontiguousarray(patches)) if isinstance(patches, np.ndarray) else patches
    images = normalise_stain(images.to(device, non_blocking=True), spec)
    return images.permute(0, 3, 1, 2).float().div_(255)
