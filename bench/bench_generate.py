"""Local generation speed on the default model (SmolLM2-135M-Instruct, fp32, CPU).

1. ``generate_batched``: ``LocalModel.generate`` (length-sorted left-padded batches, shared
   system-prompt KV reused) vs the loop a user would write: ``model.generate`` one example at
   a time, same greedy decoding, same max_new_tokens. Ratio = loop time / harness time.
2. ``generate_fewshot``: k=5 few-shot over the same examples, cost relative to zero-shot,
   with the shared-prefix KV cache and without it. Ratio = few-shot time / zero-shot time.
3. ``generate_peak_rss``: peak resident memory of a fresh process that loads the model and
   generates, split into imports, model load, generation.

Examples: the test split of data/demo.jsonl (the project's split function, seed 13, 10%);
50 synthetic support messages if that file is missing. Medians over a few repeats.

    python bench/bench_generate.py   # prints JSON lines
"""
from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

MAX_NEW_TOKENS = 16
N_EXAMPLES = int(os.environ.get("BENCH_GENERATE_N", "24"))
REPEATS = int(os.environ.get("BENCH_GENERATE_REPEATS", "3"))
SHOTS = 5
BATCH_SIZE = 16


def _synthetic() -> tuple[list, list]:
    from harness.data.formats import make_example

    issues = ["my parcel is late", "I was charged twice", "the app crashes on start", "I forgot my password",
              "I want my money back", "the invoice shows the wrong plan", "tracking has not updated",
              "cannot log in after the update", "please close my account", "the item arrived broken"]
    system = "Route the customer message to one support queue: billing, shipping, technical, account, refund."
    rows = []
    for i in range(60):
        text = f"Hi, {issues[i % len(issues)]} (order #{1000 + 7 * i}). Can you help?"
        rows.append(make_example(
            "chat", [{"role": "system", "content": system}, {"role": "user", "content": text}],
            "shipping", line=i + 1, source="synthetic",
        ))
    return rows[:50], rows[50:]


def load_examples() -> tuple[list, list]:
    """(test examples, train examples) for the bench."""
    path = ROOT / "data" / "demo.jsonl"
    if not path.exists():
        return _synthetic()
    from harness.data.formats import load_examples as load
    from harness.data.split import assign_splits

    examples = load(path)
    splits = assign_splits(examples, {"train": 0.8, "validation": 0.1, "test": 0.1}, seed=13)
    test = [e for e in examples if splits[e.id] == "test"]
    train = [e for e in examples if splits[e.id] == "train"]
    return test, train


def _median_time(fn, repeats: int) -> tuple[float, float, object]:
    """Median wall and CPU seconds of ``fn()`` and its last result.

    CPU time (all threads of this process) is reported beside wall time because on a
    shared machine wall time mostly measures the neighbours.
    """
    walls, cpus, out = [], [], None
    for _ in range(repeats):
        start, cpu = time.perf_counter(), time.process_time()
        out = fn()
        walls.append(time.perf_counter() - start)
        cpus.append(time.process_time() - cpu)
    return statistics.median(walls), statistics.median(cpus), out


def bench_batched(model, prompts: list[list[dict]]) -> dict:
    import torch

    from harness.backends.local import DecodingParams

    params = DecodingParams(max_new_tokens=MAX_NEW_TOKENS)
    tok, hf = model.tokenizer, model.model

    def loop() -> list[str]:
        outs = []
        with torch.inference_mode():
            for p in prompts:
                enc = tok.apply_chat_template(p, add_generation_prompt=True, return_tensors="pt", return_dict=True)
                out = hf.generate(**enc, max_new_tokens=MAX_NEW_TOKENS, do_sample=False,
                                  eos_token_id=model.eos_ids, pad_token_id=tok.pad_token_id)
                outs.append(tok.decode(out[0, enc["input_ids"].shape[1]:], skip_special_tokens=True).strip())
        return outs

    def harness() -> list[str]:
        return [g.text for g in model.generate(prompts, params, batch_size=BATCH_SIZE, progress=False)]

    harness()  # warm-up (first call allocates)
    # The loop is the slow side: fewer repeats keep the bench short.
    loop_s, loop_cpu, loop_out = _median_time(loop, max(1, REPEATS - 1))
    harness_s, harness_cpu, harness_out = _median_time(harness, REPEATS)
    same = sum(a == b for a, b in zip(loop_out, harness_out))
    return {
        "bench": "generate_batched", "ratio": round(loop_s / harness_s, 2), "target": 4,
        "higher_is_better": True, "loop_s": round(loop_s, 2), "harness_s": round(harness_s, 2),
        "cpu_ratio": round(loop_cpu / harness_cpu, 2), "loop_cpu_s": round(loop_cpu, 2),
        "harness_cpu_s": round(harness_cpu, 2),
        "examples": len(prompts), "max_new_tokens": MAX_NEW_TOKENS, "batch_size": BATCH_SIZE,
        "identical_outputs": f"{same}/{len(prompts)}",
        "note": "greedy; harness = length-sorted left-padded batches + shared-prefix KV reuse",
    }


