"""`harness results` and `harness runs`: each candidate's latest finished result, unfinished
runs said and non-zero, results out as JSON/JSONL/CSV/Parquet with per-example samples."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from harness.results import HOLM_STEP, OTHER_CRITERIA
from tests.helpers import ROOT, chat, write_eval_goal, write_jsonl, write_yaml

LABELS = ["billing", "shipping", "technical"]


def harness(*args, timeout=300):
    return subprocess.run([sys.executable, "-m", "harness", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout)


@pytest.fixture
def project(tmp_path):
    rows = [{"text": f"ticket {i}: help with case {i * 37 % 101}", "label": LABELS[i % 3]} for i in range(60)]
    data = write_jsonl(tmp_path / "data.jsonl", rows)
    good = write_jsonl(tmp_path / "good.jsonl", [{"input": r["text"], "output": r["label"]} for r in rows])
    bad = write_jsonl(tmp_path / "bad.jsonl", [{"input": r["text"], "output": "billing"} for r in rows])
    goal = write_eval_goal(tmp_path / "g.yaml", "outs", data, success=[{"metric": "accuracy", "at_least": 0.8}],
                           candidates=[{"name": "good", "kind": "file", "path": good},
                                       {"name": "bad", "kind": "file", "path": bad}])
    return goal, tmp_path / "s.duckdb"


def test_a_partial_rerun_keeps_the_other_candidates_result_and_says_where_it_came_from(project):
    goal, db = project
    assert harness("run", str(goal), "--db", str(db)).returncode == 0
    assert harness("run", str(goal), "--db", str(db), "--only", "bad").returncode == 1
    r = harness("results", str(goal), "--db", str(db), "--json")
    assert r.returncode == 0, r.stderr
    res = json.loads(r.stdout)
    by = {c["name"]: c for c in res["candidates"]}
    assert res["schema_version"] == 2 and set(by) == {"good", "bad"}
    assert by["good"]["from_earlier_run"] and by["good"]["run_id"] != by["bad"]["run_id"]
    assert res["meets_goal"] and res["best_candidate"] == "good"
    table = harness("results", str(goal), "--db", str(db))
    assert "from run" in table.stdout and "best candidate: good" in table.stdout
    by_name = harness("results", "outs", "--db", str(db))  # a goal name without its file still prints the table
    assert by_name.returncode == 0 and "good" in by_name.stdout
    runs = harness("runs", str(goal), "--db", str(db), "--json")
    assert [len(r["candidates"]) for r in json.loads(runs.stdout)] == [1, 2]


def test_results_decided_under_other_criteria_are_neither_relabelled_nor_put_together(project):
    """The goal file changes after a run: the table shows what the run decided (its own labels
    and level, with a warning), and a later partial run under the new criteria does not borrow
    the other candidate's pass at the old, looser threshold."""
    goal, db = project
    assert harness("run", str(goal), "--db", str(db)).returncode == 0
    text = goal.read_text()
    goal.write_text(text.replace("at_least: 0.8", "at_least: 0.3").replace("task:", "confidence: 0.99\ntask:"))
    r = harness("results", str(goal), "--db", str(db))
    assert "changed since" in r.stdout and "accuracy >= 0.8" in r.stdout and "accuracy >= 0.3" not in r.stdout
    assert "95% confidence" in r.stdout, r.stdout
    from harness.goals import load_goal
    from harness.report import build_report
    from harness.store import Store

    md = build_report(Store(db), load_goal(goal), fmt="md")
    assert "changed since this run" in md and "confidence 95%" in md
    # Under the new goal only `good` is run again: `bad`'s result was decided at 0.8 and 95%.
    assert harness("run", str(goal), "--db", str(db), "--only", "good").returncode == 0
    res = json.loads(harness("results", str(goal), "--db", str(db), "--json").stdout)
    assert [c["name"] for c in res["candidates"]] == ["good"]
    assert [(d["name"], d["why"]) for d in res["left_out"]] == [("bad", OTHER_CRITERIA)]
    r = harness("results", str(goal), "--db", str(db))
    assert "bad: left out" in r.stdout and "changed since" not in r.stdout and "99% confidence" in r.stdout


