"""Every verdict says which interval and which multiplicity rule decided it — in the CLI table,
the report, ``results --format json`` and the app — for a goal of two ``kind: file`` candidates
(no model). Holm over the two decides both at 97.5% first; "tuned" meets the goal there and
leaves the family, so "base" is decided again at 95%. The report's chart says the levels its
intervals are at; a judge no human checked is marked in the CLI table and the report."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from harness import intervals
from tests.helpers import ROOT, write_eval_goal, write_jsonl

LABELS = ["billing", "shipping", "technical", "account"]
HOLM = "Holm over 2 candidates"


@pytest.fixture(scope="module")
def two_candidates(tmp_path_factory):
    """A classification goal (accuracy >= 0.6; accuracy improve_by 5% vs "base") run on two
    stored output files: "tuned" right on 170 of 200, "base" on 140."""
    tmp = tmp_path_factory.mktemp("display")
    rows = [{"text": f"ticket {i}: customer needs help with case {i * 31 % 997}", "label": LABELS[i % 4]}
            for i in range(200)]
    data = write_jsonl(tmp / "data.jsonl", rows)
    cands = []
    for name, right in (("tuned", 170), ("base", 140)):
        outs = [{"input": r["text"], "output": r["label"] if i < right else LABELS[(i + 1) % 4]}
                for i, r in enumerate(rows)]
        cands.append({"name": name, "kind": "file", "path": write_jsonl(tmp / f"{name}.jsonl", outs)})
    goal = write_eval_goal(tmp / "g.yaml", "shown", data, candidates=cands,
                           success=[{"metric": "accuracy", "at_least": 0.6},
                                    {"metric": "accuracy", "improve_by": "5%", "baseline": "base"}])
    db = tmp / "s.duckdb"
    run = _harness("run", goal, "--db", db, "--quiet", cwd=tmp)
    assert run.returncode in (0, 1), run.stderr[-2000:]
    return {"tmp": tmp, "goal": goal, "db": db}


def _harness(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "harness", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd or ROOT, timeout=300, env=_env())


def _env():
    import os

    return {**os.environ, "COLUMNS": "200"}


def test_results_json_names_interval_level_and_rule(two_candidates):
    r = _harness("results", two_candidates["goal"], "--db", two_candidates["db"], "--format", "json",
                 cwd=two_candidates["tmp"])
    assert r.returncode == 0, r.stderr
    res = json.loads(r.stdout)
    tuned = next(c for c in res["candidates"] if c["name"] == "tuned")
    absolute, relative = tuned["criteria"]
    assert absolute["interval"] == intervals.CLOPPER_PEARSON and relative["interval"] == intervals.PAIRED_RATIO_SCORE
    assert absolute["multiplicity"] == relative["multiplicity"] == HOLM
    assert absolute["confidence"] == relative["confidence"] == pytest.approx(0.975)
    base = next(c for c in res["candidates"] if c["name"] == "base")
    assert base["criteria"][0]["confidence"] == pytest.approx(0.95) and base["criteria"][0]["multiplicity"] == HOLM
    assert absolute["judge_validated"] is None  # not a judge criterion


def test_cli_table_names_interval_level_and_rule(two_candidates):
    r = _harness("results", two_candidates["goal"], "--db", two_candidates["db"], cwd=two_candidates["tmp"])
    assert r.returncode in (0, 1), r.stderr
    out = " ".join(r.stdout.split())
    assert HOLM in out
    assert "Clopper-Pearson (95%, 97.5%)" in out and "SCAS (95%, 97.5%)" in out, out


def test_report_names_interval_level_and_rule_and_its_chart_says_the_level(two_candidates):
    html = two_candidates["tmp"] / "report.html"
    r = _harness("report", two_candidates["goal"], "--db", two_candidates["db"], "--out", html,
                 cwd=two_candidates["tmp"])
    assert r.returncode == 0, r.stderr
    text = html.read_text()
    assert f"{intervals.CLOPPER_PEARSON}, 97.5%" in text and f"{intervals.PAIRED_RATIO_SCORE}, 97.5%" in text
    assert f"{intervals.CLOPPER_PEARSON}, 95%" in text and HOLM in text
    # The chart shows the intervals the verdicts rest on and says their levels (not the goal's 95% alone).
    assert "accuracy per candidate (value, 95% / 97.5% interval)" in text


def test_the_app_names_interval_level_and_rule(two_candidates, monkeypatch):
    pytest.importorskip("streamlit")
    from tests.helpers import app_on_localhost

    with app_on_localhost(monkeypatch, two_candidates["db"], two_candidates["goal"].parent) as at:
        assert not at.exception, [e.value for e in at.exception]
        shown = "\n".join(str(x.value) for x in [*at.caption, *at.markdown])
    assert f"Across candidates: {HOLM}" in shown
    assert f"{intervals.CLOPPER_PEARSON}, 97.5% two-sided; {HOLM}" in shown
    assert f"{intervals.PAIRED_RATIO_SCORE}, 97.5% two-sided; {HOLM}" in shown


def test_a_judge_no_human_checked_is_marked_in_the_cli_table_and_the_report(two_candidates):
    """judge_validated false (here set on the stored results as a judge criterion would have it)
    shows a short mark in the CLI verdict table and in the report's cell."""
    from types import SimpleNamespace

    from harness import report
    from harness.cli import _verdict_table
    from harness.goals import load_goal
    from harness.results import results_dict
    from harness.store import Store

    goal = load_goal(two_candidates["goal"])
    res = results_dict(Store(two_candidates["db"]), goal.goal)
    res["candidates"][0]["criteria"][0]["judge_validated"] = False
    from rich.console import Console

    console = Console(width=120, record=True)
    console.print(_verdict_table(goal.success, res))
    assert console.export_text().count("judge not validated") == 1
    doc = SimpleNamespace(lines=[])
    report._verdict_section(doc, goal, res)
    assert sum("⚠ judge not validated" in line for line in doc.lines) == 1


