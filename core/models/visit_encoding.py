"""Patient visits -> the tensors a visit-sequence model reads (z-scored numeric, category codes, elapsed time).

The encoding is what a manifest's ``[input]`` declares, nothing implicit: numeric features z-scored with the declared
means and standard deviations; each categorical feature coded by the position of its value in the declared list of
levels (the first level is the baseline an explanation starts from); the time since the previous visit in days divided
by ``elapsed_scale_days`` (0 at the first visit). A value that is missing, empty, not a number or not a declared level
is filled by the feature's declared missing-value policy, or else refused with a ``VisitEncodingError`` naming the
patient's visit and feature, never passed on as NaN."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

import torch

from core.errors import PathReviewError

ELAPSED_SCALE_DAYS = 100.0  # the default: elapsed time enters the net in units of 100 days
# carry_forward: the patient's last valid value (the cohort mean / baseline level at a first visit);
# cohort_mean: the declared mean (a z-score of 0), or a category's baseline level; exclude_visit: the visit is left out.
MissingPolicy = Literal["carry_forward", "cohort_mean", "exclude_visit"]
MISSING_POLICIES: tuple[str, ...] = ("carry_forward", "cohort_mean", "exclude_visit")


class VisitEncodingError(PathReviewError):
    """A visit value the model cannot read and no missing-value policy fills."""


@dataclass
class VisitTensors:
    """A padded batch of patients' visit sequences, ready for ``VisitSequenceNet``."""

    numeric: torch.Tensor  # (B, T, F), z-scored
    categories: torch.Tensor  # (B, T, C)
    elapsed: torch.Tensor  # (B, T), days since the previous visit / elapsed_scale_days
    lengths: torch.Tensor  # (B,)
    labels: torch.Tensor  # (B, T), -1 on padding
    # per patient, per encoded visit: the features whose value was filled by a policy (shown as imputed)
    imputed: list[list[list[str]]] = field(default_factory=list)
    # per patient: the index (in the visits given) of each encoded visit; differs only when a visit was excluded
    kept: list[list[int]] = field(default_factory=list)


def _finite(raw: object) -> float | None:
    if isinstance(raw, bool) or not isinstance(raw, int | float | str):
        return None
    try:
        value = float(raw)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def _problem(raw: object, name: str, levels: list[str] | None) -> str:
    if raw is None:
        return f"no value for {name}"
    if levels is not None:
        return f"{name} is {raw!r}, not one of its levels {levels}"
    return f"{name} is {raw!r}, not a finite number"


def encode_sequences(
    sequences: Sequence[Sequence[tuple[float, dict, int | None]]],
    numeric_names: Sequence[str],
    means: Sequence[float],
    stds: Sequence[float],
    categorical: dict[str, list[str]],
    elapsed_scale_days: float = ELAPSED_SCALE_DAYS,
    missing: Mapping[str, str] | None = None,
    patient_ids: Sequence[str] | None = None,
) -> VisitTensors:
    """``sequences``: per patient, visits as (day, features, label) in time order. ``missing``: feature -> policy
    (``MISSING_POLICIES``); a feature without one must have a valid value at every visit. ``patient_ids`` name the
    patients in errors."""
    missing = missing or {}
    mean_of = dict(zip(numeric_names, means, strict=True))
    encoded: list[list[tuple[float, list[float], list[int], int | None, list[str]]]] = []
    kept: list[list[int]] = []
    for i, seq in enumerate(sequences):
        who = f"patient {patient_ids[i]!r}" if patient_ids is not None else f"sequence {i}"
        last: dict[str, object] = {}
        rows, indices = [], []
        for j, (day, feats, label) in enumerate(seq):
            values: list[float] = []
            codes: list[int] = []
            filled: list[str] = []
            excluded = False
            for name in [*numeric_names, *categorical]:
                levels = categorical.get(name)
                raw = feats.get(name)
                ok = raw in levels if levels is not None else _finite(raw) is not None
                if not ok:
                    policy = missing.get(name)
                    if policy == "exclude_visit":
                        excluded = True
                        break
                    if policy == "carry_forward" and name in last:
                        raw = last[name]
                    elif policy in ("carry_forward", "cohort_mean"):
                        raw = levels[0] if levels is not None else mean_of[name]
                    else:
                        raise VisitEncodingError(f"{who}, visit on day {day:g}: {_problem(raw, name, levels)} and the model declares "
                                                 "no missing-value policy for it (carry_forward, cohort_mean or exclude_visit)")
                    filled.append(name)
                last[name] = raw
                if levels is not None:
                    codes.append(levels.index(str(raw)))
                else:
                    values.append(_finite(raw) or 0.0)  # finite: checked or filled above
            if excluded:
                continue
            rows.append((float(day), values, codes, label, filled))
            indices.append(j)
        if not rows:
            raise VisitEncodingError(f"{who}: no visit left to encode once visits with missing values are excluded")
        encoded.append(rows)
        kept.append(indices)
    n, t_max = len(encoded), max(len(s) for s in encoded)
    numeric = torch.zeros(n, t_max, len(numeric_names))
    cats = torch.zeros(n, t_max, len(categorical), dtype=torch.long)
    elapsed = torch.zeros(n, t_max)
    labels = torch.full((n, t_max), -1.0)
    mu, sd = torch.tensor(list(means)), torch.tensor(list(stds))
    for i, rows in enumerate(encoded):
        for j, (day, values, codes, label, _filled) in enumerate(rows):
            numeric[i, j] = (torch.tensor(values) - mu) / sd
            if codes:
                cats[i, j] = torch.tensor(codes)
            elapsed[i, j] = 0.0 if j == 0 else (day - rows[j - 1][0]) / elapsed_scale_days
            labels[i, j] = -1 if label is None else label
    lengths = torch.tensor([len(rows) for rows in encoded])
    imputed = [[filled for *_, filled in rows] for rows in encoded]
    return VisitTensors(numeric, cats, elapsed, lengths, labels, imputed, kept)
