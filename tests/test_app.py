"""Every page of the Streamlit app, through streamlit's AppTest, against a real DuckDB file.

The store is filled once per session by two real ``harness run``s of a tiny-model goal
(``tiny_run_project`` in conftest: zero-shot alone, then zero-shot, few-shot and a trained
LoRA, judged by the tiny model on the tone rubric) and copied for each test. Expected
values are read from that store or recomputed from it, never taken from the app.
"""
from __future__ import annotations

import math
import shutil
from pathlib import Path

import pytest

pytest.importorskip("streamlit")
from streamlit.testing.v1 import AppTest  # noqa: E402

from harness import agreement, panel  # noqa: E402
from harness.store import Store  # noqa: E402
from tests.helpers import app_goal, copy_project  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
APP = str(REPO / "app.py")
TIMEOUT = 90
BADGE = {"pass": "PASS", "fail": "FAIL", "inconclusive": "INCONCLUSIVE"}  # text: no emoji font needed

@pytest.fixture(autouse=True)
def served_on_localhost():
    """AppTest starts no server: the app reads the address it is bound to from Streamlit's
    config, so say loopback (as ``harness app`` binds by default); tests may rebind."""
    from streamlit import config

    old = config.get_option("server.address")
    config.set_option("server.address", "localhost")
    yield config
    config.set_option("server.address", old)


@pytest.fixture
def project(tiny_run_project, tmp_path, monkeypatch):
    """A private copy of the session's real-run project. Tests that use it are marked slow:
    the first one waits for the tiny-model runs (a minute or more on a loaded machine)."""
    info = copy_project(tiny_run_project, tmp_path / "proj")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HARNESS_DB", str(info["db"]))
    monkeypatch.setenv("HARNESS_GOALS", str(info["goals_dir"]))
    monkeypatch.setenv("HARNESS_RUBRICS", str(info["rubrics_dir"]))
    monkeypatch.setenv("HARNESS_LEADERBOARDS", str(REPO / "leaderboards"))
    info["store"] = Store(info["db"])
    return info


def _goal(project):
    from harness.goals import load_goal

    return load_goal(project["goals_dir"] / f"{project['goal']}.yaml")


def _rubric():
    from harness.judge.rubric import load_rubric

    return load_rubric("tone", REPO / "rubrics")


def _app(page: str | None = None) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=TIMEOUT).run()
    assert not at.exception, [e.value for e in at.exception]
    if page:
        at.radio(key="page").set_value(page).run()
        assert not at.exception, [e.value for e in at.exception]
    return at


def _texts(at: AppTest) -> str:
    parts = [m.value for m in at.markdown] + [c.value for c in at.code] + [s.value for s in at.subheader]
    parts += [c.value for c in at.caption] + [h.value for h in at.header] + [t.value for t in at.title]
    return "\n".join(str(p) for p in parts)


def _judge(store, run_id: str, criterion: str | None = None) -> dict[tuple[str, str], float]:
    """{(candidate, example_id): pointwise judge score} as the runner stored it (mean over criteria)."""
    rows = store.query(
        "SELECT l.candidate, l.example_id, avg(j.score) AS s FROM judgment_links l JOIN judgments j USING (cache_key) "
        "WHERE l.run_id = ? AND j.mode = 'pointwise' AND (? IS NULL OR l.criterion = ?) GROUP BY ALL",
        [run_id, criterion, criterion])
    return {(r["candidate"], r["example_id"]): r["s"] for r in rows}


# --------------------------------------------------------------------------- leaderboard

def _verdict(store, run_id: str, cand: str, crit) -> dict | None:
    rows = store.query("SELECT * FROM verdicts WHERE run_id = ? AND candidate = ? AND metric = ? AND op = ? "
                       "AND coalesce(baseline, '') = ?", [run_id, cand, crit.metric, crit.op, crit.baseline or ""])
    return rows[0] if rows else None


@pytest.mark.slow
def test_leaderboard_shows_criteria_with_ci_and_verdicts(project):
    store, goal = project["store"], _goal(project)
    latest = store.latest_run(project["goal"])["run_id"]
    assert latest == project["latest"]
    at = _app()
    df = at.dataframe[0].value.set_index("candidate")
    cands = {c["name"]: c for c in store.candidates(latest)}
    assert sorted(df.index) == sorted(cands) == project["candidates"]
    headers = ["accuracy ≥ 0.5", "accuracy improve by 10% vs zero-shot", "human.tone ≥ 3.0", "judge.tone ≥ 3.5"]
    assert [c for c in df.columns if c.split(" ")[0] in ("accuracy", "human.tone", "judge.tone")] == headers
    for cand in cands:
        for crit, col in zip(goal.success, headers):
            cell = df.loc[cand, col]
            if crit.baseline == cand:
                assert cell == "baseline"  # the baseline is not judged against itself
            elif crit.metric.startswith("human."):
                assert "INCONCLUSIVE (needs 3 more ratings)" in cell  # nobody has rated yet
            elif (v := _verdict(store, latest, cand, crit)) is not None and v["value"] is None:
                # e.g. a relative criterion against a baseline that scores 0: no value, a verdict
                assert BADGE[v["status"]] in cell and v["detail"], (cand, col, cell, v)
            elif v is not None and v["ci_low"] is None:
                # e.g. a judge mean over fewer than MIN_N examples: a value, no interval, undecided
                assert BADGE["inconclusive"] in cell and "no interval" in cell and v["status"] == "inconclusive"
            elif v is not None:
                pct = crit.percent
                fmt = (lambda x: f"{x * 100:.3g}%") if pct else (lambda x: f"{x:.3g}")
                assert cell.startswith(f"{fmt(v['value'])} [{fmt(v['ci_low'])}, {fmt(v['ci_high'])}] "
                                       f"{BADGE[v['status']]}"), (cand, col, cell, v)
            else:
                assert cell == "–", (cand, col, cell)
    # The judge criterion's value is the mean of the stored per-example judge.tone scores.
    for cand in cands:
        vals = [r["value"] for r in store.query("SELECT value FROM scores WHERE run_id = ? AND candidate = ? "
                                                "AND metric = 'judge.tone'", [latest, cand])]
        assert df.loc[cand, "judge.tone ≥ 3.5"].startswith(f"{sum(vals) / len(vals):.3g} ")
    assert set(df["baseline"]) == {"accuracy → zero-shot"}
    # Meets goal: a failing criterion means no; with human ratings missing nobody meets it.
    for cand in cands:
        statuses = {r["status"] for r in store.query("SELECT status FROM verdicts WHERE run_id = ? AND candidate = ?",
                                                     [latest, cand])}
        expected = "NO" if "fail" in statuses or cand == "zero-shot" else "OPEN"
        assert df.loc[cand, "meets goal"] == expected
    assert df.loc["lora", "training (s)"] == pytest.approx(cands["lora"]["train_seconds"])
    assert cands["lora"]["train_seconds"] > 0
    assert all(math.isnan(df.loc[c, "training (s)"]) for c in ("zero-shot", "few-shot"))
    assert "(untrusted judge)" not in "".join(df["judge.tone ≥ 3.5"])  # no ratings, no verdict on the judge


