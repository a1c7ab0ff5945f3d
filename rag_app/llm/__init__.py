"""Chat models: a local GGUF model run by the app itself, or OpenAI (or compatible)."""

from rag_app.llm.factory import ChatLLM, build_chat_llm
from rag_app.llm.models import BUNDLED, DEFAULT_MODEL, BundledModel, find_bundled

__all__ = ["BUNDLED", "DEFAULT_MODEL", "BundledModel", "ChatLLM", "build_chat_llm", "find_bundled"]
