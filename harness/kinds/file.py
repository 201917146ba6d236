"""``kind: file``: outputs someone already has, matched to the test set by example id or input."""
from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from pydantic import BaseModel, ConfigDict, Field

from harness.cache import content_key
from harness.errors import InputError, Problem
from harness.kinds import CandidateKind, CandidatePlan

if TYPE_CHECKING:
    from harness.goals import Candidate, Goal
    from harness.runner.context import Outputs, Run


class FileOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    path: str = Field(description='JSONL of {"id" or "input", "output"} rows, one per test example.')


class FileKind(CandidateKind):
    name: ClassVar[str] = "file"
    description: ClassVar[str] = "Outputs someone already has, from a JSONL file."
    Options = FileOptions
    local_model: ClassVar[bool] = False

    def check(self, cand: "Candidate", goal: "Goal", options: FileOptions) -> list[Problem]:
        path = self.path(goal, options)
        if not path.is_file():
            return [Problem("", None, "path", f"outputs file {options.path!r} not found" +
                            (" (it is a folder)" if path.is_dir() else ""))]
        return []

    def path(self, goal: "Goal", options: FileOptions) -> Path:
        from harness.goals import resolve_data_path

        return resolve_data_path(options.path, goal.root)

    def plan(self, run: "Run", cand: "Candidate") -> CandidatePlan:
        """Reading the file is the work; its outputs are known now, so the judge's part of the
        plan counts exactly what is left."""
        from harness.runner.context import Step

        _, texts, keys = self._read(run, cand)
        return CandidatePlan([Step(cand.name, cand.kind, "read", len(texts), 0)], keys,
                             {k: {"output": t} for k, t in zip(keys, texts)})

    def _read(self, run: "Run", cand: "Candidate") -> tuple[str, list[str], list[str]]:
        """(model id, the outputs in test order, their prediction keys)."""
        path = self.path(run.goal, self.options(cand))
        found = read_outputs(path, run)
        texts = [found[ex.id] for ex in run.prepared.test]
        stat = path.stat()
        model_id = f"file:{content_key(str(path.resolve()), stat.st_size, stat.st_mtime_ns)}"
        return model_id, texts, [content_key("file-output", model_id, ex.id, t) for ex, t in zip(run.prepared.test, texts)]

    def produce(self, run: "Run", cand: "Candidate") -> "Outputs":
        from harness.runner.context import Outputs

        model_id, texts, keys = self._read(run, cand)
        run.store.put_predictions([{"cache_key": k, "model_id": model_id, "output": t, "cost_usd": 0.0}
                                   for k, t in zip(keys, texts)],
                                  [(run.run_id, cand.name, ex.id, k) for ex, k in zip(run.prepared.test, keys)])
        return Outputs(cand.name, texts, 0, len(texts))


def read_outputs(path: Path, run: "Run") -> dict[str, str]:
    """{test example id: output}; InputError with file:line for bad rows and missing examples."""
    by_id, by_input = {}, {}
    for ex in run.prepared.examples:
        by_id[ex.id] = ex
        by_input.setdefault(ex.input_text.strip(), ex)
    found: dict[str, str] = {}
    first_line: dict[str, int] = {}
    problems: list[Problem] = []
    with path.open(encoding="utf-8") as fh:
        for lineno, raw in enumerate(fh, 1):
            if not raw.strip():
                continue
            try:
                rec = json.loads(raw)
            except json.JSONDecodeError as exc:
                problems.append(Problem(str(path), lineno, None, f"malformed JSON: {exc.msg}"))
                continue
            if not isinstance(rec, dict) or not isinstance(rec.get("output"), str):
                problems.append(Problem(str(path), lineno, "output", "each row needs a string 'output'"))
                continue
            ex = by_id.get(str(rec.get("id", ""))) or by_input.get(str(rec.get("input", "")).strip())
            if ex is None:
                problems.append(Problem(str(path), lineno, "id" if "id" in rec else "input",
                                        "matches no example of the goal's data"))
                continue
            if ex.id in found:  # one output an example: a later row would pick among attempts
                problems.append(Problem(str(path), lineno, "id" if "id" in rec else "input",
                                        f"a second output for the example of line {first_line[ex.id]}"))
                continue
            found[ex.id], first_line[ex.id] = rec["output"], lineno
    missing = [ex for ex in run.prepared.test if ex.id not in found]
    problems.extend(Problem(str(path), None, None, f"no output for test example {ex.id} "
                                                    f"(data line {ex.line}: {ex.input_text[:50]!r})")
                    for ex in missing[:20])
    if len(missing) > 20:
        problems.append(Problem(str(path), None, None, f"... and {len(missing) - 20} more test examples"))
    if problems:
        raise InputError(problems)
    return found