@pytest.mark.slow
def test_leaderboard_says_what_a_run_decided_when_the_goal_file_changed_since(project):
    """accuracy at_least 0.5 tightened to 0.9 in the goal file after the run: the column still
    says 0.5 (what the verdicts were decided on), names the file's new 0.9, and a warning says to
    run again — an old pass is never shown under the new threshold."""
    path = project["goals_dir"] / f"{project['goal']}.yaml"
    text = path.read_text()
    assert "at_least: 0.5" in text
    path.write_text(text.replace("at_least: 0.5", "at_least: 0.9", 1))
    at = _app()
    df = at.dataframe[0].value
    assert "accuracy ≥ 0.5 (goal file now: 0.9)" in df.columns and "accuracy ≥ 0.9" not in df.columns
    assert any("changed since this run" in w.value for w in at.warning)


@pytest.mark.slow
def test_leaderboard_run_choice_sort_and_filter(project):
    store, goal = project["store"], project["goal"]
    at = _app()
    at.selectbox(key=f"run:{goal}").set_value(1).run()  # the older run: zero-shot alone
    assert list(at.dataframe[0].value["candidate"]) == ["zero-shot"]
    at.selectbox(key=f"run:{goal}").set_value(0).run()
    at.selectbox(key="lb:sort").set_value("judge.tone ≥ 3.5").run()
    order = list(at.dataframe[0].value["candidate"])
    values = {r["candidate"]: r["value"] for r in store.query(
        "SELECT candidate, value FROM aggregates WHERE metric = 'judge.tone' AND run_id = ?", [project["latest"]])}
    assert len(set(values.values())) == 3
    assert order == sorted(values, key=values.get, reverse=True)
    at.checkbox(key="lb:desc:judge.tone ≥ 3.5").uncheck().run()
    assert list(at.dataframe[0].value["candidate"]) == order[::-1]
    at.text_input(key="lb:criteria:candidate_contains").set_value("lor").run()
    assert list(at.dataframe[0].value["candidate"]) == ["lora"]


@pytest.mark.slow
def test_leaderboard_filter_value_is_bound_not_sql(project):
    store = project["store"]
    before = {t: store.count(t) for t in ("scores", "verdicts", "candidates")}
    at = _app()
    evil = "x' OR 1=1; DROP TABLE scores; --"
    at.text_input(key="lb:criteria:candidate_contains").set_value(evil).run()
    assert not at.exception
    assert any("No candidates match" in i.value for i in at.info)
    assert {t: store.count(t) for t in before} == before


@pytest.mark.slow
def test_leaderboard_other_views_from_definitions(project):
    store = project["store"]
    at = _app()
    titles = at.selectbox(key="lb:view").options
    assert {"Success criteria", "All metrics", "Cost and time"} <= set(titles)
    at.selectbox(key="lb:view").set_value(titles.index("All metrics")).run()
    df = at.dataframe[0].value
    latest = project["latest"]
    assert len(df) == store.scalar("SELECT count(*) FROM aggregates WHERE run_id = ?", [latest])
    at.text_input(key="lb:metrics:metric_contains").set_value("judge.tone.").run()
    assert set(at.dataframe[0].value["metric"]) == {"judge.tone.formal", "judge.tone.empathetic"}
    at.selectbox(key="lb:view").set_value(titles.index("Cost and time")).run()
    cost = at.dataframe[0].value.set_index("candidate")
    assert cost.loc["lora", "train_seconds"] == pytest.approx(
        store.scalar("SELECT train_seconds FROM candidates WHERE run_id = ? AND name = 'lora'", [latest]))


@pytest.mark.slow
def test_leaderboard_candidate_history_across_runs(project):
    at = _app()
    at.selectbox(key="lb:history_candidate").set_value("zero-shot").run()
    hist = at.dataframe[-1].value
    assert set(hist["run_id"]) == set(project["runs"])
    assert set(hist["metric"]) >= {"accuracy", "judge.tone", "judge.tone.formal"}
    at.selectbox(key="lb:history_candidate").set_value("lora").run()
    assert set(at.dataframe[-1].value["run_id"]) == {project["latest"]}


def _rate_items(store, goal, items, rater, score_fn):
    for it in items:
        for crit in ("formal", "empathetic"):
            store.put_rating(goal, rater, it.item_id, crit, score=float(score_fn(it, crit)))


def _drawn(project):
    from harness.app import data

    return data.ensure_items(project["store"], _goal(project))


