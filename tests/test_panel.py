"""The human panel's pure core: drawing blind items, per-rater order, scores and verdicts."""
from __future__ import annotations

import math
from collections import Counter
from types import SimpleNamespace

import numpy as np
import pytest

from harness import intervals, panel
from harness.errors import HarnessError

CANDS = ["alpha-model", "beta-model", "gamma-model"]


def _outputs(n_examples=10, cands=CANDS, missing=()):
    return [{"candidate": c, "example_id": f"ex{i:02d}"} for c in cands for i in range(n_examples)
            if (c, f"ex{i:02d}") not in missing]


def test_draw_is_deterministic_blind_and_balanced():
    a = panel.draw_items("g", "run-1", _outputs(), None, 12, rubric="tone", seed=3)
    b = panel.draw_items("g", "run-1", list(reversed(_outputs())), None, 12, rubric="tone", seed=3)
    assert a == b and len(a) == 12
    assert len({it.item_id for it in a}) == 12
    for it in a:
        assert not any(c in it.item_id for c in CANDS)
        assert it.item_id.startswith("it-")
    # Whole examples: 12 items = 4 examples x 3 candidates, so every candidate is rated on the same inputs.
    per_cand = Counter(it.candidate for it in a)
    assert set(per_cand.values()) == {4}
    by_example = Counter(it.example_id for it in a)
    assert set(by_example.values()) == {3}
    c = panel.draw_items("g", "run-1", _outputs(), None, 12, rubric="tone", seed=4)
    assert c != a  # another seed, another draw


def test_draw_uses_only_examples_every_candidate_has():
    out = _outputs(5, missing={("beta-model", "ex01"), ("gamma-model", "ex03")})
    items = panel.draw_items("g", "r", out, None, 100, rubric="tone")
    assert {it.example_id for it in items} == {"ex00", "ex02", "ex04"}
    assert len(items) == 9


def test_pairwise_draw_randomises_which_side_is_a():
    items = panel.draw_items("g", "r", _outputs(40, cands=["x", "y"]), None, 40, rubric="tone", mode="pairwise")
    assert len(items) == 40
    assert all({it.candidate, it.other_candidate} == {"x", "y"} for it in items)
    shown_first = Counter(it.candidate for it in items)
    assert 8 <= shown_first["x"] <= 32  # both orientations occur (binomial(40, .5))
    assert [lab for lab, _ in panel.blind_labels(items[0])] == ["Response A", "Response B"]


def test_draw_errors_are_clear():
    with pytest.raises(HarnessError, match="no outputs for candidate"):
        panel.draw_items("g", "r", _outputs(), ["nope"], 5, rubric="tone")
    with pytest.raises(HarnessError, match="two candidates"):
        panel.draw_items("g", "r", _outputs(cands=["x"]), None, 5, rubric="tone", mode="pairwise")
    with pytest.raises(HarnessError, match="mode"):
        panel.draw_items("g", "r", _outputs(), None, 5, rubric="tone", mode="ranked")


def test_rater_order_is_reproducible_and_differs_between_raters():
    items = panel.draw_items("g", "r", _outputs(20), None, 30, rubric="tone")
    a1 = panel.rater_order(items, "g", "alice")
    a2 = panel.rater_order(list(reversed(items)), "g", "alice")
    b = panel.rater_order(items, "g", "bob")
    assert a1 == a2
    assert a1 != b and sorted(i.item_id for i in a1) == sorted(i.item_id for i in b)


def test_queue_fills_each_item_up_to_raters_per_item():
    items = panel.draw_items("g", "r", _outputs(4), None, 6, rubric="tone")
    full, partial = items[0], items[1]
    ratings = [{"rater": "x", "item_id": full.item_id}, {"rater": "y", "item_id": full.item_id},
               {"rater": "x", "item_id": partial.item_id}]
    q = panel.queue_for_rater(items, ratings, "z", 2, goal="g")
    assert full not in q and partial in q and len(q) == 5
    # Someone who already rated a full item still sees it (to go back and change it).
    assert full in panel.queue_for_rater(items, ratings, "x", 2, goal="g")


