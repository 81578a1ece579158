"""A publication figure of a slide region, rendered on the server: the tissue at output resolution, the heatmap
composited as in the viewer, colour bar or grade legend, a micron scale bar and a caption."""

from __future__ import annotations

import base64
import io
import math
from collections.abc import Collection, Sequence

import numpy as np
import plotly.graph_objects as go
import shapely
import shapely.geometry
from PIL import Image

from core.errors import PathReviewError
from core.export.provenance import Provenance
from core.export.slide_image import composite, heat_pixels, read_region_rgb
from core.export.slide_region import SlideRegion, viewport_region
from core.heatmaps.attention import SlideAttention
from core.heatmaps.grade_group import display_class_name
from core.heatmaps.overlay import (
    ARGMAX_LAYER,
    ATTENTION_LAYER,
    CAM_LAYERS,
    GRADE_COLOURS,
    TISSUE_COLOUR,
    TISSUE_LAYER,
    TUMOUR_LAYER,
    OverlayStyle,
    layer_grid,
    source_layer,
)
from core.heatmaps.slide_heatmap import SlideHeatmap
from core.heatmaps.slide_layers import slide_layers
from core.slides.adjust import DisplayAdjustment, adjust_pixels
from core.slides.reader import open_slide
from core.store.annotations import RegionVersion
from core.store.cases import slide_record
from core.workspace import AnnotationClass, Workspace

__all__ = ["SlideRegion", "layer_label", "nice_scale_length", "slide_figure", "viewport_region"]

FIGURE_WIDTH_PX = 1000
MAX_OUTPUT_SIDE = 6000
_LAYER_LABELS = {TUMOUR_LAYER: "P(tumour)", ARGMAX_LAYER: "grade (argmax)", TISSUE_LAYER: "tissue mask",
                 ATTENTION_LAYER: "MIL attention", "cam:cam": "CAM", "cam:gradcam": "Grad-CAM", "cam:gradcam++": "Grad-CAM++"}


def layer_label(layer: str) -> str:
    """What a heatmap layer shows, in words: "Grad-CAM" for "cam:gradcam", "P(Gleason pattern 4)" for the class "GG4"."""
    return _LAYER_LABELS.get(layer, f"P({display_class_name(layer)})")


def nice_scale_length(target_um: float) -> float:
    """The 1, 2 or 5 x 10^k µm length nearest ``target_um`` (on a log scale)."""
    if not target_um > 0:
        raise PathReviewError("scale bar length must be positive")
    power = 10.0 ** math.floor(math.log10(target_um))
    candidates = [m * power for m in (1, 2, 5, 10)]
    return float(f"{min(candidates, key=lambda length: abs(math.log(length / target_um))):.6g}")  # 5 * 0.1 is not 0.5


def _length_label(um: float) -> str:
    return f"{um / 1000:g} mm" if um >= 1000 else f"{um:g} µm"


def slide_figure(workspace: Workspace, slide_id: str, *, region: SlideRegion | None = None, output_width: int = 1200,
                 heat: SlideHeatmap | None = None, style: OverlayStyle | None = None, opacity: float = 0.5,
                 regions: Sequence[RegionVersion] = (), highlighted: Collection[str] = (),
                 adjustment: DisplayAdjustment | None = None) -> tuple[go.Figure, Provenance]:
    """A region of a slide (whole slide by default) with ``heat`` shown in ``style`` at ``opacity`` and the outlines of
    ``regions`` (reviewers' annotations; those in ``highlighted``, e.g. named by a verdict, drawn thicker and labelled);
    never reads level 0 of more than the region needs. ``adjustment``: the tissue's brightness, contrast and gamma, as
    the viewer's tiles show them (before the heatmap is laid over it, as in the viewer). Returns the figure and the
    provenance of what it shows."""
    adjustment = adjustment or DisplayAdjustment()
    if not 0.0 <= opacity <= 1.0:
        raise PathReviewError(f"overlay opacity must be in [0, 1], not {opacity}")
    if not 64 <= output_width <= MAX_OUTPUT_SIDE:
        raise PathReviewError(f"output width must be 64..{MAX_OUTPUT_SIDE} px, not {output_width}")
    if heat is not None and heat.slide_id != slide_id:
        raise PathReviewError(f"the heatmap is of slide {heat.slide_id}, not {slide_id}")
    style = _checked_style(style or OverlayStyle(), heat)
    with workspace.store.session() as s:
        record = slide_record(s, slide_id)
        path, mpp = workspace.slides_dir / record.file, float(record.mpp)
    slide = open_slide(path)
    try:
        region = (region or SlideRegion(0, 0, *slide.dimensions)).clipped(*slide.dimensions)
        # Never more pixels than level 0 holds: an export shows no detail the scanner did not record.
        ratio = min(1.0, output_width / region.width, MAX_OUTPUT_SIDE / region.height)
        out_w, out_h = max(1, round(region.width * ratio)), max(1, round(region.height * ratio))
        image = adjust_pixels(read_region_rgb(slide, region, out_w, out_h), adjustment)
    finally:
        slide.close()
    settings: dict = {}
    if heat is not None:
        grid, settings = _layer(workspace, heat, style)
        image = composite(image, heat_pixels(heat, grid, style, region, out_w, out_h), opacity)
        settings.update(opacity=opacity, overlap=heat.params.overlap)
    if not adjustment.is_identity:
        settings.update(brightness=adjustment.brightness, contrast=adjustment.contrast, gamma=adjustment.gamma)
    provenance = (Provenance(heat.model_id, heat.weights_sha256, layer_label(style.layer), settings) if heat is not None
                  else Provenance("", "", "", settings))
    caption = f"Slide {slide_id} · region {region.describe()} @ {mpp:g} µm/px"
    if not adjustment.is_identity:
        caption += f" · {adjustment.describe()}"
    if heat is not None:
        caption += f" · layer {layer_label(style.layer)} · model {heat.model_id} · opacity {opacity:g}"
    fig = _figure(image, heat, style, region.width * mpp, caption)
    if regions:
        _add_regions(fig, regions, set(highlighted), region, out_w / region.width, workspace.config.annotation_classes)
    return fig, provenance


