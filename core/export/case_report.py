"""A case report for the record: the case, the models' outputs with provenance, the reviewers' verdicts and figures,
as a PDF (page 1 the case, then one page per figure) or one offline HTML file. The case page's report job and the
``report`` command both build it here."""

from __future__ import annotations

from collections.abc import Callable

from core.errors import PathReviewError
from core.explain.patient_explanations import PatientExplainers
from core.export.case_figures import CASE_FIGURES, CaseView, case_figure, report_excerpt
from core.export.figure_export import safe_file_stem
from core.export.report_content import CaseReportContent, ModalitySummary, Progress, ReportFigure
from core.export.report_html import build_case_report_html
from core.export.report_pdf import build_case_report_pdf
from core.export.slide_thumbnail import slide_thumbnail
from core.heatmaps.grade_comparison import grade_comparisons
from core.heatmaps.grade_group import SPECIMEN_LABELS
from core.slides.adjust import adjustment_of
from core.store.cases import case_summary
from core.store.reviews import MODALITIES, Consensus, consensus, review_history
from core.workspace import Workspace, attribute_texts

__all__ = ["REPORT_FORMATS", "CaseReportContent", "ReportFigure", "build_case_report", "case_report_content", "case_report_filename", "case_report_html",
           "case_report_pdf"]

REPORT_FORMATS = ("pdf", "html")
MAX_THUMBNAILS = 4
StepProgress = Callable[[float, str], None]  # fraction done, what is being done


def case_report_pdf(content: CaseReportContent, progress: Progress | None = None) -> bytes:
    """Landscape PDF bytes: the case page, then each modality's summary and figures (``report_pdf.page_plan``);
    ``progress(done, total)`` after each figure."""
    return build_case_report_pdf(content, progress)


def case_report_html(content: CaseReportContent, progress: Progress | None = None) -> str:
    """A self-contained HTML document (inline CSS, figures embedded); ``progress(done, total)`` after each figure."""
    return build_case_report_html(content, progress)


def case_report_content(workspace: Workspace, view: CaseView, figures: list[ReportFigure]) -> CaseReportContent:
    """Everything a case report holds besides its figures: demographics, stored model outputs, reviews."""
    with workspace.store.session() as s:
        case = case_summary(s, view.patient_id)
        p = case.patient
        summary = [*attribute_texts(workspace.patient_attributes(), p.attributes), ("Slides", str(len(case.slides))),
                   ("Visits", str(len(case.visits))), ("Reports", str(len(case.reports)))]
        subjects: dict[str, dict[str, object]] = {
            "slide": {sl.id: sl.label for sl in case.slides}, "report": {r.id: r.label for r in case.reports},
            "visit": {str(v.id): (f"visit day {v.day:.0f}", v.label) for v in case.visits}}
        outputs: list[dict] = []
        diagnoses: dict[str, list[str]] = {"slide": [], "patient": [], "report": []}
        for model_id, kinds in case.predictions.items():
            manifest = workspace.manifest(model_id) if model_id in workspace.manifests else None
            positive = manifest.score_class if manifest else "positive"
            for kind, preds in kinds.items():
                for subject_id, pred in preds.items():
                    label = subjects.get(kind, {}).get(subject_id)
                    name, label = label if isinstance(label, tuple) else (f"{kind} {subject_id}", label)
                    outputs.append({"subject": name, "model_id": model_id, "weights_sha256": pred.weights_sha256,
                                    "output": f"P({positive}) = {pred.score:.3f}", "label": "" if label is None else str(label)})
                    if kind in ("slide", "report") or kind == "visit" and case.visits and str(case.visits[-1].id) == subject_id:
                        shown = "" if label is None else f" (label {label})"
                        line = f"{name}, {model_id}: P({positive}) = {pred.score:.3f}{shown}"  # the model named: several heads per slide
                        diagnoses["patient" if kind == "visit" else kind].append(line)
        present = {"slide": [sl.id for sl in case.slides], "patient": [str(v.id) for v in case.visits], "report": [r.id for r in case.reports]}
    history = review_history(workspace.store, view.patient_id)
    grades = _grade_outputs(workspace, view.patient_id)
    modalities = [_modality_summary(workspace, view, m, diagnoses[m], consensus(history, m), present[m]) for m in MODALITIES if present[m]]
    for part in modalities:  # the slide's grade group sits under its diagnosis line
        if part.modality == "slide" and grades:
            part.lines.insert(1, ("Grade group", "; ".join(f"{g['subject']}: {g['output']}" + (f" ({g['label']})" if g["label"] else "")
                                                              for g in grades)))
    reviews = [{"modality": e.modality, "verdict": e.verdict, "comment": e.comment, "flags": list(e.flags), "signed_off": e.signed_off,
                "user": e.user, "at": e.at.strftime("%Y-%m-%d %H:%M UTC"), "version": e.version}
               for e in history]
    return CaseReportContent(patient_id=view.patient_id, workspace_name=workspace.name, summary=summary,
                             model_outputs=grades + sorted(outputs, key=lambda o: (o["model_id"], o["subject"])), reviews=reviews,
                             figures=figures, modalities=modalities)


