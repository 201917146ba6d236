"""The results store: one DuckDB file, the only module that imports duckdb.

Concurrency. DuckDB lets one process hold a database file read-write and locks every
other process out, readers included. ``harness run`` (long, many writes) and the
Streamlit app (ratings, reads) must work at the same time, so the store never keeps a
connection open: every operation opens the file, runs one transaction and closes it
(milliseconds), and an open that meets another process's lock is retried with jittered
exponential backoff for up to ``lock_timeout_s``. Long jobs therefore batch their writes
into short transactions instead of holding the file.

Schema changes are numbered functions ``m001_...`` applied in order and recorded in
``schema_version``; a database is migrated forward on first use by each process.
"""
from __future__ import annotations

import json
import os
import random
import threading
import time
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator, Mapping, Sequence

import duckdb

from harness.errors import HarnessError

if TYPE_CHECKING:
    from harness.verdict import Verdict

DEFAULT_DB = ".harness/harness.duckdb"
ENV_DB = "HARNESS_DB"


def default_db_path() -> Path:
    """``$HARNESS_DB``, else ``.harness/harness.duckdb`` in the current folder."""
    return Path(os.environ.get(ENV_DB) or DEFAULT_DB)


def now() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


# --------------------------------------------------------------------------- migrations

def m001_initial(con: duckdb.DuckDBPyConnection) -> None:
    # Longer than 60 lines on purpose: a migration is frozen DDL, one statement per table;
    # splitting it would only scatter the schema a reader wants to see whole.
    con.execute("""
        CREATE TABLE runs (
            run_id VARCHAR PRIMARY KEY, goal VARCHAR NOT NULL, goal_path VARCHAR,
            config_hash VARCHAR, data_hash VARCHAR, test_hash VARCHAR,
            status VARCHAR NOT NULL, started_at TIMESTAMP, finished_at TIMESTAMP,
            git_commit VARCHAR, git_dirty BOOLEAN, versions JSON, host JSON, config JSON,
            meets_goal BOOLEAN, best_candidate VARCHAR)""")
    con.execute("""
        CREATE TABLE seals (
            goal VARCHAR NOT NULL, test_hash VARCHAR NOT NULL, n_test INTEGER,
            sealed_at TIMESTAMP NOT NULL, resealed BOOLEAN NOT NULL, previous_hash VARCHAR,
            note VARCHAR)""")
    con.execute("""
        CREATE TABLE examples (
            goal VARCHAR NOT NULL, example_id VARCHAR NOT NULL, split VARCHAR NOT NULL,
            input VARCHAR, reference VARCHAR, label VARCHAR, prompt JSON, source VARCHAR,
            line INTEGER, PRIMARY KEY (goal, example_id))""")
    con.execute("""
        CREATE TABLE candidates (
            run_id VARCHAR NOT NULL, name VARCHAR NOT NULL, kind VARCHAR NOT NULL,
            config JSON, model VARCHAR, model_hash VARCHAR, adapter_path VARCHAR,
            adapter_hash VARCHAR, train_seconds DOUBLE, tokens_seen BIGINT,
            cost_usd DOUBLE, gen_seconds DOUBLE, overfitting BOOLEAN, best_step INTEGER,
            stopped_early BOOLEAN, status VARCHAR, meets_goal BOOLEAN,
            PRIMARY KEY (run_id, name))""")
    con.execute("""
        CREATE TABLE curves (
            run_id VARCHAR NOT NULL, candidate VARCHAR NOT NULL, step INTEGER NOT NULL,
            split VARCHAR NOT NULL, loss DOUBLE, PRIMARY KEY (run_id, candidate, step, split))""")
    # Predictions are keyed by the content that determines them (model+adapter hash,
    # prompt, decoding), so any run reuses them; `outputs` links a run's candidate to them.
    con.execute("""
        CREATE TABLE predictions (
            cache_key VARCHAR PRIMARY KEY, model_id VARCHAR, output VARCHAR,
            prompt_tokens INTEGER, output_tokens INTEGER, latency_s DOUBLE,
            cost_usd DOUBLE, attempts INTEGER, created_at TIMESTAMP)""")
    con.execute("""
        CREATE TABLE outputs (
            run_id VARCHAR NOT NULL, candidate VARCHAR NOT NULL, example_id VARCHAR NOT NULL,
            cache_key VARCHAR NOT NULL, PRIMARY KEY (run_id, candidate, example_id))""")
    con.execute("""
        CREATE TABLE scores (
            run_id VARCHAR NOT NULL, candidate VARCHAR NOT NULL, example_id VARCHAR NOT NULL,
            metric VARCHAR NOT NULL, value DOUBLE,
            PRIMARY KEY (run_id, candidate, example_id, metric))""")
    con.execute("""
        CREATE TABLE judgments (
            cache_key VARCHAR PRIMARY KEY, judge VARCHAR, rubric VARCHAR, rubric_hash VARCHAR,
            criterion VARCHAR, mode VARCHAR, "order" VARCHAR, score DOUBLE, winner VARCHAR,
            rationale VARCHAR, raw VARCHAR, attempts INTEGER, error VARCHAR,
            created_at TIMESTAMP)""")
    con.execute("""
        CREATE TABLE judgment_links (
            run_id VARCHAR NOT NULL, candidate VARCHAR NOT NULL, example_id VARCHAR NOT NULL,
            rubric VARCHAR NOT NULL, criterion VARCHAR NOT NULL, "order" VARCHAR NOT NULL,
            cache_key VARCHAR NOT NULL,
            PRIMARY KEY (run_id, candidate, example_id, rubric, criterion, "order"))""")
    con.execute("""
        CREATE TABLE panel_items (
            goal VARCHAR NOT NULL, item_id VARCHAR NOT NULL, run_id VARCHAR,
            example_id VARCHAR, candidate VARCHAR, other_candidate VARCHAR, mode VARCHAR,
            rubric VARCHAR, PRIMARY KEY (goal, item_id))""")
    con.execute("""
        CREATE TABLE ratings (
            goal VARCHAR NOT NULL, rater VARCHAR NOT NULL, item_id VARCHAR NOT NULL,
            criterion VARCHAR NOT NULL, score DOUBLE, choice VARCHAR,
            created_at TIMESTAMP NOT NULL, updated_at TIMESTAMP NOT NULL,
            PRIMARY KEY (goal, rater, item_id, criterion))""")
    # Pre-aggregated per (run, candidate, metric): the leaderboard reads these, never
    # the per-example scores, so it stays fast over millions of score rows.
    con.execute("""
        CREATE TABLE aggregates (
            run_id VARCHAR NOT NULL, candidate VARCHAR NOT NULL, metric VARCHAR NOT NULL,
            value DOUBLE, ci_low DOUBLE, ci_high DOUBLE, n INTEGER, extra JSON,
            PRIMARY KEY (run_id, candidate, metric))""")
    con.execute("""
        CREATE TABLE verdicts (
            run_id VARCHAR NOT NULL, candidate VARCHAR NOT NULL, metric VARCHAR NOT NULL,
            status VARCHAR NOT NULL, value DOUBLE, ci_low DOUBLE, ci_high DOUBLE,
            threshold DOUBLE, op VARCHAR, baseline VARCHAR, needed_n INTEGER, detail VARCHAR,
            PRIMARY KEY (run_id, candidate, metric))""")
    con.execute("CREATE INDEX runs_goal ON runs (goal, started_at)")
    con.execute("CREATE INDEX scores_metric ON scores (run_id, metric)")


