"""Annotations at scale: a QuPath GeoJSON file of 10,000 polygons imported into a case store (parse, the geometry
rules, one transaction with its versions and audit rows) against shapely's own parse of the same file.

    python bench/annotations.py [--polygons 10000] [--vertices 32]

The store is a fresh SQLite file in a temporary workspace with one slide of 100,000 x 80,000 pixels. The peer,
``shapely.from_geojson``, only parses the geometries (GEOS's reader); the import also checks each against the slide,
reads its class and writes it.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import shapely

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from core.annotations.qupath import read_geojson  # noqa: E402
from core.annotations.transfer import import_annotations  # noqa: E402
from core.store.schema import Patient, Slide  # noqa: E402
from core.workspace import DEFAULT_ANNOTATION_CLASSES, Workspace, WorkspaceConfig, open_workspace, write_workspace_config  # noqa: E402

WIDTH, HEIGHT = 100_000, 80_000


def qupath_file(n: int, vertices: int, seed: int = 0) -> str:
    """``n`` simple star-shaped polygons (sorted angles, radii 40-120 px) in QuPath's layout, 2-decimal coordinates."""
    rng = np.random.default_rng(seed)
    features = []
    for i in range(n):
        cx, cy = rng.uniform(200, WIDTH - 200), rng.uniform(200, HEIGHT - 200)
        angles = np.sort(rng.uniform(0, 2 * np.pi, vertices))
        radii = rng.uniform(40, 120, vertices)
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
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--polygons", type=int, default=10_000)
    parser.add_argument("--vertices", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    text = qupath_file(args.polygons, args.vertices)
    data = text.encode()
    print(f"{args.polygons:,} polygons of {args.vertices} vertices, {len(data) / 2**20:.1f} MiB of GeoJSON")

    parse_s, read_s, import_s = [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        for repeat in range(args.repeats):
            t = time.perf_counter()
            parsed = shapely.from_geojson(text)
            parse_s.append(time.perf_counter() - t)
            assert shapely.get_num_geometries(parsed) == args.polygons

            t = time.perf_counter()
            checked = read_geojson(data, WIDTH, HEIGHT, DEFAULT_ANNOTATION_CLASSES)
            read_s.append(time.perf_counter() - t)
            assert len(checked.drafts) == args.polygons and not checked.refused

            root = Path(tmp) / f"ws{repeat}"
            root.mkdir()
            ws = _workspace(root)
            t = time.perf_counter()
            result = import_annotations(ws, "BENCH-1", "bench.geojson", data, "bench")
            import_s.append(time.perf_counter() - t)
            assert len(result.imported) == args.polygons
            ws.store.dispose()

    parse, read, full = (statistics.median(v) for v in (parse_s, read_s, import_s))
    print(f"shapely.from_geojson {parse:.3f} s; our read and check {read:.3f} s ({read / parse:.2f}x); "
          f"full import with store writes {full:.3f} s (median of {args.repeats})")
    print(f"RESULT annot_read_vs_parse={read / parse:.2f}")
    print(f"RESULT annot_import_vs_parse={full / parse:.2f}")


if __name__ == "__main__":
    main()
