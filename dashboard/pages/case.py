"""Case page (``/case/<patient_id>``): the slide, the visits and the report side by side, linked, with the review form
and exports. The URL query restores a view: ``slide``, ``visit`` (1-based), ``report``, and the viewer's ``layer``, ``z``/``lat``/``lng``,
``overlap`` (%), ``cmap``, ``thr``, ``norm``, ``opacity``, ``brightness``, ``contrast`` and ``gamma``, and ``open``: the
secondary panels unfolded (``components.folds``)."""

from __future__ import annotations

import dash_bootstrap_components as dbc
from dash import ALL, ClientsideFunction, Dash, Input, Output, State, callback_context, dcc, html, no_update
from dash_extensions import Keyboard
from sqlalchemy import select

from core.errors import PathReviewError
from core.explain.patient_explanations import PatientExplainers
from core.export.case_figures import case_figure_names
from core.slides.tiles import TileService
from core.store.annotations import current_region
from core.store.cases import CaseSummary, case_summary, nearest_by_day, slide_record
from core.store.cohort import next_on_worklist
from core.store.reviews import current_reviews
from core.store.schema import Patient
from core.workspace import Workspace, attribute_texts
from dashboard.auth import current_role_allows
from dashboard.components import annotation_layer, case_export, folds, patient_panel, report_panel, review_form, slide_viewer
from dashboard.components.clicks import ctx_triggered_click
from dashboard.components.view_link import view_link
from dashboard.components.viewer_link import LINK_KEYS, unknown_keys_problem

__all__ = ["layout", "nearest_by_day", "next_case", "register_callbacks"]
CASE_KEYS = ["[", "]", "n", "a", "d", "u"]  # the viewer's own keys: dashboard.components.viewer_keys
CASE_LINK_KEYS = ("slide", "visit", "report", folds.OPEN_KEY, *LINK_KEYS)  # what the link holds (assets/case_page.js)


def _visit_text(visit: int | None, days: list[float]) -> str:
    return f"visit {visit + 1} · day {days[visit]:.0f}" if visit is not None and days else "no visit selected"


def _visit_chip(chip_id: str, visit: int | None, days: list[float]) -> html.Span:
    return dbc.Badge(_visit_text(visit, days), color="info", className="ms-2 visit-chip", id=chip_id)


def _strip_class(slide_id: str, selected: str | None, near: str | None) -> str:
    return "slide-strip-item" + (" selected" if slide_id == selected else "") + (" near-visit" if slide_id == near else "")


def _day_text(day: float | None) -> str:
    return "" if day is None else f"day {day:.0f}"


def _slide_strip(case: CaseSummary, selected: str | None, near: str | None) -> html.Div:
    """Thumbnails of the patient's slides: a click switches the viewer; the one nearest the selected visit is marked."""
    buttons = []
    for s in case.slides:
        buttons.append(html.Button([
            html.Img(src=f"/slides/{s.id}/thumbnail.jpeg", alt=f"slide {s.id}", className="slide-strip-image"),
            html.Div([s.id, html.Span(" " + _day_text(s.day), className="text-muted")], className="slide-strip-label"),
        ], id={"type": "case-slide-thumb", "slide": s.id}, n_clicks=0, className=_strip_class(s.id, selected, near), title=f"show slide {s.id}"))
    return html.Div(buttons, className="slide-strip", id="case-slide-strip")


def _parse_view(case: CaseSummary, days: list[float], query: dict) -> dict:
    """A deep link's state; anything missing or not part of this case falls back to the default, and each value that
    did is named in ``problems`` (the viewer checks its own values)."""
    problems = [p for p in [unknown_keys_problem(query, CASE_LINK_KEYS)] if p]
    try:
        visit = int(query.get("visit", "")) - 1
    except ValueError:
        visit = -1
    if "visit" in query and not 0 <= visit < len(days):
        problems.append(f"visit {query['visit'][:20]!r} is not one of this patient's {len(days)} visits")
    visit = visit if 0 <= visit < len(days) else (len(days) - 1 if days else None)
    day = days[visit] if days else None
    slide_days, report_days = {s.id: s.day for s in case.slides}, {r.id: r.day for r in case.reports}
    near_slide = nearest_by_day(slide_days, day)  # marked in the strip, whichever slide is shown
    slide_id = query["slide"] if query.get("slide") in slide_days else near_slide
    report_id = query["report"] if query.get("report") in report_days else nearest_by_day(report_days, day)
    problems += [f"{what} {query[what][:40]!r} is not one of this patient's" for what, known in (("slide", slide_days), ("report", report_days))
                 if what in query and query[what] not in known]
    opened = folds.open_folds(query, problems)
    return {"visit": visit, "slide": slide_id, "near_slide": near_slide, "report": report_id, "problems": problems,
            "viewer": {k: query[k] for k in LINK_KEYS if k in query}, "open": opened}


