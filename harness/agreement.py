"""Agreement statistics: between human raters, and between a judge and the humans.

Pure numpy/scipy. Each function matches a reference implementation to 1e-9 (see
``tests/test_agreement.py``): :func:`cohen_kappa` ↔ ``sklearn.metrics.cohen_kappa_score``,
:func:`spearman` ↔ ``scipy.stats.spearmanr``, :func:`krippendorff_alpha` ↔ the
``krippendorff`` package; :func:`fleiss_kappa` follows Fleiss (1971).

Judge-vs-human agreement pairs, per (candidate, example), the judge's score with the mean
human score. Kappa, exact and within-one agreement are read on the 1-5 scale after
rounding both to the nearest level (half up); Spearman uses the raw values.
"""
from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Mapping, Sequence

import numpy as np

from harness.errors import HarnessError

if TYPE_CHECKING:
    from harness.store import Store

SCALE = (1, 2, 3, 4, 5)


# --------------------------------------------------------------------------- pairwise stats

def cohen_kappa(a: Sequence[Any], b: Sequence[Any], *, labels: Sequence[Any] | None = None,
                weights: str | None = None) -> float:
    """Cohen's kappa of two raters over the same items (``weights``: None, linear, quadratic).

    Weights are on label positions, as in scikit-learn; ``labels`` default to the sorted
    union of the values seen.
    """
    if len(a) != len(b):
        raise ValueError(f"cohen_kappa needs two equally long lists, got {len(a)} and {len(b)}")
    if labels is None:
        labels = sorted(set(a) | set(b))
    index = {lab: i for i, lab in enumerate(labels)}
    k = len(labels)
    confusion = np.zeros((k, k), dtype=float)
    for x, y in zip(a, b):
        if x in index and y in index:  # as sklearn: pairs outside `labels` are ignored
            confusion[index[x], index[y]] += 1
    total = confusion.sum()
    if total == 0:
        return math.nan
    expected = np.outer(confusion.sum(axis=1), confusion.sum(axis=0)) / total
    if weights is None:
        w = 1.0 - np.eye(k)
    elif weights in ("linear", "quadratic"):
        pos = np.arange(k)
        w = np.abs(pos[:, None] - pos[None, :]).astype(float)
        if weights == "quadratic":
            w = w ** 2
    else:
        raise ValueError(f"unknown weights {weights!r}; use None, 'linear' or 'quadratic'")
    denom = float((w * expected).sum())
    if denom == 0:
        return math.nan
    return float(1.0 - (w * confusion).sum() / denom)


def _ranks(x: np.ndarray) -> np.ndarray:
    from scipy.stats import rankdata

    return rankdata(x, method="average")


def spearman(x: Sequence[float], y: Sequence[float]) -> float:
    """Spearman's rho: Pearson's correlation of the average ranks (nan when a side is constant)."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError("spearman needs two equally long 1-D sequences")
    if x.size < 2:
        return math.nan
    rx, ry = _ranks(x), _ranks(y)
    rx, ry = rx - rx.mean(), ry - ry.mean()
    denom = math.sqrt(float((rx * rx).sum()) * float((ry * ry).sum()))
    if denom == 0:
        return math.nan
    return float((rx * ry).sum() / denom)


def exact_agreement(a: Sequence[float], b: Sequence[float]) -> float:
    """Share of items where both give the same value."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    return float(np.mean(a == b)) if a.size else math.nan


