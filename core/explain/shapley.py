"""Shapley values of a coalition game: exact enumeration for few players, Kernel SHAP for more.

Exact: all 2^M coalitions and the Shapley formula phi_i = sum_S |S|! (M - |S| - 1)! / M! (v(S + i) - v(S)).
Sampled: Kernel SHAP as shap's ``KernelExplainer`` builds it. The kernel's weight of coalition size s is
(M - 1) / (s (M - s)); sizes s and M - s are paired. Going from the smallest size up, every size whose share of the
budget covers all its coalitions (and their complements) is enumerated in full with its exact kernel weight. The
rest of the budget is drawn at random from the remaining sizes, repeated draws adding to a coalition's weight, and
those weights are scaled to the kernel weight left. The values solve a weighted least squares under the
efficiency constraint sum(phi) = v(all) - v(none), with the last player eliminated.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from itertools import combinations

import numpy as np
import torch

ValueFn = Callable[[torch.Tensor], torch.Tensor]  # (S, M) coalition masks -> (S, ...) values, one row per coalition


@lru_cache(maxsize=16)
def exact_coalitions(m: int) -> tuple[torch.Tensor, torch.Tensor]:
    """All 2^m coalitions (rows, code order: row 0 empty, last row full) and the (m, 2^m) matrix P with phi = P @ v."""
    codes = np.arange(2**m)
    z = ((codes[:, None] >> np.arange(m)) & 1).astype(np.float64)
    sizes = z.sum(1).astype(int)
    weight = np.array([math.factorial(s) * math.factorial(m - s - 1) / math.factorial(m) for s in range(m)])
    p = np.zeros((m, 2**m))
    for i in range(m):
        without = codes[((codes >> i) & 1) == 0]
        np.add.at(p[i], without | (1 << i), weight[sizes[without]])
        np.add.at(p[i], without, -weight[sizes[without]])
    return torch.from_numpy(z), torch.from_numpy(p)


def kernel_coalitions(m: int, n_samples: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Coalitions (S, m) and their kernel weights (S,), complete sizes first, then sampled (see the module text)."""
    budget = min(n_samples, 2**m - 2) if m <= 30 else n_samples
    n_sizes, n_paired = math.ceil((m - 1) / 2), (m - 1) // 2
    size_weight = np.array([(m - 1.0) / (s * (m - s)) for s in range(1, n_sizes + 1)])
    size_weight[:n_paired] *= 2
    size_weight /= size_weight.sum()
    rows: list[np.ndarray] = []
    weights: list[float] = []
    remaining, left, full = size_weight.copy(), budget, 0
    for size in range(1, n_sizes + 1):
        paired = size <= n_paired
        n_subsets = math.comb(m, size) * (2 if paired else 1)
        if left * remaining[size - 1] / n_subsets < 1.0 - 1e-8:
            break
        full, left = full + 1, left - n_subsets
        if remaining[size - 1] < 1.0:
            remaining /= 1 - remaining[size - 1]
        w = size_weight[size - 1] / math.comb(m, size) / (2 if paired else 1)
        for inds in combinations(range(m), size):
            mask = np.zeros(m)
            mask[list(inds)] = 1.0
            rows.append(mask)
            weights.append(w)
            if paired:
                rows.append(1.0 - mask)
                weights.append(w)
    n_fixed = len(rows)
    left = budget - n_fixed
    if full != n_sizes and left > 0:
        rng = np.random.default_rng(seed)
        draw = size_weight.copy()
        draw[:n_paired] /= 2  # a paired draw adds two coalitions
        draw = draw[full:] / draw[full:].sum()
        sizes = rng.choice(len(draw), 4 * left, p=draw) + full + 1
        seen: dict[bytes, int] = {}
        for size in sizes:
            if left <= 0:
                break
            mask = np.zeros(m)
            mask[rng.permutation(m)[:size]] = 1.0
            key = mask.tobytes()
            new = key not in seen
            if new:
                seen[key] = len(rows)
                rows.append(mask)
                weights.append(1.0)
                left -= 1
            else:
                weights[seen[key]] += 1.0
            if size <= n_paired:
                if new and left > 0:
                    rows.append(1.0 - mask)
                    weights.append(1.0)
                    left -= 1
                elif not new:
                    weights[seen[key] + 1] += 1.0
        sampled = np.array(weights[n_fixed:])
        if sampled.size:
            weights[n_fixed:] = list(sampled * size_weight[full:].sum() / sampled.sum())
    return torch.from_numpy(np.array(rows).reshape(-1, m)), torch.tensor(weights, dtype=torch.float64)


def kernel_shap(z: torch.Tensor, w: torch.Tensor, v: torch.Tensor, base: float, fx: float) -> torch.Tensor:
    """Weighted least squares phi for coalitions ``z`` with kernel weights ``w`` under sum(phi) = fx - base."""
    target = v - base - z[:, -1] * (fx - base)
    x = z[:, :-1] - z[:, -1:]
    wx = w[:, None] * x
    try:
        head = torch.linalg.solve(x.T @ wx, wx.T @ target)
    except RuntimeError:  # singular: too few coalitions for the players; least squares picks one solution
        root = w.sqrt()
        head = torch.linalg.lstsq(root[:, None] * x, (root * target)[:, None]).solution[:, 0]
    return torch.cat([head, (fx - base - head.sum())[None]])


@dataclass(frozen=True)
class ShapleyValues:
    phi: torch.Tensor  # (M,) or (M, ...) per output
    base: torch.Tensor  # v(empty coalition)
    output: torch.Tensor  # v(all players)
    exact: bool
    evaluated: int  # coalitions evaluated


def shapley_values(m: int, value: ValueFn, max_exact: int = 14, n_samples: int = 4096, seed: int = 0) -> ShapleyValues:
    """Shapley values of the game ``value`` over ``m`` players: exact when m <= ``max_exact``, else Kernel SHAP."""
    if m <= max_exact:
        z, p = exact_coalitions(m)
        v = value(z).double()
        return ShapleyValues(p @ v, v[0], v[-1], True, len(z))
    sampled, w = kernel_coalitions(m, n_samples, seed)
    z = torch.cat([torch.zeros(1, m, dtype=torch.float64), torch.ones(1, m, dtype=torch.float64), sampled])
    v = value(z).double()
    return ShapleyValues(kernel_shap(sampled, w, v[2:], float(v[0]), float(v[1])), v[0], v[1], False, len(z))
