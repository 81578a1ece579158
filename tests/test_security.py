"""The protections of docs/security.md, one test each, against the real server (run_dashboard.py under waitress, for
what waitress does: the trusted proxy, the client address) or the real app through Flask's test client."""

from __future__ import annotations

import csv
import hashlib
import io
import itertools
import json
import os
import sqlite3
import stat
import string

import numpy as np
import pytest
import requests

from core.auth.users import add_user, remove_user, set_password, set_role
from core.errors import PathReviewError, WorkspaceError
from core.explain.text import report_features
from core.heatmaps.slide_heatmap import loaded_heatmap
from core.jobs.state import JobSpec, create_jobs, list_jobs
from core.models.manifest import MANIFEST_NAME
from core.models.report_text import report_tokens
from core.store.audit import FORMULA_STARTS, audit_events, spreadsheet_safe
from core.store.database import open_store
from core.store.reviews import review_history
from core.store.schema import Report
from core.workspace import Workspace, manifest_sha256, open_workspace, read_workspace_config, write_workspace_config
from dashboard.app import create_app
from dashboard.sign_in_limits import BACKOFF_AFTER, SignInLimits
from tests.helpers import ACCOUNTS, PASSWORD, LiveServer, add_test_accounts, copy_demo, post_callback
from tests.load.reviewers import callback_body, find_component

REVIEWER = ACCOUNTS["reviewer"]


def _with_limits(root, **limits) -> None:
    config = read_workspace_config(root)
    write_workspace_config(root, config.model_copy(update={"limits": config.limits.model_copy(update=limits)}))


@pytest.fixture(scope="module")
def root(demo_workspace, tmp_path_factory):
    """A copy of the demo (two slide files) that these tests may write to, with small job and LIME limits."""
    root = copy_demo(demo_workspace, tmp_path_factory.mktemp("security") / "ws", ("P001-S1", "P002-S1"))
    _with_limits(root, jobs_per_user=1, lime_sample_words=20_000, edited_report_chars=2_000)
    return root


@pytest.fixture(scope="module")
def workspace(root):
    ws = open_workspace(root)
    yield ws
    ws.store.dispose()


@pytest.fixture(scope="module")
def proxied(root):
    """The real server behind a declared proxy on 127.0.0.1: these requests come "through" it."""
    server = LiveServer(root, "--trusted-proxy", "127.0.0.1")
    yield server
    server.stop()


def _login(url: str, username: str, password: str, client_address: str) -> requests.Response:
    return requests.post(f"{url}/login", data={"username": username, "password": password}, allow_redirects=False,
                         headers={"X-Forwarded-For": client_address}, timeout=30)


def _events(workspace, action: str, user: str | None = None):
    return audit_events(workspace.store, limit=200, action=action, user=user)


# 1. Sign-in limits on the normalised name and the real address; back-off per account; 429s audited.

def test_sign_in_limit_counts_the_name_as_the_account_knows_it(proxied, workspace):
    variants = [REVIEWER + " " * i for i in range(1, 6)] + [" " + REVIEWER.upper(), REVIEWER.capitalize() + "\t"] + [REVIEWER] * 3
    statuses = [_login(proxied.url, name, "wrong password", "10.0.0.1").status_code for name in variants]
    assert statuses == [401] * 10
    limited = _login(proxied.url, REVIEWER + "  ", PASSWORD, "10.0.0.1")  # the right password, spelled another way
    assert limited.status_code == 429 and "Set-Cookie" not in limited.headers
    refused = _events(workspace, "login_limited")
    assert refused and refused[0].target == "10.0.0.1" and refused[0].detail["account"] == REVIEWER
    # The limit is this address's: the reviewer signs in from their own.
    assert _login(proxied.url, REVIEWER, PASSWORD, "10.0.0.2").status_code == 302


