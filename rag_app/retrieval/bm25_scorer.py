"""BM25 scored at query time from postings, so that a change of the corpus never refits a
score matrix (`Scorer`, the model of `rag_app.retrieval.bm25.KeywordIndex`).

bm25s precomputes every (chunk, term) score with the corpus' IDF and average length baked in:
one changed chunk changes both, so every entry. A `Scorer` keeps the term counts (postings of a
base segment plus a small delta of chunks added since), the chunk lengths, the document
frequencies and the chunk count, and computes a term's scores with bm25s' own scoring
functions when a query asks for it: the same floats bm25s' matrix holds (tested with `==`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

import numpy as np

# Postings whose query-time scores a version remembers (float32 and int32 each: 8 bytes)
MEMO_POSTINGS = 4_000_000


class Analysed(Protocol):
    """One analysed chunk: ``terms[0]`` its vocabulary ids (each once), ``terms[1]`` their
    counts; `length` its number of tokens."""

    @property
    def terms(self) -> np.ndarray: ...

    @property
    def length(self) -> int: ...


@dataclass(frozen=True)
class Segment:
    """Postings of some chunks: vocabulary id t occurs in the slots
    ``slots[indptr[t]:indptr[t + 1]]`` (ascending), ``tf`` times each."""

    indptr: np.ndarray
    slots: np.ndarray
    tf: np.ndarray

    @staticmethod
    def of(slots: np.ndarray, terms: list[np.ndarray], n_vocab: int) -> Segment:
        """The postings of the chunks in `slots` with analysed `terms` (one (2, n) each)."""
        import scipy.sparse as sp

        if not terms:
            empty = np.empty(0, dtype=np.int32)
            return Segment(np.zeros(1, dtype=np.int64), empty, empty.astype(np.float32))
        sizes = [t.shape[1] for t in terms]
        joined = np.concatenate(terms, axis=1)
        rows = np.repeat(np.asarray(slots, dtype=np.int64), sizes)
        # rows arrive ascending, so each column lists its slots in order
        matrix = sp.csc_matrix(
            (joined[1].astype(np.float32), (rows, joined[0])),
            shape=(int(rows.max()) + 1 if rows.size else 1, n_vocab),
        )
        return Segment(matrix.indptr.astype(np.int64), matrix.indices.astype(np.int32), matrix.data)

    def postings(self, term: int) -> tuple[np.ndarray, np.ndarray] | None:
        if term + 1 >= self.indptr.size:
            return None
        start, end = int(self.indptr[term]), int(self.indptr[term + 1])
        if start == end:
            return None
        return self.slots[start:end], self.tf[start:end]


@dataclass(frozen=True)
class Scoring:
    """bm25s' scoring functions and constants for one (k1, b, method)."""

    k1: float
    b: float
    delta: float
    idf: Callable[..., float]
    tfc: Callable[..., Any]
    nonoccurrence: bool
    plain: bool  # tfc is tf / (k1 * ((1 - b) + b * l_d / l_avg) + tf) (lucene, robertson)

    @staticmethod
    def of(k1: float, b: float, method: str) -> Scoring:
        import bm25s
        from bm25s.scoring import (
            _score_tfc_lucene,
            _score_tfc_robertson,
            _select_idf_scorer,
            _select_tfc_scorer,
        )

        # bm25s sets its own logger to DEBUG at import; keep it as quiet as everything else.
        logging.getLogger("bm25s").setLevel(logging.WARNING)
        model = bm25s.BM25(k1=k1, b=b, method=method)
        return Scoring(
            k1=k1,
            b=b,
            delta=model.delta,
            idf=_select_idf_scorer(model.idf_method),
            tfc=_select_tfc_scorer(model.method),
            nonoccurrence=model.method in model.methods_requiring_nonoccurrence,
            plain=_select_tfc_scorer(model.method) in (_score_tfc_lucene, _score_tfc_robertson),
        )


