"""Composition root: the one place that builds the application's objects from `Settings`.

Everything is built lazily, so `rag-app stats` never loads the embedding model. The parts a
notebook or a test may swap are constructor arguments (`App(settings, embeddings=fake,
llm=scripted)`), and `App.derive(**setting_updates)` makes an App on other settings that keeps
them. Domain logic lives in the services the App wires up (e.g. `App.admin`,
`rag_app.ops.admin`), not here.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from functools import cached_property
from typing import TYPE_CHECKING, Any

from rag_app._offline import configure_offline
from rag_app.access.permissions import Principal
from rag_app.embeddings import EmbeddingModel
from rag_app.errors import ConfigError
from rag_app.ingest.pipeline import Ingestor
from rag_app.ingest.splitting import TokenSplitter
from rag_app.ingest.state import IngestState
from rag_app.retrieval.retriever import PermissionAwareRetriever
from rag_app.retrieval.search import SecureSearch
from rag_app.settings import Settings
from rag_app.stores.base import (
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
    from rag_app.ops.admin import IndexAdmin
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


#: Where the store is (what `open_store` and `store_location` read; data_dir also holds the
#: ingest state and the BM25 index): an App derived with other values cannot keep a given store.
STORE_SETTINGS = frozenset({"store", "store_options", "data_dir", "collection"})
#: What the embedding model is built from: an App derived with other values loads its own.
EMBEDDING_SETTINGS = frozenset(
    {
        "embeddings",
        "local_model_path",
        "embed_batch_size",
        "embed_backend",
        "embed_cache_dir",
        "openai_api_key",
        "openai_base_url",
        "openai_embedding_model",
        "openai_embedding_dimensions",
    }
)


class App:
    """Builds every part from `settings`, lazily, once.

    The parts a test or notebook may swap are constructor arguments: `embeddings`, `store`,
    `llm` (a LangChain chat model, used by the chat service instead of the configured one),
    `chat_llm` (a `rag_app.llm.ChatLLM`, which also names the model and the judge uses) and
    `users` (a `UserDirectory`). A given part stands in for the one its settings would build,
    and `close()` closes a given store as if the App had opened it.
    """

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        embeddings: EmbeddingModel | None = None,
        store: VectorStorePort | None = None,
        llm: BaseChatModel | None = None,
        chat_llm: ChatLLM | None = None,
        users: UserDirectory | None = None,
    ) -> None:
        # The composition root loads the models, stores and UI: their offline defaults must be
        # in the environment before those libraries are imported (they read them on import).
        configure_offline()
        self.settings = settings or Settings()
        given = {
            "embeddings": embeddings,
            "store": store,
            "llm": llm,
            "chat_llm": chat_llm,
            "users": users,
        }
        # Parts this App did not build: given by the caller, or shared by `derive`.
        self._given: dict[str, Any] = {n: part for n, part in given.items() if part is not None}
        # The caller's: they stand in for their settings here and in every derived App.
        self._injected: frozenset[str] = frozenset(self._given)
        # Shared with the App this one was derived from, which closes them.
        self._borrowed: frozenset[str] = frozenset()
        self._searchers: dict[str, Searcher] = {}

    def built(self, part: str) -> bool:
        """Whether `part` (``"store"``, ``"state"``, ``"chat_llm"``...) is given or already
        built; asking builds nothing."""
        # a cached_property keeps what it built in the instance's dict, under its own name
        return part in self._given or part in vars(self)

    def derive(self, **setting_updates: Any) -> App:
        """A new App on these settings with `setting_updates` applied (e.g. another retriever
        or collection; `Settings.model_copy(update=...)`, unknown names are an error).

        It keeps every part this App was given (embeddings, store, llm, chat_llm, users):
        they stand in for their settings there too, whatever the updates say of those. It also
        reuses this App's embedding model when already loaded and the updates leave it as is
        (`EMBEDDING_SETTINGS`), so the model is not loaded twice. Everything else it builds
        itself, and it never closes what it shares: this App does.

        A given store is never silently dropped: when the updates would point the store
        elsewhere (`STORE_SETTINGS`: store, store_options, data_dir, collection), this raises
        a `ConfigError`; build that App with its own store instead (`App(settings, store=...)`).
        """
        known = type(self.settings).model_fields
        unknown = sorted(set(setting_updates) - set(known))
        if unknown:
            raise ConfigError(f"derive: unknown setting(s) {', '.join(unknown)}")
        changed = {
            name for name, value in setting_updates.items() if value != getattr(self.settings, name)
        }
        moved = sorted(changed & STORE_SETTINGS)
        if moved and "store" in self._injected:
            updates = ", ".join(f"{name}=..." for name in moved)
            raise ConfigError(
                f"this App was given a store; derive({updates}) would point it elsewhere: "
                "build that App with its own store, App(settings, store=...)"
            )
        parts = {name: self._given[name] for name in self._injected}
        derived = App(self.settings.model_copy(update=setting_updates), **parts)
        shared = set(parts)
        if (
            "embeddings" not in parts
            and self.built("embeddings")
            and not (changed & EMBEDDING_SETTINGS)
        ):
            # already loaded, and the same model: not loaded twice (not a stand-in, though)
            derived._given["embeddings"] = self.embeddings
            shared.add("embeddings")
        derived._borrowed = frozenset(shared)
        return derived

    # -- parts --------------------------------------------------------------------------
    @cached_property
    def embeddings(self) -> EmbeddingModel:
        if "embeddings" in self._given:
            return self._given["embeddings"]
        return build_embeddings(self.settings)

    @cached_property
    def store(self) -> VectorStorePort:
        if "store" in self._given:
            return self._given["store"]
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
        if "users" in self._given:
            return self._given["users"]
        return UserDirectory.load(self.settings.users_file)

    @cached_property
    def admin(self) -> IndexAdmin:
        """Stats and deletes (`rag_app.ops.admin`) over this App's store and ingest state;
        opens neither until asked."""
        from rag_app.ops.admin import IndexAdmin

        return IndexAdmin(self)

    # -- services -----------------------------------------------------------------------
    def principal(self, user: str | None, *, tenant: str | None = None) -> Principal:
        """A user from the users file, or an anonymous principal of `tenant`."""
        if user:
            principal = self.users.principal(user)
            if tenant and tenant != principal.tenant:
                raise ConfigError(f"user {user!r} belongs to tenant {principal.tenant!r}")
            return principal
        if not tenant:
            raise ConfigError(
                "no user and no tenant: name a user, or a tenant for anonymous access"
            )
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

    def close(self) -> None:
        """Close what this App opened or was given (not what it shares with the App it was
        derived from)."""
        self.close_chat()
        if self._owns("store"):
            self.store.close()
        if self._owns("state"):
            self.state.close()

    def _owns(self, part: str) -> bool:
        return self.built(part) and part not in self._borrowed

    # -- chat -----------------------------------------------------------------------------
    @cached_property
    def prompts(self) -> PromptSet:
        from rag_app.chain import PromptSet

        return PromptSet(self.settings.prompts_dir)

    @cached_property
    def chat_llm(self) -> ChatLLM:
        """The chat model (RAG_LLM=local starts the in-process model server here)."""
        if "chat_llm" in self._given:
            return self._given["chat_llm"]
        from rag_app.llm import build_chat_llm

        return build_chat_llm(self.settings)

    @cached_property
    def llm(self) -> BaseChatModel:
        """The LangChain chat model the chat service calls: the one given, else chat_llm's."""
        if "llm" in self._given:
            return self._given["llm"]
        return self.chat_llm.model

    @cached_property
    def chat(self) -> ChatService:
        from rag_app.chain import ChatService

        self.prompts.check()  # a bad prompt file fails before a model is started
        llm = self.llm  # may be given: App(settings, llm=a LangChain chat model)
        label = self.chat_llm.describe() if self.built("chat_llm") else None
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
        if self._owns("chat_llm"):
            self.chat_llm.close()

    # -- retrieval: dense | bm25 | hybrid ------------------------------------------------------
    @cached_property
    def keyword_index(self) -> KeywordIndex:
        """BM25 over this store's chunks; persisted under <data_dir>/bm25 and refreshed from the
        store whenever the store's change token moved (see rag_app.retrieval.bm25). The token
        and count are re-read at most every RECOUNT_S while no write went through this
        process's store object (another process's write is seen within RECOUNT_S)."""
        from rag_app.retrieval.bm25 import RECOUNT_S, KeywordIndex, index_directory

        return KeywordIndex(
            indexable(self.store, "keep a BM25 index (RAG_RETRIEVER=bm25)"),
            directory=index_directory(self.settings.data_dir, self.store_location),
            background=self.settings.bm25_refresh == "background",
            recount_s=RECOUNT_S,
            token_s=RECOUNT_S,
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
        if kind not in self._searchers:
            self._searchers[kind] = self._build_searcher(kind)
        return self._searchers[kind]

    def _build_searcher(self, kind: str) -> Searcher:
        from rag_app.retrieval.bm25 import KeywordSearch
        from rag_app.retrieval.hybrid import HybridSearch, IdsFirstDense, NativeHybridRetriever
        from rag_app.retrieval.search import PermissionGuard, RawRetriever
        from rag_app.stores.base import NearestIds

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
        dense: RawRetriever = self.search.raw
        if isinstance(self.store, NearestIds):  # embedded Chroma: ids first, see IdsFirstDense
            dense = IdsFirstDense(
                self.search.raw,
                self.keyword_index,
                self.store,
                copy_bytes=s.vector_copy_mb * 1024 * 1024,
            )
        return HybridSearch(
            dense,
            KeywordSearch(self.keyword_index).raw,
            store=self.store,
            fusion=s.fusion,
            alpha=s.hybrid_alpha,
            rrf_k=s.rrf_k,
            **guard,
        )
