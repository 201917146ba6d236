"""Supervised fine-tuning of one candidate: a plain torch loop over peft adapters.

Why not ``trl.SFTTrainer``: measured here (bench/bench_train.py) its defaults cost 2-3x in
throughput on CPU: gradient checkpointing (recomputes every forward), padding of random
batches, and an LM head scored at every position (its compact fused head only runs on
Triton devices). This loop does the same maths (token-mean NLL on answer tokens, AdamW,
linear schedule, clipping) with less wasted work:

* examples are grouped by length into batches, so padding stays small; padding is on the
  right, where causal attention keeps it out of every real token's view;
* the model body runs once and ``lm_head`` (49k x 576 for the default model, about a fifth
  of its FLOPs) is applied only at positions whose label is not -100 (the answer tokens);
* fp32 on the CPU (bf16 on a GPU that has it: :mod:`harness.backends.device`), gradient
  checkpointing only when asked (a 135M model fits easily), torch threads = cores;
* LoRA dropout draws its mask as four 15-bit uniforms per 64-bit random draw instead of one
  ``bernoulli_`` float per element (same distribution up to p's rounding to 1/32768, ~4x
  cheaper; with per-element draws, dropout on 7 adapter inputs per layer was ~12% of a step).

trl is not imported; its version is recorded in the metadata with the others for provenance
of the stack that produced the adapter.
"""
from __future__ import annotations

import functools
import json
import math
import os
import random
import statistics
import time
import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from harness.backends.device import Placement, resolve_placement
from harness.backends.modelhub import adapter_hash
from harness.data.formats import Example
from harness.data.split import data_hash
from harness.errors import HarnessError, InputError, Problem
from harness.fsutil import atomic_dir
from harness.prompts import render_prompt
from harness.provenance import TRAIN_PACKAGES, package_versions
from harness.train.distributed import Dist, maybe_no_sync
from harness.train.methods import (METHODS, TrainParams, model_load_kwargs, peft_config_for,
                                   require_cuda_and_bitsandbytes)
from harness.train.seen import write_seen

METADATA_FILE = "harness_adapter.json"
# Bumped whenever this loop's numerics change (batching, dropout draws, loss maths): the same
# inputs then give other weights, so adapters cached under the old number are not reused.
TRAINER_VERSION = 2
IGNORE = -100
# Batches are sorted by length inside windows of this many batches, then the batches shuffled:
# little padding, yet the order still varies by seed and epoch.
LENGTH_GROUP_WINDOW = 50

CurveCallback = Callable[[int, str, float], None]


@dataclass
class TrainResult:
    adapter_path: Path
    adapter_hash: str
    curves: list[tuple[int, str, float]]
    train_seconds: float
    tokens_seen: int
    steps: int
    best_step: int
    stopped_early: bool
    overfitting: bool
    final_val_loss: float | None
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def tokens_per_second(self) -> float:
        return self.tokens_seen / self.train_seconds if self.train_seconds > 0 else 0.0


@dataclass
class Encoded:
    """One tokenised example: ``labels`` is -100 on every prompt token."""

    input_ids: list[int]
    labels: list[int]

    @property
    def n_answer(self) -> int:
        return sum(1 for x in self.labels if x != IGNORE)


# --- tokenisation --------------------------------------------------------------------------
def render_answer(tokenizer: Any, example: Example) -> str:
    """The text after the prompt: the answer plus whatever closes the turn in the template."""
    prompt_text = render_prompt(tokenizer, example.prompt)
    if getattr(tokenizer, "chat_template", None):
        full = tokenizer.apply_chat_template(example.messages(), tokenize=False)
        if full.startswith(prompt_text):
            return full[len(prompt_text):]
    return f" {example.reference}{tokenizer.eos_token or ''}"


