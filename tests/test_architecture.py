"""The shape of the code, asserted: where SQL may live, how the store is typed, that kinds are
dispatched through the registry, that functions stay short, and that a new candidate kind is
one module (a toy kind registered through a real entry point runs end to end)."""
from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import ROOT, write_eval_goal, write_jsonl

HARNESS = ROOT / "harness"
SQL = re.compile(r"\b(SELECT\b[^;]*?\bFROM|INSERT\s+INTO|UPDATE\s+\w+\s+SET|DELETE\s+FROM|CREATE\s+(TABLE|INDEX|VIEW))\b")
SQL_HOMES = {HARNESS / "store.py"}


def _modules() -> list[tuple[Path, ast.Module]]:
    return [(p, ast.parse(p.read_text(encoding="utf-8"))) for p in sorted(HARNESS.rglob("*.py"))]


def test_no_sql_outside_the_store():
    found = []
    for path, tree in _modules():
        if path in SQL_HOMES:
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and SQL.search(node.value):
                found.append(f"{path.relative_to(ROOT)}:{node.lineno}: {node.value.strip()[:60]!r}")
    assert not found, "SQL outside harness/store.py (add a named Store method):\n" + "\n".join(found)


def test_the_sql_detector_sees_sql():
    assert SQL.search("SELECT * FROM runs") and SQL.search("insert into x") is None  # house style is upper case
    assert SQL.search("DELETE FROM ratings WHERE goal = ?") and not SQL.search("Select the best candidate")


def test_store_parameters_are_typed_store():
    bad = []
    for path, tree in _modules():
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                for arg in [*node.args.args, *node.args.kwonlyargs]:
                    if arg.arg == "store" and (arg.annotation is None or "Store" not in ast.unparse(arg.annotation)):
                        bad.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name}")
    assert not bad, "store parameters not typed Store:\n" + "\n".join(bad)


def _kind_literals() -> set[str]:
    from harness.kinds import kind_names

    return set(kind_names())


def test_no_kind_name_branches_outside_the_kind_modules():
    kinds = _kind_literals()
    found = []
    for path, tree in _modules():
        if HARNESS / "kinds" in path.parents:
            continue
        for node in ast.walk(tree):
            if not isinstance(node, ast.Compare):
                continue
            sides = [node.left, *node.comparators]
            if not any(isinstance(s, ast.Attribute) and s.attr == "kind" for s in sides):
                continue
            consts = {c.value for s in sides for c in ast.walk(s) if isinstance(c, ast.Constant)}
            if consts & kinds:
                found.append(f"{path.relative_to(ROOT)}:{node.lineno}: {ast.unparse(node)}")
    assert not found, "dispatch on a candidate kind through harness.kinds.kind_of:\n" + "\n".join(found)


def test_functions_are_at_most_60_lines_unless_a_comment_says_why():
    long = []
    for path, tree in _modules():
        lines = path.read_text(encoding="utf-8").splitlines()
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = node.end_lineno - node.lineno + 1
                head = "\n".join(lines[node.lineno - 1: node.lineno + 4])
                if n > 60 and "60 lines" not in head:
                    long.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name} ({n} lines)")
    assert not long, "functions over 60 lines (split them, or say why in a comment):\n" + "\n".join(long)


def test_runner_modules_do_not_import_each_other_in_a_circle():
    graph: dict[str, set[str]] = {}
    for path, tree in _modules():
        mod = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
        deps = set()
        for node in tree.body:  # module-level imports only: function-level ones are lazy on purpose
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("harness"):
                deps.add(node.module)
            elif isinstance(node, ast.Import):
                deps |= {a.name for a in node.names if a.name.startswith("harness")}
        graph[mod] = deps
    for mod in [m for m in graph if m.startswith(("harness.runner", "harness.kinds"))]:
        for dep in graph[mod]:
            assert mod not in graph.get(dep, set()), f"{mod} and {dep} import each other"


# --------------------------------------------------------------------------- one renderer

def test_training_rows_and_generation_prompts_render_the_same_prefix(tiny_model_dir):
    from harness.backends.local import LocalModel
    from harness.data.formats import make_example
    from harness.train.sft import encode_example

    model = LocalModel(str(tiny_model_dir))
    ex = make_example("chat", [{"role": "system", "content": "Route it."},
                               {"role": "user", "content": "parcel 1007 has not arrived"}], "shipping")
    row = encode_example(model.tokenizer, ex, max_length=512)
    prompt_ids = model.encode([list(ex.prompt)])[0]
    assert row.input_ids[:len(prompt_ids)] == prompt_ids
    assert row.labels[:len(prompt_ids)] == [-100] * len(prompt_ids) and row.n_answer > 0


# --------------------------------------------------------------------------- a toy kind, entry-point style

