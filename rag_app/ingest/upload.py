"""Ingest files uploaded by a user (browser upload, notebooks): always into the uploader's
tenant, with an ACL the uploader may grant (never wider than what the uploader holds)."""

from __future__ import annotations

import re
import shutil
from collections.abc import Sequence
from pathlib import Path

from rag_app.errors import RagAppError, RejectedInput
from rag_app.ingest.loaders import SUPPORTED_SUFFIXES
from rag_app.ingest.pipeline import Ingestor, IngestReport, ProgressFactory, Rejection
from rag_app.retrieval.permissions import Principal, restrict_grants

SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")


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
    tokens = restrict_grants(principal, acl)
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
        )
        inner.rejected = [*report.rejected, *inner.rejected]
        return inner
    if not report.rejected:
        raise RejectedInput("no files to ingest")
    return report
