"""Sign-in for every route of the app (pages, callbacks, tiles, exports, assets), sessions that end, and the audit hook.

Flask-Login keeps the session; passwords are checked against werkzeug hashes in the case store (core.auth.users).
One ``before_request`` hook guards everything, so a route added later is protected without remembering to be.

A session names its account's session version (``core.auth.users``): sign-out, a new password, a new role and removal
replace it, which ends every session of the account at its next request. A session also ends after
``[limits] session_idle_minutes`` without a request and ``session_hours`` after its sign-in."""

from __future__ import annotations

import hashlib
import hmac
import html
import os
import secrets
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import TypeVar
from urllib.parse import quote, urlsplit

from flask import Flask, Response, has_request_context, redirect, request, session
from flask_login import LoginManager, UserMixin, current_user, login_user, logout_user

from core.auth.users import Account, authenticate, end_sessions, find_user, normalised_username
from core.errors import PathReviewError
from core.store.audit import record_event
from core.workspace import Workspace
from dashboard.sign_in_limits import SignInLimits

SECRET_KEY_ENV = "PATHREVIEW_SECRET_KEY"
STATE_DIR_ENV = "PATHREVIEW_STATE_DIR"  # where per-installation secrets live (default: the user's XDG state folder)
MIN_SECRET_KEY_BYTES = 32
PUBLIC_ENDPOINTS = {"login"}  # the sign-in form is the only thing an anonymous request may reach
SEEN_EVERY_S = 60  # the idle clock in the session cookie is refreshed at most this often
USER_HEADER = "X-PathReview-User"  # set by the server on callback requests, so background jobs know who asked
REQUIRED_ROLE = "required_role"  # the attribute ``requires_role`` sets; Dash's callback wrapper copies it
Callback = TypeVar("Callback", bound=Callable)


def requires_role(role: str) -> Callable[[Callback], Callback]:
    """Mark a Dash callback as needing ``role`` (for callbacks that change the record or take data out). Put it below
    ``@app.callback``; ``install_auth`` then refuses the callback's requests from a lesser role (403) before the
    callback, or a background job of it, runs.

        @app.callback(Output("review-versions", "data"), ...)
        @requires_role("reviewer")
        def save_review(...): ...
    """
    def mark(callback: Callback) -> Callback:
        setattr(callback, REQUIRED_ROLE, role)
        return callback
    return mark


def roles_for_callbacks(callback_map: dict) -> dict[str, str]:
    """The role each marked callback needs, by its key in the Dash callback map (what a request names as its output)."""
    return {key: getattr(entry["callback"], REQUIRED_ROLE) for key, entry in callback_map.items()
            if hasattr(entry.get("callback"), REQUIRED_ROLE)}


class SessionUser(UserMixin):
    def __init__(self, account: Account) -> None:
        self.account = account
        self.id = account.username

    @property
    def role(self) -> str:
        return self.account.role

    def get_id(self) -> str:
        return f"{self.account.username}|{self.account.session_version}"


def current_username() -> str:
    return current_user.id if current_user and current_user.is_authenticated else ""


def current_role() -> str:
    return current_user.role if current_user and current_user.is_authenticated else ""


def current_role_allows(role: str) -> bool:
    return bool(current_user and current_user.is_authenticated and current_user.account.may(role))


def requesting_user() -> str:
    """Who asked for the work: the signed-in user in a request; in a background callback's process (no request), the
    user the server named on the request that started it (``USER_HEADER``, never the client's)."""
    if has_request_context():
        return current_username()
    from dash import callback_context

    try:
        headers = callback_context.headers or {}
    except (LookupError, AttributeError):
        return ""
    return next((v for k, v in headers.items() if k.lower() == USER_HEADER.lower()), "")


def audit(workspace: Workspace, action: str, target: str = "", detail: dict | None = None) -> None:
    """Record an action of the signed-in user (the request's context gives who). ``AuditUnavailable`` when it cannot
    be written: the request is answered 503 and the action is not done."""
    record_event(workspace.store, current_username(), action, target, detail)


def _state_dir() -> Path:
    if os.environ.get(STATE_DIR_ENV):
        return Path(os.environ[STATE_DIR_ENV])
    return Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state") / "pathreview"


