"""Reference metrics: accuracy, precision/recall/F1, exact match, ROUGE, BLEU, chrF.

Values follow the reference libraries (scikit-learn, rouge-score, sacrebleu) on the same
texts; BLEU and chrF keep sacrebleu's 0-100 scale and are corpus-level, computed from
per-sentence statistics so a bootstrap resamples them exactly. The libraries are
imported lazily so this module stays cheap to import.
"""
from __future__ import annotations

import re
import string
from functools import partial
from typing import Any, Sequence

import numpy as np

from harness.errors import InputError, Problem
from harness.metrics import METRICS, MetricResult, from_values

_REF = {"kind": "reference", "needs_model": False}


# ---------------------------------------------------------------- classification

def extract_label(text: str, labels: Sequence[str]) -> str | None:
    """The label the text names first: case-insensitive, whole words, earliest position
    wins (the longer label on a tie, so "very good" beats "good"). None if no label occurs.

    >>> extract_label("Sentiment: Negative (not positive)", ["positive", "negative"])
    'negative'
    """
    best: tuple[int, int, str] | None = None
    low = text.lower()
    for label in labels:
        # Lookarounds rather than \b so labels that start/end with punctuation still match.
        m = re.search(r"(?<!\w)" + re.escape(label.lower()) + r"(?!\w)", low)
        if m and (best is None or (m.start(), -len(label)) < (best[0], best[1])):
            best = (m.start(), -len(label), label)
    return best[2] if best else None


def _true_label(example: Any) -> str:
    return str(example.label if example.label is not None else example.reference).strip()


def _label_set(examples: Sequence[Any], labels: Sequence[str] | None) -> list[str]:
    if labels is not None:
        if not labels or not all(isinstance(x, str) and x.strip() for x in labels):
            raise InputError(Problem("<goal>", None, "labels", "labels must be a non-empty list of strings"))
        return list(dict.fromkeys(labels))
    return sorted({_true_label(e) for e in examples})


def _predictions(outputs: Sequence[str], examples: Sequence[Any], labels: Sequence[str] | None):
    label_set = _label_set(examples, labels)
    truth = [_true_label(e) for e in examples]
    preds = [extract_label(o, label_set) for o in outputs]
    unparseable = sum(p is None for p in preds) / len(preds) if preds else 0.0
    return label_set, truth, preds, unparseable


@METRICS.register("accuracy", higher_is_better=True, scale=(0.0, 1.0), **_REF)
def accuracy(outputs: list[str], examples: list, labels: list[str] | None = None) -> MetricResult:
    """Share of outputs whose extracted label (see :func:`extract_label`) is the true one;
    an output naming no label counts as wrong."""
    label_set, truth, preds, unparseable = _predictions(outputs, examples, labels)
    res = from_values("accuracy", [float(p == t) for p, t in zip(preds, truth)])
    res.extra.update(unparseable_rate=unparseable, labels=label_set, predictions=preds)
    return res


def _confusion_stats(truth: list[str], preds: list[str | None], label_set: list[str]) -> np.ndarray:
    """Per example, per label: columns (tp, fp, fn) in label order -> shape (n, 3L)."""
    index = {lab: j for j, lab in enumerate(label_set)}
    stats = np.zeros((len(truth), 3 * len(label_set)))
    for i, (t, p) in enumerate(zip(truth, preds)):
        if p is not None and p == t and t in index:
            stats[i, 3 * index[t]] = 1
            continue
        if p is not None and p in index:
            stats[i, 3 * index[p] + 1] = 1
        if t in index:
            stats[i, 3 * index[t] + 2] = 1
    return stats


def _safe_div(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    # scikit-learn with zero_division=0: 0/0 is 0.
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1), 0.0)


