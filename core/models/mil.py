"""Multiple-instance heads: a bag of patch embeddings -> slide logits and per-patch weights."""

from __future__ import annotations

import torch
from torch import nn


class GatedAttentionMIL(nn.Module):
    """Gated attention pooling (Ilse et al. 2018):
    a_i = softmax_i(w^T (tanh(V z_i) * sigmoid(U z_i))), slide embedding = sum_i a_i z_i.

    Attention weights depend on bag size; they rank patches, they are not patch predictions.
    """

    def __init__(self, in_dim: int, num_classes: int, hidden: int = 64, attention_dim: int = 32, dropout: float = 0.25) -> None:
        super().__init__()
        self.embed = nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU(), nn.Dropout(dropout))
        self.attention_v = nn.Linear(hidden, attention_dim)
        self.attention_u = nn.Linear(hidden, attention_dim)
        self.attention_w = nn.Linear(attention_dim, 1)
        self.classifier = nn.Linear(hidden, num_classes)

    def forward(self, bag: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``bag``: (N, in_dim) patch embeddings -> (class logits (C,), attention (N,))."""
        h = self.embed(bag)
        scores = self.attention_w(torch.tanh(self.attention_v(h)) * torch.sigmoid(self.attention_u(h))).squeeze(-1)
        weights = torch.softmax(scores, dim=0)
        return self.classifier(weights @ h), weights
