"""Reviewer verdicts: append-only versions, the version check, a real two-process race, and schema v2 upgrading a v1 store.

Every test runs on each URL of ``store_url``: a fresh SQLite file, and a fresh database on the PostgreSQL server the
test session starts (tests/services.py)."""

from __future__ import annotations

import multiprocessing
from datetime import UTC, datetime

import pytest
from sqlalchemy import event, inspect, select

from core.errors import NotFoundError, PathReviewError
from core.store.database import SCHEMA_VERSION, open_store
from core.store.reviews import (
    MAX_COMMENT_CHARS,
    ReviewConflict,
    ReviewEntry,
    consensus,
    current_reviews,
    latest_by_reviewer,
    record_review,
    review_history,
    review_versions,
)
from core.store.schema import AuditEvent, Patient, Report, Review, Slide


@pytest.fixture
def store(empty_store):
    with empty_store.session() as session:
        session.add_all([Patient(id="P001", attributes={"age": 60.0}), Patient(id="P002", attributes={"age": 70.0})])
    return empty_store


def _save(store, verdict="agree", expected=0, modality="patient", user="alice", **kwargs):
    fields = {"comment": "", "flags": [], "signed_off": False} | kwargs
    return record_review(store, "P001", modality, verdict, fields["comment"], fields["flags"], fields["signed_off"], user, expected)


def _rows(store) -> list[tuple]:
    with store.session() as s:
        return [(r.patient_id, r.modality, r.version, r.verdict, r.user)
                for r in s.scalars(select(Review).order_by(Review.id))]


def test_record_current_and_history(store):
    first = _save(store, "agree", 0, comment="clear GG4 focus", flags=["teaching case", " poor stain ", "teaching case"])
    assert (first.version, first.verdict, first.user, first.flags) == (1, "agree", "alice", ("teaching case", "poor stain"))
    assert first.at.tzinfo is not None
    second = _save(store, "disagree", 1, user="bob", signed_off=True)
    slide = _save(store, "uncertain", 0, modality="slide", flags=["artefact"])
    current = current_reviews(store, "P001")
    assert list(current) == ["slide", "patient"]
    assert current["patient"] == second and current["slide"] == slide
    assert current["patient"].signed_off and current["patient"].user == "bob"
    history = review_history(store, "P001")
    assert [(e.modality, e.version) for e in history] == [("slide", 1), ("patient", 2), ("patient", 1)]
    assert history[-1].comment == "clear GG4 focus"  # history is never overwritten
    assert review_versions(store, "P001") == {"slide": 1, "patient": 2, "report": 0}
    assert review_versions(store, "P002") == {"slide": 0, "patient": 0, "report": 0}
    assert current_reviews(store, "P002") == {} and review_history(store, "P002") == []
    with store.session() as s:
        events = s.scalars(select(AuditEvent).order_by(AuditEvent.id)).all()
    assert [(e.user, e.action, e.target, e.detail["version"]) for e in events] == [
        ("alice", "review_saved", "P001", 1), ("bob", "review_saved", "P001", 2), ("alice", "review_saved", "P001", 1)]


def test_stale_version_is_refused_and_writes_nothing(store):
    _save(store, "agree", 0, user="alice", comment="first")
    with pytest.raises(ReviewConflict, match=r"another reviewer \(alice, .* UTC\) saved the patient") as caught:
        _save(store, "disagree", 0, user="bob", comment="second")
    assert "your entry was not saved" in str(caught.value) and "reload" in str(caught.value)
    assert caught.value.current.version == 1 and caught.value.current.comment == "first"
    assert _rows(store) == [("P001", "patient", 1, "agree", "alice")]
    # Saving against the version just shown works; a version from the future is refused too.
    assert _save(store, "disagree", 1, user="bob").version == 2
    with pytest.raises(ReviewConflict):
        _save(store, "agree", 5)
    with pytest.raises(ReviewConflict, match="in another window"):
        _save(store, "agree", 1, user="bob")
    assert [r[2] for r in _rows(store)] == [1, 2]
    with store.session() as s:
        assert len(s.scalars(select(AuditEvent)).all()) == 2


