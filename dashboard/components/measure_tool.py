"""The slide viewer's ruler and area tool: with the ruler on, two clicks on the slide draw a line labelled with its
length; with the area tool on, each click adds a corner and the region is labelled with its area. Lengths are in µm
(mm from 1,000 µm) and areas in µm² or mm², from the slide's µm per pixel (``core.slides.measure``); a slide that
records none is measured in pixels, and the tool's tooltip says so. While a tool is on, a click measures and does not
select a patch."""

from __future__ import annotations

import dash_bootstrap_components as dbc
import dash_leaflet as dl
from dash import Dash, Input, Output, State, callback_context, dcc, html, no_update

from core.slides.measure import PixelSize, Point, path_length, polygon_area

MAX_CORNERS = 200  # an area's corners; clicks past this are not kept
MODES = {"off": "Off", "ruler": "Ruler", "area": "Area"}
LINE_STYLE = {"color": "#ffd400", "weight": 3, "opacity": 1.0}
AREA_STYLE = {"color": "#ffd400", "weight": 2, "fillColor": "#ffd400", "fillOpacity": 0.15}
HOW = {"ruler": "Ruler: click two points on the slide.", "area": "Area: click the corners of a region, one after another."}


def tooltip(size: PixelSize) -> str:
    return f"{HOW['ruler']} {HOW['area']} {size.describe()} Clear removes the drawing; Off returns clicks to the patch inspector."


def controls(size: PixelSize) -> html.Div:
    """The tool's switch (off, ruler, area), Clear, and the last reading; its tooltip names the µm per pixel used."""
    return html.Div([
        html.Span("Measure", className="me-1"),
        dbc.RadioItems(id="measure-mode", options=[{"label": label, "value": mode} for mode, label in MODES.items()], value="off",
                       inline=True, className="btn-group btn-group-sm me-1", inputClassName="btn-check",
                       labelClassName="btn btn-outline-secondary btn-sm", labelCheckedClassName="active"),
        dbc.Button("Clear", id="measure-clear", size="sm", color="link", className="p-0 me-2", n_clicks=0),
        html.Span(id="measure-readout", className="fw-semibold"),
    ], id="measure-tool", title=tooltip(size), className="d-flex align-items-center measure-tool",
        **{"data-units": "µm" if size.known else "px"})


def map_layer() -> dl.LayerGroup:
    return dl.LayerGroup(id="measure-layer", children=[])


def stores() -> list:
    return [dcc.Store(id="measure-points", data=[])]


def level0_point(latlng: dict, max_zoom: int) -> Point:
    """A map click in level-0 pixels (``core.annotations.map_coordinates``: x = lng·2^max_zoom, y = −lat·2^max_zoom)."""
    scale = 2.0**max_zoom
    return float(latlng["lng"]) * scale, -float(latlng["lat"]) * scale


def next_points(points: list[Point], mode: str, point: Point) -> list[Point]:
    """The ruler keeps two points (a third click starts a new line); the area tool keeps adding corners."""
    if mode == "ruler" and len(points) >= 2:
        return [point]
    return [*points, point] if len(points) < MAX_CORNERS else points


def drawing(points: list[Point], mode: str, size: PixelSize, max_zoom: int) -> tuple[list, str]:
    """The map's shapes for the points (level-0 pixels), the measurement labelled on them, and the reading in words."""
    scale = 2.0**max_zoom
    latlngs = [[-y / scale, x / scale] for x, y in points]
    # Not interactive: a click on a drawn shape still reaches the map, as the next point.
    shapes: list = [dl.CircleMarker(center=p, radius=4, pathOptions={**LINE_STYLE, "fillOpacity": 1.0},
                                  interactive=False) for p in latlngs]
    if mode == "ruler" and len(points) == 2:
        length = path_length(points, size)
        label = dl.Tooltip(length.text, permanent=True, direction="top", className="measure-label")
        return [dl.Polyline(positions=latlngs, pathOptions=LINE_STYLE, interactive=False, children=[label]), *shapes], f"Length {length.text}"
    if mode == "area" and len(points) >= 3:
        area = polygon_area(points, size)
        label = dl.Tooltip(area.text, permanent=True, direction="center", className="measure-label")
        return [dl.Polygon(positions=latlngs, pathOptions=AREA_STYLE, interactive=False, children=[label]), *shapes], f"Area {area.text}"
    if mode == "area" and len(points) == 2:
        return [dl.Polyline(positions=latlngs, pathOptions=LINE_STYLE, interactive=False), *shapes], "Click a third corner."
    if len(points) == 1:
        return shapes, "Click the second point." if mode == "ruler" else "Click the next corner."
    return shapes, HOW.get(mode, "")


def register_callbacks(app: Dash) -> None:
    @app.callback(
        Output("measure-points", "data"), Output("measure-layer", "children"), Output("measure-readout", "children"),
        Input("slide-map", "clickData"), Input("measure-mode", "value"), Input("measure-clear", "n_clicks"),
        State("measure-points", "data"), State("slide-ctx", "data"), prevent_initial_call=True,
    )
    def measure(click, mode, _clear, points, ctx):
        mode = mode if mode in MODES else "off"
        points = [tuple(p) for p in points or []]
        if callback_context.triggered_id in ("measure-mode", "measure-clear"):
            points = []
        elif mode == "off" or not click:
            return no_update, no_update, no_update
        else:
            points = next_points(points, mode, level0_point(click["latlng"], ctx["max_zoom"]))
        size = PixelSize(ctx.get("um_x"), ctx.get("um_y"), "")
        shapes, reading = drawing(points, mode, size, ctx["max_zoom"])
        return [list(p) for p in points], shapes, reading
