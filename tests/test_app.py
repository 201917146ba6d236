"""Every page of the Streamlit app, through streamlit's AppTest, against a real DuckDB file.

The store is filled once per session by ``harness.app.sample.make_project`` (the filling
function is swappable with ``$HARNESS_APP_FILL=module:function``, e.g. a real tiny-model
run) and copied for each test.
"""
from __future__ import annotations

import math
import shutil
from pathlib import Path

import pytest

pytest.importorskip("streamlit")
from streamlit.testing.v1 import AppTest  # noqa: E402

from harness import agreement, panel  # noqa: E402
from harness.app.sample import goal_yaml, make_project  # noqa: E402
from harness.store import Store  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
APP = str(REPO / "app.py")
TIMEOUT = 60


@pytest.fixture(scope="session")
def project_template(tmp_path_factory):
    root = tmp_path_factory.mktemp("app-template")
    return make_project(root)


@pytest.fixture
def project(project_template, tmp_path, monkeypatch):
    root = tmp_path / "proj"
    shutil.copytree(project_template["root"], root)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HARNESS_DB", str(root / "harness.duckdb"))
    monkeypatch.setenv("HARNESS_GOALS", str(root / "goals"))
    monkeypatch.setenv("HARNESS_RUBRICS", str(root / "rubrics"))
    monkeypatch.setenv("HARNESS_LEADERBOARDS", str(REPO / "leaderboards"))
    info = dict(project_template, root=root, db=root / "harness.duckdb")
    info["store"] = Store(info["db"])
    return info


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


# --------------------------------------------------------------------------- leaderboard

def test_leaderboard_shows_criteria_with_ci_and_verdicts(project):
    at = _app()
    df = at.dataframe[0].value
    store = project["store"]
    latest = store.latest_run(project["goal"])["run_id"]
    verdicts = {(r["candidate"], r["metric"]): r for r in store.query("SELECT * FROM verdicts WHERE run_id = ?", [latest])}
    assert sorted(df["candidate"]) == sorted(c["name"] for c in store.candidates(latest))
    col = next(c for c in df.columns if c.startswith("token_f1"))
    assert col == "token_f1 ≥ 0.5"
    for _, row in df.iterrows():
        v = verdicts[(row["candidate"], "token_f1")]
        badge = {"pass": "✅ pass", "fail": "❌ fail", "inconclusive": "❔ inconclusive"}[v["status"]]
        assert row[col].startswith(f"{v['value']:.3g} [{v['ci_low']:.3g}, {v['ci_high']:.3g}] {badge}")
    rel = next(c for c in df.columns if c.startswith("off_topic_rate"))
    assert "reduce by 50% vs zero-shot" in rel
    assert df.set_index("candidate").loc["zero-shot", rel] == "baseline"
    assert "off_topic_rate → zero-shot" in set(df["baseline"])
    human = next(c for c in df.columns if c.startswith("human.tone"))
    assert all("needs 3 more ratings" in x for x in df[human])
    # A failing criterion means the goal is not met; nobody meets it while human ratings are missing.
    assert set(df["meets goal"]) <= {"❌ no", "❔ open"}
    assert df.set_index("candidate").loc["zero-shot", "meets goal"] == "❌ no"
    assert {"cost (USD)", "training (s)"} <= set(df.columns)
    assert df.set_index("candidate").loc["lora-r8", "training (s)"] == pytest.approx(412.5)


def test_leaderboard_run_choice_sort_and_filter(project):
    at = _app()
    at.selectbox(key=f"run:{project['goal']}").set_value(1).run()  # the older run
    assert sorted(at.dataframe[0].value["candidate"]) == ["few-shot", "zero-shot"]
    at.selectbox(key=f"run:{project['goal']}").set_value(0).run()
    at.selectbox(key="lb:sort").set_value("token_f1").run()
    order = list(at.dataframe[0].value["candidate"])
    values = {r["candidate"]: r["value"] for r in project["store"].query(
        "SELECT candidate, value FROM verdicts WHERE metric = 'token_f1' AND run_id = ?",
        [project["store"].latest_run(project["goal"])["run_id"]])}
    assert order == sorted(values, key=values.get, reverse=True)
    at.text_input(key="lb:criteria:candidate_contains").set_value("lora").run()
    assert list(at.dataframe[0].value["candidate"]) == ["lora-r8"]


