"""Reviewers' regions on the viewer at any count: vector features for a view that holds few, raster tiles otherwise.

A slide's current regions are loaded once per change (keyed by ``slide_regions_stamp``) into a ``RegionIndex``: the
shapely geometries in an STR-tree, so a view or a tile asks only for the regions whose bounding box meets it. A view
with at most ``VECTOR_LIMIT`` regions gets them as GeoJSON features (clickable, editable); a view with more gets PNG
tiles on which the regions' outlines are drawn in their class colours, so 10,000 polygons cost the browser a few
images instead of 10,000 SVG paths.
"""

from __future__ import annotations

import io
import threading
from collections import OrderedDict
from collections.abc import Collection, Sequence
from dataclasses import dataclass

import numpy as np
import shapely
from PIL import Image, ImageDraw
from shapely.geometry import box, shape

from core.annotations.map_coordinates import to_map
from core.store.annotations import RegionVersion, current_regions, slide_regions_stamp
from core.store.database import CaseStore
from core.workspace import AnnotationClass

VECTOR_LIMIT = 600  # regions in a view above which the view is drawn as tiles
INDEXES_KEPT = 8
UNKNOWN_COLOUR = (128, 128, 128)
MARKER_RADIUS_PX = 4
TILES_KEPT = 2000  # rendered region tiles kept per server (a few MB)
MARKER_TYPE_IDS = (0, 4)  # shapely's type ids of Point and MultiPoint


@dataclass(frozen=True)
class RegionIndex:
    slide_id: str
    stamp: int
    regions: list[RegionVersion]
    geometries: np.ndarray  # shapely geometries, one per region
    authors: np.ndarray  # str, one per region
    tree: shapely.STRtree

    @classmethod
    def build(cls, slide_id: str, stamp: int, regions: list[RegionVersion]) -> RegionIndex:
        geometries = np.array([shape(r.geometry) for r in regions], dtype=object)
        return cls(slide_id, stamp, regions, np.asarray(geometries, dtype=object),
                   np.array([r.author for r in regions], dtype=object), shapely.STRtree(geometries))

    def in_box(self, x0: float, y0: float, x1: float, y1: float, authors: Collection[str] | None = None) -> np.ndarray:
        """Indices of the regions (of ``authors``, when given) whose geometry meets the level-0 box, in drawing order."""
        if not self.regions:
            return np.array([], dtype=int)
        hits = np.sort(self.tree.query(box(x0, y0, x1, y1), predicate="intersects"))
        if authors is not None:
            hits = hits[np.isin(self.authors[hits], list(authors))]
        return hits


class RegionIndexes:
    """The latest index of each recently shown slide, rebuilt when the slide's regions change."""

    def __init__(self, store: CaseStore, kept: int = INDEXES_KEPT) -> None:
        self._store = store
        self._kept = kept
        self._indexes: OrderedDict[str, RegionIndex] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, slide_id: str) -> RegionIndex:
        stamp = slide_regions_stamp(self._store, slide_id)
        with self._lock:
            index = self._indexes.get(slide_id)
            if index is not None and index.stamp == stamp:
                self._indexes.move_to_end(slide_id)
                return index
        index = RegionIndex.build(slide_id, stamp, current_regions(self._store, slide_id))
        with self._lock:
            self._indexes[slide_id] = index
            while len(self._indexes) > self._kept:
                self._indexes.popitem(last=False)
        return index


class RegionTiles:
    """Rendered region tiles of the current regions, kept until the slide's regions change (the stamp is in the key)."""

    def __init__(self, indexes: RegionIndexes, kept: int = TILES_KEPT) -> None:
        self._indexes = indexes
        self._kept = kept
        self._tiles: OrderedDict[tuple, bytes] = OrderedDict()
        self._lock = threading.Lock()

    def tile(self, slide_id: str, z: int, x: int, y: int, max_zoom: int, tile_size: int, authors: Collection[str],
             classes: dict[str, tuple[int, int, int]]) -> bytes:
        index = self._indexes.get(slide_id)
        key = (slide_id, index.stamp, z, x, y, tuple(sorted(set(authors))))
        with self._lock:
            png = self._tiles.get(key)
            if png is not None:
                self._tiles.move_to_end(key)
                return png
        png = render_region_tile(index, z, x, y, max_zoom, tile_size, authors, classes)
        with self._lock:
            self._tiles[key] = png
            while len(self._tiles) > self._kept:
                self._tiles.popitem(last=False)
        return png


def colours(classes: Sequence[AnnotationClass]) -> dict[str, tuple[int, int, int]]:
    return {c.name: c.color for c in classes}


def hex_colour(rgb: tuple[int, int, int]) -> str:
    return "#{:02x}{:02x}{:02x}".format(*rgb)


def map_feature(region: RegionVersion, max_zoom: int, classes: dict[str, tuple[int, int, int]]) -> dict:
    """A region as a GeoJSON feature in the viewer's map units, with what the viewer shows and styles it by."""
    return {"type": "Feature", "id": region.region_id, "geometry": to_map(region.geometry, max_zoom),
            "properties": {"region": region.region_id, "class": region.class_name, "author": region.author,
                           "version": region.version, "colour": hex_colour(classes.get(region.class_name, UNKNOWN_COLOUR))}}


