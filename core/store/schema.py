"""Case-store tables (SQLAlchemy 2 ORM). Portable types only: runs on SQLite and PostgreSQL."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import ClassVar

from sqlalchemy import JSON, Boolean, DateTime, Float, ForeignKey, Index, Integer, String, Table, Text, UniqueConstraint
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship, validates

from core.errors import PathReviewError

ATTRIBUTE_NAME_CHARS = 64
# Patient attributes are JSONB on PostgreSQL, where (unlike json) values can be compared, so the cohort table sorts
# by them in SQL on both databases.
ATTRIBUTES_TYPE = JSON().with_variant(JSONB(), "postgresql")
AttributeValue = str | int | float | bool | None


def utc_now() -> datetime:
    return datetime.now(UTC)


def as_utc(t: datetime) -> datetime:
    """A stored time with its zone: SQLite drops it on the way back, and every stored time is UTC."""
    return t if t.tzinfo else t.replace(tzinfo=UTC)


class Base(DeclarativeBase):
    __table__: ClassVar[Table]  # every model here is mapped to one table (SQLAlchemy types it as any FromClause)


class SchemaVersion(Base):
    __tablename__ = "schema_version"
    version: Mapped[int] = mapped_column(Integer, primary_key=True)
    applied_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utc_now)


class InvalidAttribute(PathReviewError):
    """A patient attribute that cannot be stored."""


def checked_attributes(attributes: dict[str, AttributeValue] | None) -> dict[str, AttributeValue]:
    """Patient attributes as stored: names of 1 to 64 characters; values text, true/false, finite numbers or empty.
    NaN and infinity are refused: JSON has no such numbers, and PostgreSQL and SQLite would store them differently."""
    if attributes is None:
        return {}
    if not isinstance(attributes, dict):
        raise InvalidAttribute(f"patient attributes are a mapping of name to value, not {type(attributes).__name__}")
    for name, value in attributes.items():
        if not isinstance(name, str) or not 1 <= len(name) <= ATTRIBUTE_NAME_CHARS:
            raise InvalidAttribute(f"patient attribute name {name!r} must be text of 1 to {ATTRIBUTE_NAME_CHARS} characters")
        if not isinstance(value, str | int | float | bool | None):
            raise InvalidAttribute(f"patient attribute {name!r} is a {type(value).__name__}; store text, a number, true/false or nothing")
        if isinstance(value, float) and not math.isfinite(value):
            raise InvalidAttribute(f"patient attribute {name!r} is {value}; store a finite number, or leave it out when unknown")
    return dict(attributes)


def checked_features(features: dict | None) -> dict:
    """Visit features as stored: name -> text, true/false, a finite number or empty. NaN and infinity are refused, as for
    patient attributes: JSON has no such numbers, and a model would read them as real values."""
    if features is None:
        return {}
    if not isinstance(features, dict):
        raise InvalidAttribute(f"visit features are a mapping of name to value, not {type(features).__name__}")
    for name, value in features.items():
        if not isinstance(name, str) or not name:
            raise InvalidAttribute(f"visit feature name {name!r} must be non-empty text")
        if not isinstance(value, str | int | float | bool | None):
            raise InvalidAttribute(f"visit feature {name!r} is a {type(value).__name__}; store text, a number, true/false or nothing")
        if isinstance(value, float) and not math.isfinite(value):
            raise InvalidAttribute(f"visit feature {name!r} is {value}; store a finite number, or leave it out when unknown")
    return dict(features)


class Patient(Base):
    __tablename__ = "patients"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    # Free-form name -> value (age, sex, anything a cohort records); workspace.toml declares their display names
    # and units. A generic store has no disease-specific columns (schema v8).
    attributes: Mapped[dict[str, AttributeValue]] = mapped_column(ATTRIBUTES_TYPE, default=dict)
    slides: Mapped[list[Slide]] = relationship(back_populates="patient", order_by="Slide.id")
    visits: Mapped[list[Visit]] = relationship(back_populates="patient", order_by="Visit.day")
    reports: Mapped[list[Report]] = relationship(back_populates="patient", order_by="Report.id")

    @validates("attributes")
    def _check_attributes(self, _key: str, attributes: dict[str, AttributeValue] | None) -> dict[str, AttributeValue]:
        return checked_attributes(attributes)


class Slide(Base):
    __tablename__ = "slides"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    patient_id: Mapped[str] = mapped_column(ForeignKey("patients.id"), index=True)
    file: Mapped[str] = mapped_column(String(512))  # relative to the workspace's slides/ folder
    mpp: Mapped[float] = mapped_column(Float)
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    mask_file: Mapped[str | None] = mapped_column(String(512))  # ground-truth label image, optional
    mask_mpp: Mapped[float | None] = mapped_column(Float)
    label: Mapped[int | None] = mapped_column(Integer)  # slide-level label, when known
    day: Mapped[float | None] = mapped_column(Float)  # days since the patient's first visit, when known (schema v2)
    patient: Mapped[Patient] = relationship(back_populates="slides")


class Visit(Base):
    __tablename__ = "visits"
    __table_args__ = (UniqueConstraint("patient_id", "day"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    patient_id: Mapped[str] = mapped_column(ForeignKey("patients.id"), index=True)
    day: Mapped[float] = mapped_column(Float)  # days since the patient's first visit
    features: Mapped[dict] = mapped_column(JSON)
    label: Mapped[int | None] = mapped_column(Integer)
    patient: Mapped[Patient] = relationship(back_populates="visits")

    @validates("features")
    def _check_features(self, _key: str, features: dict | None) -> dict:
        return checked_features(features)


class Report(Base):
    __tablename__ = "reports"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    patient_id: Mapped[str] = mapped_column(ForeignKey("patients.id"), index=True)
    text: Mapped[str] = mapped_column(Text)
    label: Mapped[int | None] = mapped_column(Integer)
    day: Mapped[float | None] = mapped_column(Float)  # days since the patient's first visit, when known (schema v2)
    patient: Mapped[Patient] = relationship(back_populates="reports")


class ModelRecord(Base):
    __tablename__ = "models"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    task: Mapped[str] = mapped_column(String(16))
    architecture: Mapped[str] = mapped_column(String(128))
    weights_sha256: Mapped[str] = mapped_column(String(64))
    metrics: Mapped[dict] = mapped_column(JSON, default=dict)
    registered_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utc_now)


class Prediction(Base):
    """A model output for one subject, tied to the exact weights that produced it."""

    __tablename__ = "predictions"
    __table_args__ = (UniqueConstraint("model_id", "subject_kind", "subject_id"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    model_id: Mapped[str] = mapped_column(ForeignKey("models.id"), index=True)
    weights_sha256: Mapped[str] = mapped_column(String(64))
    subject_kind: Mapped[str] = mapped_column(String(16))  # patient | slide | visit | report
    subject_id: Mapped[str] = mapped_column(String(64), index=True)
    patient_id: Mapped[str] = mapped_column(ForeignKey("patients.id"), index=True)
    score: Mapped[float] = mapped_column(Float)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utc_now)


class Review(Base):
    """A reviewer's verdict on one modality of a case. Append-only: a change is a new row with the next version.

    The unique (patient, modality, version) index is the concurrency guard: two reviewers who both saw
    version n and both save insert version n + 1, and the database refuses the second (schema v2)."""

    __tablename__ = "reviews"
    __table_args__ = (Index("uq_reviews_patient_modality_version", "patient_id", "modality", "version", unique=True),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    patient_id: Mapped[str] = mapped_column(ForeignKey("patients.id"), index=True)
    modality: Mapped[str] = mapped_column(String(16))  # slide | patient | report
    verdict: Mapped[str] = mapped_column(String(16))  # agree | disagree | uncertain
    comment: Mapped[str] = mapped_column(Text, default="")
    flags: Mapped[list] = mapped_column(JSON, default=list)
    signed_off: Mapped[bool] = mapped_column(Boolean, default=False)
    user: Mapped[str] = mapped_column(String(64))
    version: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utc_now)
    regions: Mapped[list | None] = mapped_column(JSON, nullable=True)  # ids of the slide regions the verdict refers to (schema v7)


class AuditEvent(Base):
    """Append-only log of who did what."""

    __tablename__ = "audit_events"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utc_now, index=True)
    user: Mapped[str] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(32))
    target: Mapped[str] = mapped_column(String(128), default="")
    detail: Mapped[dict] = mapped_column(JSON, default=dict)


class User(Base):
    """Someone who may sign in. The password is stored only as a salted hash."""

    __tablename__ = "users"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    password_hash: Mapped[str] = mapped_column(String(256))
    role: Mapped[str] = mapped_column(String(16))  # viewer | reviewer | admin
    # A random value replaced by sign-out, a password or role change; a session cookie names it, so replacing it ends
    # every session of the account. Random rather than a counter: a removed and re-created name never matches (schema v5).
    session_version: Mapped[str | None] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utc_now)


class Job(Base):
    """A unit of long work (a slide heatmap, CAMs, cohort SHAP, report LIME) and where it stands. Every process sees
    it: the app that queued it, the Celery worker or background process that runs it, the Jobs page (schema v4)."""

    __tablename__ = "jobs"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(16))  # heatmap | cams | shap | lime
    subject: Mapped[str] = mapped_column(String(128))  # slide id, report id, or the patients of a cohort SHAP job
    params: Mapped[dict] = mapped_column(JSON, default=dict)
    key: Mapped[str | None] = mapped_column(String(64))  # content key of the result in the workspace cache, once known
    status: Mapped[str] = mapped_column(String(16), default="queued", index=True)  # queued | running | done | failed | cancelled
    progress: Mapped[float] = mapped_column(Float, default=0.0)  # 0..1
    message: Mapped[str] = mapped_column(Text, default="")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    max_attempts: Mapped[int] = mapped_column(Integer, default=3)
    runner: Mapped[str] = mapped_column(String(16), default="local")  # local | celery | background
    worker: Mapped[str] = mapped_column(String(128), default="")  # who ran the last attempt
    task_id: Mapped[str | None] = mapped_column(String(64))  # the Celery task of the last dispatch
    result: Mapped[dict] = mapped_column(JSON, default=dict)
    requested_by: Mapped[str] = mapped_column(String(64), default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utc_now, index=True)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utc_now)


class AnnotationVersion(Base):
    """One version of a reviewer's region on a slide. Append-only: an edit or a deletion is a new row with the next
    version, so nothing drawn is ever lost. As for verdicts, the unique (region, version) index is the concurrency
    guard: of two editors who both saw version n, the database accepts one version n + 1 (schema v5)."""

    __tablename__ = "annotation_versions"
    __table_args__ = (Index("uq_annotation_versions_region_version", "region_id", "version", unique=True),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    region_id: Mapped[str] = mapped_column(String(36), index=True)  # a UUID, the same in every version of the region
    slide_id: Mapped[str] = mapped_column(ForeignKey("slides.id"), index=True)
    version: Mapped[int] = mapped_column(Integer)
    object_type: Mapped[str] = mapped_column(String(16), default="annotation")  # annotation | detection (QuPath's objectType)
    class_name: Mapped[str] = mapped_column(String(64))  # one of the workspace's annotation classes
    name: Mapped[str] = mapped_column(String(256), default="")
    comment: Mapped[str] = mapped_column(Text, default="")
    geometry: Mapped[dict] = mapped_column(JSON)  # GeoJSON geometry in level-0 pixel coordinates, valid by shapely's rules
    deleted: Mapped[bool] = mapped_column(Boolean, default=False)
    user: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utc_now)


class SlideQuality(Base):
    """A slide's quality control summary for one heatmap (slide, patch model, grid), written when its QC measures are
    stored: the share of tissue each QC flag covers and the worst of them (the cohort worklist's QC column; schema v8)."""

    __tablename__ = "slide_quality"
    heatmap_key: Mapped[str] = mapped_column(String(32), primary_key=True)
    slide_id: Mapped[str] = mapped_column(ForeignKey("slides.id"), index=True)
    patient_id: Mapped[str] = mapped_column(ForeignKey("patients.id"), index=True)
    model_id: Mapped[str] = mapped_column(String(64))
    worst_flag: Mapped[str] = mapped_column(String(16), default="")  # "" when no flag covers any tissue
    worst_fraction: Mapped[float] = mapped_column(Float, default=0.0)
    fractions: Mapped[dict] = mapped_column(JSON)  # flag -> share of tissue
    computed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utc_now)
