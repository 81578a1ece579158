"""The annotation layer through the app: the server refuses drawing to a viewer and audits a reviewer's change; the
viewer's regions come as vector features or region tiles; an exported slide figure carries the shown regions."""

from __future__ import annotations

import base64
import io
import json

import numpy as np
import pytest
from PIL import Image
from shapely.geometry import box, shape

from core.annotations.map_coordinates import to_map
from core.export.case_figures import CaseView, case_figure
from core.store.annotations import RegionDraft, add_regions, current_regions
from core.store.schema import AuditEvent
from core.workspace import open_workspace
from dashboard.app import create_app
from tests.helpers import ACCOUNTS, copy_demo, post_callback, sign_in

SLIDE = "P001-S1"


def rect(x0: float, y0: float, x1: float, y1: float) -> dict:
    return {"type": "Polygon", "coordinates": [[[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]]]}


@pytest.fixture(scope="module")
def workspace(demo_workspace, tmp_path_factory):
    """A copy of the demo with one slide file: these tests write regions and audit rows."""
    ws = open_workspace(copy_demo(demo_workspace, tmp_path_factory.mktemp("annotations") / "ws", (SLIDE,)))
    yield ws
    ws.store.dispose()


@pytest.fixture(scope="module")
def app(workspace):
    return create_app(workspace)


def _draw(client, app, ctx: dict, geometry: dict, class_name: str = "tumour pattern 4"):
    drawn = {"type": "FeatureCollection", "features": [{"type": "Feature", "properties": {"op": "created", "shape": "polygon", "n": 1},
                                                        "geometry": to_map(geometry, ctx["max_zoom"])}]}
    return post_callback(client, app, "annotation-message.children", {("annotation-draw", "geojson"): drawn, ("annotation-class", "value"): class_name,
                                                                 ("annotation-comment", "value"): "drawn", ("slide-ctx", "data"): ctx},
                         ["annotation-draw.geojson"])


def test_a_viewer_cannot_draw_and_a_reviewers_drawing_is_stored_with_its_audit_row(app, workspace, slide_ctx):
    viewer = app.server.test_client()
    sign_in(viewer, "viewer")
    before = current_regions(workspace.store, SLIDE)
    refused = _draw(viewer, app, slide_ctx, rect(100, 100, 300, 200))
    assert refused.status_code == 403 and b"needs reviewer" in refused.data
    assert current_regions(workspace.store, SLIDE) == before
    reviewer = app.server.test_client()
    sign_in(reviewer, "reviewer")
    saved = _draw(reviewer, app, slide_ctx, rect(100, 100, 300, 200))
    assert saved.status_code == 200, saved.data
    after = current_regions(workspace.store, SLIDE)
    new = [r for r in after if r not in before]
    assert len(new) == 1 and (new[0].class_name, new[0].comment, new[0].author) == ("tumour pattern 4", "drawn", ACCOUNTS["reviewer"])
    assert shape(new[0].geometry).equals(box(100, 100, 300, 200))  # exactly where it was drawn, in level-0 pixels
    with workspace.store.session() as s:
        audit = s.query(AuditEvent).filter(AuditEvent.action == "annotation_saved").order_by(AuditEvent.id.desc()).first()
    assert (audit.user, audit.target, audit.detail["region"]) == (ACCOUNTS["reviewer"], SLIDE, new[0].region_id)
    # The viewer's region callback now sends it as a vector feature.
    shown = post_callback(reviewer, app, "annotation-vector.data", {("slide-map", "bounds"): None, ("annotation-authors", "value"): [ACCOUNTS["reviewer"]],
                                                                     ("annotation-stamp", "data"): 1, ("slide-ctx", "data"): slide_ctx},
                          ["annotation-stamp.data"])
    features = shown.get_json()["response"]["annotation-vector"]["data"]["features"]
    assert new[0].region_id in [f["id"] for f in features]


@pytest.fixture(scope="module")
def slide_ctx(workspace):
    from core.slides.tiles import TileService

    g = TileService(workspace).geometry(SLIDE)
    return {"slide_id": SLIDE, "max_zoom": g.max_zoom, "mpp": g.mpp, "width": g.width, "height": g.height}


