"""API candidates through `harness run`: real openai/anthropic clients against a local
fault-injecting server; every prediction stored once, no key or raw PII stored or sent."""
import json

import pytest

from harness.goals import load_goal
from harness.runner import run_goal
from harness.store import Store
from tests.helpers import ROOT, ROUTE_SYSTEM, chat, write_eval_goal, write_jsonl
from tests.fakeapi import FakeAPI, by_prompt

KEY = "sk-test-SECRET-4f9a2b"
PII = ["jane.doe@example.com", "4111 1111 1111 1111", "+1 415 555 0132"]


def rows():
    out = []
    for i in range(40):
        q = ["billing", "shipping"][i % 2]
        text = f"Order {1000 + i}: my {q} problem number {i} is still open."
        if i % 10 == 0:
            text += f" Reach me at {PII[(i // 10) % 3]}."
        out.append(chat(text, q, system=ROUTE_SYSTEM))
    return out


@pytest.fixture
def env(monkeypatch):
    monkeypatch.setenv("TEST_OPENAI_KEY", KEY)
    monkeypatch.setenv("TEST_ANTHROPIC_KEY", KEY)
    monkeypatch.chdir(ROOT)


def test_api_candidates_survive_faults_and_store_each_prediction_once(tmp_path, env):
    data = write_jsonl(tmp_path / "d.jsonl", rows())
    faults = {"problem number 1 ": ["429 retry-after=1", "ok"], "problem number 3 ": ["500", "500", "ok"],
              "problem number 5 ": ["sleep=3", "ok"], "problem number 7 ": ["malformed", "missing", "ok"],
              "problem number 9 ": ["drop", "ok"]}
    with FakeAPI(responder=lambda msgs: "billing", policy=by_prompt(faults)) as srv:
        opts = {"max_retries": 3, "timeout_s": 1.5, "backoff_base_s": 0.01, "concurrency": 4}
        goal_file = write_eval_goal(tmp_path / "g.yaml", "apigoal", data, data_extra={"scrub_pii": True},
                                    success=[{"metric": "accuracy", "at_least": 0.4}], candidates=[
            {"name": "gpt", "kind": "api", "provider": "openai", "model": "gpt-4o-mini", "base_url": srv.openai_url,
             "api_key_env": "TEST_OPENAI_KEY", **opts},
            {"name": "claude", "kind": "api", "provider": "anthropic", "model": "claude-3-5-haiku-latest",
             "base_url": srv.anthropic_url, "api_key_env": "TEST_ANTHROPIC_KEY", **opts},
            {"name": "local-vllm", "kind": "api", "provider": "openai-compatible", "model": "my-finetune",
             "base_url": srv.openai_url, **opts}])
        goal = load_goal(goal_file)
        store = Store(tmp_path / "s.duckdb")

        from harness.data.split import prepare
        from harness.runner import plan

        def gen_steps() -> dict[str, tuple[int, float]]:
            return {s.candidate: (s.todo, s.est_cost_usd) for s in plan(goal, store, prepare(goal, store, record=False))
                    if s.action == "generate"}

        before = gen_steps()
        assert before["gpt"][0] == 40 and before["gpt"][1] > 0  # priced model: a cost estimate
        assert before["local-vllm"] == (40, 0.0)  # unpriced endpoint
        res = run_goal(goal, store, progress=False, work_dir=tmp_path / "w")
        n = 40
        assert gen_steps() == {"gpt": (0, 0.0), "claude": (0, 0.0), "local-vllm": (0, 0.0)}  # stored: nothing to pay
        assert res.counts["generated"] == 3 * n
        assert store.count("predictions") == 3 * n
        assert len(store.query("SELECT * FROM outputs WHERE run_id = ?", [res.run_id])) == 3 * n
        # No prompt was sent more often than the retry budget allows.
        from collections import Counter

        per_model_prompt = Counter((c.body.get("model"), c.prompt) for c in srv.calls)
        assert max(per_model_prompt.values()) <= 1 + 3
        assert len(per_model_prompt) == 3 * n
        assert sum(per_model_prompt.values()) > 3 * n  # faults did cause retries
        # The server got the key (auth works) but never the raw PII.
        sent = json.dumps([c.body for c in srv.calls])
        assert not any(p in sent for p in PII) and "<EMAIL>" in sent and "<CREDIT_CARD>" in sent
        assert any(KEY in " ".join(c.headers.values()) for c in srv.calls)
        # Cost and tokens recorded per prediction (priced models only).
        gpt = store.query("SELECT sum(p.cost_usd) AS c, min(p.prompt_tokens) AS t FROM outputs o JOIN predictions p "
                          "USING (cache_key) WHERE o.candidate = 'gpt' AND o.run_id = ?", [res.run_id])[0]
        assert gpt["c"] > 0 and gpt["t"] > 0
        calls = len(srv.calls)
        again = run_goal(goal, store, progress=False, work_dir=tmp_path / "w")
        assert len(srv.calls) == calls and again.counts["generated"] == 0
    # Nothing stored anywhere contains the key or raw PII.
    for table in ("runs", "candidates", "predictions", "outputs", "examples", "scores", "aggregates", "verdicts"):
        dump = json.dumps(store.query(f"SELECT * FROM {table}"), default=str)
        assert KEY not in dump, table
        assert not any(p in dump for p in PII), table


