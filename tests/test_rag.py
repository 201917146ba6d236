"""Retrieval and ``kind: rag``: documents into passages, BM25 against a brute-force BM25, the
index cache, a RAG candidate (and RAG over a trained adapter) through ``run_goal`` with
``retrieval_recall@k``, PII scrubbing of documents sent to an API model, file:line errors, and
few-shot examples chosen by similarity from the train split only."""
from __future__ import annotations

import json
import math
from collections import Counter
from pathlib import Path

import pytest

from harness.errors import InputError
from harness.goals import load_goal
from harness.retrieval import (Document, bm25_tokens, chunk_documents, chunk_text, load_documents, nearest,
                               open_index)
from harness.runner.validate import validate_goal
from tests.helpers import ROOT, chat, write_jsonl, write_yaml

MANUAL = {
    "billing.md": "# Billing\n\nInvoices are sent on the first day of each month. A double charge is refunded "
                  "within five days.\n\n## Card payments\n\nA failed card payment is retried after one day.",
    "shipping.md": "# Shipping\n\nParcels arrive within three days. A lost package is replaced by the courier.\n\n"
                   "## Delivery slots\n\nThe delivery slot can be changed until six in the evening.",
    "setup/technical.md": "# Technical\n\nWhen the app crashes, clear the cache and restart it.\n\n## Login\n\n"
                          "The login page locks the account after three failed tries.",
    "sync.txt": "Sync stops when the disk is full; free some space and sync resumes.",
}
QUESTIONS = [  # (question, answer, the document it is answered in)
    ("When is a double charge refunded?", "within five days", "billing.md"),
    ("When is a failed card payment retried?", "after one day", "billing.md"),
    ("How fast do parcels arrive?", "within three days", "shipping.md"),
    ("Until when can the delivery slot be changed?", "six in the evening", "shipping.md"),
    ("What do I do when the app crashes?", "clear the cache", "setup/technical.md"),
    ("What happens after three failed login tries?", "the account locks", "setup/technical"),  # no extension
    ("Why does sync stop?", "the disk is full", "sync.txt"),
    ("Who replaces a lost package?", "the courier", "shipping.md"),
]


def write_manual(folder: Path, docs: dict[str, str] = MANUAL) -> Path:
    for name, text in docs.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(text, encoding="utf-8")
    return folder


def qa_rows(repeat: int = 3) -> list[dict]:
    """The questions, each asked a few ways (distinct examples), with their source document."""
    forms = ["{q}", "Please tell me: {q}", "Quick question. {q}"]
    return [{**chat(form.format(q=q), a), "source": src} for form in forms[:repeat] for q, a, src in QUESTIONS]


# --------------------------------------------------------------------------- documents and passages


def test_chunks_follow_headings_then_paragraphs_within_the_size_limit():
    long_para = " ".join(f"Step {i} turns the dial once more." for i in range(40))
    text = f"# Setup\n\nPlug it in.\n\nTurn it on.\n\n## Dial\n\n{long_para}\n\n```\n# a comment, not a heading\n```\n"
    chunks = chunk_text(text, 120)
    assert chunks[0] == "# Setup\n\nPlug it in.\n\nTurn it on."  # paragraphs packed, heading starts a passage
    assert chunks[1].startswith("## Dial\n\n") and all(len(c) <= 120 for c in chunks)
    assert all(c.endswith(".") for c in chunks[1:-1])  # a long paragraph is cut at sentence ends
    assert chunks[-1].endswith("once more.\n\n```\n# a comment, not a heading\n```")  # no heading in fenced code
    words = [w for c in chunks for w in c.split()]
    assert words == text.split()  # nothing lost, nothing repeated, order kept
    assert chunk_text("x" * 250, 100) == ["x" * 100, "x" * 100, "x" * 50]  # no space: cut anywhere
    docs = [Document("a.md", "# A\none\n# B\ntwo")]
    assert [(c.id, c.doc, c.text) for c in chunk_documents(docs, 100)] == [("a.md#1", "a.md", "# A\none"),
                                                                           ("a.md#2", "a.md", "# B\ntwo")]


