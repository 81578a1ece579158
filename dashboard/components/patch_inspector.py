"""The patch inspector panel: the patch, its class probabilities with MC-dropout spread, and CAM overlays."""

from __future__ import annotations

import base64
import io

import dash_bootstrap_components as dbc
import numpy as np
from dash import html
from PIL import Image

from core.heatmaps.grade_group import display_class_name
from core.heatmaps.overlay import colour_lut
from core.heatmaps.patch_inspection import PatchInspection

DISPLAY_PX = 192
METHOD_LABELS = {"cam": "CAM", "gradcam": "Grad-CAM", "gradcam++": "Grad-CAM++", "scorecam": "Score-CAM"}


def png_data_uri(image: Image.Image | np.ndarray) -> str:
    """An image (or a uint8 patch, shown at half the inspector size) as a PNG data URI."""
    if isinstance(image, np.ndarray):
        image = Image.fromarray(image).resize((DISPLAY_PX // 2, DISPLAY_PX // 2), Image.Resampling.NEAREST)
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def cam_overlay_image(patch: np.ndarray, cam: np.ndarray, alpha: float = 0.5, cmap: str = "Jet", probability: float = 1.0) -> Image.Image:
    """The patch with its map on top; the map is scaled to its own maximum for display only, and drawn with an opacity
    proportional to the class's probability, so the map of a class the model rules out (p ≈ 0) is not shown at full colour."""
    base = Image.fromarray(patch).resize((DISPLAY_PX, DISPLAY_PX), Image.Resampling.NEAREST)
    peak = float(np.abs(cam).max())
    scaled = np.clip(cam / peak, 0, 1) if peak > 0 else np.zeros_like(cam)
    heat = Image.fromarray((scaled * 255).astype(np.uint8)).resize((DISPLAY_PX, DISPLAY_PX), Image.Resampling.BILINEAR)
    coloured = Image.fromarray(colour_lut(cmap)[np.asarray(heat)])
    return Image.blend(base.convert("RGB"), coloured, alpha * max(0.0, min(1.0, probability)))


def patch_inspector(inspection: PatchInspection, mpp: float, patch_um: float) -> html.Div:
    """``mpp``: the slide's µm per level-0 pixel; ``patch_um``: the patch side in µm. Positions are given in µm."""
    probs = [html.Tr([html.Td(display_class_name(name)), html.Td(f"{p:.3f}"), html.Td(f"{m:.3f} ± {s:.3f}")])
             for name, p, m, s in zip(inspection.class_names, inspection.probabilities, inspection.mc_mean, inspection.mc_std, strict=True)]
    images = [html.Figure([html.Img(src=png_data_uri(Image.fromarray(inspection.image).resize((DISPLAY_PX, DISPLAY_PX), Image.Resampling.NEAREST)),
                                    className="inspector-image"), html.Figcaption("patch (model input)")], className="inspector-figure")]
    probability = float(inspection.probabilities[inspection.class_names.index(inspection.target_class)])
    for method, cam in inspection.maps.items():
        images.append(html.Figure([html.Img(src=png_data_uri(cam_overlay_image(inspection.image, cam, probability=probability)),
                                            className="inspector-image cam-overlay",
                                            title=f"raw range {cam.min():.3g} to {cam.max():.3g}"),
                                   html.Figcaption(f"{METHOD_LABELS.get(method, method)}: {display_class_name(inspection.target_class)} "
                                                   f"(p = {probability:.3f})")],
                                  className="inspector-figure"))
    return html.Div([
        html.H5(f"Patch {inspection.index} at ({inspection.origin[0] * mpp:,.0f}, {inspection.origin[1] * mpp:,.0f}) µm, "
                f"{patch_um:,.0f} µm wide"),
        html.Div(images, className="inspector-images"),
        html.P("Overlays are scaled to each map's own maximum and drawn with an opacity proportional to the class's probability, "
               "so a class the model rules out shows little or no colour; stitched slide maps are normalised per slide.",
               className="small text-muted"),
        dbc.Table([html.Thead(html.Tr([html.Th("class"), html.Th("probability"), html.Th("MC dropout (30 passes)")])), html.Tbody(probs)],
                  size="sm", id="inspector-probabilities"),
    ], id="patch-inspector-panel")
