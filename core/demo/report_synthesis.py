"""Synthetic prostate pathology reports, one per specimen: biopsy or prostatectomy wording, the patient's one MRN and
case number, dates that match the specimen's day, and the noise of real reports (sections in varying order,
abbreviations, negations, typos, grades written several ways)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

import numpy as np

from core.demo.prostate_history import GRADE_GROUP

_DIFFERENTIATION = {1: "well differentiated", 2: "moderately differentiated", 3: "moderately differentiated",
                    4: "poorly differentiated", 5: "poorly differentiated"}
_SPECIMEN = {
    "biopsy": ["PROSTATE, NEEDLE CORE BIOPSIES ({cores} cores)", "Prostate, TRUS-guided needle biopsy, {cores} cores",
               "Prostate, MRI-targeted and systematic core biopsies ({cores} cores)", "PROSTATE BX x{cores}"],
    "prostatectomy": ["PROSTATE AND SEMINAL VESICLES, RADICAL PROSTATECTOMY", "Prostate, radical prostatectomy (robot-assisted)",
                      "RADICAL PROSTATECTOMY SPECIMEN: prostate with bilateral seminal vesicles"],
}
_CANCER = ["Prostatic adenocarcinoma, acinar type.", "Adenocarcinoma of the prostate.", "Acinar adenocarcinoma identified.",
           "Prostatic adenoca, acinar type."]
_BENIGN = ["Benign prostatic tissue.", "No evidence of malignancy.", "Negative for carcinoma.",
           "Benign prostatic tissue with chronic inflammation.", "No carcinoma identified in any core."]
_SCORE_SUM = ["Gleason score {p}+{s}={t}.", "Gleason pattern {p} + {s} = {t}.", "Gleason grade {p}+{s} (total score {t}).",
              "Combined Gleason score {t} ({p}+{s}).", "Gleasn score {p}+{s}={t}."]  # the last with a typo, as typed
_SCORE_WORDS = ["Primary pattern {p}, secondary pattern {s}.", "Gleason score {t}: primary pattern {p}, secondary {s}.",
                "Predominant pattern {p} with a lesser component of pattern {s}."]
_GROUP = ["Grade group {g}.", "ISUP grade group {g}.", "WHO/ISUP grade group {g} of 5.", "GG{g}."]
_BIOPSY_EXTENT = ["Carcinoma involves {n} of {cores} cores, up to {x}% of core length.", "Tumour present in {n}/{cores} cores ({mm} mm in total).",
                  "Max. core involvement {x}%."]
_RP_EXTENT = ["Tumour volume: approx. {x}% of the gland.", "Dominant nodule {mm} mm, {side} peripheral zone.",
              "Tumour is multifocal, the dominant focus in the {side} lobe."]
_NEGATIONS = ["No perineural invasion identified.", "Negative for lymphovascular invasion.", "No pattern 5 identified.",
              "No cribriform architecture seen."]
_OTHER_CORES = ["Other positive cores: Gleason pattern 3 only.", "Remaining positive cores ({n}) show pattern 3 only.",
                "Additional foci of Gleason pattern 3 only in {n} core(s)."]
_HIGH_GRADE_ABSENT = ["No Gleason pattern 5 or cribriform pattern 4 identified.", "Pattern 4 not identified.",
                      "Negative for high-grade (pattern 4 or 5) carcinoma."]
_NEGATIONS_BIOPSY = ["No HGPIN in the remaining cores."]
_NEGATIONS_RP = ["No extraprostatic extension seen.", "Seminal vesicles negative for tumour.", "Margins are free of tumour.",
                 "Lymph nodes negative (0/{nodes})."]
_HIGH_GRADE_FINDINGS = ["Perineural invasion is present.", "Cribriform pattern present.", "Intraductal carcinoma identified.",
                        "Focal extraprostatic extension present."]
_CLINICAL = ["Clinical history: elevated PSA ({psa} ng/mL).", "Indication: PSA {psa}, abnormal DRE.",
             "Clinical info: rising PSA, {psa} ng/mL; on active surveillance.", "Hx: PSA {psa} ng/mL, PI-RADS lesion on MRI."]
_CLINICAL_RP = ["Clinical history: biopsy-proven adenocarcinoma, for radical prostatectomy.",
                "Indication: prostate cancer, treatment by radical prostatectomy."]
_STAGE = {1: "pT2", 2: "pT2", 3: "pT2", 4: "pT3a", 5: "pT3b"}


@dataclass(frozen=True)
class ReportIdentity:
    """What identifies one patient in every report: one MRN, one case number, and the calendar of their visits."""

    mrn: str
    case: str
    first_visit: date


def report_identity(rng: np.random.Generator, patient_id: str) -> ReportIdentity:
    first = date(2017, 1, 1) + timedelta(days=int(rng.integers(0, 4 * 365)))
    return ReportIdentity(mrn=str(rng.integers(1_000_000, 9_999_999)), case=patient_id, first_visit=first)


def specimen_date(identity: ReportIdentity, day: float) -> date:
    return identity.first_visit + timedelta(days=int(round(day)))


def synthesise_report(rng: np.random.Generator, identity: ReportIdentity, kind: str, day: float, gleason: tuple[int, int] | None,
                      psa: float, cores: int) -> str:
    """One specimen's report. ``gleason`` is what the report states (it may disagree with the tissue)."""
    pick = lambda options: options[int(rng.integers(len(options)))]  # noqa: E731
    collected = specimen_date(identity, day)
    signed = collected + timedelta(days=int(rng.integers(2, 9)))
    accession = f"S{collected.year % 100:02d}-{rng.integers(10000, 99999)}"
    rule = pick(["-", "=", "*"]) * int(rng.integers(20, 50))
    header = [rule, f"SURGICAL PATHOLOGY REPORT    Accession: {accession}",
              f"MRN {identity.mrn}    Case {identity.case}    Collected: {collected:%d %b %Y}", rule]
    clinical = (pick(_CLINICAL).format(psa=round(psa, 1)) if kind == "biopsy" else pick(_CLINICAL_RP))
    specimen = "SPECIMEN: " + pick(_SPECIMEN[kind]).format(cores=cores)
    diagnosis = ["DIAGNOSIS:"]
    if gleason is None:
        benign = _BENIGN if kind == "biopsy" else [b for b in _BENIGN if "core" not in b]
        diagnosis += [pick(benign)] + [str(x) for x in rng.choice(_NEGATIONS[:2] + (_NEGATIONS_BIOPSY if kind == "biopsy" else []), size=1)]
    else:
        p, s = gleason
        group = GRADE_GROUP[gleason]
        diagnosis.append(pick(_CANCER))
        form = rng.random()
        if form < 0.6:
            diagnosis.append(pick(_SCORE_SUM).format(p=p, s=s, t=p + s))
        elif form < 0.85:
            diagnosis.append(pick(_SCORE_WORDS).format(p=p, s=s, t=p + s))
        if form >= 0.6 or rng.random() < 0.7:
            diagnosis.append(pick(_GROUP).format(g=group))
        if kind == "biopsy" and group >= 2 and rng.random() < 0.5:  # the worst core is graded above; the others may be lower
            diagnosis.append(pick(_OTHER_CORES).format(n=int(rng.integers(1, cores))))
        if p + s <= 7 and rng.random() < 0.4:
            diagnosis.append(pick(_HIGH_GRADE_ABSENT[: 3 if p == s == 3 else 1]))
        if rng.random() < 0.5:
            diagnosis.append(f"The tumour is {_DIFFERENTIATION[group]}.")
        if kind == "biopsy":
            n = int(rng.integers(1, cores + 1))
            diagnosis.append(pick(_BIOPSY_EXTENT).format(n=n, cores=cores, x=int(rng.integers(5, 90)), mm=round(float(rng.uniform(1, 30)), 1)))
        else:
            diagnosis.append(pick(_RP_EXTENT).format(x=int(rng.integers(5, 40)), mm=int(rng.integers(6, 30)), side=pick(["left", "right"])))
            diagnosis.append(f"Pathological stage: {_STAGE[group]} N0.")
        negations = [n for n in _NEGATIONS if not (n.startswith("No pattern 5") and 5 in gleason)]
        if kind == "prostatectomy":
            negations += [n.format(nodes=int(rng.integers(4, 18))) for n in _NEGATIONS_RP]
        else:
            negations += _NEGATIONS_BIOPSY
        diagnosis += [str(x) for x in rng.choice(negations, size=int(rng.integers(1, 4)), replace=False)]
        if group >= 3 and rng.random() < 0.5:
            diagnosis.append(pick(_HIGH_GRADE_FINDINGS))
    sections = [[clinical], [specimen], diagnosis]
    if rng.random() < 0.4:  # some labs print the specimen first, some the diagnosis first
        order = rng.permutation(3)
        sections = [sections[int(i)] for i in order]
    lines = header + [line for section in sections for line in section]
    lines += [rule, f"Electronically signed {signed:%m/%d/%Y}"]
    return "\n".join(lines)
