"""Plans and executes a run: data → candidates → predictions → scores → verdicts.

This is where the pure core meets the backends and the store. Everything expensive is
keyed by content and looked up before it is done: predictions by (model+adapter hash,
prompt, decoding), adapters by (base model, method, hyperparameters, training data),
judgments by (judge, rubric hash, criterion, input, output, order). Results are written
as they arrive, in short transactions, so a killed run loses at most one batch and a rerun
redoes nothing already stored.

A run is a sequence of named steps, each a function of the :class:`Run` context:
``prepare_run`` → ``book`` → ``produce`` (per candidate, through its kind) → ``score`` →
``judge`` → ``add_human`` → ``aggregate`` → ``decide`` → ``finish``. The package:
``context`` (plan types, ``Run``), ``validate`` (goal checks against the registries),
``generation`` (cached generation the kinds share), ``scoring`` (metrics, judge, human
ratings, verdicts). Candidate kinds live in :mod:`harness.kinds`.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from harness.backends.device import PeakMemory
from harness.cache import content_key
from harness.errors import HarnessError, InputError, Problem
from harness.goals import Candidate, Goal
from harness.kinds import kind_of
from harness.provenance import run_provenance
from harness.runner.context import Outputs, Run, RunResult, Step, metric_names
from harness.runner.executor import produce_all
from harness.runner.scoring import (JudgePlan, decide_verdicts, human_results, judge_candidates, judge_labels,
                                    score_candidate)
from harness.runner.validate import preflight, validate_goal

if TYPE_CHECKING:
    from harness.data.split import Prepared
    from harness.store import Store


# --------------------------------------------------------------------------- the plan


def plan(goal: Goal, store: "Store", prepared: "Prepared", *, work_dir: str | Path | None = None,
         rubrics_dir: str | Path = "rubrics", only: Sequence[str] | None = None) -> list[Step]:
    """What a run would do, and what is already stored: each kind looks its work up by the
    same content keys the run uses (file hashes and stored rows only; no model is loaded,
    nothing is written). ``work_dir``: where adapters and indexes live (default: the store's
    folder, :attr:`Run.work_dir`)."""
    run = Run(goal, store, prepared=prepared, progress=False, work_dir=work_dir, rubrics_dir=rubrics_dir,
              candidates=select_candidates(goal, only))
    preflight(run)
    judged = JudgePlan(run)
    steps: list[Step] = []
    n = len(prepared.test)
    for cand in run.candidates:
        part = kind_of(cand).plan(run, cand)
        steps += part.steps
        steps.append(Step(cand.name, cand.kind, "score", n, 0))
        if goal.judge:
            steps.append(judged.step(cand, part))
    return steps


def select_candidates(goal: Goal, only: Sequence[str] | None) -> list[Candidate]:
    """The goal's candidates, or those named by ``--only`` plus the baselines their criteria need."""
    cands = list(goal.candidates)
    if only:
        names = [c.name for c in cands]
        unknown = [o for o in only if o not in names]
        if unknown:
            from harness.registry import did_you_mean

            raise HarnessError("--only: " + "; ".join(f"unknown candidate {u!r}{did_you_mean(u, names)}" for u in unknown)
                               + f"; the goal's candidates: {', '.join(names)}")
        need = set(only) | {c.baseline for c in goal.success if c.baseline}
        if goal.judge is not None and goal.judge.mode == "pairwise":
            need.add((goal.judge.model_extra or {}).get("baseline"))
        cands = [c for c in cands if c.name in need]
    if not cands:
        raise InputError(Problem(goal.source, None, "candidates", "the goal names no candidates"))
    return cands


# --------------------------------------------------------------------------- the run


@dataclass
class Decision:
    verdicts: dict[str, list[Any]]
    meets: dict[str, bool]
    best: str | None


