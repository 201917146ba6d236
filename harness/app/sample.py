"""A small, realistic store for trying the app and for its tests (no model needed).

``fill_sample(store, root)`` writes a goal, its data and a rubric under ``root`` and fills
the store through the Store API the runner uses: two runs of the goal (the latest with
three candidates), 20 test examples, outputs, per-example scores, aggregates with
bootstrap CIs, verdicts, a LoRA loss curve that overfits, and pointwise and pairwise
(both orders) judgments. Tests take the filling function as a fixture, so a real
tiny-model run can replace it.
"""
from __future__ import annotations

import hashlib
import json
import random
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Sequence

GOAL = "support-replies"

TONE_RUBRIC = """\
name: tone
description: How the reply sounds to a customer. Judge only the tone, not the content.
version: "1"
criteria:
  - name: formal
    description: Professional register suitable for written customer support.
    scale:
      1: Inappropriate register; slang, insults or sarcasm.
      2: Casual; chatty or flippant in several places.
      3: Mixed; mostly neutral with a casual or curt sentence.
      4: Professional; polite and clear.
      5: Fully professional from start to end.
  - name: empathetic
    description: Recognises the person's situation and feelings and responds sincerely.
    scale:
      1: Dismissive or hostile.
      2: Cold; purely mechanical.
      3: Neutral; a token acknowledgement.
      4: Empathetic; acknowledges the specific situation.
      5: Highly empathetic, specific and reassuring.
"""

TOPICS = ["refund", "password reset", "late delivery", "broken item", "invoice copy", "account deletion",
          "address change", "double charge", "discount code", "warranty"]


def goal_yaml(tokens: Sequence[str] = (), items: int = 12, raters_per_item: int = 2, min_ratings: int = 3,
              mode: str = "pointwise") -> str:
    tok = json.dumps(list(tokens))
    return f"""\
goal: {GOAL}
description: Calm, on-topic customer-support replies.
data:
  path: data/support.jsonl
  split: {{train: 0.6, validation: 0.1, test: 0.3, seed: 13}}
success:
  - metric: token_f1
    at_least: 0.5
  - metric: off_topic_rate
    reduce_by: 50%
    baseline: zero-shot
  - metric: judge.tone
    at_least: 3.5
  - metric: human.tone
    at_least: 3.0
candidates:
  - {{name: zero-shot, kind: prompt}}
  - {{name: few-shot, kind: prompt, shots: 3}}
  - {{name: lora-r8, kind: lora, r: 8, learning_rate: 2.0e-4, epochs: 3}}
judge: {{model: "local:default", rubrics: [tone]}}
human: {{rubrics: [tone], items: {items}, raters_per_item: {raters_per_item}, min_ratings: {min_ratings}, mode: {mode}, tokens: {tok}, agreement_threshold: 0.4}}
"""


def _key(*parts: Any) -> str:
    return hashlib.sha256("\x1f".join(map(str, parts)).encode()).hexdigest()[:24]


def _examples(n: int = 20) -> list[dict[str, Any]]:
    rows = []
    for i in range(n):
        topic = TOPICS[i % len(TOPICS)]
        question = f"Hi, I have a problem with my {topic} (case {i}). Can you help?"
        reference = (f"I'm sorry about the trouble with your {topic}. I have opened case {i} "
                     f"and our team will fix it within two working days.")
        rows.append({"example_id": f"ex{i:03d}", "split": "test", "input": question, "reference": reference,
                     "prompt": [{"role": "user", "content": question}]})
    return rows


def _output(cand: str, ex: dict[str, Any], rng: random.Random) -> tuple[str, bool]:
    """A plausible output and whether it is off topic."""
    topic = ex["input"].split("my ")[1].split(" (")[0]
    quality = {"zero-shot": 0.35, "few-shot": 0.6, "lora-r8": 0.85}[cand]
    if rng.random() > quality + 0.1:
        return "Have you tried turning it off and on again? lol", True
    words = ex["reference"].split()
    keep = [w for w in words if rng.random() < quality]
    return (" ".join(keep) or f"About your {topic}: we will look into it."), False


def token_f1(output: str, reference: str) -> float:
    a, b = output.lower().split(), reference.lower().split()
    common = sum(min(a.count(w), b.count(w)) for w in set(a))
    if not a or not b or not common:
        return 0.0
    p, r = common / len(a), common / len(b)
    return 2 * p * r / (p + r)