def test_documents_from_a_folder_or_a_jsonl(tmp_path):
    folder = write_manual(tmp_path / "manual")
    (folder / ".hidden.md").write_text("secret", encoding="utf-8")
    (folder / "notes.pdf").write_bytes(b"%PDF")
    docs = load_documents(folder)
    assert [d.id for d in docs] == ["billing.md", "setup/technical.md", "shipping.md", "sync.txt"]
    jsonl = write_jsonl(tmp_path / "docs.jsonl", [{"id": "faq-1", "text": "Reset with the red button."},
                                                  {"id": 7, "text": "Numbers are ids too."}])
    assert [(d.id, d.text) for d in load_documents(jsonl)] == [("faq-1", "Reset with the red button."),
                                                               ("7", "Numbers are ids too.")]


# --------------------------------------------------------------------------- BM25 and the index


def brute_force_bm25(corpus: list[list[str]], query: list[str], k1: float = 1.5, b: float = 0.75) -> list[float]:
    """Lucene's BM25, written out: idf = ln(1 + (N - df + .5) / (df + .5)), tf saturation with length."""
    n, avg = len(corpus), sum(map(len, corpus)) / len(corpus)
    df = Counter(t for doc in corpus for t in set(doc))
    out = []
    for doc in corpus:
        tf = Counter(doc)
        out.append(sum(math.log(1 + (n - df[t] + 0.5) / (df[t] + 0.5)) * tf[t]
                       / (tf[t] + k1 * (1 - b + b * len(doc) / avg)) for t in set(query) if t in tf))
    return out


def test_bm25_ranks_the_passage_holding_the_answer_first_and_matches_brute_force(tmp_path):
    docs = load_documents(write_manual(tmp_path / "manual"))
    chunks = chunk_documents(docs, 200)
    texts = [c.text for c in chunks]
    index = open_index(tmp_path / "work", docs, chunk_chars=200, retriever="bm25")
    queries = [q for q, _, _ in QUESTIONS]
    hits = index.search(queries, 2)
    for (q, answer, src), row in zip(QUESTIONS, hits):
        assert answer.split()[-1] in row[0].text.lower(), (q, row[0].id)
        assert row[0].doc.startswith(src)
    corpus_tokens = bm25_tokens(texts)
    for q, row in zip(queries, hits):
        expected = brute_force_bm25(corpus_tokens, bm25_tokens([q])[0])
        best = sorted(range(len(texts)), key=lambda i: (-expected[i], i))[:2]
        assert [chunks[i].id for i in best] == [c.id for c in row]
        scores = index._scores([q])[0]
        assert scores == pytest.approx(expected, rel=1e-5, abs=1e-6)
    assert nearest(texts, queries, 2) == [[chunks.index(c) for c in row] for row in hits]  # in memory, same ranking


def test_the_index_is_built_once_and_keyed_by_content_chunking_and_retriever(tmp_path, monkeypatch):
    import bm25s

    built = []
    real_index = bm25s.BM25.index
    monkeypatch.setattr(bm25s.BM25, "index", lambda self, *a, **kw: (built.append(1), real_index(self, *a, **kw))[1])
    folder = write_manual(tmp_path / "manual")
    docs = load_documents(folder)
    first = open_index(tmp_path / "work", docs, chunk_chars=200)
    queries = [q for q, _, _ in QUESTIONS]
    assert first.built and first.lookup(queries, 2) is None
    hits = first.search(queries, 2)
    again = open_index(tmp_path / "work", load_documents(folder), chunk_chars=200)
    assert not again.built and again.folder == first.folder and len(built) == 1
    assert again.lookup(queries, 2) == hits  # what the questions retrieved is kept too
    assert open_index(tmp_path / "work", docs, chunk_chars=300).folder != first.folder
    (folder / "sync.txt").write_text("Sync stops when the disk is nearly full.", encoding="utf-8")
    changed = open_index(tmp_path / "work", load_documents(folder), chunk_chars=200, build=False)
    assert changed is None and len(built) == 2  # a changed document is a new index (not built by a dry look)
    assert sorted(p.name for p in (tmp_path / "work" / "indexes").iterdir() if not p.name.endswith(".retrieved")) \
        == sorted({first.folder.name, open_index(tmp_path / "work", docs, chunk_chars=300).folder.name})


