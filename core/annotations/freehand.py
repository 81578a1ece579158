"""A freehand stroke drawn on the slide viewer made into a region's outline.

The browser (``assets/annotations.js``) records the pointer while the button is held, a point each time it has moved
at least 2 screen pixels, and closes the stroke back to its start on release, as QuPath's freehand tools do. Stored
as drawn, a stroke keeps hundreds or thousands of vertices that nobody can see, so here:

1. **Simplified**: shapely ``simplify(preserve_topology=True)`` (Douglas-Peucker that keeps a ring from collapsing or
   crossing itself) with a tolerance of **one screen pixel at the zoom the stroke was drawn at**, 2^(max_zoom - zoom)
   level-0 pixels. No part of the stored outline is more than a pixel from the drawn one on the reviewer's screen; a
   stroke drawn zoomed out is stored with fewer vertices than the same gesture drawn at full resolution.
2. **Too small**: a stroke with fewer than three distinct points, or enclosing less than ``MIN_SCREEN_AREA`` square
   screen pixels (a click, or a twitch of the mouse), is **refused** with a message saying so.
3. **Crossing itself** (a lasso whose end overshoots its start, a figure of eight): **repaired** with
   ``shapely.make_valid(method="structure")``, the rule imports follow (``core.annotations.geometry``): the ring is
   split at its crossings into simple parts. Parts smaller than ``MIN_SCREEN_AREA`` (the little loop of an
   overshoot) are dropped; the note names where the stroke crossed and what was kept. A stroke with no area left
   (it folds back along itself) is refused.

The outline is then cut to the slide like any drawn shape (``core.annotations.map_coordinates.region_on_slide``).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

import shapely
from shapely.errors import GEOSException
from shapely.geometry.base import BaseGeometry

from core.annotations.geometry import RegionRefused
from core.annotations.map_coordinates import to_level0

MIN_SCREEN_AREA = 25.0  # square screen pixels (5 x 5): less is a click or a twitch, not an outline
POINT_SPACING_PX = 2  # the browser adds a point after the pointer moved this far (``assets/annotations.js``)


@dataclass(frozen=True)
class FreehandOutline:
    geometry: BaseGeometry  # level-0 pixels, valid, Polygon or MultiPolygon
    points: int  # points of the stroke as drawn
    vertices: int  # vertices kept after simplification (all rings)
    tolerance: float  # level-0 pixels: one screen pixel at the stroke's zoom
    repair: str | None  # what was repaired, when the stroke crossed itself

    def summary(self) -> str:
        text = (f"freehand stroke of {self.points:,} points simplified to {self.vertices:,} vertices (within one screen pixel, "
                f"{self.tolerance:g} px at level 0)")
        return text + (f"; {self.repair}" if self.repair else "")


def screen_pixel(max_zoom: int, zoom: Any) -> float:
    """Level-0 pixels per screen pixel at ``zoom``; ``RegionRefused`` when the zoom is not one the viewer shows."""
    if isinstance(zoom, bool) or not isinstance(zoom, int | float) or not math.isfinite(zoom) or not 0 <= zoom <= max_zoom + 1:
        raise RegionRefused(f"the stroke came without the zoom it was drawn at (got {zoom!r}); reload the page and draw again")
    return 2.0 ** (max_zoom - zoom)


def _stroke_ring(map_geometry: Any) -> list:
    if (not isinstance(map_geometry, dict) or map_geometry.get("type") != "Polygon" or not isinstance(map_geometry.get("coordinates"), list)
            or len(map_geometry["coordinates"]) != 1 or not isinstance(map_geometry["coordinates"][0], list)):
        raise RegionRefused("a freehand stroke is one closed outline; draw it again")
    return map_geometry["coordinates"][0]


def _too_small(area_screen: float) -> RegionRefused:
    return RegionRefused(f"the freehand stroke is too small: it encloses {area_screen:.0f} square screen pixels, less than "
                         f"{MIN_SCREEN_AREA:.0f}; press, drag around the region and release")


def _whole_pixels(text: str) -> str:
    """GEOS's message with its coordinates rounded to whole level-0 pixels."""
    return re.sub(r"-?\d+(\.\d+)?(e-?\d+)?", lambda m: str(int(round(float(m.group())))), text)


def _parts(geom: BaseGeometry) -> list[shapely.Polygon]:
    return [p for p in shapely.get_parts(geom) if isinstance(p, shapely.Polygon) and not p.is_empty]


def _joined(parts: list[shapely.Polygon]) -> BaseGeometry | None:
    if not parts:
        return None
    return parts[0] if len(parts) == 1 else shapely.MultiPolygon(parts)


def freehand_outline(map_geometry: Any, max_zoom: int, zoom: Any) -> FreehandOutline:
    """The stroke (a Polygon in map units, as the browser sends it) as a simplified, valid outline in level-0 pixels,
    or ``RegionRefused`` saying why not (the module's rules)."""
    pixel = screen_pixel(max_zoom, zoom)
    ring = _stroke_ring(map_geometry)
    try:
        level0 = to_level0({"type": "Polygon", "coordinates": [ring]}, max_zoom)["coordinates"][0]
        line = shapely.LineString(level0)
    except (TypeError, ValueError, IndexError, GEOSException):
        raise RegionRefused("the freehand stroke's points are not x, y numbers; draw it again") from None
    points = max(len(ring) - 1, 0)  # the browser repeats the first point to close the ring
    distinct = shapely.get_coordinates(shapely.remove_repeated_points(line))
    if len({(x, y) for x, y in distinct}) < 3:
        raise _too_small(0.0)
    stroke: BaseGeometry = shapely.Polygon(distinct if (distinct[0] == distinct[-1]).all() else [*distinct, distinct[0]])
    min_area = MIN_SCREEN_AREA * pixel**2
    repair = None
    if not stroke.is_valid:
        reason = _whole_pixels(shapely.is_valid_reason(stroke))
        pieces = _parts(shapely.make_valid(stroke, method="structure"))
        kept = [p for p in pieces if p.area >= min_area]
        if not kept:
            raise RegionRefused(f"the freehand stroke crosses itself ({reason}) and no part of it encloses {MIN_SCREEN_AREA:.0f} square "
                                "screen pixels; draw it again without folding back")
        dropped = len(pieces) - len(kept)
        repair = (f"repaired: the stroke crossed itself ({reason}); split at its crossings (shapely make_valid, 'structure'), "
                  f"{len(kept)} part{'s' if len(kept) > 1 else ''} kept"
                  + (f", {dropped} smaller than {MIN_SCREEN_AREA:.0f} square screen pixels dropped" if dropped else ""))
        stroke = kept[0] if len(kept) == 1 else shapely.MultiPolygon(kept)
    if stroke.area < min_area:
        raise _too_small(stroke.area / pixel**2)
    simplified = shapely.simplify(stroke, pixel, preserve_topology=True)
    if not simplified.is_valid:  # parts of a repaired stroke that touch at a point can overlap once simplified
        simplified = _joined(_parts(shapely.make_valid(simplified, method="structure"))) or stroke
    vertices = sum(len(r.coords) - 1 for p in _parts(simplified) for r in (p.exterior, *p.interiors))  # closing points not counted
    return FreehandOutline(simplified, points, vertices, pixel, repair)
