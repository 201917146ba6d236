"""The stable, documented JSON shape of a run's results (``harness results --json``).

```
{"schema_version": 2, "goal": str,
 "run": {"id", "status", "started_at", "finished_at", "test_hash", "git_commit", ...,
         "leakage": {"policy", "duplicates", "dropped", "kept", "documents"?} | null,
         "confidence", "decided_under"},
 "latest_run": {"id", "status"}, "unfinished": bool, "test_set_resealed": bool,
 "meets_goal": bool, "best_candidate": str | null,
 "left_out": [{"name", "run_id", "why"}],
 "candidates": [{"name", "kind", "run_id", "from_earlier_run", "meets_goal", "cost_usd",
                 "cost": {"training_usd", "generation_usd", "judging_usd", "total_usd",
                          "training_seconds", "tokens_trained"},
                 "train_seconds", "adapter_path", "overfitting", "generations_failed",
                 "runtime": {"device", "dtype", "quantization", "engine", "peak_memory_mb",
                             "peak_memory_source"},
                 "metrics": {METRIC: {"value", "ci": [low, high], "n",
                                      pairwise judge metrics also: "position_bias_rate", "win_rate",
                                      "baseline"}},
                 "criteria": [{"metric", "status", "op", "threshold", "baseline", "value",
                               "ci": [low, high], "needed_n", "detail",
                               "interval", "confidence", "multiplicity", "judge_validated",
                               "relative"}]}]}
```
``cost`` splits what a candidate cost: ``training_usd`` (its measured ``training_seconds`` at the
goal's ``cost.gpu_hour_usd`` × ``cost.gpus``; null when the goal sets no price, 0 for a candidate
that trains nothing), ``generation_usd`` and ``judging_usd`` (API spend), ``total_usd`` their sum.
Metric names are as the goal writes them (``accuracy``, ``rougeL``, ``judge.tone``,
``human.tone``...). NaN becomes null. ``interval`` names the method behind ``ci``
(``harness.intervals``), ``confidence`` its two-sided level after the multiplicity rule
``multiplicity`` (``harness.multiplicity``); all three are null for runs stored before they
were recorded. ``judge_validated`` is for judge criteria (``judge.*``): true when human ratings
of the judge's outputs agree with it (weighted kappa at or above the goal's
``human.agreement_threshold``), false when no human checked it or the panel disagrees (the
verdict's detail says which; a judge the panel disagrees with cannot pass), null for every
other criterion and for runs stored before it was recorded. ``relative`` says whether an
``improve_by``/``reduce_by`` criterion's threshold, value and ci are shares of the baseline's
value (true: 0.3 is 30%) or changes in the metric's own units (false); null for the other
criteria and for runs stored before it was recorded. ``runtime`` says where a local
candidate ran (``harness.backends.device``):
device (cpu, cuda:N, mps), dtype, the base's quantization (``nf4``; ``none`` for a qlora adapter
on a full-precision base), the engine that generated its outputs (transformers or
vllm), and peak memory in MiB with what measured it
(``cuda_max_memory_allocated`` over the candidate, or ``process_peak_rss``, the process's peak
so far); all null for API and file candidates and for runs stored before. ``leakage`` is what the
run found of train/validation examples duplicating a test example (same user turns and answer,
or nearly): ``policy`` is the goal's ``data.leakage`` (``drop`` or ``flag``), ``duplicates`` how
many such examples, ``dropped`` how many were left out of training and ``kept`` how many were
trained on anyway (``flag``: scores may be inflated); null for runs stored before it was recorded.
``documents`` (present when found) maps a RAG candidate to the test examples its documents contain
(turns and answer inside one passage, or two adjacent ones of a document): ``{"examples", "passages", "policy"}`` — with ``drop`` a
passage is not retrieved for the example it contains, with ``flag`` it is.
``run``'s ``confidence`` is the goal's level the run decided at, and ``decided_under`` a key of
what it decided under (``decided_under``: criteria, confidence, multiplicity rule, named
metrics' arguments, the judge and its rubrics' content hashes; null for runs stored without
their goal). ``generations_failed`` is how many of the candidate's test examples have no output because their
generation failed after its retries (an API request); they are left out of its metrics, judge
and verdicts (above 5% of the test examples a criterion is inconclusive) and generated again by
the next run; a failure a later run replaced with a success no longer counts.

Without a run id the results are each candidate's latest *finished* result on the current
sealed test set: a later ``run --only zero-shot`` does not hide the LoRA candidate's verdict
from the run before (``from_earlier_run`` says so, ``run_id`` names its run), and a killed or
failed latest run is reported as ``unfinished`` rather than becoming the answer. A candidate
whose latest result was decided under other success criteria, confidence or multiplicity rule
than the newest finished run's (the goal file changed between them) is not among the candidates
and counts toward nothing: ``left_out`` names it, that run and why; so does a pass from an
earlier run that Holm decided at a looser step than that run's first, since the step rested on
other candidates' passes in that run, which a later run decided again. ``run`` is the
newest finished run; ``latest_run`` the newest of any status. ``test_set_resealed`` is true
when the goal's test set was sealed again (``harness split --reseal``) after ``run``'s: its
verdicts were decided on the old test set, so ``meets_goal`` (the goal's and every
candidate's) is false and ``best_candidate`` null until a run on the current one.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from harness.store import Store


def _clean(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if hasattr(v, "isoformat"):
        return v.isoformat()
    return v


SCHEMA_VERSION = 2


def results_dict(store: "Store", goal: str, run_id: str | None = None) -> dict[str, Any] | None:
    """A run's results (``run_id``), or each candidate's latest finished result (no run id)."""
    runs = [store.run(run_id)] if run_id else store.runs(goal)
    runs = [r for r in runs if r is not None]
    if not runs:
        return None
    latest = runs[0]
    finished = [r for r in runs if r["status"] == "finished"]
    base = latest if run_id or not finished else finished[0]
    same_test = [base] if run_id or not finished else [r for r in finished if r["test_hash"] == base["test_hash"]]
    picked, left_out = _pick(store, base, same_test)
    cands = []
    by_run: dict[str, tuple[list, list, dict]] = {}
    for name, r in picked.items():
        rid = r["run_id"]
        if rid not in by_run:
            by_run[rid] = (store.aggregates(rid), store.verdicts(rid), {c["name"]: c for c in store.candidates(rid)},
                           store.failed_outputs(rid))
        aggs, verdicts, rows, failed = by_run[rid]
        cands.append(_candidate(rows[name], aggs, verdicts, rid, rid != base["run_id"], _training_price(r)))
        cands[-1]["generations_failed"] = failed.get(name, 0)
    cands.sort(key=lambda c: c["name"])
    for c in [c for c in cands if c["from_earlier_run"] and _rested_on_others(c, by_run[c["run_id"]][1], picked)]:
        cands.remove(c)
        left_out.append({"name": c["name"], "run_id": c["run_id"], "why": HOLM_STEP})
    seal = store.current_seal(goal)
    # Results on a test set since resealed answer nothing about the goal on the current one.
    resealed = seal is not None and base["test_hash"] is not None and seal["test_hash"] != base["test_hash"]
    if resealed:  # decided on the old test set: no candidate meets the goal on the current one
        for c in cands:
            c["meets_goal"] = False
    meets = [c for c in cands if c["meets_goal"]]
    best = base["best_candidate"] if any(c["name"] == base["best_candidate"] for c in meets) else \
        (max(meets, key=_mean_margin)["name"] if meets else None)
    return {
        "schema_version": SCHEMA_VERSION,
        "goal": goal,
        "run": _run_info(base),
        "latest_run": {"id": latest["run_id"], "status": latest["status"]},
        "unfinished": not run_id and latest["status"] != "finished",
        "test_set_resealed": resealed,
        "meets_goal": bool(meets),
        "best_candidate": best,
        "candidates": cands,
        "left_out": sorted(left_out, key=lambda x: x["name"]),
    }


OTHER_CRITERIA = "decided under other criteria, confidence or multiplicity"
HOLM_STEP = "passed at a Holm step that rested on passes of candidates a later run decided again"


def _pick(store: "Store", base: dict[str, Any], runs: list[dict[str, Any]]) -> tuple[dict, list]:
    """Each candidate's newest run among ``runs`` (newest first), and those left out: a candidate
    whose newest result was decided under other criteria than ``base``'s."""
    picked: dict[str, dict[str, Any]] = {}
    left_out: list[dict[str, str]] = []
    under = run_decided_under(base)
    for r in runs:
        alike = same_decision(under, run_decided_under(r))
        for c in store.candidates(r["run_id"]):
            if c["name"] in picked or c["name"] in {x["name"] for x in left_out}:
                continue
            if alike:
                picked[c["name"]] = r
            else:
                left_out.append({"name": c["name"], "run_id": r["run_id"], "why": OTHER_CRITERIA})
    return picked, left_out