def m002_verdict_per_criterion(con: duckdb.DuckDBPyConnection) -> None:
    """A goal may state two criteria on one metric (an absolute bar and a relative one):
    verdicts are keyed by the criterion's position in the goal, not by the metric."""
    con.execute("""
        CREATE TABLE verdicts_v2 (
            run_id VARCHAR NOT NULL, candidate VARCHAR NOT NULL, idx INTEGER NOT NULL,
            metric VARCHAR NOT NULL, status VARCHAR NOT NULL, value DOUBLE, ci_low DOUBLE,
            ci_high DOUBLE, threshold DOUBLE, op VARCHAR, baseline VARCHAR, needed_n INTEGER,
            detail VARCHAR, PRIMARY KEY (run_id, candidate, idx))""")
    con.execute("""
        INSERT INTO verdicts_v2
        SELECT run_id, candidate, CAST(row_number() OVER (PARTITION BY run_id, candidate ORDER BY metric) - 1 AS INTEGER),
               metric, status, value, ci_low, ci_high, threshold, op, baseline, needed_n, detail
        FROM verdicts""")
    con.execute("DROP TABLE verdicts")
    con.execute("ALTER TABLE verdicts_v2 RENAME TO verdicts")


def m003_verdict_interval(con: duckdb.DuckDBPyConnection) -> None:
    """Each verdict names the interval it rests on, its two-sided confidence and the
    multiplicity rule that set it; older verdicts keep NULL (they were percentile bootstraps)."""
    con.execute("ALTER TABLE verdicts ADD COLUMN interval VARCHAR")
    con.execute("ALTER TABLE verdicts ADD COLUMN confidence DOUBLE")
    con.execute("ALTER TABLE verdicts ADD COLUMN multiplicity VARCHAR")


def m004_rater_invitations(con: duckdb.DuckDBPyConnection) -> None:
    """Per-rater invitations to a goal's panel: the sha256 of the token (never the token), the
    normalised rater name it is bound to, when it was made and when revoked (NULL: live)."""
    con.execute("""
        CREATE TABLE invitations (
            token_hash VARCHAR PRIMARY KEY, goal VARCHAR NOT NULL, rater VARCHAR NOT NULL,
            created_at TIMESTAMP NOT NULL, revoked_at TIMESTAMP)""")


def m005_prediction_passages(con: duckdb.DuckDBPyConnection) -> None:
    """The ids of the passages a retrieving candidate's prompt held (``kind: rag``), best first,
    with its prediction; NULL for every other prediction."""
    con.execute("ALTER TABLE predictions ADD COLUMN passages JSON")


def m006_judge_spend(con: duckdb.DuckDBPyConnection) -> None:
    """What each judgment cost (API judges; 0 for local ones), and each candidate's judging spend
    beside its generation spend (``cost_usd``); NULL for judgments stored before."""
    con.execute("ALTER TABLE judgments ADD COLUMN input_tokens INTEGER")
    con.execute("ALTER TABLE judgments ADD COLUMN output_tokens INTEGER")
    con.execute("ALTER TABLE judgments ADD COLUMN cost_usd DOUBLE")
    con.execute("ALTER TABLE candidates ADD COLUMN judge_cost_usd DOUBLE")


def m007_candidate_runtime(con: duckdb.DuckDBPyConnection) -> None:
    """Where a local candidate ran: its device (cpu, cuda:N, mps), dtype, the base's quantization
    (``nf4``; ``none`` for a qlora adapter run on a full-precision base; NULL otherwise), and its
    peak memory in MiB with what measured it (``cuda_max_memory_allocated`` over the candidate, or
    ``process_peak_rss``: the process's peak so far). NULL for API and file candidates and for
    candidates stored before. ``engine``: transformers or vllm, what generated its outputs."""
    for column, kind in (("device", "VARCHAR"), ("dtype", "VARCHAR"), ("quantization", "VARCHAR"),
                         ("peak_memory_mb", "DOUBLE"), ("peak_memory_source", "VARCHAR"), ("engine", "VARCHAR")):
        con.execute(f"ALTER TABLE candidates ADD COLUMN {column} {kind}")


def m008_rating_notes(con: duckdb.DuckDBPyConnection) -> None:
    """A rater's note on a panel item, beside their ratings of it: a free-text comment and a flag
    (the item is broken, off-task, or needs the owner's eye). One row per rater and item."""
    con.execute("""
        CREATE TABLE rating_notes (
            goal VARCHAR NOT NULL, rater VARCHAR NOT NULL, item_id VARCHAR NOT NULL, comment VARCHAR,
            flagged BOOLEAN NOT NULL, created_at TIMESTAMP NOT NULL, updated_at TIMESTAMP NOT NULL,
            PRIMARY KEY (goal, rater, item_id))""")


def m009_prediction_messages(con: duckdb.DuckDBPyConnection) -> None:
    """The conversation a prediction's model was sent (system turn, few-shot turns, retrieved
    passages, the question), so a rater sees what the candidate saw; NULL for predictions stored
    before and for candidates that read their outputs from a file."""
    con.execute("ALTER TABLE predictions ADD COLUMN messages JSON")


def m010_artifacts_beside_the_store(con: duckdb.DuckDBPyConnection) -> None:
    """Adapter (or model) folders are stored relative to the store's folder (:func:`artifact_for_store`),
    so a store copied with its work folder still finds them; before, a relative path was relative
    to the folder ``harness`` ran in. Each stored path is rewritten as it would be stored now: a
    relative one found from the current folder as found; else, one with an ``adapters`` part from
    that part on under the store's folder (the default layout: ``.harness/adapters/...`` beside
    ``.harness/harness.duckdb``) when it is there; an absolute one, or one found in neither place,
    as it is."""
    row = con.execute("SELECT path FROM duckdb_databases() WHERE database_name = current_database()").fetchone()
    folder = Path(row[0]).parent if row and row[0] else Path.cwd()
    olds = [r[0] for r in con.execute("SELECT DISTINCT adapter_path FROM candidates WHERE adapter_path IS NOT NULL"
                                      ).fetchall()]
    for old in olds:
        path = Path(old)
        if not path.is_absolute() and not path.exists():
            beside = folder.joinpath(*path.parts[path.parts.index("adapters"):]) if "adapters" in path.parts else None
            if beside is None or not beside.exists():
                continue  # found nowhere: keep what was stored, for a person to resolve
            path = beside
        new = artifact_for_store(path, folder)
        if new != old:
            con.execute("UPDATE candidates SET adapter_path = ? WHERE adapter_path = ?", [new, old])


