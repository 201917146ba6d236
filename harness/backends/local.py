"""Local transformers models: the default offline model, batched generation, next-token scores.

Generation is batched with left padding, prompts sorted by length so a batch pads little,
results handed back in the caller's order. Prompts that share a long token prefix (system
prompt + few-shot examples) have that prefix's KV cache computed once and reused for every
batch, so k-shot costs far less than k+1 times zero-shot. Runs where
:mod:`harness.backends.device` places it: fp32 on the CPU by default (bf16 is many times slower
on CPUs without bf16 units), bf16 on a GPU that has it; a qlora adapter runs on its 4-bit base
where bitsandbytes can (CUDA), on a full-precision base elsewhere (``quantization: none``).
"""
from __future__ import annotations

import copy
import json
import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

from harness.backends.device import Placement, auto_generation_batch_size, four_bit_problem, resolve_placement
from harness.backends.modelhub import ResolvedModel, adapter_hash, model_hash, resolve_model
from harness.errors import HarnessError, InputError, ModelNotAvailableError, Problem
from harness.progress import bar as progress_bar
from harness.prompts import render_prompt

log = logging.getLogger(__name__)

MAX_NEW_TOKENS_LIMIT = 2048
# Prompts that run out of memory alone, with nothing generated before them, that stop a candidate.
OOM_ALONE_LIMIT = 3
# Below this many shared tokens a prefix cache is not worth its copy per batch.
MIN_SHARED_PREFIX = 16
# Tokens that close a turn in common chat templates; the one the template uses stops generation.
END_OF_TURN_CANDIDATES = ("<|im_end|>", "<|eot_id|>", "<end_of_turn>", "<|end|>", "<|endoftext|>", "</s>")


@dataclass(frozen=True)
class DecodingParams:
    """How to decode. temperature 0 means greedy; part of every generation's cache key."""

    max_new_tokens: int = 128
    temperature: float = 0.0
    top_p: float = 1.0
    repetition_penalty: float = 1.0
    seed: int = 0

    def __post_init__(self) -> None:
        problems = []
        if not 1 <= self.max_new_tokens <= MAX_NEW_TOKENS_LIMIT:
            problems.append(("max_new_tokens", f"must be 1..{MAX_NEW_TOKENS_LIMIT}, got {self.max_new_tokens}"))
        if self.temperature < 0:
            problems.append(("temperature", f"must be >= 0, got {self.temperature}"))
        if not 0 < self.top_p <= 1:
            problems.append(("top_p", f"must be in (0, 1], got {self.top_p}"))
        if self.repetition_penalty <= 0:
            problems.append(("repetition_penalty", f"must be > 0, got {self.repetition_penalty}"))
        if problems:
            raise InputError([Problem("<decoding>", None, f, m) for f, m in problems])

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def greedy(self) -> bool:
        return self.temperature == 0


@dataclass
class Generation:
    text: str
    prompt_tokens: int
    output_tokens: int
    latency_s: float  # the batch's wall time divided by its size (amortised per example)
    error: str | None = None  # why there is no text (out of memory even alone); stored as a failure


def out_of_memory(exc: BaseException) -> bool:
    """An accelerator's out-of-memory error (CUDA's ``torch.OutOfMemoryError``, mps's
    RuntimeError): something a smaller batch can get past, unlike any other failure."""
    import torch

    oom = getattr(torch, "OutOfMemoryError", None) or torch.cuda.OutOfMemoryError
    return isinstance(exc, oom) or (isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower())


def release_memory(device: Any) -> None:
    """Hand the failed batch's cached blocks back before trying a smaller one."""
    import gc

    import torch

    gc.collect()
    kind = getattr(device, "type", str(device))
    if kind == "cuda" and torch.cuda.is_available():
        torch.cuda.empty_cache()
    elif kind == "mps" and hasattr(torch, "mps"):
        torch.mps.empty_cache()


