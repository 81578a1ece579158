"""Patch-feature files written by CLAM and TRIDENT: read them, and refuse one that does not fit the slide or the head.

Layouts, as those projects write them:

- CLAM ``create_patches_fp.py`` -> ``patches/<slide>.h5``: dataset ``coords`` (N, 2), level-0 (x, y), with attributes
  ``patch_size``, ``patch_level``, ``downsample``, ``downsampled_level_dim``, ``level_dim``, ``name``, ``save_path``
  (``wsi_core/WholeSlideImage.py`` ``process_contour``, written by ``utils/file_utils.py`` ``save_hdf5``).
- CLAM ``extract_features_fp.py`` -> ``h5_files/<slide>.h5``: ``features`` (N, D) float32 and ``coords`` (N, 2) int32,
  written with ``attr_dict=None``, so the patch geometry stays in ``patches/<slide>.h5``; and ``pt_files/<slide>.pt``: the
  (N, D) tensor alone, in the same row order.
- TRIDENT ``WSI.extract_patch_features`` -> ``features_<encoder>/<slide>.h5``: ``features`` (N, D) with attributes ``name``,
  ``savetodir``; ``coords`` (N, 2) level-0 with the patcher's attributes (``trident/IO.py`` ``coords_to_h5``):
  ``patch_size``, ``patch_size_level0``, ``level0_magnification``, ``target_magnification``, ``overlap``, ``name``,
  ``savetodir``, ``level0_width``, ``level0_height``.
"""

from __future__ import annotations

import pickle
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import torch

from core.errors import PathReviewError


class FeatureFileError(PathReviewError):
    """A patch-feature file that cannot be read, or does not belong to this slide or this model."""


@dataclass(frozen=True)
class PatchGeometry:
    """Where a feature's patch lies: coords are level-0 (x, y) of its top-left corner."""

    patch_size_level0: int  # side of one patch in level-0 pixels
    patch_size: int  # side in pixels at the level or magnification it was read at
    patch_level: int | None = None  # CLAM: pyramid level read
    level0_magnification: float | None = None  # TRIDENT
    target_magnification: float | None = None  # TRIDENT
    overlap: int = 0  # TRIDENT: overlap in pixels at the target magnification


@dataclass
class FeatureSet:
    """One slide's patch features from one encoder."""

    features: np.ndarray  # (N, D) float32
    coords: np.ndarray  # (N, 2) int64, level-0 (x, y) of each patch's top-left corner
    geometry: PatchGeometry
    source: str  # the file it came from, for messages
    slide_name: str | None = None  # the ``name`` attribute, where the writer stored one

    @property
    def dim(self) -> int:
        return int(self.features.shape[1])

    def __len__(self) -> int:
        return int(self.features.shape[0])


def _open(path: Path) -> h5py.File:
    if not path.is_file():
        raise FeatureFileError(f"feature file {path} does not exist")
    try:
        return h5py.File(path, "r")
    except OSError as exc:
        raise FeatureFileError(f"{path.name} is not a readable HDF5 file: {exc}") from exc


def _dataset(fh: h5py.File, key: str, path: Path) -> h5py.Dataset:
    node = fh.get(key)
    if not isinstance(node, h5py.Dataset):
        raise FeatureFileError(f"{path.name} has no '{key}' dataset; a CLAM or TRIDENT feature file holds 'features' and 'coords'")
    return node


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _require(attrs: dict[str, Any], names: tuple[str, ...], path: Path, writer: str) -> None:
    missing = [n for n in names if n not in attrs]
    if missing:
        raise FeatureFileError(
            f"{path.name}: the 'coords' dataset lacks the attribute(s) {', '.join(missing)} that {writer} writes; "
            "without them the patch size on the slide is unknown. Use the file as that tool wrote it")


def _read_coords(fh: h5py.File, path: Path) -> np.ndarray:
    coords = _dataset(fh, "coords", path)
    if coords.ndim != 2 or coords.shape[1] != 2:
        raise FeatureFileError(f"{path.name}: 'coords' has shape {coords.shape}; expected (patches, 2) level-0 (x, y)")
    return np.asarray(coords[:], dtype=np.int64)


OnBlock = Callable[[int, np.ndarray, int], None]  # (first row, rows (n, D) float32, total rows): a reader's block as it arrives
BLOCK_ROWS = 4096  # rows per read: bounds the NaN check's temporaries, and what a streamed head receives at a time


def non_finite_rows(block: np.ndarray) -> np.ndarray:
    """Rows holding a NaN or an infinity. A row's sum is finite when all its values are (a cheap screen, one
    matrix-vector product); only rows whose sum is not (a NaN, an infinity, or an overflow of large finite values) are
    checked value by value."""
    with np.errstate(over="ignore", invalid="ignore"):  # an overflowing sum only sends its row to the exact check
        suspect = ~np.isfinite(block @ np.ones(block.shape[1], dtype=block.dtype))
    if suspect.any():
        suspect[suspect] = ~np.isfinite(block[suspect]).all(axis=1)
    return suspect


