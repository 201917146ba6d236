"""Prompts: how a candidate turns a test example into messages, and messages into model text.

Styles (every kind that prompts a model takes the options of :class:`PromptOptions`):

* ``zero-shot``: the example's own conversation (its system turn, if any, included).
* ``system``: the goal's system instruction replaces (or is added as) the system turn.
* ``few-shot``: k solved examples from the TRAIN split, as prior user/assistant turns after
  the system turn. They are chosen deterministically (hash order with the seed, one label at
  a time round-robin for classification) and never from validation or test. With
  ``shot_selection: similar`` each test input gets the k train examples BM25 ranks nearest
  to it instead (:func:`similar_shots`), still from the train split only.

:func:`with_passages` places retrieved passages (with their ids) before the user's question,
for ``kind: rag``.

:func:`render_prompt` is the one rule that turns messages into the text a local model reads:
training, generation and the local judge all call it, so their prompts cannot drift apart.
"""
from __future__ import annotations

from typing import Any, Literal, Sequence

from pydantic import BaseModel, ConfigDict, Field

from harness.cache import digest
from harness.data.formats import Example

Messages = list[dict[str, str]]
STYLES = ("zero-shot", "system", "few-shot")
DEFAULT_SHOTS = 5


class PromptOptions(BaseModel):
    """How a candidate prompts its model (prompt baselines, API models, trained adapters)."""

    model_config = ConfigDict(extra="forbid")

    style: Literal["zero-shot", "system", "few-shot"] | None = Field(
        None, description="zero-shot, system or few-shot; default: few-shot when shots > 0, system when system is set.")
    shots: int | None = Field(None, ge=0, description="Solved train examples placed before each test input.")
    system: str | bool | None = Field(
        None, description="A system instruction, or true for the goal's system_prompt.")
    shot_selection: Literal["fixed", "similar"] = Field(
        "fixed", description="fixed: the same shots before every input; similar: the train examples nearest "
                             "each test input (BM25 over the train split).")

    def resolved_style(self, name: str | None = None) -> str:
        """The style; ``name`` (a prompt baseline's) counts too: ``few-shot``/``system`` prefixes."""
        if self.style:
            return self.style
        if (self.shots or 0) > 0 or (name or "").startswith("few-shot"):
            return "few-shot"
        if self.system or (name or "").startswith("system"):
            return "system"
        return "zero-shot"

    def system_text(self, goal_system: str | None) -> str | None:
        return self.system if isinstance(self.system, str) else goal_system


def prompts_for(options: PromptOptions, style: str, test: Sequence[Example], train: Sequence[Example], *,
                goal_system: str | None, seed: int) -> list[Messages]:
    """One prompt (messages) per test example, in test order; shots come from ``train`` only."""
    k = options.shots if options.shots is not None else (DEFAULT_SHOTS if style == "few-shot" else 0)
    system = options.system_text(goal_system)
    if style == "few-shot" and options.shot_selection == "similar":
        per_example = similar_shots(train, test, k, seed=seed)
        return [build_prompt(ex, style, system=system, shots=shots) for ex, shots in zip(test, per_example)]
    shots = choose_shots(train, k, seed=seed) if style == "few-shot" else []
    return [build_prompt(ex, style, system=system, shots=shots) for ex in test]


def render_prompt(tokenizer: Any, messages: Sequence[dict[str, str]]) -> str:
    """The messages as the model reads them, ending where the assistant's reply begins.

    The tokenizer's chat template when it has one; plain ``role: content`` lines otherwise.
    """
    if not getattr(tokenizer, "chat_template", None):
        return "".join(f"{m['role']}: {m['content']}\n" for m in messages) + "assistant:"
    return tokenizer.apply_chat_template(list(messages), tokenize=False, add_generation_prompt=True)


def with_system(prompt: Sequence[dict[str, str]], system: str | None) -> Messages:
    msgs = [dict(m) for m in prompt if m["role"] != "system"]
    if system:
        msgs.insert(0, {"role": "system", "content": system})
    return msgs


def choose_shots(train: Sequence[Example], k: int, seed: int = 0) -> list[Example]:
    """k train examples, deterministic; round-robin over labels when there are labels."""
    if k <= 0 or not train:
        return []
    ordered = sorted(train, key=lambda e: digest(f"shots:{seed}:{e.id}"))
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


def similar_shots(train: Sequence[Example], test: Sequence[Example], k: int, seed: int = 0) -> list[list[Example]]:
    """For each test example, the k train examples whose input BM25 ranks nearest to its input
    (ties in :func:`choose_shots`'s hash order), nearest last: just before the question."""
    from harness.retrieval import nearest

    if k <= 0 or not train:
        return [[] for _ in test]
    order = sorted(range(len(train)), key=lambda i: digest(f"shots:{seed}:{train[i].id}"))
    rank = [0] * len(train)
    for r, i in enumerate(order):
        rank[i] = r
    found = nearest([e.input_text for e in train], [e.input_text for e in test], k, rank)
    return [[train[i] for i in reversed(row)] for row in found]


def with_passages(prompt: Sequence[dict[str, str]], passages: Sequence[tuple[str, str]]) -> Messages:
    """``prompt`` with retrieved passages, ``(id, text)`` best first, placed before the question
    in its last user turn (earlier turns, few-shot examples included, are left as they are)."""
    msgs = [dict(m) for m in prompt]
    last = max((i for i, m in enumerate(msgs) if m["role"] == "user"), default=None)
    if last is None or not passages:
        return msgs
    context = "\n\n".join(f"[{pid}]\n{text}" for pid, text in passages)
    msgs[last]["content"] = (f"Answer using these passages.\n\n{context}\n\n"
                             f"Question: {msgs[last]['content']}")
    return msgs


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
