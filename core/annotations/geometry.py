"""A region's geometry checked against the slide, and repaired with shapely where a rule allows it.

The rules, applied to every imported or drawn region (level-0 pixel coordinates, origin at the slide's top-left):

1. The geometry is a Polygon, MultiPolygon (regions, holes allowed), Point or MultiPoint (markers); anything else
   is refused.
2. Every coordinate is a finite number and every ring has at least four positions; otherwise refused.
3. Every coordinate lies on the slide: 0 <= x <= width and 0 <= y <= height. Otherwise refused, never clipped,
   since a shifted or scaled file (another slide, another level) would be silently cut.
4. A polygon that is not valid by the OGC rules shapely checks (a ring that crosses itself, a hole crossing its
   shell) is repaired with ``shapely.make_valid(method="structure")``: each ring is split at its crossings into
   simple rings, shells are merged and holes subtracted, so a figure-of-eight becomes its two lobes. The repair
   is kept, with a note naming where the ring crossed, when it leaves a polygon of non-zero area; a ring with no
   area left after the repair (it folds back along a line) is refused.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import shapely
from shapely.errors import GEOSException
from shapely.geometry import shape
from shapely.geometry.base import BaseGeometry

REGION_TYPES = ("Polygon", "MultiPolygon")
MARKER_TYPES = ("Point", "MultiPoint")
GEOMETRY_TYPES = REGION_TYPES + MARKER_TYPES


class RegionRefused(ValueError):
    """This one region cannot be imported; the message says why and which rule."""


@dataclass(frozen=True)
class CheckedGeometry:
    geometry: dict  # GeoJSON, valid
    repair: str | None  # what was repaired and how, when it was


def _as_geojson(geom: BaseGeometry) -> dict:
    return json.loads(shapely.to_geojson(geom))


def _polygonal(geom: BaseGeometry) -> BaseGeometry:
    """The polygon parts of a repair's result (make_valid may add the collapsed lines of a fold as a collection)."""
    parts = [p for p in shapely.get_parts(geom) if isinstance(p, shapely.Polygon) and not p.is_empty]
    if not parts:
        return shapely.Polygon()
    return parts[0] if len(parts) == 1 else shapely.MultiPolygon(parts)


def parse_geometry(value: Any) -> BaseGeometry:
    """A GeoJSON geometry object as shapely geometry, or ``RegionRefused`` (rules 1 and 2)."""
    if not isinstance(value, dict):
        raise RegionRefused("has no geometry object")
    kind = value.get("type")
    if kind not in GEOMETRY_TYPES:
        raise RegionRefused(f"geometry type {kind!r} is not a region or marker; use one of {', '.join(GEOMETRY_TYPES)}")
    try:
        geom = shape(value)
    except (ValueError, TypeError, KeyError, IndexError, AttributeError, GEOSException) as exc:
        raise RegionRefused(f"coordinates are not a valid {kind} ({exc})") from None
    if geom.is_empty:
        raise RegionRefused(f"the {kind} has no coordinates")
    if not np.isfinite(shapely.get_coordinates(geom)).all():
        raise RegionRefused("a coordinate is not a finite number")
    for ring in _written_rings(value):
        if len(ring) < 4:  # shapely would pad it; GeoJSON (RFC 7946 3.1.6) and JTS require four positions
            raise RegionRefused(f"coordinates are not a valid {kind} (a ring has {len(ring)} positions; a closed ring "
                                "needs at least 4, the last repeating the first)")
    return geom


def _written_rings(value: dict) -> list[list]:
    """The rings of a (Multi)Polygon as the file wrote them (already known to parse)."""
    if value["type"] == "Polygon":
        return list(value["coordinates"])
    if value["type"] == "MultiPolygon":
        return [ring for polygon in value["coordinates"] for ring in polygon]
    return []


def check_geometry(value: Any, width: int, height: int) -> CheckedGeometry:
    """Apply the module's rules to one GeoJSON geometry on a slide of ``width`` x ``height`` level-0 pixels."""
    geom = parse_geometry(value)
    xmin, ymin, xmax, ymax = geom.bounds
    if xmin < 0 or ymin < 0 or xmax > width or ymax > height:
        raise RegionRefused(f"coordinates outside the slide: x {xmin:g} to {xmax:g}, y {ymin:g} to {ymax:g}, but the slide is "
                            f"{width} x {height} pixels at level 0 (is the file for another slide, or at another level?)")
    if geom.is_valid:
        return CheckedGeometry(_as_geojson(geom), None)
    reason = shapely.is_valid_reason(geom)
    repaired = _polygonal(shapely.make_valid(geom, method="structure"))
    if repaired.is_empty or math.isclose(repaired.area, 0.0):
        raise RegionRefused(f"refused: the ring is not a valid polygon ({reason}) and repairing it leaves no area")
    pieces = len(shapely.get_parts(repaired))
    return CheckedGeometry(_as_geojson(repaired), f"repaired: the ring was not a valid polygon ({reason}); split at its crossings "
                                                  f"into {pieces} simple polygon{'s' if pieces > 1 else ''} (shapely make_valid, 'structure')")
