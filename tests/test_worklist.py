"""Cohort worklists on a copy of the demo store: review status, flags and model-vs-label, filtered in SQL, patient search
and the next case of a worklist; and the cohort page's worklist filter and search, and the case page's next unreviewed
case, in headless Chromium."""

from __future__ import annotations

import shutil

import pytest
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait
from sqlalchemy import delete, select

from core.errors import PathReviewError
from core.heatmaps.grade_comparison import GRADE_AGREEMENTS, grade_comparisons
from core.heatmaps.slide_grades import record_slide_grade
from core.heatmaps.slide_heatmap import compute_heatmap
from core.heatmaps.slide_layers import slide_layers
from core.store.cohort import (
    DECISION_THRESHOLD,
    ColumnFilter,
    cohort_page,
    filterable_columns,
    label_disagreements,
    next_on_worklist,
    patients_matching,
    worklist_counts,
)
from core.store.database import open_store
from core.store.reviews import record_review
from core.store.schema import Patient, Prediction, Report, Review, Slide, Visit
from core.worklist import WorklistRequest, worklist_page
from core.workspace import open_workspace
from dashboard.pages.cohort import scored_models, status_text
from tests.helpers import copy_demo, grid_column, grid_page_button, grid_sort, js_click

MODELS = ["mil-attention", "mil-lse", "progression-gru", "report-tfidf"]


@pytest.fixture
def store(demo_workspace, tmp_path):
    """A writable copy of the demo's case store: the shared demo is never written to."""
    shutil.copy(demo_workspace / "cases.db", tmp_path / "cases.db")
    s = open_store(f"sqlite:///{tmp_path / 'cases.db'}")
    with s.session() as session:  # verdicts other tests saved through the shared live server are not this test's
        session.execute(delete(Review))
    yield s
    s.dispose()


def _ids(store, worklist: str, **kwargs) -> list[str]:
    with store.session() as s:
        page = cohort_page(s, MODELS, page_size=500, worklist=worklist, **kwargs)
    assert page.total == len(page.rows)
    return [r["patient_id"] for r in page.rows]


def _rows(store) -> dict[str, dict]:
    with store.session() as s:
        return {r["patient_id"]: r for r in cohort_page(s, MODELS, page_size=500).rows}


def _disagreeing_patients(store, models=tuple(MODELS)) -> set[str]:
    """The definition, computed in Python from the stored rows: a labelled slide, report or visit whose prediction
    by one of the models falls on the other side of 0.5 from its label."""
    with store.session() as s:
        labels = {("slide", x.id): x.label for x in s.scalars(select(Slide))}
        labels |= {("report", x.id): x.label for x in s.scalars(select(Report))}
        labels |= {("visit", str(x.id)): x.label for x in s.scalars(select(Visit))}
        out = set()
        for p in s.scalars(select(Prediction).where(Prediction.model_id.in_(models))):
            label = labels.get((p.subject_kind, p.subject_id))
            if label is not None and (p.score >= DECISION_THRESHOLD) != (label == 1):
                out.add(p.patient_id)
    return out


def _review(store, pid, modality, signed_off=False, flags=(), expected=0):
    return record_review(store, pid, modality, "agree", "", list(flags), signed_off, "dr_test", expected)


def test_worklists_return_exactly_the_expected_patients(store):
    with store.session() as s:
        everyone = sorted(s.scalars(select(Patient.id)))
    assert _ids(store, "all") == everyone and _ids(store, "unreviewed") == everyone and _ids(store, "flagged") == []
    expected_disagreements = _disagreeing_patients(store)
    assert expected_disagreements, "the demo's models should get a few labelled subjects wrong"
    assert set(_ids(store, "disagrees")) == expected_disagreements

    # P001: all three modalities signed off (one flagged, then the flag cleared in a later version).
    _review(store, "P001", "slide", True, ["poor stain"])
    _review(store, "P001", "slide", True, [], expected=1)
    _review(store, "P001", "patient", True)
    _review(store, "P001", "report", True)
    # P002: flagged and only partly reviewed; P003: one signed-off modality of three; P004: signed, then reopened.
    _review(store, "P002", "report", False, ["second opinion", "teaching case"])
    _review(store, "P003", "slide", True)
    _review(store, "P004", "slide", True)
    _review(store, "P004", "patient", True)
    _review(store, "P004", "report", True)
    _review(store, "P004", "report", False, ["label suspect"], expected=1)

    reviewed = {"P001", "P002", "P003", "P004"}
    assert _ids(store, "unreviewed") == [p for p in everyone if p not in reviewed]
    assert _ids(store, "flagged") == ["P002", "P004"]  # P001's flag was cleared by its latest slide verdict
    assert set(_ids(store, "disagrees")) == expected_disagreements  # reviews do not change model-vs-label
    rows = _rows(store)
    assert [rows[p]["review"] for p in ("P001", "P002", "P003", "P004", "P005")] == [
        "signed off", "in review", "in review", "in review", "unreviewed"]
    assert [rows[p]["flagged"] for p in ("P001", "P002", "P003", "P004")] == [False, True, False, True]
    with store.session() as s:
        assert worklist_counts(s, MODELS) == {"all": len(everyone), "unreviewed": len(everyone) - 4, "flagged": 2,
                                              "disagrees": len(expected_disagreements), "qc": len(_ids(store, "qc"))}


