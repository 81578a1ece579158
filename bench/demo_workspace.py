"""The workspace a benchmark runs on: ``--workspace DIR``, or the reduced demo built once under bench/.cache/."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def bench_workspace_root(given: Path | None) -> Path:
    if given is not None:
        return given
    from core.demo.build import REDUCED_SPEC, build_demo

    return build_demo(REPO / "bench" / ".cache" / "demo-workspace", REDUCED_SPEC)