def test_an_account_backs_off_after_failures_from_many_addresses(proxied):
    name = ACCOUNTS["viewer"]
    statuses = [_login(proxied.url, name, "wrong password", f"10.1.0.{i}").status_code for i in range(BACKOFF_AFTER)]
    assert statuses == [401] * BACKOFF_AFTER
    assert _login(proxied.url, name, PASSWORD, "10.1.1.1").status_code == 429


def test_back_off_grows_and_a_success_clears_it():
    now = [0.0]
    limits = SignInLimits(clock=lambda: now[0])
    for i in range(BACKOFF_AFTER + 3):
        limits.failed(f"10.2.0.{i}", "someone")
    assert limits.refusal("10.3.0.1", "someone") == "too many failed sign-ins for this account"
    now[0] += 2 ** 3 - 0.5
    assert limits.refusal("10.3.0.1", "someone") is not None
    now[0] += 1
    assert limits.refusal("10.3.0.1", "someone") is None
    limits.succeeded("10.3.0.1", "someone")
    limits.failed("10.3.0.1", "someone")
    assert limits.refusal("10.3.0.1", "someone") is None


# 2. The forwarded client address only from the declared proxy.

def test_the_trusted_proxy_gives_the_client_address(proxied, workspace):
    assert _login(proxied.url, ACCOUNTS["admin"], PASSWORD, "10.9.8.7").status_code == 302
    assert _events(workspace, "login", ACCOUNTS["admin"])[0].target == "10.9.8.7"


def test_without_a_trusted_proxy_forwarded_addresses_are_ignored(root, workspace):
    """Behind TLS (Secure cookies) but with no proxy declared, a client cannot claim another address."""
    server = LiveServer(root, "--secure-cookies")
    try:
        assert _login(server.url, ACCOUNTS["admin"], PASSWORD, "10.9.8.6").status_code == 302
    finally:
        server.stop()
    assert _events(workspace, "login", ACCOUNTS["admin"])[0].target == "127.0.0.1"


# 3. Sessions end: sign-out (POST with the form's token) everywhere, password, role, removal; idle and absolute lifetimes.

def _thumbnail(client) -> int:
    return client.get("/slides/P001-S1/thumbnail.jpeg").status_code


def _signed_in(app, username: str):
    client = app.server.test_client()
    assert client.post("/login", data={"username": username, "password": PASSWORD}).status_code == 302
    return client


def _copy_session(app, client):
    """A second browser holding the same session cookie (as if copied before sign-out)."""
    other = app.server.test_client()
    cookie = client.get_cookie("session")
    other.set_cookie("session", cookie.value)
    return other


def test_sign_out_is_a_post_with_the_pages_token_and_ends_copied_sessions(app, workspace):
    client = _signed_in(app, REVIEWER)
    copy = _copy_session(app, client)
    assert client.get("/logout").status_code == 405
    assert client.post("/logout", data={}).status_code == 400 and _thumbnail(client) == 200  # no token: nothing happens
    with client.session_transaction() as session:
        token = session["csrf"]
    assert client.post("/logout", data={"csrf_token": token}).status_code == 302
    assert _thumbnail(client) == 401 and _thumbnail(copy) == 401
    assert _events(workspace, "logout", REVIEWER)


def test_the_navigation_bar_signs_out_with_a_form(app):
    client = _signed_in(app, REVIEWER)
    layout = client.get("/_dash-layout").get_json()
    with client.session_transaction() as session:
        token = session["csrf"]
    assert find_component(layout, "sign-out-token") == {"id": "sign-out-token", "type": "hidden", "name": "csrf_token", "value": token}
    assert '"action": "/logout", "className": "d-inline", "method": "POST"' in json.dumps(layout)


