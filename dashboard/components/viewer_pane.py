"""One pane of the side-by-side view: a slide on a deep-zoom map with one stored layer of one patch model over it, the
layer's key, and a readout of the magnification and the view's centre. Its ids carry the pane's name
(``pane-left-map``), so that two sit on one page. It shows only what is stored: a layer that needs a computation is
computed on the slide page, and the pane says so."""

from __future__ import annotations

import math

import dash_bootstrap_components as dbc
import dash_leaflet as dl
from dash import dcc, html

from core.errors import PathReviewError
from core.heatmaps.overlay import QC_KEEP, QC_LAYERS, OverlayStyle, source_layer
from core.heatmaps.slide_heatmap import OVERLAPS, latest_cached_heatmap
from core.heatmaps.slide_layers import slide_layers
from core.slides.reader import SlideReadError
from core.slides.tiles import SlideGeometry, TileService
from core.workspace import Workspace
from dashboard.components import image_adjust
from dashboard.components.compare_link import NO_OVERLAY, PaneChoice, pane_id, pane_prefix
from dashboard.components.slide_viewer import (
    fit_zoom,
    heat_tile_url,
    layer_options,
    map_bounds,
    pan_limits,
    position_fits,
    restored_view,
)
from dashboard.components.viewer_legend import overlay_key
from dashboard.components.viewer_link import DEFAULT_STYLE


def pane_layers(workspace: Workspace) -> list[dict]:
    """The layers a pane offers: the bare slide, then the slide viewer's model layers (its QC layers are on the slide page)."""
    models = workspace.models_for("patch")
    class_names = list(workspace.manifest(models[0]).class_names) if models else []
    return [{"label": "Slide only (no overlay)", "value": NO_OVERLAY},
            *(o for o in layer_options(workspace, class_names) if o["value"] not in QC_LAYERS)]


def synced_view(center: list[float], zoom: int, source: dict, target: dict) -> tuple[list[float], int]:
    """The view of the ``target`` slide that shows the same place at the same magnification as ``center``/``zoom`` on
    the ``source`` slide: the same µm from each slide's top-left corner, the same µm per screen pixel (the nearest
    zoom level). ``source``/``target``: ``{"mpp", "max_zoom", "min_zoom"}``. ``assets/side_by_side.js`` does the same."""
    um_x = center[1] * 2.0 ** source["max_zoom"] * source["mpp"]
    um_y = -center[0] * 2.0 ** source["max_zoom"] * source["mpp"]
    um_per_screen_px = source["mpp"] * 2.0 ** (source["max_zoom"] - zoom)
    z = round(target["max_zoom"] - math.log2(um_per_screen_px / target["mpp"]))
    z = max(target["min_zoom"], min(target["max_zoom"] + 1, z))
    scale = 2.0 ** target["max_zoom"]
    return [-um_y / target["mpp"] / scale, um_x / target["mpp"] / scale], z


def view_ctx(g: SlideGeometry) -> dict:
    return {"slide_id": g.slide_id, "max_zoom": g.max_zoom, "min_zoom": max(0, fit_zoom(g) - 1), "mpp": g.mpp, "width": g.width,
            "height": g.height}


def _overlay(workspace: Workspace, name: str, choice: PaneChoice) -> tuple[str, object, object]:
    """The overlay's tile URL, its key, and a note when the pane cannot show the layer."""
    if choice.layer == NO_OVERLAY or choice.model is None:
        return "", None, None
    heat = latest_cached_heatmap(workspace, choice.slide, choice.model, OVERLAPS)
    link = html.A("slide page", href=f"/slide/{choice.slide}")
    if heat is None:
        return "", None, html.Span([f"No heatmap of {choice.model} is stored for this slide: compute it on the ", link, "."])
    style = OverlayStyle(layer=choice.layer, cmap=str(DEFAULT_STYLE["cmap"]), threshold=float(DEFAULT_STYLE["thr"]),
                         norm=str(DEFAULT_STYLE["norm"]), qc=QC_KEEP)
    try:
        ready = slide_layers(workspace, heat).ready(source_layer(style))
    except PathReviewError as exc:
        return "", None, str(exc)
    if not ready:
        return "", None, html.Span(["This layer is not computed for this slide yet: open the ", link, " to compute it."])
    key = overlay_key(choice.layer, style.cmap, style.threshold, style.norm, heat.class_names, pane_id(name, "key"))
    return heat_tile_url(choice.slide, heat.key, style), key, None


