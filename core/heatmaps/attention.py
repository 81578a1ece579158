"""Slide-level MIL predictions from a heatmap's patch embeddings, with each patch's attention or contribution: the
``attention`` layer kind."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from core.cache import content_key, explanation_path, load_arrays, save_arrays
from core.errors import PathReviewError
from core.heatmaps.layer_kind import LayerKind, Layers
from core.heatmaps.slide_heatmap import SlideHeatmap
from core.models.mil import GatedAttentionMIL
from core.models.registry import LoadedModel
from core.workspace import Workspace

ATTENTION_CACHE_FORMAT = 1
ATTENTION_CAVEAT = ("Attention weights rank patches within this slide; they depend on how many patches the slide has and "
                    "are not patch-level predictions.")


@dataclass
class SlideAttention:
    model_id: str
    probability: float  # bag probability of the positive class
    weights: np.ndarray  # (N,) attention (sums to 1) or per-patch contribution
    kind: str  # attention | contribution

    def top_k(self, k: int = 8) -> list[int]:
        return [int(i) for i in np.argsort(-self.weights)[:k]]


def mil_models_for(workspace: Workspace, heat: SlideHeatmap) -> list[str]:
    """MIL heads that read this heatmap's patch model, attention heads first."""
    ids = [m for m, man in workspace.manifests.items() if man.task == "mil" and man.feature_model == heat.model_id]
    return sorted(ids, key=lambda m: workspace.manifest(m).architecture != "gated_attention_mil")


def _attention_path(workspace: Workspace, heat: SlideHeatmap, model_id: str) -> Path:
    return explanation_path(workspace.cache_dir, "attention", content_key(
        "mil-attention", ATTENTION_CACHE_FORMAT, heat.key, model_id, workspace.manifest(model_id).weights_sha256), ".npz")


def attention_model(layers: Layers, model_id: str) -> str:
    """The MIL head an attention layer reads: ``model_id``, or the first (attention heads first) when none is named."""
    heat, workspace = layers.heat, layers.workspace
    if heat.embeddings is None or len(heat.embeddings) == 0:
        raise PathReviewError("this heatmap has no patch embeddings; recompute it to see MIL attention")
    candidates = mil_models_for(workspace, heat)
    if not candidates:
        raise PathReviewError(f"no MIL model in this workspace reads patch model {heat.model_id}")
    if model_id and model_id not in candidates:
        raise PathReviewError(f"MIL model {model_id} does not read patch model {heat.model_id}; choose one of {', '.join(candidates)}")
    return model_id or candidates[0]


def bag_prediction(model: LoadedModel, embeddings: np.ndarray) -> SlideAttention:
    """MIL head ``model``'s positive-class probability and per-patch weights for a bag of (N, D) patch embeddings."""
    bag = torch.from_numpy(embeddings).float().to(model.device)
    with torch.no_grad():
        if isinstance(model.module, GatedAttentionMIL):
            logits, weights = model.module(bag)
            probability, kind = float(torch.softmax(logits, 0)[-1]), "attention"
        else:
            probs, weights = model.module(bag)
            probability, kind = float(probs[-1]), "contribution"
    return SlideAttention(model.id, probability, weights.cpu().numpy(), kind)


def slide_attention(workspace: Workspace, heat: SlideHeatmap, model_id: str) -> SlideAttention:
    """The bag probability and per-patch weights of MIL head ``model_id``, computed and stored in the workspace cache."""
    model = workspace.model(model_id)
    attention = bag_prediction(model, heat.embeddings if heat.embeddings is not None else np.zeros((0, 0), np.float32))
    save_arrays(_attention_path(workspace, heat, model.id), probability=np.array(attention.probability), weights=attention.weights,
                kind=np.array(attention.kind))
    return attention


def _stored(layers: Layers, model_id: str) -> SlideAttention | None:
    stored = load_arrays(_attention_path(layers.workspace, layers.heat, model_id))
    if stored is None:
        return None
    return SlideAttention(model_id, float(stored["probability"]), stored["weights"], str(stored["kind"]))


# ``attention`` (the first MIL head) or ``attention:<MIL model id>``. A forward pass over the slide's bag of
# embeddings: whole-slide model work, so a job computes it like the stitched CAMs.
MIL_ATTENTION = LayerKind(
    name="attention", background=True, variant=attention_model, stored=_stored,
    compute=lambda layers, model_id, progress: slide_attention(layers.workspace, layers.heat, model_id),
)
