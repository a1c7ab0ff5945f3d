"""Login hardening: cost, timing, control characters, rehash on login, throttling."""

from __future__ import annotations

import base64
import hashlib
import logging
import os
import shutil
from pathlib import Path

import pytest

from rag_app.auth import (
    DUMMY_HASH,
    LoginThrottle,
    PasswordError,
    hash_password,
    needs_rehash,
    verify_password,
)
from rag_app.errors import RagAppError
from rag_app.users import UserDirectory

ROOT = Path(__file__).resolve().parents[1]


def legacy_hash(password: str) -> str:
    """A hash at the previous cost (N=2**14), as users files made before the upgrade hold."""
    salt = os.urandom(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=2**14, r=8, p=1, dklen=32)
    b64 = base64.b64encode
    return f"scrypt$16384$8$1${b64(salt).decode()}${b64(digest).decode()}"


@pytest.fixture
def users_file(tmp_path: Path) -> Path:
    """The demo users file with every hash at the previous cost."""
    path = tmp_path / "users.yaml"
    shutil.copyfile(ROOT / "demo/users.yaml", path)
    text = path.read_text()
    for name in UserDirectory.load(path).names():
        current = UserDirectory.load(path).record(name).password_hash
        assert current is not None
        text = text.replace(current, legacy_hash(f"{name}-demo"))
    path.write_text(text)
    assert text.count("scrypt$16384$") == 8
    return path


def test_new_hashes_use_the_owasp_scrypt_cost() -> None:
    h = hash_password("correct horse")
    scheme, n, r, p, _salt, _digest = h.split("$")
    assert (scheme, int(n), int(r), int(p)) == ("scrypt", 2**17, 8, 1)
    assert verify_password("correct horse", h) and not needs_rehash(h)
    assert needs_rehash("scrypt$16384$8$1$AAAAAAAAAAAAAAAAAAAAAA==$AAAA")
    assert not verify_password("anything", DUMMY_HASH)


def test_control_characters_are_rejected() -> None:
    h = hash_password("secret")
    # OpenSSL's scrypt stops at NUL: without the check these verified as "secret"
    assert not verify_password("secret\x00", h)
    assert not verify_password("secret\x00anything", h)
    for bad in ("secret\x00", "tab\there", "line\n", "del\x7f", "", "x" * 1025):
        with pytest.raises(PasswordError):
            hash_password(bad)
    assert issubclass(PasswordError, RagAppError) and issubclass(PasswordError, ValueError)


def test_trailing_nul_is_not_the_real_password(users_file: Path) -> None:
    users = UserDirectory.load(users_file)
    assert not users.authenticate("alice", "alice-demo\x00")
    assert users.authenticate("alice", "alice-demo")


def test_every_failed_login_pays_for_a_full_cost_check(users_file: Path, monkeypatch) -> None:
    """Timing must not tell an unknown user from a wrong password: every 'no' runs scrypt at
    the current cost (asserted on the calls, not on timings, which a busy machine blurs)."""
    import rag_app.auth as auth

    users = UserDirectory.load(users_file)
    users.authenticate("alice", "alice-demo")  # upgrade alice's hash to the current cost
    real = auth._scrypt
    costs: list[int] = []

    def spy(password: str, salt: bytes, n: int, r: int, p: int, dklen: int) -> bytes:
        costs.append(n)
        return real(password, salt, n, r, p, dklen)

    monkeypatch.setattr(auth, "_scrypt", spy)
    cases = {
        "wrong password": ("alice", "wrong"),
        "unknown user": ("nobody-at-all", "wrong"),
        "old-cost hash": ("bob", "wrong"),
        "control character": ("alice", "bad\x00"),
        "non-string name": (None, "wrong"),
    }
    for case, (name, password) in cases.items():
        costs.clear()
        assert not users.authenticate(name, password), case  # type: ignore[arg-type]
        assert max(costs, default=0) == auth.N, (case, costs)


