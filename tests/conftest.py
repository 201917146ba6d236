"""Shared fixtures: a temp home and store, JSONL writers, and the offline environment."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def store(tmp_path):
    from harness.store import Store

    return Store(tmp_path / "store.duckdb")


def write_jsonl(path: Path, rows) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as fh:
        for r in rows:
            fh.write((r if isinstance(r, str) else json.dumps(r)) + "\n")
    return path


def chat(user: str, answer: str, system: str | None = None) -> dict:
    msgs = ([{"role": "system", "content": system}] if system else []) + [
        {"role": "user", "content": user}, {"role": "assistant", "content": answer}]
    return {"messages": msgs}


def write_goal(tmp_path: Path, data: Path, extra: str = "", name: str = "t", split: str | None = None) -> Path:
    split = split or "{train: 0.8, validation: 0.1, test: 0.1, seed: 13}"
    text = f"""goal: {name}
data:
  path: {data}
  split: {split}
success:
  - metric: accuracy
    at_least: 0.5
candidates:
  - {{name: zero-shot, kind: prompt}}
{extra}"""
    p = tmp_path / f"{name}.yaml"
    p.write_text(text)
    return p
