"""A binary model's stored predictions on its held-out patients, with their recorded labels: what the Models page's
confidence intervals, threshold control and calibration plot are computed from.

Which patients were held out is declared per model in ``model.toml`` (``[metrics] held_out_patients``); a demo
workspace's build marker names them for all its models. Without either, nothing is evaluated: predictions on
patients a model was trained on would flatter it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from sqlalchemy import String, cast, select
from sqlalchemy.orm import Session

from core.models.manifest import ModelManifest
from core.store.schema import Prediction, Report, Slide, Visit

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


def held_out_predictions(session: Session, manifest: ModelManifest, patients: set[str], source: str) -> HeldOutPredictions | None:
    """The model's stored predictions for labelled slides, reports and visits of its held-out ``patients`` (named by
    ``source``; see ``Workspace.held_out_patients``); None for a model that is not binary, or without such a prediction."""
    if len(manifest.class_names) != 2:
        return None
    model_id = manifest.id
    rows: list[tuple[str, int, float, str]] = []
    for kind, (table, key) in _SUBJECTS.items():
        query = (select(table.patient_id, table.label, Prediction.score)
                 .join(Prediction, (Prediction.subject_kind == kind) & (Prediction.subject_id == key)
                       & (Prediction.patient_id == table.patient_id))
                 .where(Prediction.model_id == model_id, table.label.is_not(None), table.patient_id.in_(sorted(patients)))
                 .order_by(table.patient_id, key))
        rows += [(pid, int(label or 0), float(score), kind) for pid, label, score in session.execute(query)]  # labels are not NULL here
    if not rows:
        return None
    return HeldOutPredictions(model_id=model_id, patients=[r[0] for r in rows], labels=np.array([r[1] for r in rows]),
                              scores=np.array([r[2] for r in rows]), subject_kinds=[r[3] for r in rows], source=source)
