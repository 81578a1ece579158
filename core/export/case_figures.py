"""A case's exportable figures, rebuilt on the server from what the reviewer is looking at (or a default view).

A figure is never taken from the browser: the view (visit, what-if, report, LIME settings, slide layer and viewport)
names it, and the same core calls that drew the panel draw it again, with provenance, for export or the case report.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from core.errors import NotFoundError, PathReviewError
from core.explain.patient_explanations import DEFAULT_BACKGROUND, PatientExplainers, PatientExplanation
from core.explain.report_explanations import report_explanation, report_model_id, stored_report_text
from core.explain.text import LimeSettings
from core.export.patient_figures import visit_figures
from core.export.provenance import model_provenance
from core.export.report_content import ReportFigure
from core.export.report_figures import word_weight_figure
from core.export.slide_figure import SlideRegion, slide_figure, viewport_region
from core.heatmaps.overlay import TUMOUR_LAYER, OverlayStyle
from core.heatmaps.slide_heatmap import latest_cached_heatmap, slide_heatmap_by_key
from core.models.report_text import clean_report, token_spans
from core.slides.adjust import adjustment_of
from core.store.annotations import current_regions
from core.store.cases import CaseSummary, case_summary, nearest_by_day, slide_record
from core.store.reviews import current_reviews
from core.workspace import Workspace

CASE_FIGURES = {
    "slide": "Slide view with overlay",
    "risk": "Risk at each visit",
    "importance": "Visit importance",
    "waterfall": "SHAP waterfall of the selected visit",
    "lime": "Report word weights (LIME)",
}
EXCERPT_CHARS = 900  # of the report text in the case report's report summary
MAX_EXPORT_WIDTH = 4000  # px; a larger slide export is refused rather than allowed to exhaust memory
# The overlay as the slide viewer opens: the default view draws it so.
VIEWER_STYLE = {"layer": TUMOUR_LAYER, "method": "overlap", "cmap": "Viridis", "threshold": 0.5, "norm": "raw", "smooth": 0.0}


@dataclass
class CaseView:
    """What the reviewer sees on the case page, as plain values from the page's stores and controls."""

    patient_id: str
    visit: int | None = None
    what_if: dict[str, Any] | None = None
    report_id: str | None = None
    lime: dict[str, Any] = field(default_factory=dict)  # class_name, num_features, num_samples, seed, kernel_width
    heat_key: str | None = None
    slide_id: str | None = None
    style: dict[str, Any] = field(default_factory=dict)  # OverlayStyle fields
    opacity: float = 0.5
    bounds: list[list[float]] | None = None  # the viewer's Leaflet bounds
    max_zoom: int | None = None
    region_um: list[float] | None = None  # [x, y, width, height] in µm; None = the current view
    output_width: int = 1200
    background: str = DEFAULT_BACKGROUND  # the SHAP background the patient panel shows
    annotation_authors: list[str] | None = None  # reviewers whose regions the viewer shows; None: every reviewer's
    adjustment: dict[str, Any] = field(default_factory=dict)  # the tiles' brightness, contrast, gamma (1 when absent)


def _patient(explainers: PatientExplainers, view: CaseView) -> tuple[PatientExplanation, PatientExplanation | None]:
    stored = explainers.explain(view.patient_id, background=view.background)
    edited = None
    if view.what_if:
        edited = explainers.what_if(view.patient_id, int(view.what_if["visit"]), view.what_if["values"], background=view.background)
    return stored, edited


def _visit(stored: PatientExplanation, view: CaseView) -> int:
    t = len(stored.days) - 1 if view.visit is None else int(view.visit)
    if not 0 <= t < len(stored.days):
        raise PathReviewError(f"visit {t + 1} does not exist for patient {view.patient_id}")
    return t