def body(workspace: Workspace, tiles: TileService, name: str, choice: PaneChoice, view: tuple[list[float], int] | None) -> list:
    """The pane's map at ``view`` (centre and zoom; fit to the slide without one), its key, readout and note."""
    try:
        g = tiles.geometry(choice.slide)
    except SlideReadError as exc:
        return [dbc.Alert(str(exc), color="danger", id=pane_id(name, "error"))]
    bounds = map_bounds(g)
    center, zoom = view if view is not None and position_fits(g, view[0][0], view[0][1], view[1]) else restored_view(g, None)
    url, key, note = _overlay(workspace, name, choice)
    ctx = view_ctx(g)
    the_map = dl.Map(
        id=pane_id(name, "map"), crs="Simple", center=center, zoom=zoom, minZoom=ctx["min_zoom"], maxZoom=g.max_zoom + 1,
        maxBounds=pan_limits(g), zoomSnap=1, trackViewport=True,
        attributionControl=False, className="pane-map", style={"height": "min(620px, 64vh)", "minHeight": "340px", "background": "#f4f4f4"},
        children=[
            dl.TileLayer(id=pane_id(name, "base"), url=image_adjust.tile_url(g.slide_id, choice.adjustment), tileSize=g.tile_size,
                         noWrap=True, bounds=bounds, maxNativeZoom=g.max_zoom, minZoom=0, maxZoom=g.max_zoom + 1),
            dl.TileLayer(url=url, tileSize=g.tile_size, noWrap=True, bounds=bounds, maxNativeZoom=g.max_zoom, maxZoom=g.max_zoom + 1,
                         opacity=float(DEFAULT_STYLE["opacity"]), zIndex=10),
        ],
    )
    return [
        dcc.Store(id=pane_id(name, "ctx"), data=ctx),
        html.Div([the_map, key or ""], className="slide-viewer"),
        html.Div(id=pane_id(name, "readout"), className="small text-muted mt-1 pane-readout"),
        html.Div(note or "", id=pane_id(name, "note"), className="small text-warning"),
    ]


def layout(workspace: Workspace, tiles: TileService, name: str, title: str, slide_options: list[dict], choice: PaneChoice,
           view: tuple[list[float], int] | None) -> dbc.Card:
    """The pane: its choice of slide, patch model and layer above the map."""
    models = workspace.models_for("patch")
    pick = {"clearable": False, "className": "pane-choice"}
    return dbc.Card([
        dbc.CardHeader(html.Div([
            html.Span(title, className="fw-semibold"),
            dcc.Dropdown(id=pane_id(name, "slide"), options=slide_options, value=choice.slide, style={"width": "12rem"}, **pick),
            dcc.Dropdown(id=pane_id(name, "model"), options=models, value=choice.model, style={"width": "9rem"}, **pick),
            dcc.Dropdown(id=pane_id(name, "layer"), options=pane_layers(workspace), value=choice.layer, style={"flex": "1 1 0", "minWidth": "0"},
                         **pick),
        ], className="d-flex align-items-center gap-2"), className="py-1 px-2"),  # one line: both maps start level
        dbc.CardBody([html.Div(body(workspace, tiles, name, choice, view), id=pane_id(name, "body")),
                      image_adjust.controls(pane_prefix(name), choice.adjustment)], className="p-2"),
    ], id=pane_id(name, "card"), className="h-100")
