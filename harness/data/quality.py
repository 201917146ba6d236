"""Data quality report for a list of examples: counts, token lengths, labels, PII, lint,
duplicates and a data-volume verdict. Pure Python; rendering imports ``rich`` lazily.

Each problem is a :class:`Finding` with a code, a severity and a location; the sections hold
the numbers behind them. ``report.exit_code`` is 1 when a finding matches ``blocking``
(a severity such as ``"error"``, a code such as ``"pii-email"``, or a code family such as ``"pii"``).
"""
from __future__ import annotations

import re
import statistics
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

from harness.data import dedup
from harness.data.formats import Example, read_jsonl
from harness.data.pii import KINDS, find_pii, mask, mask_text
from harness.errors import InputError

SEVERITIES = ("error", "warning", "info")
MAX_LINES = 10  # locations listed in one message; the full list is in ``Finding.lines``


@dataclass
class Finding:
    """One problem (or note) about the data, located as precisely as we can."""

    code: str
    severity: str
    message: str
    file: str | None = None
    line: int | None = None
    example_id: str | None = None
    sample: str | None = None
    count: int = 1
    lines: list[int] = field(default_factory=list)

    @property
    def family(self) -> str:
        return self.code.split("-", 1)[0]


@dataclass
class QualityReport:
    source: str | None
    counts: dict[str, Any]
    tokens: dict[str, Any]
    labels: dict[str, Any]
    pii: dict[str, Any]
    lint: dict[str, Any]
    duplicates: dict[str, Any]
    volume: dict[str, Any]
    findings: list[Finding] = field(default_factory=list)
    blocking: frozenset[str] = frozenset({"error"})

    def blocks(self, f: Finding) -> bool:
        return f.severity in self.blocking or f.code in self.blocking or f.family in self.blocking

    @property
    def blocking_findings(self) -> list[Finding]:
        return [f for f in self.findings if self.blocks(f)]

    @property
    def exit_code(self) -> int:
        """0 when nothing blocks, 1 otherwise (invalid input is the CLI's 2)."""
        return 1 if self.blocking_findings else 0

    def by_code(self, code: str) -> list[Finding]:
        return [f for f in self.findings if f.code == code]

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["blocking"] = sorted(self.blocking)
        d["exit_code"] = self.exit_code
        return d


# --- helpers -------------------------------------------------------------------------------

def _where(ex: Example) -> str:
    return f"{ex.source}:{ex.line}" if ex.source else f"line {ex.line}"


def _lines_text(exs: list[Example]) -> str:
    shown = ", ".join(str(e.line) for e in exs[:MAX_LINES])
    more = f" and {len(exs) - MAX_LINES} more" if len(exs) > MAX_LINES else ""
    return f"line{'s' if len(exs) > 1 else ''} {shown}{more}"


def _excerpt(text: str, n: int = 60, tail: bool = False) -> str:
    """A short, PII-masked excerpt: reports get shared, personal data must not ride along."""
    text = mask_text(text)
    flat = text.replace("\n", "⏎")
    if len(flat) <= n:
        return flat
    return "…" + flat[-n:] if tail else flat[:n] + "…"


def _finding(code: str, severity: str, message: str, exs: list[Example], sample: str | None = None) -> Finding:
    first = exs[0] if exs else None
    return Finding(code=code, severity=severity, message=message,
                   file=first.source if first else None, line=first.line if first else None,
                   example_id=first.id if first else None, sample=sample, count=len(exs) or 1,
                   lines=[e.line for e in exs])


def _stats(values: list[int]) -> dict[str, float]:
    if not values:
        return {"min": 0, "mean": 0.0, "p50": 0.0, "p95": 0.0, "max": 0}
    import numpy as np

    arr = np.asarray(values, dtype=float)
    return {"min": int(arr.min()), "mean": round(float(arr.mean()), 2), "p50": float(np.percentile(arr, 50)),
            "p95": round(float(np.percentile(arr, 95)), 2), "max": int(arr.max())}


def whitespace_tokens(text: str) -> int:
    """Fallback token count when no tokenizer is given: whitespace-separated words."""
    return len(text.split())