def test_a_concurrent_save_between_read_and_insert_is_refused_by_the_unique_index(store, store_url):
    """Another process commits the same version after this save read the latest version but before it inserts:
    the version check passed, so only the unique (patient, modality, version) index can refuse it."""
    other = open_store(store_url)
    fired = []

    def competing_save(conn, cursor, statement, *args):
        if statement.lstrip().upper().startswith("INSERT INTO REVIEWS") and not fired:
            fired.append(True)
            record_review(other, "P001", "patient", "disagree", "", [], True, "carol", 0)

    event.listen(store.engine, "before_cursor_execute", competing_save)
    try:
        with pytest.raises(ReviewConflict, match=r"another reviewer \(carol") as caught:
            _save(store, "agree", 0, user="alice")
    finally:
        event.remove(store.engine, "before_cursor_execute", competing_save)
        other.dispose()
    assert fired and caught.value.current.user == "carol"
    assert _rows(store) == [("P001", "patient", 1, "disagree", "carol")]
    with store.session() as s:
        assert [e.user for e in s.scalars(select(AuditEvent))] == ["carol"]  # alice's audit event rolled back too


@pytest.mark.parametrize(("change", "message"), [
    ({"modality": "tissue"}, "unknown review modality"),
    ({"verdict": "maybe"}, "unknown verdict"),
    ({"user": "  "}, "reviewer's name"),
    ({"user": "x" * 65}, "user name is at most"),
    ({"comment": "x" * (MAX_COMMENT_CHARS + 1)}, "comment is at most"),
    ({"flags": [f"flag {i}" for i in range(21)]}, "at most 20 flags"),
    ({"flags": ["x" * 65]}, "flag is at most 64"),
    ({"flags": "second opinion"}, "list of short texts"),
    ({"flags": [3]}, "list of short texts"),
    ({"expected": -1}, "whole number"),
    ({"expected": True}, "whole number"),
])
def test_invalid_input_writes_nothing(store, change, message):
    with pytest.raises(PathReviewError, match=message):
        _save(store, **change)
    assert _rows(store) == []


def test_unknown_patient_writes_nothing(store):
    with pytest.raises(NotFoundError, match="no patient 'P999'"):
        record_review(store, "P999", "slide", "agree", "", [], False, "alice", 0)
    assert _rows(store) == []


def test_longest_allowed_input_is_accepted(store):
    entry = _save(store, comment="x" * MAX_COMMENT_CHARS, flags=[f"{i:02d}" + "y" * 62 for i in range(20)])
    assert len(entry.comment) == MAX_COMMENT_CHARS and len(entry.flags) == 20
    assert review_history(store, "P001")[0].flags == entry.flags


# -- a real race between two processes ---------------------------------------------------------------

ROUNDS = 12


def _racing_reviewer(url: str, user: str, barrier, results) -> None:
    """Runs in its own process: each round, wait for the other reviewer, then save against the same version."""
    store = open_store(url, migrate=False)
    try:
        for round_ in range(ROUNDS):
            barrier.wait(timeout=60)
            try:
                entry = record_review(store, "P001", "report", "agree", f"{user} round {round_}", ["second opinion"],
                                      False, user, round_)
                results.put((round_, user, "saved", entry.version))
            except ReviewConflict as exc:
                results.put((round_, user, "conflict", exc.current.version if exc.current else None))
            except Exception as exc:  # noqa: BLE001 - reported to the test, which fails on it
                results.put((round_, user, "error", f"{type(exc).__name__}: {exc}"))
    finally:
        store.dispose()


def test_two_processes_saving_the_same_version_exactly_one_wins(store, store_url):
    ctx = multiprocessing.get_context("spawn")
    barrier, results = ctx.Barrier(2), ctx.Queue()
    workers = [ctx.Process(target=_racing_reviewer, args=(store_url, user, barrier, results)) for user in ("alice", "bob")]
    for w in workers:
        w.start()
    outcomes = [results.get(timeout=120) for _ in range(2 * ROUNDS)]
    for w in workers:
        w.join(60)
        assert w.exitcode == 0
    errors = [o for o in outcomes if o[2] == "error"]
    assert errors == []
    for round_ in range(ROUNDS):
        this_round = sorted(o[2:] for o in outcomes if o[0] == round_)
        # One save took version round_ + 1; the other was told about it and wrote nothing.
        assert this_round == [("conflict", round_ + 1), ("saved", round_ + 1)], (round_, this_round)
    rows = _rows(store)
    assert [r[2] for r in rows if r[1] == "report"] == list(range(1, ROUNDS + 1))  # no lost or duplicate version
    winners = {o[1] for o in outcomes if o[2] == "saved"}
    history = review_history(store, "P001")
    assert [e.version for e in history] == list(range(ROUNDS, 0, -1)) and {e.user for e in history} == winners
    assert all(e.comment == f"{e.user} round {e.version - 1}" for e in history)


