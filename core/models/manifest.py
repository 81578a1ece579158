"""``models/<id>/model.toml``: what a model is, what it reads and how well it did on held-out data."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from core.errors import ModelLoadError
from core.models.visit_encoding import ELAPSED_SCALE_DAYS, MissingPolicy
from core.tomlfile import read_toml, write_toml

MANIFEST_NAME = "model.toml"


StainNormalisation = Literal["none", "reinhard", "macenko"]
# Where a patch's stains are estimated: from the patch itself (the reference's fit of one image), or once per slide from
# an even sample of its tissue patches (``core/slides/slide_stain.py``), so every patch and tile of a slide is mapped
# by the same colour transform.
StainFit = Literal["patch", "slide"]


class StainTarget(BaseModel):
    """The target a patch model's stain normalisation maps every patch to (``core/slides/stain.py``). Macenko:
    ``stain_matrix`` (3 rows R, G, B x 2 columns haematoxylin, eosin; unit optical-density vectors) and
    ``max_concentrations`` (99th percentile of each stain's concentration). Reinhard: ``lab_means`` and ``lab_stds``
    of L* (0-100), a*, b*."""

    model_config = ConfigDict(extra="forbid")
    stain_matrix: list[list[float]] | None = None
    max_concentrations: list[float] | None = None
    lab_means: list[float] | None = None
    lab_stds: list[float] | None = None


class StainStatistics(BaseModel):
    """The training patches' Macenko stain vectors: mean and standard deviation of the six components (haematoxylin
    R, G, B, then eosin R, G, B). Quality control scores each patch's distance from them (``core/slides/quality.py``)."""

    model_config = ConfigDict(extra="forbid")
    vector_means: list[float] = Field(min_length=6, max_length=6)
    vector_stds: list[float] = Field(min_length=6, max_length=6)
    n_patches: int = Field(ge=1)


class InputSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    patch_size_px: int | None = Field(default=None, gt=0)
    mpp: float | None = Field(default=None, gt=0)
    stain_normalisation: StainNormalisation = "none"
    stain_target: StainTarget = StainTarget()
    stain_fit: StainFit = "patch"
    # The slide's own stains, bound by the app for one slide when ``stain_fit`` is "slide"; never in a manifest file.
    stain_source: StainTarget | None = None
    stain_statistics: StainStatistics | None = None
    features: list[str] = []
    feature_means: list[float] = []
    feature_stds: list[float] = []
    categorical: dict[str, list[str]] = {}
    feature_units: dict[str, str] = {}
    feature_ranges: dict[str, list[float]] = {}  # plausible [min, max] per numeric feature, for edits
    elapsed_time: bool = False
    # The sequence encoding, explicit (core.models.visit_encoding): elapsed time in units of this many days; each
    # categorical feature coded by its level's position in ``categorical`` (the first level is the baseline).
    elapsed_scale_days: float = Field(default=ELAPSED_SCALE_DAYS, gt=0)
    missing: dict[str, MissingPolicy] = {}  # feature -> what fills a missing or invalid value; none: the patient is flagged
    vocabulary: str | None = None  # file in the model folder, JSON {"ngram": column}
    max_ngram: int = 2

    @model_validator(mode="after")
    def _target_for_method(self) -> InputSpec:
        t = self.stain_target
        if self.stain_normalisation == "macenko":
            if not (t.stain_matrix and len(t.stain_matrix) == 3 and all(len(r) == 2 for r in t.stain_matrix)
                    and t.max_concentrations and len(t.max_concentrations) == 2 and min(t.max_concentrations) > 0):
                raise ValueError("stain_normalisation = \"macenko\" needs input.stain_target.stain_matrix (3 rows of 2: R, G, B "
                                 "optical density of haematoxylin and eosin) and max_concentrations (2 positive numbers)")
        if self.stain_normalisation == "reinhard":
            if not (t.lab_means and len(t.lab_means) == 3 and t.lab_stds and len(t.lab_stds) == 3 and min(t.lab_stds) > 0):
                raise ValueError("stain_normalisation = \"reinhard\" needs input.stain_target.lab_means and lab_stds "
                                 "(3 numbers each: L*, a*, b*; standard deviations positive)")
        if self.stain_source is not None:  # a bound copy is made with model_copy, which does not validate
            raise ValueError("input.stain_source is each slide's own stain, estimated by the app; a manifest cannot set it "
                             "(declare stain_fit = \"slide\" instead)")
        return self


