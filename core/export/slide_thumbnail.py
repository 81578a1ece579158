"""A small whole-slide image with the tumour overlay, for the case report's slide summary."""

from __future__ import annotations

import io

from PIL import Image

from core.export.slide_image import composite, heat_pixels, read_region_rgb
from core.export.slide_region import SlideRegion
from core.heatmaps.overlay import OverlayStyle, layer_grid
from core.heatmaps.slide_heatmap import latest_cached_heatmap
from core.heatmaps.slide_layers import slide_layers
from core.slides.adjust import DisplayAdjustment, adjust_pixels
from core.slides.reader import open_slide
from core.store.cases import slide_record
from core.workspace import Workspace

THUMBNAIL_STYLE = OverlayStyle(threshold=0.5)  # the viewer's default tumour overlay
THUMBNAIL_OPACITY = 0.5


def slide_thumbnail(workspace: Workspace, slide_id: str, width: int = 360, adjustment: DisplayAdjustment | None = None) -> tuple[bytes, str]:
    """PNG of the whole slide ``width`` px wide, with the tumour probability overlay of the slide's latest stored heatmap
    (none when it has none), and a caption saying which. ``adjustment``: the tissue's brightness, contrast and gamma, as
    the viewer showed them."""
    adjustment = adjustment or DisplayAdjustment()
    with workspace.store.session() as s:
        record = slide_record(s, slide_id)
        path, label = workspace.slides_dir / record.file, record.label
    slide = open_slide(path)
    try:
        region = SlideRegion(0, 0, *slide.dimensions)
        height = max(1, round(width * region.height / region.width))
        image = adjust_pixels(read_region_rgb(slide, region, width, height), adjustment)
    finally:
        slide.close()
    models = workspace.models_for("patch")
    heat = latest_cached_heatmap(workspace, slide_id, models[0]) if models else None
    if heat is not None:
        grid = layer_grid(slide_layers(workspace, heat), THUMBNAIL_STYLE)
        image = composite(image, heat_pixels(heat, grid, THUMBNAIL_STYLE, region, width, height), THUMBNAIL_OPACITY)
    buffer = io.BytesIO()
    Image.fromarray(image, "RGB").save(buffer, "PNG")
    overlay = f"tumour ≥ {THUMBNAIL_STYLE.threshold:g}, {heat.params.overlap:.0%} overlap" if heat is not None else "no heatmap stored"
    adjusted = "" if adjustment.is_identity else f" · {adjustment.describe()}"
    return buffer.getvalue(), f"{slide_id}" + (f" · label {label}" if label else "") + f" · {overlay}{adjusted}"
