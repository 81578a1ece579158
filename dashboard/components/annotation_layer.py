"""Reviewers' regions on the slide viewer's map: the drawing layer (dash-leaflet's ``EditControl``), the regions in
view as vector features or raster tiles (``core.annotations.overlay``), and the consensus outline. The controls and
the region panel are in ``annotation_panel``; the slide viewer places both."""

from __future__ import annotations

import math
from urllib.parse import urlencode

import dash_leaflet as dl
from dash import Dash, Input, Output, State, dcc, html, no_update
from shapely.geometry import shape

from core.annotations.agreement import consensus, tumour_by_reviewer
from core.annotations.map_coordinates import geojson_of, to_map
from core.annotations.overlay import RegionIndexes, colours, features_in_view
from core.slides.tiles import SlideGeometry
from core.store.annotations import RegionVersion, current_regions, slide_regions_stamp
from core.workspace import Workspace

EMPTY = {"type": "FeatureCollection", "features": []}
JS = "pathReview.annotations"
DRAW_TOOLS = {"polyline": False, "circle": False, "polygon": {"allowIntersection": False, "showArea": False},
              "rectangle": {"showArea": False}, "circlemarker": True, "marker": False}
CONSENSUS_STYLE = {"color": "#000000", "weight": 3, "dashArray": "8 6", "fill": False, "opacity": 0.9}
EDITED_STYLE = {"color": "#00e5ff", "weight": 3, "fillOpacity": 0.1}
FIT_REGION_PX = 400  # a region shown by a link fills about this many screen pixels


def tile_url(slide_id: str, stamp: int, authors: list[str]) -> str:
    return f"/slides/{slide_id}/annotations/{{z}}/{{x}}/{{y}}.png?" + urlencode({"authors": ",".join(authors), "v": stamp})


def draw_control(can_draw: bool) -> list:
    """The EditControl, for a user who may draw; its events go to the server through ``assets/annotations.js``."""
    if not can_draw:
        return []
    # "mounted" adds the freehand tool to Leaflet.draw's toolbar; "moved" is fired by the drag handler of the selected shape.
    handlers = {f"draw:{event}": {"variable": f"{JS}.{event}"} for event in ("created", "edited", "deleted", "mounted", "moved")}
    return [dl.EditControl(id="annotation-draw", position="topleft", draw=DRAW_TOOLS, edit={"edit": True, "remove": True},
                           disableDefaultEventHandlers=True, eventHandlers=handlers)]


def editable_shape(region: RegionVersion | None, max_zoom: int) -> list:
    """The selected region, inside the drawing layer, so that the EditControl's edit and delete tools act on it alone.
    Polygons, with their holes, are reshaped vertex by vertex; a rectangle is drawn as one (Leaflet.draw then moves it
    by its centre and resizes it by its corners); a marker is dragged. Polygons, rectangles and regions in several parts
    are moved whole by dragging them (``assets/annotations.js``); a region in several parts is not reshaped."""
    if region is None:
        return []
    geometry = to_map(region.geometry, max_zoom)
    if geometry["type"] == "Point":
        lng, lat = geometry["coordinates"]
        return [dl.CircleMarker(id="annotation-editing", center=[lat, lng], radius=7, pathOptions=EDITED_STYLE)]
    if geometry["type"] not in ("Polygon", "MultiPolygon"):
        return []
    drag = {"mousedown": {"variable": f"{JS}.moveStart"}}
    # Every ring of every part, as Leaflet's [lat, lng] without the closing point: the drag moves them all by one offset.
    parts = geometry["coordinates"] if geometry["type"] == "MultiPolygon" else [geometry["coordinates"]]
    positions = [[[[lat, lng] for lng, lat in ring[:-1]] for ring in part] for part in parts]
    # Leaflet.draw's pencil reshapes a polygon's outer ring and holes, but offers no vertices on a multi-part shape.
    words = ("Drag to move the region with all its parts" if len(parts) > 1 else
             "Drag to move the region with its holes; the pencil reshapes it" if len(parts[0]) > 1 else
             "Drag to move the region; the pencil reshapes it")
    hint = [dl.Tooltip(words, sticky=True, id="annotation-move-hint")]
    ring = positions[0][0]
    lats, lngs = sorted({p[0] for p in ring}), sorted({p[1] for p in ring})
    if len(positions) == 1 and len(positions[0]) == 1 and len(ring) == 4 and len(lats) == 2 and len(lngs) == 2:
        return [dl.Rectangle(id="annotation-editing", bounds=[[lats[0], lngs[0]], [lats[1], lngs[1]]], pathOptions=EDITED_STYLE,
                             eventHandlers=drag, children=hint)]
    shown = positions if len(positions) > 1 else positions[0] if len(positions[0]) > 1 else ring
    return [dl.Polygon(id="annotation-editing", positions=shown, pathOptions=EDITED_STYLE, eventHandlers=drag, children=hint)]