class Metrics(BaseModel):
    """Held-out test metrics recorded at training time."""

    model_config = ConfigDict(extra="forbid")
    auc: float | None = None
    f1: float | None = None
    accuracy: float | None = None
    n_test: int | None = None
    split: str = ""
    roc_fpr: list[float] = []
    roc_tpr: list[float] = []
    confusion: list[list[int]] = []
    # 95 % bootstrap intervals [low, high], resampling held-out patients (not visits), and how many resamples
    auc_ci95: list[float] = []
    f1_ci95: list[float] = []
    accuracy_ci95: list[float] = []
    bootstrap_resamples: int | None = None
    n_patients_test: int | None = None
    calibration: str = ""  # e.g. "Platt scaling on 300 validation patients (a = 0.8, b = -1.2)"
    # Patients the model never saw in training: the Models page evaluates the stored predictions on them (confidence
    # intervals resampling patients, operating points, calibration). A demo workspace names them in its build marker.
    held_out_patients: list[str] = []


class PatchEncoderSpec(BaseModel):
    """The patch encoder a MIL head's features came from, for re-extracting features in a region. The lab supplies the
    weights (nothing is downloaded); their hash is checked on every load and their licence is shown beside the maps."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1)  # e.g. "UNI"
    architecture: str  # "vit" (built-in, timm key layout) or "package.module:factory"
    params: dict[str, Any] = {}
    weights: str  # file in the model folder
    weights_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    licence: str = Field(min_length=1)  # e.g. "CC-BY-NC-ND-4.0"
    patch_size_px: int = Field(gt=0)  # the encoder's input side
    mpp: float = Field(gt=0)  # microns per pixel it reads at
    channel_mean: tuple[float, float, float] = (0.485, 0.456, 0.406)  # normalisation of RGB in [0, 1]
    channel_std: tuple[float, float, float] = (0.229, 0.224, 0.225)
    stain_normalisation: StainNormalisation = "none"  # applied before the channel normalisation, as for a patch model
    stain_target: StainTarget = StainTarget()
    stain_fit: StainFit = "patch"

    def stain_input(self) -> InputSpec:
        """The encoder's stain normalisation as a patch model's input (checked like one: a method needs its target)."""
        return InputSpec(patch_size_px=self.patch_size_px, mpp=self.mpp, stain_normalisation=self.stain_normalisation,
                         stain_target=self.stain_target, stain_fit=self.stain_fit)


class ModelManifest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
    name: str
    description: str = ""
    task: Literal["patch", "mil", "sequence", "report"]
    architecture: str  # built-in name or "package.module:factory"
    params: dict[str, Any] = {}
    weights: str
    weights_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    class_names: list[str]
    positive_class: str | None = None  # for binary tasks: the class whose probability is the score
    feature_model: str | None = None  # MIL: id of the patch model that embeds patches
    feature_set: str | None = None  # MIL over a lab's feature files: the workspace feature set (features/<name>/) it reads
    patch_encoder: PatchEncoderSpec | None = None  # MIL over feature files: the encoder, for region refinement
    cam_target_layer: str | None = None
    input: InputSpec = InputSpec()
    metrics: Metrics = Metrics()

    @property
    def score_class(self) -> str:
        """The class whose probability the dashboard shows as the model's score: ``positive_class``, else the last class."""
        return self.positive_class or self.class_names[-1]

    def patch_geometry(self) -> tuple[int, float]:
        """(patch size in pixels, microns per pixel) of what a patch model reads; refused when the manifest leaves either out."""
        if not self.input.patch_size_px or not self.input.mpp:
            raise ModelLoadError(f"model {self.id} does not declare its patch size and microns per pixel")
        return self.input.patch_size_px, self.input.mpp


def read_manifest(model_dir: Path) -> ModelManifest:
    path = model_dir / MANIFEST_NAME
    if not path.is_file():
        raise ModelLoadError(f"model folder {model_dir} has no {MANIFEST_NAME}")
    return read_toml(path, ModelManifest, ModelLoadError)


def write_manifest(model_dir: Path, manifest: ModelManifest) -> Path:
    return write_toml(model_dir / MANIFEST_NAME, manifest)
