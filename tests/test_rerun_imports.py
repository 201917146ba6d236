"""A rerun with everything stored loads no model library: keys and plans come from file hashes,
stored rows and each adapter's ``harness_adapter.json``, so ``harness run`` and ``--dry-run``
import neither peft nor transformers (nor torch) when nothing must run. Checked in a fresh
process, as a user reruns (``bench/bench_rerun.py`` times it on the demo goal)."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from harness.goals import load_goal
from harness.runner import run_goal
from harness.store import Store
from tests.helpers import ROOT, tiny_goal

HEAVY = ("peft", "transformers", "torch")
# `harness ARGS...` as the console script runs it; at exit, the heavy modules it imported.
CLI = ("import atexit, json, runpy, sys\n"
       f"atexit.register(lambda: print('IMPORTED ' + json.dumps([m for m in {HEAVY!r} if m in sys.modules])))\n"
       "sys.argv = ['harness', *sys.argv[1:]]\n"
       "runpy.run_module('harness', run_name='__main__')\n")


def _harness(*args, cwd) -> tuple[int, list[str], str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT), HF_HUB_OFFLINE="1")
    proc = subprocess.run([sys.executable, "-c", CLI, *map(str, args)], capture_output=True, text=True, cwd=cwd,
                          env=env, timeout=600)
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("IMPORTED ")), None)
    assert line is not None, proc.stderr[-3000:]
    return proc.returncode, json.loads(line[len("IMPORTED "):]), proc.stdout


@pytest.mark.slow
def test_a_rerun_with_everything_stored_imports_no_model_library(tmp_path, tiny_model_dir):
    goal_file = tiny_goal(tmp_path, tiny_model_dir)  # zero-shot, few-shot, a LoRA, a local judge
    db = tmp_path / "harness.duckdb"
    store = Store(db)
    first = run_goal(load_goal(goal_file), store, progress=False)  # this process loads them all
    assert first.counts["trained"] == 1 and first.counts["judged"] > 0
    stored = {t: store.count(t) for t in ("predictions", "judgments")}

    code, imported, out = _harness("run", goal_file, "--db", db, "-q", cwd=tmp_path)
    assert code in (0, 1), out
    assert imported == [], f"a rerun with nothing to do imported {imported}"
    assert {t: store.count(t) for t in stored} == stored  # nothing generated or judged again
    assert len(store.runs(first.goal)) == 2 and store.latest_run(first.goal)["status"] == "finished"

    code, imported, out = _harness("run", goal_file, "--db", db, "--dry-run", cwd=tmp_path)
    assert code == 0 and imported == [], (imported, out)
    assert "0 train/generate/judge units to do" in " ".join(out.split())
