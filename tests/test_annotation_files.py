"""QuPath GeoJSON and ASAP XML files: what is read, what is repaired, and a message per refused feature."""

from __future__ import annotations

import json

import pytest
import shapely
from shapely.geometry import shape

from core.annotations.asap import ASAPFileError, read_asap_xml
from core.annotations.geometry import check_geometry
from core.annotations.qupath import GeoJSONFileError, read_geojson
from core.workspace import DEFAULT_ANNOTATION_CLASSES

W, H = 5000, 4000
CLASSES = DEFAULT_ANNOTATION_CLASSES


def qupath_feature(geometry: dict, class_name: str | None = "tumour pattern 4", object_type: str = "annotation", **props) -> dict:
    """A feature as QuPath 0.4+ writes it (PathObjectTypeAdapters / GsonTools.PathClassTypeAdapter)."""
    properties: dict = {"objectType": object_type, **props}
    if class_name is not None:
        colour = next((list(c.color) for c in CLASSES if c.name == class_name), [1, 2, 3])
        properties["classification"] = {"name": class_name, "color": colour}
    return {"type": "Feature", "id": "6f1c2f4e-0b1a-4a44-9d7e-3f1c2b7a9e10", "geometry": geometry, "properties": properties}


def collection(*features: dict) -> str:
    return json.dumps({"type": "FeatureCollection", "features": list(features)})


def polygon(*rings: list) -> dict:
    return {"type": "Polygon", "coordinates": [list(r) for r in rings]}


SQUARE = [[100, 100], [300, 100], [300, 300], [100, 300], [100, 100]]
BOWTIE = [[100, 100], [300, 300], [300, 100], [100, 300], [100, 100]]
FOLDED = [[100, 100], [200, 100], [300, 100], [100, 100]]


def read(*features: dict):
    return read_geojson(collection(*features), W, H, CLASSES)


def test_polygons_with_holes_multipolygons_and_points_are_read_as_written():
    hole = [[150, 150], [150, 250], [250, 250], [250, 150], [150, 150]]
    multi = {"type": "MultiPolygon", "coordinates": [[SQUARE, hole], [[[1000, 1000], [1200, 1000], [1100, 1200.5], [1000, 1000]]]]}
    parsed = read(qupath_feature(polygon(SQUARE, hole), name="focus A", metadata={"comment": "cribriform"}),
                  qupath_feature(multi, "tumour pattern 5"),
                  qupath_feature({"type": "Point", "coordinates": [10.25, 20.5]}, "artefact"),
                  qupath_feature({"type": "MultiPoint", "coordinates": [[1, 2], [3, 4]]}, "benign", "detection"))
    assert parsed.refused == [] and parsed.repaired == [] and parsed.total == 4
    first, second, point, points = parsed.drafts
    assert (first.class_name, first.name, first.comment, first.object_type) == ("tumour pattern 4", "focus A", "cribriform", "annotation")
    assert shape(first.geometry).area == 200 * 200 - 100 * 100
    assert shape(second.geometry).equals_exact(shape(multi), 0)
    assert point.geometry == {"type": "Point", "coordinates": [10.25, 20.5]}
    assert points.object_type == "detection" and len(shape(points.geometry).geoms) == 2


def test_classification_forms_qupath_reads():
    """A plain string, and ``names`` (a derived class) joined as QuPath's PathClass.toString joins them."""
    classes = [*CLASSES, CLASSES[0].model_copy(update={"name": "Tumor: Positive"})]
    as_string = qupath_feature(polygon(SQUARE), None, classification="benign")
    derived = qupath_feature(polygon(SQUARE), None, classification={"names": ["Tumor", "Positive"], "color": [200, 0, 0]})
    parsed = read_geojson(collection(as_string, derived), W, H, classes)
    assert [d.class_name for d in parsed.drafts] == ["benign", "Tumor: Positive"]
    # QuPath's export without FEATURE_COLLECTION is a bare array of features; absent objectType means annotation.
    bare = read_geojson(json.dumps([{"type": "Feature", "geometry": polygon(SQUARE), "properties": {"classification": "benign"}}]),
                        W, H, CLASSES)
    assert bare.refused == [] and bare.drafts[0].object_type == "annotation"