def _add_regions(fig: go.Figure, regions: Sequence[RegionVersion], highlighted: set[str], area: SlideRegion, ratio: float,
                 classes: Sequence[AnnotationClass]) -> None:
    """Outlines in output pixels, one trace per class (and per kind: outline or marker); a verdict's regions thicker."""
    colour = {c.name: f"rgb{tuple(c.color)}" for c in classes}
    traces: dict[tuple[str, bool, bool], tuple[list, list]] = {}
    for r in regions:
        geom = shapely.geometry.shape(r.geometry)
        is_marker = r.geometry["type"] in ("Point", "MultiPoint")
        xs, ys = traces.setdefault((r.class_name, r.region_id in highlighted, is_marker), ([], []))
        for part in shapely.get_parts(geom) if is_marker else shapely.get_rings(geom):
            coords = shapely.get_coordinates(part)
            xs.extend([*((coords[:, 0] - area.x) * ratio), None])
            ys.extend([*((coords[:, 1] - area.y) * ratio), None])
    for (name, marked, is_marker), (xs, ys) in sorted(traces.items()):
        rgb = colour.get(name, "rgb(128,128,128)")
        fig.add_trace(go.Scatter(x=xs, y=ys, mode="markers" if is_marker else "lines", hoverinfo="skip", connectgaps=False,
                                 name=f"{name} (named by a verdict)" if marked else name, legendgroup=name,
                                 line={"color": rgb, "width": 4 if marked else 1.5},
                                 marker={"color": rgb, "size": 12 if marked else 8, "line": {"color": "white", "width": 1}}))
    margin = fig.layout.margin
    fig.update_layout(showlegend=True, legend={"x": 1.02, "y": 1, "xanchor": "left", "yanchor": "top", "title": {"text": "Regions"}},
                      margin={"l": margin.l, "r": max(margin.r or 0, 190), "t": margin.t, "b": margin.b})


def _checked_style(style: OverlayStyle, heat: SlideHeatmap | None) -> OverlayStyle:
    """The same validation as the viewer's overlay tile requests, so a bad layer or colormap is a clear message here too."""
    if heat is None:
        return style
    query = {"method": style.method, "layer": style.layer, "cmap": style.cmap, "thr": str(style.threshold), "norm": style.norm,
             "smooth": str(style.smooth), "qc": style.qc}
    return OverlayStyle.from_query(query, heat.class_names)


def _layer(workspace: Workspace, heat: SlideHeatmap, style: OverlayStyle) -> tuple[np.ndarray, dict]:
    """The layer's cell grid (computing the stitched CAM or MIL attention it needs first) and the settings that shaped it."""
    settings: dict = {"layer": style.layer}
    layers = slide_layers(workspace, heat)
    source = layers.compute(source_layer(style))  # an export draws what it names, computing it when no job has yet
    if style.layer in CAM_LAYERS:
        settings.update(cmap=style.cmap, threshold=style.threshold, norm=style.norm if style.norm != "raw" else "minmax")
    elif style.layer == ATTENTION_LAYER:
        attention: SlideAttention = source
        settings.update(cmap=style.cmap, threshold=style.threshold, mil_model=attention.model_id)
    elif style.layer == ARGMAX_LAYER:
        settings.update(method=style.method, smooth=style.smooth)
    elif style.layer != TISSUE_LAYER:
        settings.update(method=style.method, cmap=style.cmap, threshold=style.threshold, norm=style.norm, smooth=style.smooth)
    return layer_grid(layers, style), settings


