"""Shapley maths: exact enumeration, and Kernel SHAP sampling against shap's at an equal budget."""

from __future__ import annotations

import math

import numpy as np
import pytest
import shap
import torch

from core.explain.shapley import exact_coalitions, kernel_coalitions, shapley_values

M = 20
RNG = np.random.default_rng(7)
LINEAR = RNG.normal(0, 1, M)
PAIRS = np.triu(RNG.normal(0, 0.4, (M, M)), 1)


def game(z: np.ndarray) -> np.ndarray:
    """A non-additive game on coalition masks: a sigmoid of main effects and pairwise interactions."""
    z = np.asarray(z, float)
    return 1 / (1 + np.exp(-(z @ LINEAR + np.einsum("si,ij,sj->s", z, PAIRS, z)) / 3))


def exact_shapley(m: int) -> np.ndarray:
    """phi_i = sum over S without i of |S|! (m - |S| - 1)! / m! (v(S + i) - v(S)), all 2^m coalitions."""
    codes = np.arange(2**m)
    z = (codes[:, None] >> np.arange(m)) & 1
    v = game(z)
    sizes = z.sum(1)
    weight = np.array([math.factorial(s) * math.factorial(m - s - 1) / math.factorial(m) for s in range(m)])
    phi = np.zeros(m)
    for i in range(m):
        without = codes[((codes >> i) & 1) == 0]
        phi[i] = (weight[sizes[without]] * (v[without | (1 << i)] - v[without])).sum()
    return phi


def test_exact_enumeration_matches_the_shapley_formula():
    m = 6
    result = shapley_values(m, lambda z: torch.from_numpy(game(np.pad(z.numpy(), ((0, 0), (0, M - m))))), max_exact=m)
    z, _ = exact_coalitions(m)
    brute = exact_shapley_small(m)
    assert result.exact and np.allclose(result.phi.numpy(), brute, atol=1e-12) and len(z) == 2**m


def exact_shapley_small(m: int) -> np.ndarray:
    codes = np.arange(2**m)
    z = np.pad((codes[:, None] >> np.arange(m)) & 1, ((0, 0), (0, M - m)))
    v = game(z)
    phi = np.zeros(m)
    for i in range(m):
        without = codes[((codes >> i) & 1) == 0]
        sizes = z[without].sum(1)
        w = np.array([math.factorial(s) * math.factorial(m - s - 1) / math.factorial(m) for s in sizes])
        phi[i] = (w * (v[without | (1 << i)] - v[without])).sum()
    return phi


def test_complete_sizes_are_enumerated_before_sampling():
    z, w = kernel_coalitions(M, 256, seed=0)
    sizes = z.sum(1).numpy()
    # Budget 256 covers sizes 1 and 19 (40 coalitions) in full, as shap's KernelExplainer does; the rest is sampled.
    assert np.count_nonzero(sizes == 1) == M and np.count_nonzero(sizes == M - 1) == M
    assert len(z) == 256 and len({tuple(r) for r in z.tolist()}) == 256
    kernel = (M - 1) / (1 * (M - 1))
    total = sum((M - 1) / (s * (M - s)) for s in range(1, M))
    assert float(w[:2 * M].sum()) == pytest.approx(2 * kernel / total)  # sizes 1 and 19 carry their exact kernel share
    assert float(w.sum()) == pytest.approx(1.0)


@pytest.mark.parametrize("budget", [256, 1024])
def test_sampled_error_is_no_worse_than_shap_at_an_equal_budget(budget):
    exact = exact_shapley(M)

    def relative_l1(phi: np.ndarray) -> float:
        return float(np.abs(phi - exact).sum() / np.abs(exact).sum())

    ours, theirs = [], []
    for seed in range(6):
        result = shapley_values(M, lambda z: torch.from_numpy(game(z.numpy())), max_exact=14, n_samples=budget, seed=seed)
        assert not result.exact and float(result.phi.sum()) == pytest.approx(float(result.output - result.base), abs=1e-9)
        ours.append(relative_l1(result.phi.numpy()))
        np.random.seed(seed)
        peer = shap.KernelExplainer(game, np.zeros((1, M)))
        theirs.append(relative_l1(np.asarray(peer.shap_values(np.ones((1, M)), nsamples=budget, l1_reg=False, silent=True)).ravel()))
    assert np.mean(ours) <= 1.1 * np.mean(theirs), (np.mean(ours), np.mean(theirs))
