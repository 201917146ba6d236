"""Benchmark: vectorised bootstrap statistics vs the plain Python loop a user would write.

* ``stats_bootstrap``: a 95% percentile CI, 2,000 resamples over 10,000 per-example
  scores (``harness.stats.bootstrap_ci``).
* ``stats_paired``: paired bootstrap CIs of the difference and ratio for 20 candidates
  against one baseline over the same 10,000 examples (``paired_bootstrap_many``).

The Python loop draws each resample with ``random.choices`` and sums in Python; it is
timed on a few resamples and scaled linearly to 2,000 (each resample costs the same),
which the output says. Harness timings are medians over repeats; each must stay under a
second.

    python bench/bench_stats.py   # prints one JSON line per benchmark
"""
from __future__ import annotations

import json
import os
import random
import statistics
import time

import numpy as np

from harness import stats

N_EXAMPLES = 10_000
N_RESAMPLES = 2_000
N_CANDIDATES = 20
REPEATS = 5


def _median_seconds(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _python_bootstrap(values: list[float], n_resamples: int, seed: int = 0) -> tuple[float, float]:
    rng = random.Random(seed)
    n = len(values)
    means = sorted(sum(rng.choices(values, k=n)) / n for _ in range(n_resamples))
    return means[int(0.025 * n_resamples)], means[int(0.975 * n_resamples) - 1]


def _python_paired(cands: list[list[float]], base: list[float], n_resamples: int, seed: int = 0) -> list:
    rng = random.Random(seed)
    n = len(base)
    diffs: list[list[float]] = [[] for _ in cands]
    ratios: list[list[float]] = [[] for _ in cands]
    for _ in range(n_resamples):
        idx = rng.choices(range(n), k=n)
        b = sum(base[i] for i in idx)
        for j, c in enumerate(cands):
            s = sum(c[i] for i in idx)
            diffs[j].append((s - b) / n)
            ratios[j].append(s / b if b else float("inf"))
    return [(sorted(d)[int(0.025 * n_resamples)], sorted(r)[int(0.025 * n_resamples)]) for d, r in zip(diffs, ratios)]


def bench_bootstrap(scaled_from: int = 100) -> dict:
    values = (np.random.default_rng(0).random(N_EXAMPLES) < 0.7).astype(float)
    values += np.random.default_rng(1).normal(0, 0.01, N_EXAMPLES)  # not binary: the general path
    harness_s = _median_seconds(lambda: stats.bootstrap_ci(values, n_resamples=N_RESAMPLES), REPEATS)
    py_values = values.tolist()
    measured = _median_seconds(lambda: _python_bootstrap(py_values, scaled_from), 3)
    baseline_s = measured * N_RESAMPLES / scaled_from
    return {"bench": "stats_bootstrap", "ratio": round(baseline_s / harness_s, 2), "target": 1.0,
            "higher_is_better": True, "seconds": round(harness_s, 4), "baseline_seconds": round(baseline_s, 3),
            "under_1s": harness_s < 1.0, "n_examples": N_EXAMPLES, "n_resamples": N_RESAMPLES,
            "note": f"Python loop timed on {scaled_from} resamples and scaled to {N_RESAMPLES}"}


def bench_paired(scaled_from: int = 10) -> dict:
    rng = np.random.default_rng(2)
    base = (rng.random(N_EXAMPLES) < 0.5).astype(float)
    cands = {f"c{i}": (rng.random(N_EXAMPLES) < 0.45 + 0.01 * i).astype(float) for i in range(N_CANDIDATES)}
    harness_s = _median_seconds(
        lambda: stats.paired_bootstrap_many(cands, base, n_resamples=N_RESAMPLES), REPEATS)
    py_c, py_b = [c.tolist() for c in cands.values()], base.tolist()
    measured = _median_seconds(lambda: _python_paired(py_c, py_b, scaled_from), 1)
    baseline_s = measured * N_RESAMPLES / scaled_from
    return {"bench": "stats_paired", "ratio": round(baseline_s / harness_s, 2), "target": 1.0,
            "higher_is_better": True, "seconds": round(harness_s, 4), "baseline_seconds": round(baseline_s, 3),
            "under_1s": harness_s < 1.0, "n_examples": N_EXAMPLES, "n_resamples": N_RESAMPLES,
            "n_candidates": N_CANDIDATES,
            "note": f"Python loop timed on {scaled_from} resamples and scaled to {N_RESAMPLES}"}


def run() -> list[dict]:
    rows = [bench_bootstrap(), bench_paired()]
    # Timings are wall-clock; on a shared machine the load says how much to trust them.
    load = round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None
    for row in rows:
        row["load_avg_1m"] = load
        row["cpus"] = os.cpu_count()
    return rows


if __name__ == "__main__":
    for row in run():
        print(json.dumps(row))