def test_dense_retrieval_through_the_embedding_encoder(tmp_path):
    from harness.metrics import semantic

    vocab = sorted({w for c in chunk_documents(load_documents(write_manual(tmp_path / "m")), 200)
                    for w in bm25_tokens([c.text])[0]})

    def bag_of_words(texts: list[str]):
        import numpy as np

        return np.array([[float(w in bm25_tokens([t])[0]) for w in vocab] for t in texts]) + 1e-3

    semantic.set_encoder(bag_of_words)
    try:
        docs = load_documents(tmp_path / "m")
        index = open_index(tmp_path / "work", docs, chunk_chars=200, retriever="dense")
        hits = index.search(["Why does sync stop?", "How fast do parcels arrive?"], 1)
        assert [row[0].doc for row in hits] == ["sync.txt", "shipping.md"]
        assert (index.folder / "embeddings.npy").is_file() and index.folder.name.startswith("dense-")
    finally:
        semantic.set_encoder(None)


# --------------------------------------------------------------------------- kind: rag end to end


def rag_goal(tmp_path: Path, model_dir: Path, candidates: list[dict], *, docs: dict[str, str] = MANUAL,
             data_extra: dict | None = None) -> Path:
    """The manual goal: questions asked three ways each (so ``leakage: flag`` keeps them in training)."""
    write_manual(tmp_path / "docs" / "manual", docs)
    data = write_jsonl(tmp_path / "data" / "qa.jsonl", qa_rows())
    return write_yaml(tmp_path / "goals" / "manual.yaml", {
        "goal": "manual", "model": model_dir, "task": "generation",
        "data": {"path": str(data.relative_to(tmp_path)), "leakage": "flag", **(data_extra or {}),
                 "split": {"train": 0.4, "validation": 0.1, "test": 0.5, "seed": 5}},
        "success": [{"metric": "retrieval_recall@k", "at_least": 0.5}],
        "decoding": {"max_new_tokens": 3},
        "candidates": candidates})


