"""Annotations at scale.

1. Import: a QuPath GeoJSON file of 10,000 polygons imported into a case store (parse, the geometry rules, one
   transaction with its versions and audit rows) against shapely's own parse of the same file. The store is a fresh
   SQLite file in a temporary workspace with one slide of 100,000 x 80,000 pixels. The peer, ``shapely.from_geojson``,
   only parses the geometries (GEOS's reader); the import also checks each against the slide, reads its class and
   writes it. Each import run follows its own run of the peer; every run starts from a collected heap (the cycle
   collector stays on during it) and the medians are compared.
2. View: the same number of polygons imported onto a slide of a copy of the demo workspace, served by the real server
   (``run_dashboard.py`` in its own process, signed in over HTTP). For random views of a 900 x 640 px map (random
   zoom from fit-to-slide to full resolution, random centre) it times what the browser waits for before the regions
   show: the viewer's region callback, then, when the view holds too many regions for vector features, every
   annotation tile the view covers, fetched six at a time as a browser does. ``annot_view_p95_ms`` is the 95th
   percentile over the views (the bound is 250 ms).

    python bench/annotations.py [--polygons 10000] [--vertices 32] [--repeats 5] [--views 80] [--workspace DIR]
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import requests
import shapely

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from demo_workspace import bench_workspace_root  # noqa: E402

from core.annotations.qupath import read_geojson  # noqa: E402
from core.annotations.transfer import import_annotations  # noqa: E402
from core.auth.users import add_user, admin_count, find_user  # noqa: E402
from core.slides.tiles import TileService  # noqa: E402
from core.store.schema import Patient, Slide  # noqa: E402
from core.workspace import DEFAULT_ANNOTATION_CLASSES, Workspace, WorkspaceConfig, open_workspace, write_workspace_config  # noqa: E402
from tests.load.reviewers import callback_body  # noqa: E402
from tests.services import free_port  # noqa: E402

WIDTH, HEIGHT = 100_000, 80_000


def qupath_file(n: int, vertices: int, seed: int = 0, width: int = WIDTH, height: int = HEIGHT,
                radius: tuple[float, float] = (40, 120)) -> str:
    """``n`` simple star-shaped polygons (sorted angles, radii 40-120 px) in QuPath's layout, 2-decimal coordinates."""
    rng = np.random.default_rng(seed)
    features = []
    margin = radius[1] + 1
    for i in range(n):
        cx, cy = rng.uniform(margin, width - margin), rng.uniform(margin, height - margin)
        angles = np.sort(rng.uniform(0, 2 * np.pi, vertices))
        radii = rng.uniform(*radius, vertices)
        ring = np.round(np.stack([cx + radii * np.cos(angles), cy + radii * np.sin(angles)], 1), 2).tolist()
        cls = DEFAULT_ANNOTATION_CLASSES[i % len(DEFAULT_ANNOTATION_CLASSES)]
        features.append({"type": "Feature", "id": f"00000000-0000-4000-8000-{i:012d}",
                         "geometry": {"type": "Polygon", "coordinates": [ring + [ring[0]]]},
                         "properties": {"objectType": "annotation", "classification": {"name": cls.name, "color": list(cls.color)}}})
    return json.dumps({"type": "FeatureCollection", "features": features})


def _workspace(root: Path) -> Workspace:
    write_workspace_config(root, WorkspaceConfig(name="annotation bench"))
    ws = open_workspace(root)
    with ws.store.session() as s:
        s.add(Patient(id="BENCH"))
        s.add(Slide(id="BENCH-1", patient_id="BENCH", file="bench.tif", mpp=0.25, width=WIDTH, height=HEIGHT))
    return ws


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--polygons", type=int, default=10_000)
    parser.add_argument("--vertices", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=5, help="import runs, each after its own run of the peer; medians are compared")
    parser.add_argument("--views", type=int, default=80)
    parser.add_argument("--workspace", type=Path, default=None, help="a workspace to copy (default: the reduced demo under bench/.cache)")
    args = parser.parse_args()
    view_p95 = view_bench(args.workspace, args.polygons, args.vertices, args.views)
    import_ratio = import_bench(args.polygons, args.vertices, args.repeats)
    print(f"RESULT annot_view_p95_ms={view_p95:.0f}")
    print(f"RESULT annot_import_vs_parse={import_ratio:.2f}")