def prf_aggregate(sums: np.ndarray, what: str = "f1", average: str = "macro") -> np.ndarray:
    """Summed (tp, fp, fn) per label -> precision / recall / F1, macro or micro averaged."""
    sums = np.asarray(sums, dtype=float)
    tpfpfn = sums.reshape(sums.shape[:-1] + (-1, 3))
    if average == "micro":
        tpfpfn = tpfpfn.sum(axis=-2, keepdims=True)
    tp, fp, fn = tpfpfn[..., 0], tpfpfn[..., 1], tpfpfn[..., 2]
    if what == "precision":
        score = _safe_div(tp, tp + fp)
    elif what == "recall":
        score = _safe_div(tp, tp + fn)
    else:
        score = _safe_div(2 * tp, 2 * tp + fp + fn)
    return score.mean(axis=-1)


def _prf_metric(name: str, what: str, average: str, outputs: list[str], examples: list,
                labels: list[str] | None) -> MetricResult:
    label_set, truth, preds, unparseable = _predictions(outputs, examples, labels)
    stats = _confusion_stats(truth, preds, label_set)
    agg = partial(prf_aggregate, what=what, average=average)
    totals = stats.sum(axis=0)
    per_label = {lab: float(prf_aggregate(totals[3 * j:3 * j + 3], what, "macro"))
                 for j, lab in enumerate(label_set)}
    per = [float(p == t) for p, t in zip(preds, truth)]
    extra = {"n": len(outputs), "unparseable_rate": unparseable, "labels": label_set,
             f"per_label_{what}": per_label, "predictions": preds}
    return MetricResult(name, float(agg(totals)), per, stats, agg, extra)


def _register_prf(name: str, what: str, average: str) -> None:
    def metric(outputs: list[str], examples: list, labels: list[str] | None = None) -> MetricResult:
        return _prf_metric(name, what, average, outputs, examples, labels)

    metric.__name__ = name
    metric.__doc__ = (f"{what} ({average}-averaged over the label set, as scikit-learn with "
                      "zero_division=0); labels extracted with extract_label, unparseable = wrong.")
    METRICS.add(name, metric, higher_is_better=True, **_REF)


for _name, _what, _avg in [("f1_macro", "f1", "macro"), ("f1_micro", "f1", "micro"),
                           ("precision_macro", "precision", "macro"), ("recall_macro", "recall", "macro"),
                           ("precision_micro", "precision", "micro"), ("recall_micro", "recall", "micro")]:
    _register_prf(_name, _what, _avg)


# ---------------------------------------------------------------- exact match

_TRAILING_PUNCT = string.punctuation + "\u3002\uff01\uff1f\u2026"


def normalize_answer(text: str) -> str:
    """Lowercase, collapse runs of whitespace to one space, strip both ends, then strip
    trailing punctuation (``.``, ``!``, ``?``, ``,`` ... and the ideographic ones) and
    any whitespace it uncovers. Leading/inner punctuation is kept."""
    text = " ".join(text.lower().split())
    return text.rstrip(_TRAILING_PUNCT + " ").strip()


@METRICS.register("exact_match", higher_is_better=True, scale=(0.0, 1.0), **_REF)
def exact_match(outputs: list[str], examples: list) -> MetricResult:
    """1.0 where ``normalize_answer(output) == normalize_answer(reference)``."""
    return from_values("exact_match", [float(normalize_answer(o) == normalize_answer(e.reference))
                                       for o, e in zip(outputs, examples)])


# ---------------------------------------------------------------- contains reference

_SQUAD_ARTICLES = re.compile(r"\b(a|an|the)\b")
_SQUAD_PUNCT = frozenset(string.punctuation)


def squad_normalize(text: str) -> str:
    """SQuAD v1.1's ``normalize_answer``: lowercase, drop ASCII punctuation (``3.5`` becomes
    ``35``, ``E-11`` becomes ``e11``), drop the articles a/an/the, collapse whitespace.

    >>> squad_normalize("The pump: 9 BAR, at most!")
    'pump 9 bar at most'
    """
    text = "".join(ch for ch in text.lower() if ch not in _SQUAD_PUNCT)
    return " ".join(_SQUAD_ARTICLES.sub(" ", text).split())


