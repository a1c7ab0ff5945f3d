"""Composition root: the one place that builds the application's objects from `Settings`.

Everything is built lazily, so `rag-app stats` never loads the embedding model and a notebook
can swap one part (e.g. `App(settings, embeddings=fake)`) for experiments or tests.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Any

from rag_app._offline import configure_offline
from rag_app.access.filters import FieldKind, Node, parse_filter
from rag_app.access.permissions import Principal
from rag_app.embeddings import EmbeddingModel
from rag_app.errors import ConfigError, FilterError
from rag_app.ingest.pipeline import Ingestor
from rag_app.ingest.splitting import TokenSplitter
from rag_app.ingest.state import IngestState
from rag_app.retrieval.retriever import PermissionAwareRetriever
from rag_app.retrieval.search import SecureSearch
from rag_app.settings import Settings
from rag_app.stores.base import (
    Metadata,
    NativeHybrid,
    VectorStorePort,
    indexable,
    native_hybrid,
    scannable,
)
from rag_app.users import UserDirectory

if TYPE_CHECKING:
    from langchain_core.language_models import BaseChatModel

    from rag_app.chain import ChatService, ChatSession, PromptSet
    from rag_app.llm import ChatLLM
    from rag_app.retrieval.bm25 import KeywordIndex
    from rag_app.retrieval.queries import QueryVectors
    from rag_app.retrieval.search import Searcher


def build_embeddings(settings: Settings) -> EmbeddingModel:
    if settings.embeddings == "local":
        from rag_app.embeddings import LocalEmbeddings

        return LocalEmbeddings(
            settings.local_model_path,
            batch_size=settings.embed_batch_size,
            backend=settings.embed_backend,
            cache_dir=settings.embed_cache_dir,
        )
    if settings.embeddings == "openai":
        from rag_app.embeddings import OpenAIEmbeddingModel

        return OpenAIEmbeddingModel(settings)
    raise ConfigError(f"unknown embeddings {settings.embeddings!r}")


@dataclass(frozen=True)
class DeletePlan:
    """The chunks a delete will remove (shown to the operator before confirming)."""

    ids: list[str]
    per_source: dict[str, int]  # source -> chunks


class App:
    def __init__(
        self,
        settings: Settings | None = None,
        *,
        embeddings: EmbeddingModel | None = None,
        store: VectorStorePort | None = None,
    ) -> None:
        # The composition root loads the models, stores and UI: their offline defaults must be
        # in the environment before those libraries are imported (they read them on import).
        configure_offline()
        self.settings = settings or Settings()
        if embeddings is not None:
            self.__dict__["embeddings"] = embeddings
        if store is not None:
            self.__dict__["store"] = store

    # -- parts --------------------------------------------------------------------------
    @cached_property
    def embeddings(self) -> EmbeddingModel:
        return build_embeddings(self.settings)

    @cached_property
    def store(self) -> VectorStorePort:
        from rag_app.stores import open_store

        try:
            return open_store(
                self.settings,
                dimension=self.embeddings.dimension,
                embedding_model=self.embeddings.name,
            )
        except ConfigError as exc:
            if "mixing models" in str(exc) and isinstance(
                getattr(self.embeddings, "backend", None), str
            ):
                raise ConfigError(
                    f"{exc} The local model's name includes its backend where the vectors "
                    "differ (RAG_EMBED_BACKEND: torch and onnx give the same vectors, "
                    "onnx-int8 others): set RAG_EMBED_BACKEND back to what this collection "
                    "was built with, or ingest into another collection."
                ) from exc
            raise

    @cached_property
    def store_location(self) -> str:
        """Identifies the physical index (from the store adapter), so that ingest state and
        derived indexes never mix two stores."""
        from rag_app.stores import store_location

        return store_location(self.settings)

    @cached_property
    def state(self) -> IngestState:
        state = IngestState(self.settings.state_url, namespace=self.store_location)
        if state.needs_field_migration() or (
            not state.has_documents() and state.record_manager.list_keys(limit=1)
        ):
            # Once, for a state database of an earlier version: the field catalog did not
            # know tenants, and documents (stats, facets) were read from the store.
            scan = scannable(self.store, "rebuild the ingest state's catalog")
            state.rebuild_from_records(scan.records())
        return state

    @cached_property
    def splitter(self) -> TokenSplitter:
        return TokenSplitter(
            self.embeddings,
            chunk_size=self.settings.chunk_size,
            chunk_overlap=self.settings.chunk_overlap,
        )

    @cached_property
    def ingestor(self) -> Ingestor:
        s = self.settings
        # The local model's backend is recorded even where its vectors equal torch's (then
        # the model name, which the store checks, stays the same): switching re-embeds.
        backend = getattr(self.embeddings, "backend", None)
        encoder = {"encoder": backend} if isinstance(backend, str) and backend != "torch" else {}
        fingerprint = json.dumps(
            {
                **encoder,
                "model": self.embeddings.name,
                "chunk_size": s.chunk_size,
                "chunk_overlap": s.chunk_overlap,
                "date_fields": sorted(s.date_fields),
                "splitter": 1,
                "tables": 2,  # table rows indexed as sentences (rag_app.ingest.tables)
                "list_intros": 1,  # a chunk starting inside a list repeats its intro
            },
            sort_keys=True,
        )
        return Ingestor(
            store=self.store,
            embeddings=self.embeddings,
            state=self.state,
            splitter=self.splitter,
            date_fields=s.date_fields,
            max_file_bytes=int(s.max_file_mb * 1_000_000),
            embed_batch_size=s.embed_batch_size,
            settings_fingerprint=hashlib.sha256(fingerprint.encode()).hexdigest(),
        )

    @cached_property
    def query_vectors(self) -> QueryVectors:
        """Query embeddings, cached and batched (`rag_app.retrieval.queries`); shared by every
        searcher of this App, so `prime` before a batch of searches embeds them at once."""
        from rag_app.retrieval.queries import QueryVectors

        return QueryVectors(self.embeddings)

    @cached_property
    def search(self) -> SecureSearch:
        return SecureSearch(
            self.store,
            self.embeddings,
            known_fields=self.state.fields,
            date_fields=tuple(self.settings.date_fields),
            default_k=self.settings.k,
            vectors=self.query_vectors,
        )

    @cached_property
    def users(self) -> UserDirectory:
        return UserDirectory.load(self.settings.users_file)

    # -- services -----------------------------------------------------------------------
    def principal(self, user: str | None, *, tenant: str | None = None) -> Principal:
        """A user from the users file, or an anonymous principal of `tenant`."""
        if user:
            principal = self.users.principal(user)
            if tenant and tenant != principal.tenant:
                raise ConfigError(f"user {user!r} belongs to tenant {principal.tenant!r}")
            return principal
        if not tenant:
            raise ConfigError("give --user NAME, or --tenant NAME for anonymous access")
        return Principal.anonymous(tenant)

    def retriever(
        self,
        principal: Principal,
        *,
        filter: Mapping[str, Any] | str | None = None,
        k: int | None = None,
        retriever: str | None = None,
    ) -> PermissionAwareRetriever:
        """A LangChain retriever bound to `principal`, over `searcher(retriever)` (default:
        RAG_RETRIEVER)."""
        return PermissionAwareRetriever(
            search=self.searcher(retriever),
            principal=principal,
            filter=dict(filter) if isinstance(filter, Mapping) else filter,
            k=k or self.settings.k,
        )

    def admin_filter(self, raw: Mapping[str, Any] | str | None) -> Node | None:
        """Operator filters (delete/stats) may name tenant and acl. They go through the same
        validation as query filters, against every tenant's field catalog (unknown fields and
        comparisons a store would evaluate wrongly, e.g. a fractional bound on an int field,
        are errors): a delete must never remove more than the filter says."""
        known: dict[str, FieldKind] = {"tenant": "str", "acl": "list"}
        known.update(self.state.fields())
        return parse_filter(raw, known_fields=known, date_fields=self.settings.date_fields)

    def stats(self, *, last_runs: int = 10) -> dict[str, Any]:
        """Counts per tenant, source type and category for the configured store, the totals
        of every store this state database knows, and the last ingest runs. All from the
        ingest state: no store scan, no embedding model."""
        per_tenant: Counter[str] = Counter()
        per_category: Counter[str] = Counter()
        types: dict[str, Counter[str]] = {}
        docs = self.state.documents()
        for doc in docs:
            per_tenant[doc.tenant] += doc.chunks
            kind = types.setdefault(doc.source_type, Counter())
            kind["documents"] += 1
            kind["chunks"] += doc.chunks
            kind[f"tenant:{doc.tenant}"] += doc.chunks
            category = doc.facets.get("category")
            if category is not None:
                per_category[str(category)] += doc.chunks
        here = self.store_location
        stores = [
            {"store": ns, "documents": n_docs, "chunks": n_chunks, "current": ns == here}
            for ns, (n_docs, n_chunks) in self.state.document_totals().items()
        ]
        if not any(s["current"] for s in stores):
            stores.append({"store": here, "documents": 0, "chunks": 0, "current": True})
        return {
            "store": self.settings.store,
            "location": here,
            # the store's own spelling when it is open (Weaviate capitalises), else as set
            "collection": self.store.info.collection
            if "store" in self.__dict__
            else self.settings.collection,
            "chunks": sum(per_tenant.values()),
            "documents": len(docs),
            "per_tenant": dict(sorted(per_tenant.items())),
            "per_source_type": [
                {
                    "type": kind,
                    "documents": c["documents"],
                    "chunks": c["chunks"],
                    "per_tenant": {
                        k.removeprefix("tenant:"): v
                        for k, v in sorted(c.items())
                        if k.startswith("tenant:")
                    },
                }
                for kind, c in sorted(types.items())
            ],
            "per_category": dict(sorted(per_category.items())),
            "per_source": [
                {
                    "tenant": d.tenant,
                    "source": d.source,
                    "type": d.source_type,
                    "chunks": d.chunks,
                    "updated_at": d.updated_at,
                }
                for d in sorted(docs, key=lambda d: (d.tenant, d.source))
            ],
            "stores": stores,
            "last_ingests": [
                r.as_dict() for r in self.state.runs(limit=last_runs, every_store=True)
            ],
        }

    def plan_delete(
        self,
        *,
        sources: Iterable[str] = (),
        filter: Any = None,
        older_than: float | None = None,
        now: float | None = None,
    ) -> DeletePlan:
        """What a delete by source or (operator) filter would remove, without removing it.
        `older_than` (seconds) keeps only chunks older than that: by their ``created_at``
        (epoch seconds) where they have one, else by their document's ingest time (the
        ingest state's ``updated_at``); alone, it selects among every chunk."""
        sources = [s for s in sources if s]
        where: Node | None
        if sources:
            raw: dict[str, Any] = (
                {"source": sources[0]} if len(sources) == 1 else {"source": {"$in": sources}}
            )
            where = parse_filter(raw)  # sources are exact strings: no catalog needed
        else:
            where = self.admin_filter(filter)
        if where is None and older_than is None:
            raise FilterError(
                "refusing to delete without a filter: give --source, --filter or --older-than"
            )
        scan = scannable(self.store, "find the records to delete")
        found: list[tuple[str, Metadata]] = [(r.id, r.metadata) for r in scan.records(where)]
        if sources and not found:
            # A JSONL file's records have sources "<file>#<id>": match them by prefix.
            prefixes = tuple(f"{s}#" for s in sources)
            found = [
                (r.id, r.metadata)
                for r in scan.records()
                if str(r.metadata.get("source", "")).startswith(prefixes)
            ]
        if older_than is not None:
            cutoff = (time.time() if now is None else now) - older_than
            ingested = {(d.tenant, d.source): d.updated_at for d in self.state.documents()}

            def is_old(metadata: Metadata) -> bool:
                created = metadata.get("created_at")
                if isinstance(created, int | float) and not isinstance(created, bool):
                    return float(created) < cutoff
                key = (str(metadata.get("tenant", "")), str(metadata.get("source", "")))
                at = ingested.get(key)
                return at is not None and at < cutoff

            found = [(i, m) for i, m in found if is_old(m)]
        touched: Counter[str] = Counter(str(m.get("source", "")) for _, m in found)
        return DeletePlan(ids=[i for i, _ in found], per_source=dict(touched))

    def delete(
        self, *, sources: Iterable[str] = (), filter: Any = None, plan: DeletePlan | None = None
    ) -> int:
        """Delete chunks by source or by an (operator) filter (or a `plan_delete` result);
        keeps the ingest state in step, so a later ingest of the same file adds it back."""
        plan = plan or self.plan_delete(sources=sources, filter=filter)
        if plan.ids:
            self.store.delete(plan.ids)
            self.state.delete_chunk_records(plan.ids)
            self.state.forget_sources(plan.per_source)
            self.state.remove_chunks_of_sources(plan.per_source)
        return len(plan.ids)

    def close(self) -> None:
        self.close_chat()
        if "store" in self.__dict__:
            self.store.close()
        if "state" in self.__dict__:
            self.state.close()

    # -- chat -----------------------------------------------------------------------------
    @cached_property
    def prompts(self) -> PromptSet:
        from rag_app.chain import PromptSet

        return PromptSet(self.settings.prompts_dir)

    @cached_property
    def chat_llm(self) -> ChatLLM:
        """The chat model (RAG_LLM=local starts the in-process model server here)."""
        from rag_app.llm import build_chat_llm

        return build_chat_llm(self.settings)

    @cached_property
    def llm(self) -> BaseChatModel:
        return self.chat_llm.model

    @cached_property
    def chat(self) -> ChatService:
        from rag_app.chain import ChatService

        self.prompts.check()  # a bad prompt file fails before a model is started
        llm = self.llm  # may be injected: app.__dict__["llm"] = a LangChain chat model
        label = self.chat_llm.describe() if "chat_llm" in self.__dict__ else None
        return ChatService(
            self.search,
            llm,
            self.prompts,
            self.settings,
            count_tokens=self.embeddings.count_tokens,
            retriever_factory=lambda principal, filter, k: self.retriever(
                principal, filter=filter, k=k
            ),
            llm_label=label,
        )

    def chat_session(self, session_id: str | None = None) -> ChatSession:
        """A new, empty conversation (one per user tab / notebook / CLI run)."""
        return self.chat.new_session(session_id)

    def close_chat(self) -> None:
        """Stop the local model server, if one was started (also happens at exit)."""
        if "chat_llm" in self.__dict__:
            self.chat_llm.close()

    # -- retrieval: dense | bm25 | hybrid ------------------------------------------------------
    @cached_property
    def keyword_index(self) -> KeywordIndex:
        """BM25 over this store's chunks; persisted under <data_dir>/bm25 and rebuilt from the
        store whenever the store's change token moved (see rag_app.retrieval.bm25)."""
        from rag_app.retrieval.bm25 import KeywordIndex, index_directory

        return KeywordIndex(
            indexable(self.store, "keep a BM25 index (RAG_RETRIEVER=bm25)"),
            directory=index_directory(self.settings.data_dir, self.store_location),
            background=self.settings.bm25_refresh == "background",
        )

    def searcher(self, kind: str | None = None) -> Searcher:
        """The one search entry point: dense | bm25 | hybrid (default: RAG_RETRIEVER). Each is
        a raw retriever behind the one permission guard. Hybrid is the store's own hybrid
        search when it has one (RAG_HYBRID_MODE=auto|native), else BM25 + dense fused here."""
        kind = kind or self.settings.retriever
        if kind not in ("dense", "bm25", "hybrid"):
            raise ConfigError(f"unknown retriever {kind!r}; use dense, bm25 or hybrid")
        if kind == "dense":
            return self.search
        cache: dict[str, Searcher] = self.__dict__.setdefault("_searchers", {})
        if kind not in cache:
            cache[kind] = self._build_searcher(kind)
        return cache[kind]

    def _build_searcher(self, kind: str) -> Searcher:
        from rag_app.retrieval.bm25 import KeywordSearch
        from rag_app.retrieval.hybrid import HybridSearch, NativeHybridRetriever
        from rag_app.retrieval.search import PermissionGuard

        s = self.settings
        guard: dict[str, Any] = {
            "known_fields": self.state.fields,
            "date_fields": tuple(s.date_fields),
            "default_k": s.k,
        }
        if kind == "bm25":
            return KeywordSearch(self.keyword_index, **guard)
        native = isinstance(self.store, NativeHybrid)
        if s.hybrid_mode == "native" and not native:
            raise ConfigError(
                f"RAG_HYBRID_MODE=native, but the {self.store.info.backend} store has no hybrid "
                "search of its own; use auto or fused"
            )
        if native and s.hybrid_mode != "fused":
            store = native_hybrid(self.store, "run hybrid search")
            raw = NativeHybridRetriever(
                store, self.embeddings, alpha=s.hybrid_alpha, vectors=self.query_vectors
            )
            return PermissionGuard(raw, self.store, **guard)
        return HybridSearch(
            self.search.raw,
            KeywordSearch(self.keyword_index).raw,
            store=self.store,
            fusion=s.fusion,
            alpha=s.hybrid_alpha,
            rrf_k=s.rrf_k,
            **guard,
        )
