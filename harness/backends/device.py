"""Where a local model runs and in what precision: the one home of ``device`` and ``dtype``.

Every local model use asks here: generation (:class:`harness.backends.local.LocalModel`), the
local judge, the embeddings of dense retrieval and semantic metrics (device only) and training.
A goal sets ``device`` (auto | cpu | cuda | cuda:N | mps) and ``dtype`` (auto | bfloat16 |
float16 | float32); a candidate (and ``judge:``) may override either.

* ``device: auto`` is ``cuda:0`` when a CUDA GPU is visible, else ``mps``, else ``cpu``;
* ``dtype: auto`` is bfloat16 on a CUDA GPU with native bf16 (Ampere and newer), float32 on
  the CPU, on mps and on older GPUs.

:func:`placement_problems` is what ``validate_goal`` asks before any work, so ``harness run``,
``--dry-run`` and ``check`` refuse, with the goal file's line: a device this machine lacks,
``cuda:N`` past the device count, float16 on the CPU (no fast half kernels there, range that
overflows where bfloat16 does not, nothing gained over bfloat16 or float32), and bfloat16 on a
GPU that cannot run it. bfloat16 on the CPU is allowed (slow on CPUs without bf16 units).

Probing does not import torch when its build has no CUDA (or ROCm) library and the platform is
not macOS, so checking a goal on a CPU install stays fast.

Cache keys: float32 is the reference precision and adds nothing to a key (predictions and
adapters stored before this module existed are found); any other precision, and a 4-bit base,
adds :attr:`Placement.tag` to the model's id.
"""
from __future__ import annotations

import importlib.util
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.errors import InputError, Problem

DTYPES = ("auto", "bfloat16", "float16", "float32")
DEVICE_RE = re.compile(r"auto|cpu|mps|cuda(:\d+)?")
DEVICE_HELP = "auto, cpu, cuda, cuda:N or mps"
REFERENCE_DTYPE = "float32"
# Generation batches on a GPU with no batch size set (see generation_batch_size).
MAX_AUTO_BATCH = 256
GPU_MEMORY_SHARE = 0.5
CPU_BATCH = 16


def check_device(value: Any) -> str:
    """The device name, if it is one of auto, cpu, cuda, cuda:N, mps (pydantic's ValueError otherwise)."""
    if not isinstance(value, str) or not DEVICE_RE.fullmatch(value.strip().lower()):
        raise ValueError(f"unknown device {value!r}; use {DEVICE_HELP}")
    return value.strip().lower()


def check_dtype(value: Any) -> str:
    if not isinstance(value, str) or value not in DTYPES:
        raise ValueError(f"unknown dtype {value!r}; use {', '.join(DTYPES)}")
    return value


@dataclass(frozen=True)
class Placement:
    """A resolved (device, dtype): ``cpu`` / ``cuda:N`` / ``mps`` and a torch dtype's name."""

    device: str = "cpu"
    dtype: str = REFERENCE_DTYPE

    @property
    def type(self) -> str:
        """``cpu``, ``cuda`` or ``mps``."""
        return self.device.split(":")[0]

    @property
    def index(self) -> int | None:
        return int(self.device.split(":")[1]) if self.type == "cuda" else None

    @property
    def tag(self) -> str:
        """What the precision adds to a cache key: nothing for float32."""
        return "" if self.dtype == REFERENCE_DTYPE else self.dtype

    def torch_dtype(self) -> Any:
        import torch

        return getattr(torch, self.dtype)


# --------------------------------------------------------------------------- what this machine has


def _torch_has_gpu_library() -> bool:
    """Whether the installed torch could see a CUDA/ROCm GPU at all, without importing it."""
    if "torch" in sys.modules:
        return True  # already paid for: ask it
    spec = importlib.util.find_spec("torch")
    if spec is None or not spec.origin:
        return False
    lib = Path(spec.origin).parent / "lib"
    return any(lib.glob("*torch_cuda*")) or any(lib.glob("*torch_hip*"))


