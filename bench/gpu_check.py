"""The GPU check: on a CUDA machine, what the CPU tests cannot show. Prints one JSON line per check.

    bash bench/gpu_check.sh            # sets up a venv from the repository, then runs this
    python bench/gpu_check.py [--only bf16,lora,qlora,vllm] [--out DIR]

Checks (each with its wall time; a check that cannot run says why, and the rest go on):

* ``bf16_generation`` — the default model generates greedily on the demo's test prompts in
  bfloat16 on the GPU and in float32 on the CPU; reports the share of outputs that agree
  exactly (bf16 rounds differently, so some greedy paths part) and both timings;
* ``lora_run`` / ``qlora_run`` — ``harness run`` of the demo goal with a zero-shot baseline
  and a LoRA (resp. QLoRA on the 4-bit base) candidate, ``device: cuda``: exit code,
  verdicts, training seconds, where each candidate ran (device, dtype, quantization, peak memory);
* ``vllm_engine`` — the same goal with ``engine: vllm`` (zero-shot and LoRA on one ``vllm serve``),
  then with the transformers engine on the same store: how many outputs the second run had to
  generate (0: the engines share their cache keys). Skipped, saying so, where vLLM is not installed.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
CHECKS = ("bf16", "lora", "qlora", "vllm")


def emit(check: str, **fields) -> None:
    print(json.dumps({"check": check, **fields}, default=str), flush=True)


def bf16_generation(out: Path) -> None:
    import torch

    from harness.backends.local import DecodingParams, LocalModel
    from harness.data.formats import load_examples

    examples = load_examples(ROOT / "data" / "demo.jsonl")[:80]
    prompts = [list(ex.prompt) for ex in examples]
    params = DecodingParams(max_new_tokens=24)
    times, texts = {}, {}
    for device, dtype in (("cuda", "bfloat16"), ("cpu", "float32")):
        model = LocalModel("default", device=device, dtype=dtype)
        t0 = time.perf_counter()
        texts[device] = [g.text for g in model.generate(prompts, params, progress=False)]
        if device == "cuda":
            torch.cuda.synchronize()
        times[device] = round(time.perf_counter() - t0, 2)
        del model
    agree = sum(a == b for a, b in zip(texts["cuda"], texts["cpu"]))
    emit("bf16_generation", prompts=len(prompts), exact_agreement=round(agree / len(prompts), 3),
         gpu_bf16_s=times["cuda"], cpu_fp32_s=times["cpu"], speedup=round(times["cpu"] / max(times["cuda"], 1e-9), 1),
         gpu=torch.cuda.get_device_name(0))


def _goal(out: Path, name: str, candidates: list[dict], **top) -> Path:
    doc = yaml.safe_load((ROOT / "goals" / "demo.yaml").read_text())
    doc.update({"goal": name, "device": "cuda", "candidates": candidates, **top})
    doc.pop("judge", None)
    doc.pop("human", None)
    doc["data"]["path"] = str(ROOT / doc["data"]["path"])
    path = out / f"{name}.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def _harness(out: Path, *args: str, db: Path) -> tuple[int, float, dict]:
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "harness", *args, "--db", str(db), "--json", "--quiet"],
                          cwd=out, capture_output=True, text=True)
    seconds = round(time.perf_counter() - t0, 1)
    try:
        result = json.loads(proc.stdout)
    except ValueError:
        result = {"stderr_tail": proc.stderr[-1500:]}
    return proc.returncode, seconds, result


def _summary(result: dict) -> dict:
    return {c["name"]: {"runtime": c.get("runtime"), "train_seconds": c.get("train_seconds"),
                        "criteria": [(v["metric"], v["status"], v.get("value")) for v in c.get("criteria", [])]}
            for c in result.get("candidates", [])}


LORA = {"kind": "lora", "r": 16, "alpha": 32, "learning_rate": 1.0e-3, "epochs": 2, "batch_size": 8,
        "max_length": 160}


def adapter_run(out: Path, method: str) -> None:
    path = _goal(out, f"gpu-{method}", [{"name": "zero-shot", "kind": "prompt"},
                                        {"name": method, **LORA, "kind": method}])
    subprocess.run([sys.executable, "-m", "harness", "split", str(path)], cwd=out, capture_output=True)
    code, seconds, result = _harness(out, "run", str(path), db=out / f"{method}.duckdb")
    emit(f"{method}_run", exit_code=code, seconds=seconds, candidates=_summary(result),
         error=result.get("stderr_tail"))


def vllm_engine(out: Path) -> None:
    import importlib.util

    if importlib.util.find_spec("vllm") is None:
        emit("vllm_engine", skipped="vllm is not installed (pip install vllm)")
        return
    cands = [{"name": "zero-shot", "kind": "prompt"}, {"name": "lora", **LORA}]
    db = out / "vllm.duckdb"
    path = _goal(out, "gpu-vllm", cands, engine="vllm", engine_args=["--gpu-memory-utilization", "0.5"])
    subprocess.run([sys.executable, "-m", "harness", "split", str(path)], cwd=out, capture_output=True)
    code, seconds, result = _harness(out, "run", str(path), db=db)
    path_tf = _goal(out, "gpu-vllm", cands)  # same goal, transformers engine
    t0 = time.perf_counter()
    rerun = subprocess.run([sys.executable, "-m", "harness", "run", str(path_tf), "--db", str(db), "--no-progress"],
                           cwd=out, capture_output=True, text=True)
    said = re.search(r"generated (\d+), reused (\d+)", rerun.stdout)
    emit("vllm_engine", exit_code=code, seconds=seconds, candidates=_summary(result), error=result.get("stderr_tail"),
         transformers_rerun={"exit_code": rerun.returncode, "seconds": round(time.perf_counter() - t0, 1),
                             "generated": int(said.group(1)) if said else None,
                             "reused": int(said.group(2)) if said else None})


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--only", default=",".join(CHECKS))
    ap.add_argument("--out", default=str(ROOT / ".harness" / "gpu_check"))
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    runs = {"bf16": lambda: bf16_generation(out), "lora": lambda: adapter_run(out, "lora"),
            "qlora": lambda: adapter_run(out, "qlora"), "vllm": lambda: vllm_engine(out)}
    for name in args.only.split(","):
        t0 = time.perf_counter()
        try:
            runs[name]()
        except Exception as exc:  # one check's failure is reported; the others still run
            emit(name, failed=f"{type(exc).__name__}: {exc}"[:2000], seconds=round(time.perf_counter() - t0, 1))


if __name__ == "__main__":
    main()