def test_missing_key_stops_before_any_request(tmp_path, env, monkeypatch):
    monkeypatch.delenv("TEST_OPENAI_KEY")
    data = write_jsonl(tmp_path / "d.jsonl", rows())
    with FakeAPI(responder=lambda m: "billing") as srv:
        g = tmp_path / "g.yaml"
        g.write_text(f"""goal: nokey
data: {{path: {data}, split: {{train: 0.5, validation: 0.0, test: 0.5}}}}
success: [{{metric: accuracy, at_least: 0.5}}]
candidates:
  - {{name: gpt, kind: api, provider: openai, model: gpt-4o-mini, base_url: "{srv.openai_url}", api_key_env: TEST_OPENAI_KEY}}
""")
        from harness.errors import HarnessError

        with pytest.raises(HarnessError, match="TEST_OPENAI_KEY"):
            run_goal(load_goal(g), Store(tmp_path / "s.duckdb"), progress=False, work_dir=tmp_path / "w")
        assert srv.calls == []


def test_pairwise_api_judge_runs_both_orders_and_ties_position_bias(tmp_path, env):
    """A judge that always prefers position A: both orders disagree on content, so every pair is
    a tie, the position-bias rate is 1, and both orders are stored."""
    data = write_jsonl(tmp_path / "d.jsonl", rows())
    test_rows = [json.loads(l) for l in data.read_text().splitlines()]
    for name, text in (("a", "billing"), ("b", "shipping")):
        write_jsonl(tmp_path / f"{name}.jsonl", [{"input": r["messages"][1]["content"], "output": text}
                                                 for r in test_rows])
    reply = json.dumps({"winner": "A", "rationale": "first one"})
    with FakeAPI(responder=lambda msgs: reply) as srv:
        g = tmp_path / "g.yaml"
        g.write_text(f"""goal: pairs
data: {{path: {data}, split: {{train: 0.0, validation: 0.0, test: 1.0}}}}
success: [{{metric: judge.correctness, at_least: 0.6}}]
candidates:
  - {{name: cand, kind: file, path: {tmp_path / 'a.jsonl'}}}
  - {{name: base, kind: file, path: {tmp_path / 'b.jsonl'}}}
judge:
  model: "openai-compatible:judge-model@{srv.openai_url}"
  mode: pairwise
  baseline: base
  rubrics: [correctness]
  backoff_base_s: 0.01
""")
        store = Store(tmp_path / "s.duckdb")
        res = run_goal(load_goal(g), store, progress=False, work_dir=tmp_path / "w")
        n_criteria = len(store.query("SELECT DISTINCT criterion FROM judgments"))
        assert store.count("judgments") == 2 * 40 * n_criteria  # AB and BA for every example
        orders = {r["order"] for r in store.query("SELECT \"order\" FROM judgment_links")}
        assert orders == {"AB", "BA"}
        assert res.aggregates["cand"]["judge.correctness"]["value"] == pytest.approx(0.5)
        agg = store.query("SELECT extra FROM aggregates WHERE candidate = 'cand' AND metric = 'judge.correctness'")
        assert json.loads(agg[0]["extra"])["position_bias_rate"] == 1.0
        assert "base" not in res.aggregates or "judge.correctness" not in res.aggregates["base"]
        calls = len(srv.calls)
        run_goal(load_goal(g), store, progress=False, work_dir=tmp_path / "w")
        assert len(srv.calls) == calls  # judgments cached


