"""Sign-in, roles and the audit trail, through the real Flask app (test client) and the real case store."""

from __future__ import annotations

import csv
import io
import re
import shutil

import pytest

from core.auth.users import add_user, authenticate, find_user
from core.store.audit import audit_events
from core.store.reviews import record_review, review_history
from core.workspace import open_workspace
from dashboard.app import create_app
from tests.helpers import ACCOUNTS, PASSWORD, copy_demo, post_callback, sign_in

SAMPLE_VALUES = {"slide_id": "P001-S1", "key": "0" * 32, "z": "1", "x": "0", "y": "0", "path": "cohort", "filename": "dashboard.css",
                 "package_name": "dash", "fingerprint": "v1", "hash": "x"}


@pytest.fixture(scope="module")
def workspace(demo_workspace, tmp_path_factory):
    """A copy of the demo (two slide files are enough here): these tests write accounts, verdicts and audit events."""
    root = tmp_path_factory.mktemp("auth") / "ws"
    copy_demo(demo_workspace, root, ("P001-S1", "P002-S1"))
    ws = open_workspace(root)
    yield ws
    ws.store.dispose()


def _url(rule) -> str:
    def value(match: re.Match) -> str:
        return SAMPLE_VALUES.get(match.group(2), "x")
    return re.sub(r"<(?:([a-z]+):)?([a-z_]+)>", value, rule.rule)


def test_every_route_refuses_an_anonymous_request(app):
    client = app.server.test_client()
    checked = 0
    for rule in app.server.url_map.iter_rules():
        if rule.endpoint == "login":
            continue
        for method in sorted(rule.methods & {"GET", "POST"}):
            response = client.open(_url(rule), method=method, headers={"Accept": "text/html"})
            refused = response.status_code == 401 or (response.status_code == 302 and response.location.startswith("/login"))
            assert refused, f"{method} {rule.rule} answered {response.status_code} to an anonymous request"
            checked += 1
    assert checked >= 10  # the Dash routes, the tile routes, the admin CSV, logout


def test_sign_in_sets_a_protected_cookie_and_wrong_passwords_fail(app):
    client = app.server.test_client()
    wrong = client.post("/login", data={"username": ACCOUNTS["reviewer"], "password": "not it"})
    assert wrong.status_code == 401 and b"Wrong user name or password" in wrong.data
    unknown = client.post("/login", data={"username": "nobody", "password": "not it"})
    assert unknown.status_code == 401 and b"Wrong user name or password" in unknown.data  # no hint which of the two was wrong
    ok = sign_in(client)
    cookie = ok.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Secure" not in cookie
    assert client.get("/slides/P001-S1/thumbnail.jpeg").status_code == 200
    with client.session_transaction() as session:
        token = session["csrf"]
    assert client.post("/logout", data={"csrf_token": token}).status_code == 302
    assert client.get("/slides/P001-S1/thumbnail.jpeg").status_code == 401


def test_secure_cookies_behind_a_tls_proxy(workspace):
    client = create_app(workspace, secure_cookies=True).server.test_client()
    response = client.post("/login", data={"username": ACCOUNTS["viewer"], "password": PASSWORD},
                           headers={"X-Forwarded-Proto": "https"})
    assert response.status_code == 302 and "Secure" in response.headers["Set-Cookie"]


def test_login_attempts_are_rate_limited(app):
    client = app.server.test_client()
    statuses = [client.post("/login", data={"username": "guess-target", "password": f"guess {i}"}).status_code for i in range(12)]
    assert statuses[:10] == [401] * 10 and statuses[10:] == [429, 429]
    # Another user name from the same address is not locked out.
    assert sign_in(client, "viewer").status_code == 302


def test_next_parameter_cannot_leave_the_site(app):
    client = app.server.test_client()
    response = client.post("/login", data={"username": ACCOUNTS["viewer"], "password": PASSWORD, "next": "//evil.example/x"})
    assert response.status_code == 302 and response.location == "/"


def test_a_viewer_cannot_save_a_verdict_or_export(app, workspace):
    client = app.server.test_client()
    sign_in(client, "viewer")
    before = len(review_history(workspace.store, "P001"))
    response = post_callback(client, app, "review-versions.data", {}, [], {"modality": ["slide", "patient", "report"]})
    assert response.status_code == 403 and b"viewer" in response.data
    assert len(review_history(workspace.store, "P001")) == before
    export = post_callback(client, app, "figure-download.data", {("export-figure-run", "n_clicks"): 1}, ["export-figure-run.n_clicks"])
    assert export.status_code == 403
    # The admin page and its CSV are for admins only.
    assert client.get("/admin/audit.csv").status_code == 403


def test_each_callback_that_records_or_exports_declares_its_role(app):
    from dashboard.auth import roles_for_callbacks

    needed = {key.split("@")[0]: role for key, role in roles_for_callbacks(app.callback_map).items()}
    expected = {"review-versions": "reviewer", "figure-download": "reviewer", "case-report-download": "reviewer",
                "admin-audit-table": "admin", "jobs-start-message": "reviewer", "jobs-action-message": "reviewer",
                "annotation-stamp": "reviewer"}
    for output, role in expected.items():
        assert [r for key, r in needed.items() if output in key] == [role], f"{output}: {needed}"


def test_a_hand_made_request_cannot_leave_out_the_guarded_outputs(app, workspace):
    """Dash runs the callback the body's ``output`` names, whatever its ``outputs`` list says."""
    from tests.helpers import callback_dependency
    from tests.load.reviewers import callback_body

    client = app.server.test_client()
    sign_in(client, "viewer")
    before = len(review_history(workspace.store, "P001"))
    body = callback_body(callback_dependency(app, "review-versions.data"), {}, [], {"modality": ["slide", "patient", "report"]})
    for outputs in ([], [{"id": "review-message", "property": "children"}]):
        response = client.post("/_dash-update-component", json={**body, "outputs": outputs})
        assert response.status_code == 403 and b"needs reviewer" in response.data
    assert len(review_history(workspace.store, "P001")) == before


