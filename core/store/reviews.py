"""Reviewer verdicts per case and modality: append-only versions with an optimistic version check.

A reviewer's form remembers the version it showed (``review_versions``); saving passes it back as
``expected_version``. If someone saved in between, the save is refused with ``ReviewConflict`` and
nothing is written, so no verdict is silently overwritten. Two saves racing on the same version are
settled by the unique (patient, modality, version) index: the database accepts exactly one, in any
number of processes and on SQLite or PostgreSQL alike.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Subquery, func, select
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session

from core.errors import NotFoundError, PathReviewError
from core.store.database import CaseStore
from core.store.schema import AnnotationVersion, AuditEvent, Patient, Review, Slide, as_utc

MODALITIES = ("slide", "patient", "report")
VERDICTS = ("agree", "disagree", "uncertain")
FLAGS = ("second opinion", "poor stain", "artefact", "label suspect", "teaching case")  # suggestions; free text allowed
MAX_COMMENT_CHARS = 10_000
MAX_FLAGS = 20
MAX_FLAG_CHARS = 64
MAX_USER_CHARS = 64
MAX_REGIONS = 50
_MODALITY_NAMES = {"slide": "slide", "patient": "patient (visits)", "report": "report"}


@dataclass(frozen=True)
class ReviewEntry:
    patient_id: str
    modality: str
    verdict: str
    comment: str
    flags: tuple[str, ...]
    signed_off: bool
    user: str
    version: int
    at: datetime  # UTC
    regions: tuple[str, ...] = ()  # ids of the slide regions the verdict refers to

    @classmethod
    def from_row(cls, row: Review) -> ReviewEntry:
        return cls(patient_id=row.patient_id, modality=row.modality, verdict=row.verdict, comment=row.comment or "",
                   flags=tuple(row.flags or ()), signed_off=bool(row.signed_off), user=row.user, version=row.version, at=as_utc(row.created_at),
                   regions=tuple(row.regions or ()))


class ReviewConflict(PathReviewError):
    """Someone saved this verdict since the reviewer opened it; their entry is in ``current``."""

    def __init__(self, patient_id: str, modality: str, user: str, expected_version: int, current: ReviewEntry | None) -> None:
        self.current = current
        self.expected_version = expected_version
        what = f"the {_MODALITY_NAMES.get(modality, modality)} verdict on {patient_id}"
        if current is None:
            message = (f"{what} you opened (version {expected_version}) is no longer in the case store; "
                       "your entry was not saved — reload the case, then save again")
        else:
            who = "you saved" if current.user == user else f"another reviewer ({current.user}, {current.at:%Y-%m-%d %H:%M} UTC) saved"
            when = f" in another window ({current.at:%Y-%m-%d %H:%M} UTC)" if current.user == user else ""
            message = (f"{who} {what}{when} since you opened it (now version {current.version}, "
                       f"{current.verdict}{', signed off' if current.signed_off else ''}); your entry was not saved — "
                       "reload to see theirs, then save again")
        super().__init__(message)


def _clean_flags(flags: Iterable[str] | None) -> tuple[str, ...]:
    if isinstance(flags, str) or not all(isinstance(f, str) for f in flags or ()):
        raise PathReviewError("flags must be a list of short texts, e.g. ['second opinion']")
    cleaned = tuple(dict.fromkeys(f.strip() for f in flags or () if f.strip()))
    if len(cleaned) > MAX_FLAGS:
        raise PathReviewError(f"at most {MAX_FLAGS} flags per verdict (got {len(cleaned)})")
    too_long = [f for f in cleaned if len(f) > MAX_FLAG_CHARS]
    if too_long:
        raise PathReviewError(f"a flag is at most {MAX_FLAG_CHARS} characters; shorten {too_long[0][:20]!r}…")
    return cleaned


def _validate(modality: str, verdict: str, comment: str, user: str, expected_version: int) -> None:
    if modality not in MODALITIES:
        raise PathReviewError(f"unknown review modality {modality!r}; choose one of {', '.join(MODALITIES)}")
    if verdict not in VERDICTS:
        raise PathReviewError(f"unknown verdict {verdict!r}; choose one of {', '.join(VERDICTS)}")
    if not isinstance(user, str) or not user.strip():
        raise PathReviewError("a verdict needs the reviewer's name; sign in or enter your user name")
    if len(user.strip()) > MAX_USER_CHARS:
        raise PathReviewError(f"a user name is at most {MAX_USER_CHARS} characters")
    if not isinstance(comment, str) or len(comment) > MAX_COMMENT_CHARS:
        raise PathReviewError(f"the comment is at most {MAX_COMMENT_CHARS:,} characters; shorten it or attach a report")
    if isinstance(expected_version, bool) or not isinstance(expected_version, int) or expected_version < 0:
        raise PathReviewError(f"expected version must be a whole number >= 0 (got {expected_version!r})")


def _check_regions(session: Session, patient_id: str, regions: Iterable[str] | None) -> list[str]:
    """The region ids a verdict names: each a current (not deleted) region on one of the patient's slides."""
    if isinstance(regions, str) or not all(isinstance(r, str) for r in regions or ()):
        raise PathReviewError("regions must be a list of region ids")
    ids = list(dict.fromkeys(regions or ()))
    if len(ids) > MAX_REGIONS:
        raise PathReviewError(f"a verdict refers to at most {MAX_REGIONS} regions (got {len(ids)})")
    if not ids:
        return []
    rows = session.execute(select(AnnotationVersion.region_id, AnnotationVersion.version, AnnotationVersion.deleted, Slide.patient_id)
                           .join(Slide, Slide.id == AnnotationVersion.slide_id).where(AnnotationVersion.region_id.in_(ids))).all()
    latest: dict[str, tuple[int, bool, str]] = {}
    for region_id, version, deleted, owner in rows:
        if region_id not in latest or version > latest[region_id][0]:
            latest[region_id] = (version, bool(deleted), owner)
    for region_id in ids:
        state = latest.get(region_id)
        if state is None or state[1] or state[2] != patient_id:
            raise PathReviewError(f"region {region_id[:36]} is not a current region on this case's slides (deleted, or another case's); "
                                  "reload the case and choose again")
    return ids