def test_a_rag_candidate_runs_end_to_end_and_retrieval_recall_is_computed(tmp_path, tiny_model_dir, monkeypatch):
    from harness.backends.local import LocalModel
    from harness.data.split import prepare
    from harness.runner import plan, run_goal
    from harness.store import Store

    monkeypatch.chdir(tmp_path)  # documents and data resolve relative to the project, as data.path does
    goal = load_goal(rag_goal(tmp_path, tiny_model_dir, [
        {"name": "zero-shot", "kind": "prompt"},
        {"name": "lora", "kind": "lora", "r": 4, "alpha": 8, "epochs": 1, "batch_size": 8, "max_length": 96},
        {"name": "rag", "kind": "rag", "documents": "docs/manual", "k": 2, "chunk_chars": 200},
        {"name": "rag-lora", "kind": "rag", "documents": "docs/manual", "k": 2, "chunk_chars": 200,
         "adapter_of": "lora"}]))
    store = Store(tmp_path / "s.duckdb")
    work = tmp_path / "work"

    def planned() -> dict[tuple[str, str], tuple[int, int]]:
        return {(s.candidate, s.action): (s.todo, s.cached)
                for s in plan(goal, store, prepare(goal, store, record=False), work_dir=work)}

    before = planned()
    assert before[("rag", "index")] == (1, 0) and not (work / "indexes").exists()  # the dry run builds nothing
    n = before[("rag", "generate")][0]
    assert n > 0 and before[("rag-lora", "generate")] == (n, 0)
    prompts: list[list[dict]] = []
    real_generate = LocalModel.generate
    monkeypatch.setattr(LocalModel, "generate", lambda self, ps, *a, **kw: (prompts.extend(ps),
                                                                            real_generate(self, ps, *a, **kw))[1])
    first = run_goal(goal, store, progress=False, work_dir=work, rubrics_dir=ROOT / "rubrics")
    assert first.counts["indexes_built"] == 1 and first.counts["indexes_reused"] == 1  # rag-lora shares it
    rows = {r["example_id"]: r for r in store.run_outputs(first.run_id, "rag")}
    test = {ex.id: ex for ex in prepare(goal, store, record=False).test}
    assert len(rows) == len(test) == n
    for ex_id, row in rows.items():
        ids = json.loads(row["passages"])
        assert len(ids) == 2 and all("#" in i for i in ids)
        sent = next(p for p in prompts if p[-1]["content"].endswith(f"\n\nQuestion: {test[ex_id].input_text}"))
        assert all(f"[{i}]" in sent[-1]["content"] for i in ids)  # the prompt held the passages it stored
    assert all(r["passages"] is None for r in store.run_outputs(first.run_id, "zero-shot"))
    recall = first.aggregates["rag"]["retrieval_recall@k"]
    assert recall["value"] == 1.0 and recall["n"] == n
    assert first.aggregates["rag-lora"]["retrieval_recall@k"]["value"] == 1.0
    assert math.isnan(first.aggregates["zero-shot"]["retrieval_recall@k"]["value"])  # retrieves nothing
    lora_adapter = store.query("SELECT adapter_path FROM candidates WHERE run_id = ? AND name = 'lora'",
                               [first.run_id])[0]["adapter_path"]
    assert store.query("SELECT adapter_path FROM candidates WHERE run_id = ? AND name = 'rag-lora'",
                       [first.run_id])[0]["adapter_path"] == lora_adapter
    after = planned()
    for cand in ("rag", "rag-lora"):
        assert after[(cand, "index")] == (0, 1) and after[(cand, "generate")] == (0, n)  # the plan's keys = the run's
    second = run_goal(goal, store, progress=False, work_dir=work, rubrics_dir=ROOT / "rubrics")
    assert second.counts["indexes_built"] == 0 and second.counts["generated"] == 0 and second.counts["trained"] == 0
    _compare_page_shows_passage_ids(monkeypatch, tmp_path, store, second.run_id)


def _compare_page_shows_passage_ids(monkeypatch, root: Path, store, run_id: str) -> None:
    """The app's Compare page names, under each retrieving candidate's output, the passages its
    prompt held (as stored), and nothing under a candidate that retrieved nothing."""
    from streamlit import config

    address = config.get_option("server.address")
    config.set_option("server.address", "localhost")  # as `harness app` binds by default
    try:
        _read_compare_page(monkeypatch, root, store, run_id)
    finally:
        config.set_option("server.address", address)


def _read_compare_page(monkeypatch, root: Path, store, run_id: str) -> None:
    from streamlit.testing.v1 import AppTest

    for name, value in {"HARNESS_DB": store.path, "HARNESS_GOALS": root / "goals",
                        "HARNESS_RUBRICS": ROOT / "rubrics", "HARNESS_LEADERBOARDS": ROOT / "leaderboards"}.items():
        monkeypatch.setenv(name, str(value))
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120).run()
    at.radio(key="page").set_value("Compare").run()
    at.multiselect(key="cmp:cands").set_value(["rag", "zero-shot"]).run()
    assert not at.exception, [e.value for e in at.exception]
    example = at.selectbox(key="cmp:example").value
    ids = json.loads(next(r for r in store.run_outputs(run_id, "rag") if r["example_id"] == example)["passages"])
    captions = [c.value for c in at.caption if c.value.startswith("Retrieved passages")]
    assert captions == ["Retrieved passages, best first: " + ", ".join(ids)]