def map_layers(g: SlideGeometry, can_draw: bool) -> list:
    """The map's annotation layers, above the heatmap: tiles or vector regions, the consensus, the drawing layer."""
    return [
        dl.TileLayer(id="annotation-tiles", url="", tileSize=g.tile_size, noWrap=True, maxNativeZoom=g.max_zoom, maxZoom=g.max_zoom + 1,
                     zIndex=20, opacity=1.0),
        dl.GeoJSON(id="annotation-vector", data=EMPTY, style={"variable": f"{JS}.style"}, pointToLayer={"variable": f"{JS}.point"},
                   zoomToBounds=False),
        dl.GeoJSON(id="annotation-consensus", data=EMPTY, style=CONSENSUS_STYLE, interactive=False),
        # The selected region's editable shape in a pane above the regions in view, which are redrawn after each change
        # and would otherwise cover it and take the press meant to drag it.
        dl.Pane(dl.FeatureGroup(id="annotation-edit-group", children=draw_control(can_draw)), name="annotation-editing",
                style={"zIndex": 450}),
    ]


def stores(stamp: int, selected: dict | None = None) -> list:
    return [dcc.Store(id="annotation-stamp", data=stamp), dcc.Store(id="annotation-selected", data=selected)]


def view_box(bounds: list | None, ctx: dict) -> tuple[float, float, float, float]:
    """The map's bounds ``[[south, west], [north, east]]`` as a level-0 box (the whole slide without bounds)."""
    if not bounds:
        return 0.0, 0.0, float(ctx["width"]), float(ctx["height"])
    scale = 2.0 ** ctx["max_zoom"]
    (south, west), (north, east) = bounds
    return west * scale, -north * scale, east * scale, -south * scale


def region_view(region: RegionVersion, max_zoom: int) -> dict:
    """The map centre and zoom that show the whole region (``lat``, ``lng``, ``z``), as the viewer's deep links give them."""
    xmin, ymin, xmax, ymax = shape(region.geometry).bounds
    scale = 2.0**max_zoom
    extent = max(xmax - xmin, ymax - ymin, 1.0)
    z = max(0, min(max_zoom, max_zoom - math.ceil(math.log2(extent / FIT_REGION_PX))))
    return {"lat": -(ymin + ymax) / 2 / scale, "lng": (xmin + xmax) / 2 / scale, "z": z}


def register_callbacks(app: Dash, workspace: Workspace, indexes: RegionIndexes) -> None:
    classes = colours(workspace.config.annotation_classes)

    @app.callback(
        Output("annotation-vector", "data"), Output("annotation-tiles", "url"), Output("annotation-view-mode", "children"),
        Input("slide-map", "bounds"), Input("annotation-authors", "value"), Input("annotation-stamp", "data"), State("slide-ctx", "data"),
    )
    def show_regions(bounds, authors, _stamp, ctx):
        index = indexes.get(ctx["slide_id"])
        authors = list(authors or [])
        if not index.regions:
            return EMPTY, "", ""
        features = features_in_view(index, *view_box(bounds, ctx), authors, ctx["max_zoom"], classes)
        if features is None:
            return EMPTY, tile_url(ctx["slide_id"], index.stamp, authors), html.Span(
                "Many regions in view: drawn as outlines on tiles. Zoom in to select and edit them.", id="annotation-tiled")
        return {"type": "FeatureCollection", "features": features}, "", f"{len(features)} regions in view."

    @app.callback(
        Output("annotation-consensus", "data"),
        Input("annotation-consensus-rule", "value"), Input("annotation-stamp", "data"), State("slide-ctx", "data"),
    )
    def show_consensus(rule, _stamp, ctx):
        if rule not in ("union", "majority"):
            return EMPTY
        by_reviewer = tumour_by_reviewer(current_regions(workspace.store, ctx["slide_id"]), workspace.config.annotation_classes)
        geom = consensus(by_reviewer, rule)
        if geom.is_empty:
            return EMPTY
        return {"type": "FeatureCollection", "features": [{"type": "Feature", "properties": {"rule": rule},
                                                           "geometry": to_map(geojson_of(geom), ctx["max_zoom"])}]}

    @app.callback(Output("annotation-stamp", "data", allow_duplicate=True), Input("annotation-refresh", "n_intervals"),
                  State("annotation-stamp", "data"), State("slide-ctx", "data"), prevent_initial_call=True)
    def follow_other_reviewers(_n, stamp, ctx):
        """Another reviewer's change shows within the refresh interval."""
        current = slide_regions_stamp(workspace.store, ctx["slide_id"])
        return current if current != stamp else no_update