def _content(ex: Example) -> str:
    """The text duplicates are judged on: the input for classification, everything otherwise."""
    if ex.format == "label":
        return ex.input_text
    return "\n".join(m["content"] for m in ex.prompt) + "\n" + ex.reference


def _norm_label(label: str) -> str:
    return " ".join(label.split()).casefold()


# --- sections ------------------------------------------------------------------------------

def _counts(examples: list[Example]) -> tuple[dict, list[Finding]]:
    roles: Counter = Counter()
    for ex in examples:
        roles.update(m["role"] for m in ex.prompt)
        roles["assistant"] += 1  # the reference is the assistant's turn
    with_system = [ex for ex in examples if ex.system is not None]
    systems = Counter(ex.system for ex in with_system)
    turns = [len(ex.prompt) + 1 for ex in examples]
    counts = {
        "examples": len(examples),
        "formats": dict(Counter(ex.format for ex in examples)),
        "roles": dict(roles),
        "with_system_prompt": len(with_system),
        "distinct_system_prompts": len(systems),
        "multi_turn": sum(1 for ex in examples if sum(m["role"] == "user" for m in ex.prompt) > 1),
        "avg_turns": round(sum(turns) / len(turns), 2) if turns else 0.0,
    }
    findings = []
    if with_system and len(with_system) < len(examples):
        without = [ex for ex in examples if ex.system is None]
        findings.append(_finding(
            "system-prompt-mixed", "warning",
            f"{len(with_system)} of {len(examples)} examples have a system prompt and {len(without)} do not "
            f"({_lines_text(without)}); the model learns two behaviours, and evaluation prompts must match one",
            without))
    return counts, findings


def _tokens(examples: list[Example], count_tokens: Callable[[str], int] | None) -> dict:
    counter = count_tokens or whitespace_tokens
    prompt = [sum(counter(m["content"]) for m in ex.prompt) for ex in examples]
    reference = [counter(ex.reference) for ex in examples]
    name = "whitespace" if count_tokens is None else getattr(count_tokens, "name", None) or \
        getattr(count_tokens, "__name__", "tokenizer")
    return {"counter": name, "prompt": _stats(prompt), "reference": _stats(reference),
            "total": _stats([p + r for p, r in zip(prompt, reference)]),
            "note": "message contents only; chat-template tokens are not counted"}


def _label_variants(values: list[tuple[str, Example]], what: str) -> list[Finding]:
    """Labels that differ only in case or whitespace ("Billing", "billing", " billing")."""
    groups: dict[str, Counter] = defaultdict(Counter)
    where: dict[str, dict[str, list[Example]]] = defaultdict(lambda: defaultdict(list))
    for value, ex in values:
        key = _norm_label(value)
        groups[key][value] += 1
        where[key][value].append(ex)
    findings = []
    for key, variants in groups.items():
        if len(variants) < 2:
            continue
        common = variants.most_common(1)[0][0]
        odd = [ex for v, exs in where[key].items() if v != common for ex in exs]
        desc = ", ".join(f"{v!r} ×{n}" for v, n in variants.most_common())
        findings.append(_finding(
            "label-variants", "warning",
            f"{what} {common!r} is written {len(variants)} ways: {desc}; normalise them "
            f"(the odd ones at {_lines_text(odd)}) or the model learns them as different classes",
            odd, sample=desc))
    return findings


