"""`rag-app export` / `rag-app import`: round trips, refusals, corruption, resume after an
interruption (an exception, and a real kill -9), one tenant only. The tests that take `chroma`
run on embedded Chroma and on a Chroma server; the round trip also crosses between the two."""

from __future__ import annotations

import gzip
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from rag_app.access.permissions import Principal
from rag_app.app import App
from rag_app.ops.transfer import TransferError, export_index, import_file, read_header
from rag_app.settings import Settings
from rag_app.stores.base import Scannable
from tests.fakes import HashEmbeddings

ROOT = Path(__file__).resolve().parents[2]
DIM = 32

PRINCIPALS = [
    Principal.anonymous("acme"),
    Principal("acme", "ann", frozenset({"hr"})),
    Principal.anonymous("globex"),
    Principal("globex", "gus", frozenset({"ops"})),
]
ON_SERVER = [pytest.mark.server, pytest.mark.slow]
QUERIES = ["robot gears", "salaries pay review", "factory tour safety", "record about widgets"]


def _words(seed: str, n: int) -> str:
    rnd = random.Random(seed)
    vocab = [
        "robot",
        "gears",
        "pay",
        "salaries",
        "factory",
        "tour",
        "safety",
        "widget",
        "review",
        "budget",
        "plan",
    ]
    return " ".join(rnd.choice(vocab) for _ in range(n))


def _corpus(root: Path) -> Path:
    corpus = root / "corpus"
    corpus.mkdir()
    (corpus / "pub.md").write_text(
        "---\ntitle: P\ntenant: acme\nacl: [public]\nyear: 2021\ncategory: specs\n---\n"
        + _words("p", 150)
    )
    (corpus / "hr.md").write_text(
        "---\ntitle: H\ntenant: acme\nacl: [group:hr]\nyear: 2022\n---\n" + _words("h", 90)
    )
    (corpus / "g.md").write_text(
        "---\ntitle: G\ntenant: globex\nacl: [public]\nyear: 2020\n---\n" + _words("g", 120)
    )
    lines = [
        {"_id": str(i), "title": f"r{i}", "text": _words(f"r{i}", 30), "tenant": "globex"}
        | {"acl": ["group:ops"] if i % 2 else ["public"], "tags": ["a", "b"][: 1 + i % 2]}
        for i in range(6)
    ]
    (corpus / "records.jsonl").write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    return corpus


def _app(data: Path, chroma: Any = None, collection: str = "docs", **settings: Any) -> App:
    """An App on embedded Chroma, or on `chroma` (embedded, or a collection of the server's
    that `chroma.name` gave, a fresh one unless `collection` is one it gave before)."""
    where = chroma.options(collection) if chroma is not None else {"collection": collection}
    s = Settings(data_dir=data, chunk_size=40, chunk_overlap=8, **{**where, **settings})
    return App(s, embeddings=HashEmbeddings(DIM))


def _snapshot(app: App, tenant: str | None = None) -> dict[str, Any]:
    assert isinstance(app.store, Scannable)
    return {r.id: (r.text, r.metadata) for r in app.store.records(tenant=tenant, with_text=True)}


def _ranked(app: App, principal: Principal, query: str) -> list[tuple[float, str]]:
    """Dense top-k as (score, id), ties in id order; the lowest-scored group is dropped, since
    a tie at the cut-off may be cut differently by another store."""
    hits = app.search.search(principal, query, k=8).hits
    ranked = sorted((-round(h.score, 4), h.id) for h in hits)
    return [(-score, i) for score, i in ranked if ranked and score != ranked[-1][0]]


def _topk(app: App, principals: list[Principal] = PRINCIPALS) -> dict[Any, Any]:
    return {(p.tenant, p.user_id, q): _ranked(app, p, q) for p in principals for q in QUERIES}


