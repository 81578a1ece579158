"""The key of the overlay the slide viewer shows: a colour bar for a continuous layer (its colour map, with the part under
the threshold marked as not drawn, and the normalisation in its title), a class key for the class map, a swatch for the
tissue mask. Drawn by the same rules as the overlay tiles (``core.heatmaps.overlay``)."""

from __future__ import annotations

from dash import html

from core.heatmaps.grade_group import display_class_name
from core.heatmaps.overlay import (
    ARGMAX_LAYER,
    ATTENTION_LAYER,
    CAM_LAYERS,
    GRADE_COLOURS,
    TISSUE_ALPHA,
    TISSUE_COLOUR,
    TISSUE_LAYER,
    TUMOUR_LAYER,
    colorbar_colours,
)

NORMALISATION_WORDS = {"raw": "raw probability", "minmax": "min–max per slide", "percentile": "1st–99th percentile per slide"}
CAM_NAMES = dict(zip(CAM_LAYERS, ("CAM", "Grad-CAM", "Grad-CAM++"), strict=True))


def legend_title(layer: str, norm: str) -> str:
    """What the colours mean, including how the values were scaled: CAMs and attention are always relative to the slide."""
    if layer in CAM_LAYERS:
        return f"{CAM_NAMES[layer]} ({NORMALISATION_WORDS[norm if norm != 'raw' else 'minmax']})"
    if layer == ATTENTION_LAYER:
        return f"MIL attention ({NORMALISATION_WORDS['minmax']})"
    name = "Tumour probability (1 − benign)" if layer == TUMOUR_LAYER else f"P({display_class_name(layer)})"
    return f"{name} ({NORMALISATION_WORDS.get(norm, norm)})"


def _swatch(name: str, rgb: tuple[int, int, int], alpha: float = 1.0) -> html.Div:
    return html.Div([html.Span(className="legend-swatch", style={"backgroundColor": f"rgba({rgb[0]},{rgb[1]},{rgb[2]},{alpha:.2f})"}),
                     html.Span(name)], className="legend-class")


KEY_ID = "heat-legend-key"  # the slide viewer's; a side-by-side pane names its own


def class_key(class_names: list[str], key_id: str = KEY_ID) -> html.Div:
    """The class map's fixed colours; classes without a colour (benign) are not drawn."""
    drawn = [_swatch(display_class_name(name), rgb) for name, rgb in GRADE_COLOURS.items() if name in class_names]
    undrawn = [display_class_name(n) for n in class_names if n not in GRADE_COLOURS]
    return html.Div([html.Div("Class map (most likely class)", className="legend-title"), *drawn,
                     html.Div(f"{', '.join(undrawn)}: not drawn", className="legend-note") if undrawn else None],
                    className="heat-legend", id=key_id, **{"data-kind": "classes"})


def colour_bar(layer: str, cmap: str, threshold: float, norm: str, key_id: str = KEY_ID) -> html.Div:
    """A vertical bar of the colour map from 0 (bottom) to 1 (top); values under ``threshold`` are hatched: not drawn."""
    gradient = f"linear-gradient(to top, {', '.join(colorbar_colours(cmap, 11))})"
    cut = max(0.0, min(1.0, float(threshold)))
    ticks = [html.Span(f"{v:g}", className="legend-tick", style={"bottom": f"{100 * v:.0f}%"}) for v in (0, 0.25, 0.5, 0.75, 1)]
    return html.Div([
        html.Div(legend_title(layer, norm), className="legend-title"),
        html.Div([html.Div(className="legend-gradient", style={"background": gradient}),
                  html.Div(className="legend-below-threshold", style={"height": f"{100 * cut:.0f}%"}, title="not drawn"),
                  html.Div(ticks, className="legend-ticks")], className="legend-bar-vertical"),
        html.Div(f"below {cut:g}: not drawn" if cut > 0 else "every value drawn", className="legend-note"),
    ], className="heat-legend", id=key_id, **{"data-kind": "colour bar", "data-cmap": cmap, "data-threshold": f"{cut:g}"})


def overlay_key(layer: str, cmap: str, threshold: float, norm: str, class_names: list[str], key_id: str = KEY_ID) -> html.Div:
    if layer == ARGMAX_LAYER:
        return class_key(class_names, key_id)
    if layer == TISSUE_LAYER:
        return html.Div([html.Div("Tissue mask", className="legend-title"), _swatch("tissue", TISSUE_COLOUR, TISSUE_ALPHA / 255)],
                        className="heat-legend", id=key_id, **{"data-kind": "tissue"})
    return colour_bar(layer, cmap, threshold, norm, key_id)
