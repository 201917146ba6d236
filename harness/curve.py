"""The data-size curve: how a criterion's metric grows with the number of training examples,
and — as an extrapolation, with its uncertainty — about how many would reach the threshold.

A goal sweeps ``train_fraction: [0.25, 0.5, 1.0]`` on a training candidate; each fraction is a
nested, stratified subset of the train split (``data.split.nested_subset``), so the points are
one model family trained on more and more of the same data. The fit is a saturating power law,
``metric(n) = a - b * n ** -c`` (b, c > 0: more data helps less and less), the usual shape of
learning curves. Its uncertainty comes from a parametric bootstrap: each point is redrawn
from a normal with the point's interval (half-width / z), the curve refitted, and the examples
needed read off each refit. The answer is one of

* ``already there``: the largest subset's interval already clears the threshold;
* ``about N (range lo-hi)``: the median and the 10-90% range of the refits that reach it, and
  the share that do — an extrapolation, stated as one;
* ``not reachable on this curve``: fewer than half the refits ever reach the threshold.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from statistics import NormalDist
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

if TYPE_CHECKING:
    from harness.store import Store

# Refits of the parametric bootstrap; few points, so this is cheap.
N_REFITS = 400
# Extrapolations beyond this many times the largest subset are reported as not reachable.
MAX_FACTOR = 1000


@dataclass
class CurvePoint:
    candidate: str
    fraction: float
    n_train: int
    value: float
    lo: float
    hi: float


@dataclass
class Extrapolation:
    status: str                      # "already there" | "extrapolated" | "not reachable" | "too few points"
    n_needed: float | None = None    # median over refits that reach the threshold
    n_range: tuple[float, float] | None = None  # 10-90% over those refits
    reach_share: float = 0.0         # share of refits that reach the threshold at all
    note: str = ""
    params: dict[str, float] = field(default_factory=dict)

    def describe(self) -> str:
        if self.status == "extrapolated" and self.n_needed is not None and self.n_range is not None:
            lo, hi = self.n_range
            return (f"about {self.n_needed:,.0f} training examples (10-90% range {lo:,.0f}-{hi:,.0f}; "
                    f"{self.reach_share:.0%} of refits reach it) — an extrapolation of a saturating power law")
        return {"already there": "already there: the largest subset clears the threshold",
                "not reachable": "not reachable on this curve (the fitted curve levels off below the threshold)",
                }.get(self.status, self.note or self.status)


def _model(n: np.ndarray, a: float, b: float, c: float) -> np.ndarray:
    return a - b * np.power(n, -c)


def _fit(ns: np.ndarray, ys: np.ndarray, sigma: np.ndarray) -> tuple[float, float, float] | None:
    from scipy.optimize import OptimizeWarning, curve_fit

    span = float(max(abs(ys.max() - ys.min()), 1e-6))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", OptimizeWarning)  # three points, three parameters: no covariance
            (a, b, c), _ = curve_fit(_model, ns, ys, p0=(ys.max() + span, span * ns.min() ** 0.5, 0.5),
                                     sigma=sigma, bounds=([-np.inf, 0.0, 1e-3], [np.inf, np.inf, 3.0]),
                                     maxfev=5000)
    except (RuntimeError, ValueError):
        return None
    return float(a), float(b), float(c)


def _needed(params: tuple[float, float, float], threshold: float, higher_is_better: bool) -> float | None:
    a, b, c = params
    if not higher_is_better:  # a metric that must fall: mirror it
        a, b, threshold = -a, -b, -threshold
    if b <= 0 or a <= threshold:
        return None
    log_n = math.log(b / (a - threshold)) / c  # in logs: a flat fit (c near 0) would overflow
    return math.exp(log_n) if log_n < math.log(1e15) else None


def extrapolate(points: Sequence[CurvePoint], threshold: float, *, higher_is_better: bool = True,
                confidence: float = 0.95, seed: int = 0) -> Extrapolation:
    """How many training examples would reach ``threshold``, from the curve's points."""
    pts = sorted(points, key=lambda p: p.n_train)
    if len(pts) < 2 or len({p.n_train for p in pts}) < 2:
        return Extrapolation("too few points", note="the curve needs two or more training-set sizes")
    last = pts[-1]
    clears = last.lo >= threshold if higher_is_better else last.hi <= threshold
    if clears:
        return Extrapolation("already there")
    if len(pts) < 3:
        return Extrapolation("too few points", note="an extrapolation needs three or more training-set sizes")
    z = NormalDist().inv_cdf(1 - (1 - confidence) / 2)
    ns = np.array([p.n_train for p in pts], dtype=float)
    ys = np.array([p.value for p in pts], dtype=float)
    se = np.array([max((p.hi - p.lo) / (2 * z), 1e-9) if math.isfinite(p.hi - p.lo) else 1.0 for p in pts])
    if not higher_is_better:
        ys = -ys
    central = _fit(ns, ys, se)
    rng = np.random.default_rng(seed)
    reach: list[float] = []
    for _ in range(N_REFITS):
        fit = _fit(ns, ys + rng.normal(0.0, se), se)
        n = _needed(fit, threshold if higher_is_better else -threshold, True) if fit else None
        if n is not None and n <= MAX_FACTOR * ns.max():
            reach.append(max(n, float(ns.max())))
    share = len(reach) / N_REFITS
    params = dict(zip("abc", central)) if central else {}
    if share < 0.5:
        return Extrapolation("not reachable", reach_share=share, params=params)
    lo, mid, hi = np.quantile(reach, [0.1, 0.5, 0.9])
    return Extrapolation("extrapolated", float(mid), (float(lo), float(hi)), share, params=params)