def bench_fewshot(model, test: list, train: list) -> dict:
    from harness.backends.local import DecodingParams, shared_prefix_length
    from harness.prompts import build_prompt, choose_shots

    params = DecodingParams(max_new_tokens=MAX_NEW_TOKENS)
    shots = choose_shots(train, SHOTS, seed=13)
    zero = [build_prompt(e, "zero-shot") for e in test]
    few = [build_prompt(e, "few-shot", shots=shots) for e in test]

    def run(prompts, reuse):
        return lambda: [g.text for g in model.generate(prompts, params, batch_size=BATCH_SIZE,
                                                       progress=False, reuse_prefix=reuse)]

    # Zero-shot baseline without reuse too, so the ratio is not flattered by a cheap baseline.
    zero_s, zero_cpu, _ = _median_time(run(zero, False), REPEATS)
    reuse_s, reuse_cpu, reuse_out = _median_time(run(few, True), REPEATS)
    plain_s, plain_cpu, plain_out = _median_time(run(few, False), max(1, REPEATS - 1))
    ids = model.encode(few)
    same = sum(a == b for a, b in zip(reuse_out, plain_out))
    return {
        "bench": "generate_fewshot", "ratio": round(reuse_s / zero_s, 2), "target": SHOTS + 1,
        "higher_is_better": False, "ratio_without_prefix_reuse": round(plain_s / zero_s, 2),
        "cpu_ratio": round(reuse_cpu / zero_cpu, 2), "cpu_ratio_without_prefix_reuse": round(plain_cpu / zero_cpu, 2),
        "zeroshot_s": round(zero_s, 2), "fewshot_reuse_s": round(reuse_s, 2), "fewshot_plain_s": round(plain_s, 2),
        "k": SHOTS, "examples": len(test), "shared_prefix_tokens": shared_prefix_length(ids),
        "mean_prompt_tokens_fewshot": round(sum(map(len, ids)) / len(ids), 1),
        "mean_prompt_tokens_zeroshot": round(sum(map(len, model.encode(zero))) / len(zero), 1),
        "identical_outputs_reuse_vs_plain": f"{same}/{len(test)}",
    }


_RSS_CHILD = r"""
import json, os, resource, sys
sys.path.insert(0, sys.argv[1])
os.environ.setdefault("HF_HUB_OFFLINE", "1")
def rss_mb():
    # VmHWM is this process's own peak; ru_maxrss would carry the parent's over fork+exec.
    try:
        for line in open("/proc/self/status"):
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
from harness.backends.local import DecodingParams, LocalModel
import torch, transformers
after_imports = rss_mb()
m = LocalModel(None)
# safetensors weights are memory-mapped: touch them so their pages count as "model", not "generation"
float(sum(p.detach().sum() for p in m.model.parameters()))
after_load = rss_mb()
prompts = json.loads(sys.stdin.read())
m.generate(prompts, DecodingParams(max_new_tokens=int(sys.argv[2])), batch_size=int(sys.argv[3]), progress=False)
print(json.dumps({"after_imports": after_imports, "after_load": after_load, "peak": rss_mb()}))
"""


def bench_rss(prompts: list[list[dict]]) -> dict:
    proc = subprocess.run(
        [sys.executable, "-c", _RSS_CHILD, str(ROOT), str(MAX_NEW_TOKENS), str(BATCH_SIZE)],
        input=json.dumps(prompts), capture_output=True, text=True, check=True,
    )
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    return {
        "bench": "generate_peak_rss", "peak_rss_mb": round(got["peak"]), "higher_is_better": False,
        "imports_mb": round(got["after_imports"]), "model_load_mb": round(got["after_load"] - got["after_imports"]),
        "generation_mb": round(got["peak"] - got["after_load"]), "batch_size": BATCH_SIZE,
        "note": "peak RSS (VmHWM) of a fresh process: torch+transformers imports, then fp32 weights "
                "(134.5M params = 538 MB on disk), then generation (KV cache, activations and logits of one batch; the batch size sets it)",
    }


def run() -> list[dict]:
    from harness.backends.local import LocalModel

    test, train = load_examples()
    test = test[:N_EXAMPLES]
    model = LocalModel(None)
    prompts = [list(e.prompt) for e in test]
    return [bench_batched(model, prompts), bench_fewshot(model, test, train), bench_rss(prompts)]


if __name__ == "__main__":
    for row in run():
        print(json.dumps(row), flush=True)