def test_documents_sent_to_an_api_model_are_scrubbed_of_pii(tmp_path, monkeypatch):
    from harness.runner import run_goal
    from harness.store import Store
    from tests.fakeapi import FakeAPI

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TEST_KEY", "sk-test")
    email = "support.lead@example.com"
    docs = dict(MANUAL, **{"billing.md": MANUAL["billing.md"] + f"\n\nWrite to {email} about a double charge."})
    with FakeAPI(responder=lambda msgs: "within five days") as srv:
        goal = load_goal(rag_goal(tmp_path, tmp_path, [
            {"name": "rag-api", "kind": "rag", "documents": "docs/manual", "k": 1, "chunk_chars": 300,
             "provider": "openai-compatible", "model": "my-model", "base_url": srv.openai_url,
             "api_key_env": "TEST_KEY", "max_retries": 0}], docs=docs, data_extra={"scrub_pii": True}))
        res = run_goal(goal, Store(tmp_path / "s.duckdb"), progress=False, work_dir=tmp_path / "work")
        sent = [m["content"] for call in srv.calls for m in call.messages]
    assert res.aggregates["rag-api"]["retrieval_recall@k"]["value"] == 1.0
    assert any("<EMAIL>" in s and "double charge" in s for s in sent)  # the passage went, scrubbed
    assert not any(email in s for s in sent)


def test_a_failed_api_answer_of_a_rag_candidate_is_stored_as_a_failure_and_retried(tmp_path, monkeypatch):
    """Issue 11: a RAG candidate answering through an API keeps going when a request fails after
    its retries: the failure is stored with its passages and reason, left out of the metrics, and
    the next run asks exactly that request again."""
    from harness.runner import run_goal
    from harness.store import Store
    from tests.fakeapi import FakeAPI

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TEST_KEY", "sk-test")
    import hashlib

    state = {"faulty": True}

    def policy(call):  # about half the prompts fail, on every attempt, until the API recovers
        return "500" if state["faulty"] and int(hashlib.sha256(call.prompt.encode()).hexdigest(), 16) % 2 else None

    with FakeAPI(responder=lambda msgs: "within five days", policy=policy) as srv:
        goal = load_goal(rag_goal(tmp_path, tmp_path, [
            {"name": "rag-api", "kind": "rag", "documents": "docs/manual", "k": 1, "chunk_chars": 300,
             "provider": "openai-compatible", "model": "my-model", "base_url": srv.openai_url,
             "api_key_env": "TEST_KEY", "max_retries": 0}]))
        store = Store(tmp_path / "s.duckdb")
        first = run_goal(goal, store, progress=False, work_dir=tmp_path / "work")
        failed = first.counts["generations_failed"]
        n = failed + first.counts["generated"]
        assert failed >= 1 and first.aggregates["rag-api"]["retrieval_recall@k"]["n"] == n - failed
        rows = store.query("SELECT passages, error FROM predictions WHERE error IS NOT NULL")
        assert len(rows) == failed and all(r["passages"] and "500" in r["error"] for r in rows)
        state["faulty"] = False
        before = len(srv.calls)
        second = run_goal(goal, store, progress=False, work_dir=tmp_path / "work")
    assert len(srv.calls) - before == failed and second.counts["generations_failed"] == 0
    assert second.aggregates["rag-api"]["retrieval_recall@k"]["n"] == n


# --------------------------------------------------------------------------- bad input