def test_access_tokens_and_rater_names():
    assert panel.check_access([], None) and panel.check_access([], "anything")
    assert panel.check_access(["t1", "t2"], " t2 ")
    assert not panel.check_access(["t1"], "t2")
    assert not panel.check_access(["t1"], "")
    assert not panel.check_access(["t1"], None)
    assert panel.check_rater("  Ann ") == "Ann"
    for bad in ("", "   ", None, "x" * 81, "a\nb"):
        with pytest.raises(HarnessError):
            panel.check_rater(bad)


def _item(iid, cand, ex, other=None, mode="pointwise", rubric="tone"):
    return panel.PanelItem(iid, "g", "r", ex, cand, other, mode, rubric)


def test_human_scores_average_criteria_within_a_rating_then_raters():
    items = [_item("i1", "a", "e1"), _item("i2", "b", "e1"), _item("i3", "a", "e2"),
             _item("i9", "a", "e1", rubric="other")]
    ratings = [
        {"rater": "x", "item_id": "i1", "criterion": "formal", "score": 5.0},
        {"rater": "x", "item_id": "i1", "criterion": "empathetic", "score": 3.0},   # x on i1: 4
        {"rater": "y", "item_id": "i1", "criterion": "formal", "score": 2.0},       # y on i1: 2
        {"rater": "x", "item_id": "i2", "criterion": "formal", "score": 1.0},
        {"rater": "x", "item_id": "i3", "criterion": "formal", "score": 4.0},
        {"rater": "x", "item_id": "i9", "criterion": "formal", "score": 1.0},       # other rubric
    ]
    assert panel.human_scores(ratings, items, "tone") == {"a": {"e1": 3.0, "e2": 4.0}, "b": {"e1": 1.0}}
    assert panel.human_scores(ratings, items, "tone", "formal") == {"a": {"e1": 3.5, "e2": 4.0}, "b": {"e1": 1.0}}
    assert panel.rating_counts(ratings, items, "tone") == {"a": 3, "b": 1}
    assert panel.human_metric_values(ratings, items, "human.tone.formal")["a"] == {"e1": 3.5, "e2": 4.0}


def test_pairwise_human_scores_are_win_rates():
    items = [_item("p1", "a", "e1", other="b", mode="pairwise"), _item("p2", "b", "e2", other="a", mode="pairwise")]
    ratings = [{"rater": "x", "item_id": "p1", "criterion": "formal", "choice": "A"},   # a wins e1
               {"rater": "y", "item_id": "p1", "criterion": "formal", "choice": "tie"},  # tie on e1
               {"rater": "x", "item_id": "p2", "criterion": "formal", "choice": "A"}]   # b (shown as A) wins e2
    scores = panel.human_scores(ratings, items, "tone")
    assert scores == {"a": {"e1": 0.75, "e2": 0.0}, "b": {"e1": 0.25, "e2": 1.0}}


def test_a_goal_whose_panel_mode_changed_counts_only_ratings_of_its_mode():
    """A goal rated pairwise, then made pointwise, keeps its old items: their wins (1) and losses
    (0) averaged in with 1-5 scores would be neither; only its panel rubrics' items of the
    goal's mode count, other rubrics' as they are."""
    items = [_item("s1", "a", "e1"), _item("s2", "a", "e2"), _item("p1", "a", "e1", other="b", mode="pairwise"),
             _item("h1", "a", "e1", other="b", mode="pairwise", rubric="helpfulness")]
    ratings = [{"rater": "x", "item_id": "s1", "criterion": "formal", "score": 4.0},
               {"rater": "x", "item_id": "s2", "criterion": "formal", "score": 2.0},
               {"rater": "x", "item_id": "p1", "criterion": "formal", "choice": "B"},
               {"rater": "x", "item_id": "h1", "criterion": "helpfulness", "choice": "A"}]
    mixed = panel.human_results(ratings, items, "human.tone")["a"]
    assert mixed.extra["bounds"] == (0.0, 1.0)  # one pairwise item made the 1-5 scores a "win rate"
    human = SimpleNamespace(rubrics=["tone"], mode=panel.POINTWISE)
    kept = panel.in_goal_mode(items, human)
    assert [it.item_id for it in kept] == ["s1", "s2", "h1"]
    res = panel.human_results(ratings, kept, "human.tone")["a"]
    assert res.extra["bounds"] == (1.0, 5.0) and res.recompute() == 3.0
    assert panel.in_goal_mode(items, None) == items