# -- schema v2 upgrading a v1 store -------------------------------------------------------------------

# The v1 schema exactly as v1 created it (SQLAlchemy's SQLite DDL of the v1 tables), with a few rows.
V1_SQLITE_DDL = """
CREATE TABLE audit_events (id INTEGER NOT NULL, at DATETIME NOT NULL, user VARCHAR(64) NOT NULL, action VARCHAR(32) NOT NULL,
    target VARCHAR(128) NOT NULL, detail JSON NOT NULL, PRIMARY KEY (id));
CREATE INDEX ix_audit_events_at ON audit_events (at);
CREATE TABLE models (id VARCHAR(64) NOT NULL, task VARCHAR(16) NOT NULL, architecture VARCHAR(128) NOT NULL,
    weights_sha256 VARCHAR(64) NOT NULL, metrics JSON NOT NULL, registered_at DATETIME NOT NULL, PRIMARY KEY (id));
CREATE TABLE schema_version (version INTEGER NOT NULL, applied_at DATETIME NOT NULL, PRIMARY KEY (version));
CREATE TABLE patients (id VARCHAR(64) NOT NULL, age FLOAT, sex VARCHAR(16), onset_type VARCHAR(32), PRIMARY KEY (id));
CREATE TABLE slides (id VARCHAR(64) NOT NULL, patient_id VARCHAR(64) NOT NULL, file VARCHAR(512) NOT NULL,
    mpp FLOAT NOT NULL, width INTEGER NOT NULL, height INTEGER NOT NULL, mask_file VARCHAR(512), mask_mpp FLOAT,
    label INTEGER, PRIMARY KEY (id), FOREIGN KEY(patient_id) REFERENCES patients (id));
CREATE INDEX ix_slides_patient_id ON slides (patient_id);
CREATE TABLE reports (id VARCHAR(64) NOT NULL, patient_id VARCHAR(64) NOT NULL, text TEXT NOT NULL, label INTEGER,
    PRIMARY KEY (id), FOREIGN KEY(patient_id) REFERENCES patients (id));
CREATE INDEX ix_reports_patient_id ON reports (patient_id);
CREATE TABLE reviews (id INTEGER NOT NULL, patient_id VARCHAR(64) NOT NULL, modality VARCHAR(16) NOT NULL,
    verdict VARCHAR(16) NOT NULL, comment TEXT NOT NULL, flags JSON NOT NULL, signed_off BOOLEAN NOT NULL,
    user VARCHAR(64) NOT NULL, version INTEGER NOT NULL, created_at DATETIME NOT NULL, PRIMARY KEY (id),
    FOREIGN KEY(patient_id) REFERENCES patients (id));
CREATE INDEX ix_reviews_patient_id ON reviews (patient_id);
CREATE TABLE predictions (id INTEGER NOT NULL, model_id VARCHAR(64) NOT NULL, weights_sha256 VARCHAR(64) NOT NULL,
    subject_kind VARCHAR(16) NOT NULL, subject_id VARCHAR(64) NOT NULL, patient_id VARCHAR(64) NOT NULL,
    score FLOAT NOT NULL, created_at DATETIME NOT NULL, PRIMARY KEY (id), UNIQUE (model_id, subject_kind, subject_id),
    FOREIGN KEY(model_id) REFERENCES models (id), FOREIGN KEY(patient_id) REFERENCES patients (id));
CREATE INDEX ix_predictions_patient_id ON predictions (patient_id);
CREATE INDEX ix_predictions_model_id ON predictions (model_id);
CREATE INDEX ix_predictions_subject_id ON predictions (subject_id);
CREATE TABLE visits (id INTEGER NOT NULL, patient_id VARCHAR(64) NOT NULL, day FLOAT NOT NULL, features JSON NOT NULL,
    label INTEGER, PRIMARY KEY (id), UNIQUE (patient_id, day), FOREIGN KEY(patient_id) REFERENCES patients (id));
CREATE INDEX ix_visits_patient_id ON visits (patient_id);
INSERT INTO schema_version VALUES (1, '2026-01-05 09:00:00');
INSERT INTO patients VALUES ('P001', 61, 'M', 'spinal');
INSERT INTO slides VALUES ('P001-S1', 'P001', 'P001-S1.tiff', 0.5, 4096, 4096, NULL, NULL, 1);
INSERT INTO reports VALUES ('P001-R1', 'P001', 'Gleason score 4+3=7.', 0);
INSERT INTO reviews VALUES (1, 'P001', 'slide', 'agree', 'first look', '[]', 0, 'alice', 1, '2026-01-05 10:00:00');
INSERT INTO reviews VALUES (2, 'P001', 'slide', 'disagree', 'second look', '["artefact"]', 1, 'bob', 1, '2026-01-05 11:00:00');
INSERT INTO reviews VALUES (3, 'P001', 'report', 'agree', '', '[]', 1, 'bob', 1, '2026-01-05 12:00:00');
"""


