"""Success criteria -> pass / fail / inconclusive.

* ``at_least t``: pass if the CI's low bound >= t, fail if its high bound < t.
* ``at_most t``: pass if the high bound <= t, fail if the low bound > t.
* ``reduce_by`` / ``improve_by`` against a named baseline, judged on the *paired* CI
  (same examples, same resamples), never by comparing two separate intervals:
  ``reduce_by: 80%`` means r = 1 - cand/base >= 0.8; ``reduce_by: 0.1`` means
  base - cand >= 0.1; ``improve_by: 20%`` means cand/base - 1 >= 0.2; ``improve_by: 0.1``
  means cand - base >= 0.1. The direction comes from the criterion, not the metric.

Each verdict names the interval it rests on (``harness.intervals``: Clopper–Pearson for
proportions, the SCAS paired score and paired ratio score intervals for paired ones, PPI++ for
a judge with human ratings, a two-way random-effects interval for a human panel, studentised
bootstraps from ``MIN_N`` examples for the rest, paired ones resampling whole pairs), the two-sided confidence it used, and the multiplicity rule that set that confidence
(``harness.multiplicity``). An inconclusive verdict says how many test examples in total would
settle it with 80% power if the estimate is the truth — for a proportion by exact binomial power
of the Clopper–Pearson interval (the power at that n is at least 80%), for the other types by a
normal approximation (the interval's half-width shrinking like 1/sqrt(n)), and it says which —
or, when the estimate sits on the threshold, what distance from it 10x the data would resolve;
where there is no interval yet (fewer than ``intervals.MIN_N`` examples) that at least that many
are needed. ``n`` is the number of examples the value rests on: judged, not asked, when
judgments failed. ``judge_validated`` says whether a judge criterion's judge was checked against
human ratings and agreed with them (True), was not checked or disagreed (False), or the
criterion is not a judge's (None).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping, Sequence

from harness.errors import InputError, Problem

PASS, FAIL, INCONCLUSIVE = "pass", "fail", "inconclusive"
CRITERIA = ("at_least", "at_most", "reduce_by", "improve_by")


@dataclass
class Verdict:
    """One criterion's outcome. ``value``/``ci`` are in the criterion's units: the metric
    itself for absolute criteria, the achieved change (relative or absolute) for
    ``reduce_by``/``improve_by``."""

    metric: str
    status: str
    value: float
    ci: tuple[float, float]
    threshold: float
    baseline: str | None = None
    needed_n: int | None = None
    detail: str = ""
    op: str = "at_least"           # at_least | at_most | reduce_by | improve_by
    relative: bool = False
    interval: str = ""             # the method behind ``ci`` (harness.intervals)
    confidence: float | None = None  # the two-sided level of ``ci`` after any multiplicity adjustment
    multiplicity: str = ""         # the rule that set ``confidence`` ("holm over 4 candidates", "none")
    n: int | None = None           # the examples the value rests on (judged, not asked)
    judge_validated: bool | None = None  # judge criteria: agreed with human ratings (True), else False; None: no judge

    @property
    def margin(self) -> float:
        """How far the estimate clears the threshold in the good direction, relative to
        the threshold when it is non-zero (so criteria on different scales compare)."""
        raw = self.threshold - self.value if self.op == "at_most" else self.value - self.threshold
        return raw / abs(self.threshold) if self.threshold else raw


def parse_amount(amount: float | int | str, field: str = "amount") -> tuple[float, bool]:
    """``"80%"`` -> (0.8, True); ``0.1`` or ``"0.1"`` -> (0.1, False)."""
    if isinstance(amount, bool):
        raise InputError(Problem("<goal>", None, field, f"expected a number or a percentage, got {amount!r}"))
    if isinstance(amount, (int, float)):
        value, relative = float(amount), False
    elif isinstance(amount, str):
        text = amount.strip()
        relative = text.endswith("%")
        try:
            value = float(text[:-1].strip() if relative else text)
        except ValueError:
            raise InputError(Problem("<goal>", None, field,
                                     f"expected a number or a percentage like '80%', got {amount!r}")) from None
        if relative:
            value /= 100.0
    else:
        raise InputError(Problem("<goal>", None, field, f"expected a number or a percentage, got {amount!r}"))
    if not math.isfinite(value):
        raise InputError(Problem("<goal>", None, field, f"{amount!r} is not a finite number"))
    return value, relative


def _status(ci: tuple[float, float], threshold: float, upper: bool) -> str:
    """upper=False: need value >= threshold; upper=True: need value <= threshold."""
    lo, hi = ci
    if any(math.isnan(x) for x in ci):
        return INCONCLUSIVE
    if not upper:
        return PASS if lo >= threshold else FAIL if hi < threshold else INCONCLUSIVE
    return PASS if hi <= threshold else FAIL if lo > threshold else INCONCLUSIVE


def _needed(status: str, n: int | None, value: float, ci: tuple[float, float], threshold: float,
            confidence: float, proportion: bool = False) -> int | None:
    if status != INCONCLUSIVE or not n:
        return None
    from harness.stats import required_n_from_ci, required_n_proportion

    if proportion:
        return required_n_proportion(value, threshold, confidence, start=n + 1)
    return required_n_from_ci(n, value, ci, threshold, confidence)


def _settle_note(status: str, n: int | None, needed: int | None, value: float, ci: tuple[float, float],
                 confidence: float, unit=None, proportion: bool = False) -> str:
    """What more data would do for an inconclusive verdict (``"; ..."`` or empty)."""
    from harness.stats import POWER, resolvable_distance

    if status != INCONCLUSIVE or not n:
        return ""
    how = "exact binomial power" if proportion else "by a normal approximation"
    if needed:
        return f"; about {needed} test examples in total would settle it ({POWER:.0%} power, {how})"
    far = resolvable_distance(n, value, ci, 10.0, confidence)
    if far is None:
        return ""
    fmt = unit or _fmt
    return (f"; the estimate sits on the threshold: with 10x the data ({10 * n} examples) a true distance of "
            f"{fmt(far)} from it would be resolved ({POWER:.0%} power, by a normal approximation)")


def _no_interval_note(status: str, n: int | None, method: str) -> tuple[int | None, str]:
    """An undecided criterion with no interval: ("n needed", what to say). Below ``MIN_N``
    examples at least that many are needed before any interval; with no spread, examples that
    vary. How many would then settle it depends on what they show."""
    from harness.intervals import MIN_N, NO_SPREAD, TOO_FEW

    if status != INCONCLUSIVE:
        return None, ""
    if method == TOO_FEW and n is not None and n < MIN_N:
        return MIN_N, f"; at least {MIN_N} test examples are needed before an interval can decide"
    if method == NO_SPREAD:
        return None, f"; examples that differ (at least {MIN_N} in all) are needed before an interval can decide"
    return None, ""


def _fmt(x: float) -> str:
    return f"{x:.4g}"


def judge_absolute(metric: str, value: float, ci: tuple[float, float], op: str, threshold: float,
                   n: int | None = None, interval: str = "", note: str = "", confidence: float = 0.95) -> Verdict:
    """``at_least`` / ``at_most`` on a metric with CI ``ci`` over ``n`` test examples (a
    proportion's ``interval`` is Clopper–Pearson, whose "n needed" is exact)."""
    if op not in ("at_least", "at_most"):
        raise InputError(Problem("<goal>", None, "op", f"{op!r} is not an absolute criterion"))
    upper = op == "at_most"
    status = _status(ci, threshold, upper)
    sign = "<=" if upper else ">="
    detail = f"{metric} = {_fmt(value)} [{_fmt(ci[0])}, {_fmt(ci[1])}], needs {sign} {_fmt(threshold)}"
    if note:
        needed, more = _no_interval_note(status, n, interval)
        detail += f"; no interval: {note}{more}"
    else:
        from harness.intervals import CLOPPER_PEARSON

        proportion = interval == CLOPPER_PEARSON
        needed = _needed(status, n, value, ci, threshold, confidence, proportion)
        detail += _settle_note(status, n, needed, value, ci, confidence, proportion=proportion)
    return Verdict(metric, status, value, ci, threshold, None, needed, detail, op, False, interval, n=n)


def judge_relative(metric: str, paired, op: str, amount: float | str, baseline: str,
                   n: int | None = None, confidence: float = 0.95) -> Verdict:
    """``reduce_by`` / ``improve_by`` from a :class:`harness.intervals.PairedInterval`."""
    if op not in ("reduce_by", "improve_by"):
        raise InputError(Problem("<goal>", None, "op", f"{op!r} is not a relative criterion"))
    target, relative = parse_amount(amount, op)
    n = n if n is not None else paired.n
    if relative:
        if paired.base_value == 0:
            return Verdict(metric, INCONCLUSIVE, float("nan"), (float("nan"), float("nan")), target, baseline,
                           None, f"baseline {baseline!r} scores 0 on {metric}; a relative change is undefined",
                           op, True)
        lo, hi = paired.ratio_ci
        method = getattr(paired, "ratio_method", "")
        if op == "reduce_by":
            value, ci = 1 - paired.ratio, (1 - hi, 1 - lo)
        else:
            value, ci = paired.ratio - 1, (lo - 1, hi - 1)
    else:
        lo, hi = paired.diff_ci
        method = getattr(paired, "method", "")
        if op == "reduce_by":
            value, ci = -paired.diff, (-hi, -lo)
        else:
            value, ci = paired.diff, (lo, hi)
    status = _status(ci, target, upper=False)
    unit = (lambda x: f"{x * 100:.3g}%") if relative else _fmt
    verb = "reduction" if op == "reduce_by" else "improvement"
    detail = (f"{metric}: {_fmt(paired.cand_value)} vs {baseline} {_fmt(paired.base_value)}; "
              f"paired {verb} {unit(value)} [{unit(ci[0])}, {unit(ci[1])}], needs >= {unit(target)}")
    note = getattr(paired, "note", "")
    needed = None
    if note or any(math.isnan(x) for x in ci):
        needed, more = _no_interval_note(status, n, method) if note else (None, "")
        detail += f"; no interval: {note or 'the ratio is unbounded'}{more}"
    else:
        needed = _needed(status, n, value, ci, target, confidence)
        detail += _settle_note(status, n, needed, value, ci, confidence, unit)
    return Verdict(metric, status, value, ci, target, baseline, needed, detail, op, relative, method, n=n)


def criterion_of(criterion: Mapping) -> tuple[str, float | str]:
    """The one of at_least / at_most / reduce_by / improve_by a criterion mapping sets."""
    given = [k for k in CRITERIA if criterion.get(k) is not None]
    if len(given) != 1:
        raise InputError(Problem("<goal>", None, "success",
                                 f"a criterion needs exactly one of {', '.join(CRITERIA)}; got {given or 'none'}"))
    return given[0], criterion[given[0]]


def judge_criterion(metric: str, op: str, amount: float | str, cand, base=None,
                    baseline: str | None = None, confidence: float = 0.95, n_resamples: int = 2000,
                    seed: int = 0, multiplicity: str = "") -> Verdict:
    """Judge one criterion from MetricResults (or per-example value arrays).

    Absolute criteria need ``cand``; relative ones also ``base`` (the baseline's result
    on the same examples) and its ``baseline`` name.
    """
    from harness import intervals, stats

    if op in ("at_least", "at_most"):
        threshold, relative = parse_amount(amount, op)
        if relative:
            raise InputError(Problem("<goal>", None, op,
                                     f"{op} takes a number, not a percentage ({amount!r})"))
        res = stats._as_result(cand)
        found = intervals.interval(res, confidence, n_resamples, seed)
        value = res.recompute() if found.estimate is None else found.estimate
        # n: the examples the value rests on (judged, not asked: failed judgments are not among them)
        verdict = judge_absolute(metric, value, found.ci, op, threshold, intervals.n_used(res), found.method,
                                 found.note, confidence)
        _no_missing_it(verdict, res, op, threshold)
    elif op in ("reduce_by", "improve_by"):
        if base is None or not baseline:
            raise InputError(Problem("<goal>", None, "baseline", f"{op} needs a baseline candidate"))
        verdict = judge_relative(metric, intervals.paired(cand, base, confidence, n_resamples, seed), op, amount,
                                 baseline, confidence=confidence)
    else:
        raise InputError(Problem("<goal>", None, "criterion",
                                 f"unknown criterion {op!r}; use one of {', '.join(CRITERIA)}"))
    verdict.confidence, verdict.multiplicity = confidence, multiplicity
    verdict.detail += f" ({verdict.interval}, {_pct(confidence)} two-sided" + (f"; {multiplicity})" if multiplicity
                                                                                else ")")
    return verdict


def percent_hint(threshold: float, hi: float) -> str:
    """`` (for 5% write 0.05)`` where a threshold past a 0–1 scale's top reads as a percentage."""
    return f" (for {threshold:g}% write {threshold / 100:g})" if hi <= 1 < threshold <= 100 else ""


def _no_missing_it(verdict: Verdict, res, op: str, threshold: float) -> None:
    """A threshold the metric cannot miss (``at_most: 5`` on a 0–1 share, meant as 5%;
    ``at_least: 0.8`` on a 1–5 rating, meant as 80%) is no goal: a pass on it says nothing, so
    it is not decided, saying why. The scale is the metric's known bounds (``extra["bounds"]``:
    rubric scales) or 0–1 for a proportion (every value 0 or 1)."""
    from harness import stats

    bounds = res.extra.get("bounds")
    if bounds is None and stats._binary_values(res) is not None:
        bounds = (0.0, 1.0)
    if bounds is None or len(bounds) != 2 or verdict.status != PASS:
        return
    lo, hi = float(bounds[0]), float(bounds[1])
    if (op == "at_least" and threshold <= lo) or (op == "at_most" and threshold >= hi):
        verdict.status = INCONCLUSIVE
        verdict.detail += (f"; {op} {threshold:g} cannot be missed on a {lo:g}–{hi:g} scale"
                           f"{percent_hint(threshold, hi)}: "
                           f"not a goal, not decided")


def _pct(confidence: float) -> str:
    return f"{confidence * 100:.4g}%"


def meets_goal(verdicts: Sequence[Verdict]) -> bool:
    """True when there is at least one criterion and every one passed."""
    return bool(verdicts) and all(v.status == PASS for v in verdicts)


def best_candidate(verdicts: Mapping[str, Sequence[Verdict]], costs: Mapping[str, float] | None = None) -> str | None:
    """Among candidates meeting the goal, the one with the highest mean margin
    (see :attr:`Verdict.margin`); ties go to the lower cost. None if none meets it."""
    costs = costs or {}
    ok = [(name, sum(v.margin for v in vs) / len(vs)) for name, vs in verdicts.items() if meets_goal(vs)]
    if not ok:
        return None
    return min(ok, key=lambda t: (-round(t[1], 12), costs.get(t[0], math.inf), t[0]))[0]
