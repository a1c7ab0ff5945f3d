"""The users file: username -> tenant, groups, password hash."""

from __future__ import annotations

import logging
import os
import tempfile
import threading
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from rag_app.access.permissions import NAME_RE, Principal
from rag_app.errors import AccessDenied, ConfigError

audit = logging.getLogger("rag_app.audit")


class UserRecord(BaseModel):
    model_config = ConfigDict(extra="forbid")

    tenant: str
    groups: list[str] = Field(default_factory=list)
    display_name: str | None = None
    title: str | None = None  # job title, for display
    password_hash: str | None = None


class UsersFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    users: dict[str, UserRecord]


class UserDirectory:
    def __init__(self, users: dict[str, UserRecord], path: Path | None = None) -> None:
        self._users = users
        self.path = path
        self._rewrite_lock = threading.Lock()
        for name, record in users.items():
            try:
                self._principal(name, record)
            except AccessDenied as exc:
                raise ConfigError(f"{path or 'users'}: user {name!r}: {exc}") from exc

    @classmethod
    def load(cls, path: Path) -> UserDirectory:
        try:
            raw = yaml.safe_load(path.read_text(encoding="utf-8"))
        except FileNotFoundError as exc:
            raise ConfigError(f"users file {path} not found (set RAG_USERS_FILE)") from exc
        except yaml.YAMLError as exc:
            raise ConfigError(f"users file {path} is not valid YAML: {exc}") from exc
        try:
            parsed = UsersFile.model_validate(raw or {"users": {}})
        except ValidationError as exc:
            raise ConfigError(f"users file {path} is invalid: {exc}") from exc
        return cls(parsed.users, path)

    @staticmethod
    def _principal(name: str, record: UserRecord) -> Principal:
        if not NAME_RE.match(name):
            raise AccessDenied(f"invalid user name {name!r}")
        return Principal(
            tenant=record.tenant,
            user_id=name,
            groups=frozenset(record.groups),
            display_name=record.display_name,
        )

    def names(self) -> list[str]:
        return sorted(self._users)

    def record(self, name: str) -> UserRecord:
        try:
            return self._users[name]
        except KeyError:
            raise AccessDenied(
                f"unknown user {name!r}; known users: {', '.join(self.names())}"
            ) from None

    def principal(self, name: str) -> Principal:
        return self._principal(name, self.record(name))

    def authenticate(self, name: str, password: str) -> bool:
        """True iff the user exists and the password matches its hash (no hash: no login).

        Every 'no' costs what a real check costs (an unknown user, a user without a hash and
        a password with control characters are checked against a dummy hash), so timing does
        not reveal which user names exist. A hash made with an older cost is replaced after
        a successful login (`_rehash`)."""
        from rag_app.auth import (
            burn_password_check,
            needs_rehash,
            password_problem,
            verify_password,
        )

        record = self._users.get(name) if isinstance(name, str) else None
        encoded = record.password_hash if record is not None else None
        if record is None or not encoded or password_problem(password):
            burn_password_check()
            return False
        ok = verify_password(password, encoded)
        if needs_rehash(encoded):
            # The old hash was cheaper than a current one: pay the difference either way.
            if ok:
                self._rehash(name, record, password)
            else:
                burn_password_check()
        return ok

    def _rehash(self, name: str, record: UserRecord, password: str) -> None:
        """Store a current-cost hash: in memory always, and in the users file (atomically,
        only the hash is replaced) when that file is writable and still holds the old hash."""
        from rag_app.auth import hash_password

        old = record.password_hash or ""
        new = hash_password(password)
        with self._rewrite_lock:
            if record.password_hash != old:
                return  # a parallel login upgraded it already
            record.password_hash = new
            if self.path is None:
                return
            try:
                written = self._replace_in_file(old, new)
            except OSError as exc:
                audit.warning(
                    "password hash of %r upgraded in memory only: cannot rewrite %s (%s)",
                    name,
                    self.path,
                    exc,
                )
                return
        if written:
            audit.info("password hash of %r upgraded to the current cost in %s", name, self.path)
        else:
            audit.warning(
                "password hash of %r upgraded in memory only: %s is read-only or no longer "
                "holds the old hash",
                name,
                self.path,
            )

    def _replace_in_file(self, old: str, new: str) -> bool:
        path = self.path
        assert path is not None
        if not old or not os.access(path, os.W_OK) or not os.access(path.parent, os.W_OK):
            return False
        text = path.read_text(encoding="utf-8")
        if text.count(old) != 1:
            return False
        mode = path.stat().st_mode & 0o777
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(text.replace(old, new))
                f.flush()
                os.fsync(f.fileno())
            os.chmod(tmp, mode)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return True

    def tenants(self) -> list[str]:
        return sorted({r.tenant for r in self._users.values()})
