"""An index over many texts that answers two questions about a new text, without comparing it to
each text in turn:

- the longest run of tokens it shares with the indexed texts (`TextIndex.longest_runs`; `shared_runs`
  adds a text too short for such a run that is found whole, `whole_matches`), and
- which indexed text is most like it by Jaccard similarity of token shingles (`TextIndex.most_similar`).

Runs. The indexed texts ("units": one per training record) are laid end to end in one token
stream, so a run that starts in one record and goes on in the next one is found like any other.
Every `ngram`-token window of the stream is hashed to 64 bits (a polynomial over token ids,
vectorised in numpy) and the hashes are sorted once. A query's windows are looked up with one
binary search; each hit is extended token by token, backwards and forwards, against the stream,
so the reported length is exact and a hash collision cannot make a run. Only the first
`max_occurrences` places of one window are tried (boilerplate repeated in every record would
otherwise cost time for nothing): a longer run hiding behind such a window is still found from its
other windows.

Similarity is exact Jaccard over sets of `shingle`-token shingles (a unit shorter than `shingle`
is one shingle), found with prefix filtering (Chaudhuri et al. 2006; Bayardo et al. 2007, "All
pairs"): shingles are ordered rarest first; two sets with Jaccard >= t share at least one of the
first |x| - ceil(t|x|) + 1 shingles of each, so only units sharing a prefix shingle with the query
(and of a size that could reach t) are candidates, and each candidate's Jaccard is then computed
exactly. No MinHash estimate: nothing reaching the threshold is missed and nothing below it is
reported (up to 64-bit hash collisions).
"""

from __future__ import annotations

import dataclasses
import math
from array import array
from typing import Sequence

import numpy as np

from subjectlm.data.overlap_text import SENTENCE_END, SENTENCE_START, join_tokens, sentence_tokens, tokens

_MULT = np.uint64(0x9E3779B97F4A7C15)  # odd 64-bit constant (golden ratio): the polynomial's base
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)  # splitmix64 finaliser constants: spread the bits of each hash
_MIX2 = np.uint64(0x94D049BB133111EB)
_EPS = 1e-9


def _polynomial(ids: np.ndarray, n: int) -> np.ndarray:
    """sum over k of (ids[i + k] + 1) * MULT^(n - 1 - k), mod 2^64, for every window i; `_extended` adds a token."""
    count = len(ids) - n + 1
    if count <= 0:
        return np.zeros(0, np.uint64)
    ids = ids.astype(np.uint64, copy=False)
    h = ids[:count] + np.uint64(1)
    for k in range(1, n):
        h = _extended(h[:count], ids[k:k + count])
    return h