def test_leaderboard_filter_value_is_bound_not_sql(project):
    store = project["store"]
    before = {t: store.count(t) for t in ("scores", "verdicts", "candidates")}
    at = _app()
    evil = "x' OR 1=1; DROP TABLE scores; --"
    at.text_input(key="lb:criteria:candidate_contains").set_value(evil).run()
    assert not at.exception
    assert any("No candidates match" in i.value for i in at.info)
    assert {t: store.count(t) for t in before} == before


def test_leaderboard_other_views_from_definitions(project):
    at = _app()
    titles = at.selectbox(key="lb:view").options
    assert {"Success criteria", "All metrics", "Cost and time"} <= set(titles)
    at.selectbox(key="lb:view").set_value(titles.index("All metrics")).run()
    df = at.dataframe[0].value
    latest = project["store"].latest_run(project["goal"])["run_id"]
    assert len(df) == project["store"].scalar("SELECT count(*) FROM aggregates WHERE run_id = ?", [latest])
    at.text_input(key="lb:metrics:metric_contains").set_value("token").run()
    assert set(at.dataframe[0].value["metric"]) == {"token_f1"}
    at.selectbox(key="lb:view").set_value(titles.index("Cost and time")).run()
    assert "train_seconds" in at.dataframe[0].value.columns


def test_leaderboard_candidate_history_across_runs(project):
    at = _app()
    at.selectbox(key="lb:history_candidate").set_value("few-shot").run()
    hist = at.dataframe[-1].value
    assert set(hist["run_id"]) == set(project["runs"])
    assert set(hist["metric"]) >= {"token_f1", "judge.tone"}


def _rate_items(store, goal, items, rater, score_fn):
    for it in items:
        for crit in ("formal", "empathetic"):
            store.put_rating(goal, rater, it.item_id, crit, score=float(score_fn(it, crit)))


def _drawn(project):
    from harness.app import data
    from harness.goals import load_goal

    goal = load_goal(project["goals_dir"] / f"{project['goal']}.yaml")
    return data.ensure_items(project["store"], goal)


def test_leaderboard_shows_human_scores_and_untrusted_judge(project):
    store, goal = project["store"], project["goal"]
    items = _drawn(project)
    assert len(items) == 12
    # Humans score the opposite of the judge: the judge must be flagged untrusted.
    judge = {(r["candidate"], r["example_id"], r["criterion"]): r["score"] for r in store.query(
        "SELECT l.candidate, l.example_id, l.criterion, j.score FROM judgment_links l JOIN judgments j USING (cache_key) "
        "WHERE l.run_id = ? AND j.mode = 'pointwise'", [items[0].run_id])}
    _rate_items(store, goal, items, "ann", lambda it, c: 6 - judge[(it.candidate, it.example_id, c)])
    at = _app()
    df = at.dataframe[0].value.set_index("candidate")
    judge_col = next(c for c in df.columns if c.startswith("judge.tone"))
    assert all("⚠ untrusted judge" in x for x in df[judge_col])
    human_col = next(c for c in df.columns if c.startswith("human.tone"))
    expected = panel.human_scores(store.ratings(goal), items, "tone")
    for cand, per in expected.items():
        mean = sum(per.values()) / len(per)
        assert df.loc[cand, human_col].startswith(f"{mean:.3g}")
    human_table = at.table[0].value
    got = dict(zip(human_table["candidate"], human_table["human score"]))
    assert got == {c: f"{sum(p.values()) / len(p):.2f}" for c, p in expected.items()}


# --------------------------------------------------------------------------- compare

