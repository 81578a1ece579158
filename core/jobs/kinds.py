"""One function per kind of job, and the plan of a cohort's precompute.

Each job function takes ``(workspace, subject, params, progress)`` and returns a small JSON-able summary. It is
idempotent: it computes through the same cached functions the app calls, which return the stored result when the
content key (slide or input content, model weights, settings) is already in the workspace cache, and write new
results atomically. ``progress(fraction, message)`` may raise (a cancelled job) to stop the work; nothing partial
is then left in the cache.
"""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import select

from core.errors import NotFoundError, PathReviewError
from core.explain.patient_explanations import PatientExplainers
from core.explain.report_explanations import report_explanation, report_model_id, stored_report_text
from core.explain.text import LimeSettings
from core.heatmaps.attention import mil_models_for
from core.heatmaps.cam_maps import STITCHED_METHODS
from core.heatmaps.feature_layers import mil_layers, parse_region, region_name
from core.heatmaps.quality_layers import record_slide_quality
from core.heatmaps.slide_grades import record_slide_grade
from core.heatmaps.slide_heatmap import HeatmapParams, SlideHeatmap, compute_heatmap, loaded_heatmap
from core.heatmaps.slide_layers import slide_layers
from core.jobs import WHAT
from core.jobs.state import JobSpec
from core.slides.grid import OVERLAPS
from core.slides.quality import load_quality, quality_cache_path
from core.store.schema import Patient, Report, Slide, Visit
from core.workspace import Workspace

Progress = Callable[[float, str], None]  # (fraction 0..1, what is happening)
SHAP_PATIENTS_PER_JOB = 32


def _patch_model(workspace: Workspace, params: dict) -> str:
    return params.get("model_id") or workspace.default_model("patch")


def _heatmap(workspace: Workspace, slide_id: str, params: dict, progress: Progress, share: float = 1.0) -> SlideHeatmap:
    def patches(done: int, total: int) -> None:
        progress(share * done / max(total, 1), f"heatmap: {done}/{total} patches")
    heat = compute_heatmap(workspace, slide_id, _patch_model(workspace, params), HeatmapParams(overlap=float(params.get("overlap", 0.0))),
                           progress=patches)
    quality = load_quality(quality_cache_path(workspace.cache_dir, heat.key))  # measured in the same pass
    if quality is not None:
        record_slide_quality(workspace, heat, quality)  # for the cohort worklist's QC column
    return heat


def slide_heatmap_job(workspace: Workspace, slide_id: str, params: dict, progress: Progress) -> dict:
    """Patch inference over the slide's tissue: the heatmap the slide viewer shows."""
    heat = _heatmap(workspace, slide_id, params, progress)
    record_slide_grade(workspace, slide_layers(workspace, heat))  # the worklist's model grade group
    return {"key": heat.key, "slide_id": slide_id, "model_id": heat.model_id, "patches": int(len(heat.probs)), "notices": list(heat.notices)}


def slide_cams_job(workspace: Workspace, slide_id: str, params: dict, progress: Progress) -> dict:
    """The heatmap (when missing), then every stitched CAM layer and each MIL head's attention over its patches."""
    heat = _heatmap(workspace, slide_id, params, progress, share=0.25)
    layers = slide_layers(workspace, heat)
    for i, method in enumerate(STITCHED_METHODS):
        def batches(done: int, total: int, i: int = i, method: str = method) -> None:
            progress(0.25 + 0.75 * (i + done / max(total, 1)) / len(STITCHED_METHODS), f"{method}: {done}/{total} patches")
        layers.compute(f"cam:{method}", batches)
    attention = []
    if heat.embeddings is not None and len(heat.embeddings):
        for mil_id in mil_models_for(workspace, heat):
            layers.compute(f"attention:{mil_id}")
            attention.append(mil_id)
    progress(1.0, "stitched CAMs and attention stored")
    return {"key": heat.key, "slide_id": slide_id, "methods": list(STITCHED_METHODS), "attention": attention, "notices": list(heat.notices)}


def slide_layer_job(workspace: Workspace, slide_id: str, params: dict, progress: Progress) -> dict:
    """One derived layer of a stored heatmap (a stitched CAM, MIL attention), as the slide viewer asks for it."""
    heat = loaded_heatmap(workspace, str(params.get("heatmap", "")))
    if heat is None or heat.slide_id != slide_id:
        raise NotFoundError(f"the heatmap of slide {slide_id} this layer belongs to is no longer stored; compute the heatmap again")
    layer = str(params.get("layer", ""))

    def patches(done: int, total: int) -> None:
        progress(done / max(total, 1), f"{layer}: {done}/{total} patches")
    slide_layers(workspace, heat).compute(layer, patches)
    progress(1.0, f"{layer} stored")
    return {"key": heat.key, "slide_id": slide_id, "layer": layer, "notices": list(heat.notices)}


def mil_prediction_job(workspace: Workspace, slide_id: str, params: dict, progress: Progress) -> dict:
    """A MIL head over the slide's feature file: its prediction, attention and instance scores, stored for the layers."""
    model_id = str(params.get("model_id", ""))
    progress(0.05, f"{model_id}: reading the feature file")
    result = mil_layers(workspace, slide_id, model_id).compute("prediction")
    progress(1.0, f"{model_id}: prediction stored")
    return {"slide_id": slide_id, "model_id": model_id, "patches": int(len(result.coords)),
            "probabilities": [round(float(p), 4) for p in result.prediction.probabilities]}