def _rested_on_others(cand: dict[str, Any], run_verdicts: list[dict[str, Any]],
                      picked: dict[str, dict[str, Any]]) -> bool:
    """A pass from an earlier run that Holm decided at a looser step than its first rested on the
    candidates of that run that passed at stricter steps; when a later run decided any of those
    again (its result now comes from another run), the step it passed at no longer stands. A pass
    at the first step's (Bonferroni) level stands in any family of the goal's candidates."""
    holm = [v["confidence"] for v in cand["criteria"]
            if str(v.get("multiplicity") or "").lower().startswith("holm") and v.get("confidence")]
    if not cand["meets_goal"] or not holm:
        return False
    level = min(holm)
    levels: dict[str, float] = {}
    passed: dict[str, bool] = {}
    for v in run_verdicts:
        if v.get("confidence"):
            levels[v["candidate"]] = max(levels.get(v["candidate"], 0.0), v["confidence"])
        passed[v["candidate"]] = passed.get(v["candidate"], True) and v["status"] == "pass"
    before = [n for n, ok in passed.items() if ok and n != cand["name"] and levels.get(n, 0.0) > level + 1e-12]
    return any(picked.get(n, {}).get("run_id") != cand["run_id"] for n in before)


GOAL_CHANGED = ("the goal's criteria, confidence, multiplicity or judge changed since this run (or a judge "
                "rubric's text): the verdicts are what the run decided; `harness run` decides the new ones")