def _patient_figure(workspace: Workspace, explainers: PatientExplainers, name: str, view: CaseView) -> ReportFigure:
    stored, edited = _patient(explainers, view)
    t = _visit(stored, view)
    suffix = " (what-if edit)" if edited else ""
    settings: dict[str, object] = {"visit": t + 1, "what_if": bool(edited)}
    shown = edited or stored
    risk, importance, waterfall = visit_figures(stored, edited, t, workspace.manifest(stored.model_id).score_class,
                                                f"Visit {t + 1} (day {shown.days[t]:.0f}): from expected value to output{suffix}")
    if name == "risk":
        return ReportFigure(CASE_FIGURES[name] + suffix, risk, model_provenance(workspace, stored.model_id, "risk per visit", settings))
    if name == "importance":
        return ReportFigure(CASE_FIGURES[name] + suffix, importance,
                            model_provenance(workspace, stored.model_id, "visit importance (occlusion + output change)", settings),
                            "tanh(4 (0.7 occlusion + 0.3 output change)); the first visit, with no earlier output, scores "
                            "tanh(4 occlusion). Red raises the final prediction, blue lowers it.")
    explainer = "SHAP (exact)" if shown.shap.exact else "SHAP (sampled)"
    settings = {**settings, "background": shown.background.kind, "background_visits": shown.background.description,
                "expected_value": round(float(shown.shap.base[t]), 6)}
    return ReportFigure(f"SHAP waterfall, visit {t + 1}{suffix}", waterfall, model_provenance(workspace, stored.model_id, explainer, settings),
                        f"Background: {shown.background.description}; expected value at this visit {shown.shap.base[t]:.3f}. "
                        f"Additivity residual {shown.shap.additivity_residual:.1e}.")


def _lime_settings(view: CaseView) -> LimeSettings:
    lime, default = view.lime or {}, LimeSettings()
    return LimeSettings.from_form(lime.get("num_features", default.num_features), lime.get("num_samples", default.num_samples),
                                  lime.get("seed", default.seed), lime.get("kernel_width", default.kernel_width))


def report_excerpt(workspace: Workspace, view: CaseView, max_chars: int = EXCERPT_CHARS) -> tuple[list[tuple[str, float | None]], str]:
    """The shown report as the model reads it, in pieces with the LIME weight of each model word for the predicted
    class (None for words the model skips), cut after ``max_chars``; and that class."""
    if not view.report_id:
        return [], ""
    text = stored_report_text(workspace, view.report_id)
    explanation = report_explanation(workspace, report_model_id(workspace), text, _lime_settings(view))[0]
    weights = explanation.predicted.weights
    cleaned, used = clean_report(text), 0
    pieces: list[tuple[str, float | None]] = []
    for start, end, token in token_spans(text):
        if used >= max_chars:
            pieces.append(("…", None))
            break
        pieces.append((cleaned[start:end], weights.get(token) if token is not None else None))
        used += end - start
    return pieces, explanation.predicted.class_name


def _lime_figure(workspace: Workspace, view: CaseView) -> ReportFigure:
    if not view.report_id:
        raise PathReviewError("this case has no report to explain")
    model_id = report_model_id(workspace)
    settings = _lime_settings(view)
    # Through the cache the report panel filled: the figure shows the explanation the reviewer saw, without rerunning LIME.
    explanation = report_explanation(workspace, model_id, stored_report_text(workspace, view.report_id), settings)[0]
    predicted = explanation.predicted
    provenance = model_provenance(workspace, model_id, explanation.provenance.get("explainer", "LIME"),
                                  {**settings.__dict__, "report": view.report_id}, seed=settings.seed)
    return ReportFigure(f"Report {view.report_id}: word weights (LIME)", word_weight_figure(explanation, settings.num_features), provenance,
                        f"Predicted {predicted.class_name} (p = {predicted.probability:.3f}).")


