"""docs/workspace.md's four commands, run as written: a lab's files become a served workspace without Python."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from tests.helpers import REPO

pytestmark = pytest.mark.store  # the command line against a real SQLite case store


def documented_commands() -> list[str]:
    doc = (REPO / "docs" / "workspace.md").read_text(encoding="utf-8")
    block = re.search(r"<!-- four-commands -->\n```bash\n(.*?)\n```", doc, re.S)
    assert block, "docs/workspace.md lost its four-commands block"
    return block.group(1).splitlines()


def test_the_four_commands_build_a_workspace_the_app_serves(tmp_path):
    commands = documented_commands()
    assert [c.split()[2] for c in commands if c.startswith("python run_dashboard.py")] == ["import", "fit", "predict", "check", "serve"]
    python = f"{sys.executable} "
    for command in commands:
        command = command.split("  #")[0].replace("python docs/", f"{python}{REPO}/docs/")
        command = command.replace("python run_dashboard.py", f"{python}{REPO}/run_dashboard.py")
        if " serve " in command:
            continue  # served below, in this process
        result = subprocess.run(command, shell=True, cwd=tmp_path, capture_output=True, text=True, timeout=300,
                                env={**os.environ, "PYTHONPATH": str(REPO)})
        assert result.returncode == 0, f"{command}\n{result.stdout}\n{result.stderr}"
        if " check " in command:
            assert result.stdout.strip() == "no problems found"
        if " fit " in command:
            assert "model lab-gru fitted: held-out AUC" in result.stdout

    from core.slides.tiles import TileService
    from core.workspace import open_workspace
    from dashboard.app import create_app, render_page

    ws = open_workspace(tmp_path / "lab-ws")
    assert ws.manifest("lab-gru").metrics.auc_ci95 and ws.config.patient_attributes["age"].unit == "years"
    app = create_app(ws)
    client = app.server.test_client()
    response = client.post("/login", data={"username": "admin", "password": "a long passphrase", "next": "/"})
    assert response.status_code == 302
    thumb = client.get("/slides/LAB-0001_HE/thumbnail.jpeg")
    assert thumb.status_code == 200 and thumb.data[:3] == b"\xff\xd8\xff"
    page = str(render_page(ws, TileService(ws), "/case/LAB-0001"))
    assert "Case LAB-0001" in page and "Age" in page and "years" in page
    assert "lab-gru" in str(render_page(ws, TileService(ws), "/patient/LAB-0002"))
    ws.store.dispose()

