"""Ingest files uploaded by a user (browser upload, notebooks): always into the uploader's
tenant, with an ACL the uploader may grant (never wider than what the uploader holds)."""

from __future__ import annotations

import re
import shutil
from collections.abc import Sequence
from pathlib import Path

from rag_app.access.permissions import Principal, restrict_grants
from rag_app.errors import RagAppError, RejectedInput
from rag_app.ingest.loaders import SUPPORTED_SUFFIXES
from rag_app.ingest.pipeline import Ingestor, IngestReport, ProgressFactory, Rejection

SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")


class InvalidGrant(RagAppError):
    """The readers chosen for an upload are not valid ACL tokens (or there are none)."""


def checked_grants(principal: Principal, acl: Sequence[str]) -> list[str]:
    """The ACL tokens for an upload: valid, non-empty, and only what `principal` may grant
    (`AccessDenied` for a token it may not grant, `InvalidGrant` for a malformed one)."""
    requested = [acl] if isinstance(acl, str) else list(acl or [])
    if all(isinstance(t, str) and not t.strip() for t in requested):  # none, or blanks
        raise InvalidGrant(
            "choose at least one reader for the uploaded documents "
            f"(for example user:{principal.user_id})"
        )
    try:
        return restrict_grants(principal, requested)
    except ValueError as exc:  # a malformed token, e.g. '*' or 'group:*'
        raise InvalidGrant(f"invalid grant: {exc}") from None


def safe_filename(name: str) -> str:
    base = Path(name).name
    cleaned = SAFE_NAME.sub("_", base).strip("._") or "upload"
    return cleaned[:120]


def ingest_uploads(
    ingestor: Ingestor,
    principal: Principal,
    files: Sequence[Path],
    *,
    acl: Sequence[str],
    upload_root: Path,
    progress: ProgressFactory | None = None,
) -> IngestReport:
    """Copy `files` under ``upload_root/<tenant>/<user>/`` and ingest them with tenant forced
    to the principal's and the requested ACL checked against what the principal may grant."""
    if principal.is_anonymous:
        raise RagAppError("anonymous users cannot upload documents")
    tokens = checked_grants(principal, acl)
    target = upload_root / principal.tenant / str(principal.user_id)
    target.mkdir(parents=True, exist_ok=True)
    report = IngestReport()
    stored: list[Path] = []
    for f in files:
        src = Path(f)
        name = safe_filename(src.name)
        if Path(name).suffix.lower() not in SUPPORTED_SUFFIXES:
            supported = " ".join(sorted(SUPPORTED_SUFFIXES))
            report.rejected.append(
                Rejection(src.name, f"unsupported file type; supported: {supported}")
            )
            continue
        dest = target / name
        try:
            shutil.copyfile(src, dest)
        except OSError as exc:
            report.rejected.append(Rejection(src.name, f"cannot store upload: {exc}"))
            continue
        stored.append(dest)
    if stored:
        inner = ingestor.ingest(
            stored,
            overrides={
                "tenant": principal.tenant,
                "acl": tokens,
                "uploaded_by": str(principal.user_id),
            },
            progress=progress,
            # sources read uploads/<tenant>/<user>/<file>, never the server's data path
            source_root=upload_root,
            origin="upload",
        )
        inner.rejected = [*report.rejected, *inner.rejected]
        return inner
    if not report.rejected:
        raise RejectedInput("no files to ingest")
    return report
