"""The shipped goal files and datasets: they load, parse cleanly, and the generator reproduces them."""
from __future__ import annotations

import collections
import os
import subprocess
import sys
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from harness.data.dedup import exact_duplicates, near_duplicates  # noqa: E402
from harness.data.formats import read_jsonl  # noqa: E402
from harness.goals import load_goal  # noqa: E402
from harness.metrics import METRICS, compute_metric  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
GOALS = sorted((ROOT / "goals").glob("*.yaml"))
DATA = sorted((ROOT / "data").glob("*.jsonl"))
GENERATOR = ROOT / "data" / "make_demo.py"
GENERATED = ("demo.jsonl", "support_replies.jsonl", "python_tasks.jsonl")
QUEUES = {"billing", "shipping", "technical", "account", "refund"}


def _examples(name: str):
    examples, problems = read_jsonl(ROOT / "data" / name)
    assert problems == []
    return examples


def _full_text(ex) -> str:
    # The text `harness check` and the leakage report compare (system turn included).
    return "\n".join(m["content"] for m in ex.prompt) + "\n" + ex.reference


def test_the_expected_files_are_shipped():
    assert {p.name for p in GOALS} >= {"demo.yaml", "support_offtopic.yaml", "python_error_handling.yaml",
                                       "manual_qa.yaml"}
    assert {p.name for p in DATA} >= set(GENERATED) | {"manual_qa.jsonl"}


@pytest.mark.parametrize("path", GOALS, ids=lambda p: p.name)
def test_goal_loads_and_names_known_metrics_and_rubrics(path, monkeypatch):
    monkeypatch.chdir(ROOT)
    goal = load_goal(path)
    assert goal.data_path().is_file()
    named = {m.name for m in goal.metrics}
    rubrics = {p.stem for p in (ROOT / "rubrics").glob("*.yaml")}
    for spec in goal.metrics:
        assert spec.metric in METRICS, f"{path.name}: metrics[{spec.name}] uses unknown metric {spec.metric!r}"
    for crit in goal.success:
        head = crit.metric.split(".")[0]
        if head in ("judge", "human"):
            rubric = crit.metric.split(".")[1]
            assert rubric in rubrics, f"{path.name}: no rubrics/{rubric}.yaml"
            assert goal.judge is not None and rubric in goal.judge.rubrics or head == "human"
        else:
            assert crit.metric in named or crit.metric in METRICS, f"{path.name}: unknown metric {crit.metric!r}"
    for rubric in (goal.judge.rubrics if goal.judge else []) + (goal.human.rubrics if goal.human else []):
        assert rubric in rubrics, f"{path.name}: no rubrics/{rubric}.yaml"


@pytest.mark.parametrize("path", DATA, ids=lambda p: p.name)
def test_data_file_parses_without_problems_or_near_duplicates(path):
    examples, problems = read_jsonl(path)
    assert problems == []
    assert len(examples) >= 100
    texts = [_full_text(e) for e in examples]
    assert exact_duplicates(texts) == []
    assert exact_duplicates([e.input_text for e in examples]) == []
    # The goals keep the default near-duplicate threshold of 0.8.
    assert near_duplicates(texts, 0.8) == []


def test_demo_is_a_balanced_five_queue_routing_task():
    examples = _examples("demo.jsonl")
    assert 350 <= len(examples) <= 450
    counts = collections.Counter(e.reference for e in examples)
    assert set(counts) == QUEUES
    assert min(counts.values()) >= 0.15 * len(examples)
    systems = {e.system for e in examples}
    assert len(systems) == 1
    instruction = systems.pop()
    assert all(q in instruction for q in QUEUES)
    for e in examples:
        assert [m["role"] for m in e.prompt] == ["system", "user"]
        assert len(e.input_text.split()) <= 40  # short rows keep CPU training fast


def test_python_reference_answers_meet_their_goal():
    examples = _examples("python_tasks.jsonl")
    refs = [e.reference for e in examples]
    assert all(r.startswith("```python\n") for r in refs)
    assert compute_metric("python_parses", refs, examples).value == 1.0
    assert compute_metric("python_error_handling", refs, examples).value == 1.0


