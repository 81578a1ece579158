"""One patient's case: demographics, slides, visits, reports and the stored model outputs for each."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.errors import NotFoundError
from core.store.schema import Patient, Prediction, Report, Slide, Visit


@dataclass
class CaseSummary:
    patient: Patient
    slides: list[Slide]
    visits: list[Visit]
    reports: list[Report]
    # model id -> subject kind -> subject id -> prediction
    predictions: dict[str, dict[str, dict[str, Prediction]]] = field(default_factory=dict)

    def score(self, model_id: str, kind: str, subject_id: str) -> float | None:
        pred = self.predictions.get(model_id, {}).get(kind, {}).get(subject_id)
        return None if pred is None else pred.score


def case_summary(session: Session, patient_id: str) -> CaseSummary:
    patient = session.get(Patient, patient_id)
    if patient is None:
        raise NotFoundError(f"no patient {patient_id!r} in this workspace")
    preds: dict[str, dict[str, dict[str, Prediction]]] = defaultdict(lambda: defaultdict(dict))
    for p in session.scalars(select(Prediction).where(Prediction.patient_id == patient_id)):
        preds[p.model_id][p.subject_kind][p.subject_id] = p
    return CaseSummary(
        patient=patient,
        slides=list(session.scalars(select(Slide).where(Slide.patient_id == patient_id).order_by(Slide.id))),
        visits=list(session.scalars(select(Visit).where(Visit.patient_id == patient_id).order_by(Visit.day))),
        reports=list(session.scalars(select(Report).where(Report.patient_id == patient_id).order_by(Report.id))),
        predictions={k: dict(v) for k, v in preds.items()},
    )


def nearest_by_day(days: dict[str, float | None], day: float | None) -> str | None:
    """The item taken nearest a day (ties: the earlier one); items without a day count as day 0."""
    if not days:
        return None
    target = day or 0.0
    return min(days, key=lambda k: (abs((days[k] or 0.0) - target), days[k] or 0.0, k))


def slide_record(session: Session, slide_id: str) -> Slide:
    slide = session.get(Slide, slide_id)
    if slide is None:
        raise NotFoundError(f"no slide {slide_id!r} in this workspace")
    return slide