def test_a_judge_the_imported_human_ratings_disagree_with_cannot_make_the_goal_pass(tmp_path):
    """Issue 10: a judge that gives every output 5 passes ``judge.correctness >= 4`` alone
    (labelled "not validated"); after two raters' ratings are imported with `harness ratings
    import` (they give 1-2), the same run exits 1 and the verdict says why."""
    import csv
    import subprocess
    import sys

    data = write_jsonl(tmp_path / "d.jsonl", rows())
    test_rows = [json.loads(l) for l in data.read_text().splitlines()]
    write_jsonl(tmp_path / "out.jsonl", [{"input": r["messages"][1]["content"], "output": "billing"} for r in test_rows])
    reply = json.dumps({"score": 5, "rationale": "looks right"})
    db = tmp_path / "s.duckdb"

    def harness(*args):
        return subprocess.run([sys.executable, "-m", "harness", *args], cwd=ROOT, capture_output=True, text=True,
                              timeout=300)

    with FakeAPI(responder=lambda msgs: reply) as srv:
        g = tmp_path / "g.yaml"
        g.write_text(f"""goal: trusted
data: {{path: {data}, split: {{train: 0.0, validation: 0.0, test: 1.0}}}}
success: [{{metric: judge.correctness, at_least: 4}}]
candidates:
  - {{name: cand, kind: file, path: {tmp_path / 'out.jsonl'}}}
judge:
  model: "openai-compatible:judge-model@{srv.openai_url}"
  rubrics: [correctness]
  backoff_base_s: 0.01
human: {{rubrics: [correctness], items: 40, raters_per_item: 2, min_ratings: 10}}
""")
        first = harness("run", str(g), "--db", str(db), "--json")
        assert first.returncode == 0, first.stderr[-2000:]
        (crit,) = json.loads(first.stdout)["candidates"][0]["criteria"]
        assert crit["status"] == "pass" and "judge not validated against humans" in crit["detail"]

        ratings = tmp_path / "ratings.csv"
        with ratings.open("w", newline="", encoding="utf-8") as fh:
            w = csv.writer(fh)
            w.writerow(["input", "candidate", "rater", "rubric", "score"])
            for i, r in enumerate(test_rows[:30]):  # 30 of the 40 outputs rated: PPI++ applies
                for rater in ("ann", "bob"):
                    w.writerow([r["messages"][1]["content"], "cand", rater, "correctness", 1 + (i + len(rater)) % 2])
        imported = harness("ratings", "import", str(g), str(ratings), "--db", str(db))
        assert imported.returncode == 0, imported.stderr[-2000:]

        second = harness("run", str(g), "--db", str(db), "--json")
        assert second.returncode == 1, second.stderr[-2000:]
        (crit,) = json.loads(second.stdout)["candidates"][0]["criteria"]
        assert crit["status"] != "pass"
        assert "disagrees with the human panel" in crit["detail"] and "PPI++" in crit["detail"], crit["detail"]
        assert crit["value"] < 2.5  # the PPI estimate follows the humans, not the judge's 5


