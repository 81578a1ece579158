"""Fitting the built-in visit-sequence net on a workspace's imported cohort, as the seeds' dashboard trains its recurrent
models from the data it shows: a held-out patient split, early stopping on validation patients, Platt scaling
on the same validation patients, and held-out metrics with 95 % bootstrap intervals that resample patients."""

from __future__ import annotations

import copy
import math
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from core.errors import PathReviewError
from core.imports.tables import Sidecar
from core.models.manifest import ModelManifest
from core.models.metrics import binary_metrics, patient_bootstrap
from core.models.sequence import VisitSequenceNet
from core.models.visit_encoding import ELAPSED_SCALE_DAYS, VisitTensors, encode_sequences
from core.training.predictions import PatientVisits, PredictionRun, cohort_visits, predict_model
from core.training.registration import save_fitted_model
from core.workspace import Workspace

Progress = Callable[[str], None]


@dataclass
class SequenceFitOptions:
    model_id: str
    name: str = ""
    class_names: tuple[str, str] = ("negative", "positive")
    cell: str = "gru"
    hidden: int = 32
    max_epochs: int = 80
    patience: int = 8  # epochs without a better validation loss before stopping
    batch_size: int = 64
    learning_rate: float = 5e-3
    test_fraction: float = 0.2
    validation_fraction: float = 0.15
    bootstrap_resamples: int = 1000
    missing: str = "carry_forward"  # the policy of features the sidecar gives none
    seed: int = 0


@dataclass
class FeatureInputs:
    numeric: list[str]
    categorical: dict[str, list[str]]  # levels, most frequent first: the first is the explanations' baseline


def derive_features(patients: list[PatientVisits], sidecar: Sidecar) -> FeatureInputs:
    """Each feature key of the visits is numeric when every value it has is a number, categorical when every value is
    text; a feature with both is refused (fix the data, or declare it kind = "text" in the sidecar)."""
    values: dict[str, list[Any]] = {}
    for p in patients:
        for _, feats, _ in p.visits:
            for k, v in feats.items():
                if v is not None:
                    values.setdefault(k, []).append(v)
    numeric, categorical = [], {}
    for name in sorted(values):
        kinds = {"text" if isinstance(v, str) else "number" for v in values[name]}
        declared = sidecar.columns.get(name)
        if declared is not None and declared.kind == "text" or kinds == {"text"}:
            counts = Counter(str(v) for v in values[name])
            categorical[name] = sorted(counts, key=lambda level: (-counts[level], level))
        elif kinds == {"number"}:
            numeric.append(name)
        else:
            raise PathReviewError(f"visit feature {name} has both numbers and text; fix the values, or declare kind = \"text\" for it in the sidecar")
    if not numeric:
        raise PathReviewError("the visits have no numeric feature to fit a sequence model on")
    return FeatureInputs(numeric, categorical)


def split_patients(patients: list[PatientVisits], test_fraction: float, validation_fraction: float, seed: int) -> tuple[list[int], list[int], list[int]]:
    """Train, validation and test patients (indices), each split stratified by whether the patient has a positive visit."""
    rng = np.random.default_rng(seed)
    train: list[int] = []
    val: list[int] = []
    test: list[int] = []
    for positive in (False, True):
        group = [i for i, p in enumerate(patients) if any(lab == 1 for *_, lab in p.visits) == positive]
        rng.shuffle(group)
        n_test, n_val = round(len(group) * test_fraction), round(len(group) * validation_fraction)
        test += group[:n_test]
        val += group[n_test : n_test + n_val]
        train += group[n_test + n_val :]
    if not train or not val or not test:
        raise PathReviewError(f"{len(patients)} labelled patients are too few to split into training, validation and test patients")
    return sorted(train), sorted(val), sorted(test)


def _subset(data: VisitTensors, rows: list[int]) -> VisitTensors:
    idx = torch.tensor(rows)
    return VisitTensors(data.numeric[idx], data.categories[idx], data.elapsed[idx], data.lengths[idx], data.labels[idx])


def _loss(net: nn.Module, data: VisitTensors, loss_fn: nn.Module) -> torch.Tensor:
    logits = net(data.numeric, data.categories, data.elapsed, data.lengths)
    mask = data.labels >= 0
    return loss_fn(logits[mask], data.labels[mask])


