"""Tile routes: unknown ids, out-of-range tiles, path traversal and a corrupt slide, with status codes."""

from __future__ import annotations

import pytest

from core.heatmaps.slide_heatmap import HeatmapParams, compute_heatmap
from core.workspace import open_workspace
from dashboard.app import create_app, render_page
from tests.helpers import copy_demo, sign_in


@pytest.fixture(scope="module")
def app_with_corrupt_slide(demo_workspace, tmp_path_factory):
    """A copy of the demo where P002-S1 is not a slide at all and P004-S1 is truncated."""
    root = tmp_path_factory.mktemp("corrupt") / "ws"
    copy_demo(demo_workspace, root, ("P001-S1", "P003-S1"))
    (root / "slides" / "P002-S1.tiff").write_bytes(b"this is not a TIFF file")
    original = (demo_workspace / "slides" / "P004-S1.tiff").read_bytes()
    (root / "slides" / "P004-S1.tiff").write_bytes(original[:4096])
    ws = open_workspace(root)
    app = create_app(ws)
    yield ws, app
    ws.store.dispose()


@pytest.fixture(scope="module")
def client(app_with_corrupt_slide):
    client = app_with_corrupt_slide[1].server.test_client()
    sign_in(client)
    return client


def test_tiles_are_served_with_caching_headers(client):
    response = client.get("/slides/P001-S1/tiles/12/1/1.jpeg")
    assert response.status_code == 200 and response.mimetype == "image/jpeg" and response.data[:3] == b"\xff\xd8\xff"
    assert response.headers["ETag"] and response.headers["Cache-Control"] == "private, no-store"
    again = client.get("/slides/P001-S1/tiles/12/1/1.jpeg", headers={"If-None-Match": response.headers["ETag"]})
    assert again.status_code == 304 and again.data == b""


@pytest.mark.parametrize("url", [
    "/slides/P999-S9/tiles/0/0/0.jpeg",  # unknown id
    "/slides/P001-S1/tiles/13/0/0.jpeg",  # level beyond the pyramid (4096 px: levels 0..12)
    "/slides/P001-S1/tiles/12/16/0.jpeg",  # column beyond the level
    "/slides/P001-S1/tiles/12/0/16.jpeg",
    "/slides/P001-S1/tiles/-1/0/0.jpeg",
    "/slides/P001-S1/tiles/1/0/0.png",
    "/slides/..%2F..%2Fcases.db/tiles/0/0/0.jpeg",  # traversal, encoded
    "/slides/../cases.db",  # traversal, plain
    "/slides/%2e%2e/tiles/0/0/0.jpeg",
    "/slides/P001-S1/../../workspace.toml",
    "/slides/P001-S1/heatmap/0123456789abcdef0123456789abcdef/0/0/0.png",  # unknown heatmap
    "/slides/P001-S1/heatmap/..%2F..%2Fcases/0/0/0.png",
])
def test_bad_tile_addresses_are_404(client, url):
    response = client.get(url)
    assert response.status_code == 404
    assert b"SQLite" not in response.data and b"name =" not in response.data


def test_corrupt_slides_give_a_clear_message_and_others_keep_working(app_with_corrupt_slide, client):
    ws, _ = app_with_corrupt_slide
    for slide_id in ("P002-S1", "P004-S1"):
        response = client.get(f"/slides/{slide_id}/tiles/0/0/0.jpeg")
        assert response.status_code == 422 and b"cannot be read by OpenSlide" in response.data
        page = str(render_page(ws, create_app_tiles(app_with_corrupt_slide), f"/slide/{slide_id}"))
        assert "cannot be read by OpenSlide" in page and "slide-error" in page
    assert client.get("/slides/P001-S1/tiles/10/0/0.jpeg").status_code == 200
    assert client.get("/slides/P002-S1/thumbnail.jpeg").status_code == 422
    assert client.get("/slides/P003-S1/thumbnail.jpeg").status_code == 200
    missing = client.get("/slides/P005-S1/tiles/0/0/0.jpeg")  # file deleted from the workspace
    assert missing.status_code == 422 and b"missing" in missing.data


def create_app_tiles(app_with_corrupt_slide):
    from core.slides.tiles import TileService

    return TileService(app_with_corrupt_slide[0])


def test_heatmap_tiles_validate_their_style(app_with_corrupt_slide, client):
    ws, _ = app_with_corrupt_slide
    heat = compute_heatmap(ws, "P001-S1", "patch-cnn", HeatmapParams())
    base = f"/slides/P001-S1/heatmap/{heat.key}/10/0/0.png"
    ok = client.get(base + "?layer=argmax&method=bilinear&cmap=Inferno&thr=0.3&norm=minmax&smooth=1")
    assert ok.status_code == 200 and ok.mimetype == "image/png"
    for query in ("?layer=nuclei", "?thr=nan", "?thr=2", "?cmap=%3Cscript%3E", "?norm=patch", "?smooth=abc", "?method=" + "x" * 600):
        assert client.get(base + query).status_code == 400, query
    assert client.get(f"/slides/P003-S1/heatmap/{heat.key}/10/0/0.png").status_code == 404  # key of another slide
    assert client.get(f"/slides/P001-S1/heatmap/{heat.key}/13/0/0.png").status_code == 404


def test_adjusted_tiles_differ_and_the_defaults_are_the_plain_tile(client):
    plain = client.get("/slides/P001-S1/tiles/12/1/1.jpeg").data
    assert client.get("/slides/P001-S1/tiles/12/1/1.jpeg?brightness=1&contrast=1&gamma=1").data == plain
    brighter = client.get("/slides/P001-S1/tiles/12/1/1.jpeg?gamma=2")
    assert brighter.status_code == 200 and brighter.data[:3] == b"\xff\xd8\xff" and brighter.data != plain
    assert client.get("/slides/P001-S1/tiles/12/1/1.jpeg").data == plain  # the adjusted tile is cached apart from it


@pytest.mark.parametrize(("query", "named"), [("gamma=abc", b"gamma 'abc' is not a number"), ("brightness=40", b"brightness '40' is outside")])
def test_bad_adjustments_are_refused_by_name(client, query, named):
    response = client.get(f"/slides/P001-S1/tiles/12/1/1.jpeg?{query}")
    assert response.status_code == 400 and named in response.data
