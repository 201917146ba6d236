"""A rerun with everything stored costs almost nothing: generation and judging are keyed by content.

``rerun_cached``: one run of a goal on the default model over the demo test split (zero-shot
and few-shot candidates, plus an OpenAI-compatible judge served locally with an injected 200 ms
latency), then the same run again. Reported: rerun time / first-run time (target at most
5%), and how many judge requests the rerun made (target 0).

``rerun_demo``: ``goals/demo.yaml`` itself (three prompting baselines, a LoRA trained on the
CPU, a local judge over all four), run once in full, then run again with everything stored,
each in a fresh process as ``harness run`` is (interpreter start and imports included); then
``--dry-run``. Reported: the no-op rerun against the first run (targets: under 5% and under
5 s), and which of torch, transformers and peft the rerun and the dry run imported (target:
none; computing keys and plans needs none of them when nothing must run). The first run
trains for a few minutes on two CPU cores; it is done once.

    python bench/bench_rerun.py            # both
    python bench/bench_rerun.py --only demo
"""
from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def run_api() -> list[dict]:
    from harness.goals import load_goal
    from harness.runner import run_goal
    from harness.store import Store
    from tests.fakeapi import FakeAPI

    reply = json.dumps({"score": 4, "rationale": "fine"})
    with tempfile.TemporaryDirectory() as tmp, FakeAPI(responder=lambda m: reply, delay_s=0.2) as srv:
        tmp = Path(tmp)
        goal_file = tmp / "rerun.yaml"
        goal_file.write_text(f"""goal: rerun-bench
model: default
task: classification
data:
  path: {ROOT / 'data' / 'demo.jsonl'}
  split: {{train: 0.7, validation: 0.1, test: 0.2, seed: 13}}
success:
  - {{metric: accuracy, at_least: 0.5}}
decoding: {{max_new_tokens: 8}}
candidates:
  - {{name: zero-shot, kind: prompt}}
  - {{name: few-shot, kind: prompt, shots: 5}}
judge:
  model: "openai-compatible:judge@{srv.openai_url}"
  rubrics: [instruction_following]
  concurrency: 32
""")
        os.chdir(ROOT)
        goal = load_goal(goal_file)
        store = Store(tmp / "s.duckdb")
        t0 = time.perf_counter()
        first = run_goal(goal, store, progress=False, work_dir=tmp / "work")
        t_first = time.perf_counter() - t0
        calls = len(srv.calls)
        t0 = time.perf_counter()
        second = run_goal(goal, store, progress=False, work_dir=tmp / "work")
        t_second = time.perf_counter() - t0
        repeated = len(srv.calls) - calls
    return [{
        "bench": "rerun_cached", "ratio": round(t_second / t_first, 4), "target": 0.05, "higher_is_better": False,
        "first_run_s": round(t_first, 2), "rerun_s": round(t_second, 2),
        "generated_first": first.counts["generated"], "generated_rerun": second.counts["generated"],
        "judge_calls_first": calls, "judge_calls_rerun": repeated,
        "note": "rerun = data split + seal check + cache lookups + scoring and statistics; no model is loaded",
    }]


def run() -> list[dict]:
    """Both: the small API goal, then the demo goal (bench/run.py calls this)."""
    return run_api() + run_demo()


HEAVY = ("torch", "transformers", "peft")

# One `harness run` (or `--dry-run`) of a goal in a fresh process, as the CLI runs it; at exit it
# prints one JSON line: the run's counts and which heavy libraries the process imported.
_CHILD = """
import atexit, json, sys
from harness.goals import load_goal
from harness.store import Store
goal_path, db, dry = sys.argv[1], sys.argv[2], sys.argv[3] == "dry"
out = {}
atexit.register(lambda: print("RESULT " + json.dumps(
    dict(out, imported=[m for m in %r if m in sys.modules]))))
goal, store = load_goal(goal_path), Store(db)
if dry:
    from harness.data.split import prepare
    from harness.runner import plan, validate_goal
    validate_goal(goal)
    steps = plan(goal, store, prepare(goal, store, record=False))
    out["todo"] = sum(s.todo for s in steps if s.action in ("train", "generate", "judge"))
else:
    from harness.runner import run_goal
    out["counts"] = run_goal(goal, store, progress=False).counts
""" % (HEAVY,)


def _child(goal: Path, db: Path, dry: bool) -> tuple[float, dict]:
    """(wall seconds of the whole process, what it printed)."""
    import subprocess

    env = dict(os.environ, PYTHONPATH=str(ROOT), HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", _CHILD, str(goal), str(db), "dry" if dry else "run"],
                          capture_output=True, text=True, cwd=db.parent, env=env)
    wall = time.perf_counter() - t0
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")), None)
    if proc.returncode != 0 or line is None:
        raise RuntimeError(f"harness run failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return wall, json.loads(line[len("RESULT "):])


def run_demo() -> list[dict]:
    """goals/demo.yaml once in full, then again with everything stored, then a dry run."""
    goal = ROOT / "goals" / "demo.yaml"
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "harness.duckdb"  # the work folder (adapters) is the store's: tmp
        t_first, first = _child(goal, db, dry=False)
        t_again, again = _child(goal, db, dry=False)
        t_dry, dry = _child(goal, db, dry=True)
    ratio = t_again / t_first
    return [{
        "bench": "rerun_demo", "ratio": round(ratio, 4), "target": 0.05, "higher_is_better": False,
        "first_run_s": round(t_first, 1), "rerun_s": round(t_again, 2), "dry_run_s": round(t_dry, 2),
        "rerun_under_5s": t_again < 5.0, "met": ratio < 0.05 and t_again < 5.0,
        "first_counts": first["counts"], "rerun_counts": again["counts"], "dry_run_todo": dry["todo"],
        "first_imported": first["imported"], "rerun_imported": again["imported"],
        "dry_run_imported": dry["imported"],
        "note": "each run a fresh process (interpreter, imports, split, seal, cache lookups, scoring, statistics)",
    }]


if __name__ == "__main__":
    only = sys.argv[sys.argv.index("--only") + 1] if "--only" in sys.argv else None
    rows = (run_api() if only in (None, "api") else []) + (run_demo() if only in (None, "demo") else [])
    for row in rows:
        print(json.dumps(row))
