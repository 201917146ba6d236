"""Verdict validity: coverage of the 95% interval and false-pass rate at the threshold, per
criterion type, against the exact answer (enumeration) or the known truth (simulation).

Each criterion type is one row, over the grid of n where the type makes sense
(n ∈ {30, 80, 300, 1000}; every cell lists its n, its replications, its rates and their Monte
Carlo standard errors):

* ``validity_proportion`` — ``at_least``/``at_most`` on a proportion (Clopper–Pearson):
  exact binomial enumeration over n × truth ∈ {0.01, 0.05, 0.5, 0.9, 0.99};
* ``validity_paired_diff`` / ``validity_paired_ratio`` — ``improve_by``/``reduce_by`` on a paired
  difference (SCAS paired score interval) and a paired ratio (SCAS paired ratio score interval)
  of proportions, correlated pairs (ρ = 0.6). Both exact: every 2x2 table weighted by its
  multinomial probability (all tables at n ≤ 80; the tables within 7 sd, all but 1e-9 of the
  mass, above), with the intervals they replaced (Newcombe, MOVER-R) beside them;
* ``validity_rating_mean`` — a 1–5 rating mean at three truths (floor 1.62, middle 3.25,
  ceiling 4.28; studentised bootstrap);
* ``validity_bleu`` / ``validity_rouge`` — corpus BLEU (studentised bootstrap with a
  delta-method SE on sacrebleu's sufficient statistics) and mean ROUGE-L (studentised), on two
  populations of synthetic outputs (quality Beta(2, 2) and Beta(5, 2)) scored once by the
  registered metrics (5,000 examples each); each replication draws n examples from one with
  replacement, so the truth is the population's aggregate;
* ``validity_paired_rating`` / ``validity_paired_rouge`` / ``validity_paired_bleu`` —
  ``improve_by``/``reduce_by`` on metrics that are not 0/1: a candidate and a baseline scored on
  the same examples (ratings: a discretised bivariate normal, ρ = 0.6; text: two systems of
  correlated quality over the same references), at the true difference and the true ratio
  (studentised bootstrap of the per-example differences; delta-method bootstrap-t of the ratio
  and of corpus BLEU's difference and ratio, whole pairs resampled);
* ``validity_judge_ppi`` — a 1–5 judge biased by +1 (clipped, noisy) scoring N outputs of
  which humans rate m, at two human truths (3.25 and 4.11): the PPI++ estimate with a
  bootstrap-t interval (λ re-tuned in each resample). Its n is m, the human-rated count (the
  sample the truth is measured on, and what the interval's error follows): m ∈ {30, 80, 300,
  1000} with N = 5m, and two cells with the fewest ratings PPI takes, m = 20 of N = 30 and of
  N = 80 (n = 20: coverage shown, not held to the band, as for every type at n = 30; false pass
  held). PPI++'s normal interval (``ppi_mean``, = ``ppi_py.ppi_mean_ci``) on the same data is
  what it replaced; the judge alone and the m human ratings alone are contrasts;
* ``validity_panel`` — a human panel of 3 raters whose leniency varies (sd 0.6) over
  30/80/300/1000 items (two-way random effects); the truth is the mean over the rater
  population; the item-only interval (raters ignored) is the contrast;
* ``validity_family`` — 8 candidates × 3 criteria, none truly meeting the goal (each exactly
  at its threshold), decided with Holm: how often "some candidate meets the goal";
* ``validity_power`` — the truth 0.05 above a 0.9 threshold at n = 300.

"False pass at the threshold": the criterion's threshold is set to the truth, so any pass is
false; ``at_least`` passes when the interval's low bound ≥ the truth, ``at_most`` when its high
bound ≤ the truth (the verdict's own rule, ``harness.verdict._status``; the first replication
of every simulated cell is also decided through ``judge_criterion`` and must agree). Intervals
use what verdicts use: 95% two-sided, 2,000 resamples (10,000 for scores on a few levels),
seed 0 — the same resampling seed in every replication, as in every verdict, so the Monte
Carlo error of the bootstrap quantiles is part of what is measured.

Targets: coverage 93–97% (≥ 95% for Clopper–Pearson, exact by construction) in every cell with
n ≥ 80, false pass ≤ 2.5% in every cell and on either side, family-wise ≤ 5%, power ≥ 80%. A
rate p from R replications has a Monte Carlo standard error sqrt(p (1 - p) / R) (0.25% for 2.5%
at R = 4000, 0.5% at R = 1000), printed beside it (``*_se``); ``false_pass_max_ci`` is the worst
cell's exact 95% interval over its replications; ``cells_fp_over_target_beyond_noise`` counts
the cells whose interval lies wholly above 2.5%.

    python bench/bench_validity.py                 # all (2,350 s on 2 cores, 2026-12-06)
    python bench/bench_validity.py --only rating   # the rows whose bench name contains "rating"
    python bench/bench_validity.py --scale 0.25    # a quarter of the replications (a quick look)

The cells run in ``--workers`` processes (default: 2, or fewer cores); each cell has its own
seed, so the figures do not depend on the order they finish in. The total time goes to stderr.
"""
from __future__ import annotations

import math
import os
import sys
import time
from functools import lru_cache, partial
from pathlib import Path

import numpy as np
from scipy.stats import binom, norm, t as student

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from harness import intervals, multiplicity  # noqa: E402
from harness.metrics import MetricResult, compute_metric, from_values  # noqa: E402
from harness.verdict import PASS, judge_criterion, judge_relative, meets_goal  # noqa: E402

NS = (30, 80, 300, 1000)
TRUTHS = (0.01, 0.05, 0.5, 0.9, 0.99)
N_RESAMPLES = 2000        # what a verdict uses
FP_TARGET = 0.025
COVERAGE_BAND = (0.93, 0.97)
CONSERVATIVE_MIN = 0.95
# Every replication count below is multiplied by this (``--scale``; 1 is the full bench).
SCALE = float(os.environ.get("BENCH_VALIDITY_SCALE", "1"))


def reps_of(r: int) -> int:
    return max(50, int(round(r * SCALE)))


