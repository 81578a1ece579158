"""Cohort page: every patient with patient-level model outputs, review status and model-vs-label checks, as
worklists (all, unreviewed, flagged, model disagrees with label), with a patient search, in an AG Grid whose rows come
from the server one page at a time (the infinite row model): filtered, paged and sorted by the database. The worklist,
grade filter, search, sort and column filters are in the address (``?worklist=…&grade=…&q=…&sort=…&f.<column>=…``,
see ``dashboard.components.grid_query``)."""

from __future__ import annotations

import re

import dash_ag_grid as dag
import dash_bootstrap_components as dbc
from dash import Dash, Input, Output, State, dcc, html

from core.heatmaps.grade_comparison import PatientGradeComparison
from core.models.manifest import ModelManifest
from core.slides.quality import FLAG_LABELS
from core.store.cohort import (
    ATTRIBUTE_COLUMN,
    DECISION_THRESHOLD,
    QC_WORKLIST_MIN_FRACTION,
    WORKLISTS,
    Disagreement,
    filterable_columns,
    sortable_columns,
)
from core.worklist import WorklistPage, WorklistRequest, worklist_page
from core.workspace import PatientAttribute, Workspace
from dashboard.components.grid_query import ADDRESS_JS, column_filter, grid_state_from_query, store_filters, store_sort

PAGE_SIZE = 15
_COUNT_COLUMNS = [("slides", "Slides"), ("visits", "Visits"), ("reports", "Reports")]
_REVIEW_COLUMNS = [("review", "Review"), ("flagged", "Flagged"), ("disagreements", "Model vs label"), ("qc", "Slide QC")]
GRADE_COLUMN = "grade"  # filled from the grade comparison, not the database: filtered with its own control, not sorted
GRADE_FILTERS = {"any": "Any", "disagree": "Disagree", "agree": "Agree", "not compared": "Not compared"}
_REVIEW_TOOLTIPS = {
    "review": "unreviewed: no verdict yet · in review: some verdicts, not all signed off · signed off: the latest "
              "slide, patient and report verdicts (for what the case has) are all signed off",
    "flagged": "a latest verdict carries a flag (second opinion, poor stain, ...)",
    GRADE_COLUMN: "ISUP grade group of the slide's class map (highest over the patient's slides with a computed heatmap) against the "
                  "grade group stated by the report taken nearest each slide; 'benign' is no tumour",
    "disagreements": f"labelled slides, reports and visits where a model's stored prediction is on the other side of "
                     f"{DECISION_THRESHOLD} from the recorded label (disagreeing of compared model-subject pairs); hover a "
                     "cell for the pairs",
    "qc": "the worst quality-control flag over the case's slides (out of focus, pen ink, fold / over-dark, stain outlier) "
          "and the share of that slide's tissue it covers; 'not run' until a heatmap with QC is computed",
}


def scored_models(workspace: Workspace) -> list[str]:
    """Models whose outputs are summarised per patient (all but patch-level models)."""
    return [m for m, manifest in workspace.manifests.items() if manifest.task != "patch"]


def _help_text() -> html.Details:
    return html.Details([
        html.Summary("How review status and model vs label are worked out", className="small"),
        html.Ul([
            html.Li("Review: unreviewed (no verdict saved), in review, or signed off (the latest verdict of every "
                    "modality the case has, slide, patient (visits) and report, is signed off)."),
            html.Li("Flagged: any latest verdict of the case carries a flag."),
            html.Li(f"Slide QC: the worst quality-control flag over the case's slides and the share of tissue it covers "
                    f"(computed with each heatmap); the QC flagged list holds cases where it covers at least "
                    f"{QC_WORKLIST_MIN_FRACTION:.0%} of a slide's tissue."),
            html.Li(f"Model vs label: each labelled slide, report and visit is compared with every shown model's stored "
                    f"prediction for it; the model disagrees when its score is {DECISION_THRESHOLD} or more and the label "
                    f"is negative, or below {DECISION_THRESHOLD} and the label is positive. Shown as how many of the "
                    "compared pairs disagree; a dash means nothing labelled could be compared. Patient-level scores "
                    "(a summary over subjects) are not compared."),
            html.Li("Model vs report grade: the ISUP grade group the patch model's class map gives each slide whose heatmap has "
                    "been computed (Gleason patterns covering at least 10 % of the tissue, by the rule for the specimen type the "
                    "slide's report names; see the slide page), the highest over the patient's slides, against the highest grade "
                    "group stated by the reports paired with those slides (nearest in days), read from their text."),
        ], className="small text-muted mb-0"),
    ], className="mb-2")


