"""A lab's workspace folder: ``workspace.toml``, the case store, slides, models and a cache."""

from __future__ import annotations

import hashlib
import json
import os
import re
import threading
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, field_validator
from sqlalchemy import select

from core.errors import ModelLoadError, NotFoundError, PathReviewError, WorkspaceError
from core.models.manifest import MANIFEST_NAME, ModelManifest, read_manifest
from core.models.registry import LoadedModel, load_model
from core.store.database import CaseStore, open_store
from core.store.schema import AttributeValue, Patient
from core.tomlfile import read_toml, write_toml

WORKSPACE_FILE = "workspace.toml"
DEMO_BUILD_MARKER = ".demo-build.json"  # written by the demo builder; names the held-out patients


class AnnotationClass(BaseModel):
    """A class a reviewer may give a region, its colour (RGB 0-255) and whether it counts as tumour (for Dice)."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=64)
    color: tuple[int, int, int]
    tumour: bool = False

    @field_validator("color")
    @classmethod
    def _rgb(cls, color: tuple[int, int, int]) -> tuple[int, int, int]:
        if not all(0 <= c <= 255 for c in color):
            raise ValueError("each colour component is 0 to 255")
        return color


DEFAULT_ANNOTATION_CLASSES = [
    AnnotationClass(name="tumour pattern 3", color=(255, 200, 0), tumour=True),
    AnnotationClass(name="tumour pattern 4", color=(255, 110, 0), tumour=True),
    AnnotationClass(name="tumour pattern 5", color=(200, 0, 0), tumour=True),
    AnnotationClass(name="benign", color=(0, 160, 80)),
    AnnotationClass(name="artefact", color=(120, 120, 120)),
    AnnotationClass(name="disagree with model", color=(150, 0, 200)),
]


class PatientAttribute(BaseModel):
    """``[patient_attributes.<name>]`` in workspace.toml: how one entry of the patients' attributes is shown."""

    model_config = ConfigDict(extra="forbid")
    label: str = Field(min_length=1, max_length=64)  # column heading and case-header label, e.g. "Age"
    unit: str = Field(default="", max_length=32)  # e.g. "years"; shown after numbers

    def text(self, value: AttributeValue, with_unit: bool = True) -> str:
        """The value as a reviewer reads it: whole numbers without decimals, others to 3 significant digits, the unit after
        (unless the unit is shown elsewhere, as in a column heading)."""
        if value is None:
            return ""
        if isinstance(value, bool) or not isinstance(value, int | float):
            return str(value)
        number = f"{value:.0f}" if float(value).is_integer() else f"{value:.3g}"
        return f"{number} {self.unit}" if self.unit and with_unit else number


def attribute_texts(declared: dict[str, PatientAttribute], values: dict[str, AttributeValue] | None) -> list[tuple[str, str]]:
    """(label, value text) of each declared attribute a patient has, in the declared order."""
    values = values or {}
    return [(a.label, a.text(values[name])) for name, a in declared.items() if values.get(name) is not None]


ATTRIBUTE_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,63}$")


class Limits(BaseModel):
    """``[limits]`` in workspace.toml: how long sessions last and how much work one request or user may ask for."""

    model_config = ConfigDict(extra="forbid")
    session_idle_minutes: float = Field(default=30, gt=0, le=24 * 60)  # a session unused this long ends
    session_hours: float = Field(default=12, gt=0, le=7 * 24)  # and any session ends this long after its sign-in
    # LIME perturbs every word the model reads in every sample: samples x words bounds its time and memory
    # (10 million: 5,000 samples of a 2,000-word report; 50,000 x 2,900 took 56 s and 3.4 GB).
    lime_sample_words: int = Field(default=10_000_000, ge=10_000)
    edited_report_chars: int = Field(default=100_000, ge=1_000, le=1_000_000)  # what-if edits of a report
    jobs_per_user: int = Field(default=4, ge=1, le=1000)  # background jobs (heatmaps, precomputes) one user may have queued or running


class WorkspaceConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1)
    description: str = ""
    database_url: str = "sqlite:///cases.db"  # a relative SQLite path is relative to the workspace
    models: list[str] = []
    broker_url: str | None = None
    annotation_classes: list[AnnotationClass] = Field(default_factory=lambda: list(DEFAULT_ANNOTATION_CLASSES))

    @field_validator("annotation_classes")
    @classmethod
    def _distinct_names(cls, classes: list[AnnotationClass]) -> list[AnnotationClass]:
        names = [c.name for c in classes]
        if len(set(names)) != len(names):
            raise ValueError(f"annotation class names must be distinct (got {names})")
        return classes
    # model id -> SHA-256 of its model.toml: a manifest names code to run, so a pinned one that changed is refused.
    manifest_sha256: dict[str, str] = {}
    limits: Limits = Limits()
    # Patient attribute name (a key of patients.attributes) -> label and unit, in the order the cohort table shows them.
    # None declared: every name the store holds is shown, labelled by its name.
    patient_attributes: dict[str, PatientAttribute] = {}

    @field_validator("patient_attributes")
    @classmethod
    def _attribute_names(cls, attributes: dict[str, PatientAttribute]) -> dict[str, PatientAttribute]:
        bad = [name for name in attributes if not ATTRIBUTE_NAME.match(name)]
        if bad:
            raise ValueError(f"patient attribute names are a letter then letters, digits or _ (64 at most); got {bad}")
        return attributes


