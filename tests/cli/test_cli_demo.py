"""End to end, as a new user would: the real CLI, the real embedding model, the demo corpus."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
RAG = [sys.executable, "-m", "rag_app.cli"]

pytestmark = pytest.mark.slow


def run(args: list[str], env: dict[str, str], check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        [*RAG, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"rag-app {args} exited {proc.returncode}:\n{proc.stderr}")
    return proc


@pytest.fixture(scope="module")
def env(tmp_path_factory) -> dict[str, str]:
    data = tmp_path_factory.mktemp("data")
    e = dict(os.environ)
    e.update({"RAG_DATA_DIR": str(data), "RAG_USERS_FILE": str(ROOT / "demo/users.yaml")})
    e.pop("HF_HUB_OFFLINE", None)  # the app must set its offline defaults itself
    first = run(["ingest", "demo/corpus", "--no-progress", "--json"], e)
    e["_FIRST_REPORT"] = first.stdout
    return e


def visible(user: str, metadata: dict) -> bool:
    """Independent statement of the access rule (not the code under test)."""
    users = yaml.safe_load((ROOT / "demo/users.yaml").read_text())["users"]
    u = users[user]
    tokens = {"public", f"user:{user}"} | {f"group:{g}" for g in u.get("groups", [])}
    return metadata["tenant"] == u["tenant"] and bool(tokens & set(metadata["acl"]))


def query(env, text: str, user: str, *extra: str) -> dict:
    return json.loads(run(["query", text, "--user", user, "--json", *extra], env).stdout)


def test_first_ingest_indexes_every_demo_file(env):
    report = json.loads(env["_FIRST_REPORT"])
    assert report["rejected"] == []
    assert report["files_seen"] >= 30
    assert report["files_indexed"] == report["files_seen"]
    assert report["chunks_added"] > report["files_seen"]


def test_reingest_is_a_no_op(env):
    report = json.loads(run(["ingest", "demo/corpus", "--no-progress", "--json"], env).stdout)
    assert report["chunks_added"] == 0
    assert report["files_unchanged"] == report["files_seen"]


def test_two_users_get_different_correctly_permitted_sources(env):
    question = "How many weeks of paid parental leave do employees get?"
    results = {u: query(env, question, u, "-k", "5") for u in ("alice", "dave", "frank")}
    sources = {}
    for user, res in results.items():
        assert res["hits"], f"{user} got nothing"
        for hit in res["hits"]:
            assert visible(user, hit["metadata"]), (user, hit["source"])
        sources[user] = {h["source"] for h in res["hits"]}
    assert sources["alice"] != sources["dave"] != sources["frank"]
    assert any("parental-leave-policy" in s for s in sources["alice"])
    assert not any("parental-leave-policy" in s for s in sources["dave"])  # contractor
    assert all(s.startswith("demo/corpus/brightwater") for s in sources["frank"])
    assert "20 weeks" in results["alice"]["hits"][0]["text"] or any(
        "20 weeks" in h["text"] for h in results["alice"]["hits"]
    )


def test_restricted_document_only_for_its_group(env):
    question = "What is the salary band for level L4?"
    alice = query(env, question, "alice")
    bob = query(env, question, "bob")
    assert any("salary-bands" in h["source"] for h in alice["hits"])
    assert not any("salary-bands" in h["source"] for h in bob["hits"])
    assert all("98,000" not in h["text"] for h in bob["hits"])


def test_filters_narrow_and_dates_work(env):
    res = query(env, "leave", "alice", "--filter", '{"category": "hr"}', "-k", "10")
    assert res["hits"] and all(h["metadata"]["category"] == "hr" for h in res["hits"])
    res = query(env, "policy", "alice", "--filter", '{"created_at": {"$gte": "2025-06-01"}}')
    assert all(h["metadata"]["created_at_iso"] >= "2025-06-01" for h in res["hits"])
    res = query(env, "policy", "alice", "--filter", '{"tags": {"$contains": "leave"}}')
    assert res["hits"] and all("leave" in h["metadata"]["tags"] for h in res["hits"])


@pytest.mark.parametrize(
    ("flt", "message"),
    [
        ('{"tenant": "brightwater"}', "may not use 'tenant'"),
        ('{"$or": [{"acl": {"$contains": "group:hr"}}, {"category": "hr"}]}', "may not use 'acl'"),
        ('{"category": {"$regex": "h.*"}}', "unknown operator"),
        ('{"catgory": "hr"}', "unknown field 'catgory'"),
        ("{oops", "not valid JSON"),
    ],
)
def test_bad_filters_are_clear_errors(env, flt, message):
    proc = run(["query", "leave", "--user", "bob", "--filter", flt], env, check=False)
    assert proc.returncode == 2
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr


def test_unknown_user_and_anonymous(env):
    proc = run(["query", "x", "--user", "mallory"], env, check=False)
    assert proc.returncode == 2 and "unknown user 'mallory'" in proc.stderr
    res = json.loads(run(["query", "support hours", "--tenant", "halcyon", "--json"], env).stdout)
    assert res["hits"] and all(
        h["metadata"]["acl"] == ["public"] or "public" in h["metadata"]["acl"] for h in res["hits"]
    )


def test_stats_and_delete(env):
    stats = json.loads(run(["stats", "--json"], env).stdout)
    assert set(stats["per_tenant"]) == {"halcyon", "brightwater"}
    victim = next(r for r in stats["per_source"] if r["source"].endswith("warranty.md"))
    out = run(["delete", "--source", victim["source"], "--yes"], env).stdout
    assert f"deleted {victim['chunks']} chunks" in out
    after = json.loads(run(["stats", "--json"], env).stdout)
    assert after["chunks"] == stats["chunks"] - victim["chunks"]
    # the next ingest puts it back (the file still exists)
    report = json.loads(run(["ingest", "demo/corpus", "--no-progress", "--json"], env).stdout)
    assert report["files_indexed"] == 1 and report["chunks_added"] == victim["chunks"]


def test_bad_files_exit_nonzero_and_name_the_file(env, tmp_path):
    (tmp_path / "ok.md").write_text("---\ntitle: ok\n---\nfine text")
    (tmp_path / "bad.md").write_text("---\ntitle: [oops\n---\ntext")
    proc = run(
        ["ingest", str(tmp_path), "--tenant", "halcyon", "--acl", "public", "--no-progress"],
        env,
        check=False,
    )
    assert proc.returncode == 1
    assert "bad.md" in proc.stderr and "invalid front matter" in proc.stderr
    assert "1 indexed" in proc.stdout


def test_ctrl_c_mid_ingest_then_rerun_completes_without_duplicates(env, tmp_path):
    import signal
    import time

    e = dict(env)
    e["RAG_DATA_DIR"] = str(tmp_path / "interrupted")
    e["RAG_EMBED_BATCH_SIZE"] = "8"
    # the slowest encoder, so that the demo corpus is still being embedded when Ctrl-C comes
    # (with the int8 default the whole corpus could embed within the second waited below)
    e["RAG_EMBED_BACKEND"] = "torch"
    proc = subprocess.Popen(
        [*RAG, "ingest", "demo/corpus"],
        cwd=ROOT,
        env=e,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # Ctrl-C's default disposition in the child, whatever this process inherited or set
        # (an ignored SIGINT survives exec, and Python then never raises KeyboardInterrupt)
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    # Wait until embedding has visibly started, then press Ctrl-C.
    deadline = time.monotonic() + 120
    seen = ""
    assert proc.stderr is not None
    while time.monotonic() < deadline:
        seen += proc.stderr.read(1)
        if "chunk/s" in seen and "/" in seen.rsplit("embedding", 1)[-1]:
            break
    time.sleep(0.3)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode != 0, f"ingest finished before it could be interrupted: {err[-600:]}"

    interrupted = json.loads(run(["stats", "--json"], e).stdout)
    partial = interrupted["chunks"]
    # the run log says what happened to that run
    assert interrupted["last_ingests"][0]["status"] == "failed"
    assert interrupted["last_ingests"][0]["error"].startswith("KeyboardInterrupt")
    full = json.loads(run(["stats", "--json"], env).stdout)
    rerun = json.loads(run(["ingest", "demo/corpus", "--no-progress", "--json"], e).stdout)
    assert rerun["rejected"] == []
    after = json.loads(run(["stats", "--json"], e).stdout)

    # Same chunks as an uninterrupted ingest of the demo corpus: nothing missing, nothing
    # duplicated (the shared index may also hold files other tests added).
    def demo_only(stats: dict) -> list:
        return [
            (r["tenant"], r["source"], r["chunks"])
            for r in stats["per_source"]
            if r["source"].startswith("demo/corpus/")
        ]

    assert demo_only(after) == demo_only(full)
    assert after["chunks"] == sum(n for _, _, n in demo_only(full)) >= partial


def test_delete_shows_what_it_removes_and_asks_first(env):
    stats = json.loads(run(["stats", "--json"], env).stdout)
    victim = next(r for r in stats["per_source"] if r["source"].endswith("warranty.md"))
    proc = subprocess.run(
        [*RAG, "delete", "--source", victim["source"]],
        cwd=ROOT,
        env=env,
        input="n\n",
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode != 0
    assert f"this will delete {victim['chunks']} chunks of 1 document(s)" in proc.stdout
    assert victim["source"] in proc.stdout
    assert json.loads(run(["stats", "--json"], env).stdout)["chunks"] == stats["chunks"]
    # a filter the store would evaluate wrongly (Chroma truncates 2021.5 on an int field) is
    # refused before anything is counted or deleted
    bad = run(["delete", "--filter", '{"chunk_index": {"$gte": 0.5}}', "--yes"], env, check=False)
    assert bad.returncode == 2 and "holds integers" in bad.stderr
    assert json.loads(run(["stats", "--json"], env).stdout)["chunks"] == stats["chunks"]