def features_in_view(index: RegionIndex, x0: float, y0: float, x1: float, y1: float, authors: Collection[str], max_zoom: int,
                     classes: dict[str, tuple[int, int, int]], limit: int = VECTOR_LIMIT) -> list[dict] | None:
    """The view's regions as map features, or None when there are more than ``limit`` (the view is then tiled)."""
    hits = index.in_box(x0, y0, x1, y1, authors)
    if len(hits) > limit:
        return None
    return [map_feature(index.regions[i], max_zoom, classes) for i in hits]


def render_region_tile(index: RegionIndex, z: int, x: int, y: int, max_zoom: int, tile_size: int, authors: Collection[str],
                       classes: dict[str, tuple[int, int, int]]) -> bytes:
    """An RGBA PNG of Deep Zoom tile (z, x, y) with the outlines of the regions of ``authors`` (markers as dots), in
    their class colours; transparent elsewhere. Outlines are painted for all rings at once: each edge is sampled every
    pixel and each sample paints a 2-pixel-wide dot, so a zoomed-out tile of thousands of regions costs a few array
    operations rather than a drawing call per ring."""
    downsample = 2.0 ** (max_zoom - z)
    span = tile_size * downsample
    ox, oy = x * span, y * span
    rgba = np.zeros((tile_size, tile_size, 4), np.uint8)
    hits = index.in_box(ox, oy, ox + span, oy + span, authors)
    geoms = index.geometries[hits]
    colour_of = np.array([classes.get(index.regions[h].class_name, UNKNOWN_COLOUR) for h in hits], np.uint8).reshape(-1, 3)
    rings, ring_owner = shapely.get_rings(geoms, return_index=True)
    if len(rings):
        coords, ring_of = shapely.get_coordinates(rings, return_index=True)
        pixels = np.round((coords - (ox, oy)) / downsample * 2) / 2  # half-pixel steps: shorter edges vanish below
        edge = (ring_of[:-1] == ring_of[1:]) & (pixels[:-1] != pixels[1:]).any(axis=1)  # consecutive vertices of one ring, apart
        _paint_edges(rgba, pixels[:-1][edge], pixels[1:][edge], colour_of[ring_owner[ring_of[:-1][edge]]])
    image = Image.fromarray(rgba, "RGBA")
    markers = np.isin(shapely.get_type_id(geoms), MARKER_TYPE_IDS)
    if markers.any():
        draw = ImageDraw.Draw(image)
        points, owner = shapely.get_parts(geoms[markers], return_index=True)
        xy = (shapely.get_coordinates(points) - (ox, oy)) / downsample
        for (px, py), colour in zip(xy, colour_of[markers][owner], strict=True):
            draw.ellipse([px - MARKER_RADIUS_PX, py - MARKER_RADIUS_PX, px + MARKER_RADIUS_PX, py + MARKER_RADIUS_PX],
                         fill=(*colour.tolist(), 255))
    buffer = io.BytesIO()
    image.save(buffer, "PNG", compress_level=1)
    return buffer.getvalue()


def _paint_edges(rgba: np.ndarray, start: np.ndarray, end: np.ndarray, colours: np.ndarray) -> None:
    """Edges from ``start`` to ``end`` (tile pixels), sampled at least once a pixel, each sample a 2 x 2 dot. Edges are
    first cut to the tile (with a pixel's margin), so a region far larger than the tile costs no more than its part."""
    size = rgba.shape[0]
    lo, hi = -1.0, size + 1.0
    d = end - start
    t0, t1 = np.zeros(len(d)), np.ones(len(d))
    for axis in (0, 1):  # Liang-Barsky: the part of each edge inside [lo, hi] on both axes
        with np.errstate(divide="ignore", invalid="ignore"):
            a, b = (lo - start[:, axis]) / d[:, axis], (hi - start[:, axis]) / d[:, axis]
        flat = d[:, axis] == 0
        inside = (start[:, axis] >= lo) & (start[:, axis] <= hi)
        t0 = np.where(flat, np.where(inside, t0, 1.0), np.maximum(t0, np.minimum(a, b)))
        t1 = np.where(flat, np.where(inside, t1, 0.0), np.minimum(t1, np.maximum(a, b)))
    keep = t0 <= t1
    p, q, colours = start[keep] + d[keep] * t0[keep, None], start[keep] + d[keep] * t1[keep, None], colours[keep]
    length = np.abs(q - p).max(axis=1)
    steps = np.where(length < 1, 1, np.ceil(length).astype(int) + 1)  # an edge inside one pixel is its start
    owner = np.repeat(np.arange(len(p)), steps)
    t = (np.arange(len(owner)) - np.repeat(np.cumsum(steps) - steps, steps)) / np.repeat(np.maximum(steps - 1, 1), steps)
    samples = p[owner] + (q - p)[owner] * t[:, None]
    cols, rows = np.floor(samples[:, 0]).astype(int), np.floor(samples[:, 1]).astype(int)
    for dc, dr in ((0, 0), (1, 0), (0, 1)):
        _paint(rgba, cols + dc, rows + dr, colours[owner])


def _paint(rgba: np.ndarray, cols: np.ndarray, rows: np.ndarray, colours: np.ndarray) -> None:
    size = rgba.shape[0]
    on = (cols >= 0) & (rows >= 0) & (cols < size) & (rows < size)
    rgba[rows[on], cols[on], :3] = colours[on]
    rgba[rows[on], cols[on], 3] = 255
