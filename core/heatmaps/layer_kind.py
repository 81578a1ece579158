"""What a kind of derived heatmap layer is: how it is computed, where a job leaves it, and whether a request may
compute it; and ``LayerStore``, the owner of one subject's layers (computed once each, background kinds only by a
job). ``slide_layers`` registers the kinds of a loaded heatmap, ``feature_layers`` those of a MIL head's slide."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, cast

from core.errors import PathReviewError
from core.heatmaps.slide_heatmap import SlideHeatmap
from core.workspace import Workspace

Progress = Callable[[int, int], None]  # (done, total), e.g. patches


class LayerNotReady(PathReviewError):
    """A whole-slide layer that a job computes and that is not stored yet; the viewer shows it loading."""

    def __init__(self, layer: str) -> None:
        super().__init__(f"the {layer} layer is not computed yet for this heatmap; it shows once its job has finished")
        self.layer = layer


class Layers(Protocol):
    """What a kind's functions see: the heatmap, its workspace, and the other layers (e.g. the class map reads a
    reconstruction)."""

    workspace: Workspace
    heat: SlideHeatmap

    def get(self, layer: str) -> Any: ...

    def ready(self, layer: str) -> bool: ...


def any_variant(layers: Layers, variant: str) -> str:
    return variant


def no_stored(layers: Layers, variant: str) -> Any:
    return None


@dataclass(frozen=True)
class LayerKind:
    """``name`` is the layer id's prefix (``name`` or ``name:variant``). ``variant`` checks a requested variant
    (raising ``PathReviewError`` a person can act on) and returns it in canonical form. ``stored`` returns the
    result a job left in the workspace cache, or None. A ``background`` kind is whole-slide model work: only
    ``LayerStore.compute`` (a job, an export) runs it; a request answers "not ready" until it is stored. ``needs``
    names the layers a cheap kind reads: it is ready when they are."""

    name: str
    compute: Callable[[Layers, str, Progress | None], Any]
    variant: Callable[[Layers, str], str] = any_variant
    stored: Callable[[Layers, str], Any] = no_stored
    background: bool = False
    needs: tuple[str, ...] = ()


class LayerStore:
    """The derived layers of one subject (a loaded heatmap, a slide under a MIL head), by kind. Each layer is computed
    at most once (a per-layer lock: a second caller waits for the first and reads its result) and kept here."""

    def __init__(self, workspace: Workspace, kinds: dict[str, LayerKind], what: str) -> None:
        self.workspace, self.kinds, self.what = workspace, kinds, what
        self._values: dict[str, Any] = {}
        self._lock = threading.Lock()  # guards the two dicts
        self._computing: dict[str, threading.Lock] = {}  # one per layer: it is computed once, whoever asks

    def _as_layers(self) -> Layers:
        """This store as its kinds' functions see it (the ``Layers`` protocol)."""
        return cast(Layers, self)  # subclasses add what their kinds read (a heatmap's ``heat``, a head's slide)

    def resolve(self, layer: str) -> tuple[LayerKind, str, str]:
        """(kind, canonical variant, canonical layer name); an unknown kind or variant is a ``PathReviewError``."""
        name, _, variant = layer.partition(":")
        kind = self.kinds.get(name)
        if kind is None:
            raise PathReviewError(f"unknown {self.what} {layer!r}; the layers are {', '.join(self.kinds)}")
        variant = kind.variant(self._as_layers(), variant)
        return kind, variant, f"{name}:{variant}" if variant else name

    def is_background(self, layer: str) -> bool:
        return self.resolve(layer)[0].background

    def ready(self, layer: str) -> bool:
        """True when ``get`` answers at once: the layer is held here or stored by a job, or cheap over ready layers."""
        kind, variant, name = self.resolve(layer)
        if kind.background:
            return self._held(kind, variant, name) is not None
        return all(self.ready(dep) for dep in kind.needs)

    def get(self, layer: str) -> Any:
        """The layer's value. A cheap kind is computed here; a background kind must be stored (``LayerNotReady``)."""
        kind, variant, name = self.resolve(layer)
        value = self._held(kind, variant, name)
        if value is not None:
            return value
        if kind.background:
            raise LayerNotReady(name)
        return self._compute(kind, variant, name, None)

    def compute(self, layer: str, progress: Progress | None = None) -> Any:
        """The layer's value, computed now (and stored, for background kinds) when it is not held or stored."""
        kind, variant, name = self.resolve(layer)
        value = self._held(kind, variant, name)
        return value if value is not None else self._compute(kind, variant, name, progress)

    def _held(self, kind: LayerKind, variant: str, name: str) -> Any:
        with self._lock:
            if name in self._values:
                return self._values[name]
        stored = kind.stored(self._as_layers(), variant)  # a job (maybe in another process) may have stored it since
        if stored is not None:
            with self._lock:
                self._values.setdefault(name, stored)
        return stored

    def _compute(self, kind: LayerKind, variant: str, name: str, progress: Progress | None) -> Any:
        with self._lock:
            computing = self._computing.setdefault(name, threading.Lock())
        with computing:
            with self._lock:
                if name in self._values:  # computed by the caller we waited for
                    return self._values[name]
            value = kind.compute(self._as_layers(), variant, progress)
            with self._lock:
                self._values[name] = value
            return value
