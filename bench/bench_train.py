"""LoRA training throughput on the default model: the harness's loop vs TRL and a plain Trainer.

Three trainers, same everything that decides the maths: LoRA r=16 / alpha 32 / dropout 0.05
on all linear layers of SmolLM2-135M-Instruct (fp32), batch 8, max_length 512, learning rate
2e-4 with linear decay, one epoch over the same training examples (so every trainer sees
exactly the same tokens), loss on the answer tokens only.

* ``harness``: ``train_adapter`` (length-grouped batches, answer-only LM head, no
  gradient checkpointing).
* ``trl``: ``SFTTrainer`` with its default ``SFTConfig``; set only what it needs to run here:
  output_dir, batch size, max_length, report_to none, completion-only loss (its default for
  prompt/completion data), one epoch, ``bf16=False`` (its default refuses to start on a CPU),
  and the same learning rate as the others (the default 2e-5 would make the validation-loss
  comparison meaningless; it does not change speed).
* ``trainer``: peft + ``transformers.Trainer`` with default ``TrainingArguments`` (fp32,
  random batches padded to the longest, full logits), the same tokens and labels.

Each trainer runs in its own process (clean peak RSS, no patches leaking between them).
Speed: real (non-pad) tokens per second over the steps after ``WARMUP`` warm-up steps,
counted at the model body's input and timed between consecutive optimizer-step ends.
Validation loss: token-mean NLL of the answer tokens on the same validation examples, the
same evaluation code for all three, after the same tokens seen.

MFU counts the FLOPs the LoRA step needs, per real token T and answer token A:
``4 * P_linear * T`` (frozen body linears: forward + input-gradient backward, no weight
gradient), ``4 * V * H * A`` (frozen LM head on answer positions only), ``6 * P_lora * T``
(adapters: forward, input and weight gradients) and ``3 * 2 * d_attn * L^2 / 1`` per layer and
sequence for causal attention (QK^T and AV at half the square, backward twice the forward);
embeddings and norms count zero. It is divided by this machine's fp32 matmul peak, the best
of several 2048x2048 ``torch.mm`` measured in the same run. The same useful FLOPs are used
for every trainer, so their MFUs compare the work each did per useful FLOP.

    python bench/bench_train.py               # JSON lines; HARNESS_BENCH_STEPS=10 by default
"""
from __future__ import annotations

import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

STEPS = int(os.environ.get("HARNESS_BENCH_STEPS", "10"))
WARMUP = 2
BATCH = 8
MAX_LENGTH = 512
LR = 2e-4
N_VAL = 16
SEED = 0
# A model folder to bench instead of the default model (only to try the script quickly).
MODEL = os.environ.get("HARNESS_BENCH_MODEL", "default")


# --- data ------------------------------------------------------------------------------------
def load_data() -> tuple[list, list, str]:
    """``STEPS * BATCH`` training and ``N_VAL`` validation examples (demo splits, or synthetic)."""
    from harness.data.formats import load_examples, make_example

    demo = ROOT / "data" / "demo.jsonl"
    if demo.is_file():
        from harness.data.split import assign_splits

        examples = load_examples(demo)
        where = assign_splits(examples, {"train": 0.8, "validation": 0.1, "test": 0.1}, seed=13)
        train = [e for e in examples if where[e.id] == "train"]
        val = [e for e in examples if where[e.id] == "validation"]
        source = "data/demo.jsonl"
    else:
        topics = ["order", "refund", "password", "delivery", "invoice", "login", "app crash", "address"]
        examples = [make_example("chat", [{"role": "user", "content": f"Hi, I have a question about my "
                                                                      f"{topics[i % 8]} number {i}. Can you help?"}],
                                 f"Sure, I can help with your {topics[i % 8]}. Please send the details.")
                    for i in range(STEPS * BATCH + N_VAL)]
        train, val, source = examples[N_VAL:], examples[:N_VAL], "synthetic"
    return train[: STEPS * BATCH], val[:N_VAL], source