def test_signed_off_needs_only_the_modalities_a_case_has(store):
    with store.session() as s:
        for report in s.scalars(select(Report).where(Report.patient_id == "P005")):
            s.delete(report)
        s.execute(Prediction.__table__.delete().where(Prediction.patient_id == "P005", Prediction.subject_kind == "report"))
    _review(store, "P005", "slide", True)
    assert _rows(store)["P005"]["review"] == "in review"  # the visits (patient verdict) are not signed off yet
    _review(store, "P005", "patient", True)
    assert _rows(store)["P005"]["review"] == "signed off"  # no reports, so no report verdict is needed


def test_model_vs_label_counts_compared_pairs(store):
    rows = _rows(store)
    with store.session() as s:
        n_slides = len(s.scalars(select(Slide).where(Slide.patient_id == "P001")).all())
        n_reports = len(s.scalars(select(Report).where(Report.patient_id == "P001")).all())
        n_visits = len(s.scalars(select(Visit).where(Visit.patient_id == "P001")).all())
    # Two slide models, one report model, one visit model: every P001 subject is labelled and predicted.
    assert rows["P001"]["labelled"] == 2 * n_slides + n_reports + n_visits
    assert all(r["labelled"] is not None and r["disagreements"] is not None for r in rows.values())
    with store.session() as s:
        assert cohort_page(s, [], page_size=500).rows[0]["labelled"] is None  # no models: nothing to compare


def test_worklist_paging_sorting_and_bad_input(store):
    for pid in ("P007", "P003", "P010"):
        _review(store, pid, "slide", flags=["artefact"])
    with store.session() as s:
        first = cohort_page(s, MODELS, page=0, page_size=2, worklist="flagged")
        second = cohort_page(s, MODELS, page=1, page_size=2, worklist="flagged")
        by_review = cohort_page(s, MODELS, page_size=500, sort_by="review", descending=True)
        with pytest.raises(PathReviewError, match="unknown worklist"):
            cohort_page(s, MODELS, worklist="everything; DROP TABLE reviews")
    assert [r["patient_id"] for r in first.rows + second.rows] == ["P003", "P007", "P010"] and first.total == 3
    # Workflow order, descending: the reviewed (in review) cases before the unreviewed ones.
    assert [r["patient_id"] for r in by_review.rows[:3]] == ["P003", "P007", "P010"]
    assert {r["review"] for r in by_review.rows[3:]} == {"unreviewed"}


