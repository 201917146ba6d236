"""Deterministic train/validation/test splits with a sealed test set.

Assignment. Examples are ordered by a hash of (seed, content id) — grouped by label for
classification, which stratifies — and dealt out one at a time to the split furthest below
its target share, so split sizes stay within one example of the ratios. Examples already
assigned (remembered in the store) keep their split; only new examples are dealt, filling
the splits' deficits. Re-running therefore gives identical files, and adding data never
moves an existing example.

Sealing. The test set's hash (over its examples' content ids) is recorded in the store the
first time. A later split or run that finds a different test set stops with
:class:`SealedTestSetError` unless the user reseals explicitly, which is recorded too.
"""
from __future__ import annotations

import json
import math
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from harness.cache import digest
from harness.data.formats import Example, load_examples, write_jsonl
from harness.errors import InputError, Problem, SealedTestSetError

if TYPE_CHECKING:
    from harness.store import Store

SPLITS = ("train", "validation", "test")


def hash_unit(seed: int, example_id: str) -> str:
    return digest(f"{seed}:{example_id}")


def _deal(order: list[Example], ratios: dict[str, float], counts: dict[str, int],
          out: dict[str, str]) -> None:
    """Give each example to the split with the largest deficit against its target."""
    total = sum(counts.values())
    for ex in order:
        total += 1
        best = max(SPLITS, key=lambda s: (ratios[s] * total - counts[s], ratios[s], -SPLITS.index(s)))
        out[ex.id] = best
        counts[best] += 1


def assign_splits(examples: list[Example], ratios: dict[str, float], seed: int,
                  previous: dict[str, str] | None = None) -> dict[str, str]:
    """Map example id → split. ``previous`` assignments are kept for ids still present."""
    previous = previous or {}
    out: dict[str, str] = {}
    counts = {s: 0 for s in SPLITS}
    fresh: list[Example] = []
    seen: set[str] = set()
    for ex in examples:
        if ex.id in seen:
            continue
        seen.add(ex.id)
        prior = previous.get(ex.id)
        if prior in SPLITS:
            out[ex.id] = prior
            counts[prior] += 1
        else:
            fresh.append(ex)
    fresh.sort(key=lambda ex: (ex.label or "", hash_unit(seed, ex.id)))
    _deal(fresh, ratios, counts, out)
    return out


def class_of(ex: Any) -> str:
    """The class of a classification example: its label, or for a chat or completion record its
    reference answer (the runner's label set uses the same rule)."""
    return (getattr(ex, "label", None) or getattr(ex, "reference", None) or "").strip()


def nested_subset(examples: list[Example], fraction: float, seed: int,
                  classification: bool = False) -> list[Example]:
    """A deterministic share of ``examples`` for the data-size curve, in the input's order.

    Every fraction takes a prefix of one fixed order (:func:`subset_order`), so subsets are
    nested (the 25% subset is inside the 50% one) and hold ``round(fraction * N)`` examples
    (at least one); for classification data (``classification``, or records that carry a
    label) every class holds within one example of its share. 100% is the whole list.
    """
    if fraction >= 1:
        return list(examples)
    order = subset_order(examples, seed, classification)
    take = min(len(order), max(1, math.floor(fraction * len(order) + 0.5)))
    keep = {ex.id for ex in order[:take]}
    return [ex for ex in examples if ex.id in keep]