def train_with_early_stopping(data: VisitTensors, train: list[int], val: list[int], params: dict[str, Any], options: SequenceFitOptions,
                              progress: Progress) -> tuple[VisitSequenceNet, int]:
    """The net with the lowest validation loss, and the epoch it came from."""
    torch.manual_seed(options.seed)
    net = VisitSequenceNet(**params)
    optimiser = torch.optim.Adam(net.parameters(), lr=options.learning_rate, weight_decay=1e-4)
    train_data, val_data = _subset(data, train), _subset(data, val)
    mask = train_data.labels >= 0
    positives = float(train_data.labels[mask].mean())
    loss_fn = nn.BCEWithLogitsLoss(pos_weight=torch.tensor((1 - positives) / max(positives, 1e-3)))
    best, best_epoch, best_state = math.inf, 0, copy.deepcopy(net.state_dict())
    for epoch in range(1, options.max_epochs + 1):
        net.train()
        order = torch.randperm(len(train))
        for start in range(0, len(order), options.batch_size):
            batch = _subset(train_data, order[start : start + options.batch_size].tolist())
            loss = _loss(net, batch, loss_fn)
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
        net.eval()
        with torch.no_grad():
            val_loss = float(_loss(net, val_data, loss_fn))
        if val_loss < best - 1e-4:
            best, best_epoch, best_state = val_loss, epoch, copy.deepcopy(net.state_dict())
        elif epoch - best_epoch >= options.patience:
            progress(f"early stop at epoch {epoch}: validation loss best at epoch {best_epoch} ({best:.4f})")
            break
    net.load_state_dict(best_state)
    return net.eval(), best_epoch