def test_failed_judgments_are_not_cached_and_the_next_run_asks_exactly_those_again(tmp_path):
    """Issue 11: with 80% of judge requests failing, the failures are stored as failures, the
    verdict says so (n judged vs n failed) and is not decided; once the judge recovers, the
    rerun sends exactly the failed judgments again and decides on all of them."""
    import hashlib

    data = write_jsonl(tmp_path / "d.jsonl", rows())
    test_rows = [json.loads(l) for l in data.read_text().splitlines()]
    write_jsonl(tmp_path / "out.jsonl", [{"input": r["messages"][1]["content"], "output": "billing"} for r in test_rows])
    state = {"faulty": True}

    def policy(call):
        h = int(hashlib.sha256(call.prompt.encode()).hexdigest(), 16)
        return "500" if state["faulty"] and h % 5 != 0 else None  # about 80% of prompts, on every attempt

    with FakeAPI(responder=lambda msgs: json.dumps({"score": 4, "rationale": "ok"}), policy=policy) as srv:
        g = tmp_path / "g.yaml"
        g.write_text(f"""goal: faults
data: {{path: {data}, split: {{train: 0.0, validation: 0.0, test: 1.0}}}}
success: [{{metric: judge.correctness, at_least: 3}}]
candidates:
  - {{name: cand, kind: file, path: {tmp_path / 'out.jsonl'}}}
judge:
  model: "openai-compatible:judge-model@{srv.openai_url}"
  rubrics: [correctness]
  max_retries: 1
  backoff_base_s: 0.01
""")
        store = Store(tmp_path / "s.duckdb")
        first = run_goal(load_goal(g), store, progress=False, work_dir=tmp_path / "w")
        failed = first.counts["judgments_failed"]
        assert 20 <= failed <= 40 and first.counts["judged"] == 40 - failed
        assert first.aggregates["cand"]["judge.correctness"]["n"] == 40 - failed  # n judged, not n asked
        (v,) = first.verdicts["cand"]
        assert v.status == "inconclusive" and f"{failed} of 40 judgments failed" in v.detail
        stored_failures = store.query("SELECT count(*) AS n FROM judgments WHERE error IS NOT NULL")[0]["n"]
        assert stored_failures == failed

        state["faulty"] = False
        before = len(srv.calls)
        second = run_goal(load_goal(g), store, progress=False, work_dir=tmp_path / "w")
        assert len(srv.calls) - before == failed  # exactly the failed ones, once each
        assert second.counts["judged"] == failed and second.counts["judgments_reused"] == 40 - failed
        assert second.counts["judgments_failed"] == 0
        (v,) = second.verdicts["cand"]
        assert v.status == "pass" and "failed" not in v.detail
        assert second.aggregates["cand"]["judge.correctness"]["n"] == 40
        assert store.query("SELECT count(*) AS n FROM judgments WHERE error IS NOT NULL")[0]["n"] == 0