def secret_key(workspace: Workspace) -> bytes:
    """The session-signing key: from PATHREVIEW_SECRET_KEY (at least 32 bytes), else generated once for this
    installation and this workspace folder, outside the workspace (a copy of the workspace does not accept the
    original's cookies), owner-only, so every app process serving the workspace on this host shares it."""
    if os.environ.get(SECRET_KEY_ENV):
        key = os.environ[SECRET_KEY_ENV].encode()
        if len(key) < MIN_SECRET_KEY_BYTES:
            raise PathReviewError(f"{SECRET_KEY_ENV} must be at least {MIN_SECRET_KEY_BYTES} bytes; "
                                  "make one with: python -c 'import secrets; print(secrets.token_hex(32))'")
        return key
    folder = _state_dir() / "secret-keys"
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    name = hashlib.sha256(str(Path(workspace.root).resolve()).encode()).hexdigest()[:32]
    path = folder / name
    if not path.exists():
        tmp = path.with_name(f"{path.name}.{os.getpid()}.part")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_hex(32))
        try:
            os.link(tmp, path)  # atomic and never overwrites a key another process wrote first
        except FileExistsError:
            pass
        finally:
            tmp.unlink()
    key = path.read_text().strip().encode()
    if len(key) < MIN_SECRET_KEY_BYTES:
        raise PathReviewError(f"the secret key in {path} is shorter than {MIN_SECRET_KEY_BYTES} bytes; delete it to make a new one")
    return key


def csrf_token() -> str:
    """The session's token for forms that change state (sign-out)."""
    if "csrf" not in session:
        session["csrf"] = secrets.token_urlsafe(32)
    return session["csrf"]


def session_id() -> str:
    """A random id of this sign-in (not of the account): first-read audit rows are per session."""
    return session.get("sid", "")


def _safe_next(target: str | None) -> str:
    """Only same-site paths: a login link must not send the user elsewhere."""
    parts = urlsplit(target or "/")
    if parts.scheme or parts.netloc or not (target or "/").startswith("/") or (target or "").startswith("//"):
        return "/"
    return target or "/"


def _login_page(message: str = "", next_path: str = "/", status: int = 200) -> Response:
    # The empty icon keeps the browser from asking an anonymous /favicon.ico, which the guard refuses.
    body = f"""<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Sign in · PathReview</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="icon" href="data:,">
<style>body{{font-family:system-ui,sans-serif;background:#f4f6f7;margin:0}}main{{max-width:22rem;margin:12vh auto;background:#fff;
padding:2rem;border-radius:6px;box-shadow:0 1px 4px #0002}}h1{{font-size:1.4rem;margin:0 0 1rem}}label{{display:block;margin:.6rem 0 .2rem}}
input{{width:100%;padding:.45rem;box-sizing:border-box;border:1px solid #bbb;border-radius:4px}}button{{margin-top:1rem;width:100%;
padding:.55rem;background:#2c3e50;color:#fff;border:0;border-radius:4px;font-size:1rem}}.error{{color:#b00020;margin:.5rem 0}}</style>
</head><body><main><h1>PathReview</h1><p>Sign in to review cases.</p>
{f'<p class="error" id="login-error">{html.escape(message)}</p>' if message else ''}
<form method="post" action="/login"><input type="hidden" name="next" value="{html.escape(next_path)}">
<label for="username">User name</label><input id="username" name="username" autocomplete="username" required maxlength="64">
<label for="password">Password</label><input id="password" name="password" type="password" autocomplete="current-password" required
maxlength="1024"><button id="login-submit" type="submit">Sign in</button></form></main></body></html>"""
    return Response(body, status=status, mimetype="text/html")


