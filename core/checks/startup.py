"""The workspace check run when the app starts, in the background: its problems are logged and shown to admins as a
warning; the app serves meanwhile and whatever the check finds (a refusal to serve would hide every good case too)."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from pathlib import Path

from core.checks.workspace_check import CheckProblem, check_workspace
from core.workspace import Workspace

log = logging.getLogger(__name__)


@dataclass
class StartupCheck:
    done: threading.Event = field(default_factory=threading.Event)
    problems: list[CheckProblem] = field(default_factory=list)
    failure: str = ""  # the check itself could not finish


_CHECKS: dict[Path, StartupCheck] = {}


def start_startup_check(workspace: Workspace) -> StartupCheck:
    check = StartupCheck()
    _CHECKS[workspace.root] = check

    def run() -> None:
        try:
            check.problems = check_workspace(workspace)
            for p in check.problems:
                log.warning("workspace check: %s %s: %s", p.kind, p.subject, p.message)
        except Exception as exc:  # noqa: BLE001  (a check that fails must not take the app down; it is reported instead)
            check.failure = f"{type(exc).__name__}: {exc}"
            log.warning("workspace check did not finish: %s", check.failure)
        finally:
            check.done.set()

    threading.Thread(target=run, name="workspace-check", daemon=True).start()
    return check


def startup_check(workspace: Workspace) -> StartupCheck | None:
    """The start-up check of this workspace, when the serving process ran one."""
    return _CHECKS.get(workspace.root)
