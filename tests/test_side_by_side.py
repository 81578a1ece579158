"""The side-by-side view's link and how one pane's view maps onto the other's slide (no browser)."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest

from dashboard.components.compare_link import NO_OVERLAY, PaneChoice, compare_href, parse_compare_link
from dashboard.components.viewer_pane import synced_view

SLIDES = ["P1-S1", "P1-S2"]
LAYERS = [NO_OVERLAY, "tumour", "argmax"]


def test_the_link_names_both_panes_and_the_view():
    link = parse_compare_link({"left": "P1-S1", "right": "P1-S2", "rmodel": "cnn-b", "llayer": "argmax", "z": "5", "lat": "-1.5",
                               "lng": "2.25"}, SLIDES, ["cnn-a", "cnn-b"], LAYERS)
    assert link.problems == []
    assert link.panes == {"left": PaneChoice("P1-S1", "cnn-a", "argmax"), "right": PaneChoice("P1-S2", "cnn-b", "tumour")}
    assert link.view == {"z": 5, "lat": -1.5, "lng": 2.25}
    # One slide: its tumour map beside the bare slide.
    same = parse_compare_link({"left": "P1-S1"}, SLIDES, ["cnn-a"], LAYERS)
    assert same.panes["right"] == PaneChoice("P1-S1", "cnn-a", NO_OVERLAY) and same.view is None
    query = parse_qs(urlsplit(compare_href("P1-S1", "argmax", view={"z": 3, "lat": -1, "lng": 1})).query)
    assert query == {"left": ["P1-S1"], "right": ["P1-S1"], "llayer": ["argmax"], "rlayer": [NO_OVERLAY], "z": ["3"], "lat": ["-1"], "lng": ["1"]}


def test_every_value_the_link_cannot_use_is_named():
    link = parse_compare_link({"left": "P1-S1", "right": "P9-S1", "lmodel": "gone", "rlayer": "sparkles", "z": "x", "lat": "0"},
                              SLIDES, ["cnn-a"], LAYERS)
    assert link.panes["right"].slide == "P1-S1" and link.panes["left"].model == "cnn-a" and link.panes["right"].layer == NO_OVERLAY
    assert link.view is None
    assert [p.split(" ")[0:2] for p in link.problems] == [["slide", "'P9-S1'"], ["left", "model"], ["right", "layer"], ["the", "position"]]


def test_a_view_maps_to_the_same_place_and_magnification_on_the_other_slide():
    a = {"mpp": 0.25, "max_zoom": 10, "min_zoom": 2}
    # The same slide: the same view.
    assert synced_view([-1.5, 2.0], 7, a, a) == ([-1.5, 2.0], 7)
    # A slide scanned at half the resolution (0.5 µm/px, one level fewer): its level-0 pixels and 2^max_zoom both halve, so
    # the same place has the same map coordinates, and the same µm per screen pixel (2) the same zoom.
    b = {"mpp": 0.5, "max_zoom": 9, "min_zoom": 1}
    center, z = synced_view([-1.5, 2.0], 7, a, b)
    assert z == 7 and center == pytest.approx([-1.5, 2.0])
    # At 0.3 µm/px: 2 µm per screen pixel is 2^2.74 of its pixels, nearest zoom max_zoom - 3; the µm stay.
    c = {"mpp": 0.3, "max_zoom": 10, "min_zoom": 0}
    center, z = synced_view([-1.5, 2.0], 7, a, c)
    assert z == 7 and center == pytest.approx([-1.5 * 0.25 / 0.3, 2.0 * 0.25 / 0.3])
    # Back again: where it started.
    assert synced_view(center, z, c, a) == (pytest.approx([-1.5, 2.0]), 7)
    # A zoom past the other slide's levels stops at its last.
    assert synced_view([-1.0, 1.0], 11, a, {"mpp": 0.5, "max_zoom": 8, "min_zoom": 0})[1] == 9
