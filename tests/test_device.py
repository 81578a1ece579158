"""Device choice and batch back-off on out-of-memory."""

from __future__ import annotations

import pytest
import torch

from core import device
from core.errors import PathReviewError


def test_cpu_when_no_cuda_and_override_is_respected():
    device.set_device_override(None)
    assert device.compute_device().type == ("cuda" if torch.cuda.is_available() else "cpu")
    device.set_device_override("cpu")
    assert device.compute_device() == torch.device("cpu")
    device.set_device_override("auto")
    if not torch.cuda.is_available():
        with pytest.raises(PathReviewError, match="bad --device: .*no CUDA device"):
            device.set_device_override("cuda")


def test_map_batches_halves_the_batch_on_out_of_memory():
    seen = []

    def run(batch):
        seen.append(len(batch))
        if len(batch) > 8:  # behaves like a device that fits at most 8 items
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return torch.tensor(batch) * 2

    out = torch.cat(list(device.map_batches(run, list(range(40)), batch_size=32)))
    assert out.tolist() == [2 * i for i in range(40)]
    assert seen[:3] == [32, 16, 8] and max(seen[3:]) == 8


def test_map_batches_does_not_hide_other_errors():
    def run(batch):
        raise RuntimeError("shape mismatch")

    with pytest.raises(RuntimeError, match="shape mismatch"):
        list(device.map_batches(run, [1, 2, 3], batch_size=2))
