"""Where model calls run: CUDA when present, else CPU; with AMP and batch back-off on OOM."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator, Sequence
from typing import TypeVar

import torch

log = logging.getLogger(__name__)
T = TypeVar("T")

_override: str | None = None


def set_device_override(name: str | None) -> None:
    """Force a device for the whole process (``--device``); ``None`` or ``auto`` picks automatically."""
    global _override
    if name in (None, "auto"):
        _override = None
        return
    torch.device(name)  # raises on an unparseable name
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"--device {name} was asked for, but this machine has no CUDA device")
    _override = name


def compute_device() -> torch.device:
    """The device every model call uses."""
    if _override:
        return torch.device(_override)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def autocast(device: torch.device) -> contextlib.AbstractContextManager:
    """Mixed precision on CUDA; a no-op on CPU where it would only slow small nets down."""
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.float16)
    return contextlib.nullcontext()


def _is_oom(exc: BaseException) -> bool:
    return isinstance(exc, torch.OutOfMemoryError) or "out of memory" in str(exc).lower()


def map_batches(
    fn: Callable[[Sequence[T]], torch.Tensor], items: Sequence[T], batch_size: int
) -> Iterator[torch.Tensor]:
    """Apply ``fn`` to ``items`` in batches, halving the batch whenever the device runs out of memory."""
    start = 0
    while start < len(items):
        chunk = items[start : start + batch_size]
        try:
            out = fn(chunk)
        except (torch.OutOfMemoryError, RuntimeError) as exc:
            if not _is_oom(exc) or batch_size == 1:
                raise
            batch_size //= 2
            log.warning("device out of memory; retrying with batch size %d", batch_size)
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            continue
        yield out
        start += len(chunk)
