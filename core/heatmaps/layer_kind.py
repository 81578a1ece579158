"""What a kind of derived heatmap layer is: how it is computed, where a job leaves it, and whether a request may
compute it. ``slide_layers`` registers the kinds and owns their values for one loaded heatmap."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

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
    ``SlideLayers.compute`` (a job, an export) runs it; a request answers "not ready" until it is stored."""

    name: str
    compute: Callable[[Layers, str, Progress | None], Any]
    variant: Callable[[Layers, str], str] = any_variant
    stored: Callable[[Layers, str], Any] = no_stored
    background: bool = False
