"""rag_app: permission-aware retrieval-augmented generation over Chroma, Pinecone and Weaviate."""

from rag_app._offline import configure_offline

# Offline defaults must be in the environment before huggingface_hub, gradio or ragas are
# imported (they read these variables at import time). Only defaults are set: a user's own
# environment wins.
configure_offline()

__version__ = "0.1.0"

__all__ = ["__version__", "configure_offline"]
