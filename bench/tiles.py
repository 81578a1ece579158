"""Tile latency of the real app server under 8 concurrent clients over loopback, against calling
OpenSlide's DeepZoomGenerator.get_tile directly in the same run; and the "not ready" answer of a heatmap tile
whose layer (a stitched CAM) a job is still computing, against a 100 ms bound.

    python bench/tiles.py [--workspace DIR] [--seconds 20] [--clients 8]

Without --workspace the reduced demo is built (once) under bench/.cache/.
"""

from __future__ import annotations

import argparse
import random
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import requests

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from demo_workspace import bench_workspace_root  # noqa: E402
from openslide.deepzoom import DeepZoomGenerator  # noqa: E402

from core.heatmaps.cam_maps import cam_cache_path  # noqa: E402
from core.heatmaps.slide_heatmap import HeatmapParams, compute_heatmap  # noqa: E402
from core.slides.reader import open_slide  # noqa: E402
from core.slides.tiles import TILE_SIZE  # noqa: E402
from core.store.schema import Slide  # noqa: E402
from core.workspace import open_workspace  # noqa: E402
from tests.helpers import add_test_accounts, sign_in  # noqa: E402

NOT_READY_BOUND_MS = 100  # a tile of a layer still being computed answers within this


def tile_addresses(dz: DeepZoomGenerator, rng: random.Random, n: int) -> list[tuple[int, int, int]]:
    """Random tiles from the five finest levels, weighted by how many tiles each level has (a pan-and-zoom mix)."""
    levels = list(range(max(0, dz.level_count - 5), dz.level_count))
    weights = [dz.level_tiles[z][0] * dz.level_tiles[z][1] for z in levels]
    out = []
    for _ in range(n):
        z = rng.choices(levels, weights)[0]
        cols, rows = dz.level_tiles[z]
        out.append((z, rng.randrange(cols), rng.randrange(rows)))
    return out


def p95(values: list[float]) -> float:
    return float(np.percentile(values, 95)) if values else float("nan")


