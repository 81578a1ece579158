"""The slide viewer: deep-zoom slide with heatmap layers, their controls, the heatmap job, the patch inspector, the
MIL panel and the ground-truth agreement. The slide page and the case page both show it (``layout``); its callbacks
are registered once (``register_callbacks``).

A layer that is whole-slide model work (a stitched CAM, MIL attention) and not stored yet is computed by a job: the
viewer hides the previous overlay, shows "computing <layer>… n %" while the job runs, then shows the layer."""

from __future__ import annotations

import contextlib
import math
from urllib.parse import urlencode

import dash_bootstrap_components as dbc
import dash_leaflet as dl
import numpy as np
from dash import ALL, ClientsideFunction, Dash, Input, Output, State, callback_context, dcc, html, no_update

from core.annotations.ground_truth import truth_cells, truth_label, truth_sources
from core.annotations.overlay import RegionIndexes
from core.errors import PathReviewError
from core.heatmaps.attention import ATTENTION_CAVEAT, SlideAttention
from core.heatmaps.grade_group import display_class_name
from core.heatmaps.groundtruth import segmentation_scores
from core.heatmaps.localisation import compare_methods_on_cells
from core.heatmaps.overlay import (
    ARGMAX_LAYER,
    ATTENTION_LAYER,
    CAM_LAYERS,
    COLORMAPS,
    QC_EXCLUDE,
    QC_KEEP,
    QC_LAYERS,
    TISSUE_LAYER,
    TUMOUR_LAYER,
    OverlayStyle,
    grade_fractions,
    layer_grid,
    source_layer,
)
from core.heatmaps.patch_inspection import inspect_patch, read_heatmap_patches
from core.heatmaps.quality_layers import kept_mil_probability
from core.heatmaps.slide_heatmap import OVERLAPS, SlideHeatmap, latest_cached_heatmap, loaded_heatmap, slide_heatmap_by_key
from core.heatmaps.slide_layers import slide_layers
from core.jobs.dispatch import JobDispatcher
from core.jobs.forked import forked_job_workspace
from core.jobs.layer_jobs import start_layer_job
from core.jobs.runner import run_tracked
from core.jobs.state import ACTIVE, JobSpec, active_job, get_job
from core.slides.adjust import DisplayAdjustment
from core.slides.grid import CELLS_PER_PATCH
from core.slides.quality import FLAG_LABELS
from core.slides.reader import SlideReadError
from core.slides.tiles import SlideGeometry, TileService
from core.store.annotations import slide_regions_stamp
from core.store.cases import slide_record
from core.workspace import Workspace
from dashboard.auth import current_role_allows, current_username, requesting_user, requires_role
from dashboard.components import (
    annotation_layer,
    annotation_panel,
    compare_link,
    folds,
    grade_panel,
    image_adjust,
    measure_tool,
    mil_panel,
    quality_panel,
    viewer_keys,
)
from dashboard.components.clicks import ctx_triggered_click
from dashboard.components.method_comparison import comparison_grid, scores_table
from dashboard.components.patch_inspector import patch_inspector, png_data_uri
from dashboard.components.viewer_legend import overlay_key
from dashboard.components.viewer_link import DEFAULT_STYLE, ViewerLink, parse_viewer_link, position_problem
from dashboard.figures.slide_figures import grade_fraction_figure

CAM_LABELS = ("CAM", "Grad-CAM", "Grad-CAM++")
QC_LAYER_LABELS = {f"qc:{flag}": f"QC: {label}" for flag, label in FLAG_LABELS.items()}
JOB_LAYER_LABELS = {ATTENTION_LAYER: "MIL attention", **dict(zip(CAM_LAYERS, CAM_LABELS, strict=True)),
                    **{f"quality-map:{flag}": f"QC {label.lower()}" for flag, label in FLAG_LABELS.items()},
                    **{f"kept-reconstruction:{m}": "the map without QC-flagged patches" for m in ("overlap", "bilinear")}}
LAYER_POLL_MS = 700
HIDDEN = {"display": "none"}


VIEWER_PX = 720  # approximate viewer width, for the initial fit-to-slide zoom


def map_bounds(g: SlideGeometry) -> list[list[float]]:
    """Slide extent in map units (CRS.Simple; a level-0 pixel is 2^-max_zoom units, y downwards is -lat)."""
    scale = 2.0**g.max_zoom
    return [[-g.height / scale, 0.0], [0.0, g.width / scale]]


def pan_limits(g: SlideGeometry) -> list[list[float]]:
    """How far the map may be panned: the slide and half its size around it."""
    bounds = map_bounds(g)
    return [[bounds[0][0] * 1.5, -bounds[1][1] * 0.5], [-bounds[0][0] * 0.5, bounds[1][1] * 1.5]]