def curve_groups(store: "Store", goal: Any, run_id: str) -> dict[str, list[dict[str, Any]]]:
    """{sweep name: [{candidate, fraction}]} for training sweeps over ``train_fraction`` with two
    or more fractions in the run."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for cand in goal.candidates:
        frac = cand.options.get("train_fraction") if hasattr(cand, "options") else None
        if frac is None:
            continue
        groups.setdefault(getattr(cand, "sweep_of", None) or cand.name, []).append(
            {"candidate": cand.name, "fraction": float(frac)})
    run_cands = set(store.candidate_names(run_id))
    return {g: sorted((m for m in ms if m["candidate"] in run_cands), key=lambda m: m["fraction"])
            for g, ms in groups.items() if len({m["fraction"] for m in ms if m["candidate"] in run_cands}) >= 2}


def _train_sizes(store: "Store", goal: Any, fractions: Sequence[float]) -> dict[float, int]:
    """Training examples at each fraction, from the goal's stored train split (stratified by
    class when the run treats the goal as classification, as training did)."""
    from types import SimpleNamespace

    from harness.data.split import nested_subset
    from harness.runner.context import is_classification

    rows = [SimpleNamespace(id=r["example_id"], label=r["label"], reference=r["reference"], split=r["split"],
                            format="label" if r["label"] is not None else "chat") for r in store.examples_of(goal.goal)]
    classification = is_classification(goal, rows)
    train = [r for r in rows if r.split == "train"]
    return {f: len(nested_subset(train, f, goal.data.split.seed, classification)) for f in fractions}


def curve_data(store: "Store", goal: Any, res: dict[str, Any]) -> list[dict[str, Any]]:
    """Per sweep over ``train_fraction`` and absolute criterion: the points (metric with its
    interval at each training-set size), the threshold and the extrapolation. The report and
    the app's Training page both draw these."""
    groups = curve_groups(store, goal, res["run"]["id"])
    by_name = {c["name"]: c for c in res["candidates"]}
    out = []
    for group, members in groups.items():
        sizes = _train_sizes(store, goal, [m["fraction"] for m in members])
        for crit in goal.success:
            if crit.relative_op:
                continue
            points = []
            for m in members:
                metric = by_name.get(m["candidate"], {}).get("metrics", {}).get(crit.metric)
                if metric and metric["value"] is not None:
                    lo, hi = (math.nan if x is None else x for x in metric["ci"])
                    points.append(CurvePoint(m["candidate"], m["fraction"], sizes.get(m["fraction"]) or 0,
                                             metric["value"], lo, hi))
            if len(points) < 2:
                continue
            ext = extrapolate(points, crit.threshold, higher_is_better=crit.op == "at_least",
                              confidence=goal.confidence)
            out.append({"group": group, "metric": crit.metric, "op": crit.op, "threshold": crit.threshold,
                        "points": points, "extrapolation": ext})
    return out


def curve_section(store: "Store", goal: Any, res: dict[str, Any]) -> list[str]:
    """Markdown lines for the report: the curve's table per sweep and criterion, and the
    extrapolation."""
    curves = curve_data(store, goal, res)
    if not curves:
        return []
    lines = ["", "## Data-size curve", ""]
    for c in curves:
        sign = ">=" if c["op"] == "at_least" else "<="
        lines += [f"**{c['group']}**, {c['metric']} (needs {sign} {c['threshold']:g}):", "",
                  "| candidate | share of train | training examples | value [interval] |", "|---|---|---|---|"]
        lines += [f"| {p.candidate} | {p.fraction:.0%} | {p.n_train} | {p.value:.3g} [{p.lo:.3g}, {p.hi:.3g}] |"
                  for p in c["points"]]
        lines += ["", f"To reach the threshold: {c['extrapolation'].describe()}.", ""]
    return lines


__all__ = ["CurvePoint", "Extrapolation", "curve_data", "curve_groups", "curve_section", "extrapolate"]