def hammer(base: str, sessions: list[requests.Session], urls: list[str], seconds: float) -> tuple[list[float], int]:
    """Every signed-in session a client of its own, each asking for random ``urls`` for ``seconds``."""
    latencies: list[float] = []
    errors = 0
    lock = threading.Lock()
    stop = time.monotonic() + seconds

    def client(seed: int, session: requests.Session) -> None:
        nonlocal errors
        rng = random.Random(seed)
        while time.monotonic() < stop:
            t = time.perf_counter()
            response = session.get(base + rng.choice(urls), timeout=30)
            elapsed = (time.perf_counter() - t) * 1000
            with lock:
                latencies.append(elapsed)
                errors += response.status_code != 200
    threads = [threading.Thread(target=client, args=(i, session)) for i, session in enumerate(sessions)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    return latencies, errors


def not_ready(base: str, session: requests.Session, urls: list[str], max_requests: int = 300) -> tuple[list[float], int]:
    """Tiles of a layer that is not stored yet, one request at a time while its job computes it: the latency of the
    "not ready" (202) answers, and how many came before the layer was ready."""
    latencies: list[float] = []
    for url in urls[:max_requests]:
        t = time.perf_counter()
        response = session.get(base + url, timeout=30)
        elapsed = (time.perf_counter() - t) * 1000
        if response.status_code != 202:
            break
        latencies.append(elapsed)
    return latencies, len(latencies)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--workspace", type=Path)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--port", type=int, default=8093)
    args = parser.parse_args()
    root = bench_workspace_root(args.workspace)
    ws = open_workspace(root)
    with ws.store.session() as s:
        slide = max(s.query(Slide).all(), key=lambda r: r.width * r.height)
        slide_id, path = slide.id, ws.slides_dir / slide.file
    heat = compute_heatmap(ws, slide_id, "patch-cnn", HeatmapParams(overlap=0.5))
    handle = open_slide(path)
    dz = DeepZoomGenerator(handle, tile_size=TILE_SIZE, overlap=0)
    rng = random.Random(0)
    addresses = tile_addresses(dz, rng, 4000)
    tile_urls = [f"/slides/{slide_id}/tiles/{z}/{x}/{y}.jpeg" for z, x, y in addresses]
    heat_urls = [f"/slides/{slide_id}/heatmap/{heat.key}/{z}/{x}/{y}.png?layer=tumour&thr=0.2&cmap=Viridis" for z, x, y in addresses]
    # A stitched CAM layer that is not stored: its tiles must answer "not ready" at once while a job computes it.
    cam_cache_path(ws, heat, "gradcam++").unlink(missing_ok=True)
    cam_urls = [f"/slides/{slide_id}/heatmap/{heat.key}/{z}/{x}/{y}.png?layer=cam%3Agradcam%2B%2B" for z, x, y in addresses]

    # Direct: the same addresses through DeepZoomGenerator.get_tile in this process, one call at a time.
    direct = []
    for z, x, y in addresses[:1500]:
        t = time.perf_counter()
        dz.get_tile(z, (x, y))
        direct.append((time.perf_counter() - t) * 1000)
    # The same calls from as many threads as there are HTTP clients: what concurrency alone costs on this machine.
    direct_concurrent: list[float] = []
    lock = threading.Lock()

    def direct_client(chunk):
        for z, x, y in chunk:
            t = time.perf_counter()
            dz.get_tile(z, (x, y))
            with lock:
                direct_concurrent.append((time.perf_counter() - t) * 1000)
    workers = [threading.Thread(target=direct_client, args=(addresses[i::args.clients][:300],)) for i in range(args.clients)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    handle.close()

    add_test_accounts(root)  # the server needs an admin account to start; the clients sign in as the test reviewer
    server = subprocess.Popen([sys.executable, str(REPO / "run_dashboard.py"), "--workspace", str(root), "--port", str(args.port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=REPO)
    base = f"http://127.0.0.1:{args.port}"
    try:
        for _ in range(120):
            try:
                if requests.get(base + "/", timeout=2).status_code == 200:
                    break
            except requests.ConnectionError:
                time.sleep(0.5)
        sessions = [requests.Session() for _ in range(args.clients)]
        for session in sessions:  # once for every phase: sign-ins are rate-limited
            sign_in(session, base=base)
        tiles, tile_errors = hammer(base, sessions, tile_urls, args.seconds)
        heats, heat_errors = hammer(base, sessions, heat_urls, args.seconds)
        waits, answered = not_ready(base, sessions[0], cam_urls)
    finally:
        server.terminate()
        server.wait(10)
    print(f"slide {slide_id}: {dz.level_count} levels; {args.clients} clients x {args.seconds:.0f} s each phase")
    print(f"slide tiles:   {len(tiles)} requests, {tile_errors} errors, p50 {np.median(tiles):.1f} ms, p95 {p95(tiles):.1f} ms")
    print(f"heatmap tiles: {len(heats)} requests, {heat_errors} errors, p50 {np.median(heats):.1f} ms, p95 {p95(heats):.1f} ms")
    print(f"direct get_tile (1 thread, no HTTP): p50 {np.median(direct):.2f} ms, p95 {p95(direct):.2f} ms")
    print(f"direct get_tile ({args.clients} threads): p95 {p95(direct_concurrent):.2f} ms")
    print(f"not-ready tiles (a CAM layer while its job runs): {answered} answers of 202, p50 {np.median(waits):.1f} ms, "
          f"p95 {p95(waits):.1f} ms (bound {NOT_READY_BOUND_MS} ms)")
    print(f"RESULT tile_p95_ms={p95(tiles):.1f}")
    print(f"RESULT heat_tile_p95_ms={p95(heats):.1f}")
    print(f"RESULT tile_p95_vs_direct={p95(tiles) / p95(direct):.2f}")
    print(f"RESULT heat_tile_p95_vs_direct={p95(heats) / p95(direct):.2f}")
    print(f"RESULT tile_p95_vs_direct_concurrent={p95(tiles) / p95(direct_concurrent):.2f}")
    print(f"RESULT not_ready_tile_p95_ms={p95(waits):.1f}")
    print(f"RESULT not_ready_tile_p95_vs_bound={p95(waits) / NOT_READY_BOUND_MS:.2f}")


if __name__ == "__main__":
    main()
