"""Shared fixtures: a temp store, the tiny model, a project filled by two real runs, and the
offline environment. Helpers (writers, goal builders) live in ``tests/helpers.py``."""
from __future__ import annotations

import os

import pytest

from tests.helpers import APP_GOAL, ROOT, app_goal, routing_rows

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture
def store(tmp_path):
    from harness.store import Store

    return Store(tmp_path / "store.duckdb")


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """A tiny Llama (2 layers, hidden 64) with a tokenizer trained on the routing texts."""
    from harness.backends.tiny import build_tiny_model

    corpus = [m["content"] for r in routing_rows(60) for m in r["messages"]]
    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "model", corpus=corpus)


@pytest.fixture(scope="session")
def tiny_run_project(tmp_path_factory, tiny_model_dir):
    """A project folder (goals/, harness.duckdb) filled by two real runs of ``app_goal``:
    first ``--only zero-shot``, then every candidate (zero-shot, few-shot, a trained LoRA),
    judged by the tiny model. Shared by the session: copy it with ``helpers.copy_project``."""
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


@pytest.fixture(scope="session")
def curve_project(tmp_path_factory, tiny_model_dir):
    """A project (goals/curve.yaml, harness.duckdb) with one real run of a train_fraction sweep:
    zero-shot and a LoRA on 25%, 50% and 100% of the train split (two steps each)."""
    import yaml

    from harness.goals import load_goal
    from harness.runner import run_goal
    from harness.store import Store
    from tests.helpers import tiny_goal

    root = tmp_path_factory.mktemp("curve-project")
    (root / "goals").mkdir()
    path = tiny_goal(root / "goals", tiny_model_dir, n=80, judge=False, name="curve")
    doc = yaml.safe_load(path.read_text())
    doc["candidates"] = [doc["candidates"][0],
                         {**doc["candidates"][2], "name": "lora", "train_fraction": [0.25, 0.5, 1.0], "max_steps": 2}]
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    goal = load_goal(path)
    store = Store(root / "harness.duckdb")
    result = run_goal(goal, store, progress=False, work_dir=root / "work")
    return {"root": root, "goal_path": path, "goal": "curve", "db": root / "harness.duckdb", "result": result,
            "goals_dir": root / "goals", "rubrics_dir": ROOT / "rubrics"}


@pytest.fixture(autouse=True)
def _main_module_restored():
    """Streamlit's AppTest runs a page as ``__main__`` and can leave it installed; a process
    spawned afterwards (multiprocessing's ``spawn``) would then re-run that page and die. Each
    test gets back the ``__main__`` it started with."""
    import sys

    main = sys.modules.get("__main__")
    yield
    if main is not None and sys.modules.get("__main__") is not main:
        sys.modules["__main__"] = main
