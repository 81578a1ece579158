"""Case store: round trips of every table, migrations and cohort paging, on a real SQLite file and on PostgreSQL."""

from __future__ import annotations

import pytest
from sqlalchemy import inspect, select, text
from sqlalchemy.exc import IntegrityError

from core.errors import PathReviewError, WorkspaceError
from core.store.cases import case_summary
from core.store.cohort import ColumnFilter, cohort_page
from core.store.database import SCHEMA_VERSION, open_store
from core.store.schema import AuditEvent, Base, InvalidAttribute, ModelRecord, Patient, Prediction, Report, Review, SchemaVersion, Slide, Visit


@pytest.fixture
def store(empty_store):
    return empty_store


def _fill(store, n=5):
    with store.session() as s:
        s.add(ModelRecord(id="m1", task="sequence", architecture="visit_sequence_net", weights_sha256="a" * 64, metrics={"auc": 0.9}))
        for i in range(n):
            pid = f"P{i:02d}"
            s.add(Patient(id=pid, attributes={"age": 40.0 + i, "sex": "F" if i % 2 else "M", "onset_type": "spinal"}))
            s.add(Slide(id=f"{pid}-S1", patient_id=pid, file=f"{pid}.tiff", mpp=0.5, width=8192, height=4096,
                        mask_file=f"{pid}.mask.png", mask_mpp=16.0, label=i % 2))
            s.add_all(Visit(patient_id=pid, day=float(d), features={"fvc_percent": 90.0 - d, "onset_type": "spinal"}, label=int(d > 100))
                      for d in (0, 60, 130))
            s.add(Report(id=f"{pid}-R1", patient_id=pid, text=f"Gleason score 4+{i}", label=1))
            s.add(Prediction(model_id="m1", weights_sha256="a" * 64, subject_kind="patient", subject_id=pid, patient_id=pid, score=i / 10))


def test_every_table_round_trips(store):
    _fill(store)
    with store.session() as s:
        s.add(Review(patient_id="P01", modality="slide", verdict="agree", comment="clear GG4 focus", flags=["teaching"], user="dr_a"))
        s.add(AuditEvent(user="dr_a", action="case_open", target="P01", detail={"page": "case"}))
    store.dispose()
    reopened = open_store(store.url)
    with reopened.session() as s:
        p = s.get(Patient, "P01")
        assert p.attributes == {"age": 41.0, "sex": "F", "onset_type": "spinal"}
        assert [v.day for v in p.visits] == [0.0, 60.0, 130.0]
        assert p.visits[1].features == {"fvc_percent": 30.0, "onset_type": "spinal"}
        assert [v.label for v in p.visits] == [0, 0, 1]
        assert p.slides[0].mask_mpp == 16.0 and p.slides[0].width == 8192
        assert p.reports[0].text == "Gleason score 4+1"
        review = s.scalars(select(Review)).one()
        assert (review.verdict, review.flags, review.user, review.version) == ("agree", ["teaching"], "dr_a", 1)
        assert review.created_at is not None
        event = s.scalars(select(AuditEvent)).one()
        assert (event.action, event.target, event.detail) == ("case_open", "P01", {"page": "case"})
        assert s.get(ModelRecord, "m1").metrics == {"auc": 0.9}
    reopened.dispose()


def test_failed_transaction_writes_nothing(store):
    _fill(store, 1)
    with pytest.raises(IntegrityError), store.session() as s:
        s.add(Patient(id="P99"))
        s.add(Patient(id="P00"))  # duplicate primary key: the whole transaction rolls back
        s.flush()
    with store.session() as s:
        assert s.get(Patient, "P99") is None


def test_migrations_are_versioned_and_idempotent(store):
    assert store.schema_version() == SCHEMA_VERSION
    assert store.migrate() == SCHEMA_VERSION
    with store.session() as s:
        assert len(s.scalars(select(SchemaVersion)).all()) == SCHEMA_VERSION
        s.add(SchemaVersion(version=SCHEMA_VERSION + 1))
    with pytest.raises(WorkspaceError, match="newer than this program"):
        open_store(store.url)