@pytest.fixture(scope="module")
def source(chroma: Any, tmp_path_factory: pytest.TempPathFactory) -> tuple[App, Path, Path]:
    root = tmp_path_factory.mktemp("src")
    corpus = _corpus(root)
    app = _app(root / "data", chroma)
    report = app.ingestor.ingest([corpus])
    assert report.ok and report.files_indexed == 4
    out = root / "all.jsonl.gz"
    export_index(app, out, page=7)  # small pages: several of them
    return app, corpus, out


def _lines(path: Path) -> list[dict[str, Any]]:
    with gzip.open(path, "rt") as fh:
        return [json.loads(line) for line in fh]


def test_export_file_has_header_records_files_and_trailer(source: tuple[App, Path, Path]) -> None:
    app, _, out = source
    lines = _lines(out)
    header, trailer = lines[0], lines[-1]
    assert header["type"] == "header" and trailer["type"] == "trailer"
    assert header["embedding"] == {"model": f"hash-{DIM}", "dimension": DIM}
    assert header["store"]["backend"] == app.store.info.backend
    assert header["store"]["collection"] == app.store.info.collection
    assert header["store"]["location"] == app.store_location
    assert header["chunking"]["chunk_size"] == 40
    assert header["started_at"].endswith("+00:00")
    assert header["records_at_start"]["total"] == app.store.count()
    records = [x for x in lines if x["type"] == "record"]
    assert len(records) == app.store.count() == trailer["records"]
    assert {r["id"] for r in records} == set(_snapshot(app))
    assert all(len(r["vector"]) == DIM and r["group"] for r in records)
    assert trailer["tenants"]["acme"]["count"] == app.store.count(tenant="acme")
    assert trailer["tenants"]["globex"]["count"] == app.store.count(tenant="globex")
    assert sum(x["type"] == "file" for x in lines) == 4 == trailer["files"]
    assert read_header(out) == header


@pytest.mark.parametrize(
    "into",
    [pytest.param("same", id="into-same"), pytest.param("other", marks=ON_SERVER, id="into-other")],
)
def test_round_trip_to_another_chroma_keeps_ids_metadata_topk_and_state(
    source: tuple[App, Path, Path],
    chroma: Any,
    into: str,
    request: pytest.FixtureRequest,
    tmp_path: Path,
) -> None:
    """Into the same kind of Chroma, and into the other one (embedded <-> server)."""
    app, corpus, out = source
    place = chroma if into == "same" else request.getfixturevalue("other_chroma")
    target = _app(tmp_path / "data", place)
    assert target.store.info.backend == place.kind
    summary = import_file(target, out, batch=5)
    assert summary.records_written == app.store.count() == target.store.count()
    assert _snapshot(target) == _snapshot(app)
    assert all(_topk(app).values())
    assert _topk(target) == _topk(app)
    # the ingest state continues where the source left off
    assert target.state.fields("acme") == app.state.fields("acme")
    assert target.state.fields("globex") == app.state.fields("globex")
    assert sorted((d.group_id, d.chunks) for d in target.state.documents()) == sorted(
        (d.group_id, d.chunks) for d in app.state.documents()
    )
    assert target.state.fingerprints() == app.state.fingerprints()
    report = target.ingestor.ingest([corpus])
    assert report.files_unchanged == 4 and report.chunks_added == 0
    # a changed file replaces exactly its old chunks (the record-manager groups came along)
    (corpus / "hr.md").write_text(
        "---\ntitle: H\ntenant: acme\nacl: [group:hr]\nyear: 2023\n---\n" + _words("h2", 50)
    )
    try:
        before = target.store.count()
        old_hr = {i for i, (_, m) in _snapshot(target).items() if m["title"] == "H"}
        report = target.ingestor.ingest([corpus])
        assert report.files_indexed == 1 and report.chunks_deleted == len(old_hr)
        new_hr = {i for i, (_, m) in _snapshot(target).items() if m["title"] == "H"}
        assert not new_hr & old_hr
        assert target.store.count() == before - len(old_hr) + len(new_hr)
    finally:
        (corpus / "hr.md").write_text(
            "---\ntitle: H\ntenant: acme\nacl: [group:hr]\nyear: 2022\n---\n" + _words("h", 90)
        )


