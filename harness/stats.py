"""Confidence intervals, paired tests and sample-size estimates (numpy; seeded; vectorised).

Bootstraps work on a metric's sufficient statistics: a resample is a row of counts
``c`` (how often each example was drawn) and its value is ``aggregate(c @ stats)``, so
all resamples of any metric - a mean, corpus BLEU, macro F1 - are one matrix product.
Paired comparisons apply the *same* counts to both candidates.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist
from typing import Iterator, Mapping, Sequence

import numpy as np

from harness.errors import HarnessError

# Resample counts are made in blocks of about this many cells (~16 MB as float64).
BLOCK_CELLS = 2 ** 21
# Up to this many statistic columns a bootstrap gathers and sums; above, it multiplies counts.
GATHER_MAX_COLS = 8
# Sign-flip rows per block in the permutation test.
CHUNK = 256


def _as_result(x):
    """A MetricResult as is; a 1-D array of per-example values as a mean-type result."""
    from harness.metrics import MetricResult, from_values

    if isinstance(x, MetricResult):
        return x
    values = np.asarray(x, dtype=float)
    if values.ndim != 1:
        raise HarnessError(f"expected a MetricResult or 1-D per-example values, got shape {values.shape}")
    return from_values("values", [None if math.isnan(v) else float(v) for v in values])


def _z(confidence: float) -> float:
    if not 0 < confidence < 1:
        raise HarnessError(f"confidence must be between 0 and 1, got {confidence}")
    return NormalDist().inv_cdf(1 - (1 - confidence) / 2)


def resample_indices(n: int, n_resamples: int, seed: int = 0) -> Iterator[np.ndarray]:
    """Blocks of bootstrap draws, shape (b, n): row r lists the examples drawn (with
    replacement) for resample r. Same seed, same blocks."""
    rng = np.random.default_rng(seed)
    chunk = max(1, BLOCK_CELLS // max(n, 1))
    done = 0
    while done < n_resamples:
        b = min(chunk, n_resamples - done)
        yield rng.integers(0, n, size=(b, n))  # int64: bincount converts anything else, slowly
        done += b


def counts_of(idx: np.ndarray, n: int) -> np.ndarray:
    """(b, n) draws -> (b, n) counts: how often each example was drawn in each resample."""
    b = idx.shape[0]
    flat = (idx + np.arange(b)[:, None] * n).ravel()  # offset rows so one bincount fills them all
    return np.bincount(flat, minlength=b * n).reshape(b, n).astype(float)


def resample_counts(n: int, n_resamples: int, seed: int = 0) -> Iterator[np.ndarray]:
    """Blocks of bootstrap counts, shape (b, n), each row summing to n."""
    for idx in resample_indices(n, n_resamples, seed):
        yield counts_of(idx, n)


def bootstrap_values(results: Sequence, n_resamples: int = 2000, seed: int = 0) -> list[np.ndarray]:
    """Bootstrap distributions (each shape (n_resamples,)) of several results over the
    same examples, all drawn from the same resamples (paired)."""
    results = [_as_result(r) for r in results]
    n = results[0].n
    if any(r.n != n for r in results):
        raise HarnessError(f"paired results must cover the same examples; sizes {[r.n for r in results]}")
    ids = [r.extra.get("ids") for r in results if r.extra.get("ids") is not None]
    if ids and any(list(i) != list(ids[0]) for i in ids):
        raise HarnessError("paired results list different example ids")
    if n == 0:
        raise HarnessError("cannot bootstrap a metric over zero examples")
    widths = [r.stats.shape[1] for r in results]
    # One wide matrix so each block of draws is used once for all results.
    stacked = np.hstack([r.stats for r in results])
    edges = np.cumsum([0] + widths)
    # Identical columns (every mean-type result has a column of ones) are summed once.
    unique, inverse = np.unique(stacked, axis=1, return_inverse=True)
    inverse = np.asarray(inverse).ravel()
    columns = [np.ascontiguousarray(c) for c in unique.T] if unique.shape[1] <= GATHER_MAX_COLS else None
    out: list[list[np.ndarray]] = [[] for _ in results]
    for idx in resample_indices(n, n_resamples, seed):
        if columns is not None:
            # Few columns: summing the gathered values beats building the count matrix.
            sums = np.stack([col[idx].sum(axis=1) for col in columns], axis=-1)[:, inverse]
        else:
            sums = (counts_of(idx, n) @ unique)[:, inverse]
        for j, r in enumerate(results):
            out[j].append(np.asarray(r.aggregate(sums[:, edges[j]:edges[j + 1]]), dtype=float))
    return [np.concatenate(parts) for parts in out]


def _binary_values(result) -> np.ndarray | None:
    """Per-example 0/1 values when the result is a plain proportion, else None."""
    from harness.metrics import mean_aggregate

    s = result.stats
    if result.aggregate is not mean_aggregate or s.shape[1] != 2:
        return None
    used = s[:, 1] == 1
    vals = s[used, 0]
    if not np.isin(vals, (0.0, 1.0)).all() or not np.isin(s[:, 1], (0.0, 1.0)).all():
        return None
    return vals


def wilson_ci(successes: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for a proportion."""
    if n == 0:
        return (0.0, 1.0)
    z = _z(confidence)
    p = successes / n
    den = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / den
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / den
    # At 0 or n successes the bound is exactly 0 or 1 (the float sum leaves ~1e-18 residue).
    lo = 0.0 if successes == 0 else max(0.0, centre - half)
    hi = 1.0 if successes == n else min(1.0, centre + half)
    return (lo, hi)


