"""The run's plan types, goal checks that need the registries, and the per-run context."""
from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from harness.data.formats import Example
from harness.errors import HarnessError, InputError, Problem
from harness.goals import Candidate, Goal
from harness.prompts import build_prompt, choose_shots

TRAIN_METHOD = {"lora": "lora", "qlora": "qlora", "prefix": "prefix", "prompt_tuning": "prompt", "full": "full"}
CLASSIFICATION_METRICS = ("accuracy", "f1_macro")
GENERATION_METRICS = ("rougeL", "bleu", "chrf")
LABEL_METRICS = {"accuracy", "f1_macro", "f1_micro", "precision_macro", "recall_macro"}
FLUSH_EVERY = 8
_API_OPTIONS = {"provider", "base_url", "api_key_env", "concurrency", "timeout_s", "max_retries", "backoff_base_s",
                "backoff_max_s", "prices", "shots", "system", "style"}
# Options each candidate kind takes besides name/kind/model (training kinds: TrainParams checks them).
CANDIDATE_OPTIONS: dict[str, set[str]] = {"prompt": {"style", "shots", "system", "sweep_of"},
                                          "api": _API_OPTIONS | {"sweep_of"}, "file": {"path"}}


# --------------------------------------------------------------------------- plan


@dataclass
class Step:
    candidate: str
    kind: str
    action: str        # train | generate | score | judge
    todo: int          # units of work not yet stored
    cached: int        # units already stored
    est_cost_usd: float = 0.0
    note: str = ""


@dataclass
class Outputs:
    """One candidate's outputs on the test split, in test order."""

    candidate: str
    texts: list[str]
    generated: int = 0
    reused: int = 0
    cost_usd: float = 0.0
    gen_seconds: float = 0.0
    train: dict[str, Any] = field(default_factory=dict)


@dataclass
class RunResult:
    run_id: str
    goal: str
    verdicts: dict[str, list[Any]]
    meets: dict[str, bool]
    best: str | None
    aggregates: dict[str, dict[str, dict[str, Any]]]
    counts: dict[str, int]
    seconds: float

    @property
    def exit_code(self) -> int:
        return 0 if any(self.meets.values()) else 1


def is_classification(goal: Goal, examples: Sequence[Example]) -> bool:
    if goal.task != "auto":
        return goal.task == "classification"
    if any(e.format == "label" for e in examples):
        return True
    refs = {e.reference.strip() for e in examples}
    return 0 < len(refs) <= 20 and len(refs) < len(examples) / 4 and all(len(r.split()) <= 3 for r in refs)


def label_set(examples: Sequence[Example]) -> list[str]:
    return sorted({(e.label or e.reference).strip() for e in examples})


def metric_names(goal: Goal, classification: bool) -> list[str]:
    """Every metric the run reports: the criteria's, the goal's named metrics, task defaults."""
    names: list[str] = []
    for c in goal.success:
        names.append(c.metric)
    names.extend(m.name for m in goal.metrics)
    names.extend(CLASSIFICATION_METRICS if classification else GENERATION_METRICS)
    if goal.judge:
        names.extend(f"judge.{r}" for r in goal.judge.rubrics)
    return list(dict.fromkeys(names))


