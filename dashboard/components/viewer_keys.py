"""The slide viewer's magnification readout and presets, and its keyboard: arrows pan, + and − zoom, 1–6 the presets,
? the help. Keys come from dash-extensions' Keyboard; what they do runs in the browser (``assets/slide_viewer.js``).
The case page adds its own keys (``KEY_HELP`` lists them all)."""

from __future__ import annotations

import dash_bootstrap_components as dbc
from dash import ClientsideFunction, Dash, Input, Output, State, html
from dash_extensions import Keyboard

MAGNIFICATIONS = (1.25, 2.5, 5, 10, 20, 40)  # the presets, as assets/slide_viewer.js has them
VIEWER_KEYS = ["ArrowUp", "ArrowDown", "ArrowLeft", "ArrowRight", "+", "=", "-", "_", "?", *map(str, range(1, len(MAGNIFICATIONS) + 1))]
KEY_HELP = [
    ("← ↑ → ↓", "pan the slide by a quarter of the view"),
    ("+  −", "zoom in, out"),
    ("1 … 6", "1.25×, 2.5×, 5×, 10×, 20×, 40× (from the slide's µm per pixel; 40× ≈ 0.25 µm/px)"),
    ("[  ]", "previous, next slide of the case"),
    ("n", "next case of the worklist"),
    ("a  d  u", "agree, disagree, uncertain for the focused modality (the panel clicked last)"),
    ("?", "this help"),
]


def _label(m: float) -> str:
    return f"{m:g}×"


def magnification_bar() -> list:
    """The readout of the shown magnification and a button per preset."""
    return [html.Span(id="magnification", className="fw-semibold me-2"),
            dbc.ButtonGroup([dbc.Button(_label(m), id=f"mag-preset-{i}", size="sm", color="secondary", outline=True, n_clicks=0,
                                        title=f"key {i + 1}") for i, m in enumerate(MAGNIFICATIONS)], size="sm", className="me-2"),
            dbc.Button("? keys", id="keys-help-open", size="sm", color="link", className="p-0", n_clicks=0)]


def components() -> list:
    rows = [html.Tr([html.Td(html.Kbd(key)), html.Td(what)]) for key, what in KEY_HELP]
    return [Keyboard(id="viewer-keys", captureKeys=VIEWER_KEYS),
            dbc.Modal([dbc.ModalHeader(dbc.ModalTitle("Keyboard")), dbc.ModalBody(dbc.Table(html.Tbody(rows), size="sm", id="keys-help-table"))],
                      id="keys-help", is_open=False)]


def register_callbacks(app: Dash) -> None:
    app.clientside_callback(
        ClientsideFunction(namespace="slideViewer", function_name="magnification"),
        Output("magnification", "children"), Input("slide-map", "zoom"), State("slide-ctx", "data"),
    )
    app.clientside_callback(
        ClientsideFunction(namespace="slideViewer", function_name="viewerKeys"),
        Output("slide-map", "viewport", allow_duplicate=True), Output("keys-help", "is_open"),
        Input("viewer-keys", "n_keydowns"), *(Input(f"mag-preset-{i}", "n_clicks") for i in range(len(MAGNIFICATIONS))),
        State("viewer-keys", "keydown"), State("slide-ctx", "data"), State("slide-map", "zoom"), State("slide-map", "center"),
        State("slide-map", "bounds"), State("keys-help", "is_open"),
        prevent_initial_call=True,
    )
    app.clientside_callback("function (n, open) { return n ? !open : window.dash_clientside.no_update; }",
                            Output("keys-help", "is_open", allow_duplicate=True), Input("keys-help-open", "n_clicks"),
                            State("keys-help", "is_open"), prevent_initial_call=True)
