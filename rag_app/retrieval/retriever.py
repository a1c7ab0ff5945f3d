"""LangChain retriever bound to a principal: chains can only search as someone."""

from __future__ import annotations

from typing import Any

from langchain_core.callbacks import CallbackManagerForRetrieverRun
from langchain_core.documents import Document
from langchain_core.retrievers import BaseRetriever
from pydantic import ConfigDict

from rag_app.access.permissions import Principal
from rag_app.retrieval.search import Searcher


class PermissionAwareRetriever(BaseRetriever):
    """Retrieval through any `Searcher` (dense `SecureSearch`, `KeywordSearch` or
    `HybridSearch`) as `principal`, narrowed by `filter`."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    search: Searcher
    principal: Principal
    filter: dict[str, Any] | str | None = None
    k: int = 5

    def _get_relevant_documents(
        self, query: str, *, run_manager: CallbackManagerForRetrieverRun
    ) -> list[Document]:
        result = self.search.search(self.principal, query, filter=self.filter, k=self.k)
        docs = []
        for hit in result.hits:
            metadata = {
                **hit.metadata,
                "score": hit.score,
                "chunk_id": hit.id,
                "retriever": result.retriever,
            }
            detail = result.details.get(hit.id)
            if detail:
                metadata["scores"] = dict(detail)
                # with document-level fusion `score` is the document's; this is the passage's
                if "chunk_fused" in detail:
                    metadata["passage_score"] = detail["chunk_fused"]
            docs.append(Document(id=hit.id, page_content=hit.text, metadata=metadata))
        return docs
