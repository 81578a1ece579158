"""Brightness, contrast and gamma of slide images for display: the same arithmetic for the viewer's tiles and the
exported figures, so that what a reviewer adjusted on screen is what the figure shows.

Per channel, on values v = pixel / 255, in this order:

1. brightness b:  v * b
2. contrast c:    (v - 0.5) * c + 0.5        (stretched about mid-grey)
3. clipped to [0, 1]
4. gamma g:       v ** (1 / g)               (g > 1 lifts the mid-tones, g < 1 darkens them; 0 and 1 stay)

then rounded to the nearest integer of 0..255 (halves to even). At b = c = g = 1 the image is returned unchanged."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from core.errors import PathReviewError

ADJUSTMENT_RANGE = (0.25, 4.0)  # each of brightness, contrast and gamma
ADJUSTMENT_NAMES = ("brightness", "contrast", "gamma")


@dataclass(frozen=True)
class DisplayAdjustment:
    brightness: float = 1.0
    contrast: float = 1.0
    gamma: float = 1.0

    @property
    def is_identity(self) -> bool:
        return self.brightness == 1.0 and self.contrast == 1.0 and self.gamma == 1.0

    def key(self) -> tuple[float, float, float]:
        """For cache keys: every adjustment is cached apart from the others."""
        return self.brightness, self.contrast, self.gamma

    def describe(self) -> str:
        """For captions: "brightness 1.2, contrast 1, gamma 0.8"."""
        return ", ".join(f"{name} {value:g}" for name, value in zip(ADJUSTMENT_NAMES, self.key(), strict=True))

    def query(self) -> dict[str, str]:
        """The values that differ from 1, as a URL query names them (none at the defaults)."""
        return {name: f"{value:g}" for name, value in zip(ADJUSTMENT_NAMES, self.key(), strict=True) if value != 1.0}


def adjustment_lut(adjustment: DisplayAdjustment) -> np.ndarray:
    """The 256 output values of the 256 input values (the same for each channel)."""
    v = np.arange(256, dtype=np.float64) / 255.0
    v = (v * adjustment.brightness - 0.5) * adjustment.contrast + 0.5
    v = np.clip(v, 0.0, 1.0) ** (1.0 / adjustment.gamma)
    return np.rint(v * 255.0).astype(np.uint8)


def adjust_pixels(image: np.ndarray, adjustment: DisplayAdjustment) -> np.ndarray:
    """``image`` (uint8, any shape, e.g. H x W x 3) with ``adjustment`` applied; the same array at the defaults."""
    if image.dtype != np.uint8:
        raise PathReviewError(f"display adjustment needs 8-bit pixels, not {image.dtype}")
    if adjustment.is_identity:
        return image
    return adjustment_lut(adjustment)[image]


def adjustment_problem(name: str, raw: str) -> str | None:
    """Why ``raw`` cannot be the ``name`` value (one of ``ADJUSTMENT_NAMES``), or None when it can."""
    low, high = ADJUSTMENT_RANGE
    try:
        value = float(raw)
    except ValueError:
        return f"{name} {raw[:20]!r} is not a number"
    if not low <= value <= high:  # also refuses nan and inf
        return f"{name} {raw[:20]!r} is outside {low:g}–{high:g}"
    return None


def parse_adjustment(query: Mapping[str, str], prefix: str = "") -> tuple[DisplayAdjustment, list[str]]:
    """The adjustment a URL query names (``brightness``, ``contrast``, ``gamma``, each after ``prefix``; 1 when absent),
    and why each value it cannot use was left at 1."""
    values, problems = {}, []
    for name in ADJUSTMENT_NAMES:
        raw = query.get(prefix + name)
        if raw is None:
            continue
        problem = adjustment_problem(name, raw)
        if problem:
            problems.append(problem)
        else:
            values[name] = float(raw)
    return DisplayAdjustment(**values), problems


def adjustment_of(values: Mapping[str, object]) -> DisplayAdjustment:
    """The adjustment of a control's or a view's values by name (a value None or absent counts as 1); a value that
    cannot be used is a ``PathReviewError`` naming it."""
    return display_adjustment({name: str(value) for name, value in values.items() if value is not None})


def display_adjustment(query: Mapping[str, str], prefix: str = "") -> DisplayAdjustment:
    """``parse_adjustment``'s adjustment; a value that cannot be used is a ``PathReviewError`` naming it."""
    adjustment, problems = parse_adjustment(query, prefix)
    if problems:
        raise PathReviewError(problems[0])
    return adjustment
