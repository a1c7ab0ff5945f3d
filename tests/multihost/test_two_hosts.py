"""The leak matrix across hosts: independent processes against one Chroma server, each with
its own BM25 index. Writers share one state database (the README's multi-host setup); the
reader has a private one, so nothing but the store tells it what changed. Between searches a
writer narrows an ACL and another deletes a document; no retriever on the reader may serve the
old version, in line or while its index is rebuilt in the background, nor after a restart."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytestmark = [pytest.mark.server, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[2]
RETRIEVERS = ("dense", "bm25", "hybrid")


def front(title: str, tenant: str, acl: str, body: str) -> str:
    return f"---\ntitle: {title}\ntenant: {tenant}\nacl: {acl}\ncategory: doc\n---\n{body}\n"


class Host:
    def __init__(self, env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.multihost.host_worker"],
            cwd=ROOT,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        assert self.read() == {"ready": True}

    def read(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise AssertionError(f"host process exited with {self.proc.wait(10)}")
        return dict(json.loads(line))

    def __call__(self, **cmd: Any) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(cmd) + "\n")
        self.proc.stdin.flush()
        out = self.read()
        assert "error" not in out, out["error"]
        return out

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        self.proc.wait(30)


PEOPLE = {
    "ann": ("acme", ["hr", "staff"]),
    "bob": ("acme", ["staff"]),
    "carl": ("acme", []),
    "gus": ("globex", ["hr", "staff"]),
    None: ("acme", []),  # anonymous
}
FILTERS: list[Any] = [
    None,
    {"category": "doc"},
    {"$or": [{"category": "doc"}, {"category": "none"}]},
    {"title": {"$ne": "zzz"}},
]


@pytest.fixture
def hosts(tmp_path: Path, chroma_server_url: str, collection_name: Any) -> Iterator[Any]:
    base = {
        **os.environ,
        "RAG_CHROMA_URL": chroma_server_url,
        "RAG_COLLECTION": collection_name(),
        "RAG_CHUNK_SIZE": "60",
        "RAG_CHUNK_OVERLAP": "10",
    }
    shared_state = f"sqlite:///{tmp_path / 'shared-state.db'}"
    started: list[Host] = []

    def start(name: str, *, state: str | None = None, refresh: str = "inline") -> Host:
        env = {
            **base,
            "RAG_DATA_DIR": str(tmp_path / name),
            "RAG_STATE_DB_URL": state or f"sqlite:///{tmp_path / name / 'state.db'}",
            "RAG_BM25_REFRESH": refresh,
        }
        (tmp_path / name).mkdir(exist_ok=True)
        host = Host(env)
        started.append(host)
        return host

    yield start, shared_state
    for host in started:
        host.close()


def check_matrix(reader: Any, truth: dict[str, tuple[str, list[str]]], query: str) -> None:
    """Every retriever, principal and filter: each hit is readable under the *current* truth
    (an independent statement of the rule), and its metadata is the current one."""
    for retriever in RETRIEVERS:
        for user, (tenant, groups) in PEOPLE.items():
            tokens = {"public"} | ({f"user:{user}"} if user else set())
            tokens |= {f"group:{g}" for g in groups} if user else set()
            for flt in FILTERS:
                out = reader(
                    op="search",
                    retriever=retriever,
                    tenant=tenant,
                    user=user,
                    groups=groups,
                    query=query,
                    filter=flt,
                )
                for hit in out["hits"]:
                    name = str(hit["source"]).rsplit("/", 1)[-1]
                    assert name in truth, f"{retriever}: {name} no longer exists"
                    t_tenant, t_acl = truth[name]
                    where = f"{retriever} {user}@{tenant} {flt}: {name}"
                    assert hit["tenant"] == t_tenant == tenant, where
                    assert sorted(hit["acl"]) == sorted(t_acl), where
                    assert tokens & set(t_acl), where


def sources(out: dict[str, Any]) -> set[str]:
    return {str(h["source"]).rsplit("/", 1)[-1] for h in out["hits"]}


@pytest.mark.parametrize("refresh", ["inline", "background"])
def test_acl_change_and_delete_on_one_host_are_never_served_by_another(
    hosts: Any, tmp_path: Path, refresh: str
) -> None:
    start, shared_state = hosts
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    body = "quarterly salary vault report " * 6
    files = {
        "pub.md": ("acme", "[public]"),
        "hr.md": ("acme", "[group:hr]"),
        "bob.md": ("acme", "[user:bob]"),
        "g.md": ("globex", "[public]"),
    }
    for name, (tenant, acl) in files.items():
        (corpus / name).write_text(front(name, tenant, acl, f"{name} {body}"))
    truth = {name: (tenant, acl.strip("[]").split(", ")) for name, (tenant, acl) in files.items()}

    writer = start("writer", state=shared_state)
    assert writer(op="ingest", path=str(corpus))["rejected"] == []
    reader = start("reader", refresh=refresh)
    check_matrix(reader, truth, "salary vault")
    ann = {"tenant": "acme", "user": "ann", "groups": ["hr", "staff"], "query": "salary vault"}
    for retriever in RETRIEVERS:
        assert "hr.md" in sources(reader(op="search", retriever=retriever, **ann))

    # Host 1 narrows hr.md from group:hr to user:bob (same text, same chunk count).
    (corpus / "hr.md").write_text(front("hr.md", "acme", "[user:bob]", f"hr.md {body}"))
    assert writer(op="ingest", path=str(corpus))["files_indexed"] == 1
    truth["hr.md"] = ("acme", ["user:bob"])
    for retriever in RETRIEVERS:
        assert "hr.md" not in sources(reader(op="search", retriever=retriever, **ann))
    check_matrix(reader, truth, "salary vault")

    # Host 2 (another ingest host on the shared state database) deletes pub.md.
    second = start("second-writer", state=shared_state)
    assert second(op="delete", sources=["corpus/pub.md"])["deleted"] > 0
    del truth["pub.md"]
    check_matrix(reader, truth, "salary vault")

    # The reader's index catches up, and a restarted reader (loading the persisted index)
    # serves the same.
    reader(op="wait")
    bob = {"tenant": "acme", "user": "bob", "groups": ["staff"], "query": "salary vault"}
    assert sources(reader(op="search", retriever="bm25", **bob)) == {"hr.md", "bob.md"}
    reader.close()
    again = start("reader", refresh=refresh)
    check_matrix(again, truth, "salary vault")
    assert sources(again(op="search", retriever="bm25", **bob)) == {"hr.md", "bob.md"}
