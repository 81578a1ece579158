"""A reviewer's changes to regions from the viewer: a drawn or freehand shape stored, reshaped, moved, reclassified or
deleted.

Each change is one version with its audit row (``core.store.annotations``). A reviewer changes their own regions;
an administrator may change anyone's (the region stays in its author's layer). The class must be one of the
workspace's ``annotation_classes``.
"""

from __future__ import annotations

import math
from typing import Any

from shapely import affinity
from shapely.geometry import shape

from core.annotations.freehand import FreehandOutline, freehand_outline
from core.annotations.geometry import RegionRefused, check_geometry
from core.annotations.map_coordinates import drawn_region, geojson_of, region_on_slide
from core.errors import PathReviewError
from core.store.annotations import (
    RegionDraft,
    RegionVersion,
    add_regions,
    current_region,
    delete_region,
    edit_region,
)
from core.store.cases import slide_record
from core.workspace import Workspace


def _class_name(workspace: Workspace, class_name: str | None) -> str:
    names = [c.name for c in workspace.config.annotation_classes]
    if class_name not in names:
        raise PathReviewError(f"choose a class for the region, one of: {', '.join(names)}")
    return str(class_name)


def _slide_size(workspace: Workspace, slide_id: str) -> tuple[int, int]:
    with workspace.store.session() as s:
        slide = slide_record(s, slide_id)
        return slide.width, slide.height


def _geometry(workspace: Workspace, slide_id: str, map_geometry: Any, max_zoom: int) -> dict:
    try:
        return drawn_region(map_geometry, max_zoom, *_slide_size(workspace, slide_id)).geometry
    except RegionRefused as exc:
        raise PathReviewError(f"the shape was not saved: {exc}") from None


def _editable(workspace: Workspace, region_id: str, slide_id: str, user: str, may_edit_others: bool) -> RegionVersion:
    region = current_region(workspace.store, region_id)
    if region.slide_id != slide_id:
        raise PathReviewError(f"region {region_id} is not on slide {slide_id}; reload the slide")
    if region.author != user and not may_edit_others:
        raise PathReviewError(f"this region is {region.author}'s; you can change your own regions (an administrator can change any)")
    return region


def save_drawn_region(workspace: Workspace, slide_id: str, map_geometry: Any, max_zoom: int, class_name: str | None, comment: str,
                      user: str) -> RegionVersion:
    """A shape drawn on the viewer (map units) stored as a new region of ``user``."""
    draft = RegionDraft(_geometry(workspace, slide_id, map_geometry, max_zoom), _class_name(workspace, class_name), comment=comment)
    return add_regions(workspace.store, slide_id, [draft], user)[0]


def save_freehand_region(workspace: Workspace, slide_id: str, map_geometry: Any, max_zoom: int, zoom: Any, class_name: str | None,
                         comment: str, user: str) -> tuple[RegionVersion, FreehandOutline]:
    """A freehand stroke drawn at ``zoom`` stored as a new region of ``user``, simplified and checked by
    ``core.annotations.freehand``; the outline says how."""
    name = _class_name(workspace, class_name)
    try:
        outline = freehand_outline(map_geometry, max_zoom, zoom)
        geometry = region_on_slide(outline.geometry, *_slide_size(workspace, slide_id)).geometry
    except RegionRefused as exc:
        raise PathReviewError(f"the freehand outline was not saved: {exc}") from None
    return add_regions(workspace.store, slide_id, [RegionDraft(geometry, name, comment=comment)], user)[0], outline


def move_region(workspace: Workspace, slide_id: str, region_id: str, expected_version: int, map_offset: Any, max_zoom: int,
                user: str, may_edit_others: bool = False) -> RegionVersion:
    """The region shifted whole by ``map_offset`` (``[dlng, dlat]`` in map units, as the viewer measured the drag):
    its stored geometry translated by exactly that many level-0 pixels, holes and parts included, as a new version.
    A move that would take any of it off the slide is refused (cutting it would lose part of the region)."""
    region = _editable(workspace, region_id, slide_id, user, may_edit_others)
    if (not isinstance(map_offset, list) or len(map_offset) != 2
            or not all(isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) for v in map_offset)):
        raise PathReviewError("the move came without its offset; drag the region again")
    scale = 2.0**max_zoom
    dx, dy = map_offset[0] * scale, -map_offset[1] * scale
    if dx == 0 and dy == 0:
        raise PathReviewError("the region was not moved (no offset)")
    moved = affinity.translate(shape(region.geometry), dx, dy)
    width, height = _slide_size(workspace, slide_id)
    xmin, ymin, xmax, ymax = moved.bounds
    if xmin < 0 or ymin < 0 or xmax > width or ymax > height:
        raise PathReviewError(f"the region was not moved: it would reach past the slide's edge (x {xmin:.0f} to {xmax:.0f}, y {ymin:.0f} "
                              f"to {ymax:.0f}; the slide is {width} x {height} pixels)")
    try:
        checked = check_geometry(geojson_of(moved), width, height)
    except RegionRefused as exc:
        raise PathReviewError(f"the region was not moved: {exc}") from None
    draft = RegionDraft(checked.geometry, region.class_name, region.object_type, region.name, region.comment)
    return edit_region(workspace.store, region_id, draft, user, expected_version)


def reshape_region(workspace: Workspace, slide_id: str, region_id: str, expected_version: int, map_geometry: Any, max_zoom: int,
                   user: str, may_edit_others: bool = False) -> RegionVersion:
    region = _editable(workspace, region_id, slide_id, user, may_edit_others)
    draft = RegionDraft(_geometry(workspace, slide_id, map_geometry, max_zoom), region.class_name, region.object_type, region.name,
                        region.comment)
    return edit_region(workspace.store, region_id, draft, user, expected_version)


def describe_region(workspace: Workspace, slide_id: str, region_id: str, expected_version: int, class_name: str | None, comment: str,
                    user: str, may_edit_others: bool = False) -> RegionVersion:
    """A new class and comment for the region, its shape kept."""
    region = _editable(workspace, region_id, slide_id, user, may_edit_others)
    draft = RegionDraft(region.geometry, _class_name(workspace, class_name), region.object_type, region.name, comment)
    return edit_region(workspace.store, region_id, draft, user, expected_version)


def remove_region(workspace: Workspace, slide_id: str, region_id: str, expected_version: int, user: str,
                  may_edit_others: bool = False) -> RegionVersion:
    _editable(workspace, region_id, slide_id, user, may_edit_others)
    return delete_region(workspace.store, region_id, user, expected_version)
