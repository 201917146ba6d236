"""A rerun with everything stored costs almost nothing: generation and judging are keyed by content.

One `harness run` of a goal on the default model over the demo test split (zero-shot and
few-shot candidates, plus an OpenAI-compatible judge served locally with an injected 200 ms
latency), then the same run again. Reported: rerun time / first-run time (target at most
5%), and how many judge requests the rerun made (target 0).

    python bench/bench_rerun.py
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


def run() -> list[dict]:
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


if __name__ == "__main__":
    for row in run():
        print(json.dumps(row))
