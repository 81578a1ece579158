"""A workspace's feature sets: one folder per patch encoder, ``features/<name>/``, holding the encoder's feature file
for each slide it covers and a ``feature_set.toml`` that names them. A slide may be in several sets (one per encoder);
a MIL head's manifest names the set it reads (``feature_set``).

```
features/uni_v1/feature_set.toml     name, encoder, format, dim, and [slides.<slide id>] features / patches
features/uni_v1/h5_files/<slide>.h5  CLAM (with patches/<slide>.h5), or TRIDENT's <slide>.h5
```

``register_feature_set`` is how a lab (and the demo) brings a CLAM or TRIDENT output folder: every file is read and
checked against its slide (coordinates inside the slide, the ``name`` attribute, one feature dimension across the
set, no NaN) before anything is copied, and the manifest is written last, so a half-registered set never validates.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select

from core.errors import NotFoundError, PathReviewError
from core.features.files import FeatureFileError, FeatureSet, OnBlock, check_fits, read_clam_h5, read_clam_pt, read_trident_h5
from core.store.cases import slide_record
from core.store.database import CaseStore
from core.store.schema import Slide
from core.tomlfile import read_toml, write_toml

FEATURES_DIR = "features"
FEATURE_SET_FILE = "feature_set.toml"
FORMATS = ("clam_h5", "clam_pt", "trident_h5")
SET_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


class SlideFeatureFiles(BaseModel):
    model_config = ConfigDict(extra="forbid")
    features: str  # relative to the set's folder
    patches: str | None = None  # CLAM: the patches/<slide>.h5 holding the coords' attributes


class FeatureSetManifest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(pattern=SET_NAME.pattern)
    encoder: str = Field(min_length=1)  # the patch encoder that wrote the features, e.g. "UNI"
    format: Literal["clam_h5", "clam_pt", "trident_h5"]
    dim: int = Field(gt=0)
    slides: dict[str, SlideFeatureFiles] = {}


def feature_set_dir(root: Path, name: str) -> Path:
    if not SET_NAME.match(name):
        raise PathReviewError(f"feature set name {name!r}: use letters, digits, '.', '_' or '-' (at most 64)")
    return root / FEATURES_DIR / name


def read_feature_set(root: Path, name: str) -> FeatureSetManifest:
    path = feature_set_dir(root, name) / FEATURE_SET_FILE
    if not path.is_file():
        raise NotFoundError(f"no feature set {name!r} in this workspace (expected {FEATURES_DIR}/{name}/{FEATURE_SET_FILE})")
    return read_toml(path, FeatureSetManifest, FeatureFileError)


def feature_set_names(root: Path) -> list[str]:
    folder = root / FEATURES_DIR
    return sorted(p.parent.name for p in folder.glob(f"*/{FEATURE_SET_FILE}")) if folder.is_dir() else []


def feature_sets_of_slide(root: Path, slide_id: str) -> list[str]:
    """The feature sets (one per encoder) holding this slide."""
    return [n for n in feature_set_names(root) if slide_id in read_feature_set(root, n).slides]


def read_feature_file(fmt: str, features: Path, patches: Path | None, on_block: OnBlock | None = None) -> FeatureSet:
    if fmt == "trident_h5":
        return read_trident_h5(features, on_block)
    if fmt == "clam_h5":
        return read_clam_h5(features, patches, on_block)
    if patches is None:
        raise FeatureFileError(f"{features.name}: a CLAM .pt file holds no coordinates; also name its patches/<slide>.h5")
    return read_clam_pt(features, patches)


def _slide_geometry(store: CaseStore, slide_id: str) -> tuple[int, int]:
    with store.session() as s:
        record = slide_record(s, slide_id)
        if not record.width or not record.height:
            raise PathReviewError(f"slide {slide_id} has no recorded width and height; feature files are checked against them")
        return int(record.width), int(record.height)


def slide_features(root: Path, store: CaseStore, set_name: str, slide_id: str, in_dim: int | None = None,
                   on_block: OnBlock | None = None) -> FeatureSet:
    """One slide's features from the workspace at ``root`` (its case store: ``store``), checked again against the slide
    and the head reading them; ``on_block`` receives the rows as they are read."""
    manifest = read_feature_set(root, set_name)
    files = manifest.slides.get(slide_id)
    if files is None:
        raise NotFoundError(f"feature set {set_name!r} has no features for slide {slide_id}")
    folder = feature_set_dir(root, set_name)
    fs = read_feature_file(manifest.format, folder / files.features, folder / files.patches if files.patches else None, on_block)
    check_fits(fs, _slide_geometry(store, slide_id), in_dim)
    return fs


def _source_files(source: Path, fmt: str, stem: str, encoder_folder: str | None) -> tuple[Path, Path | None]:
    """Where CLAM or TRIDENT left one slide's files under its output folder ``source``."""
    if fmt == "trident_h5":
        return source / (encoder_folder or "") / f"{stem}.h5", None
    sub, suffix = ("h5_files", ".h5") if fmt == "clam_h5" else ("pt_files", ".pt")
    return source / sub / f"{stem}{suffix}", source / "patches" / f"{stem}.h5"


