"""Training kinds (``lora``, ``qlora``, ``prefix``, ``prompt_tuning``, ``full`` and every
training method a third party registers): train an artifact, then generate with it.

The artifact is a peft adapter on the base model, or for methods that are not peft
(``full``) a whole model folder, which is then loaded as the model itself. It is keyed by the
trainer's version, the base model's content hash, the hyperparameters and the ids of the
training and validation examples, and lives under ``adapters/GOAL/`` in the run's work folder
(the store's folder by default: ``.harness/``); a folder with
its ``harness_adapter.json`` is finished, so a rerun reuses it without importing peft.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from harness.cache import content_key
from harness.errors import InputError, Problem
from harness.kinds import CandidateKind, CandidatePlan, parse_options
from harness.prompts import PromptOptions

if TYPE_CHECKING:
    from harness.goals import Candidate, Goal
    from harness.runner.context import Outputs, Run
    from harness.train.methods import TrainParams

PROMPT_KEYS = tuple(PromptOptions.model_fields)


@dataclass
class TrainOptions:
    """A training candidate's options: how it is prompted, how it is trained, and on how much
    of the train split (``train_fraction``: a nested, stratified subset, for the data-size curve)."""

    prompt: PromptOptions
    params: "TrainParams"
    train_fraction: float = 1.0
    launch: Any = None  # harness.train.distributed.LaunchOptions (the candidate's ``train:`` key)


@dataclass
class Artifact:
    """Where a training candidate's adapter (or model) lives and what trained it."""

    params: "TrainParams"
    base: Any               # harness.backends.modelhub.ResolvedModel
    folder: Path
    train: list = None      # type: ignore[assignment]  # the training examples (a subset of the split)
    placement: Any = None   # harness.backends.device.Placement it trains on
    launch: Any = None      # harness.train.distributed.LaunchOptions: in-process, or under accelerate launch

    @property
    def finished(self) -> bool:
        """Trained and its metadata readable (a damaged file means: train it again)."""
        from harness.errors import HarnessError
        from harness.train.sft import read_metadata

        try:
            read_metadata(self.folder)
        except HarnessError:
            return False
        return True


