"""Cohort queries: one row per patient with counts, patient-level model outputs, review status and
model-vs-label disagreements and slide quality control; filtered into worklists, paged and sorted in SQL.

Review status (from the latest verdict of each modality):
  ``unreviewed``  no verdict saved for the case;
  ``signed off``  every latest verdict is signed off, and every modality the case has data for
                  (slide: slides, patient: visits, report: reports) has one;
  ``in review``   anything in between.
A case is *flagged* when any latest verdict carries a flag.

Model vs label: a stored prediction of one of the listed models for one of the case's slides, reports or
visits *disagrees* with that subject's recorded label when it falls on the other side of 0.5 (score >= 0.5
while the label is 0, or score < 0.5 while the label is 1). Subjects without a label, and patient-level
predictions (which summarise several subjects), are not compared. ``disagreements`` counts the disagreeing
(model, subject) pairs, ``labelled`` the compared ones; both are NULL when nothing could be compared.

Quality control: ``qc`` is the worst QC flag over the case's slides (the flag covering the largest share of a slide's
tissue, over every heatmap whose QC was computed), ``qc_fraction`` that share; "" when no flag covers any tissue,
NULL when QC has not run on any of its slides. A case is on the *QC flagged* worklist when its worst flag covers at
least ``QC_WORKLIST_MIN_FRACTION`` of a slide's tissue.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any, TypeGuard

from sqlalchemy import ColumnElement, Float, FromClause, Select, String, and_, case, cast, exists, func, null, or_, select, true, union_all
from sqlalchemy.orm import QueryableAttribute, Session

from core.errors import PathReviewError
from core.store.schema import Patient, Prediction, Report, Review, Slide, SlideQuality, Visit

DECISION_THRESHOLD = 0.5
QC_WORKLIST_MIN_FRACTION = 0.01
REVIEW_STATUSES = ("unreviewed", "in review", "signed off")
WORKLISTS = {
    "all": "All cases",
    "unreviewed": "Unreviewed",
    "flagged": "Flagged",
    "disagrees": "Model disagrees with label",
    "qc": "QC flagged",
}


# A column of the cohort table: a mapped attribute (Patient.id) or a SQL expression (a count, a CASE).
CohortColumn = ColumnElement[Any] | QueryableAttribute[Any]
# The tables whose rows belong to one patient and carry a label.
PatientSubject = type[Slide] | type[Visit] | type[Report]


@dataclass(frozen=True)
class CohortPage:
    rows: list[dict]
    total: int  # patients on the chosen worklist


def _count(model: PatientSubject, patient_col: QueryableAttribute[str]) -> ColumnElement[int]:
    return select(func.count()).where(model.patient_id == patient_col).correlate(Patient).scalar_subquery()


def _patient_score(model_id: str) -> ColumnElement:
    return (
        select(Prediction.score)
        .where(
            Prediction.model_id == model_id,
            Prediction.subject_kind == "patient",
            Prediction.patient_id == Patient.id,
        )
        .correlate(Patient)
        .limit(1)
        .scalar_subquery()
    )


def _worst_quality(column: QueryableAttribute[Any]) -> ColumnElement:
    """``column`` of the case's slide-quality row with the worst flag (largest share of tissue), NULL when none."""
    return (select(column).where(SlideQuality.patient_id == Patient.id).correlate(Patient)
            .order_by(SlideQuality.worst_fraction.desc(), SlideQuality.worst_flag.desc()).limit(1).scalar_subquery())


