"""Test doubles that behave like the real parts (no model weights, no network)."""

from __future__ import annotations

import hashlib
import math
import re

from langchain_core.embeddings import Embeddings

WORD = re.compile(r"[A-Za-z0-9]+")


class HashEmbeddings(Embeddings):
    """Bag-of-words hashing embedder: texts sharing words are near each other. Counts
    'tokens' as words, so chunking tests can reason about sizes."""

    def __init__(self, dimension: int = 64, *, max_tokens: int = 254, name: str = "hash") -> None:
        self._dimension = dimension
        self._max_tokens = max_tokens
        self._name = f"{name}-{dimension}"
        self.calls = 0
        self.texts_embedded = 0

    @property
    def name(self) -> str:
        return self._name

    @property
    def dimension(self) -> int:
        return self._dimension

    @property
    def max_tokens(self) -> int:
        return self._max_tokens

    def count_tokens(self, text: str) -> int:
        return len(text.split())

    def _vector(self, text: str) -> list[float]:
        vec = [0.0] * self._dimension
        for word in WORD.findall(text.lower()):
            digest = hashlib.blake2b(word.encode(), digest_size=8).digest()
            vec[int.from_bytes(digest[:4], "little") % self._dimension] += 1.0
        norm = math.sqrt(sum(x * x for x in vec)) or 1.0
        if norm == 1.0 and not any(vec):
            vec[0] = 1.0
        return [x / norm for x in vec]

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        self.calls += 1
        self.texts_embedded += len(texts)
        return [self._vector(t) for t in texts]

    def embed_query(self, text: str) -> list[float]:
        return self._vector(text)


class WrongDimensionEmbeddings(HashEmbeddings):
    """Returns a vector of the wrong length for any text containing `marker`."""

    def __init__(self, marker: str = "WRONGDIM", **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.marker = marker

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        vectors = super().embed_documents(texts)
        return [v[:-1] if self.marker in t else v for v, t in zip(vectors, texts, strict=True)]


class ExplodingEmbeddings(HashEmbeddings):
    """Raises `exc` on the n-th call of embed_documents (simulates a crash or Ctrl-C)."""

    def __init__(self, fail_on_call: int, exc: BaseException, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.fail_on_call = fail_on_call
        self.exc = exc

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        if self.calls + 1 == self.fail_on_call:
            self.calls += 1
            raise self.exc
        return super().embed_documents(texts)


class CitingFakeChat:
    """Factory for a streaming fake chat model: rewrites follow-ups when asked to condense,
    and answers by quoting the first document with a [1] citation, token by token."""

    @staticmethod
    def build(delay: float = 0.0):
        import re as _re
        import time as _time
        from collections.abc import Iterator
        from typing import Any

        from langchain_core.language_models import BaseChatModel
        from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
        from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult

        class _Model(BaseChatModel):
            delay: float = 0.0
            calls: int = 0

            @property
            def _llm_type(self) -> str:
                return "citing-fake"

            def _reply(self, messages: list[BaseMessage]) -> str:
                text = "\n".join(str(m.content) for m in messages)
                if "standalone" in text.lower():
                    found = _re.search(r"Follow-up message:\s*(.*)", text)
                    question = found.group(1).strip() if found else "the question"
                    return f"{question} regarding parental leave"
                # a real passage (<document id="3" source=...>), not the prompt's description
                # of the format ('between <document id="N"> and </document>')
                match = _re.search(r'<document id="\d+"[^>]*>\s*(.*?)</document>', text, _re.S)
                if not match:
                    return "I don't know."
                first = " ".join(match.group(1).split()[:12])
                return f"According to the documents, {first} [1]."

            def _generate(
                self,
                messages: list[BaseMessage],
                stop: Any = None,
                run_manager: Any = None,
                **kwargs: Any,
            ) -> ChatResult:
                self.calls += 1
                return ChatResult(
                    generations=[ChatGeneration(message=AIMessage(content=self._reply(messages)))]
                )

            def _stream(
                self,
                messages: list[BaseMessage],
                stop: Any = None,
                run_manager: Any = None,
                **kwargs: Any,
            ) -> Iterator[ChatGenerationChunk]:
                self.calls += 1
                for i, word in enumerate(self._reply(messages).split(" ")):
                    if self.delay:
                        _time.sleep(self.delay)
                    yield ChatGenerationChunk(
                        message=AIMessageChunk(content=(" " if i else "") + word)
                    )

        return _Model(delay=delay)


def markdown_doc(
    title: str, body: str, *, tenant: str = "acme", acl: str = "[public]", extra: str = ""
) -> str:
    """A Markdown document with front matter (`extra`: more front-matter lines)."""
    return f"---\ntitle: {title}\ntenant: {tenant}\nacl: {acl}\n{extra}---\n{body}"


def paragraphs(word: str, n: int) -> str:
    """`n` paragraphs of `word`, long enough to make several chunks."""
    return "\n\n".join(f"{word} paragraph {i} " + " ".join([word] * 40) for i in range(n))