@pytest.mark.slow
def test_leaderboard_shows_human_scores_and_untrusted_judge(project):
    store, goal = project["store"], project["goal"]
    items = _drawn(project)
    assert len(items) == 12 and {it.run_id for it in items} == {project["latest"]}
    assert {it.candidate for it in items} == set(project["candidates"])
    # Humans score against the judge (low where it is high): the judge must be flagged untrusted.
    judge = {c: _judge(store, items[0].run_id, c) for c in ("formal", "empathetic")}

    def against(it, c):
        cut = sorted(judge[c].values())[len(judge[c]) // 2]
        return 1 if judge[c][(it.candidate, it.example_id)] >= cut else 5

    _rate_items(store, goal, items, "ann", against)
    from harness.verdict import judge_criterion

    at = _app()
    df = at.dataframe[0].value.set_index("candidate")
    rows = store.ratings(goal)
    for c in ("formal", "empathetic"):
        human = {(cand, e): v for cand, per in panel.human_scores(rows, items, "tone", c).items() for e, v in per.items()}
        assert agreement.judge_vs_human(judge[c], human, c, threshold=0.4).trusted is False
    assert all("(untrusted judge)" in x for x in df["judge.tone ≥ 3.5"])
    assert any("disagree with the human panel" in w.value for w in at.warning)
    expected = panel.human_scores(rows, items, "tone")
    assert sorted(expected) == project["candidates"] and all(len(p) == 4 for p in expected.values())
    for cand, per in expected.items():
        mean = sum(per.values()) / len(per)
        assert df.loc[cand, "human.tone ≥ 3.0"].startswith(f"{mean:.3g} ")
        # Live human verdicts use the Bonferroni level over the goal's three candidates, on the
        # panel's result (1-5 bounds, rater rows): a plain list of four 1s would read as a 0/1 share.
        v = judge_criterion("human.tone", "at_least", 3.0, panel.human_results(rows, items, "human.tone")[cand],
                            confidence=1 - 0.05 / 3, seed=0)
        assert v.status == "inconclusive"  # four rated examples, one rater: nothing is decided yet
        assert BADGE[v.status] in df.loc[cand, "human.tone ≥ 3.0"] and "needs" not in df.loc[cand, "human.tone ≥ 3.0"]
    human_table = at.table[0].value
    got = dict(zip(human_table["candidate"], human_table["human score"]))
    assert got == {c: f"{sum(p.values()) / len(p):.2f}" for c, p in expected.items()}


# --------------------------------------------------------------------------- compare

@pytest.mark.slow
def test_compare_page_side_by_side_with_judgments(project):
    store = project["store"]
    latest = project["latest"]
    at = _app("Compare")
    example = at.selectbox(key="cmp:example").value
    outs = {r["candidate"]: r["output"] for r in store.run_outputs(latest) if r["example_id"] == example}
    assert sorted(outs) == project["candidates"]
    codes = [c.value for c in at.code]
    ex = store.query("SELECT * FROM examples WHERE example_id = ?", [example])[0]
    assert ex["split"] == "test"
    assert ex["input"] in codes and ex["reference"] in codes
    for out in outs.values():
        assert (out or "(no output)") in codes
    assert any("<del" in m.value or "<ins" in m.value for m in at.markdown)
    metrics = at.dataframe[0].value
    assert set(metrics.columns) == set(outs)
    stored = {(r["candidate"], r["metric"]): r["value"] for r in store.query(
        "SELECT * FROM scores WHERE run_id = ? AND example_id = ?", [latest, example])}
    assert {(c, m) for m in metrics.index for c in metrics.columns} == set(stored)
    for (cand, metric), value in stored.items():
        assert metrics.loc[metric, cand] == pytest.approx(value)
    judged = at.dataframe[1].value
    links = store.query("SELECT l.candidate, l.criterion, j.score, j.rationale FROM judgment_links l "
                        "JOIN judgments j USING (cache_key) WHERE l.run_id = ? AND l.example_id = ?", [latest, example])
    assert len(judged) == len(links) == 3 * 2  # three candidates, two criteria
    assert set(judged["mode"]) == {"pointwise"} and set(judged["order"]) == {""}
    shown = {(r["candidate"], r["criterion"]): (r["score"], r["rationale"]) for _, r in judged.iterrows()}
    assert shown == {(r["candidate"], r["criterion"]): (pytest.approx(r["score"]), r["rationale"]) for r in links}
    assert all(r for _, r in shown.values())


@pytest.mark.slow
def test_compare_shows_both_orders_of_a_pairwise_judgment(project):
    # The runner judges pointwise only so far; a pairwise judgment (both orders) is added here.
    store, latest = project["store"], project["latest"]
    example = sorted({r["example_id"] for r in store.run_outputs(latest)})[0]
    rows, links = [], []
    for order, winner in (("AB", "cand"), ("BA", "base")):
        key = f"pair-{order}"
        rows.append({"cache_key": key, "judge": "local:tiny", "rubric": "tone", "criterion": "formal",
                     "mode": "pairwise", "order": order, "winner": winner, "rationale": f"order {order}"})
        links.append((latest, "lora", example, "tone-vs-zero-shot", "formal", order, key))
    store.put_judgments(rows, links)
    at = _app("Compare")
    at.selectbox(key="cmp:example").set_value(example).run()
    judged = at.dataframe[1].value
    pair = judged[judged["mode"] == "pairwise"]
    assert sorted(zip(pair["order"], pair["winner"], pair["rationale"])) == [
        ("AB", "cand", "order AB"), ("BA", "base", "order BA")]
    assert any("both orders" in c.value for c in at.caption)


@pytest.mark.slow
def test_a_pairwise_judges_position_bias_is_shown_on_the_agreement_page_and_in_results_json(project):
    # The runner stores a pairwise judge metric's position-bias rate in its aggregate's extra; here
    # one such aggregate stands in for a pairwise run.
    import json

    from harness.results import results_dict

    store, latest, goal = project["store"], project["latest"], project["goal"]
    store.put_aggregates(latest, [{"candidate": "lora", "metric": "judge.tone", "value": 0.6, "ci_low": 0.4,
                                   "ci_high": 0.8, "n": 15, "extra": {"position_bias_rate": 0.25, "win_rate": 0.6,
                                                                      "baseline": "zero-shot"}}])
    at = _app("Agreement")
    assert any(s.value == "Pairwise judge: position bias" for s in at.subheader)
    bias = next(d.value for d in at.dataframe if "position bias rate" in d.value.columns)
    assert bias.to_dict("records") == [{"candidate": "lora", "metric": "judge.tone", "baseline": "zero-shot",
                                        "position bias rate": 0.25, "win rate": 0.6, "n": 15}]
    lora = next(c for c in results_dict(store, goal)["candidates"] if c["name"] == "lora")
    assert lora["metrics"]["judge.tone"] == {"value": 0.6, "ci": [0.4, 0.8], "n": 15, "position_bias_rate": 0.25,
                                             "win_rate": 0.6, "baseline": "zero-shot"}
    assert "position_bias_rate" not in json.dumps(lora["metrics"]["accuracy"])


@pytest.mark.slow
def test_compare_disagreement_filter_orders_by_gap(project):
    store, latest = project["store"], project["latest"]
    at = _app("Compare")
    at.toggle(key="cmp:disagree").set_value(True).run()
    at.selectbox(key="cmp:a").set_value("lora").run()
    at.selectbox(key="cmp:b").set_value("zero-shot").run()
    at.selectbox(key="cmp:metric").set_value("judge.tone").run()
    options = at.selectbox(key="cmp:example").options
    scores = {(r["candidate"], r["example_id"]): r["value"] for r in store.query(
        "SELECT * FROM scores WHERE run_id = ? AND metric = 'judge.tone'", [latest])}
    exs = {e for _, e in scores}
    assert len(exs) > 10
    gaps = sorted((abs(scores[("lora", e)] - scores[("zero-shot", e)]) for e in exs), reverse=True)[:10]
    shown = [float(o.split("gap ")[1].split(" · ")[0]) for o in options]
    assert len(shown) == 10
    inputs = {r["example_id"]: r["input"] for r in store.query("SELECT example_id, input FROM examples")}
    first = at.selectbox(key="cmp:example").value
    assert " ".join(inputs[first].split())[:30] in options[0] and f"({first[:8]})" in options[0]  # readable labels
    assert shown == pytest.approx([float(f"{g:.3g}") for g in gaps], rel=1e-3)


def test_compare_diff_escapes_output_markup():
    from harness.app.tables import word_diff_html

    html = word_diff_html("the answer is here", "the <script>alert(1)</script> answer")
    assert "<script>" not in html and "&lt;script&gt;" in html
    assert "<del" in html and "<ins" in html


# --------------------------------------------------------------------------- training

@pytest.mark.slow
def test_training_page_curves_overfitting_and_hyperparameters(project):
    store = project["store"]
    lora = next(c for c in store.candidates(project["latest"]) if c["name"] == "lora")
    assert lora["adapter_path"] and Path(lora["adapter_path"]).is_dir()
    at = _app("Training")
    assert [s.value for s in at.subheader] == ["lora"]
    if lora["overfitting"]:
        assert any("Overfitting" in w.value and f"step {lora['best_step']}" in w.value for w in at.warning)
    else:
        assert not at.warning and any("No overfitting" in s.value for s in at.success)
    stopped = "stopped early; " if lora["stopped_early"] else ""
    assert f"Early-stopping point: **step {lora['best_step']}** ({stopped}best validation loss)" in _texts(at)
    assert f"Training time: {lora['train_seconds']:.1f} s" in _texts(at)
    hp = at.dataframe[0].value
    assert dict(zip(hp["parameter"], hp["value"])) == {"r": "4", "alpha": "8", "learning_rate": "0.005", "epochs": "1",
                                                        "batch_size": "8", "max_length": "64"}
    # The chart carries every stored loss point, train and validation, and marks the best step.
    import pyarrow as pa

    chart = at.get("vega_lite_chart")[0].proto
    frames = [pa.ipc.open_stream(d.data.data).read_all().to_pandas() for d in chart.datasets]
    lines = next(f for f in frames if "loss" in f.columns)
    points = store.query("SELECT step, split, loss FROM curves WHERE run_id = ? AND candidate = 'lora'",
                         [project["latest"]])
    assert {p["split"] for p in points} == {"train", "validation"}
    assert sorted(zip(lines["step"], lines["split"], lines["loss"])) == sorted(
        (p["step"], p["split"], p["loss"]) for p in points)
    rule = next(f for f in frames if "label" in f.columns)
    assert list(rule["step"]) == [lora["best_step"]]


# --------------------------------------------------------------------------- rate

def _sign_in(at: AppTest, goal: str, name: str, token: str | None = None) -> AppTest:
    at.text_input(key=f"rate:{goal}:name").input(name)
    if token is not None:
        at.text_input(key=f"rate:{goal}:token").input(token)
    at.button[0].click().run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def _radios(at: AppTest, goal: str):
    return [r for r in at.radio if str(r.key).startswith(f"rate:{goal}:w:")]


def _rewrite_goal(project, **kwargs) -> None:
    app_goal(project["goals_dir"], project["model_dir"], **kwargs)


@pytest.mark.slow
def test_rate_page_saves_each_answer_at_once_blind_and_updates(project):
    store, goal = project["store"], project["goal"]
    at = _sign_in(_app("Rate"), goal, "Alice")
    assert "Item 1 of 12" in _texts(at) and "Rating as **alice**" in _texts(at)  # names are normalised
    text = _texts(at)
    for cand in project["candidates"]:
        assert cand not in text, f"candidate name {cand!r} shown to the rater"
    # What is shown is a real test input and one candidate's real output.
    item = next(it for it in _drawn(project) if it.item_id in {
        it.item_id for it in panel.queue_for_rater(_drawn(project), [], "alice", 2, goal=goal)[:1]})
    ex = store.query("SELECT input FROM examples WHERE goal = ? AND example_id = ?", [goal, item.example_id])[0]
    out = next(r["output"] for r in store.run_outputs(item.run_id, item.candidate) if r["example_id"] == item.example_id)
    assert [c.value for c in at.code][:2] == [ex["input"], out or "(output missing)"]
    radios = _radios(at, goal)
    rubric = _rubric()
    assert [r.label for r in radios] == rubric.criterion_names == ["formal", "empathetic"]
    assert radios[0].options == [f"{v} · {rubric.criteria[0].scale[v]}" for v in (1, 2, 3, 4, 5)]
    radios[0].set_value(4).run()
    # Saved the moment it was chosen, before any submit.
    rows = store.ratings(goal)
    assert [(r["rater"], r["item_id"], r["criterion"], r["score"]) for r in rows] == [("alice", item.item_id, "formal", 4.0)]
    _radios(at, goal)[1].set_value(2).run()
    at.button(key=f"rate:{goal}:submit").click().run()
    assert "Item 2 of 12" in _texts(at)
    assert [p.proto.text for p in at.get("progress")] == ["1 of 12 items rated"]
    # Skip, then go back twice to the first item: its answers are restored; changing one updates the row.
    at.button(key=f"rate:{goal}:skip").click().run()
    assert "Item 3 of 12" in _texts(at)
    at.button(key=f"rate:{goal}:back").click().run()
    at.button(key=f"rate:{goal}:back").click().run()
    assert "Item 1 of 12" in _texts(at)
    assert [r.value for r in _radios(at, goal)] == [4, 2]
    _radios(at, goal)[0].set_value(5).run()
    rows = store.ratings(goal)
    assert len(rows) == 2
    assert {(r["item_id"], r["criterion"]): r["score"] for r in rows} == {(item.item_id, "formal"): 5.0,
                                                                          (item.item_id, "empathetic"): 2.0}


@pytest.mark.slow
def test_rate_page_shows_what_the_model_was_sent_and_keeps_a_comment_and_flag(project):
    from harness.app.data import item_content
    from tests.helpers import ROUTE_SYSTEM

    store, goal = project["store"], project["goal"]
    at = _sign_in(_app("Rate"), goal, "Hana")
    item = panel.queue_for_rater(_drawn(project), [], "hana", 2, goal=goal)[0]
    sent = store.messages_for_example(item.run_id, item.example_id)[item.candidate]
    assert sent[0] == {"role": "system", "content": ROUTE_SYSTEM}  # stored with the prediction
    shown = [t.value for t in at.text] + [c.value for c in at.code]
    assert all(m["content"] in shown for m in sent)  # system prompt, any shots, the question
    assert sent[-1]["content"] == store.example(goal, item.example_id)["input"] == at.code[0].value
    assert any(c.value.startswith("Keys: **1**–**5**") for c in at.caption)
    at.text_area(key=f"rate:{goal}:comment:hana:{item.item_id}").input("the answer is cut off").run()
    at.checkbox(key=f"rate:{goal}:flag:hana:{item.item_id}").check().run()
    assert not at.exception, [e.value for e in at.exception]
    assert [(n["rater"], n["item_id"], n["comment"], n["flagged"]) for n in store.rating_notes(goal)] == \
        [("hana", item.item_id, "the answer is cut off", True)]
    # A few-shot candidate's item shows its shots: the conversation as sent, not the example's own.
    few = next(it for it in _drawn(project) if it.candidate == "few-shot")
    content = item_content(store, few)
    roles = [m["role"] for m in content["conversation"]]
    assert content["as_sent"] and roles == ["system"] + ["user", "assistant"] * 3 + ["user"]


@pytest.mark.slow
def test_rate_order_is_per_rater_and_reproducible(project):
    goal = project["goal"]
    first = {}
    for name in ("Alice", "Bob", "ALICE\u200b"):
        at = _sign_in(_app("Rate"), goal, name)
        first.setdefault(panel.normalise_rater(name), set()).add((at.code[0].value, at.code[1].value))
    assert len(first["alice"]) == 1  # Alice sees the same first item each time, however she types her name
    items = _drawn(project)
    a = [i.item_id for i in panel.rater_order(items, goal, "alice")]
    b = [i.item_id for i in panel.rater_order(items, goal, "bob")]
    assert a != b and sorted(a) == sorted(b)


@pytest.mark.slow
def test_rate_pairwise_mode_stores_choices(project):
    goal, store = project["goal"], project["store"]
    _rewrite_goal(project, human_extra={"mode": "pairwise"})
    at = _sign_in(_app("Rate"), goal, "Carol")
    text = _texts(at)
    assert "Response A" in text and "Response B" in text
    for cand in project["candidates"]:
        assert cand not in text
    radios = _radios(at, goal)
    assert radios[0].options == ["Response A is better", "Response B is better", "Tie"]
    radios[0].set_value("A").run()
    _radios(at, goal)[1].set_value("tie").run()
    rows = store.ratings(goal)
    assert sorted((r["criterion"], r["choice"]) for r in rows) == [("empathetic", "tie"), ("formal", "A")]
    items = _drawn(project)
    assert len(items) == 12 and {it.mode for it in items} == {"pairwise"}
    item = next(it for it in items if it.item_id == rows[0]["item_id"])
    assert item.other_candidate in project["candidates"] and item.candidate != item.other_candidate
    scores = panel.human_scores(store.ratings(goal), items, "tone", "formal")
    assert scores[item.candidate][item.example_id] == 1.0
    assert scores[item.other_candidate][item.example_id] == 0.0


# --------------------------------------------------------------------------- raters are who they say

def _invite(project, name: str) -> str:
    token = panel.new_invitation_token()
    project["store"].put_invitation(project["goal"], panel.rater_name(name), panel.invitation_hash(token))
    return token


def _app_with(**query: str) -> AppTest:
    """The app opened at a URL with these query parameters (an invitation link's ``token``)."""
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    for k, v in query.items():
        at.query_params[k] = v
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def _rows(store, goal):
    return sorted((r["rater"], r["item_id"], r["criterion"], r["score"]) for r in store.ratings(goal))


@pytest.mark.slow
def test_bobs_invitation_cannot_save_under_alice_or_her_variants(project):
    from harness.app.access import INVITATION, Rater

    store, goal = project["store"], project["goal"]
    alice, bob = _invite(project, "Alice"), _invite(project, "bob")
    at = _app_with(token=alice)  # the invitation link opens the Rate page of its goal, signed in
    assert "Rating as **alice**" in _texts(at) and "Item 1 of 12" in _texts(at)
    _radios(at, goal)[0].set_value(4).run()
    alices = _rows(store, goal)
    assert [r[0] for r in alices] == ["alice"]
    # Without the link: no name to type, only the invitation token.
    at = _app("Rate")
    keys = {t.key for t in at.text_input}
    assert f"rate:{goal}:invite" in keys and f"rate:{goal}:name" not in keys and f"rate:{goal}:token" not in keys
    at.text_input(key=f"rate:{goal}:invite").input(bob)
    at.button[0].click().run()
    assert "Rating as **bob**" in _texts(at)
    _radios(at, goal)[0].set_value(2).run()
    assert [r for r in _rows(store, goal) if r[0] != "bob"] == alices
    bobs = [r for r in _rows(store, goal) if r[0] == "bob"]
    assert len(bobs) == 1 and bobs[0][3] == 2.0
    # A session that claims another name with Bob's invitation is signed out before it can save.
    secret = panel.invitation_hash(bob)
    for claimed in ("alice", "ALICE", "Alice\u200b", "A1ice"):
        at.session_state[f"rate:{goal}:rater"] = Rater(goal, claimed, INVITATION, secret)
        at.run()
        assert not _radios(at, goal) and any("not the one its invitation is for" in e.value for e in at.error)
        at.text_input(key=f"rate:{goal}:invite").input(bob)
        at.button[0].click().run()
        assert "Rating as **bob**" in _texts(at)
    assert [r for r in _rows(store, goal) if r[0] != "bob"] == alices
    assert {r[0] for r in _rows(store, goal)} == {"alice", "bob"}
    # A typed name and the goal's old plaintext tokens no longer let anyone in.
    _rewrite_goal(project, human_extra={"tokens": ["s3cret-token"]})
    at = _app("Rate")
    assert f"rate:{goal}:name" not in {t.key for t in at.text_input}


@pytest.mark.slow
def test_a_revoked_invitation_cannot_save_from_its_open_session(project):
    store, goal = project["store"], project["goal"]
    token = _invite(project, "Dana")
    at = _app_with(token=token)
    _radios(at, goal)[0].set_value(3).run()
    before = _rows(store, goal)
    assert [(r[0], r[2], r[3]) for r in before] == [("dana", "formal", 3.0)]
    assert store.revoke_invitations(goal, "dana") == 1  # `harness panel revoke`, while the tab is open
    _radios(at, goal)[1].set_value(5).run()
    assert _rows(store, goal) == before
    assert any("revoked" in e.value for e in at.error) and not _radios(at, goal)
    at = _app_with(token=token)  # the link is dead too
    assert any("unknown or was revoked" in e.value for e in at.error) and not _radios(at, goal)
    assert _rows(store, goal) == before


def _reference_shown(at: AppTest) -> bool:
    return any(e.label == "Reference answer" for e in at.expander)


@pytest.mark.slow
def test_rate_page_hides_the_reference_unless_the_goal_shows_it(project):
    store, goal = project["store"], project["goal"]
    at = _sign_in(_app("Rate"), goal, "Erin")
    assert "Item 1 of 12" in _texts(at) and not _reference_shown(at)
    _rewrite_goal(project, human_extra={"show_reference": True})
    at = _sign_in(_app("Rate"), goal, "Erin")
    assert _reference_shown(at)
    item = panel.queue_for_rater(_drawn(project), [], "erin", 2, goal=goal)[0]
    ref = store.query("SELECT reference FROM examples WHERE goal = ? AND example_id = ?", [goal, item.example_id])
    assert ref[0]["reference"] in [c.value for c in at.code]


@pytest.mark.slow
def test_rater_mode_has_only_the_rate_page_and_no_candidate_names(project, monkeypatch):
    monkeypatch.setenv("HARNESS_APP_MODE", "rater")
    goal = project["goal"]
    for page in (None, "Leaderboard", "Compare"):
        at = _app_with(**({"page": page} if page else {}))
        assert "page" not in {r.key for r in at.radio}
        assert [t.value for t in at.title] == [f"Rate · {goal}"]
    at = _sign_in(at, goal, "Frank")
    assert "Item 1 of 12" in _texts(at) and not _reference_shown(at)
    text = _texts(at) + "\n".join(str(getattr(e, "value", "")) for e in at.sidebar)
    for cand in project["candidates"]:
        assert cand not in text, f"candidate name {cand!r} shown in rater mode"
    _radios(at, goal)[0].set_value(4).run()
    assert [r["rater"] for r in project["store"].ratings(goal)] == ["frank"]


@pytest.mark.slow
def test_owner_pages_need_the_owner_token_off_localhost(project, monkeypatch, served_on_localhost):
    served_on_localhost.set_option("server.address", "0.0.0.0")
    store = project["store"]
    refs = {r["reference"] for r in store.query("SELECT reference FROM examples WHERE split = 'test'")}
    at = _app("Compare")  # no owner token configured: the owner's pages are closed
    assert any("need an owner token" in w.value for w in at.warning)
    assert not at.code and not at.dataframe
    monkeypatch.setenv("HARNESS_OWNER_TOKEN", "own3r-t0ken")
    at = _app("Compare")
    assert not at.code and not at.dataframe and any("enter the owner token" in i.value for i in at.info)
    at.text_input(key="owner:token").input("guess").run()
    assert any("Wrong owner token" in e.value for e in at.error) and not at.code
    at.text_input(key="owner:token").input("own3r-t0ken").run()
    assert refs & {c.value for c in at.code}  # the Compare page, with the reference, for the owner
    at.radio(key="page").set_value("Rate").run()
    at.radio(key="page").set_value("Compare").run()
    assert refs & {c.value for c in at.code}  # still the owner after a visit to the Rate page
    # Raters still reach the Rate page without the owner token.
    at = _sign_in(_app("Rate"), project["goal"], "Gus")
    assert "Item 1 of 12" in _texts(at)


# --------------------------------------------------------------------------- agreement

@pytest.mark.slow
def test_agreement_page_matches_reference_statistics(project):
    krippendorff = pytest.importorskip("krippendorff")
    from scipy.stats import spearmanr
    from sklearn.metrics import cohen_kappa_score

    store, goal = project["store"], project["goal"]
    items = _drawn(project)
    _rate_items(store, goal, items, "ann", lambda it, c: 1 + int(it.item_id[-4:], 16) % 5)
    _rate_items(store, goal, items[:8], "bob", lambda it, c: 1 + int(it.item_id[-5:], 16) % 5 if c == "formal"
                else 1 + int(it.item_id[-4:], 16) % 5)
    store.put_rating_note(goal, "bob", items[0].item_id, comment="the input is cut off", flagged=True)
    at = _app("Agreement")
    raters = at.dataframe[2].value.set_index("rater")  # each rater's progress, for the owner
    assert raters.loc["ann", "items done"] == "12 of 12" and raters.loc["bob", "items done"] == "8 of 12"
    assert (raters.loc["bob", "flagged"], raters.loc["bob", "comments"], raters.loc["ann", "flagged"]) == (1, 1, 0)
    flagged = at.dataframe[3].value
    assert flagged.to_dict("records") == [{"item": items[0].item_id, "example": items[0].example_id,
                                           "candidate": items[0].candidate, "rater": "bob", "flagged": "FLAGGED",
                                           "comment": "the input is cut off"}]
    inter = at.dataframe[0].value.set_index("criterion")
    for crit in ("formal", "empathetic"):
        rows = [r for r in store.ratings(goal) if r["criterion"] == crit]
        ids = sorted({r["item_id"] for r in rows})
        matrix = [[next((r["score"] for r in rows if r["rater"] == who and r["item_id"] == i), math.nan)
                   for i in ids] for who in ("ann", "bob")]
        ref = krippendorff.alpha(reliability_data=matrix, level_of_measurement="ordinal",
                                  value_domain=[1, 2, 3, 4, 5])
        assert inter.loc[crit, "Krippendorff alpha"] == pytest.approx(ref, abs=1e-9)
        lo, hi = (float(x) for x in inter.loc[crit, "alpha 95% interval"].strip("[]").split(","))
        assert lo <= round(ref, 2) <= hi  # the estimate inside its bootstrap interval
        assert inter.loc[crit, "kappa kind"] == "cohen" and inter.loc[crit, "kappa n"] == 8
        both = [(a, b) for a, b in zip(*matrix) if not math.isnan(b)]
        assert inter.loc[crit, "kappa"] == pytest.approx(cohen_kappa_score(*zip(*both), labels=[1, 2, 3, 4, 5]),
                                                              abs=1e-9)
    # Eight items rated by both: fewer than the minimum, so the page warns beside alpha and kappa.
    assert any("rests on 8 item(s)" in w.value for w in at.warning)
    versus = at.dataframe[1].value.set_index("criterion")
    assert set(versus["trusted"]) <= {"trusted", "UNTRUSTED", "too few pairs"}
    for crit in ("formal", "empathetic"):
        judge = _judge(store, items[0].run_id, crit)
        human = {(c, e): v for c, per in panel.human_scores(store.ratings(goal), items, "tone", crit).items()
                 for e, v in per.items()}
        keys = sorted(human, key=str)
        assert versus.loc[crit, "n"] == len(keys) == 12
        rho = spearmanr([judge[k] for k in keys], [human[k] for k in keys]).statistic
        kappa = cohen_kappa_score([agreement.to_level(judge[k]) for k in keys],
                                  [agreement.to_level(human[k]) for k in keys], labels=[1, 2, 3, 4, 5],
                                  weights="quadratic")
        assert versus.loc[crit, "spearman"] == pytest.approx(rho, abs=1e-9)
        assert versus.loc[crit, "kappa (quadratic)"] == pytest.approx(kappa, abs=1e-9)


def test_app_without_any_data(tmp_path, monkeypatch):
    monkeypatch.setenv("HARNESS_DB", str(tmp_path / "empty.duckdb"))
    monkeypatch.setenv("HARNESS_GOALS", str(tmp_path / "goals"))
    at = AppTest.from_file(APP, default_timeout=TIMEOUT).run()
    assert not at.exception
    assert any("No goals yet" in i.value for i in at.info)


# --------------------------------------------------------------------------- leaderboard definitions

def test_shipped_leaderboards_load():
    from harness.leaderboards import load_leaderboards

    boards, problems = load_leaderboards(REPO / "leaderboards")
    assert problems == []
    assert {b.name for b in boards} >= {"criteria", "metrics", "history", "costs"}


def test_leaderboard_definition_errors_name_file_line_field(tmp_path):
    from harness.errors import InputError
    from harness.leaderboards import load_leaderboard

    path = tmp_path / "bad.yaml"
    path.write_text("name: bad\ntitle: Bad\nsql: |\n  SELECT * FROM scores WHERE run_id = $run_id AND x = $nope\n"
                    "filters:\n  - {param: unused, type: text}\ncolums: {}\n", encoding="utf-8")
    with pytest.raises(InputError) as err:
        load_leaderboard(path)
    text = str(err.value)
    assert f"{path}:7 [colums]: unknown key 'colums'" in text and "did you mean 'columns'" in text
    path.write_text("name: bad\ntitle: Bad\nsql: |\n  SELECT * FROM scores WHERE run_id = $run_id AND x = $nope\n"
                    "filters:\n  - {param: unused, type: text}\n", encoding="utf-8")
    with pytest.raises(InputError) as err:
        load_leaderboard(path)
    msgs = [str(p) for p in err.value.problems]
    assert any(f"{path}:3 [sql]: parameter $nope" in m for m in msgs)
    assert any(f"{path}:6 [filters[0].param]: filter $unused is not used" in m for m in msgs)
    path.write_text("name: bad\ntitle: Bad\nsql: DELETE FROM scores\n", encoding="utf-8")
    with pytest.raises(InputError, match="read query"):
        load_leaderboard(path)


def test_sql_params_ignore_literals_and_comments():
    from harness.leaderboards import sql_params

    assert sql_params("SELECT '$no' AS x, $a -- $comment\n FROM t WHERE y = $b AND z = $a") == ["a", "b"]


@pytest.mark.slow
def test_filter_values_are_bound_parameters_against_a_real_store(project):
    from harness.leaderboards import load_leaderboard, run_leaderboard

    store = project["store"]
    board = load_leaderboard(REPO / "leaderboards" / "metrics.yaml")
    run_id = store.latest_run(project["goal"])["run_id"]
    before = store.count("aggregates")
    for evil in ("' OR '1'='1", "x'; DROP TABLE aggregates; --", "%' UNION SELECT 1,2,3,4,5,6 --"):
        assert run_leaderboard(store, board, {"run_id": run_id}, {"metric_contains": evil, "min_n": 0}) == []
    assert store.count("aggregates") == before
    rows = run_leaderboard(store, board, {"run_id": run_id}, {"metric_contains": "judge", "min_n": 0})
    assert rows and {r["metric"] for r in rows} == {"judge.tone", "judge.tone.formal", "judge.tone.empathetic"}
    n_test = store.scalar("SELECT count(*) FROM examples WHERE goal = ? AND split = 'test'", [project["goal"]])
    assert {r["n"] for r in rows} == {n_test}
    assert len(run_leaderboard(store, board, {"run_id": run_id}, {"metric_contains": "", "min_n": n_test})) == \
        store.scalar("SELECT count(*) FROM aggregates WHERE run_id = ?", [run_id])
    assert run_leaderboard(store, board, {"run_id": run_id}, {"metric_contains": "", "min_n": n_test + 1}) == []
    from harness.errors import HarnessError

    with pytest.raises(HarnessError, match="needs a number"):
        run_leaderboard(store, board, {"run_id": run_id}, {"min_n": "1; DROP TABLE runs"})


@pytest.mark.slow
def test_a_user_adds_a_leaderboard_without_touching_app_code(project, tmp_path, monkeypatch):
    boards = tmp_path / "boards"
    shutil.copytree(REPO / "leaderboards", boards)
    (boards / "slowest.yaml").write_text(
        "name: slowest\ntitle: Slowest generators\nsql: |\n"
        "  SELECT name AS candidate, gen_seconds FROM candidates\n"
        "  WHERE run_id = $run_id AND gen_seconds >= $min_seconds ORDER BY gen_seconds DESC\n"
        "filters:\n  - {param: min_seconds, label: At least seconds, type: number, default: 0}\n", encoding="utf-8")
    (boards / "kinds.sql").write_text("-- title: Candidate kinds\nSELECT kind, count(*) AS n FROM candidates "
                                      "WHERE run_id = $run_id GROUP BY kind ORDER BY kind\n", encoding="utf-8")
    (boards / "broken.yaml").write_text("name: broken\ntitle: x\n", encoding="utf-8")
    monkeypatch.setenv("HARNESS_LEADERBOARDS", str(boards))
    at = _app()
    assert any("broken.yaml" in w.value and "sql" in w.value for w in at.warning)
    titles = at.selectbox(key="lb:view").options
    at.selectbox(key="lb:view").set_value(titles.index("Slowest generators")).run()
    df = at.dataframe[0].value
    latest = project["store"].latest_run(project["goal"])["run_id"]
    gen = {c["name"]: c["gen_seconds"] for c in project["store"].candidates(latest)}
    assert list(df["candidate"]) == sorted(gen, key=gen.get, reverse=True)
    at.number_input(key="lb:slowest:min_seconds").set_value(max(gen.values())).run()
    assert list(at.dataframe[0].value["candidate"]) == [max(gen, key=gen.get)]
    at.selectbox(key="lb:view").set_value(titles.index("Candidate kinds")).run()
    assert dict(zip(at.dataframe[0].value["kind"], at.dataframe[0].value["n"])) == {"lora": 1, "prompt": 2}


def test_verdict_cells_are_tinted_by_status():
    from harness.app.tables import TINTS, cell_text, meets_goal_text, status_css

    row = {"value": 0.8, "ci_low": 0.7, "ci_high": 0.9}
    for status in ("pass", "fail", "inconclusive"):
        assert status_css(cell_text({**row, "status": status})) == f"background-color: {TINTS[status]}"
    assert status_css(meets_goal_text(["pass", "pass"])) == f"background-color: {TINTS['pass']}"
    assert status_css(meets_goal_text(["pass", "fail"])) == f"background-color: {TINTS['fail']}"
    assert status_css(meets_goal_text(["pass", "inconclusive"])) == f"background-color: {TINTS['inconclusive']}"
    assert status_css("baseline") == status_css(0.5) == status_css(None) == ""
    # Text badges, not emoji (which render as empty boxes without an emoji font).
    for statuses in (["pass"], ["fail"], ["inconclusive"]):
        shown = cell_text({**row, "status": statuses[0]}, untrusted=True) + meets_goal_text(statuses)
        assert shown.isascii(), shown
