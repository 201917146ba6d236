"""Agreement statistics against reference implementations (scikit-learn, scipy, krippendorff)."""
from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest

from harness import agreement as ag

krippendorff = pytest.importorskip("krippendorff")
sk_metrics = pytest.importorskip("sklearn.metrics")
scipy_stats = pytest.importorskip("scipy.stats")


def _scores(rng, n, noise=1.0):
    base = rng.integers(1, 6, size=n)
    other = np.clip(base + rng.integers(-1, 2, size=n) * (rng.random(n) < noise), 1, 5)
    return base.tolist(), other.astype(int).tolist()


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("weights", [None, "linear", "quadratic"])
def test_cohen_kappa_matches_sklearn(seed, weights):
    rng = np.random.default_rng(seed)
    a, b = _scores(rng, 40, noise=0.5)
    ours = ag.cohen_kappa(a, b, weights=weights)
    ref = sk_metrics.cohen_kappa_score(a, b, weights=weights)
    assert abs(ours - ref) < 1e-9
    ours_l = ag.cohen_kappa(a, b, labels=[1, 2, 3, 4, 5], weights=weights)
    ref_l = sk_metrics.cohen_kappa_score(a, b, labels=[1, 2, 3, 4, 5], weights=weights)
    assert abs(ours_l - ref_l) < 1e-9


def test_cohen_kappa_strings_and_length_check():
    a = ["A", "B", "tie", "A", "A", "B"]
    b = ["A", "B", "A", "tie", "A", "B"]
    assert abs(ag.cohen_kappa(a, b) - sk_metrics.cohen_kappa_score(a, b)) < 1e-9
    with pytest.raises(ValueError):
        ag.cohen_kappa([1, 2], [1])


@pytest.mark.parametrize("seed", range(6))
def test_spearman_matches_scipy_with_ties(seed):
    rng = np.random.default_rng(100 + seed)
    x = rng.integers(1, 6, size=30).astype(float)          # many ties
    y = x + rng.normal(0, 1.5, size=30)
    y[:5] = np.round(y[:5])
    ref = scipy_stats.spearmanr(x, y).statistic
    assert abs(ag.spearman(x, y) - ref) < 1e-9


def test_spearman_constant_is_nan():
    assert math.isnan(ag.spearman([3, 3, 3], [1, 2, 3]))


def _reliability(rng, raters, items, missing):
    truth = rng.integers(1, 6, size=items)
    data = np.clip(truth[None, :] + rng.integers(-1, 2, size=(raters, items)), 1, 5).astype(float)
    data[rng.random((raters, items)) < missing] = np.nan
    return data


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("level", ["ordinal", "nominal", "interval"])
def test_krippendorff_matches_package(seed, level):
    rng = np.random.default_rng(200 + seed)
    data = _reliability(rng, raters=int(rng.integers(2, 6)), items=25, missing=0.3)
    ref = krippendorff.alpha(reliability_data=data, level_of_measurement=level)
    assert abs(ag.krippendorff_alpha(data, level=level) - ref) < 1e-9
    # A declared 1-5 domain with unused levels changes nothing for ordinal/nominal data.
    ref_dom = krippendorff.alpha(reliability_data=data, level_of_measurement=level, value_domain=[1, 2, 3, 4, 5])
    assert abs(ag.krippendorff_alpha(data, level=level, value_domain=[1, 2, 3, 4, 5]) - ref_dom) < 1e-9


def test_krippendorff_published_example():
    # Krippendorff's own example (also in the package's docstring): ordinal alpha 0.815.
    nan = np.nan
    data = [[1, 2, 3, 3, 2, 1, 4, 1, 2, nan, nan, nan],
            [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, nan, 3],
            [nan, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, nan],
            [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, nan]]
    assert round(ag.krippendorff_alpha(data, level="ordinal"), 3) == 0.815


def test_fleiss_kappa_wikipedia_example():
    # Fleiss (1971) worked example on Wikipedia: 10 items, 14 raters, 5 categories -> 0.210.
    table = [[0, 0, 0, 0, 14], [0, 2, 6, 4, 2], [0, 0, 3, 5, 6], [0, 3, 9, 2, 0], [2, 2, 8, 1, 1],
             [7, 7, 0, 0, 0], [3, 2, 6, 3, 0], [2, 5, 3, 2, 2], [6, 5, 2, 1, 0], [0, 2, 2, 3, 7]]
    assert round(ag.fleiss_kappa(table), 3) == 0.210


def test_fleiss_two_raters_agrees_with_scotts_pi_definition():
    # With two raters Fleiss' kappa is Scott's pi: (po - pe) / (1 - pe) with pooled marginals.
    rng = np.random.default_rng(7)
    a, b = _scores(rng, 50, noise=0.6)
    table = np.zeros((50, 5))
    for i, (x, y) in enumerate(zip(a, b)):
        table[i, x - 1] += 1
        table[i, y - 1] += 1
    po = np.mean(np.array(a) == np.array(b))
    pooled = table.sum(axis=0) / table.sum()
    pe = (pooled ** 2).sum()
    assert abs(ag.fleiss_kappa(table) - (po - pe) / (1 - pe)) < 1e-9
    with pytest.raises(ValueError):
        ag.fleiss_kappa([[1, 1], [3, 0]])


def _rows(data, criterion="formal"):
    rows = []
    for i, raters in enumerate(data):
        for j, v in enumerate(raters):
            if not np.isnan(v):
                rows.append({"rater": f"r{i}", "item_id": f"it{j}", "criterion": criterion, "score": float(v)})
    return rows


