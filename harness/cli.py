"""The ``harness`` command line.

Exit codes everywhere: 0 success (for ``run``: at least one candidate meets the goal),
1 a finding or verdict the user must act on, 2 invalid input (file:line:field printed).
"""
from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

import typer
from rich.console import Console

from harness.errors import HarnessError, InputError

app = typer.Typer(add_completion=False, no_args_is_help=True, rich_markup_mode=None,
                  help="Evaluation-first harness: declare success goals, then check data, train, score and decide.")
if TYPE_CHECKING:
    from harness.goals import Goal
    from harness.store import Store

console = Console()
err_console = Console(stderr=True, soft_wrap=True)  # file:line messages stay on one line

DbOpt = typer.Option(None, "--db", help="DuckDB store path (default $HARNESS_DB or .harness/harness.duckdb).")


def _version(value: bool) -> None:
    if value:
        from harness import __version__

        print(f"harness {__version__}")
        raise typer.Exit()


@app.callback()
def _main(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                       help="Print the version and exit.")) -> None:
    """Evaluation-first harness: declare success goals, then check data, train, score and decide."""


def _store(db: Optional[Path]) -> Store:
    from harness.store import Store

    return Store(db)


def _existing_store(db: Optional[Path]) -> Store:
    """A store a read-only command opens: a missing --db file is an error, not a new empty store."""
    from harness.store import default_db_path

    path = Path(db) if db is not None else default_db_path()
    if not path.exists():
        _fail(HarnessError(f"no store at {path}: pass --db with the file `harness run` wrote"))
    return _store(db)


def _fail(exc: Exception) -> None:
    if isinstance(exc, InputError):
        err_console.print(f"[bold red]invalid input[/] ({len(exc.problems)} problem(s)):")
        for p in exc.problems:
            err_console.print(f"  {p}", markup=False, highlight=False)
    else:
        err_console.print(f"[bold red]error:[/] {exc}", highlight=False)
    raise typer.Exit(2)


def _load_goal(path: Path):
    from harness.goals import load_goal

    try:
        return load_goal(path)
    except HarnessError as exc:
        _fail(exc)


@app.command()
def init(name: str = typer.Argument(..., help="Goal name; writes goals/NAME.yaml and rubrics/NAME.yaml."),
         force: bool = typer.Option(False, help="Overwrite existing files.")) -> None:
    """Write a commented starter goal and rubric."""
    from harness.templates import write_starter

    try:
        paths = write_starter(name, Path.cwd(), force=force)
    except HarnessError as exc:
        _fail(exc)
    for p in paths:
        console.print(f"wrote {p}")
    console.print("Next: put your JSONL data where the goal's data.path points, then "
                  f"`harness check goals/{name}.yaml`.")


def _token_counter(goal):
    """The goal's model tokenizer when it is available locally, else whitespace."""
    try:
        from transformers import AutoTokenizer

        from harness.backends.modelhub import resolve_model

        resolved = resolve_model(goal.model)
        tok = AutoTokenizer.from_pretrained(str(resolved.path), local_files_only=True)
    except Exception as exc:  # noqa: BLE001 - any failure falls back, and the report says so
        def whitespace(text: str) -> int:
            return len(text.split())

        whitespace.__name__ = f"whitespace (model tokenizer unavailable: {exc})"[:120]
        return whitespace, whitespace.__name__

    def count(text: str) -> int:
        return len(tok.encode(text, add_special_tokens=False))

    count.__name__ = f"tokenizer of {resolved.name}"
    return count, count.__name__


@app.command()
def check(goal_path: Path = typer.Argument(..., help="Goal YAML file."),
          as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
          tokenizer: bool = typer.Option(True, help="Count tokens with the goal's model tokenizer.")) -> None:
    """Check the goal (metrics, candidates and their options, judge, panel) and its data: formats,
    counts, lengths, labels, PII, lint, duplicates, volume."""
    from harness.data.formats import read_jsonl
    from harness.data.quality import check_examples, render_report

    from harness.runner.validate import validate_goal

    goal = _load_goal(goal_path)
    problems = []
    try:
        validate_goal(goal)  # the goal's names and options, as `harness run` checks them first
    except InputError as exc:
        problems = list(exc.problems)
    if not problems:
        examples, problems = read_jsonl(goal.data_path(), None if goal.data.format == "auto" else goal.data.format)
    if problems:
        if as_json:
            print(json.dumps({"goal": goal.goal, "valid": False,
                              "problems": [p.__dict__ for p in problems]}, indent=2))
            raise typer.Exit(2)
        _fail(InputError(problems))
    if tokenizer:
        count, how = _token_counter(goal)
    else:
        def count(text: str) -> int:
            return len(text.split())

        count.__name__ = how = "whitespace (--no-tokenizer)"
    report = check_examples(examples, count_tokens=count, blocking=set(goal.data.blocking),
                            near_dup_threshold=goal.data.near_duplicate_threshold)
    if as_json:
        out = report.to_dict()
        out.update({"goal": goal.goal, "valid": True, "data": str(goal.data_path()), "token_counter": how})
        print(json.dumps(out, indent=2, default=str))
    else:
        console.print(f"[bold]{goal.goal}[/]: {goal.data_path()} (tokens: {how})")
        console.print(render_report(report))
    raise typer.Exit(report.exit_code)


@app.command()
def scrub(goal_path: Path = typer.Argument(..., help="Goal YAML file."),
          out: Optional[Path] = typer.Option(None, help="Output JSONL (default: DATA.scrubbed.jsonl beside the data).")) -> None:
    """Write a PII-scrubbed copy of the goal's data; the original is never modified."""
    from harness.data.pii import scrub_file

    goal = _load_goal(goal_path)
    src = goal.data_path()
    dst = out or src.with_name(src.stem + ".scrubbed.jsonl")
    try:
        report = scrub_file(src, dst, None if goal.data.format == "auto" else goal.data.format)
    except HarnessError as exc:
        _fail(exc)
    counts = getattr(report, "counts", {}) or {}
    console.print(f"wrote {dst}: " + (", ".join(f"{k}: {v}" for k, v in sorted(counts.items())) or "no PII found"))