def test_bad_rag_options_and_documents_are_errors_with_file_line_and_field(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "empty").mkdir()
    write_manual(tmp_path / "blank", {"a.md": "# A\n\ntext", "b.md": "  \n"})
    write_jsonl(tmp_path / "docs.jsonl", [{"id": "x", "text": "fine"}, {"id": "x", "text": "again"},
                                          {"text": "no id"}, "{not json"])
    base = {"kind": "rag", "documents": "blank"}
    goal_file = rag_goal(tmp_path, tmp_path, [
        {"name": "missing", "kind": "rag", "documents": "no/such/folder"},
        {"name": "nodocs", "kind": "rag", "documents": "empty"},
        {"name": "blankdoc", **base},
        {"name": "badjsonl", "kind": "rag", "documents": "docs.jsonl"},
        {"name": "k0", **base, "documents": "docs/manual", "k": 0},
        {"name": "tfidf", "kind": "rag", "documents": "docs/manual", "retriever": "tfidf"},
        {"name": "adapter", "kind": "rag", "documents": "docs/manual", "adapter_of": "lorra"},
        {"name": "stray", "kind": "rag", "documents": "docs/manual", "concurrency": 4},
    ])
    goal = load_goal(goal_file)
    with pytest.raises(InputError) as err:
        validate_goal(goal, ROOT / "rubrics")
    lines = goal_file.read_text(encoding="utf-8").splitlines()
    found: dict[str, list[str]] = {}
    for p in err.value.problems:
        assert p.file == str(goal_file) and p.line is not None
        index, key = p.field.split(".", 1)
        assert key.split(".")[0] in lines[p.line - 1] or key == "documents", (p, lines[p.line - 1])
        found.setdefault(f"{goal.candidates[int(index[11:-1])].name}.{key}", []).append(p.message)
    assert "not found" in found["missing.documents"][0]
    assert "no documents" in found["nodocs.documents"][0]
    assert any("b.md" in m and "empty" in m for m in found["blankdoc.documents"])
    jsonl = " ".join(found["badjsonl.documents"])
    assert "docs.jsonl:2 [id]: duplicate id 'x'" in jsonl and "docs.jsonl:3 [id]" in jsonl and "docs.jsonl:4" in jsonl
    assert "greater than or equal to 1" in found["k0.k"][0]
    assert "bm25" in found["tfidf.retriever"][0] and "dense" in found["tfidf.retriever"][0]
    assert "unknown candidate 'lorra'" in found["adapter.adapter_of"][0]
    assert "API model" in found["stray.concurrency"][0]
    assert len(found) == 8


def test_retrieval_recall_needs_sources_and_counts_documents_found():
    from harness.data.formats import make_example
    from harness.metrics import compute_metric

    exs = [make_example("chat", [{"role": "user", "content": f"q{i}"}], "a", extra=extra)
           for i, extra in enumerate([{"source": "a.md"}, {"source": ["a.md", "b"]}, {}, {"source": "c"}])]
    retrieved = [["a.md#2", "x#1"], ["b.md#1", "z#1"], ["a.md#1"], ["d#1", "c#3"]]
    res = compute_metric("retrieval_recall@k", ["o"] * 4, exs, retrieved=retrieved)
    assert res.per_example == [1.0, 0.5, None, 1.0] and res.value == pytest.approx(2.5 / 3)
    assert compute_metric("retrieval_recall@k", ["o"] * 4, exs, retrieved=retrieved, k=1).per_example \
        == [1.0, 0.5, None, 0.0]
    unsourced = compute_metric("retrieval_recall@k", ["o"], [make_example("chat", [{"role": "user", "content": "q"}],
                                                                          "a")], retrieved=[["a#1"]])
    assert unsourced.per_example == [None] and "source" in unsourced.extra["note"]
    with pytest.raises(InputError, match="k must be"):
        compute_metric("retrieval_recall@k", ["o"] * 4, exs, retrieved=retrieved, k=0)


# --------------------------------------------------------------------------- similar shots


def test_similar_shot_selection_picks_the_nearest_train_examples_only():
    from harness.data.formats import make_example
    from harness.prompts import PromptOptions, choose_shots, prompts_for

    def ex(text: str, answer: str):
        return make_example("chat", [{"role": "user", "content": text}], answer)

    train = [ex("my card payment failed", "billing"), ex("parcel never arrived", "shipping"),
             ex("app crashes at start", "technical"), ex("invoice charged twice", "billing"),
             ex("courier lost my parcel", "shipping"), ex("login page error", "technical")]
    test = [ex("the parcel from the courier is late", "shipping"), ex("the app crashes on login", "technical")]
    similar = prompts_for(PromptOptions(shots=2, shot_selection="similar"), "few-shot", test, train,
                          goal_system=None, seed=1)
    shots = [[m["content"] for m in p[:-1] if m["role"] == "user"] for p in similar]
    assert set(shots[0]) == {"courier lost my parcel", "parcel never arrived"}
    assert shots[0][-1] == "courier lost my parcel"  # the nearest sits just before the question
    assert set(shots[1]) == {"app crashes at start", "login page error"}
    train_inputs = {e.input_text for e in train}
    assert all(s in train_inputs for row in shots for s in row)  # never a test example
    fixed = prompts_for(PromptOptions(shots=2), "few-shot", test, train, goal_system=None, seed=1)
    picked = [e.input_text for e in choose_shots(train, 2, seed=1)]
    assert all([m["content"] for m in p[:-1] if m["role"] == "user"] == picked for p in fixed)  # today's default


