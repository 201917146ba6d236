from pathlib import Path

import pytest

from harness.errors import InputError
from harness.goals import expand_sweeps, load_goal
from tests.helpers import chat, write_jsonl


@pytest.fixture
def data(tmp_path):
    return write_jsonl(tmp_path / "d.jsonl", [chat(f"q{i}", "a") for i in range(5)])


def goal_text(data, body):
    return f"goal: g\ndata:\n  path: {data}\n" + body


def test_unknown_key_suggests_the_right_one(tmp_path, data):
    p = tmp_path / "g.yaml"
    p.write_text(goal_text(data, "sucess:\n  - {metric: accuracy, at_least: 0.5}\n"))
    with pytest.raises(InputError) as e:
        load_goal(p)
    msgs = [str(x) for x in e.value.problems]
    assert any("sucess" in m and "did you mean 'success'" in m and ":4" in m for m in msgs), msgs


def test_nested_unknown_key_names_line_and_field(tmp_path, data):
    p = tmp_path / "g.yaml"
    p.write_text(goal_text(data, "  splt: {train: 0.8}\nsuccess:\n  - {metric: accuracy, at_least: 0.5}\n"))
    with pytest.raises(InputError) as e:
        load_goal(p)
    prob = e.value.problems[0]
    assert prob.line == 4 and prob.field == "data.splt" and "did you mean 'split'" in prob.message


def test_ratios_must_sum_to_one(tmp_path, data):
    p = tmp_path / "g.yaml"
    p.write_text(goal_text(data, "  split: {train: 0.8, validation: 0.2, test: 0.2}\n"
                                 "success:\n  - {metric: accuracy, at_least: 0.5}\n"))
    with pytest.raises(InputError) as e:
        load_goal(p)
    assert "sum to 1" in str(e.value) and e.value.problems[0].line == 4


def test_unknown_baseline_and_missing_data_are_both_reported(tmp_path):
    p = tmp_path / "g.yaml"
    p.write_text("goal: g\ndata:\n  path: nope.jsonl\nsuccess:\n"
                 "  - {metric: accuracy, improve_by: 10%, baseline: zero-shto}\n"
                 "candidates:\n  - {name: zero-shot, kind: prompt}\n")
    with pytest.raises(InputError) as e:
        load_goal(p)
    text = str(e.value)
    assert "nope.jsonl" in text and "not found" in text
    assert "zero-shto" in text and "did you mean 'zero-shot'" in text
    assert {pr.line for pr in e.value.problems} == {3, 5}


def test_criterion_needs_exactly_one_threshold(tmp_path, data):
    p = tmp_path / "g.yaml"
    p.write_text(goal_text(data, "success:\n  - {metric: accuracy, at_least: 0.5, at_most: 0.9}\n"))
    with pytest.raises(InputError, match="exactly one"):
        load_goal(p)


def test_relative_amounts_and_defaults(tmp_path, data):
    p = tmp_path / "g.yaml"
    p.write_text(goal_text(data, "success:\n  - {metric: off_topic_rate, reduce_by: 80%, baseline: base}\n"
                                 "  - {metric: rougeL, improve_by: 0.05, baseline: base}\n"
                                 "candidates:\n  - {name: base, kind: prompt}\n"))
    g = load_goal(p)
    assert g.confidence == 0.95
    assert (g.success[0].threshold, g.success[0].percent) == (0.8, True)
    assert (g.success[1].threshold, g.success[1].percent) == (0.05, False)
    assert g.model == "default"


def test_sweep_expands_lists_into_candidates():
    out = expand_sweeps([{"name": "lora", "kind": "lora", "r": [8, 16], "learning_rate": [1e-4, 2e-4],
                          "target_modules": ["q_proj", "v_proj"]}])
    assert [c["name"] for c in out] == ["lora-r8-lr0.0001", "lora-r8-lr0.0002", "lora-r16-lr0.0001",
                                        "lora-r16-lr0.0002"]
    assert all(c["target_modules"] == ["q_proj", "v_proj"] for c in out)


