"""Reviewers' regions on the viewer: map coordinates, drawn shapes, inter-observer Dice and consensus, overlay tiles,
annotations as ground truth, and the regions a verdict names — against hand computations."""

from __future__ import annotations

import io
import math
from datetime import UTC, datetime

import numpy as np
import pytest
import shapely
from PIL import Image
from shapely.geometry import box

from core.annotations.agreement import consensus, dice, pairwise_dice, tumour_by_reviewer
from core.annotations.editing import describe_region, remove_region, reshape_region, save_drawn_region
from core.annotations.geometry import RegionRefused
from core.annotations.ground_truth import annotation_truth, truth_sources
from core.annotations.map_coordinates import drawn_region, to_level0, to_map
from core.annotations.overlay import RegionIndex, features_in_view, render_region_tile
from core.errors import PathReviewError
from core.heatmaps.groundtruth import segmentation_scores
from core.store.annotations import RegionDraft, RegionVersion, add_regions, current_regions, region_history, slide_regions_stamp
from core.store.reviews import current_reviews, record_review
from core.store.schema import AuditEvent, Patient, Slide
from core.workspace import DEFAULT_ANNOTATION_CLASSES, WorkspaceConfig, open_workspace, write_workspace_config

MAX_ZOOM = 11  # a slide of up to 2048 px
CLASSES = DEFAULT_ANNOTATION_CLASSES
COLOURS = {c.name: c.color for c in CLASSES}


def rect(x0: float, y0: float, x1: float, y1: float) -> dict:
    return {"type": "Polygon", "coordinates": [[[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]]]}


def region(author: str, class_name: str, geometry: dict, region_id: str = "r") -> RegionVersion:
    return RegionVersion(region_id, "S1", 1, "annotation", class_name, "", "", geometry, False, author, datetime.now(UTC), author=author)


def test_map_coordinates_round_trip_exactly():
    geometry = {"type": "Polygon", "coordinates": [[[0.0, 0.0], [1234.567, 10.25], [3.0, 999.999], [0.0, 0.0]]]}
    on_map = to_map(geometry, MAX_ZOOM)
    assert on_map["coordinates"][0][1] == [1234.567 / 2048, -10.25 / 2048]  # [lng, lat]: y downwards is -lat
    assert to_level0(on_map, MAX_ZOOM) == geometry  # a power-of-two scale is exact both ways


def test_a_drawn_shape_is_cut_to_the_slide_and_checked():
    # A rectangle drawn from (-100, 50) to (300, 200) on a 1000 x 800 slide keeps its part on the slide.
    drawn = to_map(rect(-100, 50, 300, 200), MAX_ZOOM)
    checked = drawn_region(drawn, MAX_ZOOM, 1000, 800)
    assert shapely.geometry.shape(checked.geometry).equals(box(0, 50, 300, 200))
    point = drawn_region({"type": "Point", "coordinates": [10 / 2048, -20 / 2048]}, MAX_ZOOM, 1000, 800)
    assert point.geometry == {"type": "Point", "coordinates": [10.0, 20.0]}
    with pytest.raises(RegionRefused, match="no area on the slide"):
        drawn_region(to_map(rect(-300, -300, -100, -100), MAX_ZOOM), MAX_ZOOM, 1000, 800)
    bow_tie = {"type": "Polygon", "coordinates": [[[0, 0], [100 / 2048, -100 / 2048], [100 / 2048, 0], [0, -100 / 2048], [0, 0]]]}
    assert drawn_region(bow_tie, MAX_ZOOM, 1000, 800).geometry["type"] == "MultiPolygon"  # split into its two lobes
    with pytest.raises(RegionRefused, match="not x, y numbers"):  # text from a hostile client, not a recursion without end
        drawn_region({"type": "Polygon", "coordinates": [[["a", 0], [1, 0], [1, 1], ["a", 0]]]}, MAX_ZOOM, 1000, 800)


def test_dice_and_consensus_by_hand():
    # A: 0..10 x 0..10 (area 100); B: 5..15 x 0..10 (area 100); overlap 5 x 10 = 50 -> Dice 2*50/200 = 0.5.
    # C: 0..10 x 0..5 (area 50), overlap with A 50 -> Dice 100/150; with B 25 -> 50/150.
    regions = [region("ann", "tumour pattern 3", rect(0, 0, 10, 10)), region("bob", "tumour pattern 4", rect(5, 0, 15, 10)),
               region("cat", "tumour pattern 5", rect(0, 0, 10, 5)), region("bob", "benign", rect(100, 100, 200, 200))]
    by = tumour_by_reviewer(regions, CLASSES)
    assert sorted(by) == ["ann", "bob", "cat"] and by["bob"].area == 100  # benign is not tumour
    assert [(p.first, p.second, round(p.dice, 6)) for p in pairwise_dice(by)] == [
        ("ann", "bob", 0.5), ("ann", "cat", round(2 / 3, 6)), ("bob", "cat", round(1 / 3, 6))]
    assert consensus(by, "union").area == 150  # 0..15 x 0..10
    # Majority of three: covered by at least two. x 0..5, y 0..5: A, C (2); x 5..10, y 0..5: A, B, C; x 5..10, y 5..10: A, B;
    # x 0..5, y 5..10: A only; x 10..15: B only -> 25 + 25 + 25 = 75.
    assert consensus(by, "majority").area == 75
    assert consensus({k: by[k] for k in ("ann", "bob")}, "majority").area == 50  # two reviewers: their intersection
    assert math.isnan(dice(shapely.Polygon(), shapely.Polygon()))


