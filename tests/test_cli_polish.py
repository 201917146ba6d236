"""The CLI as read at 80 columns: plain help for every command, a verdict table that does not
wrap its cells apart, run ids never cut, hints that keep the --db used, read-only commands that
refuse a missing store, and the app started without Streamlit's Deploy button."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest

from tests.helpers import ROOT, write_eval_goal, write_jsonl

LABELS = ["billing", "shipping", "technical"]


def harness(*args, columns: int = 80, timeout: int = 300):
    return subprocess.run([sys.executable, "-m", "harness", *map(str, args)], cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout, env=dict(os.environ, COLUMNS=str(columns)))


def _commands():
    import typer

    from harness.cli import app

    def walk(cmd, path):
        yield path, cmd
        for name, sub in sorted(getattr(cmd, "commands", {}).items()):
            yield from walk(sub, path + [name])

    return list(walk(typer.main.get_command(app), []))


@pytest.mark.parametrize("path", [p for p, _ in _commands()], ids=lambda p: " ".join(p) or "harness")
def test_help_shows_no_type_placeholders_and_every_option_says_what_it_does(path):
    from typer.testing import CliRunner

    from harness.cli import app

    out = CliRunner().invoke(app, [*path, "--help"], env={"COLUMNS": "80"}).output
    assert not re.findall(r"<[a-z_\[\]]+>|\{[A-Za-z_]+\}", out), out
    cmd = next(c for p, c in _commands() if p == path)
    unexplained = [p.name for p in cmd.params if getattr(p, "param_type_name", "") == "option" and not p.help]
    assert not unexplained, f"options without help in `harness {' '.join(path)}`: {unexplained}"
    assert all(len(line) <= 80 for line in out.splitlines()), out


@pytest.fixture
def project(tmp_path):
    rows = [{"text": f"ticket {i}: help with case {i * 37 % 101}", "label": LABELS[i % 3]} for i in range(60)]
    data = write_jsonl(tmp_path / "data.jsonl", rows)
    good = write_jsonl(tmp_path / "good.jsonl", [{"input": r["text"], "output": r["label"]} for r in rows])
    half = write_jsonl(tmp_path / "half.jsonl", [{"input": r["text"], "output": r["label"] if i % 2 else "billing"}
                                                 for i, r in enumerate(rows)])
    goal = write_eval_goal(tmp_path / "g.yaml", "outs", data,
                           success=[{"metric": "accuracy", "at_least": 0.8},
                                    {"metric": "accuracy", "improve_by": "10%", "baseline": "a-half-right-baseline"}],
                           candidates=[{"name": "a-half-right-baseline", "kind": "file", "path": half},
                                       {"name": "all-right", "kind": "file", "path": good}])
    return goal, tmp_path / "s.duckdb"


def test_the_verdict_table_reads_at_80_columns_and_the_hint_keeps_the_db(project):
    goal, db = project
    r = harness("run", goal, "--db", db)
    assert r.returncode == 0, r.stderr
    assert f"harness results {goal} --db {db}" in r.stdout and f"harness app --db {db}" in r.stdout
    res = json.loads(harness("results", goal, "--db", db, "--json").stdout)
    table = harness("results", goal, "--db", db)
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert all(len(line) <= 80 for line in lines), table.stdout
    for cand in res["candidates"]:
        first = next(line for line in lines if line.startswith(cand["name"] + " "))  # the name, never broken
        v = cand["criteria"][0]
        cell = f"{v['value']:.3g} [{v['ci'][0]:.3g}, {v['ci'][1]:.3g}]"
        assert cell in first and v["status"] in first, (cell, first)  # value, interval and verdict on one line
    assert sum(1 for line in lines if "accuracy >= 0.8" in line) == 2  # one row per candidate and criterion
    assert "intervals: accuracy Clopper-Pearson (" in table.stdout
    rel = res["candidates"][1]["criteria"][1]  # all-right vs the baseline: a change, in percent
    assert f"{rel['value'] * 100:+.3g}% [{rel['ci'][0] * 100:+.3g}%, {rel['ci'][1] * 100:+.3g}%]" in table.stdout


def test_runs_never_cuts_a_run_id_and_results_says_unfinished(project):
    from harness.store import Store

    goal, db = project
    assert harness("run", goal, "--db", db).returncode == 0
    store = Store(db)
    last = store.runs("outs")[0]
    store.start_run({"run_id": "20991231-235959-killed", "goal": "outs", "goal_path": str(goal), "config_hash": "x",
                     "data_hash": last["data_hash"], "test_hash": last["test_hash"], "config": {}})
    for columns in (80, 70):
        runs = harness("runs", goal, "--db", db, columns=columns)
        assert last["run_id"] in runs.stdout and "20991231-235959-killed" in runs.stdout, runs.stdout
    r = harness("results", goal, "--db", db)
    assert r.returncode == 1 and "unfinished" in r.stderr and "20991231-235959-killed" in r.stderr


@pytest.mark.parametrize("args", [("report", "{goal}"),  # export: tests/test_cli.py
                                  ("ratings", "export", "{goal}"), ("panel", "list", "outs")])
def test_read_only_commands_refuse_a_missing_store_and_make_none(project, tmp_path, args):
    goal, _ = project
    missing = tmp_path / "nowhere" / "s.duckdb"
    r = harness(*[a.format(goal=goal) for a in args], "--db", missing)
    assert r.returncode == 2 and "no store at" in r.stderr, r.stdout + r.stderr
    assert not missing.exists() and not missing.parent.exists()


def test_the_app_starts_without_the_deploy_button(monkeypatch):
    import tomllib

    from typer.testing import CliRunner

    from harness.cli import app

    assert tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text())["client"]["toolbarMode"] == "minimal"
    started = []
    monkeypatch.setattr(subprocess, "call", lambda cmd, env=None: started.append(cmd) or 0)
    assert CliRunner().invoke(app, ["app", "--port", "8999"]).exit_code == 0
    cmd = started[0]
    assert cmd[cmd.index("--client.toolbarMode") + 1] == "minimal"
