"""Cohort-level views of the sequence model: visit importance per patient, feature importance, dataset overview."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sqlalchemy import select

from core.errors import PathReviewError
from core.explain.patient_explanations import PatientExplainers
from core.store.schema import Patient, Visit


@dataclass
class CohortShap:
    patient_ids: list[str]
    feature_names: list[str]
    phi: np.ndarray  # (visits, M)
    values: np.ndarray  # (visits, M) numeric value shown for colouring (category code for categories)
    visit_patient: np.ndarray  # (visits,) index into patient_ids

    def mean_abs(self) -> dict[str, float]:
        scores = np.abs(self.phi).mean(0) if len(self.phi) else np.zeros(len(self.feature_names))
        order = np.argsort(-scores)
        return {self.feature_names[i]: float(scores[i]) for i in order}


def filtered_patient_ids(explainers: PatientExplainers, sex: str | None = None, onset_type: str | None = None) -> list[str]:
    query = select(Patient.id).where(select(Visit.id).where(Visit.patient_id == Patient.id).exists()).order_by(Patient.id)
    if sex:
        query = query.where(Patient.sex == sex)
    if onset_type:
        query = query.where(Patient.onset_type == onset_type)
    with explainers.workspace.store.session() as s:
        return list(s.scalars(query))


def cohort_shap(explainers: PatientExplainers, patient_ids: list[str]) -> CohortShap:
    """SHAP values of every visit of these patients (one batched request for the sequences not yet explained)."""
    explained = explainers.explain_many(list(patient_ids))
    model_id = explainers.sequence_model_id()
    spec = explainers.workspace.manifest(model_id).input
    names = explainers.explainer(model_id).feature_names
    phi, values, owner = [], [], []
    for i, e in enumerate(explained):
        phi.append(e.shap.phi)
        owner += [i] * len(e.days)
        for t in range(len(e.days)):
            row = e.feature_values(t)
            values.append([_colour_value(n, row[n], spec.categorical.get(n)) for n in names])
    m = len(names)
    return CohortShap(list(patient_ids), names, np.concatenate(phi) if phi else np.zeros((0, m)),
                      np.array(values, float).reshape(-1, m), np.array(owner, int))


def _colour_value(name: str, value: object, categories: list[str] | None) -> float:
    """A visit's value as the beeswarm colours it: a category's code, or the number itself."""
    if categories is not None:
        return float(categories.index(str(value)))
    if not isinstance(value, int | float | str):
        raise PathReviewError(f"a visit has no value for {name!r}; complete the visit record")
    return float(value)


def visit_importance_page(explainers: PatientExplainers, patient_ids: list[str], page: int,
                          page_size: int = 20) -> tuple[list[str], list[list[float]]]:
    """(patient ids, importance scores per visit) for one page of patients."""
    ids = patient_ids[page * page_size : (page + 1) * page_size]
    return ids, [explainers.explain(pid).importance["score"].tolist() for pid in ids]


@dataclass
class DatasetOverview:
    patients: int
    visits: int
    sequence_lengths: list[int]
    visit_intervals: list[float]
    ages: list[float]
    sex_counts: dict[str, int]
    onset_counts: dict[str, int]
    label_counts: dict[str, int]


def dataset_overview(explainers: PatientExplainers, patient_ids: list[str]) -> DatasetOverview:
    with explainers.workspace.store.session() as s:
        patients = list(s.scalars(select(Patient).where(Patient.id.in_(patient_ids))))
        lengths, intervals, labels = [], [], {"positive": 0, "negative": 0, "unlabelled": 0}
        for p in patients:
            days = [v.day for v in p.visits]
            lengths.append(len(days))
            intervals += list(np.diff(days))
            for v in p.visits:
                labels["unlabelled" if v.label is None else "positive" if v.label else "negative"] += 1
    count = lambda attr: {k: sum(1 for p in patients if getattr(p, attr) == k) for k in sorted({getattr(p, attr) or "unknown" for p in patients})}  # noqa: E731
    return DatasetOverview(len(patients), sum(lengths), lengths, [float(x) for x in intervals], [p.age for p in patients if p.age is not None],
                           count("sex"), count("onset_type"), labels)