def _labels(examples: list[Example]) -> tuple[dict, list[Finding]]:
    labelled = [ex for ex in examples if ex.label is not None]
    findings: list[Finding] = []
    if not labelled:
        # References that look like labels (short, few distinct values) get the casing check too.
        refs = [(ex.reference, ex) for ex in examples]
        short = [r for r in refs if len(r[0].split()) <= 3]
        if refs and len(short) >= 0.9 * len(refs) and len({_norm_label(r) for r, _ in refs}) <= max(20, len(refs) // 5):
            findings += _label_variants(refs, "the answer")
        return {}, findings
    dist = Counter(ex.label for ex in labelled)
    n = len(labelled)
    section = {"distribution": dict(dist.most_common()),
               "shares": {k: round(v / n, 4) for k, v in dist.most_common()}, "classes": len(dist)}
    if len(dist) == 1:
        only = next(iter(dist))
        findings.append(_finding("label-single", "warning",
                                 f"every example has the label {only!r}: a classifier cannot learn anything", labelled[:1]))
    else:
        lo_label, lo = min(dist.items(), key=lambda kv: kv[1])
        hi_label, hi = max(dist.items(), key=lambda kv: kv[1])
        rare = [k for k, v in dist.items() if v / n < 0.05]
        if rare or hi / lo > 10:
            findings.append(_finding(
                "label-imbalance", "warning",
                f"labels are imbalanced: {hi_label!r} has {hi} examples, {lo_label!r} only {lo} "
                f"(ratio {hi / lo:.1f}); classes under 5%: {', '.join(map(repr, rare)) or 'none'}. "
                "Report per-class F1, not only accuracy, and consider collecting more of the rare classes",
                [ex for ex in labelled if ex.label in set(rare) | {lo_label}], sample=f"{lo_label}: {lo}"))
        tiny = [k for k, v in dist.items() if v < 3]
        if tiny:
            findings.append(_finding(
                "label-rare", "warning",
                f"{len(tiny)} label(s) have fewer than 3 examples ({', '.join(map(repr, tiny[:MAX_LINES]))}): "
                "they cannot appear in train, validation and test at once",
                [ex for ex in labelled if ex.label in set(tiny)]))
    findings += _label_variants([(ex.label, ex) for ex in labelled], "the label")
    ws = [ex for ex in labelled if ex.label != ex.label.strip()]
    if ws:
        findings.append(_finding("label-whitespace", "warning",
                                 f"{len(ws)} label(s) have leading or trailing spaces ({_lines_text(ws)})", ws,
                                 sample=repr(ws[0].label)))
    return section, findings


def _fields(ex: Example) -> Iterable[tuple[str, str]]:
    if ex.format == "label":
        yield "text", ex.input_text
        return
    for i, m in enumerate(ex.prompt):
        yield f"messages[{i}].content", m["content"]
    yield "reference", ex.reference


def _pii(examples: list[Example], max_samples: int = 5) -> tuple[dict, list[Finding]]:
    per_kind: dict[str, dict[str, Any]] = {}
    hit_examples: dict[str, list[Example]] = defaultdict(list)
    for ex in examples:
        seen: set[str] = set()
        for fld, text in _fields(ex):
            for m in find_pii(text):
                entry = per_kind.setdefault(m.kind, {"count": 0, "examples": 0, "samples": []})
                entry["count"] += 1
                if len(entry["samples"]) < max_samples:
                    entry["samples"].append({"masked": mask(m.text, m.kind), "file": ex.source,
                                             "line": ex.line, "field": fld})
                if m.kind not in seen:
                    seen.add(m.kind)
                    hit_examples[m.kind].append(ex)
    findings = []
    for kind in KINDS:
        if kind not in per_kind:
            continue
        entry = per_kind[kind]
        exs = hit_examples[kind]
        entry["examples"] = len(exs)
        samples = ", ".join(f"{s['masked']} ({s['file']}:{s['line']})" for s in entry["samples"][:3])
        findings.append(_finding(
            f"pii-{kind.lower().replace('_', '-')}", "warning",
            f"{entry['count']} {kind} value(s) in {len(exs)} example(s) ({_lines_text(exs)}), e.g. {samples}; "
            "scrub them (data.scrub_pii) before text leaves this machine",
            exs, sample=entry["samples"][0]["masked"]))
    return {k: per_kind[k] for k in KINDS if k in per_kind}, findings


# Line-start list markers; numbered and bulleted styles are compared within their own family,
# since an answer mixing "1." steps with "- " sub-points is normal.
LIST_STYLES: dict[str, tuple[str, re.Pattern]] = {
    "1.": ("numbered", re.compile(r"^[ \t]*\d{1,3}\.[ \t]+\S", re.M)),
    "1)": ("numbered", re.compile(r"^[ \t]*\d{1,3}\)[ \t]+\S", re.M)),
    "Step 1:": ("numbered", re.compile(r"^[ \t]*step[ \t]+\d{1,3}[ \t]*[:.)\-]", re.M | re.I)),
    "- ": ("bulleted", re.compile(r"^[ \t]*-[ \t]+\S", re.M)),
    "* ": ("bulleted", re.compile(r"^[ \t]*\*[ \t]+\S", re.M)),
    "• ": ("bulleted", re.compile(r"^[ \t]*•[ \t]*\S", re.M)),
}

_TERMINAL = set(".!?…)]}\"'`*»”’>|")
_DANGLING = frozenset("and or but the a an to of with for in on at from that because which so as if by".split())


def truncation_reason(text: str) -> str | None:
    """Why ``text`` looks cut off mid-answer, or None. Only strong signals; see the lint for weak ones."""
    t = text.rstrip()
    if not t:
        return None
    if t.count("```") % 2 == 1:
        return "unclosed code fence"
    for o, c in ("()", "[]", "{}"):
        if t.count(o) > t.count(c):
            return f"unclosed {o!r}"
    if t.endswith(","):
        return "ends with a comma"
    if t.endswith(":"):
        return "ends with a colon"
    if t.endswith(("-", "–", "—")) and not t.endswith("---"):
        return "ends with a dash"
    last = re.findall(r"[A-Za-z]+$", t)
    if last and last[0].lower() in _DANGLING:
        return f"ends with {last[0]!r}"
    return None


def _ends_open(text: str) -> bool:
    """Weak signal: the last line is prose ending in a letter, with no terminal punctuation."""
    t = text.rstrip()
    last_line = t.rsplit("\n", 1)[-1].strip()
    if re.match(r"^(?:[-*•#|>]|\d{1,3}[.)]|```|https?://)", last_line):
        return False  # list items, headings, tables, quotes and URLs end without a full stop
    return bool(t) and t[-1].isalpha() and t[-1] not in _TERMINAL


def _lint(examples: list[Example]) -> tuple[dict, list[Finding]]:
    outputs = [ex for ex in examples if ex.format != "label"]
    section, findings = _lint_list_styles(outputs)
    findings += _lint_empty_and_short(examples, outputs)
    truncated = _lint_truncated(outputs)
    section["truncated"] = truncated[0].count if truncated else 0
    return section, findings + truncated


def _lint_list_styles(outputs: list[Example]) -> tuple[dict, list[Finding]]:
    findings: list[Finding] = []
    styles: dict[str, list[Example]] = {s: [] for s in LIST_STYLES}
    for ex in outputs:
        for style, (_, rx) in LIST_STYLES.items():
            if rx.search(ex.reference):
                styles[style].append(ex)
    section: dict[str, Any] = {"list_styles": {s: len(v) for s, v in styles.items() if v}}
    for family in ("numbered", "bulleted"):
        used = {s: v for s, v in styles.items() if v and LIST_STYLES[s][0] == family}
        if len(used) > 1:
            ranked = sorted(used.items(), key=lambda kv: -len(kv[1]))
            minority = [ex for _, exs in ranked[1:] for ex in exs]
            desc = ", ".join(f"{s!r} in {len(v)}" for s, v in ranked)
            findings.append(_finding(
                "lint-list-style", "warning",
                f"{family} lists use {len(used)} styles across examples: {desc}; pick one "
                f"(the less common ones are at {_lines_text(minority)})", minority, sample=desc))
    return section, findings


def _lint_empty_and_short(examples: list[Example], outputs: list[Example]) -> list[Finding]:
    findings: list[Finding] = []
    trailing = [ex for ex in outputs if ex.reference != ex.reference.rstrip()]
    if trailing:
        findings.append(_finding("lint-trailing-whitespace", "warning",
                                 f"{len(trailing)} reference(s) end with whitespace ({_lines_text(trailing)}); "
                                 "the model learns to emit it", trailing, sample=repr(trailing[0].reference[-12:])))

    empty = [ex for ex in examples if not ex.reference.strip()]
    if empty:
        findings.append(_finding("lint-empty-reference", "error",
                                 f"{len(empty)} example(s) have an empty reference ({_lines_text(empty)})", empty))
    empty_in = [ex for ex in examples if not ex.input_text.strip()]
    if empty_in:
        findings.append(_finding("lint-empty-input", "warning",
                                 f"{len(empty_in)} example(s) have an empty user input ({_lines_text(empty_in)})",
                                 empty_in))

    words = [len(ex.reference.split()) for ex in outputs]
    median = statistics.median(words) if words else 0
    if median >= 10:
        short = [ex for ex in outputs if 0 < len(ex.reference.split()) <= 2]
        if short:
            findings.append(_finding(
                "lint-short-reference", "warning",
                f"{len(short)} reference(s) have 1-2 words while the median is {median:g} "
                f"({_lines_text(short)}): check they are complete", short, sample=_excerpt(short[0].reference)))
    return findings


def _lint_truncated(outputs: list[Example]) -> list[Finding]:
    strong: list[tuple[Example, str]] = []
    for ex in outputs:
        reason = truncation_reason(ex.reference)
        if reason:
            strong.append((ex, reason))
    # Missing final punctuation only counts when the data set's own convention is to have it.
    long = [ex for ex in outputs if len(ex.reference.split()) >= 4]
    open_end = [ex for ex in long if _ends_open(ex.reference)]
    if long and len(open_end) <= 0.2 * len(long):
        flagged = {ex.id for ex, _ in strong}
        strong += [(ex, "no final punctuation") for ex in open_end if ex.id not in flagged]
    if not strong:
        return []
    strong.sort(key=lambda p: p[0].line)
    reasons = Counter(r for _, r in strong)
    exs = [ex for ex, _ in strong]
    return [_finding(
        "lint-truncated", "warning",
        f"{len(strong)} reference(s) look cut off ({', '.join(f'{r}: {n}' for r, n in reasons.most_common())}; "
        f"{_lines_text(exs)})", exs, sample=_excerpt(exs[0].reference, tail=True))]


def _duplicates(examples: list[Example], threshold: float) -> tuple[dict, list[Finding]]:
    contents = [_content(ex) for ex in examples]
    groups = dedup.exact_duplicates(contents)
    findings: list[Finding] = []
    exact_sections, dup_groups = [], []
    for g in groups:
        exs = [examples[i] for i in g]
        labels = {_norm_label(ex.label) for ex in exs if ex.label is not None}
        entry = {"lines": [ex.line for ex in exs], "ids": [ex.id for ex in exs]}
        if len(labels) > 1:
            entry["labels"] = sorted({ex.label for ex in exs})
            findings.append(_finding(
                "duplicate-conflicting-labels", "error",
                f"the same text has different labels {entry['labels']} at {_lines_text(exs)}: "
                "decide which is right, a model cannot learn both", exs, sample=_excerpt(exs[0].input_text)))
        else:
            dup_groups.append(exs)
        exact_sections.append(entry)
    if dup_groups:
        extra = sum(len(g) - 1 for g in dup_groups)
        desc = "; ".join(" = ".join(str(ex.line) for ex in g) for g in dup_groups[:MAX_LINES])
        findings.append(_finding(
            "duplicate-exact", "warning",
            f"{len(dup_groups)} group(s) of exact duplicates ({extra} redundant example(s)): lines {desc}"
            f"{' …' if len(dup_groups) > MAX_LINES else ''}; duplicates over-weight those examples",
            [ex for g in dup_groups for ex in g], sample=_excerpt(dup_groups[0][0].input_text)))
    in_group = {i: gi for gi, g in enumerate(groups) for i in g}
    near = [(i, j, s) for i, j, s in dedup.near_duplicates(contents, threshold)
            if not (i in in_group and in_group.get(j) == in_group[i])]
    near_section = [{"lines": [examples[i].line, examples[j].line], "ids": [examples[i].id, examples[j].id],
                     "jaccard": round(s, 4)} for i, j, s in near]
    if near:
        desc = ", ".join(f"{examples[i].line}~{examples[j].line} ({s:.2f})" for i, j, s in near[:MAX_LINES])
        exs = list({examples[k].id: examples[k] for i, j, _ in near for k in (i, j)}.values())
        findings.append(_finding(
            "duplicate-near", "warning",
            f"{len(near)} near-duplicate pair(s) with word-shingle Jaccard ≥ {threshold}: {desc}"
            f"{' …' if len(near) > MAX_LINES else ''}", exs))
    unique = len(examples) - sum(len(g) - 1 for g in groups)
    return {"exact": exact_sections, "near": near_section, "threshold": threshold, "unique": unique}, findings


VOLUME_BANDS = ((100, "too few"), (300, "minimum"), (5000, "good"))


def volume_verdict(n: int) -> tuple[str, str]:
    """(verdict, helpful message) for ``n`` unique examples, after the usual fine-tuning guidance."""
    if n < 100:
        return "too few", (f"{n} unique examples is too few to fine-tune reliably: aim for at least 100, and a few "
                           "hundred for a clear result. Until then, compare prompt baselines (zero/few-shot), "
                           "and note that a 10% test split of this size gives wide confidence intervals.")
    if n < 300:
        return "minimum", (f"{n} unique examples is the minimum workable amount: LoRA on a narrow task can work, "
                           "but a few hundred more would make gains clearer and the test split more decisive.")
    if n <= 5000:
        return "good", (f"{n} unique examples is a good amount: hundreds to a few thousand good examples is "
                        "where fine-tuning usually pays off. Improving quality now beats adding quantity.")
    return "plenty", (f"{n} unique examples is plenty: you can afford a larger test split, and subsampling "
                      "can speed up experiments; more data helps less than cleaner data from here.")


def _volume(examples: list[Example], unique: int, labels: dict) -> tuple[dict, list[Finding]]:
    verdict, message = volume_verdict(unique)
    if labels.get("distribution"):
        smallest_label, smallest = min(labels["distribution"].items(), key=lambda kv: kv[1])
        if smallest < 20:
            message += f" The smallest class ({smallest_label!r}) has only {smallest} examples."
    section = {"examples": len(examples), "unique": unique, "verdict": verdict, "message": message,
               "bands": {"too few": "<100", "minimum": "100-299", "good": "300-5000", "plenty": ">5000"}}
    severity = "warning" if verdict == "too few" else "info"
    return section, [Finding(code="volume", severity=severity, message=message, count=unique,
                             file=examples[0].source if examples else None)]


# --- entry points --------------------------------------------------------------------------

def check_examples(examples: list[Example], *, count_tokens: Callable[[str], int] | None = None,
                   blocking: Iterable[str] = ("error",), near_dup_threshold: float = 0.8,
                   source: str | None = None) -> QualityReport:
    """Run every check over ``examples`` and collect the findings and numbers into a report.

    ``count_tokens`` is the goal's tokenizer when there is one (whitespace words otherwise);
    ``blocking`` names severities, codes or code families that make ``exit_code`` 1.
    """
    examples = list(examples)
    source = source or (examples[0].source if examples else None)
    findings: list[Finding] = []
    if not examples:
        findings.append(Finding("no-examples", "error", "no examples to check", file=source))
    counts, f = _counts(examples)
    findings += f
    tokens = _tokens(examples, count_tokens)
    labels, f = _labels(examples)
    findings += f
    pii, f = _pii(examples)
    findings += f
    lint, f = _lint(examples)
    findings += f
    dups, f = _duplicates(examples, near_dup_threshold)
    findings += f
    volume, f = _volume(examples, dups["unique"], labels)
    findings += f
    order = {s: i for i, s in enumerate(SEVERITIES)}
    findings.sort(key=lambda x: order.get(x.severity, 9))  # stable: checks keep their order within a severity
    return QualityReport(source=source, counts=counts, tokens=tokens, labels=labels, pii=pii, lint=lint,
                         duplicates=dups, volume=volume, findings=findings, blocking=frozenset(blocking))


def check_file(path: str | Path, fmt: str | None = None, **kwargs: Any) -> QualityReport:
    """Read a JSONL file and check it; unreadable records raise :class:`InputError` (all of them)."""
    examples, problems = read_jsonl(path, fmt)
    if problems:
        raise InputError(problems)
    return check_examples(examples, source=str(path), **kwargs)


def check_leakage(train: list[Example], test: list[Example], threshold: float = 0.8) -> list[Finding]:
    """Train/test overlap: exact copies are errors (the test score is inflated), near copies warnings."""
    pairs = dedup.cross_duplicates([_content(e) for e in train], [_content(e) for e in test], threshold)
    exact = [(train[i], test[j]) for i, j, _, e in pairs if e]
    near = [(train[i], test[j], s) for i, j, s, e in pairs if not e]
    findings = []
    if exact:
        tests = list({t.id: t for _, t in exact}.values())
        desc = ", ".join(f"test {t.line} = train {a.line}" for a, t in exact[:MAX_LINES])
        findings.append(_finding("leakage-exact", "error",
                                 f"{len(tests)} test example(s) also appear in train ({desc})", tests))
    if near:
        tests = list({t.id: t for _, t, _ in near}.values())
        desc = ", ".join(f"test {t.line} ~ train {a.line} ({s:.2f})" for a, t, s in near[:MAX_LINES])
        findings.append(_finding("leakage-near", "warning",
                                 f"{len(tests)} test example(s) have a near-duplicate in train "
                                 f"(Jaccard ≥ {threshold}): {desc}", tests))
    return findings


# --- rendering -----------------------------------------------------------------------------

_STYLE = {"error": "bold red", "warning": "yellow", "info": "cyan"}


def render_report(report: QualityReport):
    """A ``rich`` renderable (a Group of tables) for the terminal."""
    from rich.console import Group
    from rich.panel import Panel
    from rich.table import Table

    parts: list[Any] = []
    c = report.counts
    summary = Table(title=f"Data: {report.source or '(examples)'}", show_header=False, box=None)
    summary.add_row("examples", f"{c.get('examples', 0)} ({report.duplicates.get('unique', 0)} unique)")
    summary.add_row("formats", ", ".join(f"{k}: {v}" for k, v in c.get("formats", {}).items()))
    summary.add_row("system prompt", f"{c.get('with_system_prompt', 0)} examples, "
                                     f"{c.get('distinct_system_prompts', 0)} distinct")
    summary.add_row("turns", f"avg {c.get('avg_turns', 0)}, multi-turn {c.get('multi_turn', 0)}")
    parts.append(summary)

    tok = Table(title=f"Token lengths ({report.tokens.get('counter')})")
    for col in ("", "min", "mean", "p50", "p95", "max"):
        tok.add_column(col, justify="right")
    for part in ("prompt", "reference", "total"):
        s = report.tokens.get(part, {})
        tok.add_row(part, *(str(s.get(k, "")) for k in ("min", "mean", "p50", "p95", "max")))
    parts.append(tok)

    if report.labels.get("distribution"):
        lab = Table(title="Labels")
        lab.add_column("label")
        lab.add_column("count", justify="right")
        lab.add_column("share", justify="right")
        for k, v in report.labels["distribution"].items():
            lab.add_row(repr(k), str(v), f"{report.labels['shares'][k]:.1%}")
        parts.append(lab)

    if report.pii:
        pii = Table(title="Personal data (masked)")
        for col in ("kind", "count", "examples", "samples"):
            pii.add_column(col)
        for kind, e in report.pii.items():
            samples = ", ".join(f"{s['masked']} @{s['line']}" for s in e["samples"][:3])
            pii.add_row(kind, str(e["count"]), str(e["examples"]), samples)
        parts.append(pii)

    findings = [f for f in report.findings if f.code != "volume"]  # volume has its own panel below
    if findings:
        fin = Table(title="Findings")
        for col in ("severity", "code", "where", "message"):
            fin.add_column(col, overflow="fold")
        for f in findings:
            where = f"{Path(f.file).name if f.file else ''}:{f.line}" if f.line else ""
            sev = f.severity + (" (blocks)" if report.blocks(f) else "")
            fin.add_row(f"[{_STYLE.get(f.severity, '')}]{sev}[/]", f.code, where, f.message)
        parts.append(fin)
    else:
        parts.append("[green]No findings[/]: no PII, lint, duplicate or format problems.")

    v = report.volume
    parts.append(Panel(v.get("message", ""), title=f"Volume: {v.get('verdict', '?')}",
                       border_style="yellow" if v.get("verdict") == "too few" else "green"))
    return Group(*parts)


def render_text(report: QualityReport, width: int = 110) -> str:
    """The terminal rendering as plain text (logs, tests)."""
    import io

    from rich.console import Console

    console = Console(width=width, file=io.StringIO(), color_system=None)
    console.print(render_report(report))
    return console.file.getvalue()
