"""The brightness, contrast and gamma of a viewer's slide tiles: a small control, its reset, and the tile URL that
carries the values. The tiles are adjusted on the server (``core.slides.adjust``), so that the side-by-side panes and
the exported figures show the same pixels; the values are part of the viewer's deep link.

Ids carry a prefix, so that the control sits once per viewer: ``base-gamma`` on the slide viewer, ``pane-left-gamma``
on a side-by-side pane."""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import urlencode

import dash_bootstrap_components as dbc
from dash import Dash, Input, Output, dcc, html

from core.slides.adjust import ADJUSTMENT_NAMES, ADJUSTMENT_RANGE, DisplayAdjustment, adjustment_of, parse_adjustment

LABELS = {"brightness": "Brightness", "contrast": "Contrast", "gamma": "Gamma"}


def control_id(prefix: str, name: str) -> str:
    return f"{prefix}-{name}"


def link_adjustment(query: Mapping[str, str], problems: list[str], prefix: str = "") -> DisplayAdjustment:
    """The adjustment a deep link names (``brightness``, ``contrast``, ``gamma`` after ``prefix``); each value it cannot
    use is added to ``problems`` (the page names it) and left at 1."""
    adjustment, found = parse_adjustment(query, prefix)
    problems.extend(f"{problem}; 1 is shown" for problem in found)
    return adjustment


def shown_adjustment(brightness: object, contrast: object, gamma: object) -> DisplayAdjustment:
    """The adjustment of the control's values; a box left empty counts as 1. ``PathReviewError`` for a value out of range."""
    return adjustment_of(dict(zip(ADJUSTMENT_NAMES, (brightness, contrast, gamma), strict=True)))


def tile_url(slide_id: str, adjustment: DisplayAdjustment, normalised_for: str | None = None) -> str:
    """The slide's base tile URL template (Leaflet's ``{z}/{x}/{y}``); no query at the defaults, the plain tiles."""
    query = {**({"normalise": normalised_for} if normalised_for else {}), **adjustment.query()}
    return f"/slides/{slide_id}/tiles/{{z}}/{{x}}/{{y}}.jpeg" + (f"?{urlencode(query)}" if query else "")


def controls(prefix: str, adjustment: DisplayAdjustment) -> html.Details:
    """Folded by default: a summary line, and when opened one slider per value and a reset."""
    low, high = ADJUSTMENT_RANGE
    rows = []
    for name, value in zip(ADJUSTMENT_NAMES, adjustment.key(), strict=True):
        rows += [dbc.Label(LABELS[name], className="mb-0"),
                 dcc.Slider(id=control_id(prefix, name), min=low, max=high, step=0.05, value=value,
                            marks={low: f"{low:g}", 1: "1", 2: "2", high: f"{high:g}"})]
    return html.Details([
        html.Summary("Brightness · contrast · gamma"),
        html.Div([*rows, html.Button("Reset to 1, 1, 1", id=control_id(prefix, "adjust-reset"), className="btn btn-outline-secondary btn-sm")],
                 className="mt-1"),
    ], id=control_id(prefix, "adjust"), className="image-adjust small mt-2", open=not adjustment.is_identity)


def register_reset(app: Dash, prefix: str) -> None:
    app.clientside_callback(
        "function (n) { return n ? [1, 1, 1] : window.dash_clientside.no_update; }",
        *(Output(control_id(prefix, name), "value") for name in ADJUSTMENT_NAMES),
        Input(control_id(prefix, "adjust-reset"), "n_clicks"), prevent_initial_call=True,
    )

