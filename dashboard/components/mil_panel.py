"""The MIL panel for a lab's feature files: a head over the slide's CLAM/TRIDENT features drawn as map layers (attention,
raw or CLAM percentile; per-class instance scores) with legend, threshold and opacity; the slide prediction with its
top-k and bottom-k patches read through OpenSlide; and region refinement (the region in view re-extracted at 50 % or
75 % overlap by the head's encoder, as a job), whose fine map is drawn over the slide. Its map layers sit in the slide
viewer's map (``map_children``); its callbacks are registered by the viewer's."""

from __future__ import annotations

from urllib.parse import urlencode

import dash_bootstrap_components as dbc
import dash_leaflet as dl
import numpy as np
from dash import Dash, Input, Output, State, dcc, html, no_update

from core.errors import PathReviewError
from core.heatmaps.feature_layers import MilSlideResult, heads_for_slide, mil_layers, read_patches_at, region_name
from core.heatmaps.overlay import COLORMAPS, colorbar_colours
from core.heatmaps.region_refinement import REFINE_OVERLAPS, RefinedRegion, Region
from core.jobs.dispatch import JobDispatcher
from core.jobs.layer_jobs import start_job_once
from core.jobs.state import ACTIVE, JobSpec, get_job
from core.slides.tiles import SlideGeometry
from core.workspace import Workspace
from dashboard.auth import current_username, requires_role
from dashboard.components.patch_inspector import png_data_uri

POLL_MS = 700
TOP_K = 6
HIDDEN = {"display": "none"}


def map_children(g: SlideGeometry, bounds: list[list[float]]) -> list:
    """The panel's layers inside the slide viewer's map: the slide-wide map, the refined region's map and its outline."""
    common = {"tileSize": g.tile_size, "noWrap": True, "bounds": bounds, "maxNativeZoom": g.max_zoom, "maxZoom": g.max_zoom + 1}
    return [dl.TileLayer(id="milf-layer", url="", opacity=0.6, zIndex=12, **common),
            dl.TileLayer(id="milf-refine-layer", url="", opacity=0.8, zIndex=13, **common),
            dl.Rectangle(id="milf-region", bounds=[[0, 0], [0, 0]], pathOptions={"color": "#00bcd4", "weight": 2, "fill": False})]


def legend_slot() -> html.Div:
    """Where the shown MIL layer's legend sits, over the viewer's upper left corner, beside the zoom buttons."""
    return html.Div(id="milf-legend", className="milf-legend", style=HIDDEN)


def _layer_options(workspace: Workspace, model_id: str) -> list[dict]:
    manifest = workspace.manifest(model_id)
    options = [{"label": "Attention (raw score)", "value": "attention:raw"},
               {"label": "Attention (CLAM percentile)", "value": "attention:percentile"}]
    if manifest.architecture in ("clam_sb", "clam_mb"):
        options += [{"label": f"Instance score: {c}", "value": f"instance:{c}"} for c in manifest.class_names]
    return options + [{"label": "None", "value": ""}]