def test_old_hash_is_upgraded_on_login_in_the_file(users_file: Path, caplog) -> None:
    before = users_file.read_text()
    users = UserDirectory.load(users_file)
    with caplog.at_level(logging.INFO, logger="rag_app.audit"):
        assert users.authenticate("alice", "alice-demo")
    after = users_file.read_text()
    assert after.count("scrypt$131072$") == 1  # alice only
    assert before.splitlines()[0] == after.splitlines()[0]  # comments kept
    assert len(before.splitlines()) == len(after.splitlines())
    assert any("upgraded" in r.getMessage() for r in caplog.records)
    # the new file still logs everyone in, alice with her new hash
    reloaded = UserDirectory.load(users_file)
    assert reloaded.authenticate("alice", "alice-demo")
    assert reloaded.authenticate("bob", "bob-demo")
    assert not needs_rehash(reloaded.record("alice").password_hash)


def test_read_only_users_file_is_upgraded_in_memory_only(
    users_file: Path, caplog, monkeypatch
) -> None:
    users_file.chmod(0o444)
    real_access = os.access  # root may write anything: answer as for an ordinary user
    monkeypatch.setattr(
        "rag_app.users.os.access",
        lambda path, mode: False if mode & os.W_OK else real_access(path, mode),
    )
    before = users_file.read_text()
    users = UserDirectory.load(users_file)
    with caplog.at_level(logging.INFO, logger="rag_app.audit"):
        assert users.authenticate("carol", "carol-demo")
    assert users_file.read_text() == before
    assert not needs_rehash(users.record("carol").password_hash)
    assert any("in memory only" in r.getMessage() for r in caplog.records)


def test_file_that_changed_is_upgraded_in_memory_only(users_file: Path, caplog) -> None:
    users = UserDirectory.load(users_file)
    changed = users_file.read_text().replace(
        users.record("carol").password_hash or "", "scrypt$1$1$1$AA==$AA=="
    )
    users_file.write_text(changed)
    with caplog.at_level(logging.INFO, logger="rag_app.audit"):
        assert users.authenticate("carol", "carol-demo")
    assert users_file.read_text() == changed  # someone else's edit is not overwritten
    assert any("in memory only" in r.getMessage() for r in caplog.records)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_throttle_per_user_name_and_per_address() -> None:
    clock = Clock()
    t = LoginThrottle(max_per_user=3, max_per_address=5, window_s=60, clock=clock)
    for _ in range(3):
        _ticket, refused = t.begin("alice", "10.0.0.1")
        assert refused is None  # each attempt counts until it succeeds
    _, refused = t.begin("alice", "10.0.0.2")  # another address: the user name is locked
    assert refused is not None and refused.scope == "user"
    assert (
        refused.message == "Too many failed logins for user name 'alice'; try again in 1 min 0 s."
    )
    clock.now += 30
    _, refused = t.begin(" alice ", "10.0.0.3")
    assert refused is not None and 29 < refused.retry_after_s <= 30
    # the address limit counts every user name tried from it
    for name in ("bob", "carol"):
        assert t.begin(name, "10.0.0.1")[1] is None
    _, refused = t.begin("dave", "10.0.0.1")
    assert refused is not None and refused.scope == "address" and "10.0.0.1" in refused.message
    # the window slides: old failures expire
    clock.now += 31
    assert t.begin("alice", "10.0.0.9")[1] is None


def test_success_clears_the_user_but_not_the_address_history() -> None:
    clock = Clock()
    t = LoginThrottle(max_per_user=2, max_per_address=3, window_s=60, clock=clock)
    t.begin("alice", "a")
    ticket, _ = t.begin("alice", "a")
    t.succeeded("alice", "a", ticket)  # the successful attempt is taken back
    assert t.begin("alice", "a")[1] is None  # alice's count restarted
    assert t.begin("x", "a")[1] is None  # address: 1 failure + 2 pending
    assert t.begin("y", "a")[1] is not None  # the address keeps its failures: at its limit