class TrainKind(CandidateKind):
    trains: ClassVar[bool] = True

    def __init__(self, name: str, method: str):
        self.name, self.method = name, method

    @property
    def description(self) -> str:  # type: ignore[override]
        return f"Train with the {self.method} method, then generate."

    def options(self, cand: "Candidate") -> TrainOptions:
        from harness.train.methods import TrainParams

        opts = cand.options
        problems: list[Problem] = []
        prompt = params = None
        try:
            prompt = parse_options(PromptOptions, {k: v for k, v in opts.items() if k in PROMPT_KEYS}, cand.name)
        except InputError as exc:
            problems += exc.problems
        rest = {k: v for k, v in opts.items() if k not in PROMPT_KEYS}
        launch = _launch_options(rest.pop("train", None), cand.name, problems)
        fraction = rest.pop("train_fraction", 1.0)
        if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0 < fraction <= 1:
            problems.append(Problem(f"candidate {cand.name}", None, "train_fraction",
                                    f"train_fraction is a share of the train split in (0, 1], got {fraction!r}"))
            fraction = 1.0
        if "method" in rest:
            problems.append(Problem(f"candidate {cand.name}", None, "method",
                                    f"the method is the kind ({self.name!r}); remove `method:`"))
            rest.pop("method")
        try:
            params = parse_options(TrainParams, {"method": self.method, **rest}, cand.name)
        except InputError as exc:
            problems += exc.problems
        if problems:
            raise InputError(problems)
        return TrainOptions(prompt, params, float(fraction), launch)  # type: ignore[arg-type]

    def check(self, cand: "Candidate", goal: "Goal", options: TrainOptions) -> list[Problem]:
        """A launcher's config file must exist (looked up as the data path is) and set up data
        parallelism (:data:`harness.train.distributed.SUPPORTED_TYPES`)."""
        from harness.train.distributed import config_problem

        cfg = options.launch.config_file
        if not cfg:
            return []
        problem = config_problem(_goal_relative(goal, cfg), cfg)
        return [Problem(f"candidate {cand.name}", None, "train.config_file", problem)] if problem else []

    # ------------------------------------------------------------------ plan and produce

    def preflight(self, run: "Run", cand: "Candidate") -> list[Problem]:
        """An artifact still to train whose method cannot run here (qlora off CUDA or without
        bitsandbytes) stops the run before it is booked; a trained one generates anywhere."""
        from harness.errors import GPURequiredError
        from harness.train.sft import runs_here

        art = artifact_of(run, cand)
        if art.finished:
            return []
        try:
            runs_here(art.params, art.placement)
        except GPURequiredError as exc:
            return [Problem(f"candidate {cand.name}", None, "kind", str(exc))]
        return []

    def artifacts(self, run: "Run", cand: "Candidate") -> list[Path]:
        return [artifact_of(run, cand).folder]

    def engine_adapter(self, run: "Run", cand: "Candidate") -> "tuple[Path, int] | None":
        """A LoRA adapter on a full-precision base (lora, not qlora: its outputs are keyed as run
        on its 4-bit base) is what an adapter-serving engine can serve: its folder and rank."""
        from harness.train.methods import METHODS

        meta = METHODS.meta(self.method)
        if not meta.get("lora") or meta.get("quantize"):
            return None
        opts = self.options(cand)
        return artifact_of(run, cand).folder, opts.params.r

    def plan(self, run: "Run", cand: "Candidate") -> CandidatePlan:
        from harness.runner.context import Step
        from harness.runner.generation import generation_plan, local_prediction_keys

        opts = self.options(cand)
        art = artifact_of(run, cand)
        note = f"{len(art.train)} train examples" + (f"; stored as {art.folder.name}" if art.finished else "")
        train = Step(cand.name, cand.kind, "train", 0 if art.finished else 1, int(art.finished), note=note)
        if not art.finished:
            n = len(run.prepared.test)
            return CandidatePlan([train, Step(cand.name, cand.kind, "generate", n, 0, note="after training")])
        model, adapter = self._model_and_adapter(run, cand, art)
        _, keys = local_prediction_keys(run, cand, self._prompts(run, opts), adapter, model=model)
        gen = generation_plan(run, cand, keys)
        return CandidatePlan([train, *gen.steps], gen.keys, gen.stored)

    def produce(self, run: "Run", cand: "Candidate") -> "Outputs":
        from harness.runner.generation import generate_local

        opts = self.options(cand)
        art = artifact_of(run, cand)
        info = ensure_artifact(run, cand, art)
        model, adapter = self._model_and_adapter(run, cand, art)
        out = generate_local(run, cand, self._prompts(run, opts), adapter=adapter, model=model)
        out.train = info
        return out

    def _prompts(self, run: "Run", opts: TrainOptions) -> list[list[dict[str, str]]]:
        return run.prompts(opts.prompt, opts.prompt.resolved_style())

    def _model_and_adapter(self, run: "Run", cand: "Candidate", art: Artifact) -> tuple[str | None, str | None]:
        """A peft adapter runs on the base model; a method that saves a whole model is the model."""
        from harness.train.methods import METHODS

        if METHODS.meta(self.method).get("peft", True):
            return cand.model or run.goal.model, str(art.folder)
        return str(art.folder), None


def artifact_of(run: "Run", cand: "Candidate") -> Artifact:
    """A training candidate's artifact, from its options."""
    from harness.kinds import kind_of

    opts = kind_of(cand).options(cand)
    processes = opts.launch.num_processes if opts.launch.launched else 1
    art = artifact(run, cand, opts.params, opts.train_fraction, processes)
    art.launch = opts.launch
    return art


def artifact(run: "Run", cand: "Candidate", params: "TrainParams", train_fraction: float = 1.0,
             processes: int = 1) -> Artifact:
    """The candidate's artifact folder, keyed by everything that decides its weights (the
    training examples' ids cover ``train_fraction``: a full split keys as it always did; the
    precision it trains in unless float32, so float32 adapters key as they always did)."""
    from harness.backends.modelhub import model_hash, resolve_model
    from harness.data.split import nested_subset
    from harness.train.sft import TRAINER_VERSION

    base = resolve_model(cand.model or run.goal.model)
    placement = run.placement_of(cand)
    train = nested_subset(run.prepared.train, train_fraction, run.goal.data.split.seed, run.classification)
    parts = ["adapter/v1", TRAINER_VERSION, model_hash(base.path), params.key_fields(),
             sorted(e.id for e in train), sorted(e.id for e in run.prepared.validation)]
    key = content_key(*parts, *([{"dtype": placement.dtype}] if placement.tag else []),
                      *([{"processes": processes}] if processes > 1 else []))  # the global batch
    return Artifact(params, base, run.work_dir / "adapters" / run.goal.goal / f"{cand.name}-{key[:12]}", train,
                    placement)


