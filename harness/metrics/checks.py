"""Rule checks: deterministic pass/fail assertions on each output, reported as pass rates.

Each check scores every output with a :class:`CheckResult` (``passed``, ``score``,
``reason``, as promptfoo's assertions do); the metric value is the share that passed and
the per-example results are in ``extra["reasons"]``.
"""
from __future__ import annotations

import ast
import json
import re
from dataclasses import dataclass
from typing import Callable

from harness.errors import InputError, Problem
from harness.metrics import METRICS, MetricResult, from_values

_CHECK = {"kind": "check", "needs_model": False, "higher_is_better": True, "scale": (0.0, 1.0)}


@dataclass(frozen=True)
class CheckResult:
    passed: bool
    score: float
    reason: str


def ok(reason: str) -> CheckResult:
    return CheckResult(True, 1.0, reason)


def bad(reason: str) -> CheckResult:
    return CheckResult(False, 0.0, reason)


def run_check(name: str, outputs: list[str], check: Callable[[str], CheckResult]) -> MetricResult:
    results = [check(o) for o in outputs]
    res = from_values(name, [r.score for r in results])
    res.extra["reasons"] = results
    return res


def _arg_error(check: str, field: str, message: str) -> InputError:
    return InputError(Problem("<goal>", None, f"{check}.{field}", message))


# ---------------------------------------------------------------- text checks

@METRICS.register("regex", **_CHECK)
def regex(outputs: list[str], examples: list, pattern: str, must_match: bool = True,
          ignore_case: bool = False) -> MetricResult:
    """Pass when ``re.search(pattern, output)`` finds a match (or finds none, with
    ``must_match: false``)."""
    try:
        rx = re.compile(pattern, re.IGNORECASE if ignore_case else 0)
    except (re.error, TypeError) as exc:
        raise _arg_error("regex", "pattern", f"invalid regular expression {pattern!r}: {exc}") from None

    def check(text: str) -> CheckResult:
        m = rx.search(text)
        if must_match:
            return ok(f"matched {m.group(0)!r}") if m else bad(f"no match for /{pattern}/")
        return bad(f"unexpected match {m.group(0)!r}") if m else ok(f"no match for /{pattern}/")

    return run_check("regex", outputs, check)


def _contains(name: str, outputs: list[str], text: str, case_sensitive: bool, want: bool) -> MetricResult:
    if not isinstance(text, str) or not text:
        raise _arg_error(name, "text", "text must be a non-empty string")
    needle = text if case_sensitive else text.lower()

    def check(out: str) -> CheckResult:
        found = needle in (out if case_sensitive else out.lower())
        if found == want:
            return ok(f"{'contains' if found else 'does not contain'} {text!r}")
        return bad(f"{'contains' if found else 'does not contain'} {text!r}")

    return run_check(name, outputs, check)


@METRICS.register("contains", **_CHECK)
def contains(outputs: list[str], examples: list, text: str, case_sensitive: bool = True) -> MetricResult:
    """Pass when the output contains ``text`` (case-sensitive unless told otherwise)."""
    return _contains("contains", outputs, text, case_sensitive, True)


@METRICS.register("not_contains", **_CHECK)
def not_contains(outputs: list[str], examples: list, text: str, case_sensitive: bool = True) -> MetricResult:
    """Pass when the output does not contain ``text``."""
    return _contains("not_contains", outputs, text, case_sensitive, False)


@METRICS.register("length", **_CHECK)
def length(outputs: list[str], examples: list, min_words: int | None = None, max_words: int | None = None,
           min_chars: int | None = None, max_chars: int | None = None) -> MetricResult:
    """Pass when the word count (whitespace-split) and character count are within the
    given bounds (inclusive)."""
    bounds = {"min_words": min_words, "max_words": max_words, "min_chars": min_chars, "max_chars": max_chars}
    if all(v is None for v in bounds.values()):
        raise _arg_error("length", "min_words", "give at least one of min_words, max_words, min_chars, max_chars")
    for key, v in bounds.items():
        if v is not None and (not isinstance(v, int) or isinstance(v, bool) or v < 0):
            raise _arg_error("length", key, f"{key} must be a non-negative integer, got {v!r}")

    def check(text: str) -> CheckResult:
        counts = {"words": len(text.split()), "chars": len(text)}
        for key, v in bounds.items():
            if v is None:
                continue
            side, unit = key.split("_")
            n = counts[unit]
            if (side == "min" and n < v) or (side == "max" and n > v):
                return bad(f"{n} {unit}, {side} is {v}")
        return ok(f"{counts['words']} words, {counts['chars']} chars")

    return run_check("length", outputs, check)


