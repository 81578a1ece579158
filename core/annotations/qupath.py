"""QuPath GeoJSON, both ways, in the layout QuPath itself reads and writes (see docs/annotations.md for the sources).

QuPath writes a ``FeatureCollection`` (File > Object data > Export as GeoJSON, or ``exportObjectsToGeoJson(…,
"FEATURE_COLLECTION")``) or, without that option, a bare JSON array of features. Each feature has an ``id`` (a UUID
since v0.4), a ``geometry`` in level-0 pixels with the origin at the image's top-left, written with 2 decimals, and
``properties``: ``objectType`` ("annotation", "detection", …; absent means annotation), an optional ``name``,
``classification`` as ``{"name": …, "color": [r, g, b]}`` (``"names": [...]`` for a derived class, joined with ": ";
a plain string is accepted too) and ``metadata``, a map of strings.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Sequence
from typing import Any

import numpy as np
import orjson
import shapely
from shapely.errors import GEOSException
from shapely.geometry.base import BaseGeometry

from core.annotations.parsed import FileReader, ParsedFile, gc_paused
from core.store.annotations import OBJECT_TYPES, RegionVersion
from core.workspace import AnnotationClass

COORDINATE_DECIMALS = 2  # QuPath's ROITypeAdapters write coordinates with 2 decimal places
_DERIVED_CLASS_SEPARATOR = ": "  # PathClass.toString of a derived class, e.g. "Tumor: Positive"


class GeoJSONFileError(ValueError):
    """The file as a whole is not QuPath GeoJSON (not JSON, or no features)."""


def _classification(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, dict):
        if isinstance(value.get("name"), str):
            return value["name"]
        names = value.get("names")
        if isinstance(names, list) and names and all(isinstance(n, str) for n in names):
            return _DERIVED_CLASS_SEPARATOR.join(names)
    return None


def _features(document: Any) -> list[Any]:
    if isinstance(document, list):
        return document
    if isinstance(document, dict) and document.get("type") == "FeatureCollection" and isinstance(document.get("features"), list):
        return document["features"]
    if isinstance(document, dict) and document.get("type") == "Feature":
        return [document]
    raise GeoJSONFileError("it is JSON but not GeoJSON features: expected a FeatureCollection, a Feature or a list of Features")


def read_geojson(text: str | bytes, width: int, height: int, classes: Sequence[AnnotationClass]) -> ParsedFile:
    """Every feature of a QuPath GeoJSON file checked against the slide and the workspace's classes.

    Raises ``GeoJSONFileError`` when the file as a whole cannot be read."""
    with gc_paused():
        return _read_geojson(text, width, height, classes)


def _read_geojson(text: str | bytes, width: int, height: int, classes: Sequence[AnnotationClass]) -> ParsedFile:
    try:
        text = text.decode("utf-8-sig") if isinstance(text, bytes) else text
    except UnicodeDecodeError as exc:
        raise GeoJSONFileError(f"it is not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    try:
        document = orjson.loads(text)  # several times faster than json.loads on a file of 10,000 polygons
    except orjson.JSONDecodeError:
        try:  # NaN and Infinity, which orjson refuses, reach the per-feature checks; the standard reader words any other fault
            document = json.loads(text)
        except json.JSONDecodeError as exc:
            raise GeoJSONFileError(f"it is not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})") from None
    features = _features(document)
    reader = FileReader(width, height, classes)
    reader.total = len(features)
    for index, feature in enumerate(features, 1):
        label = f"feature {index}"
        if not isinstance(feature, dict) or feature.get("type") != "Feature":
            reader.refuse(label, "is not a GeoJSON Feature object")
            continue
        if isinstance(feature.get("id"), str):
            label += f" (id {' '.join(feature['id'][:40].split())})"
        properties = feature.get("properties") or {}
        if not isinstance(properties, dict):
            reader.refuse(label, "its properties are not an object")
            continue
        object_type = properties.get("objectType", properties.get("object_type", "annotation"))
        if object_type not in OBJECT_TYPES:
            reader.refuse(label, f"objectType {object_type!r} is not imported; only {' and '.join(OBJECT_TYPES)} objects are")
            continue
        metadata = properties.get("metadata")
        name, comment = properties.get("name"), metadata.get("comment") if isinstance(metadata, dict) else None
        name, comment = (name if isinstance(name, str) else ""), (comment if isinstance(comment, str) else "")
        reader.add(label, feature.get("geometry"), _classification(properties.get("classification")), object_type, name, comment)
    return reader.finish(_polygon_reading(features) or _geos_reading(text, len(features)))


def _polygon_reading(features: list[Any]) -> list[BaseGeometry] | None:
    """When every feature is a Polygon (as QuPath's annotation exports are), their geometries built from the parsed
    coordinate lists in a few vectorised calls, quicker than GEOS reading the text again; None when any feature is
    something else or its rings are not closed lists of x, y pairs (GEOS then reads the file, or each feature is parsed
    alone for its message)."""
    rings: list[Any] = []
    polygon_of_ring: list[int] = []
    for i, feature in enumerate(features):
        geometry = feature.get("geometry") if isinstance(feature, dict) else None
        coordinates = geometry.get("coordinates") if isinstance(geometry, dict) and geometry.get("type") == "Polygon" else None
        if not isinstance(coordinates, list) or not coordinates:  # rings that are not lists fail the checks below
            return None
        rings.extend(coordinates)
        polygon_of_ring.extend([i] * len(coordinates))
    if not rings:
        return None
    try:
        lengths = np.fromiter(map(len, rings), int, len(rings))
        positions = list(itertools.chain.from_iterable(rings))
        if (lengths < 4).any() or (np.fromiter(map(len, positions), int, len(positions)) != 2).any():
            return None
    except TypeError:  # a ring or position that is not a list
        return None
    numbers = list(itertools.chain.from_iterable(positions))
    if not set(map(type, numbers)) <= {float, int}:  # numpy would read "1.5" or true as numbers; GeoJSON does not
        return None
    coords = np.fromiter(numbers, float, len(numbers)).reshape(-1, 2)  # several times quicker than np.array of the pairs
    ends = np.cumsum(lengths)
    if not (coords[ends - lengths] == coords[ends - 1]).all():
        return None
    linear = np.asarray(shapely.linearrings(coords, indices=np.repeat(np.arange(len(rings)), lengths)))
    return list(np.asarray(shapely.polygons(linear, indices=polygon_of_ring)))


def _geos_reading(text: str, n: int) -> list[BaseGeometry] | None:
    """Every feature's geometry as GEOS reads the whole FeatureCollection in one call, or None when it cannot (a
    feature without geometry, a bare array, a malformed ring): the features are then parsed one by one."""
    try:
        whole = shapely.from_geojson(text)
    except (GEOSException, ValueError, TypeError):
        return None
    parts = list(shapely.get_parts(whole)) if whole.geom_type == "GeometryCollection" else []
    return parts if len(parts) == n else None


def _rounded(coordinates: Any) -> Any:
    if isinstance(coordinates, list | tuple):
        if coordinates and all(isinstance(c, int | float) for c in coordinates):
            return [round(float(c), COORDINATE_DECIMALS) for c in coordinates]
        return [_rounded(c) for c in coordinates]
    return coordinates


def feature(region: RegionVersion, classes: dict[str, AnnotationClass]) -> dict:
    """One region as a QuPath feature. The colour is the workspace's colour of the region's class; the author,
    comment and version go in ``metadata`` (QuPath keeps string metadata on its objects)."""
    properties: dict[str, Any] = {"objectType": region.object_type}
    if region.name:
        properties["name"] = region.name
    cls = classes.get(region.class_name)
    properties["classification"] = {"name": region.class_name, "color": list(cls.color) if cls else [128, 128, 128]}
    metadata = {"author": region.user, "version": str(region.version), "saved": region.at.isoformat()}
    if region.comment:
        metadata["comment"] = region.comment
    properties["metadata"] = metadata
    geometry = {"type": region.geometry["type"], "coordinates": _rounded(region.geometry["coordinates"])}
    return {"type": "Feature", "id": region.region_id, "geometry": geometry, "properties": properties}


def write_geojson(regions: Sequence[RegionVersion], classes: Sequence[AnnotationClass]) -> str:
    by_name = {c.name: c for c in classes}
    return json.dumps({"type": "FeatureCollection", "features": [feature(r, by_name) for r in regions]}, indent=1)
