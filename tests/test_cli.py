"""run_dashboard.py: a missing or invalid workspace is one clear error line and exit code 2."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest

from tests.conftest import REPO


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPO / "run_dashboard.py"), *args], capture_output=True, text=True, timeout=120, cwd=REPO)


def _assert_one_line_error(result: subprocess.CompletedProcess, expected: str) -> None:
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ") and expected in lines[0]
    assert "Traceback" not in result.stderr


def test_missing_workspace(tmp_path):
    _assert_one_line_error(run_cli("--workspace", str(tmp_path / "nowhere")), "does not exist")


def test_folder_without_workspace_toml(tmp_path):
    _assert_one_line_error(run_cli("--workspace", str(tmp_path)), "has no workspace.toml")


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("name = [unclosed", "not valid TOML"),
        ('name = "x"\ncolour = "blue"\n', "colour"),
        ("name = 3\n", "name"),
        ('name = "x"\nmodels = ["ghost"]\n', "model 'ghost'"),
        ('name = "x"\ndatabase_url = "nosuchdb://x"\n', "database URL"),
    ],
)
def test_invalid_workspace_toml(tmp_path, content, expected):
    (tmp_path / "workspace.toml").write_text(content)
    _assert_one_line_error(run_cli("--workspace", str(tmp_path)), expected)


def test_tampered_model_in_workspace_is_reported(demo_workspace, tmp_path):
    copy = tmp_path / "ws"
    shutil.copytree(demo_workspace, copy, ignore=shutil.ignore_patterns("*.tiff"))
    manifest = copy / "models" / "niv-gru" / "model.toml"
    manifest.write_text(manifest.read_text().replace('task = "sequence"', 'task = "weather"'))
    _assert_one_line_error(run_cli("--workspace", str(copy)), "niv-gru")


def test_bad_device_is_reported(tmp_path):
    _assert_one_line_error(run_cli("--workspace", str(tmp_path), "--device", "tpu:9"), "device")


def test_server_serves_a_valid_workspace(live_server):
    import requests

    page = requests.get(live_server.url + "/", timeout=10)
    assert page.status_code == 200 and "PathReview" in page.text
    assert f"Serving on http://127.0.0.1:{live_server.port}" in live_server.output()
    assert requests.get(live_server.url + "/slides/P001-S1/thumbnail.jpeg", timeout=10).content[:3] == b"\xff\xd8\xff"
    assert requests.get(live_server.url + "/slides/NOPE/thumbnail.jpeg", timeout=10).status_code == 404
    assert requests.get(live_server.url + "/slides/..%2F..%2Fcases.db/thumbnail.jpeg", timeout=10).status_code == 404