def _extended(h: np.ndarray, next_ids: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        return h * _MULT + (next_ids.astype(np.uint64, copy=False) + np.uint64(1))


def _mixed(h: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser: every input bit moves every output bit (the prefix filter orders by hash)."""
    with np.errstate(over="ignore"):
        h = h ^ (h >> np.uint64(31))
        h *= _MIX1
        h ^= h >> np.uint64(29)
        h *= _MIX2
        h ^= h >> np.uint64(32)
    return h


def ngram_hashes(ids: np.ndarray, n: int) -> np.ndarray:
    """The 64-bit hash of every window of `n` consecutive ids (len(ids) - n + 1 of them)."""
    return _mixed(_polynomial(ids, n))


def sorted_unique(values: np.ndarray) -> np.ndarray:
    """np.unique by sorting: numpy 2.4's np.unique hashes instead, ten times slower on a million uint64."""
    values = np.sort(values)
    if len(values) < 2:
        return values
    keep = np.empty(len(values), bool)
    keep[0] = True
    np.not_equal(values[1:], values[:-1], out=keep[1:])
    return values[keep]


def shingle_set(ids: np.ndarray, k: int) -> np.ndarray:
    """The distinct `k`-token shingles of one text (the whole text as one shingle when shorter)."""
    if len(ids) == 0:
        return np.zeros(0, np.uint64)
    return sorted_unique(ngram_hashes(ids, min(k, len(ids))))


@dataclasses.dataclass(frozen=True)
class Run:
    length: int    # shared tokens
    unit: int      # the indexed text the run starts in
    end_unit: int  # the one it ends in (the next one when it crosses a boundary)
    text: str      # the shared tokens, readable
    whole: bool = False  # a whole query shorter than ngram, found as it is (`TextIndex.whole_matches`)


@dataclasses.dataclass(frozen=True)
class Similar:
    jaccard: float
    unit: int


class TextIndex:
    """Texts added with `add` (each one a unit), then queried with `encode`d texts."""

    def __init__(self, ngram: int = 13, shingle: int = 3, max_occurrences: int = 32):
        if ngram < 1 or shingle < 1:
            raise ValueError("ngram and shingle must be at least 1")
        self.ngram, self.shingle, self.max_occurrences = ngram, shingle, max_occurrences
        self.vocab: dict[str, int] = {}
        self._stream = array("I")       # token ids of every unit, end to end
        self._starts = array("q", [0])  # unit u is stream[_starts[u]:_starts[u + 1]]
        self._marks = bytearray()       # per stream token: SENTENCE_START | SENTENCE_END (overlap_text.py)
        self._built = False
        self._prefix_cache: dict[float, tuple[np.ndarray, np.ndarray]] = {}

    def __len__(self) -> int:
        return len(self._starts) - 1

    @property
    def token_count(self) -> int:
        return len(self._stream)

    def encode(self, text: str) -> np.ndarray:
        """Token ids of `text` in this index's vocabulary (a token never seen gets a new id)."""
        return self.encode_tokens(tokens(text))

    def encode_tokens(self, words: Sequence[str]) -> np.ndarray:
        vocab = self.vocab
        ids = list(map(vocab.get, words))  # most tokens are known after the first records: look up in C
        if None in ids:
            for i, word in enumerate(words):
                if ids[i] is None:
                    ids[i] = vocab.setdefault(word, len(vocab))
        return np.array(ids, dtype=np.uint32)

    def add(self, text: str) -> int:
        """Index one more text; its unit number."""
        words, marks = sentence_tokens(text)
        return self.add_ids(self.encode_tokens(words), marks)

    def add_ids(self, ids: np.ndarray, marks: bytes | None = None) -> int:
        """Index token ids; `marks` as `sentence_tokens` gives them (default: the text is one sentence)."""
        if marks is None:
            marks = bytearray(len(ids))
            if len(ids):
                marks[0] |= SENTENCE_START
                marks[-1] |= SENTENCE_END
        if len(marks) != len(ids):
            raise ValueError(f"{len(marks)} sentence marks for {len(ids)} tokens")
        self._marks.extend(marks)
        self._stream.frombytes(ids.astype(np.uint32, copy=False).tobytes())
        self._starts.append(len(self._stream))
        self._built = False
        return len(self) - 1

    # --- building ---------------------------------------------------------------------------------

    def _build(self) -> None:
        if self._built:
            return
        stream = np.frombuffer(self._stream, dtype=np.uint32) if len(self._stream) else np.zeros(0, np.uint32)
        self.stream = stream.copy()
        self.starts = np.frombuffer(self._starts, dtype=np.int64).copy()
        self.marks = np.frombuffer(bytes(self._marks), dtype=np.uint8)
        self.id_to_token = [""] * len(self.vocab)
        for token, i in self.vocab.items():
            self.id_to_token[i] = token
        # Runs: every ngram window of the stream, sorted, with where it starts.
        hashes = ngram_hashes(self.stream, self.ngram)
        order = np.argsort(hashes, kind="stable")
        self.run_hashes = hashes[order]
        self.run_positions = order.astype(np.uint32 if len(order) < 2**32 else np.int64)
        del hashes, order
        self._build_shingles()
        self._prefix_cache = {}
        self._built = True

    def _build_shingles(self) -> None:
        """Each unit's distinct shingles, rarest first (CSR: `unit_shingles[unit_offsets[u]:unit_offsets[u+1]]`)."""
        lengths = np.diff(self.starts)
        units = np.repeat(np.arange(len(lengths), dtype=np.int64), lengths)
        k = self.shingle
        hashes = ngram_hashes(self.stream, k)
        owner = units[:len(hashes)]
        keep = np.arange(len(hashes)) + k <= self.starts[owner + 1]  # shingles inside one unit only
        hashes, owner = hashes[keep], owner[keep]
        short = np.flatnonzero((lengths > 0) & (lengths < k))
        if len(short):  # a unit shorter than a shingle is one shingle: itself
            extra = [ngram_hashes(self.stream[self.starts[u]:self.starts[u + 1]], int(lengths[u])) for u in short]
            hashes = np.concatenate([hashes, np.concatenate(extra)])
            owner = np.concatenate([owner, short.astype(np.int64)])
        # Number the distinct shingles, keep each (unit, shingle) pair once, count the units of each shingle.
        self.df_hashes = sorted_unique(hashes)
        number = np.searchsorted(self.df_hashes, hashes).astype(np.int64)
        distinct = max(len(self.df_hashes), 1)
        pairs = sorted_unique(owner * distinct + number)
        owner, number = pairs // distinct, pairs % distinct
        self.df_counts = np.bincount(number, minlength=len(self.df_hashes))
        # The global order: rarest first, then by hash (the order `_ordered` gives a query's shingles).
        rank = np.empty(len(self.df_hashes), np.int64)
        rank[np.argsort(self.df_counts, kind="stable")] = np.arange(len(self.df_hashes))
        order = np.argsort(owner * distinct + rank[number])
        self.unit_shingles = self.df_hashes[number[order]]
        self.unit_sizes = np.bincount(owner, minlength=len(lengths)).astype(np.int64)
        self.unit_offsets = np.concatenate([[0], np.cumsum(self.unit_sizes)])

    def _df(self, hashes: np.ndarray) -> np.ndarray:
        """How many units hold each shingle (0 for one no unit has)."""
        if len(self.df_hashes) == 0:
            return np.zeros(len(hashes), np.int64)
        at = np.minimum(np.searchsorted(self.df_hashes, hashes), len(self.df_hashes) - 1)
        return np.where(self.df_hashes[at] == hashes, self.df_counts[at], 0)

    def _prefix_index(self, threshold: float) -> tuple[np.ndarray, np.ndarray]:
        """(shingle, unit) of every unit's prefix shingles, sorted by shingle."""
        if threshold not in self._prefix_cache:
            sizes = self.unit_sizes
            prefix = sizes - np.ceil(threshold * sizes - _EPS).astype(np.int64) + 1
            owner = np.repeat(np.arange(len(sizes), dtype=np.int64), sizes)
            rank = np.arange(len(owner)) - self.unit_offsets[owner]
            keep = rank < prefix[owner]
            hashes, owner = self.unit_shingles[keep], owner[keep]
            order = np.argsort(hashes, kind="stable")
            self._prefix_cache[threshold] = (hashes[order], owner[order])
        return self._prefix_cache[threshold]

    # --- queries ----------------------------------------------------------------------------------

    def longest_runs(self, queries: Sequence[np.ndarray]) -> list[Run | None]:
        """For each query (token ids from `encode`), its longest run shared with the indexed texts,
        or None when no run reaches `ngram` tokens."""
        self._build()
        results: list[Run | None] = [None] * len(queries)
        if not len(self.run_hashes):
            return results
        per_query = [ngram_hashes(q, self.ngram) for q in queries]
        if not any(len(h) for h in per_query):
            return results
        flat = np.concatenate(per_query)
        left = np.searchsorted(self.run_hashes, flat, side="left")
        right = np.searchsorted(self.run_hashes, flat, side="right")
        offset = 0
        for i, hashes in enumerate(per_query):
            lo, hi = left[offset:offset + len(hashes)], right[offset:offset + len(hashes)]
            offset += len(hashes)
            hits = np.flatnonzero(hi > lo)
            if len(hits):
                results[i] = self._extend(queries[i], hits, lo, hi)
        return results

    def _extend(self, query: np.ndarray, hits: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> Run | None:
        stream, n = self.stream, len(self.stream)
        covered: dict[int, int] = {}  # diagonal (stream position - query position) -> query position reached
        best = (0, 0, 0)  # length, query start, stream start
        for j in hits.tolist():
            for p in self.run_positions[lo[j]:min(hi[j], lo[j] + self.max_occurrences)].tolist():
                diagonal = p - j
                if covered.get(diagonal, -1) > j:
                    continue
                back = min(j, p)
                before = np.flatnonzero(query[j - back:j][::-1] != stream[p - back:p][::-1])
                back = int(before[0]) if len(before) else back
                ahead = min(len(query) - j, n - p)
                after = np.flatnonzero(query[j:j + ahead] != stream[p:p + ahead])
                ahead = int(after[0]) if len(after) else ahead
                covered[diagonal] = j + ahead
                if back + ahead > best[0]:
                    best = (back + ahead, j - back, p - back)
        length, start, position = best
        if length < self.ngram:
            return None  # only hash collisions: no real shared window
        unit = int(np.searchsorted(self.starts, position, side="right")) - 1
        end_unit = int(np.searchsorted(self.starts, position + length - 1, side="right")) - 1
        text = join_tokens([self.id_to_token[t] for t in query[start:start + length].tolist()])
        return Run(length, unit, end_unit, text)

    def whole_matches(self, queries: Sequence[np.ndarray], min_length: int,
                      sentence_min: int | None = None) -> list[Run | None]:
        """For each query of `min_length` to ngram - 1 tokens that occurs whole in the indexed texts, that
        place (the first one); with `sentence_min` (< min_length), also each query of `sentence_min` to
        min_length - 1 tokens that occurs there as whole sentences (a sentence starts at its first token
        and one ends at its last: "What was the Gannet Flow?" asked in a training record, not "what was
        the" inside a longer sentence); None for the others. Short questions cannot share a run of `ngram`
        tokens; all of one found in the training data is a leak all the same."""
        self._build()
        shortest = min(min_length, sentence_min if sentence_min is not None else min_length)
        by_length: dict[int, list[int]] = {}
        for i, query in enumerate(queries):
            if shortest <= len(query) < self.ngram:
                by_length.setdefault(len(query), []).append(i)
        results: list[Run | None] = [None] * len(queries)
        stream, n = self.stream, len(self.stream)
        if not by_length or n < min(by_length):
            return results
        starts_sentence = (self.marks & SENTENCE_START) != 0
        ends_sentence = (self.marks & SENTENCE_END) != 0
        raw = stream[:n].astype(np.uint64) + np.uint64(1)  # 1-token windows; one token longer each round
        for length in range(1, max(by_length) + 1):
            if length > n:
                break
            if length > 1:
                raw = _extended(raw[:n - length + 1], stream[length - 1:])
            if length not in by_length:
                continue
            wanted: dict[int, list[int]] = {}
            for i in by_length[length]:
                wanted.setdefault(int(ngram_hashes(queries[i], length)[0]), []).append(i)
            keys = np.array(sorted(wanted), dtype=np.uint64)
            hashes = _mixed(raw)
            at = np.minimum(np.searchsorted(keys, hashes), len(keys) - 1)
            hits = keys[at] == hashes
            if length < min_length:  # short: only where whole sentences are
                hits &= starts_sentence[:len(hits)] & ends_sentence[length - 1:length - 1 + len(hits)]
            for p in np.flatnonzero(hits).tolist():
                for i in wanted.get(int(hashes[p]), []):
                    if results[i] is None and np.array_equal(stream[p:p + length], queries[i]):
                        unit = int(np.searchsorted(self.starts, p, side="right")) - 1
                        end_unit = int(np.searchsorted(self.starts, p + length - 1, side="right")) - 1
                        text = join_tokens([self.id_to_token[t] for t in queries[i].tolist()])
                        results[i] = Run(length, unit, end_unit, text, whole=True)
        return results

    def shared_runs(self, queries: Sequence[np.ndarray], whole_min: int, sentence_min: int | None = None
                    ) -> list[Run | None]:
        """For each query, its longest run of at least `ngram` tokens (`longest_runs`), else all of it when
        it is shorter and found whole (`whole_matches`); None when neither."""
        return [run or whole for run, whole in zip(self.longest_runs(queries),
                                                   self.whole_matches(queries, whole_min, sentence_min))]

    def similar_pairs(self, queries: Sequence[np.ndarray], threshold: float) -> list[tuple[int, int, float]]:
        """Every (query, unit, Jaccard) with Jaccard >= threshold, exactly."""
        self._build()
        if not 0 < threshold <= 1:
            raise ValueError(f"jaccard threshold must be in (0, 1], got {threshold}")
        prefix_hashes, prefix_units = self._prefix_index(threshold)
        sets = [shingle_set(q, self.shingle) for q in queries]
        probe_hashes, probe_queries = [], []
        for i, shingles in enumerate(sets):
            if not len(shingles):
                continue
            ordered = shingles[np.lexsort((shingles, self._df(shingles)))]
            size = len(ordered)
            probe_hashes.append(ordered[:size - math.ceil(threshold * size - _EPS) + 1])
            probe_queries.append(np.full(len(probe_hashes[-1]), i, np.int64))
        if not probe_hashes or not len(prefix_hashes):
            return []
        flat, owner = np.concatenate(probe_hashes), np.concatenate(probe_queries)
        left = np.searchsorted(prefix_hashes, flat, side="left")
        right = np.searchsorted(prefix_hashes, flat, side="right")
        counts = right - left
        # Expand each probe's range of matching prefix entries into (query, unit) candidates.
        pair_query = np.repeat(owner, counts)
        starts = np.repeat(left - np.concatenate([[0], np.cumsum(counts)[:-1]]), counts)
        pair_unit = prefix_units[starts + np.arange(counts.sum())]
        query_sizes = np.array([len(s) for s in sets], np.int64)
        sq, su = query_sizes[pair_query], self.unit_sizes[pair_unit]
        possible = (su >= threshold * sq - _EPS) & (sq >= threshold * su - _EPS)
        width = len(self) + 1
        candidates = sorted_unique(pair_query[possible] * width + pair_unit[possible])
        found = []
        for query, unit in zip((candidates // width).tolist(), (candidates % width).tolist()):
            shingles = self.unit_shingles[self.unit_offsets[unit]:self.unit_offsets[unit + 1]]
            shared = len(np.intersect1d(sets[query], shingles, assume_unique=True))
            jaccard = shared / (len(sets[query]) + len(shingles) - shared)
            if jaccard >= threshold - _EPS:
                found.append((query, unit, jaccard))
        return found

    def most_similar(self, queries: Sequence[np.ndarray], threshold: float) -> list[Similar | None]:
        """For each query, the unit with the highest Jaccard >= threshold (the first such unit on a tie), or None."""
        best: list[Similar | None] = [None] * len(queries)
        for query, unit, jaccard in self.similar_pairs(queries, threshold):
            current = best[query]
            if current is None or jaccard > current.jaccard + _EPS:
                best[query] = Similar(jaccard, unit)
        return best


def near_duplicate_groups(texts: Sequence[str], jaccard: float = 0.8, shingle: int = 3) -> list[list[int]]:
    """Groups (indices into `texts`, each group sorted, groups by first index) of texts that are near
    duplicates: linked by Jaccard >= `jaccard` of their token shingles, directly or through others.
    Texts in no group have no near duplicate."""
    index = TextIndex(ngram=max(shingle, 1), shingle=shingle)
    ids = [index.encode(t) for t in texts]
    for one in ids:
        index.add_ids(one)
    parent = list(range(len(texts)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for query, unit, _ in index.similar_pairs(ids, jaccard):
        a, b = root(query), root(unit)
        if a != b:
            parent[max(a, b)] = min(a, b)
    groups: dict[int, list[int]] = {}
    for i in range(len(texts)):
        groups.setdefault(root(i), []).append(i)
    return sorted((g for g in groups.values() if len(g) > 1), key=lambda g: g[0])
