"""The users file: username -> tenant, groups (and later a password hash)."""

from __future__ import annotations

from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from rag_app.errors import AccessDenied, ConfigError
from rag_app.retrieval.permissions import NAME_RE, Principal


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
        return Principal(tenant=record.tenant, user_id=name, groups=frozenset(record.groups))

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
        """True iff the user exists and the password matches its hash (no hash: no login)."""
        from rag_app.auth import verify_password

        record = self._users.get(name)
        return record is not None and verify_password(password, record.password_hash)

    def tenants(self) -> list[str]:
        return sorted({r.tenant for r in self._users.values()})
