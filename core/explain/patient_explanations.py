"""A patient's visits explained by a sequence model, and what-if edits of one visit (never stored)."""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import numpy as np
from sqlalchemy import select

from core.cache import content_key, explanation_path, load_arrays, save_arrays
from core.errors import PathReviewError
from core.explain.timeseries import BACKGROUND_KINDS, MAX_BACKGROUND_VISITS, Background, PatientSequence, SequenceExplainer, VisitShap
from core.models.manifest import InputSpec
from core.models.sequence import VisitSequenceNet
from core.models.visit_encoding import VisitEncodingError, encode_sequences
from core.store.cases import case_summary
from core.store.schema import Patient, Visit
from core.workspace import Workspace

ELAPSED_FEATURE = "elapsed_days"
SHAP_CACHE_FORMAT = 2
DEFAULT_BACKGROUND = "zero"
ProgressFn = Callable[[int, int], None]  # (patients done, total)


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
    background: Background
    source: str = "computed"  # computed | cache (read from the workspace cache, e.g. precomputed by a worker)

    @property
    def feature_names(self) -> list[str]:
        return self.shap.feature_names

    def feature_values(self, t: int) -> dict[str, object]:
        """Visit t's values as a clinician reads them (elapsed time in days)."""
        values = {name: self.raw[t].get(name) for name in self.feature_names if name != ELAPSED_FEATURE}
        if ELAPSED_FEATURE in self.feature_names:
            values[ELAPSED_FEATURE] = 0.0 if t == 0 else self.days[t] - self.days[t - 1]
        return values


FLOAT32_MAX = 3.4e38  # what the model's float32 inputs hold: a larger value would become inf inside it
MAX_GAP_DAYS = 36_500.0  # the last visit's gap has no later visit to bound it: a century


def _number(raw: object) -> float | str:
    """``raw`` as a finite float, or the message saying why it is not one."""
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        return "a value is needed"
    if isinstance(raw, bool) or not isinstance(raw, int | float | str):
        return f"{_shown(raw)} is not a number"
    try:
        value = float(raw.strip() if isinstance(raw, str) else raw)
    except ValueError:
        return f"{_shown(raw)} is not a number"
    except OverflowError:  # an integer too large for a float
        return f"{_shown(raw)} is not a finite number"
    if not math.isfinite(value) or abs(value) > FLOAT32_MAX:
        return f"{_shown(raw)} is not a finite number"
    return value


def _shown(raw: object, limit: int = 40) -> str:
    text = repr(raw)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def validate_visit_edit(spec: InputSpec, values: Mapping[str, object]) -> tuple[dict[str, object], dict[str, str]]:
    """Parse edited values; return (parsed values, {feature: message}) with a message for every bad cell.

    Any input gives one or the other per feature, never an exception: numbers must be finite, inside the model's
    plausible range when it declares one, and small enough that the normalised value stays finite; categories must
    be one of the model's levels."""
    values = values if isinstance(values, Mapping) else {}
    parsed: dict[str, object] = {}
    errors: dict[str, str] = {}
    for i, name in enumerate(spec.features):
        value = _number(values.get(name))
        if isinstance(value, str):
            errors[name] = value
            continue
        low, high = spec.feature_ranges.get(name, [-math.inf, math.inf])
        if not low <= value <= high:
            unit = spec.feature_units.get(name, "")
            errors[name] = f"must be between {low:g} and {high:g} {unit}".rstrip()
            continue
        mean = spec.feature_means[i] if i < len(spec.feature_means) else 0.0
        std = spec.feature_stds[i] if i < len(spec.feature_stds) and spec.feature_stds[i] > 0 else 1.0
        if abs((value - mean) / std) > FLOAT32_MAX:
            errors[name] = f"{value:g} is far outside anything the model has seen"
            continue
        parsed[name] = value
    for name, levels in spec.categorical.items():
        raw = values.get(name)
        if not isinstance(raw, str) or raw not in levels:
            errors[name] = f"{_shown(raw)} is not one of {', '.join(levels)}"
        else:
            parsed[name] = raw
    return parsed, errors