def test_api_judge_spend_is_stored_and_counts_in_the_candidates_cost(tmp_path):
    """Issue 12: judge spend was left out of a candidate's cost."""
    data = write_jsonl(tmp_path / "d.jsonl", rows())
    test_rows = [json.loads(l) for l in data.read_text().splitlines()]
    write_jsonl(tmp_path / "out.jsonl", [{"input": r["messages"][1]["content"], "output": "billing"} for r in test_rows])
    with FakeAPI(responder=lambda msgs: json.dumps({"score": 4, "rationale": "ok"})) as srv:
        g = tmp_path / "g.yaml"
        g.write_text(f"""goal: spend
data: {{path: {data}, split: {{train: 0.0, validation: 0.0, test: 1.0}}}}
success: [{{metric: judge.correctness, at_least: 3}}]
candidates:
  - {{name: cand, kind: file, path: {tmp_path / 'out.jsonl'}}}
judge:
  model: "openai-compatible:judge-model@{srv.openai_url}"
  rubrics: [correctness]
  prices: {{input_per_mtok: 1000000, output_per_mtok: 0}}
""")
        store = Store(tmp_path / "s.duckdb")
        from harness.data.split import prepare
        from harness.runner import plan

        def judge_step():
            goal = load_goal(g)
            (step,) = [s for s in plan(goal, store, prepare(goal, store, record=False)) if s.action == "judge"]
            return step

        before = judge_step()  # the dry run prices the judge too, from the judge prompts it would send
        assert before.todo == len(test_rows) and before.est_cost_usd > 0 and "list price" in before.note
        res = run_goal(load_goal(g), store, progress=False, work_dir=tmp_path / "w")
        spent = store.query("SELECT sum(cost_usd) AS usd, sum(input_tokens) AS tok FROM judgments")[0]
        assert spent["usd"] > 0 and spent["usd"] == pytest.approx(spent["tok"])  # $1 per input token
        assert 0.5 < before.est_cost_usd / spent["usd"] < 2  # ~1.4 tokens a word: an estimate, not a bill
        after = judge_step()
        assert (after.todo, after.cached, after.est_cost_usd) == (0, len(test_rows), 0.0)
        from harness.results import results_dict

        (cand,) = results_dict(store, "spend", res.run_id)["candidates"]
        assert cand["cost"]["judging_usd"] == pytest.approx(spent["usd"]) and cand["cost"]["generation_usd"] == 0
        assert cand["cost"]["total_usd"] == pytest.approx(spent["usd"])


def _route(msgs):
    """The right queue for a routing prompt (the fake candidate answers correctly)."""
    last = next(m["content"] for m in reversed(msgs) if m["role"] == "user")
    return "billing" if "billing" in last else "shipping"


def test_failed_generations_are_not_cached_and_the_next_run_generates_exactly_those_again(tmp_path):
    """Issue 11, generations: with 80% of an API candidate's requests failing on every attempt, the
    failures are stored as failures and printed per candidate; the candidate is scored on its
    outputs only (n = the outputs scored), its criterion is inconclusive (not a pass on the
    survivors) and `harness run` exits 1; once the API recovers, the rerun sends exactly the failed
    requests again and decides on all 40."""
    import hashlib
    import os
    import subprocess
    import sys

    from harness.results import results_dict

    data = write_jsonl(tmp_path / "d.jsonl", rows())
    state = {"faulty": True}

    def policy(call):
        h = int(hashlib.sha256(call.prompt.encode()).hexdigest(), 16)
        return "500" if state["faulty"] and h % 5 != 0 else None  # about 80% of prompts, on every attempt

    with FakeAPI(responder=_route, policy=policy) as srv:
        g = write_eval_goal(tmp_path / "g.yaml", "genfaults", data, success=[{"metric": "accuracy", "at_least": 0.5}],
                            candidates=[{"name": "api", "kind": "api", "provider": "openai-compatible",
                                         "model": "my-model", "base_url": srv.openai_url, "max_retries": 1,
                                         "backoff_base_s": 0.01}])
        db = tmp_path / "s.duckdb"
        first = subprocess.run([sys.executable, "-m", "harness", "run", str(g), "--db", str(db), "--no-progress"],
                               cwd=ROOT, capture_output=True, text=True, timeout=300,
                               env={**os.environ, "COLUMNS": "400"})
        assert first.returncode == 1, first.stdout[-3000:] + first.stderr[-3000:]  # not a pass on the survivors
        store = Store(db)
        failed_prompts = {json.dumps(json.loads(r["messages"]), sort_keys=True) for r in store.query(
            "SELECT messages FROM predictions WHERE error IS NOT NULL")}
        failed = len(failed_prompts)
        assert 20 <= failed <= 39
        assert f"{failed} of 40 generations failed" in first.stdout and f"failed {failed}" in first.stdout
        (row,) = store.query("SELECT DISTINCT error FROM predictions WHERE error IS NOT NULL")
        assert "500" in row["error"] and "2 attempt(s)" in row["error"]
        (cand,) = results_dict(store, "genfaults")["candidates"]
        assert cand["generations_failed"] == failed
        assert cand["metrics"]["accuracy"]["n"] == 40 - failed  # the outputs scored, not the examples asked
        assert cand["metrics"]["accuracy"]["value"] == 1.0  # a failed output is never scored as an empty answer
        (crit,) = cand["criteria"]
        assert crit["status"] == "inconclusive", crit
        assert f"{failed} of 40 outputs failed to generate" in crit["detail"] and "not decided" in crit["detail"]
        from harness.report import build_report

        assert f"**Failed generations**" in build_report(store, load_goal(g), fmt="md") and f"api {failed}." in \
            build_report(store, load_goal(g), fmt="md")

        state["faulty"] = False
        before = len(srv.calls)
        second = run_goal(load_goal(g), store, progress=False, work_dir=tmp_path / "w")
        asked = [c.prompt for c in srv.calls[before:]]
        assert len(asked) == failed and set(asked) == failed_prompts  # exactly the failed ones, once each
        assert (second.counts["generated"], second.counts["reused"], second.counts["generations_failed"]) == \
            (failed, 40 - failed, 0)
        (v,) = second.verdicts["api"]
        assert v.status == "pass" and "failed" not in v.detail and second.exit_code == 0
        assert second.aggregates["api"]["accuracy"]["n"] == 40
        assert store.query("SELECT count(*) AS n FROM predictions WHERE error IS NOT NULL")[0]["n"] == 0
        assert results_dict(store, "genfaults")["candidates"][0]["generations_failed"] == 0