def _slide_figure(workspace: Workspace, view: CaseView) -> ReportFigure:
    if not view.slide_id:
        raise PathReviewError("this case has no slide to export")
    if not 100 <= int(view.output_width) <= MAX_EXPORT_WIDTH:
        raise PathReviewError(f"the export width must be between 100 and {MAX_EXPORT_WIDTH} px")
    heat = slide_heatmap_by_key(workspace, view.heat_key, view.slide_id)
    with workspace.store.session() as s:
        record = slide_record(s, view.slide_id)
        if record.patient_id != view.patient_id:
            raise NotFoundError(f"slide {view.slide_id} is not part of case {view.patient_id}")
        mpp = record.mpp
    region = None
    if view.region_um:
        try:
            x, y, w, h = (float(v) for v in view.region_um)
        except (TypeError, ValueError) as exc:
            raise PathReviewError("give the region as four numbers in µm: x, y, width, height") from exc
        if not (w > 0 and h > 0):
            raise PathReviewError(f"the region's width and height must be positive (got {w:g} x {h:g} µm)")
        region = SlideRegion(round(x / mpp), round(y / mpp), round(w / mpp), round(h / mpp))
    elif view.bounds and view.max_zoom is not None:
        region = viewport_region(view.bounds, int(view.max_zoom))
    style = OverlayStyle(**view.style) if heat is not None and view.style else None
    adjustment = adjustment_of(view.adjustment)  # as the viewer's tiles
    shown = current_regions(workspace.store, view.slide_id)
    if view.annotation_authors is not None:
        shown = [r for r in shown if r.author in set(view.annotation_authors)]
    named = {r for entry in current_reviews(workspace.store, view.patient_id).values() for r in entry.regions}
    shown += [r for r in current_regions(workspace.store, view.slide_id) if r.region_id in named and r not in shown]  # a verdict's always
    try:
        fig, provenance = slide_figure(workspace, view.slide_id, region=region, output_width=int(view.output_width), heat=heat, style=style,
                                       opacity=float(view.opacity), regions=shown, highlighted=named, adjustment=adjustment)
    except PathReviewError as exc:
        if view.region_um and "outside the slide" in str(exc):  # said in the µm the reviewer typed, not in level-0 pixels
            x, y, w, h = (float(v) for v in view.region_um)
            raise PathReviewError(f"the region {w:g} x {h:g} µm at ({x:g}, {y:g}) µm lies outside slide {view.slide_id}; "
                                  "give x and y within the slide") from exc
        raise
    return ReportFigure(f"Slide {view.slide_id}", fig, provenance)


FIGURE_MODALITY = {"slide": "slide", "risk": "patient", "importance": "patient", "waterfall": "patient", "lime": "report"}


def case_figure(workspace: Workspace, explainers: PatientExplainers, name: str, view: CaseView) -> ReportFigure:
    """One of ``CASE_FIGURES``, with its provenance and the modality it belongs to."""
    if name == "slide":
        figure = _slide_figure(workspace, view)
    elif name in ("risk", "importance", "waterfall"):
        figure = _patient_figure(workspace, explainers, name, view)
    elif name == "lime":
        figure = _lime_figure(workspace, view)
    else:
        raise PathReviewError(f"unknown figure {name!r}; choose one of {', '.join(CASE_FIGURES)}")
    figure.modality = FIGURE_MODALITY[name]
    return figure


def case_figure_names(case: CaseSummary, has_report_model: bool) -> list[str]:
    """The ``CASE_FIGURES`` this case can show: no slide figure without a slide, no patient figures without visits,
    no LIME figure without a report or a report model."""
    present = {"slide": bool(case.slides), "risk": bool(case.visits), "importance": bool(case.visits), "waterfall": bool(case.visits),
               "lime": bool(case.reports) and has_report_model}
    return [name for name in CASE_FIGURES if present[name]]


def default_case_view(workspace: Workspace, patient_id: str) -> CaseView:
    """The view the case page opens on: the last visit, the slide and report nearest it, the cached heatmap of the first
    patch model under the viewer's default overlay, LIME's default settings; the whole slide rather than a viewport."""
    with workspace.store.session() as s:
        case = case_summary(s, patient_id)
    day = case.visits[-1].day if case.visits else None
    slide_id = nearest_by_day({sl.id: sl.day for sl in case.slides}, day)
    patch_models = workspace.models_for("patch")
    heat = latest_cached_heatmap(workspace, slide_id, patch_models[0]) if slide_id and patch_models else None
    return CaseView(patient_id=patient_id, visit=len(case.visits) - 1 if case.visits else None,
                    report_id=nearest_by_day({r.id: r.day for r in case.reports}, day), slide_id=slide_id,
                    heat_key=heat.key if heat is not None else None, style=dict(VIEWER_STYLE) if heat is not None else {})