def cuda_device_count() -> int:
    """CUDA (or ROCm) GPUs torch sees here; 0 on a CPU build, without importing torch."""
    if not _torch_has_gpu_library():
        return 0
    import torch

    return int(torch.cuda.device_count()) if torch.cuda.is_available() else 0


def mps_available() -> bool:
    if sys.platform != "darwin" or importlib.util.find_spec("torch") is None:
        return False
    import torch

    return bool(torch.backends.mps.is_available())


def cuda_bf16(index: int, *, native: bool) -> bool:
    """Whether GPU ``index`` runs bfloat16 (``native``: in hardware, Ampere and newer)."""
    import torch

    with torch.cuda.device(index):
        return bool(torch.cuda.is_bf16_supported(including_emulation=not native))


# --------------------------------------------------------------------------- resolving and refusing


def resolve_device(device: str) -> str:
    """``auto`` made concrete; ``cuda`` is ``cuda:0``. No availability check (see placement_problems)."""
    device = check_device(device)
    if device == "auto":
        return "cuda:0" if cuda_device_count() else ("mps" if mps_available() else "cpu")
    return "cuda:0" if device == "cuda" else device


def resolve_dtype(dtype: str, device: str) -> str:
    """``auto`` made concrete for a resolved ``device``."""
    if check_dtype(dtype) != "auto":
        return dtype
    if device.startswith("cuda") and cuda_bf16(int(device.split(":")[1]), native=True):
        return "bfloat16"
    return REFERENCE_DTYPE


def placement_problems(device: str = "auto", dtype: str = "auto") -> list[tuple[str, str]]:
    """(field, message) for each reason this (device, dtype) cannot run on this machine."""
    try:
        check_device(device)
    except ValueError as exc:
        return [("device", str(exc))]
    try:
        check_dtype(dtype)
    except ValueError as exc:
        return [("dtype", str(exc))]
    resolved = resolve_device(device)
    kind = resolved.split(":")[0]
    if kind == "cuda":
        count, index = cuda_device_count(), int(resolved.split(":")[1])
        if count == 0:
            return [("device", f"device {device!r}: no CUDA GPU is visible on this machine (torch sees none); "
                               "use device: cpu or auto")]
        if index >= count:
            return [("device", f"device {device!r}: this machine has {count} CUDA GPU(s), cuda:0"
                               + (f"..cuda:{count - 1}" if count > 1 else ""))]
        if dtype == "bfloat16" and not cuda_bf16(index, native=False):
            return [("dtype", f"bfloat16 does not run on {resolved}; use float16 or float32")]
    elif kind == "mps" and not mps_available():
        return [("device", f"device {device!r}: Apple's mps backend is not available here; use cpu or auto")]
    elif kind == "cpu" and dtype == "float16":
        return [("dtype", "float16 on the CPU is refused: it has no fast half kernels there and overflows where "
                          "bfloat16 does not; use float32 (or bfloat16)")]
    return []


def resolve_placement(device: str | None = "auto", dtype: str | None = "auto", *,
                      where: str = "<model>") -> Placement:
    """The concrete placement, or InputError naming the field (``where``: the file or section)."""
    device, dtype = device or "auto", dtype or "auto"
    problems = placement_problems(device, dtype)
    if problems:
        raise InputError([Problem(where, None, field, message) for field, message in problems])
    resolved = resolve_device(device)
    return Placement(resolved, resolve_dtype(dtype, resolved))


# --------------------------------------------------------------------------- 4-bit bases


def four_bit_problem(placement: Placement) -> str | None:
    """Why a bitsandbytes 4-bit base cannot run on ``placement`` (None: it can)."""
    missing = []
    if placement.type != "cuda":
        missing.append(f"the device is {placement.device}, not a CUDA GPU")
    if importlib.util.find_spec("bitsandbytes") is None:
        missing.append("bitsandbytes is not installed")
    return "; ".join(missing) or None


# --------------------------------------------------------------------------- generation batches