def _se(p: float, r: int) -> float:
    """Monte Carlo standard error of a rate ``p`` over ``r`` replications."""
    return math.sqrt(max(p * (1 - p), 0.0) / r) if r else float("nan")


# ---------------------------------------------------------------- bookkeeping

class Cell:
    """Counts of one (criterion type, n, setting) cell."""

    def __init__(self, **key):
        self.key, self.reps, self.cover, self.fp_least, self.fp_most = key, 0, 0, 0, 0
        self.widths: list[float] = []

    def add(self, lo: float, hi: float, truth: float) -> None:
        self.reps += 1
        self.cover += bool(lo <= truth <= hi)
        self.fp_least += bool(lo >= truth)
        self.fp_most += bool(hi <= truth)
        if math.isfinite(hi - lo):
            self.widths.append(hi - lo)

    @property
    def fp(self) -> int:
        return max(self.fp_least, self.fp_most)

    def over_beyond_noise(self) -> bool:
        """The false pass exceeds the target by more than Monte Carlo noise: its exact 95%
        interval over the replications lies above it."""
        return intervals.clopper_pearson(self.fp, self.reps)[0] > FP_TARGET

    def row(self) -> dict:
        r = self.reps
        fl, fm, cov = self.fp_least / r, self.fp_most / r, self.cover / r
        return {**self.key, "reps": r, "coverage": round(cov, 4), "coverage_se": round(_se(cov, r), 4),
                "false_pass_at_least": round(fl, 4), "false_pass_at_most": round(fm, 4),
                "false_pass_se": round(_se(max(fl, fm), r), 4),
                "mean_width": round(float(np.mean(self.widths)), 4) if self.widths else None}


class ExactCell(Cell):
    """A cell whose rates are exact: every outcome weighted by its probability (reps = 1)."""

    exact = True

    def __init__(self, **key):
        super().__init__(**key)
        self._width = 0.0

    def add_exact(self, lo: np.ndarray, hi: np.ndarray, truth: float, prob: np.ndarray) -> None:
        finite = np.isfinite(hi - lo)
        self.reps = 1
        self.cover = float(prob[(lo <= truth) & (truth <= hi)].sum())
        self.fp_least = float(prob[lo >= truth].sum())
        self.fp_most = float(prob[hi <= truth].sum())
        self._width = float((prob[finite] * (hi - lo)[finite]).sum() / max(prob[finite].sum(), 1e-300))

    def set_rates(self, cover: float, fp_least: float, fp_most: float, width: float) -> None:
        self.reps, self.cover, self.fp_least, self.fp_most, self._width = 1, cover, fp_least, fp_most, width

    def over_beyond_noise(self) -> bool:
        return self.fp > FP_TARGET  # no Monte Carlo noise

    def row(self) -> dict:
        return {**self.key, "reps": "exact", "coverage": round(self.cover, 4),
                "false_pass_at_least": round(self.fp_least, 4), "false_pass_at_most": round(self.fp_most, 4),
                "mean_width": round(self._width, 4)}


def _check_verdict(result, truth: float, iv) -> None:
    """The bench's pass rule must be the verdict's: decide one replication both ways."""
    v = judge_criterion("m", "at_least", truth, result, n_resamples=N_RESAMPLES)
    assert (v.status == PASS) == bool(iv.lo >= truth), (v.status, iv, truth)


def _summary(bench: str, cells: list[Cell], method: str, conservative: bool = False, cov_min_n: int = 80,
             n_key: str = "n", **more) -> dict:
    """One row: worst false pass (either side, every cell) as the ratio, with its Monte Carlo
    se; coverage over the cells with at least ``cov_min_n``; whether both targets are met."""
    rows = [c.row() for c in cells]
    cov = [r["coverage"] for r in rows if r[n_key] >= cov_min_n]
    worst = max(cells, key=lambda c: c.fp / c.reps)
    k = worst.fp
    fp = k / worst.reps
    cov_min, cov_max = min(cov), max(cov)
    if conservative:
        cov_ok = cov_min >= CONSERVATIVE_MIN
    else:
        cov_ok = COVERAGE_BAND[0] <= cov_min and cov_max <= COVERAGE_BAND[1]
    exact = getattr(worst, "exact", False)
    lo, hi = (fp, fp) if exact else intervals.clopper_pearson(k, worst.reps)
    return {"bench": bench, "ratio": round(fp, 4), "target": FP_TARGET, "higher_is_better": False,
            "method": method, "false_pass_max": round(fp, 4),
            "false_pass_max_se": 0.0 if exact else round(_se(fp, worst.reps), 4),
            "false_pass_max_cell": {**worst.key, "reps": worst.row()["reps"]},
            "false_pass_max_ci": [round(lo, 4), round(hi, 4)],
            f"coverage_min_{n_key}{cov_min_n}": cov_min, f"coverage_max_{n_key}{cov_min_n}": cov_max,
            "coverage_target": f">= {CONSERVATIVE_MIN}" if conservative else f"{COVERAGE_BAND[0]}-{COVERAGE_BAND[1]}",
            "cells_fp_over_target": sum(c.fp / c.reps > FP_TARGET for c in cells),
            "cells_fp_over_target_beyond_noise": sum(c.over_beyond_noise() for c in cells),
            "cells_coverage_outside": sum(not (CONSERVATIVE_MIN <= r["coverage"] if conservative else
                                               COVERAGE_BAND[0] <= r["coverage"] <= COVERAGE_BAND[1])
                                          for r in rows if r[n_key] >= cov_min_n),
            "met": bool(cov_ok and fp <= FP_TARGET), "n_resamples": N_RESAMPLES, **more, "cells": rows}


# ---------------------------------------------------------------- proportions (exact)

