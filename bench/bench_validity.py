"""Verdict validity: coverage of the 95% interval and false-pass rate at the threshold, per
criterion type, against the exact answer (enumeration) or the known truth (simulation).

* proportions (``at_least``/``at_most``, Clopper–Pearson): exact binomial enumeration;
* paired difference (Newcombe) and ratio (MOVER-R) of proportions; a 1–5 rating mean and a
  judge-like score mean (BCa bootstrap): seeded simulation, ``REPS`` replications;
* the family: 8 candidates × 3 criteria, none truly meeting the goal (each exactly at its
  threshold), decided with Holm: how often "some candidate meets the goal";
* power: the truth 0.05 above a 0.9 threshold at n = 300.

Every figure is a rate; the target is the stated error (coverage ≥ 93%, false pass ≤ 2.5%,
family-wise ≤ 5%, power ≥ 80%).
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from scipy.stats import binom

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from harness import intervals, multiplicity  # noqa: E402
from harness.metrics import from_values  # noqa: E402
from harness.verdict import PASS, judge_criterion, meets_goal  # noqa: E402

NS = (30, 80, 300, 1000)
TRUTHS = (0.01, 0.05, 0.5, 0.9, 0.99)
REPS = 400


def proportions() -> dict:
    """Worst cell over NS × TRUTHS: exact coverage and exact false pass at the threshold."""
    worst_cov, worst_fp = 1.0, 0.0
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
            worst_fp = max(worst_fp, fp_least, fp_most)
    return {"bench": "validity_proportion", "coverage_min_n80": round(worst_cov, 4),
            "false_pass_max": round(worst_fp, 4), "ratio": round(worst_fp, 4), "target": 0.025,
            "higher_is_better": False, "method": intervals.CLOPPER_PEARSON}


def _paired_sample(rng, n, p_base, delta, rho=0.6):
    """Correlated 0/1 pairs with exact marginals: one shared uniform with probability rho."""
    u = rng.random(n)
    v = np.where(rng.random(n) < rho, u, rng.random(n))
    return (v < p_base + delta).astype(float), (u < p_base).astype(float)


def paired() -> list[dict]:
    rng = np.random.default_rng(7)
    rows = []
    for n in (80, 300):
        for p_base, delta in ((0.5, 0.1), (0.3, 0.0), (0.8, 0.1)):
            truth_diff = delta
            cov_d = cov_r = 0
            for _ in range(REPS):
                c, b = _paired_sample(rng, n, p_base, delta)
                pi = intervals.paired(from_values("m", list(c)), from_values("m", list(b)))
                cov_d += pi.diff_ci[0] <= truth_diff <= pi.diff_ci[1]
                truth_ratio = (p_base + delta) / p_base
                cov_r += pi.ratio_ci[0] <= truth_ratio <= pi.ratio_ci[1]
            rows.append((n, p_base, delta, cov_d / REPS, cov_r / REPS))
    return [{"bench": "validity_paired", "coverage_diff_min": round(min(r[3] for r in rows), 3),
             "coverage_ratio_min": round(min(r[4] for r in rows), 3), "cells": len(rows),
             "ratio": round(min(r[3] for r in rows), 3), "target": 0.93, "higher_is_better": True,
             "method": f"{intervals.NEWCOMBE}; {intervals.MOVER_R}"}]


def rating_means() -> dict:
    """A 1–5 rating mean near the ceiling (BCa): coverage and false pass at the truth."""
    rng = np.random.default_rng(11)
    probs = np.array([0.02, 0.03, 0.1, 0.35, 0.5])  # mean 4.28
    truth = float(np.dot(probs, np.arange(1, 6)))
    worst_cov, worst_fp = 1.0, 0.0
    for n in (30, 80, 300):
        cov = fp = 0
        for _ in range(REPS // 2):
            vals = rng.choice(np.arange(1, 6), size=n, p=probs).astype(float)
            iv = intervals.interval(from_values("r", list(vals)), n_resamples=1000)
            cov += iv.lo <= truth <= iv.hi
            fp += iv.lo >= truth
        if n >= 80:
            worst_cov = min(worst_cov, cov / (REPS // 2))
        worst_fp = max(worst_fp, fp / (REPS // 2))
    return {"bench": "validity_rating_mean", "coverage_min_n80": round(worst_cov, 3),
            "false_pass_max": round(worst_fp, 3), "ratio": round(worst_cov, 3), "target": 0.93,
            "higher_is_better": True, "method": intervals.BCA}


def family() -> dict:
    rng = np.random.default_rng(3)
    reps, hits = REPS // 2, 0
    for _ in range(reps):
        vals = {f"c{i}": [list((rng.random(80) < 0.8).astype(float)) for _ in range(3)] for i in range(8)}

        def decide(cand, conf, rule, vals=vals):
            return [judge_criterion("a", "at_least", 0.8, from_values("a", v), confidence=conf) for v in vals[cand]]
        out = multiplicity.decide_family(list(vals), decide, 0.95, "holm", 8)
        hits += any(meets_goal(vs) for vs in out.values())
    return {"bench": "validity_family", "false_meets_goal": round(hits / reps, 3), "ratio": round(hits / reps, 3),
            "target": 0.05, "higher_is_better": False, "candidates": 8, "criteria": 3, "rule": "holm"}


def power() -> dict:
    rng = np.random.default_rng(5)
    wins = sum(judge_criterion("a", "at_least", 0.9, from_values("a", list((rng.random(300) < 0.95).astype(float))))
               .status == PASS for _ in range(REPS))
    return {"bench": "validity_power", "pass_rate": wins / REPS, "ratio": wins / REPS, "target": 0.8,
            "higher_is_better": True, "setting": "truth 0.95, at_least 0.9, n = 300, one candidate"}


def run() -> list[dict]:
    return [proportions(), *paired(), rating_means(), family(), power()]


if __name__ == "__main__":
    import json

    for row in run():
        print(json.dumps(row))
