"""`kind: file` candidates end to end: verdicts and exit codes from stored outputs, no model."""
import json
import subprocess
import sys

import pytest

import yaml

from tests.helpers import ROOT, write_eval_goal, write_jsonl, write_yaml

LABELS = ["billing", "shipping", "technical", "account"]


def _edit(goal, change) -> None:
    doc = yaml.safe_load(goal.read_text())
    change(doc)
    write_yaml(goal, doc)


def make_case(tmp_path, threshold, n=1000, correct=900):
    rows = [{"text": f"ticket {i}: customer needs help with case {i * 31 % 997}", "label": LABELS[i % 4]}
            for i in range(n)]
    data = write_jsonl(tmp_path / "data.jsonl", rows)
    outs = []
    for i, r in enumerate(rows):
        wrong = LABELS[(i + 1) % 4]
        outs.append({"input": r["text"], "output": r["label"] if i < correct else f"I think {wrong}"})
    write_jsonl(tmp_path / "outputs.jsonl", outs)
    goal = write_eval_goal(tmp_path / "g.yaml", "filegoal", data, success=[{"metric": "accuracy", "at_least": threshold}],
                           candidates=[{"name": "logs", "kind": "file", "path": tmp_path / "outputs.jsonl"}])
    return goal


@pytest.mark.parametrize("threshold,status,code", [(0.85, "pass", 0), (0.90, "inconclusive", 1), (0.95, "fail", 1)])
def test_file_candidate_verdicts_and_exit_codes(tmp_path, threshold, status, code):
    goal = make_case(tmp_path, threshold)
    db = tmp_path / "s.duckdb"
    r = subprocess.run([sys.executable, "-m", "harness", "run", str(goal), "--db", str(db), "--json"],
                       capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert r.returncode == code, r.stderr[-2000:]
    res = json.loads(r.stdout)
    (cand,) = res["candidates"]
    assert cand["metrics"]["accuracy"]["value"] == pytest.approx(0.90)
    assert cand["metrics"]["accuracy"]["n"] == 1000
    lo, hi = cand["metrics"]["accuracy"]["ci"]
    assert lo < 0.9 < hi
    (crit,) = cand["criteria"]
    assert crit["status"] == status and cand["meets_goal"] is (status == "pass")
    if status == "inconclusive":
        assert "more" in crit["detail"] or crit["needed_n"] is None
    again = subprocess.run([sys.executable, "-m", "harness", "results", str(goal), "--db", str(db), "--json"],
                           capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert json.loads(again.stdout)["candidates"][0]["criteria"][0]["status"] == status


def test_unmatched_output_rows_are_listed(tmp_path):
    goal = make_case(tmp_path, 0.5, n=20, correct=20)
    with (tmp_path / "outputs.jsonl").open("a") as fh:
        fh.write(json.dumps({"input": "a ticket nobody wrote", "output": "billing"}) + "\n")
        fh.write(json.dumps({"id": "deadbeef", "output": "billing"}) + "\n")
    r = subprocess.run([sys.executable, "-m", "harness", "run", str(goal), "--db", str(tmp_path / "s.duckdb")],
                       capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert r.returncode == 2
    assert "outputs.jsonl:21" in r.stderr and "outputs.jsonl:22" in r.stderr and "matches no example" in r.stderr


def test_a_second_output_for_one_example_is_refused(tmp_path):
    """Concatenated attempts (a wrong answer, then the right one) would let a later row pick the
    best: each example has one output, and a second is an error at its line."""
    goal = make_case(tmp_path, 0.5, n=20, correct=0)
    rows = [{"input": f"ticket {i}: customer needs help with case {i * 31 % 997}", "output": LABELS[i % 4]}
            for i in range(20)]
    with (tmp_path / "outputs.jsonl").open("a") as fh:
        fh.writelines(json.dumps(r) + "\n" for r in rows)
    r = subprocess.run([sys.executable, "-m", "harness", "run", str(goal), "--db", str(tmp_path / "s.duckdb")],
                       capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr[-2000:]
    assert "outputs.jsonl:21 [input]" in r.stderr and "a second output for the example of line 1" in r.stderr


def test_dry_run_prints_plan_and_writes_nothing(tmp_path):
    goal = make_case(tmp_path, 0.5, n=40, correct=40)
    db = tmp_path / "s.duckdb"
    r = subprocess.run([sys.executable, "-m", "harness", "run", str(goal), "--db", str(db), "--dry-run"],
                       capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "plan for filegoal" in r.stdout and "logs" in r.stdout and "estimated API cost" in r.stdout
    from harness.store import Store

    assert Store(db).count("runs") == 0 and Store(db).count("seals") == 0


def test_candidate_option_typos_are_refused_before_any_work(tmp_path):
    goal = make_case(tmp_path, 0.5, n=40, correct=40)
    _edit(goal, lambda doc: doc["candidates"].insert(0, {"name": "few", "kind": "prompt", "shot": 5})
          or doc["candidates"].insert(1, {"name": "tuned", "kind": "lora", "rank": 8}))
    db = tmp_path / "s.duckdb"
    r = subprocess.run([sys.executable, "-m", "harness", "run", str(goal), "--db", str(db), "--dry-run"],
                       capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert r.returncode == 2
    assert "candidates[0].shot" in r.stderr and "did you mean 'shots'" in r.stderr
    assert "rank" in r.stderr and "candidates[1]" in r.stderr


def test_human_criterion_waits_for_ratings_then_gets_a_verdict(tmp_path):
    from harness.goals import load_goal
    from harness.runner import run_goal
    from harness.store import Store

    goal_file = make_case(tmp_path, 0.5, n=40, correct=40)
    _edit(goal_file, lambda doc: doc["success"].insert(0, {"metric": "human.correctness", "at_least": 3})
          or doc.update(human={"rubrics": ["correctness"], "items": 30, "raters_per_item": 1, "min_ratings": 4}))
    goal = load_goal(goal_file)
    store = Store(tmp_path / "s.duckdb")
    first = run_goal(goal, store, progress=False, work_dir=tmp_path / "w", rubrics_dir=ROOT / "rubrics")
    (v,) = [v for v in first.verdicts["logs"] if v.metric == "human.correctness"]
    assert v.status == "inconclusive" and "4 more needed" in v.detail
    ids = [r["example_id"] for r in store.query("SELECT example_id FROM outputs WHERE run_id = ?", [first.run_id])]
    store.put_panel_items(goal.goal, [{"item_id": f"it{i}", "run_id": first.run_id, "example_id": e,
                                       "candidate": "logs", "mode": "pointwise", "rubric": "correctness"}
                                      for i, e in enumerate(ids[:24])])
    for i in range(5):  # the rubric's one criterion is also named "correctness"
        store.put_rating(goal.goal, "ann", f"it{i}", "correctness", score=5.0)
    second = run_goal(goal, store, progress=False, work_dir=tmp_path / "w", rubrics_dir=ROOT / "rubrics")
    (v,) = [v for v in second.verdicts["logs"] if v.metric == "human.correctness"]
    # Five perfect ratings are not evidence: below MIN_N rated examples there is no interval.
    assert v.value == 5.0 and v.status == "inconclusive" and "too few" in v.detail, v.detail
    for i in range(5, 24):
        store.put_rating(goal.goal, "ann", f"it{i}", "correctness", score=4.0 + i % 2)
    third = run_goal(goal, store, progress=False, work_dir=tmp_path / "w", rubrics_dir=ROOT / "rubrics")
    (v,) = [v for v in third.verdicts["logs"] if v.metric == "human.correctness"]
    # One rater's leniency cannot be told from the outputs' quality: no verdict on a panel of one.
    assert v.status == "inconclusive" and "one rater" in v.detail, v.detail
    for i in range(24):
        store.put_rating(goal.goal, "bob", f"it{i}", "correctness", score=4.0 + (i + 1) % 2)
    fourth = run_goal(goal, store, progress=False, work_dir=tmp_path / "w", rubrics_dir=ROOT / "rubrics")
    (v,) = [v for v in fourth.verdicts["logs"] if v.metric == "human.correctness"]
    assert v.status == "pass" and "2 raters x 24 items" in v.interval and v.ci[0] > 3.0, v.detail
