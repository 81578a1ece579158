"""A stored report's LIME explanation and its stability across seeds, kept in the workspace cache."""

from __future__ import annotations

import hashlib
from dataclasses import asdict
from pathlib import Path

import numpy as np

from core.cache import content_key, explanation_path, load_json, save_json
from core.errors import NotFoundError
from core.explain.text import (
    ClassExplanation,
    LimeSettings,
    ReportExplanation,
    ReportFeatures,
    StabilityReport,
    check_lime_work,
    explain_report,
    explanation_stability,
    report_features,
)
from core.store.schema import Report
from core.workspace import Workspace

LIME_CACHE_FORMAT = 2  # 2: class weights kept in rank order (format 1 came back sorted by word)
STABILITY_SEEDS = 5


def report_model_id(workspace: Workspace) -> str:
    return workspace.default_model("report")


def stored_report(workspace: Workspace, report_id: str) -> Report:
    with workspace.store.session() as s:
        report = s.get(Report, report_id)
        if report is None:
            raise NotFoundError(f"no report {report_id!r} in this workspace")
        return report


def stored_report_text(workspace: Workspace, report_id: str) -> str:
    return stored_report(workspace, report_id).text


def lime_cache_path(workspace: Workspace, model_id: str, text: str, settings: LimeSettings, n_seeds: int = STABILITY_SEEDS) -> Path:
    text_hash = hashlib.sha256(text.encode("utf-8", errors="replace")).hexdigest()
    key = content_key("report-lime", LIME_CACHE_FORMAT, workspace.manifest(model_id).weights_sha256, text_hash, asdict(settings), n_seeds)
    return explanation_path(workspace.cache_dir, "lime", key, ".json")


def report_explanation(workspace: Workspace, model_id: str, text: str, settings: LimeSettings = LimeSettings(),
                       n_seeds: int = STABILITY_SEEDS) -> tuple[ReportExplanation, StabilityReport, str]:
    """(explanation, stability, source): read from the cache when this text, model and settings were explained before
    (source "cache"), else computed and stored (source "computed")."""
    settings.validate()
    bound = workspace.config.limits.lime_sample_words
    check_lime_work(report_features(text, settings.mode), settings, bound)  # refused alike whether cached or not
    path = lime_cache_path(workspace, model_id, text, settings, n_seeds)
    stored = load_json(path)
    if stored is not None:
        return _explanation_from_json(stored["explanation"]), StabilityReport(**stored["stability"]), "cache"
    model = workspace.model(model_id)
    explanation = explain_report(text, model, settings, max_sample_words=bound)
    stability = explanation_stability(text, model, settings, n_seeds=n_seeds)
    save_json(path, {"explanation": _explanation_to_json(explanation), "stability": asdict(stability)})
    return explanation, stability, "computed"


def cached_report_explanation(workspace: Workspace, model_id: str, text: str, settings: LimeSettings = LimeSettings(),
                              n_seeds: int = STABILITY_SEEDS) -> ReportExplanation | None:
    """The explanation ``report_explanation`` stored for this text, model and settings, or None when there is none."""
    settings.validate()
    stored = load_json(lime_cache_path(workspace, model_id, text, settings, n_seeds))
    return None if stored is None else _explanation_from_json(stored["explanation"])


def _explanation_to_json(e: ReportExplanation) -> dict:
    f = e.features
    return {"features": {"cleaned": f.cleaned, "tokens": f.tokens, "features": f.features, "token_feature": f.token_feature.tolist()},
            # Weights as [word, weight] pairs: their order is the rank (strongest first), which a JSON object would not keep.
            "probabilities": e.probabilities, "classes": [{**asdict(c), "weights": list(c.weights.items())} for c in e.classes],
            "settings": asdict(e.settings),
            "provenance": e.provenance}


def _explanation_from_json(d: dict) -> ReportExplanation:
    f = d["features"]
    features = ReportFeatures(f["cleaned"], f["tokens"], f["features"], np.asarray(f["token_feature"], dtype=int))
    classes = [ClassExplanation(**{**c, "weights": dict(c["weights"])}) for c in d["classes"]]
    return ReportExplanation(features, d["probabilities"], classes, LimeSettings(**d["settings"]), d["provenance"])