def mil_refine_job(workspace: Workspace, slide_id: str, params: dict, progress: Progress) -> dict:
    """Region refinement: features re-extracted in a region at 50 % or 75 % overlap by the head's encoder, then the head."""
    model_id = str(params.get("model_id", ""))
    layers = mil_layers(workspace, slide_id, model_id)
    layer = region_name(parse_region(str(params.get("region", ""))))

    def patches(done: int, total: int) -> None:
        progress(0.95 * done / max(total, 1), f"refining: {done}/{total} patches")
    refined = layers.compute(layer, patches)
    progress(1.0, "refined region stored")
    return {"slide_id": slide_id, "model_id": model_id, "layer": layer, "patches": int(len(refined.origins)),
            "seconds": round(refined.seconds, 2), "device": refined.device}


def cohort_shap_job(workspace: Workspace, subject: str, params: dict, progress: Progress) -> dict:
    """SHAP values of every visit of ``params["patients"]``, computed together (``explain_cohort``) and stored per patient."""
    patients = list(params.get("patients") or [])
    if not patients:
        raise PathReviewError("a SHAP job needs at least one patient")
    explainers = PatientExplainers(workspace, max_patients=len(patients))
    readable, left_out = explainers.encodable(patients, params.get("model_id"))  # one patient's bad visit must not fail the group
    if not readable:
        raise PathReviewError(f"the model cannot read the visits of any of these {len(patients)} patients (run_dashboard.py check lists why)")
    results = explainers.explain_many(readable, params.get("model_id"), progress=lambda d, t: progress(d / max(t, 1), f"{d}/{t} patients"))
    computed = sum(r.source == "computed" for r in results)
    return {"patients": len(results), "computed": computed, "from_cache": len(results) - computed, "model_id": results[0].model_id,
            "left_out": sorted(left_out)}


def report_lime_job(workspace: Workspace, report_id: str, params: dict, progress: Progress) -> dict:
    """LIME word weights of a stored report for every class, with their stability across seeds (the report page's view)."""
    settings = LimeSettings(**params.get("settings", {}))
    model_id = params.get("model_id") or report_model_id(workspace)
    text = stored_report_text(workspace, report_id)
    progress(0.05, "explaining the report")
    explanation, stability, source = report_explanation(workspace, model_id, text, settings)
    return {"report_id": report_id, "model_id": model_id, "predicted": explanation.predicted.class_name, "stability": stability.label,
            "source": source}


JOB_KINDS: dict[str, Callable[[Workspace, str, dict, Progress], dict]] = {
    "heatmap": slide_heatmap_job, "cams": slide_cams_job, "layer": slide_layer_job,
    "mil": mil_prediction_job, "mil-refine": mil_refine_job, "shap": cohort_shap_job, "lime": report_lime_job,
}
KIND_OF_WHAT = {"heatmaps": "heatmap", "cams": "cams", "shap": "shap", "lime": "lime"}


def parse_what(what: str | list[str] | None) -> list[str]:
    items = [w.strip() for w in (what.split(",") if isinstance(what, str) else what or WHAT) if w.strip()]
    unknown = [w for w in items if w not in WHAT]
    if unknown or not items:
        raise PathReviewError(f"cannot precompute {', '.join(unknown) or 'nothing'}; choose from {', '.join(WHAT)}")
    return [w for w in WHAT if w in items]


def plan_precompute(workspace: Workspace, what: str | list[str] | None = None, patients: list[str] | None = None,
                    slides: list[str] | None = None, overlap: float = 0.0, patch_model: str | None = None) -> list[JobSpec]:
    """The jobs that precompute ``what`` for these patients (all when neither patients nor slides are named) or slides."""
    kinds = parse_what(what)
    if overlap not in OVERLAPS:
        raise PathReviewError(f"overlap must be one of {', '.join(f'{o:.0%}' for o in OVERLAPS)}")
    if patch_model is not None and workspace.manifest(patch_model).task != "patch":
        raise PathReviewError(f"model {patch_model} is not a patch model")
    with workspace.store.session() as s:
        if patients:
            missing = [p for p in patients if s.get(Patient, p) is None]
            if missing:
                raise NotFoundError(f"no patient {missing[0]!r} in this workspace")
        if slides:
            missing = [sl for sl in slides if s.get(Slide, sl) is None]
            if missing:
                raise NotFoundError(f"no slide {missing[0]!r} in this workspace")
        everyone = not patients and not slides
        chosen = list(dict.fromkeys(patients or [])) or (list(s.scalars(select(Patient.id).order_by(Patient.id))) if everyone else [])
        slide_ids = list(slides or []) + list(s.scalars(select(Slide.id).where(Slide.patient_id.in_(chosen)).order_by(Slide.id)))
        with_visits = set(s.scalars(select(Visit.patient_id).where(Visit.patient_id.in_(chosen)).distinct()))
        report_ids = list(s.scalars(select(Report.id).where(Report.patient_id.in_(chosen)).order_by(Report.id)))
    slide_params = {"overlap": float(overlap)} | ({"model_id": patch_model} if patch_model else {})
    specs: list[JobSpec] = []
    for item in kinds:
        if item in ("heatmaps", "cams"):
            specs += [JobSpec(KIND_OF_WHAT[item], sl, dict(slide_params)) for sl in dict.fromkeys(slide_ids)]
        elif item == "shap" and workspace.models_for("sequence"):
            explained = [p for p in chosen if p in with_visits]
            for start in range(0, len(explained), SHAP_PATIENTS_PER_JOB):
                group = explained[start : start + SHAP_PATIENTS_PER_JOB]
                subject = group[0] if len(group) == 1 else f"{group[0]}…{group[-1]} ({len(group)} patients)"
                specs.append(JobSpec("shap", subject, {"patients": group}))
        elif item == "lime" and workspace.models_for("report"):
            specs += [JobSpec("lime", r, {}) for r in report_ids]
    return specs