def _modality_summary(workspace: Workspace, view: CaseView, modality: str, diagnoses: list[str], agreement: Consensus,
                      subjects: list[str]) -> ModalitySummary:
    """The diagnosis (the models' outputs, with the recorded label), the consensus, and the modality's own evidence:
    slide thumbnails with the overlay, or the report excerpt with LIME highlights."""
    summary = ModalitySummary(modality, [("Diagnosis", "; ".join(diagnoses) or "no model output stored"), ("Consensus", agreement.line())])
    if modality == "slide":
        shown = adjustment_of(view.adjustment)  # the viewer's slide as it showed it
        summary.thumbnails = [slide_thumbnail(workspace, slide_id, adjustment=shown if slide_id == view.slide_id else None)[::-1]
                              for slide_id in subjects[:MAX_THUMBNAILS]]
    if modality == "report" and workspace.models_for("report"):
        summary.excerpt, summary.excerpt_class = report_excerpt(workspace, view)
    return summary


def _grade_outputs(workspace: Workspace, patient_id: str) -> list[dict]:
    """Each graded slide's Gleason score and ISUP grade group from the class map, beside the grade its report states."""
    rows = []
    graded = grade_comparisons(workspace, patient_id).get(patient_id)
    for comparison in graded.specimens if graded is not None else ():
        stated = "" if comparison.report is None else f"report {comparison.report_id}: {comparison.report.summary}"
        weights = workspace.manifest(comparison.model_id).weights_sha256 if comparison.model_id in workspace.manifests else ""
        rows.append({"subject": f"slide {comparison.slide_id} ({SPECIMEN_LABELS[comparison.specimen.specimen]})", "model_id": comparison.model_id,
                     "weights_sha256": weights, "output": f"class map: {comparison.model.summary}", "label": stated})
    return rows


def build_case_report(workspace: Workspace, explainers: PatientExplainers, view: CaseView, names: list[str], fmt: str = "pdf",
                      progress: StepProgress | None = None) -> tuple[bytes, int]:
    """The case report of ``view`` with the figures ``names`` (in ``CASE_FIGURES`` order), as PDF or HTML bytes, and
    how many figures it holds. ``progress(fraction, step)`` before each figure and before the document."""
    if fmt not in REPORT_FORMATS:
        raise PathReviewError(f"unknown report format {fmt!r}; choose {' or '.join(REPORT_FORMATS)}")
    names = [n for n in CASE_FIGURES if n in names]
    total = len(names) + 1  # the figures, then the document
    figures = []
    for done, name in enumerate(names):
        if progress:
            progress(done / total, f"figure {done + 1}/{len(names)}: {CASE_FIGURES[name]}")
        figures.append(case_figure(workspace, explainers, name, view))
    if progress:
        progress(len(names) / total, "writing the document")
    content = case_report_content(workspace, view, figures)
    data = case_report_pdf(content) if fmt == "pdf" else case_report_html(content).encode("utf-8")
    return data, len(figures)


def case_report_filename(patient_id: str, fmt: str, stamp: str) -> str:
    """``case-<patient>-<stamp>.pdf`` (or ``.html``), safe as a file name and in a download header."""
    if fmt not in REPORT_FORMATS:
        raise PathReviewError(f"unknown report format {fmt!r}; choose {' or '.join(REPORT_FORMATS)}")
    return f"{safe_file_stem(f'case-{patient_id}-{stamp}')}.{fmt}"