def generation_batch_size(free_bytes: int, *, layers: int, kv_heads: int, head_dim: int, hidden: int,
                          intermediate: int, vocab: int, dtype_bytes: int, row_tokens: int,
                          share: float = GPU_MEMORY_SHARE, cap: int = MAX_AUTO_BATCH) -> int:
    """Prompts per generation batch on a GPU, from its free memory (the model already loaded).

    Rule of thumb: spend at most ``share`` (half) of the free memory; each row of a batch costs
    its KV cache at full length (``2 * layers * kv_heads * head_dim * dtype_bytes`` per token,
    times ``row_tokens`` = longest prompt + max_new_tokens; the shared-prefix cache is copied
    per row, so it counts), the prefill's widest activation (``row_tokens * (hidden +
    intermediate) * dtype_bytes * 2``: the MLP's input and output) and two fp32 rows of logits
    (``vocab * 4 * 2``: the logits and the processors' copy). The answer is clamped to 1..``cap``:
    past a few hundred rows a batch is compute-bound and only pads more.

    >>> generation_batch_size(4 * 2**30, layers=30, kv_heads=3, head_dim=64, hidden=576,
    ...                       intermediate=1536, vocab=49152, dtype_bytes=2, row_tokens=512)
    130
    """
    kv = 2 * layers * kv_heads * head_dim * dtype_bytes * row_tokens
    activations = row_tokens * (hidden + intermediate) * dtype_bytes * 2
    logits = vocab * 4 * 2
    per_row = max(kv + activations + logits, 1)
    return max(1, min(cap, int(free_bytes * share) // per_row))


def auto_generation_batch_size(model: Any, placement: Placement, row_tokens: int) -> int:
    """:func:`generation_batch_size` for a loaded transformers model on a GPU; 16 on cpu/mps."""
    if placement.type != "cuda":
        return CPU_BATCH
    import torch

    free, _total = torch.cuda.mem_get_info(placement.index)
    cfg = model.config
    cfg = getattr(cfg, "text_config", None) or cfg
    heads = getattr(cfg, "num_attention_heads", 1)
    hidden = getattr(cfg, "hidden_size", 1)
    return generation_batch_size(
        int(free), layers=getattr(cfg, "num_hidden_layers", 1),
        kv_heads=getattr(cfg, "num_key_value_heads", None) or heads,
        head_dim=getattr(cfg, "head_dim", None) or hidden // max(heads, 1), hidden=hidden,
        intermediate=getattr(cfg, "intermediate_size", None) or 4 * hidden,
        vocab=getattr(cfg, "vocab_size", 1), dtype_bytes=torch.finfo(placement.torch_dtype()).bits // 8,
        row_tokens=row_tokens)


# --------------------------------------------------------------------------- peak memory


class PeakMemory:
    """The peak memory of one stretch of work (a candidate): ``torch.cuda.max_memory_allocated``
    over it when the work ran on a CUDA device, else the process's peak resident set size so far
    (``resource.getrusage``; it cannot be reset, so it covers the process up to now)."""

    def __init__(self) -> None:
        if _cuda_initialised():
            import torch

            for i in range(torch.cuda.device_count()):
                torch.cuda.reset_peak_memory_stats(i)

    def read(self, device: str) -> dict[str, Any]:
        """``{"peak_memory_mb", "peak_memory_source"}`` for work that ran on ``device``."""
        if device.startswith("cuda") and _cuda_initialised():
            import torch

            peak = torch.cuda.max_memory_allocated(int(device.split(":")[1]) if ":" in device else 0)
            return {"peak_memory_mb": round(peak / 2**20, 1), "peak_memory_source": "cuda_max_memory_allocated"}
        import resource

        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        mb = rss / 2**20 if sys.platform == "darwin" else rss / 1024  # bytes on macOS, KiB on Linux
        return {"peak_memory_mb": round(mb, 1), "peak_memory_source": "process_peak_rss"}


def _cuda_initialised() -> bool:
    torch = sys.modules.get("torch")
    return bool(torch is not None and torch.cuda.is_available() and torch.cuda.is_initialized())


__all__ = ["DTYPES", "PeakMemory", "Placement", "auto_generation_batch_size", "check_device", "check_dtype",
           "cuda_device_count", "four_bit_problem", "generation_batch_size", "mps_available",
           "placement_problems", "resolve_placement"]