def test_a_pass_at_a_holm_step_is_left_out_once_the_candidates_it_rested_on_are_decided_again(tmp_path):
    """Run 1 (Holm over x, y, z): x (60/60) passes at the first step (98.33%), which lets y (55/60)
    be decided at 97.5%, where it passes (at 98.33% it would not); z fails. Running z again leaves
    y's step standing; x's outputs changing and x run again (it fails) does not, so y's old pass
    must not make the goal met."""
    rows = [{"text": f"ticket {i}: issue about {LABELS[i % 3]} number {i * 7}", "label": LABELS[i % 3]}
            for i in range(60)]
    data = write_jsonl(tmp_path / "d.jsonl", rows)

    def outputs(name, right):
        return write_jsonl(tmp_path / f"{name}.jsonl", [{"input": r["text"], "output": r["label"] if i < right
                                                         else "nonsense"} for i, r in enumerate(rows)])

    goal = write_eval_goal(tmp_path / "g.yaml", "holm", data, success=[{"metric": "accuracy", "at_least": 0.8}],
                           candidates=[{"name": n, "kind": "file", "path": outputs(n, k)}
                                       for n, k in (("x", 60), ("y", 55), ("z", 30))])
    db = str(tmp_path / "s.duckdb")

    def results():
        return json.loads(harness("results", str(goal), "--db", db, "--json").stdout)

    assert harness("run", str(goal), "--db", db).returncode == 0
    levels = {c["name"]: (c["criteria"][0]["confidence"], c["meets_goal"]) for c in results()["candidates"]}
    assert levels["x"][0] > levels["y"][0] and levels["x"][1] and levels["y"][1]  # y passed at step 2
    assert harness("run", str(goal), "--db", db, "--only", "z").returncode == 1
    res = results()
    assert {c["name"] for c in res["candidates"]} == {"x", "y", "z"} and res["left_out"] == []  # x still run 1's
    outputs("x", 30)
    assert harness("run", str(goal), "--db", db, "--only", "x").returncode == 1
    res = results()
    assert {c["name"] for c in res["candidates"]} == {"x", "z"} and not res["meets_goal"]
    assert res["best_candidate"] is None and [(d["name"], d["why"]) for d in res["left_out"]] == [("y", HOLM_STEP)]


def test_results_on_a_test_set_since_resealed_meet_nothing_and_exit_non_zero(project, tmp_path):
    """The data changes and the test set is sealed again: the last run's pass was on the old test
    set, so the results say so, meet no goal and exit 1 until a run on the current one."""
    goal, db = project
    assert harness("run", str(goal), "--db", str(db)).returncode == 0
    data = tmp_path / "data.jsonl"
    rows = [json.loads(line) for line in data.read_text().splitlines()]
    write_jsonl(data, [dict(r, label=LABELS[(LABELS.index(r["label"]) + 1) % 3]) for r in rows])
    assert harness("run", str(goal), "--db", str(db)).returncode == 2  # the seal guard
    split = harness("split", str(goal), "--db", str(db), "--reseal", "--out", str(tmp_path / "splits"))
    assert split.returncode == 0, split.stderr
    r = harness("results", str(goal), "--db", str(db))
    assert r.returncode == 1 and "sealed again" in r.stderr and "no candidate meets the goal" in r.stdout
    res = json.loads(harness("results", str(goal), "--db", str(db), "--json").stdout)
    assert res["test_set_resealed"] and not res["meets_goal"] and res["best_candidate"] is None
    assert not any(c["meets_goal"] for c in res["candidates"])
    from harness.goals import load_goal
    from harness.report import build_report
    from harness.store import Store

    assert "sealed again since this run" in build_report(Store(db), load_goal(goal), fmt="md")
    assert harness("run", str(goal), "--db", str(db)).returncode == 1  # on the current test set: good is wrong now
    res = json.loads(harness("results", str(goal), "--db", str(db), "--json").stdout)
    assert not res["test_set_resealed"]