def test_compare_page_side_by_side_with_judgments(project):
    store = project["store"]
    latest = store.latest_run(project["goal"])["run_id"]
    at = _app("Compare")
    example = at.selectbox(key="cmp:example").value
    outs = {r["candidate"]: r["output"] for r in store.run_outputs(latest) if r["example_id"] == example}
    codes = [c.value for c in at.code]
    ex = store.query("SELECT * FROM examples WHERE example_id = ?", [example])[0]
    assert ex["input"] in codes and ex["reference"] in codes
    for out in outs.values():
        assert out in codes
    assert any("<del" in m.value or "<ins" in m.value or m.value.startswith("I&#x27;m") for m in at.markdown)
    metrics = at.dataframe[0].value
    assert set(metrics.columns) == set(outs)
    judged = at.dataframe[1].value
    assert {"rationale", "order", "score"} <= set(judged.columns)
    pair = judged[judged["mode"] == "pairwise"]
    assert sorted(pair["order"]) == ["AB", "BA"]


def test_compare_disagreement_filter_orders_by_gap(project):
    store = project["store"]
    latest = store.latest_run(project["goal"])["run_id"]
    at = _app("Compare")
    at.toggle(key="cmp:disagree").set_value(True).run()
    at.selectbox(key="cmp:a").set_value("lora-r8").run()
    at.selectbox(key="cmp:b").set_value("zero-shot").run()
    at.selectbox(key="cmp:metric").set_value("token_f1").run()
    options = at.selectbox(key="cmp:example").options
    scores = {(r["candidate"], r["example_id"]): r["value"] for r in store.query(
        "SELECT * FROM scores WHERE run_id = ? AND metric = 'token_f1'", [latest])}
    exs = {e for _, e in scores}
    gaps = sorted((abs(scores[("lora-r8", e)] - scores[("zero-shot", e)]) for e in exs), reverse=True)[:10]
    shown = [float(o.split("gap ")[1].rstrip(")")) for o in options]
    assert len(shown) == 10
    assert shown == pytest.approx([float(f"{g:.3g}") for g in gaps], rel=1e-3)


def test_compare_diff_escapes_output_markup():
    from harness.app.tables import word_diff_html

    html = word_diff_html("the answer is here", "the <script>alert(1)</script> answer")
    assert "<script>" not in html and "&lt;script&gt;" in html
    assert "<del" in html and "<ins" in html


# --------------------------------------------------------------------------- training

def test_training_page_curves_overfitting_and_hyperparameters(project):
    at = _app("Training")
    assert [s.value for s in at.subheader] == ["lora-r8"]
    assert any("Overfitting" in w.value and "step 60" in w.value for w in at.warning)
    assert "Early-stopping point: **step 60**" in _texts(at)
    hp = at.dataframe[0].value
    assert dict(zip(hp["parameter"], hp["value"]))["learning_rate"] == "0.0002"


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


def test_rate_page_saves_each_answer_at_once_blind_and_updates(project):
    store, goal = project["store"], project["goal"]
    at = _sign_in(_app("Rate"), goal, "Alice")
    assert "Item 1 of 12" in _texts(at)
    text = _texts(at)
    for cand in project["candidates"]:
        assert cand not in text, f"candidate name {cand!r} shown to the rater"
    radios = _radios(at, goal)
    assert [r.label for r in radios] == ["formal", "empathetic"]
    assert "5 · Fully professional from start to end." in radios[0].options
    radios[0].set_value(4).run()
    # Saved the moment it was chosen, before any submit.
    rows = store.ratings(goal)
    assert [(r["rater"], r["criterion"], r["score"]) for r in rows] == [("Alice", "formal", 4.0)]
    first_item = rows[0]["item_id"]
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
    assert {(r["item_id"], r["criterion"]): r["score"] for r in rows} == {(first_item, "formal"): 5.0,
                                                                          (first_item, "empathetic"): 2.0}


def test_rate_order_is_per_rater_and_reproducible(project):
    goal = project["goal"]
    first = {}
    for name in ("Alice", "Bob", "Alice"):
        at = _sign_in(_app("Rate"), goal, name)
        inp = at.code[0].value
        first.setdefault(name, set()).add(inp)
    assert len(first["Alice"]) == 1  # Alice sees the same first item each time
    items = _drawn(project)
    a = [i.item_id for i in panel.rater_order(items, goal, "Alice")]
    b = [i.item_id for i in panel.rater_order(items, goal, "Bob")]
    assert a != b and sorted(a) == sorted(b)


