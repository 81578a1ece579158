"""Regions in the case store: every change a new version with its audit row, deletions kept, the version check.

Every test runs on a fresh SQLite file and on a fresh PostgreSQL database (``store_url`` in tests/services.py)."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import event, inspect, select

from core.errors import NotFoundError, PathReviewError
from core.store.annotations import (
    AnnotationConflict,
    RegionDraft,
    add_regions,
    current_regions,
    delete_region,
    edit_region,
    new_region_ids,
    region_history,
    slides_with_regions,
)
from core.store.database import SCHEMA_VERSION, open_store
from core.store.schema import AnnotationVersion, AuditEvent, Base, Patient, SchemaVersion, Slide, as_utc

SQUARE = {"type": "Polygon", "coordinates": [[[0, 0], [10, 0], [10, 10], [0, 10], [0, 0]]]}
TRIANGLE = {"type": "Polygon", "coordinates": [[[0, 0], [20, 0], [0, 20], [0, 0]]]}


@pytest.fixture
def store(empty_store):
    with empty_store.session() as s:
        s.add(Patient(id="P001"))
        s.add_all([Slide(id=f"S{i}", patient_id="P001", file=f"s{i}.tif", mpp=0.5, width=1000, height=800) for i in (1, 2)])
    return empty_store


def _audit(store) -> list[tuple]:
    with store.session() as s:
        return [(e.user, e.action, e.target, e.detail["version"]) for e in s.scalars(select(AuditEvent).order_by(AuditEvent.id))]


def _versions(store) -> int:
    with store.session() as s:
        return len(s.scalars(select(AnnotationVersion)).all())


def test_add_edit_delete_keeps_every_version_with_its_audit_row(store):
    first, second = add_regions(store, "S1", [RegionDraft(SQUARE, "tumour pattern 4", comment="cribriform"),
                                              RegionDraft(TRIANGLE, "benign")], "alice")
    assert (first.version, first.user, first.deleted, first.comment) == (1, "alice", False, "cribriform")
    assert first.at.tzinfo is not None and first.region_id != second.region_id
    edited = edit_region(store, first.region_id, RegionDraft(TRIANGLE, "tumour pattern 5"), "bob", 1)
    assert (edited.version, edited.class_name, edited.user, edited.geometry) == (2, "tumour pattern 5", "bob", TRIANGLE)
    gone = delete_region(store, second.region_id, "bob", 1)
    assert gone.deleted and gone.version == 2 and gone.geometry == TRIANGLE  # the deleted shape is kept
    assert [(r.region_id, r.version) for r in current_regions(store, "S1")] == [(first.region_id, 2)]
    assert current_regions(store, "S2") == []
    history = region_history(store, first.region_id)
    assert [(h.version, h.class_name, h.user, h.comment) for h in history] == [
        (2, "tumour pattern 5", "bob", ""), (1, "tumour pattern 4", "alice", "cribriform")]
    assert [h.deleted for h in region_history(store, second.region_id)] == [True, False]
    assert _audit(store) == [("alice", "annotation_saved", "S1", 1), ("alice", "annotation_saved", "S1", 1),
                             ("bob", "annotation_saved", "S1", 2), ("bob", "annotation_deleted", "S1", 2)]
    assert slides_with_regions(store) == ["S1"]


def test_a_bulk_insert_reads_back_as_written(store):
    """The driver-level bulk insert applies each column's own conversion: JSON, the UTC time, flags."""
    drafts = [RegionDraft({"type": "Polygon", "coordinates": [[[i, 0], [i + 5.25, 0], [i, 7], [i, 0]]]}, "benign", "detection",
                          f"n{i}", f"c{i}") for i in range(300)]
    added = add_regions(store, "S1", drafts, "alice")
    with store.session() as s:
        rows = s.scalars(select(AnnotationVersion).order_by(AnnotationVersion.id)).all()
        assert [(r.region_id, r.geometry, r.object_type, r.name, r.comment, r.version, r.deleted, r.user) for r in rows] == [
            (v.region_id, d.geometry, "detection", d.name, d.comment, 1, False, "alice") for v, d in zip(added, drafts, strict=True)]
        assert {as_utc(r.created_at) for r in rows} == {added[0].at}
        details = [e.detail for e in s.scalars(select(AuditEvent).order_by(AuditEvent.id))]
    assert details == [{"region": v.region_id, "version": 1, "class": "benign"} for v in added]


