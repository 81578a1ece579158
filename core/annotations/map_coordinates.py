"""Level-0 pixels to and from the slide viewer's map coordinates, and a drawn shape made into a stored region.

The viewer is Leaflet in ``CRS.Simple`` (see ``dashboard.components.slide_viewer.map_bounds``): a level-0 pixel is
2^-max_zoom map units, x to the right is longitude and y downwards is minus latitude. GeoJSON from Leaflet is
``[lng, lat]``, so pixel (x, y) is map ``[x / 2^max_zoom, -y / 2^max_zoom]`` and back. Scaling by a power of two is
exact in floating point, so a coordinate survives the round trip unchanged.
"""

from __future__ import annotations

from typing import Any

import shapely
from shapely.geometry import box, mapping
from shapely.geometry.base import BaseGeometry

from core.annotations.geometry import CheckedGeometry, RegionRefused, check_geometry, parse_geometry


def _scaled(coordinates: Any, sx: float, sy: float) -> Any:
    if not isinstance(coordinates, list | tuple):
        raise TypeError(f"coordinates must be nested lists of numbers, not {type(coordinates).__name__}")
    if coordinates and isinstance(coordinates[0], int | float):
        return [coordinates[0] * sx, coordinates[1] * sy]
    return [_scaled(c, sx, sy) for c in coordinates]


def to_map(geometry: dict, max_zoom: int) -> dict:
    """A level-0 GeoJSON geometry in the viewer's map units (``[lng, lat]``)."""
    scale = 2.0**max_zoom
    return {"type": geometry["type"], "coordinates": _scaled(geometry["coordinates"], 1 / scale, -1 / scale)}


def to_level0(geometry: dict, max_zoom: int) -> dict:
    """A geometry from the map (``[lng, lat]``) in level-0 pixels."""
    scale = 2.0**max_zoom
    return {"type": geometry["type"], "coordinates": _scaled(geometry["coordinates"], scale, -scale)}


def drawn_region(map_geometry: Any, max_zoom: int, width: int, height: int) -> CheckedGeometry:
    """A shape drawn on the viewer as a stored region's geometry: in level-0 pixels, then ``region_on_slide``."""
    if not isinstance(map_geometry, dict) or not isinstance(map_geometry.get("coordinates"), list):
        raise RegionRefused("the drawn shape has no coordinates")
    try:
        level0 = to_level0(map_geometry, max_zoom)
    except (TypeError, IndexError):
        raise RegionRefused("the drawn shape's coordinates are not x, y numbers") from None
    return region_on_slide(parse_geometry(level0), width, height)


def region_on_slide(geom: BaseGeometry, width: int, height: int) -> CheckedGeometry:
    """A drawn shape (level-0 pixels) made valid, cut to the slide's rectangle (a stroke past the slide's edge is the
    reviewer's hand, not a file for another slide), then checked and repaired by the import rules
    (``core.annotations.geometry``). ``RegionRefused`` when nothing of it is left on the slide."""
    if geom.geom_type in ("Polygon", "MultiPolygon") and not geom.is_valid:
        geom = shapely.make_valid(geom, method="structure")
    clipped = geom.intersection(box(0, 0, width, height))
    if geom.geom_type in ("Polygon", "MultiPolygon", "GeometryCollection"):
        parts = [p for p in shapely.get_parts(clipped) if p.geom_type == "Polygon" and p.area > 0]
        if not parts:
            raise RegionRefused("the drawn shape has no area on the slide")
        clipped = parts[0] if len(parts) == 1 else shapely.MultiPolygon(parts)
    elif clipped.is_empty:
        raise RegionRefused("the marker is off the slide")
    return check_geometry(geojson_of(clipped), width, height)


def _as_lists(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _as_lists(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_as_lists(v) for v in value]
    return value


def geojson_of(geom: BaseGeometry) -> dict:
    """A shapely geometry as a GeoJSON geometry with lists (shapely's ``mapping`` gives tuples)."""
    return _as_lists(mapping(geom))