@pytest.mark.parametrize("change", ["password", "role", "removed and re-created as admin"])
def test_account_changes_end_its_sessions(app, workspace, change):
    name = f"changing-{change.split()[0]}"
    add_user(workspace.store, name, PASSWORD, "reviewer")
    client = _signed_in(app, name)
    assert _thumbnail(client) == 200
    if change == "password":
        set_password(workspace.store, name, PASSWORD + "!")
    elif change == "role":
        set_role(workspace.store, name, "viewer")
    else:
        remove_user(workspace.store, name)
        add_user(workspace.store, name, PASSWORD, "admin")
    assert _thumbnail(client) == 401
    assert client.get("/admin/audit.csv").status_code == 401


@pytest.mark.parametrize(("key", "age_s"), [("seen_at", 31 * 60), ("signed_in_at", 12 * 3600 + 60)])
def test_sessions_end_when_idle_and_at_their_lifetime(app, key, age_s):
    client = _signed_in(app, REVIEWER)
    with client.session_transaction() as session:
        session[key] -= age_s
    assert _thumbnail(client) == 401


# 4. The audit trail: every read of patient data, every what-if, exports with their outcome, decoded ids, jobs' users.

def _render(client, app, path: str):
    return post_callback(client, app, "page-content.children", {("url", "pathname"): path, ("url", "search"): ""}, ["url.pathname"])


def test_page_views_report_text_and_thumbnails_are_audited(app, workspace):
    client = _signed_in(app, REVIEWER)
    for path, action, target in (("/patient/P%30%301", "patient_open", "P001"), ("/report/P001-R1", "report_open", "P001-R1"),
                                 ("/slide/P001-S1", "slide_open", "P001-S1"), ("/case/P%30%302", "case_open", "P002")):
        assert _render(client, app, path).status_code == 200
        assert _events(workspace, action, REVIEWER)[0].target == target  # decoded, as the store names it
    assert post_callback(client, app, "case-report-panel.children", {("case-report-choice", "value"): "P002-R2"},
                         ["case-report-choice.value"]).status_code == 200
    assert _events(workspace, "report_read", REVIEWER)[0].target == "P002-R2"
    before = len(_events(workspace, "thumbnail", REVIEWER))
    assert _thumbnail(client) == 200 and _thumbnail(client) == 200
    assert len(_events(workspace, "thumbnail", REVIEWER)) == before + 1  # once per session and slide
    assert _thumbnail(_signed_in(app, REVIEWER)) == 200
    assert len(_events(workspace, "thumbnail", REVIEWER)) == before + 2


def test_a_what_if_shown_by_the_figure_callback_is_audited(app, workspace):
    client = _signed_in(app, REVIEWER)
    before = len(_events(workspace, "what_if", REVIEWER))
    rows = post_callback(client, app, "..visit-edit-table.rowData", {("selected-visit", "data"): 0, ("patient-id", "data"): "P001"},
                         ["selected-visit.data"]).get_json()["response"]["visit-edit-table"]["rowData"]
    what_if = {"visit": 0, "values": {r["feature"]: r["value"] for r in rows}}
    shown = post_callback(client, app, "patient-risk.figure", {("selected-visit", "data"): 0, ("whatif-store", "data"): what_if,
                                                                ("patient-id", "data"): "P001"}, ["whatif-store.data"])
    assert shown.status_code == 200 and "whatif-comparison" in shown.get_data(as_text=True)
    rows = _events(workspace, "what_if", REVIEWER)
    assert len(rows) == before + 1 and rows[0].target == "P001" and rows[0].detail["shown"] is True


def _export(client, app, region: str):
    values = {("export-figure", "value"): "slide", ("export-format", "value"): "png", ("export-figure-run", "n_clicks"): 1,
              ("case-id", "data"): "P001", ("case-selected-slide", "data"): "P001-S1", ("export-region-mode", "value"): "region",
              ("export-region", "value"): region}
    return post_callback(client, app, "figure-download.data", values, ["export-figure-run.n_clicks"])