def test_region_tiles_draw_the_shown_reviewers_outlines(app, workspace, slide_ctx):
    add_regions(workspace.store, SLIDE, [RegionDraft(rect(0, 0, 200, 200), "benign")], "tile-author")
    client = app.server.test_client()
    sign_in(client, "viewer")  # viewing is every role's
    z = slide_ctx["max_zoom"]
    tile = client.get(f"/slides/{SLIDE}/annotations/{z}/0/0.png?authors=tile-author")
    assert tile.status_code == 200 and tile.headers["Cache-Control"] == "private, no-store"
    pixels = np.asarray(Image.open(io.BytesIO(tile.data)))
    assert tuple(pixels[0, 100]) == (0, 160, 80, 255) and pixels[100, 100, 3] == 0  # the benign colour on the outline, clear inside
    hidden = np.asarray(Image.open(io.BytesIO(client.get(f"/slides/{SLIDE}/annotations/{z}/0/0.png?authors=someone-else").data)))
    assert hidden[:, :, 3].max() == 0
    assert client.get(f"/slides/{SLIDE}/annotations/{z}/999/0.png").status_code == 404
    assert client.get(f"/slides/NOPE/annotations/{z}/0/0.png").status_code == 404
    assert client.get(f"/slides/{SLIDE}/annotations/{z}/0/0.png?authors=" + "x" * 80).status_code == 400


def test_an_exported_slide_figure_shows_the_shown_layers(workspace):
    add_regions(workspace.store, SLIDE, [RegionDraft(rect(300, 300, 600, 500), "artefact")], "export-author")
    shown = case_figure(workspace, None, "slide", CaseView(patient_id="P001", slide_id=SLIDE, annotation_authors=["export-author"]))
    names = [t.name for t in shown.figure.data if t.type == "scatter" and t.name]
    assert "artefact" in names and "benign" not in names  # tile-author's layer is hidden
    every = case_figure(workspace, None, "slide", CaseView(patient_id="P001", slide_id=SLIDE))
    assert {"artefact", "benign"} <= {t.name for t in every.figure.data if t.type == "scatter"}


def _upload(client, app, ctx: dict, name: str, data: bytes):
    contents = "data:application/geo+json;base64," + base64.b64encode(data).decode()
    return post_callback(client, app, "annotation-message.children", {("annotation-upload", "contents"): contents, ("annotation-upload", "filename"): name,
                                                                 ("slide-ctx", "data"): ctx}, ["annotation-upload.contents"])


def test_an_uploaded_file_is_imported_whole_or_not_at_all(app, workspace, slide_ctx):
    client = app.server.test_client()
    sign_in(client, "reviewer")
    good = {"type": "Feature", "geometry": rect(10, 10, 60, 60), "properties": {"objectType": "annotation",
                                                                                "classification": {"name": "benign", "color": [0, 160, 80]}}}
    outside = {**good, "geometry": rect(10, 10, 60, 99_999)}
    unknown = {**good, "properties": {"classification": {"name": "mitosis"}}}
    before = len(current_regions(workspace.store, SLIDE))
    bad = _upload(client, app, slide_ctx, "bad.geojson", json.dumps({"type": "FeatureCollection", "features": [good, outside, unknown]}).encode())
    alert = json.dumps(bad.get_json()["response"]["annotation-message"]["children"])
    assert "feature 2" in alert and "outside the slide" in alert and "feature 3" in alert and "mitosis" in alert and "nothing was imported" in alert
    assert len(current_regions(workspace.store, SLIDE)) == before
    ok = _upload(client, app, slide_ctx, "good.geojson", json.dumps({"type": "FeatureCollection", "features": [good, good]}).encode())
    assert "Imported 2 regions from good.geojson" in json.dumps(ok.get_json()["response"]["annotation-message"]["children"])
    assert len(current_regions(workspace.store, SLIDE)) == before + 2
    viewer = app.server.test_client()
    sign_in(viewer, "viewer")
    assert _upload(viewer, app, slide_ctx, "good.geojson", b"{}").status_code == 403
