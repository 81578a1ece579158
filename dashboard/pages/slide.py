"""Slide page (``/slide/<slide_id>``): the slide viewer with its heatmap layers, controls and ground-truth agreement."""

from __future__ import annotations

from dash import html

from core.slides.tiles import TileService
from core.store.cases import slide_record
from core.workspace import Workspace
from dashboard.components import slide_viewer


def layout(workspace: Workspace, tiles: TileService, slide_id: str, query: dict | None = None) -> html.Div:
    """``query``: a deep link's viewer values (``viewer_link.LINK_KEYS``)."""
    with workspace.store.session() as s:
        patient_id = slide_record(s, slide_id).patient_id
    return html.Div([html.H2(f"Slide {slide_id}", id="slide-title"),
                     html.P([html.A(f"Case {patient_id}", href=f"/case/{patient_id}")], className="mb-2"),
                     slide_viewer.layout(workspace, tiles, slide_id, query)])
