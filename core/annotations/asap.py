"""ASAP XML import, in the layout ASAP's ``XmlRepository`` writes (see docs/annotations.md for the source).

``<ASAP_Annotations><Annotations><Annotation Name Type PartOfGroup Color><Coordinates><Coordinate Order X Y/>``…
and ``<AnnotationGroups><Group Name PartOfGroup Color>``. Coordinates are level-0 pixels. ASAP places each
coordinate at its ``Order`` index. The annotation's group (``PartOfGroup``) is its class here; "None" means no group.
Types: Polygon and Rectangle become polygons; Dot a point; PointSet a multipoint; Spline a polygon through its
control points (ASAP draws a smooth curve through them; the stored outline is the control polygon).
"""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from collections.abc import Sequence

from core.annotations.parsed import FileReader, ParsedFile
from core.workspace import AnnotationClass

POLYGON_TYPES = ("Polygon", "Rectangle", "Spline")


class ASAPFileError(ValueError):
    """The file as a whole is not ASAP XML."""


def _coordinates(annotation: ET.Element) -> list[list[float]]:
    """The annotation's points in ``Order``; ``ValueError`` naming the problem."""
    nodes = annotation.findall("./Coordinates/Coordinate")
    placed: dict[int, list[float]] = {}
    for node in nodes:
        try:
            order = int(node.get("Order", ""))
            x, y = float(node.get("X", "")), float(node.get("Y", ""))
        except ValueError:
            raise ValueError("a Coordinate lacks a whole-number Order or a numeric X and Y") from None
        if not (math.isfinite(x) and math.isfinite(y)):
            raise ValueError("a coordinate is not a finite number")
        placed[order] = [x, y]
    if sorted(placed) != list(range(len(nodes))):
        raise ValueError(f"the Coordinate Order values must be 0 to {len(nodes) - 1}, each once")
    return [placed[i] for i in range(len(nodes))]


def _geometry(kind: str, points: list[list[float]]) -> dict:
    if kind == "Dot":
        if len(points) != 1:
            raise ValueError(f"a Dot has one coordinate (got {len(points)})")
        return {"type": "Point", "coordinates": points[0]}
    if kind == "PointSet":
        return {"type": "MultiPoint", "coordinates": points}
    if kind in POLYGON_TYPES:
        if len(points) < 3:
            raise ValueError(f"a {kind} needs at least 3 coordinates (got {len(points)})")
        return {"type": "Polygon", "coordinates": [points + [points[0]]]}
    raise ValueError(f"annotation type {kind!r} is not a region or marker; imported types: Dot, PointSet, {', '.join(POLYGON_TYPES)}")


def read_asap_xml(data: bytes, width: int, height: int, classes: Sequence[AnnotationClass]) -> ParsedFile:
    """Every annotation of an ASAP XML file checked against the slide and the workspace's classes.

    Raises ``ASAPFileError`` when the file as a whole cannot be read. A DOCTYPE is refused: annotation files never
    need one, and entity expansion is how an XML file is made to exhaust memory."""
    if b"<!DOCTYPE" in data or b"<!ENTITY" in data:
        raise ASAPFileError("it declares a DOCTYPE or entities, which ASAP files never do; refused")
    try:
        root = ET.fromstring(data)
    except ET.ParseError as exc:
        raise ASAPFileError(f"it is not well-formed XML ({exc})") from None
    if root.tag != "ASAP_Annotations":
        raise ASAPFileError(f"its root element is <{root.tag}>, not <ASAP_Annotations>")
    annotations = root.findall("./Annotations/Annotation")
    reader = FileReader(width, height, classes)
    reader.total = len(annotations)
    for index, annotation in enumerate(annotations, 1):
        name = annotation.get("Name", "")
        label = f"annotation {index}" + (f" ({name[:40]!r})" if name else "")
        group = annotation.get("PartOfGroup", "None")
        try:
            geometry = _geometry(annotation.get("Type", ""), _coordinates(annotation))
        except ValueError as exc:
            reader.refuse(label, str(exc))
            continue
        reader.add(label, geometry, None if group == "None" else group, "annotation", name)
    return reader.finish()
