"""YAML with line numbers, and pydantic errors turned into file:line:field problems.

Goal and rubric files are small and written by hand, so the parser refuses what only an
attack or an accident produces: more than ``MAX_NODES`` values, as written or once aliases are
expanded (a 1 KB "billion laughs" file expands to gigabytes; the few aliases ``yaml.dump`` writes
for shared objects are fine), nesting deeper than ``MAX_DEPTH``, scalars longer than ``MAX_SCALAR``
characters (a 5000-digit number), files above 1 MiB, a key given twice in one mapping (YAML would
silently keep the last), and a list or mapping used as a key (``? [a, b]``). Each is an error
with the file and line, found before any work."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from harness.errors import InputError, Problem
from harness.registry import did_you_mean

Loc = tuple[Any, ...]


MAX_DEPTH = 32
MAX_NODES = 100_000
MAX_SCALAR = 100_000
MAX_DIGITS = 400   # far beyond any float; Python refuses ints over 4300


def _expanded_size(node: yaml.Node, memo: dict[int, int]) -> int:
    """How many values the document has once aliases are expanded; shared nodes are counted
    from a memo, so this costs the unexpanded size however far aliases multiply."""
    key = id(node)
    if key not in memo:
        memo[key] = 1  # a cycle (a recursive alias) counts once instead of recursing for ever
        if isinstance(node, yaml.MappingNode):
            memo[key] = 1 + sum(_expanded_size(k, memo) + _expanded_size(v, memo) for k, v in node.value)
        elif isinstance(node, yaml.SequenceNode):
            memo[key] = 1 + sum(_expanded_size(v, memo) for v in node.value)
    return min(memo[key], 10 ** 12)


def _walk(node: yaml.Node, path: Loc, lines: dict[Loc, int], file: str = "<yaml>") -> None:
    lines[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        seen: dict[Any, int] = {}
        for key, value in node.value:
            if not isinstance(key, yaml.ScalarNode):  # `? [a, b]` is valid YAML but no config key
                kind = "list" if isinstance(key, yaml.SequenceNode) else "mapping"
                raise InputError(Problem(file, key.start_mark.line + 1, field_name(path) or None,
                                         f"a key must be a plain name, not a {kind}"))
            k = key.value
            if k in seen:
                raise InputError(Problem(file, key.start_mark.line + 1, field_name(path + (k,)),
                                         f"key {k!r} is given twice (first on line {seen[k]})"))
            seen[k] = key.start_mark.line + 1
            lines[path + (k,)] = key.start_mark.line + 1
            _walk(value, path + (k,), lines, file)
            lines[path + (k,)] = key.start_mark.line + 1
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _walk(item, path + (i,), lines, file)


def load_yaml(path: str | Path) -> tuple[Any, dict[Loc, int]]:
    """Parse a YAML file; return the data and a map from key path to line number."""
    from harness.textfile import read_text

    path = Path(path)
    return parse_yaml(read_text(path), str(path))


def _screen(text: str, file: str) -> None:
    """Refuse deep nesting, huge scalars and too many values from the event stream, before any
    object is built. libyaml reads the stream when it is there (twenty times faster on a large
    file); on a syntax error the pure-Python parser rereads it, so the message is its own."""
    fast = getattr(yaml, "CSafeLoader", None)
    if fast is not None:
        try:
            _screen_events(yaml.parse(text, Loader=fast), file)
            return
        except yaml.YAMLError:
            pass
    _screen_events(yaml.parse(text, Loader=yaml.SafeLoader), file)


def _screen_events(events: Any, file: str) -> None:
    depth = nodes = 0
    for event in events:
        line = event.start_mark.line + 1 if event.start_mark else None
        if isinstance(event, yaml.NodeEvent):  # a scalar, an alias, or a list or mapping opening
            nodes += 1
            if nodes > MAX_NODES:
                raise InputError(Problem(file, line, None, f"has more than {MAX_NODES:,} values; at most {MAX_NODES:,}"))
        if isinstance(event, (yaml.MappingStartEvent, yaml.SequenceStartEvent)):
            depth += 1
            if depth > MAX_DEPTH:
                raise InputError(Problem(file, line, None, f"nested more than {MAX_DEPTH} levels deep"))
        elif isinstance(event, (yaml.MappingEndEvent, yaml.SequenceEndEvent)):
            depth -= 1
        elif isinstance(event, yaml.ScalarEvent):
            if len(event.value) > MAX_SCALAR:
                raise InputError(Problem(file, line, None, f"a value of {len(event.value):,} characters; at most "
                                                           f"{MAX_SCALAR:,}"))
            digits = sum(ch.isdigit() for ch in event.value)
            if not event.style and digits > MAX_DIGITS:  # plain: None from PyYAML, "" from libyaml
                raise InputError(Problem(file, line, None, f"a number of {digits:,} digits; at most {MAX_DIGITS}"))


def parse_yaml(text: str, file: str) -> tuple[Any, dict[Loc, int]]:
    """Parse YAML text; invalid YAML is an InputError naming ``file`` and the line."""
    try:
        _screen(text, file)
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        lines: dict[Loc, int] = {}
        if node is not None:
            size = _expanded_size(node, {})
            if size > MAX_NODES:
                raise InputError(Problem(file, None, None, f"expands to {size:,} values through YAML aliases "
                                                           f"(*name); at most {MAX_NODES:,}"))
            _walk(node, (), lines, file)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        raise InputError(Problem(file, line, None, f"invalid YAML: {getattr(exc, 'problem', None) or exc}")) from None
    except (ValueError, RecursionError, OverflowError) as exc:  # e.g. a number Python will not convert
        raise InputError(Problem(file, None, None, f"invalid YAML: {exc}")) from None
    return data, lines


def line_for(loc: Loc, lines: dict[Loc, int]) -> int | None:
    """The line of the longest prefix of ``loc`` that the YAML file has."""
    loc = tuple(loc)
    for end in range(len(loc), -1, -1):
        if loc[:end] in lines:
            return lines[loc[:end]]
    return None


def _model_at(model: type[BaseModel], loc: Loc) -> type[BaseModel] | None:
    """The pydantic model class that owns the last key of ``loc`` (for did-you-mean)."""
    current: Any = model
    for part in loc[:-1]:
        if isinstance(part, int):
            continue
        fields = getattr(current, "model_fields", None)
        if not fields or part not in fields:
            return None
        ann = fields[part].annotation
        current = _unwrap(ann)
        if current is None:
            return None
    return current if isinstance(current, type) and issubclass(current, BaseModel) else None


def _unwrap(ann: Any) -> Any:
    import typing

    if isinstance(ann, type) and issubclass(ann, BaseModel):
        return ann
    for arg in typing.get_args(ann):
        found = _unwrap(arg)
        if found is not None:
            return found
    return None


def field_name(loc: Loc) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def validation_problems(exc: ValidationError, model: type[BaseModel], file: str,
                        lines: dict[Loc, int]) -> list[Problem]:
    problems = []
    for err in exc.errors():
        loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-")))
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            owner = _model_at(model, loc)
            options = set(owner.model_fields) if owner else set()
            msg = f"unknown key {loc[-1]!r}{did_you_mean(str(loc[-1]), options)}"
            if options:
                msg += f"; allowed: {', '.join(sorted(options))}"
        elif err["type"] == "missing":
            msg = f"missing required key {loc[-1]!r}"
        elif msg.startswith("Value error, "):
            msg = msg[len("Value error, "):]
        problems.append(Problem(file, line_for(loc, lines), field_name(loc) or None, msg))
    return problems


def parse_model(model: type[BaseModel], data: Any, file: str, lines: dict[Loc, int],
                context: dict[str, Any] | None = None) -> Any:
    try:
        return model.model_validate(data, context=context)
    except ValidationError as exc:
        raise InputError(validation_problems(exc, model, file, lines)) from None
