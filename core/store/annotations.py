"""Reviewers' regions on slides: append-only versions with the same optimistic version check as verdicts.

Every change (a new region, an edit, a deletion) is a new ``AnnotationVersion`` row written in the same transaction
as its audit event, so the history of a region and the audit trail never disagree. An editor passes back the version
it showed as ``expected_version``; a save against any other version is refused with ``AnnotationConflict`` and nothing
is written. Two saves racing on one version are settled by the unique (region, version) index. Geometry arrives here
already validated (``core.annotations``); this module only stores it.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime

import numpy as np
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session

from core.errors import NotFoundError, PathReviewError
from core.store.database import CaseStore, insert_many
from core.store.reviews import MAX_COMMENT_CHARS, MAX_USER_CHARS
from core.store.schema import AnnotationVersion, AuditEvent, Slide, as_utc, utc_now

OBJECT_TYPES = ("annotation", "detection")
MAX_NAME_CHARS = 256
MAX_CLASS_CHARS = 64


@dataclass(frozen=True)
class RegionDraft:
    """What a reviewer draws or a file brings: a geometry (GeoJSON, level-0 pixels) and its class."""

    geometry: dict
    class_name: str
    object_type: str = "annotation"
    name: str = ""
    comment: str = ""


@dataclass(frozen=True)
class RegionVersion:
    region_id: str
    slide_id: str
    version: int
    object_type: str
    class_name: str
    name: str
    comment: str
    geometry: dict = field(repr=False)
    deleted: bool
    user: str  # who saved this version
    at: datetime  # UTC
    author: str = ""  # who drew or imported the region (its first version's user); set by ``current_regions``

    @classmethod
    def from_row(cls, row: AnnotationVersion) -> RegionVersion:
        return cls(region_id=row.region_id, slide_id=row.slide_id, version=row.version, object_type=row.object_type,
                   class_name=row.class_name, name=row.name or "", comment=row.comment or "", geometry=dict(row.geometry),
                   deleted=bool(row.deleted), user=row.user, at=as_utc(row.created_at))


class AnnotationConflict(PathReviewError):
    """Someone changed this region since the editor opened it; their version is in ``current``."""

    def __init__(self, region_id: str, user: str, expected_version: int, current: RegionVersion | None) -> None:
        self.current = current
        self.expected_version = expected_version
        if current is None:
            message = (f"region {region_id} (version {expected_version}) is not in the case store; your change was not saved — "
                       "reload the slide")
        else:
            who = "you changed" if current.user == user else f"another reviewer ({current.user}, {current.at:%Y-%m-%d %H:%M} UTC) changed"
            state = "deleted it" if current.deleted else f"now version {current.version}, {current.class_name}"
            message = (f"{who} region {region_id} since you opened it ({state}); your change was not saved — "
                       "reload to see theirs, then edit again")
        super().__init__(message)


def _clean_user(user: str) -> str:
    if not isinstance(user, str) or not user.strip():
        raise PathReviewError("a region change needs the reviewer's name; sign in or pass --user")
    if len(user.strip()) > MAX_USER_CHARS:
        raise PathReviewError(f"a user name is at most {MAX_USER_CHARS} characters")
    return user.strip()


def _check_draft(draft: RegionDraft) -> None:
    if draft.object_type not in OBJECT_TYPES:
        raise PathReviewError(f"object type {draft.object_type!r} is not stored; use one of {', '.join(OBJECT_TYPES)}")
    if not draft.class_name or len(draft.class_name) > MAX_CLASS_CHARS:
        raise PathReviewError(f"a region needs a class name of 1 to {MAX_CLASS_CHARS} characters")
    if len(draft.name) > MAX_NAME_CHARS:
        raise PathReviewError(f"a region name is at most {MAX_NAME_CHARS} characters")
    if len(draft.comment) > MAX_COMMENT_CHARS:
        raise PathReviewError(f"a region comment is at most {MAX_COMMENT_CHARS:,} characters")
    if not isinstance(draft.geometry, dict) or "type" not in draft.geometry:
        raise PathReviewError("a region's geometry must be a GeoJSON geometry object")


def _row(region_id: str, slide_id: str, version: int, draft: RegionDraft, user: str, deleted: bool = False) -> AnnotationVersion:
    return AnnotationVersion(region_id=region_id, slide_id=slide_id, version=version, object_type=draft.object_type,
                             class_name=draft.class_name, name=draft.name, comment=draft.comment, geometry=draft.geometry,
                             deleted=deleted, user=user)


def _audit(row: AnnotationVersion) -> AuditEvent:
    action = "annotation_deleted" if row.deleted else "annotation_saved"
    return AuditEvent(user=row.user, action=action, target=row.slide_id,
                      detail={"region": row.region_id, "version": row.version, "class": row.class_name})


def _latest(session: Session, region_id: str) -> AnnotationVersion | None:
    return session.scalars(select(AnnotationVersion).where(AnnotationVersion.region_id == region_id)
                           .order_by(AnnotationVersion.version.desc()).limit(1)).first()


def _refused(exc: OperationalError) -> PathReviewError:
    return PathReviewError(f"the case store did not accept the regions ({exc.orig}); nothing was saved — try again in a moment")


def new_region_ids(n: int) -> list[str]:
    """``n`` random (version 4) UUIDs as text, drawn in one call: ``uuid.uuid4`` per region took a tenth of a second
    of a 10,000-region import."""
    raw = np.frombuffer(os.urandom(16 * n), np.uint8).reshape(n, 16).copy()
    raw[:, 6] = (raw[:, 6] & 0x0F) | 0x40  # version 4
    raw[:, 8] = (raw[:, 8] & 0x3F) | 0x80  # the RFC 4122 variant
    h = raw.tobytes().hex()
    return [f"{h[i:i + 8]}-{h[i + 8:i + 12]}-{h[i + 12:i + 16]}-{h[i + 16:i + 20]}-{h[i + 20:i + 32]}" for i in range(0, 32 * n, 32)]


def add_regions(store: CaseStore, slide_id: str, drafts: Sequence[RegionDraft], user: str) -> list[RegionVersion]:
    """Store new regions (version 1 each) and one audit event per region, all in one transaction: all or nothing.
    The rows go in as two bulk inserts (``insert_many``), so a file of 10,000 regions is two statements, not 20,000."""
    user = _clean_user(user)
    for draft in drafts:
        _check_draft(draft)
    now = utc_now()
    versions = [RegionVersion(region_id=region_id, slide_id=slide_id, version=1, object_type=d.object_type, class_name=d.class_name,
                              name=d.name, comment=d.comment, geometry=d.geometry, deleted=False, user=user, at=now)
                for region_id, d in zip(new_region_ids(len(drafts)), drafts, strict=True)]
    try:
        with store.session() as s:
            if s.get(Slide, slide_id) is None:
                raise NotFoundError(f"no slide {slide_id!r} in this workspace")
            connection = s.connection()
            insert_many(connection, AnnotationVersion.__table__,
                        {"slide_id": slide_id, "version": 1, "deleted": False, "user": user, "created_at": now},
                        ("region_id", "object_type", "class_name", "name", "comment", "geometry"),
                        [(v.region_id, v.object_type, v.class_name, v.name, v.comment, v.geometry) for v in versions])
            insert_many(connection, AuditEvent.__table__, {"at": now, "user": user, "action": "annotation_saved", "target": slide_id},
                        ("detail",), [({"region": v.region_id, "version": 1, "class": v.class_name},) for v in versions])
    except OperationalError as exc:
        raise _refused(exc) from exc
    return versions


def _append(store: CaseStore, region_id: str, user: str, expected_version: int, draft: RegionDraft | None) -> RegionVersion:
    """Version ``expected_version + 1`` of a region: ``draft`` as its new state, or a deletion when it is None."""
    user = _clean_user(user)
    if isinstance(expected_version, bool) or not isinstance(expected_version, int) or expected_version < 1:
        raise PathReviewError(f"expected version must be a whole number >= 1 (got {expected_version!r})")
    try:
        with store.session() as s:
            latest = _latest(s, region_id)
            if latest is None:
                raise NotFoundError(f"no region {region_id!r} in this workspace")
            if latest.version != expected_version or latest.deleted:
                raise AnnotationConflict(region_id, user, expected_version, RegionVersion.from_row(latest))
            state = draft or RegionDraft(dict(latest.geometry), latest.class_name, latest.object_type, latest.name, latest.comment)
            row = _row(region_id, latest.slide_id, expected_version + 1, state, user, deleted=draft is None)
            s.add(row)
            s.flush()  # the unique index refuses a version a concurrent writer has just taken
            s.add(_audit(row))
            s.flush()
            return RegionVersion.from_row(row)
    except IntegrityError:
        with store.session() as s:
            current = _latest(s, region_id)
            raise AnnotationConflict(region_id, user, expected_version, RegionVersion.from_row(current) if current else None) from None
    except OperationalError as exc:
        raise _refused(exc) from exc


def edit_region(store: CaseStore, region_id: str, draft: RegionDraft, user: str, expected_version: int) -> RegionVersion:
    """Save ``draft`` as the next version of the region. ``AnnotationConflict`` when the region changed or was deleted
    since ``expected_version``; nothing is written then."""
    _check_draft(draft)
    return _append(store, region_id, user, expected_version, draft)


def delete_region(store: CaseStore, region_id: str, user: str, expected_version: int) -> RegionVersion:
    """Delete by appending a version marked deleted (the region's last shape is kept in it)."""
    return _append(store, region_id, user, expected_version, None)


def current_regions(store: CaseStore, slide_id: str) -> list[RegionVersion]:
    """The latest version of every region of the slide that is not deleted, oldest region first."""
    latest = (select(AnnotationVersion.region_id, func.max(AnnotationVersion.version).label("version"))
              .where(AnnotationVersion.slide_id == slide_id).group_by(AnnotationVersion.region_id).subquery())
    query = (select(AnnotationVersion)
             .join(latest, (AnnotationVersion.region_id == latest.c.region_id) & (AnnotationVersion.version == latest.c.version))
             .where(AnnotationVersion.deleted.is_(False)))
    with store.session() as s:
        rows = [RegionVersion.from_row(r) for r in s.scalars(query)]
        first = {r: (i, u) for r, i, u in s.execute(select(AnnotationVersion.region_id, AnnotationVersion.id, AnnotationVersion.user)
                                                    .where(AnnotationVersion.slide_id == slide_id, AnnotationVersion.version == 1))}
    return [replace(r, author=first[r.region_id][1]) for r in sorted(rows, key=lambda r: first[r.region_id][0])]


def current_region(store: CaseStore, region_id: str) -> RegionVersion:
    """The latest version of one region, with its author; ``NotFoundError`` when it is unknown or deleted."""
    with store.session() as s:
        latest = _latest(s, region_id)
        if latest is None or latest.deleted:
            raise NotFoundError(f"no region {region_id!r} on this slide (it may have been deleted; reload the slide)")
        author = s.scalars(select(AnnotationVersion.user).where(AnnotationVersion.region_id == region_id,
                                                                  AnnotationVersion.version == 1)).first()
        return replace(RegionVersion.from_row(latest), author=author or latest.user)


def slide_regions_stamp(store: CaseStore, slide_id: str) -> int:
    """A number that changes whenever any region of the slide changes (the id of its newest version row; 0 when
    none): the key of cached overlays and indexes."""
    with store.session() as s:
        return int(s.scalar(select(func.max(AnnotationVersion.id)).where(AnnotationVersion.slide_id == slide_id)) or 0)


def region_history(store: CaseStore, region_id: str) -> list[RegionVersion]:
    """Every version of one region, deletions included, newest first."""
    with store.session() as s:
        rows = s.scalars(select(AnnotationVersion).where(AnnotationVersion.region_id == region_id)
                         .order_by(AnnotationVersion.version.desc()))
        return [RegionVersion.from_row(r) for r in rows]


def slides_with_regions(store: CaseStore) -> list[str]:
    """Slides that have ever had a region, in id order."""
    with store.session() as s:
        return list(s.scalars(select(AnnotationVersion.slide_id).distinct().order_by(AnnotationVersion.slide_id)))


def slide_history(store: CaseStore, slide_id: str, limit: int = 20) -> list[RegionVersion]:
    """The slide's latest region versions, deletions included, newest first: what changed, by whom and when."""
    with store.session() as s:
        rows = s.scalars(select(AnnotationVersion).where(AnnotationVersion.slide_id == slide_id)
                         .order_by(AnnotationVersion.id.desc()).limit(limit))
        return [RegionVersion.from_row(r) for r in rows]