def _panel_header(title: str, chip_id: str, visit: int | None, days: list[float], *extra) -> dbc.CardHeader:
    return dbc.CardHeader(html.Div([html.Span(title, className="fw-semibold"), _visit_chip(chip_id, visit, days), *extra],
                                   className="d-flex align-items-center flex-wrap gap-1"), className="py-1")


def _safe(build, alert_id: str):
    try:
        return build()
    except PathReviewError as exc:
        return dbc.Alert(str(exc), color="warning", id=alert_id)


def next_case(workspace: Workspace, patient_id: str) -> str | None:
    """The case after this one in the worklist's default order (by patient id), the first after the last."""
    with workspace.store.session() as s:
        ids = list(s.scalars(select(Patient.id).order_by(Patient.id)))
    later = [i for i in ids if i > patient_id]
    following = later[0] if later else (ids[0] if ids else None)
    return following if following != patient_id else None


def _next_unreviewed_link(workspace: Workspace, patient_id: str) -> html.A | str:
    """The next case of the unreviewed worklist (by patient id, as the worklist lists it), or nothing when none is left."""
    with workspace.store.session() as s:
        scored = [m for m, manifest in workspace.manifests.items() if manifest.task != "patch"]  # as the cohort page's worklists
        following = next_on_worklist(s, scored, patient_id, "unreviewed")
    if following is None:
        return html.Span("no other unreviewed case", className="small text-muted ms-auto", id="next-unreviewed-case")
    return html.A(f"Next unreviewed case: {following} →", href=f"/case/{following}", id="next-unreviewed-case",
                  className="btn btn-outline-primary btn-sm ms-auto")


