"""Batched patch inference over a slide: reader threads feed batches to the model on the device,
so OpenSlide decoding and model compute overlap."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Protocol, cast

import numpy as np
import torch

from core.device import autocast, cpu_copy, map_batches
from core.errors import PathReviewError
from core.models.manifest import InputSpec
from core.slides.grid import PatchGrid
from core.slides.patches import read_patch_batches
from core.slides.stain import model_input

ProgressFn = Callable[[int, int], None]  # (patches done, total)
PatchObserver = Callable[[np.ndarray, np.ndarray, torch.device], None]  # (indices, uint8 patches as read, device the net ran on)
log = logging.getLogger(__name__)


class InferenceCancelled(PathReviewError):
    """The user cancelled a heatmap computation; nothing was stored."""


class _EmbeddingNet(Protocol):
    """A patch net with its pooled embedding (``features``) and a linear head on it (``fc``), as PatchResNet has."""

    fc: torch.nn.Linear

    def features(self, x: torch.Tensor) -> torch.Tensor: ...


def _embedding_net(module: torch.nn.Module) -> _EmbeddingNet | None:
    """``module`` seen as an embedding net when it is one (a lab's own net may not be), else None."""
    if hasattr(module, "features") and isinstance(getattr(module, "fc", None), torch.nn.Linear):
        return cast(_EmbeddingNet, module)  # the members the protocol names were just checked
    return None


class PatchClassifier:
    """The patch net on its device, called batch after batch of one job. The batch halves on device out-of-memory and
    the size that fitted is kept for the next call; when even one patch does not fit on an accelerator, a CPU copy
    of the net does the rest of the job and a notice says so (``notices``: shown to the user beside the result).
    Patches are stain-normalised as ``input_spec`` (the manifest's input) declares, on the net's device."""

    def __init__(self, module: torch.nn.Module, device: torch.device, batch_size: int, notices: list[str] | None = None,
                 input_spec: InputSpec | None = None) -> None:
        self.module, self.device, self.batch_size, self._first_batch_size = module, device, batch_size, batch_size
        self.notices = notices if notices is not None else []
        self.input_spec = input_spec or InputSpec()

    def _runner(self, embed: bool) -> Callable[[np.ndarray], torch.Tensor]:
        module, device, spec = self.module, self.device, self.input_spec
        net = _embedding_net(module) if embed else None

        def run(chunk: np.ndarray) -> torch.Tensor:
            x = model_input(chunk, spec, device)
            with autocast(device):
                if net is not None:
                    features = net.features(x).float()
                    return torch.cat([torch.softmax(net.fc(features).float(), 1), features], 1).cpu()
                return torch.softmax(module(x).float(), 1).cpu()

        return run

    def _fall_back_to_cpu(self, embed: bool) -> Callable[[np.ndarray], torch.Tensor] | None:
        if self.device.type == "cpu":
            return None
        notice = (f"The {self.device.type.upper()} ran out of memory even for one patch, so the rest of this job ran on the CPU "
                  "(slower; the results are the same).")
        log.warning(notice)
        if notice not in self.notices:
            self.notices.append(notice)
        self.module, self.device, self.batch_size = cpu_copy(self.module).eval(), torch.device("cpu"), self._first_batch_size
        return self._runner(embed)

    def _shrunk(self, size: int) -> None:
        self.batch_size = size

    @torch.no_grad()
    def __call__(self, patches: np.ndarray, embed: bool = False) -> tuple[np.ndarray, np.ndarray | None]:
        head = getattr(self.module, "fc", None)
        net = _embedding_net(self.module) if embed else None
        embed = net is not None
        if len(patches) == 0:
            n_classes = head.out_features if isinstance(head, torch.nn.Linear) else 0
            return np.zeros((0, n_classes), np.float32), (np.zeros((0, net.fc.in_features), np.float32) if net is not None else None)
        batches = map_batches(self._runner(embed), patches, self.batch_size, on_exhausted=lambda: self._fall_back_to_cpu(embed),
                              on_shrink=self._shrunk)
        out = torch.cat(list(batches)).numpy()
        if net is None:
            return out, None
        n_classes = net.fc.out_features
        return out[:, :n_classes], out[:, n_classes:]


def classify_and_embed_patches(module: torch.nn.Module, device: torch.device, patches: np.ndarray, batch_size: int,
                               embed: bool = False, notices: list[str] | None = None,
                               input_spec: InputSpec | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """Softmax class probabilities for uint8 patches, and (for nets with ``features`` + ``fc``) their embeddings
    from the same pass; the batch halves on device out-of-memory, then the CPU takes over (see ``PatchClassifier``)."""
    return PatchClassifier(module, device, batch_size, notices, input_spec)(patches, embed)


def classify_patches(module: torch.nn.Module, device: torch.device, patches: np.ndarray, batch_size: int,
                     input_spec: InputSpec | None = None) -> np.ndarray:
    return classify_and_embed_patches(module, device, patches, batch_size, input_spec=input_spec)[0]


def predict_slide(
    path: Path, grid: PatchGrid, module: torch.nn.Module, device: torch.device, batch_size: int = 128, workers: int = 2,
    progress: ProgressFn | None = None, cancel: threading.Event | None = None, with_embeddings: bool = False,
    notices: list[str] | None = None, input_spec: InputSpec | None = None, observe: PatchObserver | None = None,
) -> np.ndarray | tuple[np.ndarray, np.ndarray | None]:
    """(N, C) class probabilities for every patch of ``grid`` (and their embeddings when asked), stain-normalised as
    ``input_spec`` declares. ``observe`` sees every batch as read (before normalisation) and the device the net ran it
    on, so quality control shares this one pass over the slide. Anything the user should know about how they were computed (e.g. a fall-back to
    the CPU) is appended to ``notices``."""
    module.eval()
    classifier = PatchClassifier(module, device, batch_size, notices, input_spec)
    results: list[np.ndarray] = []
    embeddings: list[np.ndarray] = []
    done = 0
    for indices, patches in read_patch_batches(path, grid, batch_size, workers):
        if cancel is not None and cancel.is_set():
            raise InferenceCancelled("heatmap computation cancelled; nothing was stored")
        probs, emb = classifier(patches, embed=with_embeddings)
        if observe is not None:
            observe(indices, patches, classifier.device)  # after: on the device that worked (the CPU after a fall-back)
        results.append(probs)
        if emb is not None:
            embeddings.append(emb)
        done += len(patches)
        if progress:
            progress(done, len(grid))
    probs = np.concatenate(results).astype(np.float32) if results else np.zeros((0, 0), np.float32)
    if not with_embeddings:
        return probs
    return probs, (np.concatenate(embeddings).astype(np.float32) if embeddings else None)
