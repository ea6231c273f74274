"""Who may use the review page: password hashes (scrypt), sessions, the login rate limit, and
which addresses count as the loopback (where no login is needed)."""

from __future__ import annotations

import base64
import collections
import hashlib
import hmac
import ipaddress
import secrets
import threading
import time
from typing import Mapping, Optional

SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1
COOKIE = "nvr_session"
SESSION_SECONDS = 7 * 86400  # a session ends this long after its login (as its cookie does)
PASSWORD_CHECKS_AT_ONCE = 2  # each scrypt check takes 16 MiB and ~60 ms of a core
LOGIN_FAILURES = 5  # failed logins from one address within LOGIN_WINDOW_SECONDS ...
LOGIN_WINDOW_SECONDS = 300.0  # ... refuse the next ones (429) until the oldest is this old
# verified when the user is unknown, so an unknown name takes as long as a wrong password
_DUMMY = None


def hash_password(password: str) -> str:
    """``scrypt$n$r$p$salt$hash`` (salt and hash in base64): what WEB_USERS holds."""
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P, dklen=32)
    b64 = base64.b64encode
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${b64(salt).decode()}${b64(digest).decode()}"


def verify(password: str, stored: str) -> bool:
    """Whether ``password`` matches the hash ``stored`` (compared in constant time); False for a
    malformed hash."""
    try:
        kind, n, r, p, salt, digest = stored.split("$")
        if kind != "scrypt":
            return False
        n, r, p = int(n), int(r), int(p)
        salt_b, want = base64.b64decode(salt, validate=True), base64.b64decode(digest, validate=True)
        # bounds keep a hand-edited hash from taking the server's memory (scrypt needs 128*r*n bytes)
        if not (2 <= n <= 2**20 and n & (n - 1) == 0 and 1 <= r <= 32 and 1 <= p <= 16 and want):
            return False
        got = hashlib.scrypt(
            password.encode(), salt=salt_b, n=n, r=r, p=p, dklen=len(want), maxmem=256 * r * n + 2**20
        )
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(got, want)


def check_login(users: Mapping[str, str], user: str, password: str) -> bool:
    """Whether ``user`` is in ``users`` with this password; as slow for an unknown user."""
    global _DUMMY
    stored = users.get(user) if isinstance(user, str) else None
    if stored is None:
        if _DUMMY is None:
            _DUMMY = hash_password(secrets.token_urlsafe(16))
        verify(password, _DUMMY)
        return False
    return verify(password, stored)


def is_loopback(host: str) -> bool:
    """Whether binding ``host`` listens only on this machine: "localhost" or a loopback address
    (127.0.0.0/8, ::1); any other name or address (0.0.0.0, "::", a LAN address) is not."""
    h = host.strip().strip("[]").lower()
    if h == "localhost":
        return True
    try:
        return ipaddress.ip_address(h).is_loopback
    except ValueError:
        return False


class Sessions:
    """Logged-in browsers: random tokens (the ``nvr_session`` cookie) -> user, in memory, each ending
    SESSION_SECONDS after its login however much it is used (a stolen token does not live on); a
    restart of the server logs everyone out."""

    def __init__(self, seconds: float = SESSION_SECONDS):
        self.seconds = seconds
        self._by_token: dict[str, tuple[str, float]] = {}
        self._lock = threading.Lock()

    def start(self, user: str) -> str:
        """A new session for ``user``: its token."""
        token = secrets.token_urlsafe(32)
        with self._lock:
            self._expire(time.monotonic())
            self._by_token[token] = (user, time.monotonic() + self.seconds)
        return token

    def user(self, token: Optional[str]) -> Optional[str]:
        """The user of a live session, else None."""
        if not token:
            return None
        now = time.monotonic()
        with self._lock:
            found = self._by_token.get(token)
            if found is None:
                return None
            user, until = found
            if until < now:
                del self._by_token[token]
                return None
            return user

    def end(self, token: Optional[str]) -> None:
        with self._lock:
            self._by_token.pop(token or "", None)

    def end_user(self, user: str) -> None:
        """End every session of ``user`` (removed from WEB_USERS, or its password changed)."""
        with self._lock:
            for token in [t for t, (u, _) in self._by_token.items() if u == user]:
                del self._by_token[token]

    def _expire(self, now: float) -> None:
        for token in [t for t, (_, until) in self._by_token.items() if until < now]:
            del self._by_token[token]


class LoginLimiter:
    """Logins per client address: LOGIN_FAILURES attempts within LOGIN_WINDOW_SECONDS that did not
    succeed refuse the next ones, right or wrong, until the oldest has aged out of the window.

    An attempt is counted when it begins, before its password is checked: a burst of parallel
    attempts gets LOGIN_FAILURES tries, not one per thread. At most PASSWORD_CHECKS_AT_ONCE checks
    run at a time (``checking``), so a burst cannot take all the memory and cores either."""

    def __init__(self, failures: int = LOGIN_FAILURES, window: float = LOGIN_WINDOW_SECONDS):
        self.failures, self.window = failures, window
        self._seen: dict[str, collections.deque] = {}
        self._lock = threading.Lock()
        self.checking = threading.BoundedSemaphore(PASSWORD_CHECKS_AT_ONCE)

    def begin(self, address: str) -> int:
        """Count an attempt from ``address``: 0 if it may go on, else the seconds until one may."""
        now = time.monotonic()
        with self._lock:
            if len(self._seen) > 10000:  # a flood of addresses must not grow this without end
                for a in [a for a, t in self._seen.items() if not t or now - t[-1] > self.window]:
                    del self._seen[a]
            times = self._seen.setdefault(address, collections.deque())
            while times and now - times[0] > self.window:
                times.popleft()
            if len(times) >= self.failures:
                return max(1, int(times[0] + self.window - now + 0.999))
            times.append(now)
            return 0

    def succeeded(self, address: str) -> None:
        with self._lock:
            self._seen.pop(address, None)
