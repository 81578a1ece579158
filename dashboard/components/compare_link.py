"""The side-by-side view's deep link (``/compare?…``): the slide, patch model and layer of each pane, and where the
view is (the left pane's ``z``, ``lat``, ``lng``, as the slide viewer's links give them; the right pane follows it).

A value that cannot be used is named on the page with what was shown instead, as for the slide viewer's links
(``viewer_link``). The names are those ``assets/side_by_side.js`` writes."""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import urlencode

from dash import html

from core.heatmaps.overlay import TUMOUR_LAYER
from core.slides.adjust import ADJUSTMENT_NAMES, DisplayAdjustment
from dashboard.components.image_adjust import link_adjustment
from dashboard.components.viewer_link import unknown_keys_problem

PANES = ("left", "right")
PREFIX = {"left": "l", "right": "r"}  # lmodel, llayer; rmodel, rlayer
NO_OVERLAY = "none"  # the slide alone (H&E), no model layer
COMPARE_KEYS = ("left", "right", "lmodel", "rmodel", "llayer", "rlayer", "z", "lat", "lng",
                *(p + name for p in PREFIX.values() for name in ADJUSTMENT_NAMES))  # lgamma: the left tiles' gamma


def pane_prefix(name: str) -> str:
    return f"pane-{name}"


def pane_id(name: str, part: str) -> str:
    """The id of a part of the pane called ``name`` ("left", "right"): ``pane-left-map``."""
    return f"{pane_prefix(name)}-{part}"


@dataclass
class PaneChoice:
    slide: str
    model: str | None
    layer: str
    adjustment: DisplayAdjustment = field(default_factory=DisplayAdjustment)  # the tiles' brightness, contrast, gamma


@dataclass
class CompareLink:
    panes: dict[str, PaneChoice]
    view: dict | None = None  # the left pane's {"z", "lat", "lng"}, not yet checked against the slide
    problems: list[str] = field(default_factory=list)


def compare_href(slide_id: str, layer: str, right_slide: str | None = None, right_layer: str = NO_OVERLAY, view: dict | None = None,
                 adjustment: DisplayAdjustment | None = None) -> str:
    """The side-by-side view of a slide's ``layer`` beside (by default) the same slide without an overlay; both panes'
    tiles with ``adjustment``."""
    query = {"left": slide_id, "right": right_slide or slide_id, "llayer": layer, "rlayer": right_layer}
    for p in PREFIX.values():
        query.update({p + name: value for name, value in (adjustment or DisplayAdjustment()).query().items()})
    if view:
        query.update({k: view[k] for k in ("z", "lat", "lng") if k in view})
    return "/compare?" + urlencode(query)


def parse_compare_link(query: dict, slides: list[str], models: list[str], layers: list[str]) -> CompareLink:
    """Each pane's choice from ``query``. ``slides``: those the right pane may show (the left slide's patient's, the
    left slide first); ``models``: the patch models; ``layers``: the layers a pane offers, ``NO_OVERLAY`` among them."""
    problems = [p for p in [unknown_keys_problem(query, COMPARE_KEYS)] if p]
    left = slides[0]
    right = query.get("right", left)
    if right not in slides:
        problems.append(f"slide {right[:40]!r} is not one of this patient's slides; the left slide is shown on both sides")
        right = left
    chosen = {"left": left, "right": right}
    panes = {}
    for pane in PANES:
        p = PREFIX[pane]
        model = query.get(f"{p}model", models[0] if models else None)
        if model not in models:
            problems.append(f"{pane} model {str(model)[:40]!r} is not a patch model of this workspace")
            model = models[0] if models else None
        # By default the same slide shows the model's tumour map beside the bare slide; two slides both show it.
        default_layer = NO_OVERLAY if pane == "right" and right == left else TUMOUR_LAYER
        layer = query.get(f"{p}layer", default_layer)
        if layer not in layers:
            problems.append(f"{pane} layer {layer[:40]!r} is not offered here")
            layer = default_layer
        adjustment = link_adjustment(query, pane_problems := [], p)
        problems += [f"{pane} {problem}" for problem in pane_problems]
        panes[pane] = PaneChoice(chosen[pane], model, layer, adjustment)
    view = None
    if any(k in query for k in ("z", "lat", "lng")):
        try:
            view = {"z": int(query["z"]), "lat": float(query["lat"]), "lng": float(query["lng"])}
        except (KeyError, ValueError):
            problems.append("the position (z, lat, lng) is incomplete or not numbers")
    return CompareLink(panes, view, problems)


def anchor(slide_id: str, layer: str, adjustment: DisplayAdjustment | None = None) -> html.A:
    """The slide viewer's way in: this slide's layer beside the bare slide (``assets/slide_viewer.js`` keeps the link
    on the shown view, layer and tile adjustment)."""
    return html.A("Side by side", id="side-by-side-link", href=compare_href(slide_id, layer, adjustment=adjustment),
                  title="Open this slide in two synchronised viewers: the layer beside the bare slide, another layer or model, "
                        "or another slide of the patient")
