"""What `harness run` prints on a real tiny-model goal with a local judge: progress lines for
generation, training and judging (counts, rate, ETA), none of the libraries' own bars and
warnings, nothing but JSON on stdout with --json, only the result with --quiet; and results
that keep the LoRA candidate's verdict after a later `run --only zero-shot`, saying so."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest

from tests.helpers import ROOT, copy_project, tiny_goal

pytestmark = pytest.mark.slow
NOISE = ("Loading weights", "FutureWarning", "UserWarning", "is_gradient_checkpointing", "it/s]")


def harness(*args, cwd, timeout=900):
    return subprocess.run([sys.executable, "-m", "harness", *map(str, args)], cwd=cwd, capture_output=True,
                          text=True, timeout=timeout, env=dict(os.environ, COLUMNS="80"))


def test_progress_silence_and_a_partial_rerun_on_a_tiny_lora_goal(tmp_path, tiny_model_dir):
    (tmp_path / "rubrics").symlink_to(ROOT / "rubrics")
    goal = tiny_goal(tmp_path, tiny_model_dir, judge=True)
    db = tmp_path / "s.duckdb"
    full = harness("run", goal, "--db", db, cwd=tmp_path)
    assert full.returncode in (0, 1), full.stderr
    from harness.store import Store

    n_test = len(Store(db).examples_of("tinyrun", "test"))
    err = full.stderr
    for cand in ("zero-shot", "few-shot", "lora"):
        assert re.search(rf"^{cand}: generating {n_test}/{n_test} examples, [\d.]+ (examples/s|s/example), "
                         r"\d+:\d\d elapsed", err, re.M), err
        assert re.search(rf"^{cand}: judging instruction_following \d+/\d+ judgments, ", err, re.M), err
    steps = re.findall(r"^training lora (\d+)/(\d+) steps, [\d.]+ (?:steps/s|s/step), .*loss [\d.]+  val loss [\d.]+$",
                       err, re.M)
    assert steps and steps[-1][0] == steps[-1][1], err  # the last line: every step, with both losses
    for noise in NOISE:
        assert noise not in full.stdout + err, noise
    first = json.loads(harness("results", goal, "--db", db, "--json", cwd=tmp_path).stdout)
    lora_before = next(c for c in first["candidates"] if c["name"] == "lora")

    # A later partial run: --json prints nothing but the JSON on stdout.
    partial = harness("run", goal, "--db", db, "--only", "zero-shot", "--json", cwd=tmp_path)
    assert partial.returncode in (0, 1), partial.stderr
    assert json.loads(partial.stdout)["goal"] == "tinyrun"
    for noise in NOISE:
        assert noise not in partial.stderr, noise

    # results still show the LoRA candidate's verdict, from the earlier run, and say so.
    after = json.loads(harness("results", goal, "--db", db, "--json", cwd=tmp_path).stdout)
    lora = next(c for c in after["candidates"] if c["name"] == "lora")
    assert lora["from_earlier_run"] and lora["run_id"] == first["run"]["id"] != after["latest_run"]["id"]
    assert [v["status"] for v in lora["criteria"]] == [v["status"] for v in lora_before["criteria"]]
    table = harness("results", goal, "--db", db, cwd=tmp_path)
    assert table.returncode == 0, table.stderr
    assert re.search(r"^lora\s+accuracy >= 0.5", table.stdout, re.M)
    assert f"lora: result from run {first['run']['id']}" in table.stdout and "(earlier run)" in table.stdout

    # --quiet: no progress and no step lines, only the result.
    quiet = harness("run", goal, "--db", db, "--quiet", cwd=tmp_path)
    assert quiet.returncode in (0, 1), quiet.stderr
    assert "generating" not in quiet.stdout + quiet.stderr and "judging" not in quiet.stderr
    assert "verdicts of run" in quiet.stdout and quiet.stderr.strip() == ""


def test_results_json_from_a_goal_name_equals_the_goal_files_and_panel_list_shows_progress(tiny_run_project,
                                                                                           tmp_path):
    from harness.app.data import ensure_items
    from harness.goals import load_goal
    from harness.store import Store

    info = copy_project(tiny_run_project, tmp_path / "proj")
    db, goal_file = info["db"], info["goals_dir"] / f"{info['goal']}.yaml"
    store = Store(db)
    items = ensure_items(store, load_goal(goal_file), info["rubrics_dir"])  # drawn as the app draws them
    for it in items[:3]:
        for crit in ("formal", "empathetic"):
            store.put_rating(info["goal"], "ann", it.item_id, crit, score=4)
    store.put_rating(info["goal"], "bob", items[0].item_id, "formal", score=2)
    store.put_rating_note(info["goal"], "bob", items[0].item_id, comment="cut off", flagged=True)
    by_file = harness("results", goal_file, "--db", db, "--format", "json", cwd=info["root"])
    by_name = harness("results", info["goal"], "--db", db, "--format", "json", cwd=info["root"])
    assert by_file.returncode == by_name.returncode == 0, by_file.stderr + by_name.stderr
    res = json.loads(by_file.stdout)
    assert json.loads(by_name.stdout) == res and res["schema_version"] >= 2
    assert res["human"]["ratings"] == 7 and res["human"]["agreement"]["inter_rater"]

    listed = harness("panel", "list", info["goal"], "--db", db, "--json", cwd=info["root"])
    rows = {r["rater"]: r for r in json.loads(listed.stdout)}
    assert (rows["ann"]["items_done"], rows["ann"]["items"], rows["ann"]["ratings"]) == (3, 12, 6)
    assert (rows["bob"]["items_done"], rows["bob"]["flagged"], rows["bob"]["status"]) == (0, 1, "not invited")
