"""Importing a file into the case store and exporting it back: QuPath's layout survives the round trip, a bad
feature refuses the whole file unless skipping is asked for, a cohort exports as a zip of one file per slide.

Every test runs on a fresh SQLite file and on a fresh PostgreSQL database (``store_url`` in tests/services.py)."""

from __future__ import annotations

import io
import json
import re
import zipfile

import pytest
from shapely.geometry import shape
from sqlalchemy import select

from core.annotations.transfer import AnnotationImportError, export_cohort, export_slide, import_annotations
from core.errors import NotFoundError
from core.store.annotations import current_regions
from core.store.schema import AnnotationVersion, AuditEvent, Patient, Slide
from core.workspace import Workspace, WorkspaceConfig
from tests.test_annotation_files import ASAP, BOWTIE, SQUARE, collection, polygon, qupath_feature


@pytest.fixture
def workspace(empty_store, tmp_path):
    with empty_store.session() as s:
        s.add(Patient(id="P001"))
        s.add_all([Slide(id=sid, patient_id="P001", file=f"{sid}.tif", mpp=0.25, width=5000, height=4000) for sid in ("S1", "S/2")])
    return Workspace(tmp_path, WorkspaceConfig(name="test"), empty_store, {})


def _rows(workspace) -> tuple[int, int]:
    with workspace.store.session() as s:
        return len(s.scalars(select(AnnotationVersion)).all()), len(s.scalars(select(AuditEvent)).all())


def qupath_file() -> dict:
    """QuPath's layout: holes, a multipolygon, classifications with colours, a detection, points, 3-decimal input."""
    hole = [[150.125, 150], [150, 250], [250, 250.004], [250, 150], [150.125, 150]]
    second = [[[1000, 1000], [1200.333, 1000], [1100, 1200.5], [1000, 1000]]]
    return {"type": "FeatureCollection", "features": [
        qupath_feature(polygon(SQUARE, hole), "tumour pattern 4", name="focus A", metadata={"comment": "cribriform glands"}),
        qupath_feature({"type": "MultiPolygon", "coordinates": [[SQUARE, hole], second]}, "tumour pattern 5"),
        qupath_feature({"type": "Point", "coordinates": [10.256, 20.5]}, "artefact"),
        qupath_feature({"type": "MultiPoint", "coordinates": [[1, 2], [3, 4]]}, "benign", "detection"),
    ]}


def test_a_qupath_file_round_trips_equal_up_to_coordinate_rounding(workspace):
    original = qupath_file()
    result = import_annotations(workspace, "S1", "slide1.geojson", json.dumps(original).encode(), "alice")
    assert len(result.imported) == 4 and result.skipped == [] and result.repaired == []
    exported = json.loads(export_slide(workspace, "S1"))
    assert exported["type"] == "FeatureCollection" and len(exported["features"]) == 4
    for before, after in zip(original["features"], exported["features"], strict=True):
        assert after["type"] == "Feature" and after["id"] in {r.region_id for r in result.imported}
        assert shape(after["geometry"]).equals_exact(shape(before["geometry"]), tolerance=0.005)
        assert after["geometry"]["type"] == before["geometry"]["type"]
        for key in ("objectType", "classification", "name"):
            assert after["properties"].get(key) == before["properties"].get(key)
        assert after["properties"]["metadata"]["author"] == "alice"
        assert after["properties"]["metadata"].get("comment") == before["properties"].get("metadata", {}).get("comment")
    assert exported["features"][2]["geometry"]["coordinates"] == [10.26, 20.5]  # 2 decimals, as QuPath writes
    again = import_annotations(workspace, "S1", "again.geojson", json.dumps(exported).encode(), "bob")
    assert [json.dumps(r.geometry) for r in again.imported] == [json.dumps(f["geometry"]) for f in exported["features"]]


def test_a_bad_feature_refuses_the_whole_file_unless_skipping_is_asked(workspace):
    data = collection(qupath_feature(polygon(SQUARE)), qupath_feature(polygon(SQUARE), "Tumor"),
                      qupath_feature(polygon([[0, 0], [6000, 0], [0, 10], [0, 0]])), qupath_feature(polygon(BOWTIE))).encode()
    with pytest.raises(AnnotationImportError, match=r"slide1.geojson: 2 of 4 features refused, nothing was imported") as caught:
        import_annotations(workspace, "S1", "slide1.geojson", data, "alice")
    assert len(caught.value.problems) == 2 and "class 'Tumor'" in caught.value.problems[0]
    assert "outside the slide" in caught.value.problems[1]
    assert _rows(workspace) == (0, 0)
    result = import_annotations(workspace, "S1", "slide1.geojson", data, "alice", skip_invalid=True)
    assert len(result.imported) == 2 and len(result.skipped) == 2 and result.repaired[0].startswith("feature 4")
    assert _rows(workspace) == (2, 2)


@pytest.mark.parametrize(("name", "data", "message"), [
    ("a.geojson", b"{not json", "a.geojson: it is not valid JSON (line 1, column 2"),
    ("a.txt", b"{}", "unknown annotation format '.txt'"),
    ("a.xml", b"<ASAP_Annotations><Annotations/></ASAP_Annotations>", "a.xml: no region to import (0 features)"),
])
def test_unreadable_files_write_nothing(workspace, name, data, message):
    with pytest.raises(AnnotationImportError, match=re.escape(message)):
        import_annotations(workspace, "S1", name, data, "alice")
    assert _rows(workspace) == (0, 0)


def test_unknown_slide_is_refused(workspace):
    with pytest.raises(NotFoundError, match="no slide 'S9'"):
        import_annotations(workspace, "S9", "a.xml", ASAP, "alice")


def test_asap_import_and_cohort_zip(workspace):
    import_annotations(workspace, "S1", "s1.xml", ASAP, "alice")
    import_annotations(workspace, "S/2", "s2.geojson", collection(qupath_feature(polygon(SQUARE))).encode(), "bob")
    assert [r.class_name for r in current_regions(workspace.store, "S1")] == ["tumour pattern 3", "benign", "artefact",
                                                                                "tumour pattern 3"]
    with zipfile.ZipFile(io.BytesIO(export_cohort(workspace))) as archive:
        assert sorted(archive.namelist()) == ["S1.geojson", "S_2.geojson"]
        s1 = json.loads(archive.read("S1.geojson"))
    assert [f["properties"]["classification"]["color"] for f in s1["features"]][:2] == [[255, 200, 0], [0, 160, 80]]