def test_refuses_another_model_or_dimension(
    source: tuple[App, Path, Path], chroma: Any, tmp_path: Path
) -> None:
    _, _, out = source
    other_dim = App(
        Settings(data_dir=tmp_path / "a", **chroma.options("docs")), embeddings=HashEmbeddings(16)
    )
    with pytest.raises(TransferError, match=r"'hash-32' \(32 dimensions\).*'hash-16' \(16"):
        import_file(other_dim, out)
    other_model = App(
        Settings(data_dir=tmp_path / "b", **chroma.options("docs")),
        embeddings=HashEmbeddings(DIM, name="other"),
    )
    with pytest.raises(TransferError, match=r"'hash-32'.*'other-32'"):
        import_file(other_model, out)
    assert other_dim.store.count() == other_model.store.count() == 0


def _rewrite(src: Path, dst: Path, edit: Any) -> None:
    lines = _lines(src)
    with gzip.open(dst, "wt") as fh:
        for n, line in enumerate(lines):
            line = edit(n, line)
            if line is not None:
                fh.write(json.dumps(line) + "\n")


def test_corrupted_line_is_an_error(
    source: tuple[App, Path, Path], chroma: Any, tmp_path: Path
) -> None:
    _, _, out = source
    bad = tmp_path / "bad.jsonl.gz"

    def edit(n: int, line: dict[str, Any]) -> dict[str, Any]:
        if n == 3:
            line["text"] += " tampered"
        return line

    _rewrite(out, bad, edit)
    with pytest.raises(TransferError, match=r"line 4 .* is corrupted"):
        import_file(_app(tmp_path / "t1", chroma), bad)

    def vector(n: int, line: dict[str, Any]) -> dict[str, Any]:
        if n == 5:
            line["vector"][0] += 0.5
        return line

    _rewrite(out, bad, vector)
    with pytest.raises(TransferError, match=r"line 6 .* is corrupted"):
        import_file(_app(tmp_path / "t2", chroma), bad)

    # a record removed (digests still fine) is caught by the trailer's count and checksum
    _rewrite(out, bad, lambda n, line: None if n == 2 else line)
    with pytest.raises(TransferError, match="the trailer says"):
        import_file(_app(tmp_path / "t3", chroma), bad)

    # an export that did not finish has no trailer
    _rewrite(out, bad, lambda n, line: None if line["type"] == "trailer" else line)
    with pytest.raises(TransferError, match="no trailer"):
        import_file(_app(tmp_path / "t4", chroma), bad)


def test_interrupted_import_resumes_without_duplicates(
    source: tuple[App, Path, Path], chroma: Any, tmp_path: Path
) -> None:
    app, _, out = source
    target = _app(tmp_path / "data", chroma)
    real = target.store.upsert
    calls = {"n": 0}

    def failing(*args: Any, **kwargs: Any) -> None:
        calls["n"] += 1
        if calls["n"] == 3:
            raise RuntimeError("power cut")
        real(*args, **kwargs)

    target.store.upsert = failing  # type: ignore[method-assign]
    with pytest.raises(RuntimeError, match="power cut"):
        import_file(target, out, batch=4)
    assert target.store.count() == 8
    target.store.upsert = real  # type: ignore[method-assign]
    summary = import_file(target, out, batch=4)
    assert summary.records_resumed == 8
    assert summary.records_written == app.store.count() - 8
    assert target.store.count() == app.store.count()
    assert _snapshot(target) == _snapshot(app)
    assert summary.tenants == {t: v for t, v in _lines(out)[-1]["tenants"].items()}
    assert not list((tmp_path / "data" / "imports").glob("*.json"))  # marker gone
    # and once more: nothing to resume, everything upserted again, still no duplicates
    assert import_file(target, out).records_resumed == 0
    assert target.store.count() == app.store.count()