def fit_zoom(g: SlideGeometry) -> int:
    return max(0, g.max_zoom - math.ceil(math.log2(max(g.width, g.height) / VIEWER_PX)))


def restored_view(g: SlideGeometry, view: dict | None) -> tuple[list[float], int]:
    """Map centre and zoom: fit-to-slide, or a deep link's ``lat``/``lng``/``z`` when they lie on the slide."""
    bounds = map_bounds(g)
    center, zoom = [bounds[0][0] / 2, bounds[1][1] / 2], fit_zoom(g)
    try:
        lat, lng, z = float(view["lat"]), float(view["lng"]), int(view["z"])
    except (TypeError, KeyError, ValueError):
        return center, zoom
    if position_fits(g, lat, lng, z):
        return [lat, lng], z
    return center, zoom


def position_fits(g: SlideGeometry, lat: float, lng: float, z: int) -> bool:
    bounds = map_bounds(g)
    return bounds[0][0] <= lat <= 0 and 0 <= lng <= bounds[1][1] and max(0, fit_zoom(g) - 1) <= z <= g.max_zoom + 1


def _map(g: SlideGeometry, view: dict | None = None, can_draw: bool = False, adjustment: DisplayAdjustment | None = None) -> dl.Map:
    bounds = map_bounds(g)
    center, zoom = restored_view(g, view)
    base = image_adjust.tile_url(g.slide_id, adjustment or DisplayAdjustment())
    return dl.Map(
        id="slide-map", crs="Simple", center=center, zoom=zoom,
        minZoom=max(0, fit_zoom(g) - 1), maxZoom=g.max_zoom + 1, maxBounds=pan_limits(g),
        zoomSnap=1, trackViewport=True, attributionControl=False, style={"height": "min(640px, 62vh)", "minHeight": "360px", "background": "#f4f4f4"},
        children=[
            dl.TileLayer(id="base-layer", url=base, tileSize=g.tile_size, noWrap=True, bounds=bounds, maxNativeZoom=g.max_zoom,
                         minZoom=0, maxZoom=g.max_zoom + 1),
            dl.TileLayer(id="heat-layer", url="", tileSize=g.tile_size, noWrap=True, bounds=bounds, maxNativeZoom=g.max_zoom,
                         maxZoom=g.max_zoom + 1, opacity=0.5, zIndex=10),
            dl.Rectangle(id="selected-patch", bounds=[[0, 0], [0, 0]], pathOptions={"color": "#ff00ff", "weight": 2, "fill": False}),
            *annotation_layer.map_layers(g, can_draw),
            *mil_panel.map_children(g, bounds),
            measure_tool.map_layer(),
        ],
    )


def _overview(g: SlideGeometry) -> html.Div:
    """The whole slide as a thumbnail, with the main viewer's extent drawn on it (client-side)."""
    return html.Div([
        html.Img(src=f"/slides/{g.slide_id}/thumbnail.jpeg", className="overview-image", alt="slide overview"),
        html.Div(id="overview-box", className="overview-box", style={"top": "0%", "left": "0%", "width": "100%", "height": "100%"}),
    ], id="overview", className="overview")


def layer_options(workspace: Workspace, class_names: list[str]) -> list[dict]:
    layers = [{"label": "Tumour probability (1 − benign)", "value": TUMOUR_LAYER},
              {"label": "Class map (argmax)", "value": ARGMAX_LAYER}]
    layers += [{"label": f"P({display_class_name(c)})", "value": c} for c in class_names]
    layers += [{"label": "Tissue mask", "value": TISSUE_LAYER}]
    if workspace.models_for("mil"):
        layers.append({"label": "MIL attention", "value": ATTENTION_LAYER})
    layers += [{"label": f"{label} (stitched, predicted tumour class)", "value": value}
               for label, value in zip(CAM_LABELS, CAM_LAYERS, strict=True)]
    layers += [{"label": QC_LAYER_LABELS[value], "value": value} for value in QC_LAYERS]
    return layers


