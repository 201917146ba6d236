"""Rule checks: each output gets pass/score/reason; the metric is the pass rate."""
from __future__ import annotations

import pytest

from harness.data.formats import make_example
from harness.errors import InputError
from harness.metrics import CheckResult, compute_metric


def run(name: str, outputs: list[str], **args):
    examples = [make_example("completion", [{"role": "user", "content": "q"}], "ref")] * len(outputs)
    return compute_metric(name, outputs, examples, **args)


# ---------------------------------------------------------------- python_error_handling

WITH_TRY = """Here you go:
```python
def load(path):
    try:
        return open(path).read()
    except OSError as exc:
        raise RuntimeError(path) from exc
```
"""
TRY_IN_STRING = '''```python
def load(path):
    # try: we should try/except here
    note = "try: pass\\nexcept: pass"
    return open(path).read()
```'''
SYNTAX_ERROR = """```python
def load(path)
    try:
        return open(path).read()
    except OSError:
        pass
```"""
TRY_FINALLY_ONLY = """try:
    x = 1
finally:
    x = 2
"""
BARE_CODE = "import json\ntry:\n    json.loads('{')\nexcept ValueError:\n    pass\n"


def test_python_error_handling_uses_the_ast():
    res = run("python_error_handling", [WITH_TRY, TRY_IN_STRING, SYNTAX_ERROR, TRY_FINALLY_ONLY, BARE_CODE])
    assert res.per_example == [1.0, 0.0, 0.0, 0.0, 1.0]
    reasons = res.extra["reasons"]
    assert all(isinstance(r, CheckResult) for r in reasons)
    assert "syntax error" in reasons[2].reason and reasons[2].passed is False
    assert "no try" in reasons[1].reason
    assert res.value == pytest.approx(2 / 5)


def test_python_parses():
    res = run("python_parses", [WITH_TRY, SYNTAX_ERROR, "x = [1, 2", "print('hi')"])
    assert res.per_example == [1.0, 0.0, 0.0, 1.0]


def test_every_fenced_block_must_parse():
    two = WITH_TRY + "\n```python\nfor x in:\n```\n"
    assert run("python_error_handling", [two]).per_example == [0.0]


# ---------------------------------------------------------------- text checks

def test_regex_must_match_and_must_not():
    outs = ["Ticket TCK-1234 opened", "no ticket here", "tck-99"]
    assert run("regex", outs, pattern=r"TCK-\d+").per_example == [1.0, 0.0, 0.0]
    assert run("regex", outs, pattern=r"TCK-\d+", ignore_case=True).per_example == [1.0, 0.0, 1.0]
    res = run("regex", outs, pattern=r"TCK-\d+", must_match=False)
    assert res.per_example == [0.0, 1.0, 1.0]
    assert "TCK-1234" in res.extra["reasons"][0].reason


def test_regex_bad_pattern_is_an_input_error():
    with pytest.raises(InputError) as err:
        run("regex", ["x"], pattern="(unclosed")
    assert err.value.problems[0].field == "regex.pattern"


def test_contains_and_not_contains():
    outs = ["Please contact Support.", "bye"]
    assert run("contains", outs, text="support").per_example == [0.0, 0.0]
    assert run("contains", outs, text="support", case_sensitive=False).per_example == [1.0, 0.0]
    assert run("not_contains", outs, text="Support").per_example == [0.0, 1.0]
    with pytest.raises(InputError):
        run("contains", outs, text="")


def test_length_bounds_inclusive():
    outs = ["one two three", "one", "x" * 30]
    assert run("length", outs, min_words=2, max_words=3).per_example == [1.0, 0.0, 0.0]
    assert run("length", outs, max_chars=13).per_example == [1.0, 1.0, 0.0]
    with pytest.raises(InputError, match="at least one"):
        run("length", outs)
    with pytest.raises(InputError, match="non-negative integer"):
        run("length", outs, max_words=-1)


# ---------------------------------------------------------------- JSON

SCHEMA = {"type": "object", "required": ["intent"],
          "properties": {"intent": {"enum": ["refund", "other"]}, "priority": {"type": "integer"}}}


def test_valid_json_plain_fenced_and_schema():
    outs = ['{"intent": "refund"}', '```json\n{"intent": "other", "priority": 2}\n```',
            '{"intent": "complaint"}', "{intent: refund}", '{"priority": "high", "intent": "refund"}']
    assert run("valid_json", outs).per_example == [1.0, 1.0, 1.0, 0.0, 1.0]
    res = run("valid_json", outs, schema=SCHEMA)
    assert res.per_example == [1.0, 1.0, 0.0, 0.0, 0.0]
    assert "priority" in res.extra["reasons"][4].reason
    assert "not JSON" in res.extra["reasons"][3].reason


def test_valid_json_rejects_bad_schema():
    with pytest.raises(InputError) as err:
        run("valid_json", ["{}"], schema={"type": "nonsense"})
    assert err.value.problems[0].field == "valid_json.schema"
