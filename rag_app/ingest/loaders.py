"""Find files and turn each into source documents with raw metadata.

Formats: ``.md``/``.markdown`` and ``.txt`` (optional YAML front matter), ``.html``/``.htm``,
``.pdf`` (pypdf), ``.jsonl`` (one document per line; BEIR ``corpus.jsonl`` works as is).
Metadata layers: the file's own (front matter, HTML <title>, PDF info, JSONL fields), then a
sidecar ``<file>.meta.json``, then overrides from the caller (CLI flags / UI), later winning.

Tables (`rag_app.ingest.tables`): Markdown/text files and HTML pages list theirs in
`SourceDoc.tables` (an HTML table is kept in the text as a Markdown pipe table); PDF and JSONL
documents list none.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rag_app.errors import RejectedInput
from rag_app.ingest.tables import Table, html_table, markdown_tables, render_markdown

SUPPORTED_SUFFIXES = frozenset({".md", ".markdown", ".txt", ".html", ".htm", ".pdf", ".jsonl"})
SIDECAR_SUFFIX = ".meta.json"


@dataclass
class SourceDoc:
    """One logical document before splitting."""

    text: str
    metadata: dict[str, Any]
    source: str  # display/source id: path, plus "#<id>" for JSONL records
    doc_id: str
    tables: list[Table] = field(default_factory=list)  # also indexed one row at a time


@dataclass
class LoadedFile:
    path: Path
    docs: list[SourceDoc] = field(default_factory=list)
    rejected: list[RejectedInput] = field(default_factory=list)


@dataclass(frozen=True)
class Discovered:
    files: list[Path]
    skipped: list[tuple[Path, str]]  # (path, reason) for files not meant for ingestion
    missing: list[Path]


def discover(paths: Iterable[Path]) -> Discovered:
    """Expand files and folders (recursively, sorted, hidden entries skipped)."""
    files: list[Path] = []
    skipped: list[tuple[Path, str]] = []
    missing: list[Path] = []
    seen: set[Path] = set()

    def add(p: Path, explicit: bool) -> None:
        resolved = p.resolve()
        if resolved in seen:
            return
        seen.add(resolved)
        if p.name.endswith(SIDECAR_SUFFIX):
            return
        if p.suffix.lower() in SUPPORTED_SUFFIXES:
            files.append(p)
        elif explicit:
            files.append(p)  # reported as rejected with the reason by the loader
        else:
            skipped.append((p, f"unsupported file type {p.suffix or '(none)'}"))

    for root in paths:
        if root.is_file():
            add(root, explicit=True)
        elif root.is_dir():
            for dirpath, dirnames, filenames in os.walk(root):
                dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
                for name in sorted(filenames):
                    if not name.startswith("."):
                        add(Path(dirpath) / name, explicit=False)
        else:
            missing.append(root)
    return Discovered(files=files, skipped=skipped, missing=missing)


def display_source(path: Path, root: Path | None = None) -> str:
    """A document's `source` as users see it (POSIX style): relative to the working directory
    when inside it; otherwise relative to the folder holding the ingest `root` (so
    ``/srv/docs/hr/a.md`` ingested as ``/srv/docs`` is ``docs/hr/a.md``), never a server's
    absolute path. Without a root, outside the working directory: the file name only."""
    resolved = path.resolve()
    try:
        return resolved.relative_to(Path.cwd().resolve()).as_posix()
    except ValueError:
        pass
    if root is not None:
        base = root.resolve().parent
        try:
            return resolved.relative_to(base).as_posix()
        except ValueError:
            pass
    return resolved.name


def read_sidecar(path: Path) -> dict[str, Any] | None:
    sidecar = path.with_name(path.name + SIDECAR_SUFFIX)
    if not sidecar.exists():
        return None
    try:
        data = json.loads(sidecar.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise RejectedInput(f"cannot read sidecar {sidecar.name}: {exc}") from exc
    except json.JSONDecodeError as exc:
        raise RejectedInput(
            f"invalid sidecar {sidecar.name}: {exc.msg} (line {exc.lineno})"
        ) from exc
    if not isinstance(data, dict):
        raise RejectedInput(f"sidecar {sidecar.name} must hold a JSON object")
    return data


def _read_text(path: Path, data: bytes) -> str:
    if b"\x00" in data[:8192]:
        raise RejectedInput("binary file (contains NUL bytes), not text")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise RejectedInput(
            f"not UTF-8 text (invalid byte at offset {exc.start}); binary or another encoding"
        ) from exc
    return text


def _first_heading(text: str) -> str | None:
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("#"):
            heading = stripped.lstrip("#").strip()
            if heading:
                return heading
    return None


def _title_from_name(path: Path) -> str:
    return path.stem.replace("_", " ").replace("-", " ").strip().capitalize() or path.name


def _load_markdown(path: Path, data: bytes) -> tuple[str, dict[str, Any]]:
    import frontmatter
    import yaml

    text = _read_text(path, data)
    try:
        post = frontmatter.loads(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise RejectedInput(f"invalid front matter{where}: {problem}") from exc
    except Exception as exc:
        raise RejectedInput(f"invalid front matter: {exc}") from exc
    meta = dict(post.metadata)
    if not isinstance(post.metadata, Mapping):
        raise RejectedInput("front matter must be a YAML mapping (key: value lines)")
    body = post.content
    if "title" not in meta:
        meta["title"] = _first_heading(body) or _title_from_name(path)
    return body, meta


HTML_BLOCKS = ["h1", "h2", "h3", "h4", "h5", "h6", "p", "li", "pre", "td", "table"]


def _load_html(path: Path, data: bytes) -> tuple[str, dict[str, Any], list[Table]]:
    from bs4 import BeautifulSoup

    text = _read_text(path, data)
    soup = BeautifulSoup(text, "html.parser")
    for tag in soup(["script", "style", "noscript", "template"]):
        tag.decompose()
    title = soup.title.get_text(strip=True) if soup.title else None
    if soup.title:
        soup.title.decompose()
    blocks: list[str] = []
    tables: list[Table] = []
    heading = ""
    # A table holding another table is layout: its cells flow as blocks. A data table (no
    # nested table) becomes one Markdown pipe table block, and nothing inside it is repeated;
    # one of a single column or without a body row gives its cells as blocks.
    data_tables = {id(t) for t in soup.find_all("table") if t.find("table") is None}
    flat: set[int] = set()
    for element in soup.find_all(HTML_BLOCKS):
        owner = element.find_parent("table")
        in_data_table = owner is not None and id(owner) in data_tables
        if in_data_table and not (element.name == "td" and id(owner) in flat):
            continue
        if element.name == "table":
            table = html_table(element, context=heading) if id(element) in data_tables else None
            if table is None:
                flat.add(id(element))
                continue
            tables.append(table)
            caption = element.find("caption")
            caption_text = caption.get_text(" ", strip=True) if caption else ""
            blocks.append((caption_text + "\n\n" if caption_text else "") + render_markdown(table))
            continue
        piece = element.get_text(" ", strip=True)
        if not piece:
            continue
        if element.name and element.name.startswith("h"):
            heading = piece
            piece = "#" * int(element.name[1]) + " " + piece
        elif element.name == "li":
            piece = "- " + piece
        blocks.append(piece)
    body = "\n\n".join(blocks) if blocks else soup.get_text("\n", strip=True)
    meta = {"title": title or _first_heading(body) or _title_from_name(path)}
    return body, meta, tables


def _load_pdf(path: Path, data: bytes) -> tuple[str, dict[str, Any]]:
    import io

    from pypdf import PdfReader
    from pypdf.errors import PdfReadError

    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted:
            raise RejectedInput("encrypted PDF; decrypt it first")
        pages = [(page.extract_text() or "").strip() for page in reader.pages]
        info = reader.metadata
    except RejectedInput:
        raise
    except (PdfReadError, ValueError, KeyError, OSError) as exc:
        raise RejectedInput(f"unreadable PDF: {exc}") from exc
    body = "\n\n".join(p for p in pages if p)
    title = str(info.title).strip() if info is not None and info.title else None
    return body, {"title": title or _first_heading(body) or _title_from_name(path)}


def _load_jsonl(path: Path, data: bytes, source: str) -> LoadedFile:
    text = _read_text(path, data)
    loaded = LoadedFile(path=path)
    ids: set[str] = set()
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{path}:{lineno}"
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            loaded.rejected.append(RejectedInput(f"invalid JSON: {exc.msg}", location=where))
            continue
        if not isinstance(record, dict):
            loaded.rejected.append(RejectedInput("line is not a JSON object", location=where))
            continue
        doc_id = record.pop("_id", None)
        if doc_id is None:
            doc_id = record.pop("id", None)
        body = record.pop("text", None)
        if doc_id is None or str(doc_id).strip() == "":
            loaded.rejected.append(RejectedInput("missing '_id'", location=where))
            continue
        doc_id = str(doc_id)
        if doc_id in ids:
            loaded.rejected.append(RejectedInput(f"duplicate _id {doc_id!r}", location=where))
            continue
        if not isinstance(body, str) or not body.strip():
            loaded.rejected.append(
                RejectedInput(f"record {doc_id!r} has no 'text'", location=where)
            )
            continue
        ids.add(doc_id)
        nested = record.pop("metadata", None)
        meta: dict[str, Any] = dict(record)
        if isinstance(nested, dict):
            meta.update(nested)
        title = meta.get("title")
        if not isinstance(title, str) or not title.strip():
            meta["title"] = doc_id
        loaded.docs.append(
            SourceDoc(text=body, metadata=meta, source=f"{source}#{doc_id}", doc_id=doc_id)
        )
    return loaded


def load_file(
    path: Path,
    *,
    max_bytes: int,
    overrides: Mapping[str, Any] | None = None,
    source: str | None = None,
) -> LoadedFile:
    """Load one file. Whole-file problems raise `RejectedInput`; per-record problems (JSONL)
    are listed in `LoadedFile.rejected`. Metadata is merged but not yet validated. `source`
    (default: `display_source(path)`) names the document; JSONL records add ``#<id>``."""
    source = source or display_source(path)
    suffix = path.suffix.lower()
    if suffix not in SUPPORTED_SUFFIXES:
        supported = " ".join(sorted(SUPPORTED_SUFFIXES))
        raise RejectedInput(f"unsupported file type {suffix or '(none)'}; supported: {supported}")
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise RejectedInput(f"cannot read file: {exc.strerror or exc}") from exc
    if size > max_bytes:
        raise RejectedInput(
            f"file is {size / 1e6:.1f} MB, over the {max_bytes / 1e6:.1f} MB limit "
            "(RAG_MAX_FILE_MB)"
        )
    if size == 0:
        raise RejectedInput("empty file")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise RejectedInput(f"cannot read file: {exc.strerror or exc}") from exc

    sidecar = read_sidecar(path)
    if suffix == ".jsonl":
        loaded = _load_jsonl(path, data, source)
        for doc in loaded.docs:
            doc.metadata = {**doc.metadata, **(sidecar or {}), **(overrides or {})}
        if not loaded.docs and not loaded.rejected:
            raise RejectedInput("no records in JSONL file")
        return loaded

    tables: list[Table] = []
    if suffix in (".md", ".markdown", ".txt"):
        body, meta = _load_markdown(path, data)
        tables = markdown_tables(body)
    elif suffix in (".html", ".htm"):
        body, meta, tables = _load_html(path, data)
    else:
        body, meta = _load_pdf(path, data)  # pypdf's text has no table structure
    if not body.strip():
        raise RejectedInput("no text content (empty after removing markup/front matter)")
    merged = {**meta, **(sidecar or {}), **(overrides or {})}
    return LoadedFile(
        path=path,
        docs=[SourceDoc(text=body, metadata=merged, source=source, doc_id=source, tables=tables)],
    )
