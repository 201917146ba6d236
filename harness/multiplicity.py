"""Many candidates, one goal: the error rate of "some candidate meets the goal".

Within a candidate every criterion must pass (an intersection–union test), which needs no
correction. Across candidates it does: with eight candidates none of which meets the goal,
eight chances at a 2.5% false pass add up. The goal's ``multiplicity`` key chooses:

* ``holm`` (default): Holm's step-down over the goal's candidates (sweeps included). The
  candidates are decided at level ``alpha / m`` with ``m`` the candidates still undecided;
  those that meet the goal leave the family and the rest are decided again at the larger
  level, until no more meet it. Never less powerful than Bonferroni, same guarantee.
* ``bonferroni``: every candidate at ``alpha / K``.
* ``none``: every candidate at the goal's confidence (say so when you report it).

``alpha = 1 - confidence`` is split as the two-sided intervals split it, so with one
candidate nothing changes, and "some candidate meets the goal when none does" stays at most
``(1 - confidence) / 2`` whatever K is (measured in ``bench/bench_validity.py``).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Callable, Mapping, Sequence

if TYPE_CHECKING:
    from harness.verdict import Verdict

RULES = ("holm", "bonferroni", "none")

Decide = Callable[[str, float, str], "list[Verdict]"]


def level(confidence: float, family: int) -> float:
    """The two-sided confidence of each interval when ``family`` hypotheses share the error."""
    return 1 - (1 - confidence) / max(family, 1)


def label(rule: str, family: int) -> str:
    if rule == "none" or family <= 1:
        return "no multiplicity correction" if rule == "none" else "one candidate: no correction needed"
    if rule == "bonferroni":
        return f"Bonferroni over {family} candidates"
    return f"Holm over {family} candidates"


def decide_family(candidates: Sequence[str], decide: Decide, confidence: float, rule: str,
                  family: int) -> dict[str, "list[Verdict]"]:
    """Every candidate's verdicts, at the confidence ``rule`` allows it.

    ``decide(candidate, confidence, label)`` judges one candidate's criteria; ``family`` is the
    number of candidates the goal declares (a run of some of them still pays for all).
    """
    from harness.verdict import meets_goal

    if rule not in RULES:
        raise ValueError(f"unknown multiplicity rule {rule!r}; use one of {', '.join(RULES)}")
    if rule == "none" or family <= 1:
        return {c: decide(c, confidence, label(rule, family)) for c in candidates}
    if rule == "bonferroni":
        conf = level(confidence, family)
        return {c: decide(c, conf, label(rule, family)) for c in candidates}
    out: dict[str, list[Verdict]] = {}
    remaining = list(candidates)
    m = family
    while remaining:
        conf = level(confidence, m)
        trial = {c: decide(c, conf, label(rule, family)) for c in remaining}
        winners = [c for c in remaining if meets_goal(trial[c])]
        if not winners:
            out.update(trial)
            break
        out.update({c: trial[c] for c in winners})
        remaining = [c for c in remaining if c not in winners]
        m -= len(winners)  # candidates of the family outside this run stay in it: m never below them
    return {c: out[c] for c in candidates}


def family_size(goal_candidates: Sequence[object], results: Mapping[str, object]) -> int:
    """The family is the goal's candidates, or more if a run judges extra ones."""
    return max(len(goal_candidates), len(results))


__all__ = ["RULES", "decide_family", "family_size", "label", "level"]
