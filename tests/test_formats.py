import json

from harness.data.formats import load_examples, read_jsonl
from tests.helpers import chat, write_jsonl


def test_three_formats_are_detected(tmp_path):
    a = write_jsonl(tmp_path / "a.jsonl", [chat("hi", "hello", system="be brief")])
    b = write_jsonl(tmp_path / "b.jsonl", [{"prompt": "2+2?", "completion": "4"}])
    c = write_jsonl(tmp_path / "c.jsonl", [{"text": "refund me", "label": "refund"}])
    (ea,), (eb,), (ec,) = load_examples(a), load_examples(b), load_examples(c)
    assert (ea.format, ea.system, ea.input_text, ea.reference) == ("chat", "be brief", "hi", "hello")
    assert (eb.format, eb.input_text, eb.reference) == ("completion", "2+2?", "4")
    assert (ec.format, ec.label, ec.reference) == ("label", "refund", "refund")


def test_ids_depend_on_content_only(tmp_path):
    rows = [chat(f"q{i}", f"a{i}") for i in range(4)]
    x = load_examples(write_jsonl(tmp_path / "x.jsonl", rows))
    y = load_examples(write_jsonl(tmp_path / "y.jsonl", list(reversed(rows))))
    assert sorted(e.id for e in x) == sorted(e.id for e in y)
    assert len({e.id for e in x}) == 4


def test_all_problems_are_listed_with_lines(tmp_path):
    rows = [chat("ok", "fine")] * 1 + [
        '{"messages": [{"role": "user", "content": "x"}',              # line 2: malformed
        {"messages": [{"role": "robot", "content": "x"}, {"role": "assistant", "content": "y"}]},  # 3: role
        {"messages": [{"role": "user", "content": "x"}, {"role": "assistant", "content": "  "}]},  # 4: empty
        {"messages": [{"role": "user", "content": "x"}]},             # 5: no answer
        chat("fine", "ok"),
        '{"text": "ab", "label": "x"}',                                # 7: other format
    ]
    path = write_jsonl(tmp_path / "bad.jsonl", rows)
    examples, problems = read_jsonl(path)
    assert len(examples) == 2
    by_line = {p.line: p for p in problems}
    assert set(by_line) == {2, 3, 4, 5, 7}
    assert "malformed JSON" in by_line[2].message
    assert by_line[3].field == "messages[0].role"
    assert "empty assistant" in by_line[4].message
    assert str(by_line[2]).startswith(f"{path}:2")


def test_missing_field_in_completion_format(tmp_path):
    path = write_jsonl(tmp_path / "p.jsonl", [{"prompt": "x"}])
    _, problems = read_jsonl(path, "completion")
    assert problems[0].field == "completion" and problems[0].line == 1


def test_round_trip_record(tmp_path):
    row = chat("q", "a", system="s")
    (ex,) = load_examples(write_jsonl(tmp_path / "r.jsonl", [row]))
    assert json.loads(json.dumps(ex.to_record())) == row
