"""Deep Zoom tiles by slide id: cached OpenSlide handles, ICC profile to sRGB, bounded tile cache.

A cached handle is used only while its file is the one it opened: every request compares the file's identity
(device, inode, size, modification time) with the one recorded at opening. A file deleted while the app runs then
answers "missing" (not tiles from the still-open deleted file), and one replaced or truncated in place is opened
again, so a damaged file answers "cannot be read" and a re-scanned one serves its new tiles."""

from __future__ import annotations

import hashlib
import io
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import openslide
import torch
from cachetools import LRUCache
from openslide.deepzoom import DeepZoomGenerator
from PIL import Image, ImageCms

from core.device import compute_device
from core.errors import NotFoundError
from core.slides.adjust import DisplayAdjustment, adjust_pixels
from core.slides.measure import PixelSize, slide_pixel_size
from core.slides.reader import SlideReadError, open_slide, srgb_transform
from core.slides.slide_stain import slide_input
from core.slides.stain import normalise_stain
from core.store.cases import slide_record
from core.workspace import Workspace

TILE_SIZE = 256  # Leaflet's tile size; no overlap, so Deep Zoom level z == map zoom z


class TileOutOfRange(NotFoundError):
    """A tile address outside the slide's pyramid."""


@dataclass
class _OpenSlide:
    slide: openslide.OpenSlide
    deepzoom: DeepZoomGenerator
    to_srgb: ImageCms.ImageCmsTransform | None
    mpp: float
    path: Path
    identity: tuple[int, ...] | None


def file_identity(path: Path) -> tuple[int, ...] | None:
    """(device, inode, size, mtime in ns) of ``path``, or None when it is gone."""
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns


@dataclass(frozen=True)
class SlideGeometry:
    slide_id: str
    width: int
    height: int
    mpp: float
    max_zoom: int  # Deep Zoom level of full resolution
    tile_size: int = TILE_SIZE


class TileService:
    """Serves JPEG tiles of a workspace's slides. Handles and encoded tiles are kept in LRU caches."""

    def __init__(self, workspace: Workspace, max_open_slides: int = 16, max_tile_bytes: int = 256 << 20, quality: int = 85) -> None:
        self.workspace = workspace
        self.quality = quality
        self._handles: LRUCache[str, _OpenSlide] = LRUCache(max_open_slides)
        self._tiles: LRUCache[tuple, bytes] = LRUCache(max_tile_bytes, getsizeof=len)
        self._lock = threading.Lock()

    def _open(self, slide_id: str) -> _OpenSlide:
        with self._lock:
            handle = self._handles.get(slide_id)
        if handle is not None:
            if file_identity(handle.path) == handle.identity:
                return handle
            self.forget(slide_id, handle)  # deleted, truncated or replaced since it was opened: never serve the old file
        with self.workspace.store.session() as s:
            record = slide_record(s, slide_id)
            path, mpp = self.workspace.slides_dir / record.file, record.mpp
        identity = file_identity(path)
        slide = open_slide(path)
        handle = _OpenSlide(slide, DeepZoomGenerator(slide, tile_size=TILE_SIZE, overlap=0, limit_bounds=False),
                            srgb_transform(slide), mpp, path, identity)
        with self._lock:
            self._handles[slide_id] = handle
        return handle

    def geometry(self, slide_id: str) -> SlideGeometry:
        h = self._open(slide_id)
        width, height = h.slide.dimensions
        return SlideGeometry(slide_id, width, height, h.mpp, h.deepzoom.level_count - 1)

    def pixel_size(self, slide_id: str) -> PixelSize:
        """The µm per pixel lengths and areas on this slide are measured with (``core.slides.measure``)."""
        h = self._open(slide_id)
        return slide_pixel_size(h.slide.properties, h.mpp)

    def tile_jpeg(self, slide_id: str, z: int, x: int, y: int, normalised_for: str | None = None,
                  adjustment: DisplayAdjustment | None = None) -> bytes:
        """A JPEG tile. ``NotFoundError`` for an unknown slide or an address outside its pyramid; ``SlideReadError``
        when the file is missing or cannot be read (its handle and tiles are then dropped). With ``normalised_for`` (a
        patch model's id) the tile is stain-normalised as that model's manifest declares: what the model sees (the
        tile's stains are estimated from the tile itself, as a patch's are from the patch, or are the slide's, as
        its patches' are, when the model fits stains per slide). ``adjustment`` (brightness,
        contrast, gamma; ``core.slides.adjust``) is applied last; at its defaults the tile is the unadjusted one."""
        spec = self.workspace.manifest(normalised_for).input if normalised_for else None
        adjustment = adjustment or DisplayAdjustment()
        key = (slide_id, z, x, y, normalised_for or "", adjustment.key())
        h = self._open(slide_id)  # first: checks that the file is still the one the cached tiles came from
        with self._lock:
            cached = self._tiles.get(key)
        if cached is not None:
            return cached
        dz = h.deepzoom
        if not 0 <= z < dz.level_count:
            raise TileOutOfRange(f"zoom level {z} is outside 0..{dz.level_count - 1}")
        cols, rows = dz.level_tiles[z]
        if not (0 <= x < cols and 0 <= y < rows):
            raise TileOutOfRange(f"tile ({x}, {y}) is outside the {cols} x {rows} tiles of level {z}")
        try:
            tile = dz.get_tile(z, (x, y)).convert("RGB")
        except (openslide.OpenSlideError, OSError, ValueError) as exc:  # truncated after opening, or closed by forget() meanwhile
            self.forget(slide_id, h)
            raise SlideReadError(f"slide file {h.path.name} cannot be read by OpenSlide: {exc}") from exc
        if h.to_srgb is not None:
            ImageCms.applyTransform(tile, h.to_srgb, inPlace=True)
        if spec is not None and spec.stain_normalisation != "none":
            spec = slide_input(self.workspace, slide_id, spec)
            pixels = torch.from_numpy(np.asarray(tile).copy())[None].to(compute_device())
            tile = Image.fromarray(normalise_stain(pixels, spec)[0].cpu().numpy())
        if not adjustment.is_identity:
            tile = Image.fromarray(adjust_pixels(np.asarray(tile), adjustment))
        buffer = io.BytesIO()
        tile.save(buffer, "JPEG", quality=self.quality)
        data = buffer.getvalue()
        with self._lock:
            self._tiles[key] = data
        return data

    def forget(self, slide_id: str, stale: _OpenSlide | None = None) -> None:
        """Drop a slide's handle and tiles (its file changed or vanished). With ``stale``, only while that handle is
        still the cached one: a request that noticed the change late does not close the handle another just opened."""
        with self._lock:
            current = self._handles.get(slide_id)
            if stale is not None and current is not stale:
                current = None
            else:
                self._handles.pop(slide_id, None)
            for key in [k for k in self._tiles if k[0] == slide_id]:
                del self._tiles[key]
        if current is not None:
            current.slide.close()


def etag_for(data: bytes) -> str:
    return hashlib.blake2b(data, digest_size=12).hexdigest()


def slide_file_path(workspace: Workspace, slide_id: str) -> Path:
    with workspace.store.session() as s:
        return workspace.slides_dir / slide_record(s, slide_id).file