def fill_sample(store: Any, root: str | Path, *, tokens: Sequence[str] = (), runs: int = 2,
                seed: int = 0) -> dict[str, Any]:
    """Write the goal files under ``root`` and fill ``store``; returns what it made."""
    from harness import stats, verdict

    root = Path(root)
    (root / "goals").mkdir(parents=True, exist_ok=True)
    (root / "data").mkdir(parents=True, exist_ok=True)
    (root / "rubrics").mkdir(parents=True, exist_ok=True)
    (root / "rubrics" / "tone.yaml").write_text(TONE_RUBRIC, encoding="utf-8")
    goal_path = root / "goals" / f"{GOAL}.yaml"
    goal_path.write_text(goal_yaml(tokens), encoding="utf-8")
    examples = _examples()
    with open(root / "data" / "support.jsonl", "w", encoding="utf-8") as fh:
        for ex in examples:
            fh.write(json.dumps({"prompt": ex["input"], "completion": ex["reference"]}) + "\n")
    store.put_examples(GOAL, examples)
    from harness.goals import load_goal

    goal = load_goal(goal_path)
    start = datetime(2026, 11, 1, 9, 0, 0)
    run_ids = []
    for r in range(runs):
        rng = random.Random(f"{seed}|{r}")
        run_id = f"run-{r + 1:03d}"
        run_ids.append(run_id)
        latest = r == runs - 1
        cands = ["zero-shot", "few-shot", "lora-r8"] if latest else ["zero-shot", "few-shot"]
        store.start_run({"run_id": run_id, "goal": GOAL, "goal_path": str(goal_path), "config_hash": _key("cfg", r),
                         "test_hash": "t" * 16, "started_at": start + timedelta(days=r), "git_commit": "abc1234",
                         "git_dirty": False, "versions": {"harness": "0.1.0"}, "host": {"cpu": 2},
                         "config": goal.model_dump(mode="json")})
        per_metric: dict[str, dict[str, list[float]]] = {"token_f1": {}, "off_topic_rate": {}, "judge.tone": {}}
        for cand in cands:
            _fill_candidate(store, run_id, cand, examples, rng, per_metric, r)
        _fill_pairwise(store, run_id, examples, rng)
        _fill_aggregates_and_verdicts(store, run_id, goal, cands, per_metric, stats, verdict)
        store.finish_run(run_id, "finished", meets_goal=False, best_candidate=None)
    return {"goal": GOAL, "goal_path": goal_path, "runs": run_ids, "examples": [e["example_id"] for e in examples],
            "candidates": ["few-shot", "lora-r8", "zero-shot"], "rubrics_dir": root / "rubrics",
            "goals_dir": root / "goals"}


def _fill_candidate(store: Any, run_id: str, cand: str, examples: list[dict[str, Any]], rng: random.Random,
                    per_metric: dict[str, dict[str, list[float]]], r: int) -> None:
    kind = "lora" if cand.startswith("lora") else "prompt"
    config = {"r": 8, "learning_rate": 2e-4, "epochs": 3, "batch_size": 8} if kind == "lora" else {"shots": 3 if cand == "few-shot" else 0}
    store.put_candidate(run_id, {"name": cand, "kind": kind, "config": config, "model": "SmolLM2-135M-Instruct",
                                 "train_seconds": 412.5 if kind == "lora" else 0.0, "tokens_seen": 51200 if kind == "lora" else 0,
                                 "cost_usd": 0.0, "gen_seconds": 30.0 + 5 * len(cand), "status": "finished",
                                 "overfitting": kind == "lora", "best_step": 60 if kind == "lora" else None,
                                 "stopped_early": kind == "lora", "meets_goal": False})
    preds, links, f1s, off, jlinks, jrows, tone = [], [], [], [], [], [], []
    for ex in examples:
        text, off_topic = _output(cand, ex, rng)
        key = _key("pred", run_id if r else "", cand, ex["example_id"], text)
        preds.append({"cache_key": key, "model_id": cand, "output": text, "prompt_tokens": 40,
                      "output_tokens": len(text.split()), "latency_s": 0.2, "cost_usd": 0.0, "attempts": 1})
        links.append((run_id, cand, ex["example_id"], key))
        f1s.append((ex["example_id"], token_f1(text, ex["reference"])))
        off.append((ex["example_id"], 1.0 if off_topic else 0.0))
        scores = []
        for crit in ("formal", "empathetic"):
            base = 2.0 if off_topic else {"zero-shot": 3.0, "few-shot": 3.6, "lora-r8": 4.2}[cand]
            score = float(min(5, max(1, round(base + rng.choice([-1, 0, 0, 1])))))
            jkey = _key("judge", run_id, cand, ex["example_id"], crit)
            jrows.append({"cache_key": jkey, "judge": "local:default", "rubric": "tone", "rubric_hash": "h1",
                          "criterion": crit, "mode": "pointwise", "order": None, "score": score,
                          "rationale": f"The reply is {'off topic and flippant' if off_topic else 'polite'}; {crit} {score:.0f}/5.",
                          "raw": json.dumps({"score": score}), "attempts": 1})
            jlinks.append((run_id, cand, ex["example_id"], "tone", crit, "-", jkey))
            scores.append(score)
        tone.append((ex["example_id"], sum(scores) / len(scores)))
    store.put_predictions(preds, links)
    store.put_scores(run_id, cand, "token_f1", f1s)
    store.put_scores(run_id, cand, "off_topic_rate", off)
    store.put_scores(run_id, cand, "judge.tone", tone)
    store.put_judgments(jrows, jlinks)
    per_metric["token_f1"][cand] = [v for _, v in f1s]
    per_metric["off_topic_rate"][cand] = [v for _, v in off]
    per_metric["judge.tone"][cand] = [v for _, v in tone]
    if kind == "lora":
        points = []
        for step in range(10, 130, 10):
            points.append((step, "train", 2.4 * (0.985 ** step)))
            points.append((step, "validation", 1.35 + 0.00012 * (step - 60) ** 2))
        store.put_curve(run_id, cand, points)


