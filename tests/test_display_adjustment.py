"""Brightness, contrast and gamma of slide images (``core.slides.adjust``), worked by hand on a 2 x 2 grey image."""

from __future__ import annotations

import numpy as np
import pytest

from core.errors import PathReviewError
from core.slides.adjust import DisplayAdjustment, adjust_pixels, display_adjustment

# A 2 x 2 RGB image of greys 0, 64, 128 and 255.
GREYS = np.array([[0, 64], [128, 255]], dtype=np.uint8)
IMAGE = np.repeat(GREYS[:, :, None], 3, axis=2)


def _greys(adjustment: DisplayAdjustment) -> list[int]:
    out = adjust_pixels(IMAGE, adjustment)
    assert out.shape == IMAGE.shape and out.dtype == np.uint8
    assert (out == out[:, :, :1]).all()  # each channel alike
    return out[:, :, 0].ravel().tolist()


@pytest.mark.parametrize(("adjustment", "expected"), [
    # brightness 1.5: 64 * 1.5 = 96, 128 * 1.5 = 192, 255 * 1.5 = 382.5 clipped to 255
    (DisplayAdjustment(brightness=1.5), [0, 96, 192, 255]),
    # contrast 0.5 about mid-grey 127.5: 0.5 x + 63.75 -> 63.75, 95.75, 127.75, 191.25
    (DisplayAdjustment(contrast=0.5), [64, 96, 128, 191]),
    # gamma 2: 255 (x / 255) ** 0.5 = sqrt(255 x) -> 0, 127.75, 180.67, 255
    (DisplayAdjustment(gamma=2.0), [0, 128, 181, 255]),
    # brightness before gamma: 64 * 2 = 128, then sqrt(255 * 128) = 180.67 (gamma first would give 127.75 * 2 = 255.5)
    (DisplayAdjustment(brightness=2.0, gamma=2.0), [0, 181, 255, 255]),
    # brightness before contrast, clipped after both: 0.5 (2 x) + 63.75 -> 63.75, 127.75, 191.75, 318.75 clipped to 255
    # (contrast first would give 64 -> 95.75 * 2 = 191.5)
    (DisplayAdjustment(brightness=2.0, contrast=0.5), [64, 128, 192, 255]),
])
def test_each_adjustment_gives_the_hand_worked_values(adjustment, expected):
    assert _greys(adjustment) == expected


def test_the_defaults_return_the_image_itself():
    assert adjust_pixels(IMAGE, DisplayAdjustment()) is IMAGE
    assert DisplayAdjustment().query() == {}
    assert DisplayAdjustment(gamma=1.5).query() == {"gamma": "1.5"}


@pytest.mark.parametrize(("query", "message"), [
    ({"gamma": "abc"}, "gamma 'abc' is not a number"),
    ({"brightness": "9"}, "brightness '9' is outside 0.25–4"),
    ({"contrast": "0"}, "contrast '0' is outside 0.25–4"),
    ({"gamma": "nan"}, "gamma 'nan' is outside"),
    ({"lgamma": "inf"}, "gamma 'inf' is outside"),
])
def test_bad_values_are_named(query, message):
    with pytest.raises(PathReviewError, match=message):
        display_adjustment(query, "l" if "lgamma" in query else "")


def test_a_query_gives_its_adjustment():
    assert display_adjustment({"brightness": "1.2", "gamma": "0.8", "other": "x"}) == DisplayAdjustment(1.2, 1.0, 0.8)
    assert display_adjustment({"rcontrast": "2"}, "r") == DisplayAdjustment(contrast=2.0)


def test_a_deep_link_names_each_adjustment_it_cannot_use():
    from dashboard.components.compare_link import parse_compare_link
    from dashboard.components.viewer_link import parse_viewer_link

    link = parse_viewer_link({"gamma": "2", "brightness": "bright", "contrast": "99"}, [])
    assert link.adjustment == DisplayAdjustment(gamma=2.0)
    assert link.problems == ["brightness 'bright' is not a number; 1 is shown", "contrast '99' is outside 0.25–4; 1 is shown"]
    assert parse_viewer_link({}, []).adjustment.is_identity

    compare = parse_compare_link({"left": "S1", "lgamma": "1.5", "rgamma": "0"}, ["S1"], ["m"], ["tumour", "none"])
    assert compare.panes["left"].adjustment == DisplayAdjustment(gamma=1.5) and compare.panes["right"].adjustment.is_identity
    assert compare.problems == ["right gamma '0' is outside 0.25–4; 1 is shown"]
