"""The interval behind each verdict, chosen by what the metric is.

A verdict passes when the interval's near bound clears the threshold, so the interval's
one-sided error *is* the false-pass rate. Each method below was picked because its error is
known (exact) or measured (``bench/bench_validity.py``), never assumed:

* a **proportion** (accuracy, pass rates, off-topic rate: per-example 0/1 outcomes) gets the
  Clopper–Pearson exact interval — its one-sided error is at most ``(1 - confidence) / 2``
  for every n and every true value, and it is monotone in the number of successes;
* a **paired difference of proportions** gets Newcombe's hybrid score interval (method 10,
  with the continuity-corrected correlation φ*), which stays valid with zero cells;
* a **ratio of proportions** (``reduce_by``/``improve_by`` in %) gets MOVER-R on Wilson
  limits (Donner & Zou 2012). It treats the two proportions as independent, which on a
  shared test set (positive correlation) makes it wider, not narrower;
* anything else (rating means, judge scores, corpus BLEU/ROUGE, F1) gets the BCa bootstrap,
  and only from ``MIN_N`` examples on: below that a criterion is inconclusive whatever the
  data say. When the resamples cannot vary (every example scored the same) the bootstrap
  would claim certainty; a mean on a known scale (``extra["scale"]``) then gets the Wilson
  interval of its position on the scale, anything else is left undecided.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from harness import stats

# Below this many examples a bootstrap interval is not trusted (its coverage at n = 10-20 on
# skewed rating data measured 80-90%); the criterion is inconclusive.
MIN_N = 20

CLOPPER_PEARSON = "Clopper-Pearson exact"
NEWCOMBE = "Newcombe hybrid score (paired)"
MOVER_R = "MOVER-R on Wilson limits"
BCA = "BCa bootstrap"
PAIRED_BOOTSTRAP = "paired percentile bootstrap"
SCALED_WILSON = "Wilson on the scale (no spread)"
TOO_FEW = "none (too few examples)"
NO_SPREAD = "none (no spread)"


@dataclass(frozen=True)
class Interval:
    lo: float
    hi: float
    method: str
    note: str = ""     # why there is no interval, when lo/hi are NaN

    @property
    def ci(self) -> tuple[float, float]:
        return (self.lo, self.hi)


NAN = float("nan")


def clopper_pearson(k: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Exact (Clopper–Pearson) interval for k successes in n trials."""
    from scipy.stats import beta

    if n <= 0:
        return (0.0, 1.0)
    a = (1 - confidence) / 2
    lo = 0.0 if k == 0 else float(beta.ppf(a, k, n - k + 1))
    hi = 1.0 if k == n else float(beta.ppf(1 - a, k + 1, n - k))
    return (lo, hi)


def newcombe_paired(both: int, only_a: int, only_b: int, neither: int,
                    confidence: float = 0.95) -> tuple[float, float]:
    """Newcombe (1998) method 10 for p_a - p_b on paired 0/1 outcomes."""
    n = both + only_a + only_b + neither
    if n == 0:
        return (-1.0, 1.0)
    p1, p2 = (both + only_a) / n, (both + only_b) / n
    l1, u1 = stats.wilson_ci(both + only_a, n, confidence)
    l2, u2 = stats.wilson_ci(both + only_b, n, confidence)
    den = math.sqrt((both + only_a) * (only_b + neither) * (both + only_b) * (only_a + neither))
    cross = both * neither - only_a * only_b
    if den == 0:
        phi = 0.0
    elif cross > 0:
        phi = max(cross - n / 2, 0.0) / den
    else:
        phi = cross / den
    d = p1 - p2
    delta = math.sqrt(max((p1 - l1) ** 2 - 2 * phi * (p1 - l1) * (u2 - p2) + (u2 - p2) ** 2, 0.0))
    eps = math.sqrt(max((u1 - p1) ** 2 - 2 * phi * (u1 - p1) * (p2 - l2) + (p2 - l2) ** 2, 0.0))
    return (max(-1.0, d - delta), min(1.0, d + eps))


