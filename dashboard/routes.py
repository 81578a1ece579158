"""Flask routes beside the Dash pages: slide tiles, heatmap tiles and thumbnails, by id (never by path)."""

from __future__ import annotations

import json
import re
import threading
from collections import OrderedDict

from flask import Flask, Response, abort, request

from core.annotations.overlay import RegionIndexes, RegionTiles, colours
from core.errors import NotFoundError, PathReviewError
from core.heatmaps.feature_layers import mil_layers, refined_display, render_display_tile
from core.heatmaps.overlay import COLORMAPS, OverlayStyle, render_overlay_tile, source_layer
from core.heatmaps.slide_heatmap import slide_heatmap_by_key
from core.heatmaps.slide_layers import slide_layers
from core.imports.ids import is_valid_id
from core.jobs.dispatch import JobDispatcher
from core.jobs.layer_jobs import start_job_once, start_layer_job
from core.jobs.state import JobSpec
from core.slides.adjust import display_adjustment
from core.slides.reader import SlideReadError
from core.slides.thumbnails import slide_thumbnail_jpeg
from core.slides.tiles import TileService, etag_for
from core.store.audit import audit_csv
from core.store.reviews import MAX_USER_CHARS
from core.workspace import Workspace
from dashboard.auth import audit, current_role_allows, current_username, session_id

HEATMAP_KEY = re.compile(r"^[0-9a-f]{32}$")
MAX_QUERY_CHARS = 512
MAX_ANNOTATION_QUERY_CHARS = 8192  # the shown reviewers' names
# Slide images are patient data: the browser may keep them only in memory for the page that shows them, never on
# disk, where the next user of a shared PC could find them. The server's own tile cache keeps panning fast.
PATIENT_IMAGE_CACHE = "private, no-store"
THUMBNAIL_READS_KEPT = 100_000  # (session, slide) pairs remembered, so a thumbnail's audit row is written once per session


def valid_slide_id(slide_id: str) -> bool:
    """An id the import allows (letters of any alphabet, digits, '_', '-', '.'), never a path: Flask has already
    percent-decoded it, so a slide named P003_Färbung-ü is found by its encoded URL."""
    return is_valid_id(slide_id) and ".." not in slide_id


def _image(data: bytes, mimetype: str) -> Response:
    etag = etag_for(data)
    if request.if_none_match.contains(etag):
        response = Response(status=304)
    else:
        response = Response(data, mimetype=mimetype)
    response.set_etag(etag)
    response.headers["Cache-Control"] = PATIENT_IMAGE_CACHE
    return response


class FirstReads:
    """Which (session, slide) thumbnails were already recorded, bounded (the oldest are forgotten first)."""

    def __init__(self, most: int = THUMBNAIL_READS_KEPT) -> None:
        self._seen: OrderedDict[tuple[str, str], None] = OrderedDict()
        self._most = most
        self._lock = threading.Lock()

    def first(self, key: tuple[str, str]) -> bool:
        with self._lock:
            if key in self._seen:
                self._seen.move_to_end(key)
                return False
            return True

    def remember(self, key: tuple[str, str]) -> None:
        with self._lock:
            self._seen[key] = None
            while len(self._seen) > self._most:
                self._seen.popitem(last=False)


def _unreadable(exc: SlideReadError) -> Response:
    return Response(str(exc), status=422, mimetype="text/plain")


def _layer_not_ready(layer: str, status: str, progress: float, job_id: int, message: str = "") -> Response:
    """202: the layer is being computed by job ``job_id``; ask again later. Never cached, so the layer shows once it is stored."""
    body = {"layer": layer, "status": status, "progress": round(progress, 3), "job": job_id, "message": message}
    response = Response(json.dumps(body), status=202, mimetype="application/json")
    response.headers.update({"X-Layer-Status": status, "Retry-After": "2", "Cache-Control": "no-store"})
    return response