def validate_goal(goal: Goal, rubrics_dir: str | Path = "rubrics") -> None:
    """Checks that need the registries (metric names, rubrics, training methods): all at once."""
    from harness.judge.rubric import load_rubric
    from harness.metrics import METRICS, resolve_metric

    problems: list[Problem] = []
    file = goal.source or "<goal>"
    named = {m.name for m in goal.metrics}
    for i, m in enumerate(goal.metrics):
        try:
            resolve_metric(m.metric)
        except HarnessError as exc:
            problems.append(Problem(file, None, f"metrics[{i}].metric", str(exc)))
    for i, c in enumerate(goal.success):
        name = c.metric
        if name in named:
            continue
        if name.startswith(("judge.", "human.")):
            rubric = name.split(".")[1] if name.count(".") >= 1 else ""
            try:
                rb = load_rubric(rubric, _rubrics_dir(goal, rubrics_dir))
                if name.count(".") >= 2:
                    rb.criterion(name.split(".", 2)[2])
            except HarnessError as exc:
                problems.append(Problem(file, None, f"success[{i}].metric", str(exc)))
            if name.startswith("judge.") and not goal.judge:
                problems.append(Problem(file, None, f"success[{i}].metric",
                                        f"{name} needs a `judge:` section naming the judge model"))
            if name.startswith("human.") and not goal.human:
                problems.append(Problem(file, None, f"success[{i}].metric",
                                        f"{name} needs a `human:` section for the panel"))
            continue
        if name not in METRICS and ":" not in name:
            try:
                METRICS.get(name)
            except HarnessError as exc:
                problems.append(Problem(file, None, f"success[{i}].metric", str(exc)))
    from harness.registry import did_you_mean

    for i, cand in enumerate(goal.candidates):
        allowed = CANDIDATE_OPTIONS.get(cand.kind)
        for key in cand.options:
            if allowed is not None and key not in allowed:
                problems.append(Problem(file, goal.line_of("candidates", i, key), f"candidates[{i}].{key}",
                                        f"unknown option {key!r} for a {cand.kind} candidate"
                                        f"{did_you_mean(key, allowed)}; allowed: {', '.join(sorted(allowed - {'sweep_of'}))}"))
        if cand.kind in TRAIN_METHOD:
            from harness.runner.candidates import train_params

            try:
                train_params(cand)
            except InputError as exc:
                problems.extend(Problem(file, goal.line_of("candidates", i, *(p.field or "").split(".")[:1]),
                                        f"candidates[{i}].{p.field}", p.message) for p in exc.problems)
        if cand.kind == "api" and not cand.options.get("provider"):
            problems.append(Problem(file, None, f"candidates[{i}].provider",
                                    "api candidates need provider: openai | anthropic | openai-compatible"))
        if cand.kind == "file" and not cand.options.get("path"):
            problems.append(Problem(file, None, f"candidates[{i}].path", "file candidates need a path to outputs JSONL"))
    if problems:
        raise InputError(problems)


def _rubrics_dir(goal: Goal, default: str | Path) -> Path:
    d = Path(default)
    if d.exists() or not goal.root:
        return d
    alt = Path(goal.root).parent / "rubrics"
    return alt if alt.exists() else d


# --------------------------------------------------------------------------- context


class Run:
    """State of one ``harness run``: the goal, the store, the prepared data, loaded models."""

    def __init__(self, goal: Goal, store: Any, *, prepared: Any, run_id: str | None = None,
                 progress: bool = True, console: Any = None, work_dir: str | Path = ".harness",
                 rubrics_dir: str | Path = "rubrics"):
        self.goal = goal
        self.store = store
        self.prepared = prepared
        self.run_id = run_id or time.strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:6]
        self.progress = progress
        self.console = console
        self.work_dir = Path(work_dir)
        self.rubrics_dir = _rubrics_dir(goal, rubrics_dir)
        self._models: dict[tuple[str, str | None], Any] = {}
        self.counts = {"generated": 0, "reused": 0, "judged": 0, "judgments_reused": 0, "trained": 0,
                       "adapters_reused": 0}
        self.classification = is_classification(goal, prepared.examples)
        self.labels = label_set(prepared.train + prepared.test) if self.classification else []

    def say(self, msg: str) -> None:
        if self.console is not None:
            self.console.print(msg, highlight=False)

    # ------------------------------------------------------------------ models

    def local_model(self, spec: str | None, adapter: str | None = None):
        key = (spec or "default", adapter)
        if key not in self._models:
            from harness.backends.local import LocalModel

            # Keep at most the base and one adapter model in memory.
            if len(self._models) >= 2:
                for k in list(self._models):
                    if k[1] is not None:
                        del self._models[k]
            self._models[key] = LocalModel(spec, adapter=adapter)
        return self._models[key]

    def decoding(self):
        from harness.backends.local import DecodingParams

        d = self.goal.decoding
        return DecodingParams(max_new_tokens=d.max_new_tokens, temperature=d.temperature, top_p=d.top_p,
                              repetition_penalty=d.repetition_penalty, seed=d.seed)

    # ------------------------------------------------------------------ prompts

    def prompts_for(self, cand: Candidate) -> list[list[dict[str, str]]]:
        opts = cand.options
        style = cand.style if cand.kind == "prompt" else ("few-shot" if int(opts.get("shots", 0) or 0) else
                                                           ("system" if opts.get("system") else "zero-shot"))
        system = opts.get("system") if isinstance(opts.get("system"), str) else self.goal.system_prompt
        shots = choose_shots(self.prepared.train, int(opts.get("shots", 5 if style == "few-shot" else 0) or 0),
                             seed=self.goal.data.split.seed) if style == "few-shot" else []
        return [build_prompt(ex, style, system=system, shots=shots) for ex in self.prepared.test]
