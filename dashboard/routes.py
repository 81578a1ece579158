"""Flask routes beside the Dash pages: slide images by slide id (never by path)."""

from __future__ import annotations

from flask import Flask, Response, abort

from core.errors import NotFoundError
from core.slides.reader import SlideReadError
from core.slides.thumbnails import slide_thumbnail_jpeg
from core.workspace import Workspace

SLIDE_ID_CHARS = set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.")


def register_routes(server: Flask, workspace: Workspace) -> None:
    @server.route("/slides/<slide_id>/thumbnail.jpeg")
    def slide_thumbnail(slide_id: str) -> Response:
        if not slide_id or len(slide_id) > 64 or not set(slide_id) <= SLIDE_ID_CHARS:
            abort(404)
        try:
            data = slide_thumbnail_jpeg(workspace, slide_id)
        except NotFoundError:
            abort(404)
        except SlideReadError as exc:
            return Response(str(exc), status=422, mimetype="text/plain")
        response = Response(data, mimetype="image/jpeg")
        response.headers["Cache-Control"] = "private, max-age=3600"
        return response

    @server.route("/slides/<path:anything>")
    def no_such_slide_resource(anything: str) -> Response:
        abort(404)  # never fall through to the page router: /slides/ only serves known resources
