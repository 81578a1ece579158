"""Property-based tests (hypothesis) of what parses untrusted input: the what-if visit validation, the heatmap style
query, and the tile and heatmap URLs through the real app (Flask test client, signed in)."""

from __future__ import annotations

import math
from urllib.parse import quote, urlencode

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from core.errors import PathReviewError
from core.explain.patient_explanations import validate_visit_edit
from core.heatmaps.overlay import ATTENTION_LAYER, CAM_LAYERS, COLORMAPS, OverlayStyle
from core.heatmaps.reconstruct import NORMALISATIONS
from core.heatmaps.slide_heatmap import METHODS, HeatmapParams, compute_heatmap
from core.slides.tiles import TileService
from core.workspace import open_workspace
from dashboard.app import create_app
from tests.helpers import copy_demo, sign_in

PROPERTY_SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

json_scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20)
json_values = st.recursive(json_scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
                           max_leaves=6)
number_texts = (st.sampled_from(["nan", "NaN", "-nan", "inf", "-inf", "+Infinity", "1e999", "-1e999", "1e38", "3.5e38", "1_0", "0x10",
                                 "", "   ", " 7 ", "\u0661\u0662", "12abc", "1e-999", "--1", "1,5", "10" * 300])
                | st.from_regex(r"-?\d{0,400}(\.\d{0,5})?(e-?\d{1,4})?", fullmatch=True)
                | st.floats().map(repr))


@pytest.fixture(scope="module")
def sequence_spec(workspace):
    return workspace.manifest(workspace.models_for("sequence")[0]).input


def _cell_values(spec):
    """Per feature: anything a JSON request could carry, number-like text, and values inside the plausible range."""
    cells = {}
    for name in spec.features:
        low, high = spec.feature_ranges.get(name, [-1e6, 1e6])
        cells[name] = json_values | number_texts | st.floats(low, high) | st.integers(int(math.ceil(low)), int(high)).map(str)
    for name, levels in spec.categorical.items():
        cells[name] = json_values | st.sampled_from(levels) | st.sampled_from([lv.upper() for lv in levels] + [lv + " " for lv in levels])
    return st.fixed_dictionaries({}, optional=cells)


def test_visit_edit_validation_accepts_only_finite_in_range_values_and_explains_the_rest(sequence_spec):
    @PROPERTY_SETTINGS
    @given(_cell_values(sequence_spec))
    def check(values):
        parsed, errors = validate_visit_edit(sequence_spec, values)
        every = set(sequence_spec.features) | set(sequence_spec.categorical)
        assert set(parsed) | set(errors) == every and not set(parsed) & set(errors)
        for name, value in parsed.items():
            if name in sequence_spec.categorical:
                assert value in sequence_spec.categorical[name] and value == values[name]
            else:
                low, high = sequence_spec.feature_ranges.get(name, [-math.inf, math.inf])
                assert isinstance(value, float) and math.isfinite(value) and low <= value <= high
        for name, message in errors.items():
            assert isinstance(message, str) and 0 < len(message) < 200, (name, message)

    check()


@PROPERTY_SETTINGS
@given(json_values)
def test_visit_edit_validation_of_something_that_is_not_a_mapping_is_an_error_per_field(sequence_spec, values):
    parsed, errors = validate_visit_edit(sequence_spec, values if not isinstance(values, dict) else [values])
    assert parsed == {} and set(errors) == set(sequence_spec.features) | set(sequence_spec.categorical)


CLASS_NAMES = ["benign", "GG3", "GG4", "GG5"]
STYLE_KEYS = ["method", "layer", "cmap", "thr", "norm", "smooth"]
style_values = st.one_of(
    st.sampled_from([*METHODS, *COLORMAPS, *NORMALISATIONS, *CLASS_NAMES, "tumour", "argmax", "tissue", "0", "0.5", "1", "20", "20.5"]),
    number_texts, st.text(max_size=30),
)
style_queries = st.dictionaries(st.sampled_from(STYLE_KEYS) | st.text(max_size=8), style_values, max_size=7)


def _valid_style(style: OverlayStyle) -> bool:
    return (style.method in METHODS and style.cmap in COLORMAPS and style.norm in NORMALISATIONS
            and 0 <= style.threshold <= 1 and 0 <= style.smooth <= 20 and math.isfinite(style.threshold) and math.isfinite(style.smooth))


@PROPERTY_SETTINGS
@given(style_queries)
def test_heatmap_style_query_is_a_valid_style_or_a_clear_error(query):
    try:
        style = OverlayStyle.from_query(query, CLASS_NAMES)
    except PathReviewError as exc:
        assert str(exc)
        return
    assert _valid_style(style)


@pytest.fixture(scope="module")
def one_slide_app(demo_workspace, tmp_path_factory):
    """A copy of the demo holding one slide file (P001-S1) and its heatmap; the app on it; a signed-in client."""
    root = tmp_path_factory.mktemp("properties") / "ws"
    copy_demo(demo_workspace, root, ("P001-S1",))
    ws = open_workspace(root)
    heat = compute_heatmap(ws, "P001-S1", ws.models_for("patch")[0], HeatmapParams())
    app = create_app(ws)
    client = app.server.test_client()
    sign_in(client)
    yield ws, client, heat, TileService(ws).geometry("P001-S1")
    ws.store.dispose()


