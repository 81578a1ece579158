"""Slide thumbnails as JPEG bytes, looked up by slide id through the case store."""

from __future__ import annotations

import io

import openslide

from core.slides.reader import SlideReadError, open_slide
from core.store.cases import slide_record
from core.workspace import Workspace


def slide_thumbnail_jpeg(workspace: Workspace, slide_id: str, max_px: int = 512) -> bytes:
    with workspace.store.session() as s:
        record = slide_record(s, slide_id)
        path = workspace.slides_dir / record.file
    slide = open_slide(path)
    try:
        image = slide.get_thumbnail((max_px, max_px)).convert("RGB")
    except (openslide.OpenSlideError, OSError) as exc:  # it opened, then failing to read it will not pass on a retry
        raise SlideReadError(f"slide file {path.name} opens but cannot be read: {exc}") from exc
    finally:
        slide.close()
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=85)
    return buffer.getvalue()