def test_yaml_syntax_error_names_line(tmp_path):
    p = tmp_path / "g.yaml"
    p.write_text("goal: g\ndata:\n  path: [unclosed\n")
    with pytest.raises(InputError) as e:
        load_goal(p)
    assert e.value.problems[0].line is not None and "invalid YAML" in str(e.value)


def test_init_template_is_a_valid_goal(tmp_path, monkeypatch):
    from harness.templates import write_starter

    monkeypatch.chdir(tmp_path)
    goal, rubric = write_starter("mygoal", tmp_path)
    write_jsonl(tmp_path / "data" / "mygoal.jsonl", [chat("q", "a")])
    g = load_goal(goal)
    assert g.goal == "mygoal" and any(c.baseline == "zero-shot" for c in g.success)
    assert g.data.leakage == "drop"  # a new goal never trains on copies of its test examples
    assert "criteria" in rubric.read_text()


def test_goal_and_candidate_names_are_checked_with_their_lines(tmp_path, data):
    p = tmp_path / "g.yaml"
    p.write_text(f"goal: my goal\ndata:\n  path: {data}\n"
                 "success:\n  - {metric: accuracy, at_least: 0.5}\n"
                 "candidates:\n  - {name: zero-shot, kind: prompt}\n  - {name: bad/name, kind: prompt}\n")
    with pytest.raises(InputError) as e:
        load_goal(p)
    found = {(x.field, x.line): x.message for x in e.value.problems}
    assert ("goal", 1) in found and "goal name 'my goal'" in found[("goal", 1)]
    assert ("candidates[1].name", 8) in found and "candidate name 'bad/name'" in found[("candidates[1].name", 8)]


@pytest.mark.parametrize("threshold,why", [
    (".nan", "not a finite number"), (".inf", "not a finite number"), ("1e400", "not a finite number"),
    ("yes", "takes a number"), ("-3", "negative"), ("'80%'", "not a percentage"),
])
def test_absolute_thresholds_must_be_finite_non_negative_numbers(tmp_path, data, threshold, why):
    p = tmp_path / "g.yaml"
    p.write_text(goal_text(data, f"success:\n  - {{metric: accuracy, at_least: {threshold}}}\n"))
    with pytest.raises(InputError) as e:
        load_goal(p)
    (prob,) = e.value.problems
    assert why in prob.message and prob.line == 5 and prob.field == "success[0].at_least", prob


def test_negative_reductions_and_unknown_versions_are_refused(tmp_path, data):
    p = tmp_path / "g.yaml"
    p.write_text(goal_text(data, "success:\n  - {metric: accuracy, reduce_by: '-50%', baseline: b}\n"))
    with pytest.raises(InputError, match="negative"):
        load_goal(p)
    p.write_text("version: 99\n" + goal_text(data, "success:\n  - {metric: accuracy, at_least: 0.5}\n"))
    with pytest.raises(InputError) as e:
        load_goal(p)
    assert "version 99 is not supported" in str(e.value) and e.value.problems[0].line == 1


def test_duplicate_keys_aliases_depth_and_huge_numbers_are_refused_fast(tmp_path, data):
    import time

    cases = {
        "dup": goal_text(data, "success:\n  - {metric: accuracy, at_least: 0.5}\nsuccess:\n  - {metric: x, at_least: 1}\n"),
        "laughs": "a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n" + "".join(
            f"{c}: &{c} [{', '.join(['*' + p] * 9)}]\n" for p, c in zip("abcdefgh", "bcdefghi")),
        "deep": "goal: " + "[" * 200 + "]" * 200 + "\n",
        "number": goal_text(data, "success:\n  - {metric: accuracy, at_least: " + "9" * 5000 + "}\n"),
    }
    expect = {"dup": "given twice (first on line 4)", "laughs": "through YAML aliases", "deep": "levels deep", "number": "digits"}
    for name, text in cases.items():
        p = tmp_path / f"{name}.yaml"
        p.write_text(text)
        start = time.perf_counter()
        with pytest.raises(InputError) as e:
            load_goal(p)
        assert time.perf_counter() - start < 1.0  # a bound on the attack, not a speed test
        assert expect[name] in str(e.value) and str(p) in str(e.value), str(e.value)


