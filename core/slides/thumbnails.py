"""Slide thumbnails as JPEG bytes, looked up by slide id through the case store."""

from __future__ import annotations

import io

from core.slides.reader import open_slide
from core.store.cases import slide_record
from core.workspace import Workspace


def slide_thumbnail_jpeg(workspace: Workspace, slide_id: str, max_px: int = 512) -> bytes:
    with workspace.store.session() as s:
        record = slide_record(s, slide_id)
        path = workspace.slides_dir / record.file
    slide = open_slide(path)
    try:
        image = slide.get_thumbnail((max_px, max_px)).convert("RGB")
    finally:
        slide.close()
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=85)
    return buffer.getvalue()
