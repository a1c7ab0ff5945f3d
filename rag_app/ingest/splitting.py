"""Split text into chunks measured in the embedding model's own tokens.

LangChain's `RecursiveCharacterTextSplitter` does the structural splitting (headings,
paragraphs, sentences, words) with the model's tokenizer as length function. Because merged
pieces can tokenize slightly differently from their parts, every chunk is re-measured and any
chunk over the model's limit is cut on token boundaries, so the model never truncates text.

A chunk that starts inside a list gets the list's introducing sentence again ("Each type has a
code that Finance uses for accounting:" before "- H10 Hotel (room only)"): without it the items
match no question about what they are, and a reader of the chunk cannot tell either.
"""

from __future__ import annotations

import re
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


# A list item: "- x", "* x", "• x", "1. x", "a) x".
_ITEM = re.compile(r"^\s*(?:[-*+•]\s|\d{1,3}[.)]\s|[a-z][.)]\s)")
INTRO_MAX_LINES = 3  # lines of the paragraph that ends with the introducing ":"
INTRO_MAX_TOKENS = 48


def _last_open_intro(text: str) -> str | None:
    """The sentence introducing the list that `text` ends in, if it ends in one: the
    paragraph (at most `INTRO_MAX_LINES` lines, from its last sentence start) whose last line
    ends with ":" and is followed only by list items and their continuation lines."""
    lines = [line.rstrip() for line in text.splitlines()]
    end = len(lines)
    while end and not lines[end - 1].strip():
        end -= 1
    i = end - 1
    saw_item = False
    while i >= 0 and lines[i].strip():  # list items (and their indented wrapped lines)
        if lines[i].rstrip().endswith(":") and not _ITEM.match(lines[i]):
            break
        if _ITEM.match(lines[i]):
            saw_item = True
        elif not lines[i][:1].isspace():
            return None  # a paragraph (or a numbered heading's text), not a list
        i -= 1
    if i < 0 or not lines[i].rstrip().endswith(":") or (not saw_item and i != end - 1):
        return None
    first = i
    while (
        first > 0
        and i - first + 1 < INTRO_MAX_LINES
        and lines[first - 1].strip()
        and not _ITEM.match(lines[first - 1])
        and not lines[first - 1].lstrip().startswith("#")
    ):
        first -= 1
    intro = " ".join(line.strip() for line in lines[first : i + 1])
    # from the start of the sentence that ends in the colon (the one before it, too, when
    # that is short context such as "Add one line per receipt and choose the expense type.")
    sentences = re.split(r"(?<=[.!?])\s+", intro)
    return " ".join(sentences[-2:]) if len(sentences) > 1 else intro


def _list_start(chunk: str, previous: str) -> str | None:
    """`chunk` from its first list item, when it starts inside the list `previous` ends in:
    with an item, or with the wrapped rest of one that the overlap repeats from `previous`
    ("mileage; T50 Car rental ..."; dropped here, as `previous` holds it); else None."""
    lines = chunk.strip().split("\n")
    for n, line in enumerate(lines):
        if _ITEM.match(line):
            if n and " ".join(" ".join(lines[:n]).split()) not in " ".join(previous.split()):
                return None  # text before the first item that only this chunk holds
            return "\n".join(lines[n:])
        if n >= INTRO_MAX_LINES:
            return None
    return None


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
        return self._carry_list_intros(chunks)

    def _carry_list_intros(self, chunks: list[str]) -> list[str]:
        """A chunk that starts inside a list (`_list_start`) gets the introducing
        sentence of the list the previous chunk ended in (when it is not already there and
        still fits)."""
        out = list(chunks)
        for n in range(1, len(chunks)):
            rest = _list_start(chunks[n], chunks[n - 1])
            if rest is None:
                continue
            intro = _last_open_intro(out[n - 1])  # carried along a list over many chunks
            if not intro or intro in " ".join(chunks[n].split()):
                continue
            if self.counter.count_tokens(intro) > INTRO_MAX_TOKENS:
                continue
            carried = f"{intro}\n{rest}"
            if self.counter.count_tokens(carried) <= self.limit:
                out[n] = carried
        return out

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
