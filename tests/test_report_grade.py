"""The grade group a report states, read from real-looking report sentences."""

from __future__ import annotations

import pytest

from core.models.report_grade import report_grade


@pytest.mark.parametrize(("text", "group"), [
    ("DIAGNOSIS: Prostatic adenocarcinoma, acinar type. Gleason score 3+4=7.", 2),
    ("Adenocarcinoma of the prostate identified. Gleason score 7 (4+3). Tumour occupies 35% of the submitted tissue.", 3),
    ("Invasive acinar adenocarcinoma present. Gleason pattern 4 + 3 = 7.", 3),
    ("Gleason grade 3+3 (total score 6). Carcinoma involves 10% of core length.", 1),
    ("Primary pattern 4, secondary pattern 5, Gleason score 9.", 5),
    ("Combined Gleason score 8 (5+3).", 4),
    ("Carcinoma involving the prostate. ISUP grade group 2.", 2),
    ("Prostatic adenocarcinoma. WHO/ISUP grade group 4 of 5.", 4),
    ("Adenocarcinoma, ISUP 3, involving 2 of 12 cores.", 3),
    ("Acinar adenocarcinoma, grade group 5 (Gleason score 4+5=9).", 5),
    ("Prostatic adenocarcinoma, Gleason score 6.", 1),
    ("Prostatic adenocarcinoma, Gleason sum of 10.", 5),
    ("Right base: adenocarcinoma, 3+3=6. Left apex: adenocarcinoma, 4+4=8.", 4),  # several cores: the highest
    ("PROSTATE, NEEDLE BIOPSY. Adenocarcinoma, Gleason score: 3 + 4 = 7 (grade group 2). No perineural invasion identified.", 2),
])
def test_stated_grade_groups(text, group):
    assert report_grade(text).grade_group == group


def test_negated_and_tertiary_patterns_are_not_read():
    text = "Adenocarcinoma, Gleason score 3+4=7, grade group 2. No Gleason pattern 5 identified. No 4+5=9 component."
    assert report_grade(text).grade_group == 2
    text = "Radical prostatectomy: adenocarcinoma, Gleason score 4+3=7 with tertiary pattern 5 (<5%). Grade group 3."
    assert report_grade(text).grade_group == 3


def test_a_typo_in_the_sum_is_not_read_and_score_seven_alone_is_ambiguous():
    assert report_grade("Adenocarcinoma, Gleason score 3+4=8.").grade_group is None
    assert report_grade("Adenocarcinoma, Gleason score 7.").grade_group is None
    assert report_grade("Adenocarcinoma, Gleason score 3+4=8. Grade group 2.").grade_group == 2


@pytest.mark.parametrize("text", [
    "DIAGNOSIS: Benign prostatic tissue. No perineural invasion identified.",
    "No carcinoma identified in all cores. Seminal vesicles negative for tumour.",
    "Negative for carcinoma. Benign prostatic hyperplasia with chronic inflammation.",
    "No evidence of malignancy.",
])
def test_benign_reports_are_no_tumour(text):
    grade = report_grade(text)
    assert grade.grade_group == 0 and grade.summary == "no tumour"


def test_cancer_without_a_grade_and_unrelated_text_state_no_grade():
    assert report_grade("Prostatic adenocarcinoma, acinar type. Seminal vesicles negative for tumour.").grade_group is None
    assert report_grade("Clinical history: elevated PSA (5.8 ng/mL). Indication: abnormal DRE.").grade_group is None
    assert report_grade("").summary == "no grade stated"


def test_statements_keep_their_words_and_patterns():
    grade = report_grade("Adenocarcinoma. Gleason score 7 (4+3). ISUP grade group 3.")
    assert [(s.grade_group, s.primary, s.secondary) for s in grade.statements] == [(3, 4, 3), (3, None, None)]
    assert grade.statements[0].text == "Gleason score 7 (4+3"
    assert grade.summary == "Gleason 4+3=7, grade group 3"


def test_specimen_type_from_the_report():
    from core.models.report_grade import report_specimen

    assert report_specimen("SPECIMEN: Prostate, radical prostatectomy. Prior biopsy: 3+4=7.") == "prostatectomy"
    assert report_specimen("SPECIMEN: PROSTATE, NEEDLE BIOPSY") == "biopsy"
    assert report_specimen("PROSTATE CORE BIOPSIES (12 cores)") == "biopsy"
    assert report_specimen("Prostate gland, resection") is None