def layout(workspace: Workspace, slide_id: str, first_layer: str = "attention:percentile") -> html.Div:
    """The panel of the slide's feature-file MIL heads; ``first_layer`` is the layer drawn at first ("" for none)."""
    heads = heads_for_slide(workspace, slide_id)
    if not heads:
        return html.Div(id="milf-panel")
    return html.Div(dbc.Card([
        dbc.CardHeader("MIL head over the lab's feature files"),
        dbc.CardBody([
            dcc.Store(id="milf-pending", data=None),  # {"job", "what": "prediction" | "refine", "layer"}
            dcc.Store(id="milf-ready", data=0),  # bumped when a job of this panel has finished
            dcc.Store(id="milf-refined", data=None),  # the refined region's layer name, once stored
            dcc.Interval(id="milf-poll", interval=POLL_MS, disabled=True),
            dbc.Row([
                dbc.Col([dbc.Label("Head"), dcc.Dropdown(id="milf-head", options=heads, value=heads[0], clearable=False)], md=4),
                dbc.Col([dbc.Label("Layer"), dcc.Dropdown(id="milf-layer-choice", options=_layer_options(workspace, heads[0]),
                                                          value=first_layer, clearable=False)], md=4),
                dbc.Col([dbc.Label("Colour map"), dcc.Dropdown(id="milf-cmap", options=list(COLORMAPS), value="Inferno", clearable=False)], md=4),
            ]),
            dbc.Row([
                dbc.Col([dbc.Label("Threshold (of the legend's range)"),
                         dcc.Slider(id="milf-threshold", min=0, max=1, step=0.05, value=0, marks={0: "0", 0.5: "0.5", 1: "1"})], md=6),
                dbc.Col([dbc.Label("Opacity"),
                         dcc.Slider(id="milf-opacity", min=0, max=1, step=0.05, value=0.6, marks={0: "0", 0.5: "0.5", 1: "1"})], md=6),
            ], className="mt-2"),
            html.P(id="milf-encoder", className="small text-muted mt-2"),
            html.Div(id="milf-status", className="small"),
            html.Div(id="milf-prediction", className="mt-2"),
            html.Hr(),
            html.H6("Region refinement"),
            html.P("Pan and zoom the viewer to the region to refine; its patches are re-extracted by the head's encoder at the "
                   "chosen overlap, and the head is run over them (CLAM's ROI heatmap). Percentiles are against the whole "
                   "slide's attention scores.", className="small text-muted"),
            html.Div([dbc.RadioItems(id="milf-overlap", options=[{"label": f"{o:.0%} overlap", "value": o} for o in REFINE_OVERLAPS],
                                     value=0.5, inline=True, className="me-3"),
                      dbc.Button("Refine the region in view", id="milf-refine", size="sm", color="primary")],
                     className="d-flex align-items-center flex-wrap"),
            html.Div(id="milf-refine-status", className="small mt-2"),
            html.Div(id="milf-refined-view", className="small mt-2"),
        ]),
    ], className="mt-3"), id="milf-panel")


def tile_url(slide_id: str, model_id: str, layer: str, cmap: str, threshold: float, show: str = "percentile") -> str:
    query = urlencode({"layer": layer, "cmap": cmap, "thr": threshold, "show": show})
    return f"/slides/{slide_id}/mil/{model_id}/{{z}}/{{x}}/{{y}}.png?{query}"


def legend(cmap: str, low: float, high: float, label: str, threshold: float = 0.0) -> list:
    """A horizontal colour bar: the layer's name, its colours from low to high, and the threshold below which cells are
    transparent."""
    gradient = f"linear-gradient(to right, {', '.join(colorbar_colours(cmap))})"
    cut = low + threshold * (high - low)
    return [html.Div(label, className="milf-legend-title"),
            html.Div(className="milf-legend-bar", style={"background": gradient}),
            html.Div([html.Span(f"{low:.3g}"), html.Span(f"{high:.3g}")], className="milf-legend-ticks"),
            html.Div(f"hidden below {cut:.3g}" if threshold > 0 else "no threshold", className="milf-legend-threshold")]


def _gallery(images: list[np.ndarray], scores: np.ndarray, title: str, gallery_id: str) -> html.Div:
    figures = [html.Figure([html.Img(src=png_data_uri(image), className="inspector-image"),
                            html.Figcaption(f"#{rank + 1} · {score:.3f}")], className="inspector-figure")
               for rank, (image, score) in enumerate(zip(images, scores, strict=True))]
    return html.Div([html.Div(title, className="small fw-bold"), html.Div(figures, className="inspector-images milf-gallery", id=gallery_id)])


def prediction_view(workspace: Workspace, slide_id: str, result: MilSlideResult) -> html.Div:
    manifest = workspace.manifest(result.model_id)
    probabilities = result.prediction.probabilities
    top, bottom = result.prediction.top_patches(TOP_K)
    scores = result.branch_scores()
    images = read_patches_at(workspace, slide_id, result.coords[np.concatenate([top, bottom])], result.side)
    score_class = manifest.class_names.index(manifest.score_class)
    return html.Div([
        html.H6(f"{manifest.name}: P({manifest.score_class}) = {probabilities[score_class]:.3f} · predicted "
                f"{manifest.class_names[result.prediction.predicted]} · {len(result.coords):,} patches", id="milf-prediction-line"),
        html.P("Attention ranks patches within this slide; it depends on the bag and is not a patch-level prediction. Top and "
               "bottom patches by the predicted class's attention branch (raw score below each).", className="small text-muted"),
        _gallery(images[:len(top)], scores[top], f"Top {len(top)} attended patches", "milf-topk"),
        _gallery(images[len(top):], scores[bottom], f"Bottom {len(bottom)} attended patches", "milf-bottomk"),
    ])


