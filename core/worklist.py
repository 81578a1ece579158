"""The cohort worklist as a reviewer asks for it: one page of the store's cohort table (a worklist, the grid's sort and
column filters) narrowed by the model vs report grade agreement, which is worked out above the store from the stored
heatmaps and the reports, and by a patient search; with the counts the page's controls show beside each choice."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from core.heatmaps.grade_comparison import GRADE_AGREEMENTS, GradeAgreement, PatientGradeComparison, grade_comparisons
from core.store.cohort import ColumnFilter, Disagreement, cohort_page, label_disagreements, patients_matching, worklist_counts
from core.workspace import Workspace


@dataclass(frozen=True)
class WorklistRequest:
    worklist: str = "all"
    grade: str = "any"  # a grade agreement (``GRADE_AGREEMENTS``), or any
    search: str = ""  # part of a patient id
    page: int = 0
    page_size: int = 15
    sort_by: str = "patient_id"
    descending: bool = False
    filters: Sequence[ColumnFilter] = ()


@dataclass(frozen=True)
class WorklistPage:
    rows: list[dict]
    total: int  # patients on the chosen worklist, after the grade agreement, search and column filters
    page_size: int
    counts: dict[str, int]  # worklist -> patients on it, after the same narrowing
    grade_counts: dict[GradeAgreement, int]  # grade agreement -> patients with it, among those the search finds
    grades: dict[str, PatientGradeComparison]  # every compared patient's grade groups
    disagreements: dict[str, list[Disagreement]]  # the page's model vs label pairs, by patient

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // self.page_size))


def worklist_page(workspace: Workspace, model_ids: list[str], attributes: list[str], request: WorklistRequest) -> WorklistPage:
    grades = grade_comparisons(workspace)
    chosen = None if request.grade == "any" else {pid for pid, g in grades.items() if g.agreement == request.grade}
    search = request.search.strip()
    with workspace.store.session() as s:
        found = patients_matching(s, search) if search else None
        if found is not None:
            chosen = found if chosen is None else chosen & found
        counts = worklist_counts(s, model_ids, chosen, request.filters, attributes)
        result = cohort_page(s, model_ids, request.page, request.page_size, request.sort_by, request.descending, request.worklist,
                             counts[request.worklist], chosen, attributes, request.filters)
        disagreements = label_disagreements(s, model_ids, [r["patient_id"] for r in result.rows])
    searched = grades.values() if found is None else [g for pid, g in grades.items() if pid in found]
    grade_counts = {a: sum(1 for g in searched if g.agreement == a) for a in GRADE_AGREEMENTS}
    return WorklistPage(result.rows, result.total, request.page_size, counts, grade_counts, grades, disagreements)
