"""Opening whole-slide images with OpenSlide and reading them at a chosen resolution."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import openslide
from PIL import ImageCms

from core.errors import PathReviewError

_SRGB = ImageCms.createProfile("sRGB")


class SlideReadError(PathReviewError):
    """A slide file is missing or OpenSlide cannot read it."""


def open_slide(path: Path) -> openslide.OpenSlide:
    if not path.is_file():
        raise SlideReadError(f"slide file {path.name} is missing from the workspace")
    try:
        return openslide.OpenSlide(str(path))
    except (openslide.OpenSlideError, OSError) as exc:
        raise SlideReadError(f"slide file {path.name} cannot be read by OpenSlide: {exc}") from exc


def level_for_downsample(slide: openslide.OpenSlide, downsample: float) -> int:
    """The coarsest pyramid level that is still at least as fine as ``downsample``."""
    fits = [i for i, d in enumerate(slide.level_downsamples) if d <= downsample * 1.01]
    return max(fits) if fits else 0


def read_level_rgb(slide: openslide.OpenSlide, level: int, strip_rows: int = 2048) -> np.ndarray:
    """A whole pyramid level as an RGB array, read in strips to bound OpenSlide's buffers."""
    width, height = slide.level_dimensions[level]
    scale = slide.level_downsamples[level]
    out = np.empty((height, width, 3), np.uint8)
    for y in range(0, height, strip_rows):
        rows = min(strip_rows, height - y)
        region = slide.read_region((0, int(round(y * scale))), level, (width, rows))
        out[y : y + rows] = np.asarray(region)[..., :3]
    return out


def srgb_transform(slide: openslide.OpenSlide) -> ImageCms.ImageCmsTransform | None:
    """The transform from the slide's embedded ICC profile to sRGB; None when the slide has no profile."""
    profile = getattr(slide, "color_profile", None)
    if profile is None:
        return None
    return ImageCms.buildTransform(profile, _SRGB, "RGB", "RGB", ImageCms.Intent.PERCEPTUAL)


def slide_fingerprint(path: Path) -> str:
    """Size, modification time and the first and last MiB: cheap, and changes when the file does."""
    stat = path.stat()
    digest = hashlib.sha256(f"{stat.st_size}:{stat.st_mtime_ns}".encode())
    with open(path, "rb") as fh:
        digest.update(fh.read(1 << 20))
        fh.seek(max(0, stat.st_size - (1 << 20)))
        digest.update(fh.read(1 << 20))
    return digest.hexdigest()