TOY_MODULE = '''
"""A third-party candidate kind: answers every test example with a fixed word."""
from typing import ClassVar

from pydantic import BaseModel, ConfigDict, Field

from harness.cache import content_key
from harness.kinds import CandidateKind, CandidatePlan


class ParrotOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    word: str = Field(description="What to answer.")


class ParrotKind(CandidateKind):
    name: ClassVar[str] = "parrot"
    Options = ParrotOptions
    local_model: ClassVar[bool] = False

    def plan(self, run, cand):
        from harness.runner.context import Step

        return CandidatePlan([Step(cand.name, cand.kind, "read", len(run.prepared.test), 0, note="toy")])

    def produce(self, run, cand):
        from harness.runner.context import Outputs

        word = self.options(cand).word
        keys = [content_key("parrot", word, ex.id) for ex in run.prepared.test]
        run.store.put_predictions([{"cache_key": k, "model_id": "parrot", "output": word} for k in keys],
                                  [(run.run_id, cand.name, ex.id, k) for ex, k in zip(run.prepared.test, keys)])
        return Outputs(cand.name, [word] * len(keys), len(keys), 0)
'''


@pytest.fixture
def toy_kind_path(tmp_path):
    """A folder with the toy kind's module and a dist-info whose entry point registers it."""
    site = tmp_path / "site"
    (site / "parrot_kind-0.1.dist-info").mkdir(parents=True)
    (site / "parrot_kind.py").write_text(TOY_MODULE)
    (site / "parrot_kind-0.1.dist-info" / "METADATA").write_text("Metadata-Version: 2.1\nName: parrot-kind\nVersion: 0.1\n")
    (site / "parrot_kind-0.1.dist-info" / "entry_points.txt").write_text(
        "[harness.candidate_kind]\nparrot = parrot_kind:ParrotKind\n")
    return site


def _harness(args: list[str], site: Path, db: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(site), str(ROOT)]), HARNESS_DB=str(db))
    return subprocess.run([sys.executable, "-m", "harness", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=300)


def test_a_toy_kind_from_an_entry_point_runs_end_to_end(tmp_path, toy_kind_path):
    rows = [{"text": f"ticket {i}", "label": "billing" if i % 4 else "shipping"} for i in range(40)]
    data = write_jsonl(tmp_path / "d.jsonl", rows)
    goal = write_eval_goal(tmp_path / "g.yaml", "toy", data, success=[{"metric": "accuracy", "at_least": 0.5}],
                           candidates=[{"name": "polly", "kind": "parrot", "word": "billing"},
                                       {"name": "bad", "kind": "parrot", "word": "shipping"}])
    db = tmp_path / "s.duckdb"
    dry = _harness(["run", str(goal), "--dry-run"], toy_kind_path, db)
    assert dry.returncode == 0, dry.stderr
    polly = [line for line in dry.stdout.splitlines() if "polly" in line]
    assert polly and all(w in polly[0] for w in ("parrot", "read", "40", "toy")), dry.stdout

    run = _harness(["run", str(goal), "--no-progress"], toy_kind_path, db)
    assert run.returncode == 0, run.stdout + run.stderr
    from harness.store import Store

    store = Store(db)
    run_id = store.latest_run("toy")["run_id"]
    verdicts = {v["candidate"]: v["status"] for v in store.verdicts(run_id)}
    assert verdicts == {"polly": "pass", "bad": "fail"}
    assert {c["name"]: c["kind"] for c in store.candidates(run_id)} == {"polly": "parrot", "bad": "parrot"}


def test_a_toy_kind_checks_its_options_with_file_line_and_field(tmp_path, toy_kind_path):
    data = write_jsonl(tmp_path / "d.jsonl", [{"text": "t", "label": "a"}] * 3)
    goal = write_eval_goal(tmp_path / "g.yaml", "toy", data, success=[{"metric": "accuracy", "at_least": 0.5}],
                           candidates=[{"name": "polly", "kind": "parrot", "wrod": "billing"}])
    r = _harness(["run", str(goal), "--dry-run"], toy_kind_path, tmp_path / "s.duckdb")
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "g.yaml" in r.stderr and "wrod" in r.stderr


def test_without_the_entry_point_the_kind_is_unknown_with_a_clear_error(tmp_path):
    data = write_jsonl(tmp_path / "d.jsonl", [{"text": "t", "label": "a"}] * 3)
    goal = write_eval_goal(tmp_path / "g.yaml", "toy", data, success=[{"metric": "accuracy", "at_least": 0.5}],
                           candidates=[{"name": "polly", "kind": "parrot", "word": "billing"}])
    r = _harness(["run", str(goal), "--dry-run"], tmp_path, tmp_path / "s.duckdb")
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "unknown candidate kind 'parrot'" in r.stderr, r.stderr