def layout(workspace: Workspace, tiles: TileService, explainers: PatientExplainers, patient_id: str, query: dict | None = None) -> html.Div:
    with workspace.store.session() as s:
        case = case_summary(s, patient_id)
    current = current_reviews(workspace.store, patient_id)
    p = case.patient
    days = [v.day for v in case.visits]
    view = _parse_view(case, days, query or {})
    visit = view["visit"]
    summary = " · ".join([f"{label} {value}" for label, value in attribute_texts(workspace.patient_attributes(), p.attributes)]
                         + [f"{len(case.slides)} slides · {len(case.visits)} visits · {len(case.reports)} reports"])
    opened = view["open"]
    # Each panel's part of the view sits beside it, for the export (see components.case_export).
    slide_body = (html.P("No slides for this patient.", className="text-muted") if not case.slides else html.Div([
        html.Div(_safe(lambda: slide_viewer.layout(workspace, tiles, view["slide"], view["viewer"], open_folds=opened), "case-slide-error"),
                 id="case-slide-panel"),
        case_export.view_part("slide"),
    ]))
    # The first screen (1366 x 768) holds the viewer, the risk plot and the verdicts; the visit's explanation and the
    # what-if editor follow the verdicts, the editor folded away (tests/test_layout_browser.py).
    sections = _safe(lambda: patient_panel.case_sections(explainers, patient_id, visit), "case-patient-error") if days else None
    if isinstance(sections, tuple):
        risk, details, what_if = sections
        patient_body = html.Div([risk, case_export.view_part("patient")])
        visit_card = dbc.Card([dbc.CardHeader(html.Span("The selected visit: what drove its prediction", className="fw-semibold")), dbc.CardBody([
            details, folds.fold("whatif", what_if, "whatif" in opened, "mt-2")])], className="mb-3", id="case-visit-card")
    else:
        patient_body = sections or html.P("No visits recorded.", className="text-muted")
        visit_card = ""
    report_options = [{"label": f"{r.id} ({_day_text(r.day)})" if r.day is not None else r.id, "value": r.id} for r in case.reports]
    report_body = html.Div([
        html.P("No reports.", className="text-muted") if not case.reports else "",
        dbc.RadioItems(id="case-report-choice", options=report_options, value=view["report"], inline=True, className="mb-2"),
        html.Div(id="case-report-panel"),
        case_export.view_part("report") if case.reports else "",
    ])
    return html.Div([
        dcc.Store(id="case-id", data=patient_id),
        dcc.Store(id="next-case", data=next_case(workspace, patient_id)),
        Keyboard(id="case-keys", captureKeys=CASE_KEYS),
        dcc.Store(id="case-days", data={"visits": days, "slides": {s.id: s.day for s in case.slides},
                                        "reports": {r.id: r.day for r in case.reports}}),
        dcc.Store(id="case-selected-slide", data=view["slide"]),
        dcc.Store(id="case-region-pan", data=None),  # the view and selection a verdict's region link asks of the shown viewer
        dcc.Store(id="case-folds", data=sorted(opened)),  # the unfolded secondary panels, for the link (components.folds)
        # One line: the case, its summary, the link to this view and the next case.
        html.Div([html.H3(f"Case {p.id}", id="case-title", className="me-2 mb-0"), review_form.status_badge(case, current),
                  html.Span(summary, className="text-muted small ms-3 me-3", id="case-summary"),
                  view_link("case-link", "case-link-group me-2"),
                  _next_unreviewed_link(workspace, patient_id)],
                 className="d-flex align-items-center flex-wrap gap-1 mb-2"),
        dbc.Alert(["This link's view could not be restored in full: ", "; ".join(view["problems"]), ". The nearest is shown instead."],
                  color="warning", id="case-link-problems", className="small py-2") if view["problems"] else "",
        # Slide beside the risk plot and the verdicts on wide screens, then the visit's explanation, the report below.
        dbc.Row([
            dbc.Col(dbc.Card([_panel_header("Slide", "visit-chip-slide", visit, days,
                                            _slide_strip(case, view["slide"], view["near_slide"]) if case.slides else "",
                                            html.A("open slide page", id="case-slide-page-link", href=f"/slide/{view['slide']}",
                                                   className="small ms-auto") if view["slide"] else ""),
                              dbc.CardBody(slide_body, className="p-2")], className="mb-3", id="case-slide-card"), lg=7),
            dbc.Col([
                dbc.Card([_panel_header("Patient", "visit-chip-patient", visit, days,
                                        html.Span("click a visit on the risk plot", className="small text-muted ms-auto")),
                          dbc.CardBody(patient_body, className="p-2")], className="mb-2", id="case-patient-card"),
                review_form.card(workspace, patient_id, current),
                visit_card,
            ], lg=5),
        ]),
        dbc.Card([_panel_header("Report", "visit-chip-report", visit, days,
                                html.Span("the report nearest the selected visit is shown", className="small text-muted ms-auto")),
                  dbc.CardBody(report_body)], className="mb-3", id="case-report-card"),
        case_export.card(case_figure_names(case, bool(workspace.models_for("report"))), read_only=not current_role_allows("reviewer")),
    ])