@app.command()
def split(goal_path: Path = typer.Argument(..., help="Goal YAML file."),
          out: Optional[Path] = typer.Option(None, help="Folder for train/validation/test JSONL (default .harness/splits/GOAL)."),
          reseal: bool = typer.Option(False, help="Accept a changed test set and record the new seal."),
          db: Optional[Path] = DbOpt,
          as_json: bool = typer.Option(False, "--json", help="Print the split's manifest (counts, seal, leakage, "
                                                            "files) as JSON.")) -> None:
    """Split deterministically by content hash; seal the test set; report train/test leakage."""
    from harness.data.split import prepare, write_splits

    goal = _load_goal(goal_path)
    try:
        prepared = prepare(goal, _store(db), reseal=reseal)
    except HarnessError as exc:
        _fail(exc)
    paths = write_splits(prepared, out or Path(".harness") / "splits" / goal.goal)
    manifest = prepared.manifest()
    manifest["files"] = {k: str(v) for k, v in paths.items()}
    if as_json:
        print(json.dumps(manifest, indent=2))
        return
    counts = manifest["counts"]
    console.print(f"[bold]{goal.goal}[/]: train {counts['train']}, validation {counts['validation']}, "
                  f"test {counts['test']} → {paths['train'].parent}")
    seal_msg = {"new": "test set sealed", "unchanged": "test set matches its seal",
                "resealed": "[yellow]test set RESEALED (recorded)[/]"}[prepared.sealed]
    console.print(f"{seal_msg}: {prepared.test_hash[:16]}")
    if prepared.scrubbed:
        console.print("PII scrubbed: " + ", ".join(f"{k} {v}" for k, v in sorted(prepared.scrubbed.items())))
    if prepared.leakage:
        action = "dropped from train/validation" if goal.data.leakage == "drop" else "flagged (set data.leakage: drop to remove)"
        console.print(f"[yellow]leakage[/]: {len(prepared.leakage)} train/validation example(s) duplicate test ones, {action}")
        for p in prepared.leakage[:10]:
            kind = "exact" if p["exact"] else f"near (jaccard {p['jaccard']})"
            console.print(f"  line {p['train_line']} ≈ test line {p['test_line']}: {kind}")
    else:
        console.print("no train/test leakage found")


@app.command()
def run(goal_path: Path = typer.Argument(..., help="Goal YAML file."),
        only: Optional[list[str]] = typer.Option(None, "--only", help="Run only this candidate (repeatable); baselines of relative criteria come along."),
        dry_run: bool = typer.Option(False, "--dry-run", help="Print the plan (steps, stored work, API cost estimate) and stop."),
        reseal: bool = typer.Option(False, help="Accept a changed test set and record the new seal."),
        db: Optional[Path] = DbOpt,
        progress: bool = typer.Option(True, help="Progress bars (on standard error): generation, training, "
                                                 "judging, index building."),
        quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress and no step lines: only the result."),
        verbose: bool = typer.Option(False, "--verbose", "-v", help="Also show the libraries' own logs, warnings "
                                                                  "and progress bars (hidden by default)."),
        as_json: bool = typer.Option(False, "--json", help="Print the results JSON at the end, and nothing else "
                                                           "on standard output."),
        executor: str = typer.Option("local", "--executor", help="Where candidates are trained and generated: local "
                                                                 "(this process, one after another) or ray (one Ray "
                                                                 "task each; this process alone writes the store)."),
        address: Optional[str] = typer.Option(None, "--address", help="With --executor ray: the Ray cluster "
                                                                      "(e.g. ray://head:10001 or auto); default: "
                                                                      "start a Ray instance on this machine.")) -> None:
    """Train, generate, score, judge and decide. Exit 0 when a candidate meets the goal, 1 when none does."""
    from harness import progress as bars
    from harness.liblog import route_library_output
    from harness.runner import plan, run_goal, validate_goal
    from harness.runner.executor import check_executor

    route_library_output(verbose)
    progress = progress and not quiet
    bars.configure(enabled=progress)
    goal = _load_goal(goal_path)
    store = _store(db)
    try:
        check_executor(executor, address)
        if dry_run:
            from harness.data.split import prepare

            validate_goal(goal)
            prepared = prepare(goal, store, reseal=reseal, record=False)
            _print_plan(goal, plan(goal, store, prepared, only=only), prepared)
            return
        result = run_goal(goal, store, only=only, reseal=reseal, progress=progress,
                          console=None if as_json or quiet else console, executor=executor, address=address)
    except HarnessError as exc:
        _fail(exc)
    if as_json:
        from harness.results import results_dict

        print(json.dumps(results_dict(store, goal.goal, result.run_id), indent=2))
    else:
        _print_run_summary(goal, goal_path, store, db, result)
    raise typer.Exit(result.exit_code)


def _print_run_summary(goal: Goal, goal_path: Path, store: Store, db: Optional[Path], result: Any) -> None:
    """The verdicts, what the run did, and the next commands (with the --db it was given)."""
    import shlex

    _print_verdicts(goal, store, result.run_id)
    c = result.counts
    console.print(f"run {result.run_id}: {result.seconds:.1f} s; generated {c['generated']}, reused {c['reused']}"
                  + (f", [yellow]failed {c['generations_failed']}[/]" if c.get("generations_failed") else "")
                  + f"; judged {c['judged']}, reused {c['judgments_reused']}"
                  + (f", [yellow]failed {c['judgments_failed']}[/]" if c.get("judgments_failed") else "")
                  + f"; trained {c['trained']}, "
                  f"adapters reused {c['adapters_reused']}")
    db_arg = f" --db {shlex.quote(str(store.path))}" if db is not None else ""
    console.print(f"Next: harness results {shlex.quote(str(goal_path))}{db_arg}  ·  harness app{db_arg}  "
                  f"(store: {store.path})", highlight=False, soft_wrap=True)


