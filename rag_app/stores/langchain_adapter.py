"""A write-side LangChain `VectorStore` over any `VectorStorePort`, for LangChain's indexing
API (record manager, deterministic ids, cleanup). It deliberately offers no unfiltered search:
reads go through `rag_app.retrieval.search.SecureSearch`, which always applies a principal."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

from langchain_core.documents import Document
from langchain_core.embeddings import Embeddings
from langchain_core.vectorstores import VectorStore

from rag_app.embeddings import check_vector
from rag_app.errors import DimensionMismatchError
from rag_app.stores.base import VectorStorePort


class PortVectorStore(VectorStore):
    def __init__(
        self,
        port: VectorStorePort,
        embeddings: Embeddings,
        *,
        embed_batch_size: int = 32,
        on_progress: Callable[[int], None] | None = None,
    ) -> None:
        self.port = port
        self._embeddings = embeddings
        self.embed_batch_size = embed_batch_size
        self.on_progress = on_progress

    @property
    def embeddings(self) -> Embeddings:
        return self._embeddings

    def add_texts(
        self,
        texts: Iterable[str],
        metadatas: list[dict] | None = None,
        *,
        ids: list[str] | None = None,
        **kwargs: Any,
    ) -> list[str]:
        texts = list(texts)
        if ids is None or len(ids) != len(texts):
            raise ValueError("PortVectorStore.add_texts needs one id per text")
        metas = metadatas or [{} for _ in texts]
        dimension = self.port.info.dimension
        # Embed everything first and check it, so that a bad vector writes nothing. Texts are
        # embedded longest first, in groups (progress is reported per group): batches of
        # similar length waste the least padding, exactly as one big encode call would.
        order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
        vectors: list[list[float] | None] = [None] * len(texts)
        group = max(self.embed_batch_size * 4, 256)
        for start in range(0, len(order), group):
            chosen = order[start : start + group]
            embedded = self._embeddings.embed_documents([texts[i] for i in chosen])
            if len(embedded) != len(chosen):
                raise DimensionMismatchError(
                    f"the embedding model returned {len(embedded)} vectors for {len(chosen)} texts"
                )
            for i, vec in zip(chosen, embedded, strict=True):
                problem = check_vector(vec, dimension)
                if problem:
                    raise DimensionMismatchError(problem)
                vectors[i] = vec
            if self.on_progress:
                self.on_progress(len(chosen))
        self.port.upsert(ids, texts, [v for v in vectors if v is not None], metas)
        return ids

    def add_documents(self, documents: list[Document], **kwargs: Any) -> list[str]:
        ids = kwargs.pop("ids", None) or [d.id for d in documents]
        return self.add_texts(
            [d.page_content for d in documents],
            [dict(d.metadata) for d in documents],
            ids=list(ids),
        )

    def delete(self, ids: list[str] | None = None, **kwargs: Any) -> bool | None:
        if ids:
            self.port.delete(ids)
        return True

    def similarity_search(self, query: str, k: int = 4, **kwargs: Any) -> list[Document]:
        raise NotImplementedError(
            "unfiltered search is not offered; use rag_app.retrieval.SecureSearch with a Principal"
        )

    @classmethod
    def from_texts(
        cls,
        texts: list[str],
        embedding: Embeddings,
        metadatas: list[dict] | None = None,
        *,
        ids: list[str] | None = None,
        **kwargs: Any,
    ) -> PortVectorStore:
        raise NotImplementedError("build stores with rag_app.app.App")

    def get_by_ids(self, ids: Sequence[str], /) -> list[Document]:
        raise NotImplementedError("reads go through SecureSearch")
