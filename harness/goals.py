"""Goal files: what success means, declared before anything is trained.

A goal file is YAML validated by the pydantic models below (``extra="forbid"``: an unknown
key is an error with a did-you-mean). ``load_goal`` checks everything that can be checked
without doing work — data file present, split ratios summing to 1, every relative criterion
naming a candidate that exists — and reports every problem with file:line:field.
"""
from __future__ import annotations

import itertools
import math
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator, model_validator

from harness.backends.device import check_device, check_dtype
from harness.errors import InputError, Problem
from harness.yamlfile import line_for, load_yaml, parse_model

GOAL_VERSION = 1
# Most candidates one sweep may expand to, and a goal may have once every sweep is expanded.
MAX_SWEEP = 256
MAX_CANDIDATES = 1024
# Hyperparameters whose list values expand into one candidate per combination.
SWEEPABLE = ("r", "alpha", "dropout", "learning_rate", "epochs", "batch_size", "grad_accum",
             "max_length", "num_virtual_tokens", "seed", "shots", "train_fraction")


def _check_name(what: str, v: str) -> str:
    """Goal and candidate names go into folder names, store keys and metric tables."""
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.\-]*", v):
        raise ValueError(f"{what} name {v!r}: use letters, digits, '.', '_' or '-'")
    return v

class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SplitSpec(Strict):
    train: float = Field(0.8, ge=0, le=1, description="Share of examples for training.")
    validation: float = Field(0.1, ge=0, le=1, description="Share for validation loss / early stopping.")
    test: float = Field(0.1, gt=0, le=1, description="Share for the sealed test set.")
    seed: int = Field(13, description="Seed mixed into each example's hash; changing it reshuffles.")

    @model_validator(mode="after")
    def _sums_to_one(self) -> "SplitSpec":
        total = self.train + self.validation + self.test
        if abs(total - 1.0) > 1e-6:
            raise ValueError(f"split ratios must sum to 1, got {self.train} + {self.validation} + "
                             f"{self.test} = {total:g}")
        return self


class DataSpec(Strict):
    path: str = Field(description="JSONL file (chat messages, prompt/completion or text/label).")
    format: Literal["auto", "chat", "completion", "label"] = Field("auto", description="Record shape; auto-detected.")
    split: SplitSpec = Field(default_factory=SplitSpec)
    scrub_pii: bool = Field(False, description="Scrub PII before splitting and before any text leaves the machine.")
    leakage: Literal["flag", "drop"] = Field(
        "drop", description="Train examples duplicating test ones (same user turns and answer, or nearly): "
                            "drop them from training (default) or flag them and train on them anyway.")
    near_duplicate_threshold: float = Field(
        0.8, gt=0, le=1, description="Jaccard threshold for near-duplicates; the share of a test example's "
                                     "shingles a RAG passage must hold to hold the example.")
    blocking: list[str] = Field(
        default_factory=lambda: ["error"],
        description="What makes `harness check` exit 1: severities (error, warning), finding codes (pii-email) or code prefixes (pii).")


