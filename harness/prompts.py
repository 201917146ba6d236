"""Prompting baselines: how each candidate turns a test example into messages.

* ``zero-shot``: the example's own conversation (its system turn, if any, included).
* ``system``: the goal's system instruction replaces (or is added as) the system turn.
* ``few-shot``: k solved examples from the TRAIN split, as prior user/assistant turns after
  the system turn. They are chosen deterministically (hash order with the seed, one label at
  a time round-robin for classification) and never from validation or test.
"""
from __future__ import annotations

import hashlib
from typing import Sequence

from harness.data.formats import Example

Messages = list[dict[str, str]]


def with_system(prompt: Sequence[dict[str, str]], system: str | None) -> Messages:
    msgs = [dict(m) for m in prompt if m["role"] != "system"]
    if system:
        msgs.insert(0, {"role": "system", "content": system})
    return msgs


def choose_shots(train: Sequence[Example], k: int, seed: int = 0) -> list[Example]:
    """k train examples, deterministic; round-robin over labels when there are labels."""
    if k <= 0 or not train:
        return []
    ordered = sorted(train, key=lambda e: hashlib.sha256(f"shots:{seed}:{e.id}".encode()).hexdigest())
    labels = [e.label or e.reference for e in ordered]
    distinct = list(dict.fromkeys(labels))
    if len(distinct) <= max(k, 1) and len(distinct) < len(ordered) // 2:
        # Looks like classification: cover the labels before repeating any.
        by_label: dict[str, list[Example]] = {}
        for e, lab in zip(ordered, labels):
            by_label.setdefault(lab, []).append(e)
        out: list[Example] = []
        while len(out) < k and any(by_label.values()):
            for lab in distinct:
                if by_label[lab] and len(out) < k:
                    out.append(by_label[lab].pop(0))
        return out
    return ordered[:k]


def build_prompt(example: Example, style: str = "zero-shot", *, system: str | None = None,
                 shots: Sequence[Example] = ()) -> Messages:
    if style == "zero-shot":
        return [dict(m) for m in example.prompt]
    if style == "system":
        return with_system(example.prompt, system or example.system)
    if style == "few-shot":
        sys_text = system or example.system
        msgs: Messages = [{"role": "system", "content": sys_text}] if sys_text else []
        for shot in shots:
            msgs.extend(dict(m) for m in shot.prompt if m["role"] != "system")
            msgs.append({"role": "assistant", "content": shot.reference})
        msgs.extend(dict(m) for m in example.prompt if m["role"] != "system")
        return msgs
    raise ValueError(f"unknown prompt style {style!r}; use zero-shot, system or few-shot")