RESEALED = ("the test set was sealed again since this run: its verdicts are on the old test set and answer "
            "nothing about the current one; run the goal again")
RUBRIC_HASHES = "judge_rubric_hashes"  # in a run's stored config and in the judge part of its decided_under key


def goal_changed(stored: str | None, goal: Any, rubrics_dir: str | Path | None = None) -> bool:
    """The goal file (``goal``) — or a judge rubric file it names, when the run recorded their
    hashes — decides otherwise than the run whose ``decided_under`` key is ``stored`` (None, a
    run stored without its goal: cannot tell, so no). ``rubrics_dir``: where the rubrics are
    (default: ``rubrics/``, else the one beside the goal's folder)."""
    if stored is None:
        return False
    config = goal.model_dump(mode="json")
    then = _judge_part(json.loads(stored)).get(RUBRIC_HASHES)
    if then is not None:  # a rubric not found from here cannot tell, so counts as it was
        config[RUBRIC_HASHES] = {name: now if now is not None else then.get(name)
                                 for name, now in judge_rubric_hashes(goal, rubrics_dir).items()}
    return stored != decided_under(config)


def _judge_part(key: list[Any]) -> dict[str, Any]:
    """The judge's part of a parsed ``decided_under`` key ({} without a judge)."""
    return key[4] if isinstance(key[4], dict) else {}


def same_decision(a: str | None, b: str | None) -> bool:
    """Two ``decided_under`` keys decide alike: equal, or one unknown (None), or equal but for
    the rubric hashes one of them was stored without (a run from before they were kept)."""
    if None in (a, b) or a == b:
        return True
    ka, kb = json.loads(a), json.loads(b)  # type: ignore[arg-type]
    if (RUBRIC_HASHES in _judge_part(ka)) == (RUBRIC_HASHES in _judge_part(kb)):
        return False
    for k in (ka, kb):
        _judge_part(k).pop(RUBRIC_HASHES, None)
    return ka == kb


