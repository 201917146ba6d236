"""A goal's names and options are checked before any work, by `harness check` and by `harness run
--dry-run` alike: each problem exits 2 naming the file, the line and the field, with no traceback."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from harness.cli import app

ROOT = Path(__file__).resolve().parent.parent

GOAL = """goal: g
data:
  path: d.jsonl
success:
  - metric: {metric}
    at_least: 0.5
candidates:
  - name: zero-shot
    kind: prompt
  - name: gpt
    kind: api
    provider: {provider}
    model: gpt-4o-mini
{extra}"""

# case: (what the goal gets wrong, the line and field it is reported at, a word of the message)
CASES = {
    "unknown judge": (dict(extra="judge:\n  model: bogus:xyz\n  rubrics: [tone]\n"), 15, "judge.model", "bogus"),
    "judge option typo": (dict(extra="judge:\n  model: openai:gpt-4o\n  rubrics: [tone]\n  temprature: 0.5\n"),
                          17, "judge.temprature", "temprature"),
    "unknown panel rubric": (dict(extra="human:\n  rubrics: [nosuchrubric]\n"), 15, "human.rubrics[0]", "nosuchrubric"),
    "unknown metric": (dict(metric="acuracy"), 5, "success[0].metric", "did you mean 'accuracy'"),
    "mistyped provider": (dict(provider="opneai"), 12, "candidates[1].provider", "openai"),
}


@pytest.fixture
def project(tmp_path, monkeypatch):
    rows = [{"messages": [{"role": "user", "content": f"question {i}"},
                          {"role": "assistant", "content": ["yes", "no"][i % 2]}]} for i in range(40)]
    (tmp_path / "d.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / "rubrics").symlink_to(ROOT / "rubrics")
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("command", ["check", "run --dry-run"])
def test_each_mistake_is_refused_before_any_work_at_its_line(project, case, command):
    fields, line, field, word = CASES[case]
    goal = project / "g.yaml"
    goal.write_text(GOAL.format(**{"metric": "accuracy", "provider": "openai", "extra": "", **fields}))
    db = project / "s.duckdb"
    args = ["check", str(goal), "--no-tokenizer"] if command == "check" else \
        ["run", str(goal), "--dry-run", "--db", str(db)]
    result = CliRunner().invoke(app, args)
    out = (result.stdout or "") + (result.stderr or "")
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert result.exit_code == 2 and "Traceback" not in out, out
    assert f"{goal}:{line} [{field}]" in out and word in out, out
    if db.exists():  # nothing was sealed, recorded or produced
        from harness.store import Store

        store = Store(db)
        assert store.runs("g") == [] and store.current_seal("g") is None and store.example_splits("g") == {}
    assert not (project / ".harness").exists()


ARGS_GOAL = """goal: g
data:
  path: d.jsonl
{metrics}success:
  - metric: {first}
    at_least: 0.9
    args: {{pattern: "^(yes|no)$"}}
  - metric: {second}
    at_least: 0.9
    args: {{pattern: "^yes$"}}
candidates:
  - name: zero-shot
    kind: prompt
"""


def test_one_metric_with_two_sets_of_args_is_refused_and_named_variants_are_not(project):
    """A metric name is scored once per candidate: a second criterion whose args differ would be
    decided on the first one's (a pattern half the outputs miss passed at 1.0)."""
    goal = project / "g.yaml"
    goal.write_text(ARGS_GOAL.format(metrics="", first="regex", second="regex"))
    result = CliRunner().invoke(app, ["check", str(goal), "--no-tokenizer"])
    out = (result.stdout or "") + (result.stderr or "")
    assert result.exit_code == 2 and "Traceback" not in out, out
    assert f"{goal}:10 [success[1].args]" in out and "differ from criterion 1's" in out and "metrics:" in out, out
    # The same args again, or none, are one metric; variants under names of their own are two.
    goal.write_text(ARGS_GOAL.format(metrics="", first="regex", second="regex").replace('"^yes$"', '"^(yes|no)$"'))
    assert CliRunner().invoke(app, ["check", str(goal), "--no-tokenizer"]).exit_code == 0
    named = "metrics:\n  - {name: both, metric: regex}\n  - {name: yes_only, metric: regex}\n"
    goal.write_text(ARGS_GOAL.format(metrics=named, first="both", second="yes_only"))
    result = CliRunner().invoke(app, ["check", str(goal), "--no-tokenizer"])
    assert result.exit_code == 0, result.stdout
    # A name declared without args is still one metric: two criteria with different args on it
    # are refused, and so is a criterion adding an arg the other lacks.
    named = "metrics:\n  - {name: fmt, metric: regex}\n"
    goal.write_text(ARGS_GOAL.format(metrics=named, first="fmt", second="fmt"))
    result = CliRunner().invoke(app, ["check", str(goal), "--no-tokenizer"])
    assert result.exit_code == 2 and "[success[1].args]" in (result.stdout or "") + (result.stderr or "")
    goal.write_text(ARGS_GOAL.format(metrics="", first="regex", second="regex").replace(
        '{pattern: "^yes$"}', '{pattern: "^(yes|no)$", ignore_case: true}'))
    result = CliRunner().invoke(app, ["check", str(goal), "--no-tokenizer"])
    assert result.exit_code == 2 and "[success[1].args]" in (result.stdout or "") + (result.stderr or "")
    # ...but args that contradict the name's `metrics:` entry are refused too.
    named = 'metrics:\n  - {name: both, metric: regex, args: {pattern: "^y"}}\n  - {name: yes_only, metric: regex}\n'
    goal.write_text(ARGS_GOAL.format(metrics=named, first="both", second="yes_only"))
    result = CliRunner().invoke(app, ["check", str(goal), "--no-tokenizer"])
    out = (result.stdout or "") + (result.stderr or "")
    assert result.exit_code == 2 and "[success[0].args]" in out and "`metrics:` entry" in out, out


def test_a_threshold_outside_the_metrics_scale_is_refused_at_its_line(project):
    """`at_most: 5` on a 0–1 share (meant as 5%) could never be missed; `at_least: 1.5` never met."""
    goal = project / "g.yaml"
    goal.write_text("goal: g\ndata:\n  path: d.jsonl\nsuccess:\n  - {metric: accuracy, at_least: 0.5}\n"
                    "  - {metric: contains, at_most: 5, args: {text: Acme}}\n  - {metric: rougeL, at_least: 1.5}\n"
                    "candidates:\n  - {name: zero-shot, kind: prompt}\n")
    result = CliRunner().invoke(app, ["check", str(goal), "--no-tokenizer"])
    out = (result.stdout or "") + (result.stderr or "")
    assert result.exit_code == 2 and "Traceback" not in out, out
    assert f"{goal}:6 [success[1].at_most]" in out and "(for 5% write 0.05)" in out
    assert f"{goal}:7 [success[2].at_least]" in out and "success[0]" not in out
