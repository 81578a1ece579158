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
from collections.abc import Sequence
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


def _kind(value: Any) -> str:
    if not isinstance(value, dict):
        raise RegionRefused("has no geometry object")
    kind = value.get("type")
    if kind not in GEOMETRY_TYPES:
        raise RegionRefused(f"geometry type {kind!r} is not a region or marker; use one of {', '.join(GEOMETRY_TYPES)}")
    return str(kind)


def _check_ring_lengths(value: dict) -> None:
    """Rings as the file wrote them: shapely would pad a short one; GeoJSON (RFC 7946 3.1.6) and JTS require four positions."""
    if value["type"] == "Polygon":
        rings = list(value["coordinates"])
    elif value["type"] == "MultiPolygon":
        rings = [ring for polygon in value["coordinates"] for ring in polygon]
    else:
        return
    for ring in rings:
        if len(ring) < 4:
            raise RegionRefused(f"coordinates are not a valid {value['type']} (a ring has {len(ring)} positions; a closed ring "
                                "needs at least 4, the last repeating the first)")


def _check_numbers(coordinates: Any) -> None:
    """No coordinate is text or true/false: shapely would read "12.5" or true as a number, and a valid geometry is kept as
    written. Other faults (null, a missing number) are left to shapely, whose message names them."""
    if isinstance(coordinates, list | tuple):
        for c in coordinates:
            _check_numbers(c)
    elif isinstance(coordinates, bool | str):
        raise RegionRefused(f"a coordinate is not a number ({coordinates!r})")


def parse_geometry(value: Any) -> BaseGeometry:
    """A GeoJSON geometry object as shapely geometry, or ``RegionRefused`` (rules 1 and 2)."""
    kind = _kind(value)
    _check_numbers(value.get("coordinates"))
    try:
        geom = shape(value)
    except (ValueError, TypeError, KeyError, IndexError, AttributeError, GEOSException) as exc:
        raise RegionRefused(f"coordinates are not a valid {kind} ({exc})") from None
    if geom.is_empty:
        raise RegionRefused(f"the {kind} has no coordinates")
    if not np.isfinite(shapely.get_coordinates(geom)).all():
        raise RegionRefused("a coordinate is not a finite number")
    _check_ring_lengths(value)
    return geom


def _outside(bounds: tuple[float, float, float, float], width: int, height: int) -> str | None:
    xmin, ymin, xmax, ymax = bounds
    if xmin < 0 or ymin < 0 or xmax > width or ymax > height:
        return (f"coordinates outside the slide: x {xmin:g} to {xmax:g}, y {ymin:g} to {ymax:g}, but the slide is "
                f"{width} x {height} pixels at level 0 (is the file for another slide, or at another level?)")
    return None


def _repaired(geom: BaseGeometry) -> CheckedGeometry:
    """Rule 4 for a geometry shapely finds invalid."""
    reason = shapely.is_valid_reason(geom)
    repaired = _polygonal(shapely.make_valid(geom, method="structure"))
    if repaired.is_empty or math.isclose(repaired.area, 0.0):
        raise RegionRefused(f"refused: the ring is not a valid polygon ({reason}) and repairing it leaves no area")
    pieces = len(shapely.get_parts(repaired))
    return CheckedGeometry(_as_geojson(repaired), f"repaired: the ring was not a valid polygon ({reason}); split at its crossings "
                                                  f"into {pieces} simple polygon{'s' if pieces > 1 else ''} (shapely make_valid, 'structure')")


def check_geometry(value: Any, width: int, height: int) -> CheckedGeometry:
    """Apply the module's rules to one GeoJSON geometry on a slide of ``width`` x ``height`` level-0 pixels. A valid
    geometry is kept with its coordinates as written."""
    geom = parse_geometry(value)
    outside = _outside(geom.bounds, width, height)
    if outside:
        raise RegionRefused(outside)
    if geom.is_valid:
        return CheckedGeometry({"type": value["type"], "coordinates": value["coordinates"]}, None)
    return _repaired(geom)


def check_geometries(values: Sequence[Any], width: int, height: int,
                     parsed: Sequence[BaseGeometry] | None = None) -> list[CheckedGeometry | RegionRefused]:
    """``check_geometry`` for many geometries at once, with the same results: GEOS parses them all in one call (or
    ``parsed`` holds GEOS's reading of each already) and bounds and validity are computed as arrays; a geometry GEOS
    cannot read, or one that breaks a rule, goes through ``check_geometry`` for its message."""
    results: list[CheckedGeometry | RegionRefused | None] = [None] * len(values)
    texts: list[str] = []
    for i, value in enumerate(values):
        try:
            _kind(value)
            _check_ring_lengths(value)
            texts.append("" if parsed is not None else json.dumps(value))
        except RegionRefused as exc:
            results[i] = exc
            texts.append("")
        except (TypeError, ValueError, KeyError):
            texts.append("")  # malformed: check_geometry below words the problem
    if parsed is None:
        geoms = shapely.from_geojson(np.array(texts, dtype=object), on_invalid="ignore")
        readable = np.array([bool(t) for t in texts], bool)
    else:
        geoms = np.array(parsed, dtype=object)
        readable = np.ones(len(values), bool)
    fast = readable & np.array([r is None for r in results], bool) & ~shapely.is_missing(geoms) & ~shapely.is_empty(geoms)
    bounds = shapely.bounds(geoms)
    fast &= (bounds[:, 0] >= 0) & (bounds[:, 1] >= 0) & (bounds[:, 2] <= width) & (bounds[:, 3] <= height)
    fast &= shapely.is_valid(geoms)
    for i, value in enumerate(values):
        if results[i] is not None:
            continue
        if fast[i]:
            results[i] = CheckedGeometry({"type": value["type"], "coordinates": value["coordinates"]}, None)
            continue
        try:
            results[i] = check_geometry(value, width, height)
        except RegionRefused as exc:
            results[i] = exc
    return [r for r in results if r is not None]
