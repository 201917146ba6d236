"""Criteria -> pass / fail / inconclusive, on CI bounds and paired differences."""
from __future__ import annotations

import math

import numpy as np
import pytest

from harness import stats
from harness.data.formats import make_example
from harness.errors import InputError
from harness.metrics import compute_metric
from harness.verdict import (Verdict, best_candidate, criterion_of, judge_absolute, judge_criterion,
                             meets_goal, parse_amount)


def labelled_run(n: int, correct: int):
    """n label examples, the first ``correct`` answered right, the rest wrong."""
    labels = ["billing", "shipping"]
    examples, outputs = [], []
    for i in range(n):
        truth = labels[i % 2]
        examples.append(make_example("label", [{"role": "user", "content": f"msg {i}"}], truth, label=truth))
        outputs.append(f"Category: {truth}" if i < correct else f"Category: {labels[(i + 1) % 2]}")
    return outputs, examples


def test_accuracy_at_exactly_090_on_1000_outputs():
    outputs, examples = labelled_run(1000, 900)
    acc = compute_metric("accuracy", outputs, examples)
    assert acc.value == pytest.approx(0.9)
    statuses = {t: judge_criterion("accuracy", "at_least", t, acc).status for t in (0.85, 0.90, 0.95)}
    assert statuses == {0.85: "pass", 0.90: "inconclusive", 0.95: "fail"}
    mirrored = {t: judge_criterion("accuracy", "at_most", t, acc).status for t in (0.85, 0.90, 0.95)}
    assert mirrored == {0.85: "fail", 0.90: "inconclusive", 0.95: "pass"}