def subset_order(examples: list[Example], seed: int, classification: bool = False) -> list[Example]:
    """The order subsets take examples in: within a class by a hash of (seed, id); classes
    interleaved so that every prefix of k holds each class within one of k × its share.

    The interleaving is earliest-deadline-first: among the classes still below their share at
    step k, the one whose next example is due first ((taken + 1) / class size smallest) goes
    next. This keeps every prefix strictly within one of its share (a test checks it on
    thousands of class mixes); the plain largest-deficit rule can overshoot by a quarter more.
    """
    stratify = classification or any(getattr(ex, "label", None) is not None for ex in examples)
    groups: dict[str, list[Example]] = {}
    for ex in examples:
        groups.setdefault(class_of(ex) if stratify else "", []).append(ex)
    queues = [sorted(groups[c], key=lambda ex: hash_unit(seed, f"subset|{ex.id}")) for c in sorted(groups)]
    sizes = [len(q) for q in queues]
    n = sum(sizes)
    taken = [0] * len(queues)
    order: list[Example] = []
    for k in range(1, n + 1):
        best = -1
        for i, size in enumerate(sizes):
            below_share = taken[i] * n < k * size
            if below_share and (best < 0 or (taken[i] + 1) * sizes[best] < (taken[best] + 1) * size):
                best = i
        order.append(queues[best][taken[best]])
        taken[best] += 1
    return order


def test_set_hash(test: list[Example]) -> str:
    return digest("\n".join(sorted(ex.id for ex in test)))


def data_hash(examples: list[Example]) -> str:
    return digest("\n".join(sorted(ex.id for ex in examples)))


@dataclass
class Prepared:
    """The goal's data, split and checked against the seal."""

    goal: str
    examples: list[Example]
    splits: dict[str, list[Example]]
    test_hash: str
    data_hash: str
    sealed: str  # "new" | "unchanged" | "resealed"
    leakage: list[dict[str, Any]] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)
    scrubbed: dict[str, int] = field(default_factory=dict)
    inherited: dict[str, str] = field(default_factory=dict)  # example id -> the goal that sealed it as test

    @property
    def train(self) -> list[Example]:
        return self.splits["train"]

    @property
    def validation(self) -> list[Example]:
        return self.splits["validation"]

    @property
    def test(self) -> list[Example]:
        return self.splits["test"]

    def leakage_summary(self, policy: str, documents: dict[str, Any] | None = None) -> dict[str, Any]:
        """What a run records of leakage: the policy, how many train/validation examples duplicate
        a test example (exactly or nearly), and how many of them were dropped or kept; with
        ``documents``, the test examples found in each RAG candidate's documents."""
        duplicates = len({p["train_id"] for p in self.leakage})
        return {"policy": policy, "duplicates": duplicates, "dropped": len(self.dropped),
                "kept": duplicates - len(self.dropped), **({"documents": documents} if documents else {})}

    def manifest(self) -> dict[str, Any]:
        return {
            "goal": self.goal,
            "counts": {s: len(v) for s, v in self.splits.items()},
            "test_hash": self.test_hash,
            "data_hash": self.data_hash,
            "sealed": self.sealed,
            "leakage": self.leakage,
            "dropped_for_leakage": self.dropped,
            "pii_scrubbed": self.scrubbed,
        }


def example_parts(ex: Example, *, answer: bool = True) -> list[str]:
    """What makes an example itself: its turns (not a system prompt most share) and its answer."""
    return [m["content"] for m in ex.prompt if m["role"] != "system"] + ([ex.reference] if answer else [])


def example_text(ex: Example) -> str:
    return "\n".join(example_parts(ex))


def passages_containing(test: Sequence[Example], passages: Sequence[tuple[str, str]],
                        threshold: float) -> dict[int, set[int]]:
    """{test example index: the passages that hold it}: its turns and answer (a label is no
    evidence) each inside one passage (:func:`harness.data.dedup.contained`), or, where no single
    passage holds it, inside two passages next to each other in one document (an entry cut in
    two). ``passages`` are (document id, text) in document order. A RAG candidate retrieving
    one reads the answer key, not the documents a user will have."""
    from harness.data.dedup import contained

    parts = [example_parts(ex, answer=ex.format != "label") for ex in test]
    found: dict[int, set[int]] = {}
    for i, j, _share in contained(parts, [text for _, text in passages], threshold):
        found.setdefault(i, set()).add(j)
    pairs = [j for j in range(len(passages) - 1) if passages[j][0] == passages[j + 1][0]]
    rest = [i for i in range(len(test)) if i not in found]
    if pairs and rest:
        joined = [passages[j][1] + "\n\n" + passages[j + 1][1] for j in pairs]
        for r, q, _share in contained([parts[i] for i in rest], joined, threshold):
            found.setdefault(rest[r], set()).update((pairs[q], pairs[q] + 1))
    return found


