"""Feature files written the way CLAM and TRIDENT write them (their save_hdf5 / save_h5 layout and attributes)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import torch


def save_hdf5(path: Path, assets: dict[str, np.ndarray], attributes: dict[str, dict[str, Any]] | None, mode: str,
              chunk_rows: int) -> None:
    """CLAM ``utils/file_utils.py`` save_hdf5 (chunk_rows=32) and TRIDENT ``trident/IO.py`` save_h5 (chunk_rows=1):
    resizable datasets chunked by rows, attributes set per dataset, appended to on later calls."""
    with h5py.File(path, mode) as fh:
        for key, val in assets.items():
            if key not in fh:
                dset = fh.create_dataset(key, shape=val.shape, maxshape=(None,) + val.shape[1:],
                                         chunks=(chunk_rows,) + val.shape[1:], dtype=val.dtype)
                dset[:] = val
                for attr_key, attr_val in (attributes or {}).get(key, {}).items():
                    dset.attrs[attr_key] = json.dumps(attr_val) if isinstance(attr_val, dict) else ("None" if attr_val is None else attr_val)
            else:
                dset = fh[key]
                dset.resize(len(dset) + val.shape[0], axis=0)
                dset[-val.shape[0]:] = val


def clam_patch_attrs(name: str, patch_size: int = 256, patch_level: int = 0, downsample: float = 1.0,
                     level_dim: tuple[int, int] = (4096, 3072)) -> dict[str, Any]:
    """``wsi_core/WholeSlideImage.py`` process_contour's attributes on ``coords``."""
    return {"patch_size": patch_size, "patch_level": patch_level, "downsample": (downsample, downsample),
            "downsampled_level_dim": tuple(np.array(level_dim)), "level_dim": level_dim, "name": name,
            "save_path": "/results/patches"}


def write_clam(root: Path, name: str, features: np.ndarray, coords: np.ndarray, patch_attrs: dict[str, Any] | None = None,
               batch: int = 64) -> tuple[Path, Path, Path]:
    """CLAM's three files for one slide: patches/<slide>.h5 (create_patches_fp), h5_files/<slide>.h5 (extract_features_fp,
    written in batches with attr_dict=None) and pt_files/<slide>.pt (torch.save of the features tensor)."""
    for sub in ("patches", "h5_files", "pt_files"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    patches = root / "patches" / f"{name}.h5"
    attrs = clam_patch_attrs(name) if patch_attrs is None else patch_attrs
    save_hdf5(patches, {"coords": coords.astype(np.int64)}, {"coords": attrs}, "w", 32)
    h5 = root / "h5_files" / f"{name}.h5"
    mode = "w"
    for start in range(0, len(features), batch):
        save_hdf5(h5, {"features": features[start:start + batch].astype(np.float32),
                       "coords": coords[start:start + batch].astype(np.int32)}, None, mode, 32)
        mode = "a"
    pt = root / "pt_files" / f"{name}.pt"
    torch.save(torch.from_numpy(features.astype(np.float32)), pt)
    return patches, h5, pt


def trident_coords_attrs(name: str, patch_size: int = 256, src_mag: int = 40, target_mag: int = 20,
                         width: int = 8192, height: int = 6144, overlap: int = 0) -> dict[str, Any]:
    """``trident/IO.py`` coords_to_h5's attributes."""
    return {"patch_size": patch_size, "patch_size_level0": patch_size * src_mag // target_mag, "level0_magnification": src_mag,
            "target_magnification": target_mag, "overlap": overlap, "name": name, "savetodir": "/job/patches",
            "level0_width": width, "level0_height": height}


def write_trident(root: Path, encoder: str, name: str, features: np.ndarray, coords: np.ndarray,
                  coords_attrs: dict[str, Any] | None = None) -> Path:
    """TRIDENT ``WSI.extract_patch_features``: features_<encoder>/<slide>.h5 in one save_h5 call."""
    folder = root / f"features_{encoder}"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.h5"
    save_hdf5(path, {"features": features.astype(np.float32), "coords": coords.astype(np.int64)},
              {"features": {"name": name, "savetodir": str(folder)},
               "coords": trident_coords_attrs(name) if coords_attrs is None else coords_attrs}, "w", 1)
    return path


def grid_coords(n: int, step: int, columns: int = 10) -> np.ndarray:
    idx = np.arange(n)
    return np.stack([(idx % columns) * step, (idx // columns) * step], axis=1)
