"""Grad-CAM for 1,024 demo patches: our batched implementation against a per-patch loop of the same method.

    python bench/cam.py [--workspace DIR] [--patches 1024] [--batch-size 64]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from demo_workspace import bench_workspace_root  # noqa: E402

from core.explain.cam import class_activation_maps  # noqa: E402
from core.heatmaps.patch_inspection import read_heatmap_patches  # noqa: E402
from core.heatmaps.slide_heatmap import HeatmapParams, compute_heatmap  # noqa: E402
from core.store.schema import Slide  # noqa: E402
from core.workspace import open_workspace  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--workspace", type=Path)
    parser.add_argument("--patches", type=int, default=1024)
    parser.add_argument("--batch-size", type=int, default=64)  # fastest on a 2-core CPU; raise it on a GPU
    args = parser.parse_args()
    ws = open_workspace(bench_workspace_root(args.workspace))
    model = ws.model("patch-cnn")
    manifest = model.manifest
    # Real demo patches: the tissue patches of the demo's slides, read through OpenSlide.
    patches = []
    with ws.store.session() as s:
        slide_ids = [r.id for r in s.query(Slide).order_by(Slide.id)]
    for slide_id in slide_ids:
        heat = compute_heatmap(ws, slide_id, manifest.id, HeatmapParams())
        patches += list(read_heatmap_patches(ws, heat, list(range(len(heat.origins)))))
        if len(patches) >= args.patches:
            break
    x = torch.from_numpy(np.stack(patches[: args.patches])).permute(0, 3, 1, 2).float().div(255).to(model.device)
    with torch.no_grad():
        classes = model.module(x).argmax(1)
    net, layer = model.module, manifest.cam_target_layer
    class_activation_maps(net, x[:8], classes[:8], "gradcam", layer)  # warm-up

    t = time.perf_counter()
    batched = torch.cat([class_activation_maps(net, x[s : s + args.batch_size], classes[s : s + args.batch_size], "gradcam", layer)
                         for s in range(0, len(x), args.batch_size)])
    batched_s = time.perf_counter() - t
    t = time.perf_counter()
    looped = torch.cat([class_activation_maps(net, x[i : i + 1], classes[i : i + 1], "gradcam", layer) for i in range(len(x))])
    loop_s = time.perf_counter() - t
    print(f"{len(x)} patches ({x.shape[2]} px), Grad-CAM at {layer}: batched {batched_s:.2f} s, per-patch loop {loop_s:.2f} s, "
          f"device {model.device}")
    print(f"RESULT gradcam_batched_vs_loop={loop_s / batched_s:.1f}")
    print(f"RESULT gradcam_max_abs_diff={float((batched - looped).abs().max()):.2e}")


if __name__ == "__main__":
    main()