def reference_key(reference: str, after: str | None = None) -> str:
    """The part of ``reference`` to look for: what follows the first ``after`` marker
    (case-insensitive, e.g. ``"Answer:"``), or the whole reference without one or when the
    marker is absent."""
    if after:
        at = reference.lower().find(after.lower())
        if at >= 0:
            return reference[at + len(after):]
    return reference


@METRICS.register("contains_reference", higher_is_better=True, scale=(0.0, 1.0), **_REF)
def contains_reference(outputs: list[str], examples: list, after: str | None = None) -> MetricResult:
    """1.0 where the SQuAD-normalised reference (with ``after: "Answer:"``, only the part after
    that marker: the key fact) occurs in the SQuAD-normalised output as whole words (``9 bar``
    is in ``it gives 9 bar`` but not in ``19 bar``); anything else the output says is allowed.
    A reference that normalises to nothing cannot be checked: no value, counted in the extra."""
    if after is not None and (not isinstance(after, str) or not after.strip()):
        raise InputError(Problem("<goal>", None, "contains_reference.after",
                                 f"after must be a non-empty string, got {after!r}"))
    values: list[float | None] = []
    for out, ex in zip(outputs, examples):
        key = squad_normalize(reference_key(ex.reference, after))
        values.append(float(f" {key} " in f" {squad_normalize(out)} ") if key else None)
    res = from_values("contains_reference", values)
    res.extra["empty_references"] = sum(v is None for v in values)
    return res


# ---------------------------------------------------------------- ROUGE

def _rouge(kind: str, outputs: list[str], examples: list, use_stemmer: bool = False) -> MetricResult:
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer([kind], use_stemmer=use_stemmer)
    values = [scorer.score(e.reference, o)[kind].fmeasure for o, e in zip(outputs, examples)]
    return from_values(kind, values)


def _register_rouge(kind: str) -> None:
    def metric(outputs: list[str], examples: list, use_stemmer: bool = False) -> MetricResult:
        return _rouge(kind, outputs, examples, use_stemmer)

    metric.__name__ = kind
    metric.__doc__ = (f"Mean {kind} F-measure (rouge-score) of each output against its reference"
                      + ("; sentences are separated by newlines." if kind == "rougeLsum" else "."))
    METRICS.add(kind, metric, higher_is_better=True, scale=(0.0, 1.0), **_REF)


for _kind in ("rouge1", "rouge2", "rougeL", "rougeLsum"):
    _register_rouge(_kind)


# ---------------------------------------------------------------- BLEU / chrF

