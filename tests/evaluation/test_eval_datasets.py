"""Dataset loaders: BEIR folders, RAGAS-style JSONL, manifests; bad input gives clear errors."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from rag_app.evaluation.datasets import (
    DatasetError,
    corpus_fingerprint,
    load_dataset,
    read_qrels,
)

DATA = Path(__file__).parent / "data"
BEIR = DATA / "tiny-beir"


def test_beir_defaults_to_the_test_split() -> None:
    ds = load_dataset(BEIR)
    assert ds.kind == "beir" and ds.split == "test" and ds.name == "tiny-beir"
    assert [s.id for s in ds.samples] == ["q1", "q2", "q3", "q4"]  # q5 is not judged
    assert ds.samples[0].relevant == {"d1": 1, "d8": 1}
    assert ds.samples[0].user_input == "aspirin heart attack risk"
    assert ds.corpus == [BEIR / "corpus.jsonl"]
    assert ds.overrides == {"tenant": "eval", "acl": ["public"]}  # the corpus has no ACLs
    assert ds.id_field == "doc_id"


def test_beir_any_split_and_unknown_split() -> None:
    assert [s.id for s in load_dataset(BEIR, split="dev").samples] == ["q1", "q3"]
    with pytest.raises(DatasetError, match=r"no qrels for split 'train'; available: dev, test"):
        load_dataset(BEIR, split="train")


def copy_beir(tmp_path: Path) -> Path:
    target = tmp_path / "beir"
    shutil.copytree(BEIR, target)
    return target


def test_beir_bad_input_is_named(tmp_path: Path) -> None:
    root = copy_beir(tmp_path)
    (root / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq1\td1\n")
    with pytest.raises(DatasetError, match=r"test.tsv:2: expected query-id<TAB>corpus-id"):
        load_dataset(root)
    (root / "qrels" / "test.tsv").write_text("q1\td1\thigh\n")
    with pytest.raises(DatasetError, match=r"test.tsv:1: score 'high' is not a number"):
        load_dataset(root)
    (root / "qrels" / "test.tsv").write_text("q1\td1\t1\nq99\td2\t1\n")
    with pytest.raises(DatasetError, match=r"1 query id\(s\) not in queries.jsonl: q99"):
        load_dataset(root)
    (root / "qrels" / "test.tsv").write_text("q1\td1\t1\n")
    (root / "queries.jsonl").write_text('{"_id": "q1", "text": "ok"}\n{"_id": "q2", \n')
    with pytest.raises(DatasetError, match=r"queries.jsonl:2: invalid JSON"):
        load_dataset(root)
    (root / "queries.jsonl").write_text('{"_id": "q1"}\n')
    with pytest.raises(DatasetError, match=r"queries.jsonl:1: query 'q1' has no 'text'"):
        load_dataset(root)
    (root / "queries.jsonl").unlink()
    with pytest.raises(DatasetError, match=r"lacks queries\.jsonl"):
        load_dataset(root)
    shutil.rmtree(root / "qrels")
    (root / "queries.jsonl").write_text('{"_id": "q1", "text": "ok"}\n')
    with pytest.raises(DatasetError, match=r"no qrels/<split>.tsv"):
        load_dataset(root)


def test_beir_with_its_own_acls_gets_no_overrides(tmp_path: Path) -> None:
    root = copy_beir(tmp_path)
    lines = (root / "corpus.jsonl").read_text().splitlines()
    first = json.loads(lines[0])
    first["metadata"] = {"tenant": "t1", "acl": ["public"]}
    (root / "corpus.jsonl").write_text("\n".join([json.dumps(first), *lines[1:]]) + "\n")
    assert load_dataset(root).overrides == {}


def test_not_a_dataset(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="no such dataset"):
        load_dataset(tmp_path / "missing")
    with pytest.raises(DatasetError, match="not a dataset folder"):
        load_dataset(tmp_path)
    (tmp_path / "x.csv").write_text("a,b\n")
    with pytest.raises(DatasetError, match="expected a BEIR folder"):
        load_dataset(tmp_path / "x.csv")


def test_read_qrels_grades_and_header(tmp_path: Path) -> None:
    path = tmp_path / "q.tsv"
    path.write_text("query-id\tcorpus-id\tscore\nq1\td1\t2\nq1\td2\t0\n\nq2\td3\t1\n")
    assert read_qrels(path) == {"q1": {"d1": 2, "d2": 0}, "q2": {"d3": 1}}


# -- RAGAS-style JSONL -------------------------------------------------------------------------
def write_jsonl(path: Path, *records: object) -> Path:
    path.write_text("\n".join(json.dumps(r) for r in records) + "\n")
    return path


def test_ragas_jsonl(tmp_path: Path) -> None:
    path = write_jsonl(
        tmp_path / "set.jsonl",
        {
            "user_input": "q one",
            "reference": "answer",
            "reference_contexts": ["passage"],
            "reference_context_ids": ["docs/a.md"],
            "expected": {"ann": "answer", "bob": "no-access"},
        },
        {"id": "x2", "user_input": "q two", "reference_contexts": ["other passage"]},
    )
    ds = load_dataset(path)
    assert ds.kind == "ragas" and ds.name == "set" and ds.corpus == []
    first, second = ds.samples
    assert first.id == "q1" and first.relevant == {"docs/a.md": 1}
    assert first.reference_contexts == ["passage"] and first.reference == "answer"
    assert first.expected == {"ann": "answer", "bob": "no-access"}
    assert second.id == "x2" and second.relevant == {}
    assert ds.users() == ["ann", "bob"]
    assert ds.has_reference_contexts and ds.has_relevance


@pytest.mark.parametrize(
    ("record", "message"),
    [
        ({"reference_context_ids": ["a"]}, "'user_input' must be a non-empty string"),
        ({"user_input": "  ", "reference_context_ids": ["a"]}, "'user_input' must be"),
        ({"user_input": "q"}, "give 'reference_contexts' and/or 'reference_context_ids'"),
        ({"user_input": "q", "reference_context_ids": "a.md"}, "must be a list of non-empty"),
        ({"user_input": "q", "reference_contexts": [""]}, "must be a list of non-empty"),
        ({"user_input": "q", "reference": 3, "reference_contexts": ["p"]}, "'reference' must"),
        (
            {"user_input": "q", "reference_contexts": ["p"], "expected": {"ann": "maybe"}},
            "expected\\['ann'\\] is 'maybe'; use 'answer' or 'no-access'",
        ),
        ({"user_input": "q", "reference_contexts": ["p"], "question": "x"}, "unknown key"),
        ([1, 2], "expected a JSON object"),
    ],
)
def test_ragas_jsonl_bad_records(tmp_path: Path, record: object, message: str) -> None:
    path = write_jsonl(
        tmp_path / "bad.jsonl", {"user_input": "ok", "reference_contexts": ["p"]}, record
    )
    with pytest.raises(DatasetError, match=rf"bad.jsonl:2: .*{message}"):
        load_dataset(path)


def test_ragas_jsonl_duplicates_and_empty(tmp_path: Path) -> None:
    dup = write_jsonl(
        tmp_path / "dup.jsonl",
        {"id": "a", "user_input": "q", "reference_contexts": ["p"]},
        {"id": "a", "user_input": "q", "reference_contexts": ["p"]},
    )
    with pytest.raises(DatasetError, match=r"dup\.jsonl:2: duplicate id 'a'"):
        load_dataset(dup)
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    with pytest.raises(DatasetError, match="no samples"):
        load_dataset(empty)


# -- manifests ---------------------------------------------------------------------------------
def test_manifest_dataset() -> None:
    ds = load_dataset(DATA / "acl")
    assert ds.name == "acl-mini" and ds.kind == "ragas" and ds.id_field == "source"
    assert ds.corpus == [(DATA / "acl" / "corpus").resolve()]
    assert ds.users_file == (DATA / "acl" / "users.yaml").resolve()
    assert ds.users() == ["ann", "bob", "gus"]
    assert len(ds.samples) == 4


def test_demo_manifest_is_valid() -> None:
    ds = load_dataset(Path(__file__).resolve().parents[2] / "eval" / "demo")
    assert len(ds.samples) >= 20
    assert set(ds.users()) == {"alice", "bob", "carol", "dave", "erin", "henry", "frank", "grace"}
    for sample in ds.samples:
        assert sample.reference and sample.relevant
        assert all(r.startswith("demo/corpus/") for r in sample.relevant)
        # every question has users who may read the answer and users who may not
        assert {"answer", "no-access"} <= set(sample.expected.values()), sample.id


@pytest.mark.parametrize(
    ("manifest", "message"),
    [
        ("questions: nope.jsonl\n", "questions file 'nope.jsonl' not found"),
        ("corpus: [missing]\n", "corpus path .* does not exist"),
        ("colour: red\n", "unknown key\\(s\\) colour"),
        ("id_field: title\n", "'id_field' must be source or doc_id"),
        ("users_file: nobody.yaml\n", "users file 'nobody.yaml' not found"),
        ("[1, 2]\n", "must be a YAML mapping"),
        ("a: [\n", "invalid YAML"),
    ],
)
def test_bad_manifests(tmp_path: Path, manifest: str, message: str) -> None:
    write_jsonl(tmp_path / "questions.jsonl", {"user_input": "q", "reference_contexts": ["p"]})
    (tmp_path / "dataset.yaml").write_text(manifest)
    with pytest.raises(DatasetError, match=message):
        load_dataset(tmp_path)


def test_corpus_fingerprint_tracks_content(tmp_path: Path) -> None:
    root = tmp_path / "c"
    shutil.copytree(DATA / "acl" / "corpus", root)
    before = corpus_fingerprint([root])
    assert corpus_fingerprint([root]) == before
    (root / "acme" / "leave.md").write_text((root / "acme" / "leave.md").read_text() + "x")
    assert corpus_fingerprint([root]) != before


@pytest.mark.parametrize(
    ("manifest", "message"),
    [
        ("questions: 5\n", r"'questions' must be a file name \(got 5\)"),
        ("questions: null\n", "'questions' must be a file name"),
        ("corpus: [corpus, 3]\n", r"'corpus' must be a path or a list of paths \(corpus\[1\] is 3"),
        ("corpus: {a: 1}\n", "'corpus' must be a path or a list of paths"),
        ("id_field: null\n", "'id_field' must be source or doc_id"),
        ("overrides: [tenant]\n", r"'overrides' must be a mapping \(got \['tenant'\]\)"),
        ("overrides: {1: x}\n", r"'overrides' must be a mapping \(overrides\[1\]"),
        ("users_file: 3\n", "'users_file' must be a file name"),
        ("name: [a]\n", "'name' must be a string"),
        ("name: true\n", "'name' must be a string"),
        ("1: x\n", r"unknown key\(s\) 1 \(known: corpus, id_field, name, overrides"),
        (
            "colour: red\nshape: round\nid_field: 3\n",
            r"unknown key\(s\) colour, shape .*; 'id_field' must be source or doc_id \(got 3\)",
        ),
    ],
)
def test_manifest_types_and_keys_are_checked(tmp_path: Path, manifest: str, message: str) -> None:
    write_jsonl(tmp_path / "questions.jsonl", {"user_input": "q", "reference_contexts": ["p"]})
    (tmp_path / "corpus").mkdir()
    (tmp_path / "dataset.yaml").write_text(manifest)
    with pytest.raises(DatasetError, match=rf"dataset\.yaml: .*{message}"):
        load_dataset(tmp_path)


def test_manifest_defaults_and_shorthands(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "questions.jsonl", {"user_input": "q", "reference_contexts": ["p"]})
    (tmp_path / "corpus").mkdir()
    (tmp_path / "dataset.yaml").write_text("name: 2025\ncorpus: corpus\noverrides: null\n")
    ds = load_dataset(tmp_path)
    assert ds.name == "2025" and ds.corpus == [(tmp_path / "corpus").resolve()]
    assert ds.id_field == "source" and ds.overrides == {} and ds.users_file is None
    (tmp_path / "dataset.yaml").write_text("overrides: {tenant: t1}\n")
    ds = load_dataset(tmp_path)
    assert ds.name == tmp_path.name and ds.corpus == [] and ds.id_field == "doc_id"
    assert ds.overrides == {"tenant": "t1"}
    assert ds.describe().model_dump()["overrides"] == {"tenant": "t1"}
