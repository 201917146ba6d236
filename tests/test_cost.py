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
