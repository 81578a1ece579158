"""A patient's visits explained by a sequence model, and what-if edits of one visit (never stored)."""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np

from core.errors import DashboardError
from core.explain.timeseries import BackgroundVisit, PatientSequence, SequenceExplainer, VisitShap
from core.models.manifest import InputSpec
from core.models.visit_encoding import encode_sequences
from core.store.cases import case_summary
from core.workspace import Workspace

ELAPSED_FEATURE = "elapsed_days"


@dataclass
class PatientExplanation:
    patient_id: str
    model_id: str
    days: list[float]
    labels: list[int | None]
    raw: list[dict]  # stored feature values per visit
    sequence: PatientSequence
    shap: VisitShap
    importance: dict[str, np.ndarray]

    @property
    def feature_names(self) -> list[str]:
        return self.shap.feature_names

    def feature_values(self, t: int) -> dict[str, object]:
        """Visit t's values as a clinician reads them (elapsed time in days)."""
        values = {name: self.raw[t].get(name) for name in self.feature_names if name != ELAPSED_FEATURE}
        if ELAPSED_FEATURE in self.feature_names:
            values[ELAPSED_FEATURE] = 0.0 if t == 0 else self.days[t] - self.days[t - 1]
        return values


def validate_visit_edit(spec: InputSpec, values: dict[str, object]) -> tuple[dict[str, object], dict[str, str]]:
    """Parse edited values; return (parsed values, {feature: message}) with a message for every bad cell."""
    parsed: dict[str, object] = {}
    errors: dict[str, str] = {}
    for name in spec.features:
        raw = values.get(name)
        try:
            value = float(str(raw).strip())
        except (TypeError, ValueError):
            errors[name] = f"{raw!r} is not a number"
            continue
        if not math.isfinite(value):
            errors[name] = "must be a finite number"
            continue
        low, high = spec.feature_ranges.get(name, [-math.inf, math.inf])
        if not low <= value <= high:
            unit = spec.feature_units.get(name, "")
            errors[name] = f"must be between {low:g} and {high:g} {unit}".rstrip()
            continue
        parsed[name] = value
    for name, levels in spec.categorical.items():
        raw = values.get(name)
        if raw not in levels:
            errors[name] = f"{raw!r} is not one of {', '.join(levels)}"
        else:
            parsed[name] = raw
    return parsed, errors


class PatientExplainers:
    """Sequence explanations per (model, patient), kept in memory so what-if edits reuse the cached prefix state."""

    def __init__(self, workspace: Workspace, max_patients: int = 64) -> None:
        self.workspace = workspace
        self._explainers: dict[str, SequenceExplainer] = {}
        self._cache: OrderedDict[tuple[str, str], PatientExplanation] = OrderedDict()
        self._max = max_patients
        self._lock = threading.Lock()

    def sequence_model_id(self) -> str:
        models = self.workspace.models_for("sequence")
        if not models:
            raise DashboardError("this workspace has no sequence model")
        return models[0]

    def explainer(self, model_id: str) -> SequenceExplainer:
        with self._lock:
            if model_id not in self._explainers:
                model = self.workspace.model(model_id)
                spec = model.manifest.input
                names = [*spec.features, *spec.categorical] + ([ELAPSED_FEATURE] if model.module.elapsed_time else [])
                self._explainers[model_id] = SequenceExplainer(
                    model.module, BackgroundVisit.zeros(len(spec.features), len(spec.categorical)), names, device=model.device)
            return self._explainers[model_id]

    def _encode(self, spec: InputSpec, days: list[float], raw: list[dict]) -> PatientSequence:
        data = encode_sequences([[(d, f, None) for d, f in zip(days, raw, strict=True)]], spec.features, spec.feature_means,
                                spec.feature_stds, spec.categorical)
        return PatientSequence(data.numeric[0], data.categories[0], data.elapsed[0])

    def explain(self, patient_id: str, model_id: str | None = None) -> PatientExplanation:
        model_id = model_id or self.sequence_model_id()
        key = (model_id, patient_id)
        with self._lock:
            if key in self._cache:
                self._cache.move_to_end(key)
                return self._cache[key]
        with self.workspace.store.session() as s:
            visits = case_summary(s, patient_id).visits
            days, raw, labels = [v.day for v in visits], [dict(v.features) for v in visits], [v.label for v in visits]
        if not visits:
            raise DashboardError(f"patient {patient_id} has no visits")
        spec = self.workspace.manifest(model_id).input
        try:
            seq = self._encode(spec, days, raw)
        except (KeyError, ValueError) as exc:
            raise DashboardError(f"patient {patient_id}'s visits do not fit model {model_id}: {exc}") from exc
        explainer = self.explainer(model_id)
        result = PatientExplanation(patient_id, model_id, days, labels, raw, seq, explainer.explain_visits(seq),
                                    explainer.visit_importance(seq))
        with self._lock:
            self._cache[key] = result
            while len(self._cache) > self._max:
                self._cache.popitem(last=False)
        return result

    def what_if(self, patient_id: str, visit: int, values: dict[str, object], model_id: str | None = None) -> PatientExplanation:
        """The explanation with visit ``visit`` replaced by ``values``; only visits >= ``visit`` are recomputed.
        Raises ``VisitEditError`` listing every invalid cell. Nothing is written to the case store."""
        base = self.explain(patient_id, model_id)
        if not 0 <= visit < len(base.days):
            raise DashboardError(f"visit {visit + 1} does not exist; patient {patient_id} has {len(base.days)} visits")
        spec = self.workspace.manifest(base.model_id).input
        parsed, errors = validate_visit_edit(spec, values)
        if errors:
            raise VisitEditError(errors)
        raw = [dict(r) for r in base.raw]
        raw[visit].update(parsed)
        days = list(base.days)
        if ELAPSED_FEATURE in values and visit > 0:
            gap = _parse_gap(values[ELAPSED_FEATURE], days[visit + 1] - days[visit - 1] if visit + 1 < len(days) else math.inf)
            days[visit] = days[visit - 1] + gap
        seq = self._encode(spec, days, raw)
        explainer = self.explainer(base.model_id)
        return PatientExplanation(patient_id, base.model_id, days, base.labels, raw, seq,
                                  explainer.explain_visits(seq, from_visit=visit, previous=base.shap), explainer.visit_importance(seq))


class VisitEditError(DashboardError):
    def __init__(self, errors: dict[str, str]) -> None:
        self.errors = errors
        super().__init__("; ".join(f"{k}: {v}" for k, v in errors.items()))


def _parse_gap(raw: object, max_gap: float) -> float:
    try:
        gap = float(str(raw))
    except ValueError:
        raise VisitEditError({ELAPSED_FEATURE: f"{raw!r} is not a number"}) from None
    if not (math.isfinite(gap) and 0 < gap < max_gap):
        raise VisitEditError({ELAPSED_FEATURE: f"must be more than 0 and less than {max_gap:g} days (visits stay in order)"})
    return gap


def salient_features(expl: PatientExplanation, t: int, k: int = 5) -> list[tuple[str, object, float]]:
    """Visit t's k features with the largest |SHAP|: (name, value, shap)."""
    values = expl.feature_values(t)
    order = np.argsort(-np.abs(expl.shap.phi[t]))[:k]
    return [(expl.feature_names[i], values.get(expl.feature_names[i]), float(expl.shap.phi[t, i])) for i in order]

