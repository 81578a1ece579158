"""Cohort queries: one row per patient with counts and patient-level model outputs, paged and sorted in SQL."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import ColumnElement, func, select
from sqlalchemy.orm import Session

from core.errors import DashboardError
from core.store.schema import Patient, Prediction, Report, Slide, Visit


@dataclass(frozen=True)
class CohortPage:
    rows: list[dict]
    total: int


def _count(model, patient_col) -> ColumnElement:
    return select(func.count()).where(model.patient_id == patient_col).correlate(Patient).scalar_subquery()


def _patient_score(model_id: str) -> ColumnElement:
    return (
        select(Prediction.score)
        .where(
            Prediction.model_id == model_id,
            Prediction.subject_kind == "patient",
            Prediction.patient_id == Patient.id,
        )
        .correlate(Patient)
        .limit(1)
        .scalar_subquery()
    )


def cohort_columns(model_ids: list[str]) -> dict[str, ColumnElement]:
    """Column name -> SQL expression; model outputs are named ``score:<model id>``."""
    cols: dict[str, ColumnElement] = {
        "patient_id": Patient.id,
        "age": Patient.age,
        "sex": Patient.sex,
        "onset_type": Patient.onset_type,
        "slides": _count(Slide, Patient.id),
        "visits": _count(Visit, Patient.id),
        "reports": _count(Report, Patient.id),
    }
    for model_id in model_ids:
        cols[f"score:{model_id}"] = _patient_score(model_id)
    return cols


def cohort_page(
    session: Session,
    model_ids: list[str],
    page: int = 0,
    page_size: int = 20,
    sort_by: str = "patient_id",
    descending: bool = False,
) -> CohortPage:
    """One page of the cohort table; sorting and paging happen in the database."""
    cols = cohort_columns(model_ids)
    if sort_by not in cols:
        raise DashboardError(f"cannot sort by {sort_by!r}; choose one of {', '.join(cols)}")
    if page < 0 or not 1 <= page_size <= 500:
        raise DashboardError("page must be >= 0 and page size between 1 and 500")
    order = cols[sort_by].desc() if descending else cols[sort_by].asc()
    labelled = [expr.label(name) for name, expr in cols.items()]
    query = select(*labelled).order_by(order.nulls_last(), Patient.id).offset(page * page_size).limit(page_size)
    rows = [dict(r._mapping) for r in session.execute(query)]
    total = session.scalar(select(func.count()).select_from(Patient)) or 0
    return CohortPage(rows=rows, total=total)
