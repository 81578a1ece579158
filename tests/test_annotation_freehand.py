"""Freehand strokes and moved regions, on hand-made strokes: simplification to one screen pixel at the stroke's zoom,
too-small and self-crossing strokes, and a move saved as a new version translated exactly."""

from __future__ import annotations

import math

import numpy as np
import pytest
import shapely
from shapely.geometry import Point, shape

from core.annotations.editing import move_region, save_freehand_region
from core.annotations.freehand import MIN_SCREEN_AREA, freehand_outline
from core.annotations.geometry import RegionRefused
from core.errors import PathReviewError
from core.store.annotations import RegionDraft, add_regions, region_history
from core.store.schema import AuditEvent, Patient, Slide
from core.workspace import WorkspaceConfig, open_workspace, write_workspace_config

MAX_ZOOM = 11  # a slide of up to 2048 px


def stroke(screen_points: list[tuple[float, float]], zoom: int, origin: tuple[float, float] = (0.0, 0.0)) -> dict:
    """A stroke as the browser sends it: points in screen pixels at ``zoom`` from ``origin`` (level-0 px), in map
    units, the first point repeated to close it."""
    pixel = 2.0 ** (MAX_ZOOM - zoom)  # level-0 px per screen px
    ring = [[(origin[0] + x * pixel) / 2**MAX_ZOOM, -(origin[1] + y * pixel) / 2**MAX_ZOOM] for x, y in screen_points]
    return {"type": "Polygon", "coordinates": [[*ring, ring[0]]]}


def hand_circle(n: int = 1500, radius: float = 150, jitter: float = 0.4, seed: int = 0) -> list[tuple[float, float]]:
    """A circle traced by hand: ``n`` points, each off the circle by up to ``jitter`` screen pixels."""
    rng = np.random.default_rng(seed)
    angles = np.linspace(0, 2 * np.pi, n, endpoint=False)
    r = radius + rng.uniform(-jitter, jitter, n)
    return list(zip(300 + r * np.cos(angles), 300 + r * np.sin(angles), strict=True))


def test_a_long_stroke_is_simplified_to_one_screen_pixel_at_its_zoom():
    points = hand_circle()
    drawn = shapely.Polygon(points)
    for zoom in (MAX_ZOOM, MAX_ZOOM - 2):
        pixel = 2.0 ** (MAX_ZOOM - zoom)
        outline = freehand_outline(stroke(points, zoom), MAX_ZOOM, zoom)
        assert (outline.points, outline.tolerance, outline.repair) == (1500, pixel, None)
        assert outline.geometry.geom_type == "Polygon" and outline.geometry.is_valid
        assert outline.vertices < 60  # 1,500 points of a 150 px circle need a few dozen vertices at one pixel
        # No point of the stroke is further than a screen pixel from the stored outline, in level-0 pixels.
        drawn_level0 = shapely.affinity.scale(drawn, pixel, pixel, origin=(0, 0))
        assert outline.geometry.hausdorff_distance(drawn_level0) <= pixel * (1 + 1e-9)
        assert outline.geometry.area == pytest.approx(drawn_level0.area, rel=0.01)


def test_the_same_gesture_keeps_more_vertices_drawn_zoomed_in():
    # The same screen stroke drawn zoomed out covers 4x the slide; its outline keeps the same shape on screen.
    near = freehand_outline(stroke(hand_circle(radius=40), MAX_ZOOM), MAX_ZOOM, MAX_ZOOM)
    far = freehand_outline(stroke(hand_circle(radius=40), MAX_ZOOM - 2), MAX_ZOOM, MAX_ZOOM - 2)
    assert far.geometry.area == pytest.approx(16 * near.geometry.area, rel=1e-6)
    assert far.vertices == near.vertices
    # A stroke of 40 screen px drawn at full resolution holds fewer vertices than a 160 px one at the same zoom.
    big = freehand_outline(stroke(hand_circle(radius=160), MAX_ZOOM), MAX_ZOOM, MAX_ZOOM)
    assert near.vertices < big.vertices


@pytest.mark.parametrize("points", [
    [(10, 10)],  # a click
    [(10, 10), (12, 10)],  # a dash
    [(10, 10), (13, 10), (13, 13), (10, 13)],  # 9 square screen pixels
    [(0, 0), (100, 0), (0, 0.1)],  # a sliver of 5 square screen pixels
])
def test_a_stroke_that_is_too_small_is_refused(points):
    with pytest.raises(RegionRefused, match=f"the freehand stroke is too small: it encloses .* less than {MIN_SCREEN_AREA:.0f}"):
        freehand_outline(stroke(points, MAX_ZOOM - 1), MAX_ZOOM, MAX_ZOOM - 1)


def test_a_figure_of_eight_is_repaired_into_its_two_lobes():
    t = np.linspace(0, 2 * np.pi, 400, endpoint=False)
    eight = list(zip(300 + 100 * np.sin(t), 300 + 50 * np.sin(2 * t), strict=True))  # crosses itself at (300, 300)
    outline = freehand_outline(stroke(eight, MAX_ZOOM), MAX_ZOOM, MAX_ZOOM)
    assert outline.geometry.geom_type == "MultiPolygon" and len(outline.geometry.geoms) == 2 and outline.geometry.is_valid
    assert outline.repair.startswith("repaired: the stroke crossed itself (Self-intersection[300 300]); split at its crossings")
    assert "2 parts kept" in outline.repair
    assert [p.centroid.x < 300 for p in outline.geometry.geoms] in ([True, False], [False, True])