def test_inconclusive_says_how_many_examples_would_settle_it():
    outputs, examples = labelled_run(300, 270)
    v = judge_criterion("accuracy", "at_least", 0.87, compute_metric("accuracy", outputs, examples))
    assert v.status == "inconclusive" and v.needed_n > 300
    assert str(v.needed_n) in v.detail
    # The same rate on somewhat more than that many examples passes (n a multiple of 10
    # keeps the rate exactly 0.9).
    n = -(-int(v.needed_n * 1.3) // 10) * 10
    outputs, examples = labelled_run(n, n * 9 // 10)
    assert judge_criterion("accuracy", "at_least", 0.87, compute_metric("accuracy", outputs, examples)).status == "pass"
    on_threshold = judge_criterion("accuracy", "at_least", 0.9, compute_metric("accuracy", *labelled_run(300, 270)))
    assert on_threshold.status == "inconclusive" and on_threshold.needed_n is None


def _paired_case():
    """Baseline scores vary a lot between examples; the candidate is 15% lower on each."""
    rng = np.random.default_rng(11)
    base = rng.uniform(0.2, 1.0, size=60)
    cand = np.clip(base * 0.85 + rng.normal(0, 0.01, size=60), 0, None)
    return cand, base


def test_relative_reduction_is_judged_on_the_paired_ratio():
    cand, base = _paired_case()
    v = judge_criterion("off_topic_score", "reduce_by", "10%", cand, base, baseline="zero-shot")
    assert v.status == "pass" and v.relative and v.baseline == "zero-shot"
    assert v.ci[0] >= 0.1 and v.value == pytest.approx(1 - cand.mean() / base.mean())
    # Two separate intervals cannot show it: they overlap, even after scaling the baseline's.
    c_lo, c_hi = stats.bootstrap_ci(cand)
    b_lo, b_hi = stats.bootstrap_ci(base)
    assert c_hi > b_lo
    assert judge_absolute("m", 1 - c_hi / b_lo, (1 - c_hi / b_lo, 1 - c_lo / b_hi), "at_least", 0.1).status != "pass"
    # And a reduction the data do not support fails.
    assert judge_criterion("m", "reduce_by", "25%", cand, base, baseline="zero-shot").status == "fail"


def test_absolute_and_improve_criteria():
    cand, base = _paired_case()
    # reduce_by 0.05 (absolute): base - cand >= 0.05; the true drop is ~0.15 * 0.6 = 0.09.
    assert judge_criterion("m", "reduce_by", 0.05, cand, base, baseline="b").status == "pass"
    assert judge_criterion("m", "reduce_by", 0.15, cand, base, baseline="b").status == "fail"
    # Improvement is the mirror: base over cand is a ~18% improvement.
    up = judge_criterion("m", "improve_by", "10%", base, cand, baseline="b")
    assert up.status == "pass" and up.value == pytest.approx(base.mean() / cand.mean() - 1)
    assert judge_criterion("m", "improve_by", 0.05, base, cand, baseline="b").status == "pass"
    assert judge_criterion("m", "improve_by", "25%", base, cand, baseline="b").status == "fail"


def test_relative_change_over_a_zero_baseline_is_inconclusive():
    v = judge_criterion("off_topic_rate", "reduce_by", "50%", np.zeros(20), np.zeros(20), baseline="b")
    assert v.status == "inconclusive" and "undefined" in v.detail


def test_parse_amount():
    assert parse_amount("80%") == (0.8, True)
    assert parse_amount(" 12.5 % ") == (0.125, True)
    assert parse_amount(0.1) == (0.1, False)
    assert parse_amount("0.1") == (0.1, False)
    for bad in ("lots", True, None, "nan%"):
        with pytest.raises(InputError):
            parse_amount(bad)
    with pytest.raises(InputError, match="not a percentage"):
        judge_criterion("m", "at_least", "80%", np.ones(5))
    with pytest.raises(InputError, match="baseline"):
        judge_criterion("m", "reduce_by", "80%", np.ones(5))


def test_criterion_of_needs_exactly_one():
    assert criterion_of({"metric": "m", "at_least": 0.5}) == ("at_least", 0.5)
    with pytest.raises(InputError):
        criterion_of({"metric": "m", "at_least": 0.5, "at_most": 0.9})
    with pytest.raises(InputError):
        criterion_of({"metric": "m"})


def _v(status: str, value: float, threshold: float, criterion: str = "at_least") -> Verdict:
    return Verdict("m", status, value, (value - 0.01, value + 0.01), threshold, op=criterion)


def test_meets_goal_and_best_candidate():
    assert meets_goal([_v("pass", 0.9, 0.8), _v("pass", 0.1, 0.2, "at_most")])
    assert not meets_goal([_v("pass", 0.9, 0.8), _v("inconclusive", 0.8, 0.8)])
    assert not meets_goal([])
    verdicts = {
        "few-shot": [_v("pass", 0.88, 0.8), _v("pass", 0.15, 0.2, "at_most")],   # margins 0.1, 0.25
        "lora": [_v("pass", 0.96, 0.8), _v("pass", 0.1, 0.2, "at_most")],        # margins 0.2, 0.5
        "gpt-4o": [_v("pass", 0.96, 0.8), _v("pass", 0.1, 0.2, "at_most")],      # same as lora
        "zero-shot": [_v("fail", 0.99, 0.8), _v("pass", 0.0, 0.2, "at_most")],   # best margins, fails
    }
    assert best_candidate(verdicts, costs={"lora": 2.0, "gpt-4o": 9.0}) == "lora"
    assert best_candidate(verdicts, costs={"lora": 9.0, "gpt-4o": 2.0}) == "gpt-4o"
    assert best_candidate({"a": [_v("fail", 0.1, 0.5)]}) is None


def test_judge_absolute_from_a_given_interval():
    v = judge_absolute("rougeL", 0.36, (0.34, 0.38), "at_least", 0.35, n=100)
    # half-width 0.02 vs gap 0.01: 400 for the bound to reach it on average, more for 80% power
    k = (1.959963984540054 + 0.8416212335729143) / 1.959963984540054
    assert v.status == "inconclusive" and v.needed_n == math.ceil(100 * (2 * k) ** 2) and "80% power" in v.detail
    assert judge_absolute("rougeL", 0.40, (0.36, 0.44), "at_most", 0.35).status == "fail"


def test_a_pass_on_a_proportion_holds_only_if_the_failed_outputs_counted_against_it_still_pass():
    """39 of 39 right passes at_least 0.9 (exact lower bound 0.910); with the 40th example's failed
    generation counted as wrong (39 of 40, lower bound 0.868) it does not: the pass becomes
    inconclusive. at_most counts a failure as a hit; a pass that survives stays a pass."""
    from types import SimpleNamespace

    from harness.intervals import clopper_pearson
    from harness.runner.scoring import _worst_case_pass
    from harness.verdict import INCONCLUSIVE, PASS, Verdict

    assert clopper_pearson(39, 39)[0] > 0.9 > clopper_pearson(39, 40)[0]
    res = SimpleNamespace(per_example=[1.0] * 39)
    v = Verdict("accuracy", PASS, 1.0, clopper_pearson(39, 39), 0.9, op="at_least", confidence=0.95)
    _worst_case_pass(v, res, 1)
    assert v.status == INCONCLUSIVE and "counting the 1 failed output(s) or judgment(s) as wrong" in v.detail
    low = Verdict("off_topic", PASS, 0.0, clopper_pearson(0, 39), 0.1, op="at_most", confidence=0.95)
    _worst_case_pass(low, SimpleNamespace(per_example=[0.0] * 39), 1)
    assert low.status == INCONCLUSIVE and "as hits" in low.detail
    easy = Verdict("accuracy", PASS, 1.0, clopper_pearson(39, 39), 0.8, op="at_least", confidence=0.95)
    _worst_case_pass(easy, res, 1)
    assert easy.status == PASS


def test_a_threshold_the_metric_cannot_miss_is_not_decided():
    """`at_most: 5` on a 0–1 share (meant as 5%) or `at_least: 0.8` on a 1–5 rating (meant as
    80%) passes whatever the outputs: not a goal, so not decided, with the units to check."""
    from harness.metrics import from_values

    every = from_values("contains", [1.0] * 100)  # every output mentions the competitor
    v = judge_criterion("contains", "at_most", 5, every)
    assert v.status == "inconclusive" and "cannot be missed on a 0–1 scale (for 5% write 0.05)" in v.detail
    assert judge_criterion("contains", "at_most", 0.05, every).status == "fail"
    ratings = from_values("judge.tone", [1.0, 2.0] * 20, extra={"bounds": (1, 5)})
    v = judge_criterion("judge.tone", "at_least", 0.8, ratings)
    assert v.status == "inconclusive" and "cannot be missed on a 1–5 scale" in v.detail and "write" not in v.detail
    assert judge_criterion("accuracy", "at_least", 0.5, from_values("accuracy", [1.0] * 90 + [0.0] * 10)).status \
        == "pass"  # a threshold inside the scale is decided as before


def test_a_pass_on_a_judge_score_holds_only_if_the_failed_judgments_at_the_scale_bottom_still_pass():
    """38 judged outputs (26 fives, 12 fours): at_least 4.4 passes on them; with the 2 the judge
    failed on (withheld: the bad ones, most likely) counted as 1s, it does not."""
    from harness.metrics import from_values
    from harness.runner.scoring import _worst_case_pass
    from harness.verdict import INCONCLUSIVE, PASS

    values = [5.0] * 26 + [4.0] * 12 + [None] * 2
    res = from_values("judge.tone", values, extra={"bounds": (1, 5), "failed": 2})
    v = judge_criterion("judge.tone", "at_least", 4.4, res)
    assert v.status == PASS
    _worst_case_pass(v, res, 2)
    assert v.status == INCONCLUSIVE and "as 1, the lower bound" in v.detail
    sure = judge_criterion("judge.tone", "at_least", 3.8, res)
    _worst_case_pass(sure, res, 2)
    assert sure.status == PASS


def test_judgments_lost_on_either_side_of_a_pair_count_together():
    """The candidate's judgments failed on 2 examples and the baseline's on 2 others: 4 pairs of
    40 are lost (10%, over the 5% a criterion may lose), not max(2, 2)."""
    from harness.metrics import from_values
    from harness.runner.scoring import _failed_judgments

    ids = [f"e{i}" for i in range(40)]
    cand = from_values("judge.x", [None, None] + [4.0] * 38, extra={"ids": ids, "failed": 2})
    base = from_values("judge.x", [3.0] * 38 + [None, None], extra={"ids": ids, "failed": 2})
    assert _failed_judgments(cand, base) == 4 and _failed_judgments(cand, None) == 2
    same = from_values("judge.x", [None, None] + [3.0] * 38, extra={"ids": ids, "failed": 2})
    assert _failed_judgments(cand, same) == 2


def _judge_verdict(status="pass"):
    from harness.verdict import Verdict

    return Verdict("judge.tone", status, 4.2, (3.9, 4.5), 3.0, op="at_least", confidence=0.95)


def test_a_judge_validated_on_other_candidates_outputs_is_not_validated_on_this_one():
    """The panel agrees with the judge on `base`'s outputs; nobody rated `cand`'s, which a tuned
    model may game the judge on: `cand`'s judge criterion says it is not validated."""
    from harness.runner.scoring import _with_trust

    trust = {"judge.tone": {"trusted": True, "criterion": "tone", "kappa": 0.8, "n": 30}}
    rated = _with_trust(_judge_verdict(), trust, {"judge.tone": {"e1": 4.0}})
    assert rated.judge_validated is True and rated.status == "pass"
    unrated = _with_trust(_judge_verdict(), trust, {})
    assert unrated.judge_validated is False and "humans rated other candidates' outputs only" in unrated.detail
    assert _with_trust(_judge_verdict(), trust, None).judge_validated is True  # labels do not apply (pairwise)


@pytest.mark.parametrize("raters,rated,why", [(2, 12, "8 more are rated"), (1, 24, "a second rater")])
def test_a_judge_criterion_with_too_few_human_checks_cannot_pass_on_the_judge_alone(raters, rated, why):
    """12 outputs rated (PPI needs 20), or 24 rated by one rater: the ratings cannot correct the
    judge, and may show it biased (a +1 judge passed at 3.5 where the humans said 2.5)."""
    from harness.goals import Criterion
    from harness.metrics import from_values
    from harness.runner.scoring import Labels, _criterion_verdict, _with_labels

    ids = [f"e{i}" for i in range(40)]
    res = from_values("judge.tone", [4.0, 5.0] * 20, extra={"ids": ids, "bounds": (1, 5)})
    labels = Labels({e: 3.0 for e in ids[:rated]})
    labels.raters = raters
    results = {"cand": _with_labels({"judge.tone": res}, {"judge.tone": labels})}
    v = _criterion_verdict(Criterion(metric="judge.tone", at_least=3), "cand", results, {}, 0.95, "")
    assert v.status == "inconclusive" and why in v.detail, v.detail