def register_feature_set(root: Path, store: CaseStore, name: str, encoder: str, fmt: str, source: Path,
                         slides: dict[str, str] | None = None, trident_folder: str | None = None) -> FeatureSetManifest:
    """Copy a CLAM or TRIDENT output folder's files for the slides of the workspace at ``root`` (case store ``store``)
    into ``features/<name>/``, after checking every one. ``slides`` maps slide id -> file stem (default: each slide of the store whose id has a file);
    ``trident_folder`` is TRIDENT's ``features_<encoder>`` folder under ``source`` (default ``features_<encoder>``)."""
    if fmt not in FORMATS:
        raise PathReviewError(f"feature file format must be one of {', '.join(FORMATS)}")
    folder = feature_set_dir(root, name)
    if (folder / FEATURE_SET_FILE).exists():
        raise PathReviewError(f"feature set {name!r} is already registered; choose another name or remove {folder}")
    encoder_folder = trident_folder or f"features_{encoder}"
    if slides is None:
        with store.session() as s:
            ids = list(s.scalars(select(Slide.id).order_by(Slide.id)))
        slides = {sid: sid for sid in ids if _source_files(source, fmt, sid, encoder_folder)[0].is_file()}
    if not slides:
        raise FeatureFileError(f"no feature file in {source} is named after a slide of this workspace; pass the slide -> file mapping")
    dim: int | None = None
    checked: dict[str, tuple[Path, Path | None]] = {}
    for slide_id, stem in slides.items():
        features, patches = _source_files(source, fmt, stem, encoder_folder)
        fs = read_feature_file(fmt, features, patches)
        try:
            check_fits(fs, _slide_geometry(store, slide_id), dim, stem)
        except FeatureFileError as exc:
            raise FeatureFileError(f"slide {slide_id}: {exc}") from exc
        dim = fs.dim if dim is None else dim
        checked[slide_id] = (features, patches)
    assert dim is not None  # slides is not empty
    entries: dict[str, SlideFeatureFiles] = {}
    staging = folder.with_name(folder.name + ".part")
    shutil.rmtree(staging, ignore_errors=True)
    for slide_id, (features, patches) in checked.items():
        sub = features.parent.name
        (staging / sub).mkdir(parents=True, exist_ok=True)
        shutil.copy2(features, staging / sub / features.name)
        rel_patches = None
        if patches is not None:
            (staging / "patches").mkdir(parents=True, exist_ok=True)
            shutil.copy2(patches, staging / "patches" / patches.name)
            rel_patches = f"patches/{patches.name}"
        entries[slide_id] = SlideFeatureFiles(features=f"{sub}/{features.name}", patches=rel_patches)
    manifest = FeatureSetManifest.model_validate({"name": name, "encoder": encoder, "format": fmt, "dim": dim, "slides": entries})
    write_toml(staging / FEATURE_SET_FILE, manifest)
    folder.parent.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(folder, ignore_errors=True)
    staging.rename(folder)
    return manifest
