"""Verdict validity: coverage of the 95% interval and false-pass rate at the threshold, per
criterion type, against the exact answer (enumeration) or the known truth (simulation).

Each criterion type is one row, over the grid of n where the type makes sense
(n ∈ {30, 80, 300, 1000}; every cell lists its n, its replications and its rates):

* ``validity_proportion`` — ``at_least``/``at_most`` on a proportion (Clopper–Pearson):
  exact binomial enumeration over n × truth ∈ {0.01, 0.05, 0.5, 0.9, 0.99};
* ``validity_paired`` — ``improve_by``/``reduce_by`` on a paired difference (the SCAS paired score
  interval) and a paired ratio (MOVER-R) of proportions, correlated pairs (ρ = 0.6). The
  difference is exact: every 2x2 table weighted by its multinomial probability (all tables at
  n ≤ 80; the tables within 7 sd, all but 1e-10 of the mass, above), with the Newcombe interval it
  replaced on the same tables (n ≤ 80) or samples (n ≥ 300); the ratio is simulated;
* ``validity_rating_mean`` — a 1–5 rating mean near the ceiling (studentised bootstrap);
* ``validity_bleu`` / ``validity_rouge`` — corpus BLEU (studentised bootstrap with a
  delta-method SE on sacrebleu's sufficient statistics, small-n expanded) and mean ROUGE-L
  (studentised): synthetic outputs and references scored once
  by the registered metrics (5,000 examples, the population); each replication draws n
  examples from it with replacement, so the truth is the population's aggregate;
* ``validity_judge_ppi`` — a 1–5 judge biased by +1 (clipped, noisy) with humans rating m =
  max(20, N/5) of the N outputs (PPI++ estimate, bootstrap-t interval with λ re-tuned in each
  resample); the truth is the human score's population mean; PPI++'s normal interval
  (``ppi_mean``, as ppi_py) on the same data is what it replaced, the judge alone (studentised)
  shows what the bias does, the m human ratings alone (studentised) what the judge adds;
* ``validity_panel`` — a human panel of 3 raters whose leniency varies (sd 0.6) over 30/80/300
  items (two-way random effects); the truth is the mean over the rater population; the
  item-only interval (raters ignored) is the contrast;
* ``validity_family`` — 8 candidates × 3 criteria, none truly meeting the goal (each exactly
  at its threshold), decided with Holm: how often "some candidate meets the goal";
* ``validity_power`` — the truth 0.05 above a 0.9 threshold at n = 300.

"False pass at the threshold": the criterion's threshold is set to the truth, so any pass is
false; ``at_least`` passes when the interval's low bound ≥ the truth, ``at_most`` when its high
bound ≤ the truth (the verdict's own rule, ``harness.verdict._status``; the first replication
of every simulated mean, corpus, judge and panel cell is also decided through ``judge_criterion``
and must agree). Intervals use what verdicts use: 95% two-sided, 2,000 resamples, seed 0.

Targets: coverage 93–97% (≥ 95% for the intervals that are conservative by construction:
Clopper–Pearson, MOVER-R, two-way random effects), false pass ≤ 2.5% in every cell and on
either side, family-wise ≤ 5%, power ≥ 80%. A rate from R replications has a Monte Carlo
standard error of about sqrt(p(1-p)/R) (0.5% for 2.5% at R = 1000, 0.8% at R = 400); the worst
of several cells is biased upwards by that noise. ``false_pass_max_ci`` is the worst cell's
exact 95% interval over its replications (the rate itself for an exact cell);
``cells_fp_over_target_beyond_noise`` counts the cells whose interval lies wholly above 2.5%.
"""
from __future__ import annotations

import math
import sys
import time
from functools import partial
from pathlib import Path

import numpy as np
from scipy.stats import binom, norm

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from harness import intervals, multiplicity  # noqa: E402
from harness.metrics import MetricResult, compute_metric, from_values  # noqa: E402
from harness.verdict import PASS, judge_criterion, meets_goal  # noqa: E402

NS = (30, 80, 300, 1000)
TRUTHS = (0.01, 0.05, 0.5, 0.9, 0.99)
N_RESAMPLES = 2000        # what a verdict uses
FP_TARGET = 0.025
COVERAGE_BAND = (0.93, 0.97)
CONSERVATIVE_MIN = 0.95


# ---------------------------------------------------------------- bookkeeping

