"""``models/<id>/model.toml``: what a model is, what it reads and how well it did on held-out data."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from core.errors import ModelLoadError
from core.models.visit_encoding import ELAPSED_SCALE_DAYS, MissingPolicy
from core.tomlfile import read_toml, write_toml

MANIFEST_NAME = "model.toml"


class InputSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    patch_size_px: int | None = Field(default=None, gt=0)
    mpp: float | None = Field(default=None, gt=0)
    stain_normalisation: str = "none"
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
