"""The run's plain types (steps, outputs, the result) and the per-run context :class:`Run`."""
from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from harness.data.formats import Example
from harness.goals import Candidate, Goal
from harness.prompts import PromptOptions, prompts_for

if TYPE_CHECKING:
    from harness.backends.device import Placement
    from harness.data.split import Prepared
    from harness.store import Store

CLASSIFICATION_METRICS = ("accuracy", "f1_macro")
GENERATION_METRICS = ("rougeL", "bleu", "chrf")
LABEL_METRICS = {"accuracy", "f1_macro", "f1_micro", "precision_macro", "recall_macro"}
FLUSH_EVERY = 8


@dataclass
class Step:
    """One line of the plan: a unit of work of one candidate, how much is left and stored."""

    candidate: str
    kind: str
    action: str        # train | generate | read | score | judge
    todo: int          # units of work not yet stored
    cached: int        # units already stored
    est_cost_usd: float = 0.0
    note: str = ""


@dataclass
class Outputs:
    """One candidate's outputs on the test split, in test order. ``failed``: the test examples
    (by index) whose generation failed, with the reason; their text is empty and is never scored."""

    candidate: str
    texts: list[str]
    generated: int = 0
    reused: int = 0
    cost_usd: float = 0.0
    gen_seconds: float = 0.0
    train: dict[str, Any] = field(default_factory=dict)
    retrieved: list[list[str]] | None = None  # passage ids per test example, best first (kind: rag)
    runtime: dict[str, Any] = field(default_factory=dict)  # device, dtype, quantization of a local model
    failed: dict[int, str] = field(default_factory=dict)

    def succeeded(self) -> list[int]:
        """Indices of the test examples that have an output (every one but the failed)."""
        return [i for i in range(len(self.texts)) if i not in self.failed]


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


def rubrics_dir_for(goal: Goal, default: str | Path) -> Path:
    """``default`` when it exists; else the ``rubrics/`` beside the goal's folder."""
    d = Path(default)
    if d.exists() or not goal.root:
        return d
    alt = Path(goal.root).parent / "rubrics"
    return alt if alt.exists() else d


class Run:
    """State of one ``harness run``: the goal, the store, the prepared data, loaded models."""

    def __init__(self, goal: Goal, store: "Store", *, prepared: "Prepared", run_id: str | None = None,
                 progress: bool = True, console: Any = None, work_dir: str | Path | None = None,
                 rubrics_dir: str | Path = "rubrics", candidates: Sequence[Candidate] | None = None):
        self.goal = goal
        self.store = store
        self.prepared = prepared
        self.candidates = list(goal.candidates if candidates is None else candidates)
        self.run_id = run_id or time.strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:6]
        self.progress = progress
        self.console = console
        # Adapters, indexes and logs: beside the store by default, so a store copied with its
        # folder keeps its trained work (stored artifact paths are relative to that folder).
        self.work_dir = Path(work_dir) if work_dir is not None else store.folder
        self.rubrics_dir = rubrics_dir_for(goal, rubrics_dir)
        self._models: dict[tuple[str, str | None, Any], Any] = {}
        self._placements: dict[tuple[str, str], Placement] = {}
        self._vllm: Any = None  # harness.backends.vllm.VllmEngine, started on first use
        self.counts = {"generated": 0, "reused": 0, "generations_failed": 0, "judged": 0, "judgments_reused": 0,
                       "judgments_failed": 0, "trained": 0, "adapters_reused": 0, "indexes_built": 0,
                       "indexes_reused": 0}
        self.document_leakage: dict[str, dict[str, Any]] = {}  # candidate -> test examples in its documents
        self.memo: dict[tuple, Any] = {}  # what a kind finds once a run (keys start with what it is)
        self.classification = is_classification(goal, prepared.examples)
        self.labels = label_set(prepared.train + prepared.test) if self.classification else []

    def say(self, msg: str) -> None:
        if self.console is not None:
            self.console.print(msg, highlight=False)

    # ------------------------------------------------------------------ models

    def placement(self, device: str | None = None, dtype: str | None = None) -> "Placement":
        """The resolved (device, dtype) for an override (a candidate's, the judge's) or the goal's;
        ``validate_goal`` refused what this machine cannot run before the run began."""
        from harness.backends.device import resolve_placement

        key = (device or self.goal.device, dtype or self.goal.dtype)
        if key not in self._placements:
            self._placements[key] = resolve_placement(*key, where=self.goal.source or "<goal>")
        return self._placements[key]

    def placement_of(self, cand: Candidate) -> "Placement":
        return self.placement(cand.device, cand.dtype)

    def generation_batch_size(self, cand: Candidate) -> int | None:
        """The candidate's or the goal's batch size; None lets the model choose (see LocalModel.generate)."""
        return cand.generation_batch_size or self.goal.generation_batch_size

    def local_model(self, spec: str | None, adapter: str | None = None, placement: "Placement | None" = None):
        placement = placement or self.placement()
        key = (spec or "default", adapter, placement)
        if key not in self._models:
            from harness.backends.local import LocalModel

            # Keep at most the base and one adapter model in memory.
            if len(self._models) >= 2:
                for k in list(self._models):
                    if k[1] is not None:
                        del self._models[k]
                if placement.type == "cuda":
                    import torch

                    torch.cuda.empty_cache()  # hand the evicted model's memory back before loading
            self._models[key] = LocalModel(spec, adapter=adapter, placement=placement)
        return self._models[key]

    def vllm(self) -> Any:
        """The run's vLLM engine (:mod:`harness.runner.engine`); its server starts on first use."""
        if self._vllm is None:
            from harness.runner.engine import make_vllm_engine

            self._vllm = make_vllm_engine(self)
        return self._vllm

    def close(self) -> None:
        """Release what the run started: the vLLM server, if one was started."""
        if self._vllm is not None:
            self._vllm.close()
            self._vllm = None

    def decoding(self):
        from harness.backends.local import DecodingParams

        d = self.goal.decoding
        return DecodingParams(max_new_tokens=d.max_new_tokens, temperature=d.temperature, top_p=d.top_p,
                              repetition_penalty=d.repetition_penalty, seed=d.seed)

    # ------------------------------------------------------------------ prompts

    def prompts(self, options: PromptOptions, style: str) -> list[list[dict[str, str]]]:
        """The test prompts of a candidate prompting in ``style`` (shots from train only)."""
        return prompts_for(options, style, self.prepared.test, self.prepared.train,
                           goal_system=self.goal.system_prompt, seed=self.goal.data.split.seed)
