"""The stable, documented JSON shape of a run's results (``harness results --json``).

```
{"goal": str, "run": {"id", "status", "started_at", "finished_at", "test_hash", "git_commit", ...},
 "meets_goal": bool, "best_candidate": str | null,
 "candidates": [{"name", "kind", "meets_goal", "cost_usd", "train_seconds", "adapter_path",
                 "overfitting",
                 "metrics": {METRIC: {"value", "ci": [low, high], "n"}},
                 "criteria": [{"metric", "status", "op", "threshold", "baseline", "value",
                               "ci": [low, high], "needed_n", "detail",
                               "interval", "confidence", "multiplicity"}]}]}
```
Metric names are as the goal writes them (``accuracy``, ``rougeL``, ``judge.tone``,
``human.tone``...). NaN becomes null. ``interval`` names the method behind ``ci``
(``harness.intervals``), ``confidence`` its two-sided level after the multiplicity rule
``multiplicity`` (``harness.multiplicity``); all three are null for runs stored before they
were recorded.
"""
from __future__ import annotations

import json
import math
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from harness.store import Store


def _clean(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if hasattr(v, "isoformat"):
        return v.isoformat()
    return v


def results_dict(store: "Store", goal: str, run_id: str | None = None) -> dict[str, Any] | None:
    run = store.run(run_id) if run_id else store.latest_run(goal)
    if run is None:
        return None
    rid = run["run_id"]
    aggs = store.aggregates(rid)
    verdicts = store.verdicts(rid)
    cands = []
    for c in store.candidates(rid):
        name = c["name"]
        metrics = {a["metric"]: {"value": _clean(a["value"]), "ci": [_clean(a["ci_low"]), _clean(a["ci_high"])],
                                 "n": a["n"]} for a in aggs if a["candidate"] == name}
        criteria = [{"metric": v["metric"], "status": v["status"], "op": v["op"], "threshold": _clean(v["threshold"]),
                     "baseline": v["baseline"], "value": _clean(v["value"]),
                     "ci": [_clean(v["ci_low"]), _clean(v["ci_high"])], "needed_n": v["needed_n"],
                     "detail": v["detail"], "interval": v.get("interval"), "confidence": _clean(v.get("confidence")),
                     "multiplicity": v.get("multiplicity")} for v in verdicts if v["candidate"] == name]
        cands.append({"name": name, "kind": c["kind"], "meets_goal": bool(c["meets_goal"]),
                      "cost_usd": _clean(c["cost_usd"]), "train_seconds": _clean(c["train_seconds"]),
                      "adapter_path": c["adapter_path"], "overfitting": c["overfitting"],
                      "metrics": metrics, "criteria": criteria})
    return {
        "goal": goal,
        "run": {"id": rid, "status": run["status"], "started_at": _clean(run["started_at"]),
                "finished_at": _clean(run["finished_at"]), "test_hash": run["test_hash"],
                "data_hash": run["data_hash"], "git_commit": run["git_commit"], "git_dirty": run["git_dirty"],
                "versions": json.loads(run["versions"]) if run["versions"] else {}},
        "meets_goal": bool(run["meets_goal"]),
        "best_candidate": run["best_candidate"],
        "candidates": cands,
    }