def test_a_failed_generation_is_never_scored_or_judged_and_relative_criteria_pair_what_both_have(tmp_path):
    """One of 40 generations fails on every attempt (2.5%, under the 5% share): the judge is never
    asked about it, the candidate's metrics and judge scores rest on 39 outputs, and its relative
    criterion pairs it with the baseline on those 39 examples, and is decided."""
    data = write_jsonl(tmp_path / "d.jsonl", rows())
    test_rows = [json.loads(l) for l in data.read_text().splitlines()]
    write_jsonl(tmp_path / "base.jsonl", [{"input": r["messages"][1]["content"], "output": "billing"}
                                          for r in test_rows])
    judged = json.dumps({"score": 4, "rationale": "ok"})
    with FakeAPI(responder=_route, policy=by_prompt({"problem number 3 ": ["500"] * 3})) as srv, \
            FakeAPI(responder=lambda msgs: judged) as judge:
        g = tmp_path / "g.yaml"
        g.write_text(f"""goal: onefails
data: {{path: {data}, split: {{train: 0.0, validation: 0.0, test: 1.0}}}}
task: classification
success:
  - {{metric: accuracy, improve_by: 10%, baseline: base}}
  - {{metric: judge.correctness, at_least: 3}}
candidates:
  - {{name: api, kind: api, provider: openai-compatible, model: my-model, base_url: "{srv.openai_url}",
      max_retries: 2, backoff_base_s: 0.01}}
  - {{name: base, kind: file, path: {tmp_path / 'base.jsonl'}}}
judge:
  model: "openai-compatible:judge-model@{judge.openai_url}"
  rubrics: [correctness]
  backoff_base_s: 0.01
""")
        store = Store(tmp_path / "s.duckdb")
        res = run_goal(load_goal(g), store, progress=False, work_dir=tmp_path / "w")
        assert res.counts["generations_failed"] == 1 and res.counts["generated"] == 39
        n_criteria = len(store.query("SELECT DISTINCT criterion FROM judgments"))
        asked = {i: sum(f"problem number {i} " in c.prompt for c in judge.calls) for i in (3, 5)}
        assert asked == {3: n_criteria, 5: 2 * n_criteria}  # the failed output was never judged, base's was
        links = store.query("SELECT candidate, count(*) AS n FROM judgment_links WHERE run_id = ? GROUP BY candidate "
                            "ORDER BY candidate", [res.run_id])
        assert [(r["candidate"], r["n"]) for r in links] == [("api", 39 * n_criteria), ("base", 40 * n_criteria)]
        assert res.aggregates["api"]["accuracy"]["n"] == 39 and res.aggregates["api"]["judge.correctness"]["n"] == 39
        relative, judged_v = res.verdicts["api"]
        # Paired on the 39 examples both have: 40 test examples less the pairs decided on.
        assert relative.status == "pass" and "1 of 40 outputs failed to generate (here or in base)" in relative.detail
        assert judged_v.status == "pass" and "1 of 40 outputs failed to generate" in judged_v.detail
        assert res.aggregates["base"]["judge.correctness"]["n"] == 40 and "failed" not in res.verdicts["base"][1].detail


