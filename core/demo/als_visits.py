"""Synthetic ALS visit histories (the cohort of Ferreira et al.) with a trajectory-dependent "NIV within 90 days" label:
noisy measurements, missed visits, and a ventilation threshold that differs between patients."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

DAYS_PER_MONTH = 30.44
NIV_HORIZON_DAYS = 90.0
ONSET_TYPES = ("spinal", "bulbar", "mixed")
DYNAMIC_FEATURES = (
    "alsfrs_respiratory", "alsfrs_bulbar", "alsfrs_fine_motor", "alsfrs_gross_motor", "fvc_percent", "weight_kg",
)
STATIC_FEATURES = ("age", "sex_male")
NUMERIC_FEATURES = DYNAMIC_FEATURES + STATIC_FEATURES
FEATURE_UNITS = {"alsfrs_respiratory": "points", "alsfrs_bulbar": "points", "alsfrs_fine_motor": "points",
                 "alsfrs_gross_motor": "points", "fvc_percent": "% predicted", "weight_kg": "kg", "age": "years", "sex_male": "0/1"}
FEATURE_RANGES = {"alsfrs_respiratory": [0, 12], "alsfrs_bulbar": [0, 12], "alsfrs_fine_motor": [0, 12], "alsfrs_gross_motor": [0, 12],
                  "fvc_percent": [5, 160], "weight_kg": [25, 250], "age": [18, 110], "sex_male": [0, 1]}
NIV_FVC_THRESHOLD = {"spinal": 50.0, "bulbar": 68.0, "mixed": 60.0}


@dataclass(frozen=True)
class PatientProfile:
    age: float
    sex: str
    onset_type: str


@dataclass(frozen=True)
class SyntheticVisit:
    day: float
    features: dict[str, float | str]
    label: int


def synthesise_visits(rng: np.random.Generator) -> tuple[PatientProfile, list[SyntheticVisit]]:
    """One patient's visits (3 to 15, irregular gaps) until non-invasive ventilation starts."""
    profile = PatientProfile(
        age=float(np.clip(rng.normal(62, 10), 30, 88).round()),
        sex=str(rng.choice(["M", "F"], p=[0.6, 0.4])),
        onset_type=str(rng.choice(ONSET_TYPES, p=[0.6, 0.3, 0.1])),
    )
    rate = rng.lognormal(np.log(0.8), 0.45)  # ALSFRS-R points lost per month
    bulbar = profile.onset_type != "spinal"
    fvc0 = float(np.clip(rng.normal(95, 12), 70, 125))
    fvc_slope = rate * (2.6 if bulbar else 1.8) * rng.uniform(0.8, 1.2)  # % predicted per month
    # Ventilation starts at a higher FVC when bulbar weakness adds to the respiratory load.
    niv_fvc = NIV_FVC_THRESHOLD[profile.onset_type] + rng.normal(0, 10)  # clinicians start NIV at different FVCs
    niv_month = (fvc0 - niv_fvc) / fvc_slope  # months from onset
    # Patients are first seen at different points of their disease, so a single visit's values mix stage and speed.
    entry_month = float(np.clip(rng.uniform(0, 15), 0, max(0.0, niv_month - 4)))
    niv_day = max(120.0, (niv_month - entry_month) * DAYS_PER_MONTH)
    weight0 = rng.normal(78 if profile.sex == "M" else 64, 8)
    n_visits = int(rng.integers(3, 16))
    gaps = rng.uniform(35, 140, n_visits - 1) * np.where(rng.random(n_visits - 1) < 0.15, 2, 1)  # some visits missed
    days = np.concatenate([[0.0], np.cumsum(gaps)])
    if days[-1] > niv_day:  # no visits once ventilation has begun
        days = days[days <= niv_day]
        if len(days) < 3:
            days = np.linspace(0, niv_day - rng.uniform(5, 40), 3).round()
    visits = []
    for day in days:
        months = entry_month + day / DAYS_PER_MONTH
        features: dict[str, float | str] = {
            "alsfrs_respiratory": 12 - rate * (0.55 if bulbar else 0.35) * months + rng.normal(0, 0.9),
            "alsfrs_bulbar": 12 - rate * (0.9 if bulbar else 0.25) * months + rng.normal(0, 0.9),
            "alsfrs_fine_motor": 12 - rate * (0.3 if bulbar else 0.8) * months + rng.normal(0, 0.9),
            "alsfrs_gross_motor": 12 - rate * (0.3 if bulbar else 0.9) * months + rng.normal(0, 0.9),
            "fvc_percent": fvc0 - fvc_slope * months + rng.normal(0, 7),  # spirometry is effort-dependent
            "weight_kg": weight0 - 0.35 * rate * months + rng.normal(0, 0.8),
        }
        for name in DYNAMIC_FEATURES[:4]:
            features[name] = float(np.clip(features[name], 0, 12))
        features = {k: round(float(v), 2) for k, v in features.items()}
        features.update({"age": profile.age, "sex_male": float(profile.sex == "M"), "onset_type": profile.onset_type})
        label = int(0 <= niv_day - day <= NIV_HORIZON_DAYS)
        visits.append(SyntheticVisit(day=float(round(day)), features=features, label=label))
    return profile, visits
