"""Rubric files: every shipped one loads; bad ones fail with file:line:field and did-you-mean."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from harness.errors import HarnessError, InputError
from harness.judge.rubric import SCALE, list_rubrics, load_rubric, parse_rubric
from harness.metric_names import parse_metric_name

ROOT = Path(__file__).resolve().parent.parent
RUBRICS = ROOT / "rubrics"

GOOD = textwrap.dedent("""\
    name: demo
    description: A demo rubric.
    criteria:
      - name: clarity
        description: Is it clear?
        scale:
          1: Unreadable.
          2: Hard to follow.
          3: Understandable with effort.
          4: Clear.
          5: Crystal clear.
    """)


def write(tmp_path: Path, text: str, name: str = "demo") -> Path:
    p = tmp_path / f"{name}.yaml"
    p.write_text(text, encoding="utf-8")
    return p


def problems(exc: InputError) -> list[tuple[int | None, str | None, str]]:
    return [(p.line, p.field, p.message) for p in exc.problems]


@pytest.mark.parametrize("name", list_rubrics(RUBRICS))
def test_every_shipped_rubric_loads(name):
    r = load_rubric(name, rubrics_dir=RUBRICS)
    assert r.name == name
    assert r.criteria
    for c in r.criteria:
        assert sorted(c.scale) == list(SCALE)
        assert all(c.scale[k].strip() for k in SCALE)
        # the same criterion must be addressable by its metric name
        parsed = parse_metric_name(f"judge.{name}.{c.name}")
        assert (parsed.source, parsed.rubric, parsed.criterion) == ("judge", name, c.name)
        assert r.criterion(c.name) is c


def test_required_rubrics_are_shipped():
    names = set(list_rubrics(RUBRICS))
    assert {"correctness", "helpfulness", "tone", "instruction_following"} <= names
    assert load_rubric("tone", RUBRICS).criterion_names == ["formal", "empathetic"]


def test_hash_ignores_layout_but_not_content(tmp_path):
    base = load_rubric(write(tmp_path, GOOD))
    # Same content, different layout and comments: same version.
    data = yaml.safe_load(GOOD)
    relaid = "# a comment\n" + yaml.safe_dump(data, default_flow_style=True, sort_keys=True)
    assert parse_rubric(relaid, expected_name="demo").hash == base.hash
    # One level's wording changed: a new version.
    data["criteria"][0]["scale"][3] = "Understandable, barely."
    assert parse_rubric(yaml.safe_dump(data), expected_name="demo").hash != base.hash
    assert len(base.hash) == 16


def test_unknown_top_level_key_names_line_and_suggests(tmp_path):
    text = GOOD.replace("description: A demo rubric.", "descriptin: A demo rubric.")
    with pytest.raises(InputError) as ei:
        load_rubric(write(tmp_path, text))
    probs = problems(ei.value)
    unknown = [p for p in probs if p[1] == "descriptin"]
    assert unknown and unknown[0][0] == 2
    assert "did you mean 'description'" in unknown[0][2]
    missing = [p for p in probs if p[1] == "description"]
    assert missing and "missing" in missing[0][2]
    assert str(tmp_path / "demo.yaml") + ":2" in str(ei.value)


def test_unknown_criterion_key_and_missing_level(tmp_path):
    text = GOOD.replace("description: Is it clear?", "descripton: Is it clear?").replace(
        "      3: Understandable with effort.\n", "")
    with pytest.raises(InputError) as ei:
        load_rubric(write(tmp_path, text))
    by_field = {p[1]: p for p in problems(ei.value)}
    assert by_field["criteria[0].descripton"][0] == 5
    assert "did you mean 'description'" in by_field["criteria[0].descripton"][2]
    scale = by_field["criteria[0].scale"]
    assert scale[0] == 6 and "missing level(s) 3" in scale[2]


def test_extra_level_and_empty_level(tmp_path):
    text = GOOD.replace("      5: Crystal clear.", "      5: ''\n      6: Beyond.")
    with pytest.raises(InputError) as ei:
        load_rubric(write(tmp_path, text))
    msg = str(ei.value)
    assert "unexpected level(s) 6" in msg


def test_duplicate_criteria_and_bad_names(tmp_path):
    data = yaml.safe_load(GOOD)
    data["criteria"].append(dict(data["criteria"][0]))
    with pytest.raises(InputError, match="duplicate criterion name"):
        parse_rubric(yaml.safe_dump(data))
    data = yaml.safe_load(GOOD)
    data["criteria"][0]["name"] = "has.dot"
    with pytest.raises(InputError) as ei:
        parse_rubric(yaml.safe_dump(data))
    assert ei.value.problems[0].field == "criteria[0].name" and "no dots" in ei.value.problems[0].message
    data = yaml.safe_load(GOOD)
    data["name"] = "my rubric"
    with pytest.raises(InputError) as ei:
        parse_rubric(yaml.safe_dump(data))
    assert [p.field for p in ei.value.problems] == ["name"] and "no dots or spaces" in str(ei.value)


def test_name_must_match_file(tmp_path):
    with pytest.raises(InputError) as ei:
        load_rubric(write(tmp_path, GOOD, name="other"))
    p = ei.value.problems[0]
    assert (p.line, p.field) == (1, "name") and "'other'" in p.message


def test_yaml_syntax_error_has_line(tmp_path):
    text = GOOD.replace("      4: Clear.", "      4: [Clear.")
    with pytest.raises(InputError) as ei:
        load_rubric(write(tmp_path, text))
    assert ei.value.problems[0].line is not None and ei.value.problems[0].line >= 10
    assert "invalid YAML" in ei.value.problems[0].message


def test_not_a_mapping(tmp_path):
    with pytest.raises(InputError, match="must be a mapping"):
        load_rubric(write(tmp_path, "- just\n- a list\n"))


def test_unknown_rubric_and_criterion_suggest():
    with pytest.raises(HarnessError, match="did you mean 'tone'"):
        load_rubric("tne", RUBRICS)
    with pytest.raises(HarnessError, match="did you mean 'formal'"):
        load_rubric("tone", RUBRICS).criterion("formall")


def test_load_by_path_and_list(tmp_path):
    p = write(tmp_path, GOOD)
    assert load_rubric(str(p)).source == str(p)
    assert load_rubric("demo", rubrics_dir=tmp_path).name == "demo"
    assert list_rubrics(tmp_path) == ["demo"]
    assert list_rubrics(tmp_path / "nope") == []
    with pytest.raises(InputError, match="not found"):
        load_rubric(str(tmp_path / "missing.yaml"))


def test_parse_metric_name():
    def parts(name):
        m = parse_metric_name(name)
        return m.source, m.rubric, m.criterion

    assert parts("judge.tone") == ("judge", "tone", None)
    assert parts("judge.tone.formal") == ("judge", "tone", "formal")
    assert parts("judge.instruction_following") == ("judge", "instruction_following", None)
    assert parts("human.tone.formal") == ("human", "tone", "formal")
    assert parse_metric_name("judge.tone.formal").with_source("human").text == "human.tone.formal"
    for plain in ("tone", "judge", "rougeL", "mypkg.scores:politeness", "tone.formal"):
        assert parts(plain) == ("metric", None, None)
    for bad in ("judge.", "judge.tone.", "judge.a.b.c", "human.", "human.a.b.c", "human..x"):
        with pytest.raises(HarnessError):
            parse_metric_name(bad)


def test_pure_core_imports_no_heavy_modules():
    code = ("import sys, harness.judge.rubric, harness.judge.prompt, harness.judge.judge, harness.judge\n"
            "bad = [m for m in ('torch','transformers','duckdb','openai','anthropic','streamlit','httpx') "
            "if m in sys.modules]\nprint(bad)\nassert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)
