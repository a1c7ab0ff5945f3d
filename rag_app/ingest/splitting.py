"""Split text into chunks measured in the embedding model's own tokens.

LangChain's `RecursiveCharacterTextSplitter` does the structural splitting (headings,
paragraphs, sentences, words) with the model's tokenizer as length function. Because merged
pieces can tokenize slightly differently from their parts, every chunk is re-measured and any
chunk over the model's limit is cut on token boundaries, so the model never truncates text.
"""

from __future__ import annotations

from typing import Protocol

from langchain_text_splitters import RecursiveCharacterTextSplitter

from rag_app.embeddings import TokenCounter
from rag_app.errors import ConfigError

SEPARATORS = [
    "\n#{1,6} ",
    "\n\n",
    "\n",
    r"\. ",
    r"\? ",
    "! ",
    "; ",
    ", ",
    " ",
    "",
]


class _Offsets(Protocol):
    def token_offsets(self, text: str) -> list[tuple[int, int]]: ...


class TokenSplitter:
    def __init__(self, counter: TokenCounter, *, chunk_size: int, chunk_overlap: int) -> None:
        if chunk_size > counter.max_tokens:
            raise ConfigError(
                f"chunk_size {chunk_size} exceeds the embedding model's limit of "
                f"{counter.max_tokens} tokens; text beyond it would be silently truncated. "
                f"Set RAG_CHUNK_SIZE <= {counter.max_tokens}."
            )
        if chunk_overlap >= chunk_size:
            raise ConfigError("chunk_overlap must be smaller than chunk_size")
        self.counter = counter
        self.chunk_size = chunk_size
        self.limit = counter.max_tokens
        self._splitter = RecursiveCharacterTextSplitter(
            separators=SEPARATORS,
            is_separator_regex=True,
            keep_separator="start",
            chunk_size=chunk_size,
            chunk_overlap=chunk_overlap,
            length_function=counter.count_tokens,
            strip_whitespace=True,
        )

    def split(self, text: str) -> list[str]:
        chunks: list[str] = []
        for chunk in self._splitter.split_text(text):
            if not chunk.strip():
                continue
            if self.counter.count_tokens(chunk) <= self.limit:
                chunks.append(chunk)
            else:
                chunks.extend(self._hard_split(chunk))
        return chunks

    def _hard_split(self, text: str) -> list[str]:
        """Cut on token boundaries into pieces of at most chunk_size tokens."""
        offsets_of = getattr(self.counter, "token_offsets", None)
        if offsets_of is None:
            # Fall back to halving by characters until each piece fits.
            mid = len(text) // 2
            return [p for half in (text[:mid], text[mid:]) for p in self._fit(half)]
        offsets = offsets_of(text)
        pieces = []
        for start in range(0, len(offsets), self.chunk_size):
            window = offsets[start : start + self.chunk_size]
            piece = text[window[0][0] : window[-1][1]].strip()
            if piece:
                pieces.append(piece)
        return pieces

    def _fit(self, text: str) -> list[str]:
        if self.counter.count_tokens(text) <= self.limit:
            return [text]
        return self._hard_split(text)
