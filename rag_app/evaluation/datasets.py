"""Evaluation datasets: BEIR folders and RAGAS-style JSONL, validated with clear errors.

**BEIR** (``corpus.jsonl``, ``queries.jsonl``, ``qrels/<split>.tsv``; any split name): the
corpus is ingested as is (``_id``, ``title``, ``text``); records without ``tenant``/``acl`` get
``tenant=eval``, ``acl=[public]``. Relevance is judged by document id (metadata ``doc_id``).

**RAGAS-style JSONL** (one sample per line)::

    {"id": "q07",                                  # optional (default: line number)
     "user_input": "What is the salary band for level L4?",
     "reference": "98,000-124,000 EUR ...",       # optional reference answer
     "reference_contexts": ["..."],                 # optional reference passages (text)
     "reference_context_ids": ["demo/corpus/halcyon/hr/salary-bands-2025.md"],
     "expected": {"alice": "answer", "henry": "no-access"}}   # optional, per user

At least one of ``reference_contexts`` / ``reference_context_ids`` is required. Context ids are
document ids: a BEIR ``_id`` or a file's ``source`` path (chunk-independent); a source id
matches a stored source equal to it or ending in ``/<id>``. ``expected`` says, per user, whether
a reference document is visible to that user (``answer``) or every one of them is hidden
(``no-access``: the right behaviour is a refusal and no restricted source).

A folder holding ``dataset.yaml`` describes a RAGAS-style set with its corpus::

    name: demo
    questions: questions.jsonl        # relative to this file
    corpus: [../../demo/corpus]       # files/folders ingested into the evaluation collection
    users_file: ../../demo/users.yaml # for --as-user
    id_field: source                  # source | doc_id: what reference_context_ids name
    overrides: {}                     # metadata for every corpus document (optional)

Without a corpus, a RAGAS-style set is evaluated against the configured collection as it is.
"""

from __future__ import annotations

import csv
import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_args

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from rag_app.errors import RagAppError
from rag_app.evaluation.results import DatasetInfo, DatasetKind, IdField, Outcome
from rag_app.ingest.loaders import SIDECAR_SUFFIX, discover

OUTCOMES: tuple[str, ...] = get_args(Outcome)
DEFAULT_OVERRIDES: dict[str, Any] = {"tenant": "eval", "acl": ["public"]}
MANIFEST = "dataset.yaml"


class DatasetError(RagAppError):
    """An evaluation dataset is missing, malformed or inconsistent (the message names where)."""


@dataclass
class EvalSample:
    id: str
    user_input: str
    relevant: dict[str, int] = field(default_factory=dict)  # document id -> grade (> 0)
    reference: str | None = None
    reference_contexts: list[str] | None = None
    expected: dict[str, Outcome] = field(default_factory=dict)


@dataclass
class EvalDataset:
    name: str
    kind: DatasetKind
    path: Path
    split: str | None
    samples: list[EvalSample]
    corpus: list[Path] = field(default_factory=list)  # empty: use the configured collection
    overrides: dict[str, Any] = field(default_factory=dict)
    id_field: IdField = "doc_id"
    users_file: Path | None = None

    @property
    def has_reference_contexts(self) -> bool:
        return any(s.reference_contexts for s in self.samples)

    @property
    def has_relevance(self) -> bool:
        return any(s.relevant for s in self.samples)

    def users(self) -> list[str]:
        """Users named in any sample's expectations, in order of appearance."""
        return list(dict.fromkeys(u for s in self.samples for u in s.expected))

    def describe(self) -> DatasetInfo:
        return DatasetInfo(
            name=self.name,
            kind=self.kind,
            path=str(self.path),
            split=self.split,
            samples=len(self.samples),
            corpus=[str(p) for p in self.corpus],
            overrides=self.overrides,
            id_field=self.id_field,
            users_file=str(self.users_file) if self.users_file else None,
        )