class Workspace:
    """An opened workspace. Models are loaded once, on first use, and kept."""

    def __init__(self, root: Path, config: WorkspaceConfig, store: CaseStore, manifests: dict[str, ModelManifest]) -> None:
        self.root = root
        self.config = config
        self.store = store
        self.manifests = manifests
        self._models: dict[str, LoadedModel] = {}
        self._lock = threading.Lock()

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def is_demo(self) -> bool:
        """A workspace the demo builder made (its build marker is there): its data are synthetic, and every page says so."""
        return (self.root / DEMO_BUILD_MARKER).is_file()

    def held_out_patients(self, model_id: str) -> tuple[set[str], str] | None:
        """The patients ``model_id`` never saw in training and where that is declared (its manifest's
        ``[metrics] held_out_patients``, else the demo build marker); None when nowhere."""
        declared = self.manifest(model_id).metrics.held_out_patients
        if declared:
            return set(declared), f"models/{model_id}/{MANIFEST_NAME}"
        marker = self.root / DEMO_BUILD_MARKER
        if marker.is_file():
            patients = json.loads(marker.read_text()).get("held_out_patients") or []
            if patients:
                return set(map(str, patients)), "the demo build"
        return None

    @property
    def slides_dir(self) -> Path:
        return self.root / "slides"

    @property
    def models_dir(self) -> Path:
        return self.root / "models"

    @property
    def cache_dir(self) -> Path:
        return self.root / "cache"

    def patient_attributes(self) -> dict[str, PatientAttribute]:
        """The patient attributes this workspace shows: those ``workspace.toml`` declares, else every name in the store."""
        if self.config.patient_attributes:
            return dict(self.config.patient_attributes)
        with self.store.session() as s:
            names = sorted({name for attributes in s.scalars(select(Patient.attributes)) for name in attributes or {} if ATTRIBUTE_NAME.match(name)})
        return {name: PatientAttribute(label=name.replace("_", " ").capitalize()) for name in names}

    def manifest(self, model_id: str) -> ModelManifest:
        try:
            return self.manifests[model_id]
        except KeyError:
            raise NotFoundError(f"no model {model_id!r} in workspace {self.name!r}") from None

    def models_for(self, task: str) -> list[str]:
        """Ids of this workspace's models of one task (patch, mil, sequence, report), in manifest order."""
        return [m for m, manifest in self.manifests.items() if manifest.task == task]

    def default_model(self, task: str) -> str:
        """The model a view of this task uses unless one is chosen: the first of ``models_for``."""
        models = self.models_for(task)
        if not models:
            raise PathReviewError(f"this workspace has no {task} model")
        return models[0]

    def model(self, model_id: str) -> LoadedModel:
        self.manifest(model_id)
        with self._lock:
            if model_id not in self._models:
                self._models[model_id] = load_model(self.models_dir / model_id)
            return self._models[model_id]

    def forget_model(self, model_id: str) -> None:
        """Drop a loaded model (its weights changed or it was removed): the next use loads it again."""
        with self._lock:
            self._models.pop(model_id, None)


def manifest_sha256(model_dir: Path) -> str:
    return hashlib.sha256((model_dir / MANIFEST_NAME).read_bytes()).hexdigest()


def _check_pinned_manifest(root: Path, config: WorkspaceConfig, model_id: str) -> None:
    pinned = config.manifest_sha256.get(model_id)
    folder = root / "models" / model_id
    if pinned is not None and (folder / MANIFEST_NAME).is_file() and manifest_sha256(folder) != pinned.lower():
        raise WorkspaceError(f"models/{model_id}/{MANIFEST_NAME} has changed since its hash was pinned in {WORKSPACE_FILE}; "
                             "a manifest names code the app runs, so it is refused. Check the change, then pin the new hash "
                             f"(sha256sum models/{model_id}/{MANIFEST_NAME})")


def resolve_database_url(url: str, root: Path) -> str:
    prefix = "sqlite:///"
    if url.startswith(prefix) and url != "sqlite:///:memory:" and not url.startswith(prefix + "/"):
        return prefix + str((root / url[len(prefix) :]).resolve())
    return url


def read_workspace_config(root: Path) -> WorkspaceConfig:
    path = root / WORKSPACE_FILE
    if not root.is_dir():
        raise WorkspaceError(f"workspace folder {root} does not exist (build the demo with --demo, or see docs/workspace.md)")
    if not path.is_file():
        raise WorkspaceError(f"{root} is not a workspace: it has no {WORKSPACE_FILE} (see docs/workspace.md)")
    return read_toml(path, WorkspaceConfig, WorkspaceError)


def write_workspace_config(root: Path, config: WorkspaceConfig) -> None:
    write_toml(root / WORKSPACE_FILE, config)


def open_workspace(root: Path, database_url: str | None = None) -> Workspace:
    """Validate and open a workspace; every problem is a ``WorkspaceError`` with one clear message."""
    root = Path(root).expanduser().resolve()
    config = read_workspace_config(root)
    manifests = {}
    unknown_pins = sorted(set(config.manifest_sha256) - set(config.models))
    if unknown_pins:
        raise WorkspaceError(f"{WORKSPACE_FILE} pins manifests of models it does not list: {', '.join(unknown_pins)}")
    for model_id in config.models:
        try:
            _check_pinned_manifest(root, config, model_id)
            manifests[model_id] = read_manifest(root / "models" / model_id)
        except ModelLoadError as exc:
            raise WorkspaceError(f"model {model_id!r} listed in {WORKSPACE_FILE}: {exc}") from exc
        if manifests[model_id].id != model_id:
            raise WorkspaceError(f"models/{model_id}/model.toml declares id {manifests[model_id].id!r}; it must match its folder")
    store = open_store(resolve_database_url(database_url or config.database_url, root))
    if not (root / "cache").exists():
        (root / "cache").mkdir(mode=0o700)  # heatmaps and explanations of patient data: the owner's only
        os.chmod(root / "cache", 0o700)  # whatever the umask
    return Workspace(root, config, store, manifests)
