"""Training under ``accelerate launch`` (:mod:`harness.train.distributed`): the command the
harness runs, and the entry point each launched process runs.

    accelerate launch --num_processes N [--config_file F | --multi_gpu] \\
        --main_process_port P -m harness.train.launch JOB

``JOB`` is a pickle the harness wrote beside the adapter folder (base model, train and
validation examples, hyperparameters, output folder, precision, threads per process); it is a
file of this harness for this harness, never user input. Every process trains its share; the
first writes the adapter folder (atomically, as in-process training does).
"""
from __future__ import annotations

import os
import pickle
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

from harness.errors import HarnessError
from harness.netutil import free_port

WORKER = "harness.train.launch"


def launch_command(num_processes: int, job: Path, *, config_file: str | None, port: int) -> list[str]:
    """The ``accelerate launch`` command line for ``job``: a config file decides the distributed
    setup when given (passed through untouched); otherwise N processes on this machine (DDP;
    ``--multi_gpu`` is accelerate's flag for that, and on the CPU the processes use gloo)."""
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--num_processes", str(num_processes)]
    if config_file:
        cmd += ["--config_file", str(config_file)]
    elif num_processes > 1:
        cmd += ["--multi_gpu", "--num_machines", "1"]
    cmd += ["--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", str(port)]
    return cmd + ["-m", WORKER, str(job)]


def run_launched(job: dict[str, Any], out_dir: Path, *, num_processes: int, config_file: str | None,
                 port: int | None, say: Callable[[str], None]) -> None:
    """Write ``job``, run it under accelerate launch and wait; HarnessError with the tail of its
    output when it fails. The adapter is in ``out_dir`` afterwards."""
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    job_file = out_dir.parent / f"{out_dir.name}.job.pkl"
    job_file.write_bytes(pickle.dumps(job))
    log = out_dir.parent / f"{out_dir.name}.launch.log"
    cmd = launch_command(num_processes, job_file, config_file=config_file, port=port or free_port())
    say(f"  launching: {' '.join(cmd)}")
    env = dict(os.environ, TOKENIZERS_PARALLELISM="false", OMP_NUM_THREADS=str(job["threads"]))
    started = time.perf_counter()
    with open(log, "wb") as f:
        proc = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, env=env)
    job_file.unlink(missing_ok=True)
    if proc.returncode != 0:
        tail = "\n".join(log.read_text(encoding="utf-8", errors="replace").splitlines()[-25:])
        raise HarnessError(f"accelerate launch exited with code {proc.returncode}; its output ({log}) ends:\n{tail}")
    say(f"  {num_processes} process(es) trained in {time.perf_counter() - started:.1f} s (log: {log})")


def main(argv: list[str]) -> None:
    """One launched process: train its share of the job (the first process saves)."""
    from harness.train.distributed import AccelerateDist
    from harness.train.sft import train_adapter

    job = pickle.loads(Path(argv[0]).read_bytes())
    dist = AccelerateDist(cpu=job["placement"].type == "cpu")
    train_adapter(job["base"], job["train"], job["val"], job["params"], job["out_dir"], progress=False,
                  meta=job["meta"], threads=job["threads"], placement=job["placement"], dist=dist)


if __name__ == "__main__":
    main(sys.argv[1:])
