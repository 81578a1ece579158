"""``run_dashboard.py report``: a case report from the command line, the same document the case page's job builds."""

from __future__ import annotations

import argparse
import getpass
import logging
import os
import sys
from datetime import UTC, datetime
from pathlib import Path

from core.export.case_report import REPORT_FORMATS


def add_report_parser(sub: argparse._SubParsersAction) -> None:
    report = sub.add_parser("report", help="write a case report (PDF or offline HTML) with every figure the case has")
    report.add_argument("--workspace", type=Path, required=True)
    report.add_argument("--patient", required=True, metavar="ID", help="the case's patient id")
    report.add_argument("--format", choices=REPORT_FORMATS, default="pdf")
    report.add_argument("--out", type=Path, default=None, help="the file to write (default: case-<ID>-<time>.<format> here)")
    report.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda or cuda:N")
    report.add_argument("--database-url", default=None, help="override the workspace's database URL")


def run_report(args: argparse.Namespace) -> int:
    """Write the case report of the case page's default view; user errors raise ``PathReviewError``."""
    from core.device import set_device_override
    from core.explain.patient_explanations import PatientExplainers
    from core.export.case_figures import case_figure_names, default_case_view
    from core.export.case_report import build_case_report, case_report_filename
    from core.store.audit import record_event
    from core.store.cases import case_summary
    from core.workspace import open_workspace

    for name in ("kaleido", "choreographer"):  # the figure renderer's browser logs each figure; progress says enough
        logging.getLogger(name).setLevel(logging.WARNING)
    set_device_override(args.device)
    workspace = open_workspace(args.workspace, args.database_url)
    with workspace.store.session() as s:
        case = case_summary(s, args.patient)  # an unknown patient is a NotFoundError before any work
    view = default_case_view(workspace, args.patient)
    names = case_figure_names(case, bool(workspace.models_for("report")))

    def progress(fraction: float, step: str) -> None:
        print(f"{round(100 * fraction):3d} % {step}", file=sys.stderr, flush=True)

    data, figures = build_case_report(workspace, PatientExplainers(workspace), view, names, args.format, progress)
    out = args.out or Path(case_report_filename(args.patient, args.format, datetime.now(UTC).strftime("%Y%m%d-%H%M")))
    part = out.with_name(f".{out.name}.{os.getpid()}.part")
    part.write_bytes(data)
    part.replace(out)  # never a half-written report under the asked-for name
    # A case report leaving the system is on the audit trail, as one exported from the case page is.
    record_event(workspace.store, f"command line ({_os_user()})", "export", args.patient,
                 {"what": "case report", "format": args.format, "bytes": len(data)})
    print(f"wrote {out} ({figures} figures, {len(data) / 1024:.0f} KiB)", flush=True)
    return 0


def _os_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no name for this uid (e.g. a container)
        return "unknown user"
