"""Chat history of one conversation, bounded by a token budget.

Each `ChatSession` is its own object (one per browser tab, notebook or CLI run); nothing is
shared between sessions. Whole turns (question + answer) are kept, newest first, while they
fit in `max_tokens` as counted by `count_tokens` (the embedding model's tokenizer by default,
never a downloaded one); older turns are dropped.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage

TokenCounter = Callable[[str], int]

# Per-turn overhead for the "User:" / "Assistant:" labels and line breaks.
TURN_OVERHEAD_TOKENS = 8


@dataclass(frozen=True)
class Turn:
    question: str  # what the user typed
    answer: str
    tokens: int
    standalone: str | None = None  # the rewrite used for retrieval, if any


def approximate_tokens(text: str) -> int:
    """Fallback counter (about 4 characters per token) when no tokenizer is at hand."""
    return max(1, (len(text) + 3) // 4) if text else 0


class ChatSession:
    def __init__(
        self,
        max_tokens: int = 1024,
        count_tokens: TokenCounter | None = None,
        *,
        session_id: str | None = None,
    ) -> None:
        if max_tokens < 0:
            raise ValueError("max_tokens must be >= 0")
        self.id = session_id or uuid.uuid4().hex
        self.max_tokens = max_tokens
        self.count_tokens: TokenCounter = count_tokens or approximate_tokens
        self._turns: list[Turn] = []
        self._lock = threading.Lock()

    # -- reading ------------------------------------------------------------------------
    @property
    def session_id(self) -> str:
        return self.id

    @property
    def turns(self) -> list[Turn]:
        with self._lock:
            return list(self._turns)

    def __len__(self) -> int:
        with self._lock:
            return len(self._turns)

    def __bool__(self) -> bool:  # an empty session is still a session
        return True

    @property
    def tokens(self) -> int:
        with self._lock:
            return sum(t.tokens for t in self._turns)

    def messages(self) -> list[BaseMessage]:
        """The history as LangChain messages (oldest first)."""
        out: list[BaseMessage] = []
        for turn in self.turns:
            out.append(HumanMessage(turn.question))
            out.append(AIMessage(turn.answer))
        return out

    def as_text(self) -> str:
        """The history as a transcript for the condense prompt."""
        lines: list[str] = []
        for turn in self.turns:
            lines.append(f"User: {turn.question}")
            lines.append(f"Assistant: {turn.answer}")
        return "\n".join(lines)

    # -- writing ------------------------------------------------------------------------
    def add_turn(self, question: str, answer: str, *, standalone: str | None = None) -> None:
        tokens = self.count_tokens(question) + self.count_tokens(answer) + TURN_OVERHEAD_TOKENS
        with self._lock:
            self._turns.append(Turn(question, answer, tokens, standalone))
            self._trim()

    def _trim(self) -> None:
        total = sum(t.tokens for t in self._turns)
        while self._turns and total > self.max_tokens:
            total -= self._turns.pop(0).tokens

    def clear(self) -> None:
        with self._lock:
            self._turns.clear()
