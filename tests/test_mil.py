"""MIL pooling heads against the sources' formulas on a hand-made bag."""

from __future__ import annotations

import math

import pytest
import torch

from core.models.mil import GatedAttentionMIL, InstancePoolingMIL, certainty_pool

POSITIVE_LOGIT = math.log(399.0)  # sigmoid = 0.9975
# One instance at P(pos) = 0.9975 among three clear negatives (P(pos) = sigmoid(-8) = 0.000335).
BAG = torch.tensor([[POSITIVE_LOGIT, 0.0], [-8.0, 0.0], [-8.0, 0.0], [-8.0, 0.0]])
Y = torch.sigmoid(BAG[:, 0]).double()  # instance P(positive)


def head(pooling: str, **kw) -> InstancePoolingMIL:
    m = InstancePoolingMIL(2, 2, pooling, dropout=0.0, **kw).eval()
    with torch.no_grad():  # instance logits = (0, x_1): P(positive) = sigmoid(x_1)
        m.instance.weight[:] = torch.tensor([[0.0, 0.0], [1.0, 0.0]])
        m.instance.bias.zero_()
    return m


def bag_positive(pooling: str, **kw) -> float:
    probs, contribution = head(pooling, **kw)(BAG)
    assert torch.allclose(contribution.double(), Y, atol=1e-6)
    assert float(probs.sum()) == pytest.approx(1.0, abs=1e-6)  # two classes: the negative class is 1 - P(positive)
    return float(probs[1])


def test_max_mean_and_generalised_mean_are_not_renormalised_over_classes():
    assert Y[0] == pytest.approx(0.9975)
    assert bag_positive("max") == pytest.approx(0.9975, abs=1e-6)
    assert bag_positive("mean") == pytest.approx(float(Y.mean()), abs=1e-6)
    gem = float((Y**4).mean() ** 0.25)
    assert gem == pytest.approx(0.7053, abs=1e-3)
    assert bag_positive("gem") == pytest.approx(gem, abs=1e-5)


def test_log_sum_exp_over_instance_probabilities_as_weglenet():
    r = 8.0
    expected = math.log(sum(math.exp(r * float(y)) for y in Y) / len(Y)) / r
    assert expected == pytest.approx(0.8245, abs=1e-3)
    assert bag_positive("lse_probabilities") == pytest.approx(expected, abs=1e-5)


def test_the_first_log_sum_exp_keeps_its_own_name_and_older_manifests_keep_it():
    r, n = 8.0, len(BAG)
    pooled = [(math.log(sum(math.exp(r * v) for v in col)) - math.log(n)) / r for col in ([0.0] * n, BAG[:, 0].tolist())]
    expected = math.exp(pooled[1]) / (math.exp(pooled[0]) + math.exp(pooled[1]))
    assert bag_positive("lse_logits_softmax") == pytest.approx(expected, abs=1e-5)
    assert head("lse").pooling == "lse_logits_softmax"  # what "lse" meant when those manifests were written
    assert bag_positive("lse") == pytest.approx(expected, abs=1e-5)


def test_certainty_pooling_formula_on_hand_made_passes():
    h = torch.tensor([0.9975, 0.02, 0.01, 0.005])
    steady = torch.tensor([[0.97, 0.019, 0.01, 0.005], [1.0, 0.021, 0.01, 0.005]])  # sigma: 0.0212, 0.0014, 0, 0
    value, chosen = certainty_pool(h, steady, eps=1e-3)
    # C * h = 0.9975 / 0.0222 = 44.9; 0.02 / 0.0024 = 8.3; 0.01 / 0.001 = 10; 0.005 / 0.001 = 5
    assert int(chosen) == 0 and float(value) == pytest.approx(0.9975)
    shaky = torch.tensor([[0.5, 0.019, 0.01, 0.005], [1.0, 0.021, 0.01, 0.005]])  # the positive instance is uncertain
    value, chosen = certainty_pool(h, shaky, eps=1e-3)
    # C * h = 0.9975 / 0.3546 = 2.8 < 0.01 / 0.001 = 10: the bag takes the certain instance's prediction
    assert int(chosen) == 2 and float(value) == pytest.approx(0.01)


def test_certainty_pooling_head_takes_the_chosen_instance_prediction():
    # No dropout: every spread is 0, every certainty 1/eps, so k* is the most likely instance and the bag its prediction.
    assert bag_positive("certainty", mc_passes=5) == pytest.approx(0.9975, abs=1e-6)
    noisy = InstancePoolingMIL(2, 2, "certainty", dropout=0.5, mc_passes=30)
    torch.manual_seed(0)
    probs, contribution = noisy(torch.randn(7, 2))
    assert probs.shape == (2,) and float(probs.sum()) == pytest.approx(1.0) and contribution.shape == (7,)


def test_attention_weights_are_a_distribution_over_the_bag():
    torch.manual_seed(0)
    logits, weights = GatedAttentionMIL(4, 2)(torch.randn(9, 4))
    assert logits.shape == (2,) and weights.shape == (9,) and float(weights.sum()) == pytest.approx(1.0, abs=1e-6)