def test_one_tenant_export_and_import(
    source: tuple[App, Path, Path], chroma: Any, tmp_path: Path
) -> None:
    app, _, out = source
    only = tmp_path / "globex.jsonl.gz"
    summary = export_index(app, only, tenant="globex")
    assert set(summary.tenants) == {"globex"}
    assert _lines(only)[0]["tenant"] == "globex"
    target = _app(tmp_path / "a", chroma)
    import_file(target, only)
    assert target.store.count() == target.store.count(tenant="globex") == summary.records
    assert _snapshot(target) == _snapshot(app, "globex")
    globex = [p for p in PRINCIPALS if p.tenant == "globex"]
    assert _topk(target, globex) == _topk(app, globex)
    assert {d.tenant for d in target.state.documents()} == {"globex"}
    assert target.state.fields("acme") == {}
    # one tenant out of a full export
    target2 = _app(tmp_path / "b", chroma)
    result = import_file(target2, out, tenant="acme")
    assert result.records_skipped == app.store.count(tenant="globex")
    assert _snapshot(target2) == _snapshot(app, "acme")
    assert set(result.tenants) == {"acme"}
    with pytest.raises(TransferError, match="holds only tenant 'globex'"):
        import_file(target2, only, tenant="acme")


# -- the real command, killed with SIGKILL mid-import -------------------------------------------
_CLI = (
    "import rag_app.app as a\n"
    "from tests.fakes import HashEmbeddings\n"
    f"a.build_embeddings = lambda s: HashEmbeddings({DIM})\n"
    "from rag_app.cli import app, main, transfer\n"
    "if 'import' not in {c.name for c in app.registered_commands}:\n"
    "    transfer.register(app)\n"
    "main()\n"
)


