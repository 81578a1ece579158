"""Training the demo's visit-sequence net (NIV within 90 days) on held-out patient splits."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from core.models.sequence import VisitSequenceNet


@dataclass
class VisitTensors:
    """A padded batch of patients' visit sequences, ready for ``VisitSequenceNet``."""

    numeric: torch.Tensor  # (B, T, F), z-scored
    categories: torch.Tensor  # (B, T, C)
    elapsed: torch.Tensor  # (B, T), days since previous visit / 100
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
            elapsed[i, j] = 0.0 if prev is None else (day - prev) / 100.0
            labels[i, j] = -1 if label is None else label
            prev = day
    lengths = torch.tensor([len(s) for s in sequences])
    return VisitTensors(numeric, cats, elapsed, lengths, labels)


def train_sequence_net(data: VisitTensors, params: dict, epochs: int, seed: int, progress: Callable[[str], None]) -> VisitSequenceNet:
    torch.manual_seed(seed)
    model = VisitSequenceNet(**params)
    optimiser = torch.optim.Adam(model.parameters(), lr=5e-3, weight_decay=1e-4)
    mask = data.labels >= 0
    positives = float(data.labels[mask].mean())
    loss_fn = nn.BCEWithLogitsLoss(pos_weight=torch.tensor((1 - positives) / max(positives, 1e-3)))
    model.train()
    for epoch in range(epochs):
        order = torch.randperm(len(data.lengths))
        total = 0.0
        for start in range(0, len(order), 16):
            b = order[start : start + 16]
            logits = model(data.numeric[b], data.categories[b], data.elapsed[b], data.lengths[b])
            m = mask[b]
            loss = loss_fn(logits[m], data.labels[b][m])
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            total += loss.item()
        if (epoch + 1) % 20 == 0:
            progress(f"sequence net epoch {epoch + 1}/{epochs}: loss {total:.3f}")
    return model.eval()


@torch.no_grad()
def visit_risks(model: VisitSequenceNet, data: VisitTensors) -> torch.Tensor:
    """(B, T) probability of NIV within 90 days at each visit."""
    return torch.sigmoid(model(data.numeric, data.categories, data.elapsed, data.lengths))


def feature_standardisation(values: np.ndarray) -> tuple[list[float], list[float]]:
    return values.mean(0).round(4).tolist(), np.maximum(values.std(0), 1e-3).round(4).tolist()