class Criterion(Strict):
    """One success criterion: a metric and exactly one threshold."""

    metric: str = Field(description="Metric name as reported: accuracy, rougeL, judge.tone, human.tone, or a named metric.")
    at_least: float | None = None
    at_most: float | None = None
    reduce_by: str | float | None = Field(None, description="'80%' (relative) or 0.1 (absolute), against `baseline`.")
    improve_by: str | float | None = Field(None, description="'10%' (relative) or 0.05 (absolute), against `baseline`.")
    baseline: str | None = Field(None, description="Candidate the relative criterion compares to.")
    args: dict[str, Any] = Field(default_factory=dict, description="Arguments for the metric.")

    @field_validator("at_least", "at_most", mode="before")
    @classmethod
    def _absolute(cls, v: Any, info: Any) -> Any:
        """A finite, non-negative number: not a yes/no, a percentage, NaN or infinity."""
        if v is None:
            return v
        if isinstance(v, bool) or not isinstance(v, (int, float, str)):
            raise ValueError(f"{info.field_name} takes a number, got {v!r}")
        if isinstance(v, str):
            if v.strip().endswith("%"):
                raise ValueError(f"{info.field_name} takes a number on the metric's own scale (0.8), not a "
                                 f"percentage ({v!r})")
            try:
                v = float(v)
            except ValueError:
                raise ValueError(f"{info.field_name} takes a number, got {v!r}") from None
        if not math.isfinite(v):
            raise ValueError(f"{info.field_name}: {v!r} is not a finite number")
        if v < 0:
            raise ValueError(f"{info.field_name}: {v!r} is negative; metrics here are rates, scores and "
                             f"counts, so a negative threshold is always met")
        return v

    @field_validator("reduce_by", "improve_by", mode="before")
    @classmethod
    def _amount(cls, v: Any, info: Any) -> Any:
        if v is None:
            return v
        if isinstance(v, bool) or not isinstance(v, (int, float, str)):
            raise ValueError(f"{info.field_name} takes a number or a percentage like '20%', got {v!r}")
        value, _relative = parse_amount(v)
        if value < 0:
            raise ValueError(f"{info.field_name}: {v!r} is negative; write the change the candidate must at "
                             f"least make (a non-negative amount)")
        return v

    @model_validator(mode="after")
    def _one_threshold(self) -> "Criterion":
        given = [k for k in ("at_least", "at_most", "reduce_by", "improve_by") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of at_least, at_most, reduce_by, improve_by"
                             + (f" (got {', '.join(given)})" if given else ""))
        if given[0] in ("reduce_by", "improve_by"):
            if not self.baseline:
                raise ValueError(f"{given[0]} needs a `baseline` candidate to compare against")
            parse_amount(getattr(self, given[0]))
        return self

    @property
    def op(self) -> str:
        for k in ("at_least", "at_most", "reduce_by", "improve_by"):
            if getattr(self, k) is not None:
                return k
        raise AssertionError

    @property
    def threshold(self) -> float:
        value = getattr(self, self.op)
        return parse_amount(value)[0] if self.relative_op else float(value)

    @property
    def relative_op(self) -> bool:
        return self.op in ("reduce_by", "improve_by")

    @property
    def percent(self) -> bool:
        return self.relative_op and parse_amount(getattr(self, self.op))[1]


def parse_amount(value: str | float) -> tuple[float, bool]:
    """``"80%"`` → (0.8, True); ``0.1`` → (0.1, False). Raises ValueError for pydantic."""
    from harness.errors import InputError
    from harness.verdict import parse_amount as parse

    try:
        return parse(value)
    except InputError as exc:
        raise ValueError(exc.problems[0].message) from None


class MetricSpec(Strict):
    """A named metric with arguments, usable in criteria by its name."""

    name: str
    metric: str = Field(description="Registered metric (regex, contains, off_topic_rate, ...) or 'module:callable'.")
    args: dict[str, Any] = Field(default_factory=dict)


class Decoding(Strict):
    max_new_tokens: int = Field(128, ge=1, le=2048)
    temperature: float = Field(0.0, ge=0)
    top_p: float = Field(1.0, gt=0, le=1)
    repetition_penalty: float = Field(1.0, gt=0)
    seed: int = 0


class _Placed(BaseModel):
    """Where a part's local model runs (:mod:`harness.backends.device`); None: the goal's."""

    device: str | None = Field(None, description="Where this part's local model runs and trains "
                                                 "(auto, cpu, cuda, cuda:N, mps); default: the goal's device.")
    dtype: str | None = Field(None, description="Precision of this part's local model (auto, bfloat16, "
                                                "float16, float32); default: the goal's dtype.")

    @field_validator("device")
    @classmethod
    def _device_ok(cls, v: Any) -> Any:
        return v if v is None else check_device(v)

    @field_validator("dtype")
    @classmethod
    def _dtype_ok(cls, v: Any) -> Any:
        return v if v is None else check_dtype(v)