def _review_stats() -> FromClause:
    """Per reviewed patient: how many latest verdicts, how many signed off (overall and per modality), any flag."""
    newest = (select(Review.patient_id, Review.modality, func.max(Review.version).label("version"))
              .group_by(Review.patient_id, Review.modality).subquery("newest_review"))
    latest = (select(Review.patient_id, Review.modality, Review.signed_off, Review.flags)
              .join(newest, and_(Review.patient_id == newest.c.patient_id, Review.modality == newest.c.modality,
                                 Review.version == newest.c.version))
              .subquery("latest_review"))

    def signed(condition: ColumnElement[bool]) -> ColumnElement[int]:
        return func.sum(case((and_(latest.c.signed_off.is_(true()), condition), 1), else_=0))

    # Flags are a JSON list; compared as text so that no JSON function can fail on an odd stored value.
    has_flags = cast(latest.c.flags, String).not_in(["[]", "null"])
    return (
        select(
            latest.c.patient_id,
            func.count().label("entries"),
            signed(true()).label("signed"),
            signed(latest.c.modality == "slide").label("slide_signed"),
            signed(latest.c.modality == "patient").label("patient_signed"),
            signed(latest.c.modality == "report").label("report_signed"),
            func.max(case((has_flags, 1), else_=0)).label("flagged"),
        )
        .group_by(latest.c.patient_id)
        .subquery("review_stats")
    )


def _labelled_predictions(model_ids: list[str]) -> FromClause:
    """Every (model, labelled subject) pair compared: the patient, subject kind and id, model, score, label, and a visit's
    day (NULL for slides and reports)."""

    def pairs(subject: PatientSubject, kind: str, subject_key: CohortColumn,
              day: ColumnElement[Any]) -> Select[str, str, str, str, float, int | None, float | None]:
        return (
            select(subject.patient_id.label("patient_id"), Prediction.subject_kind.label("subject_kind"),
                   Prediction.subject_id.label("subject_id"), Prediction.model_id.label("model_id"),
                   Prediction.score.label("score"), subject.label.label("label"), day.label("day"))
            .join(Prediction, and_(Prediction.subject_kind == kind, Prediction.subject_id == subject_key,
                                   Prediction.patient_id == subject.patient_id))
            .where(subject.label.is_not(None), Prediction.model_id.in_(model_ids))
        )

    return union_all(
        pairs(Slide, "slide", Slide.id, cast(null(), Float)),
        pairs(Report, "report", Report.id, cast(null(), Float)),
        pairs(Visit, "visit", cast(Visit.id, String), cast(Visit.day, Float)),
    ).subquery("labelled_prediction")


def _disagrees(compared: FromClause) -> ColumnElement[bool]:
    return or_(and_(compared.c.score >= DECISION_THRESHOLD, compared.c.label != 1),
               and_(compared.c.score < DECISION_THRESHOLD, compared.c.label == 1))


def _label_agreement(model_ids: list[str]) -> FromClause:
    """Per patient: labelled (model, subject) pairs compared, and how many the model gets on the wrong side of 0.5."""
    compared = _labelled_predictions(model_ids)
    disagrees = case((_disagrees(compared), 1), else_=0)
    return (
        select(compared.c.patient_id, func.count().label("labelled"), func.sum(disagrees).label("disagreements"))
        .group_by(compared.c.patient_id)
        .subquery("label_agreement")
    )


@dataclass(frozen=True)
class Disagreement:
    """A model's stored prediction for a labelled subject, on the other side of ``DECISION_THRESHOLD`` from the label."""

    patient_id: str
    subject_kind: str  # slide, report or visit
    subject_id: str
    model_id: str
    score: float
    label: int
    day: float | None = None  # a visit's day since the patient's first visit


def label_disagreements(session: Session, model_ids: list[str], patient_ids: Collection[str]) -> dict[str, list[Disagreement]]:
    """Patient -> the (subject, model) pairs behind its ``disagreements`` count, by subject then model; only the given
    patients (one page of the table), so the query stays small."""
    compared = _labelled_predictions(model_ids)
    query = (select(compared).where(_disagrees(compared), compared.c.patient_id.in_(sorted(patient_ids)))
             .order_by(compared.c.patient_id, compared.c.subject_kind, compared.c.subject_id, compared.c.model_id))
    found: dict[str, list[Disagreement]] = {}
    for r in session.execute(query):
        found.setdefault(r.patient_id, []).append(Disagreement(r.patient_id, r.subject_kind, str(r.subject_id), r.model_id,
                                                               float(r.score), int(r.label),
                                                               None if r.day is None else float(r.day)))
    return found


