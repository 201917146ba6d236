"""JSONL in three shapes, each record becoming one :class:`Example`.

* ``chat``: ``{"messages": [{"role": "system"|"user"|"assistant", "content": ...}, ...]}``
  (the OpenAI fine-tuning format); the last message must be a non-empty assistant turn.
* ``completion``: ``{"prompt": ..., "completion": ...}``
* ``label``: ``{"text": ..., "label": ...}`` for classification.

Every problem is collected with file:line and field so ``harness check`` can list all of them.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Literal

from harness.cache import canonical_json, digest
from harness.errors import InputError, Problem

Format = Literal["chat", "completion", "label"]
FORMATS: tuple[str, ...] = ("chat", "completion", "label")
ROLES = ("system", "user", "assistant")


@dataclass(frozen=True)
class Example:
    """One record. ``prompt`` is the conversation up to the answer; ``reference`` the answer.

    ``id`` is derived from the content alone (not the line number), so it is stable when
    the file is reordered or grows.
    """

    id: str
    format: str
    prompt: tuple[dict[str, str], ...]
    reference: str
    label: str | None = None
    line: int = 0
    source: str = ""
    extra: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    @property
    def input_text(self) -> str:
        """The last user turn: what a human reads as "the input"."""
        for m in reversed(self.prompt):
            if m["role"] == "user":
                return m["content"]
        return self.prompt[-1]["content"] if self.prompt else ""

    @property
    def system(self) -> str | None:
        for m in self.prompt:
            if m["role"] == "system":
                return m["content"]
        return None

    def messages(self) -> list[dict[str, str]]:
        """Prompt plus reference answer as one chat (what training sees)."""
        return [dict(m) for m in self.prompt] + [{"role": "assistant", "content": self.reference}]

    def content_key(self) -> str:
        """Canonical text of the example; hashed for its id and for split assignment."""
        return canonical_json({"prompt": list(self.prompt), "reference": self.reference})

    def to_record(self) -> dict[str, Any]:
        """Back to the JSONL shape it came from."""
        if self.format == "label":
            return {"text": self.input_text, "label": self.label, **self.extra}
        if self.format == "completion":
            return {"prompt": self.input_text, "completion": self.reference, **self.extra}
        return {"messages": self.messages(), **self.extra}


def make_example(
    fmt: str,
    prompt: list[dict[str, str]],
    reference: str,
    label: str | None = None,
    line: int = 0,
    source: str = "",
    extra: dict[str, Any] | None = None,
) -> Example:
    prompt_t = tuple({"role": m["role"], "content": m["content"]} for m in prompt)
    key = canonical_json({"prompt": list(prompt_t), "reference": reference})
    return Example(
        id=digest(key, 16),
        format=fmt,
        prompt=prompt_t,
        reference=reference,
        label=label,
        line=line,
        source=source,
        extra=dict(extra or {}),
    )


def detect_format(record: dict[str, Any]) -> str | None:
    if "messages" in record:
        return "chat"
    if "prompt" in record or "completion" in record:
        return "completion"
    if "text" in record or "label" in record:
        return "label"
    return None


def _str_field(rec: dict, name: str, where: tuple[str, int], problems: list[Problem],
               allow_empty: bool = False) -> str | None:
    file, line = where
    if name not in rec:
        problems.append(Problem(file, line, name, f"missing field {name!r}"))
        return None
    value = rec[name]
    if not isinstance(value, str):
        problems.append(Problem(file, line, name, f"{name!r} must be a string, got {type(value).__name__}"))
        return None
    if not allow_empty and not value.strip():
        problems.append(Problem(file, line, name, f"{name!r} is empty"))
        return None
    return value


def parse_record(rec: Any, fmt: str | None, file: str, line: int) -> tuple[Example | None, list[Problem]]:
    """Turn one decoded JSON value into an Example, or the problems that stop it."""
    if not isinstance(rec, dict):
        return None, [Problem(file, line, None, f"expected a JSON object, got {type(rec).__name__}")]
    fmt = fmt or detect_format(rec)
    if fmt is None:
        return None, [Problem(file, line, None,
                              "cannot tell the format: expected 'messages', 'prompt'/'completion' or 'text'/'label'")]
    parser = _PARSERS.get(fmt)
    if parser is None:
        return None, [Problem(file, line, None, f"unknown format {fmt!r}; use one of {', '.join(FORMATS)}")]
    return parser(rec, file, line)


def _chat_message(m: Any, fld: str, file: str, line: int) -> tuple[dict[str, str] | None, Problem | None]:
    if not isinstance(m, dict):
        return None, Problem(file, line, fld, "each message must be an object")
    role = m.get("role")
    if role not in ROLES:
        return None, Problem(file, line, f"{fld}.role", f"role must be one of {', '.join(ROLES)}, got {role!r}")
    content = m.get("content")
    if not isinstance(content, str):
        return None, Problem(file, line, f"{fld}.content", "content must be a string")
    if role == "assistant" and not content.strip():
        return None, Problem(file, line, f"{fld}.content", "empty assistant turn")
    return {"role": role, "content": content}, None


def _parse_chat(rec: dict, file: str, line: int) -> tuple[Example | None, list[Problem]]:
    msgs = rec.get("messages")
    if not isinstance(msgs, list) or not msgs:
        return None, [Problem(file, line, "messages", "'messages' must be a non-empty list")]
    clean: list[dict[str, str]] = []
    problems: list[Problem] = []
    for i, m in enumerate(msgs):
        msg, problem = _chat_message(m, f"messages[{i}]", file, line)
        if problem is not None:
            problems.append(problem)
        elif msg is not None:
            clean.append(msg)
    if problems:
        return None, problems
    if clean[-1]["role"] != "assistant":
        return None, [Problem(file, line, f"messages[{len(clean) - 1}].role",
                              "the last message must be the assistant's answer")]
    if not any(m["role"] == "user" for m in clean[:-1]):
        return None, [Problem(file, line, "messages", "no user message before the answer")]
    extra = {k: v for k, v in rec.items() if k != "messages"}
    return make_example("chat", clean[:-1], clean[-1]["content"], line=line, source=file, extra=extra), []


def _parse_completion(rec: dict, file: str, line: int) -> tuple[Example | None, list[Problem]]:
    problems: list[Problem] = []
    prompt = _str_field(rec, "prompt", (file, line), problems)
    completion = _str_field(rec, "completion", (file, line), problems)
    if problems:
        return None, problems
    extra = {k: v for k, v in rec.items() if k not in ("prompt", "completion")}
    return make_example("completion", [{"role": "user", "content": prompt}], completion,
                        line=line, source=file, extra=extra), []


def _parse_label(rec: dict, file: str, line: int) -> tuple[Example | None, list[Problem]]:
    problems: list[Problem] = []
    text = _str_field(rec, "text", (file, line), problems)
    label = rec.get("label")
    if label is None:
        problems.append(Problem(file, line, "label", "missing field 'label'"))
    elif not isinstance(label, (str, int, bool)):
        problems.append(Problem(file, line, "label", "label must be a string or integer"))
    elif not str(label).strip():
        problems.append(Problem(file, line, "label", "'label' is empty"))
    if problems:
        return None, problems
    extra = {k: v for k, v in rec.items() if k not in ("text", "label")}
    return make_example("label", [{"role": "user", "content": text}], str(label), label=str(label),
                        line=line, source=file, extra=extra), []


_PARSERS = {"chat": _parse_chat, "completion": _parse_completion, "label": _parse_label}


def read_jsonl(path: str | Path, fmt: str | None = None) -> tuple[list[Example], list[Problem]]:
    """Read every line; return the examples that parsed and every problem found.

    With ``fmt=None`` the format is detected from the first valid record and every later
    record must match it.
    """
    from harness.textfile import MAX_DATA_BYTES, read_text

    path = Path(path)
    file = str(path)
    try:
        text = read_text(path, max_bytes=MAX_DATA_BYTES)
    except InputError as exc:
        return [], list(exc.problems)
    examples: list[Example] = []
    problems: list[Problem] = []
    for lineno, raw in enumerate(text.split("\n"), start=1):
        if not raw.strip():
            continue
        rec, problem = _json_line(raw, file, lineno)
        if problem is not None:
            problems.append(problem)
            continue
        this_fmt = fmt
        if this_fmt is None and isinstance(rec, dict):
            detected = detect_format(rec)
            if examples and detected and detected != examples[0].format:
                problems.append(Problem(file, lineno, None,
                                        f"record looks like {detected!r} but the file is {examples[0].format!r}"))
                continue
            this_fmt = detected
        ex, probs = parse_record(rec, this_fmt, file, lineno)
        problems.extend(probs)
        if ex is not None:
            examples.append(ex)
    if not examples and not problems:
        problems.append(Problem(file, None, None, "has no examples (the file is empty)"))
    return examples, problems


# Longest JSON line read (a record is a conversation, not a corpus) and deepest nesting.
MAX_LINE_CHARS = 1 << 24
MAX_DEPTH = 64


def _json_line(raw: str, file: str, lineno: int) -> tuple[Any, Problem | None]:
    """One JSONL record, or the problem with it (never an exception)."""
    if len(raw) > MAX_LINE_CHARS:
        return None, Problem(file, lineno, None, f"line of {len(raw):,} characters; at most {MAX_LINE_CHARS:,}")
    depth = _max_depth(raw)
    if depth > MAX_DEPTH:
        return None, Problem(file, lineno, None, f"nested {depth} levels deep; at most {MAX_DEPTH}")
    try:
        rec = json.loads(raw)
    except json.JSONDecodeError as exc:
        return None, Problem(file, lineno, None, f"malformed JSON: {exc.msg} (column {exc.colno})")
    except (ValueError, RecursionError) as exc:  # e.g. an integer of thousands of digits
        return None, Problem(file, lineno, None, f"malformed JSON: {exc}")
    if "\\ud" in raw.lower():
        try:
            json.dumps(rec, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError:
            return None, Problem(file, lineno, None, "contains a lone surrogate escape (\\ud800-\\udfff), "
                                                     "which is not text")
    return rec, None


def _max_depth(raw: str) -> int:
    """Bracket depth outside strings (cheap; exact enough to refuse absurd nesting)."""
    if raw.count("[") + raw.count("{") <= MAX_DEPTH:
        return 0
    depth = deepest = 0
    in_str = esc = False
    for ch in raw:
        if in_str:
            if esc:
                esc = False
            elif ch == "\\":
                esc = True
            elif ch == '"':
                in_str = False
        elif ch == '"':
            in_str = True
        elif ch in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif ch in "]}":
            depth -= 1
    return deepest


def load_examples(path: str | Path, fmt: str | None = None) -> list[Example]:
    """Like :func:`read_jsonl` but raises :class:`InputError` listing all problems."""
    examples, problems = read_jsonl(path, fmt)
    if problems:
        raise InputError(problems)
    return examples


def write_jsonl(path: str | Path, records: Iterable[dict[str, Any]]) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    with tmp.open("w", encoding="utf-8") as fh:
        for rec in records:
            fh.write(json.dumps(rec, ensure_ascii=False) + "\n")
    tmp.replace(path)