def test_rate_requires_a_known_token(project):
    root, goal = project["root"], project["goal"]
    (root / "goals" / f"{goal}.yaml").write_text(goal_yaml(tokens=["s3cret-token"]), encoding="utf-8")
    at = _sign_in(_app("Rate"), goal, "Mallory", token="guess")
    assert any("Unknown access token" in e.value for e in at.error)
    assert not _radios(at, goal)
    assert project["store"].ratings(goal) == []
    at = _sign_in(_app("Rate"), goal, "Trudy", token="s3cret-token")
    radios = _radios(at, goal)
    assert radios
    radios[0].set_value(3).run()
    assert [r["rater"] for r in project["store"].ratings(goal)] == ["Trudy"]


def test_rate_pairwise_mode_stores_choices(project):
    root, goal, store = project["root"], project["goal"], project["store"]
    (root / "goals" / f"{goal}.yaml").write_text(goal_yaml(mode="pairwise"), encoding="utf-8")
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
    item = next(it for it in _drawn(project) if it.item_id == rows[0]["item_id"])
    assert item.mode == "pairwise" and item.other_candidate
    scores = panel.human_scores(store.ratings(goal), _drawn(project), "tone", "formal")
    assert scores[item.candidate][item.example_id] == 1.0
    assert scores[item.other_candidate][item.example_id] == 0.0


# --------------------------------------------------------------------------- agreement

def test_agreement_page_matches_reference_statistics(project):
    krippendorff = pytest.importorskip("krippendorff")
    store, goal = project["store"], project["goal"]
    items = _drawn(project)
    _rate_items(store, goal, items, "ann", lambda it, c: 1 + (hash((it.item_id, c)) % 5))
    _rate_items(store, goal, items[:8], "bob", lambda it, c: 1 + (hash((it.item_id, c, "b")) % 5))
    at = _app("Agreement")
    inter = at.dataframe[0].value.set_index("criterion")
    for crit in ("formal", "empathetic"):
        rows = [r for r in store.ratings(goal) if r["criterion"] == crit]
        ids = sorted({r["item_id"] for r in rows})
        matrix = [[next((r["score"] for r in rows if r["rater"] == who and r["item_id"] == i), math.nan)
                   for i in ids] for who in ("ann", "bob")]
        ref = krippendorff.alpha(reliability_data=matrix, level_of_measurement="ordinal")
        assert inter.loc[crit, "Krippendorff alpha (ordinal)"] == pytest.approx(ref, abs=1e-9)
        assert inter.loc[crit, "kappa kind"] == "cohen" and inter.loc[crit, "kappa n"] == 8
    versus = at.dataframe[1].value.set_index("criterion")
    assert versus.loc["formal", "n"] == 12
    assert set(versus["trusted"]) <= {"✅ trusted", "⚠ untrusted", "– too few pairs"}
    expected = agreement.judge_vs_human(
        {(r["candidate"], r["example_id"]): r["score"] for r in store.query(
            "SELECT l.candidate, l.example_id, j.score FROM judgment_links l JOIN judgments j USING (cache_key) "
            "WHERE l.run_id = ? AND j.mode = 'pointwise' AND l.criterion = 'formal'", [items[0].run_id])},
        {(c, e): v for c, per in panel.human_scores(store.ratings(goal), items, "tone", "formal").items()
         for e, v in per.items()}, "formal", threshold=0.4)
    assert versus.loc["formal", "kappa (quadratic)"] == pytest.approx(expected.kappa, abs=1e-12)
    assert versus.loc["formal", "spearman"] == pytest.approx(expected.spearman, abs=1e-12)


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
    assert rows and {r["metric"] for r in rows} == {"judge.tone"}
    assert run_leaderboard(store, board, {"run_id": run_id}, {"metric_contains": "", "min_n": 21}) == []
    from harness.errors import HarnessError

    with pytest.raises(HarnessError, match="needs a number"):
        run_leaderboard(store, board, {"run_id": run_id}, {"min_n": "1; DROP TABLE runs"})


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