def test_a_viewer_cannot_start_cancel_or_retry_jobs(app, workspace):
    from core.jobs.state import list_jobs

    client = app.server.test_client()
    sign_in(client, "viewer")
    before = len(list_jobs(workspace.store))
    start = post_callback(client, app, "jobs-start-message.children", {("jobs-start", "n_clicks"): 1, ("jobs-what", "value"): ["shap"],
                                                                        ("jobs-overlap", "value"): 0.0}, ["jobs-start.n_clicks"])
    assert start.status_code == 403 and b"needs reviewer" in start.data
    retry = post_callback(client, app, "jobs-action-message.children", {("jobs-action", "data"): 0}, ['{"index":1,"type":"job-retry"}.n_clicks'],
                          {"index": [1]})
    assert retry.status_code == 403
    assert len(list_jobs(workspace.store)) == before


def test_removed_user_is_signed_out_at_the_next_request(app, workspace):
    add_user(workspace.store, "short-lived", PASSWORD, "reviewer")
    client = app.server.test_client()
    assert client.post("/login", data={"username": "short-lived", "password": PASSWORD}).status_code == 302
    assert client.get("/slides/P001-S1/thumbnail.jpeg").status_code == 200
    from core.auth.users import remove_user

    remove_user(workspace.store, "short-lived")
    assert client.get("/slides/P001-S1/thumbnail.jpeg").status_code == 401
    assert find_user(workspace.store, "short-lived") is None and authenticate(workspace.store, "short-lived", PASSWORD) is None


def test_the_audit_trail_records_each_action(app, workspace):
    client = app.server.test_client()
    client.post("/login", data={"username": ACCOUNTS["reviewer"], "password": "wrong password"})
    sign_in(client, "reviewer")
    reviewer = ACCOUNTS["reviewer"]
    page = post_callback(client, app, "page-content.children", {("url", "pathname"): "/case/P002", ("url", "search"): ""}, ["url.pathname"])
    assert page.status_code == 200 and b"Case P002" in page.data
    visits = post_callback(client, app, "..visit-edit-table.rowData", {("selected-visit", "data"): 0, ("patient-id", "data"): "P002"},
                           ["selected-visit.data"]).get_json()["response"]["visit-edit-table"]["rowData"]
    rows = [{**r, "value": 60 if r["feature"] == "psa" else r["value"]} for r in visits]
    what_if = post_callback(client, app, "whatif-store.data@", {("visit-edit-apply", "n_clicks"): 1, ("visit-edit-table", "rowData"): rows,
                                                                ("selected-visit", "data"): 0, ("patient-id", "data"): "P002"},
                            ["visit-edit-apply.n_clicks"])
    assert what_if.status_code == 200 and "visit-edit-alert" not in what_if.get_data(as_text=True)
    values = {("export-figure", "value"): "risk", ("export-format", "value"): "png", ("export-figure-run", "n_clicks"): 1,
              ("case-id", "data"): "P002", ("selected-visit", "data"): 0}
    export = post_callback(client, app, "figure-download.data", values, ["export-figure-run.n_clicks"])
    assert export.status_code == 200 and "P002-risk.png" in export.get_data(as_text=True)
    record_review(workspace.store, "P002", "slide", "agree", "", [], False, reviewer, expected_version=0)

    events = audit_events(workspace.store, limit=50)
    seen = {(e.action, e.user) for e in events}
    for action in ("login_failed", "login", "case_open", "what_if", "export", "review_saved"):
        assert (action, reviewer) in seen, f"no {action} event for {reviewer}: {seen}"
    assert any(e.action == "case_open" and e.target == "P002" for e in events)
    assert any(e.action == "export" and e.detail.get("what") == "risk" for e in events)

    admin = app.server.test_client()
    sign_in(admin, "admin")
    response = admin.get("/admin/audit.csv")
    assert response.status_code == 200 and response.mimetype == "text/csv"
    rows = list(csv.DictReader(io.StringIO(response.get_data(as_text=True))))
    assert {"login", "case_open", "what_if", "export", "review_saved"} <= {r["action"] for r in rows}


def test_accounts_are_stored_hashed(workspace):
    from sqlalchemy import select

    from core.store.schema import User

    with workspace.store.session() as s:
        hashes = list(s.scalars(select(User.password_hash)))
    assert hashes and all(PASSWORD not in h and h.startswith(("scrypt:", "pbkdf2:")) for h in hashes)


def test_the_demo_account_password_is_kept_owner_only_and_reused(demo_workspace, tmp_path):
    from core.auth.demo_account import CREDENTIALS_FILE, DEMO_USER, ensure_demo_account

    root = tmp_path / "ws"
    shutil.copytree(demo_workspace, root, ignore=shutil.ignore_patterns("*.tiff", "cache"))
    (root / CREDENTIALS_FILE).unlink(missing_ok=True)
    ws = open_workspace(root)
    user, password = ensure_demo_account(ws)
    assert user == DEMO_USER and len(password) >= 8
    assert (root / CREDENTIALS_FILE).stat().st_mode & 0o777 == 0o600
    assert ensure_demo_account(ws) == (user, password)  # the next start prints the same sign-in
    assert authenticate(ws.store, user, password) is not None and find_user(ws.store, user).role == "admin"
    assert not list(root.glob(f"{CREDENTIALS_FILE}*.part"))
    ws.store.dispose()
