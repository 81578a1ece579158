"""The audit trail: an append-only record of who opened, edited, exported, reviewed or signed in, and when.

Rows are only ever inserted; nothing in the program updates or deletes them."""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select

from core.store.database import CaseStore
from core.store.schema import AuditEvent

ACTIONS = ("login", "login_failed", "logout", "case_open", "what_if", "export", "review_saved", "annotation_saved",
           "annotation_deleted")


@dataclass(frozen=True)
class AuditEntry:
    at: datetime
    user: str
    action: str
    target: str
    detail: dict


def record_event(store: CaseStore, user: str, action: str, target: str = "", detail: dict | None = None) -> None:
    with store.session() as s:
        s.add(AuditEvent(user=(user or "")[:64], action=action[:32], target=(target or "")[:128], detail=detail or {}))


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
    """The whole trail, oldest first, as CSV (time in UTC ISO 8601; detail as JSON)."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["time_utc", "user", "action", "target", "detail"])
    for e in reversed(audit_events(store, limit=None)):
        writer.writerow([e.at.isoformat(), e.user, e.action, e.target, json.dumps(e.detail, sort_keys=True)])
    return out.getvalue()
