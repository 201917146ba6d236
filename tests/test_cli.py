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
    assert r.returncode == 2 and "no store at" in r.stderr and not db.exists()  # nothing run yet: no store made
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


def test_panel_invite_list_revoke_as_a_user_calls_them(tmp_path):
    import yaml

    from harness import panel
    from harness.store import Store

    data = write_jsonl(tmp_path / "d.jsonl", good_rows(40))
    goal = write_goal(tmp_path, data)
    r = harness("panel", "invite", goal, "alice", "--db", tmp_path / "s.duckdb")
    assert r.returncode == 2 and "has no human panel" in r.stderr  # a goal file must have a panel
    doc = yaml.safe_load(goal.read_text())
    goal.write_text(yaml.safe_dump({**doc, "human": {"rubrics": ["tone"]}}))
    db = tmp_path / "s.duckdb"
    r = harness("panel", "invite", goal, " ALICE\u200b ", "--db", db)
    assert r.returncode == 0, r.stderr
    token = next(line.split(": ", 1)[1] for line in r.stdout.splitlines() if line.startswith("token: "))
    assert f"http://localhost:8501/?token={token}" in r.stdout and "invited rater 'alice' to goal t" in r.stdout
    r = harness("panel", "invite", "t", "bob", "--db", db, "--url", "https://rate.example.org", "--json")
    bob = json.loads(r.stdout)
    assert bob["rater"] == "bob" and bob["link"] == f"https://rate.example.org/?token={bob['token']}"
    store = Store(db)
    assert store.invitation(panel.invitation_hash(token)) == {"goal": "t", "rater": "alice",
                                                               "created_at": store.invitations("t")[0]["created_at"]}
    store.put_invited_rating("t", panel.invitation_hash(bob["token"]), "it-1", "formal", score=4.0)
    listed = harness("panel", "list", goal, "--db", db)
    assert listed.returncode == 0 and "alice" in listed.stdout and "bob" in listed.stdout
    assert token not in listed.stdout and bob["token"] not in listed.stdout  # never tokens
    rows = json.loads(harness("panel", "list", "t", "--db", db, "--json").stdout)
    assert [(x["rater"], x["status"], x["ratings"]) for x in rows] == [("alice", "live", 0), ("bob", "live", 1)]
    r = harness("panel", "revoke", goal, "Bob", "--db", db)
    assert r.returncode == 0 and "revoked" in r.stdout
    assert store.invitation(panel.invitation_hash(bob["token"])) is None
    r = harness("panel", "revoke", "t", "bobb", "--db", db)
    assert r.returncode == 2 and "did you mean 'bob'" in r.stderr
    rows = json.loads(harness("panel", "list", "t", "--db", db, "--json").stdout)
    assert [(x["rater"], x["status"]) for x in rows] == [("alice", "live"), ("bob", "revoked")]


def test_app_off_localhost_needs_an_owner_token_or_rater_mode():
    import os

    env = {k: v for k, v in os.environ.items() if k != "HARNESS_OWNER_TOKEN"}
    r = subprocess.run([sys.executable, "-m", "harness", "app", "--host", "0.0.0.0"], capture_output=True, text=True,
                       cwd=ROOT, env=env, timeout=120)
    assert r.returncode == 2 and "--owner-token" in r.stderr and "Traceback" not in r.stderr


def test_version_and_plain_help():
    import subprocess
    import sys

    from harness import __version__

    r = subprocess.run([sys.executable, "-m", "harness", "--version"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and r.stdout.strip() == f"harness {__version__}"
    h = subprocess.run([sys.executable, "-m", "harness", "--help"], capture_output=True, text=True, timeout=60)
    assert "--version" in h.stdout and "╭" not in h.stdout  # plain help: no boxes that wrap at 80 columns
