"""What produced an exported figure: model and weights, explainer, settings, seed and time."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from core.workspace import Workspace

WEIGHTS_SHOWN = 10  # hex digits of the weights hash in a caption; the full hash is in the metadata


def _now_utc() -> str:
    return datetime.now(UTC).replace(microsecond=0).isoformat()


@dataclass(frozen=True)
class Provenance:
    model_id: str
    weights_sha256: str
    explainer: str = ""
    settings: dict = field(default_factory=dict)
    seed: int | None = None
    created: str = field(default_factory=_now_utc)  # ISO 8601, UTC

    def caption(self) -> str:
        """One short human line, e.g. "model patch-cnn (weights 1a2b3c4d5e…) · Grad-CAM · overlap=0.5 · seed 0 · 2026-11-22 10:00 UTC"."""
        parts = []
        if self.model_id:
            weights = f" (weights {self.weights_sha256[:WEIGHTS_SHOWN]}…)" if self.weights_sha256 else ""
            parts.append(f"model {self.model_id}{weights}")
        if self.explainer:
            parts.append(self.explainer)
        if self.settings:
            parts.append(", ".join(f"{k}={_short(v)}" for k, v in self.settings.items()))
        if self.seed is not None:
            parts.append(f"seed {self.seed}")
        parts.append(_caption_time(self.created))
        return " · ".join(parts)

    def as_dict(self) -> dict[str, Any]:
        return {"model_id": self.model_id, "weights_sha256": self.weights_sha256, "explainer": self.explainer,
                "settings": dict(self.settings), "seed": self.seed, "created": self.created}


def _short(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _caption_time(created: str) -> str:
    try:
        moment = datetime.fromisoformat(created)
    except ValueError:
        return created
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%d %H:%M UTC")


def model_provenance(workspace: Workspace, model_id: str, explainer: str = "", settings: dict | None = None,
                     seed: int | None = None) -> Provenance:
    """Provenance of a workspace model's output; the weights hash is the one its manifest declares (and loading verifies)."""
    manifest = workspace.manifest(model_id)
    return Provenance(model_id, manifest.weights_sha256, explainer, dict(settings or {}), seed)