def proportions() -> list[dict]:
    """Worst cell over NS × TRUTHS: exact coverage and exact false pass at the threshold."""
    worst_cov, worst_fp, worst_at = 1.0, 0.0, None
    for n in NS:
        ks = np.arange(n + 1)
        cis = np.array([intervals.clopper_pearson(int(k), n) for k in ks])
        for p in TRUTHS:
            pmf = binom.pmf(ks, n, p)
            cov = float(pmf[(cis[:, 0] <= p) & (cis[:, 1] >= p)].sum())
            fp_least = float(pmf[cis[:, 0] >= p].sum())   # at_least p passes
            fp_most = float(pmf[cis[:, 1] <= p].sum())    # at_most p passes
            if n >= 80:
                worst_cov = min(worst_cov, cov)
            if max(fp_least, fp_most) > worst_fp:
                worst_fp, worst_at = max(fp_least, fp_most), {"n": n, "truth": p}
    return [{"bench": "validity_proportion", "ratio": round(worst_fp, 4), "target": FP_TARGET,
             "higher_is_better": False, "method": intervals.CLOPPER_PEARSON, "false_pass_max": round(worst_fp, 4),
             "false_pass_max_cell": worst_at, "coverage_min_n80": round(worst_cov, 4),
             "coverage_target": f">= {CONSERVATIVE_MIN}",
             "met": bool(worst_cov >= CONSERVATIVE_MIN and worst_fp <= FP_TARGET),
             "exact": True, "grid": {"n": list(NS), "truth": list(TRUTHS)}}]


# ---------------------------------------------------------------- paired proportions (exact)

def _paired_sample(rng, n, p_base, delta, rho=0.6):
    """Correlated 0/1 pairs with exact marginals: one shared uniform with probability rho."""
    u = rng.random(n)
    v = np.where(rng.random(n) < rho, u, rng.random(n))
    return (v < p_base + delta).astype(float), (u < p_base).astype(float)


PAIRED_SETTINGS = ((0.5, 0.1), (0.3, 0.0), (0.8, 0.1))
PAIRED_FULL_NS = (30, 80)   # every 2x2 table; above, the tables within 7 sd (all but < 1e-9 of the mass)
PAIRED_RHO = 0.6
PAIRED_WIDTH_DRAWS = 4000   # tables drawn to estimate the mean width where the limits are not solved for all
PAIRED_REPLACED_REPS = 2000  # samples for the replaced intervals above the exact range


def paired_cells(p_base: float, delta: float, rho: float = PAIRED_RHO) -> tuple[float, float, float, float]:
    """P(both, only the candidate, only the baseline, neither) of :func:`_paired_sample`."""
    pc = p_base + delta
    both = rho * min(p_base, pc) + (1 - rho) * p_base * pc
    return (both, pc - both, p_base - both, 1 - pc - p_base + both)


def paired_tables(n: int) -> np.ndarray:
    """Every paired 2x2 table of n pairs: rows (both, only_a, only_b, neither)."""
    a, b, c = np.meshgrid(*(np.arange(n + 1),) * 3, indexing="ij")
    keep = a + b + c <= n
    a, b, c = a[keep], b[keep], c[keep]
    return np.stack([a, b, c, n - a - b - c], axis=1).astype(float)


def _window(m: int, p: float, k: float) -> tuple[int, int]:
    mu, sd = m * p, math.sqrt(m * p * (1 - p))
    return max(0, math.floor(mu - k * sd) - 1), min(m, math.ceil(mu + k * sd) + 1)


def paired_tables_near(n: int, cells, k: float = 7.0) -> np.ndarray:
    """The tables within k conditional sd of the expected counts (both; only_a given both; only_b
    given both and only_a): what the rest of the multinomial's mass is, is reported."""
    p11, p12, p21, p22 = cells
    rows = []
    a0, a1 = _window(n, p11, k)
    for a in range(a0, a1 + 1):
        b0, b1 = _window(n - a, p12 / (1 - p11), k)
        for b in range(b0, b1 + 1):
            m = n - a - b
            c0, c1 = _window(m, p21 / (p21 + p22), k)
            c = np.arange(c0, c1 + 1)
            rows.append(np.stack([np.full(c.size, a), np.full(c.size, b), c, m - c], axis=1))
    return np.concatenate(rows).astype(float)


def paired_table_probs(tables: np.ndarray, cells) -> np.ndarray:
    """Multinomial probability of each table."""
    from scipy.special import gammaln

    n = tables.sum(axis=1)
    logp = np.log(np.maximum(np.asarray(cells, dtype=float), 1e-300))
    return np.exp(gammaln(n + 1) - gammaln(tables + 1).sum(axis=1) + np.where(tables > 0, tables * logp, 0.0).sum(1))


def _counts(c: np.ndarray, b: np.ndarray) -> tuple[int, int, int, int]:
    ca, cb = c.astype(bool), b.astype(bool)
    return int(np.sum(ca & cb)), int(np.sum(ca & ~cb)), int(np.sum(~ca & cb)), int(np.sum(~ca & ~cb))


def _exact_paired_cells(n: int, p_base: float, delta: float, tables, limits, z: float):
    """The difference, ratio, Newcombe and MOVER-R cells of one setting, exact where the tables
    are all there (``limits`` solved for them) and from the score statistics at the truth above."""
    cells = paired_cells(p_base, delta)
    truth_ratio = (p_base + delta) / p_base
    key = {"n": n, "p_base": p_base, "delta": delta}
    cd, cr = ExactCell(**key), ExactCell(**key, ratio=round(truth_ratio, 4))
    if limits is not None:
        prob = paired_table_probs(tables, cells)
        lo, hi, rlo, rhi, nc, mv = limits
        cd.add_exact(lo, hi, delta, prob)
        cr.add_exact(rlo, rhi, truth_ratio, prob)
        cn, cm = ExactCell(**key), ExactCell(**key)
        cn.add_exact(nc[:, 0], nc[:, 1], delta, prob)
        cm.add_exact(mv[:, 0], mv[:, 1], truth_ratio, prob)
        stat = intervals.paired_score_statistic(delta, tables)
        rstat = intervals.paired_ratio_statistic(truth_ratio, tables)
        live = prob > 1e-15  # the test inversion the large-n cells rely on
        assert ((stat >= z) == (lo >= delta))[live].all() and ((stat <= -z) == (hi <= delta))[live].all()
        assert ((rstat >= z) == (rlo >= truth_ratio))[live].all() and ((rstat <= -z) == (rhi <= truth_ratio))[live].all()
        return cd, cr, cn, cm, 0.0
    near = paired_tables_near(n, cells)
    prob = paired_table_probs(near, cells)
    drawn = np.random.default_rng(8).multinomial(n, cells, size=PAIRED_WIDTH_DRAWS).astype(float)
    for cell, statistic, truth, solve in (
            (cd, intervals.paired_score_statistic, delta, intervals.paired_score_limits),
            (cr, intervals.paired_ratio_statistic, truth_ratio, intervals.paired_ratio_limits)):
        st = statistic(truth, near)
        dlo, dhi = solve(drawn)
        w = dhi - dlo
        cell.set_rates(float(prob[(st < z) & (st > -z)].sum()), float(prob[st >= z].sum()),
                       float(prob[st <= -z].sum()), float(np.mean(w[np.isfinite(w)])))
    return cd, cr, None, None, 1 - float(prob.sum())