@pytest.mark.parametrize("where,key,line,field", [
    ("top", "? [a, b]\n: 1\n", 1, None),
    ("top", "? {k: v}\n: 1\n", 1, None),
    ("data", "  ? [path]\n  : x.jsonl\n", 3, "data"),
])
def test_a_list_or_mapping_as_a_key_is_refused_with_its_line(tmp_path, data, where, key, line, field):
    text = goal_text(data, "success:\n  - {metric: accuracy, at_least: 0.5}\n")
    text = key + text if where == "top" else text.replace("data:\n", "data:\n" + key, 1)
    p = tmp_path / "g.yaml"
    p.write_text(text)
    with pytest.raises(InputError) as e:
        load_goal(p)
    (prob,) = e.value.problems
    assert "a key must be a plain name" in prob.message and (prob.file, prob.line, prob.field) == (str(p), line, field)


@pytest.mark.parametrize("raw,why", [
    ("goal: caf\xe9\n".encode("latin-1"), "byte offset 9"),
    ("goal: g\n".encode("utf-16"), "UTF-16"),
    (b"\x00\x01\x02binary\xff", "binary"),
])
def test_goal_files_that_are_not_utf8_are_errors_with_line_and_offset(tmp_path, raw, why):
    p = tmp_path / "g.yaml"
    p.write_bytes(raw)
    with pytest.raises(InputError) as e:
        load_goal(p)
    assert why in str(e.value) and e.value.problems[0].line == 1


def test_a_folder_as_goal_or_data_and_an_empty_data_file_are_errors(tmp_path):
    from harness.data.formats import read_jsonl

    (tmp_path / "dir.yaml").mkdir()
    with pytest.raises(InputError, match="is a folder"):
        load_goal(tmp_path / "dir.yaml")
    (tmp_path / "empty.jsonl").write_text("")
    assert "no examples" in str(read_jsonl(tmp_path / "empty.jsonl")[1][0])
    (tmp_path / "folder.jsonl").mkdir()
    assert "is a folder" in str(read_jsonl(tmp_path / "folder.jsonl")[1][0])


@pytest.mark.skipif(not Path("/dev/zero").exists(), reason="needs /dev/zero")
def test_a_device_as_goal_or_data_path_is_refused_without_reading_it(tmp_path):
    from typer.testing import CliRunner

    from harness.cli import app

    goal = tmp_path / "g.yaml"
    goal.write_text(goal_text("/dev/zero", "success:\n  - {metric: accuracy, at_least: 0.5}\n"))
    runner = CliRunner()
    for target in ("/dev/zero", goal):
        result = runner.invoke(app, ["check", str(target), "--no-tokenizer"])
        out = (result.stdout or "") + (result.stderr or "")
        assert result.exit_code == 2 and "Traceback" not in out, out
        assert "/dev/zero" in out and "not a regular file" in out, out


@pytest.mark.skipif(not Path("/proc/self/maps").is_file(), reason="needs Linux /proc")
def test_a_file_whose_size_is_not_reported_is_read_only_up_to_the_bound():
    from harness.textfile import read_text

    assert Path("/proc/self/maps").stat().st_size == 0  # the size check alone would let it through
    with pytest.raises(InputError, match="more than 10 bytes"):
        read_text("/proc/self/maps", max_bytes=10)


def test_data_lines_with_huge_numbers_deep_nesting_or_lone_surrogates_are_line_errors(tmp_path):
    from harness.data.formats import read_jsonl

    p = tmp_path / "d.jsonl"
    p.write_text("\n".join([
        '{"text": "a", "label": ' + "9" * 5000 + "}",
        '{"text": ' + "[" * 500 + "]" * 500 + ', "label": "x"}',
        '{"text": "bad \\ud800 half", "label": "x"}',
        '{"text": "fine", "label": "x"}',
    ]) + "\n")
    examples, problems = read_jsonl(p)
    assert len(examples) == 1 and [pr.line for pr in problems] == [1, 2, 3]
    assert "surrogate" in problems[2].message and "levels deep" in problems[1].message


