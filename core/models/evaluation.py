"""A binary model's stored predictions on its held-out patients, with their recorded labels: what the Models page's
confidence intervals, threshold control and calibration plot are computed from.

Which patients were held out is declared per model in ``model.toml`` (``[metrics] held_out_patients``); a demo
workspace's build marker names them for all its models. Without either, nothing is evaluated: predictions on
patients a model was trained on would flatter it."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import numpy as np
from sqlalchemy import String, cast, select

from core.store.schema import Prediction, Report, Slide, Visit
from core.workspace import DEMO_BUILD_MARKER, Workspace

# A labelled subject of a patient, and its id as predictions name it.
Subject = type[Slide] | type[Report] | type[Visit]
_SUBJECTS: dict[str, tuple[Subject, Any]] = {"slide": (Slide, Slide.id), "report": (Report, Report.id), "visit": (Visit, cast(Visit.id, String))}


@dataclass(frozen=True)
class HeldOutPredictions:
    model_id: str
    patients: list[str]  # the patient of each sample
    labels: np.ndarray  # 0/1
    scores: np.ndarray  # P(positive class)
    subject_kinds: list[str]  # what a sample is: slide, report or visit
    source: str  # where the held-out patients are named

    @property
    def n_patients(self) -> int:
        return len(set(self.patients))


def held_out_patients(workspace: Workspace, model_id: str) -> tuple[set[str], str] | None:
    """The patients ``model_id`` never saw in training, and where that is declared; None when nowhere."""
    declared = workspace.manifest(model_id).metrics.held_out_patients
    if declared:
        return set(declared), f"models/{model_id}/model.toml"
    marker = workspace.root / DEMO_BUILD_MARKER
    if marker.is_file():
        patients = json.loads(marker.read_text()).get("held_out_patients") or []
        if patients:
            return set(map(str, patients)), "the demo build"
    return None


def held_out_predictions(workspace: Workspace, model_id: str) -> HeldOutPredictions | None:
    """The model's stored predictions for labelled slides, reports and visits of its held-out patients; None for a model
    that is not binary, has no declared held-out patients, or no such prediction."""
    if len(workspace.manifest(model_id).class_names) != 2:
        return None
    held_out = held_out_patients(workspace, model_id)
    if held_out is None:
        return None
    patients, source = held_out
    rows: list[tuple[str, int, float, str]] = []
    with workspace.store.session() as s:
        for kind, (table, key) in _SUBJECTS.items():
            query = (select(table.patient_id, table.label, Prediction.score)
                     .join(Prediction, (Prediction.subject_kind == kind) & (Prediction.subject_id == key)
                           & (Prediction.patient_id == table.patient_id))
                     .where(Prediction.model_id == model_id, table.label.is_not(None), table.patient_id.in_(sorted(patients)))
                     .order_by(table.patient_id, key))
            rows += [(pid, int(label or 0), float(score), kind) for pid, label, score in s.execute(query)]  # labels are not NULL here
    if not rows:
        return None
    return HeldOutPredictions(model_id=model_id, patients=[r[0] for r in rows], labels=np.array([r[1] for r in rows]),
                              scores=np.array([r[2] for r in rows]), subject_kinds=[r[3] for r in rows], source=source)