def test_exports_are_audited_after_validation_with_their_outcome(app, workspace):
    client = _signed_in(app, REVIEWER)
    refused = _export(client, app, "not a region")
    assert refused.status_code == 200 and "export-error" in refused.get_data(as_text=True)
    row = _events(workspace, "export", REVIEWER)[0]
    assert row.target == "P001" and row.detail["outcome"] == "refused"
    done = _export(client, app, "0, 0, 400, 400")
    assert done.status_code == 200
    row = _events(workspace, "export", REVIEWER)[0]
    assert row.detail["outcome"] == "exported" and row.detail["file"].startswith("P001-slide")


def _heat_compute_body(app, slide_id: str = "P001-S1"):
    ctx = {"slide_id": slide_id, "max_zoom": 12, "mpp": 0.5, "width": 4096, "height": 4096}
    return callback_body(_dependency(app, "heat-key.data"), {("heat-compute", "n_clicks"): 1, ("slide-ctx", "data"): ctx,
                                                             ("heat-model", "value"): "nope", ("heat-overlap", "value"): 0.0},
                         ["heat-compute.n_clicks"])


def _dependency(app, fragment: str) -> dict:
    key = next(k for k in app.callback_map if fragment in k)
    return {"output": key, "inputs": app.callback_map[key]["inputs"], "state": app.callback_map[key]["state"]}


def test_a_heatmap_job_from_the_slide_page_records_who_asked(proxied, workspace, app):
    import time

    session = requests.Session()
    assert session.post(f"{proxied.url}/login", data={"username": REVIEWER, "password": PASSWORD}, allow_redirects=False,
                        headers={"X-Forwarded-For": "10.4.0.1"}, timeout=30).status_code == 302
    body = _heat_compute_body(app)
    started = session.post(f"{proxied.url}/_dash-update-component", json=body, timeout=60)
    assert started.status_code == 200, started.text[:300]
    handles = started.json()
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:  # the renderer's polls; the job (an unknown model: it fails at once) ends
        jobs = [j for j in list_jobs(workspace.store, limit=20) if j.kind == "heatmap" and j.params.get("model_id") == "nope"]
        if jobs and jobs[0].finished:
            break
        session.post(f"{proxied.url}/_dash-update-component", json=body, params={"cacheKey": handles.get("cacheKey"),
                                                                                  "job": handles.get("job")}, timeout=60)
        time.sleep(0.5)
    assert jobs and jobs[0].requested_by == REVIEWER


# 5. Formula injection in the audit CSV.

def test_the_audit_csv_neutralises_formulas(app):
    hostile = ['=HYPERLINK("http://evil.example","x")', "+1+1", "-2+3", "@SUM(A1)"]
    client = app.server.test_client()
    for name in hostile:
        client.post("/login", data={"username": name, "password": "wrong password"})
    admin = _signed_in(app, ACCOUNTS["admin"])
    rows = list(csv.reader(io.StringIO(admin.get("/admin/audit.csv").get_data(as_text=True))))
    users = {r[1] for r in rows[1:]}
    assert {"'" + name for name in hostile} <= users
    assert not any(cell.startswith(FORMULA_STARTS) for r in rows for cell in r)


@pytest.mark.parametrize(("cell", "shown"), [("=1+1", "'=1+1"), ("+1", "'+1"), ("-1", "'-1"), ("@A1", "'@A1"), ("\tx", "'\tx"),
                                             ("\rx", "'\rx"), ("P001", "P001"), ("", "")])
def test_cells_that_start_a_formula_get_an_apostrophe(cell, shown):
    assert spreadsheet_safe(cell) == shown


# 6. Bounded work: LIME samples x words and report length by [limits]; job-starting controls check the role; jobs per user.