def _print_plan(goal, steps, prepared) -> None:
    from rich.table import Table

    t = Table(title=f"plan for {goal.goal}: {len(prepared.test)} test examples (sealed: {prepared.sealed})")
    for col in ("candidate", "kind", "step", "to do", "stored", "est. cost (USD)", "note"):
        t.add_column(col, justify="right" if col in ("to do", "stored") else "left")
    total = 0.0
    for s in steps:
        total += s.est_cost_usd
        t.add_row(s.candidate, s.kind, s.action, str(s.todo), str(s.cached) if s.cached else "-",
                  f"{s.est_cost_usd:.4f}" if s.est_cost_usd else "-", s.note)
    console.print(t)
    todo = sum(s.todo for s in steps if s.action in ("train", "generate", "judge"))
    console.print(f"{todo} train/generate/judge units to do; estimated API cost ${total:.4f} "
                  "(stored predictions and judgments are reused and cost nothing)")


_BADGE = {"pass": "[green]pass[/]", "fail": "[red]fail[/]", "inconclusive": "[yellow]inconclusive[/]"}


def _fmt(x) -> str:
    return "-" if x is None else f"{x:.3g}"


def _in_percent(v: dict) -> bool:
    """A stored change criterion is in percent unless it says it is absolute. Runs stored before
    m014 say nothing; their label and their value cell both read in percent, as the value cell
    always read them (the label read them as absolute, so the two disagreed)."""
    return v["op"] in ("improve_by", "reduce_by") and v.get("relative") is not False


def _stored_criteria(res: dict) -> list:
    """The goal's criteria as the stored verdicts give them (for a goal named without its file)."""
    from types import SimpleNamespace

    first = max(res["candidates"], key=lambda c: len(c["criteria"]), default={"criteria": []})
    return [SimpleNamespace(metric=v["metric"], op=v["op"], baseline=v["baseline"],
                            **{v["op"]: f"{v['threshold'] * 100:.4g}%" if _in_percent(v)
                               and v["threshold"] is not None else v["threshold"]})
            for v in first["criteria"]]


_OPS = {"at_least": ">=", "at_most": "<=", "reduce_by": "reduce by", "improve_by": "improve by"}


def _print_verdicts(goal: Goal | None, store: Store, run_id: str, res: dict | None = None) -> None:
    """The verdict table, one row per candidate and criterion, readable at 80 columns: the
    interval methods and levels, costs and earlier runs are said under it, not in its cells."""
    from harness.results import GOAL_CHANGED, goal_changed, results_dict

    res = res or results_dict(store, goal.goal, run_id)
    # Labels and level are what the run decided on, not what the goal file says now.
    success = _stored_criteria(res) or (goal.success if goal is not None else [])
    rules = sorted({v["multiplicity"] for c in res["candidates"] for v in c["criteria"] if v.get("multiplicity")})
    stored = res["run"].get("decided_under")
    confidence = res["run"].get("confidence") or (goal.confidence if goal is not None else None)
    level = f"{confidence:.0%} confidence" if confidence else ""
    console.print(f"[bold]{res['goal']}[/]: verdicts of run {run_id}", highlight=False, soft_wrap=True)
    if level or rules:
        console.print(", ".join(filter(None, [level, *rules])), highlight=False)
    if goal is not None and goal_changed(stored, goal):
        console.print(f"[yellow]{GOAL_CHANGED}[/]", highlight=False)
    console.print(_verdict_table(success, res))
    levels: dict[str, set[float]] = {}
    for v in (v for c in res["candidates"] for v in c["criteria"] if v.get("interval") and v.get("confidence")):
        levels.setdefault(f"{v['metric']} {v['interval'].split(' ')[0]}", set()).add(v["confidence"])
    if levels:
        console.print("intervals: " + "; ".join(f"{k} ({', '.join(f'{x * 100:.4g}%' for x in sorted(ls))})"
                                                for k, ls in sorted(levels.items())), highlight=False)
    for left in res.get("left_out") or []:
        console.print(f"  {left['name']}: left out, run it again; its result in run {left['run_id']} "
                      f"{left['why']}", highlight=False, soft_wrap=True)
    for cand in res["candidates"]:
        if cand.get("from_earlier_run"):
            console.print(f"  {cand['name']}: result from run {cand['run_id']} (a later run left it out)",
                          highlight=False, soft_wrap=True)
        for v in cand["criteria"]:
            if v["status"] == "inconclusive" and v.get("detail"):
                console.print(f"  {cand['name']} / {v['metric']}: {v['detail']}", highlight=False)
    if res["best_candidate"]:
        best = next(c for c in res["candidates"] if c["name"] == res["best_candidate"])
        console.print(f"[bold green]best candidate: {best['name']}[/] (cost ${best.get('cost_usd') or 0:.4f}"
                      + (f", trained in {best['train_seconds']:.0f} s" if best.get("train_seconds") else "") + ")")
    else:
        console.print("[bold red]no candidate meets the goal[/]")


