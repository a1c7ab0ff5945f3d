"""Vector store adapters. Each backend lives in its own module and is imported lazily."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rag_app.errors import ConfigError

if TYPE_CHECKING:
    from rag_app.settings import Settings
    from rag_app.stores.base import VectorStorePort


def open_store(settings: Settings, *, dimension: int, embedding_model: str) -> VectorStorePort:
    """Open the configured store. Adapters for Pinecone and Weaviate plug in here."""
    if settings.store == "chroma":
        from rag_app.stores.chroma import ChromaStore

        return ChromaStore(
            collection=settings.collection,
            dimension=dimension,
            embedding_model=embedding_model,
            path=None if settings.chroma_url else settings.data_dir / "chroma",
            url=settings.chroma_url,
        )
    raise ConfigError(
        f"store={settings.store!r} is not available in this version yet: only 'chroma' "
        "(embedded or server) is implemented. Set RAG_STORE=chroma."
    )