# -- entry point ----------------------------------------------------------------------------------
def load_dataset(path: Path | str, *, split: str | None = None) -> EvalDataset:
    """A BEIR folder, a folder with ``dataset.yaml``, or a RAGAS-style ``.jsonl`` file."""
    path = Path(path)
    if not path.exists():
        raise DatasetError(f"{path}: no such dataset file or folder")
    if path.is_file():
        if path.suffix.lower() != ".jsonl":
            raise DatasetError(
                f"{path}: expected a BEIR folder, a folder with {MANIFEST}, or a .jsonl file"
            )
        samples = load_ragas_jsonl(path)
        return EvalDataset(path.stem, "ragas", path, None, samples, id_field="doc_id")
    if (path / MANIFEST).is_file():
        return _load_manifest(path / MANIFEST)
    if (path / "corpus.jsonl").is_file() or (path / "queries.jsonl").is_file():
        return load_beir(path, split=split)
    raise DatasetError(
        f"{path}: not a dataset folder (expected corpus.jsonl + queries.jsonl + qrels/<split>.tsv, "
        f"or {MANIFEST})"
    )


# -- BEIR -----------------------------------------------------------------------------------------
def beir_splits(path: Path) -> list[str]:
    qrels = path / "qrels"
    return sorted(p.stem for p in qrels.glob("*.tsv")) if qrels.is_dir() else []


def load_beir(path: Path, *, split: str | None = None) -> EvalDataset:
    for name in ("corpus.jsonl", "queries.jsonl"):
        if not (path / name).is_file():
            raise DatasetError(f"{path}: BEIR dataset lacks {name}")
    splits = beir_splits(path)
    if not splits:
        raise DatasetError(f"{path}: BEIR dataset has no qrels/<split>.tsv")
    if split is None:
        split = "test" if "test" in splits else splits[0]
    if split not in splits:
        raise DatasetError(f"{path}: no qrels for split {split!r}; available: {', '.join(splits)}")
    qrels = read_qrels(path / "qrels" / f"{split}.tsv")
    queries = read_queries(path / "queries.jsonl")
    missing = sorted(set(qrels) - set(queries))
    if missing:
        shown = ", ".join(missing[:5]) + (" ..." if len(missing) > 5 else "")
        raise DatasetError(
            f"{path / 'qrels' / f'{split}.tsv'}: {len(missing)} query id(s) not in "
            f"queries.jsonl: {shown}"
        )
    samples = [
        EvalSample(id=qid, user_input=queries[qid], relevant=rels)
        for qid, rels in qrels.items()
        if any(g > 0 for g in rels.values())
    ]
    if not samples:
        raise DatasetError(f"{path}: split {split!r} has no positive judgements")
    corpus = path / "corpus.jsonl"
    overrides = {} if _has_own_access(corpus) else dict(DEFAULT_OVERRIDES)
    return EvalDataset(
        name=path.name,
        kind="beir",
        path=path,
        split=split,
        samples=samples,
        corpus=[corpus],
        overrides=overrides,
        id_field="doc_id",
    )


def read_queries(path: Path) -> dict[str, str]:
    out: dict[str, str] = {}
    for lineno, record in _jsonl(path):
        qid = record.get("_id", record.get("id"))
        text = record.get("text")
        if qid is None or str(qid).strip() == "":
            raise DatasetError(f"{path}:{lineno}: query without '_id'")
        if not isinstance(text, str) or not text.strip():
            raise DatasetError(f"{path}:{lineno}: query {qid!r} has no 'text'")
        if str(qid) in out:
            raise DatasetError(f"{path}:{lineno}: duplicate query id {qid!r}")
        out[str(qid)] = text
    return out


def read_qrels(path: Path) -> dict[str, dict[str, int]]:
    """``query-id<TAB>corpus-id<TAB>score`` (a header line is allowed)."""
    out: dict[str, dict[str, int]] = {}
    try:
        with path.open(encoding="utf-8", newline="") as fh:
            for lineno, row in enumerate(csv.reader(fh, delimiter="\t"), start=1):
                if not row or not "".join(row).strip():
                    continue
                if lineno == 1 and row[0].strip().lower() in ("query-id", "query_id", "qid"):
                    continue
                if len(row) < 3:
                    raise DatasetError(
                        f"{path}:{lineno}: expected query-id<TAB>corpus-id<TAB>score, got {row!r}"
                    )
                qid, did, score = row[0].strip(), row[1].strip(), row[2].strip()
                try:
                    grade = int(float(score))
                except ValueError:
                    raise DatasetError(
                        f"{path}:{lineno}: score {score!r} is not a number"
                    ) from None
                if not qid or not did:
                    raise DatasetError(f"{path}:{lineno}: empty query or corpus id")
                out.setdefault(qid, {})[did] = grade
    except UnicodeDecodeError as exc:
        raise DatasetError(f"{path}: not UTF-8 text ({exc.reason})") from exc
    except OSError as exc:
        raise DatasetError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    if not out:
        raise DatasetError(f"{path}: no judgements")
    return out