def refined_view(workspace: Workspace, slide_id: str, model_id: str, refined: RefinedRegion, cmap: str) -> html.Div:
    top = refined.top_patches(4)
    images = read_patches_at(workspace, slide_id, refined.origins[top], refined.patch0)
    names = workspace.manifest(model_id).class_names
    probabilities = ", ".join(f"P({name}) = {p:.3f}" for name, p in zip(names, refined.probabilities, strict=True))
    gradient = f"linear-gradient(to right, {', '.join(colorbar_colours(cmap))})"
    return html.Div([
        html.Div([html.Span("Region map: attention percentile 0", className="me-1"),
                  html.Span(className="milf-legend-bar d-inline-block", style={"background": gradient, "width": "120px"}),
                  html.Span("100", className="ms-1")], id="milf-refined-legend"),
        html.Div(f"Refined: {len(refined.origins):,} patches at {refined.region.overlap:.0%} overlap in {refined.seconds:.1f} s on "
                 f"{refined.device}; the region's bag: {probabilities}; percentiles against "
                 f"the {refined.percentile_reference}'s scores.", id="milf-refined-summary"),
        _gallery(images, refined.attention_raw[top], "Region's top patches", "milf-refined-topk"),
    ])


def region_in_view(bounds: list[list[float]], ctx: dict) -> tuple[int, int, int, int]:
    """The viewer's extent (map units) as a level-0 rectangle clipped to the slide: (x, y, width, height)."""
    scale = 2.0 ** ctx["max_zoom"]
    lats, lngs = [p[0] for p in bounds], [p[1] for p in bounds]
    x0, x1 = max(0.0, min(lngs) * scale), min(float(ctx["width"]), max(lngs) * scale)
    y0, y1 = max(0.0, -max(lats) * scale), min(float(ctx["height"]), -min(lats) * scale)
    return int(x0), int(y0), max(0, int(x1 - x0)), max(0, int(y1 - y0))


