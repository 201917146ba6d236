"""Shared test helpers: JSONL writers, the routing data, and goal files built as dicts.

Goal files are dictionaries dumped with ``yaml.safe_dump`` (never f-strings), so a path,
a URL or a name with YAML's special characters cannot change what a test means. Fixtures
live in ``conftest.py``; this module imports nothing from it.
"""
from __future__ import annotations

import json
import shutil
from collections.abc import Iterable, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent


def write_jsonl(path: Path, rows: Iterable[Any]) -> Path:
    """One JSON value a line; a ``str`` row is written as is (for malformed-line tests)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as fh:
        for r in rows:
            fh.write((r if isinstance(r, str) else json.dumps(r)) + "\n")
    return path


def write_yaml(path: Path, doc: Mapping[str, Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(_plain(doc), sort_keys=False, allow_unicode=True), encoding="utf-8")
    return path


def _plain(value: Any) -> Any:
    """Paths become strings; containers are copied so callers' dicts are never shared."""
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def chat(user: str, answer: str, system: str | None = None) -> dict:
    msgs = ([{"role": "system", "content": system}] if system else []) + [
        {"role": "user", "content": user}, {"role": "assistant", "content": answer}]
    return {"messages": msgs}


ALL_TEST_SPLIT = {"train": 0.0, "validation": 0.0, "test": 1.0, "seed": 1}


def write_eval_goal(path: Path, name: str, data: Path, *, success: Sequence[Mapping[str, Any]],
                    candidates: Sequence[Mapping[str, Any]], data_extra: Mapping[str, Any] | None = None) -> Path:
    """A classification goal whose whole dataset is the test split (scoring outputs, nothing to
    train)."""
    return write_yaml(path, {
        "goal": name,
        "data": {"path": data, "split": ALL_TEST_SPLIT, **(data_extra or {})},
        "task": "classification",
        "success": list(success),
        "candidates": list(candidates),
    })


def write_goal(tmp_path: Path, data: Path, *, extra_candidates: Sequence[Mapping[str, Any]] = (), name: str = "t",
               split: Mapping[str, Any] | None = None) -> Path:
    """An accuracy goal with one zero-shot prompt candidate (plus ``extra_candidates``)."""
    return write_yaml(tmp_path / f"{name}.yaml", {
        "goal": name,
        "data": {"path": data, "split": dict(split or {"train": 0.8, "validation": 0.1, "test": 0.1, "seed": 13})},
        "success": [{"metric": "accuracy", "at_least": 0.5}],
        "candidates": [{"name": "zero-shot", "kind": "prompt"}, *extra_candidates],
    })


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


def tiny_goal(tmp_path: Path, model_dir: Path, *, n: int = 60, extra_candidates: Sequence[Mapping[str, Any]] = (),
              max_new_tokens: int = 6, judge: bool = True, name: str = "tinyrun", test_ratio: float = 0.25,
              rubric: str = "instruction_following", human_criterion: bool = False, human_items: int = 6,
              human_extra: Mapping[str, Any] | None = None,
              extra_success: Sequence[Mapping[str, Any]] = ()) -> Path:
    """A routing goal on the tiny model: zero-shot, few-shot and a LoRA, judged with ``rubric``.

    ``human_criterion`` adds ``human.<rubric> at_least 3`` to the success criteria;
    ``human_extra`` more keys for the ``human:`` section (e.g. ``{"mode": "pairwise"}``);
    ``extra_success`` more criteria.
    """
    data = write_jsonl(tmp_path / "routing.jsonl", routing_rows(n))
    train = round(0.75 - 0.1, 2) if test_ratio == 0.25 else round(1 - test_ratio - 0.1, 2)
    success = [{"metric": "accuracy", "at_least": 0.5},
               {"metric": "accuracy", "improve_by": "10%", "baseline": "zero-shot"}]
    if human_criterion:
        success.append({"metric": f"human.{rubric}", "at_least": 3})
    doc: dict[str, Any] = {
        "goal": name,
        "model": model_dir,
        "task": "classification",
        "data": {"path": data, "split": {"train": train, "validation": 0.1, "test": test_ratio, "seed": 3}},
        "success": success + list(extra_success),
        "metrics": [{"name": "one_word", "metric": "length", "args": {"max_words": 1}}],
        "decoding": {"max_new_tokens": max_new_tokens},
        "candidates": [
            {"name": "zero-shot", "kind": "prompt"},
            {"name": "few-shot", "kind": "prompt", "shots": 3},
            {"name": "lora", "kind": "lora", "r": 4, "alpha": 8, "learning_rate": 0.005, "epochs": 1,
             "batch_size": 8, "max_length": 64},
            *extra_candidates,
        ],
    }
    if judge:
        doc["judge"] = {"model": f"local:{model_dir}", "rubrics": [rubric]}
    doc["human"] = {"rubrics": [rubric], "items": human_items, "raters_per_item": 2, "min_ratings": 3,
                    **(human_extra or {})}
    return write_yaml(tmp_path / f"{name}.yaml", doc)


