"""Training the demo's visit-sequence net (NIV within 90 days) on held-out patient splits."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from core.models.sequence import VisitSequenceNet
from core.models.visit_encoding import VisitTensors


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
