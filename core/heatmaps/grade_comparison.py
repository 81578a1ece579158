"""Model grade group against report grade group, per specimen and per patient: what the worklist shows and filters.

Each slide with a stored class-map grade (``slide_grades``) is paired with the patient's report taken nearest it in
days (the case page's pairing). The report gives the specimen type ("radical prostatectomy" in its text, else a
biopsy) and its stated grade group (``report_grade``); the slide's grade group follows the rule for that specimen
(``grade_group``). Per patient, the highest model grade group over its graded slides is compared with the highest
grade group stated by the reports paired with them: they agree, disagree, or cannot be compared (no graded slide, or
no stated grade)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from sqlalchemy import select

from core.heatmaps.grade_group import SlideGrade, SpecimenType, slide_grade
from core.heatmaps.slide_grades import stored_slide_grades
from core.models.report_grade import ReportGrade, report_grade, report_specimen
from core.store.cases import nearest_by_day
from core.store.schema import Report, Slide
from core.workspace import Workspace

GradeAgreement = Literal["agree", "disagree", "not compared"]
GRADE_AGREEMENTS: tuple[GradeAgreement, ...] = ("agree", "disagree", "not compared")
DEFAULT_SPECIMEN: SpecimenType = "biopsy"


@dataclass(frozen=True)
class SpecimenTypeChoice:
    specimen: SpecimenType
    source: str  # where it comes from, in words


def specimen_from_report(report_id: str | None, text: str | None) -> SpecimenTypeChoice:
    """The specimen type a slide's report names; a needle biopsy when there is no report or it names none."""
    found = report_specimen(text) if text else None
    if found is None:
        why = "no report is paired with the slide" if report_id is None else f"report {report_id} does not name the specimen"
        return SpecimenTypeChoice(DEFAULT_SPECIMEN, f"{why}: needle biopsy assumed")
    return SpecimenTypeChoice(found, f"from report {report_id}")


@dataclass(frozen=True)
class SpecimenComparison:
    slide_id: str
    model_id: str  # the patch model whose class map was graded
    report_id: str | None
    specimen: SpecimenTypeChoice
    model: SlideGrade
    report: ReportGrade | None


@dataclass(frozen=True)
class PatientGradeComparison:
    patient_id: str
    model_group: int | None  # highest over graded slides (0: no tumour); None: no slide graded
    report_group: int | None  # highest stated by their reports; None: none stated
    specimens: tuple[SpecimenComparison, ...]

    @property
    def agreement(self) -> GradeAgreement:
        if self.model_group is None or self.report_group is None:
            return "not compared"
        return "agree" if self.model_group == self.report_group else "disagree"


def slide_report(slide: Slide, reports: list[Report]) -> Report | None:
    """The patient's report taken nearest the slide (ties: the earlier)."""
    chosen = nearest_by_day({r.id: r.day for r in reports}, slide.day)
    return next((r for r in reports if r.id == chosen), None)


def slide_specimen(workspace: Workspace, slide_id: str) -> tuple[str | None, SpecimenTypeChoice]:
    """(the report paired with the slide, the specimen type it gives)."""
    with workspace.store.session() as s:
        slide = s.get(Slide, slide_id)
        reports = list(s.scalars(select(Report).where(Report.patient_id == slide.patient_id))) if slide else []
        report = slide_report(slide, reports) if slide else None
        return (report.id if report else None), specimen_from_report(report.id if report else None, report.text if report else None)


def grade_comparisons(workspace: Workspace, patient_id: str | None = None) -> dict[str, PatientGradeComparison]:
    """Patient id -> the comparison, for every patient of the workspace with a slide or a report (or only ``patient_id``)."""
    slide_query, report_query = select(Slide).order_by(Slide.patient_id, Slide.id), select(Report).order_by(Report.patient_id, Report.id)
    if patient_id is not None:
        slide_query, report_query = slide_query.where(Slide.patient_id == patient_id), report_query.where(Report.patient_id == patient_id)
    with workspace.store.session() as s:
        slides = list(s.scalars(slide_query))
        reports: dict[str, list[Report]] = {}
        for r in s.scalars(report_query):
            reports.setdefault(r.patient_id, []).append(r)
        patients = [sl.patient_id for sl in slides] + list(reports)
        stored = stored_slide_grades(workspace, [sl.id for sl in slides])
        compared: dict[str, list[SpecimenComparison]] = {pid: [] for pid in patients}
        for sl in slides:
            record = stored.get(sl.id)
            if record is None:
                continue
            report = slide_report(sl, reports.get(sl.patient_id, []))
            specimen = specimen_from_report(report.id if report else None, report.text if report else None)
            compared[sl.patient_id].append(SpecimenComparison(
                sl.id, record.model_id, report.id if report else None, specimen, slide_grade(record.class_fractions, specimen.specimen),
                report_grade(report.text) if report else None))
    result = {}
    for pid, specimens in compared.items():
        model_groups = [c.model.grade_group for c in specimens]
        report_groups = [c.report.grade_group for c in specimens if c.report is not None and c.report.grade_group is not None]
        result[pid] = PatientGradeComparison(pid, max(model_groups) if model_groups else None, max(report_groups) if report_groups else None,
                                             tuple(specimens))
    return result
