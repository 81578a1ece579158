"""The worked example in docs/workspace.md builds a workspace the app serves."""

from __future__ import annotations

import os
import subprocess
import sys

from core.slides.tiles import TileService
from core.workspace import open_workspace
from dashboard.app import create_app, render_page
from tests.conftest import REPO


def test_worked_example_workspace_is_served(tmp_path):
    target = tmp_path / "lab-workspace"
    result = subprocess.run([sys.executable, str(REPO / "docs/examples/make_workspace.py"), str(target)],
                            capture_output=True, text=True, timeout=120, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert result.returncode == 0, result.stderr
    ws = open_workspace(target)
    assert ws.model("lab-niv-lstm").manifest.task == "sequence"
    client = create_app(ws).server.test_client()
    assert client.get("/").status_code == 200
    thumb = client.get("/slides/LAB-0001-A/thumbnail.jpeg")
    assert thumb.status_code == 200 and thumb.data[:3] == b"\xff\xd8\xff"
    page = str(render_page(ws, TileService(ws), "/case/LAB-0001"))
    assert "Case LAB-0001" in page and "Gleason score 4+4=8" in page
    ws.store.dispose()
