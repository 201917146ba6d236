"""Exact and near-duplicate detection: MinHash signatures + LSH banding, verified by true Jaccard.

Near-duplicates are measured on word shingles (``k`` consecutive words of the normalised text,
punctuation dropped). MinHash estimates Jaccard similarity; LSH banding turns that into
candidate pairs without comparing every pair; every candidate is then checked with the exact
Jaccard of its shingle sets, so no reported pair is below the threshold.
"""
from __future__ import annotations

import re
import zlib
from collections import defaultdict
from typing import Sequence

import numpy as np

from harness.errors import HarnessError

_SHIFT = np.uint64(32)
_WORD = re.compile(r"\w+")


def normalise(text: str) -> str:
    """Lowercase and collapse whitespace: the key for exact duplicates."""
    return " ".join(text.lower().split())


def words_of(text: str) -> list[str]:
    """The lowercased words shingles are made of (punctuation dropped)."""
    return _WORD.findall(text.lower())


def kgrams(words: Sequence[str], k: int = 3) -> set[str]:
    """Every run of ``k`` consecutive words (none for fewer than ``k``)."""
    return {" ".join(words[i:i + k]) for i in range(len(words) - k + 1)}


def shingles(text: str, k: int = 3) -> set[str]:
    """Set of ``k``-word shingles; a text shorter than ``k`` words is one shingle of itself."""
    words = words_of(text)
    if len(words) <= k:
        return {" ".join(words)}
    return kgrams(words, k)


def jaccard(a: set, b: set) -> float:
    if not a and not b:
        return 1.0
    return len(a & b) / len(a | b)


def exact_duplicates(texts: Sequence[str]) -> list[list[int]]:
    """Groups (of two or more indices, each sorted) whose normalised texts are identical."""
    groups: dict[str, list[int]] = defaultdict(list)
    for i, t in enumerate(texts):
        groups[normalise(t)].append(i)
    return sorted((g for g in groups.values() if len(g) > 1), key=lambda g: g[0])


