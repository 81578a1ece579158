"""Cohort page: every patient with patient-level model outputs, review status and model-vs-label checks, as
worklists (all, unreviewed, flagged, model disagrees with label), with a patient search; filtered, paged and sorted by the
database. The worklist, grade filter and search are in the address (``?worklist=…&grade=…&q=…``)."""

from __future__ import annotations

import dash_bootstrap_components as dbc
from dash import Dash, Input, Output, ctx, dash_table, dcc, html

from core.heatmaps.grade_comparison import GRADE_AGREEMENTS, PatientGradeComparison, grade_comparisons
from core.slides.quality import FLAG_LABELS
from core.store.cohort import (
    ATTRIBUTE_COLUMN,
    DECISION_THRESHOLD,
    QC_WORKLIST_MIN_FRACTION,
    WORKLISTS,
    cohort_page,
    patients_matching,
    worklist_counts,
)
from core.workspace import PatientAttribute, Workspace

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
                     f"{DECISION_THRESHOLD} from the recorded label (disagreeing of compared model-subject pairs)",
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


def layout(workspace: Workspace, query: dict | None = None) -> html.Div:
    """``query``: the link's filters (``worklist``, ``grade``, ``q``)."""
    worklist, grade, search, problems = _filters(query or {})
    # Two header rows: a model's score column names its model under the class it scores, so two models of one class
    # ("pattern 4/5 present") are told apart.
    columns = [{"id": "patient_id", "name": ["", "Patient"], "presentation": "markdown"}]
    columns += [{"id": ATTRIBUTE_COLUMN + name, "name": ["", _heading(a)]} for name, a in workspace.patient_attributes().items()]
    columns += [{"id": c, "name": ["", n]} for c, n in _COUNT_COLUMNS]
    tooltips = dict(_REVIEW_TOOLTIPS)
    for model_id in scored_models(workspace):
        m = workspace.manifest(model_id)
        columns.append({"id": f"score:{model_id}", "name": [f"P({m.score_class})", model_id],
                        "type": "numeric", "format": {"specifier": ".2f"}})
        tooltips[f"score:{model_id}"] = f"{m.name} [{model_id}]"
    columns += [{"id": c, "name": ["", n]} for c, n in _REVIEW_COLUMNS]
    columns.append({"id": GRADE_COLUMN, "name": ["Grade group", "model vs report"]})
    return html.Div([
        html.H2("Cohort"),
        html.P(f"{workspace.name}. Open a case to review its slides, visits and reports. Scores are the "
               "stored model outputs per patient (highest over a patient's slides and reports; latest visit).",
               className="text-muted"),
        dbc.Alert(["This link's filters could not be used in full: ", "; ".join(problems), "; all is shown instead."],
                  color="warning", id="cohort-link-problems", className="small py-2") if problems else "",
        dcc.Store(id="cohort-query", data=None),  # the address's query, written in the browser
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
        dash_table.DataTable(
            id="cohort-table", columns=columns, page_current=0, page_size=PAGE_SIZE, page_action="custom",
            sort_action="custom", sort_mode="single", sort_by=[], markdown_options={"link_target": "_self"}, merge_duplicate_headers=True,
            tooltip_header=tooltips, tooltip_delay=0, tooltip_duration=None,
            # Compact cells, and headers and cells that wrap: every column fits at 1366 px (tests/test_layout_browser.py).
            style_table={"overflowX": "auto"}, style_cell={"fontFamily": "inherit", "padding": "3px 5px", "fontSize": "0.8rem"},
            style_header={"fontWeight": "600", "backgroundColor": "#f3f5f8", "whiteSpace": "normal", "height": "auto"},
            style_data={"whiteSpace": "normal", "height": "auto"},
            style_data_conditional=[
                {"if": {"filter_query": "{disagreements} contains 'disagree'", "column_id": "disagreements"},
                 "color": "#b02a37", "fontWeight": "600"},
                {"if": {"filter_query": "{flagged} contains 'flagged'", "column_id": "flagged"}, "color": "#b35c00"},
                {"if": {"filter_query": "{review} = 'signed off'", "column_id": "review"}, "color": "#1e7b34"},
                {"if": {"filter_query": "{qc} contains '%'", "column_id": "qc"}, "color": "#b35c00"},
                {"if": {"filter_query": "{grade} contains 'disagree'", "column_id": GRADE_COLUMN}, "color": "#b02a37", "fontWeight": "600"},
            ],
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


def _display(row: dict, grades: dict[str, PatientGradeComparison], attributes: dict[str, PatientAttribute]) -> dict:
    """Cell texts: a link to the case, attribute values (the unit is in the heading), the flag, how many compared
    predictions disagree with their labels, and the model vs report grade groups."""
    for name, attribute in attributes.items():
        row[ATTRIBUTE_COLUMN + name] = attribute.text(row[ATTRIBUTE_COLUMN + name], with_unit=False)
    pid, disagreements, compared = row["patient_id"], row.pop("disagreements"), row.pop("labelled")
    row["patient_id"] = f"[{pid}](/case/{pid})"
    row["flagged"] = "⚑ flagged" if row["flagged"] else ""
    if compared is None:
        row["disagreements"] = "—"
    else:
        row["disagreements"] = f"{disagreements}/{compared} disagree" if disagreements else f"agrees ({compared})"
    qc, qc_fraction = row.pop("qc"), row.pop("qc_fraction")
    row["qc"] = "not run" if qc is None else "clean" if not qc else f"{FLAG_LABELS[qc]} {qc_fraction:.0%}"
    row[GRADE_COLUMN] = grade_cell(grades.get(pid))
    return row


def register_callbacks(app: Dash, workspace: Workspace) -> None:
    @app.callback(
        Output("cohort-table", "data"), Output("cohort-table", "page_count"), Output("cohort-table", "page_current"),
        Output("cohort-status", "children"), Output("cohort-worklist", "options"), Output("cohort-grade", "options"),
        Input("cohort-table", "page_current"), Input("cohort-table", "page_size"), Input("cohort-table", "sort_by"),
        Input("cohort-worklist", "value"), Input("cohort-grade", "value"), Input("cohort-search", "value"),
    )
    def show_cohort_page(page, page_size, sort_by, worklist, grade_filter, search):
        worklist, grade_filter, search = worklist or "all", grade_filter or "any", (search or "").strip()
        page_size = page_size or PAGE_SIZE
        page = 0 if ctx.triggered_id in ("cohort-worklist", "cohort-grade", "cohort-search") else page or 0
        sort = (sort_by or [{"column_id": "patient_id", "direction": "asc"}])[0]
        if sort["column_id"] == GRADE_COLUMN:  # not a database column: its filter above sorts it out
            sort = {"column_id": "patient_id", "direction": "asc"}
        models = scored_models(workspace)
        attributes = workspace.patient_attributes()
        grades = grade_comparisons(workspace)
        chosen = None if grade_filter == "any" else {pid for pid, g in grades.items() if g.agreement == grade_filter}
        with workspace.store.session() as s:
            if search:
                found = patients_matching(s, search)
                chosen = found if chosen is None else chosen & found
            counts = worklist_counts(s, models, chosen)
            pages = max(1, -(-counts[worklist] // page_size))
            page = min(page, pages - 1)  # a worklist that shrank since the page was turned
            result = cohort_page(s, models, page, page_size, sort["column_id"], sort["direction"] == "desc", worklist, counts[worklist], chosen,
                                 list(attributes))
        options = [{"label": f"{name} ({counts[key]})", "value": key} for key, name in WORKLISTS.items()]
        by_agreement = {a: sum(1 for g in grades.values() if g.agreement == a) for a in GRADE_AGREEMENTS}
        grade_options = [{"label": name if key == "any" else f"{name} ({by_agreement[key]})", "value": key} for key, name in GRADE_FILTERS.items()]
        shown = f"{result.total} patients" if worklist == "all" else \
            f"{result.total} of {counts['all']} patients ({WORKLISTS[worklist].lower()})"
        if grade_filter != "any":
            shown += f", model and report grade groups: {grade_filter}"
        if search:
            shown += f", patient id containing {search!r}"
        return ([_display(r, grades, attributes) for r in result.rows], pages, page, f"{shown} · page {page + 1} of {pages}", options,
                grade_options)


    # The filters go into the address bar (replaceState: no reload), so that a link or a reload keeps them.
    app.clientside_callback(
        """function (worklist, grade, search) {
            const query = new URLSearchParams();
            if (worklist && worklist !== "all") { query.set("worklist", worklist); }
            if (grade && grade !== "any") { query.set("grade", grade); }
            if (search && search.trim()) { query.set("q", search.trim()); }
            const text = query.toString();
            if (window.location.pathname === "/" || window.location.pathname === "/cohort") {
                window.history.replaceState(window.history.state, "", window.location.pathname + (text ? "?" + text : ""));
            }
            return text;
        }""",
        Output("cohort-query", "data"), Input("cohort-worklist", "value"), Input("cohort-grade", "value"), Input("cohort-search", "value"),
    )


def nav_item() -> dbc.NavItem:
    return dbc.NavItem(dbc.NavLink("Cohort", href="/", active="exact"))