def _controls(workspace: Workspace, layers: list[dict], link: ViewerLink, overlap: float) -> list:
    models = workspace.models_for("patch")
    return [
        dbc.Label("Patch model"),
        dcc.Dropdown(id="heat-model", options=models, value=models[0] if models else None, clearable=False),
        dbc.Label("Patch overlap", className="mt-2"),
        dbc.RadioItems(id="heat-overlap", options=[{"label": "0 %", "value": 0.0}, {"label": "50 %", "value": 0.5},
                                                   {"label": "75 %", "value": 0.75}], value=overlap, inline=True),
        html.Div([dbc.Button("Compute heatmap", id="heat-compute", color="primary", size="sm", className="me-2",
                             disabled=not current_role_allows("reviewer")),
                  dbc.Button("Cancel", id="heat-cancel", color="secondary", size="sm", outline=True, disabled=True)], className="mt-2"),
        dbc.Progress(id="heat-progress", value=0, label="", className="mt-2", style={"height": "18px"}),
        html.Div(id="heat-status", className="small text-muted mt-1"),
        html.Hr(),
        dbc.Label("Layer"),
        dcc.Dropdown(id="heat-layer-choice", options=layers, value=link.get("layer", TUMOUR_LAYER), clearable=False),
        dbc.Label("Reconstruction", className="mt-2"),
        dbc.RadioItems(id="heat-method", options=[{"label": "overlap mean", "value": "overlap"}, {"label": "bilinear", "value": "bilinear"}],
                       value="overlap", inline=True),
        dbc.Label("Colour map", className="mt-2"),
        dcc.Dropdown(id="heat-cmap", options=list(COLORMAPS), value=link.get("cmap", DEFAULT_STYLE["cmap"]), clearable=False),
        dbc.Label("Normalisation (per slide)", className="mt-2"),
        dbc.RadioItems(id="heat-norm", options=["raw", "minmax", "percentile"], value=link.get("norm", DEFAULT_STYLE["norm"]), inline=True),
        dbc.Label("Threshold", className="mt-2"),
        dcc.Slider(id="heat-threshold", min=0, max=1, step=0.05, value=link.get("thr", DEFAULT_STYLE["thr"]), marks={0: "0", 0.5: "0.5", 1: "1"}),
        dbc.Label("Smoothing (cells)"),
        dcc.Slider(id="heat-smooth", min=0, max=4, step=0.5, value=0, marks={0: "0", 2: "2", 4: "4"}),
        dbc.Label("Opacity"),
        dcc.Slider(id="heat-opacity", min=0, max=1, step=0.05, value=link.get("opacity", DEFAULT_STYLE["opacity"]), marks={0: "0", 0.5: "0.5", 1: "1"}),
        image_adjust.controls("base", link.adjustment),
        quality_panel.layout(),
    ]