def _permutations(num_perm: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    a = rng.integers(0, 1 << 63, size=num_perm, dtype=np.uint64) * np.uint64(2) + np.uint64(1)  # odd
    b = rng.integers(0, 1 << 63, size=num_perm, dtype=np.uint64)
    return a, b


def minhash_signatures(sets: Sequence[set[str]], num_perm: int = 128, seed: int = 1) -> np.ndarray:
    """An ``(n, num_perm)`` uint64 matrix; row i is the MinHash signature of ``sets[i]``.

    Shingles are hashed once with CRC32 (stable across processes, unlike ``hash``); each
    permutation is a multiply-shift hash ``((a*x + b) mod 2**64) >> 32`` (no slow modulo), and
    all documents are processed together per block of permutations with ``np.minimum.reduceat``.
    """
    n = len(sets)
    if n == 0:
        return np.zeros((0, num_perm), dtype=np.uint64)
    per_doc = [[zlib.crc32(s.encode("utf-8")) for s in (doc or {""})] for doc in sets]
    sizes = np.fromiter((len(h) for h in per_doc), dtype=np.int64, count=n)
    flat = np.fromiter((h for hs in per_doc for h in hs), dtype=np.uint64, count=int(sizes.sum()))
    offsets = np.concatenate(([0], np.cumsum(sizes)[:-1]))
    a, b = _permutations(num_perm, seed)
    sig = np.empty((n, num_perm), dtype=np.uint64)
    block = max(1, min(num_perm, 4_000_000 // max(1, flat.size)))  # bound memory to ~32 MB
    for p0 in range(0, num_perm, block):
        p1 = min(num_perm, p0 + block)
        with np.errstate(over="ignore"):  # wrapping mod 2**64 is the point
            hashed = (a[p0:p1, None] * flat[None, :] + b[p0:p1, None]) >> _SHIFT
        sig[:, p0:p1] = np.minimum.reduceat(hashed, offsets, axis=1).T
    return sig


def lsh_params(threshold: float, num_perm: int = 128, target_recall: float = 0.995) -> tuple[int, int]:
    """(bands, rows) with the most rows per band that still catches a pair at ``threshold``.

    A pair with Jaccard ``s`` shares at least one band with probability ``1 - (1 - s**r)**b``;
    more rows mean fewer false candidates to verify.
    """
    best = (num_perm, 1)
    for r in range(1, num_perm + 1):
        b = num_perm // r
        if 1 - (1 - threshold ** r) ** b >= target_recall:
            best = (b, r)
    return best


def _candidate_pairs(sig: np.ndarray, bands: int, rows: int) -> tuple[np.ndarray, np.ndarray]:
    """Index arrays ``(I, J)``, ``I < J``, of documents that share at least one band."""
    n = sig.shape[0]
    empty = np.zeros(0, dtype=np.int64)
    if n < 2:
        return empty, empty
    mult = np.random.default_rng(7).integers(1, 1 << 62, size=rows, dtype=np.uint64) | np.uint64(1)
    codes = []
    for band in range(bands):
        # Wrapping uint64 arithmetic is fine here: a key collision only adds a candidate to verify.
        with np.errstate(over="ignore"):
            keys = (sig[:, band * rows:(band + 1) * rows] * mult).sum(axis=1)
        order = np.argsort(keys, kind="stable").astype(np.int64)
        run = np.concatenate(([0], np.cumsum(np.diff(keys[order]) != 0)))
        # Pair each document with the ones d places later in its run; stop when no run is longer.
        for d in range(1, n):
            same = run[:-d] == run[d:]
            if not same.any():
                break
            x, y = order[:-d][same], order[d:][same]
            codes.append(np.minimum(x, y) * n + np.maximum(x, y))
    if not codes:
        return empty, empty
    allc = np.sort(np.concatenate(codes))
    uniq = allc[np.concatenate(([True], allc[1:] != allc[:-1]))]  # faster than np.unique here
    return uniq // n, uniq % n


def _verified(sets: Sequence[set[str]], sig: np.ndarray, I: np.ndarray, J: np.ndarray,
              threshold: float) -> list[tuple[int, int, float]]:
    """Exact Jaccard for candidates whose MinHash estimate is not hopelessly low.

    The estimate has standard deviation sqrt(s(1-s)/num_perm); dropping candidates more than
    4.5 of those below the threshold loses a true pair with probability ~1e-5 and skips most
    of the verification work on templated data.
    """
    num_perm = sig.shape[1]
    margin = max(0.05, 4.5 * (threshold * (1 - threshold) / num_perm) ** 0.5)
    keep = []
    for c in range(0, len(I), 50_000):
        i, j = I[c:c + 50_000], J[c:c + 50_000]
        est = (sig[i] == sig[j]).mean(axis=1)
        keep.append(np.flatnonzero(est >= threshold - margin) + c)
    out = []
    for idx in (np.concatenate(keep).tolist() if keep else []):
        i, j = int(I[idx]), int(J[idx])
        s = jaccard(sets[i], sets[j])
        if s >= threshold:
            out.append((i, j, s))
    return out


def _check_threshold(threshold: float) -> None:
    if not 0.0 < threshold <= 1.0:
        raise HarnessError(f"near-duplicate threshold must be in (0, 1], got {threshold}")


def near_duplicates(texts: Sequence[str], threshold: float = 0.8, *, k: int = 3, num_perm: int = 128,
                    seed: int = 1) -> list[tuple[int, int, float]]:
    """Pairs ``(i, j, jaccard)`` with ``i < j`` whose shingle Jaccard is at least ``threshold``.

    Exact duplicates (after normalisation) are included with Jaccard 1.0.
    """
    _check_threshold(threshold)
    sets = [shingles(t, k) for t in texts]
    sig = minhash_signatures(sets, num_perm, seed)
    bands, rows = lsh_params(threshold, num_perm)
    out = _verified(sets, sig, *_candidate_pairs(sig, bands, rows), threshold)
    # Identical shingle sets always share every band, so exact duplicates are already here.
    return sorted(out)


def cross_duplicates(a_texts: Sequence[str], b_texts: Sequence[str], threshold: float = 0.8, *, k: int = 3,
                     num_perm: int = 128, seed: int = 1) -> list[tuple[int, int, float, bool]]:
    """Pairs ``(i, j, jaccard, exact)`` with ``a_texts[i]`` near or equal to ``b_texts[j]``.

    Used for train/test leakage; ``exact`` is True when the normalised texts are identical.
    """
    _check_threshold(threshold)
    sets = [shingles(t, k) for t in list(a_texts) + list(b_texts)]
    na = len(a_texts)
    sig = minhash_signatures(sets, num_perm, seed)
    bands, rows = lsh_params(threshold, num_perm)
    I, J = _candidate_pairs(sig, bands, rows)
    across = (I < na) & (J >= na)  # I < J, so a pair across the sides has I in a and J in b
    found: dict[tuple[int, int], tuple[float, bool]] = {}
    for i, j, s in _verified(sets, sig, I[across], J[across], threshold):
        found[(i, j - na)] = (s, normalise(a_texts[i]) == normalise(b_texts[j - na]))
    # Exact matches by normalised text are reported even when punctuation-only texts shingle oddly.
    index: dict[str, list[int]] = defaultdict(list)
    for i, t in enumerate(a_texts):
        index[normalise(t)].append(i)
    for j, t in enumerate(b_texts):
        for i in index.get(normalise(t), ()):
            found[(i, j)] = (1.0, True)
    return sorted((i, j, s, e) for (i, j), (s, e) in found.items())


def contained(texts: Sequence[Sequence[str]], passages: Sequence[str], threshold: float = 0.8, *, k: int = 3,
              min_shingles: int = 5, block: int = 1000) -> list[tuple[int, int, float]]:
    """Pairs ``(i, j, share)``: every part of ``texts[i]`` (an example's turns, its answer) is
    inside ``passages[j]`` — a part of ``k`` words or more has at least ``threshold`` of its word
    shingles there (containment, not Jaccard: a short text inside a long passage), a shorter one
    occurs there word for word — and the text has ``min_shingles`` shingles in all (a few words
    found in a passage say nothing). ``share`` is the least contained part's. Exact: sparse
    products of the shingle incidence matrices, ``block`` passages at a time."""
    from scipy import sparse

    _check_threshold(threshold)
    long_of: list[int] = []      # the text of each long part
    long_sets: list[set[str]] = []
    short: dict[int, list[str]] = defaultdict(list)
    for i, parts in enumerate(texts):
        words = [w for w in map(words_of, parts) if w]
        if sum(max(len(w) - k + 1, 0) for w in words) < min_shingles:
            continue
        for w in words:
            if len(w) < k:
                short[i].append(f" {' '.join(w)} ")
            else:
                long_of.append(i)
                long_sets.append(kgrams(w, k))
    if not long_sets or not passages:
        return []
    vocab: dict[str, int] = {}
    for s in long_sets:
        for sh in s:
            vocab.setdefault(sh, len(vocab))

    def incidence(rows: list[list[int]]):
        ptr = np.cumsum([0] + [len(r) for r in rows])
        cols = np.fromiter((c for r in rows for c in r), dtype=np.int64, count=int(ptr[-1]))
        return sparse.csr_matrix((np.ones(cols.size, dtype=np.int32), cols, ptr), shape=(len(rows), len(vocab)))

    t = incidence([[vocab[sh] for sh in s] for s in long_sets])
    sizes, need = np.array([len(s) for s in long_sets]), np.bincount(long_of)
    out = []
    for b in range(0, len(passages), block):
        words = [words_of(x) for x in passages[b:b + block]]
        p = incidence([sorted({vocab[sh] for sh in kgrams(w, k) if sh in vocab}) for w in words])
        hits = (t @ p.T).tocoo()
        share = hits.data / sizes[hits.row]
        found: dict[tuple[int, int], list[float]] = defaultdict(list)
        for r, c, x in zip(hits.row[share >= threshold], hits.col[share >= threshold], share[share >= threshold]):
            found[(long_of[r], int(c))].append(float(x))
        for (i, c), shares in found.items():
            line = f" {' '.join(words[c])} "
            if len(shares) == need[i] and all(part in line for part in short.get(i, ())):
                out.append((i, b + c, min(shares)))
    return sorted(out)