def _replaced_sampled(n: int, p_base: float, delta: float, reps: int) -> tuple[Cell, Cell]:
    """Newcombe's and MOVER-R's intervals on sampled tables (n above the exact range); the first
    sample also goes through ``intervals.paired``, which must give the score intervals."""
    rng = np.random.default_rng(7 + n)
    key = {"n": n, "p_base": p_base, "delta": delta}
    cn, cm = Cell(**key), Cell(**key)
    truth_ratio = (p_base + delta) / p_base
    for rep in range(reps):
        c, b = _paired_sample(rng, n, p_base, delta)
        counts = _counts(c, b)
        if rep == 0:
            pi = intervals.paired(from_values("m", list(c)), from_values("m", list(b)))
            assert np.allclose(pi.diff_ci, np.ravel(intervals.paired_score_limits([counts])), atol=1e-9)
            assert np.allclose(pi.ratio_ci, np.ravel(intervals.paired_ratio_limits([counts])), atol=1e-9)
        cn.add(*intervals.newcombe_paired(*counts), delta)
        k1, k2 = int(c.sum()), int(b.sum())
        lo, hi = intervals.mover_ratio(k1, k2, n) if k2 else (0.0, math.inf)
        cm.add(lo, hi, truth_ratio)
    return cn, cm


def paired_proportions(ns=NS) -> list[dict]:
    """improve_by/reduce_by at the true difference and the true ratio (both directions), exact in
    every cell: summed over the multinomial's tables (all of them for n in PAIRED_FULL_NS, where
    the limits are solved for every table and the same rates also come from the score statistics
    at the truth; above, from the statistics alone: the low limit clears the truth exactly when
    the statistic there is >= z). The intervals they replaced are exact at n <= 80 and sampled
    above."""
    z = float(norm.ppf(0.975))
    diff, ratio, newcombe, mover, mass_left = [], [], [], [], 0.0
    for n in ns:
        limits, tables = None, None
        if n in PAIRED_FULL_NS:
            tables = paired_tables(n)
            lo, hi = intervals.paired_score_limits(tables)
            rlo, rhi = intervals.paired_ratio_limits(tables)
            nc = np.array([intervals.newcombe_paired(*map(int, t)) for t in tables])
            k1, k2 = tables[:, 0] + tables[:, 1], tables[:, 0] + tables[:, 2]
            mv = np.array([intervals.mover_ratio(int(a), int(b), n) if b else (0.0, math.inf) for a, b in zip(k1, k2)])
            limits = (lo, hi, rlo, rhi, nc, mv)
        for p_base, delta in PAIRED_SETTINGS:
            cd, cr, cn, cm, left = _exact_paired_cells(n, p_base, delta, tables, limits, z)
            if cn is None:
                cn, cm = _replaced_sampled(n, p_base, delta, reps_of(PAIRED_REPLACED_REPS))
            mass_left = max(mass_left, left)
            diff.append(cd), ratio.append(cr), newcombe.append(cn), mover.append(cm)
    tables_note = f"all for n in {list(PAIRED_FULL_NS)}; within 7 sd above (mass left out <= {mass_left:.1e})"
    return [_summary("validity_paired_diff", diff, intervals.PAIRED_SCORE,
                     criterion="improve_by/reduce_by (absolute) at the true difference, rho 0.6", exact=True,
                     tables=tables_note, replaced={"method": intervals.NEWCOMBE, "exact_n": list(PAIRED_FULL_NS),
                                                   "cells": [c.row() for c in newcombe]}),
            _summary("validity_paired_ratio", ratio, intervals.PAIRED_RATIO_SCORE,
                     criterion="improve_by/reduce_by (%) at the true ratio, rho 0.6", exact=True, tables=tables_note,
                     replaced={"method": intervals.MOVER_R, "exact_n": list(PAIRED_FULL_NS),
                               "cells": [c.row() for c in mover]})]


# ---------------------------------------------------------------- means

RATING_TRUTHS = {"floor": (0.60, 0.25, 0.10, 0.03, 0.02),       # mean 1.62
                 "middle": (0.10, 0.15, 0.30, 0.30, 0.15),      # mean 3.25
                 "ceiling": (0.02, 0.03, 0.10, 0.35, 0.50)}     # mean 4.28
# Every simulated cell of a verdict's interval gets SIM_REPS replications: the Monte Carlo se of a
# 2.5% rate is then 0.25 points (at 1,000 it was 0.5, too coarse to tell 2% from 3%).
SIM_REPS = 4000
RATING_REPS = dict.fromkeys(NS, SIM_REPS)
CORPUS_POPULATIONS = {"beta22": (2.0, 2.0), "beta52": (5.0, 2.0)}
CORPUS_REPS = {"bleu": dict.fromkeys(NS, SIM_REPS), "rouge": dict.fromkeys(NS, SIM_REPS)}


def rating_means(name: str) -> list[Cell]:
    """A 1–5 rating mean (studentised) at one truth: coverage and false pass at the truth."""
    probs = np.array(RATING_TRUTHS[name])
    truth = float(np.dot(probs, np.arange(1, 6)))
    rng = np.random.default_rng(11 + list(RATING_TRUTHS).index(name))
    cells = []
    for n in NS:
        cell = Cell(n=n, truth=round(truth, 4), setting=name)
        for rep in range(reps_of(RATING_REPS[n])):
            values = rng.choice(np.arange(1.0, 6.0), size=n, p=probs)
            iv = intervals.studentized(values, n_resamples=N_RESAMPLES)
            cell.add(iv.lo, iv.hi, truth)
            if rep == 0:
                _check_verdict(from_values("r", list(values)), truth, iv)
        cells.append(cell)
    return cells