def install_auth(server: Flask, workspace: Workspace, secure_cookies: bool = False) -> None:
    """Protect every route of ``server``; add /login and /logout. The client address is the connection's, or the one
    a proxy declared with ``--trusted-proxy`` forwarded (waitress rewrites it; nothing here trusts a header)."""
    limits = workspace.config.limits
    idle_s, lifetime_s = limits.session_idle_minutes * 60, limits.session_hours * 3600
    server.secret_key = secret_key(workspace)
    server.config.update(
        SESSION_COOKIE_HTTPONLY=True, SESSION_COOKIE_SAMESITE="Lax", SESSION_COOKIE_SECURE=secure_cookies,
        REMEMBER_COOKIE_HTTPONLY=True, REMEMBER_COOKIE_SAMESITE="Lax", REMEMBER_COOKIE_SECURE=secure_cookies,
        PERMANENT_SESSION_LIFETIME=timedelta(seconds=lifetime_s),
    )
    logins = LoginManager(server)
    logins.session_protection = "strong"
    sign_in_limits = SignInLimits()

    @logins.user_loader
    def load_user(session_user: str) -> SessionUser | None:
        username, _, version = session_user.partition("|")
        account = find_user(workspace.store, username)  # a removed user's session ends at their next request
        if account is None or not version or not hmac.compare_digest(account.session_version, version):
            return None  # signed out elsewhere, new password or role, or a re-created account of the same name
        return SessionUser(account)

    def refuse_sign_in(address: str, typed: str, name: str, why: str) -> Response:
        record_event(workspace.store, typed, "login_limited", address, {"why": why, "account": name})
        response = _login_page("Too many sign-in attempts; wait a minute and try again.", status=429)
        response.headers["Retry-After"] = "60"
        return response

    @server.route("/login", methods=["GET", "POST"], endpoint="login")
    def login():
        next_path = _safe_next(request.values.get("next"))
        if request.method == "GET":
            return _login_page(next_path=next_path)
        address = request.remote_addr or ""
        typed = (request.form.get("username") or "")[:64]
        name = normalised_username(typed)
        if why := sign_in_limits.refusal(address, name):
            return refuse_sign_in(address, typed, name, why)
        username = typed.strip()
        account = authenticate(workspace.store, username, request.form.get("password") or "")
        if account is None:
            sign_in_limits.failed(address, name)
            record_event(workspace.store, username, "login_failed", address)
            return _login_page("Wrong user name or password.", next_path, status=401)
        record_event(workspace.store, username, "login", address)  # first: no session without its audit row
        sign_in_limits.succeeded(address, name)
        session.clear()
        login_user(SessionUser(account))
        session.permanent = True
        now = time.time()
        session.update(signed_in_at=now, seen_at=now, sid=secrets.token_urlsafe(16), csrf=secrets.token_urlsafe(32))
        return redirect(next_path)

    @server.route("/logout", methods=["GET", "POST"], endpoint="logout")
    def logout():
        if request.method == "GET":  # a link or an image on another page must not sign anyone out
            return Response("Sign out with the button in the navigation bar.", status=405, mimetype="text/plain", headers={"Allow": "POST"})
        token = request.form.get("csrf_token") or ""
        if not hmac.compare_digest(token, session.get("csrf", "")):
            return Response("Sign-out needs the form of a page of this app; reload the page and sign out again.", status=400,
                            mimetype="text/plain")
        audit(workspace, "logout")
        end_sessions(workspace.store, current_username())  # every session of the account, a copied cookie included
        logout_user()
        session.clear()
        return redirect("/login")

    def session_expired() -> bool:
        now = time.time()
        signed_in_at, seen_at = session.get("signed_in_at"), session.get("seen_at")
        if not isinstance(signed_in_at, float | int) or not isinstance(seen_at, float | int):
            return True
        if now - signed_in_at > lifetime_s or now - seen_at > idle_s:
            return True
        if now - seen_at > SEEN_EVERY_S:
            session["seen_at"] = now
        return False

    @server.before_request
    def require_sign_in():
        if request.endpoint in PUBLIC_ENDPOINTS:
            return None
        if current_user.is_authenticated and session_expired():
            logout_user()
            session.clear()
        if not current_user.is_authenticated:
            wants_page = request.method == "GET" and "text/html" in (request.headers.get("Accept") or "")
            if wants_page and not request.path.startswith(("/_dash", "/slides/", "/assets/", "/admin/")):
                return redirect(f"/login?next={quote(request.full_path.rstrip('?'))}")
            return Response("Sign in first.", status=401, mimetype="text/plain")
        request.environ["HTTP_" + USER_HEADER.upper().replace("-", "_")] = current_username()  # never the client's value
        return None
