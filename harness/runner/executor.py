"""Where candidates are produced: one after another in this process (``local``, the default), or
as Ray tasks across the machines of a Ray cluster (``harness run --executor ray [--address …]``).

With Ray, each candidate's produce step (train, then generate) is one task with its resource
needs: one GPU when the candidate runs on CUDA (``device: cuda…``, or ``auto`` on a cluster
that has GPUs), one CPU otherwise, and a memory reservation from its base model's size. The
driver alone touches the store (DuckDB takes one writer): a task sees the predictions already
stored under the keys the driver's plan computes (passed in with the task), records what it
would write (predictions, curves), and returns that with its outputs; the driver writes it,
then scores, judges and decides as the local executor does. An adapter trained on another
machine comes back with the result and is unpacked under the same folder here.

A worker killed mid-task is retried by Ray (``max_retries``); the retried task starts that
candidate again (what the killed one generated was never written). A killed driver resumes
from the store as always: a rerun redoes nothing stored. A candidate that answers with
another's adapter (``adapter_of``) is submitted once that candidate's task has finished, so
the adapter is trained once. Keys depend on the precision a candidate runs in: a GPU worker
in bfloat16 beside a CPU driver in float32 looks for other keys than the driver's plan, so set
``dtype:`` where the two differ if stored outputs should be found.
"""
from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

from harness.errors import HarnessError

if TYPE_CHECKING:
    from harness.goals import Candidate
    from harness.runner.context import Outputs, Run

EXECUTORS = ("local", "ray")
# Environment a Ray worker needs to find models and data the way the driver does.
WORKER_ENV = ("HARNESS_HOME", "HF_HOME", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "PYTHONPATH",
              "TOKENIZERS_PARALLELISM", "OPENAI_API_KEY", "ANTHROPIC_API_KEY")
MAX_RETRIES = 2


class RecordingStore:
    """What a task's candidate sees of the store: the predictions the driver found stored under
    its keys; every write is recorded for the driver to replay. Anything else is an error, so a
    kind that needs more of the store cannot silently run differently on Ray."""

    def __init__(self, stored: dict[str, dict[str, Any]]):
        self.stored = stored
        self.writes: list[tuple[str, tuple, dict]] = []

    def get_predictions(self, keys: Sequence[str]) -> dict[str, dict[str, Any]]:
        return {k: self.stored[k] for k in keys if k in self.stored}

    def put_predictions(self, *args: Any, **kwargs: Any) -> None:
        self.writes.append(("put_predictions", args, kwargs))

    def put_curve(self, *args: Any, **kwargs: Any) -> None:
        self.writes.append(("put_curve", args, kwargs))

    def __getattr__(self, name: str) -> Any:
        raise HarnessError(f"a candidate running as a Ray task asked the store for {name!r}, which only the "
                           "driver may use; run it with --executor local")


def check_executor(executor: str, address: str | None) -> None:
    """``--executor`` and ``--address`` make sense, and Ray is there when asked for: before any work."""
    if executor not in EXECUTORS:
        raise HarnessError(f"--executor: use {' or '.join(EXECUTORS)}, not {executor!r}")
    if address and executor != "ray":
        raise HarnessError("--address names a Ray cluster: it needs --executor ray")
    if executor == "ray":
        require_ray()


def produce_all(run: "Run", produce: Callable[["Run", "Candidate"], "Outputs"], *, executor: str = "local",
                address: str | None = None) -> dict[str, "Outputs"]:
    """Every candidate's outputs, by ``executor``."""
    if executor == "local":
        return {cand.name: produce(run, cand) for cand in run.candidates}
    if executor == "ray":
        return _produce_on_ray(run, address)
    raise HarnessError(f"unknown executor {executor!r}; use one of {', '.join(EXECUTORS)}")


# --------------------------------------------------------------------------- the driver


def require_ray() -> Any:
    try:
        import ray
    except ImportError as exc:
        raise HarnessError("--executor ray needs Ray: pip install 'harness[ray]' (or pip install ray)") from exc
    return ray


def _produce_on_ray(run: "Run", address: str | None) -> dict[str, "Outputs"]:
    from harness.kinds import kind_of

    ray = require_ray()
    if not ray.is_initialized():
        env = {k: os.environ[k] for k in WORKER_ENV if k in os.environ}
        ray.init(address=address, runtime_env={"env_vars": env}, log_to_driver=False)
    remote = ray.remote(_task)
    gpus = float(ray.cluster_resources().get("GPU", 0))
    outputs: dict[str, "Outputs"] = {}
    waiting = list(run.candidates)
    running: dict[Any, "Candidate"] = {}
    while waiting or running:
        for cand in [c for c in waiting if set(kind_of(c).needs(c)) <= set(outputs) | _absent(run, c)]:
            waiting.remove(cand)
            running[_submit(run, cand, remote, gpus)] = cand
        if not running:
            raise HarnessError("candidates wait on each other: " + ", ".join(c.name for c in waiting))
        done, _ = ray.wait(list(running), num_returns=1)
        cand = running.pop(done[0])
        outputs[cand.name] = _collect(run, cand, ray.get(done[0]))
    return {c.name: outputs[c.name] for c in run.candidates}


def _absent(run: "Run", cand: "Candidate") -> set[str]:
    """What ``cand`` needs that this run does not produce (``--only``): nothing to wait for."""
    from harness.kinds import kind_of

    names = {c.name for c in run.candidates}
    return {n for n in kind_of(cand).needs(cand) if n not in names}


