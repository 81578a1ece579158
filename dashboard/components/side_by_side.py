"""Two viewer panes side by side, in step: panning or zooming one moves the other to the same place (µm from the
slide's corner) at the same magnification, so that serial sections, two layers of one slide or two models' maps are
read together. The view and each pane's choice are in the address bar (``compare_link``), rewritten as they change.

The panes follow each other in the browser (``assets/side_by_side.js``); a pane whose slide, model or layer changes is
drawn again on the server, at the view of the other pane."""

from __future__ import annotations

import contextlib

from dash import ClientsideFunction, Dash, Input, Output, State, callback_context, dcc, html, no_update

from core.errors import PathReviewError
from core.slides.adjust import ADJUSTMENT_NAMES, DisplayAdjustment
from core.slides.tiles import TileService
from core.workspace import Workspace
from dashboard.components import image_adjust, viewer_pane
from dashboard.components.compare_link import PANES, CompareLink, PaneChoice, pane_id, pane_prefix
from dashboard.components.slide_viewer import restored_view

TITLES = {"left": "Left", "right": "Right"}


def latlng(center: list | dict) -> list[float]:
    """A map centre as Leaflet reports it (``{"lat", "lng"}``) or as it was given (``[lat, lng]``)."""
    return [float(center["lat"]), float(center["lng"])] if isinstance(center, dict) else [float(center[0]), float(center[1])]


def other(name: str) -> str:
    return PANES[1 - PANES.index(name)]


def layout(workspace: Workspace, tiles: TileService, link: CompareLink, slide_options: list[dict]) -> html.Div:
    """Both panes; the left one at the link's view (fitted to its slide without one), the right one following it."""
    left, right = link.panes["left"], link.panes["right"]
    geometry = {}
    for pane, choice in link.panes.items():
        with contextlib.suppress(PathReviewError):  # a slide that cannot be read: its pane says why
            geometry[pane] = tiles.geometry(choice.slide)
    left_view = right_view = None
    if "left" in geometry:
        left_view = ([link.view["lat"], link.view["lng"]], link.view["z"]) if link.view else restored_view(geometry["left"], None)
        if "right" in geometry:
            right_view = viewer_pane.synced_view(left_view[0], left_view[1], viewer_pane.view_ctx(geometry["left"]),
                                                 viewer_pane.view_ctx(geometry["right"]))
    return html.Div([
        dcc.Store(id="compare-following", data={}),  # the view each pane was last sent, so that its echo is not sent back
        html.Div([
            html.Div(viewer_pane.layout(workspace, tiles, "left", TITLES["left"], slide_options, left, left_view), className="col-lg-6 mb-2"),
            html.Div(viewer_pane.layout(workspace, tiles, "right", TITLES["right"], slide_options, right, right_view),
                     className="col-lg-6 mb-2"),
        ], className="row g-2"),
    ])


def register_callbacks(app: Dash, workspace: Workspace, tiles: TileService) -> None:
    for name in PANES:
        _register_pane(app, workspace, tiles, name)

    # Each pane follows the other: its view is set without animation, and the move it then reports is not sent back.
    app.clientside_callback(
        ClientsideFunction(namespace="sideBySide", function_name="follow"),
        Output(pane_id("left", "map"), "viewport"), Output(pane_id("right", "map"), "viewport"), Output("compare-following", "data"),
        *(Input(pane_id(n, "map"), prop) for n in PANES for prop in ("zoom", "center")),
        *(State(pane_id(n, "ctx"), "data") for n in PANES), State("compare-following", "data"),
        prevent_initial_call=True,
    )
    for name in PANES:
        app.clientside_callback(
            ClientsideFunction(namespace="sideBySide", function_name="readout"),
            Output(pane_id(name, "readout"), "children"),
            Input(pane_id(name, "map"), "zoom"), Input(pane_id(name, "map"), "center"), State(pane_id(name, "ctx"), "data"),
        )
    app.clientside_callback(
        ClientsideFunction(namespace="sideBySide", function_name="deepLink"),
        Output("compare-link", "value"),
        *(Input(pane_id(n, part), "value") for n in PANES for part in ("slide", "model", "layer")),
        Input(pane_id("left", "map"), "zoom"), Input(pane_id("left", "map"), "center"),
        *(Input(pane_id(n, part), "value") for n in PANES for part in ADJUSTMENT_NAMES),
    )


def _register_pane(app: Dash, workspace: Workspace, tiles: TileService, name: str) -> None:
    partner = other(name)

    @app.callback(
        Output(pane_id(name, "body"), "children"),
        Input(pane_id(name, "slide"), "value"), Input(pane_id(name, "model"), "value"), Input(pane_id(name, "layer"), "value"),
        State(pane_id(name, "map"), "zoom"), State(pane_id(name, "map"), "center"), State(pane_id(name, "ctx"), "data"),
        State(pane_id(partner, "map"), "zoom"), State(pane_id(partner, "map"), "center"), State(pane_id(partner, "ctx"), "data"),
        *(State(pane_id(name, part), "value") for part in ADJUSTMENT_NAMES),
        prevent_initial_call=True,
    )
    def redraw_pane(slide_id, model_id, layer, zoom, center, ctx, partner_zoom, partner_center, partner_ctx, *adjusted):
        """A pane shows another slide at the other pane's view, or another layer where it was."""
        if not slide_id or not layer:
            return no_update
        view = None
        if callback_context.triggered_id == pane_id(name, "slide") or ctx is None or ctx.get("slide_id") != slide_id:
            if partner_ctx is not None and partner_center is not None and partner_zoom is not None:
                with contextlib.suppress(PathReviewError):  # a slide that cannot be read: the pane says why
                    target = viewer_pane.view_ctx(tiles.geometry(slide_id))
                    view = viewer_pane.synced_view(latlng(partner_center), int(partner_zoom), partner_ctx, target)
        elif center is not None and zoom is not None:
            view = (latlng(center), int(zoom))
        try:
            adjustment = image_adjust.shown_adjustment(*adjusted)
        except PathReviewError:  # the sliders keep to the range: only a hand-made request gets here
            adjustment = DisplayAdjustment()
        return viewer_pane.body(workspace, tiles, name, PaneChoice(slide_id, model_id, layer, adjustment), view)

    @app.callback(Output(pane_id(name, "base"), "url"), *(Input(pane_id(name, part), "value") for part in ADJUSTMENT_NAMES),
                  State(pane_id(name, "ctx"), "data"), prevent_initial_call=True)
    def adjust_pane_tiles(brightness, contrast, gamma, ctx):
        try:
            return image_adjust.tile_url(ctx["slide_id"], image_adjust.shown_adjustment(brightness, contrast, gamma))
        except (PathReviewError, TypeError, KeyError):  # out of range, or the pane's slide cannot be read
            return no_update

    image_adjust.register_reset(app, pane_prefix(name))