def _report_edit(client, app, workspace, edited: str, samples: int):
    values = {("report-edit-run", "n_clicks"): 1, ("report-edit", "value"): edited, ("report-id", "data"): "P001-R1",
              ("lime-class", "value"): workspace.manifest(workspace.models_for("report")[0]).class_names[0],
              ("lime-num-features", "value"): 6, ("lime-num-samples", "value"): samples, ("lime-seed", "value"): 0,
              ("lime-kernel-width", "value"): 25}
    response = post_callback(client, app, "report-edit-result.children", values, ["report-edit-run.n_clicks"])
    assert response.status_code == 200
    return response.get_data(as_text=True)


def test_lime_work_and_report_length_are_bounded_by_the_workspace_limits(app, workspace):
    client = _signed_in(app, REVIEWER)
    # 100 distinct words the model reads (a word holding digits is an identifier, which it does not read).
    words = " ".join("term" + a + b for a, b in itertools.islice(itertools.product(string.ascii_lowercase, repeat=2), 100))
    assert len(set(report_tokens(words))) == 100
    with workspace.store.session() as s:
        stored_words = len(report_features(s.get(Report, "P001-R1").text).features)
    samples = 20_000 // stored_words  # the stored report fits the bound, whether or not its explanation is cached
    assert samples * 100 > 20_000
    answer = _report_edit(client, app, workspace, words, samples)
    assert "of a report with 100 distinct words" in answer and "sample-words" in answer and "use at most 200 samples" in answer
    assert "limited to 2,000 characters" in _report_edit(client, app, workspace, "carcinoma " * 300, 100)
    stored = post_callback(client, app, "report-highlights.children", {
        ("lime-run", "n_clicks"): 1, ("lime-class", "value"): workspace.manifest(workspace.models_for("report")[0]).class_names[0],
        ("report-id", "data"): "P001-R1", ("lime-num-features", "value"): 6, ("lime-num-samples", "value"): 50_000,
        ("lime-seed", "value"): 0, ("lime-kernel-width", "value"): 25}, ["lime-run.n_clicks"])
    assert stored.status_code == 200 and "sample-words" in stored.get_data(as_text=True)


@pytest.mark.parametrize("fragment", ["heat-key.data", "jobs-start-message.children", "jobs-action-message.children"])
def test_a_viewer_cannot_start_or_change_jobs(app, workspace, fragment):
    client = _signed_in(app, ACCOUNTS["viewer"])
    before = len(list_jobs(workspace.store, limit=1000))
    body = callback_body(_dependency(app, fragment), {}, [], {"index": [1]})
    response = client.post("/_dash-update-component", json=body)
    assert response.status_code == 403 and b"viewer" in response.data
    assert len(list_jobs(workspace.store, limit=1000)) == before


def test_a_user_with_jobs_running_up_to_the_limit_cannot_start_another(app, workspace):
    add_user(workspace.store, "busy-reviewer", PASSWORD, "reviewer")
    create_jobs(workspace.store, [JobSpec("heatmap", "P002-S1", {"model_id": "x", "overlap": 0.5})], "local", "busy-reviewer")
    client = _signed_in(app, "busy-reviewer")
    response = client.post("/_dash-update-component", json=_heat_compute_body(app))
    assert response.status_code == 429 and b"Jobs page" in response.data


# 7. Typed callback inputs: booleans are booleans; NaN, Infinity and lists are refused with a message.

def _review_body(app, signoff, version, case_id):
    body = callback_body(_dependency(app, "review-versions.data"), {("review-versions", "data"): {"patient": version},
                                                                     ("case-id", "data"): case_id}, [],
                         {"modality": ["slide", "patient", "report"]})
    for item in body["state"]:
        for entry in item if isinstance(item, list) else []:
            kind = entry["id"]["type"]
            if entry["property"] == "id":
                entry["value"] = entry["id"]
                continue
            entry["value"] = {"review-verdict": "agree", "review-signoff": signoff, "review-comment": "", "review-flags": []}.get(kind, entry["value"])
    for entry in body["inputs"][0]:
        entry["value"] = 1 if entry["id"]["modality"] == "patient" else 0
    body["changedPropIds"] = ['{"modality":"patient","type":"review-save"}.n_clicks']
    return body


