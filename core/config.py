"""Process-wide settings, from command-line flags or ``PATHREVIEW_*`` environment variables."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


def default_demo_dir(cohort: str = "prostate") -> Path:
    """Where ``--demo [cohort]`` builds its workspace unless told otherwise: ``demo-workspace`` for the prostate demo,
    ``demo-workspace-<cohort>`` beside it for another."""
    base = Path(os.environ.get("PATHREVIEW_DEMO_DIR", Path.cwd() / "demo-workspace")).resolve()
    return base if cohort == "prostate" else base.with_name(f"{base.name}-{cohort}")


DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8050


@dataclass(frozen=True)
class Settings:
    workspace: Path
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    database_url: str | None = None  # overrides workspace.toml
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT

    @classmethod
    def from_env(cls, workspace: Path | None = None, *, device: str | None = None, database_url: str | None = None,
                 host: str | None = None, port: int | None = None) -> Settings:
        """A flag given (not None) wins over its ``PATHREVIEW_*`` variable, which wins over the default."""
        env = os.environ
        return cls(
            workspace=workspace or Path(env.get("PATHREVIEW_WORKSPACE", default_demo_dir())),
            device=device if device is not None else env.get("PATHREVIEW_DEVICE", "auto"),
            database_url=database_url if database_url is not None else env.get("PATHREVIEW_DATABASE_URL"),
            host=host if host is not None else DEFAULT_HOST,
            port=port if port is not None else DEFAULT_PORT,
        )