# ---------------------------------------------------------------- JSON

_FENCE = re.compile(r"```[ \t]*([\w+-]*)[^\n]*\n(.*?)```", re.DOTALL)


def _fenced(text: str, langs: tuple[str, ...]) -> list[str]:
    return [body for lang, body in _FENCE.findall(text) if lang.lower() in langs]


@METRICS.register("valid_json", **_CHECK)
def valid_json(outputs: list[str], examples: list, schema: dict | None = None) -> MetricResult:
    """Pass when the output (or its one ```json fenced block) parses as JSON and, with
    ``schema``, validates against that JSON Schema."""
    validator = None
    if schema is not None:
        import jsonschema

        try:
            cls = jsonschema.validators.validator_for(schema)
            cls.check_schema(schema)
        except (jsonschema.SchemaError, TypeError, AttributeError) as exc:
            msg = getattr(exc, "message", str(exc))
            raise _arg_error("valid_json", "schema", f"invalid JSON Schema: {msg}") from None
        validator = cls(schema)

    def check(text: str) -> CheckResult:
        blocks = _fenced(text, ("json",))
        body = blocks[0] if len(blocks) == 1 else text
        try:
            obj = json.loads(body)
        except json.JSONDecodeError as exc:
            return bad(f"not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}")
        if validator is not None:
            errors = sorted(validator.iter_errors(obj), key=lambda e: list(e.path))
            if errors:
                where = "/".join(str(p) for p in errors[0].path) or "(root)"
                return bad(f"schema: {where}: {errors[0].message}")
            return ok("valid JSON matching the schema")
        return ok("valid JSON")

    return run_check("valid_json", outputs, check)


# ---------------------------------------------------------------- Python code

def python_blocks(text: str) -> list[str]:
    """Code in ```python / ```py fences; the whole text when there are none."""
    blocks = _fenced(text, ("python", "py", "python3"))
    return blocks or [text]


def _parse_all(text: str) -> tuple[list[ast.AST], str | None]:
    trees = []
    for i, block in enumerate(python_blocks(text)):
        try:
            trees.append(ast.parse(block))
        except SyntaxError as exc:
            return [], f"block {i + 1}: syntax error at line {exc.lineno}: {exc.msg}"
    return trees, None


def has_error_handling(tree: ast.AST) -> bool:
    """A real ``try`` statement with at least one ``except`` handler (found by the AST,
    so the word "try" in a string or comment does not count)."""
    try_types = tuple(t for t in (ast.Try, getattr(ast, "TryStar", None)) if t is not None)
    return any(isinstance(node, try_types) and node.handlers for node in ast.walk(tree))


@METRICS.register("python_parses", **_CHECK)
def python_parses(outputs: list[str], examples: list) -> MetricResult:
    """Pass when every ```python block (or the whole output) parses with ``ast``."""
    def check(text: str) -> CheckResult:
        _, err = _parse_all(text)
        return bad(err) if err else ok("parses")

    return run_check("python_parses", outputs, check)


@METRICS.register("python_error_handling", **_CHECK)
def python_error_handling(outputs: list[str], examples: list) -> MetricResult:
    """Pass when the code parses and contains a ``try`` with at least one ``except``."""
    def check(text: str) -> CheckResult:
        trees, err = _parse_all(text)
        if err:
            return bad(err)
        if any(has_error_handling(t) for t in trees):
            return ok("try/except present")
        return bad("no try statement with an except handler")

    return run_check("python_error_handling", outputs, check)


def check_names() -> list[str]:
    return [n for n in METRICS.names() if METRICS.meta(n).get("kind") == "check"]


__all__ = ["CheckResult", "check_names", "has_error_handling", "python_blocks", "run_check"]