def local_model_id(spec: str | Path | None, adapter: str | Path | None = None, precision: str = "") -> str:
    """The content identity of a base model (+ adapter) as it runs, without loading any weights: a
    rerun looks its stored predictions up by it before deciding to load the model at all.
    ``precision`` (:func:`precision_tag`) is empty for float32, so float32 ids are those stored
    before other precisions existed."""
    base = model_hash(resolve_model(None if spec is None else str(spec)).path)
    ident = f"{base}+{adapter_hash(Path(adapter))}" if adapter is not None else base
    return f"{ident}@{precision}" if precision else ident


def adapter_quantization(placement: Placement, adapter: str | Path | None) -> str | None:
    """How the base of ``adapter`` loads on ``placement``: ``"nf4"`` for an adapter trained on a
    4-bit base (qlora) where bitsandbytes runs (a CUDA GPU), ``"none"`` for such an adapter on a
    full-precision base (the CPU: the outputs are those of the adapter on an unquantised base),
    None for every other adapter. Reads ``harness_adapter.json`` only."""
    if adapter is None:
        return None
    meta_file = Path(adapter) / "harness_adapter.json"
    try:
        method = json.loads(meta_file.read_text(encoding="utf-8")).get("method")
    except (OSError, ValueError, AttributeError):
        return None  # not a harness adapter (or damaged): nothing says its base was quantised
    from harness.train.methods import METHODS

    if method not in METHODS or METHODS.meta(method).get("quantize") != "4bit":
        return None
    return "nf4" if four_bit_problem(placement) is None else "none"


def precision_tag(placement: Placement, quantization: str | None) -> str:
    """What a model id adds for how the model runs: nothing for float32 on a full-precision base."""
    if quantization == "nf4":
        return f"nf4-{placement.dtype}"
    return placement.tag


