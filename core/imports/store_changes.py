"""What an import changes in the case store, found by id before anything is written, then written in one transaction
with bulk inserts and updates: a re-run with the same files changes nothing; a changed cell updates its one row."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.orm import Session

from core.imports.problems import Problem
from core.imports.slide_files import SlideRecord
from core.imports.tables import PatientRecord, ReportRecord, VisitRecord
from core.store.database import CaseStore
from core.store.schema import Base, Patient, Report, Slide, Visit, checked_attributes

MASKS_FOLDER = "masks"  # ground-truth masks are linked here, inside the workspace's slides/ folder


@dataclass
class TableChanges:
    """New and changed rows of one table (as column -> value; a changed row carries its primary key)."""

    table: str
    new: list[dict[str, Any]] = field(default_factory=list)
    changed: list[dict[str, Any]] = field(default_factory=list)
    unchanged: int = 0
    changed_ids: list[str] = field(default_factory=list)

    def summary(self) -> str:
        line = f"{self.table}: {len(self.new)} new, {len(self.changed)} changed, {self.unchanged} unchanged"
        if self.changed_ids:
            shown = ", ".join(self.changed_ids[:10]) + (f" and {len(self.changed_ids) - 10} more" if len(self.changed_ids) > 10 else "")
            line += f" (changed: {shown})"
        return line


@dataclass
class ImportPlan:
    patients: TableChanges
    visits: TableChanges
    reports: TableChanges
    slides: TableChanges
    links: dict[Path, Path]  # link inside the workspace's slides/ -> file or DICOM folder in the lab's folder

    def tables(self) -> list[TableChanges]:
        return [self.patients, self.visits, self.reports, self.slides]

    @property
    def empty(self) -> bool:
        return not any(t.new or t.changed for t in self.tables()) and not self.links


def _diff(table: str, wanted: dict[Any, dict[str, Any]], existing: dict[Any, dict[str, Any]], key: str) -> TableChanges:
    """Rows of ``wanted`` (by key) that are new, or differ from ``existing`` in any column they give."""
    changes = TableChanges(table)
    for k, row in wanted.items():
        old = existing.get(k)
        if old is None:
            changes.new.append(row)
        elif any(old.get(c) != v for c, v in row.items()):
            changes.changed.append(row | {key: old[key]})
            changes.changed_ids.append(" day ".join(str(p) for p in k) if isinstance(k, tuple) else str(k))
        else:
            changes.unchanged += 1
    return changes


def _rows(session: Session, model: type[Base], columns: list[str]) -> list[dict[str, Any]]:
    return [dict(r._mapping) for r in session.execute(select(*(getattr(model, c) for c in columns)))]


def slide_place(record: SlideRecord, slides_dir: Path, lab_folder: Path) -> tuple[str, Path | None]:
    """Where the workspace reads the slide (relative to its slides/ folder) and the link to make there, if any: a slide
    already under slides/ is read in place; any other is linked, keeping its place in the lab's folder."""
    source = record.source.resolve()
    if slides_dir.resolve() in source.parents:
        return str(record.opened.resolve().relative_to(slides_dir.resolve())), None
    place = record.source.relative_to(lab_folder)
    file = place / record.opened.name if record.opened != record.source else place
    return str(file), slides_dir / place


def plan_import(store: CaseStore, slides_dir: Path, patients: list[PatientRecord], visits: list[VisitRecord], reports: list[ReportRecord],
                slides: list[SlideRecord], lab_slides: Path | None, problems: list[Problem]) -> ImportPlan:
    links: dict[Path, Path] = {}
    wanted_slides: dict[Any, dict[str, Any]] = {}
    for s in slides:
        file, link = slide_place(s, slides_dir, lab_slides) if lab_slides else (str(s.opened), None)
        if link is not None:
            if (link.exists() or link.is_symlink()) and link.resolve() != s.source.resolve():
                problems.append(Problem(str(s.source.name), None, None, f"{link} already exists and is another file; rename the slide or remove that file"))
                continue
            if not link.is_symlink() or link.resolve() != s.source.resolve():
                links[link] = s.source
        row: dict[str, Any] = {"id": s.id, "patient_id": s.patient_id, "file": file, "mpp": s.mpp, "width": s.width, "height": s.height}
        if s.mask_source is not None:
            mask_link = slides_dir / MASKS_FOLDER / s.mask_source.name
            if not mask_link.is_symlink() or mask_link.resolve() != s.mask_source.resolve():
                links[mask_link] = s.mask_source
            row |= {"mask_file": f"{MASKS_FOLDER}/{s.mask_source.name}", "mask_mpp": s.mask_mpp}
        if s.label is not None or s.day is not None:  # from a mapping CSV; a name pattern leaves them as they are
            row |= {"label": s.label, "day": s.day}
        wanted_slides[s.id] = row
    with store.session() as session:
        existing_patients = {r["id"]: r for r in _rows(session, Patient, ["id", "attributes"])}
        existing_visits = {(r["patient_id"], r["day"]): r for r in _rows(session, Visit, ["id", "patient_id", "day", "features", "label"])}
        existing_reports = {r["id"]: r for r in _rows(session, Report, ["id", "patient_id", "text", "label", "day"])}
        existing_slides = {r["id"]: r for r in _rows(session, Slide, ["id", "patient_id", "file", "mpp", "width", "height", "mask_file",
                                                                       "mask_mpp", "label", "day"])}
    return ImportPlan(
        patients=_diff("patients", {p.id: {"id": p.id, "attributes": checked_attributes(p.attributes)} for p in patients}, existing_patients, "id"),
        visits=_diff("visits", {(v.patient_id, v.day): {"patient_id": v.patient_id, "day": v.day, "features": v.features, "label": v.label}
                                for v in visits}, existing_visits, "id"),
        reports=_diff("reports", {r.id: {"id": r.id, "patient_id": r.patient_id, "text": r.text, "label": r.label, "day": r.day}
                                  for r in reports}, existing_reports, "id"),
        slides=_diff("slides", wanted_slides, existing_slides, "id"),
        links=links,
    )


def apply_import(store: CaseStore, plan: ImportPlan) -> None:
    """Write the plan in one transaction (bulk inserts, bulk updates by primary key); links to slides first, and
    removed again if the transaction fails."""
    made: list[Path] = []
    try:
        for link, target in sorted(plan.links.items()):
            link.parent.mkdir(parents=True, exist_ok=True)
            if link.is_symlink():
                link.unlink()
            link.symlink_to(target.resolve(), target_is_directory=target.is_dir())
            made.append(link)
        with store.session() as session:
            for model, changes in ((Patient, plan.patients), (Visit, plan.visits), (Report, plan.reports), (Slide, plan.slides)):
                if changes.new:
                    session.execute(insert(model), changes.new)
                if changes.changed:
                    session.execute(update(model), changes.changed)
    except BaseException:
        for link in made:
            link.unlink(missing_ok=True)
        raise
