"""Where model calls run: CUDA when present, else CPU; with AMP and batch back-off on OOM."""

from __future__ import annotations

import contextlib
import copy
import logging
from collections.abc import Callable, Iterator
from typing import Protocol, Self, TypeVar

import torch

from core.errors import PathReviewError

log = logging.getLogger(__name__)
class Sliceable(Protocol):
    """What ``map_batches`` cuts into batches: a list or an array, whose slices are of its own kind."""

    def __len__(self) -> int: ...

    def __getitem__(self, index: slice, /) -> Self: ...


Items = TypeVar("Items", bound=Sliceable)

_override: str | None = None


def set_device_override(name: str | None) -> None:
    """Force a device for the whole process (``--device``); ``None`` or ``auto`` picks automatically."""
    global _override
    if name in (None, "auto"):
        _override = None
        return
    try:
        torch.device(name)
    except (ValueError, RuntimeError) as exc:  # an unparseable name
        raise PathReviewError(f"bad --device: {exc}") from exc
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise PathReviewError(f"bad --device: --device {name} was asked for, but this machine has no CUDA device")
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


class DeviceMemoryError(PathReviewError):
    """The device ran out of memory even for a batch of one item, and nothing could take over."""


def map_batches(
    fn: Callable[[Items], torch.Tensor], items: Items, batch_size: int,
    on_exhausted: Callable[[], Callable[[Items], torch.Tensor] | None] | None = None,
    on_shrink: Callable[[int], None] | None = None,
) -> Iterator[torch.Tensor]:
    """Apply ``fn`` to ``items`` in batches, halving the batch whenever the device runs out of memory.

    When even a batch of one does not fit, ``on_exhausted()`` may return a replacement ``fn`` (the same model on the
    CPU) that does the rest, starting again at ``batch_size``; without one, ``DeviceMemoryError`` is raised.
    ``on_shrink(new_size)`` is told each halving, so a caller can start its next call at the size that fitted."""
    start, first_size = 0, batch_size
    while start < len(items):
        chunk = items[start : start + batch_size]
        try:
            out = fn(chunk)
        except (torch.OutOfMemoryError, RuntimeError) as exc:
            if not _is_oom(exc):
                raise
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            if batch_size > 1:
                batch_size //= 2
                log.warning("device out of memory; retrying with batch size %d", batch_size)
                if on_shrink is not None:
                    on_shrink(batch_size)
                continue
            replacement = on_exhausted() if on_exhausted is not None else None
            if replacement is None:
                raise DeviceMemoryError(f"the device ran out of memory even for one item ({exc.__class__.__name__}); "
                                        "free memory on it (other jobs) or run with --device cpu") from exc
            fn, on_exhausted, batch_size = replacement, None, first_size
            continue
        yield out
        start += len(chunk)


def cpu_copy(module: torch.nn.Module) -> torch.nn.Module:
    """A copy of ``module`` on the CPU, made without allocating anything on the module's own device (which may be
    the one that is out of memory): each parameter and buffer is copied straight to host memory."""
    memo: dict[int, object] = {}
    for param in module.parameters():
        memo[id(param)] = torch.nn.Parameter(param.detach().to("cpu", copy=True), requires_grad=param.requires_grad)
    for buffer in module.buffers():
        memo[id(buffer)] = buffer.detach().to("cpu", copy=True)
    return copy.deepcopy(module, memo).to(torch.device("cpu"))