def layout(workspace: Workspace, tiles: TileService, slide_id: str, query: dict | None = None, selected_region: dict | None = None,
           open_folds: set[str] | None = None) -> html.Div:
    """The viewer with its controls, heatmap job, patch inspector and MIL panel; ``query`` restores a deep link
    (``viewer_link.LINK_KEYS``), and a value it cannot use is named above the viewer. The slide page and the case page
    both show it. The heatmap shown first is the one the link's overlap names, else the slide's latest of any overlap.
    ``open_folds``: on the case page, which of the patch inspector and the method comparison are unfolded (``folds``);
    None unfolds both."""

    def opened(name: str) -> bool:
        return open_folds is None or name in open_folds

    with workspace.store.session() as s:
        has_mask = bool(slide_record(s, slide_id).mask_file)
    try:
        g = tiles.geometry(slide_id)
    except SlideReadError as exc:
        return html.Div(dbc.Alert(str(exc), color="danger", id="slide-error"))
    models = workspace.models_for("patch")
    class_names = list(workspace.manifest(models[0]).class_names) if models else []
    layers = layer_options(workspace, class_names)
    link = parse_viewer_link(query or {}, [o["value"] for o in layers])
    fits = "z" in link.values and position_fits(g, link.values["lat"], link.values["lng"], link.values["z"])
    if "z" in link.values and not fits:
        link.problems.append(position_problem())
    view = link.values if fits else None
    wanted = link.get("overlap")
    heat = latest_cached_heatmap(workspace, slide_id, models[0], OVERLAPS if wanted is None else (float(wanted),)) if models else None  # type: ignore[arg-type]
    overlap = heat.params.overlap if heat else float(wanted or 0.0)  # type: ignore[arg-type]
    truth_options = truth_sources(workspace, slide_id, has_mask)
    size = tiles.pixel_size(slide_id)
    return html.Div([
        dcc.Store(id="slide-ctx", data={"slide_id": slide_id, "max_zoom": g.max_zoom, "min_zoom": max(0, fit_zoom(g) - 1), "mpp": g.mpp,
                                        "width": g.width, "height": g.height, "um_x": size.x, "um_y": size.y}),
        *measure_tool.stores(),
        *viewer_keys.components(),
        dcc.Store(id="heat-key", data=heat.key if heat else None),
        dcc.Store(id="heat-layer-job", data=None),  # the job computing the chosen layer: {"job", "layer"}
        dcc.Store(id="heat-layer-ready", data=None),  # set when that job has finished: the layer is shown again
        dcc.Interval(id="heat-layer-poll", interval=LAYER_POLL_MS, disabled=True),
        *annotation_layer.stores(slide_regions_stamp(workspace.store, slide_id), selected_region),
        html.Div(viewer_keys.magnification_bar(), className="text-muted small d-flex align-items-center flex-wrap gap-1 mb-1"),
        html.Div([measure_tool.controls(size), compare_link.anchor(slide_id, str(link.get("layer", TUMOUR_LAYER)), link.adjustment)],
                 className="text-muted small d-flex align-items-center flex-wrap gap-3 mb-1"),
        dbc.Alert(["This link's view could not be restored in full: ", "; ".join(link.problems), ". The default is shown instead."],
                  color="warning", id="viewer-link-problems", className="small py-2") if link.problems else "",
        dbc.Row([
            dbc.Col([
                html.Div([_map(g, view, current_role_allows("reviewer"), link.adjustment), html.Div(id="heat-legend"),
                          html.Div([html.Div(id="scale-bar-line", className="scale-bar-line"),
                                              html.Span(id="scale-bar-text", className="scale-bar-text")],
                                             id="scale-bar", className="scale-bar"),
                          html.Div([dbc.Spinner(size="sm", spinner_class_name="me-2", id="heat-layer-spinner"),
                                    html.Span(id="heat-layer-loading-text")], id="heat-layer-loading", className="layer-loading",
                                   style=HIDDEN), mil_panel.legend_slot()], className="slide-viewer"),
                annotation_panel.layout(workspace, slide_id),
                html.Div(id="selected-patch-info", className="small mt-2"),
                dcc.Store(id="inspected-patch", data=None),
                folds.fold("inspector", [
                    html.Div([dbc.Label("Explain class", className="small me-2"),
                              dcc.Dropdown(id="inspector-class", options=[{"label": display_class_name(c), "value": c} for c in class_names],
                                           value=None, placeholder="predicted class", style={"minWidth": "200px"})],
                             className="d-flex align-items-center"),
                    html.P("Click a patch on the slide to inspect it.", className="small text-muted mb-0 mt-1"),
                    dcc.Loading(html.Div(id="patch-inspector", className="mt-2")),
                ], opened("inspector"), "mt-2"),
            ], lg=8),
            dbc.Col([
                html.Div(_overview(g)),
                html.Div(f"{g.width:,} x {g.height:,} px at {g.mpp} µm/px · {g.max_zoom + 1} Deep Zoom levels", className="text-muted small mb-3",
                         id="slide-geometry"),
                *_controls(workspace, layers, link, overlap),
            ], lg=4),
        ]),
        dbc.Row([
            dbc.Col([dcc.Graph(id="grade-fractions", config={"displaylogo": False}, style={"display": "none"}),
                     grade_panel.layout(workspace, slide_id)], lg=6),
            dbc.Col([html.Div([dbc.Label("Ground truth", className="small me-2 mb-0"),
                               dcc.Dropdown(id="ground-truth-source", options=truth_options, value=truth_options[0]["value"] if truth_options else None,
                                            placeholder="none: draw tumour regions or add a mask", style={"minWidth": "260px"})],
                              className="d-flex align-items-center mb-2"),
                     html.Div(id="ground-truth-scores", children="" if truth_options else html.P(
                         "No ground truth for this slide: no mask, and no reviewer's tumour regions.", className="text-muted small"))], lg=6),
        ], className="mt-3"),
        html.Div(id="mil-panel", className="mt-3"),
        # On the compact case page the patch heatmap is drawn alone at first: two overlays and their keys would cover its map.
        mil_panel.layout(workspace, slide_id, first_layer="attention:percentile" if open_folds is None else ""),
        folds.fold("comparison", [
            html.P("Each method's tumour map, normalised per slide and thresholded, next to the ground truth chosen above (the "
                   "mask, or reviewers' tumour regions rasterised on the cell grid by cell centre); F1+ is Dice on "
                   "the foreground, F1− on the background (Belharbi et al., Table 1), both over tissue cells only (glass is not "
                   "scored). The all-ones map (all tissue marked) is the lower bound.",
                   className="small text-muted"),
            dbc.Row([dbc.Col(dcc.Slider(id="comparison-threshold", min=0.05, max=0.95, step=0.05, value=0.5,
                                        marks={0.05: "0.05", 0.5: "0.5", 0.95: "0.95"}), md=6),
                     dbc.Col(dbc.Button("Compare methods", id="comparison-run", size="sm", color="secondary"), md=3)]),
            dcc.Loading(html.Div(id="method-comparison", className="mt-2")),
        ], opened("comparison"), "mt-3"),
    ])