def _references(size: int, rng) -> list[np.ndarray]:
    """Synthetic references: Zipf words over a 400-word vocabulary, 5 + Poisson(12) long."""
    return [rng.choice(VOCAB, size=5 + rng.poisson(12), p=ZIPF) for _ in range(size)]


VOCAB = np.array([f"w{i}" for i in range(400)])
ZIPF = 1 / np.arange(1, 401) ** 1.1
ZIPF /= ZIPF.sum()


def _output(ref: np.ndarray, q: float, rng) -> str:
    """An output made from ``ref`` at quality ``q``: each token kept with probability q, else
    substituted, dropped or followed by an inserted word; 5% of outputs truncated (the brevity
    penalty)."""
    out: list[str] = []
    for tok in ref:
        u = rng.random()
        if u < q:
            out.append(tok)
        elif u < q + (1 - q) * 0.5:
            out.append(str(rng.choice(VOCAB, p=ZIPF)))
        elif u < q + (1 - q) * 0.8:
            continue
        else:
            out += [tok, str(rng.choice(VOCAB, p=ZIPF))]
    if rng.random() < 0.05:
        out = out[: int(rng.integers(0, max(1, len(out))))]
    return " ".join(out)


@lru_cache(maxsize=None)
def _text_population(quality=(2.0, 2.0), size: int = 5000, seed: int = 17, paired: bool = False):
    """Outputs at per-example quality q ~ Beta(quality) over synthetic references, scored by the
    registered BLEU and ROUGE-L: {"bleu": MetricResult, "rougeL": MetricResult}. ``paired``: also
    a baseline system on the same references at quality clip(q - 0.1 + N(0, 0.1), 0.02, 0.98)
    (the candidate is better by about 0.1 and the two are correlated through q), under
    ``"base_bleu"`` and ``"base_rougeL"``."""
    from harness.data.formats import Example

    rng = np.random.default_rng(seed)
    refs = _references(size, rng)
    q = rng.beta(*quality, size)
    examples = [Example(str(i), "completion", (), " ".join(r)) for i, r in enumerate(refs)]
    outputs = [_output(r, qi, rng) for r, qi in zip(refs, q)]
    pop = {m: compute_metric(m, outputs, examples) for m in ("bleu", "rougeL")}
    if paired:
        q_base = np.clip(q - 0.1 + rng.normal(0, 0.1, size), 0.02, 0.98)
        base = [_output(r, qi, rng) for r, qi in zip(refs, q_base)]
        pop.update({f"base_{m}": compute_metric(m, base, examples) for m in ("bleu", "rougeL")})
    return pop


def _draw(pop: MetricResult, idx: np.ndarray) -> MetricResult:
    st = pop.stats[idx]
    return MetricResult(pop.name, float(pop.aggregate(st.sum(0))), [None] * len(idx), st, pop.aggregate,
                        {"n": len(idx)}, True)


def corpus_metric(metric: str, population: str) -> list[Cell]:
    """Corpus BLEU (delta-method bootstrap-t over its sufficient statistics) or mean ROUGE-L
    (studentised): each replication n examples drawn with replacement from a scored population of
    5,000, whose aggregate is the truth."""
    pop = _text_population(CORPUS_POPULATIONS[population])["bleu" if metric == "bleu" else "rougeL"]
    truth = pop.recompute()
    rng = np.random.default_rng(23 + list(CORPUS_POPULATIONS).index(population))
    cells = []
    for n in NS:
        cell = Cell(n=n, truth=round(truth, 4), setting=population)
        for rep in range(reps_of(CORPUS_REPS[metric][n])):
            res = _draw(pop, rng.integers(0, pop.n, size=n))
            iv = intervals.interval(res, n_resamples=N_RESAMPLES)
            if not math.isfinite(iv.lo):
                raise AssertionError(f"{metric} n={n}: no interval ({iv.note})")
            cell.add(iv.lo, iv.hi, truth)
            if rep == 0:
                _check_verdict(res, truth, iv)
        cells.append(cell)
    return cells


# ---------------------------------------------------------------- paired, not 0/1

PAIRED_MEAN_REPS = {kind: dict.fromkeys(NS, SIM_REPS) for kind in ("rating", "rouge", "bleu")}
# Candidate and baseline 1-5 ratings of the same outputs: a bivariate normal (rho 0.6, the
# candidate 0.35 sd higher) cut at fixed points, so the 25 cells' probabilities are exact.
RATING_PAIR = {"rho": 0.6, "shift": 0.35, "cuts": (-1.3, -0.6, 0.2, 1.0)}


