"""Training cost: the FLOPs formula, sizes, and `harness estimate` on a goal."""
from __future__ import annotations

import subprocess
import sys

import pytest

from harness import cost
from harness.errors import HarnessError
from tests.helpers import ROOT, chat, write_goal, write_jsonl


def test_estimate_is_six_n_d_over_peak_times_utilisation():
    est = cost.estimate(8e9, 1_000_000, 3, device="a100", gpus=2, mfu=0.4, usd_per_gpu_hour=1.5)
    flops = 6 * 8e9 * 3_000_000
    assert est.flops == pytest.approx(flops)
    assert est.gpu_hours == pytest.approx(flops / (312e12 * 0.4) / 3600)
    assert est.wall_hours == pytest.approx(est.gpu_hours / 2) and est.usd == pytest.approx(est.gpu_hours * 1.5)
    assert any("6 x 8B parameters" in a for a in est.assumptions) and "40% utilisation" in est.assumptions[1]
    default = cost.estimate(8e9, 1_000_000, 3)
    assert "the default" in default.assumptions[1] and "list price" in default.assumptions[2]


def test_sizes_and_bad_settings():
    assert cost.parse_params("8B") == 8e9 and cost.parse_params("135m") == 135e6 and cost.parse_params("1.5e9") == 1.5e9
    for bad in ("eight", "-1B", "0"):
        with pytest.raises(HarnessError):
            cost.parse_params(bad)
    with pytest.raises(HarnessError, match="unknown device"):
        cost.estimate(1e9, 10, 1, device="tpu9")
    with pytest.raises(HarnessError):
        cost.estimate(1e9, 10, 1, mfu=1.5)


def test_harness_estimate_prints_the_projection_and_its_assumptions(tmp_path):
    data = write_jsonl(tmp_path / "d.jsonl", [chat(f"question {i} about parcels", "shipping") for i in range(50)])
    goal = write_goal(tmp_path, data)
    r = subprocess.run([sys.executable, "-m", "harness", "estimate", str(goal), "--params", "8B", "--device", "h100",
                        "--epochs", "3", "--db", str(tmp_path / "s.duckdb")], cwd=ROOT, capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "8B model" in r.stdout and "H100" in r.stdout and "GPU-hours" in r.stdout and "assumes:" in r.stdout
    bad = subprocess.run([sys.executable, "-m", "harness", "estimate", str(goal), "--params", "8B", "--device", "tpu9",
                          "--db", str(tmp_path / "s.duckdb")], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "unknown device" in bad.stderr and "Traceback" not in bad.stderr


def test_results_split_each_candidates_cost_and_price_training_at_the_goals_rate(tiny_run_project, tmp_path):
    """results --format json: training priced at cost.gpu_hour_usd x gpus when the goal sets it
    (null when it sets no price), 0 for a candidate that trains nothing; API spend as before."""
    import json

    from harness.results import results_dict
    from harness.store import Store
    from tests.helpers import copy_project

    project = copy_project(tiny_run_project, tmp_path / "p")
    store = Store(project["db"])
    unpriced = {c["name"]: c["cost"] for c in results_dict(store, project["goal"])["candidates"]}
    assert unpriced["lora"]["training_usd"] is None and unpriced["lora"]["training_seconds"] > 0
    assert unpriced["zero-shot"]["training_usd"] == 0.0 and unpriced["zero-shot"]["total_usd"] == 0.0
    from harness.results import _candidate, _training_price

    assert _training_price({"config": json.dumps({"cost": {"gpu_hour_usd": 3.6, "gpus": 2}})}) == pytest.approx(7.2)
    assert _training_price({"config": json.dumps({"cost": {"gpu_hour_usd": None}})}) is None
    row = next(c for c in store.candidates(project["latest"]) if c["name"] == "lora")
    lora = _candidate(row, [], [], project["latest"], False, 7.2)["cost"]
    assert lora["training_usd"] == pytest.approx(lora["training_seconds"] / 3600 * 7.2, rel=1e-4)
    assert lora["total_usd"] == pytest.approx(lora["training_usd"] + lora["generation_usd"] + lora["judging_usd"])
