"""Patient visits -> the tensors a visit-sequence model reads (z-scored numeric, category codes, elapsed time)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

ELAPSED_SCALE_DAYS = 100.0  # elapsed time enters the net in units of 100 days


@dataclass
class VisitTensors:
    """A padded batch of patients' visit sequences, ready for ``VisitSequenceNet``."""

    numeric: torch.Tensor  # (B, T, F), z-scored
    categories: torch.Tensor  # (B, T, C)
    elapsed: torch.Tensor  # (B, T), days since the previous visit / ELAPSED_SCALE_DAYS
    lengths: torch.Tensor  # (B,)
    labels: torch.Tensor  # (B, T), -1 on padding


def encode_sequences(
    sequences: Sequence[Sequence[tuple[float, dict, int | None]]],
    numeric_names: Sequence[str],
    means: Sequence[float],
    stds: Sequence[float],
    categorical: dict[str, list[str]],
) -> VisitTensors:
    """``sequences``: per patient, visits as (day, features, label) in time order."""
    n, t_max = len(sequences), max(len(s) for s in sequences)
    numeric = torch.zeros(n, t_max, len(numeric_names))
    cats = torch.zeros(n, t_max, len(categorical), dtype=torch.long)
    elapsed = torch.zeros(n, t_max)
    labels = torch.full((n, t_max), -1.0)
    mu, sd = torch.tensor(means), torch.tensor(stds)
    for i, seq in enumerate(sequences):
        prev = None
        for j, (day, feats, label) in enumerate(seq):
            numeric[i, j] = (torch.tensor([float(feats[k]) for k in numeric_names]) - mu) / sd
            for c, (name, levels) in enumerate(categorical.items()):
                cats[i, j, c] = levels.index(feats[name])
            elapsed[i, j] = 0.0 if prev is None else (day - prev) / ELAPSED_SCALE_DAYS
            labels[i, j] = -1 if label is None else label
            prev = day
    lengths = torch.tensor([len(s) for s in sequences])
    return VisitTensors(numeric, cats, elapsed, lengths, labels)