def _filters(query: dict) -> tuple[str, str, str, list[str]]:
    """The worklist, grade filter and search a link gives, and a line for each value it gives that cannot be used."""
    worklist, grade, search = query.get("worklist", "all"), query.get("grade", "any"), query.get("q", "")[:64]
    problems = []
    if worklist not in WORKLISTS:
        problems.append(f"worklist {worklist[:40]!r} is not one of {', '.join(WORKLISTS)}")
        worklist = "all"
    if grade not in GRADE_FILTERS:
        problems.append(f"grade filter {grade[:40]!r} is not one of {', '.join(GRADE_FILTERS)}")
        grade = "any"
    return worklist, grade, search, problems


# Colours of cells, by what they say (assets/dashboard.css).
_CELL_CLASSES = {
    "disagreements": {"cohort-cell-bad": "params.value && params.value.includes('disagree')"},
    "flagged": {"cohort-cell-warn": "params.value && params.value.includes('flagged')"},
    "review": {"cohort-cell-good": "params.value === 'signed off'"},
    "qc": {"cohort-cell-warn": "params.value && params.value.includes('%')"},
    GRADE_COLUMN: {"cohort-cell-bad": "params.value && params.value.includes('disagree')"},
}
# Three lines of cell text: the grade column's longest cells ("benign vs benign · agree", "4 vs — · no report grade")
# take three at its least width (the infinite row model needs one row height).
ROW_HEIGHT_PX = 52
# Least widths (px) in which a column's cells read whole (three lines at most); the others are as wide as their heading's
# longest word. The grid shares out the rest of its width, so every column shows at 1366 px without sideways scrolling
# (tests/test_layout_browser.py).
_CELL_WIDTHS = {"patient_id": 56, "slides": 48, "visits": 48, "reports": 48, "review": 90, "flagged": 70, "disagreements": 88,
                "qc": 72, GRADE_COLUMN: 84}
_CHARACTER_PX, _PADDING_PX = 7.4, 16  # a heading's bold 12 px letters, and a cell's padding


def _heading_width(text: str) -> int:
    """Width of a heading's longest word: headings wrap at spaces and after hyphens."""
    words = re.split(r"\s+|(?<=-)", text)
    return round(max(len(w) for w in words) * _CHARACTER_PX) + _PADDING_PX


def _column(column_id: str, name: str, kinds: dict[str, str], sortable: list[str], tooltip: str | None = None, group: str = "",
            **extra: object) -> dict:
    """A column (sorted and filtered by the store where it can be); its least width holds its cells and its heading's
    longest word (the sort arrow and filter button lie in the heading's corners, assets/dashboard.css)."""
    width = max(_CELL_WIDTHS.get(column_id, 44), _heading_width(name), _heading_width(group) if group else 0)
    column: dict = {"field": column_id, "colId": column_id, "headerName": name, "width": width, "minWidth": width,
                    "sortable": column_id in sortable, **extra}
    if column_id in kinds:
        column |= column_filter(kinds[column_id])
    if tooltip:
        column["headerTooltip"] = tooltip
    if column_id in _CELL_CLASSES:
        column["cellClassRules"] = _CELL_CLASSES[column_id]
    return column


