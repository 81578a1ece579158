"""Patients, visits and reports read from a lab's CSV files (and report texts), validated row by row.

Each file gives records and problems; a record is made only from a valid row. A CSV may have a sidecar TOML of the same
name (``patients.toml`` beside ``patients.csv``) giving each column's display name, unit and kind."""

from __future__ import annotations

import csv
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Annotated, Any, TypeVar

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from core.errors import PathReviewError
from core.imports.ids import id_problem
from core.imports.naming import match_name
from core.imports.problems import Problem
from core.imports.values import ColumnKind, attribute_value, infer_kind, parse_date, parse_day, parse_label, whole_numbers
from core.models.visit_encoding import MissingPolicy
from core.store.schema import ATTRIBUTE_NAME_CHARS, AttributeValue
from core.tomlfile import read_toml
from core.workspace import ATTRIBUTE_NAME

FeatureValue = float | str


class ColumnInfo(BaseModel):
    """``[columns.<name>]`` of a sidecar: how a column is shown and read."""

    model_config = ConfigDict(extra="forbid")
    label: str = Field(default="", max_length=64)
    unit: str = Field(default="", max_length=32)
    kind: ColumnKind | None = None  # None: inferred from the values
    # a visit feature's missing-value policy for models fitted here (carry_forward, cohort_mean, exclude_visit)
    missing: MissingPolicy | None = None
    range: list[float] = []  # a visit feature's plausible [min, max], for what-if edits; default: the observed range


class Sidecar(BaseModel):
    model_config = ConfigDict(extra="forbid")
    columns: dict[str, ColumnInfo] = {}


class SidecarError(PathReviewError):
    """A sidecar TOML that cannot be read."""


def read_sidecar(csv_path: Path) -> Sidecar:
    path = csv_path.with_suffix(".toml")
    return read_toml(path, Sidecar, SidecarError) if path.is_file() else Sidecar()


def _blank_to_none(value: Any) -> Any:
    return None if isinstance(value, str) and value.strip() == "" else value


def _checked_id(value: str) -> str:
    problem = id_problem(value)
    if problem:
        raise ValueError(problem)
    return value


def _parsed(parse: Callable[[str], Any]) -> Callable[[Any], Any]:
    return lambda v: parse(v) if isinstance(v, str) else v


RecordId = Annotated[str, BeforeValidator(lambda v: _checked_id(v.strip() if isinstance(v, str) else v))]
Day = Annotated[float | None, BeforeValidator(_parsed(parse_day)), BeforeValidator(_blank_to_none)]
Date = Annotated[date | None, BeforeValidator(_parsed(parse_date)), BeforeValidator(_blank_to_none)]
Label = Annotated[int | None, BeforeValidator(_parsed(parse_label)), BeforeValidator(_blank_to_none)]


class PatientRow(BaseModel):
    patient_id: RecordId


class VisitRow(BaseModel):
    patient_id: RecordId
    day: Day = None
    date: Date = None
    label: Label = None


class ReportRow(BaseModel):
    report_id: RecordId
    patient_id: RecordId
    day: Day = None
    date: Date = None
    label: Label = None


Row = TypeVar("Row", bound=BaseModel)


def validated(model: type[Row], cells: dict[str, str], file: str, row: int, problems: list[Problem]) -> Row | None:
    """The row's fixed columns through ``model``; each bad cell becomes a problem naming its column."""
    try:
        return model.model_validate({k: v for k, v in cells.items() if k in model.model_fields})
    except ValidationError as exc:
        for e in exc.errors():
            column = str(e["loc"][0]) if e["loc"] else None
            message = str(e["ctx"]["error"]) if e["type"] == "value_error" else e["msg"].lower()
            if e["type"] == "missing":
                message = "empty; every row needs one"
            problems.append(Problem(file, row, column, message))
        return None


@dataclass
class CsvTable:
    path: Path
    header: list[str]
    rows: list[dict[str, str]]  # row number (spreadsheet numbering) is index + 2

    @property
    def name(self) -> str:
        return self.path.name