def bleu_aggregate(sums: np.ndarray, max_order: int = 4, smooth_method: str = "exp",
                   smooth_value: float | None = None, effective_order: bool = False) -> np.ndarray:
    """sacrebleu's ``BLEU.compute_bleu`` vectorised over leading axes.

    Columns: sys_len, ref_len, correct[1..max_order], total[1..max_order].
    """
    from sacrebleu.metrics import BLEU

    s = np.asarray(sums, dtype=float)
    if smooth_value is None:
        smooth_value = BLEU.SMOOTH_DEFAULTS[smooth_method]
    sys_len, ref_len = s[..., 0], s[..., 1]
    correct = s[..., 2:2 + max_order].copy()
    total = s[..., 2 + max_order:2 + 2 * max_order].copy()
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        bp = np.where(sys_len < ref_len,
                      np.where(sys_len > 0, np.exp(1 - ref_len / np.where(sys_len > 0, sys_len, 1)), 0.0), 1.0)
        any_correct = (correct != 0).any(axis=-1)
        alive = np.ones(sys_len.shape, dtype=bool)  # not yet hit an order with no n-grams
        eff = np.full(sys_len.shape, max_order, dtype=float)
        mteval = np.ones(sys_len.shape)
        log_sum = np.zeros(sys_len.shape)
        precisions = []
        for n in range(max_order):
            c, t = correct[..., n], total[..., n]
            if smooth_method == "add-k" and n > 0:
                c, t = c + smooth_value, t + smooth_value
            alive &= t != 0
            if effective_order:
                eff = np.where(alive, n + 1, eff)
            zero = c == 0
            safe_t = np.where(t != 0, t, 1)
            p = np.where(zero, 0.0, 100.0 * c / safe_t)
            if smooth_method == "exp":
                mteval = np.where(alive & zero, mteval * 2, mteval)
                p = np.where(zero, 100.0 / (mteval * safe_t), p)
            elif smooth_method == "floor":
                p = np.where(zero, 100.0 * smooth_value / safe_t, p)
            precisions.append(np.where(alive, p, 0.0))
        for n, p in enumerate(precisions):
            # sacrebleu's my_log: log(0) is floored at -9999999999.
            logp = np.where(p == 0, -9999999999.0, np.log(np.where(p == 0, 1.0, p)))
            log_sum = log_sum + np.where(n < eff, logp, 0.0)
        score = bp * np.exp(log_sum / eff)
    return np.where(any_correct, score, 0.0)


def chrf_aggregate(sums: np.ndarray, beta: float = 2, eps_smoothing: bool = False) -> np.ndarray:
    """sacrebleu's ``CHRF._compute_f_score`` vectorised; columns are (hyp, ref, match)
    per n-gram order."""
    s = np.asarray(sums, dtype=float)
    trip = s.reshape(s.shape[:-1] + (-1, 3))
    n_hyp, n_ref, n_match = trip[..., 0], trip[..., 1], trip[..., 2]
    order = trip.shape[-2]
    eps, factor = 1e-16, beta ** 2
    with np.errstate(divide="ignore", invalid="ignore"):
        prec = np.where(n_hyp > 0, n_match / np.where(n_hyp > 0, n_hyp, 1), eps)
        rec = np.where(n_ref > 0, n_match / np.where(n_ref > 0, n_ref, 1), eps)
        if eps_smoothing:
            denom = factor * prec + rec
            f = np.where(denom > 0, (1 + factor) * prec * rec / np.where(denom > 0, denom, 1), eps)
            return 100 * f.sum(axis=-1) / order
        valid = (n_hyp > 0) & (n_ref > 0)
        k = valid.sum(axis=-1)
        avg_p = np.where(k > 0, np.where(valid, prec, 0).sum(axis=-1) / np.where(k > 0, k, 1), 0.0)
        avg_r = np.where(k > 0, np.where(valid, rec, 0).sum(axis=-1) / np.where(k > 0, k, 1), 0.0)
        den = factor * avg_p + avg_r
        score = np.where(avg_p + avg_r > 0, 100 * (1 + factor) * avg_p * avg_r / np.where(den > 0, den, 1), 0.0)
    return score


def _segment_stats(metric: Any, outputs: list[str], examples: list) -> np.ndarray:
    refs = [[e.reference for e in examples]]
    # sacrebleu's own per-segment statistics (what its corpus_score sums).
    return np.asarray(metric._extract_corpus_statistics(outputs, refs), dtype=float).reshape(len(outputs), -1)


