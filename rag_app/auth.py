"""Password hashing for the users file and login throttling.

* Hashes are scrypt from the standard library with the OWASP cost (N=2**17, r=8, p=1: about
  128 MiB and most of a second per check on a small CPU); never plain text. Hashes made with
  a lower cost still verify and are replaced on the next successful login (`needs_rehash`).
* Passwords are non-empty strings of at most `MAX_PASSWORD_CHARS` characters without control
  characters: OpenSSL's scrypt stops at a NUL byte, so ``"secret\\x00anything"`` would
  otherwise verify as ``"secret"``.
* `DUMMY_HASH` has the current cost: checking an unknown user against it costs the same time
  as checking a real one, so response times do not reveal which user names exist.
* `LoginThrottle` counts failed logins per user name and per client address in a sliding
  window and refuses further attempts (before any hash is computed) until the window frees.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import secrets
import threading
import time
import unicodedata
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass

from rag_app.errors import RagAppError

SCHEME = "scrypt"
N, R, P = 2**17, 8, 1  # OWASP Password Storage Cheat Sheet: scrypt N=2^17, r=8, p=1
SALT_BYTES, DKLEN = 16, 32
# scrypt needs 128 * r * N bytes (128 MiB at the current cost); OpenSSL's default cap is 32 MiB.
MAXMEM = 256 * 1024 * 1024
MAX_PASSWORD_CHARS = 1024
# At most this many hashes are computed at once (each holds 128 MiB while it runs).
_SCRYPT_SLOTS = threading.BoundedSemaphore(2)

# Same cost as a real hash; no password verifies against it (the digest is not one).
DUMMY_HASH = (
    f"{SCHEME}${N}${R}${P}${base64.b64encode(b'rag_app-dummy-salt').decode()}"
    f"${base64.b64encode(bytes(DKLEN)).decode()}"
)


class PasswordError(RagAppError, ValueError):
    """A password that cannot be used (empty, too long, control characters)."""


def password_problem(password: object) -> str | None:
    """Why `password` cannot be a password, or None if it can."""
    if not isinstance(password, str) or not password:
        return "password must be a non-empty string"
    if len(password) > MAX_PASSWORD_CHARS:
        return f"password is longer than {MAX_PASSWORD_CHARS} characters"
    if any(unicodedata.category(c) == "Cc" for c in password):
        return "password contains control characters (such as NUL, tab or newline)"
    return None


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int, dklen: int) -> bytes:
    with _SCRYPT_SLOTS:
        return hashlib.scrypt(
            password.encode("utf-8"), salt=salt, n=n, r=r, p=p, dklen=dklen, maxmem=MAXMEM
        )


def hash_password(password: str, *, salt: bytes | None = None) -> str:
    """An scrypt hash at the current cost, for ``password_hash:`` in the users file."""
    problem = password_problem(password)
    if problem:
        raise PasswordError(problem)
    salt = salt or secrets.token_bytes(SALT_BYTES)
    digest = _scrypt(password, salt, N, R, P, DKLEN)
    b64 = base64.b64encode
    return f"{SCHEME}${N}${R}${P}${b64(salt).decode()}${b64(digest).decode()}"


def _parse(encoded: str) -> tuple[int, int, int, bytes, bytes]:
    scheme, n, r, p, salt_b64, digest_b64 = encoded.split("$")
    if scheme != SCHEME:
        raise ValueError(f"unknown scheme {scheme!r}")
    salt = base64.b64decode(salt_b64, validate=True)
    digest = base64.b64decode(digest_b64, validate=True)
    if not digest:
        raise ValueError("empty digest")
    return int(n), int(r), int(p), salt, digest


def verify_password(password: str, encoded: str | None) -> bool:
    """Constant-time check; any malformed hash, and any password `password_problem`
    rejects, is a 'no'."""
    if not encoded or password_problem(password):
        return False
    try:
        n, r, p, salt, expected = _parse(encoded)
        actual = _scrypt(password, salt, n, r, p, len(expected))
    except (ValueError, TypeError, MemoryError):
        return False
    return hmac.compare_digest(actual, expected)


def needs_rehash(encoded: str | None) -> bool:
    """True unless `encoded` is a well-formed hash made with the current parameters."""
    if not encoded:
        return True
    try:
        n, r, p, salt, digest = _parse(encoded)
    except (ValueError, TypeError):
        return True
    return (n, r, p) != (N, R, P) or len(salt) < SALT_BYTES or len(digest) < DKLEN


def burn_password_check() -> None:
    """Spend what checking a real password costs (used for unknown users and for rejected
    input, so timing does not tell them apart)."""
    verify_password("not-a-password", DUMMY_HASH)


# -- login throttling -------------------------------------------------------------------------

MAX_FAILURES_PER_USER = 5
MAX_FAILURES_PER_ADDRESS = 20
THROTTLE_WINDOW_S = 300.0
_MAX_KEYS = 50_000  # memory bound: oldest keys are forgotten first


@dataclass(frozen=True)
class Throttled:
    """A refused login attempt: who is throttled and for how long."""

    scope: str  # "user" or "address"
    key: str
    retry_after_s: float

    @property
    def message(self) -> str:
        wait = max(1, int(self.retry_after_s + 0.999))
        minutes, seconds = divmod(wait, 60)
        when = f"{minutes} min {seconds} s" if minutes else f"{seconds} s"
        if self.scope == "user":
            who = f"for user name {self.key!r}"
        else:
            who = f"from your address ({self.key})"
        return f"Too many failed logins {who}; try again in {when}."


class LoginThrottle:
    """Failed logins per user name and per client address in a sliding window.

    `begin` checks both and, if neither is over its limit, counts the attempt as a failure
    up front (so parallel attempts cannot overtake the count); `succeeded` takes the attempt
    back and clears the user name's failures. The address keeps its other failures: logging
    in to one's own account must not reset the count of guesses made from that address.
    """

    def __init__(
        self,
        *,
        max_per_user: int = MAX_FAILURES_PER_USER,
        max_per_address: int = MAX_FAILURES_PER_ADDRESS,
        window_s: float = THROTTLE_WINDOW_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_per_user < 1 or max_per_address < 1 or window_s <= 0:
            raise ValueError("throttle limits and window must be positive")
        self.max_per_user = max_per_user
        self.max_per_address = max_per_address
        self.window_s = window_s
        self.clock = clock
        self._users: OrderedDict[str, deque[float]] = OrderedDict()
        self._addresses: OrderedDict[str, deque[float]] = OrderedDict()
        self._lock = threading.Lock()

    @staticmethod
    def _user_key(user: str) -> str:
        return user.strip()[:256]

    def _recent(self, table: OrderedDict[str, deque[float]], key: str, now: float) -> deque[float]:
        times = table.get(key)
        if times is None:
            times = deque()
            table[key] = times
            while len(table) > _MAX_KEYS:
                table.popitem(last=False)
        table.move_to_end(key)
        while times and times[0] <= now - self.window_s:
            times.popleft()
        return times

    def begin(self, user: str, address: str) -> tuple[float, Throttled | None]:
        """(attempt ticket, None) if the attempt may go ahead; (0, Throttled) if not."""
        user = self._user_key(user)
        now = self.clock()
        with self._lock:
            by_user = self._recent(self._users, user, now)
            by_address = self._recent(self._addresses, address, now)
            if len(by_user) >= self.max_per_user:
                return 0.0, Throttled("user", user, by_user[0] + self.window_s - now)
            if len(by_address) >= self.max_per_address:
                return 0.0, Throttled("address", address, by_address[0] + self.window_s - now)
            by_user.append(now)
            by_address.append(now)
            return now, None

    def succeeded(self, user: str, address: str, ticket: float) -> None:
        user = self._user_key(user)
        with self._lock:
            self._users.pop(user, None)
            times = self._addresses.get(address)
            if times is not None:
                with contextlib.suppress(ValueError):  # already aged out
                    times.remove(ticket)