def _column_defs(workspace: Workspace, sortable: list[str], kinds: dict[str, str]) -> list[dict]:
    """Columns; a model's score column sits in a group named after the class it scores, so two models of one class
    ("pattern 4/5 present") are told apart."""
    columns = [_column("patient_id", "Patient", kinds, sortable, cellRenderer="CaseLink", pinned="left")]
    columns += [_column(ATTRIBUTE_COLUMN + name, _heading(a), kinds, sortable) for name, a in workspace.patient_attributes().items()]
    columns += [_column(c, n, kinds, sortable, type="numericColumn") for c, n in _COUNT_COLUMNS]
    by_class: dict[str, list[str]] = {}
    for model_id in scored_models(workspace):
        by_class.setdefault(f"P({workspace.manifest(model_id).score_class})", []).append(model_id)
    groups: dict[str, list[dict]] = {}
    for name, model_ids in by_class.items():
        groups[name] = [_column(f"score:{model_id}", model_id, kinds, sortable, f"{workspace.manifest(model_id).name} [{model_id}]",
                                group=name if len(model_ids) == 1 else "", type="numericColumn",
                                valueFormatter={"function": "params.value == null ? '' : d3.format('.2f')(params.value)"})
                        for model_id in model_ids]
    columns += [{"headerName": name, "wrapHeaderText": True, "autoHeaderHeight": True, "children": children}
                for name, children in groups.items()]
    columns += [_column(c, n, kinds, sortable, _REVIEW_TOOLTIPS[c]) for c, n in _REVIEW_COLUMNS]
    columns[-2]["tooltipField"] = "disagreement_detail"  # the model vs label column: which predictions disagree
    columns.append(_column(GRADE_COLUMN, "Grade group: model vs report", kinds, sortable, _REVIEW_TOOLTIPS[GRADE_COLUMN]))
    return columns


def layout(workspace: Workspace, query: dict | None = None) -> html.Div:
    """``query``: the link's filters (``worklist``, ``grade``, ``q``, ``sort``, ``f.<column>``)."""
    query = query or {}
    worklist, grade, search, problems = _filters(query)
    attributes = list(workspace.patient_attributes())
    sortable, kinds = sortable_columns(scored_models(workspace), attributes), filterable_columns(scored_models(workspace), attributes)
    sort_model, filter_model, grid_problems = grid_state_from_query(query, sortable, kinds)
    problems += grid_problems
    return html.Div([
        html.H2("Cohort"),
        html.P(f"{workspace.name}. Open a case to review its slides, visits and reports. Scores are the "
               "stored model outputs per patient (highest over a patient's slides and reports; latest visit).",
               className="text-muted"),
        dbc.Alert(["This link's filters could not be used in full: ", "; ".join(problems), "; the rest is shown."],
                  color="warning", id="cohort-link-problems", className="small py-2") if problems else "",
        dcc.Store(id="cohort-query", data=None),  # the address's query, written in the browser
        dcc.Store(id="cohort-refresh", data=None),  # when the grid was last asked to fetch its rows again
        html.Div([
            html.Span("Show:", className="me-2 fw-semibold"),
            dbc.RadioItems(id="cohort-worklist", options=[{"label": name, "value": key} for key, name in WORKLISTS.items()],
                           value=worklist, inline=True, className="d-inline-block"),
        ], className="mb-1"),
        html.Div([
            html.Span("Model vs report grade group:", className="me-2 fw-semibold"),
            dbc.RadioItems(id="cohort-grade", options=[{"label": name, "value": key} for key, name in GRADE_FILTERS.items()],
                           value=grade, inline=True, className="d-inline-block"),
        ], className="mb-1"),
        html.Div([
            dbc.Label("Find patient", html_for="cohort-search", className="me-2 mb-0 fw-semibold"),
            dbc.Input(id="cohort-search", type="search", value=search, placeholder="patient id, or part of it", debounce=True,
                      size="sm", style={"maxWidth": "16rem"}, maxLength=64),
        ], className="d-flex align-items-center mb-1"),
        _help_text(),
        dag.AgGrid(
            id="cohort-table", className="cohort-grid", columnDefs=_column_defs(workspace, sortable, kinds),
            rowModelType="infinite", columnSize="responsiveSizeToFit", style={"height": None, "width": "100%"},
            defaultColDef={"wrapHeaderText": True, "autoHeaderHeight": True, "wrapText": True, "suppressHeaderMenuButton": True,
                           "resizable": True, "suppressMovable": True},
            dashGridOptions={
                # One page of rows per request, and no more than two pages held in the browser.
                "pagination": True, "paginationPageSize": PAGE_SIZE, "cacheBlockSize": PAGE_SIZE, "maxBlocksInCache": 2,
                "paginationPageSizeSelector": False, "infiniteInitialRowCount": PAGE_SIZE, "maxConcurrentDatasourceRequests": 1,
                "domLayout": "autoHeight", "rowHeight": ROW_HEIGHT_PX, "tooltipShowDelay": 0, "tooltipHideDelay": 60_000,
                "suppressMultiSort": True, "suppressCellFocus": True,
                "initialState": {"sort": {"sortModel": sort_model}, "filter": {"filterModel": filter_model}},
            },
        ),
        html.Div(id="cohort-status", className="text-muted small mt-2"),
    ])


