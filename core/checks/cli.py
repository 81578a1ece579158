"""``run_dashboard.py check``: the workspace check as a table; exit code 1 when it finds problems."""

from __future__ import annotations

import argparse
from pathlib import Path

from core.checks.workspace_check import check_workspace, problem_table
from core.workspace import Workspace


def add_check_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("check", help="check that every slide reads, every model loads and runs, and every patient's visits fit its models")
    p.add_argument("--workspace", type=Path, required=True)
    p.add_argument("--database-url", default=None)


def run_check(workspace: Workspace) -> int:
    problems = check_workspace(workspace, progress=True)
    print(problem_table(problems))
    return 1 if problems else 0
