"""The CLI as a user calls it: a real subprocess, real files, real exit codes."""
import hashlib
import json
import subprocess
import sys

from tests.helpers import ROOT, chat, write_goal, write_jsonl


def harness(*args, cwd=None, env_db=None):
    import os

    env = dict(os.environ)
    if env_db:
        env["HARNESS_DB"] = str(env_db)
    return subprocess.run([sys.executable, "-m", "harness", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd or ROOT, env=env, timeout=300)


def good_rows(n=120):
    queues = ["billing", "shipping", "technical"]
    return [chat(f"Customer {i} writes about order {i * 37} and the {queues[i % 3]} issue number {i % 11}.",
                 queues[i % 3], system="Route the message.") for i in range(n)]


def test_check_broken_line_7_is_named_and_exits_2(tmp_path):
    rows = good_rows(10)
    rows[6] = '{"messages": [{"role": "user", "content": "oops"}'
    data = write_jsonl(tmp_path / "d.jsonl", rows)
    goal = write_goal(tmp_path, data)
    r = harness("check", goal, "--no-tokenizer")
    assert r.returncode == 2, r.stderr
    assert f"{data}:7" in r.stderr and "malformed JSON" in r.stderr


def test_check_json_lists_every_problem(tmp_path):
    rows = good_rows(10)
    rows[2] = "not json"
    rows[6] = '{"messages": [{"role": "wizard", "content": "x"}, {"role": "assistant", "content": "y"}]}'
    goal = write_goal(tmp_path, write_jsonl(tmp_path / "d.jsonl", rows))
    r = harness("check", goal, "--json", "--no-tokenizer")
    out = json.loads(r.stdout)
    assert r.returncode == 2 and [p["line"] for p in out["problems"]] == [3, 7]


def test_check_clean_data_exits_0_with_report(tmp_path):
    goal = write_goal(tmp_path, write_jsonl(tmp_path / "d.jsonl", good_rows(150)))
    r = harness("check", goal, "--json", "--no-tokenizer")
    assert r.returncode == 0, r.stdout + r.stderr
    out = json.loads(r.stdout)
    assert out["valid"] is True and "whitespace" in out["token_counter"]


def test_check_text_report_says_no_findings_or_lists_them(tmp_path):
    goal = write_goal(tmp_path, write_jsonl(tmp_path / "d.jsonl", good_rows(150)))
    r = harness("check", goal, "--no-tokenizer")
    assert r.returncode == 0 and "No findings" in r.stdout and "Findings" not in r.stdout.replace("No findings", "")
    rows = good_rows(150)
    rows[4]["messages"][1]["content"] += " Mail me at jane.doe@example.com."
    goal = write_goal(tmp_path, write_jsonl(tmp_path / "d.jsonl", rows))
    r = harness("check", goal, "--no-tokenizer")
    assert "No findings" not in r.stdout and "Findings" in r.stdout and "pii" in r.stdout.lower()
    assert "jane.doe@example.com" not in r.stdout  # samples are masked


def test_misspelt_key_suggests_success(tmp_path):
    data = write_jsonl(tmp_path / "d.jsonl", good_rows(5))
    g = tmp_path / "g.yaml"
    g.write_text(f"goal: g\ndata:\n  path: {data}\nsucess:\n  - {{metric: accuracy, at_least: 0.5}}\n")
    r = harness("check", g)
    assert r.returncode == 2 and "did you mean 'success'" in r.stderr and f"{g}:4" in r.stderr


def test_pii_is_scrubbed_into_a_copy_and_original_unchanged(tmp_path):
    rows = good_rows(5) + [chat("Mail me at jane.doe@example.com or call +1 415 555 0132; card 4111 1111 1111 1111",
                                "billing", system="Route the message.")]
    data = write_jsonl(tmp_path / "d.jsonl", rows)
    before = hashlib.sha256(data.read_bytes()).hexdigest()
    goal = write_goal(tmp_path, data)
    out = tmp_path / "clean.jsonl"
    r = harness("scrub", goal, "--out", out)
    assert r.returncode == 0, r.stderr
    text = out.read_text()
    assert "jane.doe@example.com" not in text and "4111 1111 1111 1111" not in text and "555 0132" not in text
    assert "<EMAIL>" in text and "<PHONE>" in text and "<CREDIT_CARD>" in text
    assert hashlib.sha256(data.read_bytes()).hexdigest() == before


def test_split_then_edit_test_example_needs_reseal(tmp_path):
    data = write_jsonl(tmp_path / "d.jsonl", good_rows(60))
    goal = write_goal(tmp_path, data)
    db = tmp_path / "s.duckdb"
    r1 = harness("split", goal, "--out", tmp_path / "s1", "--db", db, "--json")
    assert r1.returncode == 0, r1.stderr
    test_file = tmp_path / "s1" / "test.jsonl"
    first_test = json.loads(test_file.read_text().splitlines()[0])
    user = first_test["messages"][1]["content"]
    data.write_text(data.read_text().replace(user, user + " EDITED"))
    r2 = harness("split", goal, "--out", tmp_path / "s2", "--db", db)
    assert r2.returncode == 2 and "--reseal" in r2.stderr
    r3 = harness("split", goal, "--out", tmp_path / "s2", "--db", db, "--reseal")
    assert r3.returncode == 0 and "RESEALED" in r3.stdout


def test_init_writes_starter_files(tmp_path):
    r = harness("init", "support", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "goals" / "support.yaml").exists() and (tmp_path / "rubrics" / "support.yaml").exists()
    again = harness("init", "support", cwd=tmp_path)
    assert again.returncode == 2 and "--force" in again.stderr


def test_unknown_candidates_get_did_you_mean_in_export_and_only(tmp_path):
    data = write_jsonl(tmp_path / "d.jsonl", good_rows(40))
    goal = write_goal(tmp_path, data, extra_candidates=[{"name": "lora", "kind": "lora"}])
    db = tmp_path / "s.duckdb"
    r = harness("export", goal, "lorra", "--db", db)
    assert r.returncode == 2 and "no candidate 'lorra' (did you mean 'lora'?)" in r.stderr
    assert "trained candidates: lora" in r.stderr
    r = harness("export", goal, "zero-shot", "--db", db)
    assert r.returncode == 2 and "is a prompt candidate: nothing trained" in r.stderr
    r = harness("export", goal, "lora", "--db", db)
    assert r.returncode == 2 and "run `harness run` first" in r.stderr
    r = harness("run", goal, "--only", "lorra", "--db", db)
    assert r.returncode == 2, r.stdout + r.stderr
    assert "unknown candidate 'lorra' (did you mean 'lora'?)" in r.stderr and "zero-shot, lora" in r.stderr


def test_check_also_checks_the_goal_names_and_options(tmp_path):
    goal = write_goal(tmp_path, write_jsonl(tmp_path / "d.jsonl", good_rows(150)),
                      extra_candidates=[{"name": "few", "kind": "prompt", "shot": 5}])
    r = harness("check", goal, "--no-tokenizer")
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "shot" in r.stderr and "did you mean 'shots'" in r.stderr and str(goal) in r.stderr
    r = harness("check", goal, "--json", "--no-tokenizer")
    out = json.loads(r.stdout)
    assert r.returncode == 2 and out["valid"] is False and any("shot" in (p["field"] or "") for p in out["problems"])
