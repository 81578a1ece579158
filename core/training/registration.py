"""Models in a workspace: ``models/<id>/`` (manifest and weights), the list and manifest pins in workspace.toml, and the
case store's model record that stored predictions point to. A model is registered only once it has loaded."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from sqlalchemy import delete, func, select
from torch import nn

from core.errors import ModelLoadError, NotFoundError, PathReviewError
from core.models.manifest import MANIFEST_NAME, ModelManifest, write_manifest
from core.models.registry import file_sha256, load_model, save_model
from core.store.schema import ModelRecord, Prediction
from core.workspace import Workspace, manifest_sha256, read_workspace_config, write_workspace_config


def _record(workspace: Workspace, manifest: ModelManifest) -> None:
    """List and pin the model in workspace.toml and write its record in the case store."""
    folder = workspace.models_dir / manifest.id
    config = read_workspace_config(workspace.root)
    models = config.models if manifest.id in config.models else [*config.models, manifest.id]
    pins = config.manifest_sha256 | {manifest.id: manifest_sha256(folder)}
    write_workspace_config(workspace.root, config.model_copy(update={"models": models, "manifest_sha256": pins}))
    with workspace.store.session() as s:
        s.merge(ModelRecord(id=manifest.id, task=manifest.task, architecture=manifest.architecture,
                            weights_sha256=manifest.weights_sha256, metrics=manifest.metrics.model_dump()))
    workspace.manifests[manifest.id] = manifest
    workspace.forget_model(manifest.id)


def add_model(workspace: Workspace, fields: dict[str, Any], weights: Path) -> ModelManifest:
    """Copy ``weights`` into ``models/<id>/``, write the manifest with their hash and load the model once (tensors only:
    a ``.pt`` is read with ``weights_only=True``). Nothing is registered, and the folder is removed, if it does not load."""
    model_id = str(fields.get("id", ""))
    folder = workspace.models_dir / model_id
    if not weights.is_file():
        raise PathReviewError(f"weights file {weights} does not exist")
    if weights.suffix not in (".safetensors", ".pt", ".pth"):
        raise PathReviewError(f"weights file {weights.name}: use .safetensors, or a state_dict saved as .pt")
    if folder.exists():
        raise PathReviewError(f"model {model_id!r} already exists in this workspace; remove it first (models remove --id {model_id})")
    try:
        folder.mkdir(parents=True)
        shutil.copyfile(weights, folder / f"weights{weights.suffix}")
        manifest = ModelManifest.model_validate({**fields, "weights": f"weights{weights.suffix}",
                                                 "weights_sha256": file_sha256(folder / f"weights{weights.suffix}")})
        write_manifest(folder, manifest)
        load_model(folder)
    except BaseException as exc:
        shutil.rmtree(folder, ignore_errors=True)
        if isinstance(exc, ValueError) and not isinstance(exc, PathReviewError):
            raise ModelLoadError(f"model {model_id!r}: {exc}") from exc
        raise
    _record(workspace, manifest)
    return manifest


def save_fitted_model(workspace: Workspace, fields: dict[str, Any], module: nn.Module, vocabulary: dict[str, int] | None = None) -> ModelManifest:
    """A model fitted here: written (replacing one of the same id), loaded once as the app will load it, and registered."""
    folder = workspace.models_dir / str(fields["id"])
    if folder.exists():
        shutil.rmtree(folder)
    manifest = save_model(folder, fields, module, vocabulary)
    load_model(folder)
    _record(workspace, manifest)
    return manifest


def remove_model(workspace: Workspace, model_id: str) -> int:
    """Unregister a model: its folder, its listing and pin, its record and its stored predictions. Returns how many
    predictions went with it."""
    config = read_workspace_config(workspace.root)
    folder = workspace.models_dir / model_id
    if model_id not in config.models and not (folder / MANIFEST_NAME).is_file():
        raise NotFoundError(f"no model {model_id!r} in this workspace (models list shows them)")
    with workspace.store.session() as s:
        removed = s.scalar(select(func.count()).select_from(Prediction).where(Prediction.model_id == model_id))
        s.execute(delete(Prediction).where(Prediction.model_id == model_id))
        s.execute(delete(ModelRecord).where(ModelRecord.id == model_id))
    write_workspace_config(workspace.root, config.model_copy(update={
        "models": [m for m in config.models if m != model_id],
        "manifest_sha256": {k: v for k, v in config.manifest_sha256.items() if k != model_id}}))
    shutil.rmtree(folder, ignore_errors=True)
    workspace.manifests.pop(model_id, None)
    workspace.forget_model(model_id)
    return int(removed or 0)
