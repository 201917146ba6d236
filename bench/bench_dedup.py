"""Benchmark: near-duplicate search by MinHash + LSH vs the pairwise loop a user would write.

``harness check`` looks for near-duplicates (word-shingle Jaccard >= 0.8) in the whole
dataset, and the split looks for test examples that nearly duplicate a training one. The
obvious alternative compares every pair of shingle sets. Both run here on the same 3,000
texts (2,700 random ones plus 300 edited copies, 60 words each) and must find the same
pairs; the pairwise loop is timed on a slice of rows and scaled to all n(n-1)/2 pairs
(every pair costs about the same), which the output says.

    python bench/bench_dedup.py   # one JSON line
"""
from __future__ import annotations

import json
import os
import random
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from harness.data.dedup import jaccard, near_duplicates, shingles  # noqa: E402

N_BASE, N_VARIANTS, WORDS = 2_700, 300, 60
THRESHOLD = 0.8
REPEATS = 3
LOOP_ROWS = 300  # rows of the pairwise loop actually timed


def corpus(seed: int = 2) -> list[str]:
    rng = random.Random(seed)
    vocab = [f"w{i}" for i in range(3000)]
    texts = [" ".join(rng.choice(vocab) for _ in range(WORDS)) for _ in range(N_BASE)]
    for _ in range(N_VARIANTS):
        words = texts[rng.randrange(N_BASE)].split()
        for _ in range(rng.randrange(0, 6)):
            pos = rng.randrange(len(words))
            words[pos] = rng.choice(vocab)
        texts.append(" ".join(words))
    return texts


def pairwise(sets: list[set[str]], rows: range) -> list[tuple[int, int]]:
    return [(i, j) for i in rows for j in range(i + 1, len(sets)) if jaccard(sets[i], sets[j]) >= THRESHOLD]


def run() -> list[dict]:
    texts = corpus()
    n = len(texts)
    times = []
    for _ in range(REPEATS):
        t0 = time.perf_counter()
        found = near_duplicates(texts, THRESHOLD)
        times.append(time.perf_counter() - t0)
    harness_s = statistics.median(times)

    t0 = time.perf_counter()
    sets = [shingles(t) for t in texts]
    shingle_s = time.perf_counter() - t0
    # Time rows spread over the corpus (early rows have more pairs to their right).
    timed_rows = range(0, n, n // LOOP_ROWS)
    t0 = time.perf_counter()
    partial = pairwise(sets, timed_rows)
    timed_pairs = sum(n - 1 - i for i in timed_rows)
    loop_s = shingle_s + (time.perf_counter() - t0) * (n * (n - 1) / 2) / timed_pairs

    # Same answer: every pair the loop found in its rows is among the harness's pairs, and
    # the harness found nothing the loop would reject.
    got = {(i, j) for i, j, _ in found}
    rows = set(timed_rows)
    agree = {p for p in got if p[0] in rows} == set(partial)
    return [{
        "bench": "dedup_near_duplicates", "ratio": round(loop_s / harness_s, 2), "target": 10,
        "higher_is_better": True, "harness_s": round(harness_s, 3), "pairwise_loop_s": round(loop_s, 1),
        "texts": n, "pairs_found": len(found), "same_pairs_on_timed_rows": agree,
        "note": f"pairwise loop timed on {len(timed_rows)} of {n} rows ({timed_pairs:,} of {n * (n - 1) // 2:,} "
                "pairs) and scaled to all pairs",
        "load_avg_1m": round(os.getloadavg()[0], 2), "cpus": os.cpu_count(),
    }]


if __name__ == "__main__":
    for row in run():
        print(json.dumps(row))