def mil_tile_style(query: dict[str, str]) -> tuple[str, str, float, str]:
    """(layer, colour map, threshold, refined-region view) of a MIL tile request; each bad value a ``PathReviewError``."""
    layer, cmap, show = query.get("layer", "attention:raw"), query.get("cmap", "Viridis"), query.get("show", "percentile")
    try:
        threshold = float(query.get("thr", 0.0))
    except ValueError as exc:
        raise PathReviewError(f"bad threshold: {exc}") from exc
    if cmap not in COLORMAPS:
        raise PathReviewError(f"colormap must be one of {', '.join(COLORMAPS)}")
    if not 0.0 <= threshold <= 1.0:
        raise PathReviewError("threshold must be in [0, 1]")
    if show not in ("raw", "percentile"):
        raise PathReviewError("show must be raw or percentile")
    return layer, cmap, threshold, show


def register_routes(server: Flask, workspace: Workspace, tiles: TileService, dispatcher: JobDispatcher, regions: RegionIndexes) -> None:
    thumbnail_reads = FirstReads()
    region_colours = colours(workspace.config.annotation_classes)
    region_tiles = RegionTiles(regions)

    @server.route("/admin/audit.csv")
    def audit_trail_csv() -> Response:
        if not current_role_allows("admin"):  # signed in is checked for every route; this one is for admins
            return Response("The audit trail is for administrators.", status=403, mimetype="text/plain")
        return Response(audit_csv(workspace.store), mimetype="text/csv",
                        headers={"Content-Disposition": 'attachment; filename="audit-trail.csv"', "Cache-Control": "no-store"})

    @server.route("/slides/<slide_id>/thumbnail.jpeg")
    def slide_thumbnail(slide_id: str) -> Response:
        if not valid_slide_id(slide_id):
            abort(404)
        try:
            data = slide_thumbnail_jpeg(workspace, slide_id)
        except NotFoundError:
            abort(404)
        except SlideReadError as exc:
            return _unreadable(exc)
        key = (session_id(), slide_id)
        if thumbnail_reads.first(key):
            audit(workspace, "thumbnail", slide_id)  # unwritten: 503 and no image
            thumbnail_reads.remember(key)
        return _image(data, "image/jpeg")

    @server.route("/slides/<slide_id>/tiles/<int:z>/<int:x>/<int:y>.jpeg")
    def slide_tile(slide_id: str, z: int, x: int, y: int) -> Response:
        normalised_for = request.args.get("normalise") or None  # a patch model's id: the tile as that model sees it
        if not valid_slide_id(slide_id) or (normalised_for is not None and not valid_slide_id(normalised_for)):
            abort(404)
        if len(request.query_string) > MAX_QUERY_CHARS:
            return Response("query string too long", status=400, mimetype="text/plain")
        try:
            adjustment = display_adjustment(request.args.to_dict())  # brightness, contrast, gamma: 1 when absent
        except PathReviewError as exc:
            return Response(str(exc), status=400, mimetype="text/plain")
        try:
            return _image(tiles.tile_jpeg(slide_id, z, x, y, normalised_for, adjustment), "image/jpeg")
        except NotFoundError:  # unknown slide or tile outside the pyramid
            abort(404)
        except SlideReadError as exc:  # the tile service has dropped the slide's handle and tiles
            return _unreadable(exc)

    @server.route("/slides/<slide_id>/heatmap/<key>/<int:z>/<int:x>/<int:y>.png")
    def heatmap_tile(slide_id: str, key: str, z: int, x: int, y: int) -> Response:
        if not valid_slide_id(slide_id) or not HEATMAP_KEY.match(key):
            abort(404)
        if len(request.query_string) > MAX_QUERY_CHARS:
            return Response("query string too long", status=400, mimetype="text/plain")
        heatmap = slide_heatmap_by_key(workspace, key, slide_id)
        if heatmap is None:
            abort(404)
        try:
            geometry = tiles.geometry(slide_id)
            style = OverlayStyle.from_query(request.args.to_dict(), heatmap.class_names)
            layers = slide_layers(workspace, heatmap)
            layer = source_layer(style)
            ready = layers.ready(layer)
        except SlideReadError as exc:
            return _unreadable(exc)
        except PathReviewError as exc:
            return Response(str(exc), status=400, mimetype="text/plain")
        if not 0 <= z <= geometry.max_zoom:
            abort(404)
        span = geometry.tile_size * 2 ** (geometry.max_zoom - z)
        if x * span >= geometry.width or y * span >= geometry.height:
            abort(404)
        if not ready:  # whole-slide model work: a job computes it, this request only says where it stands
            try:
                job = start_layer_job(dispatcher, heatmap, layer, current_username())
            except PathReviewError as exc:  # e.g. the job broker cannot be reached
                return Response(str(exc), status=503, mimetype="text/plain")
            return _layer_not_ready(layer, job.status, job.progress, job.id, job.message)
        return _image(render_overlay_tile(layers, style, z, x, y, geometry.max_zoom, geometry.tile_size), "image/png")

    @server.route("/slides/<slide_id>/annotations/<int:z>/<int:x>/<int:y>.png")
    def annotation_tile(slide_id: str, z: int, x: int, y: int) -> Response:
        """The outlines of the regions of the reviewers named in ``authors`` (comma-separated), for views that hold too
        many regions to send as vector features. ``v`` (the regions' stamp) only keeps the browser's copy current."""
        if not valid_slide_id(slide_id):
            abort(404)
        authors = [a for a in request.args.get("authors", "").split(",") if a]
        if len(request.query_string) > MAX_ANNOTATION_QUERY_CHARS or any(len(a) > MAX_USER_CHARS for a in authors):
            return Response("too many or too long reviewer names", status=400, mimetype="text/plain")
        try:
            geometry = tiles.geometry(slide_id)
        except NotFoundError:
            abort(404)
        except SlideReadError as exc:
            return _unreadable(exc)
        span = geometry.tile_size * 2 ** (geometry.max_zoom - z) if 0 <= z <= geometry.max_zoom else 0
        if not span or x * span >= geometry.width or y * span >= geometry.height:
            abort(404)
        png = region_tiles.tile(slide_id, z, x, y, geometry.max_zoom, geometry.tile_size, authors, region_colours)
        return _image(png, "image/png")

    @server.route("/slides/<slide_id>/mil/<model_id>/<int:z>/<int:x>/<int:y>.png")
    def mil_tile(slide_id: str, model_id: str, z: int, x: int, y: int) -> Response:
        """A MIL head's map from the slide's feature file (``layer``: attention:raw|percentile, instance:<class>,
        refine:<region>; ``show`` raw|percentile for a refined region; ``cmap``, ``thr``)."""
        if not valid_slide_id(slide_id) or not valid_slide_id(model_id):
            abort(404)
        if len(request.query_string) > MAX_QUERY_CHARS:
            return Response("query string too long", status=400, mimetype="text/plain")
        try:
            geometry = tiles.geometry(slide_id)
            layers = mil_layers(workspace, slide_id, model_id)
            layer, cmap, threshold, show = mil_tile_style(request.args.to_dict())
            ready = layers.ready(layer)
        except NotFoundError:
            abort(404)
        except SlideReadError as exc:
            return _unreadable(exc)
        except PathReviewError as exc:
            return Response(str(exc), status=400, mimetype="text/plain")
        if not 0 <= z <= geometry.max_zoom:
            abort(404)
        if not ready:
            if layer.startswith("refine:"):  # a region is refined only when a reviewer asks for it
                return Response("this region has not been refined; start its refinement from the MIL panel", status=404, mimetype="text/plain")
            try:
                job = start_job_once(dispatcher, JobSpec("mil", slide_id, {"model_id": model_id}), (slide_id, f"mil:{model_id}"),
                                     current_username())
            except PathReviewError as exc:
                return Response(str(exc), status=503, mimetype="text/plain")
            return _layer_not_ready(layer, job.status, job.progress, job.id, job.message)
        try:
            value = layers.get(layer)
            grid = refined_display(value, show) if layer.startswith("refine:") else value
        except PathReviewError as exc:
            return Response(str(exc), status=400, mimetype="text/plain")
        return _image(render_display_tile(grid, cmap, threshold, z, x, y, geometry.max_zoom, geometry.tile_size), "image/png")

    @server.route("/slides/<path:anything>")
    def no_such_slide_resource(anything: str) -> Response:
        abort(404)  # never fall through to the page router: /slides/ only serves known resources

    slide_endpoints = {"slide_thumbnail", "slide_tile", "heatmap_tile", "annotation_tile", "mil_tile", "no_such_slide_resource"}

    @server.before_request
    def slides_are_never_pages():
        if request.path.startswith("/slides/") and request.endpoint not in slide_endpoints:
            abort(404)  # e.g. /slides//tiles/...: no rule above matches an empty segment, Dash's page router would
