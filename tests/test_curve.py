"""The data-size curve: nested stratified subsets, the saturating fit, and the report section."""
from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import yaml

from harness.curve import CurvePoint, extrapolate
from harness.data.split import nested_subset


def _examples(n: int, labels=("a", "b", "c")):
    return [SimpleNamespace(id=f"ex{i:04d}", label=labels[i % len(labels)] if i % 10 else labels[0])
            for i in range(n)]


def _chat_examples(n: int, labels=("a", "b", "c")):
    """Chat-format classification records: no label, the class is the reference answer."""
    return [SimpleNamespace(id=f"ch{i:04d}", label=None, reference=f" {labels[i % len(labels)] if i % 10 else labels[0]}\n")
            for i in range(n)]


@pytest.mark.parametrize("make,classification", [(_examples, False), (_chat_examples, True)])
def test_subsets_are_nested_stratified_and_deterministic(make, classification):
    from harness.data.split import class_of

    exs = make(301)
    fractions = (0.1, 0.25, 0.5, 0.77, 1.0)
    subs = [nested_subset(exs, f, seed=3, classification=classification) for f in fractions]
    ids = [{e.id for e in s} for s in subs]
    assert all(a <= b for a, b in zip(ids, ids[1:])) and subs[-1] == exs  # nested; 100% is the whole list
    for f, sub in zip(fractions, subs):
        assert abs(len(sub) - f * len(exs)) <= 1  # ceil per label overshot by up to (labels - 1)
        for label in ("a", "b", "c"):
            total = sum(class_of(e) == label for e in exs)
            assert abs(sum(class_of(e) == label for e in sub) - f * total) <= 1  # each class keeps its share
    assert [e.id for e in nested_subset(exs, 0.25, seed=3, classification=classification)] == [e.id for e in subs[1]]
    assert {e.id for e in nested_subset(exs, 0.25, seed=4, classification=classification)} != ids[1]  # seed decides


def test_chat_classification_subsets_stratify_by_the_reference():
    exs = _chat_examples(300, labels=("a",) * 8 + ("b", "c"))  # "a" dominates: an unstratified draw drifts
    sub = nested_subset(exs, 0.1, seed=1, classification=True)
    counts = {lab: sum(e.reference.strip() == lab for e in sub) for lab in "abc"}
    shares = {lab: 0.1 * sum(e.reference.strip() == lab for e in exs) for lab in "abc"}
    assert all(abs(counts[lab] - shares[lab]) <= 1 for lab in "abc"), (counts, shares)


def test_every_prefix_of_the_subset_order_holds_each_class_within_one_of_its_share():
    import random

    from harness.data.split import subset_order

    rng = random.Random(7)
    for trial in range(300):
        sizes = [rng.randint(1, rng.choice([3, 10, 60])) for _ in range(rng.randint(1, 7))]
        exs = [SimpleNamespace(id=f"{c}-{j}", label=str(c)) for c, size in enumerate(sizes) for j in range(size)]
        order = subset_order(exs, seed=trial)
        assert sorted(e.id for e in order) == sorted(e.id for e in exs)
        n, taken = len(exs), [0] * len(sizes)
        for k, ex in enumerate(order, 1):
            taken[int(ex.label)] += 1
            assert all(abs(taken[c] - k * size / n) < 1 for c, size in enumerate(sizes)), (sizes, k, taken)


def _points(a, b, c, ns, se=0.004):
    from statistics import NormalDist

    z = NormalDist().inv_cdf(0.975)
    return [CurvePoint(f"c{n}", n / ns[-1], n, a - b * n ** -c, a - b * n ** -c - z * se, a - b * n ** -c + z * se)
            for n in ns]