def _has_own_access(corpus: Path) -> bool:
    """True when the corpus' first record carries tenant and acl (then no overrides)."""
    for _, record in _jsonl(corpus, limit=1):
        nested = record.get("metadata")
        meta: dict[str, Any] = nested if isinstance(nested, dict) else {}
        return all(k in record or k in meta for k in ("tenant", "acl"))
    return False


# -- RAGAS-style JSONL ----------------------------------------------------------------------------
def load_ragas_jsonl(path: Path) -> list[EvalSample]:
    samples: list[EvalSample] = []
    seen: set[str] = set()
    for lineno, record in _jsonl(path):
        where = f"{path}:{lineno}"
        sid = str(record.get("id", f"q{lineno}"))
        if sid in seen:
            raise DatasetError(f"{where}: duplicate id {sid!r}")
        seen.add(sid)
        question = record.get("user_input")
        if not isinstance(question, str) or not question.strip():
            raise DatasetError(f"{where}: 'user_input' must be a non-empty string")
        reference = record.get("reference")
        if reference is not None and not isinstance(reference, str):
            raise DatasetError(f"{where}: 'reference' must be a string")
        contexts = _str_list(record, "reference_contexts", where)
        ids = _str_list(record, "reference_context_ids", where)
        if not contexts and not ids:
            raise DatasetError(
                f"{where}: give 'reference_contexts' and/or 'reference_context_ids' "
                "(retrieval cannot be scored without them)"
            )
        expected_raw = record.get("expected", {})
        if not isinstance(expected_raw, dict):
            raise DatasetError(f"{where}: 'expected' must map user -> answer | no-access")
        expected: dict[str, Outcome] = {}
        for user, outcome in expected_raw.items():
            if outcome not in OUTCOMES:
                raise DatasetError(
                    f"{where}: expected[{user!r}] is {outcome!r}; use 'answer' or 'no-access'"
                )
            expected[str(user)] = outcome
        unknown = sorted(
            set(record)
            - {
                "id",
                "user_input",
                "reference",
                "reference_contexts",
                "reference_context_ids",
                "expected",
                "notes",
                "response",
                # informational, written by `eval generate`
                "persona",
                "query_style",
                "query_length",
            }
        )
        if unknown:
            raise DatasetError(f"{where}: unknown key(s) {', '.join(unknown)}")
        samples.append(
            EvalSample(
                id=sid,
                user_input=question,
                relevant={i: 1 for i in ids or []},
                reference=reference,
                reference_contexts=contexts,
                expected=expected,
            )
        )
    if not samples:
        raise DatasetError(f"{path}: no samples")
    return samples


def _str_list(record: dict[str, Any], key: str, where: str) -> list[str] | None:
    value = record.get(key)
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        raise DatasetError(f"{where}: '{key}' must be a list of non-empty strings")
    return list(value)


