"""Torch set up so that the demo's training gives the same numbers on every run, whatever the machine's core count."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch

# Fixed rather than the machine's core count: a reduction split over another number of threads adds in another order,
# and the demo's models sit where float rounding in training can move a held-out AUC by a hundredth.
TRAINING_THREADS = 2


@contextmanager
def reproducible_torch(threads: int = TRAINING_THREADS) -> Iterator[None]:
    """Deterministic kernels on ``threads`` intra-op threads inside the block; the caller's settings after it."""
    threads_before, deterministic_before = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(True)
    try:
        yield
    finally:
        torch.set_num_threads(threads_before)
        torch.use_deterministic_algorithms(deterministic_before)