def run_goal(goal: Goal, store: "Store", *, only: Sequence[str] | None = None, reseal: bool = False,
             progress: bool = True, console: Any = None, work_dir: str | Path | None = None,
             rubrics_dir: str | Path = "rubrics", executor: str = "local", address: str | None = None) -> RunResult:
    """Run every step of the goal; the stored run is ``finished`` or, on any error, ``failed``.
    ``executor``: where candidates are produced (:mod:`harness.runner.executor`: ``local`` or
    ``ray``, at ``address`` or a local Ray instance)."""
    t0 = time.perf_counter()
    run = prepare_run(goal, store, only=only, reseal=reseal, progress=progress, console=console,
                      work_dir=work_dir, rubrics_dir=rubrics_dir)
    book(run)
    try:
        outputs = produce_all(run, produce, executor=executor, address=address)
        results = score(run, outputs)
        judge(run, outputs, results)
        missing = add_human(run, results, outputs)
        aggregates = aggregate(run, results)
        decision = decide(run, results, missing, outputs)
        finish(run, decision)
    except BaseException:
        store.finish_run(run.run_id, "failed")
        raise
    finally:
        run.close()
    return RunResult(run.run_id, goal.goal, decision.verdicts, decision.meets, decision.best, aggregates,
                     dict(run.counts), time.perf_counter() - t0)


def prepare_run(goal: Goal, store: "Store", *, only: Sequence[str] | None = None, reseal: bool = False,
                progress: bool = True, console: Any = None, work_dir: str | Path | None = None,
                rubrics_dir: str | Path = "rubrics") -> Run:
    """Validate the goal, split the data against its seal, choose the candidates: no work yet."""
    from harness.data.split import prepare

    validate_goal(goal, rubrics_dir)
    candidates = select_candidates(goal, only)
    prepared = prepare(goal, store, reseal=reseal)  # refuses an empty test split
    run = Run(goal, store, prepared=prepared, progress=progress, console=console, work_dir=work_dir,
              rubrics_dir=rubrics_dir, candidates=candidates)
    preflight(run)
    from harness.metrics import semantic

    semantic.use_device(run.placement().device)  # embeddings (metrics, dense retrieval) on the goal's device
    if prepared.inherited:
        others = ", ".join(sorted(set(prepared.inherited.values())))
        run.say(f"{len(prepared.inherited)} example(s) stay in the test set because goal(s) {others} sealed them "
                f"there; they are never trained on")
    _find_leakage(run)
    return run


def _find_leakage(run: Run) -> None:
    """Say what leaks the test set: train/validation duplicates (found by the split) and test
    examples inside a candidate's documents (kept on the run for :func:`book`)."""
    from harness.data.split import document_leakage_words

    prepared = run.prepared
    if prepared.leakage:
        n = len({p["train_id"] for p in prepared.leakage})
        what = ("dropped from training" if prepared.dropped else
                "KEPT in training (data.leakage: flag); scores may be inflated")
        run.say(f"[yellow]leakage[/]: {n} train/validation example(s) duplicate test examples (same user turns "
                f"and answer, or nearly), {what}")
    for cand in run.candidates:
        found = kind_of(cand).document_leakage(run, cand)
        if found:
            run.document_leakage[cand.name] = found
            run.say(f"[yellow]leakage[/]: {document_leakage_words(cand.name, found)}")


def book(run: Run) -> None:
    """Record the run as started (and earlier runs of the goal still 'running' as interrupted)."""
    from harness.results import RUBRIC_HASHES, judge_rubric_hashes

    goal = run.goal
    run.store.mark_interrupted(goal.goal)
    config = goal.model_dump(mode="json")
    # The judge's rubrics as they were: an edited rubric shows this run's verdicts as not current.
    stored = {**config, RUBRIC_HASHES: judge_rubric_hashes(goal, run.rubrics_dir)} if goal.judge else config
    run.store.start_run({"run_id": run.run_id, "goal": goal.goal, "goal_path": goal.source,
                         "config_hash": content_key(config), "data_hash": run.prepared.data_hash,
                         "test_hash": run.prepared.test_hash, "config": stored,
                         "leakage": run.prepared.leakage_summary(goal.data.leakage, run.document_leakage),
                         **run_provenance()})


def produce(run: Run, cand: Candidate) -> Outputs:
    """One candidate's outputs through its kind, with its row in the store kept up to date."""
    kind = kind_of(cand)
    run.say(f"[bold]{cand.name}[/] ({cand.kind})")
    run.store.put_candidate(run.run_id, {"name": cand.name, "kind": cand.kind, "config": cand.model_dump(),
                                         "model": kind.model_of(run.goal, cand), "status": "running"})
    peak = PeakMemory()
    out = kind.produce(run, cand)
    runtime = dict(out.runtime, **peak.read(out.runtime["device"])) if out.runtime else {}
    run.store.update_candidate(run.run_id, cand.name, cost_usd=out.cost_usd, gen_seconds=out.gen_seconds,
                               status="generated", **out.train, **runtime)
    return out