def _quantiles(dist: np.ndarray, lo_q: float, hi_q: float) -> tuple[float, float]:
    d = dist[~np.isnan(dist)]
    if d.size == 0:
        return (float("nan"), float("nan"))
    # Infinite values (ratios over a zero baseline) would make interpolation NaN (inf - inf):
    # then the quantiles are order statistics, which may be infinite but are never made up.
    method = "inverted_cdf" if np.isinf(d).any() else "linear"
    lo, hi = np.quantile(d, [lo_q, hi_q], method=method)
    return (float(lo), float(hi))


def _bca_quantiles(result, dist: np.ndarray, confidence: float) -> tuple[float, float]:
    """Bias-corrected and accelerated quantile levels; the jackknife is exact and cheap
    because leaving example i out is ``aggregate(total - stats[i])``."""
    nd = NormalDist()
    alpha = (1 - confidence) / 2
    theta = float(result.aggregate(result.stats.sum(0)))
    d = dist[~np.isnan(dist)]
    frac = (np.sum(d < theta) + 0.5 * np.sum(d == theta)) / max(d.size, 1)
    if not 0 < frac < 1:
        return (alpha, 1 - alpha)
    z0 = nd.inv_cdf(float(frac))
    jack = np.asarray(result.aggregate(result.stats.sum(0) - result.stats), dtype=float)
    jack = jack[~np.isnan(jack)]
    dev = jack.mean() - jack if jack.size else np.zeros(1)
    den = 6 * (np.sum(dev ** 2) ** 1.5)
    a = float(np.sum(dev ** 3) / den) if den > 0 else 0.0
    levels = []
    for q in (alpha, 1 - alpha):
        zq = nd.inv_cdf(q)
        levels.append(nd.cdf(z0 + (z0 + zq) / (1 - a * (z0 + zq))))
    return (levels[0], levels[1])


def bootstrap_ci(result_or_values, confidence: float = 0.95, n_resamples: int = 2000, seed: int = 0,
                 method: str = "percentile") -> tuple[float, float]:
    """Bootstrap CI of a MetricResult (its own aggregate) or of the mean of 1-D values.

    ``method``: "percentile" (default) or "bca". A proportion whose outcomes are all equal
    (all pass or all fail) gets the Wilson interval instead: its bootstrap would be a
    single point and claim certainty from, say, five examples.
    """
    result = _as_result(result_or_values)
    _z(confidence)  # validates confidence
    binary = _binary_values(result)
    if binary is not None and binary.size and (binary.min() == binary.max()):
        return wilson_ci(int(binary.sum()), int(binary.size), confidence)
    (dist,) = bootstrap_values([result], n_resamples, seed)
    alpha = (1 - confidence) / 2
    if method == "bca":
        lo_q, hi_q = _bca_quantiles(result, dist, confidence)
    elif method == "percentile":
        lo_q, hi_q = alpha, 1 - alpha
    else:
        raise HarnessError(f"unknown bootstrap method {method!r}; use 'percentile' or 'bca'")
    return _quantiles(dist, lo_q, hi_q)


