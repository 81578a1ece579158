"""Synthetic prostate-cancer follow-up: one man's PSA visits, biopsies and treatment, and the progression label.

A latent aggressiveness sets the grade found at the diagnostic biopsy and how fast the tumour's PSA grows. Most men with
grade group 4 or 5, half of those with 3 and a tenth of those with 2 have a radical prostatectomy a few months after
diagnosis. The others go on active surveillance: PSA every three months or so, re-biopsies at about one and two and a
half years. Their tumour upgrades once its PSA has about doubled (so faster-growing tumours upgrade sooner), and a
re-biopsy after that finds the upgrade nine times in ten. Progression is the upgrade found on re-biopsy; a surveillance
visit is labelled positive when progression follows within ``PROGRESSION_HORIZON_DAYS``, negative when follow-up shows
none in that time, and is left unlabelled when follow-up ends sooner. Men treated at diagnosis were never on
surveillance: their visits carry no label. Visits stop at progression.

A single visit says little about when a man will upgrade: the tumour's starting PSA varies widely, and PI-RADS and DRE
reflect his aggressiveness only loosely. The PSA kinetics over several visits say more, which is what a sequence model
can use and a one-visit model cannot.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

PROGRESSION_HORIZON_DAYS = 365.0
REBIOPSY_INTERVALS_DAYS = ((330, 400), (500, 600))  # after the diagnostic biopsy: at about one and two and a half years
DEVELOPMENT_STREAM = 101
PIRADS = ("1-2", "3", "4", "5")
DRE = ("normal", "nodule", "extensive")
NUMERIC_FEATURES = ("psa", "psa_density", "free_psa_percent", "prostate_volume", "age", "bmi", "days_since_previous")
CATEGORICAL = {"pirads": list(PIRADS), "dre": list(DRE)}
FEATURE_UNITS = {"psa": "ng/mL", "psa_density": "ng/mL/cc", "free_psa_percent": "%", "prostate_volume": "mL", "age": "years",
                 "bmi": "kg/m²", "days_since_previous": "days"}
FEATURE_RANGES = {"psa": [0, 500], "psa_density": [0, 10], "free_psa_percent": [1, 60], "prostate_volume": [10, 250],
                  "age": [35, 95], "bmi": [15, 60], "days_since_previous": [0, 1500]}
STAGES = ("cT1c", "cT2a", "cT2b", "cT2c")
# Grade group -> (primary, secondary) Gleason patterns; group 4 and 5 have the variants a report may state.
GLEASON_OF_GROUP = {1: [(3, 3)], 2: [(3, 4)], 3: [(4, 3)], 4: [(4, 4), (3, 5), (5, 3)], 5: [(4, 5), (5, 4), (5, 5)]}
GRADE_GROUP = {g: group for group, gs in GLEASON_OF_GROUP.items() for g in gs}


@dataclass(frozen=True)
class Specimen:
    code: str  # B1 diagnostic biopsy, B2 re-biopsy, RP radical prostatectomy
    kind: str  # biopsy | prostatectomy
    day: float  # days since the first visit
    gleason: tuple[int, int] | None  # what the tissue shows (None: benign)


@dataclass(frozen=True)
class Visit:
    day: float
    features: dict[str, float | str]
    label: int | None


@dataclass(frozen=True)
class ProstateHistory:
    age: float
    stage: str
    specimens: list[Specimen]
    visits: list[Visit]
    progression_day: float | None


def _grade_group(z: float) -> int | None:
    for cut, group in ((-1.1, None), (-0.1, 1), (0.5, 2), (0.9, 3), (1.3, 4)):
        if z < cut:
            return group
    return 5


def _gleason(rng: np.random.Generator, group: int | None) -> tuple[int, int] | None:
    if group is None:
        return None
    options = GLEASON_OF_GROUP[group]
    return options[int(rng.integers(len(options)))]


def synthesise_history(rng: np.random.Generator) -> ProstateHistory:
    aggressiveness = float(rng.normal())
    age = float(np.clip(rng.normal(66, 7), 48, 82).round())
    bmi = float(np.clip(rng.normal(28, 4), 19, 45))
    volume0 = float(np.clip(rng.lognormal(np.log(45), 0.35), 18, 150))
    growth = float(max(0.02, 0.03 + 0.9 / (1 + np.exp(-2.5 * (aggressiveness - 0.3))) + rng.normal(0, 0.04)))  # log PSA per year
    tumour_psa0 = float(rng.lognormal(1.0, 0.9))
    group = _grade_group(aggressiveness + rng.normal(0, 0.45))
    stage = STAGES[int(np.clip(round(0.8 * aggressiveness + rng.normal(0.4, 0.7)), 0, 3))]
    biopsy_day = float(rng.integers(14, 60))
    specimens = [Specimen("B1", "biopsy", biopsy_day, _gleason(rng, group))]

    progression: float | None = None
    follow_up = float(rng.uniform(900, 1400))
    treated_at_diagnosis = group is not None and (group >= 4 or (group == 3 and rng.random() < 0.5) or (group == 2 and rng.random() < 0.1))
    if treated_at_diagnosis:
        assert group is not None
        progression = biopsy_day + float(rng.uniform(90, 300))
        specimens.append(Specimen("RP", "prostatectomy", progression, _gleason(rng, min(5, group + int(rng.random() < 0.25)))))
    else:
        # Surveillance: the tumour upgrades once its PSA has about doubled; a re-biopsy after that finds it nine times in ten.
        upgrade_day = biopsy_day + 365 * float(rng.uniform(0.92, 1.08)) * np.log(2) / growth
        rebiopsy = biopsy_day
        for low, high in REBIOPSY_INTERVALS_DAYS:
            rebiopsy += float(rng.uniform(low, high))
            if rebiopsy >= follow_up:
                break
            upgraded = rebiopsy >= upgrade_day and rng.random() < 0.95
            new_group = min(5, (group or 1) + 1 + int(rng.random() < 0.3)) if upgraded else group
            specimens.append(Specimen(f"B{sum(sp.kind == 'biopsy' for sp in specimens) + 1}", "biopsy", rebiopsy, _gleason(rng, new_group)))
            if upgraded:
                progression = rebiopsy
                if rng.random() < 0.5:
                    specimens.append(Specimen("RP", "prostatectomy", rebiopsy + float(rng.uniform(60, 150)), _gleason(rng, new_group)))
                break

    end = progression if progression is not None else follow_up
    days = [0.0]
    while True:
        gap = float(rng.uniform(70, 110)) * (2 if rng.random() < 0.15 else 1)  # about three-monthly; a missed visit doubles the gap
        if days[-1] + gap >= end - 5:
            break
        days.append(days[-1] + gap)
    if progression is not None and len(days) < 3:  # at least a referral, a result and a pre-treatment visit
        days = sorted({0.0, *np.linspace(0, end - 10, 3).round().tolist()})
    pirads_z = 1.2 + 0.5 * aggressiveness + rng.normal(0, 1.0)  # the MRI lesion's score: loosely tied to aggressiveness
    visits, previous = [], None
    for day in days:
        years = day / 365.0
        volume = volume0 * (1 + 0.02 * years)
        psa_true = 0.07 * volume + tumour_psa0 * np.exp(growth * years)
        psa = float(psa_true * rng.lognormal(0, 0.05))
        measured_volume = float(volume * rng.lognormal(0, 0.1))
        free = (0.25 * 0.07 * volume + 0.1 * (psa_true - 0.07 * volume)) / psa_true * 100 + rng.normal(0, 2.0)
        pirads = PIRADS[int(np.clip(np.floor(pirads_z + rng.normal(0, 0.3)), 0, 3))]
        dre_z = 0.6 * aggressiveness + rng.normal(0, 0.8)
        features: dict[str, float | str] = {
            "psa": round(psa, 2), "psa_density": round(psa / measured_volume, 3), "free_psa_percent": round(float(np.clip(free, 3, 45)), 1),
            "prostate_volume": round(measured_volume, 1), "age": round(age + years, 1), "bmi": round(bmi + rng.normal(0, 0.4), 1),
            "days_since_previous": 0.0 if previous is None else round(day - previous),
            "pirads": pirads, "dre": DRE[0 if dre_z < 1.0 else 1 if dre_z < 2.0 else 2],
        }
        label: int | None
        if treated_at_diagnosis:
            label = None
        elif progression is not None:
            label = int(progression - day <= PROGRESSION_HORIZON_DAYS)
        else:
            label = 0 if follow_up - day >= PROGRESSION_HORIZON_DAYS else None
        visits.append(Visit(float(round(day)), features, label))
        previous = day
    return ProstateHistory(age, stage, sorted(specimens, key=lambda s: s.day), visits, progression)


def development_cohort(seed: int, n_men: int) -> list[ProstateHistory]:
    """Visits-only men from the same generator, on streams apart from the demo's own men: the extra training data a
    sequence model needs (a few dozen men are too few to learn PSA kinetics from), never shown in the workspace."""
    return [synthesise_history(np.random.default_rng([seed, DEVELOPMENT_STREAM, i])) for i in range(n_men)]
