"""Fuzzing the front door: seeded generators of malformed goal YAML and data JSONL, run through
``harness check`` in-process. Whatever the input, the exit code is 0, 1 or 2, a bad input is 2,
nothing prints a traceback, and an error names the file it is about."""
from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from harness.cli import app
from tests.helpers import chat

N_GOALS = 320
N_DATA = 320

_VALUES = [None, True, False, 0, -1, 1, 0.5, -3.5, 1e400, float("nan"), "", "x", "80%", "-50%", "yes", [], {},
           [1, 2], {"a": 1}, "é\u200b\u202e", "9" * 40, "..", "/etc/passwd", "local:default", "bogus:xyz"]
_KEYS = ["goal", "data", "success", "candidates", "judge", "human", "metrics", "decoding", "confidence",
         "multiplicity", "version", "task", "model", "system_prompt", "prices", "sucess", "path", "split",
         "metric", "at_least", "at_most", "reduce_by", "improve_by", "baseline", "name", "kind", "shots",
         "r", "epochs", "leakage", "format", "rubrics", "mode", "items", "provider", "train", "test", "seed"]


def _base_goal(data: Path) -> dict:
    return {
        "goal": "fuzz",
        "data": {"path": str(data), "split": {"train": 0.5, "validation": 0.0, "test": 0.5, "seed": 1}},
        "success": [{"metric": "accuracy", "at_least": 0.5},
                    {"metric": "accuracy", "improve_by": "10%", "baseline": "zero-shot"}],
        "candidates": [{"name": "zero-shot", "kind": "prompt"}, {"name": "few", "kind": "prompt", "shots": 2}],
    }


def _mutate(node, rng: random.Random, depth: int = 0):
    """One random change somewhere in a goal document."""
    if isinstance(node, dict) and node and rng.random() < 0.7:
        key = rng.choice(list(node))
        roll = rng.random()
        if roll < 0.2:
            node.pop(key)
        elif roll < 0.35:
            node[rng.choice(_KEYS)] = rng.choice(_VALUES)
        elif roll < 0.7 and isinstance(node[key], (dict, list)):
            _mutate(node[key], rng, depth + 1)
        else:
            node[key] = rng.choice(_VALUES)
    elif isinstance(node, list) and node and rng.random() < 0.7:
        i = rng.randrange(len(node))
        if isinstance(node[i], (dict, list)) and rng.random() < 0.6:
            _mutate(node[i], rng, depth + 1)
        else:
            node[i] = rng.choice(_VALUES)
    return node


_COMPLEX_KEYS = ["? [a, b]\n: 1\n", "? {k: v}\n: 1\n", "? [goal]\n: fuzz\n", "? - x\n  - y\n: 2\n"]


def _goal_text(data: Path, rng: random.Random) -> tuple[bytes, bool]:
    """A goal file's bytes, and whether it is known to be invalid (cheaply, by construction:
    the mutations of values are not classified, the structural breakages are)."""
    doc = _base_goal(data)
    for _ in range(rng.randint(1, 4)):
        _mutate(doc, rng)
    text = yaml.safe_dump(doc, sort_keys=False, allow_unicode=True)
    invalid = False
    roll = rng.random()
    if roll < 0.1:  # truncated mid-file
        text = text[: rng.randrange(1, max(2, len(text)))]
    elif roll < 0.15:
        text = text.replace("goal: fuzz", "goal: fuzz\ngoal: again", 1)
        invalid = "goal: fuzz" in text  # a duplicate key (if the mutations kept the line)
    elif roll < 0.2:
        text = "x: &a [1, 2]\ny: [*a, *a]\n" + text
        invalid = True  # x and y are no goal keys
    elif roll < 0.25:
        text += "deep: " + "[" * rng.randint(30, 300) + "]" * 300 + "\n"
        invalid = True  # too deep, unbalanced, or at least an unknown key
    elif roll < 0.3:
        pos = rng.randrange(len(text))
        text = text[:pos] + rng.choice(["\t", ":", "- ", "{", "]", "'", '"', "\x00", "%"]) + text[pos:]
    elif roll < 0.37:  # a list or mapping as a key, at the top or inside a mapping
        key = rng.choice(_COMPLEX_KEYS)
        nested = rng.random() < 0.5 and "\ndata:\n  " in text
        text = (text.replace("\ndata:\n", "\ndata:\n" + "".join("  " + ln + "\n" for ln in key.splitlines()), 1)
                if nested else key + text)
        invalid = True
    raw = text.encode("utf-8", "surrogatepass")
    roll = rng.random()
    if roll < 0.05:
        raw, invalid = text.encode("utf-16"), True
    elif roll < 0.1:
        invalid = invalid or b"fuzz" in raw
        raw = raw.replace(b"fuzz", "f\xfczz".encode("latin-1"), 1)
    elif roll < 0.12:
        raw, invalid = bytes(rng.randrange(256) for _ in range(rng.randint(1, 200))), True
    return raw, invalid


def _good_rows(n: int = 12) -> list[dict]:
    labels = ["billing", "shipping", "technical"]
    return [chat(f"message number {i} about {labels[i % 3]}", labels[i % 3], system="Route it.") for i in range(n)]