def _heading(attribute: PatientAttribute) -> str:
    return f"{attribute.label} ({attribute.unit})" if attribute.unit else attribute.label


def _grade_name(group: int | None) -> str:
    return "—" if group is None else "benign" if group == 0 else str(group)


def grade_cell(comparison: PatientGradeComparison | None) -> str:
    """"2 vs 3 · disagree", "benign vs benign · agree", "2 vs — · no report grade", or a dash with nothing graded."""
    if comparison is None or comparison.model_group is None:
        return "—"
    shown = f"{_grade_name(comparison.model_group)} vs {_grade_name(comparison.report_group)}"
    return f"{shown} · {comparison.agreement}" if comparison.report_group is not None else f"{shown} · no report grade"


def _class_name(manifest: ModelManifest, positive: bool) -> str:
    """The class a binary call names: the scored class, or the other one (of two), else "not <scored class>"."""
    if positive:
        return manifest.score_class
    others = [c for c in manifest.class_names if c != manifest.score_class]
    return others[0] if len(others) == 1 else f"not {manifest.score_class}"


def disagreement_text(disagreements: list[Disagreement], manifests: dict[str, ModelManifest]) -> str:
    """One line per disagreeing pair: "P001-S1 mil-lse: tumour 0.82 vs label benign", "visit day 30 progression-gru: ..."."""
    lines = []
    for d in disagreements:
        m = manifests[d.model_id]
        subject = f"visit day {d.day:.0f}" if d.day is not None else d.subject_id
        lines.append(f"{subject} {d.model_id}: {_class_name(m, d.score >= DECISION_THRESHOLD)} {d.score:.2f} "
                     f"vs label {_class_name(m, d.label == 1)}")
    return "\n".join(lines)


def _display(row: dict, grades: dict[str, PatientGradeComparison], attributes: dict[str, PatientAttribute],
             disagreements: list[Disagreement], manifests: dict[str, ModelManifest]) -> dict:
    """Cell texts: attribute values (the unit is in the heading), the flag, how many compared predictions disagree with
    their labels (and which, for the tooltip), and the model vs report grade groups."""
    for name, attribute in attributes.items():
        row[ATTRIBUTE_COLUMN + name] = attribute.text(row[ATTRIBUTE_COLUMN + name], with_unit=False)
    pid, count, compared = row["patient_id"], row.pop("disagreements"), row.pop("labelled")
    row["flagged"] = "⚑ flagged" if row["flagged"] else ""
    if compared is None:
        row["disagreements"] = "—"
    else:
        row["disagreements"] = f"{count}/{compared} disagree" if count else f"agrees ({compared})"
    row["disagreement_detail"] = disagreement_text(disagreements, manifests) or None
    qc, qc_fraction = row.pop("qc"), row.pop("qc_fraction")
    row["qc"] = "not run" if qc is None else "clean" if not qc else f"{FLAG_LABELS[qc]} {qc_fraction:.0%}"
    row[GRADE_COLUMN] = grade_cell(grades.get(pid))
    return row