class LocalModel:
    """A causal LM (plus optional peft adapter) loaded offline for generation and scoring, on
    ``placement`` (or the ``device`` and ``dtype`` resolved by :mod:`harness.backends.device`)."""

    def __init__(
        self,
        spec: str | None = None,
        adapter: str | Path | None = None,
        *,
        device: str = "auto",
        dtype: str = "auto",
        placement: Placement | None = None,
        threads: int | None = None,
    ):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        if threads:
            torch.set_num_threads(threads)
        self.placement = placement or resolve_placement(device, dtype)
        self.resolved: ResolvedModel = resolve_model(spec)
        path = self.resolved.path
        self.tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        self.tokenizer.padding_side = "left"
        # A qlora adapter generates on the 4-bit base it was trained on, where bitsandbytes runs.
        self.quantization = adapter_quantization(self.placement, adapter)
        load: dict[str, Any] = {}
        if self.quantization == "nf4":
            from harness.train.methods import four_bit_load_kwargs

            load = four_bit_load_kwargs(self.placement)
        model = AutoModelForCausalLM.from_pretrained(path, dtype=self.placement.torch_dtype(), local_files_only=True,
                                                     **load)
        self.name = self.resolved.name
        self.adapter_path: Path | None = None
        # Prompt-learning adapters (prefix / prompt tuning) put virtual tokens before the
        # prompt; they get their own generation path and no shared-prefix reuse.
        self.prompt_learning: str | None = None
        if adapter is not None:
            model = self._load_adapter(model, Path(adapter))
            self.adapter_path = Path(adapter).resolve()
            self.name = f"{self.resolved.name}+{self.adapter_path.name}"
        # after the adapter check: clear errors first
        self.model_hash = local_model_id(path, adapter, precision_tag(self.placement, self.quantization))
        if not load:
            model = model.to(self.placement.device)  # a 4-bit base is placed by its device_map
        self.device = torch.device(self.placement.device)
        self.model = model.eval()
        self.eos_ids = end_of_turn_ids(self.tokenizer)
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token_id = self.eos_ids[0]
        self.max_positions = getattr(model.config, "max_position_embeddings", None) or 1 << 30

    @property
    def runtime(self) -> dict[str, Any]:
        """Where and how the model runs, as the store records it with each candidate."""
        return {"device": self.placement.device, "dtype": self.placement.dtype, "quantization": self.quantization}

    def _load_adapter(self, model: Any, adapter: Path) -> Any:
        from peft import PeftConfig, PeftModel

        if not (adapter / "adapter_config.json").is_file():
            raise ModelNotAvailableError(
                f"adapter {str(adapter)!r} not found: expected a peft adapter folder with adapter_config.json."
            )
        config = PeftConfig.from_pretrained(str(adapter))
        if getattr(config, "is_prompt_learning", False):
            kind = str(getattr(config.peft_type, "value", config.peft_type))
            if kind not in ("PREFIX_TUNING", "PROMPT_TUNING", "P_TUNING"):
                raise HarnessError(f"adapter {str(adapter)!r}: {kind} adapters are not supported for generation")
            self.prompt_learning = kind
        return PeftModel.from_pretrained(model, str(adapter), is_trainable=False)

    # --- prompts -------------------------------------------------------------------------
    def render(self, messages: list[dict]) -> str:
        """The messages as this model reads them (:func:`harness.prompts.render_prompt`)."""
        return render_prompt(self.tokenizer, messages)

    def encode(self, prompts: list[list[dict]]) -> list[list[int]]:
        return encode_prompts(self.tokenizer, prompts)

    # --- generation ----------------------------------------------------------------------
    def generate(
        self,
        prompts: list[list[dict]],
        params: DecodingParams = DecodingParams(),
        *,
        batch_size: int | None = None,
        progress: bool = True,
        on_result: Callable[[int, Generation], None] | None = None,
        reuse_prefix: bool = True,
        label: str = "generating",
    ) -> list[Generation]:
        """Generate one reply per prompt (a list of chat messages), in the prompts' order.

        ``on_result(index, generation)`` is called as soon as each reply is ready, so a
        caller can store it before the rest finish. Sampling (temperature > 0) is seeded
        once per call with ``params.seed``. ``batch_size`` None: 16 on the CPU and mps, on a GPU
        :func:`harness.backends.device.generation_batch_size` of its free memory. ``progress``:
        a bar named ``label`` that moves as each reply ends, not per batch.
        """
        import torch

        if batch_size is not None and batch_size < 1:
            raise InputError(Problem("<generate>", None, "batch_size", f"must be >= 1, got {batch_size}"))
        ids = self.encode(prompts)
        check_prompt_lengths(ids, params.max_new_tokens, self.max_positions)
        prefix_len = shared_prefix_length(ids) if reuse_prefix and not self.prompt_learning else 0
        if prefix_len < MIN_SHARED_PREFIX:
            prefix_len = 0
        if batch_size is None:
            longest = max((len(r) for r in ids), default=1) + params.max_new_tokens
            batch_size = auto_generation_batch_size(self.model, self.placement, longest)
        results: list[Generation | None] = [None] * len(ids)
        order = sorted(range(len(ids)), key=lambda i: (len(ids[i]), i))
        torch.manual_seed(params.seed)

        def done(i: int, gen: Generation) -> None:
            results[i] = gen
            if on_result is not None:
                on_result(i, gen)

        with torch.inference_mode(), progress_bar(label, len(ids), unit="examples", enabled=progress) as bar:
            prefix_cache = self._prefill(ids[0][:prefix_len]) if prefix_len else None
            self._in_batches(ids, order, batch_size, bar,
                             lambda rows, tick: self._generate_batch(rows, params, prefix_len, prefix_cache, tick),
                             done)
        return results  # type: ignore[return-value]

    def _in_batches(self, ids: list[list[int]], order: list[int], batch_size: int, bar: Any,
                    run_batch: Callable[[list[list[int]], Callable[[int], Any]], list[list[int]]],
                    done: Callable[[int, Generation], None]) -> None:
        """Run ``order`` through ``run_batch`` ``batch_size`` prompts at a time, ``done(i, gen)``
        per prompt. A batch that runs out of accelerator memory is split in half and the rest go
        at that size (the automatic size is an estimate, and one long reply can outgrow it); a
        prompt out of memory alone gets ``Generation.error``, which the run stores as a failed
        generation (asked again next run), and the others go on — unless the first
        ``OOM_ALONE_LIMIT`` tried alone all fail with nothing generated yet: then the device has no
        room at all (another process holds it) and the error stops the candidate. Sampled replies
        after a split differ from an unsplit run's (the failed try drew from the seeded generator);
        greedy ones do not. The shared prefix's prefill is outside this: out of memory there stops
        the candidate."""
        pending, size, owed = list(reversed(order)), batch_size, 0  # owed: rows the bar counted in a failed try
        alone_failed, generated = 0, 0

        def tick(k: int) -> None:
            nonlocal owed
            paid = min(owed, k)
            owed, ticked[0] = owed - paid, ticked[0] + k
            if k > paid:
                bar.advance(k - paid)

        while pending:
            batch = [pending.pop() for _ in range(min(size, len(pending)))]
            start, ticked = time.perf_counter(), [0]
            try:
                outs = run_batch([ids[i] for i in batch], tick)
            except Exception as exc:  # noqa: BLE001 - only memory errors are handled; the rest re-raised
                if not out_of_memory(exc):
                    raise
                if len(batch) == 1 and not generated and alone_failed + 1 >= OOM_ALONE_LIMIT:
                    raise HarnessError(f"out of memory on {self.device} even one prompt at a time "
                                       f"({OOM_ALONE_LIMIT} tried, none generated): {exc}") from exc
                outs = None  # the failed batch's tensors, held by the traceback, go when this block ends
            if outs is None:
                release_memory(self.device)
                if len(batch) > 1:
                    owed += ticked[0]
                    size = max(1, len(batch) // 2)
                    log.warning("out of memory generating %d prompts at once; going on %d at a time",
                                len(batch), size)
                    pending.extend(reversed(batch))
                    continue
                alone_failed += 1
                log.warning("out of memory generating one prompt of %d tokens; stored as a failure",
                            len(ids[batch[0]]))
                done(batch[0], Generation("", len(ids[batch[0]]), 0, time.perf_counter() - start,
                                          error=f"out of memory on {self.device} generating this prompt alone"))
                tick(1 - ticked[0])
                continue
            per_example, generated = (time.perf_counter() - start) / len(batch), generated + len(batch)
            for i, out in zip(batch, outs):
                done(i, Generation(text=reply_text(self.tokenizer, out), prompt_tokens=len(ids[i]),
                                   output_tokens=len(out), latency_s=per_example))
            tick(len(batch) - ticked[0])  # the rows that ran to max_new_tokens

    def _prefill(self, prefix: list[int]) -> Any:
        """KV cache of the shared prefix for one row."""
        import torch
        from transformers import DynamicCache

        cache = DynamicCache(config=self.model.config)
        self.model(input_ids=torch.tensor([prefix], device=self.device), cache=cache, use_cache=True)
        return cache

    def _generate_batch(self, rows: list[list[int]], params: DecodingParams, prefix_len: int, prefix_cache: Any,
                        on_row_end: Callable[[int], Any] | None = None):
        """New tokens (up to and excluding eos) for each row of one batch; ``on_row_end(1)`` as each
        row emits its end-of-turn token."""
        import torch

        pad = self.tokenizer.pad_token_id
        # Padding goes after the shared prefix (it is cached unpadded) and before each row's
        # own part; masked pads and mask-derived positions keep each row exact.
        tails = [r[prefix_len:] for r in rows]
        width = max(len(t) for t in tails)
        input_ids = torch.full((len(rows), prefix_len + width), pad, dtype=torch.long)
        mask = torch.zeros_like(input_ids)
        for j, (row, tail) in enumerate(zip(rows, tails)):
            input_ids[j, :prefix_len] = torch.tensor(row[:prefix_len], dtype=torch.long)
            input_ids[j, prefix_len + width - len(tail) :] = torch.tensor(tail, dtype=torch.long)
            mask[j, :prefix_len] = 1
            mask[j, prefix_len + width - len(tail) :] = 1
        input_ids, mask = input_ids.to(self.device), mask.to(self.device)
        kwargs: dict[str, Any] = dict(
            input_ids=input_ids,
            attention_mask=mask,
            max_new_tokens=params.max_new_tokens,
            eos_token_id=self.eos_ids,
            pad_token_id=pad,
            repetition_penalty=params.repetition_penalty,
        )
        if on_row_end is not None:
            kwargs["stopping_criteria"] = rows_ending(self.eos_ids, len(rows), on_row_end)
        if params.greedy:
            kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        else:
            kwargs.update(do_sample=True, temperature=params.temperature, top_p=params.top_p, top_k=0)
        if prefix_cache is not None:
            cache = copy.deepcopy(prefix_cache)
            cache.batch_repeat_interleave(len(rows))
            kwargs["cache"] = cache
        if self.prompt_learning:
            out = self._generate_prompt_learning(kwargs)
        else:
            out = self.model.generate(**kwargs)
        new = out[:, input_ids.shape[1] :].tolist()
        return [_until_eos(seq, self.eos_ids, pad) for seq in new]

    def _generate_prompt_learning(self, kwargs: dict[str, Any]) -> Any:
        """Generate through the base model with the adapter's virtual tokens put in by hand.

        ``PeftModel.generate`` here (peft 0.21, transformers 5.24) silently drops a prefix-tuning
        prefix (generate's own cache wins over peft's past_key_values) and misplaces positions
        for left-padded prompt tuning. Virtual tokens go first, unmasked, as in training; the
        mask-derived positions then match the training forward pass for every row.
        """
        import torch

        base = self.model.get_base_model()
        input_ids, mask = kwargs["input_ids"], kwargs["attention_mask"]
        n = input_ids.shape[0]
        virtual = self.model.get_prompt(batch_size=n)
        if self.prompt_learning == "PREFIX_TUNING":
            n_virtual = virtual.get_seq_length()
            kwargs["cache"] = virtual
        else:
            n_virtual = virtual.shape[1]
            embeds = base.get_input_embeddings()(input_ids)
            kwargs["inputs_embeds"] = torch.cat([virtual.to(embeds.dtype), embeds], dim=1)
        kwargs["attention_mask"] = torch.cat([torch.ones(n, n_virtual, dtype=mask.dtype, device=mask.device), mask],
                                             dim=1)
        # With input_ids passed beside inputs_embeds, the output is still input_ids + new tokens.
        return base.generate(**kwargs)

    # --- scoring -------------------------------------------------------------------------
    def next_token_probs(
        self,
        prompts: list[list[dict]],
        candidates: list[str],
        *,
        answer_prefix: str = "",
        batch_size: int = 16,
        reuse_prefix: bool = True,
    ):
        """P(first token of each candidate | prompt), renormalised over the candidates.

        Returns an (n_prompts, n_candidates) float64 array whose rows sum to 1. Used by the
        local G-Eval judge: expected score = probs @ scores. ``answer_prefix`` is text placed
        after the assistant turn opening (e.g. ``"Score: "``).
        """
        import numpy as np
        import torch

        cand_ids = self.candidate_token_ids(candidates)
        texts = [self.render(p) + answer_prefix for p in prompts]
        if self.prompt_learning:
            batch_size = 1  # peft's forward ignores positions: padding would shift them
        ids = [self.tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts]
        # Judge prompts share their instruction section: compute its KV once (as generate does).
        prefix_len = shared_prefix_length(ids) if reuse_prefix and not self.prompt_learning else 0
        if prefix_len < MIN_SHARED_PREFIX:
            prefix_len = 0
        prefix_len = min(prefix_len, min((len(r) for r in ids), default=1) - 1)  # keep >= 1 token per row
        pad = self.tokenizer.pad_token_id
        order = sorted(range(len(ids)), key=lambda i: (len(ids[i]), i))
        out = np.zeros((len(ids), len(candidates)))
        with torch.inference_mode():
            prefix_cache = self._prefill(ids[0][:prefix_len]) if prefix_len > 0 else None
            for start in range(0, len(order), batch_size):
                batch = order[start : start + batch_size]
                tails = [ids[i][max(prefix_len, 0):] for i in batch]
                width = max(len(t) for t in tails)
                input_ids = torch.full((len(batch), width), pad, dtype=torch.long)
                mask = torch.zeros((len(batch), max(prefix_len, 0) + width), dtype=torch.long)
                mask[:, : max(prefix_len, 0)] = 1
                for j, tail in enumerate(tails):
                    input_ids[j, width - len(tail):] = torch.tensor(tail, dtype=torch.long)
                    mask[j, mask.shape[1] - len(tail):] = 1
                # Positions from the mask, so padding shifts nothing (absolute-position models too).
                positions = (mask.cumsum(-1) - 1).clamp(min=0)[:, -width:].to(self.device)
                input_ids, mask = input_ids.to(self.device), mask.to(self.device)
                kwargs: dict[str, Any] = dict(input_ids=input_ids, attention_mask=mask, logits_to_keep=1)
                if prefix_cache is not None:
                    cache = copy.deepcopy(prefix_cache)
                    cache.batch_repeat_interleave(len(batch))
                    kwargs.update(cache=cache, use_cache=True)
                if not self.prompt_learning:
                    kwargs["position_ids"] = positions
                logits = self.model(**kwargs).logits[:, -1, :].float()
                chosen = logits[:, cand_ids]
                out[batch] = torch.softmax(chosen, dim=-1).double().cpu().numpy()
        return out

    def expected_scores(
        self, prompts: list[list[dict]], scores: list[int], *, answer_prefix: str = "", batch_size: int = 16
    ):
        """G-Eval: the probability-weighted mean score, sum_s P(s) * s, one per prompt."""
        import numpy as np

        probs = self.next_token_probs(
            prompts, [str(s) for s in scores], answer_prefix=answer_prefix, batch_size=batch_size
        )
        return probs @ np.asarray(scores, dtype=float)

    def candidate_token_ids(self, candidates: list[str]) -> list[int]:
        """First token id of each candidate; two candidates sharing it cannot be told apart."""
        if not candidates:
            raise InputError(Problem("<judge>", None, "candidates", "no candidates given"))
        ids = []
        for c in candidates:
            toks = self.tokenizer(c, add_special_tokens=False)["input_ids"]
            if not toks:
                raise InputError(Problem("<judge>", None, "candidates", f"{c!r} encodes to no tokens"))
            ids.append(toks[0])
        if len(set(ids)) != len(ids):
            raise InputError(Problem(
                "<judge>", None, "candidates",
                f"candidates {candidates!r} share a first token; use labels that start differently",
            ))
        return ids


def shared_prefix_length(rows: list[list[int]]) -> int:
    """Length of the longest common token prefix, leaving every row at least one own token."""
    if len(rows) < 2:
        return 0
    first = rows[0]
    n = min(len(r) for r in rows) - 1
    for k in range(max(n, 0)):
        tok = first[k]
        if any(r[k] != tok for r in rows):
            return k
    return max(n, 0)


def end_of_turn_ids(tokenizer: Any) -> list[int]:
    """Token ids that end the assistant's turn: the template's closing token, then eos."""
    ids: list[int] = []
    vocab = tokenizer.get_vocab()
    closing = _template_closing_token(tokenizer)
    for tok in ([closing] if closing else []) + list(END_OF_TURN_CANDIDATES):
        if tok in vocab and (tok == closing or tok == tokenizer.eos_token):
            ids.append(vocab[tok])
    if tokenizer.eos_token_id is not None:
        ids.append(tokenizer.eos_token_id)
    ids = list(dict.fromkeys(ids))
    if not ids:
        raise HarnessError("the tokenizer has no eos or end-of-turn token; cannot tell when a reply ends")
    return ids


def _template_closing_token(tokenizer: Any) -> str | None:
    """The special token the chat template writes right after an assistant message."""
    if not getattr(tokenizer, "chat_template", None):
        return None
    marker = "XQZMARKERQZX"
    try:
        text = tokenizer.apply_chat_template(
            [{"role": "user", "content": "hi"}, {"role": "assistant", "content": marker}], tokenize=False
        )
    except Exception:  # templates may reject this shape; fall back to eos
        return None
    after = text.split(marker, 1)[-1] if marker in text else ""
    for tok in END_OF_TURN_CANDIDATES + tuple(tokenizer.all_special_tokens):
        if tok and after.startswith(tok):
            return tok
    return None


def encode_prompts(tokenizer: Any, prompts: list[list[dict]]) -> list[list[int]]:
    """Each conversation rendered (:func:`harness.prompts.render_prompt`) and tokenized, as
    every generation engine sends it to the model."""
    ids = [tokenizer(render_prompt(tokenizer, p), add_special_tokens=False)["input_ids"] for p in prompts]
    for i, row in enumerate(ids):
        if not row:
            raise InputError(Problem("<prompts>", None, f"prompts[{i}]", "renders to no tokens"))
    return ids


def check_prompt_lengths(ids: list[list[int]], max_new_tokens: int, max_positions: int) -> None:
    for i, row in enumerate(ids):
        if len(row) + max_new_tokens > max_positions:
            raise InputError(Problem(
                "<prompts>", None, f"prompts[{i}]",
                f"{len(row)} prompt tokens + {max_new_tokens} new exceed the model's {max_positions} positions",
            ))


def reply_text(tokenizer: Any, new_ids: list[int]) -> str:
    """The reply as stored: its new tokens (up to the end of turn) decoded without special tokens."""
    return tokenizer.decode(new_ids, skip_special_tokens=True).strip()


class PromptCodec:
    """A local model's tokenizer as generation uses it, without loading weights: what an
    engine other than transformers (vLLM) needs to send the same tokens and store the same text."""

    def __init__(self, spec: str | Path | None):
        from transformers import AutoConfig, AutoTokenizer

        path = resolve_model(None if spec is None else str(spec)).path
        self.tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        self.eos_ids = end_of_turn_ids(self.tokenizer)
        config = AutoConfig.from_pretrained(path, local_files_only=True)
        config = getattr(config, "text_config", None) or config
        self.max_positions = getattr(config, "max_position_embeddings", None) or 1 << 30

    def encode(self, prompts: list[list[dict]], max_new_tokens: int) -> list[list[int]]:
        ids = encode_prompts(self.tokenizer, prompts)
        check_prompt_lengths(ids, max_new_tokens, self.max_positions)
        return ids

    def reply(self, token_ids: list[int] | None, text: str) -> tuple[str, int]:
        """(stored text, output tokens) of a reply: its token ids cut at the first end-of-turn
        id and decoded as :class:`LocalModel` does; the server's text, stripped, without ids."""
        if token_ids is None:
            return text.strip(), len(self.tokenizer(text, add_special_tokens=False)["input_ids"])
        new = _until_eos(list(token_ids), self.eos_ids, -1)
        return reply_text(self.tokenizer, new), len(new)


def _until_eos(seq: list[int], eos_ids: list[int], pad: int) -> list[int]:
    for k, tok in enumerate(seq):
        if tok in eos_ids:
            return seq[:k]
    # No eos: strip trailing pad only (generate pads finished rows with it).
    while seq and seq[-1] == pad and pad not in eos_ids:
        seq = seq[:-1]
    return seq


def rows_ending(eos_ids: list[int], n_rows: int, on_end: Callable[[int], Any]) -> Any:
    """A stopping criterion that stops nothing: it calls ``on_end(1)`` the step each row of a batch
    emits an end-of-turn token, so progress moves per example rather than per batch."""
    import torch
    from transformers import StoppingCriteria, StoppingCriteriaList

    class RowsEnding(StoppingCriteria):
        def __init__(self) -> None:
            self.ended = [False] * n_rows

        def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
            for j, tok in enumerate(input_ids[:, -1].tolist()):
                if not self.ended[j] and tok in eos_ids:
                    self.ended[j] = True
                    on_end(1)
            return torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)

    return StoppingCriteriaList([RowsEnding()])
