"""Cohort-level views of the sequence model: visit importance per patient, feature importance, dataset overview."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from sqlalchemy import select

from core.errors import PathReviewError
from core.explain.patient_explanations import PatientExplainers
from core.store.schema import AttributeValue, Patient, Visit


@dataclass
class CohortShap:
    patient_ids: list[str]
    feature_names: list[str]
    phi: np.ndarray  # (visits, M)
    values: np.ndarray  # (visits, M) numeric value shown for colouring (category code for categories)
    visit_patient: np.ndarray  # (visits,) index into patient_ids
    left_out: dict[str, str] = field(default_factory=dict)  # patients whose visits the model cannot read -> why

    def mean_abs(self) -> dict[str, float]:
        scores = np.abs(self.phi).mean(0) if len(self.phi) else np.zeros(len(self.feature_names))
        order = np.argsort(-scores)
        return {self.feature_names[i]: float(scores[i]) for i in order}


def filtered_patient_ids(explainers: PatientExplainers, attributes: dict[str, str] | None = None) -> list[str]:
    """Patients with visits whose attributes have these values (name -> value as text; an empty value matches all)."""
    query = select(Patient.id).where(select(Visit.id).where(Visit.patient_id == Patient.id).exists()).order_by(Patient.id)
    for name, value in (attributes or {}).items():
        if value:
            query = query.where(Patient.attributes[name].as_string() == value)
    with explainers.workspace.store.session() as s:
        return list(s.scalars(query))


def cohort_shap(explainers: PatientExplainers, patient_ids: list[str]) -> CohortShap:
    """SHAP values of every visit of these patients (one batched request for the sequences not yet explained); patients
    whose visits the model cannot read are left out, and listed in ``left_out``."""
    patient_ids, left_out = explainers.encodable(list(patient_ids))
    explained = explainers.explain_many(patient_ids)
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
                      np.array(values, float).reshape(-1, m), np.array(owner, int), left_out)


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
    ids, _ = explainers.encodable(patient_ids[page * page_size : (page + 1) * page_size])
    return ids, [e.importance["score"].tolist() for e in explainers.explain_many(ids)]


@dataclass
class DatasetOverview:
    patients: int
    visits: int
    sequence_lengths: list[int]
    visit_intervals: list[float]
    label_counts: dict[str, int]
    attributes: dict[str, list[AttributeValue]]  # a shown attribute's label (and unit) -> the patients' known values


def dataset_overview(explainers: PatientExplainers, patient_ids: list[str]) -> DatasetOverview:
    declared = explainers.workspace.patient_attributes()
    with explainers.workspace.store.session() as s:
        patients = list(s.scalars(select(Patient).where(Patient.id.in_(patient_ids))))
        lengths, intervals, labels = [], [], {"positive": 0, "negative": 0, "unlabelled": 0}
        for p in patients:
            days = [v.day for v in p.visits]
            lengths.append(len(days))
            intervals += list(np.diff(days))
            for v in p.visits:
                labels["unlabelled" if v.label is None else "positive" if v.label else "negative"] += 1
    attributes = {f"{a.label} ({a.unit})" if a.unit else a.label: [p.attributes[name] for p in patients if p.attributes.get(name) is not None]
                  for name, a in declared.items()}
    return DatasetOverview(len(patients), sum(lengths), lengths, [float(x) for x in intervals], labels, attributes)