class Candidate(_Placed):
    """A candidate. ``kind`` names a module of :mod:`harness.kinds`, which validates the rest of
    the keys as its options (``harness.runner.validate``)."""

    model_config = ConfigDict(extra="allow")

    name: str
    kind: str = Field(description="prompt, lora, qlora, prefix, prompt_tuning, full, api, file, rag, or a registered kind.")
    model: str | None = Field(None, description="Base model (local kinds) or API model id; default: the goal's model.")
    sweep_of: str | None = Field(None, description="Set by a sweep: the name of the entry it expanded from.")
    generation_batch_size: int | None = Field(
        None, ge=1, description="Prompts per generation batch of this candidate's local model; default: the goal's.")
    engine: Literal["transformers", "vllm"] | None = Field(
        None, description="What generates this local candidate's outputs: transformers (in this process) or vllm "
                          "(one vllm serve process for the base model and its LoRA adapters); default: the goal's.")

    @field_validator("name")
    @classmethod
    def _name_ok(cls, v: str) -> str:
        return _check_name("candidate", v)

    @property
    def options(self) -> dict[str, Any]:
        """The kind's options: every key besides name, kind, model, sweep_of and the runtime keys
        (device, dtype, generation_batch_size, engine)."""
        return dict(self.model_extra or {})


class JudgeSpec(_Placed):
    model_config = ConfigDict(extra="allow")
    model: str = Field("local:default", description="openai:MODEL, anthropic:MODEL, openai-compatible:MODEL@URL, local:default|PATH")
    rubrics: list[str] = Field(default_factory=list)
    mode: Literal["pointwise", "pairwise"] = "pointwise"


class HumanSpec(BaseModel):
    model_config = ConfigDict(extra="allow")
    rubrics: list[str] = Field(default_factory=list)
    items: int = Field(60, ge=1)
    raters_per_item: int = Field(3, ge=1)
    mode: Literal["pointwise", "pairwise"] = "pointwise"
    tokens: list[str] = Field(default_factory=list, description="Removed (a shared plaintext token let its holder "
                              "rate under any name): invite each rater with `harness panel invite GOAL NAME`.")
    show_reference: bool = Field(False, description="Show raters the reference answer (hidden by default).")
    min_ratings: int = Field(10, ge=1, description="Ratings needed before a human criterion gets a verdict.")
    agreement_threshold: float = Field(0.4, description="Judge-vs-human agreement below this flags the judge.")

    @field_validator("tokens", mode="before")
    @classmethod
    def _no_tokens(cls, v: Any) -> Any:
        if v in (None, []):  # what a stored run's config holds (model_dump writes the default)
            return []
        raise ValueError("human.tokens is no longer read: a shared token let whoever held it rate under any name. "
                         "Delete the key and invite each rater with `harness panel invite GOAL NAME` (a link bound "
                         "to that rater's name)")


class CostSpec(Strict):
    """How `harness estimate` prices training (see harness/cost.py)."""

    device: str = Field("a100", description="Device to project training onto: a100, h100, h200, l40s, a10g, l4, t4, rtx4090.")
    gpus: int = Field(1, ge=1, description="GPUs training runs on (data parallel).")
    gpu_hour_usd: float | None = Field(None, gt=0, description="Price per GPU-hour; default: the device's list price.")
    utilisation: float | None = Field(None, gt=0, le=1, description="Model FLOPs utilisation; default 0.35.")


