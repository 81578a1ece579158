"""run_dashboard.py: a missing or invalid workspace is one clear error line and exit code 2."""

from __future__ import annotations

import shutil

import pytest

from tests.helpers import ACCOUNTS, assert_one_line_error, run_cli, sign_in


def test_missing_workspace(tmp_path):
    assert_one_line_error(run_cli("--workspace", str(tmp_path / "nowhere")), "does not exist")


def test_folder_without_workspace_toml(tmp_path):
    assert_one_line_error(run_cli("--workspace", str(tmp_path)), "has no workspace.toml")


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
    assert_one_line_error(run_cli("--workspace", str(tmp_path)), expected)


def test_tampered_model_in_workspace_is_reported(demo_workspace, tmp_path):
    copy = tmp_path / "ws"
    shutil.copytree(demo_workspace, copy, ignore=shutil.ignore_patterns("*.tiff"))
    manifest = copy / "models" / "progression-gru" / "model.toml"
    manifest.write_text(manifest.read_text().replace('task = "sequence"', 'task = "weather"'))
    assert_one_line_error(run_cli("--workspace", str(copy)), "progression-gru")


def test_bad_device_is_reported(tmp_path):
    assert_one_line_error(run_cli("--workspace", str(tmp_path), "--device", "tpu:9"), "device")


def test_server_serves_a_valid_workspace(live_server):
    import requests

    http = requests.Session()
    sign_in(http, base=live_server.url)
    page = http.get(live_server.url + "/", timeout=10)
    assert page.status_code == 200 and "PathReview" in page.text
    assert f"Serving on http://127.0.0.1:{live_server.port}" in live_server.output()
    assert http.get(live_server.url + "/slides/P001-S1/thumbnail.jpeg", timeout=10).content[:3] == b"\xff\xd8\xff"
    assert http.get(live_server.url + "/slides/NOPE/thumbnail.jpeg", timeout=10).status_code == 404
    assert http.get(live_server.url + "/slides/..%2F..%2Fcases.db/thumbnail.jpeg", timeout=10).status_code == 404


def test_serving_without_an_admin_account_is_refused_with_the_fix(demo_workspace, tmp_path):
    root = tmp_path / "ws"
    shutil.copytree(demo_workspace, root, ignore=shutil.ignore_patterns("*.tiff"))
    for name in ACCOUNTS.values():
        assert run_cli("users", "remove", name, "--workspace", str(root)).returncode == 0
    result = run_cli("--workspace", str(root), "--port", "0")
    assert_one_line_error(result, "no admin account")
    assert f"users add NAME --role admin --workspace {root}" in result.stderr


def test_users_command_adds_lists_changes_and_removes_accounts(demo_workspace, tmp_path):
    from core.auth.users import authenticate
    from core.workspace import open_workspace

    root = tmp_path / "ws"
    shutil.copytree(demo_workspace, root, ignore=shutil.ignore_patterns("*.tiff"))

    def users(*args, password=None):
        return run_cli("users", *args, "--workspace", str(root), input=password)

    assert users("add", "alice", "--role", "viewer", "--password-stdin", password="first password\n").returncode == 0
    listed = users("list").stdout
    assert "alice\tviewer" in listed and "test-admin\tadmin" in listed
    assert users("passwd", "alice", "--password-stdin", password="second password\n").returncode == 0
    duplicate = users("add", "alice", "--password-stdin", password="another one\n")
    assert duplicate.returncode == 2 and "already exists" in duplicate.stderr
    short = users("add", "bob", "--password-stdin", password="short\n")
    assert short.returncode == 2 and "at least 8" in short.stderr
    ws = open_workspace(root)
    assert authenticate(ws.store, "alice", "first password") is None
    assert authenticate(ws.store, "alice", "second password").role == "viewer"
    ws.store.dispose()
    assert users("remove", "alice").returncode == 0
    assert "alice" not in users("list").stdout
    assert users("remove", "alice").returncode == 2


def test_case_report_for_an_unknown_patient_is_one_error_line(demo_workspace, tmp_path):
    out = tmp_path / "report.pdf"
    assert_one_line_error(run_cli("report", "--workspace", str(demo_workspace), "--patient", "P999", "--out", str(out)), "no patient 'P999'")
    assert not out.exists() and list(tmp_path.iterdir()) == []
