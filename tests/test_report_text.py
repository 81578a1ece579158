"""What the report model reads: identifiers, dates and non-grade numbers removed; grade evidence kept."""

from __future__ import annotations

import pytest

from core.models.report_text import ModelWords, clean_report, report_tokens, token_spans

REPORT = """==============================
SURGICAL PATHOLOGY REPORT   Accession: {accession}
Patient ID: {mrn}   Case {case}   Sample {barcode}   MRN {mrn}
Clinical history: PSA {psa} ng/mL, prostate volume {volume} mL.
Collected {collected}. Received {received}.
SPECIMEN: Prostate, needle biopsy ({cores} cores), core length {length} mm.
DIAGNOSIS: Adenocarcinoma, Gleason score 4+3=7 (grade group 3 of 5). Primary pattern 4, secondary pattern 3.
No pattern 5 identified. GG3. pT2c N0.
Electronically signed {signed}"""

FIRST = dict(accession="S21-12345", mrn="1234567", case="P001", barcode="TCGA-2A-AAYO-01Z", psa="5.8", volume="42",
             collected="12 Mar 2021", received="2021-03-13", cores="12", length="14", signed="03/15/2021")
SECOND = dict(accession="SP19-987", mrn="7654321", case="LAB-0999", barcode="TCGA-HC-7740-01A", psa="17.25", volume="88",
              collected="September 3, 2019", received="2019-09-04", cores="6", length="9.5", signed="4 Sept 2019")


def test_identifiers_dates_and_measurements_do_not_reach_the_model():
    first, second = REPORT.format(**FIRST), REPORT.format(**SECOND)
    assert report_tokens(first) == report_tokens(second)
    cleaned = clean_report(first)
    for value in FIRST.values():
        assert value not in cleaned, value
    assert "[ID]" in cleaned and "[DATE]" in cleaned and "[#]" in cleaned


def test_grade_evidence_is_kept():
    tokens = report_tokens(REPORT.format(**FIRST))
    text = " ".join(tokens)
    assert "gleason score 4 3 7 grade group 3 5" in text
    assert "primary pattern 4 secondary pattern 3" in text
    assert "no pattern 5 identified" in text and "grade group 3 pt" in text  # GG3 spelled out; the stage's digits removed
    assert not {"2021", "2019", "12", "14", "42", "58", "8"} & set(tokens)


@pytest.mark.parametrize(("text", "tokens"), [
    ("Gleason 4 + 5 = 9", ["gleason", "4", "5", "9"]),
    ("Grade group 2, PSA 5.8", ["grade", "group", "2", "psa"]),  # a decimal after a grade is not grade evidence
    ("patterns 3, 4 and 5 present", ["patterns", "3", "4", "5", "present"]),
    ("Gleason score 12", ["gleason", "score"]),  # no Gleason number is above 10
    ("tumour in 3 of 12 cores", ["tumour", "cores"]),
])
def test_hand_worked_numbers(text, tokens):
    assert report_tokens(text) == tokens


def test_the_models_tokens_read_the_same_when_joined_again():
    """LIME's text path joins the tokens it keeps and reads them again: that must give the same tokens."""
    for values in (FIRST, SECOND):
        tokens = report_tokens(REPORT.format(**values))
        assert report_tokens(" ".join(tokens)) == tokens


def test_model_words_are_read_as_they_stand():
    """A report already in the model's words is not cleaned again: "no 5" keeps its 5, which a raw report would not."""
    assert report_tokens("no 5 identified") == ["no", "identified"]
    assert report_tokens(ModelWords.of(["no", "5", "identified"])) == ["no", "5", "identified"]


def test_spans_mark_removed_parts_as_unread():
    spans = token_spans("Case P001 shows pattern 4")
    cleaned = clean_report("Case P001 shows pattern 4")
    assert [(cleaned[a:b], t) for a, b, t in spans if t is not None] == [("Case", "case"), ("shows", "shows"), ("pattern", "pattern"), ("4", "4")]
    assert "[ID]" in [cleaned[a:b] for a, b, t in spans if t is None]