def test_overlay_sends_features_for_few_regions_and_tiles_for_many():
    regions = [region("ann" if i % 2 else "bob", "tumour pattern 4", rect(10 * i, 0, 10 * i + 5, 5), f"r{i}") for i in range(50)]
    regions.append(region("ann", "benign", {"type": "Point", "coordinates": [100.0, 100.0]}, "p"))
    index = RegionIndex.build("S1", 1, regions)
    features = features_in_view(index, 0, 0, 100, 50, ["ann"], MAX_ZOOM, COLOURS)
    assert [f["id"] for f in features] == ["r1", "r3", "r5", "r7", "r9"]  # x 0..100 holds r0..r9 (r10 starts at 100: touching)
    assert features[0]["geometry"] == to_map(rect(10, 0, 15, 5), MAX_ZOOM)
    assert features[0]["properties"]["colour"] == "#ff6e00"
    assert features_in_view(index, 0, 0, 1000, 1000, ["ann", "bob"], MAX_ZOOM, COLOURS, limit=20) is None
    # Tile (z = max, 0, 0) is level 0: region r0's outline crosses pixel (0..5, 0); nothing at (7, 7); the marker at (100, 100).
    tile = np.asarray(Image.open(io.BytesIO(render_region_tile(index, MAX_ZOOM, 0, 0, MAX_ZOOM, 256, ["ann", "bob"], COLOURS))))
    assert tuple(tile[0, 2]) == (*COLOURS["tumour pattern 4"], 255)
    assert tile[7, 7, 3] == 0
    assert tuple(tile[100, 100]) == (*COLOURS["benign"], 255)
    hidden = np.asarray(Image.open(io.BytesIO(render_region_tile(index, MAX_ZOOM, 0, 0, MAX_ZOOM, 256, ["bob"], COLOURS))))
    assert hidden[100, 100, 3] == 0  # ann's layer hidden
    # Zoomed out 8x, r1 (x 10..15, y 0..5) is under a pixel across and still painted, at pixel (1, 0); r0 is bob's, hidden.
    small = np.asarray(Image.open(io.BytesIO(render_region_tile(index, MAX_ZOOM - 3, 0, 0, MAX_ZOOM, 256, ["ann"], COLOURS))))
    assert tuple(small[0, 1]) == (*COLOURS["tumour pattern 4"], 255) and small[0, 0, 3] == 0


@pytest.fixture
def workspace(tmp_path, empty_store):
    write_workspace_config(tmp_path, WorkspaceConfig(name="annotations", database_url=empty_store.url))
    ws = open_workspace(tmp_path)
    with ws.store.session() as s:
        s.add_all([Patient(id="P1"), Patient(id="P2")])
        s.add_all([Slide(id="S1", patient_id="P1", file="s1.tif", mpp=0.5, width=1000, height=800),
                   Slide(id="S2", patient_id="P2", file="s2.tif", mpp=0.5, width=1000, height=800)])
    yield ws
    ws.store.dispose()


def test_drawn_region_is_saved_reshaped_reclassified_and_deleted_with_audit_rows(workspace):
    drawn = save_drawn_region(workspace, "S1", to_map(rect(10, 20, 110, 220), MAX_ZOOM), MAX_ZOOM, "tumour pattern 4", "cribriform", "ann")
    assert (drawn.class_name, drawn.comment, drawn.user, drawn.version) == ("tumour pattern 4", "cribriform", "ann", 1)
    with pytest.raises(PathReviewError, match="choose a class"):
        save_drawn_region(workspace, "S1", to_map(rect(0, 0, 5, 5), MAX_ZOOM), MAX_ZOOM, "mitosis", "", "ann")
    with pytest.raises(PathReviewError, match="ann's; you can change your own"):
        describe_region(workspace, "S1", drawn.region_id, 1, "benign", "", "bob")
    moved = reshape_region(workspace, "S1", drawn.region_id, 1, to_map(rect(20, 30, 120, 230), MAX_ZOOM), MAX_ZOOM, "ann")
    assert shapely.geometry.shape(moved.geometry).equals(box(20, 30, 120, 230)) and moved.version == 2
    relabelled = describe_region(workspace, "S1", drawn.region_id, 2, "tumour pattern 5", "solid", "bob", may_edit_others=True)
    assert (relabelled.class_name, relabelled.comment, relabelled.version) == ("tumour pattern 5", "solid", 3)
    assert current_regions(workspace.store, "S1")[0].author == "ann"  # stays in its author's layer
    stamp = slide_regions_stamp(workspace.store, "S1")
    remove_region(workspace, "S1", drawn.region_id, 3, "ann")
    assert current_regions(workspace.store, "S1") == [] and slide_regions_stamp(workspace.store, "S1") > stamp
    assert [v.version for v in region_history(workspace.store, drawn.region_id)] == [4, 3, 2, 1]
    with workspace.store.session() as s:
        actions = [(e.user, e.action) for e in s.query(AuditEvent).order_by(AuditEvent.id)]
    assert actions == [("ann", "annotation_saved"), ("ann", "annotation_saved"), ("bob", "annotation_saved"), ("ann", "annotation_deleted")]


