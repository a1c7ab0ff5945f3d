"""Errors a user can act on. Each message names the problem and, where possible, the fix."""

from __future__ import annotations


class RagAppError(Exception):
    """Base class for errors shown to users (the CLI prints the message, not a traceback)."""


class ConfigError(RagAppError):
    """Settings or environment are inconsistent."""


class FilterError(RagAppError):
    """A metadata filter is malformed, uses an unknown operator or field, or is not allowed."""


class AccessDenied(RagAppError):
    """The principal cannot be resolved or is not allowed to do this."""


class StoreError(RagAppError):
    """The vector store is unreachable or rejected an operation."""


class DimensionMismatchError(StoreError):
    """A vector's length differs from the collection's dimension."""


class RejectedInput(RagAppError):
    """One input file (or one record of it) cannot be ingested."""

    def __init__(self, reason: str, *, location: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.location = location


class MissingPackageError(RagAppError):
    """A package rag_app depends on is not installed (a broken installation)."""

    def __init__(self, feature: str, package: str) -> None:
        super().__init__(
            f"{feature} needs the '{package}' package, a dependency of rag_app that is not "
            f"installed. Install it with: pip install '{package}'"
        )
