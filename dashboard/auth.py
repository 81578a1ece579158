"""Sign-in for every route of the app (pages, callbacks, tiles, exports, assets), roles, and the audit hooks.

Flask-Login keeps the session; passwords are checked against werkzeug hashes in the case store (core.auth.users).
One ``before_request`` hook guards everything, so a route added later is protected without remembering to be."""

from __future__ import annotations

import html
import os
import secrets
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import TypeVar
from urllib.parse import quote, urlsplit

from flask import Flask, Response, redirect, request
from flask_limiter import Limiter
from flask_login import LoginManager, UserMixin, current_user, login_user, logout_user
from werkzeug.middleware.proxy_fix import ProxyFix

from core.auth.users import Account, authenticate, find_user
from core.store.audit import record_event
from core.workspace import Workspace

SECRET_KEY_FILE = ".secret-key"
PUBLIC_ENDPOINTS = {"login"}  # the sign-in form is the only thing an anonymous request may reach
LOGIN_LIMIT = "10 per minute"  # per address and user name: slows password guessing, not a crowd of reviewers
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


def current_username() -> str:
    return current_user.id if current_user and current_user.is_authenticated else ""


def current_role() -> str:
    return current_user.role if current_user and current_user.is_authenticated else ""


def current_role_allows(role: str) -> bool:
    return bool(current_user and current_user.is_authenticated and current_user.account.may(role))


def audit(workspace: Workspace, action: str, target: str = "", detail: dict | None = None) -> None:
    """Record an action of the signed-in user (the request's context gives who)."""
    record_event(workspace.store, current_username(), action, target, detail)


def secret_key(workspace: Workspace) -> bytes:
    """The session-signing key: from PATHREVIEW_SECRET_KEY, else kept in the workspace (created once, owner-only),
    so every app process serving the workspace accepts the same sessions."""
    if os.environ.get("PATHREVIEW_SECRET_KEY"):
        return os.environ["PATHREVIEW_SECRET_KEY"].encode()
    path = Path(workspace.root) / SECRET_KEY_FILE
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
    return path.read_text().strip().encode()


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


def _callback_state(component_id: str) -> str:
    payload = request.get_json(silent=True) or {}
    for item in payload.get("state", []) if isinstance(payload.get("state"), list) else []:
        if isinstance(item, dict) and item.get("id") == component_id:
            return str(item.get("value", ""))[:128]
    return ""


def install_auth(server: Flask, workspace: Workspace, secure_cookies: bool = False, callback_map: dict | None = None) -> None:
    """Protect every route of ``server``; add /login and /logout. ``callback_map``: the Dash app's callbacks, whose
    ``requires_role`` marks are enforced here: install it after the callbacks are registered."""
    roles = roles_for_callbacks(callback_map or {})
    server.secret_key = secret_key(workspace)
    server.config.update(
        SESSION_COOKIE_HTTPONLY=True, SESSION_COOKIE_SAMESITE="Lax", SESSION_COOKIE_SECURE=secure_cookies,
        REMEMBER_COOKIE_HTTPONLY=True, REMEMBER_COOKIE_SAMESITE="Lax", REMEMBER_COOKIE_SECURE=secure_cookies,
        PERMANENT_SESSION_LIFETIME=timedelta(hours=12),
    )
    if secure_cookies:  # behind a TLS-terminating reverse proxy: trust its forwarded scheme and address
        server.wsgi_app = ProxyFix(server.wsgi_app, x_for=1, x_proto=1, x_host=1)
    logins = LoginManager(server)
    logins.session_protection = "strong"

    @logins.user_loader
    def load_user(username: str) -> SessionUser | None:
        account = find_user(workspace.store, username)  # a removed user's session ends at their next request
        return SessionUser(account) if account else None

    limiter = Limiter(key_func=lambda: request.remote_addr or "", app=server, storage_uri="memory://", default_limits=[])

    def _login_key() -> str:
        return f"{request.remote_addr}|{(request.form.get('username') or '')[:64]}"

    @server.route("/login", methods=["GET", "POST"], endpoint="login")
    @limiter.limit(LOGIN_LIMIT, key_func=_login_key, methods=["POST"],
                   on_breach=lambda _limit: _login_page("Too many sign-in attempts; wait a minute and try again.", status=429))
    def login():
        next_path = _safe_next(request.values.get("next"))
        if request.method == "GET":
            return _login_page(next_path=next_path)
        username = (request.form.get("username") or "").strip()[:64]
        account = authenticate(workspace.store, username, request.form.get("password") or "")
        if account is None:
            record_event(workspace.store, username, "login_failed", request.remote_addr or "")
            return _login_page("Wrong user name or password.", next_path, status=401)
        login_user(SessionUser(account))
        record_event(workspace.store, username, "login", request.remote_addr or "")
        return redirect(next_path)

    @server.route("/logout", endpoint="logout")
    def logout():
        if current_user.is_authenticated:
            audit(workspace, "logout")
        logout_user()
        return redirect("/login")

    @server.before_request
    def require_sign_in():
        if request.endpoint in PUBLIC_ENDPOINTS:
            return None
        if not current_user.is_authenticated:
            wants_page = request.method == "GET" and "text/html" in (request.headers.get("Accept") or "")
            if wants_page and not request.path.startswith(("/_dash", "/slides/", "/assets/", "/admin/")):
                return redirect(f"/login?next={quote(request.full_path.rstrip('?'))}")
            return Response("Sign in first.", status=401, mimetype="text/plain")
        if request.path.startswith("/_dash-update-component"):
            # Dash runs the callback the body's ``output`` names (whatever outputs it lists), so that decides.
            payload = request.get_json(silent=True)
            output = payload.get("output") if isinstance(payload, dict) else None
            needed = roles.get(output) if isinstance(output, str) else None
            if needed and not current_user.account.may(needed):
                return Response(f"Your role ({current_user.role}) may not do this; it needs {needed}.", status=403, mimetype="text/plain")
            if isinstance(output, str) and "case-report-download." in output and "cacheKey" not in request.args:  # a new job, not a poll
                audit(workspace, "export", _callback_state("case-id"), {"what": "case report"})
        return None