# --- measuring -------------------------------------------------------------------------------
class Meter:
    """Real tokens entering the model body with gradients on, and step-end timestamps."""

    def __init__(self) -> None:
        self.tokens = 0
        self.steps: list[tuple[float, int]] = []  # (time at step end, tokens so far)

    def hook(self, model: Any) -> None:
        import torch

        body = _find_body(model)

        def pre(module: Any, args: Any, kwargs: dict) -> None:
            if torch.is_grad_enabled():
                mask = kwargs.get("attention_mask")
                ids = kwargs.get("input_ids", args[0] if args else None)
                self.tokens += int(mask.sum()) if mask is not None else int(ids.numel())

        body.register_forward_pre_hook(pre, with_kwargs=True)

    def step_end(self) -> None:
        self.steps.append((time.perf_counter(), self.tokens))

    def summary(self) -> dict[str, float]:
        pts = self.steps[WARMUP - 1:] if WARMUP > 0 else [(self.steps[0][0], 0)] + self.steps
        durations = [b[0] - a[0] for a, b in zip(pts, pts[1:])]
        tokens = [b[1] - a[1] for a, b in zip(pts, pts[1:])]
        return {
            "tokens_per_s": sum(tokens) / sum(durations),
            "median_step_s": statistics.median(durations),
            "median_step_tokens_per_s": statistics.median(t / d for t, d in zip(tokens, durations)),
            "measured_steps": len(durations),
            "measured_tokens": sum(tokens),
            "measured_seconds": sum(durations),
        }


def _find_body(model: Any) -> Any:
    from transformers import PreTrainedModel

    for module in model.modules():
        if isinstance(module, PreTrainedModel) and hasattr(module, "layers"):
            return module
    raise RuntimeError("no decoder body found")


class RSSSampler:
    """Peak resident memory of this process, sampled every 20 ms (and ru_maxrss at the end)."""

    def __init__(self) -> None:
        import psutil

        self.proc = psutil.Process()
        self.peak = 0
        self.marks: dict[str, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.proc.memory_info().rss)
            time.sleep(0.02)

    def mark(self, name: str) -> None:
        self.marks[name] = self.proc.memory_info().rss

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        return max(self.peak, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)


def matmul_peak_flops(n: int = 2048, repeats: int = 8) -> float:
    import torch

    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.mm(a, b)
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - t)
    return 2 * n**3 / best


def useful_flops(config: Any, lora_params: int, rows: list) -> dict[str, float]:
    """Per-example FLOP components (see the module docstring); rows are harness encodings."""
    h, layers, v = config.hidden_size, config.num_hidden_layers, config.vocab_size
    heads, kv = config.num_attention_heads, config.num_key_value_heads
    head_dim = getattr(config, "head_dim", None) or h // heads
    per_layer = h * heads * head_dim * 2 + h * kv * head_dim * 2 + 3 * h * config.intermediate_size
    p_linear = layers * per_layer
    tokens = sum(len(r.input_ids) for r in rows)
    answer = sum(r.n_answer for r in rows)
    attn = sum(3 * 2 * heads * head_dim * len(r.input_ids) ** 2 * layers for r in rows)
    total = 4 * p_linear * tokens + 4 * v * h * answer + 6 * lora_params * tokens + attn
    return {"flops_per_token": total / tokens, "p_linear": p_linear, "answer_share": answer / tokens,
            "mean_tokens": tokens / len(rows)}


# --- the three trainers (each in its own process) ----------------------------------------------
def _val_loss(model: Any, tokenizer: Any, val: list) -> float:
    import torch

    from harness.train import sft

    rows = [sft.encode_example(tokenizer, e, MAX_LENGTH) for e in val]
    batches = [sft.collate(rows[i:i + BATCH], tokenizer.pad_token_id) for i in range(0, len(rows), BATCH)]
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    restore = sft.install_answer_only_head(base)
    try:
        return sft.evaluate(model, batches, torch.device("cpu"))
    finally:
        restore()


def run_harness(base: Path, train: list, val: list, out: Path, meter: Meter) -> dict:
    from harness.train import TrainParams, sft, train_adapter

    original = sft.load_for_training

    def hooked(*a: Any, **k: Any) -> Any:
        model, restore = original(*a, **k)
        meter.hook(model)
        return model, restore

    sft.load_for_training = hooked
    params = TrainParams(method="lora", epochs=1, batch_size=BATCH, max_length=MAX_LENGTH, learning_rate=LR,
                         eval_every=10**6, seed=SEED)
    res = train_adapter(str(base), train, val, params, out / "harness",
                          on_curve=lambda s, split, loss: meter.step_end() if split == "train" else None,
                          progress=False)
    return {"val_loss": res.final_val_loss, "steps": res.steps, "tokens_seen": res.tokens_seen}