def test_an_unfinished_latest_run_is_said_and_exits_non_zero(project):
    from harness.store import Store

    goal, db = project
    assert harness("run", str(goal), "--db", str(db)).returncode == 0
    store = Store(db)
    last = store.runs("outs")[0]
    store.start_run({"run_id": "killed-1", "goal": "outs", "goal_path": str(goal), "config_hash": "x",
                     "data_hash": last["data_hash"], "test_hash": last["test_hash"], "config": {}})
    r = harness("results", str(goal), "--db", str(db))
    assert r.returncode == 1 and "killed-1" in r.stderr and "running" in r.stderr
    assert "good" in r.stdout  # the finished results are still shown


def test_samples_come_out_as_parquet_csv_and_jsonl(project, tmp_path):
    import duckdb
    import pandas as pd

    goal, db = project
    assert harness("run", str(goal), "--db", str(db)).returncode == 0
    pq = tmp_path / "out" / "samples.parquet"
    r = harness("results", str(goal), "--db", str(db), "--format", "parquet", "--samples", "--output", str(pq))
    assert r.returncode == 0, r.stderr
    rows = duckdb.read_parquet(str(pq)).fetchall()
    cols = [d[0] for d in duckdb.read_parquet(str(pq)).description]
    n_test = 60  # the whole data set is the test split
    assert len(rows) == 2 * n_test and {"input", "reference", "output", "score.accuracy"} <= set(cols)
    csv = harness("results", str(goal), "--db", str(db), "--format", "csv", "--output", str(tmp_path / "v.csv"))
    assert csv.returncode == 0
    frame = pd.read_csv(tmp_path / "v.csv")
    assert set(frame["candidate"]) == {"good", "bad"} and set(frame["status"]) <= {"pass", "fail", "inconclusive"}
    jl = harness("results", str(goal), "--db", str(db), "--format", "jsonl", "--samples")
    lines = [json.loads(x) for x in jl.stdout.splitlines()]
    assert len(lines) == 2 * n_test and all("judgments" in x and "ratings" in x for x in lines)


def test_a_missing_store_or_run_is_an_error_and_creates_nothing(project, tmp_path):
    goal, db = project
    missing = tmp_path / "nope.duckdb"
    r = harness("results", str(goal), "--db", str(missing))
    assert r.returncode == 2 and "no store" in r.stderr and not missing.exists()
    assert harness("run", str(goal), "--db", str(db)).returncode == 0
    r = harness("results", str(goal), "--db", str(db), "--run", "bogus")
    assert r.returncode == 2 and "bogus" in r.stderr and "Traceback" not in r.stderr


@pytest.mark.parametrize("policy", ["flag", "drop"])
def test_leakage_is_stored_with_the_run_and_shown_in_results_and_report(tmp_path, policy):
    """Issue 11: `data.leakage: flag` was printed by `harness run` and then forgotten. The run stores
    what it found, `results --format json` shows it under run.leakage, the report says it in a line."""
    from harness.goals import load_goal
    from harness.report import build_report
    from harness.results import results_dict
    from harness.runner import run_goal
    from harness.store import Store
    from tests.helpers import write_yaml

    rows = []
    for i in range(40):  # each ticket twice, the copy with an exclamation mark: the same words
        text = f"ticket {i}: the customer cannot open invoice {i * 37 % 101} after the latest app update"
        rows += [{"text": text, "label": LABELS[i % 3]}, {"text": text + "!", "label": LABELS[i % 3]}]
    data = write_jsonl(tmp_path / "data.jsonl", rows)
    outs = write_jsonl(tmp_path / "outs.jsonl", [{"input": r["text"], "output": r["label"]} for r in rows])
    goal = load_goal(write_yaml(tmp_path / "g.yaml", {
        "goal": "leaky", "task": "classification",
        "data": {"path": data, "leakage": policy, "split": {"train": 0.5, "validation": 0.0, "test": 0.5, "seed": 2}},
        "success": [{"metric": "accuracy", "at_least": 0.5}],
        "candidates": [{"name": "logs", "kind": "file", "path": outs}]}))
    store = Store(tmp_path / "s.duckdb")
    res = run_goal(goal, store, progress=False, work_dir=tmp_path / "w")
    leak = results_dict(store, "leaky")["run"]["leakage"]
    assert leak["policy"] == policy and leak["duplicates"] > 0
    assert (leak["kept"], leak["dropped"]) == ((leak["duplicates"], 0) if policy == "flag" else (0, leak["duplicates"]))
    assert store.run(res.run_id)["leakage"] is not None
    md = build_report(store, goal, fmt="md")
    line = "KEPT in training (`data.leakage: flag`)" if policy == "flag" else "were dropped from training"
    assert f"{leak['kept'] or leak['dropped']} train/validation example(s)" in md and line in md