def artifact_for_store(path: str | Path, folder: Path) -> str:
    """How an artifact folder is stored in a store kept in ``folder``: relative to ``folder`` (with
    ``/``) when inside it, so the two move together; else absolute. Relative ``path`` is from the
    current folder."""
    full, base = Path(path).resolve(), folder.resolve()
    return full.relative_to(base).as_posix() if full.is_relative_to(base) else str(full)


def artifact_from_store(value: str | None, folder: Path) -> str | None:
    """A stored artifact path as a path to open: relative ones are under the store's ``folder``."""
    if value is None:
        return None
    path = Path(value)
    return str(path if path.is_absolute() else folder.resolve() / path)


def m011_run_leakage(con: duckdb.DuckDBPyConnection) -> None:
    """What the run knew of train/test leakage when it started (``data.leakage``): the policy
    (drop or flag), how many train/validation examples duplicate a test example, and how many of
    them were dropped from training or kept (flag). NULL for runs stored before."""
    con.execute("ALTER TABLE runs ADD COLUMN leakage JSON")


def m012_prediction_errors(con: duckdb.DuckDBPyConnection) -> None:
    """A generation that failed (an API request that failed after its retries) is stored as a
    failure with its reason, like a failed judgment: never served as a cached output, replaced
    by the next run's success. NULL for every prediction stored before (all successes)."""
    con.execute("ALTER TABLE predictions ADD COLUMN error VARCHAR")


def m013_verdict_judge_validated(con: duckdb.DuckDBPyConnection) -> None:
    """Whether a judge criterion's judge was checked against human ratings and agreed with them
    (TRUE), was not checked or disagreed (FALSE); NULL for other criteria and older verdicts."""
    con.execute("ALTER TABLE verdicts ADD COLUMN judge_validated BOOLEAN")


def m014_verdict_relative(con: duckdb.DuckDBPyConnection) -> None:
    """Whether a reduce_by/improve_by criterion was relative (``30%``: a share of the baseline's
    value) or absolute (``0.3``), so a stored change is shown in its own units; NULL before."""
    con.execute("ALTER TABLE verdicts ADD COLUMN relative BOOLEAN")


MIGRATIONS: list[Callable[[duckdb.DuckDBPyConnection], None]] = [m001_initial, m002_verdict_per_criterion,
                                                                   m003_verdict_interval, m004_rater_invitations,
                                                                   m005_prediction_passages, m006_judge_spend,
                                                                   m007_candidate_runtime, m008_rating_notes,
                                                                   m009_prediction_messages,
                                                                   m010_artifacts_beside_the_store,
                                                                   m011_run_leakage, m012_prediction_errors,
                                                                   m013_verdict_judge_validated, m014_verdict_relative]
SCHEMA_VERSION = len(MIGRATIONS)


def migrate(con: duckdb.DuckDBPyConnection) -> int:
    """Apply every migration newer than the database's version; return the new version."""
    con.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER PRIMARY KEY, "
                "name VARCHAR, applied_at TIMESTAMP)")
    current = con.execute("SELECT coalesce(max(version), 0) FROM schema_version").fetchone()[0]
    if current > SCHEMA_VERSION:
        raise HarnessError(f"the store is at schema version {current}, newer than this harness "
                           f"({SCHEMA_VERSION}); upgrade the harness")
    for version, fn in enumerate(MIGRATIONS[current:], start=current + 1):
        con.execute("BEGIN TRANSACTION")
        try:
            fn(con)
            con.execute("INSERT INTO schema_version VALUES (?, ?, ?)", [version, fn.__name__, now()])
            con.execute("COMMIT")
        except Exception:
            con.execute("ROLLBACK")
            raise
    return SCHEMA_VERSION


# --------------------------------------------------------------------------- connections

def is_read_query(sql: str) -> bool:
    """Whether ``sql`` starts as a read query (it still runs on a read-only connection)."""
    import re

    return bool(re.match(r"^\s*(WITH|SELECT|FROM|PIVOT|VALUES)\b", sql, re.IGNORECASE))


def _is_lock_error(exc: Exception) -> bool:
    msg = str(exc).lower()
    return "lock" in msg or "conflicting" in msg or "being used by another process" in msg


def _insert(con: duckdb.DuckDBPyConnection, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]],
            conflict: str = "OR REPLACE") -> None:
    """Bulk insert through a registered DataFrame: executemany costs ~10 ms a row in DuckDB.
    Keys must be unique within one batch (DuckDB keeps one of a repeated key silently)."""
    if not rows:
        return
    import pandas as pd

    df = pd.DataFrame([list(r) for r in rows], columns=list(columns), dtype=object)
    name = f"_new_{table}"
    con.register(name, df)
    try:
        cols = ", ".join(f'"{c}"' for c in columns)
        con.execute(f"INSERT {conflict} INTO {table} ({cols}) SELECT {cols} FROM {name}")
    finally:
        con.unregister(name)


def _upsert(con: duckdb.DuckDBPyConnection, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]], *,
            key: Sequence[str], update: Sequence[str]) -> None:
    """Bulk insert that updates only ``update`` columns of rows whose ``key`` exists (so, for
    example, a rating's ``created_at`` survives a re-import)."""
    import pandas as pd

    df = pd.DataFrame([list(r) for r in rows], columns=list(columns), dtype=object)
    name = f"_upsert_{table}"
    con.register(name, df)
    try:
        cols = ", ".join(f'"{c}"' for c in columns)
        sets = ", ".join(f'"{c}" = excluded."{c}"' for c in update)
        con.execute(f"INSERT INTO {table} ({cols}) SELECT {cols} FROM {name} "
                    f"ON CONFLICT ({', '.join(key)}) DO UPDATE SET {sets}")
    finally:
        con.unregister(name)


PANEL_ITEM_COLUMNS = ["goal", "item_id", "run_id", "example_id", "candidate", "other_candidate", "mode", "rubric"]


def _panel_item_rows(goal: str, rows: Sequence[Mapping[str, Any]]) -> list[list[Any]]:
    return [[goal, r["item_id"], r.get("run_id"), r.get("example_id"), r.get("candidate"),
             r.get("other_candidate"), r.get("mode"), r.get("rubric")] for r in rows]


_LOCKS: dict[str, threading.RLock] = {}
_LOCKS_GUARD = threading.Lock()


def _path_lock(path: Path) -> threading.RLock:
    key = str(path.resolve())
    with _LOCKS_GUARD:
        return _LOCKS.setdefault(key, threading.RLock())