def ensure_artifact(run: "Run", cand: "Candidate", art: Artifact) -> dict[str, Any]:
    """Train the artifact unless it is finished already; returns what the store keeps about it.

    Reusing reads ``harness_adapter.json`` only (no peft, no torch); training checks the
    method can run here (qlora without CUDA stops before anything loads; :meth:`TrainKind.preflight`
    said so before the run began).
    """
    from harness.train.sft import METADATA_FILE, read_metadata

    if (art.folder / METADATA_FILE).is_file() and not art.finished:
        run.say(f"  {cand.name}: {art.folder / METADATA_FILE} is damaged; training the adapter again")
    if art.finished:
        meta = read_metadata(art.folder)
        run.counts["adapters_reused"] += 1
        run.say(f"  {cand.name}: adapter already trained ({art.folder}), reusing it")
    else:
        meta = _train(run, cand, art)
    run.store.put_curve(run.run_id, cand.name, [tuple(p) for p in meta.get("curves") or []])
    return {"adapter_path": str(art.folder), "adapter_hash": meta.get("adapter_hash"),
            "train_seconds": meta.get("train_seconds"), "tokens_seen": meta.get("tokens_seen"),
            "overfitting": meta.get("overfitting"), "best_step": meta.get("best_step"),
            "stopped_early": meta.get("stopped_early")}


def _train(run: "Run", cand: "Candidate", art: Artifact) -> dict[str, Any]:
    """Train the artifact in this process, or under accelerate launch (``train: {launcher:
    accelerate}``: :mod:`harness.train.distributed`); its ``harness_adapter.json`` either way."""
    from harness.train.sft import _cores, read_metadata, runs_here, train_adapter

    runs_here(art.params, art.placement)
    launch = art.launch
    n = launch.num_processes if launch is not None and launch.launched else 1
    run.say(f"  {cand.name}: training {art.params.method} on {len(art.train)} examples "
            f"({art.placement.device}, {art.placement.dtype}" + (f", {n} processes" if n > 1 else "") + ")")
    meta = {"test_hash": run.prepared.test_hash, "goal": run.goal.goal, "candidate": cand.name}
    if launch is not None and launch.launched:
        from harness.train.launch import run_launched

        config = str(_goal_relative(run.goal, launch.config_file)) if launch.config_file else None
        job = {"base": str(art.base.path), "train": art.train, "val": run.prepared.validation, "params": art.params,
               "out_dir": art.folder, "meta": meta, "placement": art.placement,
               "threads": max(1, _cores() // launch.num_processes)}
        run_launched(job, art.folder, num_processes=launch.num_processes, config_file=config,
                     port=launch.main_process_port, say=run.say)
        result = read_metadata(art.folder)
    else:
        result = train_adapter(str(art.base.path), art.train, run.prepared.validation, art.params, art.folder,
                               progress=run.progress, placement=art.placement, meta=meta).metadata
    run.counts["trained"] += 1
    return result


def _goal_relative(goal: "Goal", path: str) -> Path:
    """A path the goal names, found as its data path is (the current folder, the goal's folder, its parent)."""
    from harness.goals import resolve_data_path

    return resolve_data_path(str(Path(path).expanduser()), goal.root)


def _launch_options(value: Any, name: str, problems: list[Problem]) -> Any:
    """The candidate's ``train:`` key as LaunchOptions (problems appended, defaults kept on error)."""
    from harness.train.distributed import LaunchOptions

    if value is None:
        return LaunchOptions()
    if not isinstance(value, dict):
        problems.append(Problem(f"candidate {name}", None, "train",
                                "train: is a mapping, e.g. {launcher: accelerate, num_processes: 2}"))
        return LaunchOptions()
    try:
        launch = parse_options(LaunchOptions, value, name)
    except InputError as exc:
        problems += [Problem(p.file, p.line, f"train.{p.field}" if p.field else "train", p.message)
                     for p in exc.problems]
        return LaunchOptions()
    if launch.num_processes > 1 and not launch.launched:
        problems.append(Problem(f"candidate {name}", None, "train.num_processes",
                                "num_processes > 1 needs launcher: accelerate (without it training runs in one process)"))
    if launch.config_file and not launch.launched:
        problems.append(Problem(f"candidate {name}", None, "train.config_file", "config_file needs launcher: accelerate"))
    return launch


lora = TrainKind("lora", "lora")
qlora = TrainKind("qlora", "qlora")
prefix = TrainKind("prefix", "prefix")
prompt_tuning = TrainKind("prompt_tuning", "prompt")
full = TrainKind("full", "full")
