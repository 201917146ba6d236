"""Duplicates: exact groups, MinHash+LSH near-duplicates checked against brute-force Jaccard."""
from __future__ import annotations

import itertools
import os
import random

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from harness.data.dedup import (cross_duplicates, exact_duplicates, jaccard, lsh_params, minhash_signatures,
                                near_duplicates, normalise, shingles)
from harness.errors import HarnessError


def grams(t: str, k: int = 3) -> set[tuple[str, ...]]:
    """Reference shingling written independently of the module: word k-grams as tuples."""
    w = "".join(c if c.isalnum() or c == "_" else " " for c in t.lower()).split()
    return {tuple(w)} if len(w) <= k else {tuple(w[i:i + k]) for i in range(len(w) - k + 1)}


def set_jaccard(A: set, B: set) -> float:
    return len(A & B) / len(A | B)


def brute_jaccard(a: str, b: str) -> float:
    return set_jaccard(grams(a), grams(b))


def corpus(n_base: int, n_variants: int, seed: int, words: int = 40) -> list[str]:
    """Random texts plus mutated copies spanning Jaccard from ~0.5 to 1.0."""
    rng = random.Random(seed)
    vocab = [f"w{i}" for i in range(3000)]
    texts = [" ".join(rng.choice(vocab) for _ in range(words)) for _ in range(n_base)]
    for _ in range(n_variants):
        w = texts[rng.randrange(n_base)].split()
        for _ in range(rng.randrange(0, 6)):
            op = rng.random()
            pos = rng.randrange(len(w))
            if op < 0.5:
                w[pos] = rng.choice(vocab)
            elif op < 0.75:
                w.insert(pos, rng.choice(vocab))
            else:
                del w[pos]
        texts.append(" ".join(w))
    rng.shuffle(texts)
    return texts


def test_normalise_and_exact_groups():
    texts = ["Hello  World", "hello world", "other", "HELLO\tWORLD\n", "other ", "unique"]
    assert normalise(texts[0]) == "hello world"
    assert exact_duplicates(texts) == [[0, 1, 3], [2, 4]]
    assert exact_duplicates(["a", "b"]) == []


def test_shingles():
    assert shingles("The cat sat on the mat", 3) == {"the cat sat", "cat sat on", "sat on the", "on the mat"}
    assert shingles("Hi there", 3) == {"hi there"}


@pytest.mark.parametrize("threshold", [0.5, 0.8, 0.9])
def test_near_duplicates_match_brute_force(threshold):
    texts = corpus(150, 150, seed=int(threshold * 10))
    g = [grams(t) for t in texts]
    truth = {(i, j): set_jaccard(g[i], g[j]) for i, j in itertools.combinations(range(len(texts)), 2)}
    expected = {p for p, s in truth.items() if s >= threshold}
    assert len(expected) >= 15  # the corpus really has pairs to find
    got = near_duplicates(texts, threshold)
    found = {(i, j) for i, j, _ in got}
    assert all(i < j for i, j in found)
    # Verified pairs: nothing below the threshold, and the reported value is the true Jaccard.
    for i, j, s in got:
        assert s == pytest.approx(truth[(i, j)]) and s >= threshold
    recall = len(found & expected) / len(expected)
    assert recall >= 0.95, recall


def test_minhash_estimates_jaccard():
    texts = corpus(60, 120, seed=5)
    sets = [shingles(t) for t in texts]
    sig = minhash_signatures(sets, num_perm=128)
    errs = []
    for i, j in itertools.combinations(range(len(texts)), 2):
        true = jaccard(sets[i], sets[j])
        if true > 0.3:
            errs.append(abs((sig[i] == sig[j]).mean() - true))
    assert errs and np.mean(errs) < 0.05 and max(errs) < 0.2
    # Deterministic across calls (no salted hash()).
    assert np.array_equal(sig, minhash_signatures(sets, num_perm=128))


@pytest.mark.parametrize("threshold", [0.3, 0.5, 0.8, 0.95])
def test_lsh_params_catch_pairs_at_threshold(threshold):
    b, r = lsh_params(threshold, 128)
    assert b * r <= 128
    assert 1 - (1 - threshold ** r) ** b >= 0.995


def test_cross_duplicates_match_brute_force():
    rng = random.Random(11)
    base = corpus(80, 0, seed=11)
    train = base[:60]
    test = base[60:] + [train[3].upper() + "  ", train[10]]  # exact after normalisation
    w = train[20].split()
    w[5] = "changed"
    test.append(" ".join(w))  # near
    rng.shuffle(test)
    got = cross_duplicates(train, test, 0.8)
    expected = {(i, j) for i in range(len(train)) for j in range(len(test))
                if brute_jaccard(train[i], test[j]) >= 0.8}
    assert {(i, j) for i, j, _, _ in got} == expected
    for i, j, s, exact in got:
        assert exact == (normalise(train[i]) == normalise(test[j]))
        assert s == pytest.approx(brute_jaccard(train[i], test[j]))
    assert sum(e for *_, e in got) == 2 and len(got) == 3


def test_exact_cross_match_even_without_words():
    got = cross_duplicates(["!!!", "hello there friend"], ["!!! ", "bye"])
    assert got == [(0, 0, 1.0, True)]


def test_few_thousand_texts_verify_few_pairs_not_all():
    # Speed lives in bench/bench_dedup.py; here the reason it is fast: LSH proposes a small
    # fraction of the n^2/2 pairs for exact checking, and still finds every true pair.
    from harness.data.dedup import _candidate_pairs, lsh_params, minhash_signatures, shingles

    texts = corpus(2700, 300, seed=2, words=60)
    sets = [shingles(t) for t in texts]
    I, J = _candidate_pairs(minhash_signatures(sets), *lsh_params(0.8))
    all_pairs = len(texts) * (len(texts) - 1) // 2
    assert 0 < len(I) < all_pairs / 1000, (len(I), all_pairs)
    found = {(i, j) for i, j, _ in near_duplicates(texts, 0.8)}
    proposed = set(zip(I.tolist(), J.tolist()))
    assert found and found <= proposed


def test_bad_threshold():
    with pytest.raises(HarnessError, match="threshold"):
        near_duplicates(["a"], 0)
    with pytest.raises(HarnessError):
        cross_duplicates(["a"], ["b"], 1.5)


def test_empty_and_single():
    assert near_duplicates([]) == [] and near_duplicates(["only one"]) == []
    assert cross_duplicates([], ["x"]) == []