def test_a_sweep_is_capped(tmp_path, data):
    p = tmp_path / "g.yaml"
    p.write_text(goal_text(data, "success:\n  - {metric: accuracy, at_least: 0.5}\ncandidates:\n"
                                 "  - {name: l, kind: lora, r: [" + ", ".join(map(str, range(1, 1001))) + "]}\n"))
    with pytest.raises(InputError, match="expands to 1,000 candidates"):
        load_goal(p)


def _sweep_goal(tmp_path, data, entries: int, values: str = "[" + ", ".join(map(str, range(1, 257))) + "]") -> Path:
    p = tmp_path / "sweeps.yaml"
    p.write_text(goal_text(data, "success:\n  - {metric: accuracy, at_least: 0.5}\ncandidates:\n" + "".join(
        f"  - {{name: l{i}, kind: lora, r: {values}}}\n" for i in range(entries))))
    return p


def test_the_sweeps_of_all_entries_are_capped_together_before_any_is_expanded(tmp_path, data, monkeypatch):
    """Issue 11: the cap was per entry, so 1,500 entries of 256 expanded to 384,000 candidates.
    Five entries of 256 (each within its own cap) are refused by check and run --dry-run with
    the file, the line and the total, and nothing is expanded first."""
    from typer.testing import CliRunner

    import harness.goals
    from harness.cli import app

    def no_expansion(*_a, **_k):
        raise AssertionError("a sweep was expanded before the total was checked")

    monkeypatch.setattr(harness.goals.itertools, "product", no_expansion)
    p = _sweep_goal(tmp_path, data, 5)
    runner = CliRunner()
    for args in (["check", str(p), "--no-tokenizer"], ["run", str(p), "--dry-run", "--db", str(tmp_path / "s.duckdb")]):
        result = runner.invoke(app, args)
        out = (result.stdout or "") + (result.stderr or "")
        assert result.exit_code == 2 and "Traceback" not in out, (args, out)
        assert f"{p}:6" in out and "[candidates]" in out and "1,280 candidates in all; at most 1,024" in out, out
    assert not (tmp_path / "s.duckdb").exists()  # refused before the store was opened


def test_a_goal_with_too_many_values_is_refused_at_the_line_it_passes_the_bound(tmp_path, data):
    with pytest.raises(InputError) as e:
        load_goal(_sweep_goal(tmp_path, data, 1500, "[" + ",".join("0" * 256) + "]"))  # 384,000 candidates
    (prob,) = e.value.problems
    assert "more than 100,000 values" in prob.message and prob.line and 300 < prob.line < 500


def test_a_problem_after_a_sweep_is_at_the_entry_as_written(tmp_path, data):
    """A sweep expands one entry into several candidates: a problem of a later entry is at that
    entry's line and index, and one of a swept candidate at its entry's, named."""
    from harness.runner.validate import validate_goal

    p = tmp_path / "g.yaml"
    p.write_text(goal_text(data, "success:\n  - {metric: accuracy, at_least: 0.5}\ncandidates:\n"
                                 "  - {name: l, kind: lora, r: [4, 8], epochs: 1}\n"
                                 "  - name: p\n    kind: prompt\n    shots: -1\n"
                                 "  - {name: m, kind: lora, r: [2, 3], lora_dropout: 7}\n"))
    goal = load_goal(p)
    assert [c.name for c in goal.candidates] == ["l-r4", "l-r8", "p", "m-r2", "m-r3"]
    assert [goal.entry_of(i) for i in range(5)] == [0, 0, 1, 2, 2]
    with pytest.raises(InputError) as err:
        validate_goal(goal)
    lines = p.read_text().splitlines()
    problems = {pr.field: pr for pr in err.value.problems}
    shots = problems["candidates[1].shots"]
    assert lines[shots.line - 1].strip().startswith("shots:")
    swept = [pr for f, pr in problems.items() if f.startswith("candidates[2]")]
    assert swept and all("(swept from 'm')" in pr.message and "m, kind: lora" in lines[pr.line - 1] for pr in swept)
