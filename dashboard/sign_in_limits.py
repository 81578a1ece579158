"""Limits on password guessing: failed sign-ins counted per client address and user name, per client address, and a
back-off per account that grows with its failures from anywhere.

Keys use the normalised user name (``core.auth.users.normalised_username``), so ``"reviewer2 "`` and ``"Reviewer2"``
count as ``reviewer2``. Only failures count: a crowd of reviewers behind one address signs in freely. A success
clears the account's back-off and that address's count for the name. Kept in the process's memory (each app
process limits on its own; see docs/security.md).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass

WINDOW_S = 60.0
PER_ADDRESS_AND_NAME = 10  # failures per minute for one name from one address: one person mistyping is far below
PER_ADDRESS = 30  # failures per minute from one address over all names: slows guessing across many accounts
BACKOFF_AFTER = 20  # consecutive failures of an account, from any address, before it backs off
BACKOFF_MAX_S = 300.0  # the longest wait a distributed guesser can impose on an account's owner
MAX_TRACKED_KEYS = 50_000  # bounded memory whatever names and addresses a guesser invents


@dataclass
class _Account:
    failures: int = 0
    last_failure: float = 0.0


class SignInLimits:
    def __init__(self, clock=time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._recent: dict[str, deque[float]] = {}
        self._accounts: dict[str, _Account] = {}

    def _count(self, key: str, now: float) -> int:
        times = self._recent.get(key)
        while times and now - times[0] > WINDOW_S:
            times.popleft()
        return len(times) if times else 0

    def refusal(self, address: str, name: str) -> str | None:
        """Why an attempt now must be refused (the caller answers 429), or None."""
        now = self._clock()
        with self._lock:
            if self._count(f"{address}|{name}", now) >= PER_ADDRESS_AND_NAME:
                return "too many failed sign-ins for this user name from this address"
            if self._count(address, now) >= PER_ADDRESS:
                return "too many failed sign-ins from this address"
            account = self._accounts.get(name)
            if account and account.failures >= BACKOFF_AFTER:
                wait = min(BACKOFF_MAX_S, 2.0 ** (account.failures - BACKOFF_AFTER))
                if now - account.last_failure < wait:
                    return "too many failed sign-ins for this account"
        return None

    def failed(self, address: str, name: str) -> None:
        now = self._clock()
        with self._lock:
            if len(self._recent) > MAX_TRACKED_KEYS or len(self._accounts) > MAX_TRACKED_KEYS:
                self._forget_old(now)
            for key in (f"{address}|{name}", address):
                self._recent.setdefault(key, deque()).append(now)
            account = self._accounts.setdefault(name, _Account())
            account.failures += 1
            account.last_failure = now

    def succeeded(self, address: str, name: str) -> None:
        with self._lock:
            self._accounts.pop(name, None)
            self._recent.pop(f"{address}|{name}", None)

    def _forget_old(self, now: float) -> None:
        self._recent = {k: v for k, v in self._recent.items() if self._count(k, now)}
        self._accounts = {k: a for k, a in self._accounts.items() if now - a.last_failure < BACKOFF_MAX_S}
