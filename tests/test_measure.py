"""Lengths and areas on a slide: the µm per pixel they use (from the file, the workspace's record, or none), their
values and labels, and the viewer's ruler and area tool (``dashboard.components.measure_tool``)."""

from __future__ import annotations

import math

import openslide
import pytest

from core.slides.measure import PixelSize, area_text, length_text, path_length, polygon_area, slide_pixel_size
from dashboard.components import measure_tool
from tests.cohort_files import write_generic_tiff

UNKNOWN = PixelSize(None, None, "")


def test_the_file_pair_is_used_where_it_agrees_with_the_record(tmp_path):
    with openslide.OpenSlide(write_generic_tiff(tmp_path / "a.tiff", mpp=0.5)) as slide:
        properties = dict(slide.properties)
    size = slide_pixel_size(properties, 0.5)
    assert (size.x, size.y) == pytest.approx((0.5, 0.5)) and "slide file" in size.source
    # A lab that gave another µm per pixel at import overrides the file; so does a record where the file has none.
    assert slide_pixel_size(properties, 0.25) == PixelSize(0.25, 0.25, "as the workspace records it for this slide")
    with openslide.OpenSlide(write_generic_tiff(tmp_path / "b.tiff", mpp=None)) as slide:  # 72 dpi: no microscope's
        assert slide_pixel_size(dict(slide.properties), 0.4).x == 0.4
        assert not slide_pixel_size(dict(slide.properties), None).known
    # Non-square pixels: x and y are kept apart.
    assert slide_pixel_size({"openslide.mpp-x": "0.5", "openslide.mpp-y": "0.25"}, 0.375) == PixelSize(0.5, 0.25, "read from the slide file")


def test_a_slide_without_its_micrometres_per_pixel_is_measured_in_pixels_and_says_so():
    size = slide_pixel_size({}, None)
    assert not size.known and "records no µm per pixel" in size.describe()
    assert path_length([(0, 0), (3000, 4000)], size).text == "5,000 px"
    assert polygon_area([(0, 0), (100, 0), (100, 50), (0, 50)], size).text == "5,000 px²"
    controls = measure_tool.controls(size)
    assert "records no µm per pixel" in controls.title and controls.to_plotly_json()["props"]["data-units"] == "px"
    known = measure_tool.controls(PixelSize(0.25, 0.25, "read from the slide file"))
    assert "0.25 µm/px" in known.title and known.to_plotly_json()["props"]["data-units"] == "µm"


def test_lengths_and_areas_in_micrometres():
    quarter = PixelSize(0.25, 0.25, "")
    length = path_length([(0, 0), (3000, 4000)], quarter)  # 5,000 px at 0.25 µm/px
    assert (length.value, length.unit, length.text) == (pytest.approx(1250.0), "µm", "1.25 mm")
    assert path_length([(10, 10), (10, 410)], quarter).text == "100 µm"
    assert path_length([(0, 0), (0, 100), (100, 100)], quarter).value == pytest.approx(50.0)  # a path: the sum of its legs
    wide = PixelSize(0.5, 0.25, "")
    assert path_length([(0, 0), (100, 0)], wide).value == pytest.approx(50.0)
    assert path_length([(0, 0), (0, 100)], wide).value == pytest.approx(25.0)
    assert path_length([(0, 0), (300, 400)], wide).value == pytest.approx(math.hypot(150, 100))
    square = polygon_area([(0, 0), (1000, 0), (1000, 1000), (0, 1000)], PixelSize(0.5, 0.5, ""))
    assert (square.value, square.unit, square.text) == (pytest.approx(250_000.0), "µm²", "0.250 mm²")
    triangle = polygon_area([(0, 0), (100, 0), (0, 100)], PixelSize(1.0, 1.0, ""))  # either winding
    assert triangle.value == polygon_area([(0, 0), (0, 100), (100, 0)], PixelSize(1.0, 1.0, "")).value == pytest.approx(5000.0)
    assert polygon_area([(0, 0), (10, 10)], quarter).value == 0.0


@pytest.mark.parametrize(("um", "text"), [(0.04, "0.0 µm"), (12.34, "12.3 µm"), (99.94, "99.9 µm"), (99.96, "100 µm"), (412.4, "412 µm"),
                                          (999.4, "999 µm"), (999.6, "1.00 mm"), (1234.0, "1.23 mm"), (15_000.0, "15.00 mm")])
def test_length_labels_switch_to_mm_at_1000_micrometres(um, text):
    assert length_text(um) == text


def test_area_labels_switch_to_square_mm_at_a_hundredth():
    assert area_text(9_999.0) == "9,999 µm²"
    assert area_text(52_000.0) == "0.052 mm²"


def test_the_ruler_keeps_two_points_and_the_area_tool_adds_corners():
    assert measure_tool.next_points([(0, 0), (1, 1)], "ruler", (5, 5)) == [(5, 5)]
    assert measure_tool.next_points([(0, 0)], "ruler", (5, 5)) == [(0, 0), (5, 5)]
    assert measure_tool.next_points([(0, 0), (1, 1)], "area", (5, 5)) == [(0, 0), (1, 1), (5, 5)]
    full = [(float(i), 0.0) for i in range(measure_tool.MAX_CORNERS)]
    assert measure_tool.next_points(full, "area", (9, 9)) == full
    # A click's latlng is level-0 pixels scaled by 2^-max_zoom, y upwards.
    assert measure_tool.level0_point({"lat": -0.5, "lng": 0.25}, 4) == (4.0, 8.0)
    shapes, reading = measure_tool.drawing([(0, 0), (3000, 4000)], "ruler", PixelSize(0.25, 0.25, ""), 10)
    assert reading == "Length 1.25 mm" and shapes[0].children[0].children == "1.25 mm"
    _, reading = measure_tool.drawing([(0, 0), (1000, 0), (1000, 1000)], "area", PixelSize(0.5, 0.5, ""), 10)
    assert reading == "Area 0.125 mm²"