def document_leakage_words(cand: str, found: dict[str, Any]) -> str:
    """The sentence the run and the report say of test examples inside a candidate's documents."""
    where = (f"{cand}'s documents hold {found['examples']} test example(s) (turns and answer) in "
             f"{found['passages']} passage(s)")
    if found.get("policy") == "flag":
        return f"{where}, retrieved as any other (data.leakage: flag): its scores may be inflated"
    return f"{where}; a passage is not retrieved for the example it holds (data.leakage: drop)"


def find_leakage(train: list[Example], test: list[Example], threshold: float) -> list[dict[str, Any]]:
    """Exact and near-duplicate pairs between a training split and the test split."""
    from harness.data.dedup import cross_duplicates

    pairs = cross_duplicates([example_text(e) for e in train], [example_text(e) for e in test], threshold)
    return [{"train_id": train[i].id, "train_line": train[i].line, "test_id": test[j].id,
             "test_line": test[j].line, "jaccard": round(float(jac), 4), "exact": bool(exact)}
            for i, j, jac, exact in pairs]


def _scrub(examples: list[Example]) -> tuple[list[Example], dict[str, int]]:
    """Examples with PII replaced, and how many of each kind were found."""
    from harness.data.pii import scrub_example, scrub_text

    counts: dict[str, int] = {}
    clean = []
    for ex in examples:
        texts = [m["content"] for m in ex.prompt] + ([] if ex.format == "label" else [ex.reference])
        for text in texts:
            for kind, n in scrub_text(text)[1].items():
                counts[kind] = counts.get(kind, 0) + n
        clean.append(scrub_example(ex))
    return clean, counts


def _seal_state(goal_name: str, store: Store, seal: dict | None, t_hash: str, test: list[Example],
                reseal: bool) -> str:
    """new | unchanged | resealed; a changed test set without ``reseal`` is refused."""
    if seal is None:
        return "new"
    if seal["test_hash"] == t_hash:
        return "unchanged"
    if reseal:
        return "resealed"
    old_ids = _sealed_ids(goal_name, store, seal)
    new_ids = {ex.id for ex in test}
    what = (f"{len(old_ids - new_ids)} sealed test example(s) missing or edited, {len(new_ids - old_ids)} new"
            if old_ids is not None else f"{seal.get('n_test')} sealed, {len(new_ids)} now, not the same ones")
    raise SealedTestSetError(
        f"the test set of goal {goal_name!r} changed since it was sealed ({what}); results would no longer "
        f"be comparable. If this is intended, rerun with --reseal (it is recorded).")


def _sealed_ids(goal_name: str, store: Store, seal: dict) -> set[str] | None:
    """The ids of the sealed test set: those a finished run on the sealed hash scored; else, before any
    reseal, every stored test example; else unknown (None: the store keeps the test examples of
    earlier seals too, which would count as missing)."""
    for run in store.runs(goal_name):
        if run["test_hash"] == seal["test_hash"] and run["status"] == "finished":
            ids = set(store.run_example_ids(run["run_id"]))
            if ids:
                return ids
    if seal.get("resealed"):
        return None
    return {i for i, split in store.example_splits(goal_name).items() if split == "test"}


