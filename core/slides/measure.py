"""Lengths and areas measured on a slide: level-0 pixel coordinates to µm (or mm above 1,000 µm) by the slide's µm per
pixel, and the words the viewer labels them with. A slide whose µm per pixel is not known is measured in pixels.

The µm per pixel is the one the workspace records for the slide (from the file's ``openslide.mpp-x``/``mpp-y`` at
import, or given by the lab where the file has none); where the file records its own x and y and they agree with the
record, the file's pair is used, so that non-square pixels are measured right."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

MAX_PLAUSIBLE_MPP = 10.0  # µm per pixel: above this no microscope; a TIFF without a resolution says 352.78 (72 dpi)
MPP_X, MPP_Y = "openslide.mpp-x", "openslide.mpp-y"  # openslide.PROPERTY_NAME_MPP_X / _Y
_AGREE = 0.01  # the file's pair is used when its mean is within 1 % of the recorded value

Point = tuple[float, float]


def plausible_mpp(value: object) -> float | None:
    """``value`` as µm per pixel, or None when it is missing, not a number or not a microscope's."""
    try:
        mpp = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return mpp if math.isfinite(mpp) and 0 < mpp <= MAX_PLAUSIBLE_MPP else None


@dataclass(frozen=True)
class PixelSize:
    """µm per level-0 pixel across (x) and down (y); both None when the slide's is not known."""

    x: float | None
    y: float | None
    source: str  # where the values come from, in words; empty when not known

    @property
    def known(self) -> bool:
        return self.x is not None and self.y is not None

    def describe(self) -> str:
        """One sentence for the tool's tooltip."""
        if not self.known:
            return "This slide records no µm per pixel: lengths and areas are measured in pixels of the full-resolution image."
        pair = f"{self.x:.4g} µm/px" if self.x == self.y else f"{self.x:.4g} × {self.y:.4g} µm/px (x × y)"
        return f"Lengths and areas in µm from the slide's {pair} ({self.source})."


def slide_pixel_size(properties: Mapping[str, str], recorded: float | None) -> PixelSize:
    """The µm per pixel to measure with: the file's ``mpp-x``/``mpp-y`` where both are plausible and agree with the
    recorded value (or nothing is recorded), else the recorded value, else not known."""
    x, y = plausible_mpp(properties.get(MPP_X)), plausible_mpp(properties.get(MPP_Y))
    kept = plausible_mpp(recorded)
    if x is not None and y is not None and (kept is None or abs((x + y) / 2 - kept) <= _AGREE * kept):
        return PixelSize(x, y, "read from the slide file")
    if kept is not None:
        return PixelSize(kept, kept, "as the workspace records it for this slide")
    return PixelSize(None, None, "")


@dataclass(frozen=True)
class Measurement:
    value: float  # µm or µm² when the pixel size is known, else pixels or pixels²
    unit: str  # "µm", "µm²", "px", "px²"
    text: str  # the label: "412 µm", "1.27 mm", "0.052 mm²", "1,840 px"


def length_text(um: float) -> str:
    """µm below 1,000 µm (one decimal below 100 µm), mm from there."""
    if round(um) >= 1000:
        return f"{um / 1000:.2f} mm"
    return f"{um:.0f} µm" if round(um, 1) >= 100 else f"{um:.1f} µm"


def area_text(um2: float) -> str:
    """µm² below 0.01 mm² (10,000 µm²), mm² from there."""
    if round(um2) >= 10_000:
        return f"{um2 / 1e6:.3f} mm²"
    return f"{um2:,.0f} µm²"


def _scale(size: PixelSize) -> tuple[float, float]:
    return (size.x, size.y) if size.x is not None and size.y is not None else (1.0, 1.0)


def path_length(points: Sequence[Point], size: PixelSize) -> Measurement:
    """The length of the path through ``points`` (level-0 pixels)."""
    sx, sy = _scale(size)
    total = sum(math.hypot((b[0] - a[0]) * sx, (b[1] - a[1]) * sy) for a, b in zip(points, points[1:], strict=False))
    if size.known:
        return Measurement(total, "µm", length_text(total))
    return Measurement(total, "px", f"{total:,.0f} px")


def polygon_area(points: Sequence[Point], size: PixelSize) -> Measurement:
    """The area inside the closed polygon through ``points`` (level-0 pixels; the shoelace formula)."""
    sx, sy = _scale(size)
    n = len(points)
    twice = sum(points[i][0] * points[(i + 1) % n][1] - points[(i + 1) % n][0] * points[i][1] for i in range(n)) if n >= 3 else 0.0
    area = abs(twice) / 2 * sx * sy
    if size.known:
        return Measurement(area, "µm²", area_text(area))
    return Measurement(area, "px²", f"{area:,.0f} px²")