def judge_rubric_hashes(goal: Any, rubrics_dir: str | Path | None = None) -> dict[str, str | None]:
    """{rubric: content hash} of the judge's rubrics as the files say now (None: unreadable); a
    run stores them with its goal so an edited rubric shows its old verdicts as not current."""
    from harness.errors import HarnessError
    from harness.judge.rubric import load_rubric
    from harness.runner.context import rubrics_dir_for

    folder = rubrics_dir_for(goal, rubrics_dir or "rubrics")
    out: dict[str, str | None] = {}
    for name in (goal.judge.rubrics if goal.judge else []):
        try:
            out[name] = load_rubric(name, folder).hash
        except (HarnessError, OSError):
            out[name] = None
    return out


def run_decided_under(run: dict[str, Any]) -> str | None:
    """What a run's verdicts were decided under: the goal's criteria, confidence and multiplicity
    rule as stored with the run (None for a run stored without its goal). Results of runs decided
    under others are not put together: a pass at an old, looser threshold is no pass of this goal."""
    config = _config(run)
    return decided_under(config) if config else None


OPS = ("at_least", "at_most", "improve_by", "reduce_by")


def decided_under(config: dict[str, Any]) -> str:
    """A goal's (``Goal.model_dump(mode="json")``) decision-making part as a comparable key: each
    criterion's metric, op, threshold, baseline and args (in any order; fields a later version
    added do not count), the confidence and the multiplicity rule (their defaults when absent),
    the named metrics' arguments and the judge's model, mode and rubrics — with the rubrics'
    content hashes where the run stored them (:func:`judge_rubric_hashes`)."""
    criteria = sorted(json.dumps({"metric": c.get("metric"), "baseline": c.get("baseline"), "args": c.get("args") or {},
                                  **{op: c[op] for op in OPS if c.get(op) is not None}}, sort_keys=True)
                      for c in config.get("success") or [])
    metrics = sorted(json.dumps({k: m.get(k) for k in ("name", "metric", "args")}, sort_keys=True)
                     for m in config.get("metrics") or [])
    judge = config.get("judge") or {}
    judge = {k: judge.get(k) for k in ("model", "mode", "rubrics")} if judge else None
    if judge is not None and config.get(RUBRIC_HASHES) is not None:
        judge[RUBRIC_HASHES] = config[RUBRIC_HASHES]
    return json.dumps([criteria, config.get("confidence", 0.95), config.get("multiplicity", "holm"), metrics,
                       judge], sort_keys=True)


def _mean_margin(cand: dict[str, Any]) -> float:
    out = []
    for v in cand["criteria"]:
        t, x = v["threshold"] or 0.0, v["value"] if v["value"] is not None else math.nan
        raw = t - x if v["op"] == "at_most" else x - t
        out.append(raw / abs(t) if t else raw)
    return sum(out) / len(out) if out else -math.inf


def _flag(v: Any) -> bool | None:
    return None if v is None else bool(v)


def _run_info(run: dict[str, Any]) -> dict[str, Any]:
    return {"id": run["run_id"], "status": run["status"], "started_at": _clean(run["started_at"]),
            "finished_at": _clean(run["finished_at"]), "test_hash": run["test_hash"],
            "data_hash": run["data_hash"], "git_commit": run["git_commit"], "git_dirty": run["git_dirty"],
            "versions": json.loads(run["versions"]) if run["versions"] else {},
            "leakage": json.loads(run["leakage"]) if run.get("leakage") else None,
            "confidence": _config(run).get("confidence"), "decided_under": run_decided_under(run)}


def _config(run: dict[str, Any]) -> dict[str, Any]:
    config = run.get("config")
    return (json.loads(config) if isinstance(config, str) else config) or {}


