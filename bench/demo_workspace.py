"""The workspace a benchmark runs on: ``--workspace DIR``, or the reduced demo built once under bench/.cache/."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def bench_workspace_root(given: Path | None) -> Path:
    if given is not None:
        return given
    from core.demo.build import REDUCED_SPEC, build_demo

    return build_demo(REPO / "bench" / ".cache" / "demo-workspace", REDUCED_SPEC)


BENCH_USER = "bench-reviewer"
BENCH_PASSWORD = "bench password 1"


def ensure_bench_account(root: Path) -> tuple[str, str]:
    """A reviewer account for benchmarks that drive the real server, and an admin if the workspace has none
    (the server refuses to start without one)."""
    from core.auth.users import add_user, admin_count, find_user
    from core.workspace import open_workspace

    ws = open_workspace(root)
    try:
        if find_user(ws.store, BENCH_USER) is None:
            add_user(ws.store, BENCH_USER, BENCH_PASSWORD, "reviewer")
        if admin_count(ws.store) == 0:
            add_user(ws.store, "bench-admin", BENCH_PASSWORD, "admin")
    finally:
        ws.store.dispose()
    return BENCH_USER, BENCH_PASSWORD


def signed_in_session(base: str, user: str = BENCH_USER, password: str = BENCH_PASSWORD):
    import requests

    session = requests.Session()
    response = session.post(f"{base}/login", data={"username": user, "password": password, "next": "/"}, allow_redirects=False, timeout=30)
    if response.status_code != 302:
        raise RuntimeError(f"could not sign in to {base} as {user}: HTTP {response.status_code}")
    return session