# -- manifest -------------------------------------------------------------------------------------
class Manifest(BaseModel):
    """``dataset.yaml``: a RAGAS-style question set and what to evaluate it on. Paths are
    relative to the manifest's folder; any other key, or a value of the wrong type, is an
    error naming the key."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    name: str | None = None  # default: the folder's name
    questions: str = "questions.jsonl"
    corpus: list[str] = Field(default_factory=list)  # a path or a list of paths
    users_file: str | None = None
    id_field: IdField | None = None  # default: source with a corpus, else doc_id
    overrides: dict[str, Any] | None = None  # metadata for every corpus document

    @field_validator("name", mode="before")
    @classmethod
    def _number_name(cls, value: Any) -> Any:
        # `name: 2025` is a name (YAML reads it as a number)
        if isinstance(value, int | float) and not isinstance(value, bool):
            return str(value)
        return value

    @field_validator("corpus", mode="before")
    @classmethod
    def _one_path(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @field_validator("id_field", mode="before")
    @classmethod
    def _explicit_id_field(cls, value: Any) -> Any:
        if value is None:
            raise ValueError("id_field is null")
        return value


# What each manifest key must be, in the words of its error message.
_MANIFEST_HELP = {
    "name": "must be a string",
    "questions": "must be a file name",
    "corpus": "must be a path or a list of paths",
    "users_file": "must be a file name",
    "id_field": f"must be {' or '.join(get_args(IdField)[::-1])}",
    "overrides": "must be a mapping",
}


def _manifest_problems(exc: ValidationError) -> str:
    """``unknown key(s) ...`` and ``'key' must be ... (got ...)``, one part per key."""
    errors = exc.errors()
    unknown = sorted(
        _short(e["loc"][0]) for e in errors if e["type"] in ("extra_forbidden", "invalid_key")
    )
    parts = []
    if unknown:
        known = ", ".join(sorted(Manifest.model_fields))
        parts.append(f"unknown key(s) {', '.join(unknown)} (known: {known})")
    seen: set[str] = set()
    for e in errors:
        if e["type"] in ("extra_forbidden", "invalid_key") or not e["loc"]:
            continue
        key = str(e["loc"][0])
        if key in seen:
            continue
        seen.add(key)
        where = "".join(f"[{p!r}]" for p in e["loc"][1:])
        got = f"{key}{where} is {_short(e['input'])}" if where else f"got {_short(e['input'])}"
        parts.append(f"'{key}' {_MANIFEST_HELP.get(key, e['msg'])} ({got})")
    return "; ".join(parts)


def _short(value: Any, limit: int = 60) -> str:
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _load_manifest(path: Path) -> EvalDataset:
    import yaml

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise DatasetError(f"{path}: cannot read: {exc}") from exc
    except yaml.YAMLError as exc:
        raise DatasetError(f"{path}: invalid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise DatasetError(f"{path}: must be a YAML mapping")
    try:
        manifest = Manifest.model_validate(data)
    except ValidationError as exc:
        raise DatasetError(f"{path}: {_manifest_problems(exc)}") from None
    base = path.parent
    qpath = (base / manifest.questions).resolve()
    if not qpath.is_file():
        raise DatasetError(f"{path}: questions file {manifest.questions!r} not found")
    corpus = [(base / c).resolve() for c in manifest.corpus]
    for c in corpus:
        if not c.exists():
            raise DatasetError(f"{path}: corpus path {c} does not exist")
    users_file = manifest.users_file
    users_path = (base / users_file).resolve() if users_file is not None else None
    if users_path is not None and not users_path.is_file():
        raise DatasetError(f"{path}: users file {users_file!r} not found")
    return EvalDataset(
        name=manifest.name or base.name,
        kind="ragas",
        path=base,
        split=None,
        samples=load_ragas_jsonl(qpath),
        corpus=corpus,
        overrides=dict(manifest.overrides or {}),
        id_field=manifest.id_field or ("source" if corpus else "doc_id"),
        users_file=users_path,
    )


# -- helpers --------------------------------------------------------------------------------------
def _jsonl(path: Path, *, limit: int | None = None) -> Iterable[tuple[int, dict[str, Any]]]:
    try:
        with path.open(encoding="utf-8") as fh:
            n = 0
            for lineno, line in enumerate(fh, start=1):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise DatasetError(f"{path}:{lineno}: invalid JSON: {exc.msg}") from None
                if not isinstance(record, dict):
                    raise DatasetError(f"{path}:{lineno}: expected a JSON object")
                yield lineno, record
                n += 1
                if limit is not None and n >= limit:
                    return
    except UnicodeDecodeError as exc:
        raise DatasetError(f"{path}: not UTF-8 text ({exc.reason})") from exc
    except OSError as exc:
        raise DatasetError(f"{path}: cannot read: {exc.strerror or exc}") from exc


def corpus_fingerprint(paths: Iterable[Path]) -> str:
    """sha256 over every corpus file (and sidecar) with its path relative to its root."""
    digest = hashlib.sha256()
    for root in paths:
        root = Path(root)
        found = discover([root])
        files = sorted(found.files)
        for f in files:
            rel = f.name if root.is_file() else f.relative_to(root).as_posix()
            digest.update(b"\0file\0" + rel.encode())
            digest.update(hashlib.sha256(f.read_bytes()).digest())
            sidecar = f.with_name(f.name + SIDECAR_SUFFIX)
            if sidecar.exists():
                digest.update(b"\0sidecar\0" + hashlib.sha256(sidecar.read_bytes()).digest())
    return digest.hexdigest()
