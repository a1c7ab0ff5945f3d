from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from rag_app.access.permissions import Principal
from rag_app.app import App
from rag_app.auth import hash_password, verify_password
from rag_app.errors import AccessDenied, RagAppError
from rag_app.feedback import Feedback, append_feedback, read_feedback
from rag_app.ingest.upload import InvalidGrant, ingest_uploads, safe_filename
from rag_app.settings import Settings
from rag_app.users import UserDirectory
from tests.fakes import HashEmbeddings

ALICE = Principal("acme", "alice", frozenset({"hr", "staff"}))


@pytest.fixture
def app(tmp_path) -> App:
    return App(
        Settings(data_dir=tmp_path / "data", chunk_size=60, chunk_overlap=10),
        embeddings=HashEmbeddings(32),
    )


def test_upload_forces_tenant_and_checks_grants(app, tmp_path):
    f = tmp_path / "note.md"
    f.write_text("---\ntitle: Note\ntenant: globex\nacl: [public]\n---\nquarterly numbers")
    report = ingest_uploads(
        app.ingestor, ALICE, [f], acl=["group:hr"], upload_root=tmp_path / "uploads"
    )
    assert report.ok
    (rec,) = list(app.store.records())
    assert rec.metadata["tenant"] == "acme"  # not the file's own claim
    assert rec.metadata["acl"] == ["group:hr"]
    assert rec.metadata["uploaded_by"] == "alice"
    hits = app.search.search(ALICE, "quarterly numbers").hits
    assert hits and hits[0].id == rec.id
    bob = Principal("acme", "bob", frozenset({"eng"}))
    assert app.search.search(bob, "quarterly numbers").hits == []


def test_upload_cannot_grant_more_than_the_uploader_holds(app, tmp_path):
    f = tmp_path / "n.md"
    f.write_text("text")
    with pytest.raises(AccessDenied, match="cannot grant group:finance"):
        ingest_uploads(app.ingestor, ALICE, [f], acl=["group:finance"], upload_root=tmp_path / "u")
    with pytest.raises(RagAppError, match="anonymous"):
        ingest_uploads(
            app.ingestor,
            Principal.anonymous("acme"),
            [f],
            acl=["public"],
            upload_root=tmp_path / "u",
        )
    assert app.store.count() == 0


def test_bad_uploads_get_clear_messages(app, tmp_path):
    bad = tmp_path / "x.exe"
    bad.write_bytes(b"MZ\x00")
    empty = tmp_path / "e.md"
    empty.write_text("")
    good = tmp_path / "g.txt"
    good.write_text("fine")
    report = ingest_uploads(
        app.ingestor, ALICE, [bad, empty, good], acl=["user:alice"], upload_root=tmp_path / "u"
    )
    reasons = {Path(r.location).name: r.reason for r in report.rejected}
    assert "unsupported file type" in reasons["x.exe"]
    assert reasons["e.md"] == "empty file"
    assert report.files_indexed == 1


def test_safe_filename():
    assert safe_filename("../../etc/passwd") == "passwd"
    assert safe_filename("my report (v2).md") == "my_report_v2_.md"
    assert safe_filename("...") == "upload"


def test_feedback_log_appends_jsonl(tmp_path):
    log = tmp_path / "fb" / "feedback.jsonl"
    append_feedback(
        log,
        Feedback(
            user="alice",
            tenant="acme",
            question="q",
            answer="a [1]",
            rating="up",
            sources=[{"n": 1, "source": "s.md"}],
        ),
    )
    append_feedback(
        log,
        Feedback(
            user="bob", tenant="acme", question="q2", answer="b", rating="down", comment="wrong"
        ),
    )
    rows = read_feedback(log)
    assert [r["user"] for r in rows] == ["alice", "bob"]
    assert rows[1]["comment"] == "wrong" and rows[0]["sources"][0]["source"] == "s.md"
    with pytest.raises(ValueError, match="rating"):
        append_feedback(log, Feedback(user="x", tenant="t", question="", answer="", rating="meh"))  # type: ignore[arg-type]


def test_invalid_grants_are_named_errors(app, tmp_path):
    f = tmp_path / "n.md"
    f.write_text("text")
    for acl, message in (
        (["*"], "invalid grant: invalid acl token '\\*'"),
        (["group:*"], "invalid grant: invalid acl token 'group:\\*'"),
        ([], "choose at least one reader"),
        ([" "], "choose at least one reader"),
    ):
        with pytest.raises(InvalidGrant, match=message):
            ingest_uploads(app.ingestor, ALICE, [f], acl=acl, upload_root=tmp_path / "u")
    assert issubclass(InvalidGrant, RagAppError)
    assert app.store.count() == 0


def test_password_hashes_and_demo_users(tmp_path):
    h = hash_password("secret")
    assert "secret" not in h and verify_password("secret", h)
    assert not verify_password("Secret", h)
    assert not verify_password("secret", None) and not verify_password("secret", "md5$x")
    users_file = tmp_path / "users.yaml"  # a successful login upgrades the hash in place
    shutil.copyfile("demo/users.yaml", users_file)
    users = UserDirectory.load(users_file)
    assert users.authenticate("alice", "alice-demo")
    assert not users.authenticate("alice", "bob-demo")
    assert not users.authenticate("nobody", "nobody-demo")
    # No password appears in plain text outside the explanatory comment.
    data_lines = [
        line
        for line in Path("demo/users.yaml").read_text().splitlines()
        if not line.lstrip().startswith("#")
    ]
    assert not any("-demo" in line for line in data_lines)
