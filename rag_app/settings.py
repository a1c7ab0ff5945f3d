"""Typed settings. Built once by the composition root (`rag_app.app`); never read at import time.

Every field can be set with an environment variable ``RAG_<FIELD>`` (or in a ``.env`` file);
``OPENAI_API_KEY`` and ``OPENAI_BASE_URL`` are also read under their usual names.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import AliasChoices, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

EmbeddingsName = Literal["local", "openai"]
CleanupMode = Literal["incremental", "full"]
RetrieverName = Literal["dense", "bm25", "hybrid"]
FusionName = Literal["rrf", "weighted"]
LLMName = Literal["local", "openai"]
EmbedBackend = Literal["torch", "onnx", "onnx-int8"]
# Chosen by measurement with bench/bench_encoder.py: on SciFact, onnx-int8 is within 0.005
# nDCG@10 of torch (0.6575 vs 0.6602) and encodes 1.4-1.8x as many texts per second.
DEFAULT_EMBED_BACKEND: EmbedBackend = "onnx-int8"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="RAG_",
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        validate_default=True,
    )

    # --- where things live -------------------------------------------------------------
    store: str = Field(
        "chroma",
        pattern=r"^[a-z][a-z0-9_-]{0,31}$",
        description="Vector store adapter: chroma | pinecone | weaviate, or a plugin's name "
        "(see rag_app.stores.registry).",
    )
    store_options: dict[str, Any] = Field(
        default_factory=dict,
        description="Overrides of the store adapter's own settings (normally read from its "
        "environment variables, e.g. RAG_CHROMA_URL, RAG_PINECONE_INDEX, RAG_WEAVIATE_URL).",
    )
    data_dir: Path = Field(Path("data"), description="Embedded Chroma files and ingest state.")
    collection: str = Field(
        "rag_app",
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{1,61}[A-Za-z0-9]$",
        description="Collection (index) name.",
    )
    state_db_url: str | None = Field(
        None,
        description="SQLAlchemy URL of the ingest state (record manager); "
        "default: sqlite file in data_dir.",
    )

    # --- embeddings --------------------------------------------------------------------
    embeddings: EmbeddingsName = Field("local", description="Embedding model family.")
    local_model_path: Path | None = Field(
        None, description="Sentence-transformers model folder; default: bundled all-MiniLM-L6-v2."
    )
    # 32: on 2 cores both torch and ONNX int8 encoded ~10% more chunks/s than with 64
    # (bench/bench_ingest.py; shorter batches pad less)
    embed_batch_size: int = Field(32, ge=1, le=4096)
    embed_backend: EmbedBackend = Field(
        DEFAULT_EMBED_BACKEND,
        description="How the local model runs: torch (sentence-transformers) | onnx (ONNX "
        "Runtime, exported from the model's weights on first use; torch's vectors) | "
        "onnx-int8 (that export with int8 weights, the fastest; its vectors differ, so it is "
        "another model name for the stores).",
    )
    embed_cache_dir: Path | None = Field(
        None,
        description="Cache of the local model's ONNX exports; default: "
        "$XDG_CACHE_HOME/rag_app/onnx (~/.cache/rag_app/onnx).",
    )
    openai_api_key: SecretStr | None = Field(
        None, validation_alias=AliasChoices("RAG_OPENAI_API_KEY", "OPENAI_API_KEY")
    )
    openai_base_url: str | None = Field(
        None, validation_alias=AliasChoices("RAG_OPENAI_BASE_URL", "OPENAI_BASE_URL")
    )
    openai_embedding_model: str = "text-embedding-3-small"
    openai_embedding_dimensions: int | None = Field(None, ge=1)

    # --- ingestion ---------------------------------------------------------------------
    chunk_size: int = Field(200, ge=16, description="Chunk size in the embedding model's tokens.")
    chunk_overlap: int = Field(32, ge=0, description="Overlap between chunks, in tokens.")
    max_file_mb: float = Field(50.0, gt=0, description="Files larger than this are rejected.")
    date_fields: list[str] = Field(
        default_factory=lambda: ["created_at", "updated_at", "published_at", "date"],
        description="Metadata fields holding dates (stored as epoch seconds + ISO copy).",
    )

    # --- retrieval ---------------------------------------------------------------------
    k: int = Field(5, ge=1, le=1000, description="Number of chunks retrieved per query.")
    users_file: Path = Field(Path("demo/users.yaml"), description="Users, tenants and groups.")
    retriever: RetrieverName = Field(
        "hybrid", description="dense | bm25 | hybrid (BM25 + dense, the best on SciFact)."
    )
    fusion: FusionName = Field("weighted", description="Hybrid fusion: rrf | weighted.")
    hybrid_alpha: float = Field(
        0.5, ge=0.0, le=1.0, description="Weight of the dense half in weighted fusion."
    )
    rrf_k: int = Field(60, ge=1, description="Reciprocal rank fusion constant.")
    hybrid_mode: Literal["auto", "fused", "native"] = Field(
        "auto",
        description="Hybrid retrieval: the store's own hybrid search when it has one (auto), "
        "always BM25 + dense fused by the app (fused), or the store's only (native).",
    )
    vector_copy_mb: int = Field(
        64,
        ge=0,
        description="Largest copy (MB) of every stored vector that hybrid search on embedded "
        "Chroma searches exactly (1.5 KB per 384-d chunk: ~43k chunks). A larger collection, "
        "or 0, uses Chroma's HNSW index, which is faster past ~50k chunks.",
    )
    bm25_refresh: Literal["inline", "background"] = Field(
        "inline",
        description="When the store changed, rebuild the BM25 index before the next search "
        "(inline) or keep serving the old one, re-checked against the store, while a new one "
        "is built on a worker thread (background; what `rag-app serve` uses).",
    )

    # --- chat model ----------------------------------------------------------------------
    llm: LLMName = Field("local", description="local (GGUF on the CPU) | openai.")
    llm_model_path: Path | None = Field(
        None, description="GGUF chat model file; default: the bundled demo model."
    )
    openai_chat_model: str = "gpt-4o-mini"
    judge_model: str | None = Field(
        None,
        description="OpenAI model that judges answers in `eval run --judge-samples` and writes "
        "`eval generate` test sets; default: the chat model.",
    )
    llm_temperature: float = Field(0.1, ge=0.0, le=2.0)
    llm_max_tokens: int = Field(512, ge=16, le=8192, description="Answer length limit.")
    llm_context_tokens: int = Field(4096, ge=512, description="Local model context window.")
    llm_threads: int | None = Field(None, ge=1, description="CPU threads for the local model.")
    history_tokens: int = Field(
        1024, ge=0, description="Token budget of chat history kept per session."
    )
    context_select: Literal["sentences", "chunks"] = Field(
        "sentences",
        description="What the chat model reads of the retrieved passages: their sentences "
        "that best answer the question, within RAG_CONTEXT_TOKENS (sentences), or the whole "
        "chunks that fit in the model's window (chunks).",
    )
    context_tokens: int = Field(
        320,
        ge=32,
        description="Token budget of the passages' sentences in the answer prompt "
        "(context_select=sentences); chosen by measurement with bench/bench_chat.py.",
    )
    grounding: Literal["retry", "mark", "off"] = Field(
        "retry",
        description="After each answer, check that its numbers, dates and amounts appear in "
        "the sources it cites and that a 'yes' is not contradicted by the best-matching "
        "passage: answer once more with what failed (retry), only mark unsupported claims "
        "(mark), or check nothing (off).",
    )
    chat_followup: Literal["combine", "rewrite"] = Field(
        "combine",
        description="How a follow-up ('And for contractors?') becomes a question to search: "
        "joined to the previous question when it leans on it, with no model call (combine), "
        "or rewritten by the chat model as a standalone question (rewrite: one more model "
        "call per follow-up); chosen by measurement with bench/bench_chat.py.",
    )
    chat_asker_name: bool = Field(
        True,
        description="Add the user's display name to questions in the first person ('my "
        "merit increase' -> '... (I am Alice Moreau.)') for retrieval and the model; turn "
        "off to keep names out of what a remote chat model receives.",
    )
    metrics_port: int | None = Field(
        None,
        ge=1,
        le=65535,
        description="Also serve /metrics on this loopback port (127.0.0.1, no login).",
    )
    slow_query_ms: float = Field(
        500.0, ge=0, description="Log searches slower than this to the rag_app.slow logger."
    )
    prompts_dir: Path | None = Field(
        None,
        description="Folder of the chat prompt files; default: prompts/ of the checkout, or "
        "the copy installed with the package (rag_app/prompts).",
    )

    @field_validator("date_fields", mode="before")
    @classmethod
    def _split_csv(cls, value: object) -> object:
        if isinstance(value, str) and not value.lstrip().startswith("["):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @model_validator(mode="after")
    def _check(self) -> Settings:
        if self.chunk_overlap >= self.chunk_size:
            raise ValueError(
                f"chunk_overlap ({self.chunk_overlap}) must be smaller than "
                f"chunk_size ({self.chunk_size})"
            )
        if self.embeddings == "openai" and self.openai_api_key is None and not self.openai_base_url:
            raise ValueError(
                "embeddings=openai needs OPENAI_API_KEY (or OPENAI_BASE_URL for a compatible "
                "server)"
            )
        return self

    @property
    def state_url(self) -> str:
        if self.state_db_url:
            return self.state_db_url
        return f"sqlite:///{(self.data_dir / 'state.db').resolve()}"