def test_inter_rater_from_rating_rows_two_raters():
    rng = np.random.default_rng(11)
    data = _reliability(rng, raters=2, items=30, missing=0.1)
    res = ag.inter_rater(_rows(data), "formal")
    assert abs(res.alpha - krippendorff.alpha(reliability_data=data, level_of_measurement="ordinal")) < 1e-9
    both = ~np.isnan(data).any(axis=0)
    ref = sk_metrics.cohen_kappa_score(data[0, both], data[1, both], labels=[1.0, 2.0, 3.0, 4.0, 5.0])
    assert res.kappa_kind == "cohen" and res.kappa_n == int(both.sum())
    assert abs(res.kappa - ref) < 1e-9


def test_alpha_and_kappa_come_with_a_bootstrap_interval_that_says_how_little_two_items_tell():
    rng = np.random.default_rng(13)
    many = ag.inter_rater(_rows(_reliability(rng, raters=2, items=40, missing=0.0)), "formal", interval=True)
    for value, (lo, hi) in ((many.alpha, many.alpha_ci), (many.kappa, many.kappa_ci)):
        assert lo <= value <= hi and hi - lo < 1.0
    again = ag.inter_rater(_rows(_reliability(np.random.default_rng(13), raters=2, items=40, missing=0.0)),
                           "formal", interval=True)
    assert again.alpha_ci == many.alpha_ci  # seeded: the same ratings, the same interval
    two = ag.inter_rater([{"rater": r, "item_id": i, "criterion": "formal", "score": s}
                          for r, i, s in [("a", "x", 4), ("b", "x", 4), ("a", "y", 2), ("b", "y", 3)]],
                         "formal", interval=True)
    assert two.n_items == 2 < ag.MIN_AGREEMENT_ITEMS  # the app warns below this
    lo, hi = two.alpha_ci
    assert math.isnan(lo) or hi - lo > many.alpha_ci[1] - many.alpha_ci[0]  # wide, or no interval at all
    plain = ag.inter_rater(_rows(_reliability(rng, raters=2, items=10, missing=0.0)), "formal")
    assert all(math.isnan(x) for x in plain.alpha_ci + plain.kappa_ci)  # no interval asked, none computed


def test_inter_rater_three_raters_uses_fleiss():
    rng = np.random.default_rng(12)
    data = _reliability(rng, raters=3, items=20, missing=0.0)
    res = ag.inter_rater(_rows(data), "formal")
    assert res.kappa_kind == "fleiss" and res.n_items == 20 and res.n_raters == 3
    table = np.stack([(data == v).sum(axis=0) for v in sorted(set(data.ravel()))], axis=1)
    assert abs(res.kappa - ag.fleiss_kappa(table)) < 1e-9
    assert abs(res.alpha - krippendorff.alpha(reliability_data=data, level_of_measurement="ordinal")) < 1e-9


def test_inter_rater_pairwise_choices_are_nominal():
    rows = [{"rater": r, "item_id": f"i{j}", "criterion": "c", "score": None, "choice": c}
            for r, choices in (("x", "AABtAB"), ("y", "ABBtAA")) for j, c in enumerate(choices)]
    for row in rows:
        row["choice"] = {"t": "tie"}.get(row["choice"], row["choice"])
    res = ag.inter_rater(rows, "c")
    codes = {"A": 0, "B": 1, "tie": 2}
    data = [[codes[r["choice"]] for r in rows if r["rater"] == who] for who in ("x", "y")]
    assert abs(res.alpha - krippendorff.alpha(reliability_data=data, level_of_measurement="nominal")) < 1e-9


def test_judge_vs_human_matches_references_and_flags():
    rng = np.random.default_rng(5)
    keys = [("cand", f"e{i}") for i in range(40)]
    human = {k: float(rng.integers(1, 6)) + rng.choice([0.0, 0.5]) for k in keys}
    judge = {k: min(5.0, max(1.0, human[k] + rng.normal(0, 0.8))) for k in keys}
    judge[("cand", "only-judge")] = 3.0
    res = ag.judge_vs_human(judge, human, "formal", threshold=0.4)
    assert res.n == 40
    j = [judge[k] for k in sorted(keys, key=str)]
    h = [human[k] for k in sorted(keys, key=str)]
    assert abs(res.spearman - scipy_stats.spearmanr(j, h).statistic) < 1e-9
    jl = [ag.to_level(x) for x in j]
    hl = [ag.to_level(x) for x in h]
    ref = sk_metrics.cohen_kappa_score(jl, hl, labels=[1, 2, 3, 4, 5], weights="quadratic")
    assert abs(res.kappa - ref) < 1e-9
    assert res.exact == pytest.approx(np.mean(np.array(jl) == np.array(hl)))
    assert res.within_one == pytest.approx(np.mean(np.abs(np.array(jl) - np.array(hl)) <= 1))
    assert res.trusted is (res.kappa >= 0.4)
    # A judge that scores the opposite of the humans is untrusted.
    contrary = {k: 6.0 - v for k, v in human.items()}
    bad = ag.judge_vs_human(contrary, human, "formal", threshold=0.4)
    assert bad.kappa < 0 and bad.trusted is False
    # Too few pairs: no verdict on trust either way.
    assert ag.judge_vs_human({keys[0]: 3.0}, human, "formal", threshold=0.4).trusted is None


def test_to_level_rounds_half_up_and_clips():
    assert [ag.to_level(x) for x in (0.2, 1.49, 1.5, 2.5, 3.5, 4.6, 7)] == [1, 1, 2, 3, 4, 5, 5]


def test_pure_modules_import_nothing_heavy():
    code = ("import sys, harness.agreement, harness.panel; "
            "bad = [m for m in ('duckdb', 'torch', 'transformers', 'streamlit', 'openai', 'anthropic') "
            "if m in sys.modules]; print(bad); sys.exit(1 if bad else 0)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