def _verdict_table(success: list, res: dict):
    """candidate | criterion | value [interval] | verdict | meets: one row per criterion; a
    candidate's cost goes in its name cell's later lines."""
    from rich import box
    from rich.table import Table

    t = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
    t.add_column("candidate", no_wrap=True)
    t.add_column("criterion", min_width=12)  # the one column that wraps
    t.add_column("value \\[interval]", no_wrap=True)
    t.add_column("verdict", no_wrap=True)
    t.add_column("meets", no_wrap=True)
    labels = [f"{c.metric} {_OPS[c.op]} {getattr(c, c.op)}" + (f" vs {c.baseline}" if c.baseline else "")
              for c in success]
    for cand in res["candidates"]:
        notes = _cost_notes(cand)
        n = max(len(success), 1)
        names = [cand["name"]] + notes[:n - 1]
        names[-1] = "\n".join([names[-1], *notes[n - 1:]])
        for i in range(n):
            v = cand["criteria"][i] if i < len(cand["criteria"]) else None
            value = "-" if v is None or v["value"] is None else _value_cell(v)
            badge = "-" if v is None else _BADGE.get(v["status"], v["status"])
            meets = ("[green]yes[/]" if cand["meets_goal"] else "no") if i == 0 else ""
            label = labels[i] if i < len(labels) else "-"
            if v is not None and v.get("judge_validated") is False:
                label += "\n[yellow]judge not validated[/]"
            t.add_row(names[i] if i < len(names) else "", label, value, badge, meets, end_section=i == n - 1)
    return t


def _value_cell(v: dict) -> str:
    """``0.933 [0.823, 0.985]``; a relative criterion's change in percent (``+180% [+95.4%, +350%]``),
    an absolute one's signed in the metric's units (``+0.8 [+0.3, +1.2]``)."""
    if v["op"] in ("improve_by", "reduce_by"):
        if not _in_percent(v):
            signed = lambda x: "-" if x is None else f"{x:+.3g}"  # noqa: E731
            return f"{signed(v['value'])} [{signed(v['ci'][0])}, {signed(v['ci'][1])}]"
        pct = lambda x: "-" if x is None else f"{x * 100:+.3g}%"  # noqa: E731
        return f"{pct(v['value'])} [{pct(v['ci'][0])}, {pct(v['ci'][1])}]"
    return f"{_fmt(v['value'])} [{_fmt(v['ci'][0])}, {_fmt(v['ci'][1])}]"


def _cost_notes(cand: dict) -> list[str]:
    notes = []
    if cand.get("cost_usd"):
        notes.append(f"[dim]${cand['cost_usd']:.4f}[/]")
    if cand.get("train_seconds"):
        notes.append(f"[dim]train {cand['train_seconds']:.0f} s[/]")
    if cand.get("from_earlier_run"):
        notes.append("[dim](earlier run)[/]")
    return notes


@app.command()
def results(goal_path: Path = typer.Argument(..., help="Goal YAML file (or goal name with --db)."),
            run_id: Optional[str] = typer.Option(None, "--run", help="One run's results (default: each candidate's "
                                                                     "latest finished result)."),
            db: Optional[Path] = DbOpt,
            as_json: bool = typer.Option(False, "--json", help="Same as --format json."),
            fmt: str = typer.Option("table", "--format", help="table, json, jsonl, csv or parquet (json: the stable "
                                                              "shape of harness/results.py; the others: one row per "
                                                              "candidate and criterion, or per example with --samples)."),
            samples: bool = typer.Option(False, "--samples", help="Per-example rows: input, reference, output, "
                                                                  "scores, judgments, ratings."),
            output: Optional[Path] = typer.Option(None, "--output", "-o", help="Write to this file (default: stdout; "
                                                                               "parquet needs a file).")) -> None:
    """Show results: each candidate's latest finished result (saying which run it came from), or
    one run's with --run. Exit 1 when the latest run is unfinished or the test set was sealed again
    since, 2 when nothing is stored."""
    from harness.results import FORMATS, results_dict, sample_rows, write_results

    fmt = "json" if as_json else fmt
    if fmt not in FORMATS:
        _fail(HarnessError(f"--format {fmt!r}: use one of {', '.join(FORMATS)}"))
    goal_name = _goal_name(goal_path)
    store = _existing_store(db)
    if run_id and store.run(run_id) is None:
        _fail(HarnessError(f"no run {run_id!r} in {store.path}; `harness runs {goal_name}` lists them"))
    res = results_dict(store, goal_name, run_id)
    if res is None:
        err_console.print(f"no runs stored for goal {goal_name!r} in {store.path}")
        raise typer.Exit(2)
    if fmt != "table":
        goal = _load_goal(goal_path) if goal_path.is_file() else _stored_goal(store, goal_name)
        if fmt == "json" and goal is not None and goal.human is not None:
            res["human"] = _human_summary(store, goal, res)  # the same from a goal file or its name
        try:
            write_results(res, sample_rows(store, res) if samples else None, fmt, output or sys.stdout)
        except HarnessError as exc:
            _fail(exc)
    else:
        goal = _load_goal(goal_path) if goal_path.is_file() else None
        _print_verdicts(goal, store, res["run"]["id"], res)
    if res.get("test_set_resealed"):
        from harness.results import RESEALED

        err_console.print(f"[yellow]{RESEALED}[/]", highlight=False)
        raise typer.Exit(1)
    if res["unfinished"]:
        err_console.print(f"[yellow]unfinished: the latest run {res['latest_run']['id']} is "
                          f"{res['latest_run']['status']}; the results are each candidate's latest finished "
                          f"one[/]", highlight=False)
        raise typer.Exit(1)


