"""Plans and executes a run: data → candidates → predictions → scores → verdicts.

This is where the pure core meets the backends and the store. Everything expensive is
keyed by content and looked up before it is done: predictions by (model+adapter hash,
prompt, decoding), adapters by (base model, method, hyperparameters, training data),
judgments by (judge, rubric hash, criterion, input, output, order). Results are written
as they arrive, in short transactions, so a killed run loses at most one batch and a rerun
redoes nothing already stored.

The package: ``context`` (plan types, goal checks, the per-run ``Run``), ``candidates``
(candidates to outputs), ``scoring`` (outputs to metric, judge and human results, and
verdicts); this module plans and runs the whole.
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Sequence

from harness.cache import content_key
from harness.errors import HarnessError, InputError, Problem
from harness.goals import Goal
from harness.provenance import run_provenance
from harness.runner.candidates import produce_outputs
from harness.runner.context import TRAIN_METHOD, Outputs, Run, RunResult, Step, metric_names, validate_goal
from harness.runner.scoring import decide, human_results, judge_candidates, score_candidate


# --------------------------------------------------------------------------- the run


def plan(goal: Goal, store: Any, prepared: Any, *, work_dir: str | Path = ".harness",
         rubrics_dir: str | Path = "rubrics") -> list[Step]:
    """What a run would do, and what is already stored: adapters, predictions and pointwise
    judgments are looked up by the same content keys the run uses (file hashes and stored
    rows only; no model is loaded, nothing is written)."""
    from harness.runner.candidates import api_requests, local_prediction_keys, planned_adapter

    run = Run(goal, store, prepared=prepared, progress=False, work_dir=work_dir, rubrics_dir=rubrics_dir)
    judged = _JudgePlan(run)
    steps: list[Step] = []
    n = len(prepared.test)
    for cand in goal.candidates:
        keys: list[str] | None = None
        cost, gen_note = 0.0, ""
        if cand.kind in TRAIN_METHOD:
            _, _, folder = planned_adapter(run, cand)
            trained = (folder / "harness_adapter.json").is_file()
            note = f"{len(prepared.train)} train examples" + (f"; stored as {folder.name}" if trained else "")
            steps.append(Step(cand.name, cand.kind, "train", 0 if trained else 1, int(trained), note=note))
            if trained:
                keys = local_prediction_keys(run, cand, run.prompts_for(cand), folder)[1]
            else:
                gen_note = "after training"
        elif cand.kind == "prompt":
            keys = local_prediction_keys(run, cand, run.prompts_for(cand))[1]
        elif cand.kind == "api":
            cfg, sent, _, keys = api_requests(run, cand, run.prompts_for(cand))
        stored = run.store.get_predictions(keys) if keys else {}
        todo = sum(k not in stored for k in keys) if keys is not None else n
        if cand.kind == "api" and todo:
            from harness.backends.api import estimate_cost

            new = [m for m, k in zip(sent, keys) if k not in stored]
            avg_words = sum(len(" ".join(x["content"] for x in m).split()) for m in new) / len(new)
            estimate = estimate_cost(cfg, todo, avg_words * 1.4, goal.decoding.max_new_tokens)
            cost = float(estimate)
            gen_note = estimate.note or "list price; ~1.4 tokens a word, max_new_tokens out"
        action = "read" if cand.kind == "file" else "generate"
        steps.append(Step(cand.name, cand.kind, action, todo, n - todo, est_cost_usd=cost, note=gen_note))
        steps.append(Step(cand.name, cand.kind, "score", n, 0))
        if goal.judge:
            steps.append(judged.step(cand, stored if keys and not todo else None, keys))
    return steps


class _JudgePlan:
    """Counts the judgments a candidate still needs. Exact for a pointwise judge once all the
    candidate's outputs are stored (they decide the keys); otherwise an upper bound. The judge
    and the stored judgment keys are looked up once per plan, not once per candidate."""

    def __init__(self, run: Run):
        from harness.judge.rubric import load_rubric

        self.run = run
        self.rubrics = [load_rubric(r, run.rubrics_dir) for r in run.goal.judge.rubrics] if run.goal.judge else []
        self._stored: tuple[str, dict[str, set[str]]] | None = None

    def _stored_keys(self) -> tuple[str, dict[str, set[str]]]:
        if self._stored is None:
            from harness.runner.scoring import make_run_judge

            judge, _ = make_run_judge(self.run)
            self._stored = (judge.spec, {r.hash: {row["cache_key"] for row in self.run.store.query(
                "SELECT cache_key FROM judgments WHERE judge = ? AND rubric_hash = ?", [judge.spec, r.hash])}
                for r in self.rubrics})
        return self._stored

    def step(self, cand: Any, stored: dict | None, keys: list[str] | None) -> Step:
        from harness.judge.judge import judgment_key

        spec, run, rubrics = self.run.goal.judge, self.run, self.rubrics
        per_example = sum(len(r.criterion_names) for r in rubrics) * (2 if spec.mode == "pairwise" else 1)
        total = len(run.prepared.test) * per_example
        if stored is None or keys is None or spec.mode == "pairwise":
            return Step(cand.name, cand.kind, "judge", total, 0, note=f"{spec.model}; up to")
        judge_spec, have = self._stored_keys()
        done = 0
        for rubric in rubrics:
            for ex, key in zip(run.prepared.test, keys):
                output = stored[key]["output"] or ""
                done += sum(judgment_key(judge_spec, rubric.hash, c, ex.input_text, output, None,
                                         reference=ex.reference) in have[rubric.hash]
                            for c in rubric.criterion_names)
        return Step(cand.name, cand.kind, "judge", total - done, done, note=spec.model)


def run_goal(goal: Goal, store: Any, *, only: Sequence[str] | None = None, reseal: bool = False,
             progress: bool = True, console: Any = None, work_dir: str | Path = ".harness",
             rubrics_dir: str | Path = "rubrics") -> RunResult:
    from harness import stats
    from harness.data.split import prepare

    t0 = time.perf_counter()
    validate_goal(goal, rubrics_dir)
    prepared = prepare(goal, store, reseal=reseal)
    if not prepared.test:
        raise InputError(Problem(goal.source, None, "data.split.test", "the test split is empty"))
    cands = list(goal.candidates)
    if only:
        unknown = [o for o in only if o not in {c.name for c in cands}]
        if unknown:
            from harness.registry import did_you_mean

            names = [c.name for c in cands]
            raise HarnessError("--only: " + "; ".join(f"unknown candidate {u!r}{did_you_mean(u, names)}" for u in unknown)
                               + f"; the goal's candidates: {', '.join(names)}")
        # Baselines of relative criteria are needed to decide them.
        need = set(only) | {c.baseline for c in goal.success if c.baseline}
        if goal.judge is not None and goal.judge.mode == "pairwise":
            need.add((goal.judge.model_extra or {}).get("baseline"))
        cands = [c for c in cands if c.name in need]
    if not cands:
        raise InputError(Problem(goal.source, None, "candidates", "the goal names no candidates"))
    run = Run(goal, store, prepared=prepared, progress=progress, console=console, work_dir=work_dir,
              rubrics_dir=rubrics_dir)
    prov = run_provenance()
    store.mark_interrupted(goal.goal)
    store.start_run({"run_id": run.run_id, "goal": goal.goal, "goal_path": goal.source,
                     "config_hash": content_key(goal.model_dump(mode="json")), "data_hash": prepared.data_hash,
                     "test_hash": prepared.test_hash, "config": goal.model_dump(mode="json"), **prov})
    try:
        outputs: dict[str, Outputs] = {}
        for cand in cands:
            run.say(f"[bold]{cand.name}[/] ({cand.kind})")
            store.put_candidate(run.run_id, {"name": cand.name, "kind": cand.kind, "config": cand.model_dump(),
                                             "model": cand.model or (goal.model if cand.kind != "api" else None),
                                             "status": "running"})
            out = produce_outputs(run, cand)
            outputs[cand.name] = out
            store.update_candidate(run.run_id, cand.name, cost_usd=out.cost_usd, gen_seconds=out.gen_seconds,
                                   status="generated", **out.train)
        names = metric_names(goal, run.classification)
        results = {name: score_candidate(run, out, names) for name, out in outputs.items()}
        for cname, judged in judge_candidates(run, outputs).items():
            results[cname].update(judged)
        human, missing = human_results(run, names, list(outputs))
        for cname, hres in human.items():
            results[cname].update(hres)

        # Store per-example scores and aggregates with CIs.
        aggregates: dict[str, dict[str, dict[str, Any]]] = {}
        agg_rows = []
        for cname, mres in results.items():
            for metric, res in mres.items():
                ids = res.extra.get("ids") or [ex.id for ex in prepared.test]
                store.put_scores(run.run_id, cname, metric, list(zip(ids, res.per_example)))
                lo, hi = stats.bootstrap_ci(res, goal.confidence, seed=0) if res.n else (float("nan"),) * 2
                extra = {k: v for k, v in (res.extra or {}).items() if k not in ("reasons", "ids", "predictions")}
                row = {"candidate": cname, "metric": metric, "value": res.value, "ci_low": lo, "ci_high": hi,
                       "n": res.n, "extra": _jsonable(extra)}
                agg_rows.append(row)
                aggregates.setdefault(cname, {})[metric] = {"value": res.value, "ci": [lo, hi], "n": res.n}
        store.put_aggregates(run.run_id, agg_rows)
        verdicts, meets, best = decide(run, results, missing, {n: o.cost_usd for n, o in outputs.items()})
        store.put_verdicts(run.run_id, [
            {"candidate": cname, "idx": idx, "metric": v.metric, "status": v.status, "value": v.value,
             "ci_low": v.ci[0], "ci_high": v.ci[1], "threshold": v.threshold, "op": v.criterion,
             "baseline": v.baseline, "needed_n": v.needed_n, "detail": v.detail}
            for cname, vs in verdicts.items() for idx, v in enumerate(vs)])
        for cname, ok in meets.items():
            store.update_candidate(run.run_id, cname, meets_goal=ok, status="done")
        store.finish_run(run.run_id, "finished", any(meets.values()), best)
    except BaseException:
        store.finish_run(run.run_id, "failed")
        raise
    return RunResult(run.run_id, goal.goal, verdicts, meets, best, aggregates, dict(run.counts),
                     time.perf_counter() - t0)


def _jsonable(obj: Any) -> Any:
    try:
        json.dumps(obj)
        return obj
    except TypeError:
        return json.loads(json.dumps(obj, default=lambda o: o.tolist() if hasattr(o, "tolist") else str(o)))


__all__ = ["Outputs", "Run", "RunResult", "Step", "plan", "run_goal", "validate_goal"]
