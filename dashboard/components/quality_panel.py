"""The slide's quality control beside the viewer: the share of tissue each QC flag covers, the switch that leaves
QC-flagged patches out of the maps, grade percentages and MIL prediction, the QC layers' legend, and the
"show normalised" switch that draws the base tiles as the patch model sees them (its declared stain
normalisation)."""

from __future__ import annotations

import dash_bootstrap_components as dbc
from dash import Dash, Input, Output, State, html, no_update

from core.errors import PathReviewError
from core.heatmaps.overlay import QC_COLOURS
from core.heatmaps.quality_layers import ANY_FLAG, QualitySummary, quality_summary
from core.heatmaps.slide_heatmap import slide_heatmap_by_key
from core.heatmaps.slide_layers import slide_layers
from core.slides.quality import FLAG_LABELS, FLAGS, QualityThresholds
from core.workspace import Workspace
from dashboard.components import image_adjust

_T = QualityThresholds()
FLAG_RULES = {
    "blur": f"variance of the Laplacian < {_T.blur_laplacian_variance:g}",
    "pen": f"≥ {_T.pen_fraction:.0%} of pixels with hue outside H&E",
    "fold": f"≥ {_T.dark_fraction:.0%} of tissue darker than luma 80",
    "stain": f"stain vectors > {_T.stain_outlier_z:g} SD (RMS z) from the model's training set",
}
METHOD_NAMES = {"macenko": "Macenko", "reinhard": "Reinhard"}


def _swatch(flag: str) -> html.Span:
    r, g, b = QC_COLOURS[flag]
    return html.Span(className="qc-swatch", style={"background": f"rgb({r},{g},{b})"})


def layout() -> html.Div:
    return html.Div([
        html.H6("Slide quality", className="mb-1"),
        html.Div(id="qc-summary", className="small"),
        dbc.Switch(id="qc-exclude", value=False, className="small mt-1",
                   label="Exclude QC-flagged patches from the map, grade percentages and MIL prediction"),
        html.Div(id="qc-excluded-note", className="small text-muted"),
        dbc.Switch(id="base-normalised", value=False, className="small mt-2", label="Show normalised", disabled=True),
        html.Div(id="base-normalised-note", className="small text-muted"),
    ], id="quality-panel", className="quality-panel mt-2")


def summary_table(summary: QualitySummary) -> html.Table:
    rows = [html.Tr([html.Td(_swatch(f)), html.Td(FLAG_LABELS[f], title=FLAG_RULES[f]),
                     html.Td(f"{summary.tissue_fraction[f]:.1%} of tissue", id=f"qc-fraction-{f}"), html.Td(f"{summary.flagged[f]} patches")])
            for f in FLAGS]
    return html.Table(html.Tbody(rows), className="qc-table", id="qc-table")


def excluded_note(summary: QualitySummary | None, exclude: bool) -> str:
    if summary is None:
        return ""
    if exclude:
        return f"{summary.excluded} of {summary.total} patches excluded ({summary.tissue_fraction[ANY_FLAG]:.1%} of tissue)."
    return f"{summary.excluded} of {summary.total} patches carry a QC flag; all are included."


def qc_legend(flag: str) -> html.Div:
    """The legend of a QC layer, over the map: its colour, what it marks and the rule."""
    return html.Div([_swatch(flag), html.B(FLAG_LABELS[flag]), html.Div(FLAG_RULES[flag], className="qc-legend-rule")],
                    className="qc-legend", id="qc-legend")


def register_callbacks(app: Dash, workspace: Workspace) -> None:
    @app.callback(Output("qc-summary", "children"), Output("qc-excluded-note", "children"),
                  Input("heat-key", "data"), Input("qc-exclude", "value"), State("slide-ctx", "data"))
    def show_quality(key, exclude, ctx):
        heat = slide_heatmap_by_key(workspace, key, ctx["slide_id"])
        if heat is None:
            return "Compute the heatmap to run quality control.", ""
        summary = quality_summary(slide_layers(workspace, heat))
        if summary is None:
            return "Quality control has not been computed for this heatmap; show a QC layer to compute it.", ""
        return summary_table(summary), excluded_note(summary, bool(exclude))

    @app.callback(Output("base-normalised", "disabled"), Output("base-normalised-note", "children"), Input("heat-model", "value"))
    def normalisation_of_model(model_id):
        spec = workspace.manifest(model_id).input if model_id else None
        if spec is None or spec.stain_normalisation == "none":
            return True, "This model reads the slide as scanned (no stain normalisation)."
        fitted = ("stains estimated once for the slide, from an even sample of its tissue patches" if spec.stain_fit == "slide"
                  else "stains estimated per tile, as per patch")
        return False, f"{METHOD_NAMES[spec.stain_normalisation]} normalisation, as {model_id} reads its patches ({fitted})."

    @app.callback(Output("base-layer", "url"), Input("base-normalised", "value"), Input("heat-model", "value"),
                  Input("base-brightness", "value"), Input("base-contrast", "value"), Input("base-gamma", "value"),
                  State("slide-ctx", "data"))
    def base_tiles(normalised, model_id, brightness, contrast, gamma, ctx):
        try:
            adjustment = image_adjust.shown_adjustment(brightness, contrast, gamma)
        except PathReviewError:  # the sliders keep to the range: only a hand-made request gets here
            return no_update
        normalise = bool(normalised and model_id and workspace.manifest(model_id).input.stain_normalisation != "none")
        return image_adjust.tile_url(ctx["slide_id"], adjustment, model_id if normalise else None)
