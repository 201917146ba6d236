"""``harness run --executor ray``: each candidate's train → generate as a Ray task on a local Ray
instance (2 CPUs), the driver alone writing the store: the same verdicts and outputs as the
in-process executor, and a worker killed in the middle of a task is retried."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml

from tests.helpers import ROOT, tiny_goal

TASK_TITLE = "ray::_task"  # the process title Ray gives a worker running harness.runner.executor._task


@pytest.fixture(scope="module")
def ray_local():
    import ray

    env = {k: os.environ[k] for k in ("HARNESS_HOME", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE") if k in os.environ}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, runtime_env={"env_vars": env})
    yield ray
    ray.shutdown()


def _goal(tmp_path, model_dir):
    path = tiny_goal(tmp_path, model_dir, judge=False, name="rayrun")
    doc = yaml.safe_load(path.read_text())
    doc["candidates"] = doc["candidates"][:3] + [
        {"name": "rag-lora", "kind": "rag", "documents": str(_docs(tmp_path)), "k": 1, "adapter_of": "lora"}]
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def _docs(tmp_path):
    docs = tmp_path / "docs"
    docs.mkdir(exist_ok=True)
    (docs / "queues.md").write_text("# Queues\n\nBilling questions go to the billing queue.\n\n"
                                    "Password resets go to the account queue.\n")
    return docs


def _task_pids() -> list[int]:
    pids = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                if (d / "cmdline").read_bytes().split(b"\0")[0].decode(errors="replace").startswith(TASK_TITLE):
                    pids.append(int(d.name))
            except OSError:
                pass
    return pids


class _Killer(threading.Thread):
    """Kills the first worker seen running a task, once, after it has run for ``after`` seconds."""

    def __init__(self, after: float = 2.0):
        super().__init__(daemon=True)
        self.after, self.killed, self.stop = after, [], threading.Event()

    def run(self) -> None:
        seen: dict[int, float] = {}
        while not self.stop.is_set() and not self.killed:
            now = time.monotonic()
            for pid in _task_pids():
                seen.setdefault(pid, now)
                if now - seen[pid] >= self.after:
                    os.kill(pid, signal.SIGKILL)
                    self.killed.append(pid)
                    break
            time.sleep(0.05)


def _verdicts(result):
    return {c: sorted((v.metric, v.op, v.status) for v in vs) for c, vs in result.verdicts.items()}


def _texts(store, run_id):
    return {(r["candidate"], r["example_id"]): r["output"] for r in store.run_outputs(run_id)}


def test_ray_gives_the_local_verdicts_and_retries_a_killed_worker(tmp_path, tiny_model_dir, ray_local):
    from harness.goals import load_goal
    from harness.runner import run_goal
    from harness.store import Store

    goal = load_goal(_goal(tmp_path, tiny_model_dir))
    local_store = Store(tmp_path / "local.duckdb")
    local = run_goal(goal, local_store, progress=False, work_dir=tmp_path / "w-local")

    killer = _Killer()
    killer.start()
    ray_store = Store(tmp_path / "ray.duckdb")
    try:
        on_ray = run_goal(goal, ray_store, progress=False, work_dir=tmp_path / "w-ray", executor="ray")
    finally:
        killer.stop.set()
    assert killer.killed, "no Ray worker was seen running a task"
    assert _verdicts(on_ray) == _verdicts(local) and on_ray.meets == local.meets
    assert _texts(ray_store, on_ray.run_id) == _texts(local_store, local.run_id)
    rows = {c["name"]: c for c in ray_store.candidates(on_ray.run_id)}
    assert all(r["status"] == "done" for r in rows.values())
    assert Path(rows["lora"]["adapter_path"]).is_dir()
    assert {c["candidate"] for c in ray_store.curves(on_ray.run_id)} == {"lora"}
    assert on_ray.counts["trained"] == 1  # rag-lora waited for lora's adapter instead of training its own

    # The driver resumes from its store: on Ray again, nothing is trained or generated.
    again = run_goal(goal, ray_store, progress=False, work_dir=tmp_path / "w-ray", executor="ray")
    assert again.counts["generated"] == 0 and again.counts["trained"] == 0
    assert _verdicts(again) == _verdicts(local)


def test_the_task_resources_follow_the_candidate(tiny_model_dir):
    from types import SimpleNamespace

    from harness.goals import Candidate
    from harness.runner.executor import resources

    run = SimpleNamespace(goal=SimpleNamespace(device="auto", model=str(tiny_model_dir)))
    weights = sum(f.stat().st_size for f in Path(tiny_model_dir).glob("*.safetensors"))
    api = Candidate(name="gpt", kind="api", provider="openai", model="gpt-4o-mini")
    assert resources(run, api, 8.0) == {"num_cpus": 1, "num_gpus": 0}
    prompt = Candidate(name="zero-shot", kind="prompt", device="cuda:1")
    assert resources(run, prompt, 0.0) == {"num_cpus": 1, "num_gpus": 1, "memory": 2 * weights}
    auto = Candidate(name="z", kind="prompt")
    assert resources(run, auto, 0.0)["num_gpus"] == 0 and resources(run, auto, 4.0)["num_gpus"] == 1
    lora = Candidate(name="l", kind="lora")
    assert resources(run, lora, 0.0)["memory"] == 4 * weights  # weights, gradients and optimizer state


def test_without_ray_the_cli_says_so_before_any_work(tmp_path, tiny_model_dir):
    blocker = tmp_path / "noray"
    (blocker / "ray").mkdir(parents=True)
    (blocker / "ray" / "__init__.py").write_text("raise ImportError('ray is not installed here')\n")
    path = _goal(tmp_path, tiny_model_dir)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(blocker), str(ROOT)]))
    proc = subprocess.run([sys.executable, "-m", "harness", "run", str(path), "--executor", "ray", "--db",
                           str(tmp_path / "s.duckdb")], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 2 and "pip install" in proc.stderr and "Traceback" not in proc.stderr, proc.stderr


def test_a_trained_adapter_travels_whole_and_never_over_one_already_there(tmp_path):
    """What a task gets (the driver's trained adapters) and gives back (one it trained): packed
    with their folder name, unpacked under the other side's work folder unless already there."""
    from harness.runner.executor import _tar, _untar

    folder = tmp_path / "driver" / "adapters" / "g" / "lora-abc"
    folder.mkdir(parents=True)
    (folder / "adapter_model.safetensors").write_bytes(b"\x00weights" * 100)
    (folder / "harness_adapter.json").write_text('{"method": "lora"}')
    packed = {"adapters/g/lora-abc": _tar(folder)}
    worker = tmp_path / "worker"
    _untar(worker, packed)
    copy = worker / "adapters" / "g" / "lora-abc"
    assert sorted(p.name for p in copy.iterdir()) == ["adapter_model.safetensors", "harness_adapter.json"]
    assert (copy / "adapter_model.safetensors").read_bytes() == (folder / "adapter_model.safetensors").read_bytes()
    (copy / "harness_adapter.json").write_text('{"method": "lora", "here": true}')
    _untar(worker, packed)  # already there (a shared disk, or trained here): left as it is
    assert "here" in (copy / "harness_adapter.json").read_text()
