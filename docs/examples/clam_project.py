"""Worked example: bring a CLAM project (feature files + a trained CLAM-SB checkpoint + the patch encoder's weights) into a
workspace, so the slide viewer shows the head's attention and instance maps and can refine a region.

    PYTHONPATH=. python docs/examples/clam_project.py /path/to/new-workspace

A lab copies its own files instead of making them: the slides, CLAM's ``patches/`` and ``h5_files/`` (or TRIDENT's
``features_<encoder>/``), the checkpoint CLAM's ``main.py`` saved (``s_<fold>_checkpoint.pt``) and the encoder's weights
(e.g. UNI's ``pytorch_model.bin``). Here a small slide is written with tifffile, a small ViT with timm's layout stands in
for the encoder (random weights), its features are extracted the way CLAM's ``extract_features_fp.py`` does, and an
untrained CLAM-SB checkpoint stands in for the lab's trained one.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import h5py
import numpy as np
import tifffile
import torch

from core.features.feature_sets import register_feature_set
from core.heatmaps.region_refinement import encode_patches
from core.models.clam import CLAMSB
from core.models.manifest import ModelManifest, PatchEncoderSpec, write_manifest
from core.models.registry import file_sha256
from core.models.vit import VisionTransformer
from core.slides.grid import PatchGrid
from core.store.database import open_store
from core.store.schema import Patient, Slide
from core.workspace import WorkspaceConfig, open_workspace, write_workspace_config

SLIDE_ID = "LAB-0002-A"
SLIDE_MPP = 0.25  # level 0, "40x"
ENCODER = {"img_size": 64, "patch_size": 16, "embed_dim": 64, "depth": 2, "num_heads": 4, "init_values": 1e-5}  # UNI: 224, 16, 1024, 24, 16
ENCODER_PX, ENCODER_MPP = 64, 0.5  # the encoder reads 64 px at 0.5 um/px: 128 level-0 px per patch


def write_slide(root: Path) -> tuple[int, int]:
    image = np.full((3072, 4096, 3), 236, np.uint8)
    rng = np.random.default_rng(0)
    image[512:2560, 768:3328] = rng.integers(120, 200, (2048, 2560, 3), dtype=np.uint8)  # "tissue"
    with tifffile.TiffWriter(root / "slides" / f"{SLIDE_ID}.tiff", bigtiff=True) as tif:
        for level in range(4):
            step = 2**level
            px_per_cm = 1e4 / (SLIDE_MPP * step)
            tif.write(image[::step, ::step], tile=(256, 256), compression="jpeg", photometric="rgb",
                      resolution=(px_per_cm, px_per_cm), resolutionunit="CENTIMETER", subfiletype=int(level > 0))
    return image.shape[1], image.shape[0]


def write_clam_output(clam: Path, slide_path: Path, size: tuple[int, int], encoder: torch.nn.Module, spec: PatchEncoderSpec) -> None:
    """What CLAM's create_patches_fp.py and extract_features_fp.py leave for one slide (a lab has these already)."""
    side0 = 128
    xs, ys = np.meshgrid(np.arange(768, 3328 - side0 + 1, side0), np.arange(512, 2560 - side0 + 1, side0))
    coords = np.stack([xs.ravel(), ys.ravel()], axis=1).astype(np.int64)
    grid = PatchGrid(size[0], size[1], SLIDE_MPP, ENCODER_PX, ENCODER_MPP, 0.0, coords, np.zeros_like(coords), np.ones(len(coords)))
    features = encode_patches(slide_path, grid, encoder, spec, torch.device("cpu"))
    for sub in ("patches", "h5_files", "pt_files"):
        (clam / sub).mkdir(parents=True, exist_ok=True)
    with h5py.File(clam / "patches" / f"{SLIDE_ID}.h5", "w") as fh:  # create_patches_fp: coords with the patch geometry
        dset = fh.create_dataset("coords", data=coords, maxshape=(None, 2), chunks=(32, 2))
        dset.attrs.update({"patch_size": side0, "patch_level": 0, "downsample": (1.0, 1.0), "downsampled_level_dim": size,
                           "level_dim": size, "name": SLIDE_ID, "save_path": str(clam / "patches")})
    with h5py.File(clam / "h5_files" / f"{SLIDE_ID}.h5", "w") as fh:  # extract_features_fp: features and coords, no attributes
        fh.create_dataset("features", data=features, maxshape=(None, features.shape[1]), chunks=(32, features.shape[1]))
        fh.create_dataset("coords", data=coords.astype(np.int32), maxshape=(None, 2), chunks=(32, 2))
    torch.save(torch.from_numpy(features), clam / "pt_files" / f"{SLIDE_ID}.pt")