def _training_price(run: dict[str, Any]) -> float | None:
    """USD per hour of training, from the goal's ``cost`` as the run stored it: ``gpu_hour_usd``
    times ``gpus``; None when the goal sets no price (a CPU's hour has no list price)."""
    try:
        cost = (json.loads(run["config"]) if isinstance(run.get("config"), str) else run.get("config") or {})["cost"]
    except (KeyError, TypeError, ValueError):
        return None
    price = (cost or {}).get("gpu_hour_usd")
    return float(price) * int(cost.get("gpus") or 1) if price else None


def _candidate(c: dict[str, Any], aggs: list, verdicts: list, rid: str, earlier: bool,
               hour_usd: float | None = None) -> dict[str, Any]:
    """One candidate's entry, from the run ``rid`` its result comes from."""
    name = c["name"]
    metrics = {a["metric"]: {"value": _clean(a["value"]), "ci": [_clean(a["ci_low"]), _clean(a["ci_high"])],
                             "n": a["n"], **_pairwise_judge(a)} for a in aggs if a["candidate"] == name}
    criteria = [{"metric": v["metric"], "status": v["status"], "op": v["op"], "threshold": _clean(v["threshold"]),
                 "baseline": v["baseline"], "value": _clean(v["value"]),
                 "ci": [_clean(v["ci_low"]), _clean(v["ci_high"])], "needed_n": v["needed_n"],
                 "detail": v["detail"], "interval": v.get("interval"), "confidence": _clean(v.get("confidence")),
                 "multiplicity": v.get("multiplicity"), "judge_validated": _flag(v.get("judge_validated")),
                 "relative": _flag(v.get("relative"))}
                for v in verdicts if v["candidate"] == name]
    gen, judging = _clean(c["cost_usd"]) or 0.0, _clean(c.get("judge_cost_usd")) or 0.0
    seconds = _clean(c["train_seconds"])
    training = round(seconds / 3600 * hour_usd, 6) if seconds and hour_usd else (0.0 if not seconds else None)
    return {"name": name, "kind": c["kind"], "run_id": rid, "from_earlier_run": earlier,
            "meets_goal": bool(c["meets_goal"]), "cost_usd": _clean(c["cost_usd"]),
            "cost": {"training_usd": training, "generation_usd": gen, "judging_usd": judging,
                     "total_usd": gen + judging + (training or 0.0),
                     "training_seconds": seconds, "tokens_trained": c.get("tokens_seen")},
            "train_seconds": _clean(c["train_seconds"]), "adapter_path": c["adapter_path"],
            "overfitting": c["overfitting"],
            "runtime": {k: _clean(c.get(k)) for k in ("device", "dtype", "quantization", "engine", "peak_memory_mb",
                                                      "peak_memory_source")},
            "metrics": metrics, "criteria": criteria}


def _pairwise_judge(agg: dict[str, Any]) -> dict[str, Any]:
    """A pairwise judge metric's position-bias rate, win rate and baseline (from the aggregate's
    extra); nothing for other metrics."""
    extra = agg.get("extra")
    extra = json.loads(extra) if isinstance(extra, str) else (extra or {})
    if extra.get("position_bias_rate") is None:
        return {}
    return {"position_bias_rate": _clean(extra["position_bias_rate"]), "win_rate": _clean(extra.get("win_rate")),
            "baseline": extra.get("baseline")}


# --------------------------------------------------------------------------- results out

FORMATS = ("table", "json", "jsonl", "csv", "parquet")


def criterion_rows(res: dict[str, Any]) -> list[dict[str, Any]]:
    """One flat row per candidate and criterion (the verdict table as data)."""
    rows = []
    for c in res["candidates"]:
        for v in c["criteria"]:
            rows.append({"goal": res["goal"], "run_id": c["run_id"], "candidate": c["name"], "kind": c["kind"],
                         "meets_goal": c["meets_goal"], "metric": v["metric"], "op": v["op"],
                         "threshold": v["threshold"], "baseline": v["baseline"], "status": v["status"],
                         "value": v["value"], "ci_low": v["ci"][0], "ci_high": v["ci"][1], "needed_n": v["needed_n"],
                         "interval": v["interval"], "confidence": v["confidence"],
                         "multiplicity": v["multiplicity"], "judge_validated": v.get("judge_validated"),
                         "relative": v.get("relative"), "detail": v["detail"]})
    return rows