def _kept_prediction(workspace: Workspace, heat: SlideHeatmap, model_id: str) -> html.P:
    """The MIL prediction without the QC-flagged patches, beside the one over all patches."""
    layers = slide_layers(workspace, heat)
    try:
        note = quality_panel.excluded_note(quality_panel.quality_summary(layers), True)
        text = f"Without QC-flagged patches: P = {kept_mil_probability(layers, model_id):.3f} ({note.rstrip('.')})."
    except PathReviewError as exc:
        text = str(exc)
    return html.P(text, className="small", id="mil-prediction-kept")


def _mil_panel(workspace: Workspace, heat: SlideHeatmap, ctx: dict, exclude_qc: bool = False) -> html.Div:
    """Slide-level MIL prediction and the top-k attended patches; clicking one pans the viewer to it. The panel
    shows the attention itself, so it computes it when no job has stored it yet (a forward pass of the MIL head)."""
    try:
        attention: SlideAttention = slide_layers(workspace, heat).compute(ATTENTION_LAYER)
    except PathReviewError as exc:
        return html.P(str(exc), className="small text-muted")
    manifest = workspace.manifest(attention.model_id)
    top = attention.top_k(8)
    images = read_heatmap_patches(workspace, heat, top)
    scale = 2.0 ** ctx["max_zoom"]
    size0 = heat.cell_level0 * CELLS_PER_PATCH
    uniform = len(attention.weights)  # attention sums to 1: a weight times the patch count is its multiple of the uniform share
    tiles, centres = [], []
    for rank, (index, image) in enumerate(zip(top, images, strict=True)):
        ox, oy = heat.origins[index]
        centres.append([-(oy + size0 / 2) / scale, (ox + size0 / 2) / scale])
        tiles.append(html.Figure([
            html.Img(src=png_data_uri(image), className="inspector-image topk-image", id={"type": "topk-tile", "index": rank}, n_clicks=0),
            html.Figcaption(f"#{rank + 1} · {attention.weights[index]:.3g}"
                            + (f" ({attention.weights[index] * uniform:.1f}× uniform)" if attention.kind == "attention" else "")),
        ], className="inspector-figure"))
    return html.Div([
        html.H5(f"{manifest.name}: P({manifest.score_class}) = {attention.probability:.3f}",
                id="mil-prediction"),
        _kept_prediction(workspace, heat, attention.model_id) if exclude_qc else "",
        html.P(ATTENTION_CAVEAT if attention.kind == "attention" else "Contributions are each patch's instance score for the positive class.",
               className="small text-muted", id="attention-caveat"),
        dcc.Store(id="topk-centres", data=centres),
        dcc.Store(id="topk-patches", data={"key": heat.key, "indices": top}),
        html.Div(tiles, className="inspector-images", id="topk-gallery"),
    ])


def heat_tile_url(slide_id: str, key: str, style: OverlayStyle) -> str:
    query = urlencode({"method": style.method, "layer": style.layer, "cmap": style.cmap, "thr": style.threshold,
                       "norm": style.norm, "smooth": style.smooth, "qc": style.qc})
    return f"/slides/{slide_id}/heatmap/{key}/{{z}}/{{x}}/{{y}}.png?{query}"


def _scores_table(scores, threshold: float, against: str = "the ground-truth mask") -> html.Div:
    rows = [("Dice (tumour)", scores.dice), ("F1+ (foreground)", scores.f1_foreground), ("F1− (background)", scores.f1_background),
            ("Predicted tumour, % of tissue", 100 * scores.predicted_fraction), ("Annotated tumour, % of tissue", 100 * scores.true_fraction)]
    note = " No tumour in the annotation: Dice and F1+ have nothing to agree on." if scores.empty_truth else ""
    return html.Div([
        html.H6(f"Against {against} (tumour probability ≥ {threshold:.2f})"),
        dbc.Table([html.Tbody([html.Tr([html.Td(n), html.Td("n/a" if v != v else f"{v:.3f}" if v <= 1 else f"{v:.1f}")]) for n, v in rows])],
                  size="sm", bordered=False, id="ground-truth-table"),
        html.P("Scored over tissue cells only." + note, className="small text-muted"),
    ])