def _fill_pairwise(store: Any, run_id: str, examples: list[dict[str, Any]], rng: random.Random) -> None:
    cands = {c["name"] for c in store.candidates(run_id)}
    if "lora-r8" not in cands:
        return
    rows, links = [], []
    for ex in examples[:10]:
        for order in ("AB", "BA"):
            winner = rng.choice(["cand", "cand", "base", "tie"])
            key = _key("pair", run_id, ex["example_id"], order)
            rows.append({"cache_key": key, "judge": "local:default", "rubric": "tone", "rubric_hash": "h1",
                         "criterion": "formal", "mode": "pairwise", "order": order, "winner": winner,
                         "rationale": f"Order {order}: the {'candidate' if winner == 'cand' else 'baseline' if winner == 'base' else 'neither'} reads better.",
                         "raw": winner, "attempts": 1})
            links.append((run_id, "lora-r8", ex["example_id"], "tone-vs-zero-shot", "formal", order, key))
    store.put_judgments(rows, links)


def _fill_aggregates_and_verdicts(store: Any, run_id: str, goal: Any, cands: list[str],
                                  per_metric: dict[str, dict[str, list[float]]], stats: Any, verdict: Any) -> None:
    aggs = []
    for metric, by_cand in per_metric.items():
        for cand, vals in by_cand.items():
            lo, hi = stats.bootstrap_ci(vals, goal.confidence)
            aggs.append({"candidate": cand, "metric": metric, "value": sum(vals) / len(vals), "ci_low": lo,
                         "ci_high": hi, "n": len(vals)})
    store.put_aggregates(run_id, aggs)
    rows = []
    for cand in cands:
        for crit in goal.success:
            if crit.metric not in per_metric:
                continue  # human criteria: the panel fills these in
            amount = getattr(crit, crit.op)
            if crit.relative_op:
                if cand == crit.baseline:
                    continue
                v = verdict.judge_criterion(crit.metric, crit.op, amount, per_metric[crit.metric][cand],
                                            per_metric[crit.metric][crit.baseline], baseline=crit.baseline,
                                            confidence=goal.confidence)
            else:
                v = verdict.judge_criterion(crit.metric, crit.op, amount, per_metric[crit.metric][cand],
                                            confidence=goal.confidence)
            rows.append({"candidate": cand, "metric": crit.metric, "status": v.status, "value": v.value,
                         "ci_low": v.ci[0], "ci_high": v.ci[1], "threshold": v.threshold, "op": crit.op,
                         "baseline": crit.baseline, "needed_n": v.needed_n, "detail": v.detail})
    store.put_verdicts(run_id, rows)


FILL_ENV = "HARNESS_APP_FILL"


def make_project(root: str | Path, fill: str | None = None, **kwargs: Any) -> dict[str, Any]:
    """A project folder with a filled store at ``root/harness.duckdb``.

    ``fill`` (else ``$HARNESS_APP_FILL``, else this module's :func:`fill_sample`) is a
    ``module:function`` taking ``(store, root, **kwargs)`` and returning at least ``goal``;
    pointing it at a function that runs the real tiny-model pipeline swaps the data the
    app tests see without touching them.
    """
    import os

    from harness.registry import import_object
    from harness.store import Store

    root = Path(root)
    fn = import_object(fill or os.environ.get(FILL_ENV) or "harness.app.sample:fill_sample")
    store = Store(root / "harness.duckdb")
    info = dict(fn(store, root, **kwargs))
    info.setdefault("goals_dir", root / "goals")
    info.setdefault("rubrics_dir", root / "rubrics")
    info["db"] = root / "harness.duckdb"
    info["root"] = root
    return info