class Goal(Strict):
    version: int = Field(GOAL_VERSION, description="Goal file format version.")
    goal: str = Field(description="Short name; results are stored under it.")
    description: str = ""
    model: str = Field("default", description="Base model for local candidates: default (SmolLM2-135M-Instruct), a folder or a cached hub id.")
    device: str = Field("auto", description="Where local models run and train (generation, the local judge, "
                                            "embeddings, training): auto (cuda, else mps, else cpu), cpu, cuda, "
                                            "cuda:N or mps. A candidate may set its own.")
    dtype: Literal["auto", "bfloat16", "float16", "float32"] = Field(
        "auto", description="Precision of local models: auto (bfloat16 on a CUDA GPU that has it, else float32), "
                            "bfloat16, float16 (GPU only) or float32. A candidate may set its own.")
    generation_batch_size: int | None = Field(
        None, ge=1, description="Prompts per generation batch of local models; default 16 on CPU and mps, "
                                "chosen from free memory on a GPU.")
    engine: Literal["transformers", "vllm"] = Field(
        "transformers", description="What generates local candidates' outputs: transformers (in this process) or "
                                    "vllm (the harness starts one vllm serve process for the base model and every "
                                    "LoRA adapter candidate; same prompts, decoding and cache keys). A candidate "
                                    "may set its own.")
    engine_url: str | None = Field(
        None, description="With engine: vllm, a running vLLM server to use instead of starting one "
                          "(e.g. http://127.0.0.1:8000/v1); it must serve the goal's model.")
    engine_args: list[str] = Field(
        default_factory=list, description="Extra arguments for the vllm serve the harness starts "
                                          "(e.g. [--gpu-memory-utilization, '0.8', --max-model-len, '4096']).")
    data: DataSpec
    system_prompt: str | None = Field(None, description="System instruction used by the `system` baseline.")
    task: Literal["generation", "classification", "auto"] = "auto"
    success: list[Criterion] = Field(min_length=1, description="Success criteria, declared before training.")
    confidence: float = Field(0.95, gt=0.5, lt=1)
    multiplicity: Literal["holm", "bonferroni", "none"] = Field(
        "holm", description="How the error of 'some candidate meets the goal' is kept at 1 - confidence "
                            "across candidates: holm (default), bonferroni or none.")
    metrics: list[MetricSpec] = Field(default_factory=list, description="Named metrics with arguments, and extra metrics to report.")
    decoding: Decoding = Field(default_factory=Decoding)
    candidates: list[Candidate] = Field(default_factory=list)
    judge: JudgeSpec | None = None
    human: HumanSpec | None = None
    prices: dict[str, dict[str, float]] = Field(default_factory=dict, description="Per-model price overrides (USD per 1M tokens).")
    cost: CostSpec = Field(default_factory=CostSpec, description="How training is priced and projected (harness estimate).")

    # Filled by load_goal, not from YAML.
    source: str = Field("", exclude=True)
    root: str = Field("", exclude=True)
    _lines: dict = PrivateAttr(default_factory=dict)
    _entries: list[int] = PrivateAttr(default_factory=list)  # candidate -> its entry as written

    def line_of(self, *loc: Any) -> int | None:
        """The goal file's line for a key path, for errors found after loading."""
        return line_for(loc, self._lines)

    def entry_of(self, i: int) -> int:
        """The ``candidates:`` entry, as written, candidate ``i`` comes from (a sweep expands one
        entry into several candidates)."""
        return self._entries[i] if len(self._entries) == len(self.candidates) else i

    @model_validator(mode="wrap")
    @classmethod
    def _remember_entries(cls, data: Any, handler: Any) -> "Goal":
        goal = handler(data)
        raw = data.get("candidates") if isinstance(data, dict) else None
        if isinstance(raw, list):
            goal._entries = [j for j, c in enumerate(raw) for _ in range(_sweep_size(c))]
        return goal

    @field_validator("goal")
    @classmethod
    def _goal_name(cls, v: str) -> str:
        return _check_name("goal", v)

    @field_validator("device")
    @classmethod
    def _device_ok(cls, v: Any) -> Any:
        return check_device(v)

    @field_validator("version", mode="before")
    @classmethod
    def _version(cls, v: Any) -> Any:
        if isinstance(v, bool) or v != GOAL_VERSION:
            raise ValueError(f"goal file version {v!r} is not supported; this harness reads version {GOAL_VERSION}")
        return v

    @field_validator("candidates", mode="before")
    @classmethod
    def _expand(cls, v: Any) -> Any:
        return expand_sweeps(v) if isinstance(v, list) else v

    def data_path(self) -> Path:
        return resolve_data_path(self.data.path, self.root)

    def candidate(self, name: str) -> Candidate:
        for c in self.candidates:
            if c.name == name:
                return c
        raise KeyError(name)

    def absolute_criterion(self, metric: str) -> Criterion | None:
        """The metric's first absolute criterion (``at_least``/``at_most``): the threshold its
        charts draw. Relative criteria (against a baseline) have no line on a metric's axis."""
        return next((c for c in self.success if c.metric == metric and not c.relative_op), None)

    def thresholds(self) -> dict[str, float]:
        """Each metric with an absolute criterion → that criterion's threshold (the first's)."""
        out: dict[str, float] = {}
        for c in self.success:
            if not c.relative_op:
                out.setdefault(c.metric, c.threshold)
        return out

    def metric_spec(self, name: str) -> MetricSpec | None:
        for m in self.metrics:
            if m.name == name:
                return m
        return None


