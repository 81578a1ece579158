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


def test_clam_project_example_gives_maps_and_a_refined_region(tmp_path):
    """docs/workspace.md "Bring a CLAM or TRIDENT project": the example's workspace opens, its CLAM-SB head reads the
    registered feature set, the viewer's tiles are served, and a region is refined by the named encoder."""
    from core.heatmaps.feature_layers import heads_for_slide, mil_layers
    from core.jobs.kinds import mil_prediction_job, mil_refine_job

    target = tmp_path / "clam-workspace"
    result = subprocess.run([sys.executable, str(REPO / "docs/examples/clam_project.py"), str(target)],
                            capture_output=True, text=True, timeout=300, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert result.returncode == 0, result.stderr
    ws = open_workspace(target)
    assert heads_for_slide(ws, "LAB-0002-A") == ["lab-clam-sb"]
    add_test_accounts(target)
    client = create_app(ws).server.test_client()
    sign_in(client)
    waiting = client.get("/slides/LAB-0002-A/mil/lab-clam-sb/4/0/0.png?layer=attention:percentile")
    assert waiting.status_code == 202  # the head has not run yet: a job is started
    done = mil_prediction_job(ws, "LAB-0002-A", {"model_id": "lab-clam-sb"}, lambda fraction, message: None)
    assert done["patches"] == 20 * 16 and abs(sum(done["probabilities"]) - 1) < 1e-3
    tile = client.get("/slides/LAB-0002-A/mil/lab-clam-sb/4/0/0.png?layer=attention:percentile&thr=0.5")
    assert tile.status_code == 200 and tile.data[:4] == b"\x89PNG"
    assert client.get("/slides/LAB-0002-A/mil/lab-clam-sb/4/0/0.png?layer=instance:tumour").status_code == 200
    assert client.get("/slides/LAB-0002-A/mil/lab-clam-sb/4/0/0.png?layer=instance:stroma").status_code == 400
    refined = mil_refine_job(ws, "LAB-0002-A", {"model_id": "lab-clam-sb", "region": "1024,768,512,512,0.5"}, lambda f, m: None)
    # 128 px patches every 64 px inside 1024..1536 x 768..1280: 7 x 7, all on tissue
    assert refined["patches"] == 49
    region = mil_layers(ws, "LAB-0002-A", "lab-clam-sb").get(refined["layer"])
    assert region.percentile_reference == "slide" and region.percentiles.min() >= 0 and region.percentiles.max() <= 100
    assert client.get(f"/slides/LAB-0002-A/mil/lab-clam-sb/4/0/0.png?layer={refined['layer']}").status_code == 200
    ws.store.dispose()
