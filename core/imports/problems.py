"""What is wrong with an imported row or file, said once, where a lab admin can find it: file, row, column."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

from core.errors import PathReviewError

SKIP_REPORTS = "imports"  # the workspace folder that --skip-invalid writes its reports to


@dataclass(frozen=True)
class Problem:
    """One bad row or file. ``row`` counts as a spreadsheet does: the header is row 1, the first data row is row 2;
    None for a whole file (a slide, a report text)."""

    file: str
    row: int | None
    column: str | None
    message: str

    def line(self) -> str:
        where = [self.file] + ([f"row {self.row}"] if self.row is not None else []) + ([f"column {self.column}"] if self.column else [])
        return f"{', '.join(where)}: {self.message}"


class ImportRejected(PathReviewError):
    """Rows or files that cannot be imported; nothing was written."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        noun = "problem" if len(problems) == 1 else "problems"
        super().__init__(f"nothing imported: {len(problems)} {noun} (fix them, or pass --skip-invalid to import the rest)\n"
                         + "\n".join(p.line() for p in problems))


def write_skip_report(path: Path, problems: list[Problem]) -> Path:
    """The rows and files left out by ``--skip-invalid``, as a CSV a spreadsheet opens (file, row, column, problem)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".part")
    with tmp.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["file", "row", "column", "problem"])
        for p in problems:
            writer.writerow([p.file, "" if p.row is None else p.row, p.column or "", p.message])
    tmp.replace(path)
    return path
