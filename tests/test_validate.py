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
