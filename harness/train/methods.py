"""Training methods: one registry entry per method, mapping :class:`TrainParams` to a peft config.

Each entry is a function ``(params) -> peft config | None`` (``None`` means full fine-tuning,
no peft) with metadata the planner and exporter read without calling it: ``peft`` (is it an
adapter), ``mergeable`` (can ``merge_and_unload`` fold it into the base), ``needs_gpu`` and
``default_lr``. Building the config is cheap and happens before any model is loaded, so a
method that cannot run here (``qlora`` without CUDA) fails in well under a second.

Third-party methods register through the entry-point group ``harness.training_method``.
"""
from __future__ import annotations

import importlib.util
import sys
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from harness.errors import GPURequiredError
from harness.registry import Registry, did_you_mean

METHODS = Registry("training_method")


class TrainParams(BaseModel):
    """Hyperparameters of one training run. Unknown keys are errors (typos must not pass silently)."""

    model_config = ConfigDict(extra="forbid", validate_assignment=False)

    method: str = Field("lora", description="Training method: lora, qlora, prefix, prompt or full (see METHODS).")
    epochs: float = Field(3.0, gt=0, description="Passes over the training set (fractions allowed).")
    learning_rate: float | None = Field(
        None, gt=0, description="Peak learning rate; None takes the method's default (lora 2e-4, full 2e-5, ...)."
    )
    batch_size: int = Field(8, ge=1, description="Examples per forward/backward pass.")
    grad_accum: int = Field(1, ge=1, description="Micro-batches accumulated per optimizer step.")
    max_length: int = Field(1024, ge=8, description="Token limit per example; the prompt is cut from the left first.")
    r: int = Field(16, ge=1, description="LoRA rank.")
    alpha: float = Field(32, gt=0, description="LoRA alpha (the update is scaled by alpha / r).")
    dropout: float = Field(0.05, ge=0, lt=1, description="LoRA dropout on the adapter input.")
    target_modules: str | list[str] = Field(
        "all-linear", description="Modules LoRA adapts: 'all-linear' or a list of module names."
    )
    num_virtual_tokens: int = Field(20, ge=1, description="Virtual tokens for prefix and prompt tuning.")
    seed: int = Field(0, description="Seed for adapter init, dropout and data order; same seed, same adapter.")
    eval_every: int = Field(50, ge=1, description="Optimizer steps between validation-loss evaluations.")
    patience: int | None = Field(
        None, ge=1, description="Stop after this many evaluations without a new best validation loss; None = off."
    )
    max_steps: int | None = Field(None, ge=1, description="Stop after this many optimizer steps (overrides epochs).")
    warmup_ratio: float = Field(0.0, ge=0, lt=1, description="Share of steps with linear learning-rate warmup.")
    weight_decay: float = Field(0.0, ge=0, description="AdamW weight decay.")
    max_grad_norm: float | None = Field(1.0, gt=0, description="Gradient clipping norm; None = no clipping.")

    @field_validator("method")
    @classmethod
    def _known_method(cls, v: str) -> str:
        if v not in METHODS:
            raise ValueError(f"unknown training method {v!r}{did_you_mean(v, set(METHODS.names()))}; "
                             f"known: {', '.join(METHODS.names())}")
        return v

    @model_validator(mode="after")
    def _method_defaults(self) -> "TrainParams":
        if self.learning_rate is None:
            self.learning_rate = float(METHODS.meta(self.method).get("default_lr", 2e-4))
        return self

    @property
    def lr(self) -> float:
        assert self.learning_rate is not None  # filled by the validator
        return self.learning_rate


def _lora_config(p: TrainParams) -> Any:
    from peft import LoraConfig

    return LoraConfig(
        r=p.r,
        lora_alpha=p.alpha,
        lora_dropout=p.dropout,
        target_modules=p.target_modules,
        bias="none",
        task_type="CAUSAL_LM",
    )


@METHODS.register("lora", peft=True, mergeable=True, needs_gpu=False, default_lr=2e-4,
                  description="Low-rank adapters on every linear layer (peft LoRA).")
def lora(params: TrainParams) -> Any:
    return _lora_config(params)


def require_cuda_and_bitsandbytes() -> None:
    """Raise GPURequiredError unless CUDA and bitsandbytes are both present; loads no model."""
    missing = []
    if importlib.util.find_spec("bitsandbytes") is None:
        missing.append("bitsandbytes is not installed")
    # Only ask torch about CUDA when it is already imported or bitsandbytes is there: a cold
    # `import torch` takes seconds, and the answer is "no" either way without bitsandbytes.
    if (not missing or "torch" in sys.modules) and not _cuda_available():
        missing.insert(0, "no CUDA GPU is visible")
    if not missing:
        return
    raise GPURequiredError(
        f"qlora needs a CUDA GPU and bitsandbytes ({'; '.join(missing)}). "
        "Run it on a machine with an NVIDIA GPU after `pip install bitsandbytes`, "
        "or use method 'lora' (same adapter in fp32, runs on CPU)."
    )


def _cuda_available() -> bool:
    import torch

    return bool(torch.cuda.is_available())


@METHODS.register("qlora", peft=True, mergeable=True, needs_gpu=True, default_lr=2e-4, quantize="4bit",
                  description="LoRA on a 4-bit (NF4, bitsandbytes) base model; CUDA only.")
def qlora(params: TrainParams) -> Any:
    require_cuda_and_bitsandbytes()
    return _lora_config(params)


@METHODS.register("prefix", peft=True, mergeable=False, needs_gpu=False, default_lr=1e-2,
                  description="Prefix tuning: trained key/value prefixes in every layer (peft).")
def prefix(params: TrainParams) -> Any:
    from peft import PrefixTuningConfig

    return PrefixTuningConfig(num_virtual_tokens=params.num_virtual_tokens, task_type="CAUSAL_LM")


@METHODS.register("prompt", peft=True, mergeable=False, needs_gpu=False, default_lr=3e-2,
                  description="Prompt tuning: trained soft-prompt embeddings before the input (peft).")
def prompt(params: TrainParams) -> Any:
    from peft import PromptTuningConfig, PromptTuningInit

    # Starting from real vocabulary embeddings keeps the soft prompt on the embedding scale;
    # peft's RANDOM init draws N(0, 1), far larger than a trained model's embeddings.
    return PromptTuningConfig(
        num_virtual_tokens=params.num_virtual_tokens,
        prompt_tuning_init=PromptTuningInit.SAMPLE_VOCAB,
        task_type="CAUSAL_LM",
    )


@METHODS.register("full", peft=False, mergeable=False, needs_gpu=False, default_lr=2e-5,
                  description="Full fine-tuning of every weight; saves a whole model, no adapter.")
def full(params: TrainParams) -> None:
    return None


def peft_config_for(params: TrainParams) -> Any:
    """The method's peft config (None for full fine-tuning). Raises before any model is loaded."""
    return METHODS.get(params.method)(params)


def model_load_kwargs(params: TrainParams) -> dict[str, Any]:
    """Extra ``from_pretrained`` arguments the method needs (4-bit quantisation for qlora)."""
    if METHODS.meta(params.method).get("quantize") != "4bit":
        return {}
    import torch
    from transformers import BitsAndBytesConfig

    return {
        "quantization_config": BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=torch.bfloat16,
        ),
        "device_map": {"": 0},
    }