@dataclass(frozen=True)
class _CohortSql:
    source: FromClause  # patients outer-joined to their review and label statistics
    columns: dict[str, CohortColumn]
    sort_keys: dict[str, CohortColumn]  # where sorting by a column differs from sorting its values
    worklists: dict[str, ColumnElement]  # worklist -> WHERE condition
    filters: dict[str, tuple[str, CohortColumn]]  # column -> ("text" or "number", the value a filter compares)


ATTRIBUTE_COLUMN = "attr:"  # cohort column of a patient attribute: "attr:<name>"
# How a column filter compares (the names AG Grid's text and number filters use); "blank" and "notBlank" take no value,
# "inRange" two (both ends included).
TEXT_FILTERS = ("contains", "notContains", "equals", "notEqual", "startsWith", "endsWith", "blank", "notBlank")
NUMBER_FILTERS = ("equals", "notEqual", "greaterThan", "greaterThanOrEqual", "lessThan", "lessThanOrEqual", "inRange", "blank",
                  "notBlank")
FILTER_KINDS = {"text": TEXT_FILTERS, "number": NUMBER_FILTERS}


@dataclass(frozen=True)
class ColumnFilter:
    """One condition on one cohort column: text filters compare without regard to case, ``%`` and ``_`` plain."""

    column: str
    op: str
    value: str | float | None = None
    value_to: float | None = None  # the upper end of "inRange"


def _attribute_sort_key(name: str, dialect: str) -> ColumnElement[Any]:
    """A patient attribute's value as SQL orders it: numbers by value, text alphabetically, missing as NULL.
    JSONB values compare that way on PostgreSQL; SQLite's json_extract gives the native number or text."""
    if dialect == "postgresql":
        return Patient.attributes[name]
    return func.json_extract(Patient.attributes, f'$."{name}"')


def _cohort_sql(model_ids: list[str], attributes: Sequence[str] = (), dialect: str = "sqlite") -> _CohortSql:
    reviews, labels = _review_stats(), _label_agreement(model_ids)
    source = Patient.__table__.outerjoin(reviews, reviews.c.patient_id == Patient.id).outerjoin(
        labels, labels.c.patient_id == Patient.id)

    def lacks_or_signed(model: PatientSubject, signed_count: ColumnElement[Any]) -> ColumnElement[bool]:
        return or_(~exists().where(model.patient_id == Patient.id), signed_count > 0)

    unreviewed = reviews.c.entries.is_(None)
    signed_off = and_(reviews.c.signed == reviews.c.entries, lacks_or_signed(Slide, reviews.c.slide_signed),
                      lacks_or_signed(Visit, reviews.c.patient_signed), lacks_or_signed(Report, reviews.c.report_signed))
    flagged = func.coalesce(reviews.c.flagged, 0) == 1
    disagrees = func.coalesce(labels.c.disagreements, 0) > 0

    columns: dict[str, CohortColumn] = {"patient_id": Patient.id, "attributes": Patient.attributes}
    sort_keys: dict[str, CohortColumn] = {f"{ATTRIBUTE_COLUMN}{name}": _attribute_sort_key(name, dialect) for name in attributes}
    columns |= {
        "slides": _count(Slide, Patient.id),
        "visits": _count(Visit, Patient.id),
        "reports": _count(Report, Patient.id),
    }
    for model_id in model_ids:
        columns[f"score:{model_id}"] = _patient_score(model_id)
    columns |= {
        "review": case((unreviewed, REVIEW_STATUSES[0]), (signed_off, REVIEW_STATUSES[2]), else_=REVIEW_STATUSES[1]),
        "flagged": flagged,
        "disagreements": labels.c.disagreements,
        "labelled": labels.c.labelled,
        "qc": _worst_quality(SlideQuality.worst_flag),
        "qc_fraction": _worst_quality(SlideQuality.worst_fraction),
    }
    qc_flagged = exists().where(SlideQuality.patient_id == Patient.id, SlideQuality.worst_fraction >= QC_WORKLIST_MIN_FRACTION)
    filters: dict[str, tuple[str, CohortColumn]] = {"patient_id": ("text", Patient.id)}
    # An attribute is compared as its text (a number as its digits): attributes have no declared type.
    filters |= {f"{ATTRIBUTE_COLUMN}{name}": ("text", Patient.attributes[name].as_string()) for name in attributes}
    filters |= {c: ("number", columns[c]) for c in ("slides", "visits", "reports", *(f"score:{m}" for m in model_ids))}
    filters |= {"review": ("text", columns["review"]), "disagreements": ("number", labels.c.disagreements)}
    return _CohortSql(
        source=source,
        columns=columns,
        # Workflow order (unreviewed, in review, signed off) rather than alphabetical.
        sort_keys=sort_keys | {"review": case((unreviewed, 0), (signed_off, 2), else_=1), "qc": columns["qc_fraction"]},
        worklists={"all": true(), "unreviewed": unreviewed, "flagged": flagged, "disagrees": disagrees, "qc": qc_flagged},
        filters=filters,
    )


