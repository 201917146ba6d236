"""Starter files written by ``harness init NAME``."""
from __future__ import annotations

from pathlib import Path

from harness.errors import HarnessError

GOAL_TEMPLATE = """\
# Goal file for {name}. Success criteria come FIRST: decide what "worked" means before
# training anything. Validate with: harness check goals/{name}.yaml
version: 1
goal: {name}
description: What the specialist model should do better than the base model.
model: default            # SmolLM2-135M-Instruct shipped offline; or a local HF folder
device: auto              # auto (cuda, else mps, else cpu) | cpu | cuda | cuda:N | mps
dtype: auto               # auto (bfloat16 on a GPU that has it, else float32) | bfloat16 | float16 | float32

data:
  path: data/{name}.jsonl # chat {{"messages": [...]}}, {{"prompt","completion"}} or {{"text","label"}}
  format: auto
  split: {{train: 0.8, validation: 0.1, test: 0.1, seed: 13}}   # test split is sealed
  scrub_pii: false        # true: scrub emails/phones/cards/... before splitting and API calls
  leakage: drop           # train examples duplicating test ones: drop (default) | flag (kept, warned)

system_prompt: You are a helpful assistant.   # used by the `system` baseline

success:                  # every criterion must pass (CI bound clears it) to meet the goal
  - metric: rougeL
    at_least: 0.3
  - metric: rougeL
    improve_by: 20%       # relative to the baseline candidate, on the paired difference
    baseline: zero-shot
  - metric: judge.{name}  # rubric rubrics/{name}.yaml, scored by the judge below
    at_least: 3.5
confidence: 0.95

decoding: {{max_new_tokens: 128, temperature: 0}}

candidates:               # prompting baselines always run beside the fine-tunes
  - {{name: zero-shot, kind: prompt}}
  - {{name: system, kind: prompt, style: system}}
  - {{name: few-shot, kind: prompt, shots: 5}}
  - {{name: lora, kind: lora, r: 16, alpha: 32, learning_rate: 2.0e-4, epochs: 3}}
  # - {{name: gpt-4o-mini, kind: api, provider: openai, model: gpt-4o-mini}}   # key from OPENAI_API_KEY

judge:
  model: local:default    # or openai:gpt-4o, anthropic:claude-..., openai-compatible:MODEL@URL
  rubrics: [{name}]

human:
  rubrics: [{name}]
  items: 30
  raters_per_item: 2
"""

RUBRIC_TEMPLATE = """\
# Rubric {name}: the same file drives the LLM judge and the human raters.
name: {name}
description: How good a reply is for this goal.
criteria:
  - name: quality
    description: Does the reply do what the user asked, correctly and clearly?
    scale:
      1: Wrong, off-topic or unusable.
      2: Mostly wrong or missing key parts.
      3: Partly right; noticeable gaps or errors.
      4: Right and useful with minor issues.
      5: Fully right, complete and clear.
"""


def write_starter(name: str, root: Path, *, force: bool = False) -> list[Path]:
    import re

    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.\-]*", name):
        raise HarnessError(f"goal name {name!r}: use letters, digits, '.', '_' or '-'")
    goal = root / "goals" / f"{name}.yaml"
    rubric = root / "rubrics" / f"{name}.yaml"
    for p in (goal, rubric):
        if p.exists() and not force:
            raise HarnessError(f"{p} exists; pass --force to overwrite")
    goal.parent.mkdir(parents=True, exist_ok=True)
    rubric.parent.mkdir(parents=True, exist_ok=True)
    from harness.fsutil import atomic_write_text

    atomic_write_text(goal, GOAL_TEMPLATE.format(name=name))
    atomic_write_text(rubric, RUBRIC_TEMPLATE.format(name=name))
    return [goal, rubric]
