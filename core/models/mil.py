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


POOLINGS = ("max", "mean", "lse", "gem", "certainty")


class InstancePoolingMIL(nn.Module):
    """A linear instance classifier on patch embeddings, pooled over the bag (METHODS.md):

    max        Y_k = max_i y_ik
    mean       Y_k = mean_i y_ik
    lse        Y_k = (1/r) log((1/N) sum_i exp(r x_ik)) on instance logits x, r = 8
    gem        Y_k = ((1/N) sum_i y_ik^r)^(1/r) on instance probabilities y, r = 4
    certainty  MC-dropout passes give each instance a mean y_ik and spread s_ik; C_ik = 1 / (s_ik + eps);
               the bag takes the mean of the instance i* = argmax_i C_ik y_ik.

    ``forward`` returns bag class probabilities (C,) and each patch's contribution (N,) to the positive class.
    """

    def __init__(self, in_dim: int, num_classes: int = 2, pooling: str = "lse", r: float | None = None, dropout: float = 0.25,
                 mc_passes: int = 20, eps: float = 1e-3) -> None:
        super().__init__()
        if pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}")
        self.pooling, self.mc_passes, self.eps = pooling, mc_passes, eps
        self.r = r if r is not None else {"lse": 8.0, "gem": 4.0}.get(pooling, 1.0)
        self.dropout = nn.Dropout(dropout)
        self.instance = nn.Linear(in_dim, num_classes)

    def instance_probabilities(self, bag: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.instance(self.dropout(bag)), -1)

    def forward(self, bag: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.pooling == "certainty":
            return self._certainty(bag)
        logits = self.instance(self.dropout(bag))
        probs = torch.softmax(logits, -1)
        if self.pooling == "max":
            bag_probs = probs.max(0).values
        elif self.pooling == "mean":
            bag_probs = probs.mean(0)
        elif self.pooling == "gem":
            bag_probs = probs.clamp_min(1e-6).pow(self.r).mean(0).pow(1 / self.r)
        else:  # lse on logits, then softmax over classes
            pooled = (torch.logsumexp(self.r * logits, 0) - torch.log(torch.tensor(float(len(bag))))) / self.r
            bag_probs = torch.softmax(pooled, -1)
        bag_probs = bag_probs / bag_probs.sum()
        return bag_probs, probs[:, -1]

    def _certainty(self, bag: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        was_training = self.training
        self.dropout.train()  # Monte Carlo dropout, also at inference
        samples = torch.stack([self.instance_probabilities(bag) for _ in range(self.mc_passes)])
        self.dropout.train(was_training)
        mean, spread = samples.mean(0), samples.std(0)
        certainty = 1.0 / (spread + self.eps)
        chosen = (certainty * mean).argmax(0)  # per class
        bag_probs = mean[chosen, torch.arange(mean.shape[1])]
        return bag_probs / bag_probs.sum(), mean[:, -1]
