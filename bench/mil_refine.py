"""Region refinement throughput: re-extracting a region's features with a ViT patch encoder (timm layout, random weights:
nothing is downloaded) at 50 % overlap and running a CLAM-SB head over them, as the refinement job does, against reading
the same patches through OpenSlide alone (the bound: the encoder cannot be fed faster than the slide is read).

    python bench/mil_refine.py [--encoder large|small] [--patches 1024] [--batch 128]

``large`` is UNI's ViT-L/16 at 224 px (the default on CUDA); ``small`` a ViT-S/16 (the default on CPU, where ViT-L
takes seconds per patch). Absolute patches per second are meaningful only on the machine they were measured on.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import tifffile
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from core.device import compute_device  # noqa: E402
from core.heatmaps.region_refinement import READ_WORKERS, Region, encode_patches, region_grid  # noqa: E402
from core.models.clam import CLAMSB  # noqa: E402
from core.models.manifest import PatchEncoderSpec  # noqa: E402
from core.models.vit import VisionTransformer  # noqa: E402
from core.slides.patches import read_patch_batches  # noqa: E402

ENCODERS = {"large": {"img_size": 224, "patch_size": 16, "embed_dim": 1024, "depth": 24, "num_heads": 16, "init_values": 1e-5},
            "small": {"img_size": 224, "patch_size": 16, "embed_dim": 384, "depth": 12, "num_heads": 6}}
SLIDE_MPP = 0.25


def synthetic_slide(path: Path, side: int) -> None:
    """A pyramidal TIFF of textured "tissue" everywhere, at 0.25 um/px (40x)."""
    rng = np.random.default_rng(0)
    image = rng.integers(90, 210, (side, side, 3), dtype=np.uint8)
    with tifffile.TiffWriter(path, bigtiff=True) as tif:
        for level in range(4):
            step = 2**level
            px_per_cm = 1e4 / (SLIDE_MPP * step)
            tif.write(image[::step, ::step], tile=(256, 256), compression="jpeg", photometric="rgb",
                      resolution=(px_per_cm, px_per_cm), resolutionunit="CENTIMETER", subfiletype=int(level > 0))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    device = compute_device()
    parser.add_argument("--encoder", choices=list(ENCODERS), default="large" if device.type == "cuda" else "small")
    parser.add_argument("--patches", type=int, default=1024 if device.type == "cuda" else 48)
    parser.add_argument("--batch", type=int, default=128 if device.type == "cuda" else 16)
    args = parser.parse_args()
    params = ENCODERS[args.encoder]
    torch.manual_seed(0)
    encoder = VisionTransformer(**params).to(device).eval()
    head = CLAMSB(gate=True, size_arg="small", dropout=0.25, n_classes=2, embed_dim=params["embed_dim"]).to(device).eval()
    spec = PatchEncoderSpec(name=f"ViT-{args.encoder}", architecture="vit", params=params, weights="-", weights_sha256="0" * 64,
                            licence="-", patch_size_px=224, mpp=0.5)
    # 224 px at 0.5 um/px = 448 level-0 px, stride 224 at 50 % overlap: a square region of about --patches patches
    per_side = int(np.ceil(np.sqrt(args.patches)))
    region_px = 448 + 224 * (per_side - 1)
    with tempfile.TemporaryDirectory() as tmp:
        slide = Path(tmp) / "bench.tiff"
        synthetic_slide(slide, region_px + 512)
        grid = region_grid(slide, SLIDE_MPP, spec, Region(0, 0, region_px, region_px, 0.5))
        print(f"{len(grid)} patches of 224 px at 0.5 um/px, 50 % overlap; encoder ViT-{args.encoder} "
              f"({sum(p.numel() for p in encoder.parameters()) / 1e6:.0f} M parameters) on {device}, batch {args.batch}, "
              f"{READ_WORKERS} reader threads, {torch.get_num_threads()} torch threads")
        warm = replace(grid, origins=grid.origins[:args.batch], cell_index=grid.cell_index[:args.batch],
                       tissue_fraction=grid.tissue_fraction[:args.batch])
        encode_patches(slide, warm, encoder, spec, device, args.batch)  # warm-up: kernels, attention kernel choice, slide handles
        start = time.perf_counter()
        for _ in read_patch_batches(slide, grid, args.batch, workers=READ_WORKERS, prefetch=2 * READ_WORKERS):
            pass
        t_read = time.perf_counter() - start
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        features = encode_patches(slide, grid, encoder, spec, device, args.batch)
        with torch.inference_mode():
            logits, raw, _ = head.explain(torch.from_numpy(features).to(device))
        float(logits[0])  # waits for the device
        t_refine = time.perf_counter() - start
    print(f"read alone: {t_read:.2f} s ({len(grid) / t_read:.0f} patches/s); refinement (read + encode + head): {t_refine:.2f} s")
    print(f"RESULT refine_patches_per_s={len(grid) / t_refine:.1f}")
    print(f"RESULT refine_vs_read={t_refine / t_read:.2f}")


if __name__ == "__main__":
    main()
