"""Model vs report grade group: the specimen type a report gives, the pairing rule's outcome and the worklist cell."""

from __future__ import annotations

from core.heatmaps.grade_comparison import PatientGradeComparison, specimen_from_report
from dashboard.pages.cohort import grade_cell


def test_specimen_type_comes_from_the_report_or_is_a_stated_assumption():
    assert specimen_from_report("R1", "SPECIMEN: Prostate, radical prostatectomy").specimen == "prostatectomy"
    biopsy = specimen_from_report("R2", "SPECIMEN: PROSTATE, NEEDLE BIOPSY")
    assert (biopsy.specimen, biopsy.source) == ("biopsy", "from report R2")
    unknown = specimen_from_report("R3", "Prostate gland, resection")
    assert unknown.specimen == "biopsy" and "does not name the specimen" in unknown.source and "assumed" in unknown.source
    assert "no report" in specimen_from_report(None, None).source


def test_agreement_and_worklist_cell():
    assert PatientGradeComparison("P1", 2, 2, ()).agreement == "agree"
    assert PatientGradeComparison("P1", 0, 3, ()).agreement == "disagree"
    assert PatientGradeComparison("P1", 2, None, ()).agreement == "not compared"
    assert PatientGradeComparison("P1", None, 2, ()).agreement == "not compared"
    assert grade_cell(PatientGradeComparison("P1", 2, 3, ())) == "2 vs 3 · disagree"
    assert grade_cell(PatientGradeComparison("P1", 0, 0, ())) == "benign vs benign · agree"
    assert grade_cell(PatientGradeComparison("P1", 4, None, ())) == "4 vs — · no report grade"
    assert grade_cell(PatientGradeComparison("P1", None, 2, ())) == "—" and grade_cell(None) == "—"
