"""`kind: full` end to end through the runner: train a whole model, generate with it (a model
folder, not an adapter), reuse it on a rerun, plan it in the dry run, export it."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

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
    doc.pop("human")  # no panel: the run needs no rubric from the repository's folder
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    goal = load_goal(path)
    # through `harness run`, as a user runs it (the work folder is the store's folder, here tmp_path)
    proc = subprocess.run([sys.executable, "-m", "harness", "run", str(path), "--db", str(tmp_path / "s.duckdb"),
                           "--json", "--quiet"], cwd=tmp_path, capture_output=True, text=True, timeout=600,
                          env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert proc.returncode in (0, 1), proc.stderr[-2000:]
    full = next(c for c in json.loads(proc.stdout)["candidates"] if c["name"] == "full")
    assert full["criteria"] and all(v["status"] in ("pass", "fail", "inconclusive") for v in full["criteria"])
    store = Store(tmp_path / "s.duckdb")
    run_id = json.loads(proc.stdout)["run"]["id"]
    row = next(c for c in store.candidates(run_id) if c["name"] == "full")
    assert row["status"] == "done" and (tmp_path / row["adapter_path"] / "config.json").is_file()  # a model folder
    second = run_goal(goal, store, progress=False)  # the same work folder: beside the store
    assert second.counts["trained"] == 0 and second.counts["generated"] == 0
    steps = plan(goal, store, prepare(goal, store, record=False))
    work = [s for s in steps if s.candidate == "full" and s.action in ("train", "generate")]
    assert work and all(s.todo == 0 for s in work), steps
    exp = subprocess.run([sys.executable, "-m", "harness", "export", str(path), "full", "--db",
                          str(tmp_path / "s.duckdb"), "--out", str(tmp_path / "exported")],
                         cwd=tmp_path, env=dict(os.environ, PYTHONPATH=str(ROOT)), capture_output=True, text=True, timeout=300)
    assert exp.returncode == 0, exp.stderr[-2000:]
    assert list((tmp_path / "exported").glob("*.safetensors")) and (tmp_path / "exported" / "SERVE.md").exists()
