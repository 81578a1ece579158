"""Shared fixtures: a reduced demo workspace, the real app server, and headless Chromium."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import pytest

from tests.helpers import LiveServer, add_test_accounts, chromium_driver, sign_in, sign_in_browser

# Per-installation secrets (the session key) of the apps and servers the tests start: not the user's own state folder.
os.environ.setdefault("PATHREVIEW_STATE_DIR", tempfile.mkdtemp(prefix="pathreview-state-"))
pytest_plugins = ["tests.services"]  # Redis, PostgreSQL and Celery worker fixtures
# Markers by the fixtures a test uses (``-m unit`` is the fast loop): the first that applies wins.
MARKER_FIXTURES = (
    ("browser", {"browser", "live_server"}),
    ("services", {"redis_server", "postgres_server", "postgres_database", "celery_workspace", "celery_worker"}),
    ("slow", {"demo_workspace", "workspace", "held_out"}),
    ("store", {"store_url", "empty_store"}),
)


def pytest_collection_modifyitems(config, items) -> None:
    """Every test gets exactly one of unit / store / browser / services / slow, from the fixtures it needs, so a new
    test is classified without remembering a decorator. A test may also carry a marker itself."""
    kinds = {kind for kind, _ in MARKER_FIXTURES} | {"unit"}
    for item in items:
        if any(item.get_closest_marker(k) for k in kinds):
            continue
        used = set(getattr(item, "fixturenames", ()))
        kind = next((k for k, fixtures in MARKER_FIXTURES if used & fixtures), "unit")
        item.add_marker(getattr(pytest.mark, kind))


@pytest.fixture(scope="session")
def demo_workspace(tmp_path_factory) -> Path:
    """The reduced demo build (same data generators and training, smaller slides), with an account per role."""
    from core.demo.build import REDUCED_SPEC, build_demo

    root = build_demo(tmp_path_factory.mktemp("demo") / "workspace", REDUCED_SPEC, progress=lambda m: None)
    add_test_accounts(root)
    return root


@pytest.fixture(scope="session")
def workspace(demo_workspace):
    """The reduced demo, opened."""
    from core.workspace import open_workspace

    ws = open_workspace(demo_workspace)
    yield ws
    ws.store.dispose()


@pytest.fixture(scope="session")
def held_out(demo_workspace) -> set[str]:
    """Patients the demo's models never saw in training."""
    from core.demo.build import BUILD_MARKER

    return set(json.loads((demo_workspace / BUILD_MARKER).read_text())["held_out_patients"])


@pytest.fixture(scope="session")
def live_server(demo_workspace):
    server = LiveServer(demo_workspace)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def browser(live_server):
    """Headless Chromium, signed in to the live server as a reviewer."""
    driver = chromium_driver()
    sign_in_browser(driver, live_server.url)
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def app(workspace):
    """The Dash app over the module's ``workspace`` (the reduced demo, or a module's own copy)."""
    from dashboard.app import create_app

    return create_app(workspace)


@pytest.fixture(scope="module")
def client(app):
    """A Flask test client of ``app``, signed in as a reviewer."""
    client = app.server.test_client()
    sign_in(client)
    return client
