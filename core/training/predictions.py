"""Stored predictions: every subject a model can score, each tied to the weights hash that scored it. A sequence model
scores every visit (the patient's score is its last visit's); a report model every report (the patient's is the highest)."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import cast

import numpy as np
import torch
from sqlalchemy import delete, insert, select

from core.errors import PathReviewError
from core.models.manifest import ModelManifest
from core.models.registry import LoadedModel
from core.models.report_classifier import TfidfLogisticRegression
from core.models.report_text import term_counts
from core.models.sequence import VisitSequenceNet
from core.models.visit_encoding import VisitEncodingError, VisitTensors, encode_sequences
from core.store.schema import Patient, Prediction, Report, Visit
from core.workspace import Workspace

PREDICTED_TASKS = ("sequence", "report")  # patch and MIL models score slides in heatmap jobs, not here
BATCH = 256


@dataclass
class PredictionRun:
    model_id: str
    subjects: int = 0  # predictions written
    left_out: dict[str, str] = field(default_factory=dict)  # patient -> why it could not be scored


@dataclass
class PatientVisits:
    patient_id: str
    visit_ids: list[int]
    visits: list[tuple[float, dict, int | None]]  # (day, features, label)


def cohort_visits(workspace: Workspace) -> list[PatientVisits]:
    """Every patient's visits in time order (patients without visits left out)."""
    grouped: dict[str, PatientVisits] = {}
    with workspace.store.session() as s:
        for v in s.execute(select(Visit.id, Visit.patient_id, Visit.day, Visit.features, Visit.label).order_by(Visit.patient_id, Visit.day)):
            entry = grouped.setdefault(v.patient_id, PatientVisits(v.patient_id, [], []))
            entry.visit_ids.append(v.id)
            entry.visits.append((v.day, dict(v.features or {}), v.label))
    return list(grouped.values())


def encode_cohort(manifest: ModelManifest, patients: list[PatientVisits]) -> tuple[list[PatientVisits], VisitTensors | None, dict[str, str]]:
    """The patients a sequence model can read, encoded together, and why each other patient cannot be."""
    spec = manifest.input
    readable, left_out = [], {}
    for p in patients:
        try:
            encode_sequences([p.visits], spec.features, spec.feature_means, spec.feature_stds, spec.categorical,
                             spec.elapsed_scale_days, spec.missing, [p.patient_id])
            readable.append(p)
        except VisitEncodingError as exc:
            left_out[p.patient_id] = str(exc)
    if not readable:
        return [], None, left_out
    data = encode_sequences([p.visits for p in readable], spec.features, spec.feature_means, spec.feature_stds, spec.categorical,
                            spec.elapsed_scale_days, spec.missing, [p.patient_id for p in readable])
    return readable, data, left_out


@torch.no_grad()
def sequence_risks(model: LoadedModel, data: VisitTensors) -> np.ndarray:
    """(B, T) probability of the positive class at each visit, in batches."""
    net = cast(VisitSequenceNet, model.module)
    out = []
    for start in range(0, len(data.lengths), BATCH):
        b = slice(start, start + BATCH)
        logits = net(data.numeric[b].to(model.device), data.categories[b].to(model.device), data.elapsed[b].to(model.device), data.lengths[b])
        out.append(torch.sigmoid(logits).float().cpu())
    return torch.cat(out).numpy()


@torch.no_grad()
def report_scores(model: LoadedModel, texts: list[str]) -> np.ndarray:
    """Probability of the score class for each report."""
    net = cast(TfidfLogisticRegression, model.module)
    column = model.manifest.class_names.index(model.manifest.score_class)
    out = []
    for start in range(0, len(texts), BATCH):
        counts = term_counts(texts[start : start + BATCH], model.vocabulary, model.manifest.input.max_ngram).to(model.device)
        out.append(torch.softmax(net(counts), dim=-1)[:, column].float().cpu())
    return torch.cat(out).numpy() if out else np.zeros(0)


def _sequence_rows(workspace: Workspace, model: LoadedModel, run: PredictionRun) -> list[tuple[str, str, str, float]]:
    readable, data, run.left_out = encode_cohort(model.manifest, cohort_visits(workspace))
    if data is None:
        return []
    risks = sequence_risks(model, data)
    rows = []
    for i, p in enumerate(readable):
        n = int(data.lengths[i])
        rows += [("visit", str(p.visit_ids[k]), p.patient_id, float(risks[i, j])) for j, k in enumerate(data.kept[i][:n])]
        rows.append(("patient", p.patient_id, p.patient_id, float(risks[i, n - 1])))
    return rows


def _report_rows(workspace: Workspace, model: LoadedModel) -> list[tuple[str, str, str, float]]:
    with workspace.store.session() as s:
        reports = s.execute(select(Report.id, Report.patient_id, Report.text).order_by(Report.id)).all()
    scores = report_scores(model, [r.text for r in reports])
    best: dict[str, float] = defaultdict(float)
    rows = []
    for r, score in zip(reports, scores, strict=True):
        rows.append(("report", r.id, r.patient_id, float(score)))
        best[r.patient_id] = max(best[r.patient_id], float(score))
    return rows + [("patient", pid, pid, score) for pid, score in best.items()]


def predict_model(workspace: Workspace, model_id: str) -> PredictionRun:
    """Replace a model's stored predictions with fresh ones from its current weights."""
    manifest = workspace.manifest(model_id)
    if manifest.task not in PREDICTED_TASKS:
        raise PathReviewError(f"model {model_id} is a {manifest.task} model: its slide scores come from heatmap jobs (precompute), not predict")
    model = workspace.model(model_id)
    run = PredictionRun(model_id)
    rows = _sequence_rows(workspace, model, run) if manifest.task == "sequence" else _report_rows(workspace, model)
    with workspace.store.session() as s:
        known = set(s.scalars(select(Patient.id)))
        s.execute(delete(Prediction).where(Prediction.model_id == model_id))
        values = [{"model_id": model_id, "weights_sha256": manifest.weights_sha256, "subject_kind": kind, "subject_id": sid,
                   "patient_id": pid, "score": score} for kind, sid, pid, score in rows if pid in known]
        if values:
            s.execute(insert(Prediction), values)
    run.subjects = len(values)
    return run


def predict_all(workspace: Workspace, model_ids: list[str] | None = None) -> list[PredictionRun]:
    """``predict_model`` for the given models, or every sequence and report model of the workspace."""
    ids = model_ids or [m for m, manifest in workspace.manifests.items() if manifest.task in PREDICTED_TASKS]
    return [predict_model(workspace, m) for m in ids]