def _latest(session: Session, patient_id: str, modality: str) -> Review | None:
    return session.scalars(select(Review).where(Review.patient_id == patient_id, Review.modality == modality)
                           .order_by(Review.version.desc()).limit(1)).first()


def record_review(store: CaseStore, patient_id: str, modality: str, verdict: str, comment: str, flags: Iterable[str] | None,
                  signed_off: bool, user: str, expected_version: int, regions: Iterable[str] | None = None) -> ReviewEntry:
    """Append version ``expected_version + 1`` of the (patient, modality) verdict and an audit event.

    ``expected_version`` is the version the reviewer saw (0: none yet). Raises ``ReviewConflict`` when the
    latest version differs, or when a concurrent save of the same version wins; ``NotFoundError`` for an
    unknown patient; ``PathReviewError`` for invalid input. ``regions``: ids of slide regions of this patient the verdict
    refers to. On any error nothing is written."""
    _validate(modality, verdict, comment, user, expected_version)
    clean_flags = _clean_flags(flags)
    user = user.strip()
    try:
        with store.session() as s:
            if s.get(Patient, patient_id) is None:
                raise NotFoundError(f"no patient {patient_id!r} in this workspace")
            region_ids = _check_regions(s, patient_id, regions)
            latest = _latest(s, patient_id, modality)
            if (latest.version if latest else 0) != expected_version:
                raise ReviewConflict(patient_id, modality, user, expected_version, ReviewEntry.from_row(latest) if latest else None)
            row = Review(patient_id=patient_id, modality=modality, verdict=verdict, comment=comment, flags=list(clean_flags),
                         signed_off=bool(signed_off), user=user, version=expected_version + 1, regions=region_ids or None)
            s.add(row)
            s.flush()  # the unique index refuses a version a concurrent writer has just taken
            s.add(AuditEvent(user=user, action="review_saved", target=patient_id,
                             detail={"modality": modality, "verdict": verdict, "version": row.version,
                                     "signed_off": bool(signed_off), "flags": list(clean_flags),
                                     **({"regions": region_ids} if region_ids else {})}))
            s.flush()
            entry = ReviewEntry.from_row(row)
    except IntegrityError:
        with store.session() as s:
            latest = _latest(s, patient_id, modality)
            raise ReviewConflict(patient_id, modality, user, expected_version,
                                 ReviewEntry.from_row(latest) if latest else None) from None
    except OperationalError as exc:  # e.g. SQLite still locked by another writer after the busy timeout
        raise PathReviewError(f"the case store did not accept the verdict ({exc.orig}); nothing was saved — "
                             "try again in a moment") from exc
    return entry