class Store:
    """Short-lived connections to one DuckDB file, with retry on another process's lock."""

    def __init__(self, path: str | Path | None = None, *, lock_timeout_s: float = 60.0):
        self.path = Path(path) if path is not None else default_db_path()
        self.lock_timeout_s = lock_timeout_s
        self._migrated = False
        # One lock per file per process: threads (e.g. Streamlit sessions) take turns, and a
        # read-only open never meets a read-write instance of the same file in this process.
        self._mutex = _path_lock(self.path)

    def __repr__(self) -> str:
        return f"Store({str(self.path)!r})"

    def _open(self, read_only: bool) -> duckdb.DuckDBPyConnection:
        deadline = time.monotonic() + self.lock_timeout_s
        delay = 0.005
        while True:
            try:
                if read_only and self.path.exists():
                    # A read-only open shares the file with other read-only processes.
                    return duckdb.connect(str(self.path), read_only=True)
                self.path.parent.mkdir(parents=True, exist_ok=True)
                return duckdb.connect(str(self.path))
            except duckdb.Error as exc:
                if not _is_lock_error(exc) or time.monotonic() > deadline:
                    if _is_lock_error(exc):
                        raise HarnessError(
                            f"the store {self.path} stayed locked by another process for "
                            f"{self.lock_timeout_s:.0f} s") from exc
                    raise
                time.sleep(delay * (0.5 + random.random()))
                delay = min(delay * 2, 0.25)

    def _ensure_schema(self) -> None:
        if self._migrated:
            return
        with self._mutex:
            con = self._open(read_only=False)
            try:
                migrate(con)
            finally:
                con.close()
            self._migrated = True

    @contextmanager
    def connect(self, read_only: bool = False) -> Iterator[duckdb.DuckDBPyConnection]:
        """A connection for one short piece of work; closed (and the file unlocked) after."""
        self._ensure_schema()
        with self._mutex:
            con = self._open(read_only=read_only)
            try:
                yield con
            finally:
                con.close()

    @contextmanager
    def transaction(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """All writes inside commit together or not at all."""
        with self.connect() as con:
            con.execute("BEGIN TRANSACTION")
            try:
                yield con
            except BaseException:
                con.execute("ROLLBACK")
                raise
            con.execute("COMMIT")

    # ------------------------------------------------------------------ generic helpers

    def query(self, sql: str, params: Sequence[Any] | dict | None = None) -> list[dict[str, Any]]:
        """Run a read query with bound parameters; rows as dicts."""
        with self.connect(read_only=True) as con:
            cur = con.execute(sql, params or [])
            cols = [d[0] for d in cur.description]
            return [dict(zip(cols, row)) for row in cur.fetchall()]

    def view(self, sql: str, params: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
        """Rows of a leaderboard definition's read query (``leaderboards/``), parameters bound."""
        if not is_read_query(sql):
            raise HarnessError("a leaderboard query must be a read query (SELECT/WITH ...)")
        return self.query(sql, dict(params or {}))

    def query_df(self, sql: str, params: Sequence[Any] | dict | None = None):
        with self.connect(read_only=True) as con:
            return con.execute(sql, params or []).df()

    def scalar(self, sql: str, params: Sequence[Any] | None = None) -> Any:
        with self.connect(read_only=True) as con:
            row = con.execute(sql, params or []).fetchone()
            return row[0] if row else None

    def count(self, table: str) -> int:
        if not table.isidentifier():
            raise HarnessError(f"not a table name: {table!r}")
        return int(self.scalar(f"SELECT count(*) FROM {table}"))

    def schema_version(self) -> int:
        return int(self.scalar("SELECT max(version) FROM schema_version"))

    # ------------------------------------------------------------------ seals

    def current_seal(self, goal: str) -> dict[str, Any] | None:
        rows = self.query("SELECT * FROM seals WHERE goal = ? ORDER BY sealed_at DESC LIMIT 1", [goal])
        return rows[0] if rows else None

    def record_seal(self, goal: str, test_hash: str, n_test: int, *, resealed: bool,
                    previous_hash: str | None = None, note: str | None = None) -> None:
        with self.transaction() as con:
            con.execute("INSERT INTO seals VALUES (?, ?, ?, ?, ?, ?, ?)",
                        [goal, test_hash, n_test, now(), resealed, previous_hash, note])

    def seal_history(self, goal: str) -> list[dict[str, Any]]:
        return self.query("SELECT * FROM seals WHERE goal = ? ORDER BY sealed_at", [goal])

    # ------------------------------------------------------------------ examples

    def put_examples(self, goal: str, rows: Iterable[dict[str, Any]]) -> None:
        """Upsert the goal's examples with their split (id, split, input, reference, label, prompt)."""
        data = [[goal, r["example_id"], r["split"], r.get("input"), r.get("reference"), r.get("label"),
                 json.dumps(r.get("prompt")), r.get("source"), r.get("line")] for r in rows]
        if not data:
            return
        with self.transaction() as con:
            _insert(con, "examples", ["goal", "example_id", "split", "input", "reference", "label", "prompt",
                                      "source", "line"], data)

    def example_splits(self, goal: str) -> dict[str, str]:
        """{example id: split} as stored for the goal."""
        return {r["example_id"]: r["split"] for r in
                self.query("SELECT example_id, split FROM examples WHERE goal = ?", [goal])}

    def sealed_elsewhere(self, goal: str, example_ids: Sequence[str]) -> dict[str, str]:
        """{example id: the other goal} for those of ``example_ids`` another goal sealed as test."""
        if not example_ids:
            return {}
        rows = self.query("SELECT example_id, min(goal) AS goal FROM examples WHERE split = 'test' AND goal <> ? "
                          "AND example_id IN (SELECT unnest(?)) GROUP BY example_id", [goal, list(example_ids)])
        return {r["example_id"]: r["goal"] for r in rows}

    def example(self, goal: str, example_id: str) -> dict[str, Any] | None:
        rows = self.query("SELECT * FROM examples WHERE goal = ? AND example_id = ?", [goal, example_id])
        return rows[0] if rows else None

    def split_labels(self, goal: str, split: str) -> list[dict[str, Any]]:
        """(example_id, label) rows of one split of the goal, in id order."""
        return self.query("SELECT example_id, label FROM examples WHERE goal = ? AND split = ? ORDER BY example_id",
                          [goal, split])

    def example_inputs(self, goal: str) -> dict[str, str]:
        """{example id: input text} of the goal's examples."""
        return {r["example_id"]: r["input"] for r in
                self.query("SELECT example_id, input FROM examples WHERE goal = ?", [goal])}

    # ------------------------------------------------------------------ runs

    def start_run(self, run: dict[str, Any]) -> None:
        cols = ["run_id", "goal", "goal_path", "config_hash", "data_hash", "test_hash", "status",
                "started_at", "git_commit", "git_dirty", "versions", "host", "config", "leakage"]
        vals = [run.get(c) for c in cols]
        vals[cols.index("status")] = run.get("status", "running")
        vals[cols.index("started_at")] = run.get("started_at") or now()
        for c in ("versions", "host", "config", "leakage"):
            i = cols.index(c)
            vals[i] = json.dumps(vals[i]) if vals[i] is not None else None
        with self.transaction() as con:
            con.execute(f"INSERT OR REPLACE INTO runs ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})", vals)

    def finish_run(self, run_id: str, status: str, meets_goal: bool | None = None,
                   best_candidate: str | None = None) -> None:
        with self.transaction() as con:
            con.execute("UPDATE runs SET status = ?, finished_at = ?, meets_goal = ?, best_candidate = ? "
                        "WHERE run_id = ?", [status, now(), meets_goal, best_candidate, run_id])

    def mark_interrupted(self, goal: str) -> None:
        """Runs of the goal still marked running were killed: a new run is starting."""
        with self.transaction() as con:
            con.execute("UPDATE runs SET status = 'interrupted' WHERE goal = ? AND status = 'running'", [goal])

    def latest_run(self, goal: str, *, finished_only: bool = False) -> dict[str, Any] | None:
        cond = " AND status = 'finished'" if finished_only else ""
        rows = self.query(f"SELECT * FROM runs WHERE goal = ?{cond} ORDER BY started_at DESC LIMIT 1", [goal])
        return rows[0] if rows else None

    def run(self, run_id: str) -> dict[str, Any] | None:
        rows = self.query("SELECT * FROM runs WHERE run_id = ?", [run_id])
        return rows[0] if rows else None

    def runs(self, goal: str | None = None) -> list[dict[str, Any]]:
        if goal is None:
            return self.query("SELECT * FROM runs ORDER BY started_at DESC")
        return self.query("SELECT * FROM runs WHERE goal = ? ORDER BY started_at DESC", [goal])

    def examples_of(self, goal: str, split: str | None = None) -> list[dict[str, Any]]:
        """The goal's stored examples (id, split, input, reference, label), optionally one split."""
        cond, params = ("AND split = ?", [goal, split]) if split else ("", [goal])
        return self.query(f"SELECT example_id, split, input, reference, label FROM examples WHERE goal = ? {cond} "
                          "ORDER BY example_id", params)

    def run_scores(self, run_id: str) -> list[dict[str, Any]]:
        """Every per-example score of a run: (candidate, example_id, metric, value)."""
        return self.query("SELECT candidate, example_id, metric, value FROM scores WHERE run_id = ? "
                          "ORDER BY candidate, example_id, metric", [run_id])

    def run_judgments(self, run_id: str) -> list[dict[str, Any]]:
        """Every judgment a run linked, with its score, winner, rationale and error."""
        return self.query(
            "SELECT l.candidate, l.example_id, l.rubric, l.criterion, l.\"order\" AS position_order, j.score, "
            "j.winner, j.rationale, j.error FROM judgment_links l JOIN judgments j USING (cache_key) "
            "WHERE l.run_id = ? ORDER BY l.candidate, l.example_id, l.rubric, l.criterion", [run_id])

    def goals(self) -> list[str]:
        return [r["goal"] for r in self.query("SELECT DISTINCT goal FROM runs ORDER BY goal")]

    # ------------------------------------------------------------------ candidates and curves

    def put_candidate(self, run_id: str, row: dict[str, Any]) -> None:
        cols = ["name", "kind", "config", "model", "model_hash", "adapter_path", "adapter_hash",
                "train_seconds", "tokens_seen", "cost_usd", "gen_seconds", "overfitting", "best_step",
                "stopped_early", "status", "meets_goal"]
        row = self._artifact_stored(row)
        vals = [run_id] + [json.dumps(row.get(c)) if c == "config" else row.get(c) for c in cols]
        with self.transaction() as con:
            con.execute(f"INSERT OR REPLACE INTO candidates (run_id, {', '.join(cols)}) "
                        f"VALUES ({', '.join('?' * (len(cols) + 1))})", vals)

    def update_candidate(self, run_id: str, name: str, **fields: Any) -> None:
        if not fields:
            return
        for k in fields:
            if not k.isidentifier():
                raise HarnessError(f"bad column {k!r}")
        fields = self._artifact_stored(fields)
        sets = ", ".join(f"{k} = ?" for k in fields)
        vals = [json.dumps(v) if k == "config" else v for k, v in fields.items()]
        with self.transaction() as con:
            con.execute(f"UPDATE candidates SET {sets} WHERE run_id = ? AND name = ?", vals + [run_id, name])

    @property
    def folder(self) -> Path:
        """The folder the store's file is in: the default work folder (adapters, indexes, logs),
        and what stored artifact paths are relative to."""
        return self.path.parent

    def _artifact_stored(self, row: Mapping[str, Any]) -> dict[str, Any]:
        """``row`` with its ``adapter_path`` (if any) in the stored form (:func:`artifact_for_store`)."""
        row = dict(row)
        if row.get("adapter_path") is not None:
            row["adapter_path"] = artifact_for_store(row["adapter_path"], self.folder)
        return row

    def candidates(self, run_id: str) -> list[dict[str, Any]]:
        """The run's candidates; ``adapter_path`` resolved (a path to open, wherever the store is now)."""
        rows = self.query("SELECT * FROM candidates WHERE run_id = ? ORDER BY name", [run_id])
        return [dict(r, adapter_path=artifact_from_store(r["adapter_path"], self.folder)) for r in rows]

    def candidate_names(self, run_id: str) -> list[str]:
        return [r["name"] for r in self.query("SELECT name FROM candidates WHERE run_id = ? ORDER BY name", [run_id])]

    def latest_artifact(self, goal: str, candidate: str) -> str | None:
        """The adapter (or model) folder a candidate of the goal was last trained into."""
        rows = self.query("SELECT c.adapter_path FROM candidates c JOIN runs r USING (run_id) WHERE r.goal = ? "
                          "AND c.name = ? AND c.adapter_path IS NOT NULL ORDER BY r.started_at DESC LIMIT 1",
                          [goal, candidate])
        return artifact_from_store(rows[0]["adapter_path"], self.folder) if rows else None

    def curves(self, run_id: str) -> list[dict[str, Any]]:
        return self.query("SELECT candidate, step, split, loss FROM curves WHERE run_id = ? "
                          "ORDER BY candidate, split, step", [run_id])

    def put_curve(self, run_id: str, candidate: str, points: Iterable[tuple[int, str, float]]) -> None:
        data = [[run_id, candidate, int(s), sp, float(l)] for s, sp, l in points]
        if data:
            with self.transaction() as con:
                _insert(con, "curves", ["run_id", "candidate", "step", "split", "loss"], data)

    # ------------------------------------------------------------------ predictions

    def _by_keys(self, table: str, keys: Sequence[str], *, successes_only: bool = False) -> dict[str, dict[str, Any]]:
        """Rows of a content-keyed table (``cache_key`` first) for these keys; missing keys are absent
        (and, with ``successes_only``, stored failures too)."""
        if not keys:
            return {}
        where = " AND error IS NULL" if successes_only else ""
        with self.connect(read_only=True) as con:
            cur = con.execute(f"SELECT * FROM {table} WHERE cache_key IN (SELECT unnest(?)){where}",
                              [sorted(set(keys))])
            cols = [d[0] for d in cur.description]
            return {row[0]: dict(zip(cols, row)) for row in cur.fetchall()}

    def get_predictions(self, keys: Sequence[str]) -> dict[str, dict[str, Any]]:
        """Stored *successful* predictions for these cache keys (missing keys are simply absent).
        A failed generation (``error`` set) is a result of its run, never a cache hit: the next
        run generates it again."""
        return self._by_keys("predictions", keys, successes_only=True)

    def put_predictions(self, rows: Sequence[dict[str, Any]], links: Sequence[tuple[str, str, str, str]] = ()) -> None:
        """Store predictions (ignored when a success is stored under the key: content-keyed, so
        identical; a stored failure is replaced, never a success by a failure) and link them to
        (run, candidate, example) in the same transaction. A row with ``error`` is a failure."""
        data = [[r["cache_key"], r.get("model_id"), r.get("output"), r.get("prompt_tokens"),
                 r.get("output_tokens"), r.get("latency_s"), r.get("cost_usd"), r.get("attempts"), now(),
                 None if r.get("passages") is None else json.dumps(r["passages"]),
                 None if r.get("messages") is None else json.dumps(r["messages"]), r.get("error")]
                for r in rows]
        with self.transaction() as con:
            if data:  # a new attempt replaces a stored failure, never a stored success
                con.execute("DELETE FROM predictions WHERE error IS NOT NULL AND cache_key IN (SELECT unnest(?))",
                            [[r[0] for r in data]])
            _insert(con, "predictions", ["cache_key", "model_id", "output", "prompt_tokens", "output_tokens",
                                         "latency_s", "cost_usd", "attempts", "created_at", "passages", "messages",
                                         "error"], data, "OR IGNORE")
            _insert(con, "outputs", ["run_id", "candidate", "example_id", "cache_key"], links)

    def failed_outputs(self, run_id: str) -> dict[str, int]:
        """{candidate: how many of its test examples a run linked to a failed generation}; a
        failure a later run replaced with a success no longer counts."""
        rows = self.query("SELECT o.candidate, count(*) AS n FROM outputs o JOIN predictions p USING (cache_key) "
                          "WHERE o.run_id = ? AND p.error IS NOT NULL GROUP BY o.candidate", [run_id])
        return {r["candidate"]: int(r["n"]) for r in rows}

    def outputs_for_example(self, run_id: str, example_id: str) -> dict[str, str]:
        """{candidate: output} of one run on one example (a failed generation is no output)."""
        rows = self.query("SELECT o.candidate, p.output FROM outputs o JOIN predictions p USING (cache_key) "
                          "WHERE o.run_id = ? AND o.example_id = ? AND p.error IS NULL ORDER BY o.candidate",
                          [run_id, example_id])
        return {r["candidate"]: r["output"] for r in rows}

    def passages_for_example(self, run_id: str, example_id: str) -> dict[str, list[str]]:
        """{candidate: the retrieved passage ids its prompt held, best first} of one run on one
        example, for the candidates that retrieved (``kind: rag``)."""
        rows = self.query("SELECT o.candidate, p.passages FROM outputs o JOIN predictions p USING (cache_key) "
                          "WHERE o.run_id = ? AND o.example_id = ? AND p.passages IS NOT NULL ORDER BY o.candidate",
                          [run_id, example_id])
        return {r["candidate"]: json.loads(r["passages"]) for r in rows}

    def messages_for_example(self, run_id: str, example_id: str) -> dict[str, list[dict[str, str]] | None]:
        """{candidate: the conversation its model was sent} of one run on one example; None for a
        prediction stored without it (before m009, or read from a file)."""
        rows = self.query("SELECT o.candidate, p.messages FROM outputs o JOIN predictions p USING (cache_key) "
                          "WHERE o.run_id = ? AND o.example_id = ? ORDER BY o.candidate", [run_id, example_id])
        return {r["candidate"]: None if r["messages"] is None else json.loads(r["messages"]) for r in rows}

    def run_example_ids(self, run_id: str) -> list[str]:
        return [r["example_id"] for r in self.query(
            "SELECT DISTINCT example_id FROM outputs WHERE run_id = ? ORDER BY example_id", [run_id])]

    def finished_run_outputs(self, goal: str) -> list[dict[str, Any]]:
        """(run_id, candidate, example_id, output) of every output of the goal's finished runs,
        newest run first (failed generations are no outputs)."""
        return self.query("SELECT o.run_id, o.candidate, o.example_id, p.output FROM outputs o JOIN runs r "
                          "USING (run_id) "
                          "JOIN predictions p USING (cache_key) "
                          "WHERE r.goal = ? AND r.status = 'finished' AND p.error IS NULL "
                          "ORDER BY r.started_at DESC, o.run_id, o.candidate, o.example_id", [goal])

    def run_outputs(self, run_id: str, candidate: str | None = None) -> list[dict[str, Any]]:
        """A run's outputs (one candidate's, when given); failed generations are no outputs."""
        sql = ("SELECT o.candidate, o.example_id, p.output, p.prompt_tokens, p.output_tokens, p.latency_s, "
               "p.cost_usd, p.cache_key, p.passages FROM outputs o JOIN predictions p USING (cache_key) "
               "WHERE o.run_id = ? AND p.error IS NULL")
        params: list[Any] = [run_id]
        if candidate is not None:
            sql += " AND o.candidate = ?"
            params.append(candidate)
        return self.query(sql + " ORDER BY o.candidate, o.example_id", params)

    # ------------------------------------------------------------------ scores and aggregates

    def put_run_scores(self, run_id: str,
                       groups: Sequence[tuple[str, str, Sequence[tuple[str, float | None]]]]) -> None:
        """Per-example scores of many (candidate, metric) pairs in one transaction (one open of
        the file, not one per metric: a rerun's scoring step is mostly these writes)."""
        import pandas as pd

        rows = [(c, e, m, None if v is None else float(v)) for c, m, values in groups for e, v in values]
        if not rows:
            return
        df = pd.DataFrame({"run_id": run_id, "candidate": [r[0] for r in rows], "example_id": [r[1] for r in rows],
                           "metric": [r[2] for r in rows], "value": [r[3] for r in rows]})
        with self.transaction() as con:
            con.register("new_scores", df)
            con.execute("INSERT OR REPLACE INTO scores SELECT run_id, candidate, example_id, metric, "
                        "CAST(value AS DOUBLE) FROM new_scores")
            con.unregister("new_scores")

    def score_metrics(self, run_id: str) -> list[str]:
        return [r["metric"] for r in self.query(
            "SELECT DISTINCT metric FROM scores WHERE run_id = ? ORDER BY metric", [run_id])]

    def example_scores(self, run_id: str, example_id: str) -> list[dict[str, Any]]:
        return self.query("SELECT candidate, metric, value FROM scores WHERE run_id = ? AND example_id = ? "
                          "ORDER BY metric, candidate", [run_id, example_id])

    def disagreements(self, run_id: str, a: str, b: str, metric: str, limit: int = 50) -> list[dict[str, Any]]:
        """Examples where candidates ``a`` and ``b`` differ most on ``metric``."""
        return self.query(
            "SELECT sa.example_id, sa.value AS a, sb.value AS b, abs(sa.value - sb.value) AS gap "
            "FROM scores sa JOIN scores sb ON sa.run_id = sb.run_id AND sa.example_id = sb.example_id "
            "AND sa.metric = sb.metric WHERE sa.run_id = ? AND sa.metric = ? AND sa.candidate = ? "
            "AND sb.candidate = ? AND sa.value IS NOT NULL AND sb.value IS NOT NULL "
            "ORDER BY gap DESC, sa.example_id LIMIT ?", [run_id, metric, a, b, int(limit)])

    def aggregates(self, run_id: str, metric: str | None = None) -> list[dict[str, Any]]:
        """The run's aggregates (one metric's, when given), by candidate and metric."""
        if metric is None:
            return self.query("SELECT * FROM aggregates WHERE run_id = ? ORDER BY candidate, metric", [run_id])
        return self.query("SELECT * FROM aggregates WHERE run_id = ? AND metric = ? ORDER BY candidate",
                          [run_id, metric])

    def aggregate_metrics(self, run_id: str) -> list[str]:
        return [r["metric"] for r in self.query(
            "SELECT DISTINCT metric FROM aggregates WHERE run_id = ? ORDER BY metric", [run_id])]

    def goal_candidates(self, goal: str) -> list[str]:
        """Every candidate name with aggregates in any run of the goal."""
        return [r["candidate"] for r in self.query(
            "SELECT DISTINCT a.candidate FROM aggregates a JOIN runs r USING (run_id) WHERE r.goal = ? "
            "ORDER BY a.candidate", [goal])]

    def verdicts(self, run_id: str) -> list[dict[str, Any]]:
        return self.query("SELECT * FROM verdicts WHERE run_id = ? ORDER BY candidate, idx", [run_id])

    def put_aggregates(self, run_id: str, rows: Sequence[dict[str, Any]]) -> None:
        data = [[run_id, r["candidate"], r["metric"], r.get("value"), r.get("ci_low"), r.get("ci_high"),
                 r.get("n"), json.dumps(r.get("extra") or {})] for r in rows]
        if data:
            with self.transaction() as con:
                _insert(con, "aggregates", ["run_id", "candidate", "metric", "value", "ci_low", "ci_high", "n",
                                            "extra"], data)

    def put_verdicts(self, run_id: str, verdicts: Mapping[str, Sequence["Verdict"]]) -> None:
        """Each candidate's verdicts, in the order of the goal's ``success`` list (``idx``)."""
        data = [[run_id, cand, idx, v.metric, v.status, v.value, v.ci[0], v.ci[1], v.threshold, v.op, v.baseline,
                 v.needed_n, v.detail, v.interval or None, v.confidence, v.multiplicity or None,
                 getattr(v, "judge_validated", None), v.relative if v.op in ("improve_by", "reduce_by") else None]
                for cand, vs in verdicts.items() for idx, v in enumerate(vs)]
        if data:
            with self.transaction() as con:
                _insert(con, "verdicts", ["run_id", "candidate", "idx", "metric", "status", "value", "ci_low",
                                          "ci_high", "threshold", "op", "baseline", "needed_n", "detail",
                                          "interval", "confidence", "multiplicity", "judge_validated", "relative"],
                        data)

    # ------------------------------------------------------------------ judgments

    def get_judgments(self, keys: Sequence[str]) -> dict[str, dict[str, Any]]:
        """Stored judgments for these cache keys (missing keys are simply absent)."""
        return self._by_keys("judgments", keys)

    def judgments_by(self, judge: str, rubric_hash: str) -> dict[str, dict[str, Any]]:
        """Every stored *successful* judgment of one judge on one rubric version, by cache key.
        A failed one (an error, an unparseable reply) is a result of that run, never a cache hit:
        the next run asks again."""
        rows = self.query("SELECT * FROM judgments WHERE judge = ? AND rubric_hash = ? AND error IS NULL",
                          [judge, rubric_hash])
        return {r["cache_key"]: r for r in rows}

    def judgment_keys(self, judge: str, rubric_hash: str) -> set[str]:
        """Cache keys of the successful judgments (what a run will not ask again)."""
        return {r["cache_key"] for r in self.query(
            "SELECT cache_key FROM judgments WHERE judge = ? AND rubric_hash = ? AND error IS NULL",
            [judge, rubric_hash])}

    def example_judgments(self, run_id: str, example_id: str) -> list[dict[str, Any]]:
        """Every judgment a run linked to one example (both orders of pairwise ones)."""
        return self.query(
            "SELECT l.candidate, l.rubric, l.criterion, l.\"order\" AS position_order, j.mode, j.score, j.winner, "
            "j.rationale, j.judge, j.error FROM judgment_links l JOIN judgments j USING (cache_key) "
            "WHERE l.run_id = ? AND l.example_id = ? ORDER BY l.candidate, l.rubric, l.criterion, l.\"order\"",
            [run_id, example_id])

    def judge_scores(self, run_ids: Sequence[str], rubric: str, criterion: str) -> dict[tuple[str, str], float]:
        """{(candidate, example_id): mean pointwise judge score} over the given runs."""
        if not run_ids:
            return {}
        rows = self.query(
            "SELECT l.candidate, l.example_id, avg(j.score) AS score FROM judgment_links l "
            "JOIN judgments j USING (cache_key) WHERE l.run_id IN (SELECT unnest(?)) AND l.rubric = ? "
            "AND l.criterion = ? AND j.score IS NOT NULL AND coalesce(j.mode, 'pointwise') = 'pointwise' "
            "GROUP BY l.candidate, l.example_id", [list(run_ids), rubric, criterion])
        return {(r["candidate"], r["example_id"]): float(r["score"]) for r in rows}

    def put_judgments(self, rows: Sequence[dict[str, Any]],
                      links: Sequence[tuple[str, str, str, str, str, str, str]] = ()) -> None:
        cols = ["cache_key", "judge", "rubric", "rubric_hash", "criterion", "mode", "order", "score",
                "winner", "rationale", "raw", "attempts", "error", "input_tokens", "output_tokens", "cost_usd"]
        data = [[r.get(c) for c in cols] + [now()] for r in rows]
        with self.transaction() as con:
            if data:  # a new attempt replaces a stored failure, never a stored success
                con.execute("DELETE FROM judgments WHERE error IS NOT NULL AND cache_key IN (SELECT unnest(?))",
                            [[r[0] for r in data]])
            _insert(con, "judgments", cols + ["created_at"], data, "OR IGNORE")
            _insert(con, "judgment_links", ["run_id", "candidate", "example_id", "rubric", "criterion", "order",
                                            "cache_key"], links)

    # ------------------------------------------------------------------ human panel

    def put_panel_items(self, goal: str, rows: Sequence[dict[str, Any]]) -> None:
        data = _panel_item_rows(goal, rows)
        if data:
            with self.transaction() as con:
                _insert(con, "panel_items", PANEL_ITEM_COLUMNS, data, "OR IGNORE")

    def put_rating(self, goal: str, rater: str, item_id: str, criterion: str, *,
                   score: float | None = None, choice: str | None = None) -> None:
        """Save one rating; a rater rating the same item and criterion again updates it."""
        ts = now()
        with self.transaction() as con:
            con.execute(
                "INSERT INTO ratings VALUES (?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (goal, rater, item_id, criterion) DO UPDATE SET "
                "score = excluded.score, choice = excluded.choice, updated_at = excluded.updated_at",
                [goal, rater, item_id, criterion, score, choice, ts, ts])

    def put_ratings_bulk(self, goal: str, items: Sequence[dict[str, Any]],
                         ratings: Sequence[dict[str, Any]]) -> None:
        """Panel items (an existing item is kept) and ratings (rater, item_id, criterion, score or
        choice; a rater's rating of the same item and criterion is updated) in one transaction:
        an import lands whole or not at all. Rating keys must be unique within the batch."""
        ts = now()
        data = [[goal, r["rater"], r["item_id"], r["criterion"], r.get("score"), r.get("choice"), ts, ts]
                for r in ratings]
        with self.transaction() as con:
            _insert(con, "panel_items", PANEL_ITEM_COLUMNS, _panel_item_rows(goal, items), "OR IGNORE")
            if data:
                _upsert(con, "ratings", ["goal", "rater", "item_id", "criterion", "score", "choice", "created_at",
                                         "updated_at"], data, key=["goal", "rater", "item_id", "criterion"],
                        update=["score", "choice", "updated_at"])

    def ratings(self, goal: str) -> list[dict[str, Any]]:
        return self.query("SELECT * FROM ratings WHERE goal = ? ORDER BY item_id, rater, criterion", [goal])

    # ---- app/panel helpers (helper-7)

    def panel_items(self, goal: str) -> list[dict[str, Any]]:
        """The goal's drawn human-panel items."""
        return self.query("SELECT * FROM panel_items WHERE goal = ? ORDER BY item_id", [goal])

    def rater_ratings(self, goal: str, rater: str) -> list[dict[str, Any]]:
        """One rater's ratings for a goal (to restore their answers and progress)."""
        return self.query("SELECT * FROM ratings WHERE goal = ? AND rater = ? ORDER BY item_id, criterion",
                          [goal, rater])

    # ---- a rater's note on an item: a comment and a flag, one row per rater and item

    _NOTE_UPSERT = ("INSERT INTO rating_notes VALUES (?, ?, ?, ?, ?, ?, ?) "
                    "ON CONFLICT (goal, rater, item_id) DO UPDATE SET comment = excluded.comment, "
                    "flagged = excluded.flagged, updated_at = excluded.updated_at")

    def put_rating_note(self, goal: str, rater: str, item_id: str, *, comment: str | None, flagged: bool) -> None:
        """Save the rater's comment and flag on an item; saving again replaces both."""
        ts = now()
        with self.transaction() as con:
            con.execute(self._NOTE_UPSERT, [goal, rater, item_id, comment or None, bool(flagged), ts, ts])

    def put_invited_rating_note(self, goal: str, token_hash: str, item_id: str, *, comment: str | None,
                                flagged: bool) -> str:
        """:meth:`put_rating_note` under the rater a live invitation is bound to, the invitation checked
        in the same transaction (HarnessError, nothing saved, when revoked). Returns the rater name."""
        ts = now()
        with self.transaction() as con:
            rater = _invited_rater(con, goal, token_hash)
            con.execute(self._NOTE_UPSERT, [goal, rater, item_id, comment or None, bool(flagged), ts, ts])
        return rater

    def rating_notes(self, goal: str) -> list[dict[str, Any]]:
        """Every rater's comments and flags on the goal's items (rater, item_id, comment, flagged, times)."""
        return self.query("SELECT * FROM rating_notes WHERE goal = ? ORDER BY item_id, rater", [goal])

    # ---- rater invitations (the token itself is never stored: only its hash)

    def put_invitation(self, goal: str, rater: str, token_hash: str) -> int:
        """Invite ``rater`` (a normalised name) to the goal's panel with a new token's hash; the
        rater's earlier live invitations are revoked in the same transaction. Returns how many."""
        ts = now()
        with self.transaction() as con:
            revoked = con.execute("UPDATE invitations SET revoked_at = ? WHERE goal = ? AND rater = ? "
                                  "AND revoked_at IS NULL", [ts, goal, rater]).fetchone()[0]
            con.execute("INSERT INTO invitations VALUES (?, ?, ?, ?, NULL)", [token_hash, goal, rater, ts])
        return int(revoked)

    def revoke_invitations(self, goal: str, rater: str) -> int:
        """Revoke the rater's live invitations to the goal at once; returns how many."""
        with self.transaction() as con:
            return int(con.execute("UPDATE invitations SET revoked_at = ? WHERE goal = ? AND rater = ? "
                                   "AND revoked_at IS NULL", [now(), goal, rater]).fetchone()[0])

    def invitations(self, goal: str) -> list[dict[str, Any]]:
        """The goal's invitations, live and revoked (rater, created_at, revoked_at; no hashes)."""
        return self.query("SELECT rater, created_at, revoked_at FROM invitations WHERE goal = ? "
                          "ORDER BY rater, created_at", [goal])

    def has_invitations(self, goal: str) -> bool:
        """Whether the goal ever had an invitation: then only live invitations may rate it (revoking
        the last one closes the panel, it does not reopen it to anyone)."""
        return bool(self.scalar("SELECT count(*) FROM invitations WHERE goal = ?", [goal]))

    def invitation(self, token_hash: str, goal: str | None = None) -> dict[str, Any] | None:
        """The live invitation with this token hash (of ``goal``, when given): goal, rater, created_at."""
        rows = self.query("SELECT goal, rater, created_at FROM invitations WHERE token_hash = ? "
                          "AND revoked_at IS NULL AND (? IS NULL OR goal = ?)", [token_hash, goal, goal])
        return rows[0] if rows else None

    def put_invited_rating(self, goal: str, token_hash: str, item_id: str, criterion: str, *,
                           score: float | None = None, choice: str | None = None) -> str:
        """Save one rating under the rater a live invitation of the goal is bound to, checking the
        invitation in the same transaction as the write: a revoked or unknown one saves nothing
        (HarnessError). Returns the rater name the rating is stored under."""
        ts = now()
        with self.transaction() as con:
            rater = _invited_rater(con, goal, token_hash)
            con.execute(
                "INSERT INTO ratings VALUES (?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (goal, rater, item_id, criterion) DO UPDATE SET "
                "score = excluded.score, choice = excluded.choice, updated_at = excluded.updated_at",
                [goal, rater, item_id, criterion, score, choice, ts, ts])
        return rater


def _invited_rater(con: duckdb.DuckDBPyConnection, goal: str, token_hash: str) -> str:
    """The rater a live invitation of ``goal`` is bound to, read in the caller's transaction (so a
    revocation between the check and the write cannot slip through); HarnessError when revoked."""
    row = con.execute("SELECT rater FROM invitations WHERE token_hash = ? AND goal = ? AND revoked_at IS NULL",
                      [token_hash, goal]).fetchone()
    if row is None:
        raise HarnessError("this invitation was revoked (or never existed): nothing was saved")
    return str(row[0])