def test_similar_shots_in_a_goal_come_from_the_train_split(tmp_path, tiny_model_dir):
    from harness.data.split import prepare
    from harness.kinds import kind_of
    from harness.runner.context import Run
    from harness.store import Store

    goal = load_goal(rag_goal(tmp_path, tiny_model_dir, [
        {"name": "similar", "kind": "prompt", "shots": 2, "shot_selection": "similar"}]))
    store = Store(tmp_path / "s.duckdb")
    prepared = prepare(goal, store, record=False)
    run = Run(goal, store, prepared=prepared, progress=False, work_dir=tmp_path / "w")
    prompts = kind_of("prompt")._prompts(run, goal.candidates[0])
    train = {e.input_text for e in prepared.train}
    test = {e.input_text for e in prepared.test}
    for ex, p in zip(prepared.test, prompts):
        shot_inputs = [m["content"] for m in p[:-1] if m["role"] == "user"]
        assert len(shot_inputs) == 2 and set(shot_inputs) <= train and not set(shot_inputs) & test
        assert p[-1]["content"] == ex.input_text
    from harness.goals import Candidate

    with pytest.raises(InputError, match="shot_selection"):
        kind_of("prompt").options(Candidate(name="closest", kind="prompt", shots=2, shot_selection="closest"))


# --------------------------------------------------------------------------- test examples inside the documents


def test_containment_equals_brute_force_part_by_part():
    """Every part (turns, answer) must be inside the passage: a long one by shingle share, a short
    one word for word; the oracle is plain set and substring arithmetic over every pair."""
    import random
    import re

    from harness.data.dedup import contained

    rng = random.Random(3)
    vocab = "the a refund card parcel sync disk full five days slot evening courier login app".split()
    texts = [[" ".join(rng.choices(vocab, k=rng.randint(1, 9))) for _ in range(rng.randint(1, 3))] for _ in range(80)]
    passages = [" ".join(rng.choices(vocab, k=rng.randint(0, 40))) for _ in range(40)]
    passages += [" ... ".join(texts[i]) + " and more" for i in range(0, 80, 7)]  # some texts inside a passage

    def words(x):
        return re.findall(r"\w+", x.lower())

    def sh(w):
        return {" ".join(w[j:j + 3]) for j in range(len(w) - 2)}

    want = []
    for i, parts in enumerate(texts):
        ws = [words(p) for p in parts]
        if sum(len(sh(w)) for w in ws) < 5:
            continue
        for j, p in enumerate(passages):
            pw = words(p)
            longs = [len(sh(w) & sh(pw)) / len(sh(w)) for w in ws if len(w) >= 3]
            shorts = [f" {' '.join(w)} " in f" {' '.join(pw)} " for w in ws if 0 < len(w) < 3]
            if longs and min(longs) >= 0.8 and all(shorts):
                want.append((i, j, min(longs)))
    got = contained(texts, passages, 0.8, block=7)  # blocks that cut the passages unevenly
    assert [(i, j) for i, j, _ in got] == [(i, j) for i, j, _ in want] and len(want) >= 5
    assert all(abs(a[2] - b[2]) < 1e-12 for a, b in zip(got, want))
    faq = "Q: What is the refund window for orders? A: Thirty days from delivery."
    assert contained([["What is the refund window for orders?", "Thirty days from delivery."]], [faq]) == [(0, 0, 1.0)]
    # The answer alone, or the question alone, is not the example: a passage quoting the manual's
    # answer, or headed by the question, is what RAG should find.
    answer = "Online orders can be returned within thirty days of delivery for a full refund."
    assert contained([["Can I return an online order?", answer]], [f"Returns. {answer}"]) == []
    assert contained([["What is the refund window for online orders?", "Thirty days."]],
                     ["What is the refund window for online orders? See the table below."]) == []