def mover_ratio(k1: int, k2: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """MOVER-R interval for p1 / p2 from Wilson limits (independent form); (lo, inf) when the
    baseline's upper side reaches 0."""
    p1, p2 = k1 / n, k2 / n
    l1, u1 = stats.wilson_ci(k1, n, confidence)
    l2, u2 = stats.wilson_ci(k2, n, confidence)
    lo_den = u2 * (2 * p2 - u2)
    hi_den = l2 * (2 * p2 - l2)
    lo_root = (p1 * p2) ** 2 - l1 * u2 * (2 * p1 - l1) * (2 * p2 - u2)
    hi_root = (p1 * p2) ** 2 - u1 * l2 * (2 * p1 - u1) * (2 * p2 - l2)
    lo = (p1 * p2 - math.sqrt(max(lo_root, 0.0))) / lo_den if lo_den > 0 else 0.0
    hi = (p1 * p2 + math.sqrt(max(hi_root, 0.0))) / hi_den if hi_den > 0 else math.inf
    return (max(lo, 0.0), hi)


def _binary_counts(result) -> tuple[np.ndarray, np.ndarray] | None:
    """(used mask, 0/1 values) of a plain proportion, else None."""
    vals = stats._binary_values(result)
    if vals is None:
        return None
    return result.stats[:, 1] == 1, result.stats[:, 0]


def interval(result, confidence: float = 0.95, n_resamples: int = 2000, seed: int = 0) -> Interval:
    """The interval a verdict on ``result`` (a MetricResult or 1-D values) rests on."""
    result = stats._as_result(result)
    binary = stats._binary_values(result)
    if binary is not None and binary.size:
        lo, hi = clopper_pearson(int(binary.sum()), int(binary.size), confidence)
        return Interval(lo, hi, CLOPPER_PEARSON)
    n = _used(result)
    if n < MIN_N:
        return Interval(NAN, NAN, TOO_FEW, f"{n} examples; a bootstrap needs at least {MIN_N}")
    (dist,) = stats.bootstrap_values([result], n_resamples, seed)
    finite = dist[np.isfinite(dist)]
    if finite.size == 0 or finite.min() == finite.max():
        return _no_spread(result, n, confidence)
    lo_q, hi_q = stats._bca_quantiles(result, dist, confidence)
    lo, hi = stats._quantiles(dist, lo_q, hi_q)
    return Interval(lo, hi, BCA)


def _used(result) -> int:
    s = result.stats
    if s.ndim == 2 and s.shape[1] == 2 and np.isin(s[:, 1], (0.0, 1.0)).all():
        return int(s[:, 1].sum())  # a mean-type result: rows with a value
    return result.n


def _no_spread(result, n: int, confidence: float) -> Interval:
    scale = result.extra.get("scale")
    if scale and len(scale) == 2 and scale[1] > scale[0]:
        lo_s, hi_s = float(scale[0]), float(scale[1])
        pos = (result.recompute() - lo_s) / (hi_s - lo_s)
        lo, hi = stats.wilson_ci(round(pos * n), n, confidence)
        return Interval(lo_s + lo * (hi_s - lo_s), lo_s + hi * (hi_s - lo_s), SCALED_WILSON)
    return Interval(NAN, NAN, NO_SPREAD, "every resample gives the same value, so the data cannot say how far "
                                         "the estimate could be off")


@dataclass(frozen=True)
class PairedInterval:
    cand_value: float
    base_value: float
    diff: float
    diff_ci: tuple[float, float]
    ratio: float
    ratio_ci: tuple[float, float]
    n: int
    method: str          # for the difference
    ratio_method: str
    note: str = ""


def paired(cand, base, confidence: float = 0.95, n_resamples: int = 2000, seed: int = 0) -> PairedInterval:
    """Candidate vs baseline on the same examples: the difference and the ratio, each with
    the interval its type calls for."""
    cand, base = stats._as_result(cand), stats._as_result(base)
    cb, bb = _binary_counts(cand), _binary_counts(base)
    if cb is not None and bb is not None and (cb[0] == bb[0]).all() and cb[0].any():
        used = cb[0]
        a, b = cb[1][used].astype(bool), bb[1][used].astype(bool)
        n = int(used.sum())
        counts = (int(np.sum(a & b)), int(np.sum(a & ~b)), int(np.sum(~a & b)), int(np.sum(~a & ~b)))
        k1, k2 = int(a.sum()), int(b.sum())
        ratio = k1 / k2 if k2 else (1.0 if k1 == 0 else math.inf)
        return PairedInterval(k1 / n, k2 / n, (k1 - k2) / n, newcombe_paired(*counts, confidence), ratio,
                              mover_ratio(k1, k2, n, confidence) if k2 else (NAN, NAN), n, NEWCOMBE, MOVER_R)
    n = min(_used(cand), _used(base))
    if n < MIN_N:  # decided before any resampling: no interval either way
        cv, bv = cand.recompute(), base.recompute()
        ratio = float(stats._ratio(cv, bv))
        return PairedInterval(cv, bv, cv - bv, (NAN, NAN), ratio, (NAN, NAN), n,
                              TOO_FEW, TOO_FEW, f"{n} paired examples; a bootstrap needs at least {MIN_N}")
    boot = stats.paired_bootstrap(cand, base, confidence, n_resamples, seed)
    diff_ci, ratio_ci = boot.diff_ci, boot.ratio_ci
    if diff_ci[0] == diff_ci[1]:
        return PairedInterval(boot.cand_value, boot.base_value, boot.diff, (NAN, NAN), boot.ratio, (NAN, NAN), n,
                              NO_SPREAD, NO_SPREAD, "every resample gives the same difference")
    if not all(math.isfinite(x) for x in ratio_ci) or ratio_ci[0] == ratio_ci[1]:
        ratio_ci = (NAN, NAN)
    return PairedInterval(boot.cand_value, boot.base_value, boot.diff, diff_ci, boot.ratio, ratio_ci, n,
                          PAIRED_BOOTSTRAP, PAIRED_BOOTSTRAP)


__all__ = ["BCA", "CLOPPER_PEARSON", "MIN_N", "MOVER_R", "NEWCOMBE", "Interval", "PairedInterval",
           "clopper_pearson", "interval", "mover_ratio", "newcombe_paired", "paired"]