def test_an_item_counts_by_the_text_its_own_run_showed():
    """Items of two runs on one output: the old run's showed another text. Only the item whose
    own run gave the text the candidate gives now counts, whichever run is newer."""
    old = panel.PanelItem("i-old", "g", "r1", "e1", "a", None, panel.POINTWISE, "tone")
    new = panel.PanelItem("i-new", "g", "r2", "e1", "a", None, panel.POINTWISE, "tone")
    shown = {("r1", "a", "e1"): "a fine answer", ("r2", "a", "e1"): "I refuse to help"}
    assert panel.items_showing([old, new], shown, {("a", "e1"): "I refuse to help"}) == [new]
    assert panel.items_showing([old, new], shown, {("a", "e1"): "a fine answer"}) == [old]
    assert panel.items_showing([old, new], shown, {}) == [old, new]  # nothing given now: not checked


def _crit(metric, op, amount, baseline=None):
    return SimpleNamespace(metric=metric, op=op, baseline=baseline, **{op: amount})


def _many_ratings(cands_means, n_examples=30, seed=0):
    rng = np.random.default_rng(seed)
    items, ratings = [], []
    for cand, mean in cands_means.items():
        for e in range(n_examples):
            iid = f"{cand}-{e}"
            items.append(_item(iid, cand, f"e{e}"))
            for rater in ("x", "y", "z", "w"):
                score = float(np.clip(round(mean + rng.normal(0, 0.7)), 1, 5))
                ratings.append({"rater": rater, "item_id": iid, "criterion": "formal", "score": score})
    return items, ratings


def test_human_verdicts_match_the_verdict_module():
    from harness.verdict import judge_criterion

    items, ratings = _many_ratings({"good": 4.5, "bad": 1.8, "base": 3.0})
    rows = panel.human_verdicts([_crit("human.tone", "at_least", 3.5), _crit("judge.tone", "at_least", 1)],
                                ratings, items, ["good", "bad"], min_ratings=10)
    assert [(r["candidate"], r["metric"]) for r in rows] == [("good", "human.tone"), ("bad", "human.tone")]
    by = {r["candidate"]: r for r in rows}
    assert by["good"]["status"] == "pass" and by["bad"]["status"] == "fail"
    ref = judge_criterion("human.tone", "at_least", 3.5, panel.human_results(ratings, items, "human.tone")["good"])
    assert by["good"]["value"] == pytest.approx(ref.value) and by["good"]["ci_low"] == pytest.approx(ref.ci[0])
    assert by["good"]["interval"].startswith(intervals.RANDOM_EFFECTS) and "4 raters x 30 items" in by["good"]["interval"]
    assert by["good"]["n_ratings"] == 120 and by["good"]["missing"] == 0
    rel = panel.human_verdicts([_crit("human.tone", "improve_by", "20%", baseline="base")], ratings, items,
                               ["good"], min_ratings=10)[0]
    assert rel["status"] == "pass" and rel["baseline"] == "base" and rel["value"] > 0.2


def test_human_verdicts_say_how_many_ratings_are_missing():
    items, ratings = _many_ratings({"good": 4.5}, n_examples=3)
    row = panel.human_verdicts([_crit("human.tone", "at_least", 3.5)], ratings, items, ["good", "unrated"],
                               min_ratings=16)
    by = {r["candidate"]: r for r in row}
    assert by["good"]["status"] == "inconclusive" and by["good"]["missing"] == 4
    assert "4 more human rating(s) needed (12 of 16)" in by["good"]["detail"]
    assert not math.isnan(by["good"]["value"])
    assert by["unrated"]["missing"] == 16 and by["unrated"]["value"] is None