def fit_platt(logits: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """Platt scaling (Platt 1999): the a, b minimising the validation negative log-likelihood of sigmoid(a * logit + b),
    by Newton's method on the two parameters (a logistic regression on the one feature, unregularised). The class
    weighting used in training shifts the net's logits; b takes the shift back out, a rescales their spread."""
    x, y = logits.astype(float), labels.astype(float)

    def nll(a: float, b: float) -> float:
        z = a * x + b
        return float(np.mean(np.logaddexp(0, z) - y * z))

    a, b = 1.0, 0.0
    for _ in range(100):
        p = 1 / (1 + np.exp(-np.clip(a * x + b, -50, 50)))
        gradient = np.array([np.sum((p - y) * x), np.sum(p - y)])
        w = p * (1 - p) + 1e-12
        hessian = np.array([[np.sum(w * x * x), np.sum(w * x)], [np.sum(w * x), np.sum(w)]]) + 1e-9 * np.eye(2)
        step = np.linalg.solve(hessian, gradient)
        scale, before = 1.0, nll(a, b)
        while nll(a - scale * float(step[0]), b - scale * float(step[1])) > before and scale > 1e-6:
            scale /= 2  # a damped step: never worse than where it started
        a, b = a - scale * float(step[0]), b - scale * float(step[1])
        if scale * np.abs(step).max() < 1e-8:
            break
    return a, b


def fit_sequence_model(workspace: Workspace, sidecar: Sidecar, options: SequenceFitOptions,
                       progress: Progress = lambda message: None) -> tuple[ModelManifest, PredictionRun]:
    """Fit, calibrate, evaluate and register a sequence model on the workspace's labelled visits; then store its predictions."""
    patients = [p for p in cohort_visits(workspace) if any(lab is not None for *_, lab in p.visits)]
    if not patients:
        raise PathReviewError("no visit has a label: give a label column in the visits CSV to fit a sequence model")
    features = derive_features(patients, sidecar)
    missing = {name: str((sidecar.columns[name].missing if name in sidecar.columns else None) or options.missing)
               for name in [*features.numeric, *features.categorical]}
    train, val, test = split_patients(patients, options.test_fraction, options.validation_fraction, options.seed)
    train_values = np.array([[float(f[k]) if isinstance(f.get(k), int | float) else np.nan for k in features.numeric]
                             for i in train for _, f, _ in patients[i].visits])
    means = np.nanmean(train_values, axis=0).round(4).tolist()
    stds = np.maximum(np.nanstd(train_values, axis=0), 1e-3).round(4).tolist()
    ranges = {k: (sidecar.columns[k].range if k in sidecar.columns and sidecar.columns[k].range else
                  [round(float(np.nanmin(train_values[:, j])), 4), round(float(np.nanmax(train_values[:, j])), 4)])
              for j, k in enumerate(features.numeric)}
    units = {k: sidecar.columns[k].unit for k in [*features.numeric, *features.categorical] if k in sidecar.columns and sidecar.columns[k].unit}
    data = encode_sequences([p.visits for p in patients], features.numeric, means, stds, features.categorical, ELAPSED_SCALE_DAYS, missing,
                            [p.patient_id for p in patients])
    if any(len(k) != len(p.visits) for k, p in zip(data.kept, patients, strict=True)):
        raise PathReviewError("fitting needs every visit encoded: use carry_forward or cohort_mean rather than exclude_visit")
    params = {"n_numeric": len(features.numeric), "category_sizes": [len(v) for v in features.categorical.values()], "cell": options.cell,
              "hidden": options.hidden, "bidirectional": False, "elapsed_time": True}
    progress(f"{len(train)} training, {len(val)} validation, {len(test)} test patients; features {', '.join(features.numeric)}"
             + (f"; categories {', '.join(features.categorical)}" if features.categorical else ""))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # batches of a few visits: one thread is fastest, and more only contend on a shared machine
    try:
        net, epoch = train_with_early_stopping(data, train, val, params, options, progress)
    finally:
        torch.set_num_threads(threads)
    with torch.no_grad():
        logits = net(data.numeric, data.categories, data.elapsed, data.lengths).numpy()
    labels = data.labels.numpy()
    val_rows = np.zeros(len(patients), bool)
    val_rows[val] = True
    val_mask = (labels >= 0) & val_rows[:, None]
    a, b = fit_platt(logits[val_mask], labels[val_mask])
    with torch.no_grad():  # calibrated logits are a * logit + b: folded into the output layer, so the saved net is calibrated
        net.head.weight.mul_(a)
        net.head.bias.mul_(a).add_(b)
    score = 1 / (1 + np.exp(-(a * logits + b)))
    test_rows = np.zeros(len(patients), bool)
    test_rows[test] = True
    test_mask = (labels >= 0) & test_rows[:, None]
    y, s = labels[test_mask].astype(int), score[test_mask]
    if len(set(y.tolist())) < 2:
        raise PathReviewError("the held-out patients' visits have only one label class; an AUC needs both (label more patients)")
    patient_of_visit = np.array([p.patient_id for p in patients])[:, None].repeat(labels.shape[1], axis=1)[test_mask]
    intervals = patient_bootstrap(patient_of_visit.tolist(), y, s, resamples=options.bootstrap_resamples, seed=options.seed)
    metrics = binary_metrics(y, s, split="held-out patients' labelled visits") | {
        f"{name}_ci95": [round(ci.low, 4), round(ci.high, 4)] for name, ci in intervals.items()} | {
        "bootstrap_resamples": options.bootstrap_resamples, "n_patients_test": len(test),
        "held_out_patients": sorted(patients[i].patient_id for i in test),
        "calibration": f"Platt scaling on {len(val)} validation patients (a = {a:.3g}, b = {b:.3g})"}
    manifest = save_fitted_model(workspace, {
        "id": options.model_id, "name": options.name or f"{options.class_names[1]} ({options.cell.upper()} over visits, fitted here)",
        "description": f"Unidirectional {options.cell.upper()} ({options.hidden} hidden units) fitted on {len(train)} patients' visits; "
                       f"early stopping on {len(val)} validation patients (best epoch {epoch}); evaluated on {len(test)} held-out patients.",
        "task": "sequence", "architecture": "visit_sequence_net", "params": params,
        "class_names": list(options.class_names), "positive_class": options.class_names[1],
        "input": {"features": features.numeric, "feature_means": means, "feature_stds": stds, "categorical": features.categorical,
                  "feature_units": units, "feature_ranges": ranges, "elapsed_time": True, "elapsed_scale_days": ELAPSED_SCALE_DAYS,
                  "missing": missing},
        "metrics": metrics,
    }, net)
    progress(f"held-out AUC {metrics['auc']:.3f} (95 % CI {metrics['auc_ci95'][0]:.3f} to {metrics['auc_ci95'][1]:.3f}), {len(test)} patients")
    return manifest, predict_model(workspace, manifest.id)
