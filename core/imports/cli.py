"""``run_dashboard.py import``: patients, visits, reports and slides into a workspace, created when missing."""

from __future__ import annotations

import argparse
from datetime import UTC, date, datetime
from pathlib import Path

from sqlalchemy import select

from core.errors import PathReviewError
from core.imports.problems import SKIP_REPORTS, ImportRejected, Problem, write_skip_report
from core.imports.slide_files import SlideRecord, scan_slides
from core.imports.store_changes import ImportPlan, apply_import, plan_import
from core.imports.tables import ColumnPlan, PatientRecord, ReportRecord, VisitRecord, read_patients, read_reports, read_visits
from core.models.visit_encoding import VisitEncodingError, encode_sequences
from core.store.schema import Patient
from core.workspace import WORKSPACE_FILE, PatientAttribute, Workspace, WorkspaceConfig, open_workspace, read_workspace_config, write_workspace_config


def add_import_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("import", help="import patients, visits, reports and slides from CSV files and a slide folder (see docs/workspace.md)")
    p.add_argument("--workspace", type=Path, required=True, help="the workspace folder (created when missing)")
    p.add_argument("--patients", type=Path, help="CSV: patient_id plus any attribute columns (a patients.toml beside it gives labels and units)")
    p.add_argument("--visits", type=Path, help="CSV, one row per visit: patient_id, day or date (YYYY-MM-DD), optional label, feature columns")
    p.add_argument("--reports", type=Path, help="CSV (report_id, patient_id, text or file, optional day/date, label), or a folder of .txt files")
    p.add_argument("--report-pattern", default="{patient}_{report}", help="how a report file's name gives its patient (default %(default)s)")
    p.add_argument("--slides", type=Path, help="a folder of slides: every file OpenSlide opens, searched recursively")
    p.add_argument("--slide-pattern", default="{patient}_{slide}",
                   help="how a slide file's name gives its patient, e.g. '{patient}_{slide}.svs' (default %(default)s); "
                        "the slide id is the name less its extension")
    p.add_argument("--slide-map", type=Path, help="CSV instead of a pattern: file (relative to --slides), slide_id, patient_id, optional mpp, label, day")
    p.add_argument("--masks", type=Path, help="a folder of ground-truth label images named by slide id")
    p.add_argument("--mpp", type=float, help="µm/px at level 0 for slides whose files record none (or an implausible one)")
    p.add_argument("--dry-run", action="store_true", help="print what would change and write nothing")
    p.add_argument("--skip-invalid", action="store_true", help="import the valid rows and files; write what was skipped to a report")
    p.add_argument("--database-url", default=None, help="override the workspace's database URL")


def _open_or_create(root: Path, database_url: str | None, dry_run: bool) -> Workspace | None:
    """The workspace; created (workspace.toml named after its folder) unless this is a dry run."""
    if not (root / WORKSPACE_FILE).is_file():
        if dry_run:
            return None
        root.mkdir(parents=True, exist_ok=True)
        write_workspace_config(root, WorkspaceConfig(name=root.resolve().name))
    (root / "slides").mkdir(exist_ok=True)
    return open_workspace(root, database_url)


def _declare_attributes(workspace: Workspace, plans: list[ColumnPlan]) -> None:
    """Patient attribute columns are declared in workspace.toml: a sidecar's label and unit win; otherwise a declared
    attribute stays as it is and a new one is labelled by its name. Call before the patients are written: a workspace
    that declares none shows every name its store holds, and those keep being shown."""
    config = read_workspace_config(workspace.root)
    imported = {p.name for p in plans}
    declared = dict(config.patient_attributes) or {k: v for k, v in workspace.patient_attributes().items() if k not in imported}
    for p in plans:
        old = declared.get(p.name)
        if old is None or p.info.label or p.info.unit:
            declared[p.name] = PatientAttribute(label=p.info.label or (old.label if old else p.name.replace("_", " ").capitalize()),
                                                unit=p.info.unit or (old.unit if old else ""))
    if declared != config.patient_attributes:
        write_workspace_config(workspace.root, config.model_copy(update={"patient_attributes": declared}))


