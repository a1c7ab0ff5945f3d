"""`rag-app cost estimate`: each pricing model's arithmetic against hand-computed values from a
small price table, the table's date in the output, no prices outside the table, token counts
against tiktoken on a real (embedded Chroma) corpus, `--vectors` scaling, malformed tables,
and the CLI."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import tiktoken
import typer
from typer.testing import CliRunner

from rag_app.app import App
from rag_app.cli.cost import register
from rag_app.errors import ConfigError
from rag_app.ops.cost import (
    PriceTableError,
    Workload,
    build_workload,
    default_price_table,
    estimate,
    estimate_app,
    load_price_table,
    measure_corpus,
    render,
)
from rag_app.settings import Settings
from rag_app.stores.base import scannable
from tests.fakes import HashEmbeddings
from tests.fakes import markdown_doc as doc

GIB = 2**30

# A small table with round numbers: every expected value below is computed by hand from it.
TABLE: dict[str, Any] = {
    "date": "2026-11-02",
    "currency": "USD",
    "pinecone": {
        "serverless": {
            "plan": "Standard",
            "region": "aws us-east-1",
            "source": "https://example.test/pinecone",
            "storage_gb_month": 2.0,
            "read_units_per_million": 10.0,
            "write_units_per_million": 4.0,
            "ru_per_query_per_gb": 1.0,
            "min_ru_per_query": 0.25,
            "wu_per_kb_written": 1.0,
            "min_wu_per_request": 5,
            "monthly_minimum": 50.0,
        }
    },
    "weaviate": {
        "cloud": {
            "plan": "Flex",
            "source": ["https://example.test/weaviate"],
            "vector_dimensions_per_million_month": 0.01,
            "storage_gib_month": 0.5,
            "backup_gib_month": 0.25,
            "monthly_minimum": 45.0,
        }
    },
    "chroma": {
        "self_hosted": {
            "source": "https://example.test/vm",
            "ram_gib_month": 4.0,
            "disk_gib_month": 0.1,
            "hnsw_m": 16,
            "hnsw_link_bytes_per_m": 10,
        },
        "cloud": {
            "plan": "Starter",
            "source": "https://example.test/chroma",
            "write_gib": 2.5,
            "storage_gib_month": 0.25,
            "query_tib": 0.01,
            "returned_gib": 0.1,
            "query_units_per_search": 3,
            "monthly_minimum": 0,
        },
    },
    "openai": {
        "embeddings": {
            "source": "https://example.test/openai",
            "text-embedding-3-small": 0.02,
            "text-embedding-3-large": 0.13,
        }
    },
    "assumptions": {
        "source": "test",
        "metadata_bytes": 500,
        "bytes_per_token": 4,
        "id_bytes": 40,
    },
}


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return repr(value)


def to_toml(data: dict[str, Any]) -> str:
    """Just enough TOML for the tables here: scalars first, then (nested) sections."""
    lines: list[str] = []

    def emit(prefix: str, node: dict[str, Any]) -> None:
        scalars = {k: v for k, v in node.items() if not isinstance(v, dict)}
        if prefix and scalars:
            lines.append(f"[{prefix}]")
        for key, value in scalars.items():
            lines.append(f"{json.dumps(key)} = {_toml_value(value)}")
        for key, value in node.items():
            if isinstance(value, dict):
                emit(f"{prefix}.{key}" if prefix else key, value)

    emit("", data)
    return "\n".join(lines) + "\n"


def write_table(tmp_path: Path, data: dict[str, Any] | None = None, name: str = "p.toml") -> Path:
    path = tmp_path / name
    path.write_text(to_toml(data if data is not None else TABLE), encoding="utf-8")
    return path


def edited(**changes: Any) -> dict[str, Any]:
    """TABLE with changes given as section__key=value (``__`` between levels); None deletes."""
    data = json.loads(json.dumps(TABLE))
    for dotted, value in changes.items():
        *parents, key = dotted.split("__")
        node = data
        for part in parents:
            node = node[part]
        if value is None:
            node.pop(key, None)
        else:
            node[key] = value
    return data


WORKLOAD = Workload(
    vectors=1_000_000,
    dimension=1000,
    metadata_bytes=500,
    text_bytes=500,
    id_bytes=24,
    tokens=2_000_000,
    queries_per_month=100_000,
    k=5,
    upsert_batch=100,
)


@pytest.fixture
def table(tmp_path: Path) -> Any:
    return load_price_table(write_table(tmp_path))


# -- arithmetic of each pricing model ---------------------------------------------------------
def test_pinecone_serverless_arithmetic(table: Any) -> None:
    pine = estimate(WORKLOAD, table).store("pinecone serverless")
    items = {i.name: i for i in pine.items}
    # record = 4 x 1000 + 500 + 500 = 5,000 B; 1M records = 5 GB x $2 = $10
    assert items["storage"].cost == pytest.approx(10.0)
    # a query reads max(0.25, 5 GB x 1 RU/GB) = 5 RU; 100k queries = 500k RU x $10/1M = $5
    assert items["queries"].inputs["ru_per_query"] == pytest.approx(5.0)
    assert items["queries"].cost == pytest.approx(5.0)
    # 10,000 requests of 100 x 5 KB = 500 WU each = 5M WU x $4/1M = $20, once
    assert items["initial upsert"].inputs["write_units"] == 5_000_000
    assert items["initial upsert"].cost == pytest.approx(20.0)
    assert items["initial upsert"].period == "once"
    assert pine.monthly_usage == pytest.approx(15.0)
    assert pine.monthly_total == pytest.approx(50.0)  # the plan minimum
    assert pine.one_time == pytest.approx(20.0)
    assert "5 GB x $2.00/GB-month" in items["storage"].formula


@pytest.mark.parametrize(
    ("records", "dimension", "metadata", "expected_wu"),
    [
        # Pinecone's own examples ("Understanding cost", upsert table): 1 x 3.2 KB -> 5 (the
        # minimum), 2 x 3.2 KB -> 7, 10 x 19.10 KB -> 191.
        (1, 768, 100, 5),
        (2, 768, 100, 7),
        (10, 1024, 15_000, 191),
        # 1,001 records of 5 KB: 10 full requests of 500 WU + one of max(5, 5) WU
        (1001, 1000, 1000, 5005),
    ],
)
def test_pinecone_write_units(
    table: Any, records: int, dimension: int, metadata: int, expected_wu: int
) -> None:
    w = replace(
        WORKLOAD, vectors=records, dimension=dimension, metadata_bytes=metadata, text_bytes=0
    )
    item = next(
        i for i in estimate(w, table).store("pinecone serverless").items if "upsert" in i.name
    )
    assert item.inputs["write_units"] == expected_wu
    assert item.cost == pytest.approx(expected_wu / 1e6 * 4.0)


def test_pinecone_read_units_per_namespace(table: Any) -> None:
    # Pinecone's example: 500,000 records of 768 dims + 500 B metadata = 1.786 GB -> 1.786 RU
    w = replace(WORKLOAD, vectors=500_000, dimension=768, metadata_bytes=500, text_bytes=0)
    reads = estimate(w, table).store("pinecone serverless").items[1]
    assert reads.inputs["ru_per_query"] == pytest.approx(1.786)
    # two equal tenants (namespaces) of 2.5 GB each: 0.5 x 2.5 + 0.5 x 2.5 = 2.5 RU
    w = replace(WORKLOAD, namespace_shares=(0.5, 0.5))
    assert estimate(w, table).store("pinecone serverless").items[1].inputs[
        "ru_per_query"
    ] == pytest.approx(2.5)
    # 1 GB in namespaces of 0.9 GB and 0.1 GB: 0.9 x 0.9 + 0.1 x max(0.25, 0.1) = 0.835 RU
    w = replace(WORKLOAD, vectors=200_000, namespace_shares=(0.9, 0.1))
    assert estimate(w, table).store("pinecone serverless").items[1].inputs[
        "ru_per_query"
    ] == pytest.approx(0.835)


def test_weaviate_cloud_arithmetic(table: Any, tmp_path: Path) -> None:
    wv = estimate(WORKLOAD, table).store("weaviate cloud")
    items = {i.name: i for i in wv.items}
    # 1M objects x 1000 dims = 1e9 dims = 1,000 x $0.01 = $10
    assert items["vector dimensions"].cost == pytest.approx(10.0)
    # 1M x (4000 + 500 + 500 + 24) B = 5.024e9 B in GiB
    gib = 5_024_000_000 / GIB
    assert items["storage"].cost == pytest.approx(gib * 0.5)
    assert items["backup"].cost == pytest.approx(gib * 0.25)
    assert wv.monthly_usage == pytest.approx(10 + gib * 0.75)
    assert wv.monthly_total == pytest.approx(45.0)
    # without a backup price, no backup line
    no_backup = load_price_table(
        write_table(tmp_path, edited(weaviate__cloud__backup_gib_month=None), "nb.toml")
    )
    assert [i.name for i in estimate(WORKLOAD, no_backup).store("weaviate cloud").items] == [
        "vector dimensions",
        "storage",
    ]


def test_chroma_self_hosted_arithmetic(table: Any) -> None:
    ch = estimate(WORKLOAD, table).store("chroma self-hosted")
    ram, disk = ch.items
    # RAM: 1M x (4 x 1000 + 16 x 10) B = 4.16e9 B
    assert ram.inputs["ram_gib"] == pytest.approx(4_160_000_000 / GIB)
    assert ram.cost == pytest.approx(4_160_000_000 / GIB * 4.0)
    # disk: vectors 4e9 + links 1.6e8 + metadata 5e8 + text 5e8 + ids 2.4e7 = 5.184e9 B
    assert disk.inputs["vectors_gib"] == pytest.approx(4e9 / GIB)
    assert disk.inputs["hnsw_links_gib"] == pytest.approx(1.6e8 / GIB)
    assert disk.inputs["ids_gib"] == pytest.approx(2.4e7 / GIB)
    assert disk.cost == pytest.approx(5_184_000_000 / GIB * 0.1)
    assert ch.monthly_total == pytest.approx(ram.cost + disk.cost)
    assert ch.one_time == 0


def test_chroma_cloud_arithmetic(table: Any) -> None:
    cc = estimate(WORKLOAD, table).store("chroma cloud")
    items = {i.name: i for i in cc.items}
    gib = 1_000_000 * (24 + 4000 + 500 + 500) / GIB
    assert items["initial write"].cost == pytest.approx(gib * 2.5)
    assert items["storage"].cost == pytest.approx(gib * 0.25)
    # 100k searches x 3 units x (gib / 1024) TiB x $0.01
    assert items["queries (scanned)"].cost == pytest.approx(300_000 * gib / 1024 * 0.01)
    # 100k searches x 5 results x (24 + 500 + 500) B = 5.12e8 B x $0.1/GiB
    assert items["queries (returned)"].cost == pytest.approx(512_000_000 / GIB * 0.1)
    assert cc.monthly_minimum == 0
    assert cc.one_time == pytest.approx(gib * 2.5)


def test_embedding_costs(table: Any) -> None:
    result = estimate(WORKLOAD, table)
    costs = {e.model: e.cost for e in result.embeddings}
    assert costs == {
        "text-embedding-3-small": pytest.approx(0.04),  # 2M tokens x $0.02/1M
        "text-embedding-3-large": pytest.approx(0.26),
    }


# -- no hidden constants ----------------------------------------------------------------------
def test_every_cost_comes_from_the_table(tmp_path: Path, table: Any) -> None:
    """Doubling every price and minimum in the table doubles every line item and total; a
    change to a model parameter (HNSW M) changes RAM; nothing else prices anything."""
    doubled = json.loads(json.dumps(TABLE))
    params = {
        "ru_per_query_per_gb",
        "min_ru_per_query",
        "wu_per_kb_written",
        "min_wu_per_request",
        "hnsw_m",
        "hnsw_link_bytes_per_m",
        "query_units_per_search",
    }

    def double(node: dict[str, Any]) -> None:
        for key, value in node.items():
            if isinstance(value, dict):
                if key != "assumptions":
                    double(value)
            elif isinstance(value, int | float) and key not in params:
                node[key] = value * 2

    double(doubled)
    base = estimate(WORKLOAD, table)
    twice = estimate(WORKLOAD, load_price_table(write_table(tmp_path, doubled, "x2.toml")))
    for a, b in zip(base.stores, twice.stores, strict=True):
        assert b.monthly_total == pytest.approx(2 * a.monthly_total)
        for item_a, item_b in zip(a.items, b.items, strict=True):
            assert item_b.cost == pytest.approx(2 * item_a.cost), item_a.name
    for ea, eb in zip(base.embeddings, twice.embeddings, strict=True):
        assert eb.cost == pytest.approx(2 * ea.cost)

    m32 = load_price_table(write_table(tmp_path, edited(chroma__self_hosted__hnsw_m=32), "m.toml"))
    ram = estimate(WORKLOAD, m32).store("chroma self-hosted").items[0]
    assert ram.inputs["ram_gib"] == pytest.approx(1_000_000 * (4000 + 320) / GIB)

    added = edited(openai__embeddings__my_model=1.0)
    models = [
        e.model
        for e in estimate(
            WORKLOAD, load_price_table(write_table(tmp_path, added, "add.toml"))
        ).embeddings
    ]
    assert "my_model" in models


def test_the_shipped_table_loads(tmp_path: Path) -> None:
    path = default_price_table()
    assert path.name == "prices.toml" and path.parent.name == "data"
    shipped = load_price_table()
    assert shipped.date.startswith("20")
    assert {"text-embedding-3-small", "text-embedding-3-large", "text-embedding-ada-002"} <= set(
        shipped.embeddings
    )
    assert all(shipped.sources.values())
    text = "\n".join(render(estimate(WORKLOAD, shipped)))
    assert f"dated {shipped.date}" in text and str(path.resolve()) in text


# -- malformed tables -------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("changes", "where", "why"),
    [
        (
            {"pinecone__serverless__storage_gb_month": None},
            "[pinecone.serverless] storage_gb_month",
            "missing",
        ),
        (
            {"pinecone__serverless__storage_gb_month": -0.33},
            "[pinecone.serverless] storage_gb_month",
            "rejected",
        ),
        (
            {"weaviate__cloud__storage_gib_month": 0},
            "[weaviate.cloud] storage_gib_month",
            "rejected",
        ),
        ({"chroma__cloud__write_gib": "2.50"}, "[chroma.cloud] write_gib", "not a positive number"),
        ({"chroma__cloud__write_gib": True}, "[chroma.cloud] write_gib", "not a positive number"),
        ({"chroma__self_hosted__hnsw_m": 15.5}, "[chroma.self_hosted] hnsw_m", "positive integer"),
        (
            {"pinecone__serverless__monthly_minimum": -1},
            "[pinecone.serverless] monthly_minimum",
            "negative",
        ),
        (
            {"pinecone__serverless__storage_gb_mnth": 0.33},
            "[pinecone.serverless] storage_gb_mnth",
            "unknown key",
        ),
        ({"pinecone__pods": {"x": 1}}, "[pinecone.pods]", "unknown"),
        ({"weaviate__cloud__source": None}, "[weaviate.cloud] source", "missing"),
        ({"date": "last week"}, "date", "not a date"),
        ({"date": None}, "date", "not a date"),
        ({"openai__embeddings__text-embedding-3-small": 0}, "text-embedding-3-small", "rejected"),
        ({"assumptions": None}, "[assumptions]", "section missing"),
    ],
)
def test_malformed_tables_are_rejected(
    tmp_path: Path, changes: dict[str, Any], where: str, why: str
) -> None:
    path = write_table(tmp_path, edited(**changes))
    with pytest.raises(PriceTableError) as info:
        load_price_table(path)
    message = str(info.value)
    assert str(path) in message and where in message and why in message, message
    assert isinstance(info.value, ConfigError)


def test_zero_minimum_is_allowed_and_models_are_required(tmp_path: Path) -> None:
    ok = load_price_table(write_table(tmp_path, edited(pinecone__serverless__monthly_minimum=0)))
    assert estimate(WORKLOAD, ok).store("pinecone serverless").monthly_total == pytest.approx(15)
    no_models = edited(
        **{
            "openai__embeddings__text-embedding-3-small": None,
            "openai__embeddings__text-embedding-3-large": None,
        }
    )
    with pytest.raises(PriceTableError, match="no model prices"):
        load_price_table(write_table(tmp_path, no_models, "n.toml"))


def test_unreadable_tables(tmp_path: Path) -> None:
    missing = tmp_path / "nope.toml"
    with pytest.raises(PriceTableError, match=r"nope\.toml does not exist"):
        load_price_table(missing)
    broken = tmp_path / "broken.toml"
    broken.write_text('date = "2026-11-02"\n[pinecone.serverless\n')
    with pytest.raises(PriceTableError, match=r"broken\.toml is not valid TOML"):
        load_price_table(broken)


# -- a real corpus ----------------------------------------------------------------------------
@pytest.fixture
def app(tmp_path: Path) -> Any:
    root = tmp_path / "corpus"
    root.mkdir()
    words = "naïve café résumé 東京 tokens <|endoftext|> émoji 🙂 plain words"
    (root / "a.md").write_text(doc("A", "\n\n".join(f"alpha {i} {words}" * 6 for i in range(4))))
    (root / "b.md").write_text(doc("B", "beta text " * 80, tenant="globex"))
    settings = Settings(data_dir=tmp_path / "data", chunk_size=60, chunk_overlap=10)
    application = App(settings, embeddings=HashEmbeddings(32))
    report = application.ingestor.ingest([root])
    assert report.ok, report.rejected
    yield application
    application.close()


def test_tokens_are_tiktoken_counts_of_the_stored_chunks(app: App) -> None:
    encoding = tiktoken.get_encoding("cl100k_base")
    records = list(scannable(app.store, "test").records(with_text=True))
    expected = sum(len(encoding.encode(r.text or "", disallowed_special=())) for r in records)
    profile = measure_corpus(app)
    assert profile.records == len(records) == app.store.count() > 2
    assert profile.tokens == expected
    assert profile.dimension == 32
    assert profile.tenants == {
        "acme": sum(r.metadata["tenant"] == "acme" for r in records),
        "globex": sum(r.metadata["tenant"] == "globex" for r in records),
    }
    text_bytes = sum(len((r.text or "").encode()) for r in records) / len(records)
    assert profile.avg_text_bytes == pytest.approx(text_bytes)
    result = estimate_app(app, prices=default_price_table())
    assert result.workload.tokens == expected and result.tokens_measured
    assert result.embeddings[0].cost == pytest.approx(
        expected / 1e6 * load_price_table().embeddings[result.embeddings[0].model]
    )


def test_vectors_scale_the_measured_corpus(app: App, tmp_path: Path) -> None:
    prices = write_table(tmp_path)
    base = estimate_app(app, prices=prices, queries_per_month=0)
    n = base.workload.vectors
    big = estimate_app(app, prices=prices, vectors=10 * n, queries_per_month=0)
    assert big.workload.tokens == round(10 * n * base.profile.avg_tokens)  # type: ignore[union-attr]
    assert not big.tokens_measured
    for name in ("pinecone serverless", "weaviate cloud", "chroma self-hosted", "chroma cloud"):
        assert big.store(name).monthly_usage == pytest.approx(10 * base.store(name).monthly_usage)
    assert any("shaped like" in note for note in big.workload.assumptions)
    assert big.embeddings[0].cost == pytest.approx(10 * base.embeddings[0].cost, rel=1e-3)


def test_empty_store_needs_vectors_and_then_states_its_assumptions(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data", chunk_size=60, chunk_overlap=10)
    empty = App(settings, embeddings=HashEmbeddings(32))
    try:
        prices = write_table(tmp_path)
        with pytest.raises(ConfigError, match="--vectors N"):
            estimate_app(empty, prices=prices)
        result = estimate_app(empty, prices=prices, vectors=1000)
        w = result.workload
        assert (w.metadata_bytes, w.id_bytes, w.text_bytes) == (500, 40, 60 * 4)
        assert w.tokens == 1000 * 60
        text = "\n".join(render(result))
        assert "nothing to measure" in text and "assumed" in text
    finally:
        empty.close()


def test_workload_defaults_and_checks(table: Any) -> None:
    with pytest.raises(ConfigError, match="positive"):
        build_workload(
            None,
            table,
            dimension=8,
            vectors=0,
            queries_per_month=1,
            k=5,
            chunk_size=10,
            upsert_batch=100,
        )
    w = build_workload(
        None,
        table,
        dimension=8,
        vectors=10,
        queries_per_month=None,
        k=5,
        chunk_size=10,
        upsert_batch=100,
    )
    assert w.queries_per_month == 100_000
    assert any("the default" in note for note in w.assumptions)


# -- the CLI ----------------------------------------------------------------------------------
def cli(app: App, *args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    tui = typer.Typer()

    @tui.callback()
    def _root(ctx: typer.Context) -> None:
        ctx.obj = SimpleNamespace(app=app)

    register(tui)
    result = CliRunner().invoke(tui, ["cost", *args], env=env, standalone_mode=False)
    if result.exception is not None:
        raise result.exception
    return int(result.return_value or 0), result.output


def test_cli_text_names_the_table_and_its_date(app: App, tmp_path: Path) -> None:
    prices = write_table(tmp_path)
    code, out = cli(app, "estimate", "--prices", str(prices), "--queries-per-month", "5000")
    assert code == 0
    assert "dated 2026-11-02" in out and str(prices.resolve()) in out
    for store in ("pinecone serverless", "weaviate cloud", "chroma self-hosted", "chroma cloud"):
        assert store in out
    assert "5,000 queries" in out and "text-embedding-3-large" in out
    assert "$2.00/GB-month" in out  # the table's storage price, shown in the formula
    # editing the table changes the output
    other = write_table(
        tmp_path, edited(date="2027-01-15", pinecone__serverless__storage_gb_month=7.5), "o.toml"
    )
    _, out2 = cli(app, "estimate", "--prices", str(other))
    assert "dated 2027-01-15" in out2 and "$7.50/GB-month" in out2
    assert "100,000 queries per month (the default" in out2


def test_cli_json_parses_and_env_var_selects_the_table(app: App, tmp_path: Path) -> None:
    prices = write_table(tmp_path)
    code, out = cli(
        app, "estimate", "--json", "--vectors", "1000", env={"RAG_PRICE_TABLE": str(prices)}
    )
    assert code == 0
    data = json.loads(out)
    assert data["price_table"]["date"] == "2026-11-02"
    assert data["price_table"]["path"] == str(prices.resolve())
    assert data["workload"]["vectors"] == 1000
    assert [s["store"] for s in data["stores"]] == [
        "pinecone serverless",
        "weaviate cloud",
        "chroma self-hosted",
        "chroma cloud",
    ]
    pine = data["stores"][0]
    assert pine["monthly_total"] == max(pine["monthly_usage"], 50.0)
    assert all(
        math.isfinite(i["cost"]) and i["formula"] for s in data["stores"] for i in s["items"]
    )
    assert data["embeddings"]["tokenizer"] == "tiktoken cl100k_base"
    assert data["corpus"]["records"] > 0


def test_cli_rejects_a_malformed_table(app: App, tmp_path: Path) -> None:
    bad = write_table(tmp_path, edited(chroma__cloud__query_tib=-1))
    with pytest.raises(PriceTableError, match=r"\[chroma\.cloud\] query_tib"):
        cli(app, "estimate", "--prices", str(bad))


def test_the_corpus_measures_the_same_on_every_store(
    store_settings: dict[str, Any], tmp_path: Path
) -> None:
    """The estimate reads the configured store: Chroma (embedded and server), Pinecone and
    Weaviate (emulators) give the same records, tenants and tokens for the same corpus."""
    root = tmp_path / "corpus"
    root.mkdir()
    (root / "a.md").write_text(doc("A", "\n\n".join(f"alpha {i} " * 40 for i in range(3))))
    (root / "b.md").write_text(doc("B", "beta text " * 80, tenant="globex"))
    application = App(
        Settings(**store_settings, chunk_size=60, chunk_overlap=10), embeddings=HashEmbeddings(32)
    )
    try:
        assert application.ingestor.ingest([root]).ok
        encoding = tiktoken.get_encoding("cl100k_base")
        records = list(scannable(application.store, "test").records(with_text=True))
        profile = measure_corpus(application)
        assert profile.records == len(records) == application.store.count() > 2
        assert profile.tokens == sum(
            len(encoding.encode(r.text or "", disallowed_special=())) for r in records
        )
        assert profile.dimension == 32
        assert set(profile.tenants) == {"acme", "globex"}
        assert profile.avg_metadata_bytes > 0
        rendered = "\n".join(render(estimate_app(application, prices=default_price_table())))
        assert f"{profile.records} records" in rendered
    finally:
        application.close()
