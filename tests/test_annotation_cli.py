"""``run_dashboard.py annotations import|export`` as a user runs it, on a small workspace with a SQLite case store."""

from __future__ import annotations

import io
import json
import zipfile

import pytest

from core.store.annotations import current_regions
from core.store.database import open_store
from core.store.schema import Patient, Slide
from core.workspace import WorkspaceConfig, write_workspace_config
from tests.helpers import assert_one_line_error, run_cli
from tests.test_annotation_files import ASAP, SQUARE, collection, polygon, qupath_feature

pytestmark = pytest.mark.store  # a real case store, written by subprocesses


@pytest.fixture
def workspace_dir(tmp_path):
    root = tmp_path / "workspace"
    root.mkdir()
    write_workspace_config(root, WorkspaceConfig(name="annotations test"))
    store = open_store(f"sqlite:///{root / 'cases.db'}")
    with store.session() as s:
        s.add(Patient(id="P001"))
        s.add_all([Slide(id=sid, patient_id="P001", file=f"{sid}.tif", mpp=0.25, width=5000, height=4000) for sid in ("S1", "S2")])
    store.dispose()
    return root


def _regions(root, slide_id):
    store = open_store(f"sqlite:///{root / 'cases.db'}")
    try:
        return current_regions(store, slide_id)
    finally:
        store.dispose()


def test_import_then_export_a_slide_and_the_cohort(workspace_dir, tmp_path):
    source = tmp_path / "s1.geojson"
    source.write_text(collection(qupath_feature(polygon(SQUARE), name="focus"), qupath_feature(polygon(SQUARE), "benign")))
    (tmp_path / "s2.xml").write_bytes(ASAP)
    done = run_cli("annotations", "import", "--workspace", str(workspace_dir), "--slide", "S1", str(source), "--user", "alice")
    assert done.returncode == 0, done.stderr
    assert "imported 2 of 2 regions from s1.geojson onto slide S1 as alice" in done.stdout
    assert run_cli("annotations", "import", "--workspace", str(workspace_dir), "--slide", "S2", str(tmp_path / "s2.xml"),
                   "--user", "bob").returncode == 0
    assert [r.user for r in _regions(workspace_dir, "S2")] == ["bob"] * 4
    out = tmp_path / "out" / "s1.geojson"
    assert run_cli("annotations", "export", "--workspace", str(workspace_dir), "--slide", "S1", str(out)).returncode == 0
    exported = json.loads(out.read_text())
    assert [f["properties"].get("name") for f in exported["features"]] == ["focus", None]
    cohort = tmp_path / "cohort.zip"
    assert run_cli("annotations", "export", "--workspace", str(workspace_dir), "--cohort", str(cohort)).returncode == 0
    with zipfile.ZipFile(io.BytesIO(cohort.read_bytes())) as archive:
        assert sorted(archive.namelist()) == ["S1.geojson", "S2.geojson"]


def test_a_refused_file_is_one_line_naming_each_feature_and_writes_nothing(workspace_dir, tmp_path):
    bad = tmp_path / "bad.geojson"
    bad.write_text(collection(qupath_feature(polygon(SQUARE)), qupath_feature(polygon(SQUARE), "Tumor"),
                              qupath_feature(polygon([[0, 0], [9000, 0], [0, 10], [0, 0]]))))
    result = run_cli("annotations", "import", "--workspace", str(workspace_dir), "--slide", "S1", str(bad), "--user", "alice")
    assert_one_line_error(result, "bad.geojson: 2 of 3 features refused, nothing was imported (skip them with --skip-invalid)")
    assert "feature 2 (id 6f1c2f4e-0b1a-4a44-9d7e-3f1c2b7a9e10): class 'Tumor'" in result.stderr
    assert "feature 3 (id 6f1c2f4e-0b1a-4a44-9d7e-3f1c2b7a9e10): coordinates outside the slide" in result.stderr
    assert _regions(workspace_dir, "S1") == []
    skipped = run_cli("annotations", "import", "--workspace", str(workspace_dir), "--slide", "S1", str(bad), "--user", "alice",
                      "--skip-invalid")
    assert skipped.returncode == 0 and "imported 1 of 3 regions" in skipped.stdout and skipped.stdout.count("skipped feature") == 2
    assert len(_regions(workspace_dir, "S1")) == 1


def test_other_user_errors_are_one_line(workspace_dir, tmp_path):
    (tmp_path / "a.geojson").write_text("{not json")
    (tmp_path / "ok.geojson").write_text(collection(qupath_feature(polygon(SQUARE))))
    cases = [
        (("--slide", "S1", str(tmp_path / "a.geojson")), "a.geojson: it is not valid JSON (line 1, column 2"),
        (("--slide", "S9", str(tmp_path / "ok.geojson")), "no slide 'S9' in this workspace"),
        (("--slide", "S1", str(tmp_path / "missing.geojson")), "cannot read"),
    ]
    for args, expected in cases:
        assert_one_line_error(run_cli("annotations", "import", "--workspace", str(workspace_dir), "--user", "alice", *args), expected)
    assert_one_line_error(run_cli("annotations", "export", "--workspace", str(workspace_dir), "--slide", "S9", str(tmp_path / "x.geojson")),
                          "no slide 'S9'")