@pytest.mark.parametrize(("signoff", "version", "case_id", "field"), [
    ("false", 0, "P001", "review-signoff.value"), (0, 0, "P001", "review-signoff.value"),
    (False, float("nan"), "P001", "review-versions.data"), (False, float("inf"), "P001", "review-versions.data"),
    (False, 0, ["P001"], "case-id.data"),
])
def test_review_values_of_the_wrong_type_are_400_and_save_nothing(app, workspace, signoff, version, case_id, field):
    client = _signed_in(app, REVIEWER)
    before = review_history(workspace.store, "P001")
    response = client.post("/_dash-update-component", json=_review_body(app, signoff, version, case_id))
    assert response.status_code == 400 and field.encode() in response.data and b"nothing was done" in response.data
    assert review_history(workspace.store, "P001") == before


def test_a_real_false_sign_off_is_saved_as_not_signed_off(app, workspace):
    client = _signed_in(app, REVIEWER)
    version = len([e for e in review_history(workspace.store, "P001") if e.modality == "patient"])
    response = client.post("/_dash-update-component", json=_review_body(app, False, version, "P001"))
    assert response.status_code == 200, response.data[:300]
    latest = review_history(workspace.store, "P001")[0]
    assert latest.modality == "patient" and latest.signed_off is False


# 8. The low items.

def test_heatmap_keys_that_are_paths_are_refused_where_heatmaps_load(app, workspace, root, tmp_path):
    planted = root.parent / "x"
    planted.mkdir(exist_ok=True)
    np.savez(planted / "evil.npz", origins=np.zeros((1, 2)))
    with pytest.raises(PathReviewError):
        loaded_heatmap(workspace, "../../x/evil")
    client = _signed_in(app, REVIEWER)
    response = post_callback(client, app, "mil-panel.children", {("heat-key", "data"): "../../x/evil"}, ["heat-key.data"])
    assert response.status_code == 400


def test_an_audit_trail_that_cannot_be_written_is_503_and_nothing_is_done(root, workspace):
    store = open_store(workspace.store.url, busy_timeout_s=0.2)
    locked = Workspace(workspace.root, workspace.config, store, workspace.manifests)
    app = create_app(locked)
    client = app.server.test_client()
    signed_in = _signed_in(app, REVIEWER)
    lock = sqlite3.connect(str(root / "cases.db"), timeout=0)
    try:
        lock.execute("BEGIN IMMEDIATE")  # another writer holds the write lock past the store's bound; reads go on
        login = client.post("/login", data={"username": REVIEWER, "password": PASSWORD})
        assert login.status_code == 503 and b"try again" in login.data and client.get_cookie("session") is None
        page = _render(signed_in, app, "/case/P001")
        assert page.status_code == 503 and b"try again" in page.data
        assert signed_in.get("/slides/P002-S1/thumbnail.jpeg").status_code == 503
    finally:
        lock.rollback()
        lock.close()
        store.dispose()
    assert _thumbnail(client) == 401  # the refused sign-in left no session


def test_the_role_check_refuses_bodies_it_cannot_read(app):
    client = _signed_in(app, ACCOUNTS["viewer"])
    body = callback_body(_dependency(app, "review-versions.data"), {}, [], {"modality": ["slide", "patient", "report"]})
    assert client.post("/_dash-update-component", json={**body, "outputs": "review-versions.data"}).status_code == 403
    as_text = client.post("/_dash-update-component", data=json.dumps(body), content_type="text/plain")
    assert as_text.status_code == 415


