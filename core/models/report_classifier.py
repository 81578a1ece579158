"""TF-IDF n-gram logistic regression as a torch module, so reports are scored in batches on the device."""

from __future__ import annotations

import torch
from torch import nn


class TfidfLogisticRegression(nn.Module):
    """Term counts (B, V) -> class logits (B, C). Sub-linear tf, idf weighting, L2 normalisation,
    then a linear layer: the same maths as scikit-learn's TfidfVectorizer + LogisticRegression."""

    idf: torch.Tensor  # a registered buffer (saved with the weights), declared for the type checker

    def __init__(self, vocabulary_size: int, num_classes: int = 2) -> None:
        super().__init__()
        self.register_buffer("idf", torch.ones(vocabulary_size))
        self.linear = nn.Linear(vocabulary_size, num_classes)

    def tfidf(self, counts: torch.Tensor) -> torch.Tensor:
        tf = torch.where(counts > 0, 1.0 + torch.log(counts.clamp_min(1e-12)), torch.zeros_like(counts))
        weighted = tf * self.idf
        return weighted / weighted.norm(dim=-1, keepdim=True).clamp_min(1e-12)

    def forward(self, counts: torch.Tensor) -> torch.Tensor:
        return self.linear(self.tfidf(counts))
