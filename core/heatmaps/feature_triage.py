"""A cohort triaged by a MIL head over feature files: each slide's stored prediction, its most attended patches and
whether the prediction disagrees with the slide's recorded label, sortable."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sqlalchemy import select

from core.errors import PathReviewError
from core.features.feature_sets import read_feature_set
from core.heatmaps.feature_layers import stored_slide_prediction
from core.store.schema import Slide
from core.workspace import Workspace

DECISION = 0.5  # the score class's probability at or above which the head calls a slide positive
SORTS = ("probability-desc", "probability-asc", "disagreement", "slide")


@dataclass
class TriageRow:
    slide_id: str
    patient_id: str
    label: int | None  # the slide's recorded label (1: the score class), when known
    probability: float | None  # P(score class); None when the head's prediction is not computed yet
    top_origins: np.ndarray  # (k, 2) level-0 top-left corners of the most attended patches
    side: int  # level-0 patch side

    @property
    def disagrees(self) -> bool | None:
        """True when the head's call (P >= 0.5) differs from the label; None when either is missing."""
        if self.label is None or self.probability is None:
            return None
        return (self.probability >= DECISION) != bool(self.label)


def triage_rows(workspace: Workspace, model_id: str, k: int = 5) -> list[TriageRow]:
    manifest = workspace.manifest(model_id)
    if not manifest.feature_set:
        raise PathReviewError(f"model {model_id} does not read a feature set")
    slide_ids = list(read_feature_set(workspace.root, manifest.feature_set).slides)
    with workspace.store.session() as s:
        records = {r.id: (r.patient_id, r.label) for r in s.scalars(select(Slide).where(Slide.id.in_(slide_ids)))}
    score_index = manifest.class_names.index(manifest.score_class)
    rows = []
    for slide_id in slide_ids:
        if slide_id not in records:
            continue  # a feature file for a slide no longer in the store
        patient_id, label = records[slide_id]
        result = stored_slide_prediction(workspace, slide_id, model_id)
        if result is None:
            rows.append(TriageRow(slide_id, patient_id, label, None, np.zeros((0, 2), np.int64), 0))
            continue
        top, _ = result.prediction.top_patches(k)
        rows.append(TriageRow(slide_id, patient_id, label, float(result.prediction.probabilities[score_index]),
                              result.coords[top], result.side))
    return rows


def sort_rows(rows: list[TriageRow], by: str) -> list[TriageRow]:
    """``probability-desc``/``-asc`` (uncomputed last), ``disagreement`` (disagreeing first, most confident first), ``slide``."""
    if by not in SORTS:
        raise PathReviewError(f"sort by one of {', '.join(SORTS)}")
    if by == "slide":
        return sorted(rows, key=lambda r: r.slide_id)
    if by == "disagreement":
        return sorted(rows, key=lambda r: (r.disagrees is not True, -abs((r.probability or DECISION) - DECISION), r.slide_id))
    sign = -1 if by == "probability-desc" else 1
    return sorted(rows, key=lambda r: (r.probability is None, sign * (r.probability or 0.0), r.slide_id))