def _worklist(sql: _CohortSql, worklist: str) -> ColumnElement:
    if worklist not in sql.worklists:
        raise PathReviewError(f"unknown worklist {worklist!r}; choose one of {', '.join(sql.worklists)}")
    return sql.worklists[worklist]


def sortable_columns(model_ids: list[str], attributes: Sequence[str] = ()) -> list[str]:
    """The cohort columns ``cohort_page`` can sort by."""
    sql = _cohort_sql(model_ids, attributes)
    return [c for c in sql.columns if c not in ("attributes", "labelled", "qc_fraction")] + \
        [k for k in sql.sort_keys if k.startswith(ATTRIBUTE_COLUMN)]


def filterable_columns(model_ids: list[str], attributes: Sequence[str] = ()) -> dict[str, str]:
    """Cohort column -> the kind of filter it takes ("text" or "number", see ``FILTER_KINDS``)."""
    return {column: kind for column, (kind, _) in _cohort_sql(model_ids, attributes).filters.items()}


def _escaped(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def finite_number(value: object) -> TypeGuard[float]:
    """A real number: not a bool, not NaN or infinite."""
    return not isinstance(value, bool) and isinstance(value, int | float) and math.isfinite(value)


def _filter_condition(sql: _CohortSql, f: ColumnFilter) -> ColumnElement[bool]:
    if f.column not in sql.filters:
        raise PathReviewError(f"cannot filter by {f.column!r}; choose one of {', '.join(sql.filters)}")
    kind, expr = sql.filters[f.column]
    if f.op not in FILTER_KINDS[kind]:
        raise PathReviewError(f"a {kind} filter is one of {', '.join(FILTER_KINDS[kind])}, not {f.op!r}")
    if f.op == "blank":
        return expr.is_(None) if kind == "number" else or_(expr.is_(None), expr == "")
    if f.op == "notBlank":
        return expr.is_not(None) if kind == "number" else and_(expr.is_not(None), expr != "")
    if kind == "text":
        if not isinstance(f.value, str):
            raise PathReviewError(f"the {f.op} filter on {f.column!r} needs a text")
        text = _escaped(f.value.strip().lower())
        low = func.lower(expr)
        return {
            "contains": low.like(f"%{text}%", escape="\\"), "notContains": or_(expr.is_(None), ~low.like(f"%{text}%", escape="\\")),
            "equals": low.like(text, escape="\\"), "notEqual": or_(expr.is_(None), ~low.like(text, escape="\\")),
            "startsWith": low.like(f"{text}%", escape="\\"), "endsWith": low.like(f"%{text}", escape="\\"),
        }[f.op]
    if not finite_number(f.value):
        raise PathReviewError(f"the {f.op} filter on {f.column!r} needs a number")
    if f.op == "inRange":
        if not finite_number(f.value_to):
            raise PathReviewError(f"the range filter on {f.column!r} needs two numbers")
        return expr.between(min(f.value, f.value_to), max(f.value, f.value_to))
    return {
        "equals": expr == f.value, "notEqual": or_(expr.is_(None), expr != f.value), "greaterThan": expr > f.value,
        "greaterThanOrEqual": expr >= f.value, "lessThan": expr < f.value, "lessThanOrEqual": expr <= f.value,
    }[f.op]


def cohort_page(
    session: Session,
    model_ids: list[str],
    page: int = 0,
    page_size: int = 20,
    sort_by: str = "patient_id",
    descending: bool = False,
    worklist: str = "all",
    total: int | None = None,
    patients: Collection[str] | None = None,
    attributes: Sequence[str] = (),
    filters: Sequence[ColumnFilter] = (),
) -> CohortPage:
    """One page of the cohort table on a worklist (see ``WORKLISTS``); filtering, sorting and paging happen in the database.
    ``total``: the worklist's size when the caller has it already (``worklist_counts``), so it is not counted again.
    ``patients``: only these patients (a filter worked out outside the database, e.g. model vs report grade group).
    ``attributes``: patient attributes shown as columns ``attr:<name>`` (None where a patient has no value).
    ``filters``: column filters, all of which a row meets (see ``filterable_columns``); ``total`` must count them too."""
    sql = _cohort_sql(model_ids, attributes, session.get_bind().dialect.name)
    sortable = [c for c in sql.columns if c != "attributes"] + [k for k in sql.sort_keys if k.startswith(ATTRIBUTE_COLUMN)]
    if sort_by not in sortable:
        raise PathReviewError(f"cannot sort by {sort_by!r}; choose one of {', '.join(sortable)}")
    if page < 0 or not 1 <= page_size <= 500:
        raise PathReviewError("page must be >= 0 and page size between 1 and 500")
    condition = and_(_worklist(sql, worklist), _among(patients), *(_filter_condition(sql, f) for f in filters))
    key = sql.sort_keys[sort_by] if sort_by in sql.sort_keys else sql.columns[sort_by]
    order = key.desc() if descending else key.asc()
    labelled = [expr.label(name) for name, expr in sql.columns.items()]
    query = (select(*labelled).select_from(sql.source).where(condition)
             .order_by(order.nulls_last(), Patient.id).offset(page * page_size).limit(page_size))
    rows = [dict(r._mapping) for r in session.execute(query)]
    for row in rows:
        row["flagged"] = bool(row["flagged"])
        values = row.pop("attributes") or {}
        row |= {f"{ATTRIBUTE_COLUMN}{name}": values.get(name) for name in attributes}
    if total is None:
        total = session.scalar(select(func.count()).select_from(sql.source).where(condition)) or 0
    return CohortPage(rows=rows, total=total)


def _among(patients: Collection[str] | None) -> ColumnElement[bool]:
    return true() if patients is None else Patient.id.in_(sorted(patients))


def worklist_counts(session: Session, model_ids: list[str], patients: Collection[str] | None = None,
                    filters: Sequence[ColumnFilter] = (), attributes: Sequence[str] = ()) -> dict[str, int]:
    """Worklist -> number of patients on it (of ``patients``, when given, meeting ``filters``), in one query."""
    sql = _cohort_sql(model_ids, attributes)
    sums = [func.coalesce(func.sum(case((cond, 1), else_=0)), 0).label(name) for name, cond in sql.worklists.items()]
    condition = and_(_among(patients), *(_filter_condition(sql, f) for f in filters))
    row = session.execute(select(*sums).select_from(sql.source).where(condition)).one()
    return {name: int(row._mapping[name]) for name in sql.worklists}


def patients_matching(session: Session, text: str) -> set[str]:
    """The patients whose id contains ``text`` (case does not matter; ``%`` and ``_`` are plain characters)."""
    return set(session.scalars(select(Patient.id).where(Patient.id.ilike(f"%{_escaped(text.strip())}%", escape="\\"))))


def next_on_worklist(session: Session, model_ids: list[str], patient_id: str, worklist: str = "unreviewed") -> str | None:
    """The worklist's next patient after ``patient_id`` in the worklist's default order (by id), the first after the
    last; None when no other patient is on it."""
    sql = _cohort_sql(model_ids)
    ids = list(session.scalars(select(Patient.id).select_from(sql.source).where(_worklist(sql, worklist)).order_by(Patient.id)))
    following = next((i for i in ids if i > patient_id), ids[0] if ids else None)
    return following if following != patient_id else None
