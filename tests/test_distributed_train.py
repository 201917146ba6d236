"""Training under ``accelerate launch`` (``train: {launcher: accelerate, num_processes: N}``):
two CPU processes (gloo) take the same optimizer steps as one process with twice the gradient
accumulation, through ``harness run``'s runner, and the adapter and curves are collected as
after in-process training."""
from __future__ import annotations

import pytest
import yaml

from tests.helpers import tiny_goal

# Two processes sum the same per-token losses in another order (and reduce over gloo in float64):
# the curves agree to float32 rounding, far inside this.
REL_TOL = 1e-4


def _goal(tmp_path, model_dir, *, launch=None, extra=None):
    path = tiny_goal(tmp_path, model_dir, judge=False, name="ddp", n=60)
    doc = yaml.safe_load(path.read_text())
    # batch 8: the 6 validation examples make one batch, so the second process has none to evaluate
    common = {"kind": "lora", "r": 4, "alpha": 8, "learning_rate": 0.005, "batch_size": 8, "max_length": 64,
              "dropout": 0.0, "max_steps": 5, "eval_every": 2}
    doc["candidates"] = [doc["candidates"][0],
                         {"name": "one-process", **common, "grad_accum": 2},
                         {"name": "two-processes", **common, "grad_accum": 1,
                          "train": launch or {"launcher": "accelerate", "num_processes": 2}},
                         *(extra or [])]
    doc["success"] = [{"metric": "accuracy", "at_least": 0.5}]
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def test_two_cpu_processes_follow_the_one_process_loss_curve(tmp_path, tiny_model_dir):
    from harness.goals import load_goal
    from harness.runner import run_goal
    from harness.store import Store
    from harness.train.sft import read_metadata

    goal = load_goal(_goal(tmp_path, tiny_model_dir))
    store = Store(tmp_path / "s.duckdb")
    first = run_goal(goal, store, progress=False, work_dir=tmp_path / "work")
    assert first.counts["trained"] == 2
    rows = {c["name"]: c for c in store.candidates(first.run_id)}
    one, two = (read_metadata(rows[n]["adapter_path"]) for n in ("one-process", "two-processes"))
    assert two["runtime"]["processes"] == 2 and one["runtime"]["processes"] == 1
    assert one["steps"] == two["steps"] == 5 and one["tokens_seen"] == two["tokens_seen"]
    c1, c2 = one["curves"], two["curves"]
    assert [(s, split) for s, split, _ in c1] == [(s, split) for s, split, _ in c2]
    for (_, _, a), (_, _, b) in zip(c1, c2):
        assert b == pytest.approx(a, rel=REL_TOL)
    # the curves reach the store as after in-process training, and the verdicts are decided
    stored = {(c["candidate"], c["split"]) for c in store.curves(first.run_id)}
    assert {("two-processes", "train"), ("two-processes", "validation")} <= stored
    assert "two-processes" in first.verdicts
    # the launched adapter is reused by a rerun; the process count is part of its key
    again = run_goal(goal, store, progress=False, work_dir=tmp_path / "work")
    assert again.counts["trained"] == 0 and again.counts["generated"] == 0
    assert rows["one-process"]["adapter_path"] != rows["two-processes"]["adapter_path"]


def test_launch_options_are_checked_before_any_work(tmp_path, tiny_model_dir):
    from harness.errors import InputError
    from harness.goals import load_goal
    from harness.runner.validate import validate_goal

    fsdp = tmp_path / "fsdp.yaml"
    fsdp.write_text("compute_environment: LOCAL_MACHINE\ndistributed_type: FSDP\nnum_processes: 8\n")
    bad = _goal(tmp_path, tiny_model_dir, launch={"launcher": "acelerate", "num_processes": 0},
                extra=[{"name": "cfg", "kind": "lora", "train": {"launcher": "accelerate", "config_file": "nope.yaml"}},
                       {"name": "sharded", "kind": "lora", "train": {"launcher": "accelerate", "config_file": str(fsdp)}},
                       {"name": "unlaunched", "kind": "lora", "train": {"num_processes": 2}}])
    with pytest.raises(InputError) as err:
        validate_goal(load_goal(bad))
    text = "\n".join(str(p) for p in err.value.problems)
    assert "train.launcher" in text and "train.num_processes" in text and "nope.yaml" in text
    assert "distributed_type FSDP is not supported" in text and "needs launcher: accelerate" in text
    lines = {p.line for p in err.value.problems}
    assert None not in lines


def test_the_launch_command_line():
    from pathlib import Path

    from harness.train.launch import launch_command

    cmd = launch_command(2, Path("/w/job.pkl"), config_file=None, port=29999)
    assert cmd[1:] == ["-m", "accelerate.commands.launch", "--num_processes", "2", "--multi_gpu",
                       "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
                       "--main_process_port", "29999", "-m", "harness.train.launch", "/w/job.pkl"]
    fsdp = launch_command(8, Path("/w/job.pkl"), config_file="fsdp.yaml", port=1)
    assert fsdp[fsdp.index("--config_file") + 1] == "fsdp.yaml" and "--multi_gpu" not in fsdp
