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


ALL_TEST_SPLIT = "{train: 0.0, validation: 0.0, test: 1.0, seed: 1}"


def write_eval_goal(path: Path, name: str, data: Path, body: str, data_extra: str = "") -> Path:
    """A classification goal whose whole dataset is the test split (scoring outputs, nothing to
    train); ``body`` is the YAML after ``task:`` (success, candidates, ...)."""
    path.write_text(f"goal: {name}\ndata:\n  path: {data}\n  split: {ALL_TEST_SPLIT}\n{data_extra}"
                    f"task: classification\n{body}")
    return path


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


ROUTES = {
    "billing": ["I was charged twice for invoice {n}", "my card payment {n} failed", "update the billing address on plan {n}"],
    "shipping": ["parcel {n} has not arrived", "the courier lost package {n}", "change delivery slot for order {n}"],
    "technical": ["the app crashes with error {n}", "login page shows code {n}", "sync stopped at file {n}"],
}
ROUTE_SYSTEM = "Route the message to one queue: billing, shipping or technical. Answer with the queue name only."


def routing_rows(n: int = 60) -> list[dict]:
    out = []
    queues = list(ROUTES)
    for i in range(n):
        q = queues[i % 3]
        text = ROUTES[q][(i // 3) % 3].format(n=1000 + i * 7)
        out.append(chat(text, q, system=ROUTE_SYSTEM))
    return out


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """A tiny Llama (2 layers, hidden 64) with a tokenizer trained on the routing texts."""
    from harness.backends.tiny import build_tiny_model

    corpus = [m["content"] for r in routing_rows(60) for m in r["messages"]]
    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "model", corpus=corpus)


def tiny_goal(tmp_path: Path, model_dir: Path, *, n: int = 60, extra_candidates: str = "", max_new_tokens: int = 6,
              judge: bool = True, name: str = "tinyrun", test_ratio: float = 0.25, rubric: str = "instruction_following",
              human_criterion: bool = False, human_items: int = 6, human_extra: str = "",
              extra_success: str = "") -> Path:
    """A routing goal on the tiny model: zero-shot, few-shot and a LoRA, judged with ``rubric``.

    ``human_criterion`` adds ``human.<rubric> at_least 3`` to the success criteria;
    ``human_extra`` is more YAML for the ``human:`` section (e.g. ``mode: pairwise``);
    ``extra_success`` more criteria, one YAML flow mapping a line.
    """
    data = write_jsonl(tmp_path / "routing.jsonl", routing_rows(n))
    train = round(0.75 - 0.1, 2) if test_ratio == 0.25 else round(1 - test_ratio - 0.1, 2)
    judge_block = f"""judge:
  model: "local:{model_dir}"
  rubrics: [{rubric}]
""" if judge else ""
    human_success = f"  - {{metric: human.{rubric}, at_least: 3}}\n" if human_criterion else ""
    human_success += "".join(f"  - {line.strip().removeprefix('- ')}\n" for line in extra_success.splitlines()
                             if line.strip())
    extra_human = "".join(f"  {line}\n" for line in human_extra.splitlines() if line.strip())
    text = f"""goal: {name}
model: {model_dir}
task: classification
data:
  path: {data}
  split: {{train: {train}, validation: 0.1, test: {test_ratio}, seed: 3}}
success:
  - metric: accuracy
    at_least: 0.5
  - metric: accuracy
    improve_by: 10%
    baseline: zero-shot
{human_success}metrics:
  - {{name: one_word, metric: length, args: {{max_words: 1}}}}
decoding: {{max_new_tokens: {max_new_tokens}}}
candidates:
  - {{name: zero-shot, kind: prompt}}
  - {{name: few-shot, kind: prompt, shots: 3}}
  - {{name: lora, kind: lora, r: 4, alpha: 8, learning_rate: 0.005, epochs: 1, batch_size: 8, max_length: 64}}
{extra_candidates}{judge_block}human:
  rubrics: [{rubric}]
  items: {human_items}
  raters_per_item: 2
  min_ratings: 3
{extra_human}"""
    p = tmp_path / f"{name}.yaml"
    p.write_text(text)
    return p


# --------------------------------------------------------------------------- a real run for the app

APP_GOAL = "tinyapp"


def app_goal(goals_dir: Path, model_dir: Path, **kwargs) -> Path:
    """The goal the app tests use: the tiny routing goal judged on the two-criterion tone
    rubric, with ``judge.tone`` and ``human.tone`` criteria and twelve panel items."""
    return tiny_goal(goals_dir, model_dir, name=APP_GOAL, rubric="tone", human_criterion=True, human_items=12,
                     extra_success="{metric: judge.tone, at_least: 3.5}", **kwargs)


@pytest.fixture(scope="session")
def tiny_run_project(tmp_path_factory, tiny_model_dir):
    """A project folder (goals/, harness.duckdb) filled by two real runs of :func:`app_goal`:
    first ``--only zero-shot``, then every candidate (zero-shot, few-shot, a trained LoRA),
    judged by the tiny model. Shared by the session: copy it with :func:`copy_project`."""
    from harness.goals import load_goal
    from harness.runner import run_goal
    from harness.store import Store

    root = tmp_path_factory.mktemp("tinyrun-project")
    (root / "goals").mkdir()
    goal = load_goal(app_goal(root / "goals", tiny_model_dir))
    store = Store(root / "harness.duckdb")
    work = tmp_path_factory.mktemp("tinyrun-work")
    first = run_goal(goal, store, only=["zero-shot"], progress=False, work_dir=work, rubrics_dir=ROOT / "rubrics")
    latest = run_goal(goal, store, progress=False, work_dir=work, rubrics_dir=ROOT / "rubrics")
    return {"root": root, "goal": APP_GOAL, "runs": [first.run_id, latest.run_id], "latest": latest.run_id,
            "candidates": ["few-shot", "lora", "zero-shot"], "model_dir": tiny_model_dir}


def copy_project(template: dict, dest: Path) -> dict:
    """A private copy of a project from :func:`tiny_run_project` (tests write ratings to it)."""
    import shutil

    shutil.copytree(template["root"], dest)
    return dict(template, root=dest, db=dest / "harness.duckdb", goals_dir=dest / "goals",
                rubrics_dir=ROOT / "rubrics")
