"""Synthetic prostate pathology reports: varied wording, Gleason phrases, negations and noise."""

from __future__ import annotations

import numpy as np

GRADE_GROUP = {(3, 3): 1, (3, 4): 2, (4, 3): 3, (4, 4): 4, (3, 5): 4, (5, 3): 4, (4, 5): 5, (5, 4): 5, (5, 5): 5}

_SPECIMENS = ["PROSTATE, NEEDLE BIOPSY", "Prostate, radical prostatectomy", "PROSTATE CORE BIOPSIES (12 cores)",
              "Prostate gland, resection", "Right and left prostate, TRUS-guided biopsy"]
_DIAGNOSIS_CANCER = ["Prostatic adenocarcinoma, acinar type.", "Adenocarcinoma of the prostate identified.",
                     "Invasive acinar adenocarcinoma present.", "Carcinoma involving the prostate."]
_SCORE = ["Gleason score {p}+{s}={t}.", "Gleason pattern {p} + {s} = {t}.", "Gleason grade {p}+{s} (total score {t}).",
          "Primary pattern {p}, secondary pattern {s}, Gleason score {t}.", "Combined Gleason score {t} ({p}+{s})."]
_GROUP = ["Grade group {g}.", "ISUP grade group {g}.", "WHO/ISUP grade group {g} of 5."]
_DIFFERENTIATION = {1: "well differentiated", 2: "moderately differentiated", 3: "moderately differentiated",
                    4: "poorly differentiated", 5: "poorly differentiated"}
_EXTENT = ["Tumour occupies {x}% of the submitted tissue.", "Carcinoma involves {x}% of core length.",
           "Estimated tumour volume {x}%."]
_NEGATIONS = ["No perineural invasion identified.", "Negative for lymphovascular invasion.",
              "No extraprostatic extension seen.", "Seminal vesicles negative for tumour.",
              "No evidence of high-grade PIN in the remaining cores.", "Margins are free of tumour."]
_POSITIVES = ["Perineural invasion is present.", "Focal extraprostatic extension present.",
              "Lymphovascular invasion identified."]
_BENIGN = ["Benign prostatic tissue.", "No evidence of malignancy.", "Negative for carcinoma.",
           "Benign prostatic hyperplasia with chronic inflammation.", "No carcinoma identified in all cores."]
_CLINICAL = ["Clinical history: elevated PSA ({psa} ng/mL).", "Indication: PSA {psa}, abnormal DRE.",
             "Clinical information: rising PSA, {psa} ng/mL."]


def synthesise_report(rng: np.random.Generator, gleason: tuple[int, int] | None, patient_id: str) -> tuple[str, int]:
    """A report and its label: 1 = high grade (Gleason score > 7), 0 = low grade or benign."""
    pick = lambda options: options[rng.integers(len(options))]  # noqa: E731
    rule = pick(["-", "=", "*", "|"]) * int(rng.integers(8, 40))
    lines = [
        rule,
        f"SURGICAL PATHOLOGY REPORT  Accession: S{rng.integers(10, 99)}-{rng.integers(10000, 99999)}",
        f"Patient ID: {rng.integers(1_000_000, 9_999_999)}  Case {patient_id}  Sample TCGA-{rng.integers(10, 99)}-{rng.integers(1000, 9999)}",
        rule,
        pick(_CLINICAL).format(psa=round(float(rng.uniform(3, 40)), 1)),
        "SPECIMEN: " + pick(_SPECIMENS),
        "DIAGNOSIS:",
    ]
    if gleason is None:
        lines += [pick(_BENIGN)] + list(rng.choice(_NEGATIONS[:4], size=2, replace=False))
        label = 0
    else:
        p, s = gleason
        group = GRADE_GROUP[gleason]
        body = [pick(_DIAGNOSIS_CANCER), pick(_SCORE).format(p=p, s=s, t=p + s)]
        if rng.random() < 0.7:
            body.append(pick(_GROUP).format(g=group))
        if rng.random() < 0.6:
            body.append(f"The tumour is {_DIFFERENTIATION[group]}.")
        body.append(pick(_EXTENT).format(x=int(rng.integers(5, 80))))
        body += list(rng.choice(_NEGATIONS, size=int(rng.integers(1, 4)), replace=False))
        if group >= 4 and rng.random() < 0.5:
            body.append(pick(_POSITIVES))
        lines += body
        label = int(p + s > 7)
    lines += [rule, f"Electronically signed {rng.integers(1, 28):02d}/{rng.integers(1, 12):02d}/20{rng.integers(18, 26)}"]
    return "\n".join(lines), label
