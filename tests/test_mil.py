"""MIL pooling heads against hand computations."""

from __future__ import annotations

import math

import pytest
import torch

from core.models.mil import GatedAttentionMIL, InstancePoolingMIL


def head(pooling: str, **kw) -> InstancePoolingMIL:
    m = InstancePoolingMIL(2, 2, pooling, dropout=0.0, **kw).eval()
    with torch.no_grad():  # instance logits = (0, x_1): P(positive) = sigmoid(x_1)
        m.instance.weight[:] = torch.tensor([[0.0, 0.0], [1.0, 0.0]])
        m.instance.bias.zero_()
    return m


BAG = torch.tensor([[2.0, 0.0], [-1.0, 0.0], [0.0, 0.0]])
P = torch.sigmoid(BAG[:, 0])  # instance P(positive)


def normalised(p1: float, p0: float) -> float:
    return p1 / (p1 + p0)


def test_max_mean_gem_and_lse_pooling():
    pos = {
        "max": normalised(float(P.max()), float((1 - P).max())),
        "mean": float(P.mean()),
        "gem": normalised(float((P**4).mean() ** 0.25), float(((1 - P) ** 4).mean() ** 0.25)),
    }
    for pooling, expected in pos.items():
        probs, contribution = head(pooling)(BAG)
        assert float(probs[1]) == pytest.approx(expected, abs=1e-6), pooling
        assert torch.allclose(contribution, P)
    r = 8.0
    lse = [(math.log(sum(math.exp(r * v) for v in col)) - math.log(3)) / r for col in ([0.0, 0.0, 0.0], BAG[:, 0].tolist())]
    probs, _ = head("lse")(BAG)
    assert float(probs[1]) == pytest.approx(math.exp(lse[1]) / (math.exp(lse[0]) + math.exp(lse[1])), abs=1e-6)


def test_certainty_pooling_without_dropout_picks_the_most_confident_instance():
    probs, _ = head("certainty", mc_passes=5)(BAG)  # no dropout: spread 0, certainty 1/eps for all
    assert float(probs[1]) == pytest.approx(normalised(float(P.max()), float((1 - P).max())), abs=1e-6)
    noisy = InstancePoolingMIL(2, 2, "certainty", dropout=0.5, mc_passes=30)
    torch.manual_seed(0)
    probs, contribution = noisy(torch.randn(7, 2))
    assert probs.shape == (2,) and float(probs.sum()) == pytest.approx(1.0) and contribution.shape == (7,)


def test_attention_weights_are_a_distribution_over_the_bag():
    torch.manual_seed(0)
    logits, weights = GatedAttentionMIL(4, 2)(torch.randn(9, 4))
    assert logits.shape == (2,) and weights.shape == (9,) and float(weights.sum()) == pytest.approx(1.0, abs=1e-6)