def test_migrations_upgrade_a_v1_store_in_place(tmp_path):
    import sqlite3

    path = tmp_path / "cases.db"
    with sqlite3.connect(path) as conn:
        conn.executescript(V1_SQLITE_DDL)
    store = open_store(f"sqlite:///{path}")
    try:
        assert store.schema_version() == SCHEMA_VERSION
        schema = inspect(store.engine)
        assert "day" in {c["name"] for c in schema.get_columns("slides")}
        assert "day" in {c["name"] for c in schema.get_columns("reports")}
        assert "regions" in {c["name"] for c in schema.get_columns("reviews")}  # v7: the regions a verdict names
        index = {i["name"]: i for i in schema.get_indexes("reviews")}["uq_reviews_patient_modality_version"]
        assert index["unique"] and index["column_names"] == ["patient_id", "modality", "version"]
        with store.session() as s:
            assert s.get(Slide, "P001-S1").label == 1 and s.get(Slide, "P001-S1").day is None
            assert s.get(Report, "P001-R1").text == "Gleason score 4+3=7." and s.get(Report, "P001-R1").day is None
            assert s.get(Patient, "P001").attributes == {"age": 61.0, "sex": "M", "onset_type": "spinal"}  # v8
            s.get(Slide, "P001-S1").day = 0.0
        # v1 allowed two rows with the same version; v2 numbers them in the order they were saved.
        history = review_history(store, "P001")
        assert [(e.modality, e.version, e.comment) for e in history] == [
            ("report", 1, ""), ("slide", 2, "second look"), ("slide", 1, "first look")]
        assert review_versions(store, "P001") == {"slide": 2, "patient": 0, "report": 1}
        assert record_review(store, "P001", "slide", "agree", "", [], True, "carol", 2).version == 3
    finally:
        store.dispose()
    reopened = open_store(f"sqlite:///{path}")  # migrating again finds nothing to do
    with reopened.session() as s:
        assert s.get(Slide, "P001-S1").day == 0.0
    assert reopened.schema_version() == SCHEMA_VERSION
    reopened.dispose()


def test_a_new_store_gets_the_v2_schema_from_v1_and_v2_finds_nothing_to_do(store):
    schema = inspect(store.engine)
    assert "day" in {c["name"] for c in schema.get_columns("slides")}
    assert "uq_reviews_patient_modality_version" in {i["name"] for i in schema.get_indexes("reviews")}
    assert store.schema_version() == SCHEMA_VERSION


def _entry(user: str, verdict: str, signed_off: bool, version: int, modality: str = "slide") -> ReviewEntry:
    return ReviewEntry("P001", modality, verdict, f"{user}'s words", (), signed_off, user, version, datetime(2026, 1, 1, tzinfo=UTC))


def test_consensus_counts_each_reviewers_latest_signed_off_verdict():
    history = [  # newest first, as review_history returns it
        _entry("bob", "disagree", False, 5),  # bob's later draft does not replace his sign-off
        _entry("carol", "agree", True, 4, modality="report"),
        _entry("bob", "agree", True, 3),
        _entry("alice", "disagree", True, 2),
        _entry("alice", "agree", True, 1),
    ]
    slide = consensus(history, "slide")
    assert slide.verdicts == {"alice": "disagree", "bob": "agree"} and slide.agreed is False
    assert slide.line() == "reviewers disagree (alice: disagree, bob: agree)"
    report = consensus(history, "report")
    assert report.agreed is None and report.line().startswith("one reviewer signed off (carol: agree)")
    assert consensus(history, "patient").line() == "no signed-off verdict yet"
    agreeing = consensus([_entry("bob", "agree", True, 2), _entry("alice", "agree", True, 1)], "slide")
    assert agreeing.agreed is True and agreeing.line() == "2 reviewers agree: agree (alice: agree, bob: agree)"
    # A reviewer's own form starts from their own latest entry: bob's draft, not alice's sign-off.
    assert {u: e.version for u, e in latest_by_reviewer(history, "slide").items()} == {"bob": 5, "alice": 2}