APP_GOAL = "tinyapp"


def app_goal(goals_dir: Path, model_dir: Path, **kwargs: Any) -> Path:
    """The goal the app tests use: the tiny routing goal judged on the two-criterion tone
    rubric, with ``judge.tone`` and ``human.tone`` criteria and twelve panel items."""
    return tiny_goal(goals_dir, model_dir, name=APP_GOAL, rubric="tone", human_criterion=True, human_items=12,
                     extra_success=[{"metric": "judge.tone", "at_least": 3.5}], **kwargs)


def copy_project(template: dict, dest: Path) -> dict:
    """A private copy of a project from the ``tiny_run_project`` fixture (tests write ratings to it)."""
    shutil.copytree(template["root"], dest)
    return dict(template, root=dest, db=dest / "harness.duckdb", goals_dir=dest / "goals",
                rubrics_dir=ROOT / "rubrics")


def store_at_version(path: Path, version: int):
    """A DuckDB file as an older harness left it: only the first ``version`` migrations applied
    and recorded. Returns the open connection (the caller adds rows, then closes or migrates it)."""
    import duckdb

    from harness.store import MIGRATIONS

    con = duckdb.connect(str(path))
    con.execute("CREATE TABLE schema_version (version INTEGER PRIMARY KEY, name VARCHAR, applied_at TIMESTAMP)")
    for number, fn in enumerate(MIGRATIONS[:version], start=1):
        fn(con)
        con.execute("INSERT INTO schema_version VALUES (?, ?, now())", [number, fn.__name__])
    return con


def table_columns(store, table: str) -> list[str]:
    """The columns of ``table`` in ``store``, in their order."""
    return [r["column_name"] for r in store.query(
        "SELECT column_name FROM information_schema.columns WHERE table_name = ? ORDER BY ordinal_position",
        [table])]


@contextmanager
def app_on_localhost(monkeypatch, db: Path, goals_dir: Path, timeout: float = 90):
    """The whole app (``app.py``) under Streamlit's AppTest against ``db`` and ``goals_dir``, run
    once. AppTest starts no server, and the app reads the address it is bound to from Streamlit's
    config: loopback, as ``harness app`` binds by default (owner pages open), restored after."""
    from streamlit import config
    from streamlit.testing.v1 import AppTest

    for name, value in {"HF_HUB_OFFLINE": "1", "HARNESS_DB": db, "HARNESS_GOALS": goals_dir,
                        "HARNESS_RUBRICS": ROOT / "rubrics", "HARNESS_LEADERBOARDS": ROOT / "leaderboards"}.items():
        monkeypatch.setenv(name, str(value))
    old = config.get_option("server.address")
    config.set_option("server.address", "localhost")
    try:
        yield AppTest.from_file(str(ROOT / "app.py"), default_timeout=timeout).run()
    finally:
        config.set_option("server.address", old)