def _timed(run):
    """(what ``run`` returns, its seconds), starting from a collected heap: no run pays for the garbage of the one
    before (the cycle collector stays on during the run, so a run pays for its own)."""
    gc.collect()
    t = time.perf_counter()
    result = run()
    return result, time.perf_counter() - t


def import_bench(polygons: int, vertices: int, repeats: int) -> float:
    text = qupath_file(polygons, vertices)
    data = text.encode()
    print(f"{polygons:,} polygons of {vertices} vertices, {len(data) / 2**20:.1f} MiB of GeoJSON")

    parse_s, read_s, import_s = [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        for repeat in range(repeats):
            parsed, seconds = _timed(lambda: shapely.from_geojson(text))
            parse_s.append(seconds)
            assert shapely.get_num_geometries(parsed) == polygons
            del parsed

            checked, seconds = _timed(lambda: read_geojson(data, WIDTH, HEIGHT, DEFAULT_ANNOTATION_CLASSES))
            read_s.append(seconds)
            assert len(checked.drafts) == polygons and not checked.refused
            del checked

            root = Path(tmp) / f"ws{repeat}"
            root.mkdir()
            ws = _workspace(root)
            result, seconds = _timed(lambda: import_annotations(ws, "BENCH-1", "bench.geojson", data, "bench"))  # noqa: B023
            import_s.append(seconds)
            assert len(result.imported) == polygons
            del result
            ws.store.dispose()

    parse, read, full = (statistics.median(v) for v in (parse_s, read_s, import_s))
    paired = sorted(f / p for f, p in zip(import_s, parse_s, strict=True))
    print(f"shapely.from_geojson {parse:.3f} s; our read and check {read:.3f} s ({read / parse:.2f}x); "
          f"full import with store writes {full:.3f} s (median of {repeats}; each run against the peer's run before it: "
          f"{paired[0]:.2f}x to {paired[-1]:.2f}x)")
    print(f"RESULT annot_read_vs_parse={read / parse:.2f}")
    return full / parse


def _demo_copy(given: Path | None, dest: Path) -> tuple[Path, str, int, int]:
    """A copy of the workspace (its cache left out), and the id and size of its largest slide. The copy is opened, never
    the source: opening migrates a case store."""
    shutil.copytree(bench_workspace_root(given), dest, ignore=lambda d, names: [n for n in names if n == "cache"])
    ws = open_workspace(dest)
    with ws.store.session() as s:
        slide = max(s.query(Slide).all(), key=lambda sl: sl.width * sl.height)
        slide_id, width, height = slide.id, slide.width, slide.height
    ws.store.dispose()
    return dest, slide_id, width, height


def _server(root: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    process = subprocess.Popen([sys.executable, str(REPO / "run_dashboard.py"), "--workspace", str(root), "--port", str(port)],
                               cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if requests.get(url + "/login", timeout=2).status_code == 200:
                return process, url
        except requests.ConnectionError:
            time.sleep(0.3)
    process.kill()
    raise RuntimeError("the server did not start within 120 s")


def _view(session: requests.Session, url: str, dependency: dict, ctx: dict, authors: list[str], bounds: list,
          zoom: int) -> tuple[float, float, bool]:
    """(seconds until a view's regions are all in the browser, seconds of its region callback, whether it is tiled)."""
    t = time.perf_counter()
    body = callback_body(dependency, {("slide-map", "bounds"): bounds, ("annotation-authors", "value"): authors,
                                      ("annotation-stamp", "data"): 1, ("slide-ctx", "data"): {k: v for k, v in ctx.items() if k != "tile_size"}},
                         ["slide-map.bounds"])
    answer = session.post(url + "/_dash-update-component", json=body)
    answer.raise_for_status()
    callback_s = time.perf_counter() - t
    tile_template = answer.json()["response"]["annotation-tiles"]["url"]
    if tile_template:
        scale, span = 2.0 ** ctx["max_zoom"], ctx["tile_size"] * 2.0 ** (ctx["max_zoom"] - zoom)
        x0, y0, x1, y1 = bounds[0][1] * scale, -bounds[1][0] * scale, bounds[1][1] * scale, -bounds[0][0] * scale
        addresses = [(zoom, tx, ty) for tx in range(max(0, int(x0 // span)), int(min(x1, ctx["width"] - 1) // span) + 1)
                     for ty in range(max(0, int(y0 // span)), int(min(y1, ctx["height"] - 1) // span) + 1)]
        with ThreadPoolExecutor(6) as pool:  # a browser's connections per host
            for response in pool.map(lambda a: session.get(url + tile_template.format(z=a[0], x=a[1], y=a[2])), addresses):
                response.raise_for_status()
    return time.perf_counter() - t, callback_s, bool(tile_template)


def view_bench(given: Path | None, polygons: int, vertices: int, views: int, seed: int = 1) -> float:
    rng = np.random.default_rng(seed)
    with tempfile.TemporaryDirectory() as tmp:
        root, slide_id, width, height = _demo_copy(given, Path(tmp) / "workspace")
        ws = open_workspace(root)
        if find_user(ws.store, "bench") is None:
            add_user(ws.store, "bench", "bench password 1", "reviewer")
        if admin_count(ws.store) == 0:  # the server refuses to start without one (a demo build has no accounts)
            add_user(ws.store, "bench-admin", "bench admin password 1", "admin")
        authors = ["bench", "second reader"]
        data = qupath_file(polygons, vertices, width=width, height=height, radius=(0.004 * min(width, height), 0.012 * min(width, height))).encode()
        import_annotations(ws, slide_id, "bench.geojson", data, authors[0])
        ws.store.dispose()
        process, url = _server(root)
        try:
            session = requests.Session()
            session.post(url + "/login", data={"username": "bench", "password": "bench password 1", "next": "/"}, allow_redirects=False)
            dependency = next(d for d in session.get(url + "/_dash-dependencies").json() if "annotation-vector.data" in d["output"])
            tiles = TileService(open_workspace(root))
            g = tiles.geometry(slide_id)
            ctx = {"slide_id": slide_id, "max_zoom": g.max_zoom, "mpp": g.mpp, "width": g.width, "height": g.height, "tile_size": g.tile_size}
            fit = max(0, g.max_zoom - math.ceil(math.log2(max(g.width, g.height) / 720)))
            times = []
            for _ in range(views + 3):
                zoom = int(rng.integers(fit, g.max_zoom + 1))
                half_w, half_h = 450 * 2.0 ** (g.max_zoom - zoom), 320 * 2.0 ** (g.max_zoom - zoom)  # level-0 px
                cx, cy = rng.uniform(0, g.width), rng.uniform(0, g.height)
                scale = 2.0**g.max_zoom
                bounds = [[-(cy + half_h) / scale, (cx - half_w) / scale], [-(cy - half_h) / scale, (cx + half_w) / scale]]
                times.append(_view(session, url, dependency, ctx, authors, bounds, zoom))
            times = times[3:]  # the first views load the index and warm the server
            callbacks = [c for _, c, _ in times]
            tiled = sum(v for _, _, v in times)
            times = [t for t, _, _ in times]
        finally:
            process.terminate()
            process.wait(30)
    p95 = float(np.percentile(times, 95)) * 1000
    print(f"{polygons:,} polygons on slide {slide_id} ({width:,} x {height:,} px): {views} random views through the server, "
          f"median {statistics.median(times) * 1000:.0f} ms, p95 {p95:.0f} ms; {tiled} views tiled (each tile counted at its first "
          f"request too), the region callback alone p95 {np.percentile(callbacks, 95) * 1000:.0f} ms")
    return p95


if __name__ == "__main__":
    main()
