import multiprocessing as mp
import time
import traceback
from pathlib import Path

import duckdb

from harness.store import MIGRATIONS, SCHEMA_VERSION, Store
from tests.helpers import store_at_version, table_columns


def test_migrations_on_blank_database_give_exact_tables(tmp_path):
    s = Store(tmp_path / "s.duckdb")
    assert s.schema_version() == SCHEMA_VERSION == len(MIGRATIONS)
    tables = {r["table_name"] for r in s.query("SELECT table_name FROM information_schema.tables")}
    assert {"schema_version", "runs", "seals", "examples", "candidates", "curves", "predictions", "outputs",
            "scores", "judgments", "judgment_links", "panel_items", "ratings", "aggregates", "verdicts"} <= tables
    cols = table_columns(s, "ratings")
    assert cols == ["goal", "rater", "item_id", "criterion", "score", "choice", "created_at", "updated_at"]
    # A second open migrates nothing and keeps the version.
    assert Store(tmp_path / "s.duckdb").schema_version() == SCHEMA_VERSION


def test_newer_schema_is_refused(tmp_path):
    path = tmp_path / "s.duckdb"
    Store(path).schema_version()
    con = duckdb.connect(str(path))
    con.execute("INSERT INTO schema_version VALUES (999, 'future', now())")
    con.close()
    import pytest

    from harness.errors import HarnessError

    with pytest.raises(HarnessError, match="newer"):
        Store(path).count("runs")


def test_transaction_rolls_back_on_error(store):
    import pytest

    with pytest.raises(RuntimeError):
        with store.transaction() as con:
            con.execute("INSERT INTO predictions (cache_key, output) VALUES ('k', 'x')")
            raise RuntimeError("boom")
    assert store.count("predictions") == 0


def test_rating_is_upserted(store):
    store.put_rating("g", "ann", "i1", "tone", score=2)
    store.put_rating("g", "ann", "i1", "tone", score=5)
    store.put_rating("g", "bob", "i1", "tone", score=3)
    rows = store.ratings("g")
    assert [(r["rater"], r["score"]) for r in rows] == [("ann", 5.0), ("bob", 3.0)]


def test_predictions_are_content_keyed(store):
    store.put_predictions([{"cache_key": "k1", "output": "a"}], [("r1", "c", "e1", "k1")])
    store.put_predictions([{"cache_key": "k1", "output": "a"}], [("r2", "c", "e1", "k1")])
    assert store.count("predictions") == 1 and store.count("outputs") == 2
    assert store.get_predictions(["k1", "nope"]).keys() == {"k1"}


def _reporting(fn):
    """Run ``fn`` in a spawned child; a failure leaves its traceback beside the database."""
    def run(path, *args):
        try:
            fn(path, *args)
        except BaseException:
            Path(f"{path}.{fn.__name__}.err").write_text(traceback.format_exc())
            raise
    return run


def _long_writer(path, n, hold_s):
    s = Store(path)
    for i in range(n):
        with s.transaction() as con:
            con.execute("INSERT INTO predictions (cache_key, output) VALUES (?, ?)", [f"p{i}", "x" * 100])
            time.sleep(hold_s)  # a transaction that takes a while, like a real batch


def _rater(path, rater, n):
    s = Store(path)
    for i in range(n):
        s.put_rating("g", rater, f"item{i}", "tone", score=float(i % 5 + 1))


def _child(name, path, *args):
    _reporting({"writer": _long_writer, "rater": _rater}[name])(path, *args)


def test_two_processes_write_at_once_and_lose_nothing(tmp_path):
    path = tmp_path / "shared.duckdb"
    Store(path).schema_version()
    ctx = mp.get_context("spawn")
    writer = ctx.Process(target=_child, args=("writer", path, 60, 0.02))
    rater = ctx.Process(target=_child, args=("rater", path, "ann", 40))
    writer.start()
    rater.start()
    writer.join(120)
    rater.join(120)
    failures = "\n".join(p.read_text() for p in tmp_path.glob("*.err"))
    assert writer.exitcode == 0 and rater.exitcode == 0, failures
    s = Store(path)
    assert s.count("predictions") == 60
    assert s.count("ratings") == 40