def test_human_aggregates_rows():
    items, ratings = _many_ratings({"good": 4.5, "bad": 1.8}, n_examples=25)
    rows = {r["candidate"]: r for r in panel.human_aggregates(ratings, items, "human.tone")}
    for cand in ("good", "bad"):
        per = panel.human_scores(ratings, items, "tone")[cand]
        assert rows[cand]["value"] == pytest.approx(sum(per.values()) / len(per))
        assert rows[cand]["ci_low"] <= rows[cand]["value"] <= rows[cand]["ci_high"]
        assert rows[cand]["n"] == 25 and rows[cand]["extra"]["n_ratings"] == 100
        assert rows[cand]["extra"]["interval"].startswith(intervals.RANDOM_EFFECTS)


# --------------------------------------------------------------------------- rater names and invitations

@pytest.mark.parametrize("variant", ["alice", "ALICE", "Alice", " alice ", "Alice\u200b", "\u202eAlice",
                                     "A\u200dlice", "Ａｌｉｃｅ", "alice\ufe0f", "ali\u00adce"])
def test_variants_of_a_name_normalise_to_one_rater(variant):
    assert panel.normalise_rater(variant) == "alice"
    assert panel.rater_name(variant) == "alice"


def test_normalisation_folds_case_width_and_whitespace_but_not_look_alikes():
    assert panel.normalise_rater("Ann  Lee\u00a0\t Smith") == "ann lee smith"
    assert panel.normalise_rater("STRASSE") == panel.normalise_rater("Straße") == "strasse"
    assert panel.normalise_rater("ﬁona") == "fiona"  # NFKC: the ligature is two letters
    # Look-alikes are other names: an invitation, not the name, says who a rater is.
    assert panel.normalise_rater("A1ice") != "alice" and panel.normalise_rater("Аlice") != "alice"  # Cyrillic А


def test_rater_name_refuses_empty_invisible_control_and_long_names():
    for bad in ("", "   ", None, "\u200b\u200b", "\u202e", "a\x00b", "a\x7fb", "a\x85b", "x" * 81, "a\nb"):
        with pytest.raises(HarnessError):
            panel.rater_name(bad)
    assert panel.rater_name("x" * 80) == "x" * 80


def test_invitation_tokens_are_random_and_stored_as_a_hash():
    import hashlib

    tokens = {panel.new_invitation_token() for _ in range(50)}
    assert len(tokens) == 50 and all(len(t) >= 32 for t in tokens)
    token = next(iter(tokens))
    h = panel.invitation_hash(token)
    assert len(h) == 64 and token not in h and h == panel.invitation_hash(f" {token}\n")
    assert h == hashlib.sha256(("harness-invitation/v1\x1f" + token).encode()).hexdigest()
    assert panel.invitation_hash(token + "x") != h
    assert panel.invitation_link("a-b_c", "http://host:9000/") == "http://host:9000/?token=a-b_c"
    assert panel.invitation_link(token) == f"http://localhost:8501/?token={token}"


def test_a_relative_human_criterion_needs_two_raters_on_each_side():
    """One rater scoring both candidates: their leniency shifts both, but the difference of one
    person's scores is still one person's taste; like the absolute criterion, not decided."""
    from types import SimpleNamespace

    items = [panel.PanelItem(f"{c}{i}", "g", "r", f"e{i}", c, None, panel.POINTWISE, "correctness")
             for c in ("base", "cand") for i in range(30)]
    ratings = [{"rater": "ann", "item_id": it.item_id, "criterion": "correctness",
                "score": 5.0 if it.candidate == "cand" else 2.0 + (int(it.example_id[1:]) % 2)} for it in items]
    crit = SimpleNamespace(metric="human.correctness", op="improve_by", improve_by=0.5, baseline="base")
    (row,) = [r for r in panel.human_verdicts([crit], ratings, items, ["cand"], min_ratings=10) if r["candidate"] == "cand"]
    assert row["status"] == "inconclusive" and "a second rater is needed" in row["detail"]
    ratings += [dict(r, rater="bob") for r in ratings]
    (row,) = panel.human_verdicts([crit], ratings, items, ["cand"], min_ratings=10)
    assert row["status"] == "pass", row["detail"]
