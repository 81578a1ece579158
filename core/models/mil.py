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


POOLINGS = ("max", "mean", "gem", "certainty", "lse_probabilities", "lse_logits_softmax")
# Names older manifests used; the weights were trained with the variant named here, so they keep it.
FORMER_POOLING_NAMES = {"lse": "lse_logits_softmax"}
DEFAULT_R = {"gem": 4.0, "lse_probabilities": 8.0, "lse_logits_softmax": 8.0}


def certainty_pool(predictions: torch.Tensor, mc_predictions: torch.Tensor, eps: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Certainty pooling (Gildenblat et al., Eq. 5 and 6) of one class: C_k = 1 / (sigma(X_k) + eps) over the MC-dropout
    predictions X_k (passes, N), k* = argmax_k C_k h_k, bag = h_{k*}. Returns (bag value, k*)."""
    certainty = 1.0 / (mc_predictions.std(0) + eps)
    chosen = torch.argmax(certainty * predictions)
    return predictions[chosen], chosen


class InstancePoolingMIL(nn.Module):
    """A linear instance classifier on patch embeddings (softmax over classes: instance probabilities y_ik), pooled
    over the bag for each class k other than the first (the negative / non-cancer class):

    max                 Y_k = max_i y_ik (thesis ch. 4)
    mean                Y_k = (1/N) sum_i y_ik
    gem                 Y_k = ((1/N) sum_i y_ik^r)^(1/r), r = 4 (Jia et al.)
    certainty           Y_k = y_{k*,k}, k* = argmax_i C_ik y_ik, C_ik = 1 / (sigma_i + eps) over MC-dropout passes
                        (Gildenblat et al.); y is the instance's prediction, dropout on only for the passes that measure sigma
    lse_probabilities   Y_k = (1/r) log((1/N) sum_i exp(r y_ik)), r = 8, on instance probabilities (thesis ch. 3, WeGleNet)
    lse_logits_softmax  log-sum-exp (r = 8) of each class's instance logits, then a softmax over classes (the first
                        version of this head; formerly called "lse")

    Each Y_k is the formula's value itself, never renormalised over classes. The first class gets 1 - max_k Y_k (for
    two classes: 1 - P(positive)), as WeGleNet leaves the non-cancer class out of the bag output.
    ``forward`` returns bag class probabilities (C,) and each patch's probability of the last class (N,).
    """

    def __init__(self, in_dim: int, num_classes: int = 2, pooling: str = "lse_probabilities", r: float | None = None,
                 dropout: float = 0.25, mc_passes: int = 20, eps: float = 1e-3) -> None:
        super().__init__()
        pooling = FORMER_POOLING_NAMES.get(pooling, pooling)
        if pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {', '.join(POOLINGS)}")
        if num_classes < 2:
            raise ValueError("an instance-pooling head needs a negative class and at least one positive class")
        self.pooling, self.mc_passes, self.eps = pooling, mc_passes, eps
        self.r = r if r is not None else DEFAULT_R.get(pooling, 1.0)
        self.dropout = nn.Dropout(dropout)
        self.instance = nn.Linear(in_dim, num_classes)

    def instance_probabilities(self, bag: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.instance(self.dropout(bag)), -1)

    def forward(self, bag: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits = self.instance(self.dropout(bag))
        probs = torch.softmax(logits, -1)
        if self.pooling == "lse_logits_softmax":
            pooled = (torch.logsumexp(self.r * logits, 0) - torch.log(torch.tensor(float(len(bag))))) / self.r
            return torch.softmax(pooled, -1), probs[:, -1]
        positive = probs[:, 1:]
        if self.pooling == "max":
            bag_pos = positive.max(0).values
        elif self.pooling == "mean":
            bag_pos = positive.mean(0)
        elif self.pooling == "gem":
            bag_pos = positive.clamp_min(1e-12).pow(self.r).mean(0).pow(1 / self.r)
        elif self.pooling == "lse_probabilities":
            bag_pos = (torch.logsumexp(self.r * positive, 0) - torch.log(torch.tensor(float(len(bag))))) / self.r
        else:
            bag_pos = self._certainty(bag, positive)
        return torch.cat([1 - bag_pos.max()[None], bag_pos]), probs[:, -1]

    def _certainty(self, bag: torch.Tensor, positive: torch.Tensor) -> torch.Tensor:
        was_training = self.dropout.training
        self.dropout.train()  # Monte Carlo dropout, also at inference
        with torch.no_grad():  # sigma only chooses the instance; the gradient flows through h_{k*}
            passes = torch.stack([self.instance_probabilities(bag)[:, 1:] for _ in range(self.mc_passes)])
        self.dropout.train(was_training)
        return torch.stack([certainty_pool(positive[:, k], passes[:, :, k], self.eps)[0] for k in range(positive.shape[1])])