def _rating_pair_cells() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(candidate value, baseline value, probability) of the 25 cells of ``RATING_PAIR``."""
    from scipy.stats import multivariate_normal

    rho, shift, cuts = RATING_PAIR["rho"], RATING_PAIR["shift"], RATING_PAIR["cuts"]
    edges = np.array([-np.inf, *cuts, np.inf])
    mvn = multivariate_normal(mean=[shift, 0.0], cov=[[1, rho], [rho, 1]])

    def cdf(x: float, y: float) -> float:
        x, y = max(min(x, 12.0), -12.0), max(min(y, 12.0), -12.0)
        return float(mvn.cdf([x, y]))

    cand, base, prob = [], [], []
    for i in range(5):
        for j in range(5):
            p = (cdf(edges[i + 1], edges[j + 1]) - cdf(edges[i], edges[j + 1]) - cdf(edges[i + 1], edges[j])
                 + cdf(edges[i], edges[j]))
            cand.append(i + 1.0), base.append(j + 1.0), prob.append(max(p, 0.0))
    prob = np.array(prob)
    return np.array(cand), np.array(base), prob / prob.sum()


def _paired_populations(kind: str):
    """(draw(rng, n) -> (candidate result, baseline result), true difference, true ratio)."""
    if kind == "rating":
        cand, base, prob = _rating_pair_cells()
        mc, mb = float(prob @ cand), float(prob @ base)

        def draw(rng, n):
            k = rng.choice(prob.size, size=n, p=prob)
            return from_values("r", list(cand[k])), from_values("r", list(base[k]))
        return draw, mc - mb, mc / mb
    pops = _text_population(CORPUS_POPULATIONS["beta22"], paired=True)
    metric = "bleu" if kind == "bleu" else "rougeL"
    c_pop, b_pop = pops[metric], pops[f"base_{metric}"]
    mc, mb = c_pop.recompute(), b_pop.recompute()

    def draw(rng, n):
        idx = rng.integers(0, c_pop.n, size=n)
        return _draw(c_pop, idx), _draw(b_pop, idx)
    return draw, mc - mb, mc / mb


def paired_means(kind: str) -> list[list[Cell]]:
    """improve_by/reduce_by on a metric that is not 0/1, at the true difference (absolute) and the
    true ratio (%), the candidate and the baseline scored on the same examples. The first
    replication of each cell goes through ``judge_relative`` on both criteria."""
    draw, truth_diff, truth_ratio = _paired_populations(kind)
    rng = np.random.default_rng(29 + ("rating", "rouge", "bleu").index(kind))
    diffs, ratios = [], []
    for n in NS:
        cd = Cell(n=n, truth=round(truth_diff, 4), setting=kind)
        cr = Cell(n=n, truth=round(truth_ratio, 4), setting=kind)
        for rep in range(reps_of(PAIRED_MEAN_REPS[kind][n])):
            cand, base = draw(rng, n)
            pi = intervals.paired(cand, base, n_resamples=N_RESAMPLES)
            cd.add(*pi.diff_ci, truth_diff)
            cr.add(*pi.ratio_ci, truth_ratio)
            if rep == 0:
                v = judge_relative("m", pi, "improve_by", truth_diff, "base")
                assert (v.status == PASS) == bool(pi.diff_ci[0] >= truth_diff), (v, pi)
                v = judge_relative("m", pi, "improve_by", f"{(truth_ratio - 1) * 100!r}%", "base")
                assert (v.status == PASS) == bool(pi.ratio_ci[0] - 1 >= v.threshold), (v, pi)
        diffs.append(cd)
        ratios.append(cr)
    return [diffs, ratios]


# ---------------------------------------------------------------- judge + humans (PPI++)

# (N judged, m rated): m on the grid with N = 5m, and the fewest ratings PPI takes (MIN_N) of 30 and 80.
PPI_CELLS = ((30, 20), (80, 20), (150, 30), (400, 80), (1500, 300), (5000, 1000))
PPI_TRUTHS = {"middle": (0.10, 0.15, 0.30, 0.30, 0.15),   # 3.25
              "high": (0.02, 0.05, 0.13, 0.40, 0.40)}     # 4.11: the +1 judge clips at 5
JUDGE_ALONE_REPS = 300
# 10,000 a cell (se 0.17 points of coverage near 97%): at 4,000 the m = 80 cell read 97.30% where
# two independent 4,000-replication runs of the same interval read 96.47% and 96.53%.
PPI_REPS = 10000


def judge_ppi(name: str) -> list[list[Cell]]:
    """Humans score 1–5 (``PPI_TRUTHS[name]``); the judge says clip(round(human + 1 + N(0, 0.8)),
    1, 5) on every output; humans rate m of them (``PPI_CELLS``). Truth: the human score's mean.
    Cells: the verdict's interval, PPI++'s normal one (what it replaced), the judge alone and the
    m human ratings alone, on the same data."""
    probs = np.array(PPI_TRUTHS[name])
    truth = float(np.dot(probs, np.arange(1, 6)))
    rng = np.random.default_rng(13 + list(PPI_TRUTHS).index(name))
    out: list[list[Cell]] = [[], [], [], []]
    for big_n, m in PPI_CELLS:
        key = {"N": big_n, "m": m, "truth": round(truth, 4), "setting": name}
        cell, normal, solo, few = Cell(**key), Cell(**key), Cell(**{**key, "m": 0}), Cell(**key)
        for rep in range(reps_of(PPI_REPS)):
            human = rng.choice(np.arange(1, 6), size=big_n, p=probs).astype(float)
            judge = np.clip(np.round(human + 1 + rng.normal(0, 0.8, big_n)), 1, 5)
            ids = [f"e{i}" for i in range(big_n)]
            rated = rng.choice(big_n, size=m, replace=False)
            labels = {ids[i]: float(human[i]) for i in rated}
            res = from_values("judge", list(judge), extra={"ids": ids, "human_labels": labels})
            iv = intervals.interval(res, n_resamples=N_RESAMPLES)
            cell.add(iv.lo, iv.hi, truth)
            if rep == 0:
                _check_verdict(res, truth, iv)
            mask = np.zeros(big_n, dtype=bool)
            mask[rated] = True
            _, nlo, nhi, _ = intervals.ppi_mean(human[mask], judge[mask], judge[~mask])
            normal.add(nlo, nhi, truth)
            if rep % 2 == 0:  # the contrasts need fewer
                h = intervals.studentized(human[rated], n_resamples=N_RESAMPLES)
                few.add(h.lo, h.hi, truth)
            if rep < reps_of(JUDGE_ALONE_REPS):
                j = intervals.studentized(judge, n_resamples=N_RESAMPLES)
                solo.add(j.lo, j.hi, truth)
        for group, c in zip(out, (cell, normal, solo, few)):
            group.append(c)
    return out


# ---------------------------------------------------------------- human panel (two-way)

PANEL_ITEMS = (30, 80, 300, 1000)
# The panel's interval is cheap and its false pass at many items sits near 2.3%: more replications
# where that is.
PANEL_REPS = {30: 10000, 80: 10000, 300: 20000, 1000: 20000}


def panel() -> list[dict]:
    """3 raters drawn per replication from a population with leniency ~ N(0, 0.6); item quality
    ~ N(3.3, 0.8); rating = clip(round(quality + leniency + N(0, 0.7)), 1, 5). The truth (the
    rater population's mean) is exact: quality + leniency + noise is normal."""
    rng = np.random.default_rng(19)
    mu, sd_q, sd_r, sd_e, raters = 3.3, 0.8, 0.6, 0.7, 3
    sd = math.sqrt(sd_q ** 2 + sd_r ** 2 + sd_e ** 2)
    edges = norm.cdf((np.array([1.5, 2.5, 3.5, 4.5]) - mu) / sd)
    truth = float(np.dot(np.diff(np.concatenate([[0.0], edges, [1.0]])), np.arange(1, 6)))
    t_old = float(student.ppf(0.975, raters - 1))
    cells, item_only, replaced, method = [], [], [], ""
    for items in PANEL_ITEMS:
        cell, naive, old = (Cell(items=items, raters=raters) for _ in range(3))
        for rep in range(reps_of(PANEL_REPS[items])):
            q = rng.normal(mu, sd_q, items)
            len_r = rng.normal(0, sd_r, raters)
            mat = np.clip(np.round(q[:, None] + len_r[None, :] + rng.normal(0, sd_e, (items, raters))), 1, 5)
            rows = [(f"i{i}", f"r{r}", float(mat[i, r])) for i in range(items) for r in range(raters)]
            iv = intervals.rater_item_interval(rows)
            cell.add(iv.lo, iv.hi, truth)
            method = iv.method.split(",")[0]
            item_means = mat.mean(axis=1)
            var_r, var_i = float(np.var(mat.mean(axis=0), ddof=1)), float(np.var(item_means, ddof=1))
            half_old = t_old * math.sqrt(var_r / raters + var_i / items)  # one t on raters - 1 df: replaced
            old.add(iv.estimate - half_old, iv.estimate + half_old, truth)
            if rep < reps_of(PANEL_REPS[items]) // 4:  # the contrast needs fewer
                nv = intervals.studentized(item_means, n_resamples=N_RESAMPLES)
                naive.add(nv.lo, nv.hi, truth)
            if rep == 0:
                res = from_values("panel", list(item_means), extra={"ratings": rows})
                assert intervals.interval(res).ci == iv.ci
                _check_verdict(res, truth, iv)
                half = float(intervals.rater_item_half_width(var_r, var_i, raters, items))
                assert np.allclose(iv.ci, (iv.estimate - half, iv.estimate + half), atol=1e-12), (iv, half)
        cells.append(cell)
        item_only.append(naive)
        replaced.append(old)
    return [_summary("validity_panel", cells, method, cov_min_n=80, n_key="items", truth=round(truth, 4),
                     setting="3 raters, leniency sd 0.6, item sd 0.8, noise sd 0.7, 1-5 rounded",
                     replaced={"method": "one Student's t on raters - 1 df over var(rater means)/R + "
                                         "var(item means)/I, 95%", "cells": [c.row() for c in replaced]},
                     item_only={"method": f"{intervals.STUDENTIZED} of the item means (raters ignored)",
                                "cells": [c.row() for c in item_only]})]


# ---------------------------------------------------------------- family, power

FAMILY_REPS = 400
POWER_REPS = 400


def family() -> list[dict]:
    rng = np.random.default_rng(3)
    hits = 0
    reps = reps_of(FAMILY_REPS)
    for _ in range(reps):
        vals = {f"c{i}": [list((rng.random(80) < 0.8).astype(float)) for _ in range(3)] for i in range(8)}

        def decide(cand, conf, rule, vals=vals):
            return [judge_criterion("a", "at_least", 0.8, from_values("a", v), confidence=conf) for v in vals[cand]]
        out = multiplicity.decide_family(list(vals), decide, 0.95, "holm", 8)
        hits += any(meets_goal(vs) for vs in out.values())
    rate = hits / reps
    return [{"bench": "validity_family", "false_meets_goal": round(rate, 4), "ratio": round(rate, 4),
             "false_meets_goal_se": round(_se(rate, reps), 4), "target": 0.05, "higher_is_better": False,
             "met": rate <= 0.05, "reps": reps,
             "false_meets_goal_ci": [round(x, 4) for x in intervals.clopper_pearson(hits, reps)],
             "candidates": 8, "criteria": 3, "n": 80, "rule": "holm"}]


def power() -> list[dict]:
    rng = np.random.default_rng(5)
    reps = reps_of(POWER_REPS)
    wins = sum(judge_criterion("a", "at_least", 0.9, from_values("a", list((rng.random(300) < 0.95).astype(float))))
               .status == PASS for _ in range(reps))
    rate = wins / reps
    return [{"bench": "validity_power", "pass_rate": rate, "pass_rate_se": round(_se(rate, reps), 4), "ratio": rate,
             "target": 0.8, "higher_is_better": True, "met": rate >= 0.8, "reps": reps,
             "method": intervals.CLOPPER_PEARSON, "setting": "truth 0.95, at_least 0.9, n = 300, one candidate"}]


# ---------------------------------------------------------------- running the cells

def _rating_rows(parts: list[list[Cell]]) -> list[dict]:
    cells = [c for p in parts for c in p]
    return [_summary("validity_rating_mean", cells, intervals.STUDENTIZED,
                     setting={k: v for k, v in RATING_TRUTHS.items()})]


def _corpus_rows(metric: str, parts: list[list[Cell]]) -> list[dict]:
    cells = [c for p in parts for c in p]
    method = intervals.STUDENTIZED_DELTA if metric == "bleu" else intervals.STUDENTIZED
    what = "corpus BLEU (sacrebleu stats)" if metric == "bleu" else "mean ROUGE-L F"
    return [_summary(f"validity_{metric}", cells, method,
                     setting=f"{what} of synthetic outputs, quality Beta(2, 2) and Beta(5, 2); populations of "
                             f"5,000 scored examples")]


def _paired_mean_rows(kind: str, parts: list[list[list[Cell]]]) -> list[dict]:
    (diffs, ratios), = parts
    diff_method = intervals.PAIRED_DELTA if kind == "bleu" else intervals.PAIRED_STUDENTIZED
    ratio_method = intervals.PAIRED_DELTA if kind == "bleu" else intervals.PAIRED_RATIO_DELTA
    setting = (f"1-5 ratings, bivariate normal cut at {RATING_PAIR['cuts']}, rho {RATING_PAIR['rho']}, candidate "
               f"+{RATING_PAIR['shift']} sd" if kind == "rating" else
               "two systems over the same references, quality q ~ Beta(2, 2) and clip(q - 0.1 + N(0, 0.1))")
    return [_summary(f"validity_paired_{kind}_diff", diffs, diff_method, setting=setting,
                     criterion="improve_by/reduce_by (absolute) at the true difference"),
            _summary(f"validity_paired_{kind}_ratio", ratios, ratio_method, setting=setting,
                     criterion="improve_by/reduce_by (%) at the true ratio")]


def _ppi_rows(parts: list[list[list[Cell]]]) -> list[dict]:
    verdict, normal, solo, few = ([c for p in parts for c in p[k]] for k in range(4))
    method = f"{intervals.PPI}; {intervals.PPI_BOOTSTRAP}"
    return [_summary("validity_judge_ppi", verdict, method, n_key="m",
                     setting="judge = clip(round(human + 1 + N(0, 0.8)), 1, 5) on N outputs; humans rate m of "
                             f"them, (N, m) in {PPI_CELLS}; human truths {PPI_TRUTHS}",
                     replaced={"method": "PPI++ normal interval (ppi_mean, = ppi_py.ppi_mean_ci)",
                               "cells": [c.row() for c in normal]},
                     judge_alone={"method": intervals.STUDENTIZED, "cells": [c.row() for c in solo]},
                     humans_alone={"method": f"{intervals.STUDENTIZED} of the m human ratings",
                                   "cells": [c.row() for c in few]})]


def _tasks() -> list[tuple[str, list, object]]:
    """(name, the cell functions to run, how to make rows of their results); heaviest first so
    the workers finish together."""
    return [
        ("paired_bleu", [partial(paired_means, "bleu")], partial(_paired_mean_rows, "bleu")),
        ("bleu", [partial(corpus_metric, "bleu", p) for p in CORPUS_POPULATIONS], partial(_corpus_rows, "bleu")),
        ("judge_ppi", [partial(judge_ppi, t) for t in PPI_TRUTHS], _ppi_rows),
        ("paired_rouge", [partial(paired_means, "rouge")], partial(_paired_mean_rows, "rouge")),
        ("rouge", [partial(corpus_metric, "rouge", p) for p in CORPUS_POPULATIONS], partial(_corpus_rows, "rouge")),
        ("paired_rating", [partial(paired_means, "rating")], partial(_paired_mean_rows, "rating")),
        ("rating_mean", [partial(rating_means, t) for t in RATING_TRUTHS], _rating_rows),
        ("paired_proportions", [paired_proportions], lambda parts: parts[0]),
        ("panel", [panel], lambda parts: parts[0]),
        ("proportion", [proportions], lambda parts: parts[0]),
        ("family", [family], lambda parts: parts[0]),
        ("power", [power], lambda parts: parts[0]),
    ]


def _timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def _single_thread() -> None:
    """One BLAS thread per worker: the workers are the parallelism. The workers are forked with
    numpy's BLAS already loaded, so setting OPENBLAS_NUM_THREADS there came too late (two workers
    ran four threads on two cores); threadpoolctl (scikit-learn's dependency) limits the loaded
    library itself."""
    from threadpoolctl import threadpool_limits

    threadpool_limits(1)


def run(only: str | None = None, workers: int | None = None) -> list[dict]:
    """Every row (or those whose task name contains ``only``), the cells spread over ``workers``
    processes."""
    from concurrent.futures import ProcessPoolExecutor, as_completed

    tasks = [t for t in _tasks() if only is None or only in t[0]]
    jobs = [(i, fn) for i, (_, fns, _) in enumerate(tasks) for fn in fns]
    workers = workers or max(1, min(2, os.cpu_count() or 1))
    results: dict[int, list] = {i: [] for i in range(len(tasks))}
    seconds: dict[int, float] = {i: 0.0 for i in range(len(tasks))}
    t0 = time.perf_counter()

    def progress(i: int, secs: float) -> None:  # the full run takes most of an hour: say how far it is
        print(f"  {tasks[i][0]}: a part done in {secs:.0f} s ({time.perf_counter() - t0:.0f} s in)",
              file=sys.stderr, flush=True)

    done: dict[int, tuple[int, tuple]] = {}  # job -> (task, (out, seconds)); the rows keep the jobs' order
    if workers == 1:
        for j, (i, fn) in enumerate(jobs):
            done[j] = (i, _timed(fn))
            progress(i, done[j][1][1])
    else:
        with ProcessPoolExecutor(workers, initializer=_single_thread) as pool:
            futures = {pool.submit(_timed, fn): j for j, (_, fn) in enumerate(jobs)}
            for f in as_completed(futures):
                j = futures[f]
                done[j] = (jobs[j][0], f.result())
                progress(jobs[j][0], done[j][1][1])
    for _, (i, (out, secs)) in sorted(done.items()):
        results[i].append(out)
        seconds[i] += secs
    rows = []
    for i, (name, _, make) in enumerate(tasks):
        for row in make(results[i]):
            row["seconds"] = round(seconds[i], 1)  # CPU-side time of the task's cells, summed
            rows.append(row)
    return rows


if __name__ == "__main__":
    import argparse
    import json

    ap = argparse.ArgumentParser(description="Verdict validity: coverage and false pass per criterion type.")
    ap.add_argument("--only", help="run the tasks whose name contains this (rating, bleu, ppi, panel, paired...)")
    ap.add_argument("--workers", type=int, help="processes (default: 2, or fewer cores)")
    ap.add_argument("--scale", type=float, help="multiply every replication count (default 1)")
    args = ap.parse_args()
    if args.scale:
        os.environ["BENCH_VALIDITY_SCALE"] = str(args.scale)
        SCALE = args.scale
    t_start = time.perf_counter()
    for out_row in run(args.only, args.workers):
        print(json.dumps(out_row), flush=True)
    print(f"total {time.perf_counter() - t_start:.0f} s", file=sys.stderr)