def test_a_self_intersecting_ring_is_repaired_into_its_lobes_and_says_so():
    parsed = read(qupath_feature(polygon(BOWTIE)))
    assert parsed.refused == []
    (note,) = parsed.repaired
    assert note.startswith("feature 1 (id 6f1c2f4e") and "repaired" in note and "Self-intersection[200 200]" in note
    assert "into 2 simple polygons" in note
    repaired = shape(parsed.drafts[0].geometry)
    assert repaired.is_valid and repaired.geom_type == "MultiPolygon" and repaired.area == pytest.approx(2 * 100 * 200 / 2)


@pytest.mark.parametrize(("feature", "message"), [
    (qupath_feature(polygon(FOLDED)), "refused: the ring is not a valid polygon (Self-intersection"),
    (qupath_feature(polygon([[4900, 100], [5100, 100], [5000, 300], [4900, 100]])),
     "coordinates outside the slide: x 4900 to 5100, y 100 to 300, but the slide is 5000 x 4000 pixels"),
    (qupath_feature(polygon([[-1, 0], [10, 0], [10, 10], [-1, 0]])), "coordinates outside the slide"),
    (qupath_feature(polygon(SQUARE), "Tumor"), "class 'Tumor' is not one of this workspace's annotation classes (tumour pattern 3,"),
    (qupath_feature(polygon(SQUARE), None), "has no class"),
    (qupath_feature({"type": "LineString", "coordinates": [[0, 0], [1, 1]]}), "geometry type 'LineString' is not a region"),
    (qupath_feature(polygon([[0, 0], [1, 1], [0, 0]])), "coordinates are not a valid Polygon"),
    (qupath_feature({"type": "Polygon", "coordinates": "0 0 1 1"}), "coordinates are not a valid Polygon"),
    (qupath_feature(polygon([["0", 0], [10, 0], [10, 10], ["0", 0]])), "a coordinate is not a number ('0')"),  # not stored as text
    (qupath_feature(polygon([[True, 0], [10, 0], [10, 10], [True, 0]])), "a coordinate is not a number (True)"),
    (qupath_feature(polygon(SQUARE), object_type="cell"), "objectType 'cell' is not imported"),
    ({"type": "Feature", "geometry": None, "properties": {"classification": "benign"}}, "feature 1: has no geometry object"),
    ({"type": "Point"}, "feature 1: is not a GeoJSON Feature object"),
])
def test_each_bad_feature_gets_its_message(feature, message):
    parsed = read(qupath_feature(polygon(SQUARE), "benign"), feature)
    assert len(parsed.drafts) == 1 and len(parsed.refused) == 1
    assert parsed.refused[0].startswith("feature 2") or message.startswith("feature 1")
    assert message.removeprefix("feature 1: ") in parsed.refused[0]


def test_non_finite_coordinates_are_refused():
    with pytest.raises(ValueError, match="not a finite number"):
        check_geometry({"type": "Point", "coordinates": [float("nan"), 1.0]}, W, H)


@pytest.mark.parametrize(("text", "message"), [
    ('{"type": "FeatureCollection", "features": [', "not valid JSON (line 1, column 44"),
    ('{"type": "Topology"}', "not GeoJSON features"),
    (b"\xff\xfe{}", "not UTF-8"),
])
def test_a_file_that_is_not_geojson_is_refused_whole(text, message):
    with pytest.raises(GeoJSONFileError, match=message.replace("(", r"\(")):
        read_geojson(text, W, H, CLASSES)


ASAP = b"""<?xml version="1.0"?>
<ASAP_Annotations>
  <Annotations>
    <Annotation Name="Annotation 0" Type="Polygon" PartOfGroup="tumour pattern 3" Color="#F4FA58">
      <Coordinates>
        <Coordinate Order="2" X="300" Y="300" />
        <Coordinate Order="0" X="100" Y="100" />
        <Coordinate Order="1" X="300.5" Y="100" />
        <Coordinate Order="3" X="100" Y="300" />
      </Coordinates>
    </Annotation>
    <Annotation Name="Annotation 1" Type="Rectangle" PartOfGroup="benign" Color="#64FE2E">
      <Coordinates>
        <Coordinate Order="0" X="1000" Y="1000" /><Coordinate Order="1" X="1100" Y="1000" />
        <Coordinate Order="2" X="1100" Y="1050" /><Coordinate Order="3" X="1000" Y="1050" />
      </Coordinates>
    </Annotation>
    <Annotation Name="Annotation 2" Type="Dot" PartOfGroup="artefact" Color="#F4FA58">
      <Coordinates><Coordinate Order="0" X="42.5" Y="17" /></Coordinates>
    </Annotation>
    <Annotation Name="Annotation 3" Type="Spline" PartOfGroup="tumour pattern 3" Color="#F4FA58">
      <Coordinates>
        <Coordinate Order="0" X="2000" Y="2000" /><Coordinate Order="1" X="2100" Y="2000" /><Coordinate Order="2" X="2050" Y="2100" />
      </Coordinates>
    </Annotation>
  </Annotations>
  <AnnotationGroups>
    <Group Name="tumour pattern 3" PartOfGroup="None" Color="#ff0000"><Attributes /></Group>
    <Group Name="benign" PartOfGroup="None" Color="#00ff00"><Attributes /></Group>
    <Group Name="artefact" PartOfGroup="None" Color="#888888"><Attributes /></Group>
  </AnnotationGroups>
</ASAP_Annotations>"""


