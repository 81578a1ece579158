"""Case page layout without a browser: a deep link's query restores the view; bad or foreign values fall back."""

from __future__ import annotations

import pytest

from core.explain.patient_explanations import PatientExplainers
from core.slides.tiles import TileService
from core.store.cases import case_summary
from dashboard.pages import case


def _find(component, component_id):
    if getattr(component, "id", None) == component_id:
        return component
    children = getattr(component, "children", None)
    for child in children if isinstance(children, list | tuple) else [children]:
        if child is not None and not isinstance(child, str | int | float):
            found = _find(child, component_id)
            if found is not None:
                return found
    return None


@pytest.fixture(scope="module")
def multi_slide_case(workspace):
    with workspace.store.session() as s:
        from core.store.schema import Slide

        ids = list(s.scalars(Slide.__table__.select().with_only_columns(Slide.patient_id)))
        pid = next(p for p in sorted(set(ids)) if ids.count(p) >= 2)
        return case_summary(s, pid)


def _layout(workspace, case_, query):
    return case.layout(workspace, TileService(workspace), PatientExplainers(workspace), case_.patient.id, query)


def test_deep_link_restores_slide_visit_layer_and_viewport(workspace, multi_slide_case):
    slide = multi_slide_case.slides[1]
    page = _layout(workspace, multi_slide_case, {"slide": slide.id, "visit": "2", "layer": "argmax", "z": "10", "lat": "-0.25", "lng": "0.3"})
    assert _find(page, "case-selected-slide").data == slide.id
    assert _find(page, "selected-visit").data == 1
    assert _find(page, "heat-layer-choice").value == "argmax"
    slide_map = _find(page, "slide-map")
    assert (slide_map.center, slide_map.zoom) == ([-0.25, 0.3], 10)
    assert "visit 2 ·" in _find(page, "visit-chip-report").children


def test_bad_deep_link_values_fall_back_to_defaults(workspace, multi_slide_case):
    page = _layout(workspace, multi_slide_case, {"slide": "../../etc/passwd", "visit": "999", "layer": "<script>", "z": "nan", "lat": "x"})
    last = len(multi_slide_case.visits) - 1
    assert _find(page, "selected-visit").data == last
    assert _find(page, "case-selected-slide").data in {s.id for s in multi_slide_case.slides}
    assert _find(page, "heat-layer-choice").value == "tumour"
    shown = _find(page, "case-selected-slide").data  # the bad viewport falls back to fitting that slide, as with no link
    default_map = _find(_layout(workspace, multi_slide_case, {"slide": shown}), "slide-map")
    assert (_find(page, "slide-map").center, _find(page, "slide-map").zoom) == (default_map.center, default_map.zoom)


def test_nearest_by_day_prefers_the_closest_then_the_earlier():
    assert case.nearest_by_day({"a": 0.0, "b": 100.0, "c": 200.0}, 140.0) == "b"
    assert case.nearest_by_day({"a": 0.0, "b": 100.0}, 50.0) == "a"
    assert case.nearest_by_day({}, 10.0) is None


def test_a_click_on_any_risk_marker_selects_its_own_visit():
    from core.export.visit_risk import visit_risk_figure
    from dashboard.components.patient_panel import clicked_visit

    days, labels = [0.0, 90.0, 200.0], [None, 1, 0]  # the first visit has no label, so label index ≠ visit index
    fig = visit_risk_figure(days, [0.1, 0.6, 0.3], labels, "risk", what_if=([0.0, 90.0, 150.0], [0.1, 0.7, 0.9]), selected=1)
    for trace in fig.data:
        for index, (x, visit) in enumerate(zip(trace.x, trace.customdata)):
            click = {"points": [{"curveNumber": fig.data.index(trace), "pointIndex": index, "x": x, "customdata": visit}]}
            assert clicked_visit(click) == visit
            if trace.name != "what-if":  # an edited gap moves the what-if marker, not the visit it belongs to
                assert days[visit] == x
    assert [clicked_visit({"points": [{"customdata": v}]}) for v in fig.data[1].customdata] == [1, 2]
    for bad in (None, {}, {"points": []}, {"points": [{"pointIndex": 0}]}, {"points": [{"customdata": True}]}, {"points": "x"}, [1]):
        assert clicked_visit(bad) is None


def _problems_text(page, alert_id: str) -> str:
    alert = _find(page, alert_id)
    return "".join(c for c in alert.children if isinstance(c, str)) if alert else ""


def test_empty_and_unknown_link_values_are_named_not_dropped(workspace, multi_slide_case):
    from dashboard.app import _link_values

    query = _link_values("?slide=&thr=&gama=2&gamma=9&open=whatif,lime")
    assert query["slide"] == "" and query["thr"] == ""  # an empty value is kept, so that it can be named
    page = _layout(workspace, multi_slide_case, query)
    case_problems = _problems_text(page, "case-link-problems")
    assert "slide '' is not one of this patient's" in case_problems and "'gama' is not a value this link can hold" in case_problems
    viewer_problems = _problems_text(page, "viewer-link-problems")
    assert "threshold '' is not a number" in viewer_problems and "gamma '9' is outside 0.25–4; 1 is shown" in viewer_problems
    assert _find(page, "case-folds").data == ["lime", "whatif"]
