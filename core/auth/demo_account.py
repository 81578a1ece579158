"""The demo workspace's account: created on first start, its password kept beside the demo (owner-only) so each
start can print it."""

from __future__ import annotations

import secrets

from core.auth.users import add_user, find_user, set_password
from core.cache import write_atomic
from core.workspace import Workspace

DEMO_USER = "demo"
CREDENTIALS_FILE = ".demo-credentials"


def ensure_demo_account(workspace: Workspace) -> tuple[str, str]:
    """(user, password) of the demo's admin account, creating or repairing it."""
    path = workspace.root / CREDENTIALS_FILE
    password = path.read_text().strip() if path.is_file() else ""
    if len(password) < 8:
        password = secrets.token_urlsafe(12)
        write_atomic(path, lambda fh: fh.write(password.encode()), mode=0o600)
    if find_user(workspace.store, DEMO_USER) is None:
        add_user(workspace.store, DEMO_USER, password, "admin")
    else:
        set_password(workspace.store, DEMO_USER, password)  # the file is the source of truth for the demo
    return DEMO_USER, password
