"""Conversational, permission-aware RAG chain (see `rag_app.chain.service`)."""

from rag_app.chain.events import (
    ChatEvent,
    ChatResult,
    Done,
    Error,
    Revise,
    Rewrite,
    SourceRecord,
    Sources,
    Timings,
    Token,
    UnsupportedClaim,
)
from rag_app.chain.history import ChatSession, Turn
from rag_app.chain.prompts import PromptError, PromptSet
from rag_app.chain.service import ChatError, ChatService

__all__ = [
    "ChatError",
    "ChatEvent",
    "ChatResult",
    "ChatService",
    "ChatSession",
    "Done",
    "Error",
    "PromptError",
    "PromptSet",
    "Revise",
    "Rewrite",
    "SourceRecord",
    "Sources",
    "Timings",
    "Token",
    "Turn",
    "UnsupportedClaim",
]
