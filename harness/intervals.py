"""The interval behind each verdict, chosen by what the metric is.

A verdict passes when the interval's near bound clears the threshold, so the interval's
one-sided error *is* the false-pass rate. Each method below was picked because its error is
known (exact) or measured (``bench/bench_validity.py``), never assumed:

* a **proportion** (accuracy, pass rates, off-topic rate: per-example 0/1 outcomes) gets the
  Clopper–Pearson exact interval — its one-sided error is at most ``(1 - confidence) / 2``
  for every n and every true value, and it is monotone in the number of successes;
* a **paired difference of proportions** gets the skewness-corrected asymptotic score interval
  (SCAS: Tango's 1998 score interval with Laud's skewness correction and N/(N-1) variance
  factor, as ``ratesci::scorepairci``) with a quarter-size continuity correction
  (``PAIRED_CC``): by exact enumeration of every 2x2 table its one-sided error stays at or
  under 2.5% over 96 paired settings at n = 30, 80 and 300 (worst 1.8%, 2.3%, 2.3%), where
  Newcombe's hybrid score interval (``newcombe_paired``, kept for reference) reached 3.8–3.9%
  and plain SCAS 3.3% / 2.8% / 2.6%. It stays valid with zero cells;
* a **ratio of proportions** (``reduce_by``/``improve_by`` in %) gets the paired ratio score
  interval (Tang, Tang & Chan's 2003 score for p_a / p_b on the 2x2 table, with the same
  variance factor and skewness correction and a continuity correction of 1/8,
  ``PAIRED_RATIO_CC``): by exact enumeration its one-sided error stays at or under 2.5% over
  88 paired settings at n = 30, 80, 300 and 1000 (worst 2.2%, 2.2%, 2.4%, 2.4%), where MOVER-R on
  Wilson limits (``mover_ratio``, which it replaces) reached 3.2% at n = 30 with independent
  pairs and covered up to 99.9% with correlated ones. It stays valid with zero cells;
* a **mean of per-example values** (ratings, judge scores, ROUGE per example) gets the
  studentised bootstrap (bootstrap-t) at the approximate intervals' level (below);
* anything else (corpus BLEU/chrF, F1) gets a studentised bootstrap whose standard error is the
  delta-method one (the aggregate's numerical gradient at each resample's totals; 3% under
  the exact jackknife at n = 30 on corpus BLEU, 1% from n = 80 on); the BCa bootstrap it
  replaces passed corpus BLEU at the threshold 3.8–4.0% of the time at n = 30;
* a **difference or ratio of means or corpus metrics** (``improve_by``/``reduce_by`` on ROUGE,
  judge or human scores, BLEU) resamples whole pairs: for means the studentised bootstrap of
  the per-example differences and the delta-method bootstrap-t of mean(c) / mean(b), for corpus
  metrics the delta-method bootstrap-t of agg(c) - agg(b) and agg(c) / agg(b) over both
  candidates' statistics side by side (the percentile bootstrap they replace has no measured
  error). Examples a judgment failed on, on either side, are left out of the pairs;
* the **approximate intervals** (every bootstrap here) aim at ``APPROX_SHARE`` (80%) of the
  nominal one-sided error, expanded for small n as Student's t on n - 1 df widens a normal
  interval (``expanded_alpha``): their error is 2.5% only up to O(1/n) terms, which on discrete,
  skewed scores leave no room (a 1-5 rating mean at n = 300 passed at the truth 2.3–2.4% of the
  time at the full level, 2.7–2.8% with 2,000 resamples). A resample without spread counts as t = ±inf (left out, it cut the
  tail it lies in: 29 fives and a four out of 30 passed ``at_least 4.8``), and scores on a few
  levels are resampled as counts of the levels, 10,000 times (the seed is fixed, so the Monte
  Carlo error of the quantiles is a bias every data set shares: ±0.3 points of false pass at
  2,000 resamples);
* every bootstrap only from ``MIN_N`` examples on: below that a criterion is inconclusive
  whatever the data say. When the resamples cannot vary (every example scored the same) a
  bootstrap would claim certainty; a mean on known bounds (``extra["bounds"]``) then gets the
  Wilson interval of its position within them, anything else is left undecided;
* a **judge score with human ratings of some of the same outputs** (``extra["human_labels"]``)
  gets the prediction-powered estimate (PPI++, Angelopoulos, Duchi & Zrnic 2023): the judge's
  mean over the outputs no human rated, corrected by the human-minus-judge residuals on the
  rated ones, with the power-tuning λ — ``ppi_mean``, equal to ``ppi_py.ppi_mean_ci`` (estimate
  and interval, tested to 1e-9) and kept as the reference. The verdict's interval around that
  estimate is a studentised bootstrap over both samples (``ppi_bootstrap_t``: rated and unrated
  outputs resampled separately, λ re-tuned in every resample, t* = (estimate* - estimate) /
  se*, its level expanded for the Welch–Satterthwaite degrees of freedom of se). PPI++'s own normal interval, λ tuned on the same ratings, passed at the threshold 5.8%
  of the time with 20 of 100 outputs rated, and still 3.6% at 20 and 2.6% at 200 rated with
  its level cut to 80% and t-expanded (bench/README.md), so the verdict does not use it;
* a **human-panel mean** (``extra["ratings"]``: one value per item and rater) gets a
  two-way random-effects interval: MOVER over the rater means' variance (Student's t on
  raters − 1 degrees of freedom) and the item means' (t on items − 1), at ``APPROX_SHARE`` of
  the one-sided error, so a lenient panel of three does not pass a goal on its leniency (the
  item-only bootstrap this replaces covered the rater population's mean 61–84% of the time
  with three raters). One rater cannot tell leniency from quality: no interval.
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
PAIRED_SCORE = "SCAS paired score (Tango + skewness correction, continuity 1/4)"
MOVER_R = "MOVER-R on Wilson limits"
PAIRED_RATIO_SCORE = "SCAS paired ratio score (Tang + skewness correction, continuity 1/8)"
BCA = "BCa bootstrap"
STUDENTIZED = "studentised bootstrap (small-n expanded)"
PAIRED_STUDENTIZED = "studentised bootstrap of the per-example differences (small-n expanded)"
PAIRED_RATIO_DELTA = "studentised bootstrap of the ratio of means (delta-method SE, paired, small-n expanded)"
PAIRED_DELTA = "paired studentised bootstrap (delta-method SE, small-n expanded)"
STUDENTIZED_DELTA = "studentised bootstrap (delta-method SE, small-n expanded)"
PPI = "PPI++ (judge corrected by human ratings)"
PPI_BOOTSTRAP = "studentised bootstrap over both samples, lambda re-tuned in each resample"
PPI_PYTHON = "ppi-python's normal interval"
PPI_PYTHON_WHY = "it misses the residuals' skew and passes at the truth too often with few ratings"
RANDOM_EFFECTS = "two-way random effects (raters and items; MOVER of a t for each)"
SCALED_EXACT = "Clopper-Pearson on the scale (no spread)"
TOO_FEW = "none (too few examples)"
ONE_RATER = ("one rater: how lenient the panel is cannot be told from how good the outputs are; "
             "a second rater is needed")
NO_SPREAD = "none (no spread)"


@dataclass(frozen=True)
class Interval:
    lo: float
    hi: float
    method: str
    note: str = ""     # why there is no interval, when lo/hi are NaN
    estimate: float | None = None  # the estimate the interval is around, when it is not the metric's value

    @property
    def ci(self) -> tuple[float, float]:
        return (self.lo, self.hi)


NAN = float("nan")

# The continuity correction of the paired score interval, in units of McNemar's (0.5 is the
# continuity-corrected McNemar test): the smallest of 0, 1/8, 1/4 that kept the exact one-sided
# error at or under 2.5% over a grid of 96 paired settings at n = 30, 80 and 300.
PAIRED_CC = 0.25


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


def paired_score_statistic(theta, t, cc: float = PAIRED_CC) -> np.ndarray:
    """The skewness-corrected score statistic (SCAS) for p_a - p_b = ``theta`` of each paired
    table (rows of ``t``: both, only_a, only_b, neither): Tango's score with the cells' restricted
    maximum-likelihood estimates, the N/(N-1) variance correction, Laud's skewness correction and
    a continuity correction of ``cc`` (McNemar's is 0.5). Decreasing in ``theta`` away from the
    estimate (at the edge of the correction's dead zone, where it is 0, it jumps by the small
    skewness term), so it crosses ±z once: the interval's low limit clears a threshold exactly
    when the statistic there is >= z (how the bench computes exact error rates without solving
    for the limits; tested on every table at n = 30)."""
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        return _paired_score_statistic(np.asarray(theta, dtype=float), np.atleast_2d(np.asarray(t, dtype=float)), cc)


def _paired_score_statistic(theta: np.ndarray, t: np.ndarray, cc: float) -> np.ndarray:
    a, b, c, d = t.T
    n = t.sum(axis=1)
    bcf = np.where(n > 1, n / np.maximum(n - 1, 1), 1.0)
    s = ((b - c) - n * theta) / n
    qa = 2 * n
    qb = -b - c + (2 * n - b + c) * theta
    qc = -c * theta * (1 - theta)
    num = -qb + np.sqrt(np.maximum(qb * qb - 4 * qa * qc, 0.0))
    p21 = np.where(num == 0, 0.0, num / (2 * qa))
    p12 = p21 + theta
    p11 = np.where(a == 0, 0.0, a / np.maximum(a + d, 1) * (1 - p12 - p21))
    p22 = 1 - p11 - p12 - p21
    p2 = np.clip(p21 + p11, 0.0, 1.0)
    p1 = p2 + theta
    var = np.maximum((p1 * (1 - p1) + p2 * (1 - p2) - 2 * (p11 * p22 - p12 * p21)) / n, 0.0) * bcf
    mu3 = (p1 * (1 - p1) * (1 - 2 * p1) - p2 * (1 - p2) * (1 - 2 * p2)
           - 3 * (p11 * (1 - p1) ** 2 + p21 * p1 ** 2 - p1 * p2 * (1 - p1))
           + 3 * (p11 * (1 - p2) ** 2 + p12 * p2 ** 2 - p1 * p2 * (1 - p2))) / n ** 2
    corr = 2 * cc * np.sign(s) / n
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        return _skew_corrected(s, corr, var, mu3, 1e-10)


def _skew_corrected(s: np.ndarray, corr: np.ndarray, var: np.ndarray, mu3: np.ndarray, tol: float) -> np.ndarray:
    """The continuity-corrected score ``(s - corr) / sqrt(var)`` with the skewness correction:
    the root of ``skew * z^2 + z - (score + skew) = 0`` that tends to the score as skew -> 0
    (``skew = mu3 / (6 var^1.5)``); 0 inside the continuity band, never NaN."""
    score = np.where(s == 0, 0.0, (s - corr) / np.sqrt(var))
    skew = np.where((np.abs(mu3) < tol) | (var < tol), 0.0, mu3 / (6 * var ** 1.5))
    root = (-1 + np.sqrt(np.maximum(1 + 4 * skew * (score + skew), 0.0))) / (2 * np.where(skew == 0, 1, skew))
    out = np.where(skew == 0, score, root)
    out = np.where(np.abs(s) < np.abs(corr), 0.0, out)
    return np.nan_to_num(out, nan=0.0)


def paired_score_limits(tables, confidence: float = 0.95, cc: float = PAIRED_CC) -> tuple[np.ndarray, np.ndarray]:
    """:func:`paired_score` for many tables at once (rows: both, only_a, only_b, neither), by
    bisection on [-1, 1] (50 halvings: to ~1e-15)."""
    t = np.atleast_2d(np.asarray(tables, dtype=float))
    z = stats._z(confidence)
    limits = []
    for target in (z, -z):  # lower limit: score = z; upper: score = -z
        lo, hi = np.full(len(t), -1.0), np.full(len(t), 1.0)
        for _ in range(50):
            mid = (lo + hi) / 2
            above = paired_score_statistic(mid, t, cc) > target  # the root lies above mid
            lo, hi = np.where(above, mid, lo), np.where(above, hi, mid)
        limits.append((lo + hi) / 2)
    n = t.sum(axis=1)
    d = (t[:, 1] - t[:, 2]) / np.where(n > 0, n, 1)
    lower = np.where(n > 0, np.minimum(limits[0], d), -1.0)
    upper = np.where(n > 0, np.maximum(limits[1], d), 1.0)
    return lower, upper


def paired_score(both: int, only_a: int, only_b: int, neither: int, confidence: float = 0.95,
                 cc: float = PAIRED_CC) -> tuple[float, float]:
    """Score interval for p_a - p_b on paired 0/1 outcomes: Tango's (1998) asymptotic score
    interval with Laud's skewness correction and N/(N-1) variance factor (SCAS, as
    ``ratesci::scorepairci``) and a continuity correction ``cc`` (``PAIRED_CC``; 0 is plain SCAS,
    0.5 McNemar's)."""
    from scipy.optimize import brentq

    n = both + only_a + only_b + neither
    if n == 0:
        return (-1.0, 1.0)
    t = np.array([[both, only_a, only_b, neither]], dtype=float)
    z = stats._z(confidence)
    d = (only_a - only_b) / n

    def f(theta: float, target: float) -> float:
        return float(paired_score_statistic(np.array([theta]), t, cc)[0]) - target

    # The score is >= 0 below d and <= 0 above it, crossing ±z once: each limit is bracketed.
    lo = -1.0 if f(-1.0, z) <= 0 else brentq(f, -1.0, d, args=(z,), xtol=1e-13)
    hi = 1.0 if f(1.0, -z) >= 0 else brentq(f, d, 1.0, args=(-z,), xtol=1e-13)
    return (float(lo), float(hi))


# The continuity correction of the paired ratio score interval, in units of McNemar's: the
# smaller of 1/8 and 1/4 that kept the exact one-sided error at or under 2.5% over 88 paired
# settings at n = 30, 80, 300 and 1000 (worst 2.2%, 2.2%, 2.4%, 2.4%; none: 2.7%).
PAIRED_RATIO_CC = 0.125


def paired_ratio_statistic(theta, t, cc: float = PAIRED_RATIO_CC, corrected: bool = True) -> np.ndarray:
    """The skewness-corrected score statistic for p_a / p_b = ``theta`` (> 0) of each paired table
    (rows of ``t``: both, only_a, only_b, neither): Tang, Tang & Chan's (2003) score
    (a + b) - theta (a + c) with the cells' restricted maximum-likelihood estimates, the N/(N-1)
    variance factor, Laud's skewness correction (the third moment of the per-pair score
    contributions 1 - theta, 1, -theta, 0 at those estimates) and a continuity correction of
    ``cc`` (McNemar's is 0.5, one discordant pair at theta = 1); ``corrected=False`` drops the
    variance factor and the skewness correction (Tang's plain score). Decreasing in ``theta``,
    so the low limit clears a threshold exactly when the statistic there is >= z."""
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        return _paired_ratio_statistic(np.asarray(theta, dtype=float), np.atleast_2d(np.asarray(t, dtype=float)),
                                       cc, corrected)


def _paired_ratio_statistic(theta: np.ndarray, t: np.ndarray, cc: float, corrected: bool) -> np.ndarray:
    a, b, c, _ = t.T
    n = t.sum(axis=1)
    s = ((a + b) - (a + c) * theta) / n  # p_a - theta p_b
    qa = n * (1 + theta)
    qb = (a + c) * theta ** 2 - (a + b + 2 * c)
    qc = c * (1 - theta) * (a + b + c) / n
    num = -qb + np.sqrt(np.maximum(qb * qb - 4 * qa * qc, 0.0))
    q21 = np.where(num == 0, 0.0, num / (2 * qa))  # only_b
    events = (a + b + c) / n
    q11 = np.maximum((events - (1 + theta) * q21) / theta, 0.0)  # both
    q12 = np.maximum((q21 + (theta - 1) * events) / theta, 0.0)  # only_a
    bcf = np.where(n > 1, n / np.maximum(n - 1, 1), 1.0) if corrected else 1.0
    var = (q11 * (1 - theta) ** 2 + q12 + theta ** 2 * q21) / n * bcf
    mu3 = (q11 * (1 - theta) ** 3 + q12 - theta ** 3 * q21) / n ** 2 * (1.0 if corrected else 0.0)
    corr = cc * np.sign(s) * (1 + theta) / n
    return _skew_corrected(s, corr, var, mu3, 1e-14)


def paired_ratio_limits(tables, confidence: float = 0.95, cc: float = PAIRED_RATIO_CC) -> tuple[np.ndarray, np.ndarray]:
    """The paired ratio score interval (:func:`paired_ratio_statistic`) of many tables at once, by
    bisection on log(theta) over [e^-40, e^40] (64 halvings); 0 when the candidate has no
    success, inf when the baseline has none."""
    t = np.atleast_2d(np.asarray(tables, dtype=float))
    z = stats._z(confidence)
    limits = []
    for target in (z, -z):
        lo, hi = np.full(len(t), -40.0), np.full(len(t), 40.0)
        for _ in range(64):
            mid = (lo + hi) / 2
            above = paired_ratio_statistic(np.exp(mid), t, cc) > target
            lo, hi = np.where(above, mid, lo), np.where(above, hi, mid)
        limits.append(np.exp((lo + hi) / 2))
    k1, k2 = t[:, 0] + t[:, 1], t[:, 0] + t[:, 2]
    est = np.where(k2 > 0, k1 / np.where(k2 > 0, k2, 1), np.inf)
    lower = np.where((k1 > 0) & (limits[0] > np.exp(-39.0)), np.minimum(limits[0], est), 0.0)
    upper = np.where((k2 > 0) & (limits[1] < np.exp(39.0)), np.maximum(limits[1], est), np.inf)
    return lower, upper


def paired_ratio(both: int, only_a: int, only_b: int, neither: int, confidence: float = 0.95,
                 cc: float = PAIRED_RATIO_CC) -> tuple[float, float]:
    """Score interval for p_a / p_b on paired 0/1 outcomes (Tang, Tang & Chan 2003, with
    skewness and continuity corrections): valid with zero cells, (0, ...) when the candidate has
    no success and (..., inf) when the baseline has none."""
    lo, hi = paired_ratio_limits([[both, only_a, only_b, neither]], confidence, cc)
    return float(lo[0]), float(hi[0])


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
    if result.extra.get("human_labels") is not None:
        return ppi_interval(result, confidence, n_resamples, seed)
    if result.extra.get("ratings") is not None:
        return rater_item_interval(result.extra["ratings"], confidence, result.extra.get("bounds"))
    binary = stats._binary_values(result)
    if binary is not None and binary.size:
        lo, hi = clopper_pearson(int(binary.sum()), int(binary.size), confidence)
        return Interval(lo, hi, CLOPPER_PEARSON)
    n = _used(result)
    if n < MIN_N:
        return Interval(NAN, NAN, TOO_FEW, f"{n} examples; a bootstrap needs at least {MIN_N}")
    values = _mean_values(result)
    if values is not None:
        return studentized(values, confidence, n_resamples, seed, result.extra.get("bounds"))
    return studentized_aggregate(result, confidence, n_resamples, seed)


def _mean_values(result) -> np.ndarray | None:
    """The values a mean-type result averages (rows marked used), else None."""
    from harness.metrics import mean_aggregate

    s = result.stats
    if result.aggregate is not mean_aggregate or s.ndim != 2 or s.shape[1] != 2:
        return None
    if not np.isin(s[:, 1], (0.0, 1.0)).all():
        return None
    return s[s[:, 1] == 1, 0]


def studentized(values: np.ndarray, confidence: float = 0.95, n_resamples: int = 2000, seed: int = 0,
                bounds=None) -> Interval:
    """Bootstrap-t interval for a mean: the resampled t = (mean* - mean) / se* gives the
    quantiles, so the interval follows the data's skew and widens where a resample's spread
    is small, with the quantile levels expanded for small n (:func:`expanded_alpha`: a plain
    bootstrap-t passed a 1-5 rating mean near the ceiling 2.8% of the time at n = 30 and 2.55%
    at 80). Resamples without spread (t undefined) are left out."""
    v = np.asarray(values, dtype=float)
    n = v.size
    if n < MIN_N:
        return Interval(NAN, NAN, TOO_FEW, f"{n} examples; a bootstrap needs at least {MIN_N}")
    m, s = float(v.mean()), float(v.std(ddof=1))
    if not s > 0:
        return _no_spread_mean(m, n, confidence, bounds)
    t = _mean_t(v, n_resamples, seed)
    q_lo, q_hi = _t_quantiles(t, expanded_alpha(n, confidence))
    se = s  # the t's are in units of the resample's sd; so is this
    lo, hi = m - q_hi * se, m - q_lo * se
    if bounds is not None and len(bounds) == 2:
        lo, hi = max(lo, float(bounds[0])), min(hi, float(bounds[1]))
        if lo > hi:  # values off the scale: nothing to decide on
            return Interval(NAN, NAN, TOO_FEW, f"values outside the scale {bounds[0]:g}-{bounds[1]:g}")
    return Interval(float(lo), float(hi), STUDENTIZED)


# Values with at most this many distinct levels, and at most half as many levels as values
# (ratings, judge scores, their differences), are resampled as multinomial counts of the levels: the same bootstrap distribution, O(levels) a
# resample instead of O(n), so they get at least DISCRETE_RESAMPLES of them. The seed is fixed,
# so the Monte Carlo error of the t quantiles is not noise but a bias shared by every data set
# alike: at 2,000 resamples about ±0.3 points of false pass (one sd), at 10,000 about ±0.14.
DISCRETE_LEVELS = 64
DISCRETE_RESAMPLES = 10000


def _mean_t(v: np.ndarray, n_resamples: int, seed: int) -> np.ndarray:
    """(mean* - mean) / sd* (ddof 1) of ``n_resamples`` bootstrap resamples of ``v``. A resample
    without spread has t = ±inf (its mean is off the sample's with no spread to scale by): left
    out, those resamples would cut the tail they lie in, and 29 fives and a four out of 30 would
    pass ``at_least 4.8`` (11% of the time at that truth, measured)."""
    n, m = v.size, float(v.mean())
    levels, inverse = np.unique(v, return_inverse=True)
    if levels.size <= min(DISCRETE_LEVELS, n // 2):
        c = levels - m  # centred: the sums of squares below lose nothing to cancellation
        counts = _multinomial_counts(n, np.bincount(inverse.ravel()), max(n_resamples, DISCRETE_RESAMPLES), seed)
        mean_c = counts @ c / n
        var = np.maximum(counts @ (c * c) - n * mean_c ** 2, 0.0) / (n - 1)
        flat = var <= 1e-24 * max(1.0, float(np.max(c * c)))
        return _t_or_inf(mean_c, np.sqrt(var), flat)
    ts = []
    for idx in stats.resample_indices(n, n_resamples, seed):
        b = v[idx]
        sb = b.std(axis=1, ddof=1)
        ts.append(_t_or_inf(b.mean(axis=1) - m, sb, ~(sb > 0)))
    return np.concatenate(ts)


def _multinomial_counts(n: int, freq: np.ndarray, size: int, seed: int) -> np.ndarray:
    """(size, levels) counts of n draws with replacement from levels seen ``freq`` times each: a
    chain of binomials, one vectorised draw per level (numpy's multinomial loops per row)."""
    rng = np.random.default_rng(seed)
    out = np.empty((size, freq.size))
    left = np.full(size, n, dtype=np.int64)
    rest = int(freq.sum())
    for j, f in enumerate(freq[:-1]):
        out[:, j] = rng.binomial(left, min(1.0, f / rest)) if rest > 0 else 0
        left -= out[:, j].astype(np.int64)
        rest -= int(f)
    out[:, -1] = left
    return out


def _t_quantiles(t: np.ndarray, a: float) -> tuple[float, float]:
    """The ``a`` and ``1 - a`` quantiles of bootstrap t's; order statistics when some are
    infinite (interpolating inf - inf would make one up)."""
    method = "inverted_cdf" if np.isinf(t).any() else "linear"
    q_lo, q_hi = np.quantile(t, [a, 1 - a], method=method)
    return float(q_lo), float(q_hi)


def _t_or_inf(diff: np.ndarray, se: np.ndarray, flat: np.ndarray) -> np.ndarray:
    """diff / se, ±inf where ``flat`` (no spread) and diff is not 0; flat resamples on the
    estimate itself are left out (no direction to count them in)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.where(flat, np.sign(diff) * np.inf, diff / np.where(flat, 1.0, se))
    return t[~(flat & (diff == 0)) & ~np.isnan(t)]


def _gradient(aggregate, totals: np.ndarray, rel: float = 1e-6) -> np.ndarray:
    """d aggregate / d totals for each row of ``totals`` (b, k), by central differences (one-sided
    where a non-negative total would go below 0), one column at a time."""
    grad = np.empty_like(totals)
    for j in range(totals.shape[1]):
        x = totals[:, j]
        h = rel * np.maximum(np.abs(x), 1.0)
        down = np.where((x >= 0) & (x - h < 0), x, x - h)
        up_t, down_t = totals.copy(), totals.copy()
        up_t[:, j], down_t[:, j] = x + h, down
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            grad[:, j] = (np.asarray(aggregate(up_t), dtype=float) - np.asarray(aggregate(down_t), dtype=float)) \
                / (x + h - down)
    return grad


def _delta_se(aggregate, s: np.ndarray, counts: np.ndarray, totals: np.ndarray) -> np.ndarray:
    """Delta-method (infinitesimal-jackknife) standard error of ``aggregate(totals)`` for each
    resample: sqrt(sum_i c_i (g . (s_i - totals / n))^2), g the gradient at the resample's totals
    and c_i how often example i was drawn. For a mean it is sd / sqrt(n) (ddof 0); for corpus
    BLEU it came 3% under the exact jackknife at n = 30 and 1% from n = 80 on."""
    return _influence_se(_gradient(aggregate, totals), s, counts, totals)


def _influence_se(g: np.ndarray, s: np.ndarray, counts: np.ndarray, totals: np.ndarray) -> np.ndarray:
    """:func:`_delta_se` from the gradient ``g`` (one row per resample)."""
    n = s.shape[0]
    with np.errstate(invalid="ignore", over="ignore"):  # a ratio over a zero baseline: inf, left out
        centred = g @ s.T - (g * totals).sum(axis=1, keepdims=True) / n
        return np.sqrt(np.maximum(np.einsum("bn,bn,bn->b", counts, centred, centred), 0.0))


# The share of the nominal one-sided error (2.5% for 95%) the approximate intervals aim at:
# the bootstrap-t's error is 2.5% only up to O(1/n) terms — a 1-5 rating mean at n = 300 and 1000
# passed at the truth 2.3-2.4% of the time at the full level even with 20,000 count resamples
# (16,000 replications each, se 0.12%), 2.7-2.8% with 2,000 index resamples — which leaves no
# room for a skewed population or the fixed-seed bias of a 2,000-resample bootstrap (below); at
# 80% those cells measure 1.9-2.2%. Exact intervals (Clopper–Pearson, the paired score
# intervals) need no margin.
APPROX_SHARE = 0.8


def expanded_alpha(n: int, confidence: float = 0.95) -> float:
    """The one-sided level of an approximate (bootstrap) interval: ``APPROX_SHARE`` of the
    nominal one, made as wide as sqrt(n / (n-1)) times Student's t on n - 1 df (Hesterberg's
    small-sample expansion of a bootstrap interval): 0.0144 at n = 30, 0.0178 at 80, 0.0194 at
    300 and 0.0198 at 1000 for 95%."""
    return expanded_alpha_df(n - 1, confidence)


def expanded_alpha_df(df: float, confidence: float = 0.95) -> float:
    """:func:`expanded_alpha` for a standard error whose estimate has ``df`` degrees of freedom
    (``expanded_alpha(n) == expanded_alpha_df(n - 1)``)."""
    from scipy.stats import norm, t as student

    alpha = APPROX_SHARE * (1 - confidence) / 2
    if not df >= 2 or not math.isfinite(df):
        return alpha
    return float(norm.sf(student.ppf(1 - alpha, df) * math.sqrt((df + 1) / df)))


def studentized_aggregate(result, confidence: float = 0.95, n_resamples: int = 2000, seed: int = 0) -> Interval:
    """Bootstrap-t for a corpus-level aggregate (BLEU, chrF, F1) of per-example statistics: each
    resample's t = (value* - value) / se*, se the delta-method standard error from the
    aggregate's numerical gradient (the same formula on the sample and on every resample), with
    the quantile levels expanded for small n (:func:`expanded_alpha`). Resamples whose value or
    se is not finite, or whose se is 0, are left out."""
    s = np.asarray(result.stats, dtype=float)
    found = _bootstrap_t(s, result.aggregate, confidence, n_resamples, seed)
    if found is None:
        return _no_spread(result, s.shape[0], confidence)
    return Interval(found[1], found[2], STUDENTIZED_DELTA)


def _bootstrap_t(s: np.ndarray, agg, confidence: float, n_resamples: int, seed: int
                 ) -> tuple[float, float, float] | None:
    """(value, lo, hi) of the delta-method bootstrap-t of ``agg`` over the rows of ``s`` (see
    :func:`studentized_aggregate`); None when no resample varies or the value or its se is not
    finite."""
    return _bootstrap_t_many(s, lambda t: [(np.asarray(agg(t), dtype=float), _gradient(agg, t))],
                             confidence, n_resamples, seed)[0]


def _bootstrap_t_many(s: np.ndarray, parts, confidence: float, n_resamples: int, seed: int
                      ) -> list[tuple[float, float, float] | None]:
    """:func:`_bootstrap_t` of several functionals of the same totals on the same resamples:
    ``parts(totals)`` gives each one's (values, gradient) for a block of totals."""
    n = s.shape[0]
    total = s.sum(axis=0, keepdims=True)
    at_sample = parts(total)
    dists: list[list[np.ndarray]] = [[] for _ in at_sample]
    ts: list[list[np.ndarray]] = [[] for _ in at_sample]
    for idx in stats.resample_indices(n, n_resamples, seed):
        counts = stats.counts_of(idx, n)
        totals = counts @ s
        for k, (values, g) in enumerate(parts(totals)):
            theta = float(at_sample[k][0].ravel()[0])
            se_b = _influence_se(g, s, counts, totals)
            dists[k].append(values)
            # An infinite value (a ratio over a zero baseline) or one without spread counts as t = ±inf:
            # leaving it out would cut the tail it lies in.
            ok = np.isfinite(values) & np.isfinite(se_b)
            with np.errstate(invalid="ignore"):  # an infinite sample value: inf - inf, left out below
                tails = np.sign(values[np.isinf(values)] - theta) * np.inf
            ts[k].append(np.concatenate([_t_or_inf(values[ok] - theta, se_b[ok], ~(se_b[ok] > 0)),
                                         tails[~np.isnan(tails)]]))
    out: list[tuple[float, float, float] | None] = []
    for k, (value, g) in enumerate(at_sample):
        theta = float(value.ravel()[0])
        dist = np.concatenate(dists[k])
        finite = dist[np.isfinite(dist)]
        t = np.concatenate(ts[k])
        se = float(_influence_se(g, s, np.ones((1, n)), total)[0])
        if finite.size == 0 or finite.min() == finite.max() or t.size == 0 or not (
                math.isfinite(theta) and math.isfinite(se) and se > 0):
            out.append(None)
            continue
        q_lo, q_hi = _t_quantiles(t, expanded_alpha(n, confidence))
        out.append((theta, float(theta - q_hi * se), float(theta - q_lo * se)))
    return out


def ppi_mean(y, yhat, yhat_unlabeled, confidence: float = 0.95) -> tuple[float, float, float, float]:
    """PPI++ for a mean: (estimate, lo, hi, λ). ``y`` are the human values and ``yhat`` the
    judge's on the same outputs; ``yhat_unlabeled`` the judge's on the outputs no human rated.
    λ minimises the estimate's variance (clipped to [0, 1]; 0 is the humans alone, 1 plain
    PPI), computed from the λ = 1 estimate exactly as ``ppi_py.ppi_mean_ci`` does; the
    interval is the normal one around the λ estimate."""
    y, yhat, yu = (np.asarray(a, dtype=float).ravel() for a in (y, yhat, yhat_unlabeled))
    n, big_n = y.size, yu.size
    theta1 = yu.mean() + (y - yhat).mean()
    g, gh = y - theta1, yhat - theta1
    cov = 2 * np.mean((g - g.mean()) * (gh - gh.mean()))
    var = float(np.var(np.concatenate([gh, yu - theta1]), ddof=1))
    lam = float(np.clip(cov / (2 * (1 + n / big_n) * var), 0.0, 1.0)) if var > 0 else 0.0
    est = float((lam * yu).mean() + (y - lam * yhat).mean())
    se = math.sqrt(float(np.std(lam * yu)) ** 2 / big_n + float(np.std(y - lam * yhat)) ** 2 / n)
    z = stats._z(confidence)
    return est, est - z * se, est + z * se, lam


def ppi_interval(result, confidence: float = 0.95, n_resamples: int = 2000, seed: int = 0) -> Interval:
    """The PPI++ interval of a judge result whose ``extra["human_labels"]`` maps example ids to
    the human value of the same output; judge-failed examples are left out of both samples."""
    labels = result.extra["human_labels"]
    ids = list(result.extra.get("ids") or range(result.n))
    used = result.stats[:, 1] == 1
    judged = {i: float(result.stats[k, 0]) for k, i in enumerate(ids) if used[k]}
    rated = [i for i in judged if i in labels]
    rest = [i for i in judged if i not in labels]
    if len(rated) < MIN_N:
        return Interval(NAN, NAN, TOO_FEW, f"{len(rated)} human-rated outputs; PPI needs at least {MIN_N}")
    y = np.array([labels[i] for i in rated])
    if not rest:  # every output was rated: the humans alone
        found = studentized(y, confidence, n_resamples, seed, result.extra.get("bounds"))
        return Interval(found.lo, found.hi, f"{found.method} of the human ratings (every output rated)",
                        found.note, float(y.mean()))
    yhat, yu = np.array([judged[i] for i in rated]), np.array([judged[i] for i in rest])
    est, n_lo, n_hi, lam = ppi_mean(y, yhat, yu, confidence)
    if not n_hi > n_lo:
        return Interval(NAN, NAN, NO_SPREAD, "neither the judge nor the humans vary", est)
    lo, hi = ppi_bootstrap_t(y, yhat, yu, confidence, n_resamples, seed)
    if not hi > lo:
        return Interval(NAN, NAN, NO_SPREAD, "no resample of the ratings varies", est)
    return Interval(lo, hi, f"{PPI}: {len(rated)} rated of {len(judged)}, lambda {lam:.2f}; {PPI_BOOTSTRAP} "
                            f"({PPI_PYTHON} [{n_lo:.4g}, {n_hi:.4g}], not used: {PPI_PYTHON_WHY})", "", est)


def _ppi_from_moments(n: int, big_n: int, sy, syh, syy, shh, syh2, su, suu):
    """PPI++'s (estimate, se) from the sums of y, yhat, y^2, yhat^2, y*yhat (rated) and of yu,
    yu^2 (unrated), λ tuned as :func:`ppi_mean` tunes it: cov(y, yhat) over
    (1 + n/N) var(yhat and yu pooled, ddof 1), clipped to [0, 1]. Vectorised over resamples."""
    my, mh, mu = sy / n, syh / n, su / big_n
    cov = syh2 / n - my * mh
    var_y, var_h, var_u = syy / n - my ** 2, shh / n - mh ** 2, suu / big_n - mu ** 2
    tot = n + big_n
    pooled = (shh + suu - (syh + su) ** 2 / tot) / (tot - 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        lam = np.where(pooled > 0, np.clip(cov / ((1 + n / big_n) * pooled), 0.0, 1.0), 0.0)
    est = lam * mu + my - lam * mh
    var = lam ** 2 * np.maximum(var_u, 0) / big_n + np.maximum(var_y - 2 * lam * cov + lam ** 2 * var_h, 0) / n
    return est, np.sqrt(var)


def ppi_bootstrap_t(y, yhat, yhat_unlabeled, confidence: float = 0.95, n_resamples: int = 2000,
                    seed: int = 0) -> tuple[float, float]:
    """Studentised bootstrap of the PPI++ estimate: the rated outputs (human and judge value
    together) and the unrated ones are resampled separately, λ is re-tuned in every resample, and
    t* = (estimate* - estimate) / se* gives the quantiles around ``ppi_mean``'s estimate and se,
    at the approximate intervals' level expanded for the degrees of freedom of that se
    (:func:`_ppi_df`: about the rated count less one when the judge explains little, as for the
    human ratings alone — without it, 20 of 30 outputs rated by humans whose scores the judge
    saturates passed at the truth 3.2% of the time; expanding for the rated count whatever the
    judge does covered 98.4% with 20 of 80 rated). Re-tuning λ carries its own noise into the interval; the
    bootstrap-t carries the skew of the human-minus-judge residuals, which a normal interval on
    20 rated outputs does not. Scores on a few levels (1-5 scales) are resampled as counts of the
    (human, judge) pairs and of the judge's levels, at least ``DISCRETE_RESAMPLES`` times."""
    y, yh, yu = (np.asarray(v, dtype=float).ravel() for v in (y, yhat, yhat_unlabeled))
    # The estimate shifts with the data and λ, se and t do not: centre to keep the moments exact.
    shift = float(y.mean())
    y, yh, yu = y - shift, yh - shift, yu - shift
    n, big_n = y.size, yu.size
    est, se = _ppi_from_moments(n, big_n, y.sum(), yh.sum(), (y * y).sum(), (yh * yh).sum(), (y * yh).sum(),
                                yu.sum(), (yu * yu).sum())
    est, se = float(est), float(se)
    ts = []
    for sums in _ppi_resample_sums(y, yh, yu, n_resamples, seed):
        e, s = _ppi_from_moments(n, big_n, *sums)
        ts.append(_t_or_inf(e - est, s, ~(s > 1e-12 * max(1.0, abs(est)))))
    t = np.concatenate(ts)
    if t.size == 0 or not se > 0:
        return (NAN, NAN)
    q_lo, q_hi = _t_quantiles(t, expanded_alpha_df(_ppi_df(y, yh, yu), confidence))
    return (shift + est - float(q_hi) * se, shift + est - float(q_lo) * se)


def _ppi_df(y: np.ndarray, yh: np.ndarray, yu: np.ndarray) -> float:
    """Welch–Satterthwaite degrees of freedom of PPI++'s standard error: its two parts, the
    unrated outputs' (N - 1 df) and the rated residuals' (n - 1 df), weighted by their share of
    the variance at the tuned λ. With a judge that explains little (λ near 0) it is about n - 1,
    as for the human ratings alone; with one that explains much, nearer N - 1."""
    n, big_n = y.size, yu.size
    _, _, _, lam = ppi_mean(y, yh, yu)
    a = lam ** 2 * float(np.var(yu)) / big_n
    b = float(np.var(y - lam * yh)) / n
    den = (a * a / max(big_n - 1, 1) if big_n > 1 else 0.0) + (b * b / max(n - 1, 1))
    return (a + b) ** 2 / den if den > 0 else float(n - 1)


def _ppi_resample_sums(y: np.ndarray, yh: np.ndarray, yu: np.ndarray, n_resamples: int, seed: int):
    """Blocks of the resamples' sums (y, yhat, y^2, yhat^2, y*yhat over the rated; yu, yu^2 over
    the unrated), the two samples resampled separately."""
    n, big_n = y.size, yu.size
    pairs, pair_idx = np.unique(np.column_stack([y, yh]), axis=0, return_inverse=True)
    levels, level_idx = np.unique(yu, return_inverse=True)
    if len(pairs) <= min(DISCRETE_LEVELS, n // 2) and len(levels) <= min(DISCRETE_LEVELS, big_n // 2):
        size = max(n_resamples, DISCRETE_RESAMPLES)
        c = _multinomial_counts(n, np.bincount(pair_idx.ravel(), minlength=len(pairs)), size, seed)
        cu = _multinomial_counts(big_n, np.bincount(level_idx.ravel(), minlength=len(levels)), size, seed + 1)
        py, ph = pairs[:, 0], pairs[:, 1]
        yield c @ py, c @ ph, c @ (py * py), c @ (ph * ph), c @ (py * ph), cu @ levels, cu @ (levels * levels)
        return
    rng = np.random.default_rng(seed)
    block = max(1, stats.BLOCK_CELLS // max(n + big_n, 1))
    done = 0
    while done < n_resamples:
        b = min(block, n_resamples - done)
        i, j = rng.integers(0, n, size=(b, n)), rng.integers(0, big_n, size=(b, big_n))
        yb, hb, ub = y[i], yh[i], yu[j]
        yield yb.sum(1), hb.sum(1), (yb * yb).sum(1), (hb * hb).sum(1), (yb * hb).sum(1), ub.sum(1), (ub * ub).sum(1)
        done += b


def rater_item_half_width(var_r, var_i, raters: int, items: int, confidence: float = 0.95):
    """Half the width of the panel's interval (vectorised over ``var_r``, ``var_i``): MOVER over
    its two parts, each with its own Student's t at ``APPROX_SHARE`` of the one-sided error —
    sqrt((t[R-1] se_raters)^2 + (t[I-1] se_items)^2), se_raters^2 = var(rater means) / R,
    se_items^2 = var(item means) / I (the residual counted in both, so it errs wide). Measured
    (bench/README.md, 3 raters of leniency sd 0.6): a single t on R - 1 df over the summed variance
    covered 97.5–97.9% at 80 items and passed at the truth 2.4–2.8% of the time at 1,000 (the
    rounded, clipped ratings' rater means are not normal); at the full level MOVER passed 3.0%."""
    from scipy.stats import t as student

    a = APPROX_SHARE * (1 - confidence) / 2
    t_r, t_i = float(student.ppf(1 - a, raters - 1)), float(student.ppf(1 - a, items - 1))
    return np.sqrt(t_r ** 2 * np.asarray(var_r) / raters + t_i ** 2 * np.asarray(var_i) / items)


def rater_item_interval(ratings, confidence: float = 0.95, bounds=None) -> Interval:
    """Two-way random-effects interval for a panel's mean from ``(item, rater, value)`` rows:
    the estimate is the mean over items of each item's mean over its raters, its half-width
    :func:`rater_item_half_width` (a t on R − 1 df for the raters' part, on I − 1 for the
    items'); from ``MIN_N`` rated items and two raters on."""
    cells: dict[tuple[str, str], list[float]] = {}
    for item, rater, value in ratings:
        if value is not None and math.isfinite(float(value)):
            cells.setdefault((str(item), str(rater)), []).append(float(value))
    items = sorted({i for i, _ in cells})
    raters = sorted({r for _, r in cells})
    if not cells:
        return Interval(NAN, NAN, TOO_FEW, "no ratings")
    mat = np.full((len(items), len(raters)), np.nan)
    ii, rr = {x: k for k, x in enumerate(items)}, {x: k for k, x in enumerate(raters)}
    for (item, rater), vals in cells.items():
        mat[ii[item], rr[rater]] = sum(vals) / len(vals)
    item_means = np.nanmean(mat, axis=1)
    est = float(item_means.mean())
    if len(items) < MIN_N:
        return Interval(NAN, NAN, TOO_FEW, f"{len(items)} rated examples; at least {MIN_N} are needed", est)
    if len(raters) < 2:
        return Interval(NAN, NAN, RANDOM_EFFECTS, ONE_RATER, est)
    rater_means = np.nanmean(mat, axis=0)
    var_r, var_i = float(np.var(rater_means, ddof=1)), float(np.var(item_means, ddof=1))
    if not var_r + var_i > 0:  # every rater gave every item the same score: nothing tells a lenient panel apart
        return Interval(NAN, NAN, NO_SPREAD, "every rater gave every item the same score: how lenient the panel "
                                             "is cannot be told from how good the outputs are", est)
    half = float(rater_item_half_width(var_r, var_i, len(raters), len(items), confidence))
    lo, hi = est - half, est + half
    if bounds is not None and len(bounds) == 2:
        lo, hi = max(lo, float(bounds[0])), min(hi, float(bounds[1]))
        if lo > hi:  # values off the scale (a 1-5 score among 0-1 win rates): nothing to decide on
            return Interval(NAN, NAN, TOO_FEW, f"ratings outside the scale {bounds[0]:g}-{bounds[1]:g}", est)
    return Interval(lo, hi, f"{RANDOM_EFFECTS}, {len(raters)} raters x {len(items)} items", "", est)


def n_used(result) -> int:
    """How many examples a result's value rests on (rows without a value, such as failed
    judgments, are not counted)."""
    return _used(stats._as_result(result))


def _used(result) -> int:
    s = result.stats
    if s.ndim == 2 and s.shape[1] == 2 and np.isin(s[:, 1], (0.0, 1.0)).all():
        return int(s[:, 1].sum())  # a mean-type result: rows with a value
    return result.n


def _no_spread(result, n: int, confidence: float) -> Interval:
    return _no_spread_mean(result.recompute(), n, confidence, result.extra.get("bounds"))


def _no_spread_mean(value: float, n: int, confidence: float, bounds) -> Interval:
    """Every value (or resample) the same: on known bounds the Clopper–Pearson interval of the
    value's position within them, else no interval. Exact where it matters: n scores all at the
    top of [a, b] have probability at most ((mean - a) / (b - a))^n (a score at b is at most that
    likely), and the exact lower bound at k = n is where that equals the one-sided error."""
    if bounds is not None and len(bounds) == 2 and bounds[1] > bounds[0]:
        lo_s, hi_s = float(bounds[0]), float(bounds[1])
        pos = min(max((value - lo_s) / (hi_s - lo_s), 0.0), 1.0)
        lo, hi = clopper_pearson(round(pos * n), n, confidence)
        return Interval(lo_s + lo * (hi_s - lo_s), lo_s + hi * (hi_s - lo_s), SCALED_EXACT)
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
    if cb is not None and bb is not None and cb[0].shape == bb[0].shape and (cb[0] & bb[0]).any():
        used = cb[0] & bb[0]  # the examples both have a value for
        a, b = cb[1][used].astype(bool), bb[1][used].astype(bool)
        n = int(used.sum())
        counts = (int(np.sum(a & b)), int(np.sum(a & ~b)), int(np.sum(~a & b)), int(np.sum(~a & ~b)))
        k1, k2 = int(a.sum()), int(b.sum())
        ratio = k1 / k2 if k2 else (1.0 if k1 == 0 else math.inf)
        return PairedInterval(k1 / n, k2 / n, (k1 - k2) / n, paired_score(*counts, confidence), ratio,
                              paired_ratio(*counts, confidence) if k2 else (NAN, NAN), n, PAIRED_SCORE,
                              PAIRED_RATIO_SCORE)
    pairs = _mean_pairs(cand, base)
    if pairs is not None:
        return _paired_means(*pairs, confidence, n_resamples, seed)
    return _paired_aggregates(cand, base, confidence, n_resamples, seed)


def _mean_pairs(cand, base) -> tuple[np.ndarray, np.ndarray] | None:
    """The candidate's and the baseline's values on the examples both have one (a judgment that
    failed on either side leaves the pair out), when both are means of per-example values."""
    from harness.metrics import mean_aggregate

    def ok(r) -> bool:
        s = r.stats
        return r.aggregate is mean_aggregate and s.ndim == 2 and s.shape[1] == 2 and np.isin(s[:, 1], (0, 1)).all()

    if not (ok(cand) and ok(base)) or cand.stats.shape[0] != base.stats.shape[0]:
        return None
    both = (cand.stats[:, 1] == 1) & (base.stats[:, 1] == 1)
    return cand.stats[both, 0], base.stats[both, 0]


def _ratio_of_sums(totals: np.ndarray) -> np.ndarray:
    """mean(candidate) / mean(baseline) from the column sums (candidate, baseline)."""
    t = np.asarray(totals, dtype=float)
    return stats._ratio(t[..., 0], t[..., 1])


def _paired_means(c: np.ndarray, b: np.ndarray, confidence: float, n_resamples: int, seed: int) -> PairedInterval:
    """Means of per-example values on the same examples: the difference by the studentised
    bootstrap of the per-example differences, the ratio by the delta-method bootstrap-t of
    mean(c) / mean(b), both resampling whole pairs (the pairing is what makes it narrow)."""
    n = int(c.size)
    cv, bv = (float(c.mean()), float(b.mean())) if n else (NAN, NAN)
    ratio = float(stats._ratio(cv, bv))
    if n < MIN_N:  # decided before any resampling: no interval either way
        return PairedInterval(cv, bv, cv - bv, (NAN, NAN), ratio, (NAN, NAN), n, TOO_FEW, TOO_FEW,
                              f"{n} paired examples; a bootstrap needs at least {MIN_N}")
    diff = studentized(c - b, confidence, n_resamples, seed)
    if not math.isfinite(diff.lo):
        return PairedInterval(cv, bv, cv - bv, (NAN, NAN), ratio, (NAN, NAN), n, NO_SPREAD, NO_SPREAD,
                              "every example gives the same difference")
    found = _bootstrap_t(np.column_stack([c, b]), _ratio_of_sums, confidence, n_resamples, seed)
    ratio_ci = (NAN, NAN) if found is None or bv == 0 else (found[1], found[2])
    return PairedInterval(cv, bv, cv - bv, diff.ci, ratio, ratio_ci, n, PAIRED_STUDENTIZED, PAIRED_RATIO_DELTA)


def _paired_aggregates(cand, base, confidence: float, n_resamples: int, seed: int) -> PairedInterval:
    """Corpus aggregates (BLEU, chrF, F1) on the same examples: the difference and the ratio of
    the two aggregates by the delta-method bootstrap-t over both candidates' statistics side by
    side, each resample drawing whole examples (so the pairing is kept)."""
    n = min(cand.n, base.n)
    cv, bv = cand.recompute(), base.recompute()
    ratio = float(stats._ratio(cv, bv))
    if n < MIN_N:
        return PairedInterval(cv, bv, cv - bv, (NAN, NAN), ratio, (NAN, NAN), n,
                              TOO_FEW, TOO_FEW, f"{n} paired examples; a bootstrap needs at least {MIN_N}")
    if cand.stats.shape[0] != base.stats.shape[0]:
        raise ValueError(f"paired results must cover the same examples; sizes {cand.n} and {base.n}")
    s = np.hstack([np.asarray(cand.stats, dtype=float), np.asarray(base.stats, dtype=float)])
    k = cand.stats.shape[1]

    def parts(totals: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
        """(difference, its gradient) and (ratio, its gradient) from each side's own gradient."""
        tc, tb = totals[:, :k], totals[:, k:]
        vc = np.asarray(cand.aggregate(tc), dtype=float)
        vb = np.asarray(base.aggregate(tb), dtype=float)
        gc, gb = _gradient(cand.aggregate, tc), _gradient(base.aggregate, tb)
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            ratio_grad = np.hstack([gc / vb[:, None], -gb * (vc / vb ** 2)[:, None]])
        return [(vc - vb, np.hstack([gc, -gb])), (stats._ratio(vc, vb), ratio_grad)]

    diff, found = _bootstrap_t_many(s, parts, confidence, n_resamples, seed)
    if diff is None:
        return PairedInterval(cv, bv, cv - bv, (NAN, NAN), ratio, (NAN, NAN), n, NO_SPREAD, NO_SPREAD,
                              "every resample gives the same difference")
    ratio_ci = (NAN, NAN) if found is None or bv == 0 else (found[1], found[2])
    return PairedInterval(cv, bv, cv - bv, (diff[1], diff[2]), ratio, ratio_ci, n, PAIRED_DELTA, PAIRED_DELTA)


__all__ = ["BCA", "CLOPPER_PEARSON", "MIN_N", "MOVER_R", "NEWCOMBE", "ONE_RATER", "PAIRED_DELTA", "PAIRED_RATIO_DELTA",
           "PAIRED_RATIO_SCORE", "PAIRED_SCORE", "PAIRED_STUDENTIZED", "PPI", "RANDOM_EFFECTS", "STUDENTIZED",
           "Interval", "PairedInterval", "clopper_pearson", "interval", "mover_ratio", "newcombe_paired", "paired",
           "n_used", "paired_ratio", "paired_score", "ppi_interval", "ppi_mean", "rater_item_interval", "studentized"]
