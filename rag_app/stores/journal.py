"""A change journal beside an embedded store's files: which ids each write touched.

Every write through `ChromaStore` (embedded) replaces the collection's change token. With a
journal, it also appends one line ``{"prev": old token, "next": new token, "ids": [...]}``
naming every id the write may have changed (upserted or deleted), so a derived copy (the BM25
index) built at one token can catch up by re-reading just those ids instead of scanning the
whole store (`changes_since`).

The token read, the token write and the append happen under one exclusive `fcntl` lock on a
file beside the journal, so every writer on this host (any process) extends one chain. What
the journal cannot vouch for, it does not claim: `changes_since` answers None (the caller then
scans) when the chain from one token to the other is not complete: a token without an entry
(a writer without the journal, a crash between the token write and the append, pruned
entries), two entries leaving the same token, an entry that lists no ids (a write too large
to list, marked ``"ids": null``), an unreadable line, or an unreadable file. A write that
failed part way lists every id it was asked to write: what it changed is among them.

The file is bounded: past `MAX_BYTES` the newest half is kept (atomically replaced), so a
copy older than what is left falls back to its scan.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

MAX_IDS = 10_000  # a write touching more ids is journaled without them (a scan follows)
MAX_BYTES = 4 * 1024 * 1024  # past this the journal keeps its newest half


@dataclass(frozen=True)
class Entry:
    prev: str
    next: str
    ids: tuple[str, ...] | None  # None: the write's ids are not listed (the chain breaks here)


class ChangeJournal:
    """The journal of one collection under `folder` (see the module docstring)."""

    def __init__(self, folder: Path, collection: str) -> None:
        digest = hashlib.sha256(collection.encode()).hexdigest()[:16]
        self.path = Path(folder) / f"rag-journal-{digest}.jsonl"
        self.lock_path = Path(folder) / f"rag-journal-{digest}.lock"
        self._cache_lock = threading.Lock()
        # what has been parsed so far: (inode, bytes consumed), entries by their prev token
        self._seen: tuple[int, int] | None = None
        self._by_prev: dict[str, list[Entry]] = {}
        self._corrupt = False

    # -- writing --------------------------------------------------------------------------
    @contextlib.contextmanager
    def locked(self, *, shared: bool = False) -> Iterator[None]:
        """Hold the journal's exclusive lock (token read, token write and append inside), or
        a shared one (a reader: no write is half way through its token and its entry)."""
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_SH if shared else fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing releases the lock

    def append(self, prev: str, next_: str, ids: Iterable[str] | None) -> None:
        """Record one write (call inside `locked`). `ids` None or over `MAX_IDS`: not listed."""
        listed = None if ids is None else list(dict.fromkeys(ids))
        if listed is not None and len(listed) > MAX_IDS:
            listed = None
        line = json.dumps({"prev": prev, "next": next_, "ids": listed}, ensure_ascii=False) + "\n"
        size = self._size()
        if size and self._torn():
            # a line torn by a crash: start over (copies older than now scan once)
            self._replace(b"")
            size = 0
        if size + len(line) > MAX_BYTES:
            self._prune()
        with self.path.open("ab") as fh:
            fh.write(line.encode("utf-8"))

    def _size(self) -> int:
        try:
            return self.path.stat().st_size
        except FileNotFoundError:
            return 0

    def _torn(self) -> bool:
        with self.path.open("rb") as fh:
            fh.seek(-1, os.SEEK_END)
            return fh.read(1) != b"\n"

    def _prune(self) -> None:
        data = self.path.read_bytes()
        cut = data.find(b"\n", len(data) // 2)
        self._replace(data[cut + 1 :] if cut >= 0 else b"")

    def _replace(self, data: bytes) -> None:
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_bytes(data)
        os.replace(tmp, self.path)

    # -- reading --------------------------------------------------------------------------
    def changes_since(self, token: str, until: str) -> frozenset[str] | None:
        """Every id written between the store's state at `token` and at `until`, or None
        when the journal cannot vouch for that (see the module docstring)."""
        if token == until:
            return frozenset()
        try:
            self._read()
        except OSError as exc:
            log.warning("the change journal %s is unreadable (%s)", self.path, exc)
            return None
        with self._cache_lock:
            if self._corrupt:
                return None
            ids: set[str] = set()
            at, steps = token, 0
            while at != until:
                entries = self._by_prev.get(at)
                if entries is None or len(entries) != 1 or steps > len(self._by_prev):
                    return None  # a gap, two writes from one token, or a cycle
                entry = entries[0]
                if entry.ids is None:
                    return None
                ids.update(entry.ids)
                at, steps = entry.next, steps + 1
            return frozenset(ids)

    def _read(self) -> None:
        """Parse what was appended since the last read (all of it after a prune)."""
        with self._cache_lock, self.locked(shared=True):
            try:
                fd = os.open(self.path, os.O_RDONLY)
            except FileNotFoundError:
                self._seen, self._by_prev, self._corrupt = None, {}, False
                return
            try:
                with os.fdopen(fd, "rb") as fh:
                    inode = os.fstat(fh.fileno()).st_ino
                    size = os.fstat(fh.fileno()).st_size
                    seen = self._seen
                    if seen is None or seen[0] != inode or seen[1] > size:
                        seen = (inode, 0)
                        self._by_prev, self._corrupt = {}, False
                    fh.seek(seen[1])
                    data = fh.read(size - seen[1])
            except OSError:
                self._seen = None
                raise
            end = data.rfind(b"\n") + 1  # a line still being written is read next time
            for raw in data[:end].splitlines():
                entry = _parse(raw)
                if entry is None:
                    self._corrupt = True
                    continue
                self._by_prev.setdefault(entry.prev, []).append(entry)
            self._seen = (inode, seen[1] + end)


def _parse(raw: bytes) -> Entry | None:
    try:
        row: Any = json.loads(raw)
        prev, nxt, ids = row["prev"], row["next"], row["ids"]
    except (ValueError, TypeError, KeyError):
        return None
    if not isinstance(prev, str) or not isinstance(nxt, str):
        return None
    if ids is None:
        return Entry(prev, nxt, None)
    if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
        return None
    return Entry(prev, nxt, tuple(ids))