@dataclass(frozen=True)
class Scorer:
    """BM25 scores of every row of one index version, computed at query time from term
    counts, lengths, document frequencies and the chunk count, so a change never rescores
    unchanged chunks (IDF and the average length are global: a precomputed matrix, as bm25s
    keeps, must be recomputed in full on every change).

    Every chunk has a *slot*: its row at the last merge (the `base` postings), or a slot
    after those for a chunk added since (the `delta` postings, rebuilt from the added chunks
    on each change). A removed chunk's base slot stays until the next merge, unscored:
    `row_slot` maps each row of the version to its slot. The values equal those of a
    bm25s index built over the same chunks (its own scoring functions, in its order and
    precision: float32 entries summed per query term in query order)."""

    vocab: dict[str, int]  # shared with later versions; ids >= n_vocab are not ours
    n_vocab: int
    scoring: Scoring
    base: Segment
    n_base: int
    delta: Segment
    added: tuple[tuple[int, np.ndarray], ...]  # (slot, terms) of chunks added since the base
    slot_len: np.ndarray  # tokens per slot
    row_slot: np.ndarray  # slot of each row
    slot_of: dict[str, int]
    df: np.ndarray  # live chunks per vocabulary id
    n_docs: int
    total_len: int
    dead_base: int  # base slots whose chunk is gone
    # per term (and -1: the slots' length part) what queries computed in this version
    memo: dict[int, Any] = field(default_factory=dict, compare=False, repr=False)
    memo_size: list[int] = field(default_factory=lambda: [0], compare=False, repr=False)

    dtype = np.float32

    @staticmethod
    def full(
        ids: list[str],
        terms: np.ndarray,
        sizes: np.ndarray,
        lengths: np.ndarray,
        doc_freqs: np.ndarray,
        vocab: dict[str, int],
        k1: float,
        b: float,
        method: str,
    ) -> Scorer:
        n = len(ids)
        parts = np.split(terms, np.cumsum(sizes)[:-1], axis=1)
        return Scorer(
            vocab=vocab,
            n_vocab=len(vocab),
            scoring=Scoring.of(k1, b, method),
            base=Segment.of(np.arange(n), parts, len(vocab)),
            n_base=n,
            delta=Segment.of(np.empty(0, dtype=np.int64), [], len(vocab)),
            added=(),
            slot_len=np.asarray(lengths, dtype=np.int64),
            row_slot=np.arange(n, dtype=np.int64),
            slot_of=dict(zip(ids, range(n), strict=True)),
            df=np.asarray(doc_freqs, dtype=np.int64),
            n_docs=n,
            total_len=int(np.asarray(lengths, dtype=np.int64).sum()),
            dead_base=0,
        )

    @property
    def churn(self) -> int:
        """Slots added or made dead since the last merge."""
        return int(self.slot_len.size) - self.n_base + self.dead_base

    def slot_rows(self) -> np.ndarray:
        """Row of each slot (-1: no chunk)."""
        rows = np.full(self.slot_len.size, -1, dtype=np.int64)
        rows[self.row_slot] = np.arange(self.row_slot.size, dtype=np.int64)
        return rows

    def derive(
        self,
        removed_ids: list[str],
        removed: list[Analysed],
        gone_slots: np.ndarray,
        removed_rows: np.ndarray,
        added: list[tuple[str, Analysed]],
        vocab_size: int,
    ) -> Scorer:
        """The scorer after removing the chunks `removed` (`removed_ids`, in `gone_slots`, at
        `removed_rows`) and appending `added` (ids and chunks)."""
        df = np.zeros(max(vocab_size, self.df.size), dtype=np.int64)
        df[: self.df.size] = self.df
        for item in removed:
            df[item.terms[0]] -= 1  # each term once per chunk
        for _, item in added:
            df[item.terms[0]] += 1
        first = int(self.slot_len.size)
        new_slots = np.arange(first, first + len(added), dtype=np.int64)
        lengths = np.fromiter((d.length for _, d in added), dtype=np.int64, count=len(added))
        gone = set(gone_slots.tolist())
        kept = tuple(entry for entry in self.added if entry[0] not in gone)
        fresh = tuple((int(s), d.terms) for s, (_, d) in zip(new_slots, added, strict=True))
        delta_docs = kept + fresh
        slot_of = dict(self.slot_of)
        for cid in removed_ids:
            del slot_of[cid]
        for (cid, _), slot in zip(added, new_slots.tolist(), strict=True):
            slot_of[cid] = slot
        return replace(
            self,
            memo={},
            memo_size=[0],
            n_vocab=df.size,
            delta=Segment.of(
                np.array([s for s, _ in delta_docs], dtype=np.int64),
                [t for _, t in delta_docs],
                df.size,
            ),
            added=delta_docs,
            slot_len=np.concatenate([self.slot_len, lengths]),
            row_slot=np.concatenate([np.delete(self.row_slot, removed_rows), new_slots]),
            slot_of=slot_of,
            df=df,
            n_docs=self.n_docs - len(removed) + len(added),
            total_len=self.total_len - sum(d.length for d in removed) + int(lengths.sum()),
            dead_base=self.dead_base + int(np.count_nonzero(gone_slots < self.n_base)),
        )

    # -- the bm25s query interface ----------------------------------------------------------
    def get_tokens_ids(self, tokens: list[str]) -> list[int]:
        """The vocabulary ids of the `tokens` this version knows (others are left out)."""
        ids = []
        for token in tokens:
            n = self.vocab.get(token)
            if n is not None and n < self.n_vocab:
                ids.append(n)
        return ids

    def get_scores(self, tokens: list[str]) -> np.ndarray:
        return self.get_scores_from_ids(self.get_tokens_ids(tokens))

    def get_scores_from_ids(self, token_ids: list[int]) -> np.ndarray:
        """The score of every row for a query of these vocabulary ids (float32)."""
        acc = np.zeros(self.slot_len.size, dtype=np.float32)
        absent: list[np.float32] = []
        for term in token_ids:
            slots, values, non = self._term(term)
            absent.append(non)
            if slots.size:
                acc[slots] += values
        # rows keep their slots' order, so with no dead slot the rows are the slots
        scores = acc if self.row_slot.size == acc.size else acc[self.row_slot]
        if self.scoring.nonoccurrence and absent:
            scores += np.array(absent, dtype=np.float32).sum()
        return scores

    def _term(self, term: int) -> tuple[np.ndarray, np.ndarray, np.float32]:
        """One query term's contribution: the slots it occurs in, their float32 scores
        there and its non-occurrence score (BM25+), remembered for this version."""
        memo = self.memo.get(term)
        if memo is not None:
            return memo
        s = self.scoring
        df = int(self.df[term]) if term < self.df.size else 0
        none = (np.empty(0, dtype=np.int32), np.empty(0, dtype=np.float32), np.float32(0.0))
        if df <= 0:
            return none
        avg = self.total_len / self.n_docs
        idf_value = s.idf(df, N=self.n_docs)
        idf = np.float32(idf_value)
        non = np.float32(0.0)
        if s.nonoccurrence:
            non = np.float32(
                idf_value * s.tfc(tf_array=0, l_d=avg, l_avg=avg, k1=s.k1, b=s.b, delta=s.delta)
            )
        parts = [p for p in (self.base.postings(term), self.delta.postings(term)) if p is not None]
        if not parts:
            return none
        slots = parts[0][0] if len(parts) == 1 else np.concatenate([p[0] for p in parts])
        tf = parts[0][1] if len(parts) == 1 else np.concatenate([p[1] for p in parts])
        if s.plain:
            # the same float64 operations, the length part computed once per slot
            tfc = tf / (self._length_part()[slots] + tf)
        else:
            tfc = s.tfc(
                tf_array=tf, l_d=self.slot_len[slots], l_avg=avg, k1=s.k1, b=s.b, delta=s.delta
            )
        values = idf * tfc
        if s.nonoccurrence:
            values = values - non
        found = (slots, values.astype(np.float32), non)
        if self.memo_size[0] + slots.size > MEMO_POSTINGS:
            self.memo.clear()
            self.memo_size[0] = 0
        self.memo[term] = found
        self.memo_size[0] += int(slots.size)
        return found

    def _length_part(self) -> np.ndarray:
        """``k1 * ((1 - b) + b * l_d / l_avg)`` of every slot, as bm25s computes it."""
        part = self.memo.get(-1)
        if part is None:
            s = self.scoring
            l_avg = self.total_len / self.n_docs
            part = s.k1 * ((1 - s.b) + s.b * self.slot_len / l_avg)
            self.memo[-1] = part
        return part