def test_column_filters_are_applied_by_the_database(store):
    with store.session() as s:
        every = cohort_page(s, MODELS, page_size=500).rows
        kinds = filterable_columns(MODELS)
        assert kinds["patient_id"] == "text" and kinds["slides"] == "number" and kinds["score:mil-lse"] == "number"

        def ids(*filters, sort_by="patient_id", descending=False):
            page = cohort_page(s, MODELS, page_size=500, sort_by=sort_by, descending=descending, filters=filters)
            assert page.total == len(page.rows) == worklist_counts(s, MODELS, filters=filters)["all"]
            return [r["patient_id"] for r in page.rows]

        assert ids(ColumnFilter("slides", "greaterThan", 3)) == [r["patient_id"] for r in every if r["slides"] > 3]
        assert ids(ColumnFilter("slides", "inRange", 4, 2)) == [r["patient_id"] for r in every if 2 <= r["slides"] <= 4]
        assert ids(ColumnFilter("patient_id", "startsWith", "p01")) == [r["patient_id"] for r in every if r["patient_id"].startswith("P01")]
        assert ids(ColumnFilter("patient_id", "contains", "%")) == []  # a plain character, not a wildcard
        high = [r for r in every if r["score:mil-lse"] is not None and r["score:mil-lse"] >= 0.7]
        assert ids(ColumnFilter("score:mil-lse", "greaterThanOrEqual", 0.7), ColumnFilter("review", "equals", "UNREVIEWED"),
                   sort_by="score:mil-lse", descending=True) == \
            [r["patient_id"] for r in sorted(high, key=lambda r: (-r["score:mil-lse"], r["patient_id"]))]
        assert ids(ColumnFilter("disagreements", "blank")) == [r["patient_id"] for r in every if r["disagreements"] is None]
        for bad in (ColumnFilter("attributes", "contains", "x"), ColumnFilter("slides", "contains", "3"),
                    ColumnFilter("slides", "greaterThan", "3"), ColumnFilter("slides", "inRange", 1),
                    ColumnFilter("patient_id", "contains", 3), ColumnFilter("slides", "lessThan", float("nan"))):
            with pytest.raises(PathReviewError):
                cohort_page(s, MODELS, filters=[bad])


def test_label_disagreements_name_the_pairs_the_count_counts(store):
    with store.session() as s:
        rows = {r["patient_id"]: r for r in cohort_page(s, MODELS, page_size=500).rows}
        found = label_disagreements(s, MODELS, list(rows))
        assert found and label_disagreements(s, MODELS, []) == {}
    for pid, row in rows.items():
        pairs = found.get(pid, [])
        assert len(pairs) == (row["disagreements"] or 0)
        assert all((d.score >= DECISION_THRESHOLD) != (d.label == 1) and d.model_id in MODELS for d in pairs)
        assert all((d.day is not None) == (d.subject_kind == "visit") for d in pairs)


def _cells(browser, column: str) -> list[str]:
    return grid_column(browser, "cohort-table", column)


def test_cohort_page_filters_to_the_disagreement_worklist(live_server, browser, demo_workspace):
    ws = open_workspace(demo_workspace)
    try:  # the page compares every model scored per patient, the heads over the CLAM feature files too
        expected = sorted(_disagreeing_patients(ws.store, scored_models(ws)))
    finally:
        ws.store.dispose()
    wait = WebDriverWait(browser, 30)
    browser.get(live_server.url + "/")
    wait.until(lambda b: len(_cells(b, "patient_id")) == 15)
    wait.until(lambda b: "(60)" in b.find_element(By.ID, "cohort-worklist").text)
    browser.find_element(By.CSS_SELECTOR, "#cohort-worklist input[value='disagrees']").click()
    wait.until(lambda b: _cells(b, "patient_id") == expected[:15])
    status = browser.find_element(By.ID, "cohort-status").text
    assert f"{len(expected)} of 60 patients" in status and f"page 1 of {-(-len(expected) // 15)}" in status
    assert all("disagree" in c for c in _cells(browser, "disagreements"))
    assert set(_cells(browser, "review")) <= {"unreviewed", "in review", "signed off"}
    browser.find_element(By.CSS_SELECTOR, "#cohort-worklist input[value='all']").click()
    wait.until(lambda b: "60 patients · page 1 of 4" in b.find_element(By.ID, "cohort-status").text)
    assert len(_cells(browser, "patient_id")) == 15


def test_a_patient_filter_worked_out_outside_the_database_limits_pages_and_counts(store):
    chosen = {"P002", "P005", "P007"}
    assert _ids(store, "all", patients=chosen) == sorted(chosen)
    with store.session() as s:
        counts = worklist_counts(s, MODELS, chosen)
        assert counts["all"] == 3 and counts["unreviewed"] == 3
        assert worklist_counts(s, MODELS, set())["all"] == 0


