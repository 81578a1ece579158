"""Macenko's per-pixel passes fused into single loops for the CPU (numba), where torch's and numpy's kernels each take
a pass over a batch (bench/stain.py measures the whole against the reference):

- ``od_and_moments``: the optical densities read from the 256-entry table, the stained-pixel mask, the stained pixels'
  ODs, and the sums the covariance needs, in one pass over the pixels instead of six (channel split, table lookup,
  mask, zeroing, products, sums);
- ``projection_ratio``: the stained pixels' projections onto the stain plane and their ratio, the key the angle
  percentiles rank, in one pass instead of two;
- ``interleaved_bytes``: the rebuilt image clipped at 255, truncated to uint8 and its channels interleaved, in one
  pass instead of three.

Each writes the numbers the step-by-step torch path in ``core/slides/stain.py`` (which CUDA runs) writes, up to float
rounding: the covariance's sums are accumulated here pixel by pixel in float64 (there in float32, closer to the
reference's float64 here), and each projection is summed in its own order. Compiled on first use and cached beside
this file; the loops release the GIL, so that threads normalising different batches run at once."""

from __future__ import annotations

import numba
import numpy as np


@numba.njit(cache=True, nogil=True)
def od_and_moments(pixels: np.ndarray, table: np.ndarray, limit: int, od: np.ndarray, kept: np.ndarray,
                   stained: np.ndarray, moments: np.ndarray) -> None:  # pragma: no cover - compiled
    """For (B, N, 3) integer pixels: ``od`` (B, 3, N) the table's OD of each channel; ``kept`` (B, 3, N) the same
    where the pixel is stained (every channel's intensity at most ``limit``), else 0; ``stained`` (B, N) 1 or 0;
    ``moments`` (B, 10) float64 sums over the stained pixels of o0 o0, o0 o1, o0 o2, o1 o1, o1 o2, o2 o2, of o0, o1,
    o2, and their count."""
    for b in range(pixels.shape[0]):
        s00 = s01 = s02 = s11 = s12 = s22 = m0 = m1 = m2 = count = 0.0
        for i in range(pixels.shape[1]):
            r, g, u = pixels[b, i, 0], pixels[b, i, 1], pixels[b, i, 2]
            o0, o1, o2 = table[r], table[g], table[u]
            od[b, 0, i], od[b, 1, i], od[b, 2, i] = o0, o1, o2
            if r <= limit and g <= limit and u <= limit:
                kept[b, 0, i], kept[b, 1, i], kept[b, 2, i] = o0, o1, o2
                stained[b, i] = 1.0
                a0, a1, a2 = np.float64(o0), np.float64(o1), np.float64(o2)
                s00 += a0 * a0
                s01 += a0 * a1
                s02 += a0 * a2
                s11 += a1 * a1
                s12 += a1 * a2
                s22 += a2 * a2
                m0 += a0
                m1 += a1
                m2 += a2
                count += 1.0
            else:
                kept[b, 0, i] = kept[b, 1, i] = kept[b, 2, i] = 0.0
                stained[b, i] = 0.0
        moments[b, 0], moments[b, 1], moments[b, 2], moments[b, 3], moments[b, 4] = s00, s01, s02, s11, s12
        moments[b, 5], moments[b, 6], moments[b, 7], moments[b, 8], moments[b, 9] = s22, m0, m1, m2, count


@numba.njit(cache=True, nogil=True)
def interleaved_bytes(rebuilt: np.ndarray, pixels: np.ndarray) -> None:  # pragma: no cover - compiled
    """(B, 3, N) float channels (non-negative), clipped at 255 and truncated, into (B, N, 3) uint8 pixels; NaN (an
    image that could not be fitted, replaced by the caller) becomes 255."""
    for b in range(rebuilt.shape[0]):
        for c in range(3):
            for i in range(rebuilt.shape[2]):
                value = rebuilt[b, c, i]
                pixels[b, i, c] = np.uint8(value if value < 255.0 else 255.0)


@numba.njit(cache=True, nogil=True, error_model="numpy")
def projection_ratio(kept: np.ndarray, plane: np.ndarray, key: np.ndarray) -> None:  # pragma: no cover - compiled
    """``key`` (B, N): the ratio of the projections of the (B, 3, N) stained pixels' OD onto the rows of the (B, 2, 3)
    stain plane, That_0 / That_1, in float32; 0 / 0, NaN, for a transparent pixel (its OD zeroed)."""
    for b in range(kept.shape[0]):
        a0, a1, a2 = plane[b, 0, 0], plane[b, 0, 1], plane[b, 0, 2]
        c0, c1, c2 = plane[b, 1, 0], plane[b, 1, 1], plane[b, 1, 2]
        for i in range(kept.shape[2]):
            k0, k1, k2 = kept[b, 0, i], kept[b, 1, i], kept[b, 2, i]
            key[b, i] = (a0 * k0 + a1 * k1 + a2 * k2) / (c0 * k0 + c1 * k1 + c2 * k2)