def within_one(a: Sequence[float], b: Sequence[float]) -> float:
    """Share of items where the two values differ by at most one level."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    return float(np.mean(np.abs(a - b) <= 1 + 1e-12)) if a.size else math.nan


def to_level(x: float) -> int:
    """Nearest scale level, halves rounded up (3.5 → 4), clipped to 1..5."""
    return int(min(max(math.floor(float(x) + 0.5), SCALE[0]), SCALE[-1]))


# --------------------------------------------------------------------------- many raters

def krippendorff_alpha(reliability_data: Sequence[Sequence[float]], *, level: str = "ordinal",
                       value_domain: Sequence[float] | None = None) -> float:
    """Krippendorff's alpha; rows are raters, columns items, ``nan`` where a rater did not rate.

    ``level``: nominal, ordinal or interval. ``value_domain`` defaults to the values seen
    (for ordinal data, values that nobody used change nothing).
    """
    data = np.asarray(reliability_data, dtype=float)
    if data.ndim != 2:
        raise ValueError("reliability data must be a raters x items matrix")
    seen = np.unique(data[~np.isnan(data)])
    domain = np.asarray(sorted(value_domain) if value_domain is not None else seen, dtype=float)
    if len(domain) <= 1:
        return math.nan
    # counts[u, v]: how many raters gave item u the value domain[v]
    counts = (data.T[:, :, None] == domain[None, None, :]).sum(axis=1).astype(float)
    m_u = counts.sum(axis=1)
    pairable = m_u >= 2
    if not pairable.any():
        return math.nan
    counts, m_u = counts[pairable], m_u[pairable]
    # Coincidence matrix: o[c, k] = sum_u n_uc * (n_uk - [c == k]) / (m_u - 1)
    o = np.einsum("uc,uk->ck", counts / (m_u - 1)[:, None], counts) - np.diag((counts / (m_u - 1)[:, None]).sum(axis=0))
    n_v = o.sum(axis=0)
    n = n_v.sum()
    e = (np.outer(n_v, n_v) - np.diag(n_v)) / (n - 1)
    d = _distance(domain, n_v, level)
    denom = float((e * d).sum())
    if denom == 0:
        return math.nan
    return float(1.0 - (o * d).sum() / denom)


def _distance(domain: np.ndarray, n_v: np.ndarray, level: str) -> np.ndarray:
    if level == "nominal":
        return 1.0 - np.eye(len(domain))
    if level == "interval":
        return (domain[:, None] - domain[None, :]) ** 2
    if level == "ordinal":
        # d(c, k) = (sum of n_g for g between c and k inclusive - (n_c + n_k) / 2) ** 2
        cum = np.concatenate([[0.0], np.cumsum(n_v)])
        lo = np.minimum.outer(np.arange(len(domain)), np.arange(len(domain)))
        hi = np.maximum.outer(np.arange(len(domain)), np.arange(len(domain)))
        between = cum[hi + 1] - cum[lo]
        return (between - (n_v[:, None] + n_v[None, :]) / 2.0) ** 2
    raise ValueError(f"unknown level of measurement {level!r}; use nominal, ordinal or interval")


def fleiss_kappa(counts: Sequence[Sequence[int]]) -> float:
    """Fleiss' kappa from an items x categories table of counts; every item needs the same
    number of raters (at least two)."""
    table = np.asarray(counts, dtype=float)
    if table.ndim != 2 or table.shape[0] == 0:
        raise ValueError("fleiss_kappa needs an items x categories table")
    per_item = table.sum(axis=1)
    if not np.allclose(per_item, per_item[0]) or per_item[0] < 2:
        raise ValueError("fleiss_kappa needs the same number (>= 2) of raters on every item")
    n, big_n = per_item[0], table.shape[0]
    p_j = table.sum(axis=0) / (big_n * n)
    p_i = ((table * table).sum(axis=1) - n) / (n * (n - 1))
    p_bar, p_e = p_i.mean(), float((p_j * p_j).sum())
    if p_e == 1:
        return math.nan
    return float((p_bar - p_e) / (1 - p_e))


# --------------------------------------------------------------------------- summaries

@dataclass
class InterRater:
    """Agreement among human raters on one criterion."""

    criterion: str
    n_items: int            # items rated by at least two raters
    n_raters: int
    n_ratings: int
    alpha: float            # Krippendorff's alpha (ordinal)
    kappa: float            # Cohen's (two raters) or Fleiss' (more), on items all of them rated
    kappa_kind: str         # "cohen" | "fleiss" | ""
    kappa_n: int
    alpha_ci: tuple[float, float] = (math.nan, math.nan)  # 95% item-bootstrap interval (with interval=True)
    kappa_ci: tuple[float, float] = (math.nan, math.nan)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


# Fewer items rated by two or more raters than this, and alpha and kappa say little: the app
# warns beside them (their bootstrap intervals show how little).
MIN_AGREEMENT_ITEMS = 10
BOOTSTRAP_RESAMPLES = 1000


def item_bootstrap(stat: Any, n: int, *, confidence: float = 0.95, resamples: int = BOOTSTRAP_RESAMPLES,
                   seed: int = 0) -> tuple[float, float]:
    """Percentile interval of ``stat(indices)`` over ``n`` items resampled with replacement
    (seeded, so the same ratings give the same interval). (nan, nan) below two items, or when
    most resamples leave the statistic undefined (nothing varies)."""
    if n < 2:
        return math.nan, math.nan
    rng = np.random.default_rng(seed)
    values = [v for v in (stat(rng.integers(0, n, n)) for _ in range(resamples)) if not math.isnan(v)]
    if len(values) < resamples / 2:
        return math.nan, math.nan
    tail = (1 - confidence) / 2
    return float(np.quantile(values, tail)), float(np.quantile(values, 1 - tail))


def inter_rater(ratings: Iterable[Mapping[str, Any]], criterion: str, *, level: str = "ordinal",
                value_domain: Sequence[float] | None = SCALE, interval: bool = False) -> InterRater:
    """Agreement among raters from rating rows (``rater``, ``item_id``, ``score`` or ``choice``).

    Pointwise scores use ordinal alpha; pairwise choices (A/B/tie) nominal alpha. With
    ``interval``, each comes with its 95% bootstrap interval over items (:func:`item_bootstrap`).
    """
    cells: dict[tuple[str, str], Any] = {}
    for r in ratings:
        value = r.get("score")
        if value is None:
            value = r.get("choice")
        if value is not None:
            cells[(str(r["rater"]), str(r["item_id"]))] = value
    raters = sorted({k[0] for k in cells})
    items = sorted({k[1] for k in cells})
    nominal = any(isinstance(v, str) for v in cells.values())
    if nominal:
        codes = {c: i for i, c in enumerate(sorted({str(v) for v in cells.values()}))}
        cells = {k: float(codes[str(v)]) for k, v in cells.items()}
        level, value_domain = "nominal", None
    by_item: dict[str, dict[str, float]] = defaultdict(dict)
    for (rater, item), v in cells.items():
        by_item[item][rater] = float(v)
    multi = [i for i in items if len(by_item[i]) >= 2]
    alpha, alpha_ci = math.nan, (math.nan, math.nan)
    if multi and len(raters) >= 2:
        matrix = np.full((len(raters), len(multi)), np.nan)
        for j, item in enumerate(multi):
            for i, rater in enumerate(raters):
                matrix[i, j] = by_item[item].get(rater, np.nan)
        alpha = krippendorff_alpha(matrix, level=level, value_domain=value_domain)
        if interval:
            alpha_ci = item_bootstrap(lambda idx: krippendorff_alpha(matrix[:, idx], level=level,
                                                                     value_domain=value_domain), len(multi))
    kind, kn, kappa_of = _kappa_for(by_item, multi, raters, value_domain, nominal)
    kappa = kappa_of(np.arange(kn)) if kn else math.nan
    kappa_ci = item_bootstrap(kappa_of, kn) if interval and kn else (math.nan, math.nan)
    return InterRater(criterion, len(multi), len(raters), len(cells), alpha, kappa, kind, kn, alpha_ci, kappa_ci)


def _kappa_for(by_item: Mapping[str, Mapping[str, float]], multi: list[str], raters: list[str],
               value_domain: Sequence[float] | None, nominal: bool) -> tuple[str, int, Any]:
    """(kind, the items it rests on, kappa of a subset of those items by index)."""
    if len(raters) == 2:
        both = [i for i in multi if len(by_item[i]) == 2]
        a = np.asarray([by_item[i][raters[0]] for i in both])
        b = np.asarray([by_item[i][raters[1]] for i in both])
        labels = None if nominal or value_domain is None else [float(v) for v in value_domain]
        return "cohen", len(both), lambda idx: cohen_kappa(list(a[idx]), list(b[idx]), labels=labels)
    if len(raters) > 2 and multi:
        # Fleiss needs a constant number of ratings per item: use the most common count.
        sizes = [len(by_item[i]) for i in multi]
        m = max(set(sizes), key=lambda s: (sizes.count(s), s))
        chosen = [i for i in multi if len(by_item[i]) == m]
        cats = sorted({v for i in chosen for v in by_item[i].values()})
        index = {c: j for j, c in enumerate(cats)}
        table = np.zeros((len(chosen), max(len(cats), 1)))
        for row, i in enumerate(chosen):
            for v in by_item[i].values():
                table[row, index[v]] += 1
        return "fleiss", len(chosen), lambda idx: fleiss_kappa(table[idx])
    return "", 0, None


@dataclass
class JudgeHuman:
    """Agreement between a judge and the mean human score on one criterion."""

    criterion: str
    n: int
    spearman: float
    kappa: float          # quadratic-weighted Cohen's kappa on rounded 1-5 levels
    exact: float
    within_one: float
    trusted: bool | None  # None: too few pairs to say
    kappa_ci: tuple[float, float] = (math.nan, math.nan)  # 95% bootstrap over the pairs (interval=True)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def judge_vs_human(judge: Mapping[Any, float], human: Mapping[Any, float], criterion: str, *,
                   threshold: float, min_n: int = 5, interval: bool = False) -> JudgeHuman:
    """Agreement on the keys (e.g. (candidate, example_id)) both sides scored.

    The judge is untrusted when its kappa with the humans falls below ``threshold``
    (with at least ``min_n`` pairs; fewer pairs say nothing either way).
    """
    keys = sorted((k for k in judge if k in human and judge[k] is not None and human[k] is not None), key=str)
    j = [float(judge[k]) for k in keys]
    h = [float(human[k]) for k in keys]
    n = len(keys)
    if n == 0:
        return JudgeHuman(criterion, 0, math.nan, math.nan, math.nan, math.nan, None)
    jl, hl = [to_level(x) for x in j], [to_level(x) for x in h]
    kappa = cohen_kappa(jl, hl, labels=list(SCALE), weights="quadratic")
    rho = spearman(j, h)
    trusted: bool | None = None
    if n >= min_n:
        trusted = not (math.isnan(kappa) or kappa < threshold)
    ci = (math.nan, math.nan)
    if interval:
        ja, ha = np.asarray(jl), np.asarray(hl)
        ci = item_bootstrap(lambda idx: cohen_kappa(list(ja[idx]), list(ha[idx]), labels=list(SCALE),
                                                    weights="quadratic"), n)
    return JudgeHuman(criterion, n, rho, kappa, exact_agreement(jl, hl), within_one(jl, hl), trusted, ci)


# --------------------------------------------------------------------------- the panel's report

def criteria_of(rubric_name: str, rubrics_dir: Path, ratings: Sequence[dict[str, Any]]) -> list[str]:
    try:
        from harness.judge.rubric import load_rubric

        return load_rubric(rubric_name, rubrics_dir).criterion_names
    except HarnessError:
        return sorted({r["criterion"] for r in ratings})


def panel_report(store: Store, goal: Any, rubrics_dir: Path, *, intervals: bool = False) -> dict[str, Any]:
    """Inter-rater and judge-vs-human agreement for every rubric of the goal's panel (with
    ``intervals``, each alpha and kappa with its 95% bootstrap interval)."""
    from harness import panel

    items = panel.goal_items(store, goal)
    ratings = store.ratings(goal.goal)
    threshold = goal.human.agreement_threshold if goal.human else 0.4
    inter, versus = [], []
    for rubric in sorted({it.rubric for it in items}):
        ids = {it.item_id for it in items if it.rubric == rubric}
        rub_ratings = [r for r in ratings if r["item_id"] in ids]
        run_ids = sorted({it.run_id for it in items if it.rubric == rubric})
        for crit in criteria_of(rubric, rubrics_dir, rub_ratings):
            rows = [r for r in rub_ratings if r["criterion"] == crit]
            ir = inter_rater(rows, crit, interval=intervals)
            inter.append({"rubric": rubric, **ir.as_dict()})
            if any(it.mode == panel.PAIRWISE for it in items if it.rubric == rubric):
                continue  # judge-vs-human is measured on pointwise scores
            human = {(c, e): v for c, per in panel.human_scores(rows, items, rubric, crit).items() for e, v in per.items()}
            jh = judge_vs_human(store.judge_scores(run_ids, rubric, crit), human, crit, threshold=threshold,
                                interval=intervals)
            versus.append({"rubric": rubric, **jh.as_dict()})
    return {"inter_rater": inter, "judge_vs_human": versus, "threshold": threshold,
            "n_ratings": len(ratings), "n_items": len(items)}


def untrusted_metrics(report: dict[str, Any]) -> set[str]:
    """``judge.<rubric>.<criterion>`` (and ``judge.<rubric>``) whose judge the humans disagree with."""
    out: set[str] = set()
    for row in report.get("judge_vs_human", []):
        if row["trusted"] is False:
            out.add(f"judge.{row['rubric']}.{row['criterion']}")
            out.add(f"judge.{row['rubric']}")
    return out