def test_the_worklist_page_narrows_by_grade_agreement_and_search_and_counts_what_it_shows(demo_workspace, tmp_path):
    with open_store(f"sqlite:///{demo_workspace / 'cases.db'}").session() as s:  # two patients' first slides
        slides = dict(s.execute(select(Slide.patient_id, Slide.id).order_by(Slide.patient_id.desc(), Slide.id)).all())
    graded = dict(list(slides.items())[:2])
    ws = open_workspace(copy_demo(demo_workspace, tmp_path / "ws", slides=tuple(graded.values()), keep_cache=False))
    try:
        for slide in graded.values():  # as a heatmap job does: the slide's class-map grade, for the worklist
            record_slide_grade(ws, slide_layers(ws, compute_heatmap(ws, slide, "patch-cnn")))
        grades = grade_comparisons(ws)
        compared = {pid: g.agreement for pid, g in grades.items() if g.agreement != "not compared"}
        assert set(compared) == set(graded)
        everyone = worklist_page(ws, MODELS, [], WorklistRequest(page_size=500))
        assert everyone.grade_counts == {a: sum(g.agreement == a for g in grades.values()) for a in GRADE_AGREEMENTS}
        for agreement in set(compared.values()):
            narrowed = worklist_page(ws, MODELS, [], WorklistRequest(grade=agreement, page_size=500))
            assert [r["patient_id"] for r in narrowed.rows] == sorted(p for p, a in compared.items() if a == agreement)
            assert narrowed.total == narrowed.counts["all"] < everyone.total
            assert narrowed.grade_counts == everyone.grade_counts  # the grade counts follow the search, not the grade choice
        first, agreement = sorted(compared.items())[0]
        query = WorklistRequest(grade=agreement, search=first.lower(), page_size=500)
        searched = worklist_page(ws, MODELS, [], query)
        assert [r["patient_id"] for r in searched.rows] == [first]
        assert sum(searched.grade_counts.values()) == sum(1 for pid in grades if first in pid)
        assert status_text(query, searched) == \
            f"1 patients, model and report grade groups: {agreement}, patient id containing {first.lower()!r} · page 1 of 1"
        paged = worklist_page(ws, MODELS, [], WorklistRequest(page=1, page_size=15))
        assert len(paged.rows) == 15 and paged.pages == -(-everyone.total // 15)
        assert {r["patient_id"] for r in paged.rows}.isdisjoint(r["patient_id"] for r in everyone.rows[:15])
    finally:
        ws.store.dispose()


def test_patient_search_and_the_next_case_of_a_worklist(store):
    with store.session() as s:
        everyone = list(s.scalars(select(Patient.id).order_by(Patient.id)))
        assert patients_matching(s, "p01") == {p for p in everyone if "P01" in p}
        assert patients_matching(s, "%") == set() and patients_matching(s, "_") == set()  # plain characters, not wildcards
        assert patients_matching(s, "") == set(everyone)
    _review(store, everyone[1], "slide")  # the second patient is in review
    with store.session() as s:
        assert next_on_worklist(s, MODELS, everyone[0], "unreviewed") == everyone[2]
        assert next_on_worklist(s, MODELS, everyone[-1], "unreviewed") == everyone[0]  # after the last, the first
        assert next_on_worklist(s, MODELS, everyone[0], "all") == everyone[1]
        assert next_on_worklist(s, MODELS, everyone[0], "flagged") is None
        with pytest.raises(PathReviewError, match="unknown worklist"):
            next_on_worklist(s, MODELS, everyone[0], "nope")


def test_cohort_search_stays_in_the_address_and_the_case_page_opens_the_next_unreviewed_case(live_server, browser, demo_workspace):
    ws = open_workspace(demo_workspace)
    try:
        with ws.store.session() as s:
            everyone = list(s.scalars(select(Patient.id).order_by(Patient.id)))
            reviewed = set(s.scalars(select(Review.patient_id)))  # what other tests saved through the shared server
        not_compared = {pid: g.agreement == "not compared" for pid, g in grade_comparisons(ws).items()}
    finally:
        ws.store.dispose()
    wait = WebDriverWait(browser, 30)
    browser.get(live_server.url + "/")
    wait.until(lambda b: len(_cells(b, "patient_id")) == 15)
    search = browser.find_element(By.ID, "cohort-search")
    search.send_keys("p02\n")  # the box answers on Enter or when it loses focus
    expected = [p for p in everyone if "P02" in p]
    wait.until(lambda b: _cells(b, "patient_id") == expected[:15])
    assert f"{len(expected)} patients" in browser.find_element(By.ID, "cohort-status").text and "containing 'p02'" in \
        browser.find_element(By.ID, "cohort-status").text
    # The grade filter's counts follow the search too.
    wait.until(lambda b: f"Not compared ({sum(1 for p in expected if not_compared.get(p))})" in b.find_element(By.ID, "cohort-grade").text)
    browser.find_element(By.CSS_SELECTOR, "#cohort-worklist input[value='unreviewed']").click()
    wait.until(lambda b: "worklist=unreviewed" in b.current_url and "q=p02" in b.current_url)
    wait.until(lambda b: _cells(b, "patient_id") == [p for p in expected if p not in reviewed][:15])
    # The address keeps the filters: a reload shows the same list.
    browser.get(browser.current_url)
    wait.until(lambda b: _cells(b, "patient_id") == [p for p in expected if p not in reviewed][:15])
    assert browser.find_element(By.ID, "cohort-search").get_attribute("value") == "p02"
    browser.get(live_server.url + "/?worklist=sideways")
    wait.until(lambda b: b.find_elements(By.ID, "cohort-link-problems"))
    assert "worklist 'sideways'" in browser.find_element(By.ID, "cohort-link-problems").text

    # Next unreviewed case, from a case: the next patient by id with no verdict saved.
    ws = open_workspace(demo_workspace)
    try:
        with ws.store.session() as s:
            reviewed = set(s.scalars(select(Review.patient_id)))
    finally:
        ws.store.dispose()
    start = everyone[0]
    following = next(p for p in everyone[1:] if p not in reviewed)
    browser.get(f"{live_server.url}/case/{start}")
    wait.until(lambda b: b.find_elements(By.ID, "next-unreviewed-case"))
    link = browser.find_element(By.ID, "next-unreviewed-case")
    assert link.get_attribute("href").endswith(f"/case/{following}") and following in link.text
    link.click()
    wait.until(lambda b: b.find_elements(By.ID, "case-title") and b.find_element(By.ID, "case-title").text == f"Case {following}")


def _wait_rows(wait, previous=None):
    wait.until(lambda b: len(_cells(b, "patient_id")) and _cells(b, "patient_id") != previous)
    return _cells(wait._driver, "patient_id")


def test_the_grid_sorts_filters_and_pages_on_the_server_and_keeps_it_in_the_address(live_server, browser, demo_workspace):
    ws = open_workspace(demo_workspace)
    try:  # the store's own order, for the same sort and filter
        models = scored_models(ws)
        with ws.store.session() as s:
            by_score = [r["patient_id"] for r in cohort_page(s, models, page_size=500, sort_by="score:mil-lse", descending=True).rows]
            filtered = [r["patient_id"] for r in cohort_page(s, models, page_size=500, sort_by="score:mil-lse", descending=True,
                                                             filters=[ColumnFilter("slides", "greaterThanOrEqual", 3)]).rows]
    finally:
        ws.store.dispose()
    assert 15 < len(filtered) < len(by_score)  # the filter leaves more than a page, and takes some out
    wait = WebDriverWait(browser, 30)
    browser.get(live_server.url + "/")
    first = _wait_rows(wait)
    grid_sort(browser, "cohort-table", "score:mil-lse")
    ascending = _wait_rows(wait, first)
    grid_sort(browser, "cohort-table", "score:mil-lse")
    wait.until(lambda b: _cells(b, "patient_id") == by_score[:15])
    wait.until(lambda b: "sort=-score%3Amil-lse" in b.current_url)
    assert ascending != by_score[:15]

    # A number filter, through the column's filter button: "greater than or equal" 3 slides.
    header = browser.find_element(By.CSS_SELECTOR, "#cohort-table .ag-header-cell[col-id='slides']")
    browser.execute_script("arguments[0].scrollIntoView({block: 'center'}); arguments[0].focus()", header)
    button = header.find_element(By.CSS_SELECTOR, ".ag-header-cell-filter-button")  # shown while the heading has the focus
    wait.until(lambda b: button.is_displayed())
    button.click()
    wait.until(lambda b: b.find_elements(By.CSS_SELECTOR, ".ag-filter"))
    # The operator list opens on a pointer press, not on a click event.
    wait.until(lambda b: b.find_element(By.CSS_SELECTOR, ".ag-filter .ag-filter-select .ag-picker-field-wrapper")).click()
    option = "//*[contains(@class, 'ag-select-list-item')][normalize-space() = 'Greater than or equal to']"
    WebDriverWait(browser, 30, ignored_exceptions=[StaleElementReferenceException]).until(
        lambda b: b.find_element(By.XPATH, option).click() or True)
    browser.find_element(By.CSS_SELECTOR, ".ag-filter .ag-filter-from input").send_keys("3")
    wait.until(lambda b: _cells(b, "patient_id") == filtered[:15])
    wait.until(lambda b: "f.slides=greaterThanOrEqual%3A3" in b.current_url)
    status = browser.find_element(By.ID, "cohort-status").text
    assert f"{len(filtered)} patients, 1 column filter" in status and f"page 1 of {-(-len(filtered) // 15)}" in status
    assert f"All cases ({len(filtered)})" in browser.find_element(By.ID, "cohort-worklist").text
    assert all(int(v) >= 3 for v in _cells(browser, "slides"))

    grid_page_button(browser, "cohort-table", "Next Page")
    wait.until(lambda b: _cells(b, "patient_id") == filtered[15:30])
    wait.until(lambda b: "page 2 of" in b.find_element(By.ID, "cohort-status").text)
    # Another worklist starts again from its first page, with the same sort and filter.
    url = browser.current_url
    js_click(browser, browser.find_element(By.CSS_SELECTOR, "#cohort-worklist input[value='unreviewed']"))
    wait.until(lambda b: "unreviewed" in b.find_element(By.ID, "cohort-status").text
               and "page 1 of" in b.find_element(By.ID, "cohort-status").text)
    wait.until(lambda b: "worklist=unreviewed" in b.current_url and "f.slides=greaterThanOrEqual%3A3" in b.current_url)
    js_click(browser, browser.find_element(By.CSS_SELECTOR, "#cohort-worklist input[value='all']"))
    wait.until(lambda b: _cells(b, "patient_id") == filtered[:15])
    browser.get(url)

    # The link gives the same list; a value it cannot use is named on the page, and the rest still applies.
    browser.get(url + "&f.nothing=equals%3A1&f.visits=greaterThan%3Amany")
    wait.until(lambda b: _cells(b, "patient_id") == filtered[:15])
    problems = browser.find_element(By.ID, "cohort-link-problems").text
    assert "filter 'nothing' is not a column that filters" in problems and "'visits' needs a number" in problems


def test_the_disagreement_cell_names_the_disagreeing_predictions(live_server, browser, demo_workspace):
    ws = open_workspace(demo_workspace)
    try:
        models = scored_models(ws)
        with ws.store.session() as s:
            rows = cohort_page(s, models, page_size=15).rows
            pairs = label_disagreements(s, models, [r["patient_id"] for r in rows])
    finally:
        ws.store.dispose()
    pid = next(r["patient_id"] for r in rows if r["disagreements"])
    wait = WebDriverWait(browser, 30)
    browser.get(live_server.url + "/")
    wait.until(lambda b: pid in _cells(b, "patient_id"))
    row = _cells(browser, "patient_id").index(pid)
    cell = browser.find_element(By.CSS_SELECTOR, f"#cohort-table .ag-row[row-index='{row}'] .ag-cell[col-id='disagreements']")
    assert "cohort-cell-bad" in cell.get_attribute("class")  # shown in red
    ActionChains(browser).move_to_element(cell).perform()
    tooltip = wait.until(lambda b: b.find_element(By.CSS_SELECTOR, ".ag-tooltip")).text
    lines = tooltip.splitlines()
    assert len(lines) == len(pairs[pid]) == rows[[r["patient_id"] for r in rows].index(pid)]["disagreements"]
    for line, d in zip(lines, pairs[pid], strict=True):
        subject = f"visit day {d.day:.0f}" if d.day is not None else d.subject_id
        assert line.startswith(f"{subject} {d.model_id}: ") and f"{d.score:.2f} vs label " in line
    # The column's heading explains it.
    ActionChains(browser).move_to_element(browser.find_element(By.CSS_SELECTOR, "#cohort-table .ag-header-cell[col-id='disagreements']")).perform()
    wait.until(lambda b: "other side of 0.5 from the recorded label" in b.find_element(By.CSS_SELECTOR, ".ag-tooltip").text)