def register_callbacks(app: Dash, workspace: Workspace, tiles: TileService, explainers: PatientExplainers) -> None:
    @app.callback(
        Output("case-slide-panel", "children"), Output("case-selected-slide", "data"), Output("case-slide-page-link", "href"),
        Input({"type": "case-slide-thumb", "slide": ALL}, "n_clicks"), State("case-selected-slide", "data"), prevent_initial_call=True,
    )
    def switch_slide(clicks, current):
        if not ctx_triggered_click(clicks):
            return no_update, no_update, no_update
        slide_id = callback_context.triggered_id["slide"]
        if slide_id == current:
            return no_update, no_update, no_update
        return (_safe(lambda: slide_viewer.layout(workspace, tiles, slide_id, open_folds=set()), "case-slide-error"), slide_id,
                f"/slide/{slide_id}")

    @app.callback(
        Output({"type": "case-slide-thumb", "slide": ALL}, "className"),
        Input("case-selected-slide", "data"), Input("selected-visit", "data"), State("case-days", "data"),
        State({"type": "case-slide-thumb", "slide": ALL}, "id"),
    )
    def mark_slides(selected, visit, days, ids):
        near = nearest_by_day(days["slides"], days["visits"][visit] if visit is not None and days["visits"] else None)
        return [_strip_class(i["slide"], selected, near) for i in ids]

    @app.callback(
        Output("visit-chip-slide", "children"), Output("visit-chip-patient", "children"), Output("visit-chip-report", "children"),
        Output("case-report-choice", "value"),
        Input("selected-visit", "data"), State("case-days", "data"), prevent_initial_call=True,
    )
    def follow_visit(visit, days):
        if visit is None:
            return no_update, no_update, no_update, no_update
        text = _visit_text(visit, days["visits"])
        report_id = nearest_by_day(days["reports"], days["visits"][visit])
        return text, text, text, report_id if report_id is not None else no_update

    @app.callback(Output("case-report-panel", "children"), Input("case-report-choice", "value"), State("case-folds", "data"))
    def show_report(report_id, opened):
        return _safe(lambda: report_panel.layout(workspace, report_id, "lime" in (opened or [])), "case-report-error") if report_id else ""

    # The unfolded panels, as the link writes them: a fold not on the page (another slide's, a report's) keeps its state.
    app.clientside_callback(
        ClientsideFunction(namespace="casePage", function_name="openFolds"),
        Output("case-folds", "data"), Input({"type": "fold", "name": ALL}, "active_item"), State({"type": "fold", "name": ALL}, "id"),
        State("case-folds", "data"),
    )

    # The link to this view is rewritten in the address bar (history.replaceState) without reloading the page.
    app.clientside_callback(
        ClientsideFunction(namespace="casePage", function_name="deepLink"),
        Output("case-link", "value"),
        Input("case-id", "data"), Input("case-selected-slide", "data"), Input("selected-visit", "data"), Input("case-report-choice", "value"),
        Input("slide-map", "zoom"), Input("slide-map", "center"), Input("heat-layer-choice", "value"),
        Input("heat-overlap", "value"), Input("heat-cmap", "value"), Input("heat-threshold", "value"), Input("heat-norm", "value"),
        Input("heat-opacity", "value"), Input("base-brightness", "value"), Input("base-contrast", "value"), Input("base-gamma", "value"),
        Input("case-folds", "data"),
    )

    app.clientside_callback(
        ClientsideFunction(namespace="casePage", function_name="caseKeys"),
        Output({"type": "review-verdict", "modality": ALL}, "value"),
        Input("case-keys", "n_keydowns"), State("case-keys", "keydown"), State("next-case", "data"),
        State({"type": "review-verdict", "modality": ALL}, "id"), State({"type": "review-verdict", "modality": ALL}, "value"),
        prevent_initial_call=True,
    )

    # A verdict's region: the viewer switches to its slide there, or pans to it. The pan goes through a store of the
    # page: the viewer's map is absent while the shown slide cannot be opened, and Dash runs no callback with an absent
    # output, so a callback writing the map could not switch to the region's slide either.
    @app.callback(
        Output("case-slide-panel", "children", allow_duplicate=True), Output("case-selected-slide", "data", allow_duplicate=True),
        Output("case-region-pan", "data"),
        Input({"type": "review-region", "region": ALL}, "n_clicks"), State("case-selected-slide", "data"), State("case-id", "data"),
        prevent_initial_call=True,
    )
    def show_verdict_region(clicks, shown_slide, patient_id):
        """A region a verdict refers to: the viewer pans to it (switching to its slide first) and selects it."""
        if not ctx_triggered_click(clicks):
            return no_update, no_update, no_update
        try:
            region = current_region(workspace.store, callback_context.triggered_id["region"])
            with workspace.store.session() as s:
                if slide_record(s, region.slide_id).patient_id != patient_id:
                    return no_update, no_update, no_update
            max_zoom = tiles.geometry(region.slide_id).max_zoom
        except PathReviewError:
            return no_update, no_update, no_update
        view = annotation_layer.region_view(region, max_zoom)
        selected = {"region": region.region_id, "version": region.version}
        if region.slide_id != shown_slide:
            panel = _safe(lambda: slide_viewer.layout(workspace, tiles, region.slide_id, view, selected, open_folds=set()), "case-slide-error")
            return panel, region.slide_id, no_update
        return no_update, no_update, {"viewport": {"center": [view["lat"], view["lng"]], "zoom": view["z"], "transition": "flyTo"},
                                      "selected": selected}

    app.clientside_callback(
        "function (pan) { const no = window.dash_clientside.no_update; return pan ? [pan.viewport, pan.selected] : [no, no]; }",
        Output("slide-map", "viewport", allow_duplicate=True), Output("annotation-selected", "data", allow_duplicate=True),
        Input("case-region-pan", "data"), prevent_initial_call=True,
    )

    review_form.register_callbacks(app, workspace)
    case_export.register_callbacks(app, workspace, explainers)