def read_csv(path: Path, required: list[str]) -> CsvTable:
    """A CSV (UTF-8, a BOM allowed) with its header checked; cells stripped of surrounding spaces."""
    if not path.is_file():
        raise PathReviewError(f"{path} does not exist")
    with path.open(newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        header = [h.strip() for h in reader.fieldnames or []]
        reader.fieldnames = header
        rows = [{k: (v or "").strip() for k, v in r.items() if k is not None} for r in reader]
    missing = [c for c in required if c not in header]
    if missing:
        raise PathReviewError(f"{path.name}: no {' or '.join(missing)} column (its columns are: {', '.join(header) or 'none'})")
    return CsvTable(path, header, rows)


@dataclass
class PatientRecord:
    id: str
    attributes: dict[str, AttributeValue]


@dataclass
class ColumnPlan:
    """How an attribute or feature column is read: its kind, and whether its numbers are whole."""

    name: str
    kind: ColumnKind
    integers: bool = False
    info: ColumnInfo = field(default_factory=ColumnInfo)


def _column_plans(table: CsvTable, columns: list[str], sidecar: Sidecar) -> list[ColumnPlan]:
    plans = []
    for name in columns:
        values = [r.get(name, "") for r in table.rows]
        info = sidecar.columns.get(name, ColumnInfo())
        plans.append(ColumnPlan(name, info.kind or infer_kind(values), whole_numbers(values), info))
    return plans


def _cell(plan: ColumnPlan, text: str, file: str, row: int, problems: list[Problem]) -> AttributeValue:
    try:
        return attribute_value(text, plan.kind, plan.integers)
    except ValueError as exc:
        hint = f" in a column of numbers (if {plan.name} is text, declare kind = \"text\" for it in the sidecar TOML)" if "non-numeric" in str(exc) else ""
        problems.append(Problem(file, row, plan.name, f"{exc}{hint}"))
        return None


def _column_name_problems(table: CsvTable, columns: list[str]) -> list[Problem]:
    return [Problem(table.name, 1, c, f"column name {c!r} must be a letter then letters, digits or _ ({ATTRIBUTE_NAME_CHARS} at most); "
                    "rename it and give its display name as label in the sidecar TOML") for c in columns if not ATTRIBUTE_NAME.match(c)]


def read_patients(path: Path) -> tuple[list[PatientRecord], list[ColumnPlan], list[Problem]]:
    """``patient_id`` plus any attribute columns; empty cells are unknown and left out."""
    table = read_csv(path, ["patient_id"])
    sidecar = read_sidecar(path)
    columns = [c for c in table.header if c != "patient_id"]
    problems = _column_name_problems(table, columns)
    plans = _column_plans(table, columns, sidecar)
    records: list[PatientRecord] = []
    seen: dict[str, int] = {}
    for i, cells in enumerate(table.rows):
        row = i + 2
        before = len(problems)
        parsed = validated(PatientRow, cells, table.name, row, problems)
        attributes = {p.name: _cell(p, cells.get(p.name, ""), table.name, row, problems) for p in plans}
        if parsed and parsed.patient_id in seen:
            problems.append(Problem(table.name, row, "patient_id", f"patient {parsed.patient_id!r} is also on row {seen[parsed.patient_id]}"))
        if parsed is None or len(problems) > before:
            continue
        seen[parsed.patient_id] = row
        records.append(PatientRecord(parsed.patient_id, {k: v for k, v in attributes.items() if v is not None}))
    return records, plans, problems


@dataclass
class VisitRecord:
    patient_id: str
    day: float
    features: dict[str, FeatureValue]
    label: int | None
    row: int


def _time_column(table: CsvTable) -> str:
    has = [c for c in ("day", "date") if c in table.header]
    if len(has) != 1:
        raise PathReviewError(f"{table.name}: give a day column (days since the first visit) or a date column (YYYY-MM-DD), "
                              f"exactly one of them (its columns are: {', '.join(table.header)})")
    return has[0]


def read_visits(path: Path, known_patients: set[str]) -> tuple[list[VisitRecord], list[ColumnPlan], dict[str, date], list[Problem]]:
    """Long format: ``patient_id``, ``day`` or ``date``, optional ``label``, any feature columns. A patient's visits are listed
    in time order; dates become days since the patient's first visit. Returns the records, the feature columns, each
    patient's first visit date (when dated) and the problems."""
    table = read_csv(path, ["patient_id"])
    time = _time_column(table)
    sidecar = read_sidecar(path)
    columns = [c for c in table.header if c not in ("patient_id", "day", "date", "label")]
    problems = _column_name_problems(table, columns)
    plans = _column_plans(table, columns, sidecar)
    records: list[VisitRecord] = []
    first_dates: dict[str, date] = {}
    last: dict[str, tuple[float, int, str]] = {}  # patient -> (day, row, as written) of the visit before
    for i, cells in enumerate(table.rows):
        row = i + 2
        before = len(problems)
        parsed = validated(VisitRow, cells, table.name, row, problems)
        features: dict[str, FeatureValue] = {}
        for p in plans:
            value = _cell(p, cells.get(p.name, ""), table.name, row, problems)
            if value is not None:
                features[p.name] = value if isinstance(value, str) else float(value)
        if parsed is None or len(problems) > before:
            continue
        pid = parsed.patient_id
        if pid not in known_patients:
            problems.append(Problem(table.name, row, "patient_id", f"unknown patient {pid!r}: not in the patients file or the workspace"))
            continue
        if parsed.day is None and parsed.date is None:
            problems.append(Problem(table.name, row, time, "empty; every visit needs one"))
            continue
        if parsed.date is not None:
            first_dates.setdefault(pid, parsed.date)
            day = float((parsed.date - first_dates[pid]).days)
        else:
            day = float(parsed.day or 0.0)
        written = cells[time]
        if pid in last and day <= last[pid][0]:
            previous_day, previous_row, previous_written = last[pid]
            what = "a second visit on the same" if day == previous_day else "out of order:"
            problems.append(Problem(table.name, row, time, f"{what} {time} {written} for patient {pid!r} after {previous_written} on row {previous_row}; "
                                    "list each patient's visits in time order, one per day"))
            continue
        last[pid] = (day, row, written)
        records.append(VisitRecord(pid, day, features, parsed.label, row))
    return records, plans, first_dates, problems


@dataclass
class ReportRecord:
    id: str
    patient_id: str
    text: str
    label: int | None
    day: float | None


def read_reports(path: Path, known_patients: set[str], first_dates: dict[str, date], pattern: str) -> tuple[list[ReportRecord], list[Problem]]:
    """Reports from a CSV (``report_id``, ``patient_id``, ``text`` or ``file``, optional ``day`` or ``date`` and ``label``), or
    from a folder of ``.txt`` files named by report id, matched to patients by ``pattern`` (see ``core.imports.naming``)."""
    if path.is_dir():
        return _report_folder(path, known_patients, pattern)
    table = read_csv(path, ["report_id", "patient_id"])
    if "text" not in table.header and "file" not in table.header:
        raise PathReviewError(f"{table.name}: give the report in a text column, or a file column naming a .txt file beside the CSV")
    time = next((c for c in ("day", "date") if c in table.header), None)
    records: list[ReportRecord] = []
    problems: list[Problem] = []
    seen: dict[str, int] = {}
    for i, cells in enumerate(table.rows):
        row = i + 2
        parsed = validated(ReportRow, cells, table.name, row, problems)
        if parsed is None:
            continue
        rid, pid = parsed.report_id, parsed.patient_id
        if rid in seen:
            problems.append(Problem(table.name, row, "report_id", f"report {rid!r} is also on row {seen[rid]}"))
            continue
        if pid not in known_patients:
            problems.append(Problem(table.name, row, "patient_id", f"unknown patient {pid!r}: not in the patients file or the workspace"))
            continue
        text = cells.get("text", "")
        if not text and cells.get("file"):
            text_path = path.parent / cells["file"]
            try:
                text = text_path.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                problems.append(Problem(table.name, row, "file", f"cannot read {cells['file']}: {exc}"))
                continue
        if not text.strip():
            problems.append(Problem(table.name, row, "text", "the report text is empty"))
            continue
        day = parsed.day
        if parsed.date is not None:
            if pid not in first_dates:
                problems.append(Problem(table.name, row, time, f"a date is given but patient {pid!r} has no dated visits to count from; "
                                        "give day (days since the first visit) instead"))
                continue
            day = float((parsed.date - first_dates[pid]).days)
            if day < 0:
                problems.append(Problem(table.name, row, time, f"date {cells['date']} is before patient {pid!r}'s first visit "
                                        f"({first_dates[pid].isoformat()})"))
                continue
        seen[rid] = row
        records.append(ReportRecord(rid, pid, text, parsed.label, day))
    return records, problems


def _report_folder(folder: Path, known_patients: set[str], pattern: str) -> tuple[list[ReportRecord], list[Problem]]:
    records: list[ReportRecord] = []
    problems: list[Problem] = []
    for path in sorted(folder.rglob("*.txt")):
        shown = str(path.relative_to(folder))
        found = match_name(pattern, path.name, path.stem)
        if isinstance(found, str):
            problems.append(Problem(shown, None, None, found))
            continue
        pid = found.patient
        if pid not in known_patients:
            problems.append(Problem(shown, None, None, f"unknown patient {pid!r}: not in the patients file or the workspace"))
            continue
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            problems.append(Problem(shown, None, None, f"cannot read the report text: {exc}"))
            continue
        records.append(ReportRecord(found.id, pid, text, None, None))
    return records, problems
