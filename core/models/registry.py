"""Model registry: manifest -> ``nn.Module`` with verified, code-free weights."""

from __future__ import annotations

import hashlib
import importlib
import json
import os
import pickle
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from core.device import compute_device
from core.errors import ModelLoadError
from core.models.clam import ABMIL, CLAMMB, CLAMSB
from core.models.manifest import ModelManifest, read_manifest, write_manifest
from core.models.mil import GatedAttentionMIL, InstancePoolingMIL
from core.models.patch_cnn import PatchResNet
from core.models.report_classifier import TfidfLogisticRegression
from core.models.sequence import VisitSequenceNet
from core.models.transmil import TransMIL

ARCHITECTURES: dict[str, Callable[..., nn.Module]] = {
    "patch_resnet": PatchResNet,
    "gated_attention_mil": GatedAttentionMIL,
    "instance_pooling_mil": InstancePoolingMIL,
    "visit_sequence_net": VisitSequenceNet,
    "tfidf_logistic_regression": TfidfLogisticRegression,
    # a lab's own MIL checkpoints over foundation-model features; params are the reference code's constructor arguments
    "abmil": ABMIL,
    "clam_sb": CLAMSB,
    "clam_mb": CLAMMB,
    "transmil": TransMIL,
}


@dataclass
class LoadedModel:
    manifest: ModelManifest
    module: nn.Module
    device: torch.device
    vocabulary: dict[str, int] = field(default_factory=dict)

    @property
    def id(self) -> str:
        return self.manifest.id

    @property
    def weights_sha256(self) -> str:
        return self.manifest.weights_sha256


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def resolve_architecture(name: str) -> Callable[..., nn.Module]:
    """A built-in name, or ``package.module:factory`` for a lab's own net."""
    if name in ARCHITECTURES:
        return ARCHITECTURES[name]
    if ":" not in name:
        raise ModelLoadError(
            f"unknown architecture {name!r}: use one of {', '.join(sorted(ARCHITECTURES))} "
            "or an import path 'package.module:factory'"
        )
    module_name, _, attr = name.partition(":")
    try:
        factory = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise ModelLoadError(f"cannot import architecture {name!r}: {exc}") from exc
    if not callable(factory):
        raise ModelLoadError(f"architecture {name!r} is not callable")
    return factory


def read_weights(path: Path, expected_sha256: str) -> dict[str, torch.Tensor]:
    """Tensors from ``.safetensors`` or a tensors-only ``.pt``; never runs code from the file."""
    if not path.is_file():
        raise ModelLoadError(f"weights file {path} does not exist")
    actual = file_sha256(path)
    if actual != expected_sha256:
        raise ModelLoadError(
            f"weights file {path.name} does not match its manifest (sha256 {actual[:12]}..., "
            f"expected {expected_sha256[:12]}...); it may have been replaced or corrupted"
        )
    if path.suffix == ".safetensors":
        try:
            return load_file(path, device="cpu")
        except (SafetensorError, OSError) as exc:
            raise ModelLoadError(f"{path.name} is not a readable safetensors file: {exc}") from exc
    if path.suffix in (".pt", ".pth"):
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except (pickle.UnpicklingError, RuntimeError, AttributeError, EOFError) as exc:
            raise ModelLoadError(
                f"refused to load {path.name}: it is not a plain tensor checkpoint (it would need to run "
                "code when unpickled). Save the state_dict only, or convert it to .safetensors"
            ) from exc
        if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
            raise ModelLoadError(f"{path.name} must hold a state_dict of tensors")
        return state
    raise ModelLoadError(f"weights file {path.name}: use .safetensors or .pt")


def load_model(model_dir: Path, device: torch.device | None = None) -> LoadedModel:
    manifest = read_manifest(model_dir)
    state = read_weights(model_dir / manifest.weights, manifest.weights_sha256)
    factory = resolve_architecture(manifest.architecture)
    try:
        module = factory(**manifest.params)
        adapt = getattr(module, "checkpoint_state", None)  # e.g. CLAM's own pre-load clean-up of its checkpoints
        module.load_state_dict(adapt(state) if callable(adapt) else state, strict=True)
    except (TypeError, RuntimeError, ValueError) as exc:
        raise ModelLoadError(f"model {manifest.id}: weights do not fit architecture {manifest.architecture}: {exc}") from exc
    vocabulary: dict[str, int] = {}
    if manifest.input.vocabulary:
        try:
            vocabulary = json.loads((model_dir / manifest.input.vocabulary).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ModelLoadError(f"model {manifest.id}: cannot read vocabulary: {exc}") from exc
    device = device or compute_device()
    return LoadedModel(manifest, module.to(device).eval(), device, vocabulary)


def save_model(model_dir: Path, fields: dict, module: nn.Module, vocabulary: dict[str, int] | None = None) -> ModelManifest:
    """Write weights (safetensors), vocabulary, then the manifest with the weights' hash.
    The manifest goes last, so a half-written model folder never validates."""
    model_dir.mkdir(parents=True, exist_ok=True)
    fields = {"weights": "weights.safetensors", **fields}
    weights = model_dir / fields["weights"]
    tmp = weights.with_name(weights.name + ".part")
    save_file({k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}, str(tmp))
    os.replace(tmp, weights)
    if vocabulary is not None:
        (model_dir / "vocabulary.json").write_text(json.dumps(vocabulary), encoding="utf-8")
        fields["input"] = {**fields.get("input", {}), "vocabulary": "vocabulary.json"}
    manifest = ModelManifest.model_validate({**fields, "weights_sha256": file_sha256(weights)})
    write_manifest(model_dir, manifest)
    return manifest
