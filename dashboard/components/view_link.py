""""Link to this view": the page's address for what is on screen, read-only, and a button that copies it whole (the
box is narrow beside a case's title at 1366 px; the copy does not depend on seeing all of it)."""

from __future__ import annotations

import dash_bootstrap_components as dbc
from dash import dcc


def view_link(input_id: str, class_name: str = "") -> dbc.InputGroup:
    """The read-only link box ``input_id`` (its value set by the page's callbacks) with its copy button
    ``<input_id>-copy``."""
    return dbc.InputGroup([
        dbc.InputGroupText("Link to this view"),
        dbc.Input(id=input_id, readonly=True, value="", className="small"),
        dbc.InputGroupText(dcc.Clipboard(id=f"{input_id}-copy", target_id=input_id, title="Copy the link"),
                           className="view-link-copy"),
    ], size="sm", className=class_name)