def _png_data_uri(image: np.ndarray) -> str:
    buffer = io.BytesIO()
    Image.fromarray(image, "RGB").save(buffer, "PNG", compress_level=3)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _figure(image: np.ndarray, heat: SlideHeatmap | None, style: OverlayStyle, region_um: float, caption: str) -> go.Figure:
    out_h, out_w = image.shape[:2]
    margin = {"l": 10, "r": 10 if heat is None else 130, "t": 10, "b": 50}
    plot_w = FIGURE_WIDTH_PX - margin["l"] - margin["r"]
    height = int(min(1600, max(300, plot_w * out_h / out_w + margin["t"] + margin["b"])))
    # The image is embedded as PNG rather than a z array: a 1200 px figure stays a ~1 MB spec instead of ~12 MB JSON.
    fig = go.Figure(go.Image(source=_png_data_uri(image), x0=0, y0=0, dx=1, dy=1, hoverinfo="skip", name="slide"))
    if heat is not None:
        _add_key(fig, heat, style)
    _add_scale_bar(fig, out_w, out_h, region_um, plot_w)
    fig.add_annotation(text=caption, showarrow=False, xref="paper", yref="paper", x=0, y=0, xanchor="left", yanchor="top",
                       yshift=-8, align="left", font={"size": 12, "color": "#333"})
    fig.update_xaxes(visible=False, range=[0, out_w], constrain="domain")
    fig.update_yaxes(visible=False, range=[out_h, 0], scaleanchor="x", scaleratio=1, constrain="domain")
    fig.update_layout(width=FIGURE_WIDTH_PX, height=height, margin=margin, template="plotly_white", plot_bgcolor="white",
                      showlegend=style.layer in (ARGMAX_LAYER, TISSUE_LAYER) and heat is not None,
                      legend={"x": 1.02, "y": 1, "xanchor": "left", "yanchor": "top"})
    return fig


def _add_key(fig: go.Figure, heat: SlideHeatmap, style: OverlayStyle) -> None:
    """A colour bar for continuous layers, a legend of fixed colours for the grade and tissue maps."""
    def swatch(name: str, rgb: tuple[int, int, int]) -> go.Scatter:
        return go.Scatter(x=[None], y=[None], mode="markers", name=name, hoverinfo="skip",
                          marker={"symbol": "square", "size": 14, "color": f"rgb{tuple(rgb)}"})

    if style.layer == ARGMAX_LAYER:
        for name, rgb in GRADE_COLOURS.items():
            if name in heat.class_names:
                fig.add_trace(swatch(display_class_name(name), rgb))
        return
    if style.layer == TISSUE_LAYER:
        fig.add_trace(swatch("tissue", TISSUE_COLOUR))
        return
    title = layer_label(style.layer) + (f" ({style.norm})" if style.norm != "raw" and style.layer not in CAM_LAYERS else "")
    # A hidden trace carries the colour bar: the composited image has no colour scale of its own.
    fig.add_trace(go.Scatter(
        x=[None], y=[None], mode="markers", showlegend=False, hoverinfo="skip",
        marker={"colorscale": style.cmap, "cmin": 0, "cmax": 1, "color": [0.0], "showscale": True,
                "colorbar": {"title": {"text": title, "side": "right"}, "thickness": 14, "len": 0.8, "x": 1.02, "xanchor": "left",
                             "tickvals": [0, 0.25, 0.5, 0.75, 1], "tickformat": ".2f"}},
    ))


def _add_scale_bar(fig: go.Figure, out_w: int, out_h: int, region_um: float, plot_w: int) -> None:
    length_um = nice_scale_length(region_um / 5)
    bar = length_um / region_um * out_w  # in output pixels (the axes' units)
    per_screen_px = out_w / plot_w
    x0, y = 0.04 * out_w, out_h - 0.05 * out_h
    for colour, width in (("white", 7), ("black", 3)):  # a halo keeps the bar visible on dark stain and on glass
        fig.add_shape(type="line", x0=x0, x1=x0 + bar, y0=y, y1=y, line={"color": colour, "width": width})
    fig.add_annotation(text=_length_label(length_um), x=x0 + bar / 2, y=y - 6 * per_screen_px, yanchor="bottom",
                       showarrow=False, font={"size": 13, "color": "black"}, bgcolor="rgba(255,255,255,0.75)")