def _read_features(fh: h5py.File, path: Path, on_block: OnBlock | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(features (N, D) float32, rows with NaN or infinite values), read in row blocks handed to ``on_block`` as they
    arrive, so a head can run on one block while the next is read."""
    features = _dataset(fh, "features", path)
    if features.ndim != 2:
        raise FeatureFileError(f"{path.name}: 'features' has shape {features.shape}; expected (patches, feature dimension)")
    # float32 is what both tools write; read straight into it, without an intermediate copy
    out = np.empty(features.shape, dtype=np.float32)
    bad_rows = np.zeros(len(out), dtype=bool)
    starts = range(0, len(out), BLOCK_ROWS)
    if on_block is None:
        for start in starts:
            rows = np.s_[start:start + BLOCK_ROWS]
            features.read_direct(out, source_sel=rows, dest_sel=rows)
            bad_rows[rows] = non_finite_rows(out[rows])
        return out, bad_rows
    # With a consumer, each block's NaN screen and hand-over run on a second thread while this one reads the next
    # block: h5py holds its lock while it reads, but numpy's screen and copies and torch's work release the GIL.
    grad, inference = torch.is_grad_enabled(), torch.is_inference_mode_enabled()

    def hand_over(start: int) -> None:
        rows = np.s_[start:start + BLOCK_ROWS]
        with torch.inference_mode(inference), torch.set_grad_enabled(grad):  # both modes are per thread
            bad_rows[rows] = non_finite_rows(out[rows])
            on_block(start, out[rows], len(out))

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="feature-blocks") as worker:
        handed: list[Future[None]] = []
        for start in starts:
            if handed and handed[-1].done() and handed[-1].exception() is not None:
                break  # the consumer refused a block (e.g. the wrong feature width): stop reading
            rows = np.s_[start:start + BLOCK_ROWS]
            features.read_direct(out, source_sel=rows, dest_sel=rows)
            handed.append(worker.submit(hand_over, start))
        for block in handed:
            block.result()  # in order; raises the consumer's error
    return out, bad_rows


def clam_geometry(attrs: dict[str, Any], path: Path) -> PatchGeometry:
    """CLAM's ``coords`` attributes -> geometry; the level-0 side is ``patch_size * int(downsample)``, as CLAM reads it."""
    _require(attrs, ("patch_size", "patch_level", "downsample"), path, "CLAM's create_patches_fp.py")
    downsample = np.atleast_1d(np.asarray(attrs["downsample"], dtype=float))
    patch_size = int(attrs["patch_size"])
    return PatchGeometry(patch_size_level0=patch_size * int(downsample[0]), patch_size=patch_size, patch_level=int(attrs["patch_level"]))


def trident_geometry(attrs: dict[str, Any], path: Path) -> PatchGeometry:
    _require(attrs, ("patch_size", "patch_size_level0", "level0_magnification", "target_magnification"), path, "TRIDENT")
    return PatchGeometry(patch_size_level0=int(attrs["patch_size_level0"]), patch_size=int(attrs["patch_size"]),
                         level0_magnification=float(attrs["level0_magnification"]),
                         target_magnification=float(attrs["target_magnification"]), overlap=int(attrs.get("overlap", 0)))


def read_clam_patches(patches_h5: Path) -> tuple[np.ndarray, PatchGeometry, str | None]:
    """CLAM's ``patches/<slide>.h5``: coords and their geometry."""
    with _open(patches_h5) as fh:
        coords = _read_coords(fh, patches_h5)
        attrs = dict(fh["coords"].attrs)
    name = _text(attrs["name"]) if "name" in attrs else None
    return coords, clam_geometry(attrs, patches_h5), name


def read_clam_h5(features_h5: Path, patches_h5: Path | None = None, on_block: OnBlock | None = None) -> FeatureSet:
    """CLAM's ``h5_files/<slide>.h5``. Its coords carry no attributes, so the geometry comes from ``patches_h5`` (the
    ``patches/<slide>.h5`` it was extracted from) unless the feature file's own coords carry CLAM's attributes.
    ``on_block`` receives the feature rows as they are read (see ``_read_features``)."""
    with _open(features_h5) as fh:
        features, bad_rows = _read_features(fh, features_h5, on_block)
        coords = _read_coords(fh, features_h5)
        attrs = dict(fh["coords"].attrs)
    name = _text(attrs["name"]) if "name" in attrs else None
    if "patch_size" in attrs or patches_h5 is None:
        if patches_h5 is None and "patch_size" not in attrs:
            raise FeatureFileError(
                f"{features_h5.name}: CLAM's feature files carry no patch size or level; also name the "
                f"patches/{features_h5.stem}.h5 that create_patches_fp.py wrote for this slide")
        geometry = clam_geometry(attrs, features_h5)
    else:
        patch_coords, geometry, name = read_clam_patches(patches_h5)
        if len(patch_coords) != len(coords) or not np.array_equal(patch_coords, coords):
            raise FeatureFileError(
                f"{features_h5.name} and {patches_h5.name} list different patches ({len(coords)} and {len(patch_coords)}); "
                "the features were not extracted from these patch coordinates")
    return _checked(FeatureSet(features, coords, geometry, str(features_h5), name), bad_rows)


def read_clam_pt(features_pt: Path, patches_h5: Path) -> FeatureSet:
    """CLAM's ``pt_files/<slide>.pt`` (features only) with the coords and geometry of its ``patches/<slide>.h5``."""
    if not features_pt.is_file():
        raise FeatureFileError(f"feature file {features_pt} does not exist")
    try:
        tensor = torch.load(features_pt, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError) as exc:
        raise FeatureFileError(f"{features_pt.name} is not a plain tensor file: {exc}") from exc
    if not isinstance(tensor, torch.Tensor) or tensor.ndim != 2:
        raise FeatureFileError(f"{features_pt.name} must hold one (patches, feature dimension) tensor, as CLAM saves it")
    coords, geometry, name = read_clam_patches(patches_h5)
    features = tensor.detach().to(torch.float32).numpy()
    bad_rows = np.concatenate([non_finite_rows(features[s:s + BLOCK_ROWS]) for s in range(0, len(features), BLOCK_ROWS)] or [np.zeros(0, bool)])
    return _checked(FeatureSet(features, coords, geometry, str(features_pt), name), bad_rows)


def read_trident_h5(features_h5: Path, on_block: OnBlock | None = None) -> FeatureSet:
    """TRIDENT's ``features_<encoder>/<slide>.h5``: features and coords with the patcher's attributes."""
    with _open(features_h5) as fh:
        features, bad_rows = _read_features(fh, features_h5, on_block)
        coords = _read_coords(fh, features_h5)
        attrs = dict(fh["coords"].attrs)
    name = _text(attrs["name"]) if "name" in attrs else None
    return _checked(FeatureSet(features, coords, trident_geometry(attrs, features_h5), str(features_h5), name), bad_rows)


def _checked(fs: FeatureSet, bad_rows: np.ndarray) -> FeatureSet:
    """What a file must satisfy on its own: one coordinate per feature row, and no NaN feature (``bad_rows``: the rows
    the reader found holding a NaN or an infinity)."""
    source = Path(fs.source).name
    if len(fs.coords) != len(fs.features):
        raise FeatureFileError(
            f"{source}: {len(fs.features)} feature rows but {len(fs.coords)} coordinates; the file is truncated or its "
            "features and coordinates come from different runs")
    if len(fs.features) == 0:
        raise FeatureFileError(f"{source} holds no patches")
    if bad_rows.any():
        first = int(np.flatnonzero(bad_rows)[0])
        raise FeatureFileError(
            f"{source}: {int(bad_rows.sum())} of {len(fs.features)} patches have NaN or infinite features (first at "
            f"level-0 x={fs.coords[first, 0]}, y={fs.coords[first, 1]}); re-extract this slide's features")
    return fs


def check_fits(fs: FeatureSet, slide_dimensions: tuple[int, int], in_dim: int | None = None, slide_name: str | None = None) -> None:
    """Refuse a feature file that is not this slide's (a patch outside its level-0 extent, or another slide's name in
    the ``name`` attribute both tools write) or not this head's input."""
    source = Path(fs.source).name
    if slide_name is not None and fs.slide_name is not None and fs.slide_name != slide_name:
        raise FeatureFileError(f"{source} was written for slide {fs.slide_name!r}, not {slide_name!r}; the file belongs to another slide")
    width, height = slide_dimensions
    side = fs.geometry.patch_size_level0
    outside = (fs.coords[:, 0] < 0) | (fs.coords[:, 1] < 0) | (fs.coords[:, 0] >= width) | (fs.coords[:, 1] >= height)
    if outside.any():
        far = fs.coords.max(axis=0)
        raise FeatureFileError(
            f"{source}: {int(outside.sum())} of {len(fs)} patches lie outside this slide ({width} x {height} px at level 0; "
            f"patches reach x={int(far[0]) + side}, y={int(far[1]) + side}); the file belongs to another slide")
    if in_dim is not None and fs.dim != in_dim:
        raise FeatureFileError(
            f"{source}: features have {fs.dim} dimensions but the model reads {in_dim}; they come from a different "
            "patch encoder than the one the model was trained on")
