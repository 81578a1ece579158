"""Localisation methods side by side against the ground truth: thresholded maps and their scores."""

from __future__ import annotations

import dash_bootstrap_components as dbc
import numpy as np
from dash import html
from PIL import Image

from core.heatmaps.localisation import MethodScores
from dashboard.components.patch_inspector import png_data_uri


def _mask_image(mask: np.ndarray, colour: tuple[int, int, int]) -> str:
    rgb = np.full((*mask.shape, 3), 245, np.uint8)
    rgb[mask] = colour
    scale = max(1, 160 // max(mask.shape))
    return png_data_uri(Image.fromarray(rgb).resize((mask.shape[1] * scale, mask.shape[0] * scale), Image.Resampling.NEAREST))


def comparison_grid(rows: list[MethodScores], truth: np.ndarray) -> html.Div:
    figures = [html.Figure([html.Img(src=_mask_image(truth, (40, 40, 40)), className="comparison-image"),
                            html.Figcaption("ground truth")], className="inspector-figure")]
    figures += [html.Figure([html.Img(src=_mask_image(r.mask, (214, 39, 40)), className="comparison-image"),
                             html.Figcaption(r.method)], className="inspector-figure") for r in rows]
    return html.Div(figures, className="inspector-images comparison-grid")  # bounded in height, scrolls (assets/dashboard.css)


def _score(value: float) -> str:
    return "n/a" if value != value else f"{value:.3f}"  # NaN: undefined (no tumour in the truth and none predicted)


def scores_table(rows: list[tuple[str, float, float, float]], element_id: str, headers: tuple[str, ...] = ("F1+", "F1−", "Dice")) -> dbc.Table:
    """Rows of (method, F1+, F1-, Dice), as in Belharbi et al.'s Table 1 (or other scores named by ``headers``)."""
    return dbc.Table([
        html.Thead(html.Tr([html.Th("method"), *[html.Th(h) for h in headers]])),
        html.Tbody([html.Tr([html.Td(row[0]), *[html.Td(_score(v)) for v in row[1:]]]) for row in rows]),
    ], size="sm", striped=True, id=element_id)
