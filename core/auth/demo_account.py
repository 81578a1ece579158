"""The demo workspace's account: created on first start, its password kept beside the demo (owner-only) so each
start can print it."""

from __future__ import annotations

import os
import secrets

from core.auth.users import add_user, find_user, set_password
from core.workspace import Workspace

DEMO_USER = "demo"
CREDENTIALS_FILE = ".demo-credentials"


def ensure_demo_account(workspace: Workspace) -> tuple[str, str]:
    """(user, password) of the demo's admin account, creating or repairing it."""
    path = workspace.root / CREDENTIALS_FILE
    password = path.read_text().strip() if path.is_file() else ""
    if len(password) < 8:
        password = secrets.token_urlsafe(12)
        tmp = path.with_name(path.name + ".part")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(password)
        tmp.replace(path)
    if find_user(workspace.store, DEMO_USER) is None:
        add_user(workspace.store, DEMO_USER, password, "admin")
    else:
        set_password(workspace.store, DEMO_USER, password)  # the file is the source of truth for the demo
    return DEMO_USER, password
