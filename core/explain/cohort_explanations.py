"""Cohort-level views of the sequence model: visit importance per patient, feature importance, dataset overview."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from sqlalchemy import select

from core.cache import content_key, explanation_path, load_arrays, save_arrays
from core.errors import PathReviewError
from core.explain.patient_explanations import DEFAULT_BACKGROUND, PatientExplainers
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


def _cohort_visits(explainers: PatientExplainers, patient_ids: list[str]) -> dict[str, list[tuple[float, dict, int | None]]]:
    """These patients' visits (day, features, label) in time order, in one query."""
    visits: dict[str, list[tuple[float, dict, int | None]]] = {pid: [] for pid in patient_ids}
    with explainers.workspace.store.session() as s:
        rows = s.execute(select(Visit.patient_id, Visit.day, Visit.features, Visit.label).where(Visit.patient_id.in_(patient_ids))
                         .order_by(Visit.patient_id, Visit.day))
        for pid, day, features, label in rows:
            visits[pid].append((day, dict(features or {}), label))
    return visits


def cohort_shap(explainers: PatientExplainers, patient_ids: list[str]) -> CohortShap:
    """SHAP values of every visit of these patients; patients whose visits the model cannot read are left out, and listed
    in ``left_out``. The result is one cohort-level array in the workspace cache, keyed by the model's weights, the
    background and every value of these patients' visits, so a cohort page reads one file rather than a file per patient;
    on a miss the patients' own cached explanations are used (one batched request for those not yet explained)."""
    model_id = explainers.sequence_model_id()
    manifest = explainers.workspace.manifest(model_id)
    visits = _cohort_visits(explainers, list(patient_ids))
    # The default background ("zero") does not depend on other patients, so these patients' visits determine the result.
    key = content_key("cohort-shap", model_id, manifest.weights_sha256, DEFAULT_BACKGROUND, explainers.background_visits,
                      [[pid, [[day, sorted(f.items(), key=lambda kv: kv[0])] for day, f, _ in visits[pid]]] for pid in patient_ids])
    path = explanation_path(explainers.workspace.cache_dir, "cohort-shap", key, ".npz")
    stored = load_arrays(path)
    if stored is not None:
        return CohortShap([str(p) for p in stored["patient_ids"]], [str(n) for n in stored["feature_names"]], stored["phi"], stored["values"],
                          stored["visit_patient"], dict(zip((str(p) for p in stored["left_out_ids"]), (str(w) for w in stored["left_out_why"]),
                                                            strict=True)))
    readable, left_out = explainers.encodable(list(patient_ids))
    explained = explainers.explain_many(readable)
    spec = manifest.input
    names = explainers.explainer(model_id).feature_names
    phi, values, owner = [], [], []
    for i, e in enumerate(explained):
        phi.append(e.shap.phi)
        owner += [i] * len(e.days)
        for t in range(len(e.days)):
            row = e.feature_values(t)
            values.append([_colour_value(n, row[n], spec.categorical.get(n)) for n in names])
    m = len(names)
    result = CohortShap(list(readable), list(names), np.concatenate(phi) if phi else np.zeros((0, m)),
                        np.array(values, float).reshape(-1, m), np.array(owner, int), left_out)
    save_arrays(path, patient_ids=np.array(result.patient_ids, dtype=str), feature_names=np.array(result.feature_names, dtype=str),
                phi=result.phi, values=result.values, visit_patient=result.visit_patient,
                left_out_ids=np.array(list(left_out), dtype=str), left_out_why=np.array(list(left_out.values()), dtype=str))
    return result


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
    visits = _cohort_visits(explainers, list(patient_ids))
    lengths, intervals, labels = [], [], {"positive": 0, "negative": 0, "unlabelled": 0}
    for p in patients:
        days = [day for day, _, _ in visits[p.id]]
        lengths.append(len(days))
        intervals += list(np.diff(days))
        for _, _, label in visits[p.id]:
            labels["unlabelled" if label is None else "positive" if label else "negative"] += 1
    attributes = {f"{a.label} ({a.unit})" if a.unit else a.label: [p.attributes[name] for p in patients if p.attributes.get(name) is not None]
                  for name, a in declared.items()}
    return DatasetOverview(len(patients), sum(lengths), lengths, [float(x) for x in intervals], labels, attributes)
