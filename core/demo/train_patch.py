"""Training the demo's patch CNN and its gated-attention MIL head on slide patches."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace

import numpy as np
import torch
from torch import nn

from core.demo.patch_dataset import PATCH_CLASSES, SlidePatches
from core.demo.reproducible import reproducible_torch
from core.heatmaps.inference import classify_and_embed_patches
from core.models.manifest import InputSpec, StainFit, StainTarget
from core.models.metrics import multiclass_metrics
from core.models.mil import GatedAttentionMIL
from core.models.patch_cnn import PatchResNet
from core.slides.quality import measure_patches, stain_statistics
from core.slides.slide_stain import bound_to_slide
from core.slides.stain import fit_macenko, normalise_stain

Progress = Callable[[str], None]


TARGET_MOSAIC_PATCHES = 256  # training patches tiled into the one image the Macenko target is fitted on


def to_tensor(images: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(images).permute(0, 3, 1, 2).float().div_(255.0)


def macenko_input(images: np.ndarray, rng: np.random.Generator, base: InputSpec, fit: StainFit = "slide") -> InputSpec:
    """``base`` declaring Macenko normalisation with its stains estimated per ``fit``, its target fitted on a mosaic of
    training patches, and the training patches' stain statistics (what quality control compares a slide's stain with)."""
    pick = rng.choice(len(images), size=min(TARGET_MOSAIC_PATCHES, len(images)), replace=False)
    matrix, max_c = fit_macenko(torch.from_numpy(np.concatenate(list(images[pick]), 0)))
    vectors = np.concatenate([measure_patches(images[s : s + 512], torch.device("cpu")).stain_vectors for s in range(0, len(images), 512)])
    return base.model_copy(update={"stain_normalisation": "macenko", "stain_fit": fit,
                                   "stain_target": StainTarget(stain_matrix=matrix, max_concentrations=max_c),
                                   "stain_statistics": stain_statistics(vectors)})


def normalised(images: np.ndarray, spec: InputSpec, batch_size: int = 512) -> np.ndarray:
    """uint8 patches as a model with this input reads them (stain-normalised as it declares)."""
    return np.concatenate([normalise_stain(torch.from_numpy(images[s : s + batch_size]), spec).numpy()
                           for s in range(0, len(images), batch_size)]) if len(images) else images


def as_read(slides: Sequence[SlidePatches], spec: InputSpec, sources: dict[str, StainTarget]) -> list[SlidePatches]:
    """Each slide's patches as a model with ``spec`` reads them: stain-normalised as it declares, with the slide's own
    stains (``sources``, by slide id) when it estimates them per slide."""
    return [replace(s, images=normalised(s.images, bound_to_slide(spec, sources[s.slide_id]) if spec.stain_fit == "slide" else spec))
            for s in slides]


def _augment(x: torch.Tensor) -> torch.Tensor:
    if torch.rand(()) < 0.5:
        x = x.flip(3)
    return torch.rot90(x, int(torch.randint(0, 4, ())), dims=(2, 3))


def training_indices(slides: Sequence[SlidePatches], rng: np.random.Generator, per_class: int, min_purity: float = 0.75) -> np.ndarray:
    """Up to ``per_class`` mostly pure patches of each class, drawn at random, as indices into the slides' patches in order."""
    labels = np.concatenate([s.label for s in slides])
    pure = np.concatenate([(s.purity >= min_purity) & (s.tissue >= 0.5) for s in slides])
    per_class_keep = []
    for k in range(len(PATCH_CLASSES)):
        idx = np.flatnonzero(pure & (labels == k))
        per_class_keep.append(rng.choice(idx, size=min(per_class, len(idx)), replace=False))
    return np.concatenate(per_class_keep)


def training_patches(slides: Sequence[SlidePatches], rng: np.random.Generator, per_class: int,
                     min_purity: float = 0.75) -> tuple[np.ndarray, np.ndarray]:
    keep = training_indices(slides, rng, per_class, min_purity)
    return np.concatenate([s.images for s in slides])[keep], np.concatenate([s.label for s in slides])[keep]


def all_patches(slides: list[SlidePatches]) -> tuple[np.ndarray, np.ndarray]:
    """Every tissue patch of these slides with its majority label (mixed and boundary patches included)."""
    return np.concatenate([s.images for s in slides]), np.concatenate([s.label for s in slides])


def train_patch_cnn(images: np.ndarray, labels: np.ndarray, epochs: int, seed: int, progress: Progress,
                    input_spec: InputSpec | None = None) -> PatchResNet:
    """The patch CNN, trained on ``images`` as a model with ``input_spec`` reads them (stain-normalised as it declares),
    to the same weights whatever the machine's core count."""
    with reproducible_torch():
        return _train_patch_cnn(images, labels, epochs, seed, progress, input_spec)