def test_an_edited_judge_rubric_shows_the_runs_verdicts_as_not_current(tmp_path):
    """A run stores its judge rubrics' content hashes with its goal: editing a rubric's text
    afterwards makes the run's verdicts 'changed since this run' (a comment does not: the hash
    is of the content); a run stored before the hashes were kept cannot tell, so says nothing."""
    import shutil

    from harness.goals import load_goal
    from harness.results import RUBRIC_HASHES, decided_under, goal_changed, judge_rubric_hashes, same_decision

    rubrics = tmp_path / "rubrics"
    rubrics.mkdir()
    shutil.copy(ROOT / "rubrics" / "tone.yaml", rubrics / "tone.yaml")
    data = write_jsonl(tmp_path / "d.jsonl", [chat(f"q{i}", f"a{i}") for i in range(10)])
    path = write_yaml(tmp_path / "goals" / "g.yaml", {
        "goal": "g", "data": {"path": str(data)}, "judge": {"rubrics": ["tone"]},
        "success": [{"metric": "judge.tone", "at_least": 3.5}], "candidates": [{"name": "p", "kind": "prompt"}]})
    goal = load_goal(path)
    config = goal.model_dump(mode="json")
    with_hashes = decided_under({**config, RUBRIC_HASHES: judge_rubric_hashes(goal, rubrics)})
    assert not goal_changed(with_hashes, goal, rubrics) and not goal_changed(decided_under(config), goal, rubrics)
    # Results of a run stored before the hashes were kept are put together with a later one's.
    assert same_decision(with_hashes, decided_under(config)) and same_decision(decided_under(config), with_hashes)
    other = decided_under({**config, RUBRIC_HASHES: {"tone": "0" * 16}})
    assert not same_decision(with_hashes, other)
    assert not same_decision(decided_under({**config, "confidence": 0.9}), with_hashes)
    tone = rubrics / "tone.yaml"
    tone.write_text("# a comment\n" + tone.read_text())
    assert not goal_changed(with_hashes, goal, rubrics)
    tone.write_text(tone.read_text().replace("Professional. Polite", "Casual. Polite"))
    assert goal_changed(with_hashes, goal, rubrics)
    assert not goal_changed(decided_under(config), goal, rubrics)  # stored without hashes: cannot tell
    tone.unlink()  # the name now finds the rubric harness ships, the text the run was judged on
    assert not goal_changed(with_hashes, goal, rubrics)
    # A rubric not found from here (another folder, the goal file gone) cannot tell: not "changed".
    (rubrics / "mytone.yaml").write_text((ROOT / "rubrics" / "tone.yaml").read_text().replace("name: tone",
                                                                                               "name: mytone"))
    mine = load_goal(write_yaml(tmp_path / "apart" / "goals" / "m.yaml", {
        "goal": "m", "data": {"path": str(data)}, "judge": {"rubrics": ["mytone"]},
        "success": [{"metric": "judge.mytone", "at_least": 3.5}], "candidates": [{"name": "p", "kind": "prompt"}]}))
    key = decided_under({**mine.model_dump(mode="json"), RUBRIC_HASHES: judge_rubric_hashes(mine, rubrics)})
    assert judge_rubric_hashes(mine, tmp_path / "nowhere") == {"mytone": None}
    assert not goal_changed(key, mine, tmp_path / "nowhere") and not goal_changed(key, mine, rubrics)