def _latest_versions(patient_id: str) -> Subquery:
    return (select(Review.modality, func.max(Review.version).label("version"))
            .where(Review.patient_id == patient_id).group_by(Review.modality).subquery())


def current_reviews(store: CaseStore, patient_id: str) -> dict[str, ReviewEntry]:
    """The latest verdict per modality (modalities without one are absent)."""
    latest = _latest_versions(patient_id)
    with store.session() as s:
        rows = s.scalars(select(Review).join(latest, (Review.modality == latest.c.modality) & (Review.version == latest.c.version))
                         .where(Review.patient_id == patient_id))
        entries = {r.modality: ReviewEntry.from_row(r) for r in rows}
    return {m: entries[m] for m in MODALITIES if m in entries}


def review_history(store: CaseStore, patient_id: str) -> list[ReviewEntry]:
    """Every saved verdict of the case, all modalities, newest first."""
    with store.session() as s:
        rows = s.scalars(select(Review).where(Review.patient_id == patient_id).order_by(Review.id.desc()))
        return [ReviewEntry.from_row(r) for r in rows]


def latest_versions(current: dict[str, ReviewEntry]) -> dict[str, int]:
    """Modality -> latest version (0 when none) of ``current_reviews``: what a review form keeps as its expected versions."""
    return {m: current[m].version if m in current else 0 for m in MODALITIES}


def review_versions(store: CaseStore, patient_id: str) -> dict[str, int]:
    """``latest_versions`` of the case as stored now."""
    return latest_versions(current_reviews(store, patient_id))


def review_status(current: dict[str, ReviewEntry], modalities_with_data: set[str]) -> str:
    """The case's review status, as the cohort worklist computes it in SQL (core.store.cohort): unreviewed, in review,
    or signed off (every latest verdict signed off, and a verdict for every modality the case has data for)."""
    if not current:
        return "unreviewed"
    if all(e.signed_off for e in current.values()) and modalities_with_data <= set(current):
        return "signed off"
    return "in review"


def latest_by_reviewer(history: list[ReviewEntry], modality: str) -> dict[str, ReviewEntry]:
    """Each reviewer's own latest verdict on ``modality``, from ``review_history`` (newest first), in order of recency."""
    latest: dict[str, ReviewEntry] = {}
    for entry in history:
        if entry.modality == modality and entry.user not in latest:
            latest[entry.user] = entry
    return latest


@dataclass(frozen=True)
class Consensus:
    """Where the reviewers of one modality stand: each reviewer's latest signed-off verdict (reviewer -> verdict).
    A verdict a reviewer saved later without signing off does not replace their signed-off one: only sign-off counts."""

    modality: str
    verdicts: dict[str, str]

    @property
    def agreed(self) -> bool | None:
        """True when two or more reviewers signed off the same verdict, False when they differ, None with fewer than two."""
        return None if len(self.verdicts) < 2 else len(set(self.verdicts.values())) == 1

    def line(self) -> str:
        if not self.verdicts:
            return "no signed-off verdict yet"
        each = ", ".join(f"{user}: {verdict}" for user, verdict in self.verdicts.items())
        if self.agreed is None:
            return f"one reviewer signed off ({each}); a second opinion is still open"
        if self.agreed:
            return f"{len(self.verdicts)} reviewers agree: {next(iter(self.verdicts.values()))} ({each})"
        return f"reviewers disagree ({each})"


def consensus(history: list[ReviewEntry], modality: str) -> Consensus:
    """The ``Consensus`` of ``modality`` from ``review_history`` (newest first)."""
    verdicts: dict[str, str] = {}
    for entry in history:
        if entry.modality == modality and entry.signed_off and entry.user not in verdicts:
            verdicts[entry.user] = entry.verdict
    return Consensus(modality, dict(sorted(verdicts.items())))
