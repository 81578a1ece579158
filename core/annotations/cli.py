"""``run_dashboard.py annotations import|export``: regions in from QuPath GeoJSON or ASAP XML, out as QuPath GeoJSON."""

from __future__ import annotations

import argparse
import getpass
from pathlib import Path
from typing import TYPE_CHECKING

from core.cache import write_atomic
from core.errors import PathReviewError

if TYPE_CHECKING:  # the workspace (and the model code it loads) is imported only when the command runs
    from core.workspace import Workspace


def add_annotations_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    annotations = sub.add_parser("annotations", help="import regions (QuPath GeoJSON, ASAP XML) or export them (QuPath GeoJSON)")
    actions = annotations.add_subparsers(dest="annotations_command", required=True)
    imp = actions.add_parser("import", help="import one file's regions onto a slide (all or nothing unless --skip-invalid)")
    exp = actions.add_parser("export", help="export a slide's regions as GeoJSON, or the cohort's as a zip of one file per slide")
    for action in (imp, exp):
        action.add_argument("--workspace", type=Path, required=True, help="the workspace folder")
        action.add_argument("--database-url", default=None, help="override the workspace's database URL")
    imp.add_argument("--slide", required=True, metavar="ID", help="the slide the regions are on")
    imp.add_argument("file", type=Path, metavar="FILE", help=".geojson/.json (QuPath) or .xml (ASAP)")
    imp.add_argument("--user", default=None, help="the reviewer the regions are recorded for (default: your login name)")
    imp.add_argument("--skip-invalid", action="store_true", help="import the valid features and list the refused ones")
    which = exp.add_mutually_exclusive_group(required=True)
    which.add_argument("--slide", metavar="ID", help="this slide's regions, to FILE as QuPath GeoJSON")
    which.add_argument("--cohort", action="store_true", help="every slide's regions, to FILE as a zip of <slide id>.geojson")
    exp.add_argument("file", type=Path, metavar="FILE", help="where to write")


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise PathReviewError(f"cannot read {path}: {exc.strerror or exc}") from None


def _write(path: Path, data: bytes) -> None:
    try:
        write_atomic(path, lambda fh: fh.write(data))
    except OSError as exc:
        raise PathReviewError(f"cannot write {path}: {exc.strerror or exc}") from None


def run_annotations_command(args: argparse.Namespace, workspace: Workspace) -> None:
    from core.annotations.transfer import export_cohort, export_slide, import_annotations

    if args.annotations_command == "import":
        user = args.user or getpass.getuser()
        result = import_annotations(workspace, args.slide, args.file.name, _read(args.file), user, args.skip_invalid)
        for note in result.repaired:
            print(note)
        for refused in result.skipped:
            print(f"skipped {refused}")
        print(f"imported {len(result.imported)} of {result.total} regions from {args.file.name} onto slide {args.slide} as {user}"
              + (f" ({len(result.repaired)} repaired)" if result.repaired else ""))
    elif args.cohort:
        data = export_cohort(workspace)
        _write(args.file, data)
        print(f"wrote {args.file}")
    else:
        text = export_slide(workspace, args.slide)
        _write(args.file, text.encode("utf-8"))
        print(f"wrote {args.file}")
