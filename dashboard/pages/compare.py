"""Side-by-side page (``/compare?left=<slide>&…``): two synchronised viewers of one patient's slides, each with its own
patch model and layer (``dashboard.components.side_by_side``); the address holds both panes and the view."""

from __future__ import annotations

import contextlib

import dash_bootstrap_components as dbc
from dash import html
from sqlalchemy import select

from core.errors import PathReviewError
from core.slides.tiles import TileService
from core.store.cases import slide_record
from core.store.schema import Slide
from core.workspace import Workspace
from dashboard.components import side_by_side
from dashboard.components.compare_link import parse_compare_link
from dashboard.components.slide_viewer import position_fits
from dashboard.components.view_link import view_link
from dashboard.components.viewer_link import position_problem
from dashboard.components.viewer_pane import pane_layers


def _day(day: float | None) -> str:
    return "" if day is None else f" (day {day:.0f})"


def layout(workspace: Workspace, tiles: TileService, query: dict) -> html.Div:
    """``query``: the link's values (``compare_link.COMPARE_KEYS``); ``left`` is required."""
    if not query.get("left"):
        return html.Div([html.H2("Side by side"), dbc.Alert("Open the side-by-side view from a slide: its viewer has a "
                                                            "“Side by side” link.", color="info", id="compare-empty")])
    with workspace.store.session() as s:
        left = slide_record(s, query["left"])
        patient_id = left.patient_id
        slides = list(s.scalars(select(Slide).where(Slide.patient_id == patient_id).order_by(Slide.id)))
    ordered = [left.id, *(r.id for r in slides if r.id != left.id)]
    options = [{"label": f"{r.id}{_day(r.day)}", "value": r.id} for r in slides]
    link = parse_compare_link(query, ordered, workspace.models_for("patch"), [o["value"] for o in pane_layers(workspace)])
    with contextlib.suppress(PathReviewError):  # a slide that cannot be read: its pane says why
        g = tiles.geometry(left.id)
        if link.view is not None and not position_fits(g, link.view["lat"], link.view["lng"], link.view["z"]):
            link.problems.append(position_problem())
            link.view = None
    return html.Div([
        html.Div([html.H3("Side by side", className="me-3 mb-0", id="compare-title"),
                  html.A(f"Case {patient_id}", href=f"/case/{patient_id}", className="me-3"),
                  view_link("compare-link", "flex-grow-1 w-auto")],
                 className="d-flex align-items-center mb-2"),
        dbc.Alert(["This link's view could not be restored in full: ", "; ".join(link.problems), "."],
                  color="warning", id="compare-link-problems", className="small py-2") if link.problems else "",
        side_by_side.layout(workspace, tiles, link, options),
        html.P("Pan or zoom either viewer: the other follows, to the same place (µm from each slide's top-left corner) at the same "
               "magnification. Each pane shows the stored heatmap of its patch model; a layer not computed yet is computed on the "
               "slide page.", className="small text-muted"),
    ])