class Cell:
    """Counts of one (criterion type, n) cell."""

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
        return {**self.key, "reps": r, "coverage": round(self.cover / r, 4),
                "false_pass_at_least": round(self.fp_least / r, 4), "false_pass_at_most": round(self.fp_most / r, 4),
                "mean_width": round(float(np.mean(self.widths)), 4) if self.widths else None}


class ExactCell(Cell):
    """A cell whose rates are exact: every outcome weighted by its probability (reps = 1)."""

    exact = True

    def __init__(self, **key):
        super().__init__(**key)
        self._width = 0.0

    def add_exact(self, lo: np.ndarray, hi: np.ndarray, truth: float, prob: np.ndarray) -> None:
        self.reps = 1
        self.cover = float(prob[(lo <= truth) & (truth <= hi)].sum())
        self.fp_least = float(prob[lo >= truth].sum())
        self.fp_most = float(prob[hi <= truth].sum())
        self._width = float((prob * (hi - lo)).sum() / prob.sum())

    def set_rates(self, cover: float, fp_least: float, fp_most: float, width: float) -> None:
        self.reps, self.cover, self.fp_least, self.fp_most, self._width = 1, cover, fp_least, fp_most, width

    def over_beyond_noise(self) -> bool:
        return self.fp > FP_TARGET  # no Monte Carlo noise

    def row(self) -> dict:
        return {**self.key, "reps": "exact", "coverage": round(self.cover, 4),
                "false_pass_at_least": round(self.fp_least, 4), "false_pass_at_most": round(self.fp_most, 4),
                "mean_width": round(self._width, 4)}


def _check_verdict(result, truth: float, iv: intervals.Interval) -> None:
    """The bench's pass rule must be the verdict's: decide one replication both ways."""
    v = judge_criterion("m", "at_least", truth, result, n_resamples=N_RESAMPLES)
    assert (v.status == PASS) == bool(iv.lo >= truth), (v.status, iv, truth)


def _summary(bench: str, cells: list[Cell], method: str, conservative: bool, cov_min_n: int = 80,
             n_key: str = "n", **more) -> dict:
    """One row: worst false pass (either side, every cell) as the ratio; coverage over the cells
    with at least ``cov_min_n``; whether both targets are met."""
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
    lo, hi = (fp, fp) if getattr(worst, "exact", False) else intervals.clopper_pearson(k, worst.reps)
    return {"bench": bench, "ratio": round(fp, 4), "target": FP_TARGET, "higher_is_better": False,
            "method": method, "false_pass_max": round(fp, 4),
            "false_pass_max_cell": {**worst.key, "reps": worst.row()["reps"]},
            "false_pass_max_ci": [round(lo, 4), round(hi, 4)],
            f"coverage_min_{n_key}{cov_min_n}": cov_min, f"coverage_max_{n_key}{cov_min_n}": cov_max,
            "coverage_target": f">= {CONSERVATIVE_MIN}" if conservative else f"{COVERAGE_BAND[0]}-{COVERAGE_BAND[1]}",
            "cells_fp_over_target": sum(c.fp / c.reps > FP_TARGET for c in cells),
            "cells_fp_over_target_beyond_noise": sum(c.over_beyond_noise() for c in cells),
            "met": bool(cov_ok and fp <= FP_TARGET), "n_resamples": N_RESAMPLES, **more, "cells": rows}


# ---------------------------------------------------------------- proportions (exact)

def proportions() -> dict:
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
    return {"bench": "validity_proportion", "ratio": round(worst_fp, 4), "target": FP_TARGET,
            "higher_is_better": False, "method": intervals.CLOPPER_PEARSON, "false_pass_max": round(worst_fp, 4),
            "false_pass_max_cell": worst_at, "coverage_min_n80": round(worst_cov, 4),
            "coverage_target": f">= {CONSERVATIVE_MIN}",
            "met": bool(worst_cov >= CONSERVATIVE_MIN and worst_fp <= FP_TARGET),
            "exact": True, "grid": {"n": list(NS), "truth": list(TRUTHS)}}


# ---------------------------------------------------------------- paired proportions

def _paired_sample(rng, n, p_base, delta, rho=0.6):
    """Correlated 0/1 pairs with exact marginals: one shared uniform with probability rho."""
    u = rng.random(n)
    v = np.where(rng.random(n) < rho, u, rng.random(n))
    return (v < p_base + delta).astype(float), (u < p_base).astype(float)