def _lora_config() -> Any:
    from peft import LoraConfig

    return LoraConfig(r=16, lora_alpha=32, lora_dropout=0.05, target_modules="all-linear", task_type="CAUSAL_LM")


def _step_callback(meter: Meter) -> Any:
    from transformers import TrainerCallback

    class StepEnd(TrainerCallback):
        def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            meter.step_end()

    return StepEnd()


def run_trl(base: Path, train: list, val: list, out: Path, meter: Meter) -> dict:
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    torch.manual_seed(SEED)
    tokenizer = AutoTokenizer.from_pretrained(base)
    data = Dataset.from_list([{"prompt": list(e.prompt), "completion": [{"role": "assistant", "content": e.reference}]}
                              for e in train])
    args = SFTConfig(output_dir=str(out / "trl"), per_device_train_batch_size=BATCH, max_length=MAX_LENGTH,
                     report_to="none", completion_only_loss=True, num_train_epochs=1, learning_rate=LR,
                     bf16=False)  # its bf16 default refuses to start on a CPU
    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    trainer = SFTTrainer(model=model, args=args, train_dataset=data, processing_class=tokenizer,
                         peft_config=_lora_config(), callbacks=[_step_callback(meter)])
    meter.hook(trainer.model)
    trainer.train()
    notes = {"gradient_checkpointing": args.gradient_checkpointing, "bf16": args.bf16,
             "padding_free": args.padding_free, "packing": args.packing}
    return {"val_loss": _val_loss(trainer.model, tokenizer, val), "steps": trainer.state.global_step,
            "trl_defaults": notes}


def run_trainer(base: Path, train: list, val: list, out: Path, meter: Meter) -> dict:
    import torch
    from peft import get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer, DataCollatorForSeq2Seq, Trainer, TrainingArguments

    from harness.train import sft

    torch.manual_seed(SEED)
    tokenizer = AutoTokenizer.from_pretrained(base)
    rows = [sft.encode_example(tokenizer, e, MAX_LENGTH) for e in train]
    data = [{"input_ids": r.input_ids, "labels": r.labels, "attention_mask": [1] * len(r.input_ids)} for r in rows]
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32), _lora_config())
    args = TrainingArguments(output_dir=str(out / "trainer"), per_device_train_batch_size=BATCH, report_to="none",
                             num_train_epochs=1, learning_rate=LR, remove_unused_columns=False)
    collator = DataCollatorForSeq2Seq(tokenizer, padding=True, label_pad_token_id=-100)
    trainer = Trainer(model=model, args=args, train_dataset=data, data_collator=collator,
                      callbacks=[_step_callback(meter)])
    meter.hook(model)
    trainer.train()
    return {"val_loss": _val_loss(model, tokenizer, val), "steps": trainer.state.global_step}


RUNNERS = {"harness": run_harness, "trl": run_trl, "trainer": run_trainer}


def run_one(kind: str) -> dict:
    """Train with one trainer in this process; return its speed, loss and memory."""
    import torch

    from harness.backends.modelhub import resolve_model

    torch.set_num_threads(len(os.sched_getaffinity(0)))
    rss = RSSSampler()
    base = resolve_model(MODEL).path
    train, val, _ = load_data()
    rss.mark("before_training")
    meter = Meter()
    with tempfile.TemporaryDirectory() as tmp:
        out = RUNNERS[kind](base, train, val, Path(tmp), meter)
    out.update(meter.summary())
    out["peak_rss_mb"] = round(rss.stop() / 2**20)
    out["rss_before_training_mb"] = round(rss.marks["before_training"] / 2**20)
    return out


