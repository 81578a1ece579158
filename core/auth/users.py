"""Accounts in the case store: who may sign in, and with which role. Passwords are kept only as salted hashes."""

from __future__ import annotations

import re
import secrets
import unicodedata
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
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
    session_version: str = ""

    def may(self, role: str) -> bool:
        """Whether this account has ``role`` or a role above it."""
        return ROLES.index(self.role) >= ROLES.index(role)


def _account(user: User) -> Account:
    return Account(user.username, user.role, user.created_at, user.session_version or "")


def new_session_version() -> str:
    return secrets.token_hex(16)


def normalised_username(typed: str) -> str:
    """The form every spelling of one user name shares (spaces around it, letter case, Unicode compatibility forms):
    what sign-in limits count, so that a name typed differently is still the same account's attempt."""
    return unicodedata.normalize("NFKC", typed or "").strip().casefold()[:64]


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
            user = User(username=username, password_hash=generate_password_hash(password), role=role,
                        session_version=new_session_version())
            s.add(user)
            s.flush()
            return _account(user)
    except IntegrityError as exc:
        raise PathReviewError(f"user {username!r} already exists") from exc


def remove_user(store: CaseStore, username: str) -> None:
    with store.session() as s:
        if rows_matched(s.execute(delete(User).where(User.username == username))) == 0:
            raise NotFoundError(f"no user {username!r}")


def _existing(s: Session, username: str) -> User:
    user = s.scalar(select(User).where(User.username == username))
    if user is None:
        raise NotFoundError(f"no user {username!r}")
    return user


def set_password(store: CaseStore, username: str, password: str) -> None:
    """A new password ends every session of the account."""
    _check(username, password, None)
    with store.session() as s:
        user = _existing(s, username)
        user.password_hash = generate_password_hash(password)
        user.session_version = new_session_version()


def set_role(store: CaseStore, username: str, role: str) -> Account:
    """A new role ends every session of the account: the next sign-in carries the new role."""
    _check(username, None, role)
    with store.session() as s:
        user = _existing(s, username)
        user.role = role
        user.session_version = new_session_version()
        return _account(user)


def end_sessions(store: CaseStore, username: str) -> None:
    """Sign-out: every session of the account ends, on every browser (a copied cookie included)."""
    with store.session() as s:
        user = s.scalar(select(User).where(User.username == username))
        if user is not None:
            user.session_version = new_session_version()


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