PAIRED_SETTINGS = ((0.5, 0.1), (0.3, 0.0), (0.8, 0.1))
PAIRED_FULL_NS = (30, 80)   # every 2x2 table; above, the tables within 7 sd (all but < 1e-9 of the mass)
PAIRED_RHO = 0.6
PAIRED_WIDTH_DRAWS = 4000   # tables drawn to estimate the mean width where the limits are not solved for all


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


def paired(reps: int = 1000) -> list[dict]:
    """improve_by/reduce_by at the true difference and the true ratio (both directions).

    The difference is exact in every cell: its error rates are summed over the multinomial's
    tables (all of them for n in PAIRED_FULL_NS, where the limits are solved for every table and
    the same rates also come from the score statistic at the truth; above, from the statistic
    alone: the low limit clears the truth exactly when the statistic there is >= z). The Newcombe
    interval it replaces is exact at n <= 80 and simulated above. The ratio (MOVER-R) is
    simulated; the first replication of each cell goes through ``intervals.paired``."""
    from scipy.stats import norm

    z = float(norm.ppf(0.975))
    rng, rng_width = np.random.default_rng(7), np.random.default_rng(8)
    diff_cells, ratio_cells, newcombe_cells, mass_left = [], [], [], 0.0
    for n in NS:
        full = n in PAIRED_FULL_NS
        if full:
            tables = paired_tables(n)
            lo, hi = intervals.paired_score_limits(tables)
            nc = np.array([intervals.newcombe_paired(*map(int, t)) for t in tables])
        for p_base, delta in PAIRED_SETTINGS:
            cells = paired_cells(p_base, delta)
            truth_ratio = (p_base + delta) / p_base
            cd = ExactCell(n=n, p_base=p_base, delta=delta)
            cn = (ExactCell if full else Cell)(n=n, p_base=p_base, delta=delta)
            cr = Cell(n=n, p_base=p_base, delta=delta)
            if full:
                prob = paired_table_probs(tables, cells)
                cd.add_exact(lo, hi, delta, prob)
                cn.add_exact(nc[:, 0], nc[:, 1], delta, prob)
                stat = intervals.paired_score_statistic(delta, tables)
                live = prob > 1e-15  # the test inversion the large-n cells rely on
                assert ((stat >= z) == (lo >= delta))[live].all() and ((stat <= -z) == (hi <= delta))[live].all()
            else:
                near = paired_tables_near(n, cells)
                prob = paired_table_probs(near, cells)
                mass_left = max(mass_left, 1 - float(prob.sum()))
                stat = intervals.paired_score_statistic(delta, near)
                drawn = rng_width.multinomial(n, cells, size=PAIRED_WIDTH_DRAWS).astype(float)
                dlo, dhi = intervals.paired_score_limits(drawn)
                cd.set_rates(float(prob[(stat < z) & (stat > -z)].sum()), float(prob[stat >= z].sum()),
                             float(prob[stat <= -z].sum()), float(np.mean(dhi - dlo)))
            for rep in range(reps):
                c, b = _paired_sample(rng, n, p_base, delta)
                k1, k2 = int(c.sum()), int(b.sum())
                ratio_ci = intervals.mover_ratio(k1, k2, n) if k2 else (math.nan, math.nan)
                if rep == 0:  # what a verdict computes, the same
                    pi = intervals.paired(from_values("m", list(c)), from_values("m", list(b)))
                    assert np.allclose(pi.diff_ci, np.ravel(intervals.paired_score_limits([_counts(c, b)])), atol=1e-9)
                    assert pi.ratio_ci == ratio_ci or not k2
                if not full:
                    cn.add(*intervals.newcombe_paired(*_counts(c, b)), delta)
                if all(math.isfinite(x) for x in ratio_ci):
                    cr.add(*ratio_ci, truth_ratio)
                else:  # an unbounded ratio interval never passes, and covers
                    cr.add(ratio_ci[0] if math.isfinite(ratio_ci[0]) else 0.0, math.inf, truth_ratio)
            diff_cells.append(cd)
            newcombe_cells.append(cn)
            ratio_cells.append(cr)
    return [_summary("validity_paired_diff", diff_cells, pi.method, conservative=False,
                     criterion="improve_by/reduce_by (absolute) at the true difference, rho 0.6",
                     exact=True, tables=f"all for n in {list(PAIRED_FULL_NS)}; within 7 sd above "
                                        f"(mass left out <= {mass_left:.1e})",
                     replaced={"method": intervals.NEWCOMBE, "exact_n": list(PAIRED_FULL_NS),
                               "cells": [c.row() for c in newcombe_cells]}),
            _summary("validity_paired_ratio", ratio_cells, intervals.MOVER_R, conservative=True,
                     criterion="improve_by/reduce_by (%) at the true ratio, rho 0.6")]