def _in_subprocess(kind: str) -> dict:
    proc = subprocess.run([sys.executable, __file__, "--one", kind], capture_output=True, text=True,
                          cwd=ROOT, timeout=1800)
    if proc.returncode != 0:
        raise RuntimeError(f"{kind} bench failed:\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def run() -> list[dict]:
    import torch
    from transformers import AutoConfig, AutoTokenizer

    from harness.backends.modelhub import resolve_model
    from harness.train import sft

    torch.set_num_threads(len(os.sched_getaffinity(0)))
    peak_before = matmul_peak_flops()
    results = {}
    for kind in ("harness", "trl", "trainer"):
        results[kind] = _in_subprocess(kind)
        print(json.dumps({"partial": kind, **results[kind]}, default=str), file=sys.stderr, flush=True)
    peak = max(peak_before, matmul_peak_flops())

    base = resolve_model(MODEL).path
    train, val, source = load_data()
    tokenizer = AutoTokenizer.from_pretrained(base)
    rows = [sft.encode_example(tokenizer, e, MAX_LENGTH) for e in train]
    config = AutoConfig.from_pretrained(base)
    h, inter, layers = config.hidden_size, config.intermediate_size, config.num_hidden_layers
    kv_dim = config.num_key_value_heads * (getattr(config, "head_dim", None) or h // config.num_attention_heads)
    # LoRA A (in x r) + B (r x out) on q, k, v, o, gate, up, down of every layer.
    lora = layers * 16 * ((h + h) * 2 + (h + kv_dim) * 2 + (h + inter) * 2 + (inter + h))
    fl = useful_flops(config, lora, rows)

    def mfu(r: dict) -> float:
        return round(r["tokens_per_s"] * fl["flops_per_token"] / peak, 4)

    hr, tr, pr = results["harness"], results["trl"], results["trainer"]
    weights_mb = sum(p.stat().st_size for p in Path(base).glob("*.safetensors")) / 2**20
    logits_mb = BATCH * MAX_LENGTH * config.vocab_size * 4 / 2**20
    main = {
        "bench": "train_throughput",
        "ratio": round(hr["tokens_per_s"] / tr["tokens_per_s"], 3),
        "target": 2,
        "higher_is_better": True,
        "vs_trainer_ratio": round(hr["tokens_per_s"] / pr["tokens_per_s"], 3),
        "mfu": mfu(hr),
        "mfu_target": 0.65,
        "mfu_trl": mfu(tr),
        "mfu_trainer": mfu(pr),
        "tokens_per_s_harness": round(hr["tokens_per_s"], 1),
        "tokens_per_s_trl": round(tr["tokens_per_s"], 1),
        "tokens_per_s_trainer": round(pr["tokens_per_s"], 1),
        "median_step_s": {k: round(r["median_step_s"], 3) for k, r in results.items()},
        "val_loss_harness": round(hr["val_loss"], 4),
        "val_loss_trl": round(tr["val_loss"], 4),
        "val_loss_trainer": round(pr["val_loss"], 4),
        "val_loss_no_worse": hr["val_loss"] <= tr["val_loss"] * 1.01,
        "tokens_seen_each": hr["tokens_seen"],
        "steps_each": {k: r["steps"] for k, r in results.items()},
        "measured_steps": hr["measured_steps"],
        "warmup_steps": WARMUP,
        "matmul_peak_gflops": round(peak / 1e9, 1),
        "flops_per_token_gflop": round(fl["flops_per_token"] / 1e9, 4),
        "answer_token_share": round(fl["answer_share"], 4),
        "mean_tokens_per_example": round(fl["mean_tokens"], 1),
        "threads": torch.get_num_threads(),
        "data": source,
        "trl_defaults_seen": tr.get("trl_defaults"),
        "trl_overrides": ["output_dir", "per_device_train_batch_size=8", "max_length=512", "report_to=none",
                          "completion_only_loss=True", "num_train_epochs=1", "learning_rate=2e-4",
                          "bf16=False (the default refuses to start without a GPU)"],
    }
    memory = {
        "bench": "train_peak_rss",
        "unit": "MB",
        "higher_is_better": False,
        "harness": hr["peak_rss_mb"],
        "trl": tr["peak_rss_mb"],
        "trainer": pr["peak_rss_mb"],
        "before_training": {k: r["rss_before_training_mb"] for k, r in results.items()},
        "note": (f"fp32 weights {weights_mb:.0f} MB (loaded once; LoRA adds ~{lora * 4 / 2**20:.0f} MB plus 2x that "
                 f"in AdamW state); the rest before training is torch/transformers code and the tokenizer. "
                 f"Training adds activations kept for backward ({layers} layers x batch x tokens x a few hidden-size "
                 f"tensors) and logits: the harness makes them only for answer tokens, full-logit trainers "
                 f"for every position (up to {logits_mb:.0f} MB per fp32 copy at batch 8 x {MAX_LENGTH}). "
                 f"TRL's gradient checkpointing trades activation memory for a second forward."),
    }
    return [main, memory]


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--one":
        print(json.dumps(run_one(sys.argv[2])))
    else:
        for row in run():
            print(json.dumps(row))