def test_an_api_key_the_server_rejects_stops_the_run_and_stores_no_failure(tmp_path, env):
    """A 401 would fail every request alike: the run stops with a clear error, it is not stored
    as 40 failed generations."""
    from harness.errors import HarnessError

    data = write_jsonl(tmp_path / "d.jsonl", rows())
    with FakeAPI(responder=_route, policy=lambda call: "401") as srv:
        g = write_eval_goal(tmp_path / "g.yaml", "badkey", data, success=[{"metric": "accuracy", "at_least": 0.5}],
                            candidates=[{"name": "gpt", "kind": "api", "provider": "openai", "model": "gpt-4o-mini",
                                         "base_url": srv.openai_url, "api_key_env": "TEST_OPENAI_KEY"}])
        store = Store(tmp_path / "s.duckdb")
        with pytest.raises(HarnessError, match="401"):
            run_goal(load_goal(g), store, progress=False, work_dir=tmp_path / "w")
        assert store.query("SELECT count(*) AS n FROM predictions WHERE error IS NOT NULL")[0]["n"] == 0


def test_a_relative_pass_must_hold_with_the_failed_outputs_counted_against_the_candidate(tmp_path):
    """Generations that fail on exactly the examples the baseline gets right, paired away, would
    lift the candidate's improvement: a pass on the survivors holds only if it survives the
    failures counted as wrong here and right in the baseline (as an absolute pass must)."""
    data = write_jsonl(tmp_path / "d.jsonl", rows())
    test_rows = [json.loads(line) for line in data.read_text().splitlines()]
    write_jsonl(tmp_path / "base.jsonl", [{"input": r["messages"][1]["content"], "output": "billing"}
                                          for r in test_rows])  # right on the even (billing) examples only

    def verdict(failing: list[int], improve_by: float):
        faults = {f"problem number {i} ": ["500"] * 2 for i in failing}
        with FakeAPI(responder=_route, policy=by_prompt(faults)) as srv:
            g = write_eval_goal(tmp_path / "g.yaml", "relfail", data, success=[
                {"metric": "accuracy", "improve_by": improve_by, "baseline": "base"}], candidates=[
                {"name": "api", "kind": "api", "provider": "openai-compatible", "model": "m",
                 "base_url": srv.openai_url, "max_retries": 1, "backoff_base_s": 0.01},
                {"name": "base", "kind": "file", "path": tmp_path / "base.jsonl"}])
            res = run_goal(load_goal(g), Store(tmp_path / f"s{len(failing)}{improve_by}.duckdb"), progress=False,
                           work_dir=tmp_path / "w")
        (v,) = res.verdicts["api"]
        return v, res

    whole, _ = verdict([], 0.3)  # every output: +0.5, its interval above 0.3
    assert whole.status == "pass", whole.detail
    survivors, res = verdict([0, 2], 0.3)  # 2 of 40 (5%, not over the share), both where the baseline is right
    assert res.counts["generations_failed"] == 2
    assert survivors.value > whole.value  # paired on the 38 both have, the improvement looks larger
    assert survivors.status == "inconclusive", survivors.detail
    assert "failed output(s) or judgment(s) against this candidate (0 here, 1 in base)" in survivors.detail
    assert res.exit_code == 1
    sure, _ = verdict([0, 2], 0.1)  # a pass with room to spare survives the worst case
    assert sure.status == "pass", sure.detail