@app.command()
def runs(goal_path: Path = typer.Argument(..., help="Goal YAML file (or goal name with --db)."),
         db: Optional[Path] = DbOpt,
         as_json: bool = typer.Option(False, "--json", help="Print the runs as JSON.")) -> None:
    """List the goal's runs, newest first: id, when, status, candidates, git commit, verdict summary."""
    from rich.table import Table

    goal_name = _goal_name(goal_path)
    store = _existing_store(db)
    rows = []
    for r in store.runs(goal_name):
        cands = store.candidates(r["run_id"])
        rows.append({"id": r["run_id"], "started_at": str(r["started_at"]), "status": r["status"],
                     "candidates": [c["name"] for c in cands], "git_commit": (r["git_commit"] or "")[:10],
                     "meets_goal": [c["name"] for c in cands if c["meets_goal"]], "best": r["best_candidate"]})
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    if not rows:
        err_console.print(f"no runs stored for goal {goal_name!r} in {store.path}")
        raise typer.Exit(2)
    from rich import box

    t = Table(title=f"runs of {goal_name}", box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
    # A run id is never cut or wrapped (it is what `results --run` takes); candidates wrap instead.
    t.add_column("run", no_wrap=True, min_width=max(len(r["id"]) for r in rows))
    t.add_column("started", no_wrap=True, min_width=16)
    t.add_column("status", no_wrap=True, min_width=max(len(r["status"]) for r in rows))
    t.add_column("git", no_wrap=True)
    t.add_column("candidates (* meets the goal)")
    for r in rows:
        t.add_row(r["id"], r["started_at"][:16], r["status"], r["git_commit"] or "-",
                  ", ".join(c + ("*" if c in r["meets_goal"] else "") for c in r["candidates"]))
    console.print(t)


def _stored_goal(store: Store, name: str) -> Goal | None:
    """The goal as its latest run stored it (for a goal named without its file), with its file's
    folder when that file still exists (its rubrics are found beside it, as from the file)."""
    from harness.app.data import goal_from_run

    run = store.latest_run(name)
    goal = goal_from_run(run)
    if goal is not None and run and run.get("goal_path") and Path(run["goal_path"]).is_file():
        goal.source, goal.root = str(run["goal_path"]), str(Path(run["goal_path"]).resolve().parent)
    return goal


def _human_summary(store: Store, goal: Goal, res: Any) -> dict:
    """Live human-panel scores (per candidate and metric) and agreement statistics."""
    from harness import panel
    from harness.app.data import agreement_report

    if goal.human is None:
        return {}
    items = panel.goal_items(store, goal)
    ratings = store.ratings(goal.goal)
    metrics = [f"human.{r}" for r in goal.human.rubrics] + [c.metric for c in goal.success if c.metric.startswith("human.")]
    scores: dict = {}
    for metric in dict.fromkeys(metrics):
        for row in panel.human_aggregates(ratings, items, metric, confidence=goal.confidence):
            scores.setdefault(row["candidate"], {})[metric] = {
                "value": row["value"], "ci": [row["ci_low"], row["ci_high"]], "n": row["n"],
                "n_ratings": row["extra"]["n_ratings"]}
    rubrics_dir = Path(goal.root).parent / "rubrics" if goal.root else Path("rubrics")
    return {"ratings": len(ratings), "items": len(items), "scores": scores,
            "agreement": agreement_report(store, goal, rubrics_dir if rubrics_dir.exists() else Path("rubrics"))}


def _goal_name(goal_path: Path) -> str:
    if goal_path.suffix in (".yaml", ".yml") or goal_path.exists():
        return _load_goal(goal_path).goal
    return str(goal_path)


@app.command()
def report(goal_path: Path = typer.Argument(..., help="Goal YAML file."),
           out: Optional[Path] = typer.Option(None, help="Output file (.html or .md; default .harness/reports/GOAL.html)."),
           run_id: Optional[str] = typer.Option(None, "--run", help="Report on this run (default: each "
                                                                    "candidate's latest finished result)."),
           db: Optional[Path] = DbOpt) -> None:
    """Write a self-contained HTML (or Markdown) report with plots."""
    from harness.report import write_report

    goal = _load_goal(goal_path)
    try:
        path = write_report(_existing_store(db), goal, out or Path(".harness") / "reports" / f"{goal.goal}.html",
                            run_id)
    except HarnessError as exc:
        _fail(exc)
    console.print(f"wrote {path}")


@app.command()
def export(goal_path: Path = typer.Argument(..., help="Goal YAML file."),
           candidate: str = typer.Argument(..., help="Trained candidate name."),
           out: Optional[Path] = typer.Option(None, help="Output folder (default export/GOAL/CANDIDATE)."),
           merged: bool = typer.Option(False, help="Merge the adapter into the base and write a full model."),
           db: Optional[Path] = DbOpt) -> None:
    """Export a trained adapter (or a merged model) with the commands to serve it (vLLM, Ollama, peft)."""
    from harness.train.export import export_adapter

    goal = _load_goal(goal_path)
    _exportable(goal, candidate)
    store = _existing_store(db)
    artifact = store.latest_artifact(goal.goal, candidate)
    if artifact is None:
        err_console.print(f"no trained adapter for candidate {candidate!r} of goal {goal.goal!r} in {store.path}; "
                          "run `harness run` first", highlight=False)
        raise typer.Exit(2)
    try:
        res = export_adapter(artifact, out or Path("export") / goal.goal / candidate, merged=merged)
    except HarnessError as exc:
        _fail(exc)
    console.print(f"wrote {res.path}")
    for name, cmd in res.commands.items():
        console.print(f"[bold]{name}[/]:")
        # Verbatim, never wrapped at the terminal's width: a wrapped line of Python is not Python.
        console.print(cmd.rstrip("\n"), soft_wrap=True, markup=False, highlight=False)


def _exportable(goal: Goal, candidate: str) -> None:
    """Exit 2 unless ``candidate`` is one of the goal's training candidates (with did-you-mean)."""
    from harness.kinds import kind_of
    from harness.registry import did_you_mean

    names = [c.name for c in goal.candidates]
    trainable = [c.name for c in goal.candidates if kind_of(c).trains]
    if candidate not in names:
        err_console.print(f"{goal.source}: no candidate {candidate!r}{did_you_mean(candidate, names)}; "
                          f"trained candidates: {', '.join(trainable) or 'none'}")
    elif candidate not in trainable:
        err_console.print(f"candidate {candidate!r} is a {goal.candidate(candidate).kind} candidate: nothing trained "
                          f"to export; trained candidates: {', '.join(trainable) or 'none'}")
    else:
        return
    raise typer.Exit(2)


@app.command()
def estimate(goal_path: Path = typer.Argument(..., help="Goal YAML file."),
             params: Optional[str] = typer.Option(None, "--params", "--model-params",
                                                  help="Model size to project to, e.g. 8B or 8e9 "
                                                                         "(default: the goal's model)."),
             device: Optional[str] = typer.Option(None, help="a100, h100, h200, l40s, a10g, l4, t4, rtx4090 "
                                                             "(default: the goal's cost.device)."),
             gpus: Optional[int] = typer.Option(None, help="GPUs (default: the goal's cost.gpus)."),
             epochs: Optional[float] = typer.Option(None, help="Passes over the train split (default: the goal's "
                                                              "first training candidate, else 3)."),
             utilisation: Optional[float] = typer.Option(None, help="Model FLOPs utilisation (default 0.35)."),
             gpu_hour_usd: Optional[float] = typer.Option(None, "--gpu-hour-usd", help="Price per GPU-hour."),
             db: Optional[Path] = DbOpt) -> None:
    """What fine-tuning on this goal's train split costs, projected from FLOPs (6 x parameters x
    tokens) onto a device, with every assumption printed; and what stored runs measured."""
    from harness import cost
    from harness.data.split import prepare

    goal = _load_goal(goal_path)
    spec = goal.cost
    store = _store(db)
    try:
        prepared = prepare(goal, store, record=False)
        count, how = _token_counter(goal)
        tokens = sum(count(m["content"]) for ex in prepared.train for m in ex.prompt) + \
            sum(count(ex.reference) for ex in prepared.train)
        n_params = cost.parse_params(params) if params else _model_params(goal)
        if epochs is None:
            epochs = next((float(c.options["epochs"]) for c in goal.candidates
                           if "epochs" in c.options and not isinstance(c.options["epochs"], list)), 3.0)
        est = cost.estimate(n_params, tokens, epochs, device=device or spec.device, gpus=gpus or spec.gpus,
                            mfu=utilisation if utilisation is not None else spec.utilisation,
                            usd_per_gpu_hour=gpu_hour_usd if gpu_hour_usd is not None else spec.gpu_hour_usd)
    except HarnessError as exc:
        _fail(exc)
    console.print(f"[bold]{goal.goal}[/]: {len(prepared.train)} train examples, {tokens:,} tokens a pass "
                  f"(counted with the {how})", highlight=False)
    console.print(est.describe(), highlight=False)
    for line in est.assumptions:
        console.print(f"  assumes: {line}", highlight=False)
    last = store.latest_run(goal.goal, finished_only=True) if store.path.exists() else None
    for m in cost.measured(store.candidates(last["run_id"]) if last else []):
        console.print(f"  measured: {m['candidate']} trained on {m['tokens']:,} tokens in {m['seconds']:.0f} s "
                      f"({m['tokens_per_s'] or 0:,.0f} tokens/s) on this machine", highlight=False)


def _model_params(goal) -> float:
    """Parameters of the goal's local model, from its safetensors headers (no weights loaded)."""
    from harness.backends.modelhub import resolve_model

    try:
        from safetensors import safe_open

        folder = resolve_model(goal.model).path
        total = 0
        for f in sorted(Path(folder).glob("*.safetensors")):
            with safe_open(str(f), "np") as fh:
                for name in fh.keys():
                    shape = fh.get_slice(name).get_shape()
                    total += math.prod(shape)
    except HarnessError as exc:
        raise HarnessError(f"{exc}; give the model size with --params (e.g. 8B)") from None
    if not total:
        raise HarnessError(f"no safetensors weights in {folder}; give the model size with --params (e.g. 8B)")
    return float(total)


ratings_app = typer.Typer(no_args_is_help=True, help="Human ratings made outside the app: import a CSV or "
                                                        "JSON Lines file into the panel, export the panel's ratings.")
app.add_typer(ratings_app, name="ratings")
RubricsOpt = typer.Option(Path("rubrics"), "--rubrics", help="Rubrics folder (default rubrics/, else the one beside "
                                                            "the goal's folder).")


@ratings_app.command("import")
def ratings_import(goal_path: Path = typer.Argument(..., help="Goal YAML file."),
                   file: Path = typer.Argument(..., help="Ratings file, .csv or .jsonl: one rating a row."),
                   rubrics: Path = RubricsOpt,
                   db: Optional[Path] = DbOpt,
                   mapping: list[str] = typer.Option([], "--map", help="COLUMN=FIELD: read a tool's column as a "
                                                                       "rating field (annotator=rater); COLUMN= "
                                                                       "ignores it. Repeatable."),
                   constants: list[str] = typer.Option([], "--set", help="FIELD=VALUE for a field the file lacks "
                                                                        "(rubric=tone). Repeatable.")) -> None:
    """Import a ratings file into the goal's human panel, whole or not at all.

    The file is checked first (every bad row with file:line, exit 2, nothing stored), then written
    in one transaction; importing the same file again changes nothing. Columns that are not rating
    fields (an annotation tool's ids, times, metadata) are ignored and named."""
    from harness.ratings_io import import_ratings, parse_map, parse_set
    from harness.runner.context import rubrics_dir_for

    goal = _load_goal(goal_path)
    try:
        plan = import_ratings(goal, _store(db), file, rubrics_dir_for(goal, rubrics), parse_map(mapping),
                              parse_set(constants))
    except HarnessError as exc:
        _fail(exc)
    console.print(plan.summary(), highlight=False, markup=False)
    if plan.note():
        console.print(plan.note(), highlight=False, markup=False, soft_wrap=True)


@ratings_app.command("export")
def ratings_export(goal_path: Path = typer.Argument(..., help="Goal YAML file (or goal name with --db)."),
                   file: Optional[Path] = typer.Argument(None, help="Output .csv or .jsonl (default: JSON Lines "
                                                                    "on stdout)."),
                   db: Optional[Path] = DbOpt) -> None:
    """Write the goal's human ratings in the shape `ratings import` reads, one rating a row."""
    from harness.ratings_io import export_rows, file_format, write_rows

    goal_name = _goal_name(goal_path)
    store = _existing_store(db)
    try:
        if file is not None:
            file_format(file)
        rows = export_rows(store, goal_name)
        write_rows(rows, file, sys.stdout)
    except HarnessError as exc:
        _fail(exc)
    if not rows:
        err_console.print(f"no ratings stored for goal {goal_name!r} in {store.path}", markup=False, highlight=False)
    elif file is not None:
        raters = len({r["rater"] for r in rows})
        console.print(f"exported {len(rows)} rating(s) from {raters} rater(s) to {file}; goal {goal_name}",
                      markup=False, highlight=False)


panel_app = typer.Typer(no_args_is_help=True, help="Who may rate a goal's human panel: per-rater invitations, "
                                                     "each a token bound to one rater's name (the store keeps its "
                                                     "hash, never the token).")
app.add_typer(panel_app, name="panel")
PanelGoalArg = typer.Argument(..., help="Goal YAML file (or goal name).")
RaterArg = typer.Argument(..., help="The rater's name; compared and stored normalised (NFKC, casefolded, "
                                    "invisible characters dropped, whitespace collapsed).")


def _panel_goal(goal_path: Path) -> str:
    """The goal's name; a goal file must have a ``human:`` section."""
    if goal_path.suffix in (".yaml", ".yml") or goal_path.exists():
        goal = _load_goal(goal_path)
        if goal.human is None:
            _fail(HarnessError(f"{goal_path}: goal {goal.goal!r} has no human panel; add a `human:` section first"))
        return goal.goal
    return str(goal_path)


def _panel_rater(name: str) -> str:
    from harness.panel import rater_name

    try:
        return rater_name(name)
    except HarnessError as exc:
        _fail(exc)


@panel_app.command("invite")
def panel_invite(goal_path: Path = PanelGoalArg, name: str = RaterArg,
                 url: str = typer.Option("http://localhost:8501", "--url", help="The app's address, for the link."),
                 db: Optional[Path] = DbOpt,
                 as_json: bool = typer.Option(False, "--json", help="Print goal, rater, token and link as JSON.")) -> None:
    """Invite one rater: print a token and a link bound to their name, shown this once.

    Once a goal has an invitation only invitations rate it (its `tokens:` no longer let anyone in), each
    under the name it is bound to. Inviting the same rater again revokes their earlier invitation."""
    from harness.panel import invitation_hash, invitation_link, new_invitation_token

    goal_name = _panel_goal(goal_path)
    rater = _panel_rater(name)
    token = new_invitation_token()
    replaced = _store(db).put_invitation(goal_name, rater, invitation_hash(token))
    link = invitation_link(token, url)
    if as_json:
        print(json.dumps({"goal": goal_name, "rater": rater, "token": token, "link": link, "replaced": replaced}))
        return
    note = " (their earlier invitation is revoked)" if replaced else ""
    console.print(f"invited rater {rater!r} to goal {goal_name}{note}", markup=False, highlight=False)
    print(f"token: {token}")  # plain print: a terminal-width wrap must not break the token or the link
    print(f"link:  {link}")
    console.print(f"The token is shown only now (the store keeps its hash). Revoke it with "
                  f"`harness panel revoke {goal_name} '{rater}'`.", markup=False, highlight=False)


@panel_app.command("revoke")
def panel_revoke(goal_path: Path = PanelGoalArg, name: str = RaterArg, db: Optional[Path] = DbOpt) -> None:
    """Revoke a rater's invitation at once: their open sessions save nothing more (ratings made are kept)."""
    from harness.registry import did_you_mean

    goal_name = _panel_goal(goal_path)
    rater = _panel_rater(name)
    store = _store(db)
    n = store.revoke_invitations(goal_name, rater)
    if n:
        console.print(f"revoked the invitation of {rater!r} to goal {goal_name}; their ratings so far are kept",
                      markup=False, highlight=False)
        return
    known = sorted({r["rater"] for r in store.invitations(goal_name)})
    if rater in known:
        console.print(f"{rater!r} has no live invitation to goal {goal_name} (already revoked)",
                      markup=False, highlight=False)
        return
    err_console.print(f"error: no invitation for rater {rater!r} of goal {goal_name}{did_you_mean(rater, known)}"
                      + ("" if known else "; the goal has no invitations"), markup=False, highlight=False)
    raise typer.Exit(2)


@panel_app.command("list")
def panel_list(goal_path: Path = PanelGoalArg, db: Optional[Path] = DbOpt,
               as_json: bool = typer.Option(False, "--json", help="Print the raters and their progress as "
                                                                 "JSON.")) -> None:
    """List the goal's raters: invited ones (live or revoked, when; never tokens) and anyone who rated,
    with each one's progress: items fully rated of the panel's, ratings, items flagged and commented."""
    from collections import Counter

    from rich import box
    from rich.table import Table

    goal_name = _panel_goal(goal_path)
    store = _existing_store(db)
    progress = _rater_progress(store, goal_path, goal_name)
    made_n = Counter(r["rater"] for r in store.ratings(goal_name))
    invited = {r["rater"]: r for r in store.invitations(goal_name)}  # the latest invitation of each rater
    rows = []
    for rater in sorted(set(invited) | set(progress) | set(made_n)):
        inv, made = invited.get(rater), progress.get(rater, {})
        rows.append({"rater": rater, "status": "not invited" if inv is None else "revoked" if inv["revoked_at"]
                     else "live", "invited": str(inv["created_at"])[:19] if inv else None,
                     "revoked": str(inv["revoked_at"])[:19] if inv and inv["revoked_at"] else None,
                     "ratings": made_n[rater], "items_done": made.get("items_done", 0),
                     "items": made.get("items", len(store.panel_items(goal_name))),
                     "flagged": made.get("flagged", 0), "commented": made.get("commented", 0)})
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    if not invited:
        console.print(f"no invitations for goal {goal_name}: anyone may rate it under a typed name (or, when the "
                      "goal lists `tokens:`, holders of one); `harness panel invite` closes it to invitations",
                      markup=False, highlight=False)
    if not rows:
        return
    t = Table(title=f"raters of {goal_name}", box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
    for col in ("rater", "status", "invited", "revoked", "items done", "ratings", "flagged"):
        t.add_column(col, justify="right" if col in ("items done", "ratings", "flagged") else "left")
    for r in rows:
        t.add_row(r["rater"], r["status"], r["invited"] or "-", r["revoked"] or "-",
                  f"{r['items_done']} of {r['items']}", str(r["ratings"]), str(r["flagged"]))
    console.print(t)


def _rater_progress(store: Store, goal_path: Path, goal_name: str) -> dict:
    """Each rater's progress on the goal's panel (criteria from the goal's rubrics where found)."""
    from harness.app.data import rater_progress

    goal = _load_goal(goal_path) if goal_path.is_file() else _stored_goal(store, goal_name)
    if goal is None:
        from harness.panel import PanelItem, rater_progress as progress_of

        items = [PanelItem.from_row(r) for r in store.panel_items(goal_name)]
        return progress_of(items, store.ratings(goal_name), store.rating_notes(goal_name))
    from harness.runner.context import rubrics_dir_for

    return rater_progress(store, goal, rubrics_dir_for(goal, Path("rubrics")))


@app.command("app")
def app_cmd(port: int = typer.Option(8501, help="Port."), db: Optional[Path] = DbOpt,
            host: str = typer.Option("localhost", help="Address to listen on. Anything but loopback (e.g. 0.0.0.0) "
                                                       "needs --owner-token, unless --rater."),
            rater: bool = typer.Option(False, "--rater", help="Rater-only app: the Rate page alone, no candidate "
                                                              "names, no references (unless human.show_reference)."),
            owner_token: Optional[str] = typer.Option(None, "--owner-token", envvar="HARNESS_OWNER_TOKEN",
                                                      help="Opens the owner's pages (leaderboard, compare, ...) "
                                                           "when not on localhost.")) -> None:
    """Open the Streamlit leaderboard and rating app."""
    import os
    import subprocess

    from harness.app.access import is_loopback

    if not rater and not is_loopback(host) and not (owner_token or "").strip():
        _fail(HarnessError(f"--host {host} makes the owner's pages (leaderboard, compare: outputs and references "
                           "of the sealed test set) reachable from other machines: pass --owner-token (or set "
                           "HARNESS_OWNER_TOKEN), or --rater for a rater-only app"))
    env = dict(os.environ)
    if db:
        env["HARNESS_DB"] = str(db)
    if rater:
        env["HARNESS_APP_MODE"] = "rater"
    if owner_token:
        env["HARNESS_OWNER_TOKEN"] = owner_token  # the environment, not argv: argv is visible to `ps`
    from harness.resources import shipped

    app_file = shipped("app.py")  # the checkout's app.py, or the copy a wheel installs
    raise typer.Exit(subprocess.call([sys.executable, "-m", "streamlit", "run", str(app_file),
                                      "--server.port", str(port), "--server.headless", "true",
                                      "--server.address", host, "--client.toolbarMode", "minimal"], env=env))


# What --help shows for a parameter's value, by parameter name (else the name in capitals): a
# word, never typer's <path>/<str>/{goal_path} placeholders.
METAVARS = {"goal_path": "GOAL", "db": "FILE", "out": "PATH", "output": "FILE", "run_id": "RUN_ID",
            "only": "CANDIDATE", "fmt": "FORMAT", "rubrics": "DIR", "owner_token": "TOKEN", "params": "SIZE",
            "gpus": "N", "epochs": "N", "utilisation": "FRACTION", "gpu_hour_usd": "USD",
            "mapping": "COLUMN=FIELD", "constants": "FIELD=VALUE"}


class _PlainCommand(typer.core.TyperCommand):
    """A command whose help names arguments by their metavar alone: ``harness run GOAL``, not
    typer's ``{GOAL}`` in the usage line and ``GOAL <path>`` under Arguments."""

    def collect_usage_pieces(self, ctx: Any) -> list[str]:
        return [p[1:-1] if p.startswith("{") and p.endswith("}") else p for p in super().collect_usage_pieces(ctx)]

    def format_options(self, ctx: Any, formatter: Any) -> None:
        args, opts = [], []
        for param in self.get_params(ctx):
            record = param.get_help_record(ctx)
            if record is None:
                continue
            if param.param_type_name == "argument":
                args.append((param.metavar or param.name.upper(), record[1]))
            else:
                opts.append(record)
        for title, rows in (("Arguments", args), ("Options", opts)):
            if rows:
                with formatter.section(title):
                    formatter.write_dl(rows)


def _plain_metavars(typer_app: typer.Typer) -> None:
    """Give every non-flag parameter of every command a plain metavar (see METAVARS)."""
    import inspect

    from typer.models import ParameterInfo

    infos = list(typer_app.registered_commands)
    for group in typer_app.registered_groups:
        _plain_metavars(group.typer_instance)
    for info in infos:
        if info.cls in (None, typer.core.TyperCommand):
            info.cls = _PlainCommand
        for name, param in inspect.signature(info.callback).parameters.items():
            default = param.default
            if isinstance(default, ParameterInfo) and default.metavar is None and param.annotation not in ("bool", bool):
                default.metavar = METAVARS.get(name, name.upper())


_plain_metavars(app)


def main() -> None:  # pragma: no cover - console entry
    try:
        app()
    except HarnessError as exc:
        _fail(exc)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(app())