@METRICS.register("bleu", higher_is_better=True, **_REF)
def bleu(outputs: list[str], examples: list, tokenize: str | None = None, lowercase: bool = False,
         smooth_method: str = "exp", max_ngram_order: int = 4) -> MetricResult:
    """Corpus BLEU (sacrebleu, 0-100). ``per_example`` is sentence BLEU (effective order)."""
    from sacrebleu.metrics import BLEU

    if smooth_method not in BLEU.SMOOTH_DEFAULTS:
        raise InputError(Problem("<goal>", None, "bleu.smooth_method",
                                 f"unknown smooth_method {smooth_method!r}; use one of {', '.join(BLEU.SMOOTH_DEFAULTS)}"))
    m = BLEU(tokenize=tokenize, lowercase=lowercase, smooth_method=smooth_method,
             max_ngram_order=max_ngram_order, force=True)
    stats = _segment_stats(m, outputs, examples)
    agg = partial(bleu_aggregate, max_order=max_ngram_order, smooth_method=smooth_method)
    per = bleu_aggregate(stats, max_ngram_order, smooth_method, effective_order=True) if len(stats) else []
    return MetricResult("bleu", float(agg(stats.sum(axis=0))), [float(x) for x in per], stats, agg,
                        {"n": len(outputs), "scale": 100, "signature": str(m.get_signature())})


@METRICS.register("chrf", higher_is_better=True, **_REF)
def chrf(outputs: list[str], examples: list, char_order: int = 6, word_order: int = 0, beta: int = 2,
         lowercase: bool = False, whitespace: bool = False) -> MetricResult:
    """Corpus chrF (sacrebleu, 0-100; ``word_order: 2`` gives chrF++)."""
    from sacrebleu.metrics import CHRF

    m = CHRF(char_order=char_order, word_order=word_order, beta=beta, lowercase=lowercase, whitespace=whitespace)
    stats = _segment_stats(m, outputs, examples)
    agg = partial(chrf_aggregate, beta=beta)
    per = agg(stats) if len(stats) else []
    return MetricResult("chrf", float(agg(stats.sum(axis=0))), [float(x) for x in per], stats, agg,
                        {"n": len(outputs), "scale": 100, "signature": str(m.get_signature())})


# ---------------------------------------------------------------- retrieval

def _sources(example: Any) -> list[str]:
    """The document ids a test record names in its ``source`` field (one id or a list)."""
    src = example.extra.get("source") if getattr(example, "extra", None) else None
    if src is None or src == "":
        return []
    return [str(s) for s in (src if isinstance(src, list) else [src])]


def _names_source(passage_id: str, source: str) -> bool:
    """A passage ``doc#n`` is from ``source`` when it names the passage, its document, or the
    document without its extension (``install`` for ``install.md``)."""
    doc = passage_id.rsplit("#", 1)[0]
    return source in (passage_id, doc) or (doc.rsplit(".", 1)[0] == source and "." in doc.rsplit("/", 1)[-1])


@METRICS.register("retrieval_recall@k", higher_is_better=True, needs_retrieval=True, scale=(0.0, 1.0), **_REF)
def retrieval_recall(outputs: list[str], examples: list, retrieved: list[list[str]] | None = None,
                     k: int | None = None) -> MetricResult:
    """Share of each test record's ``source`` documents among the passages retrieved for it
    (the first ``k`` when given; else all the candidate retrieved). Records without a source,
    and every example of a candidate that retrieves nothing, are left out (no value, a note why)."""
    if k is not None and (isinstance(k, bool) or not isinstance(k, int) or k < 1):
        raise InputError(Problem("<goal>", None, "retrieval_recall@k.k", f"k must be an integer >= 1, got {k!r}"))
    sources = [_sources(e) for e in examples]
    note = ('no test record names its document ("source": "<document id>")' if not any(sources) else
            "the candidate retrieves no passages" if retrieved is None else None)
    if note:
        res = from_values("retrieval_recall@k", [None] * len(examples))
        res.extra["note"] = note
        return res
    values: list[float | None] = []
    for srcs, ids in zip(sources, retrieved):
        top = list(ids)[:k] if k else list(ids)
        values.append(sum(any(_names_source(p, s) for p in top) for s in srcs) / len(srcs) if srcs else None)
    res = from_values("retrieval_recall@k", values)
    res.extra["k"] = k or max((len(r) for r in retrieved), default=0)
    return res
