"""`harness run` end to end on a tiny real model: baselines, a LoRA adapter, a local judge,
verdicts, caching across reruns, and resume after SIGKILL."""
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

from harness.goals import load_goal
from harness.runner import run_goal
from harness.store import Store
from tests.helpers import ROOT, tiny_goal


def test_run_then_rerun_redoes_nothing(tmp_path, tiny_model_dir, monkeypatch):
    monkeypatch.chdir(ROOT)  # rubrics/ lives here
    goal = load_goal(tiny_goal(tmp_path, tiny_model_dir))
    store = Store(tmp_path / "s.duckdb")

    from harness.data.split import prepare
    from harness.runner import plan

    def planned() -> dict[tuple[str, str], tuple[int, int]]:
        prepared = prepare(goal, store, record=False)
        return {(s.candidate, s.action): (s.todo, s.cached)
                for s in plan(goal, store, prepared, work_dir=tmp_path / "work")}

    before = planned()
    assert before[("lora", "train")] == (1, 0)
    n_planned = before[("zero-shot", "generate")][0]
    assert n_planned > 0 and before[("few-shot", "generate")] == (n_planned, 0)
    assert before[("zero-shot", "judge")][0] >= n_planned  # an upper bound until outputs exist

    first = run_goal(goal, store, progress=False, work_dir=tmp_path / "work")
    n_test = len(store.query("SELECT * FROM examples WHERE split = 'test'"))
    assert first.counts["generated"] == 3 * n_test and first.counts["trained"] == 1
    assert first.counts["judged"] > 0
    assert set(first.meets) == {"zero-shot", "few-shot", "lora"}
    for cand in first.aggregates.values():
        acc = cand["accuracy"]
        assert 0 <= acc["value"] <= 1 and acc["ci"][0] <= acc["value"] <= acc["ci"][1] and acc["n"] == n_test
        assert "judge.instruction_following" in cand
    curves = store.query("SELECT * FROM curves WHERE run_id = ?", [first.run_id])
    assert {c["split"] for c in curves} == {"train", "validation"}
    counts = {t: store.count(t) for t in ("predictions", "judgments")}
    after = planned()  # the plan now finds everything stored, by the run's own keys
    assert n_planned == n_test
    assert after[("lora", "train")] == (0, 1)
    for cand in ("zero-shot", "few-shot", "lora"):
        assert after[(cand, "generate")] == (0, n_test)
        todo, stored = after[(cand, "judge")]
        assert todo == 0 and stored == before[(cand, "judge")][0]

    from harness.report import build_report
    from harness.results import results_dict

    res = results_dict(store, goal.goal)
    assert res["run"]["id"] == first.run_id and res["run"]["status"] == "finished"
    by_name = {c["name"]: c for c in res["candidates"]}
    assert by_name["lora"]["adapter_path"] and by_name["lora"]["train_seconds"] > 0
    assert [v["metric"] for v in by_name["lora"]["criteria"]] == ["accuracy", "accuracy"]
    assert by_name["lora"]["criteria"][1]["baseline"] == "zero-shot"
    assert "McNemar" in by_name["lora"]["criteria"][1]["detail"]  # paired accuracy test beside the CI"
    html = build_report(store, goal)
    kinds = re.findall(r'<figure class="chart" data-kind="(\w+)"', html)  # one chart per metric, the loss curves
    assert html.count("<svg") == len(kinds) and kinds.count("loss") == 1 and "metric" in kinds and "lora" in html

    # `harness export` finds the trained adapter through the store.
    exp = subprocess.run([sys.executable, "-m", "harness", "export", str(goal.source), "lora", "--db",
                          str(tmp_path / "s.duckdb"), "--out", str(tmp_path / "exported"), "--merged"],
                         cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert exp.returncode == 0, exp.stderr[-2000:]
    serve = (tmp_path / "exported" / "SERVE.md").read_text()
    assert "vllm serve" in serve and "ollama create" in serve
    assert (tmp_path / "exported" / "model.safetensors").exists() or list((tmp_path / "exported").glob("*.safetensors"))

    second = run_goal(goal, store, progress=False, work_dir=tmp_path / "work")
    assert second.counts["generated"] == 0 and second.counts["judged"] == 0
    assert second.counts["trained"] == 0 and second.counts["adapters_reused"] == 1
    assert {t: store.count(t) for t in ("predictions", "judgments")} == counts
    assert second.aggregates == first.aggregates

    # A training loop whose numerics changed does not reuse adapters it did not make.
    from harness.train import sft

    monkeypatch.setattr(sft, "TRAINER_VERSION", sft.TRAINER_VERSION + 1)
    third = run_goal(goal, store, only=["lora"], progress=False, work_dir=tmp_path / "work")
    assert third.counts["trained"] == 1 and third.counts["adapters_reused"] == 0
    assert len(list((tmp_path / "work" / "adapters" / goal.goal).iterdir())) == 2

    # A damaged (truncated) adapter metadata file is trained again, not a JSONDecodeError forever.
    lora_row = next(c for c in store.candidates(third.run_id) if c["name"] == "lora")
    meta = Path(lora_row["adapter_path"]) / sft.METADATA_FILE
    meta.write_text(meta.read_text()[:40])
    fourth = run_goal(goal, store, only=["lora"], progress=False, work_dir=tmp_path / "work")
    assert fourth.counts["trained"] == 1 and sft.read_metadata(meta.parent)["adapter_hash"]


def test_sigkill_during_generation_then_resume(tmp_path, tiny_model_dir):
    goal_path = tiny_goal(tmp_path, tiny_model_dir, n=240, max_new_tokens=48, judge=False, name="killme",
                          test_ratio=0.5)
    db = tmp_path / "s.duckdb"
    env = dict(os.environ, HARNESS_DB=str(db))
    cmd = [sys.executable, "-m", "harness", "run", str(goal_path), "--only", "zero-shot", "--no-progress"]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    store = Store(db)
    deadline = time.time() + 240
    stored = 0
    try:
        while time.time() < deadline and proc.poll() is None:
            time.sleep(0.3)
            if db.exists():
                try:
                    stored = store.count("predictions")
                except Exception:  # the schema may not exist yet
                    continue
                if stored >= 16:
                    break
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert 0 < stored < 120, f"could not catch the run mid-generation (stored {stored})"
    before = store.count("predictions")
    done = subprocess.run(cmd + ["--json"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode in (0, 1), done.stderr[-3000:]
    res = json.loads(done.stdout)
    assert res["run"]["status"] == "finished"
    n_test = 120
    assert store.count("predictions") == n_test  # nothing generated twice
    dupes = store.query("SELECT run_id, candidate, example_id, count(*) AS n FROM outputs "
                        "GROUP BY ALL HAVING count(*) > 1")
    assert dupes == []
    run_id = res["run"]["id"]
    assert len(store.query("SELECT * FROM outputs WHERE run_id = ?", [run_id])) == n_test
    statuses = {r["status"] for r in store.runs("killme")}
    assert statuses == {"interrupted", "finished"}
    assert before >= 16


def test_a_prompt_out_of_memory_alone_is_stored_as_a_failed_generation(tmp_path, tiny_model_dir, monkeypatch):
    """Local generation that runs out of accelerator memory even one prompt at a time: that output
    is a failure (stored, counted, never scored, asked again next run), the rest go on."""
    import torch

    from harness.backends.local import LocalModel
    from tests.helpers import ALL_TEST_SPLIT, routing_rows, write_jsonl, write_yaml

    monkeypatch.chdir(ROOT)
    marker = "1021"  # the number in example 3's text (1000 + 3 * 7), and in no other
    goal_file = write_yaml(tmp_path / "oom.yaml", {
        "goal": "oom", "model": str(tiny_model_dir), "task": "classification", "generation_batch_size": 4,
        "data": {"path": str(write_jsonl(tmp_path / "d.jsonl", routing_rows(12))), "split": ALL_TEST_SPLIT},
        "decoding": {"max_new_tokens": 4}, "success": [{"metric": "accuracy", "at_least": 0.5}],
        "candidates": [{"name": "zero-shot", "kind": "prompt"}]})
    real, state = LocalModel._generate_batch, {"short": True}

    def short_of_memory(self, rows, *args, **kwargs):
        if state["short"] and any(marker in self.tokenizer.decode(r) for r in rows):
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 1.00 GiB")
        return real(self, rows, *args, **kwargs)

    monkeypatch.setattr(LocalModel, "_generate_batch", short_of_memory)
    store = Store(tmp_path / "s.duckdb")
    first = run_goal(load_goal(goal_file), store, progress=False, work_dir=tmp_path / "w")
    assert (first.counts["generated"], first.counts["generations_failed"]) == (11, 1)
    assert first.aggregates["zero-shot"]["accuracy"]["n"] == 11  # the failed output is not scored as ""
    (v,) = first.verdicts["zero-shot"]
    assert "1 of 12 outputs failed to generate" in v.detail and v.status != "pass"
    (row,) = store.query("SELECT error FROM predictions WHERE error IS NOT NULL")
    assert "out of memory" in row["error"]
    state["short"] = False
    second = run_goal(load_goal(goal_file), store, progress=False, work_dir=tmp_path / "w")
    assert (second.counts["generated"], second.counts["reused"], second.counts["generations_failed"]) == (1, 11, 0)
    assert second.aggregates["zero-shot"]["accuracy"]["n"] == 12
