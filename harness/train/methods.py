"""Training methods: one registry entry per method, mapping :class:`TrainParams` to a peft config.

Each entry is a function ``(params) -> peft config | None`` (``None`` means full fine-tuning,
no peft) with metadata the planner and exporter read without calling it: ``peft`` (is it an
adapter), ``mergeable`` (can ``merge_and_unload`` fold it into the base), ``needs_gpu``,
``default_lr`` and ``checkpointing`` (False: gradient checkpointing cannot work with it).
Building the config is cheap and happens before any model is loaded, so a method that cannot
run here (``qlora`` without CUDA) fails in well under a second.

Third-party methods register through the entry-point group ``harness.training_method``.
"""
from __future__ import annotations

import importlib.util
import sys
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from harness.errors import GPURequiredError
from harness.registry import Registry, did_you_mean

if TYPE_CHECKING:
    from harness.backends.device import Placement

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
    gradient_checkpointing: bool = Field(
        False, description="Recompute each layer's activations in the backward pass instead of keeping them: "
                           "less memory, about a third more compute. Off by default (a small model fits "
                           "without it); the same weights either way, so it is not part of the adapter's key.")

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
        if self.gradient_checkpointing and not METHODS.meta(self.method).get("checkpointing", True):
            raise ValueError(f"gradient_checkpointing does not work with {self.method}: transformers drops the "
                             "layers' cache under checkpointing, and the trained prefix lives in that cache")
        return self

    def key_fields(self) -> dict[str, Any]:
        """The hyperparameters that decide the weights (the adapter's cache key): all but how
        memory is spent, so an adapter trained before ``gradient_checkpointing`` existed is found."""
        return self.model_dump(exclude={"gradient_checkpointing"})

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


@METHODS.register("lora", peft=True, mergeable=True, needs_gpu=False, default_lr=2e-4, lora=True,
                  description="Low-rank adapters on every linear layer (peft LoRA).")
def lora(params: TrainParams) -> Any:
    return _lora_config(params)


def require_cuda_and_bitsandbytes(placement: Placement | None = None) -> None:
    """Raise GPURequiredError unless CUDA and bitsandbytes are both present (and ``placement``,
    when given, is a CUDA device); loads no model."""
    missing = []
    if importlib.util.find_spec("bitsandbytes") is None:
        missing.append("bitsandbytes is not installed")
    # Only ask torch about CUDA when it is already imported or bitsandbytes is there: a cold
    # `import torch` takes seconds, and the answer is "no" either way without bitsandbytes.
    if (not missing or "torch" in sys.modules) and not _cuda_available():
        missing.insert(0, "no CUDA GPU is visible")
    elif placement is not None and placement.type != "cuda":
        missing.insert(0, f"the candidate's device is {placement.device}")
    if not missing:
        return
    raise GPURequiredError(
        f"qlora needs a CUDA GPU and bitsandbytes ({'; '.join(missing)}). "
        "Run it on a machine with an NVIDIA GPU after `pip install bitsandbytes`, "
        "or use method 'lora' (same adapter in fp32, runs on CPU)."
    )


def _cuda_available() -> bool:
    from harness.backends.device import cuda_device_count

    return cuda_device_count() > 0


@METHODS.register("qlora", peft=True, mergeable=True, needs_gpu=True, default_lr=2e-4, quantize="4bit", lora=True,
                  description="LoRA on a 4-bit (NF4, bitsandbytes) base model; CUDA only.")
def qlora(params: TrainParams) -> Any:
    require_cuda_and_bitsandbytes()
    return _lora_config(params)


@METHODS.register("prefix", peft=True, mergeable=False, needs_gpu=False, default_lr=1e-2, checkpointing=False,
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


def model_load_kwargs(params: TrainParams, placement: Placement | None = None) -> dict[str, Any]:
    """Extra ``from_pretrained`` arguments the method needs (4-bit quantisation for qlora)."""
    if METHODS.meta(params.method).get("quantize") != "4bit":
        return {}
    from harness.backends.device import Placement

    return four_bit_load_kwargs(placement or Placement("cuda:0"))


def four_bit_load_kwargs(placement: Placement) -> dict[str, Any]:
    """The one 4-bit (NF4, double-quantised) load of a base model, for qlora training and for
    generating with its adapter: the same ``BitsAndBytesConfig`` both times. Compute runs in the
    placement's dtype, bfloat16 when that is float32 (4-bit matmuls in fp32 gain nothing)."""
    import torch
    from transformers import BitsAndBytesConfig

    compute = torch.bfloat16 if placement.dtype == "float32" else placement.torch_dtype()
    return {
        "quantization_config": BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=compute,
        ),
        "device_map": {"": placement.index or 0},
    }