def test_stale_or_deleted_versions_are_refused_and_write_nothing(store):
    (region,) = add_regions(store, "S1", [RegionDraft(SQUARE, "benign")], "alice")
    edit_region(store, region.region_id, RegionDraft(TRIANGLE, "benign"), "alice", 1)
    with pytest.raises(AnnotationConflict, match=r"another reviewer \(alice, .* UTC\) changed region .*\(now version 2") as caught:
        edit_region(store, region.region_id, RegionDraft(SQUARE, "artefact"), "bob", 1)
    assert caught.value.current is not None and caught.value.current.version == 2
    with pytest.raises(AnnotationConflict, match="you changed"):
        delete_region(store, region.region_id, "alice", 1)
    delete_region(store, region.region_id, "bob", 2)
    with pytest.raises(AnnotationConflict, match="deleted it"):
        edit_region(store, region.region_id, RegionDraft(SQUARE, "benign"), "alice", 3)
    assert _versions(store) == 3 and len(_audit(store)) == 3


def test_a_concurrent_edit_between_read_and_insert_is_refused_by_the_unique_index(store, store_url):
    (region,) = add_regions(store, "S1", [RegionDraft(SQUARE, "benign")], "alice")
    other = open_store(store_url)
    fired: list[bool] = []

    def competing_edit(conn, cursor, statement, *args):
        if statement.lstrip().upper().startswith("INSERT INTO ANNOTATION_VERSIONS") and not fired:
            fired.append(True)
            edit_region(other, region.region_id, RegionDraft(TRIANGLE, "artefact"), "carol", 1)

    event.listen(store.engine, "before_cursor_execute", competing_edit)
    try:
        with pytest.raises(AnnotationConflict, match=r"another reviewer \(carol") as caught:
            edit_region(store, region.region_id, RegionDraft(SQUARE, "tumour pattern 3"), "alice", 1)
    finally:
        event.remove(store.engine, "before_cursor_execute", competing_edit)
        other.dispose()
    assert fired and caught.value.current is not None and caught.value.current.class_name == "artefact"
    assert [h.user for h in region_history(store, region.region_id)] == ["carol", "alice"]
    assert [a[0] for a in _audit(store)] == ["alice", "carol"]  # the refused edit's audit row rolled back with it


@pytest.mark.parametrize(("call", "message"), [
    (lambda st: add_regions(st, "S9", [RegionDraft(SQUARE, "benign")], "alice"), "no slide 'S9'"),
    (lambda st: add_regions(st, "S1", [RegionDraft(SQUARE, "benign"), RegionDraft(SQUARE, "benign", "cell")], "alice"),
     "object type 'cell'"),
    (lambda st: add_regions(st, "S1", [RegionDraft(SQUARE, "")], "alice"), "class name"),
    (lambda st: add_regions(st, "S1", [RegionDraft(SQUARE, "benign")], " "), "reviewer's name"),
    (lambda st: edit_region(st, "no-such-region", RegionDraft(SQUARE, "benign"), "alice", 1), "no region"),
    (lambda st: delete_region(st, "no-such-region", "alice", 0), "whole number >= 1"),
])
def test_invalid_changes_write_nothing(store, call, message):
    with pytest.raises((PathReviewError, NotFoundError), match=message):
        call(store)
    assert _versions(store) == 0 and _audit(store) == []


def test_the_migration_adds_the_table_to_a_store_of_the_previous_version(store_url):
    """A store at v5 (every table but this one) is brought to v6 and keeps its rows."""
    old = open_store(store_url, migrate=False)
    tables = [t for t in Base.metadata.sorted_tables if t.name != "annotation_versions"]
    Base.metadata.create_all(old.engine, tables=tables)
    with old.session() as s:
        s.add_all([SchemaVersion(version=v) for v in range(1, 6)])
        s.add(Patient(id="P001"))
        s.add(Slide(id="S1", patient_id="P001", file="s1.tif", mpp=0.5, width=1000, height=800))
    assert "annotation_versions" not in inspect(old.engine).get_table_names()
    old.dispose()
    store = open_store(store_url)
    try:
        assert store.schema_version() == SCHEMA_VERSION >= 6
        indexes = {i["name"]: i["unique"] for i in inspect(store.engine).get_indexes("annotation_versions")}
        assert indexes["uq_annotation_versions_region_version"]
        (region,) = add_regions(store, "S1", [RegionDraft(SQUARE, "benign")], "alice")
        assert current_regions(store, "S1")[0].region_id == region.region_id
    finally:
        store.dispose()


def test_new_region_ids_are_distinct_version_4_uuids():
    ids = new_region_ids(2000)
    parsed = [uuid.UUID(i) for i in ids]
    assert len(set(ids)) == 2000 and [str(u) for u in parsed] == ids
    assert {u.version for u in parsed} == {4} and {u.variant for u in parsed} == {uuid.RFC_4122}
    assert new_region_ids(0) == []