def run_import(args: argparse.Namespace) -> int:
    if args.slide_map and not args.slides:
        raise PathReviewError("--slide-map names files in a slide folder: give the folder with --slides")
    workspace = _open_or_create(args.workspace, args.database_url, args.dry_run)
    problems: list[Problem] = []
    known: set[str] = set()
    if workspace is not None:
        with workspace.store.session() as s:
            known = set(s.scalars(select(Patient.id)))
    patients: list[PatientRecord] = []
    plans: list[ColumnPlan] = []
    if args.patients:
        patients, plans, found = read_patients(args.patients)
        problems += found
        known |= {p.id for p in patients}
    visits: list[VisitRecord] = []
    first_dates: dict[str, date] = {}
    if args.visits:
        visits, _features, first_dates, found = read_visits(args.visits, known)
        problems += found
    reports: list[ReportRecord] = []
    if args.reports:
        reports, found = read_reports(args.reports, known, first_dates, args.report_pattern)
        problems += found
    slides: list[SlideRecord] = []
    warnings: list[str] = []
    if args.slides:
        scan = scan_slides(args.slides, known, args.slide_pattern, args.slide_map, args.mpp, args.masks)
        slides, warnings = scan.records, scan.warnings
        problems += scan.problems
    if workspace is not None:
        warnings += visit_fit_warnings(workspace, visits)
    for warning in warnings:
        print(f"warning: {warning}")
    if workspace is None:  # a dry run into a workspace that does not exist yet: everything is new
        print(f"{args.workspace} has no {WORKSPACE_FILE}; the import would create it")
        if problems:
            raise ImportRejected(problems)
        print(f"patients: {len(patients)} new\nvisits: {len(visits)} new\nreports: {len(reports)} new\nslides: {len(slides)} new")
        return 0
    plan = plan_import(workspace.store, workspace.slides_dir, patients, visits, reports, slides, args.slides, problems)
    if problems and not args.skip_invalid:
        raise ImportRejected(problems)
    for table in plan.tables():
        print(table.summary())
    if args.dry_run:
        for problem in problems:
            print(f"would skip: {problem.line()}")
        print("dry run: nothing written")
        return 0
    _write(workspace, plan, plans)
    if problems:
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        report = write_skip_report(workspace.root / SKIP_REPORTS / f"skipped-{stamp}.csv", problems)
        print(f"skipped {len(problems)} rows or files (listed in {report}):")
        for problem in problems:
            print(f"  {problem.line()}")
    return 0


def visit_fit_warnings(workspace: Workspace, visits: list[VisitRecord]) -> list[str]:
    """One line per sequence model whose declared inputs some imported patients' visits do not fit (check lists them all)."""
    by_patient: dict[str, list[tuple[float, dict, int | None]]] = {}
    for v in visits:
        by_patient.setdefault(v.patient_id, []).append((v.day, dict(v.features), v.label))
    lines = []
    for model_id in workspace.models_for("sequence"):
        spec = workspace.manifest(model_id).input
        bad = {}
        for pid, seq in by_patient.items():
            try:
                encode_sequences([sorted(seq, key=lambda v: v[0])], spec.features, spec.feature_means, spec.feature_stds, spec.categorical,
                                 spec.elapsed_scale_days, spec.missing, [pid])
            except VisitEncodingError as exc:
                bad[pid] = str(exc)
        if bad:
            first = next(iter(bad.values()))
            lines.append(f"{len(bad)} imported patients' visits do not fit model {model_id}, e.g. {first}; they are left out of its "
                         "cohort plots and predictions (check lists them)")
    return lines


def _write(workspace: Workspace, plan: ImportPlan, plans: list[ColumnPlan]) -> None:
    if plans:
        _declare_attributes(workspace, plans)
    apply_import(workspace.store, plan)
    workspace.store.dispose()