def expand_sweeps(cands: list[Any]) -> list[Any]:
    """A list value on a sweepable hyperparameter expands into one candidate per combination.

    ``{name: lora, kind: lora, r: [8, 16]}`` → ``lora-r8`` and ``lora-r16``. Each entry's
    expansion is counted before any is built: one above ``MAX_SWEEP``, or all together above
    ``MAX_CANDIDATES``, is refused (1,500 entries of 256 would be 384,000 candidates).
    """
    sizes = [_sweep_size(cand) for cand in cands]
    for i, (cand, total) in enumerate(zip(cands, sizes)):
        if total > MAX_SWEEP:
            raise ValueError(f"candidates[{i}] {cand.get('name', '?')!r}: the sweep expands to {total:,} candidates; "
                             f"at most {MAX_SWEEP} (each is trained and scored)")
    if sum(sizes) > MAX_CANDIDATES:
        raise ValueError(f"the {len(cands):,} candidate entries expand to {sum(sizes):,} candidates in all; at most "
                         f"{MAX_CANDIDATES:,} (each is trained and scored)")
    out: list[Any] = []
    for cand in cands:
        axes = [(k, v) for k, v in cand.items() if k in SWEEPABLE and isinstance(v, list)] \
            if isinstance(cand, dict) else []
        if not axes:
            out.append(cand)
            continue
        for combo in itertools.product(*[v for _, v in axes]):
            c = dict(cand)
            suffix = []
            for (k, _), val in zip(axes, combo):
                c[k] = val
                suffix.append(f"{_short(k)}{val}")
            c["name"] = f"{cand.get('name', 'candidate')}-{'-'.join(suffix)}"
            c["sweep_of"] = cand.get("name")
            out.append(c)
    return out


def _sweep_size(cand: Any) -> int:
    """How many candidates one entry of ``candidates:`` expands to."""
    if not isinstance(cand, dict):
        return 1
    return math.prod(len(v) for k, v in cand.items() if k in SWEEPABLE and isinstance(v, list))


def _short(key: str) -> str:
    return {"learning_rate": "lr", "epochs": "ep", "batch_size": "bs", "grad_accum": "ga",
            "max_length": "len", "num_virtual_tokens": "vt", "dropout": "do",
            "train_fraction": "frac"}.get(key, key)


def resolve_data_path(path: str, root: str | Path) -> Path:
    """Relative data paths are tried against the current folder, then the goal file's folder
    and its parent (goals usually live in ``goals/`` beside ``data/``)."""
    p = Path(path)
    if p.is_absolute():
        return p
    root = Path(root) if root else Path.cwd()
    for base in (Path.cwd(), root, root.parent):
        if (base / p).exists():
            return base / p
    return Path.cwd() / p


def load_goal(path: str | Path) -> Goal:
    """Load and validate a goal file; raise InputError listing every problem with file:line."""
    path = Path(path)
    file = str(path)
    data, lines = load_yaml(path)
    if not isinstance(data, dict):
        raise InputError(Problem(file, 1, None, "a goal file must be a YAML mapping"))
    goal: Goal = parse_model(Goal, data, file, lines)
    goal.source = file
    goal.root = str(path.parent)
    goal._lines = lines
    problems: list[Problem] = []

    def at(*loc: Any) -> int | None:
        return line_for(loc, lines)

    dp = goal.data_path()
    if not dp.exists():
        problems.append(Problem(file, at("data", "path"), "data.path", f"data file {goal.data.path!r} not found"))
    names = [c.name for c in goal.candidates]
    seen: set[str] = set()
    for i, n in enumerate(names):
        if n in seen:
            problems.append(Problem(file, at("candidates", i), f"candidates[{i}].name", f"duplicate candidate name {n!r}"))
        seen.add(n)
    from harness.registry import did_you_mean

    for i, crit in enumerate(goal.success):
        if crit.baseline is not None and crit.baseline not in seen:
            hint = did_you_mean(crit.baseline, seen) or (f"; candidates: {', '.join(names)}" if names else "; the goal has no candidates")
            problems.append(Problem(file, at("success", i, "baseline"), f"success[{i}].baseline",
                                    f"unknown baseline candidate {crit.baseline!r}{hint}"))
    if goal.judge and goal.judge.mode == "pairwise" and getattr(goal.judge, "baseline", None) not in (None, "reference", *seen):
        problems.append(Problem(file, at("judge", "baseline"), "judge.baseline",
                                f"unknown baseline candidate {goal.judge.baseline!r}"))  # type: ignore[attr-defined]
    if problems:
        raise InputError(problems)
    return goal
