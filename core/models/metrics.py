"""Held-out test metrics recorded in a model's manifest."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, roc_auc_score, roc_curve


def _thin_roc(fpr: np.ndarray, tpr: np.ndarray, max_points: int = 200) -> tuple[list[float], list[float]]:
    if len(fpr) > max_points:
        keep = np.unique(np.linspace(0, len(fpr) - 1, max_points).round().astype(int))
        fpr, tpr = fpr[keep], tpr[keep]
    return [round(float(v), 5) for v in fpr], [round(float(v), 5) for v in tpr]


def binary_metrics(y_true: np.ndarray, score: np.ndarray, threshold: float = 0.5, split: str = "") -> dict:
    """AUC, F1, accuracy, ROC points and the confusion matrix of a binary score."""
    y_true = np.asarray(y_true).astype(int)
    pred = (np.asarray(score) >= threshold).astype(int)
    fpr, tpr, _ = roc_curve(y_true, score)
    fpr_l, tpr_l = _thin_roc(fpr, tpr)
    return {
        "auc": round(float(roc_auc_score(y_true, score)), 4),
        "f1": round(float(f1_score(y_true, pred, zero_division=0)), 4),
        "accuracy": round(float(accuracy_score(y_true, pred)), 4),
        "n_test": int(len(y_true)),
        "split": split,
        "roc_fpr": fpr_l,
        "roc_tpr": tpr_l,
        "confusion": confusion_matrix(y_true, pred, labels=[0, 1]).tolist(),
    }


def multiclass_metrics(y_true: np.ndarray, probs: np.ndarray, split: str = "") -> dict:
    """Macro one-vs-rest AUC, macro F1, accuracy; the ROC is the micro-average over classes."""
    y_true = np.asarray(y_true).astype(int)
    n_classes = probs.shape[1]
    onehot = np.eye(n_classes)[y_true]
    pred = probs.argmax(1)
    fpr, tpr, _ = roc_curve(onehot.ravel(), probs.ravel())
    fpr_l, tpr_l = _thin_roc(fpr, tpr)
    return {
        "auc": round(float(roc_auc_score(y_true, probs, multi_class="ovr", average="macro", labels=list(range(n_classes)))), 4),
        "f1": round(float(f1_score(y_true, pred, average="macro", zero_division=0)), 4),
        "accuracy": round(float(accuracy_score(y_true, pred)), 4),
        "n_test": int(len(y_true)),
        "split": split,
        "roc_fpr": fpr_l,
        "roc_tpr": tpr_l,
        "confusion": confusion_matrix(y_true, pred, labels=list(range(n_classes))).tolist(),
    }