def test_the_extrapolation_recovers_a_known_curve_and_says_it_is_one():
    # accuracy(n) = 0.9 - 2 n^-0.5: reaches 0.8 at n = (2 / 0.1) ** 2 = 400.
    ext = extrapolate(_points(0.9, 2.0, 0.5, [50, 100, 200]), 0.8)
    assert ext.status == "extrapolated" and ext.n_range[0] <= 400 <= ext.n_range[1]
    assert 300 < ext.n_needed < 550 and "extrapolation" in ext.describe()


def test_already_there_not_reachable_and_too_few_points():
    assert extrapolate(_points(0.9, 2.0, 0.5, [50, 100, 400]), 0.7).status == "already there"
    assert extrapolate(_points(0.6, 2.0, 0.5, [50, 100, 200]), 0.8).status == "not reachable"
    assert extrapolate(_points(0.9, 2.0, 0.5, [50, 100]), 0.8).status == "too few points"
    # a metric that must fall (at_most) mirrors the curve
    falling = [CurvePoint(p.candidate, p.fraction, p.n_train, 1 - p.value, 1 - p.hi, 1 - p.lo)
               for p in _points(0.9, 2.0, 0.5, [50, 100, 200])]
    ext = extrapolate(falling, 0.2, higher_is_better=False)
    assert ext.status == "extrapolated" and ext.n_range[0] <= 400 <= ext.n_range[1]


def test_train_fraction_sweeps_train_nested_subsets_and_the_report_plots_the_curve(curve_project):
    from harness.goals import load_goal
    from harness.report import build_report
    from harness.store import Store
    from harness.train.sft import read_metadata

    goal = load_goal(curve_project["goal_path"])
    assert [c.name for c in goal.candidates] == ["zero-shot", "lora-frac0.25", "lora-frac0.5", "lora-frac1.0"]
    store = Store(curve_project["db"])
    res = curve_project["result"]
    folders = {row["adapter_path"] for row in store.candidates(res.run_id) if row["adapter_path"]}
    assert res.counts["trained"] == 3 and len(folders) == 3 and all(read_metadata(f) for f in folders)
    md = build_report(store, goal, fmt="md")
    assert "## Data-size curve" in md and "To reach the threshold:" in md
    section = md.split("## Data-size curve", 1)[1]
    table = [ln for ln in section.splitlines() if ln.startswith("| lora-frac")]
    counts = [int(ln.split("|")[3]) for ln in table[:3]]
    n_train = len(store.split_labels(goal.goal, "train"))
    assert counts == sorted(counts) and counts[-1] == n_train
    assert counts[0] < counts[1] < counts[2]
    assert all(abs(c - f * n_train) <= 1 for c, f in zip(counts, (0.25, 0.5, 1.0))), (counts, n_train)
    # What each adapter trained on is the curve's subset: stratified by class (the chat record's
    # reference, this goal being classification), as many examples as the curve says.
    from harness.data.split import class_of, data_hash

    train = [SimpleNamespace(id=r["example_id"], label=r["label"], reference=r["reference"])
             for r in store.examples_of(goal.goal, "train")]
    trained = {read_metadata(f)["data_hash"]: read_metadata(f)["n_train"] for f in folders}
    for f, count in zip((0.25, 0.5, 1.0), counts):
        sub = nested_subset(train, f, goal.data.split.seed, classification=True)
        assert trained[data_hash(sub)] == len(sub) == count
        for label in {class_of(e) for e in train}:
            share = f * sum(class_of(e) == label for e in train)
            assert abs(sum(class_of(e) == label for e in sub) - share) <= 1

    # The app's Training page draws the same curve, with the extrapolation under it.
    from streamlit.testing.v1 import AppTest

    def page(db: str, run_id: str) -> None:
        from harness.app import training
        from harness.store import Store

        training.render(Store(db), run_id)

    at = AppTest.from_function(page, args=(str(curve_project["db"]), res.run_id), default_timeout=60).run()
    assert not at.exception
    assert any("Data-size curve: lora" in h.value for h in at.subheader)
    assert any("To reach" in c.value for c in at.caption)
