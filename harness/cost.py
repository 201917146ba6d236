"""What a fine-tune costs: measured where it ran, projected from FLOPs where it has not.

Training compute is the standard ``6 × parameters × tokens`` FLOPs (forward and backward
pass of a dense transformer; LoRA saves optimizer memory, not these FLOPs). Time on a device
is those FLOPs over the device's dense bf16 peak times a utilisation (MFU) — the one number
that makes or breaks the estimate, so it is printed with every estimate and can be set.
Prices are defaults for on-demand cloud GPUs, to be overridden (``cost: {gpu_hour_usd: …}`` in
the goal, or ``harness estimate --gpu-hour-usd``). Every figure comes with the assumptions
that produced it; none is a quote.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

# Dense bf16 peak TFLOP/s per device (vendor datasheets, without sparsity) and a default
# on-demand price per GPU-hour in USD (typical public cloud list prices, late 2026).
DEVICES: dict[str, tuple[float, float]] = {
    "h200": (989.0, 4.50),
    "h100": (989.0, 4.00),
    "a100": (312.0, 2.00),
    "l40s": (362.0, 1.50),
    "a10g": (125.0, 1.00),
    "l4": (121.0, 0.80),
    "t4": (65.0, 0.35),
    "rtx4090": (165.0, 0.70),
}
# Model FLOPs utilisation assumed when the user gives none: a fair figure for LoRA fine-tuning
# of 1-8B models with a plain PyTorch loop (the harness's own CPU loop measures 50-63%, see
# bench/README.md; GPU loops with short sequences do worse).
DEFAULT_MFU = 0.35


@dataclass
class Estimate:
    params: float
    tokens: float                  # training tokens over all epochs
    device: str
    gpus: int
    mfu: float
    usd_per_gpu_hour: float
    flops: float = 0.0
    gpu_hours: float = 0.0
    wall_hours: float = 0.0
    usd: float = 0.0
    assumptions: list[str] = field(default_factory=list)

    def describe(self) -> str:
        return (f"{_fmt_params(self.params)} model, {self.tokens:,.0f} training tokens on {self.gpus} x "
                f"{self.device.upper()}: about {self.gpu_hours:.3g} GPU-hours ({_duration(self.wall_hours)} of wall "
                f"time), about ${self.usd:,.2f}")


def _duration(hours: float) -> str:
    if hours >= 1:
        return f"{hours:.3g} h"
    if hours * 60 >= 1:
        return f"{hours * 60:.3g} min"
    return f"{hours * 3600:.2g} s"


def _fmt_params(n: float) -> str:
    return f"{n / 1e9:.3g}B" if n >= 1e9 else f"{n / 1e6:.3g}M"


def parse_params(text: str | float) -> float:
    """``8e9``, ``8B``, ``135M`` or ``1.5b`` → a parameter count."""
    from harness.errors import HarnessError

    if isinstance(text, (int, float)):
        value = float(text)
    else:
        t = str(text).strip().lower().replace("_", "")
        scale = {"k": 1e3, "m": 1e6, "b": 1e9, "t": 1e12}.get(t[-1:], 1.0)
        try:
            value = float(t[:-1] if scale != 1.0 else t) * scale
        except ValueError:
            raise HarnessError(f"model size {text!r}: write a number of parameters like 8B, 135M or 8e9") from None
    if not math.isfinite(value) or value <= 0:
        raise HarnessError(f"model size {text!r} must be a positive number of parameters")
    return value


def estimate(params: float, tokens_per_epoch: float, epochs: float, *, device: str = "a100", gpus: int = 1,
             mfu: float | None = None, usd_per_gpu_hour: float | None = None) -> Estimate:
    """Training cost from FLOPs: ``6 × params × tokens`` at ``mfu`` of the device's peak."""
    from harness.errors import HarnessError

    key = device.lower()
    if key not in DEVICES:
        raise HarnessError(f"unknown device {device!r}; known: {', '.join(DEVICES)} (or give --tflops)")
    peak, price = DEVICES[key]
    mfu = DEFAULT_MFU if mfu is None else mfu
    if not 0 < mfu <= 1 or gpus < 1 or epochs <= 0 or tokens_per_epoch < 0:
        raise HarnessError("utilisation must be in (0, 1], gpus >= 1, epochs > 0 and tokens >= 0")
    usd = price if usd_per_gpu_hour is None else usd_per_gpu_hour
    tokens = tokens_per_epoch * epochs
    flops = 6.0 * params * tokens
    gpu_hours = flops / (peak * 1e12 * mfu) / 3600.0
    est = Estimate(params, tokens, key, gpus, mfu, usd, flops, gpu_hours, gpu_hours / gpus, gpu_hours * usd)
    est.assumptions = [
        f"training FLOPs = 6 x {_fmt_params(params)} parameters x {tokens:,.0f} tokens "
        f"({tokens_per_epoch:,.0f} a pass x {epochs:g} epochs) = {flops:.3g}",
        f"{key.upper()} dense bf16 peak {peak:g} TFLOP/s at {mfu:.0%} utilisation (MFU)"
        + (" (the default; set --utilisation)" if mfu == DEFAULT_MFU else ""),
        f"${usd:.2f} per GPU-hour" + (" (a default list price; set cost.gpu_hour_usd)" if usd_per_gpu_hour is None
                                      else ""),
        f"{gpus} GPU(s) scale linearly (data parallel; communication not counted)",
    ]
    return est


def measured(candidates: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """What the trained candidates of a run actually used: tokens, wall time, tokens/s."""
    out = []
    for c in candidates:
        if not c.get("train_seconds"):
            continue
        tokens, secs = c.get("tokens_seen") or 0, float(c["train_seconds"])
        out.append({"candidate": c["name"], "tokens": tokens, "seconds": secs,
                    "tokens_per_s": tokens / secs if secs > 0 else None, "model": c.get("model")})
    return out


__all__ = ["DEFAULT_MFU", "DEVICES", "Estimate", "estimate", "measured", "parse_params"]