def test_an_entry_cut_in_two_passages_is_found_in_both_and_a_label_is_no_evidence():
    from harness.data.formats import Example
    from harness.data.split import passages_containing

    q = "How long does the courier wait at the door before taking the parcel back to the depot?"
    a = "The courier waits five minutes, leaves a card with a number to call, and tries again the next day."
    ex = Example(id="e1", format="chat", prompt=({"role": "user", "content": q},), reference=a, line=1)
    passages = [("faq.md", "# Couriers"), ("faq.md", q), ("faq.md", a), ("other.md", a)]
    assert passages_containing([ex], passages, 0.8) == {0: {1, 2}}  # not the answer quoted elsewhere
    assert passages_containing([ex], [("faq.md", q + "\n\n" + a), ("faq.md", q)], 0.8) == {0: {0}}
    label = Example(id="e2", format="label", prompt=({"role": "user", "content": q},), reference="shipping",
                    label="shipping", line=2)
    assert passages_containing([label], [("faq.md", q)], 0.8) == {0: {0}}


@pytest.mark.parametrize("policy", ["drop", "flag"])
def test_test_examples_inside_the_documents_are_found_and_not_retrieved_for_themselves(
        tmp_path, tiny_model_dir, monkeypatch, policy):
    """A FAQ document holding test questions with their answers is the answer key: with
    ``data.leakage: drop`` (the default) a passage holding a test example is not retrieved for
    it; with ``flag`` it is, and the report says the scores may be inflated."""
    from harness.data.split import prepare
    from harness.report import build_report
    from harness.results import results_dict
    from harness.runner import plan, run_goal
    from harness.store import Store

    monkeypatch.chdir(tmp_path)
    goal = load_goal(rag_goal(tmp_path, tiny_model_dir, [
        {"name": "rag", "kind": "rag", "documents": "docs/manual", "k": 2, "chunk_chars": 200}],
        data_extra={"leakage": policy}))
    store = Store(tmp_path / "s.duckdb")
    test = prepare(goal, store, record=False).test
    leaked = test[:2]
    (tmp_path / "docs" / "manual" / "faq.md").write_text(
        "".join(f"# Asked before {i}\n\n{ex.input_text}\n\n{ex.reference}\n\n" for i, ex in enumerate(leaked)))
    result = run_goal(goal, store, progress=False, work_dir=tmp_path / "work", rubrics_dir=ROOT / "rubrics")
    res = results_dict(store, "manual", result.run_id)
    assert res["run"]["leakage"]["documents"] == {"rag": {"examples": 2, "passages": 2, "policy": policy}}
    passages = {r["example_id"]: json.loads(r["passages"]) for r in store.run_outputs(result.run_id, "rag")}
    own = {ex.id: f"faq.md#{i + 1}" for i, ex in enumerate(leaked)}
    assert all(len(p) == 2 for p in passages.values())
    if policy == "drop":
        assert all(own[e] not in passages[e] for e in own)
    else:
        assert all(own[e] == passages[e][0] for e in own)  # the exact question ranks its own passage first
    steps = {(s.candidate, s.action): s
             for s in plan(goal, store, prepare(goal, store, record=False), work_dir=tmp_path / "work")}
    assert (steps[("rag", "generate")].todo, steps[("rag", "generate")].cached) == (0, len(test))  # as the run did
    assert f"hold 2 test example(s) (data.leakage: {policy})" in steps[("rag", "index")].note  # --dry-run says it
    report = build_report(store, goal, result.run_id, fmt="md")
    line = next(x for x in report.splitlines() if "rag's documents hold 2 test example(s)" in x)
    assert ("may be inflated" in line) == (policy == "flag")