def test_support_data_has_planted_pii_only_in_customer_turns():
    from harness.data.pii import find_pii

    examples = _examples("support_replies.jsonl")
    kinds = collections.Counter(m.kind for e in examples for m in find_pii(e.input_text))
    assert {"EMAIL", "PHONE", "CREDIT_CARD"} <= set(kinds)
    with_pii = sum(bool(find_pii(e.input_text)) for e in examples)
    assert 0.1 * len(examples) <= with_pii <= 0.5 * len(examples)
    assert not [e.line for e in examples if find_pii(e.reference)]
    assert all(e.system is None for e in examples)  # the `system` baseline supplies one


def test_generator_is_deterministic(tmp_path):
    proc = subprocess.run([sys.executable, str(GENERATOR), "--out", str(tmp_path)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    for name in GENERATED:
        assert (tmp_path / name).read_bytes() == (ROOT / "data" / name).read_bytes(), \
            f"{name} differs from `python data/make_demo.py` output: regenerate and commit it"


@pytest.mark.slow
def test_support_topics_accept_the_reference_replies_and_reject_off_topic_text(monkeypatch):
    # Loads the bundled all-MiniLM-L6-v2 (no generation model); slow on a busy 2-core machine.
    monkeypatch.chdir(ROOT)
    goal = load_goal(ROOT / "goals" / "support_offtopic.yaml")
    args = next(c.args for c in goal.success if c.metric == "off_topic_rate")
    examples = _examples("support_replies.jsonl")
    refs = compute_metric("off_topic_rate", [e.reference for e in examples], examples, **args)
    assert refs.value <= 0.05
    off = ["The capital of France is Paris.", "Mix flour, sugar and eggs, then bake the banana bread for an hour.",
           "To fix a flat bicycle tyre, take the wheel off first.", "Tomorrow will be sunny with light winds."]
    assert compute_metric("off_topic_rate", off, examples[:len(off)], **args).value == 1.0


# --------------------------------------------------------------------------- the manual goal


def test_manual_qa_generator_reproduces_the_committed_file(tmp_path):
    proc = subprocess.run([sys.executable, str(ROOT / "data" / "make_manual_qa.py"), "--out", str(tmp_path)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "manual_qa.jsonl").read_bytes() == (ROOT / "data" / "manual_qa.jsonl").read_bytes()


def test_every_manual_fact_is_stated_in_the_chapter_its_question_names():
    """What RAG can find: each reference's fact occurs (SQuAD-normalised, as contains_reference
    reads it) in the chapter the record names as its source, and every chapter is asked about."""
    from harness.metrics.reference import squad_normalize

    chapters = {p.name: squad_normalize(p.read_text(encoding="utf-8")) for p in (ROOT / "data" / "manual").glob("*.md")}
    examples = _examples("manual_qa.jsonl")
    assert len(examples) == 230 and len(chapters) == 7
    for ex in examples:
        source = ex.extra["source"]
        fact = squad_normalize(ex.reference.split("Answer:", 1)[1])
        assert f" {fact} " in f" {chapters[source]} ", (source, ex.reference)
    assert {ex.extra["source"] for ex in examples} == set(chapters)


def test_manual_references_meet_both_criteria_and_zero_shot_cannot_know_them():
    """The references answer correctly and in the format (so the criteria can be met at all);
    an answer that does not name the fact is not correct."""
    examples = _examples("manual_qa.jsonl")
    refs = [ex.reference for ex in examples]
    correct = compute_metric("contains_reference", refs, examples, after="Answer:")
    fmt = compute_metric("regex", refs, examples, pattern="^Answer: [^\\n]{1,80}$")
    assert correct.value == 1.0 and fmt.value == 1.0
    wrong = compute_metric("contains_reference", ["Answer: I do not know."] * len(refs), examples, after="Answer:")
    assert wrong.value == 0.0
