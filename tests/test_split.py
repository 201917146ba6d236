import hashlib
from pathlib import Path

import pytest

from harness.data.formats import load_examples
from harness.data.split import assign_splits, prepare, write_splits
from harness.errors import SealedTestSetError
from harness.goals import load_goal
from tests.helpers import write_goal, write_jsonl

LABELS = ["billing", "shipping", "technical", "account"]


def rows(n, start=0):
    out = []
    for i in range(start, start + n):
        lab = LABELS[i % 4]
        out.append({"text": f"message number {i} about {lab} with detail {i * 7 % 13}", "label": lab})
    return out


def sha(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


@pytest.fixture
def goal(tmp_path):
    data = write_jsonl(tmp_path / "data.jsonl", rows(200))
    return load_goal(write_goal(tmp_path, data, split={"train": 0.7, "validation": 0.1, "test": 0.2, "seed": 5}))


def test_sizes_within_one_and_stratified(goal, store):
    p = prepare(goal, store)
    n = len(p.examples)
    for name, ratio in (("train", 0.7), ("validation", 0.1), ("test", 0.2)):
        assert abs(len(p.splits[name]) - ratio * n) <= 1
    for lab in LABELS:
        in_test = sum(e.label == lab for e in p.test)
        assert abs(in_test - 0.2 * 50) <= 1


def test_split_twice_gives_identical_files(goal, store, tmp_path):
    a = write_splits(prepare(goal, store), tmp_path / "a")
    b = write_splits(prepare(goal, store), tmp_path / "b")
    for name in ("train", "validation", "test"):
        assert sha(a[name]) == sha(b[name])


def test_fresh_stores_agree_too(goal, tmp_path):
    from harness.store import Store

    x = prepare(goal, Store(tmp_path / "x.duckdb"))
    y = prepare(goal, Store(tmp_path / "y.duckdb"))
    assert [e.id for e in x.test] == [e.id for e in y.test]


def test_appending_examples_moves_nothing(goal, store, tmp_path):
    before = prepare(goal, store)
    where = {e.id: s for s, exs in before.splits.items() for e in exs}
    data = goal.data_path()
    with data.open("a") as fh:
        import json

        for r in rows(50, start=1000):
            fh.write(json.dumps(r) + "\n")
    # New test examples change the test set: that needs an explicit reseal, by design.
    with pytest.raises(SealedTestSetError):
        prepare(goal, store)
    after = prepare(goal, store, reseal=True)
    where_after = {e.id: s for s, exs in after.splits.items() for e in exs}
    assert all(where_after[i] == s for i, s in where.items())
    assert len(after.examples) == 250
    for name, ratio in (("train", 0.7), ("validation", 0.1), ("test", 0.2)):
        assert abs(len(after.splits[name]) - ratio * 250) <= 1
    hist = store.seal_history(goal.goal)
    assert [h["resealed"] for h in hist] == [False, True]


def test_editing_a_test_example_stops_until_reseal(goal, store):
    p = prepare(goal, store)
    victim = p.test[0]
    data = goal.data_path()
    text = data.read_text()
    assert victim.input_text in text
    data.write_text(text.replace(victim.input_text, victim.input_text + " (edited)"))
    before = store.query("SELECT count(*) AS n FROM examples")[0]["n"]
    with pytest.raises(SealedTestSetError, match="--reseal"):
        prepare(goal, store)
    # The refused split wrote nothing.
    assert store.query("SELECT count(*) AS n FROM examples")[0]["n"] == before
    assert len(store.seal_history(goal.goal)) == 1
    again = prepare(goal, store, reseal=True)
    assert again.sealed == "resealed"
    assert store.current_seal(goal.goal)["test_hash"] == again.test_hash
    # After a reseal the store still holds the old test examples too: a later change is not
    # counted against them (it said "40 missing or edited" for one edit).
    data.write_text(data.read_text().replace(p.test[1].input_text, p.test[1].input_text + " (edited)"))
    with pytest.raises(SealedTestSetError) as err:
        prepare(goal, store)
    assert "missing or edited" not in str(err.value) and f"{len(again.test)} sealed" in str(err.value)


def test_leakage_flagged_or_dropped(tmp_path, store):
    long = "my parcel with the blue winter jacket never arrived although tracking says it was delivered to the front door yesterday"
    data = write_jsonl(tmp_path / "d.jsonl", rows(100) + [{"text": long, "label": "shipping"},
                                                         {"text": long + " please", "label": "shipping"}])
    for seed in range(20):  # find a seed that puts the two copies on opposite sides
        g = load_goal(write_goal(tmp_path, data, split={"train": 0.5, "validation": 0.0, "test": 0.5, "seed": seed}))
        assert g.data.leakage == "drop"  # the default
        g.data.leakage = "flag"
        p = prepare(g, store, record=False)
        side = {e.id: s for s, exs in p.splits.items() for e in exs}
        a, b = [e for e in p.examples if long in e.input_text]
        if side[a.id] != side[b.id]:
            break
    assert any({l["train_id"], l["test_id"]} == {a.id, b.id} and not l["exact"] for l in p.leakage)
    g.data.leakage = "drop"
    d = prepare(g, store, record=False)
    train_copy = a if side[a.id] == "train" else b
    assert d.dropped == [train_copy.id]
    assert train_copy.id not in {e.id for e in d.train}


def test_assign_keeps_previous():
    exs = load_examples.__globals__["make_example"]
    items = [exs("label", [{"role": "user", "content": f"t{i}"}], "x", label="x") for i in range(20)]
    first = assign_splits(items, {"train": 0.5, "validation": 0.0, "test": 0.5}, 3)
    flipped = {k: ("train" if v == "test" else "test") for k, v in first.items()}
    assert assign_splits(items, {"train": 0.5, "validation": 0.0, "test": 0.5}, 3, flipped) == flipped


def test_run_drops_a_copy_of_a_test_example_with_another_system_prompt_and_says_so(tmp_path, store):
    """Issue 11: a test example copied into the data under a different system prompt was
    trained on without a word. The user turns and the answer decide; the run prints it."""
    import io

    from rich.console import Console

    from harness.runner import prepare_run
    from tests.helpers import chat

    base = [chat(f"question number {i} about the order status of parcel {i * 7}", f"answer {i}", system="Be brief.")
            for i in range(40)]
    data = write_jsonl(tmp_path / "d.jsonl", base)
    g = load_goal(write_goal(tmp_path, data, split={"train": 0.5, "validation": 0.0, "test": 0.5, "seed": 3}))
    first = prepare(g, store, record=False)
    victim = first.test[0]
    copy = chat(victim.prompt[-1]["content"], victim.reference, system="You are a support agent. Answer well.")
    data = write_jsonl(tmp_path / "d.jsonl", base + [copy])
    out = io.StringIO()
    g = load_goal(write_goal(tmp_path, data, split={"train": 0.5, "validation": 0.0, "test": 0.5, "seed": 3}))
    run = prepare_run(g, store, console=Console(file=out, width=200), progress=False)
    trained_inputs = {e.input_text for e in run.prepared.train + run.prepared.validation}
    assert run.prepared.dropped and victim.input_text not in trained_inputs
    assert "leakage" in out.getvalue() and "dropped from training" in out.getvalue()


def test_a_renamed_goal_over_the_same_data_inherits_the_sealed_test_set(tmp_path, store):
    """Issue 11: renaming the goal gave it a fresh seal and 15 of 16 formerly sealed test
    examples went into training. The seal belongs to the data: every example sealed as test
    by the first goal is in the second goal's test set, none in its training data."""
    data = write_jsonl(tmp_path / "d.jsonl", rows(160))
    split = {"train": 0.8, "validation": 0.1, "test": 0.1, "seed": 13}
    first = prepare(load_goal(write_goal(tmp_path, data, name="before", split=split)), store)
    sealed = {e.id for e in first.test}
    other_split = {"train": 0.7, "validation": 0.1, "test": 0.2, "seed": 99}  # even with another seed and ratio
    second = prepare(load_goal(write_goal(tmp_path, data, name="after", split=other_split)), store)
    assert sealed <= {e.id for e in second.test}
    assert not sealed & {e.id for e in second.train + second.validation}
    assert set(second.inherited) == sealed and set(second.inherited.values()) == {"before"}


def test_a_split_with_no_test_example_is_refused_before_anything_is_recorded(tmp_path):
    """Issue 11: `harness split` on a one-example file sealed an empty test set and exited 0."""
    from typer.testing import CliRunner

    from harness.cli import app
    from harness.errors import InputError
    from harness.store import Store

    data = write_jsonl(tmp_path / "one.jsonl", rows(1))
    goal_path = write_goal(tmp_path, data)
    db = tmp_path / "s.duckdb"
    result = CliRunner().invoke(app, ["split", str(goal_path), "--db", str(db), "--out", str(tmp_path / "out")])
    out = (result.stdout or "") + (result.stderr or "")
    assert result.exit_code == 2 and "Traceback" not in out, out
    assert f"{goal_path}:" in out and "data.split.test" in out and "test split is empty" in out, out
    store = Store(db)
    assert store.current_seal("t") is None and store.example_splits("t") == {}
    assert not (tmp_path / "out").exists()
    with pytest.raises(InputError, match="test split is empty"):  # the dry run's prepare too
        prepare(load_goal(goal_path), store, record=False)


def test_a_model_trained_on_this_goals_test_examples_is_refused_at_its_line(tmp_path, store):
    """A model the harness trained (its harness_seen.json lists what it and its base saw, by id
    and by user turns and answer), brought into a goal whose test set holds some of those
    examples, would score its memory: the run refuses it at the model: line, before anything is
    booked — a copy under another system prompt counts; a model that saw none runs, and one
    whose record is damaged runs with a warning that it is unchecked."""
    import io

    from rich.console import Console

    from harness.data.formats import make_example
    from harness.errors import InputError
    from harness.runner import prepare_run
    from harness.train.seen import SEEN_FILE, write_seen

    data = write_jsonl(tmp_path / "d.jsonl", rows(120))
    test = prepare(load_goal(write_goal(tmp_path, data)), store, record=False).test
    model, base = tmp_path / "exported", tmp_path / "base"
    for folder in (model, base):
        folder.mkdir()
        (folder / "config.json").write_text("{}")
    goal = load_goal(write_goal(tmp_path, data, extra_candidates=[
        {"name": "tuned", "kind": "prompt", "model": str(model)}]))
    other = make_example("chat", [{"role": "user", "content": "nothing like the test set at all"}], "no")
    # The base saw two test examples as they are; the model one more, under a system prompt.
    write_seen(base, test[:2], None, "goal 'a', candidate 'lora'")
    moved = make_example("chat", [{"role": "system", "content": "Be brief."},
                                  {"role": "user", "content": test[2].input_text}], test[2].reference)
    write_seen(model, [other, moved], base, "goal 'b', candidate 'full'")
    with pytest.raises(InputError) as err:
        prepare_run(goal, store, progress=False)
    text = str(err.value)
    assert f"was trained on 3 of this goal's {len(test)} test examples" in text
    assert "goal 'b', candidate 'full'; on a base trained by goal 'a', candidate 'lora'" in text
    assert "t.yaml:" in text and "candidates[1].model" in text and "d.jsonl lines" in text
    assert all(str(e.line) in text for e in test[:3])
    assert not store.runs("t")  # nothing booked
    write_seen(model, [other], None, "goal 'b', candidate 'full'")
    prepare_run(goal, store, progress=False)  # saw none of them: runs
    (model / SEEN_FILE).write_text("{not json")
    out = io.StringIO()
    prepare_run(goal, store, progress=False, console=Console(file=out, width=300))
    assert "what it saw is damaged: it cannot be checked" in out.getvalue()
    # Trained on a harness-trained base that kept no record: what the base saw is unknown, and said.
    (base / SEEN_FILE).unlink()
    (base / "harness_adapter.json").write_text("{}")
    write_seen(model, [other], base, "goal 'b', candidate 'full'")
    out = io.StringIO()
    prepare_run(goal, store, progress=False, console=Console(file=out, width=300))
    assert out.getvalue().count("what it saw is not recorded for its base") == 1