def test_the_little_loop_of_a_crossing_is_dropped():
    # A 200 px square whose stroke twists once on its way down the left edge: the segments (0, 8)-(-4, 4) and
    # (-4, 8)-(0, 4) cross at (-2, 6), closing a loop of 4 square screen pixels outside the square.
    square = [(0, 0), (200, 0), (200, 200), (0, 200), (0, 8), (-4, 4), (-4, 8), (0, 4)]
    outline = freehand_outline(stroke(square, MAX_ZOOM, (500, 500)), MAX_ZOOM, MAX_ZOOM)
    assert outline.geometry.geom_type == "Polygon" and outline.geometry.is_valid
    assert "(Self-intersection[498 506])" in outline.repair and "1 part kept, 1 smaller than 25 square screen pixels dropped" in outline.repair
    assert outline.geometry.area == pytest.approx(200 * 200, rel=0.02)


def test_a_stroke_folding_back_on_itself_is_refused():
    with pytest.raises(RegionRefused, match=r"crosses itself \(.*\) and no part of it encloses 25 square screen pixels"):
        freehand_outline(stroke([(0, 0), (100, 0), (200, 0), (100, 0)], MAX_ZOOM), MAX_ZOOM, MAX_ZOOM)


@pytest.mark.parametrize("zoom", [None, "11", True, -1, MAX_ZOOM + 2, math.nan])
def test_a_stroke_needs_the_zoom_it_was_drawn_at(zoom):
    with pytest.raises(RegionRefused, match="without the zoom it was drawn at"):
        freehand_outline(stroke(hand_circle(), MAX_ZOOM), MAX_ZOOM, zoom)


def test_a_stroke_that_is_not_one_outline_is_refused():
    with pytest.raises(RegionRefused, match="one closed outline"):
        freehand_outline({"type": "Point", "coordinates": [0, 0]}, MAX_ZOOM, MAX_ZOOM)
    with pytest.raises(RegionRefused, match="not x, y numbers"):
        freehand_outline({"type": "Polygon", "coordinates": [[["a", 1], [2, 2], [3, 1], ["a", 1]]]}, MAX_ZOOM, MAX_ZOOM)


@pytest.fixture
def workspace(tmp_path, empty_store):
    write_workspace_config(tmp_path, WorkspaceConfig(name="freehand", database_url=empty_store.url))
    ws = open_workspace(tmp_path)
    with ws.store.session() as s:
        s.add(Patient(id="P1"))
        s.add(Slide(id="S1", patient_id="P1", file="s1.tif", mpp=0.5, width=1000, height=800))
    yield ws
    ws.store.dispose()


def test_a_freehand_region_is_saved_cut_to_the_slide(workspace):
    # A circle of 150 screen px at zoom 10 (300 level-0 px) centred 100 px from the slide's left edge.
    region, outline = save_freehand_region(workspace, "S1", stroke(hand_circle(), MAX_ZOOM - 1, (-500, 0)), MAX_ZOOM, MAX_ZOOM - 1,
                                           "benign", "lasso", "ann")
    assert (region.version, region.user, region.class_name, region.comment) == (1, "ann", "benign", "lasso")
    stored = shape(region.geometry)
    assert stored.bounds[0] == 0 and stored.is_valid and stored.area < outline.geometry.area  # the part past the edge is cut
    assert stored.contains(Point(100, 600))
    with pytest.raises(PathReviewError, match="the freehand outline was not saved: the freehand stroke is too small"):
        save_freehand_region(workspace, "S1", stroke([(10, 10), (12, 10), (12, 12)], MAX_ZOOM), MAX_ZOOM, MAX_ZOOM, "benign", "", "ann")
    assert len(region_history(workspace.store, region.region_id)) == 1


def test_a_moved_region_is_a_new_version_translated_exactly(workspace):
    holed = {"type": "Polygon", "coordinates": [[[100, 100], [400, 100], [400, 300], [100, 300], [100, 100]],
                                                [[200, 150], [250, 150], [250, 200], [200, 200], [200, 150]]]}
    region, = add_regions(workspace.store, "S1", [RegionDraft(holed, "artefact", comment="fold")], "ann")
    # A drag of 40 x 25 screen px at zoom 9 is 160 x 100 level-0 px: [dlng, dlat] = [40, -25] / 2^9.
    moved = move_region(workspace, "S1", region.region_id, 1, [40 / 2**9, -25 / 2**9], MAX_ZOOM, "ann")
    assert (moved.version, moved.class_name, moved.comment) == (2, "artefact", "fold")
    assert moved.geometry["coordinates"] == [[[x + 160, y + 100] for x, y in ring] for ring in holed["coordinates"]]  # holes too, exactly
    assert [v.version for v in region_history(workspace.store, region.region_id)] == [2, 1]
    with workspace.store.session() as s:
        assert [(e.user, e.action) for e in s.query(AuditEvent).order_by(AuditEvent.id)] == [("ann", "annotation_saved")] * 2
    with pytest.raises(PathReviewError, match="it would reach past the slide's edge"):
        move_region(workspace, "S1", region.region_id, 2, [500 / 2**11, 0], MAX_ZOOM, "ann")
    with pytest.raises(PathReviewError, match="ann's; you can change your own"):
        move_region(workspace, "S1", region.region_id, 2, [1 / 2**11, 0], MAX_ZOOM, "bob")
    with pytest.raises(PathReviewError, match="without its offset"):
        move_region(workspace, "S1", region.region_id, 2, None, MAX_ZOOM, "ann")
    with pytest.raises(PathReviewError, match="changed region .* since you opened it"):
        move_region(workspace, "S1", region.region_id, 1, [1 / 2**11, 0], MAX_ZOOM, "ann")  # version 1 is stale
    assert [v.version for v in region_history(workspace.store, region.region_id)] == [2, 1]