def test_m002_keeps_existing_verdicts(tmp_path):
    from harness.store import m001_initial, migrate

    path = tmp_path / "old.duckdb"
    con = duckdb.connect(str(path))
    con.execute("CREATE TABLE schema_version (version INTEGER PRIMARY KEY, name VARCHAR, applied_at TIMESTAMP)")
    m001_initial(con)
    con.execute("INSERT INTO schema_version VALUES (1, 'm001_initial', now())")
    con.execute("INSERT INTO verdicts (run_id, candidate, metric, status) VALUES ('r', 'c', 'accuracy', 'pass'), "
                "('r', 'c', 'rougeL', 'fail')")
    assert migrate(con) == SCHEMA_VERSION
    rows = con.execute("SELECT idx, metric, status FROM verdicts ORDER BY idx").fetchall()
    con.close()
    assert rows == [(0, "accuracy", "pass"), (1, "rougeL", "fail")]
    # Two criteria on one metric now both fit.
    s = Store(path)
    from harness.verdict import Verdict

    s.put_verdicts("r2", {"c": [Verdict("accuracy", "pass", 0.9, (0.8, 0.95), 0.7),
                                Verdict("accuracy", "fail", 0.9, (0.8, 0.95), 0.99)]})
    assert [r["status"] for r in s.query("SELECT status FROM verdicts WHERE run_id = 'r2' ORDER BY idx")] == ["pass", "fail"]


def test_a_store_written_before_verdict_intervals_migrates_and_still_loads(tmp_path):
    """A version-2 store (verdicts without interval/confidence/multiplicity) opens, migrates
    to the current schema, keeps its rows and reads them back with nulls."""
    from harness.results import results_dict

    path = tmp_path / "old.duckdb"
    con = store_at_version(path, 2)
    con.execute("INSERT INTO runs (run_id, goal, status, started_at) VALUES ('r1', 'g', 'finished', now())")
    con.execute("INSERT INTO candidates (run_id, name, kind, meets_goal) VALUES ('r1', 'c', 'prompt', true)")
    con.execute("INSERT INTO verdicts VALUES ('r1', 'c', 0, 'accuracy', 'pass', 0.9, 0.8, 0.95, 0.7, 'at_least', "
                "NULL, NULL, 'old detail')")
    con.close()

    s = Store(path)
    assert s.schema_version() == SCHEMA_VERSION
    (v,) = s.verdicts("r1")
    assert (v["status"], v["detail"], v["interval"], v["confidence"], v["multiplicity"]) == \
        ("pass", "old detail", None, None, None)
    res = results_dict(s, "g", "r1")
    crit = res["candidates"][0]["criteria"][0]
    assert crit["status"] == "pass" and crit["interval"] is None and crit["ci"] == [0.8, 0.95]


def test_m008_m009_a_version_7_store_gains_rating_notes_and_prediction_messages(tmp_path):
    """A store written before rating notes and stored prompts migrates forward: its predictions read
    back with no messages, new ones keep theirs, and a rater's comment and flag sit beside their
    ratings (saved again: replaced; under a revoked invitation: refused)."""
    import pytest

    from harness.errors import HarnessError
    from harness.store import migrate

    path = tmp_path / "v7.duckdb"
    con = store_at_version(path, 7)
    con.execute("INSERT INTO predictions (cache_key, output) VALUES ('old', 'billing')")
    con.execute("INSERT INTO outputs VALUES ('r1', 'zero-shot', 'e1', 'old')")
    assert migrate(con) == SCHEMA_VERSION
    con.close()

    s = Store(path)
    cols = table_columns(s, "rating_notes")
    assert cols == ["goal", "rater", "item_id", "comment", "flagged", "created_at", "updated_at"]
    sent = [{"role": "system", "content": "Answer with the queue name only."}, {"role": "user", "content": "hi"}]
    s.put_predictions([{"cache_key": "new", "output": "shipping", "messages": sent}], [("r1", "few-shot", "e1", "new")])
    assert s.messages_for_example("r1", "e1") == {"few-shot": sent, "zero-shot": None}

    s.put_rating_note("g", "ann", "i1", comment="the input is cut off", flagged=True)
    s.put_rating_note("g", "ann", "i1", comment="", flagged=False)  # saved again: replaced
    s.put_rating_note("g", "bob", "i1", comment="fine", flagged=False)
    assert [(r["rater"], r["comment"], r["flagged"]) for r in s.rating_notes("g")] == \
        [("ann", None, False), ("bob", "fine", False)]
    s.put_invitation("g", "cy", "hash-cy")
    assert s.put_invited_rating_note("g", "hash-cy", "i2", comment="odd", flagged=True) == "cy"
    s.revoke_invitations("g", "cy")
    with pytest.raises(HarnessError, match="revoked"):
        s.put_invited_rating_note("g", "hash-cy", "i3", comment="x", flagged=True)
    assert [(r["rater"], r["item_id"]) for r in s.rating_notes("g") if r["flagged"]] == [("cy", "i2")]