def test_security_headers_on_pages_callbacks_and_the_sign_in_form(app):
    client = _signed_in(app, REVIEWER)
    for response in (client.get("/case/P001", headers={"Accept": "text/html"}), app.server.test_client().get("/login"),
                     _render(client, app, "/case/P001")):
        policy = response.headers["Content-Security-Policy"]
        scripts = next(p for p in policy.split(";") if p.strip().startswith("script-src"))
        assert "'self'" in scripts and "unsafe-inline" not in scripts and "unsafe-eval" not in scripts and "*" not in scripts
        assert "frame-ancestors 'none'" in policy and "default-src 'self'" in policy
        assert response.headers["X-Content-Type-Options"] == "nosniff" and response.headers["Referrer-Policy"] == "no-referrer"
        assert "no-store" in response.headers["Cache-Control"]


def test_patient_images_are_not_kept_by_the_browser(app):
    client = _signed_in(app, REVIEWER)
    for url in ("/slides/P001-S1/thumbnail.jpeg", "/slides/P001-S1/tiles/12/1/1.jpeg"):
        response = client.get(url)
        assert response.status_code == 200 and response.headers["Cache-Control"] == "private, no-store"


def test_the_store_and_cache_are_created_owner_only(demo_workspace, tmp_path):
    root = copy_demo(demo_workspace, tmp_path / "fresh", (), keep_cache=False)
    (root / "cases.db").unlink()
    previous = os.umask(0o022)
    try:
        ws = open_workspace(root)
        ws.store.dispose()
    finally:
        os.umask(previous)
    assert stat.S_IMODE((root / "cases.db").stat().st_mode) == 0o600
    assert stat.S_IMODE((root / "cache").stat().st_mode) == 0o700


def test_the_secret_key_is_long_and_not_in_the_workspace(root, workspace, demo_workspace, tmp_path, monkeypatch):
    monkeypatch.setenv("PATHREVIEW_SECRET_KEY", "short")
    with pytest.raises(PathReviewError, match="at least 32 bytes"):
        create_app(workspace)
    monkeypatch.delenv("PATHREVIEW_SECRET_KEY")
    original = create_app(workspace)
    client = _signed_in(original, REVIEWER)
    assert not list(root.glob(".secret-key*"))
    copy_root = copy_demo(root, tmp_path / "copied", ("P001-S1",))
    copied = open_workspace(copy_root)
    try:
        other = create_app(copied).server.test_client()
        other.set_cookie("session", client.get_cookie("session").value)
        assert other.get("/slides/P001-S1/thumbnail.jpeg").status_code == 401  # the copy does not accept the original's cookie
    finally:
        copied.store.dispose()


# 9. A manifest pinned by its hash.

def test_a_pinned_manifest_that_changed_is_refused(demo_workspace, tmp_path):
    root = copy_demo(demo_workspace, tmp_path / "pinned", (), keep_cache=False)
    config = read_workspace_config(root)
    model_id = config.models[0]
    write_workspace_config(root, config.model_copy(update={"manifest_sha256": {model_id: manifest_sha256(root / "models" / model_id)}}))
    open_workspace(root).store.dispose()  # the pinned manifest as it was: accepted
    manifest = root / "models" / model_id / MANIFEST_NAME
    manifest.write_text(manifest.read_text().replace('architecture = "', 'architecture = "os:system" # "', 1))
    with pytest.raises(WorkspaceError, match="has changed since its hash was pinned"):
        open_workspace(root)
    assert hashlib.sha256(manifest.read_bytes()).hexdigest() != config.manifest_sha256.get(model_id)


def test_the_workspace_guide_warns_that_a_manifest_runs_code():
    from tests.helpers import REPO

    guide = (REPO / "docs" / "workspace.md").read_text()
    around = guide[guide.index("package.module:factory") - 600: guide.index("package.module:factory") + 600]
    assert "runs code" in around and "manifest_sha256" in guide


def test_new_accounts_start_with_a_session_version(workspace):
    add_test_accounts(workspace.root)
    from core.auth.users import find_user

    assert len(find_user(workspace.store, REVIEWER).session_version) == 32