@dataclass
class PairedResult:
    """Candidate vs baseline on the same examples and the same resamples."""

    cand_value: float
    base_value: float
    diff: float                      # cand - base
    diff_ci: tuple[float, float]
    ratio: float                     # cand / base (inf when base is 0 and cand is not)
    ratio_ci: tuple[float, float]
    p_value: float                   # two-sided bootstrap p-value for diff == 0
    n: int
    n_resamples: int
    confidence: float


def _ratio(c: np.ndarray | float, b: np.ndarray | float) -> np.ndarray:
    c, b = np.asarray(c, dtype=float), np.asarray(b, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        # 0/0 is "no change" (1.0); x/0 is unbounded.
        return np.where(b != 0, c / np.where(b != 0, b, 1), np.where(c == 0, 1.0, np.inf * np.sign(c)))


def _paired_from_dists(cand, base, cd: np.ndarray, bd: np.ndarray, confidence: float) -> PairedResult:
    alpha = (1 - confidence) / 2
    cv = float(cand.aggregate(cand.stats.sum(0)))
    bv = float(base.aggregate(base.stats.sum(0)))
    diff = cd - bd
    d = diff[~np.isnan(diff)]
    p = min(1.0, 2 * min(np.mean(d <= 0), np.mean(d >= 0))) if d.size else float("nan")
    return PairedResult(cv, bv, cv - bv, _quantiles(diff, alpha, 1 - alpha), float(_ratio(cv, bv)),
                        _quantiles(_ratio(cd, bd), alpha, 1 - alpha), float(p), cand.n, len(cd), confidence)


def paired_bootstrap(cand, base, confidence: float = 0.95, n_resamples: int = 2000, seed: int = 0) -> PairedResult:
    """CI of cand - base and cand / base from the same resamples of the same examples."""
    _z(confidence)
    cand, base = _as_result(cand), _as_result(base)
    cd, bd = bootstrap_values([cand, base], n_resamples, seed)
    return _paired_from_dists(cand, base, cd, bd, confidence)


def paired_bootstrap_many(cands: Mapping[str, object], base, confidence: float = 0.95, n_resamples: int = 2000,
                          seed: int = 0) -> dict[str, PairedResult]:
    """:func:`paired_bootstrap` for many candidates against one baseline, sharing one
    set of resamples (and one pass over it)."""
    _z(confidence)
    names = list(cands)
    results = [_as_result(cands[k]) for k in names]
    base = _as_result(base)
    dists = bootstrap_values([base] + results, n_resamples, seed)
    return {k: _paired_from_dists(r, base, d, dists[0], confidence)
            for k, r, d in zip(names, results, dists[1:])}


def permutation_test(a: Sequence[float], b: Sequence[float], n_resamples: int = 10000, seed: int = 0) -> float:
    """Two-sided paired sign-flip permutation test for mean(a - b) == 0; returns the
    p-value (with the +1 correction, so never 0)."""
    d = np.asarray(a, dtype=float) - np.asarray(b, dtype=float)
    d = d[~np.isnan(d)]
    if d.size == 0:
        raise HarnessError("permutation test needs at least one paired value")
    observed = abs(d.mean())
    rng = np.random.default_rng(seed)
    hits, done = 0, 0
    while done < n_resamples:
        m = min(CHUNK * 4, n_resamples - done)
        signs = rng.integers(0, 2, size=(m, d.size)) * 2 - 1
        means = np.abs(signs @ d) / d.size
        hits += int(np.sum(means >= observed - 1e-12 * max(1.0, observed)))
        done += m
    return (hits + 1) / (n_resamples + 1)


@dataclass
class McNemarResult:
    only_a: int          # a correct, b wrong
    only_b: int          # a wrong, b correct
    statistic: float     # min(only_a, only_b) for the exact test; chi-square otherwise
    p_value: float
    method: str          # "exact" | "chi2"


def mcnemar(correct_a: Sequence[bool], correct_b: Sequence[bool], exact: bool | None = None) -> McNemarResult:
    """McNemar's test on paired correctness. ``exact=None`` uses the exact binomial test
    when there are fewer than 25 discordant pairs, else chi-square with continuity
    correction (as statsmodels' ``mcnemar(exact=False, correction=True)``)."""
    a = np.asarray(correct_a, dtype=bool)
    b = np.asarray(correct_b, dtype=bool)
    if a.shape != b.shape or a.ndim != 1:
        raise HarnessError(f"mcnemar needs two equally long 1-D sequences, got {a.shape} and {b.shape}")
    n10, n01 = int(np.sum(a & ~b)), int(np.sum(~a & b))
    disc = n10 + n01
    if exact is None:
        exact = disc < 25
    if disc == 0:
        return McNemarResult(n10, n01, 0.0, 1.0, "exact" if exact else "chi2")
    if exact:
        from scipy.stats import binomtest

        p = binomtest(min(n10, n01), disc, 0.5).pvalue
        return McNemarResult(n10, n01, float(min(n10, n01)), float(min(1.0, p)), "exact")
    stat = (abs(n10 - n01) - 1) ** 2 / disc
    # chi-square with 1 df: P(X > s) = erfc(sqrt(s / 2)).
    return McNemarResult(n10, n01, float(stat), math.erfc(math.sqrt(stat / 2)), "chi2")


# The power "n needed" aims at: the chance that a criterion settles at that many examples if the
# estimate is the truth.
POWER = 0.8


def _power_factor(confidence: float, power: float) -> float:
    """(z_conf + z_power) / z_conf: how much closer than the threshold the bound must come
    for the bound to clear it with probability ``power`` rather than one half."""
    return (_z(confidence) + NormalDist().inv_cdf(power)) / _z(confidence)


def required_n(mean: float, threshold: float, sd: float | None = None, proportion: bool = False,
               confidence: float = 0.95, power: float = POWER) -> int | None:
    """Examples needed for the CI bound to clear ``threshold`` with probability ``power`` if
    the mean is the truth.

    Normal approximation: the two-sided CI half-width is ``z * sd / sqrt(n)`` and the bound
    clears with probability ``power`` when ``|mean - threshold| = (z + z_power) sd / sqrt(n)``,
    so ``n = ceil(((z + z_power) * sd / |mean - threshold|) ** 2)`` (``power=0.5``: the bound
    reaches the threshold on average). With ``proportion=True`` the sd is ``sqrt(p (1 - p))``.
    Returns None when the mean sits on the threshold (no n does it).
    """
    if proportion:
        if not 0 <= mean <= 1:
            raise HarnessError(f"a proportion must be in [0, 1], got {mean}")
        sd = math.sqrt(mean * (1 - mean))
    if sd is None or sd < 0:
        raise HarnessError("required_n needs a non-negative sd (or proportion=True)")
    gap = abs(mean - threshold)
    if gap == 0:
        return None
    return max(1, math.ceil((_z(confidence) * _power_factor(confidence, power) * sd / gap) ** 2))


def _finite(*xs: float) -> bool:
    return all(isinstance(x, (int, float)) and math.isfinite(x) for x in xs)


def required_n_from_ci(n: int, estimate: float, ci: tuple[float, float], threshold: float,
                       confidence: float = 0.95, power: float = POWER) -> int | None:
    """Total examples at which the CI's near bound would clear ``threshold`` with probability
    ``power``, if the estimate is the truth.

    The bound facing the threshold moves in like 1/sqrt(n) (normal approximation), so
    ``n_needed = n * (k * (estimate - bound) / (estimate - threshold)) ** 2`` with
    ``k = (z + z_power) / z``. Works for any metric with an interval. None when the estimate
    sits on the threshold or a number is not finite; never overflows (capped at 10**12).
    """
    gap = estimate - threshold
    if gap == 0 or not _finite(estimate, threshold, *ci) or n < 1:
        return None
    half = estimate - ci[0] if gap > 0 else ci[1] - estimate
    if half <= 0:
        return n
    need = n * (_power_factor(confidence, power) * half / abs(gap)) ** 2  # float: inf, never an error
    return 10 ** 12 if not need < 1e12 else max(n, math.ceil(need))


# Above this many examples "n needed" for a proportion is the normal approximation: the exact
# power converges to it, and the binomial tails are no longer cheap to search.
EXACT_POWER_MAX_N = 10 ** 7


def clopper_pearson_power(big_n, p: float, threshold: float, confidence: float = 0.95) -> np.ndarray:
    """Exact chance, if ``p`` is the truth, that a Clopper–Pearson interval over ``big_n`` examples
    (an int or an array of them) settles against ``threshold`` on ``p``'s side: its low bound
    >= threshold when p > threshold, its high bound <= threshold when p < threshold.

    The low bound of k successes clears t exactly when P(Bin(N, t) >= k) <= alpha (the beta-
    binomial identity behind Clopper–Pearson), so the passing counts are k >= k_min(N) and the
    power is P(Bin(N, p) >= k_min); the high bound is the same on 1 - p, 1 - t."""
    from scipy.stats import binom

    if p < threshold:
        return clopper_pearson_power(big_n, 1 - p, 1 - threshold, confidence)
    big_n = np.asarray(big_n, dtype=float)
    alpha = (1 - confidence) / 2
    if threshold <= 0:
        return np.ones_like(big_n)
    k = binom.isf(alpha, big_n, threshold) + 1  # smallest k with P(X >= k) <= alpha, up to rounding
    # isf works in floating point: step to the exact boundary (at most one count either way).
    k = np.where(binom.sf(k - 1, big_n, threshold) > alpha, k + 1, k)
    k = np.where((k > 1) & (binom.sf(k - 2, big_n, threshold) <= alpha), k - 1, k)
    return np.where(k <= big_n, binom.sf(k - 1, big_n, p), 0.0)


def required_n_proportion(p: float, threshold: float, confidence: float = 0.95, power: float = POWER,
                          start: int = 1) -> int | None:
    """The smallest number of examples (from ``start``, searched near the first crossing) at which
    a Clopper–Pearson verdict settles with probability >= ``power`` if ``p`` is the truth, by
    exact binomial power (:func:`clopper_pearson_power`). Power is a saw-tooth in N (each new
    passing count costs a step down), so the answer is the smallest N within a window below the
    first crossing found by bisection, and the power *at* it is >= ``power``. None when ``p`` is
    on the threshold; the normal approximation past ``EXACT_POWER_MAX_N``."""
    if p == threshold or not (0 <= p <= 1 and 0 <= threshold <= 1):
        return None

    def ok(n: int) -> bool:
        return bool(clopper_pearson_power(n, p, threshold, confidence) >= power)

    lo = max(1, int(start))
    if ok(lo):
        return lo
    hi = max(lo + 1, required_n(p, threshold, proportion=True, confidence=confidence, power=power) or lo + 1)
    while not ok(hi):
        lo, hi = hi, math.ceil(hi * 1.5)
        if hi > EXACT_POWER_MAX_N:
            return required_n(p, threshold, proportion=True, confidence=confidence, power=power)
    while hi - lo > 1:  # ok(hi), not ok(lo)
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if ok(mid) else (mid, hi)
    window = np.arange(max(int(start), hi - 4 * math.isqrt(hi) - 20), hi + 1)
    passing = window[clopper_pearson_power(window, p, threshold, confidence) >= power]
    return int(passing[0]) if passing.size else hi


def resolvable_distance(n: int, estimate: float, ci: tuple[float, float], factor: float = 10.0,
                        confidence: float = 0.95, power: float = POWER) -> float | None:
    """With ``factor`` times the examples, how far from the threshold the truth would have to
    be for the criterion to settle with probability ``power``: the half-width scaled by
    ``1 / sqrt(factor)`` and the power factor. None without a finite interval."""
    if not _finite(estimate, *ci) or n < 1:
        return None
    half = max(estimate - ci[0], ci[1] - estimate)
    return _power_factor(confidence, power) * half / math.sqrt(factor)
