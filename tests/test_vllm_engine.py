"""``engine: vllm``: one ``vllm serve`` process for the base model and every LoRA adapter,
driven through its OpenAI-compatible API; a local stand-in (tests/fakevllm.py, generating
with transformers) answers as vLLM would and records every process start and request."""
from __future__ import annotations

import json
import os
import stat
import sys
import time

import pytest
import yaml

from harness.backends.vllm import Adapter, max_lora_rank, serve_command
from tests.helpers import ROOT, tiny_goal


@pytest.fixture
def fake_vllm(tmp_path, monkeypatch):
    """A ``vllm`` command on PATH that runs the stand-in; returns its record folder."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    exe = bin_dir / "vllm"
    exe.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m tests.fakevllm "$@"\n')
    exe.chmod(exe.stat().st_mode | stat.S_IXUSR)
    record = tmp_path / "record"
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    monkeypatch.setenv("FAKE_VLLM_RECORD", str(record))
    return record


def _lines(path):
    return [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []


def _goal(tmp_path, model_dir, **top):
    path = tiny_goal(tmp_path, model_dir, judge=False, name="vllmrun")
    doc = yaml.safe_load(path.read_text())
    doc["candidates"] = doc["candidates"][:3]  # zero-shot, few-shot, lora (r=4)
    doc.update(top)
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def _outputs(store, run_id):
    return {(r["candidate"], r["example_id"]): (r["output"], r["cache_key"]) for r in store.run_outputs(run_id)}


def _gone(pid, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.1)
    return False


def test_the_serve_command_line_is_exact():
    adapters = [Adapter("lora-abc", ROOT / "a" / "lora-abc", 16), Adapter("rag-def", ROOT / "b", 40)]
    cmd = serve_command("/venv/bin/vllm", "/models/llama", port=8123, dtype="bfloat16", adapters=adapters, lora=True,
                        seed=7, extra_args=["--gpu-memory-utilization", "0.8"])
    assert cmd == ["/venv/bin/vllm", "serve", "/models/llama", "--host", "127.0.0.1", "--port", "8123",
                   "--served-model-name", "base", "--dtype", "bfloat16", "--seed", "7", "--generation-config", "vllm",
                   "--enable-lora", "--max-lora-rank", "64", "--lora-modules", f"lora-abc={ROOT / 'a' / 'lora-abc'}",
                   f"rag-def={ROOT / 'b'}", "--gpu-memory-utilization", "0.8"]
    # no LoRA candidate: no LoRA slots; a rank still to train sizes them
    assert "--enable-lora" not in serve_command("vllm", "/m", port=1, dtype="float32", adapters=[], lora=False)
    later = serve_command("vllm", "/m", port=1, dtype="float32", adapters=[], lora=True, ranks=[100])
    assert later[-2:] == ["--max-lora-rank", "128"] and "--lora-modules" not in later
    assert [max_lora_rank(r) for r in ([], [4], [16], [17], [600])] == [16, 8, 16, 32, 512]


def test_one_server_for_base_and_adapters_same_keys_as_transformers(tmp_path, tiny_model_dir, fake_vllm):
    from harness.backends.modelhub import resolve_model
    from harness.goals import load_goal
    from harness.runner import run_goal
    from harness.store import Store

    work = tmp_path / "work"
    vllm_goal = load_goal(_goal(tmp_path, tiny_model_dir, engine="vllm"))
    store = Store(tmp_path / "a.duckdb")
    first = run_goal(vllm_goal, store, progress=False, work_dir=work)
    starts = _lines(fake_vllm / "starts.jsonl")
    assert len(starts) == 1, starts  # one process for the base model and the adapter
    argv = starts[0]["argv"]
    assert argv[:3] == ["vllm", "serve", str(resolve_model(str(tiny_model_dir)).path)]
    assert argv[argv.index("--max-lora-rank") + 1] == "8" and "--lora-modules" not in argv  # trained during the run
    assert argv[argv.index("--dtype") + 1] == "float32"
    assert _gone(starts[0]["pid"]), "the server outlived the run"

    requests = _lines(fake_vllm / "requests.jsonl")
    adapter = next(c for c in store.candidates(first.run_id) if c["name"] == "lora")["adapter_path"]
    loads = [r for r in requests if r["path"] == "/v1/load_lora_adapter"]
    adapter_name = loads[0]["model"]  # the folder's name and its content hash
    assert [r["model"] for r in loads] == [adapter_name] and adapter_name.startswith(os.path.basename(adapter) + "-")
    by_model = {}
    for r in requests:
        if r["path"] == "/v1/completions":
            by_model[r["model"]] = by_model.get(r["model"], 0) + 1
    n = len(store.run_outputs(first.run_id, "zero-shot"))
    assert by_model == {"base": 2 * n, adapter_name: n}  # zero-shot and few-shot on the base; lora by name
    assert {c["name"]: c["engine"] for c in store.candidates(first.run_id)} == {
        "zero-shot": "vllm", "few-shot": "vllm", "lora": "vllm"}
    vllm_out = _outputs(store, first.run_id)

    # The transformers engine finds every output under the same keys: nothing is generated.
    tf_goal = load_goal(_goal(tmp_path, tiny_model_dir))
    again = run_goal(tf_goal, store, progress=False, work_dir=work)
    assert again.counts["generated"] == 0 and again.counts["trained"] == 0
    assert len(_lines(fake_vllm / "starts.jsonl")) == 1

    # Generated afresh by transformers (another store), the same prompts give the same outputs.
    fresh = Store(tmp_path / "b.duckdb")
    tf = run_goal(tf_goal, fresh, progress=False, work_dir=work)
    assert tf.counts["generated"] == 3 * n
    assert _outputs(fresh, tf.run_id) == vllm_out

    # A server started once the adapter exists gets it on its command line, and loads nothing.
    third = Store(tmp_path / "c.duckdb")
    run_goal(vllm_goal, third, progress=False, work_dir=work)
    starts = _lines(fake_vllm / "starts.jsonl")
    assert len(starts) == 2 and f"{adapter_name}={adapter}" in starts[1]["argv"]
    assert len([r for r in _lines(fake_vllm / "requests.jsonl") if r["path"] == "/v1/load_lora_adapter"]) == 1


def test_attach_to_a_running_server_and_load_adapters_there(tmp_path, tiny_model_dir, fake_vllm):
    import subprocess

    from harness.backends.vllm import VllmClient
    from harness.netutil import free_port
    from harness.goals import load_goal
    from harness.runner import run_goal
    from harness.store import Store

    port = free_port()
    env = dict(os.environ, VLLM_ALLOW_RUNTIME_LORA_UPDATING="True")
    server = subprocess.Popen([sys.executable, "-m", "tests.fakevllm", "serve", str(tiny_model_dir), "--port",
                               str(port), "--served-model-name", "my-base", "--enable-lora"], cwd=ROOT, env=env)
    try:
        client = VllmClient(f"http://127.0.0.1:{port}")
        deadline = time.monotonic() + 120
        while not client.healthy():
            assert time.monotonic() < deadline and server.poll() is None, "stand-in did not start"
            time.sleep(0.2)
        goal = load_goal(_goal(tmp_path, tiny_model_dir, engine="vllm", engine_url=f"http://127.0.0.1:{port}/v1"))
        store = Store(tmp_path / "s.duckdb")
        result = run_goal(goal, store, progress=False, work_dir=tmp_path / "work")
        models = {r["model"] for r in _lines(fake_vllm / "requests.jsonl") if r["path"] == "/v1/completions"}
        assert "my-base" in models and len(models) == 2  # the base by the server's name, and the adapter
        assert len(_lines(fake_vllm / "starts.jsonl")) == 1  # only the server the test started
        assert server.poll() is None  # the harness leaves a server it did not start running
        assert result.counts["generated"] > 0
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_without_vllm_the_goal_is_refused_before_any_work(tmp_path, tiny_model_dir, monkeypatch):
    import subprocess

    monkeypatch.setenv("PATH", "/usr/bin:/bin")  # no vllm anywhere
    path = _goal(tmp_path, tiny_model_dir, engine="vllm")
    db = tmp_path / "s.duckdb"
    for args in (["check", str(path)], ["run", str(path), "--dry-run", "--db", str(db)],
                 ["run", str(path), "--db", str(db)]):
        proc = subprocess.run([sys.executable, "-m", "harness", *args], cwd=tmp_path, capture_output=True, text=True,
                              timeout=300, env=dict(os.environ, PYTHONPATH=str(ROOT)))
        assert proc.returncode == 2, (args, proc.stdout[-800:], proc.stderr[-800:])
        out = proc.stdout + proc.stderr
        assert "pip install vllm" in out and f"{path.name}:" in out and "Traceback" not in out
    assert not (tmp_path / "work").exists()


def test_vllm_is_asked_only_for_candidates_it_can_serve(tmp_path, tiny_model_dir):
    """A candidate that names engine: vllm but runs no local model is refused at its line."""
    from harness.errors import InputError
    from harness.goals import load_goal
    from harness.runner.validate import validate_goal

    path = _goal(tmp_path, tiny_model_dir, engine_url="ftp://x")
    doc = yaml.safe_load(path.read_text())
    outputs = tmp_path / "given.jsonl"
    outputs.write_text("")
    doc["candidates"].append({"name": "given", "kind": "file", "path": str(outputs), "engine": "vllm"})
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    with pytest.raises(InputError) as err:
        validate_goal(load_goal(path), ROOT / "rubrics")
    fields = {p.field for p in err.value.problems}
    assert "engine_url" in fields and "candidates[3].engine" in fields, err.value.problems


def test_an_attached_server_must_serve_the_goals_model_and_engine_args_keep_off_the_outputs(tmp_path,
                                                                                           tiny_model_dir):
    from harness.backends.vllm import VllmEngine
    from harness.errors import HarnessError, InputError
    from harness.goals import load_goal
    from harness.runner.validate import validate_goal

    engine = VllmEngine(tiny_model_dir, dtype="float32", url="http://127.0.0.1:1", log_dir=tmp_path, known=list)
    ours = {"id": "base", "root": str(tiny_model_dir), "parent": None}
    assert engine._attached_base([{"id": "lora-x", "root": "/a", "parent": "base"}, ours]) is ours
    with pytest.raises(HarnessError, match="not the goal's model"):
        engine._attached_base([{"id": "llama", "root": "/models/llama-3-8b", "parent": None}])
    path = _goal(tmp_path, tiny_model_dir, engine="vllm", engine_url="http://127.0.0.1:8000/v1",
                 engine_args=["--gpu-memory-utilization", "0.8", "--dtype=float16", "--quantization", "awq"])
    with pytest.raises(InputError) as err:
        validate_goal(load_goal(path), ROOT / "rubrics")
    assert {p.field for p in err.value.problems} == {"engine_args[2]", "engine_args[3]"}
    plain = _goal(tmp_path, tiny_model_dir, engine_url="http://127.0.0.1:8000/v1")  # no engine: vllm anywhere
    with pytest.raises(InputError, match="engine_url applies to engine: vllm"):
        validate_goal(load_goal(plain), ROOT / "rubrics")