def test_a_failed_generation_is_stored_but_never_served_and_a_success_replaces_it(store):
    """Issue 11: a failed generation is a result (with its reason) of the run that linked it, not
    a cache entry; the next success replaces it, a failure never replaces a success."""
    store.put_predictions([{"cache_key": "k1", "error": "500 after 3 attempts", "attempts": 3},
                           {"cache_key": "k2", "output": "billing"}],
                          [("r1", "gpt", "e1", "k1"), ("r1", "gpt", "e2", "k2")])
    assert store.get_predictions(["k1", "k2"]).keys() == {"k2"}
    assert store.failed_outputs("r1") == {"gpt": 1}
    assert [r["example_id"] for r in store.run_outputs("r1")] == ["e2"]  # a failure is no output
    assert store.outputs_for_example("r1", "e1") == {}
    store.put_predictions([{"cache_key": "k1", "error": "timeout"}], [("r2", "gpt", "e1", "k1")])  # fails again
    assert store.query("SELECT error FROM predictions WHERE cache_key = 'k1'") == [{"error": "timeout"}]
    store.put_predictions([{"cache_key": "k1", "output": "shipping"}], [("r3", "gpt", "e1", "k1")])
    store.put_predictions([{"cache_key": "k1", "error": "late failure"}, {"cache_key": "k2", "error": "x"}])
    rows = store.query("SELECT cache_key, output, error FROM predictions ORDER BY cache_key")
    assert rows == [{"cache_key": "k1", "output": "shipping", "error": None},
                    {"cache_key": "k2", "output": "billing", "error": None}]
    assert store.get_predictions(["k1"])["k1"]["output"] == "shipping" and store.failed_outputs("r3") == {}


def test_m012_a_version_11_store_gains_prediction_errors(tmp_path):
    """A store written before failed generations were kept migrates forward: its predictions
    read back as successes, and a failure stored after is not served."""
    from harness.store import migrate

    path = tmp_path / "v11.duckdb"
    con = store_at_version(path, 11)
    con.execute("INSERT INTO predictions (cache_key, output) VALUES ('old', 'billing')")
    assert migrate(con) == SCHEMA_VERSION
    con.close()

    s = Store(path)
    cols = table_columns(s, "predictions")
    assert cols[-1] == "error" and "messages" in cols
    s.put_predictions([{"cache_key": "new", "error": "connection error"}])
    assert s.get_predictions(["old", "new"]).keys() == {"old"}


def test_m013_a_version_12_store_gains_verdicts_judge_validated(tmp_path):
    """A store written before judge_validated migrates forward: its verdicts read back with null
    (results JSON: null), new verdicts keep True/False/None as the Verdict says."""
    from harness.results import results_dict
    from harness.store import migrate, m013_verdict_judge_validated
    from harness.verdict import Verdict

    assert MIGRATIONS.index(m013_verdict_judge_validated) == 12  # version 13
    path = tmp_path / "v12.duckdb"
    con = store_at_version(path, 12)
    con.execute("INSERT INTO runs (run_id, goal, status, started_at) VALUES ('r1', 'g', 'finished', now())")
    con.execute("INSERT INTO candidates (run_id, name, kind, meets_goal) VALUES ('r1', 'c', 'prompt', false)")
    con.execute("INSERT INTO verdicts (run_id, candidate, idx, metric, status) VALUES ('r1', 'c', 0, 'judge.tone', "
                "'pass')")
    assert migrate(con) == SCHEMA_VERSION
    con.close()

    s = Store(path)
    assert [v["judge_validated"] for v in s.verdicts("r1")] == [None]
    assert results_dict(s, "g", "r1")["candidates"][0]["criteria"][0]["judge_validated"] is None
    s.put_verdicts("r2", {"c": [Verdict("judge.tone", "pass", 4.5, (4.2, 4.8), 4.0, judge_validated=False),
                                Verdict("judge.tone", "pass", 4.5, (4.2, 4.8), 4.0, judge_validated=True),
                                Verdict("accuracy", "pass", 0.9, (0.8, 0.95), 0.7)]})
    assert [v["judge_validated"] for v in s.verdicts("r2")] == [False, True, None]
