"""The audit trail: an append-only record of who opened, edited, exported, reviewed or signed in, and when.

Rows are only ever inserted; nothing in the program updates or deletes them."""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError

from core.errors import AuditUnavailable
from core.store.database import CaseStore
from core.store.schema import AuditEvent

ACTIONS = ("login", "login_failed", "login_limited", "logout", "case_open", "patient_open", "report_open", "slide_open", "report_read",
           "thumbnail", "what_if", "export", "review_saved",
           "annotation_saved", "annotation_deleted")
# A spreadsheet runs a cell that starts with one of these as a formula (OWASP, CSV injection).
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


@dataclass(frozen=True)
class AuditEntry:
    at: datetime
    user: str
    action: str
    target: str
    detail: dict


def record_event(store: CaseStore, user: str, action: str, target: str = "", detail: dict | None = None) -> None:
    """Append one row; ``AuditUnavailable`` when it cannot be written, so the caller does not do what it would record."""
    try:
        with store.session() as s:
            s.add(AuditEvent(user=(user or "")[:64], action=action[:32], target=(target or "")[:128], detail=detail or {}))
    except (SQLAlchemyError, OSError) as exc:
        raise AuditUnavailable("the audit trail could not be written (the database is busy or its disk is full); "
                               "nothing was done, try again") from exc


def spreadsheet_safe(cell: str) -> str:
    """A cell a spreadsheet shows as text: one that would start a formula gets a leading apostrophe (OWASP)."""
    return "'" + cell if cell.startswith(FORMULA_STARTS) else cell


def audit_events(store: CaseStore, limit: int | None = 1000, action: str | None = None, user: str | None = None) -> list[AuditEntry]:
    """Newest first."""
    query = select(AuditEvent).order_by(AuditEvent.id.desc())
    if action:
        query = query.where(AuditEvent.action == action)
    if user:
        query = query.where(AuditEvent.user == user)
    if limit:
        query = query.limit(limit)
    with store.session() as s:
        return [AuditEntry(e.at, e.user, e.action, e.target, dict(e.detail or {})) for e in s.scalars(query)]


def audit_csv(store: CaseStore) -> str:
    """The whole trail, oldest first, as CSV (time in UTC ISO 8601; detail as JSON); cells that a spreadsheet would run
    as a formula are neutralised."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["time_utc", "user", "action", "target", "detail"])
    for e in reversed(audit_events(store, limit=None)):
        row = [e.at.isoformat(), e.user, e.action, e.target, json.dumps(e.detail, sort_keys=True)]
        writer.writerow([spreadsheet_safe(cell) for cell in row])
    return out.getvalue()