def register_callbacks(app: Dash, workspace: Workspace, dispatcher: JobDispatcher) -> None:
    @app.callback(Output("milf-layer-choice", "options"), Output("milf-encoder", "children"), Input("milf-head", "value"))
    def describe_head(model_id):
        manifest = workspace.manifest(model_id)
        encoder = manifest.patch_encoder
        text = f"Feature set {manifest.feature_set}. " + (
            f"Patch encoder: {encoder.name} · licence: {encoder.licence} · weights sha256 {encoder.weights_sha256[:12]}…"
            if encoder else "No patch encoder named in the manifest: region refinement is not available.")
        return _layer_options(workspace, model_id), html.Span(text, id="milf-licence")

    @app.callback(
        Output("milf-layer", "url"), Output("milf-legend", "children"), Output("milf-legend", "style"), Output("milf-status", "children"),
        Output("milf-pending", "data"), Output("milf-poll", "disabled"),
        Input("milf-head", "value"), Input("milf-layer-choice", "value"), Input("milf-cmap", "value"),
        Input("milf-threshold", "value"), Input("milf-ready", "data"), State("slide-ctx", "data"),
    )
    def show_layer(model_id, layer, cmap, threshold, _ready, ctx):
        slide_id = ctx["slide_id"]
        layers = mil_layers(workspace, slide_id, model_id)
        if not layers.ready("prediction"):
            job = start_job_once(dispatcher, JobSpec("mil", slide_id, {"model_id": model_id}), (slide_id, f"mil:{model_id}"),
                                 current_username())
            return ("", [], HIDDEN, f"Computing {model_id} over the slide's features…", {"job": job.id, "what": "prediction", "layer": ""},
                    False)
        if not layer:
            return "", [], HIDDEN, "", no_update, no_update
        try:
            grid = layers.get(layer)
        except PathReviewError as exc:
            return "", [], HIDDEN, dbc.Alert(str(exc), color="warning", className="py-1"), no_update, no_update
        return (tile_url(slide_id, model_id, layer, cmap, float(threshold)), legend(cmap, grid.low, grid.high, grid.label, float(threshold)),
                {}, "", no_update, no_update)

    app.clientside_callback("function(v) { return v; }", Output("milf-layer", "opacity"), Input("milf-opacity", "value"))

    @app.callback(Output("milf-prediction", "children"), Input("milf-head", "value"), Input("milf-ready", "data"), State("slide-ctx", "data"))
    def show_prediction(model_id, _ready, ctx):
        layers = mil_layers(workspace, ctx["slide_id"], model_id)
        if not layers.ready("prediction"):
            return html.P("The head's prediction shows once it has been computed.", className="small text-muted")
        return prediction_view(workspace, ctx["slide_id"], layers.get("prediction"))

    @app.callback(
        Output("milf-refine-status", "children"), Output("milf-pending", "data", allow_duplicate=True),
        Output("milf-poll", "disabled", allow_duplicate=True), Output("milf-region", "bounds"),
        Input("milf-refine", "n_clicks"), State("milf-head", "value"), State("milf-overlap", "value"), State("slide-map", "bounds"),
        State("slide-ctx", "data"), prevent_initial_call=True,
    )
    @requires_role("reviewer")
    def start_refinement(_clicks, model_id, overlap, bounds, ctx):
        if workspace.manifest(model_id).patch_encoder is None:
            return dbc.Alert("This head's manifest names no patch encoder.", color="warning", className="py-1"), no_update, no_update, no_update
        if not bounds:
            return "Move the viewer first, so that its extent is known.", no_update, no_update, no_update
        x, y, w, h = region_in_view(bounds, ctx)
        region = Region(x, y, w, h, float(overlap))
        layer = region_name(region)
        scale = 2.0 ** ctx["max_zoom"]
        outline = [[-(y + h) / scale, x / scale], [-y / scale, (x + w) / scale]]
        new, existing = dispatcher.submit([JobSpec("mil-refine", ctx["slide_id"], {"model_id": model_id, "region": layer.partition(":")[2]})],
                                          current_username())
        job_id = (new or existing)[0]
        return (f"Refining {w:,} × {h:,} px at {overlap:.0%} overlap… (job {job_id})", {"job": job_id, "what": "refine", "layer": layer},
                False, outline)

    @app.callback(
        Output("milf-ready", "data"), Output("milf-refined", "data"), Output("milf-poll", "disabled", allow_duplicate=True),
        Output("milf-refine-status", "children", allow_duplicate=True),
        Input("milf-poll", "n_intervals"), State("milf-pending", "data"), State("milf-ready", "data"), prevent_initial_call=True,
    )
    def follow_job(_n, pending, ready):
        if not pending:
            return no_update, no_update, True, no_update
        job = get_job(workspace.store, int(pending["job"]))
        refine = pending["what"] == "refine"
        if job.status in ACTIVE:
            text = f"Refining… {round(100 * job.progress)} % ({job.message})" if refine else no_update
            return no_update, no_update, False, text
        if job.status != "done":
            message = dbc.Alert(f"Job {job.id} {job.status}: {job.message}", color="danger", className="py-1", id="milf-job-error")
            return no_update, no_update, True, message if refine else no_update
        if refine:
            return no_update, pending["layer"], True, f"Refinement done (job {job.id})."
        return (ready or 0) + 1, no_update, True, no_update

    @app.callback(Output("milf-refine-layer", "url"), Output("milf-refined-view", "children"),
                  Input("milf-refined", "data"), Input("milf-cmap", "value"), State("milf-head", "value"), State("slide-ctx", "data"),
                  prevent_initial_call=True)
    def show_refined(layer, cmap, model_id, ctx):
        if not layer:
            return "", ""
        refined = mil_layers(workspace, ctx["slide_id"], model_id).get(layer)
        return tile_url(ctx["slide_id"], model_id, layer, cmap, 0.0), refined_view(workspace, ctx["slide_id"], model_id, refined, cmap)