# ---------------------------------------------------------------- means

RATING_REPS = {30: 2000, 80: 2000, 300: 1000, 1000: 1000}
CORPUS_REPS = {"bleu": {30: 2000, 80: 2000, 300: 1500, 1000: 600},   # BLEU's small-n cells were the misses
               "rouge": {30: 1000, 80: 1000, 300: 1000, 1000: 600}}


def rating_means() -> dict:
    """A 1–5 rating mean near the ceiling (studentised): coverage and false pass at the truth."""
    rng = np.random.default_rng(11)
    probs = np.array([0.02, 0.03, 0.1, 0.35, 0.5])  # mean 4.28
    truth = float(np.dot(probs, np.arange(1, 6)))
    cells = []
    for n in NS:
        cell = Cell(n=n)
        for rep in range(RATING_REPS[n]):
            res = from_values("r", list(rng.choice(np.arange(1, 6), size=n, p=probs).astype(float)))
            iv = intervals.interval(res, n_resamples=N_RESAMPLES)
            cell.add(iv.lo, iv.hi, truth)
            if rep == 0:
                _check_verdict(res, truth, iv)
        cells.append(cell)
    return _summary("validity_rating_mean", cells, iv.method, conservative=False, truth=round(truth, 4),
                    setting="1-5 ratings, P = (0.02, 0.03, 0.10, 0.35, 0.50)")


def _text_population(size: int = 5000, seed: int = 17):
    """Synthetic references (Zipf words, 5 + Poisson(12) long) and outputs made from them by
    per-example quality q ~ Beta(2, 2): each token kept with probability q, else substituted,
    dropped or followed by an inserted word; 5% of outputs truncated (the brevity penalty)."""
    from harness.data.formats import Example

    rng = np.random.default_rng(seed)
    vocab = np.array([f"w{i}" for i in range(400)])
    p = 1 / np.arange(1, 401) ** 1.1
    p /= p.sum()
    outputs, examples = [], []
    for i in range(size):
        ref = rng.choice(vocab, size=5 + rng.poisson(12), p=p)
        q = rng.beta(2.0, 2.0)
        out: list[str] = []
        for tok in ref:
            u = rng.random()
            if u < q:
                out.append(tok)
            elif u < q + (1 - q) * 0.5:
                out.append(str(rng.choice(vocab, p=p)))
            elif u < q + (1 - q) * 0.8:
                continue
            else:
                out += [tok, str(rng.choice(vocab, p=p))]
        if rng.random() < 0.05:
            out = out[: int(rng.integers(0, max(1, len(out))))]
        outputs.append(" ".join(out))
        examples.append(Example(str(i), "completion", (), " ".join(ref)))
    return outputs, examples


def corpus_metrics() -> list[dict]:
    """Corpus BLEU (studentised, delta-method SE over its sufficient statistics) and mean ROUGE-L
    (studentised), each
    replication n examples drawn with replacement from a scored population of 5,000."""
    outputs, examples = _text_population()
    bleu = compute_metric("bleu", outputs, examples)
    rouge = compute_metric("rougeL", outputs, examples)
    rows = []
    for pop, name in ((bleu, "bleu"), (rouge, "rouge")):
        truth = pop.recompute()
        rng = np.random.default_rng(23)
        cells, method = [], ""
        for n in NS:
            cell = Cell(n=n)
            for rep in range(CORPUS_REPS[name][n]):
                idx = rng.integers(0, pop.n, size=n)
                st = pop.stats[idx]
                res = MetricResult(pop.name, float(pop.aggregate(st.sum(0))), [None] * n, st, pop.aggregate,
                                   {"n": n}, True)
                iv = intervals.interval(res, n_resamples=N_RESAMPLES)
                if not math.isfinite(iv.lo):
                    raise AssertionError(f"{name} n={n}: no interval ({iv.note})")
                cell.add(iv.lo, iv.hi, truth)
                method = iv.method
                if rep == 0:
                    _check_verdict(res, truth, iv)
            cells.append(cell)
        rows.append(_summary(f"validity_{name}", cells, method, conservative=False, truth=round(truth, 4),
                             setting=f"{'corpus BLEU (sacrebleu stats)' if name == 'bleu' else 'mean ROUGE-L F'}"
                                     f" of synthetic outputs; population of {pop.n} scored examples"))
    return rows


