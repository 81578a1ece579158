"""Class activation maps for patch CNNs, batched: CAM, Grad-CAM, Grad-CAM++ and Score-CAM (gradient-free).

Maps are raw (never normalised per patch), at the target layer's resolution, so maps of many patches can
be stitched into one slide-wide map and normalised per slide. The target layer is named in the model
manifest (``cam_target_layer``); for the built-in patch CNN it defaults to ``layer4``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from core.errors import PathReviewError

METHODS = ("cam", "gradcam", "gradcam++", "scorecam")


def target_layer(module: nn.Module, name: str | None) -> nn.Module:
    name = name or "layer4"
    try:
        return module.get_submodule(name)
    except AttributeError as exc:
        raise PathReviewError(f"the model has no layer {name!r} to take class activation maps from") from exc


def _activations_and_logits(module: nn.Module, layer: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    store: dict[str, torch.Tensor] = {}

    def hook(_m: nn.Module, _inp: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
        store["a"] = out

    handle = layer.register_forward_hook(hook)
    try:
        logits = module(x)
    finally:
        handle.remove()
    return store["a"], logits


def class_activation_maps(module: nn.Module, x: torch.Tensor, classes: torch.Tensor | Sequence[int], method: str = "gradcam",
                          layer_name: str | None = None, score_batch: int = 1024) -> torch.Tensor:
    """(B, h, w) raw maps of ``classes[b]`` for patches ``x`` (B, 3, H, W), all patches in one pass.

    cam       sum_k w_ck A_k, with w the final linear layer (global average pooling + linear head)
    gradcam   ReLU(sum_k alpha_k A_k), alpha_k = spatial mean of d y_c / d A_k
    gradcam++ ReLU(sum_k (sum_ij a_kij ReLU(g_kij)) A_k), a = g^2 / (2 g^2 + sum_ij A_k g^3)
    scorecam  ReLU(sum_k s_k A_k), s = softmax_k of p_c(x * upsampled, min-max scaled A_k)
    """
    if method not in METHODS:
        raise PathReviewError(f"CAM method must be one of {', '.join(METHODS)}")
    module.eval()
    classes = torch.as_tensor(classes, device=x.device).long()
    layer = target_layer(module, layer_name)
    rows = torch.arange(len(x), device=x.device)
    if method == "cam":
        with torch.no_grad():
            a, _ = _activations_and_logits(module, layer, x)
            head = getattr(module, "fc", None)
            if not isinstance(head, nn.Linear):
                raise PathReviewError("CAM needs a global-average-pooling + linear head (an 'fc' layer); use Grad-CAM")
            return torch.einsum("bk,bkhw->bhw", head.weight[classes], a)
    if method == "scorecam":
        return _score_cam(module, layer, x, classes, score_batch)
    with torch.enable_grad():
        a, logits = _activations_and_logits(module, layer, x.detach())
        # Gradients w.r.t. the activations only (no parameter gradients are computed or left behind);
        # samples are independent in eval mode, so one backward pass serves the whole batch.
        (g,) = torch.autograd.grad(logits[rows, classes].sum(), a)
        a = a.detach()
    if method == "gradcam":
        return torch.relu(torch.einsum("bk,bkhw->bhw", g.mean((2, 3)), a))
    g2, g3 = g**2, g**3
    denom = 2 * g2 + a.sum((2, 3), keepdim=True) * g3
    alpha = g2 / torch.where(denom != 0, denom, torch.ones_like(denom))
    weights = (alpha * torch.relu(g)).sum((2, 3))
    return torch.relu(torch.einsum("bk,bkhw->bhw", weights, a))


@torch.no_grad()
def _score_cam(module: nn.Module, layer: nn.Module, x: torch.Tensor, classes: torch.Tensor, score_batch: int) -> torch.Tensor:
    a, _ = _activations_and_logits(module, layer, x)
    b, k = a.shape[:2]
    masks = F.interpolate(a, size=x.shape[2:], mode="bilinear", align_corners=False)
    lo, hi = masks.amin((2, 3), keepdim=True), masks.amax((2, 3), keepdim=True)
    masks = (masks - lo) / torch.where(hi > lo, hi - lo, torch.ones_like(hi))
    masked = (x[:, None] * masks[:, :, None]).reshape(b * k, *x.shape[1:])
    target = classes.repeat_interleave(k)
    scores = torch.cat([torch.softmax(module(masked[s : s + score_batch]), 1)[torch.arange(len(masked[s : s + score_batch]), device=x.device),
                                                                              target[s : s + score_batch]]
                        for s in range(0, len(masked), score_batch)]).view(b, k)
    return torch.relu(torch.einsum("bk,bkhw->bhw", torch.softmax(scores, 1), a))
