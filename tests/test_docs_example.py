"""The worked example in docs/workspace.md builds a workspace the app serves."""

from __future__ import annotations

import os
import subprocess
import sys

from core.slides.tiles import TileService
from core.workspace import open_workspace
from dashboard.app import create_app, render_page
from tests.helpers import REPO, add_test_accounts, sign_in


def case_summary_of(ws, patient_id):
    from core.store.cases import case_summary

    with ws.store.session() as s:
        return case_summary(s, patient_id)


def test_worked_example_workspace_is_served(tmp_path):
    target = tmp_path / "lab-workspace"
    result = subprocess.run([sys.executable, str(REPO / "docs/examples/make_workspace.py"), str(target)],
                            capture_output=True, text=True, timeout=120, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert result.returncode == 0, result.stderr
    ws = open_workspace(target)
    assert ws.model("lab-niv-lstm").manifest.task == "sequence"
    add_test_accounts(target)
    client = create_app(ws).server.test_client()
    sign_in(client)
    assert client.get("/").status_code == 200
    thumb = client.get("/slides/LAB-0001-A/thumbnail.jpeg")
    assert thumb.status_code == 200 and thumb.data[:3] == b"\xff\xd8\xff"
    page = str(render_page(ws, TileService(ws), "/case/LAB-0001"))
    assert "Case LAB-0001" in page and "Age 67 years · Sex M · Onset bulbar" in page
    report_id = next(r.id for r in case_summary_of(ws, "LAB-0001").reports)
    assert "Gleason score 4+4=8" in str(render_page(ws, TileService(ws), f"/report/{report_id}"))
    ws.store.dispose()