def _loading(text: str, spinning: bool = True) -> tuple[list, dict]:
    """The indicator over the map: its children and style."""
    return ([dbc.Spinner(size="sm", spinner_class_name="me-2", id="heat-layer-spinner") if spinning else "",
             html.Span(text, id="heat-layer-loading-text")], {})


def _job_progress_text(layer: str, status: str, progress: float) -> str:
    label = JOB_LAYER_LABELS.get(layer, layer)
    return f"waiting to compute {label}…" if status == "queued" else f"computing {label}… {round(100 * progress)} %"


def _heatmap_spec(ctx: dict, model_id: str, overlap: float) -> JobSpec:
    return JobSpec("heatmap", ctx["slide_id"], {"model_id": model_id, "overlap": float(overlap)})


def register_callbacks(app: Dash, workspace: Workspace, tiles: TileService, dispatcher: JobDispatcher, regions: RegionIndexes) -> None:
    mil_panel.register_callbacks(app, workspace, dispatcher)
    annotation_layer.register_callbacks(app, workspace, regions)
    annotation_panel.register_callbacks(app, workspace)
    quality_panel.register_callbacks(app, workspace)

    @app.callback(
        Output("heat-key", "data"), Output("heat-status", "children"),
        Input("heat-compute", "n_clicks"),
        State("slide-ctx", "data"), State("heat-model", "value"), State("heat-overlap", "value"),
        background=True, prevent_initial_call=True,
        progress=[Output("heat-progress", "value"), Output("heat-progress", "label")],
        running=[(Output("heat-compute", "disabled"), True, False), (Output("heat-cancel", "disabled"), False, True)],
        cancel=[Input("heat-cancel", "n_clicks")],
    )
    @requires_role("reviewer")
    def compute_slide_heatmap(set_progress, _clicks, ctx, model_id, overlap):
        job_workspace = forked_job_workspace(workspace)

        def report(fraction, message):
            set_progress((round(100 * fraction), message.removeprefix("heatmap: ")))
        # The heatmap job, recorded in the jobs table (the Jobs page shows it). Cancel stops the job's process (or
        # worker task); the cache is written atomically, so nothing partial remains.
        job_id, status = run_tracked(job_workspace, _heatmap_spec(ctx, model_id, overlap), report, requested_by=requesting_user())
        job = get_job(job_workspace.store, job_id)
        if status == "cancelled":  # on the Jobs page, or by this page's Cancel button
            set_progress((0, "cancelled"))
            return no_update, html.Span(f"Heatmap {job.message}; nothing was stored.", id="heat-cancelled")
        heat = loaded_heatmap(job_workspace, job.key) if status == "done" and job.key else None
        if heat is None:
            return no_update, f"Could not compute the heatmap: {job.message or status}"
        set_progress((100, "done"))
        summary = f"{len(heat.probs)} tissue patches · model {heat.model_id} · weights {heat.weights_sha256[:10]}…"
        return heat.key, [summary, *(html.Div(n, className="text-warning heat-notice") for n in heat.notices)]  # e.g. ran on the CPU

    @app.callback(
        Output("heat-progress", "value", allow_duplicate=True), Output("heat-progress", "label", allow_duplicate=True),
        Output("heat-status", "children", allow_duplicate=True),
        Input("heat-cancel", "n_clicks"), State("slide-ctx", "data"), State("heat-model", "value"), State("heat-overlap", "value"),
        prevent_initial_call=True,
    )
    @requires_role("reviewer")
    def cancel_slide_heatmap(_clicks, ctx, model_id, overlap):
        # Dash stops the background callback's process (SIGKILL, which it cannot catch); the job is marked here so that
        # the Jobs page and the job's state say "cancelled" rather than a running job that stalls.
        job = active_job(workspace.store, _heatmap_spec(ctx, model_id, overlap))
        if job is not None:
            with contextlib.suppress(PathReviewError):  # it finished meanwhile
                job = dispatcher.cancel(job.id, current_username())
        return 0, "cancelled", html.Span(f"Heatmap {job.message if job else 'cancelled'}; nothing was stored.", id="heat-cancelled")

    @app.callback(
        Output("heat-layer", "url"), Output("heat-legend", "children"),
        Output("grade-fractions", "figure"), Output("grade-fractions", "style"), Output("ground-truth-scores", "children"),
        Output("heat-layer-job", "data"), Output("heat-layer-poll", "disabled"), Output("heat-layer-loading", "children"),
        Output("heat-layer-loading", "style"),
        Input("heat-key", "data"), Input("heat-layer-choice", "value"), Input("heat-method", "value"), Input("heat-cmap", "value"),
        Input("heat-threshold", "value"), Input("heat-norm", "value"), Input("heat-smooth", "value"), Input("heat-layer-ready", "data"),
        Input("qc-exclude", "value"), Input("ground-truth-source", "value"), State("slide-ctx", "data"),
    )
    def show_heatmap(key, layer, method, cmap, threshold, norm, smooth_cells, _ready, exclude, truth_source, ctx):
        heat = slide_heatmap_by_key(workspace, key, ctx["slide_id"])
        if heat is None:
            return "", [], no_update, HIDDEN, no_update, None, True, no_update, HIDDEN
        qc = QC_EXCLUDE if exclude else QC_KEEP
        style = OverlayStyle(method=method, layer=layer, cmap=cmap, threshold=float(threshold), norm=norm, smooth=float(smooth_cells), qc=qc)
        layers = slide_layers(workspace, heat)
        try:
            figure = grade_fraction_figure(grade_fractions(layers, method, qc))
        except PathReviewError:  # the QC measures are being computed: the percentages follow once they are stored
            figure = no_update
        scores = no_update
        if truth_source:
            tumour = layer_grid(layers, OverlayStyle(method=method, smooth=float(smooth_cells)))
            try:
                truth = truth_cells(workspace, heat, ctx["slide_id"], truth_source)
                scores = _scores_table(segmentation_scores(np.nan_to_num(tumour, nan=0.0) >= float(threshold), truth, within=heat.tissue),
                                       float(threshold), truth_label(truth_source))
            except PathReviewError as exc:
                scores = html.P(str(exc), className="small text-muted")
        try:
            ready = layers.ready(source_layer(style))
            job = None if ready else start_layer_job(dispatcher, heat, source_layer(style), current_username())
        except PathReviewError as exc:  # e.g. attention on a heatmap without embeddings, or no job broker
            children, shown = _loading(str(exc), spinning=False)
            return "", [], figure, {}, scores, None, True, children, shown
        if job is not None:  # the previous overlay is hidden while the layer is computed
            children, shown = _loading(_job_progress_text(source_layer(style), job.status, job.progress))
            return "", [], figure, {}, scores, {"job": job.id, "layer": source_layer(style)}, False, children, shown
        if layer in QC_LAYERS:
            legend = [quality_panel.qc_legend(layer.removeprefix("qc:"))]
        else:
            legend = [overlay_key(layer, cmap, float(threshold), norm, heat.class_names)]
        return heat_tile_url(ctx["slide_id"], key, style), legend, figure, {}, scores, None, True, "", HIDDEN

    @app.callback(
        Output("heat-layer-loading", "children", allow_duplicate=True), Output("heat-layer-ready", "data"),
        Output("heat-layer-poll", "disabled", allow_duplicate=True),
        Input("heat-layer-poll", "n_intervals"), State("heat-layer-job", "data"), prevent_initial_call=True,
    )
    def follow_layer_job(_n, pending):
        if not pending:
            return no_update, no_update, True
        job = get_job(workspace.store, int(pending["job"]))
        if job.status in ACTIVE:
            return _loading(_job_progress_text(pending["layer"], job.status, job.progress))[0], no_update, False
        if job.status == "done":
            return no_update, job.id, True  # show_heatmap runs again and finds the layer stored
        label = JOB_LAYER_LABELS.get(pending["layer"], pending["layer"])
        return _loading(f"Could not compute {label}: {job.message or job.status}", spinning=False)[0], no_update, True

    @app.callback(Output("method-comparison", "children"), Input("comparison-run", "n_clicks"),
                  State("comparison-threshold", "value"), State("heat-key", "data"), State("ground-truth-source", "value"), State("slide-ctx", "data"),
                  prevent_initial_call=True)
    def show_method_comparison(_clicks, threshold, key, truth_source, ctx):
        heat = slide_heatmap_by_key(workspace, key, ctx["slide_id"])
        if heat is None:
            return html.P("Compute the heatmap first.", className="small text-muted")
        if not truth_source:
            return html.P("Choose a ground truth first (a mask, or reviewers' tumour regions).", className="small text-muted")
        try:
            truth = truth_cells(workspace, heat, ctx["slide_id"], truth_source)
        except PathReviewError as exc:
            return html.P(str(exc), className="small text-muted")
        rows = compare_methods_on_cells(workspace, heat, truth, float(threshold))
        return html.Div([comparison_grid(rows, truth),
                         scores_table([(r.method, r.f1_foreground, r.f1_background, r.dice) for r in rows], "method-comparison-table")])

    @app.callback(Output("mil-panel", "children"), Input("heat-key", "data"), Input("qc-exclude", "value"), State("slide-ctx", "data"))
    def show_mil(key, exclude, ctx):
        heat = slide_heatmap_by_key(workspace, key, ctx["slide_id"])
        return _mil_panel(workspace, heat, ctx, bool(exclude)) if heat is not None else ""

    @app.callback(Output("slide-map", "viewport"), Output("inspected-patch", "data", allow_duplicate=True),
                  Input({"type": "topk-tile", "index": ALL}, "n_clicks"), State("topk-centres", "data"), State("topk-patches", "data"),
                  State("slide-map", "zoom"), State("slide-ctx", "data"), prevent_initial_call=True)
    def pan_to_top_patch(clicks, centres, top, zoom, ctx):
        if not ctx_triggered_click(clicks):
            return no_update, no_update
        rank = callback_context.triggered_id["index"]
        view = {"center": centres[rank], "zoom": max(zoom or 0, ctx["max_zoom"] - 2), "transition": "flyTo"}
        return view, {"key": top["key"], "index": top["indices"][rank]}

    @app.callback(
        Output("selected-patch", "bounds"), Output("selected-patch-info", "children"), Output("inspected-patch", "data"),
        Input("slide-map", "clickData"), State("heat-key", "data"), State("slide-ctx", "data"), State("measure-mode", "value"),
        prevent_initial_call=True,
    )
    def select_patch(click, key, ctx, measuring):
        if measuring in ("ruler", "area"):  # the click is a measurement's point (measure_tool)
            return no_update, no_update, no_update
        heat = slide_heatmap_by_key(workspace, key, ctx["slide_id"])
        scale = 2.0 ** ctx["max_zoom"]
        lat, lng = click["latlng"]["lat"], click["latlng"]["lng"]
        x0, y0 = lng * scale, -lat * scale
        if heat is None:
            return no_update, f"Clicked at ({x0 * ctx['mpp']:.0f}, {y0 * ctx['mpp']:.0f}) µm. Compute the heatmap to inspect patches.", None
        index = heat.patch_at(x0, y0)
        if index is None:
            return [[0, 0], [0, 0]], "No tissue patch under the cursor.", None
        ox, oy = heat.origins[index]
        size0 = heat.cell_level0 * CELLS_PER_PATCH
        bounds = [[-(oy + size0) / scale, ox / scale], [-oy / scale, (ox + size0) / scale]]
        probs = ", ".join(f"{display_class_name(n)} {p:.2f}" for n, p in zip(heat.class_names, heat.probs[index], strict=True))
        return bounds, [html.B(f"Patch {index}"), f" at ({ox * ctx['mpp']:.0f}, {oy * ctx['mpp']:.0f}) µm: {probs}"], {"key": key, "index": index}

    @app.callback(Output("patch-inspector", "children"), Input("inspected-patch", "data"), Input("inspector-class", "value"))
    def show_patch_inspector(selected, class_name):
        heat = loaded_heatmap(workspace, selected["key"]) if selected else None
        if heat is None:
            return ""
        return patch_inspector(inspect_patch(workspace, heat, int(selected["index"]), class_name), heat.slide_mpp,
                               heat.cell_level0 * CELLS_PER_PATCH * heat.slide_mpp)

    viewer_keys.register_callbacks(app)
    measure_tool.register_callbacks(app)
    image_adjust.register_reset(app, "base")
    # A patch clicked on the slide unfolds the inspector that shows it.
    app.clientside_callback(
        ClientsideFunction(namespace="slideViewer", function_name="unfoldInspector"),
        Output({"type": "fold", "name": ALL}, "active_item"), Input("inspected-patch", "data"),
        State({"type": "fold", "name": ALL}, "active_item"), State({"type": "fold", "name": ALL}, "id"), prevent_initial_call=True,
    )
    app.clientside_callback(
        ClientsideFunction(namespace="slideViewer", function_name="setOpacity"),
        Output("heat-layer", "opacity"), Input("heat-opacity", "value"),
    )
    app.clientside_callback(
        ClientsideFunction(namespace="slideViewer", function_name="sideBySideHref"),
        Output("side-by-side-link", "href"), Input("slide-map", "zoom"), Input("slide-map", "center"), Input("heat-layer-choice", "value"),
        Input("base-brightness", "value"), Input("base-contrast", "value"), Input("base-gamma", "value"), State("slide-ctx", "data"),
    )
    app.clientside_callback(
        ClientsideFunction(namespace="slideViewer", function_name="viewportWidgets"),
        Output("scale-bar-line", "style"), Output("scale-bar-text", "children"), Output("overview-box", "style"),
        Input("slide-map", "zoom"), Input("slide-map", "bounds"), State("slide-ctx", "data"),
    )