def _data_text(rng: random.Random) -> tuple[bytes, bool]:
    """A data file's bytes, and whether it is known to be invalid (by construction)."""
    rows: list = _good_rows()
    lines = [json.dumps(r, ensure_ascii=False) for r in rows]
    invalid = False
    for _ in range(rng.randint(1, 3)):
        i = rng.randrange(len(lines))
        roll = rng.random()
        rec = rows[i]
        if roll < 0.15:
            lines[i] = lines[i][: rng.randrange(1, len(lines[i]))]                       # truncated JSON
            invalid = True
        elif roll < 0.3:
            msg = rng.choice(rec["messages"])
            msg[rng.choice(["role", "content", "extra"])] = rng.choice(_VALUES[:16])
            lines[i] = json.dumps(rec, ensure_ascii=False, allow_nan=True)
        elif roll < 0.4:
            lines[i] = json.dumps(rng.choice([[], 3, "text", None, {"messages": []}, {"prompt": 1, "completion": []},
                                              {"text": "t"}, {"label": "x"}, {"messages": [{"role": "user"}]}]))
        elif roll < 0.5:
            lines[i] = '{"text": "a", "label": ' + "9" * rng.choice([50, 5000]) + "}"
            invalid = True  # a number as label, and a text record among chat records
        elif roll < 0.6:
            lines[i] = '{"messages": ' + "[" * rng.randint(50, 2000) + "]" * 2000 + "}"
            invalid = True
        elif roll < 0.7:
            lines[i] = lines[i].replace("message", "\\ud800 message", 1)
        elif roll < 0.8:
            lines[i] = json.dumps({"prompt": "p", "completion": "c"})                        # mixed formats
            invalid = True
        elif roll < 0.9:
            lines, invalid = [], True                                                     # empty file
            break
        else:
            lines[i] = "\x00\x01" + lines[i]
            invalid = True
    text = "\n".join(lines) + ("\n" if lines else "")
    raw = text.encode("utf-8")
    roll = rng.random()
    if roll < 0.05:
        raw = codecs_bom() + raw
    elif roll < 0.1:
        raw, invalid = text.encode("utf-16"), True
    elif roll < 0.15:
        invalid = invalid or b"message" in raw
        raw = raw.replace(b"message", "m\xe9ssage".encode("cp1252"), 1)
    elif roll < 0.18:
        raw = text.replace("\n", "\r\n").encode("utf-8")
    return raw, invalid


def codecs_bom() -> bytes:
    import codecs

    return codecs.BOM_UTF8


def _check(runner: CliRunner, goal: Path):
    result = runner.invoke(app, ["check", str(goal), "--no-tokenizer"], catch_exceptions=True)
    return result


def _assert_clean(result, files: list[Path], case: str, invalid: bool = False) -> None:
    out = (result.stdout or "") + (result.stderr or "")
    assert result.exception is None or isinstance(result.exception, SystemExit), (case, repr(result.exception))
    assert result.exit_code in (0, 1, 2), (case, result.exit_code, out[-2000:])
    if invalid:  # known to be invalid by construction: refused as bad input
        assert result.exit_code == 2, (case, result.exit_code, out[-2000:])
    assert "Traceback" not in out, (case, out[-2000:])
    if result.exit_code == 2:
        assert any(str(f) in out for f in files), (case, out[-2000:])


@pytest.fixture(scope="module")
def runner():
    return CliRunner()


def test_fuzzed_goal_files_exit_cleanly(tmp_path, runner):
    data = tmp_path / "data.jsonl"
    data.write_text("\n".join(json.dumps(r) for r in _good_rows()) + "\n", encoding="utf-8")
    rng = random.Random(20261202)
    codes = {0: 0, 1: 0, 2: 0}
    known_invalid = 0
    for i in range(N_GOALS):
        goal = tmp_path / f"g{i}.yaml"
        raw, invalid = _goal_text(data, rng)
        goal.write_bytes(raw)
        result = _check(runner, goal)
        _assert_clean(result, [goal, data], f"goal case {i}: {goal.read_bytes()[:400]!r}", invalid)
        codes[result.exit_code] += 1
        known_invalid += invalid
    assert codes[2] > N_GOALS // 3  # most mutations are invalid, and are refused as such
    assert known_invalid > N_GOALS // 5  # the known-invalid assertion above was exercised


def test_fuzzed_data_files_exit_cleanly(tmp_path, runner):
    rng = random.Random(12022026)
    codes = {0: 0, 1: 0, 2: 0}
    known_invalid = 0
    for i in range(N_DATA):
        data = tmp_path / f"d{i}.jsonl"
        raw, invalid = _data_text(rng)
        data.write_bytes(raw)
        goal = tmp_path / f"g{i}.yaml"
        goal.write_text(yaml.safe_dump(_base_goal(data), sort_keys=False), encoding="utf-8")
        result = _check(runner, goal)
        _assert_clean(result, [goal, data], f"data case {i}: {data.read_bytes()[:400]!r}", invalid)
        codes[result.exit_code] += 1
        known_invalid += invalid
    assert codes[2] > N_DATA // 3 and codes[0] + codes[1] > 0
    assert known_invalid > N_DATA // 3
