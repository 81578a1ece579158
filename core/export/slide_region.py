"""A rectangle of a slide in level-0 pixels, and the conversion from the viewer's map bounds."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from core.errors import PathReviewError


@dataclass(frozen=True)
class SlideRegion:
    x: int  # level-0 pixels, left
    y: int  # level-0 pixels, top
    width: int
    height: int

    def __post_init__(self) -> None:
        for name in ("x", "y", "width", "height"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise PathReviewError(f"slide region {name} must be a whole number of pixels, not {value!r}")
        if self.width <= 0 or self.height <= 0:
            raise PathReviewError(f"slide region must have a positive width and height (got {self.width} x {self.height} px)")

    def clipped(self, slide_width: int, slide_height: int) -> SlideRegion:
        """The part of this region on a slide of this size; a region entirely off the slide is refused."""
        left, top = max(self.x, 0), max(self.y, 0)
        right, bottom = min(self.x + self.width, slide_width), min(self.y + self.height, slide_height)
        if right <= left or bottom <= top:
            raise PathReviewError(f"the region {self.width} x {self.height} px at ({self.x}, {self.y}) lies outside the slide "
                                 f"({slide_width} x {slide_height} px); pan the view back onto the slide")
        return SlideRegion(left, top, right - left, bottom - top)

    def describe(self) -> str:
        return f"{self.x},{self.y} {self.width}×{self.height} px"


def viewport_region(bounds: Any, max_zoom: int) -> SlideRegion:
    """Leaflet CRS.Simple bounds ``[[south_lat, west_lng], [north_lat, east_lng]]`` as a level-0 region
    (level-0 x = lng * 2**max_zoom, y = -lat * 2**max_zoom). Not clipped: the viewport may extend past the slide."""
    (lat_a, lng_a), (lat_b, lng_b) = _corners(bounds)
    scale = 2.0**max_zoom
    x0, x1 = sorted((lng_a * scale, lng_b * scale))
    y0, y1 = sorted((-lat_a * scale, -lat_b * scale))
    left, top = math.floor(x0), math.floor(y0)
    return SlideRegion(left, top, math.ceil(x1) - left, math.ceil(y1) - top)


def _corners(bounds: Any) -> tuple[tuple[float, float], tuple[float, float]]:
    try:
        if isinstance(bounds, dict):  # Leaflet's LatLngBounds as JSON
            sw, ne = bounds["_southWest"], bounds["_northEast"]
            return (float(sw["lat"]), float(sw["lng"])), (float(ne["lat"]), float(ne["lng"]))
        (lat_a, lng_a), (lat_b, lng_b) = bounds
        corners = (float(lat_a), float(lng_a)), (float(lat_b), float(lng_b))
    except (KeyError, TypeError, ValueError) as exc:
        raise PathReviewError(f"the viewer's bounds {bounds!r} are not [[south, west], [north, east]]") from exc
    if not all(math.isfinite(v) for pair in corners for v in pair):
        raise PathReviewError("the viewer's bounds are not finite numbers")
    return corners
