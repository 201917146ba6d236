"""`kind: full` end to end through the runner: train a whole model, generate with it (a model
folder, not an adapter), reuse it on a rerun, plan it in the dry run, export it."""
from __future__ import annotations

import subprocess
import sys

import yaml

from tests.helpers import ROOT, tiny_goal


def test_a_full_fine_tune_runs_reruns_plans_and_exports(tmp_path, tiny_model_dir):
    from harness.data.split import prepare
    from harness.goals import load_goal
    from harness.runner import plan, run_goal
    from harness.store import Store

    path = tiny_goal(tmp_path, tiny_model_dir, n=60, judge=False, name="fullft")
    doc = yaml.safe_load(path.read_text())
    doc["candidates"] = [doc["candidates"][0],
                         {"name": "full", "kind": "full", "learning_rate": 0.003, "epochs": 1, "batch_size": 8,
                          "max_length": 64, "max_steps": 2}]
    doc["success"] = [{"metric": "accuracy", "at_least": 0.5}]
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    goal = load_goal(path)
    store = Store(tmp_path / "s.duckdb")
    first = run_goal(goal, store, progress=False, work_dir=tmp_path / "w")
    assert first.counts["trained"] == 1 and "full" in first.verdicts
    row = next(c for c in store.candidates(first.run_id) if c["name"] == "full")
    assert row["status"] == "done" and row["adapter_path"]
    second = run_goal(goal, store, progress=False, work_dir=tmp_path / "w")
    assert second.counts["trained"] == 0 and second.counts["generated"] == 0
    steps = plan(goal, store, prepare(goal, store, record=False), work_dir=tmp_path / "w")
    work = [s for s in steps if s.candidate == "full" and s.action in ("train", "generate")]
    assert work and all(s.todo == 0 for s in work), steps
    exp = subprocess.run([sys.executable, "-m", "harness", "export", str(path), "full", "--db",
                          str(tmp_path / "s.duckdb"), "--out", str(tmp_path / "exported")],
                         cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert exp.returncode == 0, exp.stderr[-2000:]
    assert list((tmp_path / "exported").glob("*.safetensors")) and (tmp_path / "exported" / "SERVE.md").exists()