def prepare(goal: Any, store: Store, *, reseal: bool = False, record: bool = True) -> Prepared:
    """Load, (scrub,) split, check leakage and check/record the seal for a goal.

    Nothing is written to the store unless the test split has an example and the seal check
    passes, so a refused split leaves the stored state as it was.
    """
    examples = load_examples(goal.data_path(), None if goal.data.format == "auto" else goal.data.format)
    scrubbed: dict[str, int] = {}
    if goal.data.scrub_pii:
        examples, scrubbed = _scrub(examples)
    ratios = {"train": goal.data.split.train, "validation": goal.data.split.validation,
              "test": goal.data.split.test}
    params = {"seed": goal.data.split.seed, "ratios": ratios, "scrub_pii": goal.data.scrub_pii}
    seal = store.current_seal(goal.goal)
    previous: dict[str, str] = {}
    if seal is not None and _seal_params(seal) == params:
        previous = store.example_splits(goal.goal)
    # The seal belongs to the data, not the goal's name: an example another goal sealed as test
    # stays in test here (a new or renamed goal over the same data never trains on it).
    inherited = {i: g for i, g in store.sealed_elsewhere(goal.goal, [ex.id for ex in examples]).items()
                 if i not in previous}
    assignment = assign_splits(examples, ratios, goal.data.split.seed,
                               {**dict.fromkeys(inherited, "test"), **previous})
    unique: dict[str, Example] = {}
    for ex in examples:
        unique.setdefault(ex.id, ex)
    splits = {s: [ex for ex in unique.values() if assignment[ex.id] == s] for s in SPLITS}
    if not splits["test"]:  # before the seal: an empty test set is never sealed nor recorded
        raise InputError(Problem(goal.source, goal.line_of("data", "split", "test"), "data.split.test",
                                 f"the test split is empty: {len(unique)} example(s) at a test share of "
                                 f"{ratios['test']:g} give none; add examples or raise data.split.test"))
    t_hash = test_set_hash(splits["test"])

    state = _seal_state(goal.goal, store, seal, t_hash, splits["test"], reseal)

    leakage = find_leakage(splits["train"] + splits["validation"], splits["test"], goal.data.near_duplicate_threshold)
    dropped: list[str] = []
    if goal.data.leakage == "drop" and leakage:
        bad = {p["train_id"] for p in leakage}
        dropped = sorted(bad)
        splits["train"] = [e for e in splits["train"] if e.id not in bad]
        splits["validation"] = [e for e in splits["validation"] if e.id not in bad]

    prepared = Prepared(goal.goal, list(unique.values()), splits, t_hash, data_hash(list(unique.values())),
                        state, leakage, dropped, scrubbed, inherited)
    if record:
        if state != "unchanged":
            store.record_seal(goal.goal, t_hash, len(splits["test"]), resealed=state == "resealed",
                              previous_hash=seal["test_hash"] if seal else None, note=json.dumps(params))
        store.put_examples(goal.goal, [
            {"example_id": ex.id, "split": assignment[ex.id], "input": ex.input_text,
             "reference": ex.reference, "label": ex.label, "prompt": list(ex.prompt),
             "source": ex.source, "line": ex.line} for ex in unique.values()])
    return prepared


def _seal_params(seal: dict[str, Any]) -> dict[str, Any] | None:
    try:
        return json.loads(seal.get("note") or "null")
    except json.JSONDecodeError:
        return None


def write_splits(prepared: Prepared, out_dir: str | Path) -> dict[str, Path]:
    """Write train/validation/test JSONL plus manifest.json; the test file is made read-only."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name, exs in prepared.splits.items():
        p = out / f"{name}.jsonl"
        if p.exists():
            os.chmod(p, stat.S_IRUSR | stat.S_IWUSR | stat.S_IRGRP | stat.S_IROTH)
        write_jsonl(p, (ex.to_record() for ex in sorted(exs, key=lambda e: (e.line, e.id))))
        paths[name] = p
    os.chmod(paths["test"], stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH)
    from harness.fsutil import atomic_write_text

    atomic_write_text(out / "manifest.json", json.dumps(prepared.manifest(), indent=2) + "\n")
    paths["manifest"] = out / "manifest.json"
    return paths
