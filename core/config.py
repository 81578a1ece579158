"""Process-wide settings, from command-line flags or ``PATHREVIEW_*`` environment variables."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


def default_demo_dir() -> Path:
    """Where ``--demo`` builds its workspace unless told otherwise."""
    return Path(os.environ.get("PATHREVIEW_DEMO_DIR", Path.cwd() / "demo-workspace")).resolve()


@dataclass(frozen=True)
class Settings:
    workspace: Path
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    database_url: str | None = None  # overrides workspace.toml
    host: str = "127.0.0.1"
    port: int = 8050

    @classmethod
    def from_env(cls, workspace: Path | None = None, **overrides) -> Settings:
        env = os.environ
        values = {
            "workspace": workspace or Path(env.get("PATHREVIEW_WORKSPACE", default_demo_dir())),
            "device": env.get("PATHREVIEW_DEVICE", "auto"),
            "database_url": env.get("PATHREVIEW_DATABASE_URL"),
        }
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)
