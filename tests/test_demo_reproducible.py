"""The demo's training gives the same weights whatever the machine's core count: a reduction split over another number
of threads adds in another order, and the demo's held-out AUCs move with any change of rounding in training."""

from __future__ import annotations

import numpy as np
import torch

from core.demo.reproducible import TRAINING_THREADS, reproducible_torch
from core.demo.train_patch import train_patch_cnn


def _weights(model: torch.nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().flatten() for p in model.parameters()])


def _with_threads(threads: int, train):
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        return _weights(train())
    finally:
        torch.set_num_threads(before)


def test_the_patch_cnn_trains_to_the_same_weights_on_one_or_three_threads():
    rng = np.random.default_rng(0)
    images, labels = rng.integers(0, 256, (96, 64, 64, 3), dtype=np.uint8), rng.integers(0, 4, 96)
    one, three = (_with_threads(n, lambda: train_patch_cnn(images, labels, 1, 0, lambda message: None)) for n in (1, 3))
    assert torch.equal(one, three)


def test_the_callers_torch_settings_come_back_after_training():
    before = torch.get_num_threads()
    torch.set_num_threads(3)
    try:
        with reproducible_torch():
            assert torch.get_num_threads() == TRAINING_THREADS and torch.are_deterministic_algorithms_enabled()
        assert torch.get_num_threads() == 3 and not torch.are_deterministic_algorithms_enabled()
    finally:
        torch.set_num_threads(before)
