"""While a long run writes through the Store, twenty raters in separate processes submit
ratings: every rating lands and none meets a lock error."""
from __future__ import annotations

import multiprocessing as mp
import time
import traceback

import pytest

from harness.store import Store, now

GOAL = "support-replies"
WRITE_SECONDS = 10.0


def _writer(db: str, started, stop, result) -> None:
    """Behaves like ``harness run``: many short transactions (predictions, scores, judgments)."""
    try:
        store = Store(db)
        store.start_run({"run_id": "long-run", "goal": GOAL, "status": "running"})
        store.put_candidate("long-run", {"name": "lora", "kind": "lora"})
        first = now()
        started.set()
        deadline = time.monotonic() + WRITE_SECONDS
        batches = 0
        # Keep writing for WRITE_SECONDS and until every rater has finished.
        while time.monotonic() < deadline or not stop.is_set():
            ids = [f"ex{batches:04d}-{i}" for i in range(5)]
            store.put_predictions([{"cache_key": f"k{e}", "output": "text " * 20} for e in ids],
                                  [("long-run", "lora", e, f"k{e}") for e in ids])
            store.put_scores("long-run", "lora", "token_f1", [(e, 0.5) for e in ids])
            store.put_curve("long-run", "lora", [(batches, "train", 1.0 / (batches + 1))])
            batches += 1
        last = now()
        store.finish_run("long-run", "finished")
        result.put(("writer", (batches, first, last), None))
    except BaseException:  # noqa: BLE001 - report everything to the parent
        started.set()
        result.put(("writer", (0, None, None), traceback.format_exc()))


def _rater(db: str, i: int, started, result) -> None:
    try:
        started.wait(60)
        store = Store(db)
        store.put_rating(GOAL, f"rater-{i:02d}", f"it-{i % 4}", "formal", score=float(1 + i % 5))
        result.put(("rater", i, None))
    except BaseException:  # noqa: BLE001
        result.put(("rater", i, traceback.format_exc()))


@pytest.mark.slow  # ~40 s on two cores: 21 spawned processes and a 10 s writer
def test_twenty_concurrent_ratings_land_while_a_run_writes(tmp_path):
    db = str(tmp_path / "harness.duckdb")
    Store(db).schema_version()  # create and migrate once, like the app and runner do on start
    ctx = mp.get_context("spawn")  # no inherited DuckDB state in the children
    started, stop, result = ctx.Event(), ctx.Event(), ctx.Queue()
    writer = ctx.Process(target=_writer, args=(db, started, stop, result))
    writer.start()
    raters = [ctx.Process(target=_rater, args=(db, i, started, result)) for i in range(20)]
    for p in raters:
        p.start()
    outcomes = [result.get(timeout=180) for _ in range(len(raters))]
    stop.set()
    outcomes.append(result.get(timeout=180))
    for p in [writer, *raters]:
        p.join(timeout=60)
    errors = [o for o in outcomes if o[2] is not None]
    assert not errors, "\n".join(o[2] for o in errors)
    assert all(p.exitcode == 0 for p in [writer, *raters])
    store = Store(db)
    rows = store.ratings(GOAL)
    assert len(rows) == 20
    assert sorted(r["rater"] for r in rows) == [f"rater-{i:02d}" for i in range(20)]
    assert {r["rater"]: r["score"] for r in rows} == {f"rater-{i:02d}": float(1 + i % 5) for i in range(20)}
    # Every rating was written while the run was writing, and the run's writes all landed.
    batches, first, last = next(o[1] for o in outcomes if o[0] == "writer")
    assert all(first <= r["created_at"] <= last for r in rows)
    assert batches >= 2
    assert store.scalar("SELECT count(*) FROM scores WHERE run_id = 'long-run'") == 5 * batches
    assert store.latest_run(GOAL)["status"] == "finished"