def test_a_change_is_shown_in_its_own_units_absolute_or_relative(two_candidates):
    """improve_by 0.05 is an absolute gain (shown +0.15), improve_by 5% a share of the baseline
    (shown +21.4%): the JSON says which (relative), and the table and a name-only results follow it."""
    tmp = two_candidates["tmp"]
    goal = write_eval_goal(tmp / "units.yaml", "units", tmp / "data.jsonl",
                           candidates=[{"name": n, "kind": "file", "path": str(tmp / f"{n}.jsonl")}
                                       for n in ("tuned", "base")],
                           success=[{"metric": "accuracy", "improve_by": 0.05, "baseline": "base"},
                                    {"metric": "accuracy", "improve_by": "5%", "baseline": "base"}])
    db = tmp / "units.duckdb"
    run = _harness("run", goal, "--db", db, cwd=tmp)
    assert run.returncode in (0, 1), run.stderr[-2000:]
    res = json.loads(_harness("results", goal, "--db", db, "--format", "json").stdout)
    absolute, relative = next(c for c in res["candidates"] if c["name"] == "tuned")["criteria"]
    assert absolute["relative"] is False and relative["relative"] is True
    assert absolute["value"] == pytest.approx(0.15) and relative["value"] == pytest.approx(30 / 140)
    for table in (run.stdout, _harness("results", "units", "--db", db).stdout):
        assert "+0.15 [" in table and "+21.4% [" in table and "+15%" not in table


@pytest.mark.parametrize("relative, label, value", [(True, "30%", "+25% [+10%, +40%]"),
                                                    (None, "30%", "+25% [+10%, +40%]"),
                                                    (False, 0.3, "+0.25 [+0.1, +0.4]")])
def test_a_stored_change_reads_in_the_same_units_in_its_label_and_its_value(relative, label, value):
    """A run stored before m014 (relative unknown) reads in percent in both places."""
    from harness.cli import _stored_criteria, _value_cell

    v = {"metric": "m", "op": "improve_by", "baseline": "base", "threshold": 0.3, "relative": relative,
         "value": 0.25, "ci": [0.1, 0.4]}
    crit, = _stored_criteria({"candidates": [{"criteria": [v]}]})
    assert crit.improve_by == label
    assert _value_cell(v) == value