# ---------------------------------------------------------------- judge + humans (PPI++)

PPI_NS = (30, 80, 300, 1000)
PPI_REPS = {30: 1000, 80: 2000, 300: 1500, 1000: 1000}  # N = 80 and 300 were the misses
JUDGE_ALONE_REPS = 400


def judge_ppi() -> dict:
    """Humans score 1–5 (P below); the judge says clip(round(human + 1 + N(0, 0.8)), 1, 5) on
    every output; humans rate m = max(20, N/5) of them. Truth: the human score's mean."""
    rng = np.random.default_rng(13)
    probs = np.array([0.10, 0.15, 0.30, 0.30, 0.15])
    truth = float(np.dot(probs, np.arange(1, 6)))  # 3.25
    cells, alone, humans, normals, method = [], [], [], [], ""
    for big_n in PPI_NS:
        m = max(20, big_n // 5)
        cell, solo, few, normal = Cell(N=big_n, m=m), Cell(N=big_n, m=0), Cell(N=big_n, m=m), Cell(N=big_n, m=m)
        for rep in range(PPI_REPS[big_n]):
            human = rng.choice(np.arange(1, 6), size=big_n, p=probs).astype(float)
            judge = np.clip(np.round(human + 1 + rng.normal(0, 0.8, big_n)), 1, 5)
            ids = [f"e{i}" for i in range(big_n)]
            rated = rng.choice(big_n, size=m, replace=False)
            labels = {ids[i]: float(human[i]) for i in rated}
            res = from_values("judge", list(judge), extra={"ids": ids, "human_labels": labels})
            iv = intervals.interval(res, n_resamples=N_RESAMPLES)
            cell.add(iv.lo, iv.hi, truth)
            method = f"{iv.method.split(':')[0]}; {iv.method.split('; ')[-1]}"
            if rep == 0:
                _check_verdict(res, truth, iv)
            mask = np.zeros(big_n, dtype=bool)
            mask[rated] = True
            _, nlo, nhi, _ = intervals.ppi_mean(human[mask], judge[mask], judge[~mask])
            normal.add(nlo, nhi, truth)
            h = intervals.studentized(human[rated], n_resamples=N_RESAMPLES)
            few.add(h.lo, h.hi, truth)
            if rep < JUDGE_ALONE_REPS:
                j = intervals.interval(from_values("judge", list(judge)), n_resamples=N_RESAMPLES)
                solo.add(j.lo, j.hi, truth)
        cells.append(cell)
        alone.append(solo)
        humans.append(few)
        normals.append(normal)
    return _summary("validity_judge_ppi", cells, method, conservative=False, n_key="N", truth=truth,
                    setting="judge = clip(round(human + 1 + N(0, 0.8)), 1, 5); humans rate m = max(20, N/5)",
                    judge_alone={"method": intervals.STUDENTIZED, "cells": [c.row() for c in alone]},
                    humans_alone={"method": f"{intervals.STUDENTIZED} of the m human ratings",
                                  "cells": [c.row() for c in humans]},
                    replaced={"method": "PPI++ normal interval (ppi_mean, = ppi_py.ppi_mean_ci)",
                              "cells": [c.row() for c in normals]})


# ---------------------------------------------------------------- human panel (two-way)

PANEL_ITEMS = (30, 80, 300)
PANEL_REPS = 1000


def panel() -> dict:
    """3 raters drawn per replication from a population with leniency ~ N(0, 0.6); item quality
    ~ N(3.3, 0.8); rating = clip(round(quality + leniency + N(0, 0.7)), 1, 5). The truth (the
    rater population's mean) is exact: quality + leniency + noise is normal."""
    rng = np.random.default_rng(19)
    mu, sd_q, sd_r, sd_e, raters = 3.3, 0.8, 0.6, 0.7, 3
    sd = math.sqrt(sd_q ** 2 + sd_r ** 2 + sd_e ** 2)
    edges = norm.cdf((np.array([1.5, 2.5, 3.5, 4.5]) - mu) / sd)
    truth = float(np.dot(np.diff(np.concatenate([[0.0], edges, [1.0]])), np.arange(1, 6)))
    cells, item_only, method = [], [], ""
    for items in PANEL_ITEMS:
        cell, naive = Cell(items=items, raters=raters), Cell(items=items, raters=raters)
        for rep in range(PANEL_REPS):
            q = rng.normal(mu, sd_q, items)
            len_r = rng.normal(0, sd_r, raters)
            mat = np.clip(np.round(q[:, None] + len_r[None, :] + rng.normal(0, sd_e, (items, raters))), 1, 5)
            rows = [(f"i{i}", f"r{r}", float(mat[i, r])) for i in range(items) for r in range(raters)]
            iv = intervals.rater_item_interval(rows)
            cell.add(iv.lo, iv.hi, truth)
            method = iv.method.split(",")[0]
            item_means = mat.mean(axis=1)
            nv = intervals.studentized(item_means, n_resamples=N_RESAMPLES)
            naive.add(nv.lo, nv.hi, truth)
            if rep == 0:
                res = from_values("panel", list(item_means), extra={"ratings": rows})
                assert intervals.interval(res).ci == iv.ci
                _check_verdict(res, truth, iv)
        cells.append(cell)
        item_only.append(naive)
    return _summary("validity_panel", cells, method, conservative=True, cov_min_n=30, n_key="items",
                    truth=round(truth, 4),
                    setting="3 raters, leniency sd 0.6, item sd 0.8, noise sd 0.7, 1-5 rounded",
                    item_only={"method": f"{intervals.STUDENTIZED} of the item means (raters ignored)",
                               "cells": [c.row() for c in item_only]})


# ---------------------------------------------------------------- family, power

FAMILY_REPS = 400
POWER_REPS = 400


def family() -> dict:
    rng = np.random.default_rng(3)
    hits = 0
    for _ in range(FAMILY_REPS):
        vals = {f"c{i}": [list((rng.random(80) < 0.8).astype(float)) for _ in range(3)] for i in range(8)}

        def decide(cand, conf, rule, vals=vals):
            return [judge_criterion("a", "at_least", 0.8, from_values("a", v), confidence=conf) for v in vals[cand]]
        out = multiplicity.decide_family(list(vals), decide, 0.95, "holm", 8)
        hits += any(meets_goal(vs) for vs in out.values())
    rate = hits / FAMILY_REPS
    return {"bench": "validity_family", "false_meets_goal": round(rate, 4), "ratio": round(rate, 4),
            "target": 0.05, "higher_is_better": False, "met": rate <= 0.05, "reps": FAMILY_REPS,
            "false_meets_goal_ci": [round(x, 4) for x in intervals.clopper_pearson(hits, FAMILY_REPS)],
            "candidates": 8, "criteria": 3, "n": 80, "rule": "holm"}


def power() -> dict:
    rng = np.random.default_rng(5)
    wins = sum(judge_criterion("a", "at_least", 0.9, from_values("a", list((rng.random(300) < 0.95).astype(float))))
               .status == PASS for _ in range(POWER_REPS))
    rate = wins / POWER_REPS
    return {"bench": "validity_power", "pass_rate": rate, "ratio": rate, "target": 0.8, "higher_is_better": True,
            "met": rate >= 0.8, "reps": POWER_REPS, "method": intervals.CLOPPER_PEARSON,
            "setting": "truth 0.95, at_least 0.9, n = 300, one candidate"}


def _timed(fn) -> list[dict]:
    t0 = time.perf_counter()
    out = fn()
    rows = out if isinstance(out, list) else [out]
    for r in rows:
        r["seconds"] = round(time.perf_counter() - t0, 1)
    return rows


def run() -> list[dict]:
    rows: list[dict] = []
    for fn in (proportions, paired, rating_means, corpus_metrics, judge_ppi, panel, family, power):
        rows += _timed(fn)
    return rows


if __name__ == "__main__":
    import json

    t_start = time.perf_counter()
    for row in run():
        print(json.dumps(row), flush=True)
    print(f"total {time.perf_counter() - t_start:.0f} s", file=sys.stderr)