def sample_rows(store: "Store", res: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per test example and candidate: input, reference, output, every per-example
    score (``score.<metric>``), the judgments (with rationale) and the human ratings, from the
    run each candidate's result comes from."""
    goal = res["goal"]
    examples = {e["example_id"]: e for e in store.examples_of(goal, "test")}
    items = {it["item_id"]: it for it in store.panel_items(goal)}
    ratings: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in store.ratings(goal):
        it = items.get(r["item_id"])
        if it is not None:
            ratings.setdefault((it["candidate"], it["example_id"]), []).append(
                {"rater": r["rater"], "rubric": it["rubric"], "criterion": r["criterion"], "score": r["score"],
                 "choice": r["choice"]})
    rows = []
    for rid in sorted({c["run_id"] for c in res["candidates"]}):
        names = {c["name"] for c in res["candidates"] if c["run_id"] == rid}
        scores: dict[tuple[str, str], dict[str, Any]] = {}
        for s in store.run_scores(rid):
            scores.setdefault((s["candidate"], s["example_id"]), {})[f"score.{s['metric']}"] = _clean(s["value"])
        judged: dict[tuple[str, str], list[dict[str, Any]]] = {}
        for j in store.run_judgments(rid):
            judged.setdefault((j["candidate"], j["example_id"]), []).append(
                {k: _clean(j[k]) for k in ("rubric", "criterion", "position_order", "score", "winner", "rationale",
                                           "error")})
        for o in store.run_outputs(rid):
            if o["candidate"] not in names:
                continue
            key = (o["candidate"], o["example_id"])
            ex = examples.get(o["example_id"], {})
            rows.append({"goal": goal, "run_id": rid, "candidate": o["candidate"], "example_id": o["example_id"],
                         "input": ex.get("input"), "reference": ex.get("reference"), "output": o["output"],
                         **scores.get(key, {}), "judgments": judged.get(key, []), "ratings": ratings.get(key, [])})
    return rows


def write_results(res: dict[str, Any], samples: list[dict[str, Any]] | None, fmt: str, out: Any) -> None:
    """Write results as ``fmt`` to ``out`` (a path, or a text stream for json/jsonl/csv)."""
    import io
    from pathlib import Path

    from harness.errors import HarnessError

    if fmt == "json":
        text = json.dumps({**res, **({"samples": samples} if samples is not None else {})}, indent=2, default=str)
        _emit(text + "\n", out)
        return
    rows = samples if samples is not None else criterion_rows(res)
    if fmt == "jsonl":
        _emit("".join(json.dumps(r, default=str) + "\n" for r in rows), out)
        return
    import pandas as pd

    frame = pd.DataFrame([{k: json.dumps(v, default=str) if isinstance(v, (list, dict)) else v
                           for k, v in r.items()} for r in rows])
    if fmt == "csv":
        buf = io.StringIO()
        frame.to_csv(buf, index=False)
        _emit(buf.getvalue(), out)
    elif fmt == "parquet":
        if not isinstance(out, (str, Path)):
            raise HarnessError("parquet is binary: give --output FILE.parquet")
        import os

        import duckdb

        out = Path(out)
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}.parquet")  # beside it, then one rename
        try:
            duckdb.from_df(frame).to_parquet(str(tmp))
            os.replace(tmp, out)
        finally:
            tmp.unlink(missing_ok=True)
    else:
        raise HarnessError(f"unknown format {fmt!r}; use one of {', '.join(FORMATS)}")


def _emit(text: str, out: Any) -> None:
    from pathlib import Path

    if isinstance(out, (str, Path)):
        from harness.fsutil import atomic_write_text

        atomic_write_text(out, text)
    else:
        out.write(text)