segments = st.one_of(st.text(max_size=80), st.sampled_from(["P001-S1", "P002-S1", "..", ".", "%2e%2e", "P001-S1%00", "0", "-1"]),
                     st.integers(-3, 2**70).map(str))
coordinates = st.one_of(st.integers(-2, 20).map(str), st.integers(0, 2**70).map(str), st.text(max_size=12), st.just("9" * 5000))


def _tile_address(geometry, z: str, x: str, y: str) -> tuple[bool, bool]:
    """(inside the pyramid, written canonically): the route reads decimal digits of any script, so "012" or Arabic-Indic
    digits may address a tile too; canonical ASCII ones must."""
    try:
        z_, x_, y_ = (int(v) for v in (z, x, y)) if all(v.isdecimal() for v in (z, x, y)) else (None, None, None)
    except ValueError:  # more digits than Python converts
        return False, False
    if z_ is None or not 0 <= z_ <= geometry.max_zoom:
        return False, False
    span = geometry.tile_size * 2 ** (geometry.max_zoom - z_)
    inside = x_ * span < geometry.width and y_ * span < geometry.height
    return inside, all(v.isascii() and str(int(v)) == v for v in (z, x, y))


def _expect(response, must_succeed: bool, may_succeed: bool, what) -> None:
    assert response.status_code < 500, (what, response.status_code, response.data[:200])
    if must_succeed:
        assert response.status_code == 200, (what, response.status_code, response.data[:200])
    elif not may_succeed:
        assert 400 <= response.status_code < 500, (what, response.status_code)


@st.composite
def pyramid_addresses(draw, geometry) -> tuple[str, str, str]:
    z = draw(st.integers(0, geometry.max_zoom))
    span = geometry.tile_size * 2 ** (geometry.max_zoom - z)
    return str(z), str(draw(st.integers(0, (geometry.width - 1) // span))), str(draw(st.integers(0, (geometry.height - 1) // span)))


def any_address(geometry):
    """Half tiles that exist, half anything."""
    return pyramid_addresses(geometry) | st.tuples(coordinates, coordinates, coordinates)


def test_any_tile_url_is_a_tile_or_a_4xx(one_slide_app):
    ws, client, _, geometry = one_slide_app
    seen = set()

    @PROPERTY_SETTINGS
    @given(segments | st.just("P001-S1"), any_address(geometry), st.sampled_from(["jpeg", "jpeg", "png", "jpg", "jpeg%00", ""]))
    @example("P001-S1", ("0", "0", "0"), "jpeg")  # both branches run whatever is drawn
    @example("P001-S1", ("0", "0", "0"), "png")
    def check(slide_id, address, ext):
        z, x, y = address
        url = f"/slides/{quote(slide_id, safe='')}/tiles/{quote(z, safe='')}/{quote(x, safe='')}/{quote(y, safe='')}.{ext}"
        response = client.get(url)
        inside, canonical = _tile_address(geometry, z, x, y)
        valid = slide_id == "P001-S1" and ext == "jpeg" and inside
        _expect(response, valid and canonical, valid, url)
        if response.status_code == 200:
            assert response.data[:3] == b"\xff\xd8\xff"
        seen.add(response.status_code == 200)

    check()
    assert seen == {True, False}  # both branches of the property were exercised


def test_any_heatmap_tile_url_is_a_tile_or_a_4xx(one_slide_app):
    ws, client, heat, geometry = one_slide_app

    seen = set()
    valid_styles = st.fixed_dictionaries({}, optional={"method": st.sampled_from(METHODS), "layer": st.sampled_from(["tumour", "argmax", *CLASS_NAMES]),
                                                       "cmap": st.sampled_from(COLORMAPS), "thr": st.floats(0, 1).map(str),
                                                       "norm": st.sampled_from(NORMALISATIONS), "smooth": st.floats(0, 20).map(str)})

    @PROPERTY_SETTINGS
    @given(st.one_of(st.just(heat.key), st.just(heat.key), st.text(max_size=40), st.from_regex(r"[0-9a-f]{32}", fullmatch=True)),
           any_address(geometry), valid_styles | style_queries)
    @example(heat.key, ("0", "0", "0"), {})  # both branches run whatever is drawn
    @example(heat.key, ("0", "0", "0"), {"cmap": "nope"})
    def check(key, address, query):
        z, x, y = address
        query = {k: v for k, v in query.items() if v not in (ATTENTION_LAYER, *CAM_LAYERS)}  # those compute maps first: slow
        url = f"/slides/P001-S1/heatmap/{quote(key, safe='')}/{quote(z, safe='')}/{quote(x, safe='')}/{quote(y, safe='')}.png"
        response = client.get(url + ("?" + urlencode(query) if query else ""))
        try:
            style_ok = _valid_style(OverlayStyle.from_query(query, heat.class_names))
        except PathReviewError:
            style_ok = False
        inside, canonical = _tile_address(geometry, z, x, y)
        valid = key == heat.key and inside and style_ok and len(urlencode(query)) <= 512
        _expect(response, valid and canonical, valid, (url, query))
        if response.status_code == 200:
            assert response.mimetype == "image/png"
        seen.add(response.status_code == 200)

    check()
    assert seen == {True, False}