def test_asap_xml_imports_in_coordinate_order():
    parsed = read_asap_xml(ASAP, W, H, CLASSES)
    assert parsed.refused == [] and parsed.total == 4
    poly, rect, dot, spline = parsed.drafts
    assert poly.class_name == "tumour pattern 3" and poly.name == "Annotation 0"
    assert poly.geometry["coordinates"][0] == [[100, 100], [300.5, 100], [300, 300], [100, 300], [100, 100]]
    assert shape(rect.geometry).area == 100 * 50 and rect.class_name == "benign"
    assert dot.geometry == {"type": "Point", "coordinates": [42.5, 17.0]}
    assert shapely.get_num_coordinates(shape(spline.geometry)) == 4


@pytest.mark.parametrize(("replace", "message"), [
    ((b'PartOfGroup="benign"', b'PartOfGroup="None"'), "annotation 2 ('Annotation 1'): has no class"),
    ((b'PartOfGroup="benign"', b'PartOfGroup="stroma"'), "annotation 2 ('Annotation 1'): class 'stroma' is not one of"),
    ((b'Type="Dot"', b'Type="Measurement"'), "annotation 3 ('Annotation 2'): annotation type 'Measurement' is not a region"),
    ((b'Order="3" X="100"', b'Order="5" X="100"'), "annotation 1 ('Annotation 0'): the Coordinate Order values must be 0 to 3"),
    ((b'X="300.5"', b'X="wide"'), "lacks a whole-number Order or a numeric X and Y"),
    ((b'X="1100" Y="1050"', b'X="9100" Y="1050"'), "annotation 2 ('Annotation 1'): coordinates outside the slide"),
])
def test_each_bad_asap_annotation_gets_its_message(replace, message):
    parsed = read_asap_xml(ASAP.replace(*replace), W, H, CLASSES)
    assert len(parsed.refused) == 1 and message in parsed.refused[0] and len(parsed.drafts) == 3


@pytest.mark.parametrize(("data", "message"), [
    (ASAP[:200], "not well-formed XML"),
    (b"<Annotations/>", "root element is <Annotations>"),
    (b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaa">]><ASAP_Annotations/>', "DOCTYPE"),
])
def test_a_file_that_is_not_asap_xml_is_refused_whole(data, message):
    with pytest.raises(ASAPFileError, match=message):
        read_asap_xml(data, W, H, CLASSES)


def test_the_one_call_parse_and_the_feature_by_feature_parse_agree():
    """A FeatureCollection GEOS reads whole, the same features as a bare array (parsed one by one), and the same with
    one feature GEOS cannot read (every geometry then parsed apart) give the same regions, notes and messages."""
    features = [qupath_feature(polygon(SQUARE)), qupath_feature(polygon(BOWTIE), "benign"),
                qupath_feature(polygon([[4900, 100], [5100, 100], [5000, 300], [4900, 100]])),
                qupath_feature({"type": "MultiPoint", "coordinates": [[1, 2], [3, 4]]}, "artefact")]
    whole = read_geojson(collection(*features), W, H, CLASSES)
    array = read_geojson(json.dumps(features), W, H, CLASSES)
    broken = read_geojson(collection(*features, {"type": "Feature", "geometry": None, "properties": {}}), W, H, CLASSES)
    assert whole.drafts == array.drafts == broken.drafts and len(whole.drafts) == 3
    assert whole.repaired == array.repaired == broken.repaired and len(whole.repaired) == 1
    assert whole.refused == array.refused == broken.refused[:1] and "outside the slide" in whole.refused[0]