def status_text(query: WorklistRequest, result: WorklistPage) -> str:
    """What the table shows: how many patients of how many, under which worklist and narrowing, and the page."""
    shown = f"{result.total} patients" if query.worklist == "all" else \
        f"{result.total} of {result.counts['all']} patients ({WORKLISTS[query.worklist].lower()})"
    if query.grade != "any":
        shown += f", model and report grade groups: {query.grade}"
    if query.search:
        shown += f", patient id containing {query.search!r}"
    if query.filters:
        shown += f", {len(query.filters)} column filter{'s' if len(query.filters) > 1 else ''}"
    return f"{shown} · page {min(query.page, result.pages - 1) + 1} of {result.pages}"


def register_callbacks(app: Dash, workspace: Workspace) -> None:
    # The grid asks for one page at a time (getRowsRequest: which rows, its sort and filter models); the worklist, grade
    # filter and search are read as they are, and changing one of them makes the grid ask again (below).
    @app.callback(
        Output("cohort-table", "getRowsResponse"), Output("cohort-status", "children"), Output("cohort-worklist", "options"),
        Output("cohort-grade", "options"),
        Input("cohort-table", "getRowsRequest"),
        State("cohort-worklist", "value"), State("cohort-grade", "value"), State("cohort-search", "value"),
        prevent_initial_call=True,
    )
    def show_cohort_page(request, worklist, grade_filter, search):
        models, attributes = scored_models(workspace), workspace.patient_attributes()
        query = WorklistRequest(worklist or "all", grade_filter or "any", (search or "").strip(), (request.get("startRow") or 0) // PAGE_SIZE,
                                PAGE_SIZE, *store_sort(request.get("sortModel"), sortable_columns(models, list(attributes))),
                                store_filters(request.get("filterModel"), filterable_columns(models, list(attributes))))
        result = worklist_page(workspace, models, list(attributes), query)
        manifests = {m: workspace.manifest(m) for m in models}
        rows = [_display(r, result.grades, attributes, result.disagreements.get(r["patient_id"], []), manifests) for r in result.rows]
        options = [{"label": f"{name} ({result.counts[key]})", "value": key} for key, name in WORKLISTS.items()]
        grade_options = [{"label": name if key == "any" else f"{name} ({result.grade_counts[key]})", "value": key}
                         for key, name in GRADE_FILTERS.items()]
        return {"rowData": rows, "rowCount": result.total}, status_text(query, result), options, grade_options

    # A new worklist, grade filter or search: back to the first page, and the grid asks the server for its rows again.
    app.clientside_callback(
        """function (worklist, grade, search) {
            const api = window.dash_ag_grid && dash_ag_grid.getApi("cohort-table");
            if (api) { api.paginationGoToFirstPage(); api.purgeInfiniteCache(); }
            return Date.now();
        }""",
        Output("cohort-refresh", "data"), Input("cohort-worklist", "value"), Input("cohort-grade", "value"),
        Input("cohort-search", "value"), prevent_initial_call=True,
    )

    # The filters go into the address bar (replaceState: no reload), so that a link or a reload keeps them; until the
    # grid has asked for rows, the link's own sort and column filters stay.
    app.clientside_callback(
        """function (worklist, grade, search, request) {
            const toAddress = ADDRESS_JS;
            const query = new URLSearchParams();
            if (worklist && worklist !== "all") { query.set("worklist", worklist); }
            if (grade && grade !== "any") { query.set("grade", grade); }
            if (search && search.trim()) { query.set("q", search.trim()); }
            if (request) {
                toAddress(query, request);
            } else {
                for (const [key, value] of new URLSearchParams(window.location.search)) {
                    if (key === "sort" || key.startsWith("f.")) { query.set(key, value); }
                }
            }
            const text = query.toString();
            if (window.location.pathname === "/" || window.location.pathname === "/cohort") {
                window.history.replaceState(window.history.state, "", window.location.pathname + (text ? "?" + text : ""));
            }
            return text;
        }""".replace("ADDRESS_JS", ADDRESS_JS.strip()),
        Output("cohort-query", "data"), Input("cohort-worklist", "value"), Input("cohort-grade", "value"), Input("cohort-search", "value"),
        Input("cohort-table", "getRowsRequest"),
    )


def nav_item() -> dbc.NavItem:
    return dbc.NavItem(dbc.NavLink("Cohort", href="/", active="exact"))
