"""While ``harness run`` (the real CLI, generating with the tiny model in its own process)
writes a run, twenty raters in separate processes save ratings the way the Rate page does:
every rating lands, none meets a lock error, and every write of the run lands too."""
from __future__ import annotations

import multiprocessing as mp
import os
import subprocess
import sys
import time
import traceback

import pytest

from harness.store import Store
from tests.helpers import ROOT, tiny_goal

GOAL = "busy"
RATERS = 20


def _rater(db: str, i: int, ready, go, result) -> None:
    try:
        store = Store(db)
        ready.put(i)
        go.wait(600)
        time.sleep(0.05 * (i % 10))  # spread over half a second of the run's writes, in pairs
        rater = f"rater-{i:02d}"
        store.put_rating(GOAL, rater, f"it-{i % 4}", "formal", score=float(1 + i % 5))
        # The page reads the ratings back right after saving one (progress, restored answers).
        mine = store.rater_ratings(GOAL, rater)
        assert [(r["item_id"], r["score"]) for r in mine] == [(f"it-{i % 4}", float(1 + i % 5))], mine
        result.put((i, None))
    except BaseException:  # noqa: BLE001 - report everything to the parent
        result.put((i, traceback.format_exc()))


@pytest.mark.slow  # a tiny-model run of ~80 test examples and 21 spawned processes: a minute or more
def test_twenty_concurrent_ratings_land_while_harness_run_writes(tmp_path, tiny_model_dir):
    goal_path = tiny_goal(tmp_path, tiny_model_dir, n=160, max_new_tokens=32, judge=False, name=GOAL,
                          test_ratio=0.5)
    db = tmp_path / "harness.duckdb"
    store = Store(db)
    store.schema_version()  # create and migrate once, as the app and the runner do on start
    ctx = mp.get_context("spawn")  # no inherited DuckDB state in the children
    ready, go, result = ctx.Queue(), ctx.Event(), ctx.Queue()
    raters = [ctx.Process(target=_rater, args=(str(db), i, ready, go, result)) for i in range(RATERS)]
    writer = None
    try:
        for p in raters:
            p.start()
        for _ in raters:  # every rater is up (imports done) before the run starts
            ready.get(timeout=300)
        env = dict(os.environ, HARNESS_DB=str(db), HF_HUB_OFFLINE="1")
        writer = subprocess.Popen([sys.executable, "-m", "harness", "run", str(goal_path), "--only", "zero-shot",
                                   "--no-progress"], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True)
        # Release the raters once the run is writing predictions, the bulk of its writes.
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and writer.poll() is None:
            if store.scalar("SELECT count(*) FROM predictions"):
                break
            time.sleep(0.1)
        assert writer.poll() is None, "harness run ended before it wrote any prediction:\n" + writer.stderr.read()
        go.set()
        outcomes = [result.get(timeout=300) for _ in raters]
        out, err = writer.communicate(timeout=600)
    finally:
        go.set()
        for p in raters:
            p.join(timeout=60)
            if p.is_alive():
                p.terminate()
        if writer is not None and writer.poll() is None:
            writer.kill()
            writer.wait()
    errors = [e for _, e in outcomes if e is not None]
    assert not errors, "\n".join(errors)
    assert all(p.exitcode == 0 for p in raters)
    assert writer.returncode in (0, 1), err[-3000:]  # 1: no candidate meets the goal
    assert "lock" not in (out + err).lower()

    rows = store.ratings(GOAL)
    assert sorted(r["rater"] for r in rows) == [f"rater-{i:02d}" for i in range(RATERS)]
    assert {r["rater"]: (r["item_id"], r["score"]) for r in rows} == {
        f"rater-{i:02d}": (f"it-{i % 4}", float(1 + i % 5)) for i in range(RATERS)}
    # The run finished with all its writes, and every rating landed while it was writing them.
    run = store.latest_run(GOAL)
    assert run["status"] == "finished"
    n_test = store.scalar("SELECT count(*) FROM examples WHERE goal = ? AND split = 'test'", [GOAL])
    assert n_test == 80
    span = store.query("SELECT min(p.created_at) AS first, max(p.created_at) AS last, count(*) AS n "
                       "FROM outputs o JOIN predictions p USING (cache_key) WHERE o.run_id = ?", [run["run_id"]])[0]
    assert span["n"] == n_test
    assert store.scalar("SELECT count(*) FROM scores WHERE run_id = ? AND metric = 'accuracy'", [run["run_id"]]) == n_test
    # Every rating landed while the run was open (it was writing predictions, scores and
    # verdicts all that time); the raters were released only after its first prediction.
    assert all(span["first"] <= r["created_at"] <= run["finished_at"] for r in rows), (
        span, run["finished_at"], sorted(r["created_at"] for r in rows))
