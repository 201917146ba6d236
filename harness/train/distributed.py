"""Training in several processes: ``train: {launcher: accelerate, num_processes: N, config_file: F}``
on a training candidate runs its training under ``accelerate launch``.

The harness writes the job (base model, examples, hyperparameters, output folder) to a file
beside the adapter, runs ``accelerate launch --num_processes N [--config_file F] -m
harness.train.launch JOB`` and, when every process has finished, reads the adapter and its
curves from the folder as it does after training in-process. ``config_file`` (an ``accelerate
config`` file: data parallel over several GPUs or machines) is passed through untouched; one
that selects FSDP or DeepSpeed is refused before any work (:func:`config_problem`: this loop's
optimizer, clipping and save do not go through accelerate). Without one, several processes on
one machine run as DDP (``--multi_gpu``; on the CPU the processes talk over gloo).

Each process takes its share of every optimizer step: a step is ``grad_accum × N``
micro-batches of ``batch_size`` (the per-process batch, as in accelerate), process r takes the
r-th, (r+N)-th... of them; the loss is summed over the step's answer tokens and divided by the
step's total, and gradients are averaged over processes by DDP, so N processes take the step one
process with ``grad_accum × N`` would take, up to the order of floating-point sums (tested:
the loss curve of 2 CPU processes matches 1 process with twice the accumulation). Dropout draws
differ per process, as in every data-parallel run. ``num_processes`` > 1 is part of the adapter's
cache key (it changes the global batch); 1 keys as training in-process does.
"""
from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any, Iterator, Literal

from pydantic import BaseModel, ConfigDict, Field


# accelerate's distributed types the harness's loop runs: data parallelism (DDP on any device
# kind) or none. FSDP and DeepSpeed shard the model and the optimizer, and this loop's optimizer,
# gradient clipping and save would need to go through accelerate for them: refused, not half-run.
SUPPORTED_TYPES = ("NO", "MULTI_GPU", "MULTI_CPU", "MULTI_XPU", "MULTI_NPU", "MULTI_MLU", "MULTI_HPU", "MULTI_MUSA")


def config_problem(path: Path, shown: str) -> str | None:
    """Why an accelerate config file cannot be used (None: it can)."""
    import yaml

    if not path.is_file():
        return f"accelerate config file {shown!r} not found (looked up as the data path is)"
    try:
        cfg = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, ValueError, yaml.YAMLError) as exc:
        return f"accelerate config file {shown!r} does not parse: {exc}"
    kind = str(cfg.get("distributed_type", "NO") if isinstance(cfg, dict) else "?").upper()
    if kind not in SUPPORTED_TYPES:
        return (f"accelerate config file {shown!r}: distributed_type {kind} is not supported; the harness's "
                "training loop runs data parallel (DDP: MULTI_GPU, MULTI_CPU, ...) only, since FSDP and DeepSpeed "
                "would need its optimizer, clipping and save to go through accelerate")
    return None


class LaunchOptions(BaseModel):
    """How a training candidate's training is launched (the candidate's ``train:`` key)."""

    model_config = ConfigDict(extra="forbid")

    launcher: Literal["none", "accelerate"] = Field(
        "none", description="none: train in the harness's process; accelerate: under accelerate launch.")
    num_processes: int = Field(1, ge=1, le=4096, description="Processes in all (GPUs, or CPU processes).")
    config_file: str | None = Field(
        None, description="An accelerate config file (data parallel: several GPUs or machines), passed to "
                          "accelerate launch untouched; found as the data path is. FSDP and DeepSpeed are refused.")
    main_process_port: int | None = Field(None, ge=1, le=65535, description="Rendezvous port; default: a free one.")

    @property
    def launched(self) -> bool:
        return self.launcher != "none"


class Dist:
    """How a training loop talks to its peer processes: here, none (one process)."""

    world, rank = 1, 0
    device: Any = None

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def prepare(self, model: Any) -> Any:
        return model

    def unwrap(self, model: Any) -> Any:
        return model

    def no_sync(self, model: Any) -> contextlib.AbstractContextManager:
        return contextlib.nullcontext()

    def sum(self, values: list[float]) -> list[float]:
        """Each value summed over every process."""
        return values

    def wait(self) -> None:
        """Wait until every process reaches this point."""


class AccelerateDist(Dist):
    """Peers through ``accelerate.Accelerator`` (the processes ``accelerate launch`` started)."""

    def __init__(self, cpu: bool):
        from accelerate import Accelerator

        self.acc = Accelerator(cpu=cpu)
        self.world, self.rank, self.device = self.acc.num_processes, self.acc.process_index, self.acc.device

    def prepare(self, model: Any) -> Any:
        return self.acc.prepare(model)

    def unwrap(self, model: Any) -> Any:
        return self.acc.unwrap_model(model)

    def no_sync(self, model: Any) -> contextlib.AbstractContextManager:
        return self.acc.no_sync(model)

    def sum(self, values: list[float]) -> list[float]:
        import torch

        t = torch.tensor(values, dtype=torch.float64, device=self.device)
        return [float(v) for v in self.acc.reduce(t, reduction="sum")]

    def wait(self) -> None:
        self.acc.wait_for_everyone()


@contextlib.contextmanager
def maybe_no_sync(dist: Dist, model: Any, skip: bool) -> Iterator[None]:
    """No gradient all-reduce for this backward when ``skip`` (all but a step's last micro-batch)."""
    with dist.no_sync(model) if skip else contextlib.nullcontext():
        yield


__all__ = ["AccelerateDist", "Dist", "LaunchOptions", "maybe_no_sync"]
