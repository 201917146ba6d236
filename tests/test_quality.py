"""The data quality report on real temp JSONL files: PII, lint, labels, duplicates, volume."""
from __future__ import annotations

import json
import os
import random
import statistics
import subprocess
import sys
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from harness.data.formats import load_examples, make_example
from harness.data.quality import (check_examples, check_file, check_leakage, render_report, render_text,
                                  truncation_reason, volume_verdict)
from harness.errors import InputError

ROOT = Path(__file__).resolve().parent.parent


def write(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def chat(user: str, answer: str, system: str | None = None) -> dict:
    msgs = ([{"role": "system", "content": system}] if system else []) + [
        {"role": "user", "content": user}, {"role": "assistant", "content": answer}]
    return {"messages": msgs}


TOPICS = ["router", "printer", "laptop", "phone", "tablet", "monitor", "keyboard", "speaker", "camera", "watch"]


def clean_rows(n: int) -> list[dict]:
    """Distinct, tidy chat examples: no PII, one list style, full sentences."""
    rows = []
    for i in range(n):
        t = TOPICS[i % len(TOPICS)]
        rows.append(chat(f"Question {i}: my {t} model {i * 7} will not start after update {i}.",
                         f"For the {t} model {i * 7}, try this:\n1. Unplug it for {i % 9 + 1} minutes.\n"
                         f"2. Hold the power button for {i % 5 + 5} seconds.\nIt should start again after case {i}."))
    return rows


def codes(report) -> set[str]:
    return {f.code for f in report.findings}


def test_clean_data_has_no_problems(tmp_path):
    report = check_file(write(tmp_path / "clean.jsonl", clean_rows(120)))
    assert codes(report) == {"volume"}
    assert report.exit_code == 0
    assert report.volume["verdict"] == "minimum"
    assert report.lint["list_styles"] == {"1.": 120}


def test_pii_findings_with_locations_and_masked_samples(tmp_path):
    rows = clean_rows(10)
    rows[2] = chat("Email me at jane.doe@example.com or +44 20 7946 0958", "Sure, I will.")
    rows[5] = chat("Card 4111 1111 1111 1111 (and 4111 1111 1111 1112, not a card)", "Charged.")
    rows[7] = chat("From 198.51.100.23", "Refund to DE89 3704 0044 0532 0130 00 is done.")
    rows[8] = chat("Again jane.doe@example.com", "Noted, Mr. John Smith.")
    path = write(tmp_path / "pii.jsonl", rows)
    report = check_file(path)
    by = {f.code: f for f in report.findings}
    assert by["pii-email"].count == 2 and by["pii-email"].lines == [3, 9]
    assert by["pii-email"].file == str(path) and by["pii-email"].line == 3
    assert by["pii-phone"].lines == [3]
    assert by["pii-credit-card"].lines == [6] and report.pii["CREDIT_CARD"]["count"] == 1
    assert by["pii-ip"].lines == [8] and by["pii-iban"].lines == [8]
    assert by["pii-name"].lines == [9]
    assert all(f.severity == "warning" for c, f in by.items() if c.startswith("pii"))
    sample = report.pii["EMAIL"]["samples"][0]
    assert sample == {"masked": "j***@e***.com", "file": str(path), "line": 3, "field": "messages[0].content"}
    assert report.pii["IBAN"]["samples"][0]["field"] == "reference"
    dumped = json.dumps(report.to_dict())
    for raw in ("jane.doe@example.com", "4111 1111 1111 1111", "7946 0958", "198.51.100.23", "0532 0130"):
        assert raw not in dumped and raw not in render_text(report)
    # Warnings do not block by default; the goal can make PII (the family or one code) blocking.
    assert report.exit_code == 0
    assert check_file(path, blocking={"error", "pii"}).exit_code == 1
    assert check_file(path, blocking={"pii-iban"}).exit_code == 1
    assert check_file(path, blocking={"pii-iban"}).blocking_findings[0].code == "pii-iban"


def test_list_style_lint(tmp_path):
    rows = clean_rows(12)
    rows[3] = chat("How?", "Do this:\n1) Open it.\n2) Close it.")
    rows[4] = chat("How now?", "Step 1: Open it.\nStep 2: Close it.")
    rows[6] = chat("Bullets?", "Options:\n- Red.\n- Blue.")
    rows[7] = chat("Stars?", "Options:\n* Red.\n* Blue.")
    rows[8] = chat("Mixed ok?", "Steps:\n1. Open it.\n   - carefully.\n2. Close it.")
    report = check_file(write(tmp_path / "l.jsonl", rows))
    style = report.by_code("lint-list-style")
    assert len(style) == 2
    numbered = next(f for f in style if "numbered" in f.message)
    assert numbered.lines == [4, 5]  # the minority styles
    assert "'1.' in 8" in numbered.message and "'1)' in 1" in numbered.message and "'Step 1:' in 1" in numbered.message
    bulleted = next(f for f in style if "bulleted" in f.message)
    assert "'- ' in 2" in bulleted.message and "'* ' in 1" in bulleted.message
    assert report.lint["list_styles"] == {"1.": 8, "1)": 1, "Step 1:": 1, "- ": 2, "* ": 1}


@pytest.mark.parametrize("text, reason", [
    ("I checked the logs and", "ends with 'and'"),
    ("First, restart the router,", "ends with a comma"),
    ("Run this:\n```python\nprint('hi')", "unclosed code fence"),
    ("The options (red, blue", "unclosed '('"),
    ("Here are the steps:", "ends with a colon"),
    ("Done. See the (attached) file.", None),
    ("Run:\n```\nls\n```", None),
    ("Paris", None),
])
def test_truncation_reason(text, reason):
    assert truncation_reason(text) == reason


def test_truncation_trailing_whitespace_and_short(tmp_path):
    rows = clean_rows(20)
    rows[1] = chat("a?", "You need to open the settings page and")
    rows[2] = chat("b?", "The fix is simple: restart the service. ")
    rows[3] = chat("c?", "Then open the panel and choose the reset option")  # no final period: weak signal
    rows[4] = chat("d?", "Yes.")
    report = check_file(write(tmp_path / "t.jsonl", rows))
    trunc = report.by_code("lint-truncated")[0]
    assert trunc.lines == [2, 4]
    assert "ends with 'and': 1" in trunc.message and "no final punctuation: 1" in trunc.message
    assert report.by_code("lint-trailing-whitespace")[0].lines == [3]
    assert report.by_code("lint-short-reference")[0].lines == [5]


def test_missing_punctuation_not_flagged_when_it_is_the_convention(tmp_path):
    rows = [chat(f"Name a colour number {i}", f"The colour number {i} is red") for i in range(10)]
    report = check_file(write(tmp_path / "p.jsonl", rows))
    assert not report.by_code("lint-truncated")


def test_empty_reference_is_an_error():
    ex = make_example("completion", [{"role": "user", "content": "hi"}], "   ", line=4, source="x.jsonl")
    report = check_examples([ex])
    f = report.by_code("lint-empty-reference")[0]
    assert f.severity == "error" and f.line == 4 and f.file == "x.jsonl"
    assert report.exit_code == 1


def label_rows(spec: dict[str, int]) -> list[dict]:
    rows, k = [], 0
    for label, n in spec.items():
        for _ in range(n):
            rows.append({"text": f"ticket {k} about {label.strip().lower()} topic number {k * 3}", "label": label})
            k += 1
    return rows


def test_label_distribution_imbalance_and_variants(tmp_path):
    rows = label_rows({"billing": 60, "shipping": 30, "refund": 3, "Billing": 4, " billing": 1})
    report = check_file(write(tmp_path / "lab.jsonl", rows))
    assert report.labels["distribution"] == {"billing": 60, "shipping": 30, "Billing": 4, "refund": 3, " billing": 1}
    assert report.labels["shares"]["billing"] == pytest.approx(60 / 98, abs=1e-4)
    imbalance = report.by_code("label-imbalance")[0]
    assert "'refund'" in imbalance.message and imbalance.severity == "warning"
    variants = report.by_code("label-variants")[0]
    assert "3 ways" in variants.message and variants.count == 5  # the 4 "Billing" + 1 " billing"
    assert report.by_code("label-whitespace")[0].lines == [98]
    assert report.by_code("label-rare")[0].count == 1  # " billing"
    assert report.exit_code == 0


def test_balanced_labels_no_label_findings(tmp_path):
    report = check_file(write(tmp_path / "b.jsonl", label_rows({"a": 40, "b": 35, "c": 30})))
    assert not {c for c in codes(report) if c.startswith("label")}


def test_label_variants_on_label_like_answers(tmp_path):
    rows = [chat(f"Classify ticket {i}", "Billing" if i % 3 else "billing") for i in range(30)]
    report = check_file(write(tmp_path / "ll.jsonl", rows))
    assert report.by_code("label-variants")


def test_exact_near_and_conflicting_duplicates(tmp_path):
    rows = label_rows({"billing": 10, "shipping": 10})
    rows.append({"text": rows[0]["text"].upper() + "  ", "label": "billing"})  # exact dup of line 1
    rows.append({"text": rows[11]["text"], "label": "billing"})  # same text as line 12, other label
    long = "the parcel was left at the wrong door and the neighbour kept it for three whole days sadly"
    rows.append({"text": long, "label": "shipping"})
    rows.append({"text": long.replace("sadly", "again"), "label": "shipping"})  # near dup
    path = write(tmp_path / "d.jsonl", rows)
    report = check_file(path)
    conflict = report.by_code("duplicate-conflicting-labels")
    assert len(conflict) == 1 and conflict[0].lines == [12, 22] and conflict[0].severity == "error"
    exact = report.by_code("duplicate-exact")[0]
    assert exact.lines == [1, 21]
    near = report.duplicates["near"]
    assert [(d["lines"], d["jaccard"]) for d in near] == [([23, 24], pytest.approx(15 / 17, abs=1e-4))]
    assert report.duplicates["unique"] == 22
    assert report.exit_code == 1
    assert check_file(path, blocking=set()).exit_code == 0


@pytest.mark.parametrize("n, verdict", [(0, "too few"), (99, "too few"), (100, "minimum"), (299, "minimum"),
                                        (300, "good"), (5000, "good"), (5001, "plenty")])
def test_volume_verdict_bands(n, verdict):
    got, message = volume_verdict(n)
    assert got == verdict and str(n) in message


def test_volume_counts_unique_examples(tmp_path):
    rows = clean_rows(95) + clean_rows(10)  # 105 rows, 95 unique
    report = check_file(write(tmp_path / "v.jsonl", rows))
    assert report.volume["examples"] == 105 and report.volume["unique"] == 95
    assert report.volume["verdict"] == "too few"
    assert report.by_code("volume")[0].severity == "warning"


def test_counts_and_token_stats(tmp_path):
    rows = clean_rows(8)
    rows[0] = chat("Hi there friend", "Hello to you too.", system="Be brief.")
    path = write(tmp_path / "c.jsonl", rows)
    examples = load_examples(path)
    report = check_examples(examples)
    assert report.counts["examples"] == 8 and report.counts["formats"] == {"chat": 8}
    assert report.counts["with_system_prompt"] == 1 and report.counts["avg_turns"] == pytest.approx(17 / 8, abs=0.01)
    assert report.by_code("system-prompt-mixed")[0].count == 7
    ref_words = [len(e.reference.split()) for e in examples]
    assert report.tokens["counter"] == "whitespace"
    assert report.tokens["reference"]["p50"] == statistics.median(ref_words)
    assert report.tokens["reference"]["max"] == max(ref_words)
    chars = check_examples(examples, count_tokens=len)
    assert chars.tokens["counter"] == "len"
    totals = [sum(len(m["content"]) for m in e.prompt) + len(e.reference) for e in examples]
    assert chars.tokens["total"]["min"] == min(totals)
    assert chars.tokens["total"]["mean"] == pytest.approx(statistics.mean(totals), abs=0.01)


def test_leakage_between_splits():
    mk = lambda t, line: make_example("completion", [{"role": "user", "content": t}], "Answer here.", line=line)  # noqa: E731
    rng = random.Random(4)
    words = [f"w{i}" for i in range(500)]
    texts = [" ".join(rng.choice(words) for _ in range(30)) for _ in range(19)]
    train = [mk(t, i + 1) for i, t in enumerate(texts)]
    changed = texts[6].split()
    changed[15] = "different"
    test = [mk(texts[2].upper() + "  ", 1),
            mk(" ".join(changed), 2),
            mk("something else entirely different here", 3)]
    findings = {f.code: f for f in check_leakage(train, test)}
    assert findings["leakage-exact"].severity == "error" and findings["leakage-exact"].lines == [1]
    assert findings["leakage-near"].lines == [2] and "train 7" in findings["leakage-near"].message
    assert "test 1 = train 3" in findings["leakage-exact"].message


def test_json_and_render(tmp_path):
    rows = clean_rows(5)
    rows[0] = chat("mail x@y.org", "ok,")
    report = check_file(write(tmp_path / "r.jsonl", rows))
    d = json.loads(json.dumps(report.to_dict()))
    assert d["exit_code"] == report.exit_code and d["blocking"] == ["error"]
    assert {f["code"] for f in d["findings"]} == codes(report)
    text = render_text(report)
    for code in codes(report) - {"volume"}:
        assert code in text
    assert "Volume: too few" in text
    from rich.console import Group
    assert isinstance(render_report(report), Group)


def test_bad_file_raises_input_error(tmp_path):
    p = tmp_path / "bad.jsonl"
    p.write_text('{"prompt": "a", "completion": "b"}\n{"prompt": 3}\n')
    with pytest.raises(InputError) as err:
        check_file(p)
    assert any(pr.line == 2 for pr in err.value.problems)


def test_no_examples_is_an_error():
    report = check_examples([])
    assert report.by_code("no-examples") and report.exit_code == 1


def test_pure_core_imports():
    code = ("import sys; import harness.data.quality, harness.data.pii, harness.data.dedup; "
            "bad = [m for m in ('torch', 'transformers', 'duckdb', 'openai', 'anthropic', 'streamlit', 'rich') "
            "if m in sys.modules]; print(bad); sys.exit(1 if bad else 0)")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    res = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr
