"""Accounts in the case store: who may sign in, and with which role. Passwords are kept only as salted hashes."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError
from werkzeug.security import check_password_hash, generate_password_hash

from core.errors import NotFoundError, PathReviewError
from core.store.database import CaseStore, rows_matched
from core.store.schema import User

# Each role can do what the one before it can.
ROLES = ("viewer", "reviewer", "admin")
MIN_PASSWORD_CHARS = 8
USERNAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")
# A hash compared against when the user does not exist, so a wrong name costs the same time as a wrong password.
_ABSENT_USER_HASH = generate_password_hash("no such user")


@dataclass(frozen=True)
class Account:
    username: str
    role: str
    created_at: datetime

    def may(self, role: str) -> bool:
        """Whether this account has ``role`` or a role above it."""
        return ROLES.index(self.role) >= ROLES.index(role)


def _account(user: User) -> Account:
    return Account(user.username, user.role, user.created_at)


def _check(username: str, password: str | None, role: str | None) -> None:
    if not USERNAME_PATTERN.match(username or ""):
        raise PathReviewError("a user name is 1-64 letters, digits, '.', '_', '@' or '-', starting with a letter or digit")
    if password is not None and len(password) < MIN_PASSWORD_CHARS:
        raise PathReviewError(f"a password needs at least {MIN_PASSWORD_CHARS} characters")
    if role is not None and role not in ROLES:
        raise PathReviewError(f"role must be one of {', '.join(ROLES)}")


def add_user(store: CaseStore, username: str, password: str, role: str) -> Account:
    _check(username, password, role)
    try:
        with store.session() as s:
            user = User(username=username, password_hash=generate_password_hash(password), role=role)
            s.add(user)
            s.flush()
            return _account(user)
    except IntegrityError as exc:
        raise PathReviewError(f"user {username!r} already exists") from exc


def remove_user(store: CaseStore, username: str) -> None:
    with store.session() as s:
        if rows_matched(s.execute(delete(User).where(User.username == username))) == 0:
            raise NotFoundError(f"no user {username!r}")


def set_password(store: CaseStore, username: str, password: str) -> None:
    _check(username, password, None)
    with store.session() as s:
        user = s.scalar(select(User).where(User.username == username))
        if user is None:
            raise NotFoundError(f"no user {username!r}")
        user.password_hash = generate_password_hash(password)


def list_users(store: CaseStore) -> list[Account]:
    with store.session() as s:
        return [_account(u) for u in s.scalars(select(User).order_by(User.username))]


def find_user(store: CaseStore, username: str) -> Account | None:
    with store.session() as s:
        user = s.scalar(select(User).where(User.username == username))
        return _account(user) if user else None


def authenticate(store: CaseStore, username: str, password: str) -> Account | None:
    """The account when the password matches; None otherwise (unknown user and wrong password look the same)."""
    with store.session() as s:
        user = s.scalar(select(User).where(User.username == (username or "")))
        if user is None:
            check_password_hash(_ABSENT_USER_HASH, password or "")
            return None
        return _account(user) if check_password_hash(user.password_hash, password or "") else None


def admin_count(store: CaseStore) -> int:
    with store.session() as s:
        return s.scalar(select(func.count()).select_from(User).where(User.role == "admin")) or 0