def main(root: Path) -> None:
    (root / "slides").mkdir(parents=True)
    size = write_slide(root)

    # 1. The case store: the slide (its level-0 size is what feature files are checked against) and its patient.
    store = open_store(f"sqlite:///{root / 'cases.db'}")
    with store.session() as s:
        s.add(Patient(id="LAB-0002", attributes={"age": 71, "sex": "M"}))
        s.add(Slide(id=SLIDE_ID, patient_id="LAB-0002", file=f"{SLIDE_ID}.tiff", mpp=SLIDE_MPP, width=size[0], height=size[1], label=1))
    store.dispose()
    write_workspace_config(root, WorkspaceConfig(name="CLAM project example"))

    # 2. The lab's files. The encoder's weights: a timm state_dict (here a small random ViT saved the way timm saves one).
    model_dir = root / "models" / "lab-clam-sb"
    model_dir.mkdir(parents=True)
    torch.manual_seed(0)
    torch.save(VisionTransformer(**ENCODER).state_dict(), model_dir / "encoder.pt")
    spec = PatchEncoderSpec(name="UNI-like ViT (example)", architecture="vit", params=ENCODER, weights="encoder.pt",
                            weights_sha256=file_sha256(model_dir / "encoder.pt"), licence="CC-BY-NC-ND-4.0 (as UNI's)",
                            patch_size_px=ENCODER_PX, mpp=ENCODER_MPP)
    encoder = VisionTransformer(**ENCODER)
    encoder.load_state_dict(torch.load(model_dir / "encoder.pt", weights_only=True), strict=True)
    clam = root.parent / f"{root.name}-clam-output"
    write_clam_output(clam, root / "slides" / f"{SLIDE_ID}.tiff", size, encoder.eval(), spec)
    head = CLAMSB(gate=True, size_arg="small", dropout=0.25, k_sample=8, n_classes=2, embed_dim=ENCODER["embed_dim"])
    torch.save(head.state_dict(), model_dir / "s_0_checkpoint.pt")  # CLAM main.py: torch.save(model.state_dict(), ...)

    # 3. Register the feature files: each is read and checked against its slide, then copied to features/uni_like/.
    workspace = open_workspace(root)
    register_feature_set(workspace.root, workspace.store, "uni_like", spec.name, "clam_h5", clam)
    workspace.store.dispose()

    # 4. The head's manifest names its feature set and its encoder (for region refinement, with the encoder's licence).
    write_manifest(model_dir, ModelManifest(
        id="lab-clam-sb", name="Tumour vs normal (lab CLAM-SB)", task="mil", architecture="clam_sb",
        params={"gate": True, "size_arg": "small", "dropout": 0.25, "k_sample": 8, "n_classes": 2, "embed_dim": ENCODER["embed_dim"]},
        weights="s_0_checkpoint.pt", weights_sha256=file_sha256(model_dir / "s_0_checkpoint.pt"),
        class_names=["normal", "tumour"], positive_class="tumour", feature_set="uni_like", patch_encoder=spec))
    write_workspace_config(root, WorkspaceConfig(name="CLAM project example", models=["lab-clam-sb"]))
    shutil.rmtree(clam)
    print(f"workspace written to {root}; serve it with: python run_dashboard.py --workspace {root}")


if __name__ == "__main__":
    target = Path(sys.argv[1] if len(sys.argv) > 1 else "clam-workspace").resolve()
    if target.exists():
        shutil.rmtree(target)
    main(target)