def score(run: Run, outputs: dict[str, Outputs]) -> dict[str, dict[str, Any]]:
    """Every computed metric of every candidate (judge and human metrics come after)."""
    names = metric_names(run.goal, run.classification)
    return {name: score_candidate(run, out, names) for name, out in outputs.items()}


def judge(run: Run, outputs: dict[str, Outputs], results: dict[str, dict[str, Any]]) -> None:
    """The judge's metrics, added to ``results`` (judgments are cached by content)."""
    for cname, judged in judge_candidates(run, outputs).items():
        results[cname].update(judged)


def add_human(run: Run, results: dict[str, dict[str, Any]], outputs: dict[str, Outputs]) -> dict[str, str]:
    """Human-panel metrics added to ``results``; returns why each missing one is missing."""
    names = metric_names(run.goal, run.classification)
    human, missing = human_results(run, names, list(outputs), outputs)
    for cname, hres in human.items():
        results[cname].update(hres)
    return missing


def aggregate(run: Run, results: dict[str, dict[str, Any]]) -> dict[str, dict[str, dict[str, Any]]]:
    """Store per-example scores and each metric's aggregate with its interval."""
    from harness import intervals

    aggregates: dict[str, dict[str, dict[str, Any]]] = {}
    rows, scores = [], []
    for cname, mres in results.items():
        for metric, res in mres.items():
            ids = res.extra.get("ids") or [ex.id for ex in run.prepared.test]
            scores.append((cname, metric, list(zip(ids, res.per_example))))
            # The interval a verdict on this metric rests on (at the goal's confidence, before any
            # multiplicity adjustment), so the metric table and the verdicts agree on method.
            lo, hi = intervals.interval(res, run.goal.confidence).ci if res.n else (float("nan"),) * 2
            extra = {k: v for k, v in (res.extra or {}).items() if k not in ("reasons", "ids", "predictions")}
            n = intervals.n_used(res)  # the examples the value rests on: failed judgments are not among them
            rows.append({"candidate": cname, "metric": metric, "value": res.value, "ci_low": lo, "ci_high": hi,
                         "n": n, "extra": _jsonable(extra)})
            aggregates.setdefault(cname, {})[metric] = {"value": res.value, "ci": [lo, hi], "n": n}
    run.store.put_run_scores(run.run_id, scores)
    run.store.put_aggregates(run.run_id, rows)
    return aggregates


def decide(run: Run, results: dict[str, dict[str, Any]], missing: dict[str, str],
           outputs: dict[str, Outputs]) -> Decision:
    for name, out in outputs.items():
        if out.texts and len(out.failed) == len(out.texts):  # nothing to score: every criterion says why
            for c in run.goal.success:
                missing.setdefault(f"{name}/{c.metric}", f"all {len(out.texts)} generations failed "
                                                         f"(first: {out.failed[0]}); rerun to retry them")
    verdicts, meets, best = decide_verdicts(run, results, missing, {n: o.cost_usd for n, o in outputs.items()},
                                            judge_labels(run, outputs))
    return Decision(verdicts, meets, best)


def finish(run: Run, decision: Decision) -> None:
    """Store the verdicts and who meets the goal; mark the run finished."""
    run.store.put_verdicts(run.run_id, decision.verdicts)
    for cname, ok in decision.meets.items():
        run.store.update_candidate(run.run_id, cname, meets_goal=ok, status="done")
    run.store.finish_run(run.run_id, "finished", any(decision.meets.values()), decision.best)


def _jsonable(obj: Any) -> Any:
    try:
        json.dumps(obj)
        return obj
    except TypeError:
        return json.loads(json.dumps(obj, default=lambda o: o.tolist() if hasattr(o, "tolist") else str(o)))


__all__ = ["Outputs", "Run", "RunResult", "Step", "plan", "run_goal", "validate_goal"]
