"""Figure export: core.export's one persistent headless browser against plotly's default path (``plotly.io.to_image``
with no kaleido server running), which starts and stops a Chromium for every figure.

    python bench/export.py [--exports 10] [--naive 3] [--workspace DIR]

The figure is a SHAP waterfall of the patient page built from synthetic values, exported as a 1000 x 600 PNG at
scale 2 with its provenance (caption drawn, metadata embedded), which is more work than the peer does. With a
workspace (``--workspace`` or the reduced demo already built under bench/.cache/), a slide figure and a case-report
PDF are timed too.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import plotly.io as pio

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from core.export.figure_export import export_figure  # noqa: E402
from core.export.patient_figures import shap_waterfall_figure  # noqa: E402
from core.export.provenance import Provenance  # noqa: E402

WIDTH, HEIGHT, SCALE = 1000, 600, 2.0


def waterfall(seed: int = 0):
    rng = np.random.default_rng(seed)
    names = [f"feature {i}" for i in range(24)]
    phi = rng.normal(0, 0.05, len(names))
    return shap_waterfall_figure(0.31, phi, names, list(rng.normal(50, 10, len(names))), 0.31 + float(phi.sum()),
                                 "Visit 4: what drove P(GG≥4)")


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def workspace_extras(root: Path | None) -> None:
    """One slide figure and one two-figure case report, when a workspace is at hand (never built here)."""
    from core.demo.build import REDUCED_SPEC, demo_is_built

    cached = REPO / "bench" / ".cache" / "demo-workspace"
    if root is None and not demo_is_built(cached, REDUCED_SPEC):
        print("slide figure / case report: skipped (no workspace; pass --workspace or run another bench to build the demo)")
        return
    from sqlalchemy import select

    from core.export.case_report import CaseReportContent, ReportFigure, case_report_pdf
    from core.export.slide_figure import slide_figure
    from core.heatmaps.slide_heatmap import HeatmapParams, compute_heatmap
    from core.store.schema import Slide
    from core.workspace import open_workspace

    ws = open_workspace(root or cached)
    with ws.store.session() as s:
        slide_id = s.scalars(select(Slide.id).order_by(Slide.id)).first()
    heat = compute_heatmap(ws, slide_id, "patch-cnn", HeatmapParams())
    start = time.perf_counter()
    fig, prov = slide_figure(ws, slide_id, heat=heat, output_width=1200)
    built = time.perf_counter() - start
    png_s = timed(lambda: export_figure(fig, "png", prov, width=fig.layout.width, height=fig.layout.height, scale=2))
    content = CaseReportContent(slide_id, ws.name, [("Slide", slide_id)], [], [],
                                [ReportFigure("Slide heatmap", fig, prov), ReportFigure("Visit SHAP", waterfall(), None)])
    pdf_s = timed(lambda: case_report_pdf(content))
    print(f"slide figure {slide_id} (whole slide, 1200 px): built {built * 1000:.0f} ms, PNG export {png_s * 1000:.0f} ms; "
          f"case report PDF with 2 figures {pdf_s * 1000:.0f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--exports", type=int, default=10)
    parser.add_argument("--naive", type=int, default=3)
    parser.add_argument("--workspace", type=Path)
    args = parser.parse_args()
    fig = waterfall()
    provenance = Provenance("sequence-gru", "5f" * 32, "TimeSHAP", {"background": 64, "nsamples": 512}, seed=0)

    warm = [timed(lambda: export_figure(fig, "png", provenance, width=WIDTH, height=HEIGHT, scale=SCALE)) for _ in range(args.exports)]
    naive = [timed(lambda: pio.to_image(fig, format="png", width=WIDTH, height=HEIGHT, scale=SCALE)) for _ in range(args.naive)]
    steady = statistics.median(warm[1:])
    print(f"{args.exports} PNG exports ({WIDTH}x{HEIGHT} @{SCALE:g}x) through one persistent browser: first (cold, starts Chromium) "
          f"{warm[0] * 1000:.0f} ms, then median {steady * 1000:.0f} ms (min {min(warm[1:]) * 1000:.0f}, max {max(warm[1:]) * 1000:.0f})")
    print(f"{args.naive} PNG exports through plotly.io.to_image with no server (a new Chromium per call): "
          + ", ".join(f"{t * 1000:.0f}" for t in naive) + " ms")
    workspace_extras(args.workspace)
    print(f"RESULT export_vs_naive={statistics.median(naive) / steady:.1f}")
    print(f"RESULT export_warm_vs_cold={warm[-1] / warm[0]:.3f}")
    print(f"RESULT export_png_ms={steady * 1000:.0f}")


if __name__ == "__main__":
    main()
