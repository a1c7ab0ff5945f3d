"""Prompt files, loaded at run time from a folder (default: the project's `prompts/`).

Three files, editable without touching code:

- ``condense_question.txt`` — rewrites a follow-up into a standalone question
  (placeholders ``{chat_history}`` and ``{question}``);
- ``answer.txt`` — answers from the retrieved documents (``{context}``, ``{question}``;
  optionally ``{no_answer}``);
- ``no_answer.txt`` — the fixed phrase used when the documents do not contain the answer.

A prompt file is a user message, or messages introduced by lines that read exactly
``[system]``, ``[user]`` and ``[assistant]`` (worked examples as earlier turns); the last one
is a ``[user]`` message. Placeholders use ``{name}``; write ``{{`` and ``}}``
for literal braces. A file is read again when it changes on disk, so edits apply to the next
turn of a running app. A missing, unreadable, empty or malformed file is a `PromptError`
naming the file.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from string import Formatter

from langchain_core.prompts import ChatPromptTemplate

from rag_app.errors import ConfigError

CONDENSE_FILE = "condense_question.txt"
ANSWER_FILE = "answer.txt"
NO_ANSWER_FILE = "no_answer.txt"

SECTION = re.compile(r"^\[(system|user|assistant)\][ \t]*$", re.MULTILINE)

# Placeholders each prompt must / may use.
REQUIRED = {
    CONDENSE_FILE: frozenset({"chat_history", "question"}),
    ANSWER_FILE: frozenset({"context", "question"}),
}
OPTIONAL = {
    CONDENSE_FILE: frozenset({"no_answer"}),
    ANSWER_FILE: frozenset({"no_answer"}),
}


class PromptError(ConfigError):
    """A prompt file is missing, unreadable or malformed."""


def project_prompts_dir() -> Path:
    """The default prompts folder: the copy packaged in an installed wheel (`rag_app/prompts`),
    else `prompts/` next to the `rag_app` package (the project root of a checkout)."""
    return prompts_dir_of(Path(__file__).resolve().parents[1])


def prompts_dir_of(package: Path) -> Path:
    """`package/prompts` when the wheel put it there, else `prompts/` beside `package`."""
    packaged = package / "prompts"
    return packaged if packaged.is_dir() else package.parent / "prompts"


def _placeholders(text: str, path: Path) -> set[str]:
    try:
        return {name for _, name, _, _ in Formatter().parse(text) if name is not None}
    except ValueError as exc:
        raise PromptError(
            f"prompt file {path}: {exc} (write '{{{{' and '}}}}' for literal braces)"
        ) from exc


def parse_prompt_file(path: Path, text: str) -> ChatPromptTemplate:
    """Build a chat prompt from a prompt file's text (see the module docstring)."""
    name = path.name
    matches = list(SECTION.finditer(text))
    messages: list[tuple[str, str]] = []
    if not matches:
        messages.append(("human", text.strip()))
    else:
        if text[: matches[0].start()].strip():
            raise PromptError(f"prompt file {path}: text before the first [system] or [user] line")
        for i, match in enumerate(matches):
            end = matches[i + 1].start() if i + 1 < len(matches) else len(text)
            body = text[match.end() : end].strip()
            role = {"system": "system", "user": "human", "assistant": "ai"}[match.group(1)]
            if not body:
                raise PromptError(f"prompt file {path}: the [{match.group(1)}] section is empty")
            messages.append((role, body))
        if messages[-1][0] != "human":
            raise PromptError(f"prompt file {path}: the last section must be [user]")
    if not messages[0][1]:
        raise PromptError(f"prompt file {path} is empty")
    used: set[str] = set()
    for _, body in messages:
        used |= _placeholders(body, path)
    required = REQUIRED.get(name, frozenset())
    allowed = required | OPTIONAL.get(name, frozenset())
    missing = sorted(required - used)
    unknown = sorted(used - allowed) if name in REQUIRED else []
    if missing:
        raise PromptError(
            f"prompt file {path} lacks the placeholder(s) "
            + ", ".join("{" + m + "}" for m in missing)
        )
    if unknown:
        raise PromptError(
            f"prompt file {path} uses unknown placeholder(s) "
            + ", ".join("{" + u + "}" for u in unknown)
            + f"; allowed: {', '.join('{' + a + '}' for a in sorted(allowed))}"
            + " (write '{{' and '}}' for literal braces)"
        )
    return ChatPromptTemplate.from_messages(messages)


@dataclass(frozen=True)
class _Loaded:
    mtime_ns: int
    size: int
    text: str


class PromptSet:
    """The chain's prompts, read from `folder` (and re-read when a file changes)."""

    def __init__(self, folder: Path | str | None = None) -> None:
        self.folder = Path(folder) if folder else project_prompts_dir()
        self._cache: dict[str, _Loaded] = {}
        self._templates: dict[str, tuple[_Loaded, ChatPromptTemplate]] = {}
        self._lock = threading.Lock()

    def path(self, name: str) -> Path:
        return self.folder / name

    def _read(self, name: str) -> _Loaded:
        path = self.path(name)
        try:
            st = path.stat()
        except FileNotFoundError as exc:
            raise PromptError(
                f"prompt file {path} is missing (prompts folder: {self.folder}; set "
                "RAG_PROMPTS_DIR to the folder that holds condense_question.txt, answer.txt "
                "and no_answer.txt)"
            ) from exc
        except OSError as exc:
            raise PromptError(f"prompt file {path} is unreadable: {exc.strerror or exc}") from exc
        with self._lock:
            cached = self._cache.get(name)
            if cached and cached.mtime_ns == st.st_mtime_ns and cached.size == st.st_size:
                return cached
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError as exc:
            raise PromptError(f"prompt file {path} is not UTF-8 text") from exc
        except OSError as exc:
            raise PromptError(f"prompt file {path} is unreadable: {exc.strerror or exc}") from exc
        if not text.strip():
            raise PromptError(f"prompt file {path} is empty")
        loaded = _Loaded(st.st_mtime_ns, st.st_size, text)
        with self._lock:
            self._cache[name] = loaded
        return loaded

    def _template(self, name: str) -> ChatPromptTemplate:
        loaded = self._read(name)
        with self._lock:
            hit = self._templates.get(name)
            if hit and hit[0] == loaded:
                return hit[1]
        template = parse_prompt_file(self.path(name), loaded.text)
        with self._lock:
            self._templates[name] = (loaded, template)
        return template

    # -- the prompts ----------------------------------------------------------------------
    @property
    def no_answer(self) -> str:
        """The fixed no-answer phrase (the file's text, whitespace collapsed)."""
        return " ".join(self._read(NO_ANSWER_FILE).text.split())

    @property
    def condense(self) -> ChatPromptTemplate:
        return self._template(CONDENSE_FILE)

    @property
    def answer(self) -> ChatPromptTemplate:
        return self._template(ANSWER_FILE)

    def check(self) -> None:
        """Load every prompt now (raises `PromptError` naming the first bad file)."""
        _ = self.no_answer, self.condense, self.answer

    def partial_values(self) -> Mapping[str, str]:
        return {"no_answer": self.no_answer}