def _v7_store(url: str) -> None:
    """A store as schema v7 left it: patients with ``age``, ``sex`` and ``onset_type`` columns, a few rows."""
    old = open_store(url, migrate=False)
    Base.metadata.create_all(old.engine)
    with old.engine.begin() as conn:
        conn.execute(text("ALTER TABLE patients DROP COLUMN attributes"))
        conn.execute(text("ALTER TABLE patients ADD COLUMN age FLOAT"))
        conn.execute(text("ALTER TABLE patients ADD COLUMN sex VARCHAR(16)"))
        conn.execute(text("ALTER TABLE patients ADD COLUMN onset_type VARCHAR(32)"))
        conn.execute(text("INSERT INTO patients (id, age, sex, onset_type) VALUES ('P1', 61.5, 'M', 'bulbar'), "
                          "('P2', NULL, 'F', NULL), ('P3', NULL, NULL, NULL)"))
        conn.execute(text("INSERT INTO slides (id, patient_id, file, mpp, width, height) VALUES ('P1-S1', 'P1', 's.tif', 0.5, 10, 10)"))
        conn.execute(text("INSERT INTO schema_version (version, applied_at) VALUES " +
                          ", ".join(f"({v}, CURRENT_TIMESTAMP)" for v in range(1, 8))))
    old.dispose()


def test_migration_carries_patient_columns_into_attributes(store_url):
    _v7_store(store_url)
    store = open_store(store_url)
    try:
        assert store.schema_version() == SCHEMA_VERSION >= 8
        assert {c["name"] for c in inspect(store.engine).get_columns("patients")} == {"id", "attributes"}
        with store.session() as s:
            assert s.get(Patient, "P1").attributes == {"age": 61.5, "sex": "M", "onset_type": "bulbar"}
            assert s.get(Patient, "P2").attributes == {"sex": "F"}  # unknown values are left out, not stored as null
            assert s.get(Patient, "P3").attributes == {}
            assert s.get(Patient, "P1").slides[0].id == "P1-S1"
            s.add_all([Patient(id="P4", attributes={"age": 100, "psa": 4.2}), Patient(id="P5", attributes={"age": 9})])
        with store.session() as s:  # numbers sort as numbers on both databases (not "100" < "61.5" < "9"); unknowns last
            page = cohort_page(s, [], sort_by="attr:age", attributes=["age", "sex"])
            assert [(r["patient_id"], r["attr:age"], r["attr:sex"]) for r in page.rows] == [
                ("P5", 9, None), ("P1", 61.5, "M"), ("P4", 100, None), ("P2", None, "F"), ("P3", None, None)]

            # A column filter compares an attribute as its text, on both databases.
            def matching(*filters):
                return [r["patient_id"] for r in cohort_page(s, [], attributes=["age", "sex"], filters=filters).rows]

            assert matching(ColumnFilter("attr:sex", "equals", "m")) == ["P1"]
            assert matching(ColumnFilter("attr:age", "startsWith", "6")) == ["P1"]
            assert matching(ColumnFilter("attr:age", "blank")) == ["P2", "P3"]
            assert matching(ColumnFilter("attr:sex", "notBlank"), ColumnFilter("attr:age", "notContains", "1")) == ["P2"]
    finally:
        store.dispose()
    reopened = open_store(store_url)  # migrating again finds nothing to do
    with reopened.session() as s:
        assert s.get(Patient, "P4").attributes == {"age": 100, "psa": 4.2}
    reopened.dispose()


@pytest.mark.parametrize("attributes", [{"psa": float("nan")}, {"psa": float("inf")}, {"age": -float("inf")},
                                        {"sex": ["M"]}, {"": 1}, {"x" * 65: 1}, ["age"]])
def test_patient_attributes_refuse_what_cannot_be_stored(store, attributes):
    with pytest.raises(InvalidAttribute), store.session() as s:
        s.add(Patient(id="P1", attributes=attributes))
    with store.session() as s:
        assert s.get(Patient, "P1") is None


def test_cohort_page_sorts_and_pages_in_sql(store):
    _fill(store, 7)
    first = cohort_page_rows(store, page=0, page_size=3)
    assert [r["patient_id"] for r in first.rows] == ["P00", "P01", "P02"] and first.total == 7
    last = cohort_page_rows(store, page=2, page_size=3)
    assert [r["patient_id"] for r in last.rows] == ["P06"]
    by_score = cohort_page_rows(store, page=0, page_size=2, sort_by="score:m1", descending=True)
    assert [r["score:m1"] for r in by_score.rows] == [0.6, 0.5]
    assert by_score.rows[0]["visits"] == 3 and by_score.rows[0]["slides"] == 1
    with pytest.raises(PathReviewError, match="cannot sort"):
        cohort_page_rows(store, sort_by="age; DROP TABLE patients")


def cohort_page_rows(store, **kwargs):
    with store.session() as s:
        return cohort_page(s, ["m1"], **kwargs)


def test_case_summary_collects_predictions_and_rejects_unknown_ids(store):
    _fill(store, 2)
    with store.session() as s:
        case = case_summary(s, "P01")
        assert case.score("m1", "patient", "P01") == pytest.approx(0.1)
        assert len(case.visits) == 3 and case.slides[0].id == "P01-S1"
        with pytest.raises(PathReviewError, match="no patient"):
            case_summary(s, "../etc/passwd")