def encode_example(tokenizer: Any, example: Example, max_length: int) -> Encoded:
    """Token ids and labels; prompt and answer are tokenised apart, as at generation time.

    Over ``max_length`` the prompt loses tokens from its start first; an answer longer than
    the budget keeps its start and at least a quarter of the budget stays prompt.
    """
    prompt = tokenizer(render_prompt(tokenizer, example.prompt), add_special_tokens=False)["input_ids"]
    answer = tokenizer(render_answer(tokenizer, example), add_special_tokens=False)["input_ids"]
    if len(prompt) + len(answer) > max_length:
        keep_prompt = min(len(prompt), max(max_length - len(answer), max_length // 4))
        prompt = prompt[len(prompt) - keep_prompt:]
        answer = answer[: max_length - keep_prompt]
    return Encoded(input_ids=list(prompt) + list(answer), labels=[IGNORE] * len(prompt) + list(answer))


def encode_all(tokenizer: Any, examples: Sequence[Example], max_length: int, split: str) -> list[Encoded]:
    rows = [encode_example(tokenizer, ex, max_length) for ex in examples]
    problems = [Problem(ex.source or f"<{split}>", ex.line or None, "reference", "answer is empty after tokenising")
                for ex, row in zip(examples, rows) if row.n_answer == 0]
    if problems:
        raise InputError(problems)
    return rows


# --- batching ------------------------------------------------------------------------------
def length_grouped_batches(lengths: Sequence[int], batch_size: int, rng: random.Random) -> list[list[int]]:
    """Shuffled batches of indices whose members have similar lengths (little padding)."""
    order = list(range(len(lengths)))
    rng.shuffle(order)
    window = batch_size * LENGTH_GROUP_WINDOW
    batches: list[list[int]] = []
    for start in range(0, len(order), window):
        chunk = sorted(order[start:start + window], key=lambda i: -lengths[i])
        batches.extend(chunk[j:j + batch_size] for j in range(0, len(chunk), batch_size))
    rng.shuffle(batches)
    return batches


def collate(rows: Sequence[Encoded], pad_id: int) -> dict[str, Any]:
    """Right-padded tensors; labels are -100 on padding as well as on the prompt."""
    import torch

    width = max(len(r.input_ids) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    labels = torch.full((len(rows), width), IGNORE, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        n = len(r.input_ids)
        ids[i, :n] = torch.tensor(r.input_ids)
        labels[i, :n] = torch.tensor(r.labels)
        mask[i, :n] = 1
    return {"input_ids": ids, "labels": labels, "attention_mask": mask}


def count_targets(batch: dict[str, Any]) -> int:
    """Tokens that carry a loss (labels shifted by one, as the model predicts the next token)."""
    return int((batch["labels"][:, 1:] != IGNORE).sum())


# --- the loss ------------------------------------------------------------------------------
def install_answer_only_head(model: Any) -> Callable[[], None]:
    """Patch ``model.forward`` so ``answer_loss=True`` returns ``(summed NLL, n_tokens)``.

    The body runs as usual; ``lm_head`` sees only positions whose next-token label is not
    -100, so no logits are made for prompt or padding positions. peft wrappers (LoRA, prefix,
    prompt tuning) call this forward with their own extra inputs and labels, so one patch
    serves every method. Without the flag the original forward runs (generation unchanged).
    Returns a function that undoes the patch.
    """
    import torch.nn.functional as F

    original = model.forward

    @functools.wraps(type(model).forward)
    def forward(self: Any, *args: Any, labels: Any = None, answer_loss: bool = False, **kwargs: Any) -> Any:
        if not answer_loss:
            if labels is not None:
                kwargs["labels"] = labels
            return original(*args, **kwargs)
        for key in ("output_attentions", "output_hidden_states", "return_dict"):
            kwargs.pop(key, None)
        kwargs["use_cache"] = False
        hidden = getattr(self, self.base_model_prefix)(*args, **kwargs).last_hidden_state
        targets = labels[:, 1:]
        keep = targets != IGNORE
        logits = self.get_output_embeddings()(hidden[:, :-1][keep]).float()  # bf16 logits lose the loss's digits
        return F.cross_entropy(logits, targets[keep], reduction="sum"), int(keep.sum())

    model.forward = types.MethodType(forward, model)

    def restore() -> None:
        model.forward = original

    return restore


_FAST_DROPOUT: Any = None


# The CPU dropout mask is drawn as 15-bit uniform integers, four to one 64-bit random draw.
DROPOUT_RESOLUTION = 1 << 15


def fast_dropout_class() -> Any:
    """``nn.Dropout`` with the same distribution (p rounded to 1/32768), ~4x cheaper on CPU.

    torch's CPU dropout draws one ``bernoulli_`` float per element, and a ``rand_like`` mask
    one 32-bit float per element; both cost far more than the LoRA matmul the dropout feeds.
    Here one ``random_`` int64 draw (63 uniform bits) gives four 15-bit uniforms, so the mask
    costs a quarter of the draws: an element is kept when its 15 bits are >= round(p * 32768),
    and survivors are scaled by the inverse of that exact keep rate, so the expectation is
    unchanged. LoRA drops the input of each of the 7 adapted linears per layer; with
    ``rand_like`` masks this was ~12% of a CPU training step. Other devices use torch's own.
    """
    global _FAST_DROPOUT
    if _FAST_DROPOUT is None:
        import torch

        class FastDropout(torch.nn.Module):
            def __init__(self, p: float):
                super().__init__()
                if not 0.0 <= p < 1.0:
                    raise ValueError(f"dropout probability must be in [0, 1), got {p}")
                self.p = float(p)
                self.threshold = round(self.p * DROPOUT_RESOLUTION)
                self.scale = DROPOUT_RESOLUTION / (DROPOUT_RESOLUTION - self.threshold)

            def forward(self, x: Any) -> Any:
                if not self.training or self.threshold == 0:
                    return x
                if x.device.type != "cpu":
                    return torch.nn.functional.dropout(x, self.p, training=True)
                n = x.numel()
                bits = torch.empty((n + 3) // 4, dtype=torch.int64).random_()  # [0, 2**63)
                uniform15 = bits.view(torch.int16)[:n].view(x.shape) & 0x7FFF
                keep = (uniform15 >= self.threshold).to(x.dtype)
                return x * keep.mul_(self.scale)

            def extra_repr(self) -> str:
                return f"p={self.p}"

        _FAST_DROPOUT = FastDropout
    return _FAST_DROPOUT


def use_fast_lora_dropout(model: Any) -> int:
    """Swap peft's LoRA ``nn.Dropout`` modules for :func:`fast_dropout_class`; returns how many."""
    import torch

    fast = fast_dropout_class()
    swapped = 0
    for module in model.modules():
        drops = getattr(module, "lora_dropout", None)
        if isinstance(drops, torch.nn.ModuleDict):
            for name, drop in list(drops.items()):
                if isinstance(drop, torch.nn.Dropout) and drop.p > 0:
                    drops[name] = fast(drop.p)
                    swapped += 1
    return swapped


def fuse_lora_forward(model: Any) -> int:
    """Run each peft LoRA ``Linear`` as its base layer plus one ``addmm``; returns how many.

    peft computes ``base(x) + lora_B(lora_A(dropout(x))) * scaling``: after the two small
    matmuls it makes two more passes over the (tokens x out_features) output in the forward
    (scale, add) and one in the backward. Here the scaling goes into ``lora_B``'s weight
    (out x r, tiny) and the add into the GEMM's accumulate (``addmm`` with beta=1): the same
    maths and the same parameters, so saving and loading are untouched. Anything else (merged
    or disabled adapters, DoRA and other variants, several active adapters, mixed batches,
    a LoRA bias) takes peft's own forward.
    """
    from peft.tuners.lora.layer import Linear as LoraLinear

    patched = 0
    for module in model.modules():
        if type(module) is LoraLinear:  # exact type: quantized subclasses keep their forward
            module.forward = types.MethodType(_fused_lora_linear_forward, module)
            patched += 1
    return patched


def _fused_lora_linear_forward(self: Any, x: Any, *args: Any, **kwargs: Any) -> Any:
    import torch

    active = self.active_adapters
    name = active[0] if len(active) == 1 else None
    if (args or kwargs or name is None or self.disable_adapters or self.merged or name not in self.lora_A
            or name in self.lora_variant or self.lora_B[name].bias is not None
            or x.dtype != self.lora_A[name].weight.dtype):
        return type(self).forward(self, x, *args, **kwargs)
    base = self.base_layer(x)
    h = self.lora_A[name](self.lora_dropout[name](x))
    scaled_b = self.lora_B[name].weight * self.scaling[name]
    out = torch.addmm(base.reshape(-1, base.shape[-1]), h.reshape(-1, h.shape[-1]), scaled_b.t())
    return out.view(base.shape)


def batch_loss(model: Any, batch: dict[str, Any], device: Any) -> tuple[Any, int]:
    """(summed NLL over answer tokens, number of answer tokens) for one batch."""
    inputs = {k: v.to(device) for k, v in batch.items()}
    return model(**inputs, answer_loss=True)


def evaluate(model: Any, batches: Sequence[dict[str, Any]], device: Any) -> float:
    """Token-weighted mean NLL over the answer tokens of every batch (dropout off)."""
    total, count = evaluate_sums(model, batches, device)
    return total / max(count, 1)


def evaluate_sums(model: Any, batches: Sequence[dict[str, Any]], device: Any) -> tuple[float, int]:
    """(summed NLL, answer tokens) over every batch, dropout off: what processes add up."""
    import torch

    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    with torch.no_grad():
        for batch in batches:
            s, n = batch_loss(model, batch, device)
            total += float(s)
            count += n
    model.train(was_training)
    return total, count


# --- curves and verdicts on them -----------------------------------------------------------
def is_overfitting(curves: Sequence[tuple[int, str, float]], rel_tol: float = 0.01) -> bool:
    """Validation loss rose above its best while training loss kept falling.

    Looks at evaluations after training began (step > 0): the last must be more than
    ``rel_tol`` above the best, and the mean training loss since the best evaluation must be
    below the training loss around it (the mean over the last ``max(1, n // 2)`` steps up to
    it, n being the number of steps since).
    """
    val = [(s, loss) for s, split, loss in curves if split == "validation" and s > 0]
    if len(val) < 2:
        return False
    best_step, best_loss = min(val, key=lambda v: v[1])
    if val[-1][0] == best_step or val[-1][1] <= best_loss * (1 + rel_tol):
        return False
    train = [(s, loss) for s, split, loss in curves if split == "train"]
    after = [loss for s, loss in train if s > best_step]
    around = [loss for s, loss in train if s <= best_step][-max(1, len(after) // 2):]
    return bool(after and around) and statistics.fmean(after) < statistics.fmean(around)


# --- metadata ------------------------------------------------------------------------------
def read_metadata(folder: str | Path) -> dict[str, Any]:
    path = Path(folder) / METADATA_FILE
    if not path.is_file():
        raise HarnessError(f"{folder} is not a harness adapter: {METADATA_FILE} is missing")
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise HarnessError(f"{path} is damaged ({exc}); delete the folder to train it again") from None
    if not isinstance(meta, dict):
        raise HarnessError(f"{path} is damaged (not a JSON object); delete the folder to train it again")
    return meta


# --- loading -------------------------------------------------------------------------------
def _resolve_base(base: str | Path | None) -> tuple[str, Path, str]:
    """(name, folder, hash) of the base model, through the model hub (never downloads)."""
    from harness.backends.modelhub import model_hash, resolve_model

    resolved = resolve_model(None if base is None else str(base))
    return resolved.name, Path(resolved.path), model_hash(resolved.path)


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def _prepare_out_dir(out_dir: Path) -> None:
    if out_dir.exists() and any(out_dir.iterdir()) and not (out_dir / METADATA_FILE).exists():
        raise HarnessError(f"{out_dir} exists and is not a harness adapter folder; refusing to overwrite it")


def _trainable_state(model: Any) -> dict[str, Any]:
    return {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}


def _load_trainable_state(model: Any, state: dict[str, Any]) -> None:
    import torch

    params = dict(model.named_parameters())
    with torch.no_grad():
        for name, value in state.items():
            params[name].copy_(value)


def load_for_training(base_path: str | Path, params: TrainParams,
                      placement: Placement | None = None) -> tuple[Any, Callable[[], None]]:
    """The base model on ``placement`` (default: device and dtype ``auto``; 4-bit for qlora) with
    the answer-only head and the method's adapter, seeded with ``params.seed``; returns it and
    the function that removes the head patch. peft keeps adapter weights in float32 on a
    bfloat16 base. Tests call it to get the exact initial weights a training run starts from.
    """
    import torch
    from transformers import AutoModelForCausalLM

    peft_config = peft_config_for(params)
    placement = placement or resolve_placement()
    load = model_load_kwargs(params, placement)
    torch.manual_seed(params.seed)
    model = AutoModelForCausalLM.from_pretrained(
        base_path, dtype=placement.torch_dtype(), local_files_only=True, **load
    )
    if not load:
        model.to(placement.device)  # a 4-bit base is placed by its device_map
    model.config.use_cache = False
    restore = install_answer_only_head(model)
    checkpointing = {"use_reentrant": False}
    if peft_config is not None:
        from peft import get_peft_model

        if METHODS.meta(params.method).get("quantize"):
            from peft import prepare_model_for_kbit_training

            model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=params.gradient_checkpointing,
                                                    gradient_checkpointing_kwargs=checkpointing)
        elif params.gradient_checkpointing:
            _enable_checkpointing(model, checkpointing)
            model.enable_input_require_grads()  # frozen embeddings: the checkpointed layers still need grads
        model = get_peft_model(model, peft_config)
        use_fast_lora_dropout(model)
        fuse_lora_forward(model)
    elif params.gradient_checkpointing:
        _enable_checkpointing(model, checkpointing)
    model.train()
    return model, restore


def _enable_checkpointing(model: Any, kwargs: dict[str, Any]) -> None:
    """Gradient checkpointing on every layer (transformers 5 renamed it activation checkpointing)."""
    if hasattr(model, "activation_checkpointing_enable"):
        model.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)


# --- the loop ------------------------------------------------------------------------------
def linear_schedule(total_steps: int, warmup: int) -> Callable[[int], float]:
    """Linear warmup, then linear decay to 0 (transformers' default schedule)."""
    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / (warmup + 1)
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup))
    return factor


class EarlyStopping:
    """Tracks the best validation loss; keeps the best trainable weights when ``patience`` is set."""

    def __init__(self, patience: int | None):
        self.patience = patience
        self.best_loss, self.best_step, self.best_state = math.inf, 0, None
        self.bad_evals = 0

    def update(self, model: Any, step: int, loss: float) -> bool:
        """Record one evaluation; True when patience has run out."""
        scale = abs(self.best_loss) if math.isfinite(self.best_loss) else 1.0
        if loss < self.best_loss - 1e-6 * scale:
            self.best_loss, self.best_step, self.bad_evals = loss, step, 0
            if self.patience is not None:
                self.best_state = _trainable_state(model)
            return False
        self.bad_evals += 1
        return self.patience is not None and self.bad_evals >= self.patience


class _Loop:
    """One training run's state: optimizer, schedule, curves, early stopping."""

    def __init__(self, model: Any, train_rows: list[Encoded], val_rows: list[Encoded], pad_id: int,
                 params: TrainParams, on_curve: CurveCallback | None, dist: Dist | None = None):
        import torch

        self.dist = dist or Dist()
        self.model = self.dist.prepare(model)  # DDP under accelerate launch; itself otherwise
        self.train_rows, self.pad_id, self.params = train_rows, pad_id, params
        self.on_curve = on_curve
        self.device = self.dist.device or next(model.parameters()).device
        self.trainable = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(self.trainable, lr=params.lr, weight_decay=params.weight_decay)
        n_batches = math.ceil(len(train_rows) / params.batch_size)
        self.per_step = params.grad_accum * self.dist.world  # micro-batches per optimizer step, all processes
        steps_per_epoch = max(1, math.ceil(n_batches / self.per_step))
        self.total_steps = params.max_steps or max(1, math.ceil(params.epochs * steps_per_epoch))
        warmup = int(params.warmup_ratio * self.total_steps)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, linear_schedule(self.total_steps, warmup))
        self.val_batches = [collate([val_rows[i] for i in b], pad_id)
                            for b in _sorted_batches([len(r.input_ids) for r in val_rows], params.batch_size)]
        self.curves: list[tuple[int, str, float]] = []
        self.stopper = EarlyStopping(params.patience)
        self.step = self.tokens_seen = self.evaluated_at = 0
        self.stopped_early = False
        self.last_val: float | None = None

    def record(self, step: int, split: str, loss: float) -> None:
        self.curves.append((step, split, loss))
        if self.on_curve is not None:
            self.on_curve(step, split, loss)

    def validate(self) -> bool:
        """Evaluate on the validation set at the current step; True when patience has run out.

        Step 0's evaluation is the untrained baseline: it is recorded, not a candidate for best.
        """
        # Each process its share, on the unwrapped model: a DDP forward broadcasts buffers, and a
        # process with no validation batch (fewer batches than processes) would skip that collective.
        mine = self.val_batches[self.dist.rank::self.dist.world]
        total, count = self.dist.sum(list(evaluate_sums(self.dist.unwrap(self.model), mine, self.device)))
        self.last_val, self.evaluated_at = total / max(count, 1), self.step
        self.record(self.step, "validation", self.last_val)
        return self.step > 0 and self.stopper.update(self.model, self.step, self.last_val)

    def optimizer_step(self, group: Sequence[dict[str, Any]]) -> float:
        """One optimizer step over ``group`` (gradient accumulation; this process takes its share
        of the micro-batches, see :mod:`harness.train.distributed`); returns the mean target loss."""
        import torch

        n_targets = max(sum(count_targets(b) for b in group), 1)
        world = self.dist.world
        mine = list(group[self.dist.rank::world])
        # A process left without a micro-batch still joins the gradient all-reduce, with weight 0.
        weight = 1.0 if mine else 0.0
        mine = mine or list(group[:1])
        total, tokens = 0.0, 0.0
        for j, batch in enumerate(mine):
            with maybe_no_sync(self.dist, self.model, j < len(mine) - 1):
                s, _ = batch_loss(self.model, batch, self.device)
                loss = s / n_targets
                if world > 1:  # DDP averages gradients over processes; the step's loss is their sum
                    loss = loss * (world * weight)
                loss.backward()
            total += weight * float(s.detach())
            tokens += weight * int(batch["attention_mask"].sum())
        total, tokens = self.dist.sum([total, tokens])
        self.tokens_seen += int(tokens)
        if self.params.max_grad_norm is not None:
            torch.nn.utils.clip_grad_norm_(self.trainable, self.params.max_grad_norm)
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.step += 1
        return total / n_targets

    def epoch(self, rng: random.Random, advance: Callable[[float], None]) -> None:
        """One pass over the length-grouped, shuffled batches (or until done)."""
        order = length_grouped_batches([len(r.input_ids) for r in self.train_rows], self.params.batch_size, rng)
        batches = [collate([self.train_rows[i] for i in b], self.pad_id) for b in order]
        for start in range(0, len(batches), self.per_step):
            loss = self.optimizer_step(batches[start:start + self.per_step])
            self.record(self.step, "train", loss)
            advance(loss, self.last_val)
            if self.val_batches and self.step % self.params.eval_every == 0:
                self.stopped_early = self.validate()
            if self.stopped_early or self.step >= self.total_steps:
                return

    def run(self, rng: random.Random, progress: bool) -> float:
        """Train to the end (or early stop); returns seconds spent."""
        if self.val_batches:
            self.validate()
        started = time.perf_counter()
        with _progress_bar(progress and self.dist.is_main, self.total_steps, self.params.method) as advance:
            while self.step < self.total_steps and not self.stopped_early:
                self.epoch(rng, advance)
        if self.val_batches and self.evaluated_at != self.step:
            self.validate()
        return time.perf_counter() - started

    def finish(self) -> tuple[float | None, int, int]:
        """Restore the best weights if kept; returns (final validation loss, best step, saved step)."""
        stop, final_val = self.stopper, self.last_val
        if stop.best_state is not None and stop.best_step != self.step:
            _load_trainable_state(self.model, stop.best_state)
            final_val = stop.best_loss
        saved_step = stop.best_step if stop.best_state is not None else self.step
        best_step = stop.best_step if math.isfinite(stop.best_loss) else self.step
        return final_val, best_step, saved_step


def train_adapter(
    base_spec_or_path: str | Path | None,
    train: list[Example],
    val: list[Example],
    params: TrainParams,
    out_dir: str | Path,
    *,
    on_curve: CurveCallback | None = None,
    progress: bool = True,
    meta: dict | None = None,
    threads: int | None = None,
    placement: Placement | None = None,
    dist: Dist | None = None,
) -> TrainResult:
    """Train ``params.method`` on ``train``, evaluate on ``val``, save to ``out_dir``.

    Losses go to ``on_curve(step, split, loss)``: train every optimizer step, validation at
    step 0, every ``eval_every`` steps and at the end. With ``patience``, training stops after
    that many evaluations without a new best and the best weights are saved. Same inputs and
    seed, same adapter. ``threads`` defaults to the cores this process may use; ``placement``
    to device and dtype ``auto`` (:mod:`harness.backends.device`). ``dist``: this process's peers
    when ``accelerate launch`` started several (:mod:`harness.train.distributed`); each trains on
    the device accelerate gives it, and the first saves.
    """
    dist = dist or Dist()
    placement = runs_here(params, _placement_for(dist, placement))  # qlora without CUDA fails now
    if not train:
        raise InputError(Problem("<train>", None, None, "no training examples"))
    out_dir = Path(out_dir)
    _prepare_out_dir(out_dir)
    import torch

    base = _resolve_base(base_spec_or_path)
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(threads or _cores())
    restore_head: Callable[[], None] | None = None
    try:
        tokenizer, pad_id, train_rows, val_rows = _encode_splits(base[1], train, val, params)
        model, restore_head = load_for_training(base[1], params, placement)
        loop = _Loop(model, train_rows, val_rows, pad_id, params, on_curve, dist)
        train_seconds = loop.run(random.Random(params.seed), progress)
        final_val, best_step, saved_step = loop.finish()
        restore_head()
        restore_head = None
        stats = _run_stats(loop, train_seconds, final_val, best_step, saved_step, placement)
        metadata = {"adapter_hash": None, "overfitting": stats["overfitting"]}
        if dist.is_main:
            metadata = _save(model, tokenizer, out_dir, params=params, base=base, train=train, val=val,
                             meta=meta or {}, stats=stats, curves=loop.curves)
        dist.wait()
    finally:
        if restore_head is not None:
            restore_head()
        torch.set_num_threads(previous_threads)

    return TrainResult(adapter_path=out_dir, adapter_hash=metadata["adapter_hash"], curves=loop.curves,
                       train_seconds=train_seconds, tokens_seen=loop.tokens_seen, steps=loop.step,
                       best_step=best_step, stopped_early=loop.stopped_early, overfitting=metadata["overfitting"],
                       final_val_loss=final_val, metadata=metadata)


def _run_stats(loop: _Loop, train_seconds: float, final_val: float | None, best_step: int, saved_step: int,
               placement: Placement) -> dict[str, Any]:
    """What ``harness_adapter.json`` keeps about the run itself, where it ran included."""
    quantized = METHODS.meta(loop.params.method).get("quantize")
    return {"train_seconds": round(train_seconds, 3), "tokens_seen": loop.tokens_seen, "steps": loop.step,
            "best_step": best_step, "saved_step": saved_step, "stopped_early": loop.stopped_early,
            "overfitting": is_overfitting(loop.curves), "final_val_loss": final_val,
            "tokens_per_second": round(loop.tokens_seen / train_seconds, 2) if train_seconds else None,
            "runtime": {"device": placement.device, "dtype": placement.dtype,
                        "quantization": "nf4" if quantized else None, "processes": loop.dist.world}}


def _encode_splits(base: Path, train: list[Example], val: list[Example], params: TrainParams
                   ) -> tuple[Any, int, list[Encoded], list[Encoded]]:
    """(tokenizer, pad id, encoded train rows, encoded validation rows)."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(base, local_files_only=True)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (tokenizer.eos_token_id or 0)
    return (tokenizer, pad_id, encode_all(tokenizer, train, params.max_length, "train"),
            encode_all(tokenizer, val, params.max_length, "validation"))


def _placement_for(dist: Dist, placement: Placement | None) -> Placement | None:
    """A launched process trains on the device accelerate gave it (``cuda:LOCAL_RANK`` or the CPU),
    in the precision asked for."""
    if dist.device is None:
        return placement
    kind, index = dist.device.type, dist.device.index
    return Placement(f"{kind}:{index or 0}" if kind == "cuda" else kind, (placement or resolve_placement()).dtype)


def runs_here(params: TrainParams, placement: Placement | None = None) -> Placement:
    """The placement training runs on; GPURequiredError, before any model loads, for a method
    that cannot run there (qlora off CUDA or without bitsandbytes)."""
    peft_config_for(params)
    placement = placement or resolve_placement()
    if METHODS.meta(params.method).get("quantize") == "4bit":
        require_cuda_and_bitsandbytes(placement)
    return placement


def _sorted_batches(lengths: Sequence[int], batch_size: int) -> list[list[int]]:
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    return [order[j:j + batch_size] for j in range(0, len(order), batch_size)]


def _save(model: Any, tokenizer: Any, out_dir: Path, *, params: TrainParams, base: tuple[str, Path, str],
          train: Sequence[Example], val: Sequence[Example], meta: dict, stats: dict,
          curves: list[tuple[int, str, float]]) -> dict[str, Any]:
    """Write weights + harness_adapter.json into a temp folder, then swap it into place."""
    with atomic_dir(out_dir) as tmp:
        model.save_pretrained(tmp)
        if not METHODS.meta(params.method).get("peft", True):
            tokenizer.save_pretrained(tmp)  # a full model folder must load on its own
        base_name, base_path, base_hash = base
        metadata: dict[str, Any] = {
            "format": 1,
            "method": params.method,
            "base_model": {"name": base_name, "path": str(base_path), "hash": base_hash},
            "params": params.model_dump(mode="json"),
            "seed": params.seed,
            "data_hash": data_hash(train),
            "n_train": len(train),
            "n_validation": len(val),
            "validation_hash": data_hash(val) if val else None,
            "test_hash": meta.get("test_hash"),
            "versions": package_versions(TRAIN_PACKAGES),
            "trainer_version": TRAINER_VERSION,
            **stats,
            "adapter_hash": adapter_hash(tmp),
            "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "meta": meta,
            "curves": [list(c) for c in curves],
        }
        (tmp / METADATA_FILE).write_text(json.dumps(metadata, indent=2, default=str) + "\n")
        # What it saw (and its base saw): a goal whose test set holds one of these refuses the model.
        write_seen(tmp, [*train, *val], Path(base_path),
                   f"goal {meta.get('goal', '?')!r}, candidate {meta.get('candidate', '?')!r}")
    return metadata


class _progress_bar:
    """Progress over optimizer steps (:func:`harness.progress.bar`): steps done, their rate and ETA,
    the last step's loss and the latest validation loss; a no-op when disabled."""

    def __init__(self, enabled: bool, total: int, label: str):
        from harness.progress import bar

        self._bar = bar(f"training {label}", total, unit="steps", enabled=enabled)

    def __enter__(self) -> Callable[..., None]:
        self._bar.__enter__()
        return lambda loss, val_loss=None: self._bar.advance(1, loss=loss, val_loss=val_loss)

    def __exit__(self, *exc: object) -> None:
        self._bar.__exit__(*exc)


__all__ = [
    "METADATA_FILE", "Encoded", "TrainResult", "adapter_hash", "collate", "data_hash", "encode_example",
    "evaluate", "fast_dropout_class", "install_answer_only_head", "is_overfitting", "length_grouped_batches", "load_for_training",
    "read_metadata", "train_adapter", "use_fast_lora_dropout", "fuse_lora_forward",
]