def _run_cli(*args: str, chroma_url: str | None = None) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("RAG_CHROMA_URL", None)
    if chroma_url:
        env["RAG_CHROMA_URL"] = chroma_url
    return subprocess.Popen(
        [sys.executable, "-c", _CLI, *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def _forget_chroma_clients() -> None:
    from chromadb.api.client import SharedSystemClient

    SharedSystemClient.clear_system_cache()


@pytest.mark.slow  # a child process killed mid-import (~8 s)
def test_kill_9_mid_import_then_rerun(chroma: Any, tmp_path: Path) -> None:
    """On the server, the process killed is the client: the import command."""
    src = _app(tmp_path / "src", chroma)
    rnd = random.Random(7)
    n = 3000
    for start in range(0, n, 500):
        nums = range(start, start + 500)
        src.store.upsert(
            [f"id-{j:05d}" for j in nums],
            [f"text {j}" for j in nums],
            [[rnd.uniform(-1, 1) for _ in range(DIM)] for _ in nums],
            [{"tenant": "acme" if j % 3 else "globex", "acl": ["public"], "n": j} for j in nums],
        )
    out = tmp_path / "big.jsonl.gz"
    export_index(src, out)
    data = tmp_path / "dst"
    collection = chroma.name("docs")
    where = ["--data-dir", str(data), "--collection", collection]
    proc = _run_cli(*where, "import", str(out), "--batch-size", "10", chroma_url=chroma.url)
    markers = data / "imports"
    deadline = time.monotonic() + 60
    killed_at = 0
    while time.monotonic() < deadline and proc.poll() is None:
        for marker in markers.glob("*.json") if markers.exists() else []:
            try:
                killed_at = json.loads(marker.read_text())["line"]
            except (ValueError, OSError, KeyError):
                continue
        if killed_at >= 300:
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.01)
    proc.wait(timeout=30)
    if proc.returncode != -signal.SIGKILL:
        pytest.fail(f"the import was not killed mid-way: rc={proc.returncode}")
    target = _app(data, chroma, collection)
    partial = target.store.count()
    assert 0 < partial < n
    target.close()
    _forget_chroma_clients()  # another process writes to that folder now
    rerun = _run_cli(*where, "import", str(out), "-q", chroma_url=chroma.url)
    stdout, stderr = rerun.communicate(timeout=120)
    assert rerun.returncode == 0, stderr.decode()
    assert "already written" in stdout.decode()
    _forget_chroma_clients()
    target = _app(data, chroma, collection)
    assert target.store.count() == n
    assert _snapshot(target) == _snapshot(src)
    check = tmp_path / "check.jsonl.gz"
    export_index(target, check)
    assert _lines(check)[-1]["tenants"] == _lines(out)[-1]["tenants"]
    _same_vectors(check, out)


def _same_vectors(a: Path, b: Path) -> None:
    """Equal up to the ulp a store may add (Chroma's cosine index renormalises)."""
    first = {x["id"]: x["vector"] for x in _lines(a) if x["type"] == "record"}
    second = {x["id"]: x["vector"] for x in _lines(b) if x["type"] == "record"}
    assert first.keys() == second.keys()
    worst = max(abs(p - q) for k in first for p, q in zip(first[k], second[k], strict=True))
    assert worst < 1e-6


def test_cli_export_and_import(
    source: tuple[App, Path, Path], chroma: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    import rag_app.app as app_module
    from rag_app.cli import app as cli
    from rag_app.cli import transfer

    if "import" not in {c.name for c in cli.registered_commands}:
        transfer.register(cli)
    monkeypatch.setattr(app_module, "build_embeddings", lambda s: HashEmbeddings(DIM))
    if chroma.url:  # as a user points the command at a server
        monkeypatch.setenv("RAG_CHROMA_URL", chroma.url)
    else:
        monkeypatch.delenv("RAG_CHROMA_URL", raising=False)
    app, _, _ = source
    data = app.settings.data_dir
    out = tmp_path / "x.jsonl.gz"
    runner = CliRunner()
    args = ["--data-dir", str(data), "--collection", app.store.info.collection]
    res = runner.invoke(cli, [*args, "export", "--out", str(out), "-q"], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    assert f"exported {app.store.count()} records" in res.output
    assert read_header(out)["store"]["backend"] == chroma.kind
    collection = chroma.name("docs")
    dst = ["--data-dir", str(tmp_path / "d"), "--collection", collection]
    res = runner.invoke(cli, [*dst, "import", str(out), "-q"], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    assert f"imported {app.store.count()} records" in res.output
    target = _app(tmp_path / "d", chroma, collection=collection)
    assert _snapshot(target) == _snapshot(app)
    target.close()


@pytest.mark.server
@pytest.mark.parametrize("chroma", ["chroma"], indirect=True)  # the emulators are the point
def test_migration_chroma_pinecone_weaviate_chroma(
    source: tuple[App, Path, Path], tmp_path: Path
) -> None:
    from tests.emulators.pinecone_server import PineconeEmulator
    from tests.emulators.weaviate_server import WeaviateEmulator

    app, _, out = source
    with PineconeEmulator(api_key="k") as pemu, WeaviateEmulator() as wemu:
        pinecone = _app(
            tmp_path / "p",
            store="pinecone",
            store_options={"api_key": "k", "controller_host": pemu.url, "index": "mig"},
        )
        weaviate = _app(
            tmp_path / "w",
            store="weaviate",
            store_options={"url": wemu.url, "grpc_port": wemu.grpc_port},
        )
        back = _app(tmp_path / "c")
        hops = [(pinecone, out)]
        for here, nxt in [(pinecone, weaviate), (weaviate, back)]:
            import_file(here, hops[-1][1])
            assert _snapshot(here) == _snapshot(app)
            assert _topk(here) == _topk(app)
            step = tmp_path / f"{here.store.info.backend}.jsonl.gz"
            export_index(here, step)
            assert _lines(step)[-1]["tenants"] == _lines(out)[-1]["tenants"]
            hops.append((nxt, step))
        import_file(back, hops[-1][1])
        assert _snapshot(back) == _snapshot(app)
        assert _topk(back) == _topk(app)
        for other in (pinecone, weaviate, back):
            other.close()