def _train_patch_cnn(images: np.ndarray, labels: np.ndarray, epochs: int, seed: int, progress: Progress,
                     input_spec: InputSpec | None) -> PatchResNet:
    torch.manual_seed(seed)
    x_all, y_all = to_tensor(normalised(images, input_spec or InputSpec())), torch.from_numpy(labels).long()
    mean = x_all.mean((0, 2, 3)).tolist()
    std = x_all.std((0, 2, 3)).clamp_min(1e-3).tolist()
    model = PatchResNet(len(PATCH_CLASSES), channel_mean=tuple(mean), channel_std=tuple(std))
    optimiser = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=1e-4)
    steps = epochs * -(-len(x_all) // 64)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, max_lr=3e-3, total_steps=steps)
    loss_fn = nn.CrossEntropyLoss()
    model.train()
    for epoch in range(epochs):
        order = torch.randperm(len(x_all))
        total = 0.0
        for start in range(0, len(order), 64):
            batch = order[start : start + 64]
            loss = loss_fn(model(_augment(x_all[batch])), y_all[batch])
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            schedule.step()
            total += loss.item() * len(batch)
        progress(f"patch CNN epoch {epoch + 1}/{epochs}: loss {total / len(x_all):.3f}")
    return model.eval()


def predict_patches(model: PatchResNet, images: np.ndarray, batch_size: int = 256,
                    input_spec: InputSpec | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(class probabilities, embeddings) for every patch, computed as the app's slide inference computes them
    (stain-normalised as ``input_spec`` declares), so MIL heads train on the same embeddings they later score."""
    probs, embeddings = classify_and_embed_patches(model, torch.device("cpu"), images, batch_size, embed=True, input_spec=input_spec)
    assert embeddings is not None  # a PatchResNet has ``features`` and a linear ``fc``, so its embeddings always come back
    return probs, embeddings


def mil_log_probs(model: nn.Module, bag: torch.Tensor) -> torch.Tensor:
    """Bag class log-probabilities of either MIL head."""
    if isinstance(model, GatedAttentionMIL):
        return torch.log_softmax(model(bag)[0], 0)
    return torch.log(model(bag)[0].clamp_min(1e-7))


def train_mil_head(model: nn.Module, bags: list[np.ndarray], labels: np.ndarray, epochs: int, seed: int, progress: Progress) -> nn.Module:
    """One bag per step, on one thread: bags of a few hundred patches are too small for several threads."""
    with reproducible_torch(threads=1):
        return _train_mil_head(model, bags, labels, epochs, seed, progress)


def _train_mil_head(model: nn.Module, bags: list[np.ndarray], labels: np.ndarray, epochs: int, seed: int, progress: Progress) -> nn.Module:
    torch.manual_seed(seed)
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-3, weight_decay=1e-4)
    tensors = [torch.from_numpy(b).float() for b in bags]
    targets = torch.from_numpy(labels).long()
    model.train()
    for epoch in range(epochs):
        total = 0.0
        for i in torch.randperm(len(tensors)).tolist():
            loss = -mil_log_probs(model, tensors[i])[targets[i]]
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            total += loss.item()
        if (epoch + 1) % 10 == 0:
            progress(f"{type(model).__name__} epoch {epoch + 1}/{epochs}: loss {total / len(tensors):.3f}")
    return model.eval()


@torch.no_grad()
def mil_scores(model: nn.Module, bags: list[np.ndarray]) -> np.ndarray:
    return np.array([float(mil_log_probs(model, torch.from_numpy(b).float()).exp()[1]) for b in bags])


def held_out_auc_with_and_without_normalisation(train: list[SlidePatches], test: list[SlidePatches], sources: dict[str, StainTarget],
                                                per_class: int, epochs: int, seeds: Sequence[int],
                                                progress: Progress = lambda message: None) -> tuple[list[float], list[float]]:
    """Held-out macro one-vs-rest AUC, per training seed, of the patch CNN trained and scored with Macenko
    normalisation (stains estimated per slide, the slides' estimates ``sources``), and of the same CNN (same patches,
    seed and epochs) without: what declaring the normalisation gains when slides differ in stain."""
    with_norm: list[float] = []
    without: list[float] = []
    for seed in seeds:
        rng = np.random.default_rng(seed)
        keep = training_indices(train, rng, per_class)
        x, y = np.concatenate([s.images for s in train])[keep], np.concatenate([s.label for s in train])[keep]
        held = training_indices(test, rng, per_class=10**9)
        ty = np.concatenate([s.label for s in test])[held]
        macenko = macenko_input(x, rng, InputSpec())
        for spec, aucs in ((macenko, with_norm), (InputSpec(), without)):
            seen_train, seen_test = as_read(train, spec, sources), as_read(test, spec, sources)
            cnn = train_patch_cnn(np.concatenate([s.images for s in seen_train])[keep], y, epochs, seed, progress)
            probs, _ = predict_patches(cnn, np.concatenate([s.images for s in seen_test])[held])
            aucs.append(float(multiclass_metrics(ty, probs)["auc"]))
    return with_norm, without