def _submit(run: "Run", cand: "Candidate", remote: Any, cluster_gpus: float) -> Any:
    from harness.kinds import kind_of

    kind = kind_of(cand)
    run.say(f"[bold]{cand.name}[/] ({cand.kind}): submitted as a Ray task")
    run.store.put_candidate(run.run_id, {"name": cand.name, "kind": cand.kind, "config": cand.model_dump(),
                                         "model": kind.model_of(run.goal, cand), "status": "running"})
    keys = kind.plan(run, cand).keys or []
    stored = run.store.get_predictions(keys) if keys else {}
    payload = {"goal": run.goal, "prepared": run.prepared, "run_id": run.run_id, "candidate": cand.name,
               "work_dir": str(run.work_dir.resolve()), "rubrics_dir": str(Path(run.rubrics_dir).resolve()),
               "stored": stored, "cwd": os.getcwd(), "artifacts": _finished_artifacts(run, cand)}
    return remote.options(max_retries=MAX_RETRIES, **resources(run, cand, cluster_gpus)).remote(payload)


def _finished_artifacts(run: "Run", cand: "Candidate") -> dict[str, bytes]:
    """The trained artifacts the candidate uses, packed for a worker that may not share this
    machine's disk (it would train them again, and its weights would not be the ones stored)."""
    from harness.kinds import kind_of
    from harness.train.sft import METADATA_FILE

    out = {}
    for folder in kind_of(cand).artifacts(run, cand):
        if (folder / METADATA_FILE).is_file():
            out[str(folder.resolve().relative_to(run.work_dir.resolve()))] = _tar(folder)
    return out


def _tar(folder: Path) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        tar.add(folder.resolve(), arcname=folder.name)
    return buf.getvalue()


def _untar(work_dir: Path, packed: dict[str, bytes]) -> None:
    """Unpack each artifact under ``work_dir`` unless it is there already (a shared disk)."""
    for rel, blob in packed.items():
        target = work_dir / rel
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            with tarfile.open(fileobj=io.BytesIO(blob)) as tar:
                tar.extractall(target.parent, filter="data")


def resources(run: "Run", cand: "Candidate", cluster_gpus: float) -> dict[str, Any]:
    """The task's Ray resources: a GPU when it runs on CUDA, one CPU, memory for its model."""
    from harness.kinds import kind_of

    device = cand.device or run.goal.device
    local = kind_of(cand).local_model
    gpu = local and (device.startswith("cuda") or (device == "auto" and cluster_gpus > 0))
    res: dict[str, Any] = {"num_cpus": 1, "num_gpus": 1 if gpu else 0}
    memory = _model_bytes(run, cand) if local else 0
    if memory:
        res["memory"] = int(memory * (4 if kind_of(cand).trains else 2))  # weights, grads/optimizer or cache
    return res


def _model_bytes(run: "Run", cand: "Candidate") -> int:
    from harness.backends.modelhub import resolve_model

    try:
        folder = Path(resolve_model(cand.model or run.goal.model).path)
    except HarnessError:
        return 0
    return sum(f.stat().st_size for f in folder.glob("*.safetensors")) or sum(
        f.stat().st_size for f in folder.glob("*.bin"))


def _collect(run: "Run", cand: "Candidate", result: dict[str, Any]) -> "Outputs":
    """Write what the task recorded, unpack a shipped adapter, book the candidate as produced."""
    for method, args, kwargs in result["writes"]:
        getattr(run.store, method)(*args, **kwargs)
    _untar(run.work_dir, result["artifacts"])
    for k, v in result["counts"].items():
        run.counts[k] = run.counts.get(k, 0) + v
    for line in result["said"]:
        run.say(line)
    out = result["outputs"]
    run.store.update_candidate(run.run_id, cand.name, cost_usd=out.cost_usd, gen_seconds=out.gen_seconds,
                               status="generated", **out.train, **out.runtime)
    return out


# --------------------------------------------------------------------------- the task (on a worker)


def _task(payload: dict[str, Any]) -> dict[str, Any]:
    """One candidate's produce step on a Ray worker, against a :class:`RecordingStore`."""
    from harness.backends.device import PeakMemory
    from harness.kinds import kind_of
    from harness.runner.context import Run

    if os.path.isdir(payload["cwd"]):
        os.chdir(payload["cwd"])  # relative paths in the goal resolve as on the driver
    goal = payload["goal"]
    cand = goal.candidate(payload["candidate"])
    _untar(Path(payload["work_dir"]), payload["artifacts"])  # trained on the driver's side: not again here
    store = RecordingStore(payload["stored"])
    said: list[str] = []
    run = Run(goal, store, prepared=payload["prepared"], run_id=payload["run_id"], progress=False,
              console=_Collect(said), work_dir=payload["work_dir"], rubrics_dir=payload["rubrics_dir"],
              candidates=[cand])
    peak = PeakMemory()
    try:
        out = kind_of(cand).produce(run, cand)
    finally:
        run.close()
    if out.runtime:
        out.runtime = dict(out.runtime, **peak.read(out.runtime["device"]))
    return {"outputs": out, "writes": store.writes, "counts": dict(run.counts), "said": said,
            "artifacts": _pack(run, out)}


def _pack(run: "Run", out: "Outputs") -> dict[str, bytes]:
    """The adapter this task trained, as a tar, for a driver on another machine."""
    path = out.train.get("adapter_path") if run.counts.get("trained") else None
    if not path:
        return {}
    folder = Path(path).resolve()
    return {str(folder.relative_to(run.work_dir.resolve())): _tar(folder)}


class _Collect:
    """A console stand-in that keeps what the task said, for the driver to print."""

    def __init__(self, lines: list[str]):
        self.lines = lines

    def print(self, msg: Any, **_: Any) -> None:
        self.lines.append(str(msg))


__all__ = ["EXECUTORS", "RecordingStore", "produce_all", "resources"]