class PatientExplainers:
    """Sequence explanations per (model, background, patient), kept in memory so what-if edits reuse the cached prefix
    state. ``background`` is one of ``BACKGROUND_KINDS``, drawn from this workspace's cohort."""

    def __init__(self, workspace: Workspace, max_patients: int = 64, background_visits: int = MAX_BACKGROUND_VISITS) -> None:
        self.workspace = workspace
        self.background_visits = background_visits
        self._explainers: dict[tuple[str, str], SequenceExplainer] = {}
        self._cache: OrderedDict[tuple[str, str, str], PatientExplanation] = OrderedDict()
        self._max = max_patients
        self._lock = threading.Lock()

    def sequence_model_id(self) -> str:
        return self.workspace.default_model("sequence")

    def explainer(self, model_id: str, background: str = DEFAULT_BACKGROUND) -> SequenceExplainer:
        if background not in BACKGROUND_KINDS:
            raise PathReviewError(f"unknown SHAP background {background!r}; choose one of {', '.join(BACKGROUND_KINDS)}")
        with self._lock:
            if (model_id, background) not in self._explainers:
                model = self.workspace.model(model_id)
                # A lab's own sequence net (``package.module:factory``) need not subclass VisitSequenceNet; it is used
                # through the same members (visit_inputs, rnn, head, elapsed_time), so the type is asserted, not checked.
                net = cast(VisitSequenceNet, model.module)
                spec = model.manifest.input
                names = [*spec.features, *spec.categorical] + ([ELAPSED_FEATURE] if net.elapsed_time else [])
                visits = Background.of(background, self._cohort_sequences(spec), self.background_visits)
                self._explainers[(model_id, background)] = SequenceExplainer(net, visits, names, device=model.device)
            return self._explainers[(model_id, background)]

    def _cohort_sequences(self, spec: InputSpec) -> list[PatientSequence]:
        """Every patient's visits, encoded for the model: what the cohort backgrounds are drawn from."""
        with self.workspace.store.session() as s:
            visits = [[(v.day, dict(v.features)) for v in p.visits] for p in s.scalars(select(Patient).order_by(Patient.id))]
        sequences = []
        for patient in visits:
            if patient:
                try:
                    sequences.append(self._encode(spec, [d for d, _ in patient], [f for _, f in patient]))
                except VisitEncodingError:
                    continue  # a patient whose visits do not fit the model cannot be part of its background
        if not sequences:
            raise PathReviewError("no patient's visits fit this model, so no SHAP background can be drawn from the cohort")
        return sequences

    def _encode(self, spec: InputSpec, days: list[float], raw: list[dict]) -> PatientSequence:
        data = encode_sequences([[(d, f, None) for d, f in zip(days, raw, strict=True)]], spec.features, spec.feature_means,
                                spec.feature_stds, spec.categorical, spec.elapsed_scale_days, spec.missing)
        if len(data.kept[0]) != len(days):  # explanations are per visit: every visit must be encoded
            raise VisitEncodingError(f"{len(days) - len(data.kept[0])} of these visits are excluded by the model's missing-value policy, "
                                     "so they cannot be explained visit by visit")
        return PatientSequence(data.numeric[0], data.categories[0], data.elapsed[0])

    def explain(self, patient_id: str, model_id: str | None = None, background: str = DEFAULT_BACKGROUND) -> PatientExplanation:
        return self.explain_many([patient_id], model_id, background=background)[0]

    def explain_many(self, patient_ids: list[str], model_id: str | None = None, progress: ProgressFn | None = None,
                     chunk: int = 16, background: str = DEFAULT_BACKGROUND) -> list[PatientExplanation]:
        """Explanations of these patients: from memory, else from the workspace cache, else computed (several
        patients at once through ``explain_cohort``, ``chunk`` at a time) and stored in the cache."""
        model_id = model_id or self.sequence_model_id()
        found: dict[str, PatientExplanation] = {}
        with self._lock:
            for pid in patient_ids:
                if (model_id, background, pid) in self._cache:
                    self._cache.move_to_end((model_id, background, pid))
                    found[pid] = self._cache[(model_id, background, pid)]
        explainer = self.explainer(model_id, background)
        inputs = {pid: self._patient_inputs(pid, model_id) for pid in dict.fromkeys(patient_ids) if pid not in found}
        paths = {pid: self._shap_path(model_id, explainer, seq) for pid, (_, _, _, seq) in inputs.items()}
        todo = []
        for pid, (days, raw, labels, seq) in inputs.items():
            stored = load_arrays(paths[pid])
            if stored is None:
                todo.append(pid)
                continue
            shap = VisitShap(stored["phi"], stored["base"], stored["output"], list(explainer.feature_names), bool(stored["exact"]),
                             int(stored["evaluations"]), [] if explainer.bidirectional else explainer.prefix_states(seq))
            found[pid] = PatientExplanation(pid, model_id, days, labels, raw, seq, shap, explainer.visit_importance(seq),
                                            explainer.background, "cache")
        done = len(patient_ids) - len(todo)
        if progress:
            progress(done, len(patient_ids))
        for start in range(0, len(todo), max(1, chunk)):
            part = todo[start : start + max(1, chunk)]
            seqs = [inputs[pid][3] for pid in part]
            shaps = [explainer.explain_visits(seqs[0])] if len(part) == 1 else explainer.explain_cohort(seqs)
            for pid, seq, shap in zip(part, seqs, shaps, strict=True):
                if not explainer.bidirectional and not shap._states:
                    shap._states = explainer.prefix_states(seq)
                save_arrays(paths[pid], phi=shap.phi, base=shap.base, output=shap.output,
                            exact=np.array(shap.exact), evaluations=np.array(shap.evaluations))
                days, raw, labels, _ = inputs[pid]
                found[pid] = PatientExplanation(pid, model_id, days, labels, raw, seq, shap, explainer.visit_importance(seq),
                                                explainer.background)
            done += len(part)
            if progress:
                progress(done, len(patient_ids))
        with self._lock:
            for pid in patient_ids:
                self._cache[(model_id, background, pid)] = found[pid]
                self._cache.move_to_end((model_id, background, pid))
            while len(self._cache) > self._max:
                self._cache.popitem(last=False)
        return [found[pid] for pid in patient_ids]

    def _patient_inputs(self, patient_id: str, model_id: str) -> tuple[list[float], list[dict], list[int | None], PatientSequence]:
        with self.workspace.store.session() as s:
            visits = case_summary(s, patient_id).visits
            days, raw, labels = [v.day for v in visits], [dict(v.features) for v in visits], [v.label for v in visits]
        if not visits:
            raise PathReviewError(f"patient {patient_id} has no visits")
        spec = self.workspace.manifest(model_id).input
        try:
            return days, raw, labels, self._encode(spec, days, raw)
        except (KeyError, ValueError, VisitEncodingError) as exc:
            raise PathReviewError(f"patient {patient_id}'s visits do not fit model {model_id}: {exc}") from exc

    def encodable(self, patient_ids: list[str], model_id: str | None = None) -> tuple[list[str], dict[str, str]]:
        """The patients whose visits the model can read, in the given order, and why each other patient cannot be
        (cohort views leave those out and say so, rather than failing for everyone)."""
        model_id = model_id or self.sequence_model_id()
        spec = self.workspace.manifest(model_id).input
        visits: dict[str, list[tuple[float, dict]]] = {pid: [] for pid in patient_ids}
        with self.workspace.store.session() as s:
            rows = s.execute(select(Visit.patient_id, Visit.day, Visit.features).where(Visit.patient_id.in_(patient_ids)).order_by(Visit.day))
            for pid, day, features in rows:
                visits[pid].append((day, dict(features or {})))
        readable, left_out = [], {}
        for pid, seq in visits.items():
            if not seq:
                left_out[pid] = "no visits"
                continue
            try:
                self._encode(spec, [d for d, _ in seq], [f for _, f in seq])
                readable.append(pid)
            except VisitEncodingError as exc:
                left_out[pid] = str(exc).removeprefix("sequence 0, ")
        return readable, left_out

    def _shap_path(self, model_id: str, explainer: SequenceExplainer, seq: PatientSequence) -> Path:
        """Cache file of one sequence's SHAP values: keyed by the weights, the explainer's settings and the encoded visits."""
        bg = explainer.background
        key = content_key("visit-shap", SHAP_CACHE_FORMAT, self.workspace.manifest(model_id).weights_sha256, explainer.feature_names,
                          [explainer.max_exact, explainer.n_samples, explainer.seed, bg.kind], bg.numeric.double().numpy(),
                          bg.categories.numpy(), bg.elapsed.double().numpy(), seq.numeric.double().numpy(), seq.categories.numpy(),
                          seq.elapsed.double().numpy())
        return explanation_path(self.workspace.cache_dir, "shap", key, ".npz")

    def what_if(self, patient_id: str, visit: int, values: dict[str, object], model_id: str | None = None,
                background: str = DEFAULT_BACKGROUND) -> PatientExplanation:
        """The explanation with visit ``visit`` replaced by ``values``; only visits >= ``visit`` are recomputed.
        Raises ``VisitEditError`` listing every invalid cell. Nothing is written to the case store."""
        base, days, raw = self._edited_visits(patient_id, visit, values, model_id, background)
        seq = self._encode(self.workspace.manifest(base.model_id).input, days, raw)
        explainer = self.explainer(base.model_id, background)
        return PatientExplanation(patient_id, base.model_id, days, base.labels, raw, seq,
                                  explainer.explain_visits(seq, from_visit=visit, previous=base.shap), explainer.visit_importance(seq),
                                  explainer.background)

    def check_what_if(self, patient_id: str, visit: int, values: dict[str, object], model_id: str | None = None,
                      background: str = DEFAULT_BACKGROUND) -> None:
        """Raise as ``what_if`` would for this edit, without explaining it."""
        self._edited_visits(patient_id, visit, values, model_id, background)

    def _edited_visits(self, patient_id: str, visit: int, values: dict[str, object], model_id: str | None,
                       background: str) -> tuple[PatientExplanation, list[float], list[dict]]:
        """The stored explanation, and the visit days and raw values with the edit applied (checked)."""
        if not isinstance(patient_id, str):
            raise PathReviewError("a what-if edit needs a patient id")
        if isinstance(visit, bool) or not isinstance(visit, int):
            raise PathReviewError(f"the visit to edit must be a visit number, not {_shown(visit)}")
        if not isinstance(values, Mapping):
            raise PathReviewError("a what-if edit needs the visit's values by feature name")
        base = self.explain(patient_id, model_id, background)
        if not 0 <= visit < len(base.days):
            raise PathReviewError(f"visit {visit + 1} does not exist; patient {patient_id} has {len(base.days)} visits")
        parsed, errors = validate_visit_edit(self.workspace.manifest(base.model_id).input, values)
        if errors:
            raise VisitEditError(errors)
        raw = [dict(r) for r in base.raw]
        raw[visit].update(parsed)
        days = list(base.days)
        if ELAPSED_FEATURE in values and visit > 0:
            gap = _parse_gap(values[ELAPSED_FEATURE], days[visit + 1] - days[visit - 1] if visit + 1 < len(days) else MAX_GAP_DAYS)
            days[visit] = days[visit - 1] + gap
        return base, days, raw


class VisitEditError(PathReviewError):
    def __init__(self, errors: dict[str, str]) -> None:
        self.errors = errors
        super().__init__("; ".join(f"{k}: {v}" for k, v in errors.items()))


def _parse_gap(raw: object, max_gap: float) -> float:
    gap = _number(raw)
    if isinstance(gap, str):
        raise VisitEditError({ELAPSED_FEATURE: gap})
    if not 0 < gap < max_gap:
        raise VisitEditError({ELAPSED_FEATURE: f"must be more than 0 and less than {max_gap:g} days (visits stay in order)"})
    return gap


def salient_features(expl: PatientExplanation, t: int, k: int = 5) -> list[tuple[str, object, float]]:
    """Visit t's k features with the largest |SHAP|: (name, value, shap)."""
    values = expl.feature_values(t)
    order = np.argsort(-np.abs(expl.shap.phi[t]))[:k]
    return [(expl.feature_names[i], values.get(expl.feature_names[i]), float(expl.shap.phi[t, i])) for i in order]

