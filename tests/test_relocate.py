"""A store moves with its folder: adapters live beside it and are stored relative to it, so a
project copied elsewhere still exports, reports and reruns without retraining."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest
import yaml

from tests.helpers import ROOT, store_at_version, tiny_goal


def harness(*args, cwd):
    env = {k: v for k, v in os.environ.items() if k != "HARNESS_DB"}  # the default store: cwd/.harness
    return subprocess.run([sys.executable, "-m", "harness", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, env=env, timeout=600)


@pytest.mark.slow
def test_a_project_copied_elsewhere_exports_and_plans_nothing(tmp_path, tiny_model_dir):
    project = tmp_path / "project"
    goal_file = tiny_goal(project, tiny_model_dir, judge=False, human_items=4)
    doc = yaml.safe_load(goal_file.read_text())
    doc["data"]["path"] = "routing.jsonl"  # found beside the goal file, wherever the project is
    goal_file.write_text(yaml.safe_dump(doc, sort_keys=False))
    shutil.copytree(ROOT / "rubrics", project / "rubrics")
    first = harness("run", goal_file.name, "-q", cwd=project)
    assert first.returncode in (0, 1), first.stderr
    assert (project / ".harness" / "adapters").is_dir()

    moved = tmp_path / "elsewhere" / "copy"
    shutil.copytree(project, moved)
    shutil.rmtree(project)  # nothing may still point at the old folder
    db = moved / ".harness" / "harness.duckdb"
    away = tmp_path / "somewhere-else"
    away.mkdir()

    out = away / "exported"
    export = harness("export", moved / goal_file.name, "lora", "--db", db, "--out", out, cwd=away)
    assert export.returncode == 0, export.stderr
    assert (out / "adapter_config.json").is_file()
    for cwd, extra in ((away, ["--db", db]), (moved, [])):
        dry = harness("run", moved / goal_file.name, "--dry-run", *extra, cwd=cwd)
        assert dry.returncode == 0, dry.stderr
        assert "0 train/generate/judge units to do" in " ".join(dry.stdout.split()), dry.stdout
    res = harness("results", moved / goal_file.name, "--db", db, "--json", cwd=away)
    lora = next(c for c in json.loads(res.stdout)["candidates"] if c["name"] == "lora")
    assert Path(lora["adapter_path"]).is_relative_to(moved.resolve()) and Path(lora["adapter_path"]).is_dir()


def test_artifact_paths_are_stored_relative_to_the_store_and_read_back_absolute(tmp_path):
    from harness.store import Store

    store = Store(tmp_path / "s" / "harness.duckdb")
    inside, outside = tmp_path / "s" / "adapters" / "g" / "lora-1", tmp_path / "other" / "lora-2"
    store.put_candidate("r1", {"name": "a", "kind": "lora", "adapter_path": str(inside)})
    store.put_candidate("r1", {"name": "b", "kind": "lora"})
    store.update_candidate("r1", "b", adapter_path=str(outside))
    raw = {r["name"]: r["adapter_path"] for r in store.query("SELECT name, adapter_path FROM candidates")}
    assert raw == {"a": "adapters/g/lora-1", "b": str(outside.resolve())}
    rows = {r["name"]: r["adapter_path"] for r in store.candidates("r1")}
    assert rows == {"a": str(inside.resolve()), "b": str(outside.resolve())}


def test_m010_rewrites_paths_stored_relative_to_the_working_folder(tmp_path, monkeypatch):
    """A version-9 store of the default layout (``.harness/harness.duckdb`` with adapters stored as
    ``.harness/adapters/...``, relative to where harness ran) reads from anywhere after m010; a path
    found in neither place is kept as it was stored, for a person to resolve."""
    from harness.store import MIGRATIONS, Store, migrate

    folder = tmp_path / "proj" / ".harness"
    folder.mkdir(parents=True)
    path = folder / "harness.duckdb"
    con = store_at_version(path, 9)
    absolute = tmp_path / "proj" / ".harness" / "adapters" / "g" / "abs-1"
    (folder / "adapters" / "g" / "lora-1").mkdir(parents=True)  # where the default layout put it
    for name, stored in (("rel", ".harness/adapters/g/lora-1"), ("abs", str(absolute)), ("gone", "work/x/lora-9"),
                         ("lost", ".harness/adapters/g/lora-2")):
        con.execute("INSERT INTO candidates (run_id, name, kind, adapter_path) VALUES ('r1', ?, 'lora', ?)",
                    [name, stored])
    con.close()
    monkeypatch.chdir(tmp_path)  # not the folder the paths were written from
    store = Store(path)
    assert store.schema_version() == len(MIGRATIONS)
    raw = {r["name"]: r["adapter_path"] for r in store.query("SELECT name, adapter_path FROM candidates")}
    assert raw["rel"] == "adapters/g/lora-1" and raw["abs"] == "adapters/g/abs-1"
    assert raw["gone"] == "work/x/lora-9" and raw["lost"] == ".harness/adapters/g/lora-2"  # found nowhere: kept
    assert store.latest_artifact("g", "rel") is None  # no run row; candidates() resolves instead
    rows = {r["name"]: r["adapter_path"] for r in store.candidates("r1")}
    assert rows["rel"] == str(folder.resolve() / "adapters" / "g" / "lora-1")
    con = duckdb.connect(str(tmp_path / "fresh.duckdb"))
    assert migrate(con) == len(MIGRATIONS)  # on a blank database the rewrite has nothing to do
    con.close()