def test_annotation_ground_truth_on_the_cell_grid_by_hand(workspace):
    # Cells of 10 px on a 4 x 6 grid. ann marks x 0..30, y 0..20 (cells r0-1, c0-2); bob x 10..40, y 0..10 (r0, c1-3).
    add_regions(workspace.store, "S1", [RegionDraft(rect(0, 0, 30, 20), "tumour pattern 3")], "ann")
    add_regions(workspace.store, "S1", [RegionDraft(rect(10, 0, 40, 10), "tumour pattern 4"), RegionDraft(rect(0, 30, 60, 40), "benign")], "bob")
    assert [o["value"] for o in truth_sources(workspace, "S1", has_mask=True)] == [
        "mask", "reviewer:ann", "reviewer:bob", "consensus:union", "consensus:majority"]
    ann = annotation_truth(workspace, "S1", "reviewer:ann", 10.0, (4, 6))
    assert np.argwhere(ann).tolist() == [[0, 0], [0, 1], [0, 2], [1, 0], [1, 1], [1, 2]]
    majority = annotation_truth(workspace, "S1", "consensus:majority", 10.0, (4, 6))
    assert np.argwhere(majority).tolist() == [[0, 1], [0, 2]]  # both: x 10..30, y 0..10
    # Predicted tumour: row 0, columns 0-3 (4 cells). Against ann: TP 3 (c0-2), FP 1 (c3), FN 3 (row 1) ->
    # Dice = 2*3 / (2*3 + 1 + 3) = 0.6. Background over the 24 cells: TN 24 - 3 - 1 - 3 = 17 -> F1- = 34 / (34 + 1 + 3) = 17/19.
    predicted = np.zeros((4, 6), bool)
    predicted[0, :4] = True
    scores = segmentation_scores(predicted, ann)
    assert scores.dice == pytest.approx(0.6) and scores.f1_background == pytest.approx(34 / 38)
    with pytest.raises(PathReviewError, match="no tumour regions"):
        annotation_truth(workspace, "S2", "reviewer:ann", 10.0, (4, 6))


def test_a_verdict_names_regions_of_its_own_case(workspace):
    mine, = add_regions(workspace.store, "S1", [RegionDraft(rect(0, 0, 30, 20), "disagree with model")], "ann")
    other, = add_regions(workspace.store, "S2", [RegionDraft(rect(0, 0, 30, 20), "benign")], "ann")
    entry = record_review(workspace.store, "P1", "slide", "disagree", "focus missed", [], False, "ann", 0, regions=[mine.region_id])
    assert entry.regions == (mine.region_id,) and current_reviews(workspace.store, "P1")["slide"].regions == (mine.region_id,)
    with pytest.raises(PathReviewError, match="not a current region on this case's slides"):
        record_review(workspace.store, "P1", "slide", "agree", "", [], False, "ann", 1, regions=[other.region_id])
    with workspace.store.session() as s:
        detail = s.query(AuditEvent).filter(AuditEvent.action == "review_saved").one().detail
    assert detail["regions"] == [mine.region_id]


def test_a_regions_table_gives_its_grade_group_from_its_grade_percentages():
    from core.annotations.statistics import RegionStatistics
    from dashboard.components.annotation_panel import statistics_table

    # Inside the region: 50 % benign, 30 % pattern 3, 20 % pattern 4 -> both count (>= 10 %): Gleason 3+4=7, grade group 2.
    stats = RegionStatistics(area_mm2=0.5, cells=10, labelled_cells=10, grade_fractions={"benign": 0.5, "GG3": 0.3, "GG4": 0.2},
                             mean_score=0.6, attention_mass=None)
    text = str(statistics_table(stats, "t", "biopsy"))
    assert "Gleason 3+4=7, grade group 2" in text and "needle biopsy rule" in text and "0.5000 mm²" in text
    assert "Gleason pattern 3, % of labelled cells" in text
