"""Ratings files: human ratings made outside the app, imported into the panel's tables, and the
panel's ratings exported in the same shape.

One rating a row, CSV or JSON Lines (chosen by the extension: ``.csv``, ``.jsonl``, ``.json``)::

    {"example_id": "3f2a…", "candidate": "lora", "rater": "ann", "rubric": "tone", "criterion": "formal", "score": 4}

``input`` (the example's input text) may stand in for ``example_id``; ``criterion`` may be left
out when the rubric has one; a pairwise row names ``other_candidate`` (shown as B) and a
``choice`` of A, B or tie instead of a score.

Exports from annotation tools carry more than that (Label Studio: ``annotation_id``,
``annotator``, ``lead_time``, ``created_at``…; Argilla: ``id``, ``status``, ``metadata``…). Columns
that are not fields are ignored and named in one note (:attr:`ImportPlan.ignored`), except a
near-miss of a field (``scroe``, ``scores``), which is an error unless mapped. ``mapping`` (the
CLI's ``--map column=field``) renames a tool's columns (``annotator=rater``, ``correctness=score``;
``column=`` ignores one);
``constants`` (``--set field=value``) fills a field the file does not have (``rubric=tone``).

A rating attaches to the panel item of the output it rates: an item the goal already has on
that example, candidate(s), rubric and mode, else a new one on the latest finished run with
that output (drawing the goal's own panel first when it has none yet, so the Rate page still
gets its items). The whole file is checked before anything is written, every problem reported
with file:line and field; then everything is written in one transaction, so a file lands whole
or not at all, and importing it again changes nothing.
"""
from __future__ import annotations

import csv
import io
import json
import math
import re
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Mapping, Sequence

from harness import panel
from harness.cache import digest
from harness.errors import HarnessError, InputError, Problem
from harness.registry import did_you_mean

if TYPE_CHECKING:
    from harness.goals import Goal
    from harness.judge.rubric import Rubric
    from harness.store import Store

FIELDS = ("example_id", "input", "candidate", "other_candidate", "rater", "rubric", "criterion", "score", "choice",
          "output", "other_output", "output_hash", "other_output_hash")
EXPORT_FIELDS = ("example_id", "candidate", "other_candidate", "rater", "rubric", "criterion", "score", "choice",
                 "output_hash", "other_output_hash")
PAIRWISE_FIELDS = ("other_candidate", "choice", "other_output_hash")
FORMATS = {".csv": "csv", ".jsonl": "jsonl", ".json": "jsonl"}


def output_hash(text: str) -> str:
    """What names the output a rating was made on: the first 16 hex of the sha256 of its text,
    line ends as newlines and stripped (as a spreadsheet's cell gives it back)."""
    return digest(text.replace("\r\n", "\n").strip(), 16)


def file_format(path: Path) -> str:
    """``csv`` or ``jsonl`` by the file's extension; anything else is an InputError."""
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise InputError(Problem(str(path), None, None, "a ratings file is .csv or .jsonl (JSON Lines; .json is read "
                                                        f"as JSON Lines too), not {path.suffix or 'no extension'!r}"))
    return fmt


# --------------------------------------------------------------------------- reading

@dataclass(frozen=True)
class Row:
    """One row of a ratings file: its line and its non-empty fields."""

    line: int
    values: dict[str, Any]


def read_rows(path: Path, mapping: Mapping[str, str] | None = None,
              constants: Mapping[str, str] | None = None) -> tuple[list[Row], list[Problem], list[str]]:
    """The file's rows, the problems reading them (bad JSON, a misspelt field) and the columns
    ignored (neither fields nor mapped); never raises for a bad row, so every problem in the file
    is reported together. ``mapping`` renames columns to fields; ``constants`` fill fields a row
    lacks."""
    from harness.textfile import MAX_DATA_BYTES, read_text

    fmt = file_format(path)
    text = read_text(path, max_bytes=MAX_DATA_BYTES)  # UTF-8, a spreadsheet's byte-order mark allowed
    reader = _Reader(str(path), dict(mapping or {}), dict(constants or {}))
    rows, problems = (_read_csv if fmt == "csv" else _read_jsonl)(text, reader)
    return rows, problems, sorted(reader.ignored)


def parse_map(pairs: Sequence[str]) -> dict[str, str]:
    """``--map`` options, ``COLUMN=FIELD`` (``COLUMN=`` ignores a column): {column: field}."""
    return _pairs(pairs, "--map", lambda column, name: name)


def parse_set(pairs: Sequence[str]) -> dict[str, str]:
    """``--set`` options, ``FIELD=VALUE`` (the value of a field the file lacks): {field: value}."""
    return _pairs(pairs, "--set", lambda name, value: name if value else None)


def _pairs(pairs: Sequence[str], option: str, field_of) -> dict[str, str]:
    """NAME=VALUE pairs; InputError naming each malformed pair or name that is not a field."""
    out: dict[str, str] = {}
    problems = []
    for pair in pairs:
        key, sep, value = (x.strip() for x in pair.partition("="))
        name = field_of(key, value) if sep and key else None
        if name is None:
            problems.append(Problem(option, None, None, f"{pair!r}: expected NAME=VALUE"))
        elif name and name not in FIELDS:
            problems.append(Problem(option, None, None, f"{pair!r}: {name!r} is not a field"
                                                        f"{did_you_mean(name, list(FIELDS))}; a rating has "
                                                        f"{', '.join(FIELDS)}"))
        else:
            out[key] = value
    if problems:
        raise InputError(problems)
    return out


@dataclass
class _Reader:
    """How a file's names become fields: the mapping, the constants, and what was ignored."""

    file: str
    mapping: dict[str, str]
    constants: dict[str, str]
    ignored: set[str] = field(default_factory=set)

    def fields(self, values: Mapping[str, Any], line: int) -> tuple[dict[str, Any], list[Problem]]:
        """A row's fields (mapped, constants filled in) and its problems: a column that is not a
        field is ignored, unless it is an unmapped near-miss of a field."""
        out: dict[str, Any] = {}
        for name, value in values.items():
            target = self.mapping.get(name, name)
            if target in FIELDS:
                if target in out:
                    return {}, [Problem(self.file, line, target, f"given twice (as {name!r} and another column)")]
                out[target] = value
        problems = []
        for name in values:
            target = self.mapping.get(name, name)
            if target in FIELDS:
                continue
            hint = "" if name in self.mapping else did_you_mean(name, list(FIELDS))
            if hint:
                problems.append(Problem(self.file, line, name, f"unknown field {name!r}{hint}; a rating has "
                                                               f"{', '.join(FIELDS)} (rename a column with --map "
                                                               f"{name}=FIELD; other columns are ignored)"))
            else:
                self.ignored.add(name)
        for name, value in self.constants.items():
            out.setdefault(name, value)
        return out, problems


def _read_jsonl(text: str, reader: _Reader) -> tuple[list[Row], list[Problem]]:
    rows: list[Row] = []
    problems: list[Problem] = []
    file = reader.file
    for lineno, raw in enumerate(text.split("\n"), 1):  # not splitlines: U+2028 may sit inside a JSON string
        if not raw.strip():
            continue
        try:
            rec = json.loads(raw)
        except (json.JSONDecodeError, RecursionError) as exc:
            why = f"{exc.msg} (column {exc.colno})" if isinstance(exc, json.JSONDecodeError) else str(exc)
            hint = "; one JSON object a line (JSON Lines), not a JSON array" if raw.lstrip().startswith("[") else ""
            problems.append(Problem(file, lineno, None, f"malformed JSON: {why}{hint}"))
            continue
        if not isinstance(rec, dict):
            problems.append(Problem(file, lineno, None, f"a rating is a JSON object, got {type(rec).__name__}"))
            continue
        values, bad = reader.fields(rec, lineno)
        problems += bad
        if not bad:
            rows.append(Row(lineno, {k: v for k, v in values.items() if v is not None and v != ""}))
    return rows, problems


def _read_csv(text: str, reader: _Reader) -> tuple[list[Row], list[Problem]]:
    csv_reader = csv.reader(io.StringIO(text, newline=""))
    rows: list[Row] = []
    problems: list[Problem] = []
    header: list[str] | None = None
    file = reader.file
    try:
        while True:
            start = csv_reader.line_num + 1  # a quoted cell may span lines: report where the row starts
            cells = next(csv_reader, None)
            if cells is None:
                break
            if not any(c.strip() for c in cells):
                continue
            if header is None:
                header = [c.strip() for c in cells]
                problems = _header_problems(header, reader, start)
                if problems:
                    return [], problems
            elif len(cells) != len(header):
                problems.append(Problem(file, start, None, f"{len(cells)} cells, the header has {len(header)}"))
            else:
                values, _ = reader.fields({k: v.strip() for k, v in zip(header, cells)}, start)
                rows.append(Row(start, {k: v for k, v in values.items() if v}))
    except csv.Error as exc:
        problems.append(Problem(file, csv_reader.line_num, None, f"malformed CSV: {exc}"))
    return rows, problems


def _header_problems(header: list[str], reader: _Reader, line: int) -> list[Problem]:
    twice = sorted({h for h in header if header.count(h) > 1})
    if twice:
        return [Problem(reader.file, line, None, f"column(s) {', '.join(twice)} appear twice in the header")]
    _, problems = reader.fields(dict.fromkeys(header, "x"), line)
    return problems


# --------------------------------------------------------------------------- checking

@dataclass
class _Catalog:
    """What a row is checked against, read from the store once per import."""

    goal: str
    file: str
    rubrics_dir: Path
    examples: set[str]                              # every stored example id of the goal
    by_input: dict[str, list[str]]                  # stripped test input -> test example ids
    candidates: list[str]                           # the goal's candidates and those with outputs
    outputs: dict[tuple[str, str], list[str]]       # (candidate, example) -> finished runs, newest first
    hashes: dict[tuple[str, str, str], str]         # (run, candidate, example) -> output_hash of its text
    items: dict[tuple[Any, ...], list[panel.PanelItem]]  # (example, candidate, other, mode, rubric) -> items
    stored_items: set[str]
    rubrics: dict[str, Rubric | str] = field(default_factory=dict)  # name -> rubric, or why it did not load
    modes: dict[str, str] = field(default_factory=dict)  # rubric -> the one mode its ratings take
    goal_rubrics: tuple[str, ...] = ()                   # the rubrics of the goal's panel

    def rubric(self, name: str) -> Rubric | str:
        if name not in self.rubrics:
            self.rubrics[name] = _load_rubric(name, self.rubrics_dir)
        return self.rubrics[name]


def _load_rubric(name: str, rubrics_dir: Path) -> Rubric | str:
    from harness.judge.rubric import NAME_RE, load_rubric

    if not NAME_RE.match(name):
        return f"{name!r} is not a rubric name (letters, digits, '_' or '-'; the file rubrics/NAME.yaml)"
    try:
        return load_rubric(name, rubrics_dir)
    except InputError as exc:
        return f"rubric {name!r} is invalid: {exc.problems[0]}"
    except HarnessError as exc:
        return str(exc)


def _catalog(goal: Goal, store: Store, file: str, rubrics_dir: Path, drawn: Sequence[panel.PanelItem],
             stored: Sequence[panel.PanelItem]) -> _Catalog:
    outputs: dict[tuple[str, str], list[str]] = defaultdict(list)
    hashes: dict[tuple[str, str, str], str] = {}
    rank: dict[str, int] = {}
    for r in store.finished_run_outputs(goal.goal):  # newest run first
        rank.setdefault(r["run_id"], len(rank))
        outputs[(r["candidate"], r["example_id"])].append(r["run_id"])
        hashes[(r["run_id"], r["candidate"], r["example_id"])] = output_hash(r["output"] or "")
    items: dict[tuple[Any, ...], list[panel.PanelItem]] = defaultdict(list)
    for it in sorted([*stored, *drawn], key=lambda it: (rank.get(it.run_id, len(rank)), it.item_id)):
        items[(it.example_id, it.candidate, it.other_candidate or None, it.mode, it.rubric)].append(it)
    splits = store.example_splits(goal.goal)
    by_input: dict[str, list[str]] = defaultdict(list)
    for example_id, text in sorted(store.example_inputs(goal.goal).items()):
        if splits.get(example_id) == "test":
            by_input[(text or "").strip()].append(example_id)
    # One mode a rubric: the goal panel's for its rubrics, else what the rubric's stored items are.
    mode = getattr(goal.human, "mode", None)
    modes = {it.rubric: it.mode for it in stored}
    modes.update({r: mode for r in (goal.human.rubrics if goal.human else [])})
    return _Catalog(goal.goal, file, rubrics_dir, set(splits), by_input,
                    sorted({c.name for c in goal.candidates} | {c for c, _ in outputs}), outputs, hashes, items,
                    {it.item_id for it in stored}, modes=modes,
                    goal_rubrics=tuple(goal.human.rubrics if goal.human else ()))


@dataclass(frozen=True)
class Rating:
    """One checked rating, attached to its panel item."""

    line: int
    item: panel.PanelItem
    rater: str
    criterion: str
    score: float | None = None
    choice: str | None = None

    def as_row(self) -> dict[str, Any]:
        return {"rater": self.rater, "item_id": self.item.item_id, "criterion": self.criterion,
                "score": self.score, "choice": self.choice}


class _Row:
    """A row being checked: its text fields, and the problems found so far."""

    def __init__(self, cat: _Catalog, row: Row):
        self.cat, self.line, self.problems = cat, row.line, []
        self.text: dict[str, str] = {}
        for name, value in row.values.items():
            if name == "score":
                continue
            if isinstance(value, str) and value.strip():
                self.text[name] = value.strip()
            elif isinstance(value, int) and not isinstance(value, bool):  # an id written as a number
                self.text[name] = str(value)
            else:
                self.bad(name, f"must be text, got {json.dumps(value)[:40]}")
        self.score = row.values.get("score")

    def bad(self, name: str | None, message: str) -> None:
        self.problems.append(Problem(self.cat.file, self.line, name, message))

    def required(self, name: str) -> str | None:
        value = self.text.get(name)
        if value is None and not any(p.field == name for p in self.problems):
            self.bad(name, "is missing")
        return value


def _one_mode(cat: _Catalog, r: _Row, rubric: str | None, other: str | None) -> None:
    """A rubric's ratings are all scores or all comparisons: its human criteria are means of 1-5
    scores (pointwise) or win rates (pairwise), and one kind averaged into the other is neither.
    The goal's panel mode holds for its rubrics; another rubric keeps the mode it was first rated in."""
    mode = panel.PAIRWISE if other else panel.POINTWISE
    if rubric is None:
        return
    if cat.modes.setdefault(rubric, mode) == mode:
        return
    where = "this goal's panel is" if rubric in (cat.goal_rubrics or ()) else f"rubric {rubric!r} is rated"
    if other:
        r.bad("other_candidate", f"is given, but {where} pointwise: a row scores one output 1-5 (score), and a "
                                 f"win or loss would be averaged in with the scores")
    else:
        r.bad("other_candidate", f"is missing: {where} pairwise, so a row compares two outputs (other_candidate "
                                 f"and choice A, B or tie), not a score")


def _check_row(cat: _Catalog, row: Row) -> tuple[Rating | None, list[Problem]]:
    r = _Row(cat, row)
    rater = _rater(r)
    rubric, criterion = _criterion(r)
    other = r.text.get("other_candidate")
    _one_mode(cat, r, rubric, other)
    value = _choice(r) if other else _score(r)
    candidates = [_candidate(r, "candidate")] + ([_candidate(r, "other_candidate")] if other else [])
    if other and other == r.text.get("candidate"):
        r.bad("other_candidate", "is the same candidate as 'candidate': a pairwise rating compares two")
    example = _example(r)
    rated = {c: h for c, h in ((r.text.get("candidate"), _rated_output(r, "")),
                               (other, _rated_output(r, "other_"))) if c and h}
    if other and len(rated) == 1:  # half a comparison checked would attach to a run showing another text
        r.bad("other_output_hash" if r.text.get("candidate") in rated else "output_hash",
              "a pairwise row names both outputs it compared (output and other_output, or their hashes), or neither")
    if r.problems or None in (rater, rubric, criterion, value, example, *candidates):
        return None, r.problems
    found = _item(cat, str(example), str(candidates[0]), other, str(rubric), rated)
    if isinstance(found, str):
        return None, [Problem(cat.file, row.line, "example_id" if "example_id" in r.text else "input", found)]
    item, swapped = found
    if other:
        choice = {"A": "B", "B": "A"}.get(str(value), str(value)) if swapped else str(value)
        return Rating(row.line, item, str(rater), str(criterion), choice=choice), []
    return Rating(row.line, item, str(rater), str(criterion), score=float(value)), []


def _rated_output(r: _Row, prefix: str) -> str | None:
    """The output a row says it rated (``output`` text or ``output_hash``; ``other_`` ones for
    the other candidate), as an output hash; None when it does not say."""
    text, given = r.text.get(f"{prefix}output"), r.text.get(f"{prefix}output_hash")
    if given is not None:
        if not re.fullmatch(r"[0-9a-f]{16}", given.strip().lower()):
            r.bad(f"{prefix}output_hash", f"{given!r} is not an output hash (16 hex digits, as ratings export writes)")
            return None
        return given.strip().lower()
    return output_hash(text) if text is not None else None


def _rater(r: _Row) -> str | None:
    name = r.required("rater")
    if name is None:
        return None
    try:
        return panel.rater_name(name)  # stored as the app and invitations store it: one person, one rater
    except HarnessError as exc:
        r.bad("rater", str(exc))
        return None


def _criterion(r: _Row) -> tuple[str | None, str | None]:
    name = r.required("rubric")
    if name is None:
        return None, None
    rubric = r.cat.rubric(name)
    if isinstance(rubric, str):
        r.bad("rubric", rubric)
        return None, None
    given = r.text.get("criterion")
    if given is None:
        if len(rubric.criteria) == 1:
            return name, rubric.criteria[0].name
        r.bad("criterion", f"is missing: rubric {name!r} has {len(rubric.criteria)} criteria "
                           f"({', '.join(rubric.criterion_names)}); name one")
        return name, None
    try:
        return name, rubric.criterion(given).name
    except HarnessError as exc:
        r.bad("criterion", str(exc))
        return name, None


def _score(r: _Row) -> float | None:
    from harness.judge.rubric import SCALE

    if "choice" in r.text:
        r.bad("choice", "a choice (A, B or tie) needs 'other_candidate': a pairwise rating compares two candidates")
    value = r.score
    if value is None or value == "":
        r.bad("score", f"is missing: a number {min(SCALE)}-{max(SCALE)} (or other_candidate and choice, pairwise)")
        return None
    try:
        number = float(value) if isinstance(value, (int, float, str)) and not isinstance(value, bool) else None
    except ValueError:
        number = None
    if number is None or not math.isfinite(number):
        r.bad("score", f"must be a finite number, got {json.dumps(value)[:40]}")
        return None
    if not min(SCALE) <= number <= max(SCALE):
        r.bad("score", f"{number:g} is outside the rubric scale {min(SCALE)}-{max(SCALE)}")
        return None
    return number


def _choice(r: _Row) -> str | None:
    if r.score is not None and r.score != "":
        r.bad("score", "a pairwise rating (with other_candidate) has a choice, not a score")
    given = r.required("choice")
    if given is None:
        return None
    canonical = {c.lower(): c for c in panel.PAIR_CHOICES}.get(given.lower())
    if canonical is None:
        r.bad("choice", f"{given!r}: use A (candidate better), B (other_candidate better) or tie")
    return canonical


def _candidate(r: _Row, name: str) -> str | None:
    value = r.required(name)
    if value is not None and value not in r.cat.candidates:
        r.bad(name, f"unknown candidate {value!r}{did_you_mean(value, r.cat.candidates)}; goal {r.cat.goal!r} "
                    f"has {', '.join(r.cat.candidates) or 'no candidates'}")
        return None
    return value


def _example(r: _Row) -> str | None:
    example_id, text = r.text.get("example_id"), r.text.get("input")
    if example_id is None and text is None:
        r.bad("example_id", "is missing: give example_id (as the split files give it) or input (the example's text)")
        return None
    if example_id is not None and example_id not in r.cat.examples:
        r.bad("example_id", f"no example {example_id!r} in goal {r.cat.goal!r} (ids as the split files give them)")
        return None
    if text is None:
        return example_id
    matches = r.cat.by_input.get(text, [])
    if example_id is not None:
        if example_id not in matches:
            r.bad("input", f"is not the input of example {example_id!r}")
            return None
        return example_id
    if len(matches) != 1:
        r.bad("input", f"matches {len(matches)} test examples of goal {r.cat.goal!r}"
                       + (f" ({', '.join(matches[:5])}): give example_id instead" if matches else ""))
        return None
    return matches[0]


def _item(cat: _Catalog, example: str, candidate: str, other: str | None, rubric: str,
          rated: dict[str, str]) -> tuple[panel.PanelItem, bool] | str:
    """The panel item this rating belongs to and whether it shows the two candidates the other
    way round (a pairwise choice then flips); or why there is none. ``rated``: candidate ->
    hash of the output the row says it rated; the item must then be on a run that gave it."""
    mode = panel.PAIRWISE if other else panel.POINTWISE

    def gave(run: str) -> bool:
        return all(cat.hashes.get((run, c, example)) == h for c, h in rated.items())

    for key, swapped in (((example, candidate, other, mode, rubric), False),
                         ((example, other, candidate, mode, rubric), True)):
        found = [it for it in cat.items.get(key, ()) if gave(it.run_id)] if other or not swapped else []
        if found:
            return found[0], swapped
    for name in filter(None, (candidate, other)):
        if not cat.outputs.get((name, example)):
            return f"candidate {name!r} has no output on example {example!r} in a finished run of goal {cat.goal!r}"
    with_other = set(cat.outputs[(other, example)]) if other else None
    runs = [run for run in cat.outputs[(candidate, example)] if with_other is None or run in with_other]
    if not runs:
        return f"no finished run of goal {cat.goal!r} has outputs of both {candidate!r} and {other!r} on {example!r}"
    runs = [run for run in runs if gave(run)]
    if not runs:
        return (f"no finished run of goal {cat.goal!r} gave the output this row rated ({', '.join(rated)} on "
                f"{example!r}): it was rated on a text the candidate no longer gives here")
    run_id = runs[0]
    return panel.PanelItem(panel.item_id_for(cat.goal, run_id, example, candidate, other, mode, rubric), cat.goal,
                           run_id, example, candidate, other, mode, rubric), False


# --------------------------------------------------------------------------- import

@dataclass
class ImportPlan:
    """A checked file: the panel items to add (the goal's own panel first, when it was not
    drawn yet) and the ratings to upsert."""

    goal: str
    items: list[panel.PanelItem]
    ratings: list[Rating]
    ignored: list[str] = field(default_factory=list)  # the file's columns that are not fields

    def note(self) -> str:
        """One line naming the ignored columns, or empty."""
        if not self.ignored:
            return ""
        return (f"ignored {_n(len(self.ignored), 'column')} that are not rating fields: {', '.join(self.ignored)} "
                f"(rename one with --map COLUMN=FIELD)")

    def summary(self) -> str:
        raters = {r.rater for r in self.ratings}
        outputs = {(r.item.run_id, c, r.item.example_id) for r in self.ratings
                   for c in (r.item.candidate, r.item.other_candidate) if c}
        return (f"imported {_n(len(self.ratings), 'rating')} from {_n(len(raters), 'rater')} for "
                f"{_n(len(outputs), 'output')}; goal {self.goal}")


def _n(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def plan_import(goal: Goal, store: Store, path: Path, rubrics_dir: Path, mapping: Mapping[str, str] | None = None,
                constants: Mapping[str, str] | None = None) -> ImportPlan:
    """Check every row of the file against the goal, its rubrics and the store; InputError with
    every problem (file:line, field) when any row is bad. Writes nothing. ``mapping`` and
    ``constants``: see :func:`read_rows`."""
    rows, problems, ignored = read_rows(path, mapping, constants)
    if not rows and not problems:
        raise InputError(Problem(str(path), None, None, "has no ratings (the file is empty)"))
    stored = [panel.PanelItem.from_row(r) for r in store.panel_items(goal.goal)]
    drawn = [] if stored else _draw_panel(goal, store)
    cat = _catalog(goal, store, str(path), rubrics_dir, drawn, stored)
    if not cat.outputs and not stored:
        raise InputError(Problem(str(path), None, None, f"goal {goal.goal!r} has no finished run with outputs in "
                                                        f"{store.path}: run `harness run` first"))
    ratings: list[Rating] = []
    first: dict[tuple[str, str, str], int] = {}
    for row in rows:
        rating, found = _check_row(cat, row)
        problems += found
        if rating is None:
            continue
        key = (rating.rater, rating.item.item_id, rating.criterion)
        if key in first:
            problems.append(Problem(str(path), row.line, None, f"rater {rating.rater!r} rates the same output, "
                                                               f"rubric and criterion on line {first[key]}"))
            continue
        first[key] = row.line
        ratings.append(rating)
    if problems:
        raise InputError(sorted(problems, key=lambda p: p.line or 0))
    new = {it.item_id: it for it in drawn}
    new.update((r.item.item_id, r.item) for r in ratings if r.item.item_id not in cat.stored_items)
    return ImportPlan(goal.goal, list(new.values()), ratings, ignored)


def _draw_panel(goal: Goal, store: Store) -> list[panel.PanelItem]:
    """The panel the Rate page would draw: stored with the import, so imported items do not
    stand in for it."""
    from harness.app.data import draw_panel

    try:
        return draw_panel(store, goal)
    except HarnessError:  # a panel the goal cannot draw (the app says why); the import needs none
        return []


def import_ratings(goal: Goal, store: Store, path: Path, rubrics_dir: Path, mapping: Mapping[str, str] | None = None,
                   constants: Mapping[str, str] | None = None) -> ImportPlan:
    """Check the whole file, then write its items and ratings in one transaction."""
    plan = plan_import(goal, store, path, rubrics_dir, mapping, constants)
    store.put_ratings_bulk(goal.goal, [it.as_row() for it in plan.items], [r.as_row() for r in plan.ratings])
    return plan


# --------------------------------------------------------------------------- export

def export_rows(store: Store, goal: str) -> list[dict[str, Any]]:
    """The goal's ratings in the import shape, one a row (pairwise ones with other_candidate
    and choice); ratings of items the store no longer has are left out."""
    items = {r["item_id"]: panel.PanelItem.from_row(r) for r in store.panel_items(goal)}
    texts = {(r["run_id"], r["candidate"], r["example_id"]): r["output"] or ""
             for r in store.finished_run_outputs(goal)}
    rows = []
    for rating in store.ratings(goal):
        it = items.get(rating["item_id"])
        if it is None:
            continue
        row: dict[str, Any] = {"example_id": it.example_id, "candidate": it.candidate}
        if it.mode == panel.PAIRWISE:
            row["other_candidate"] = it.other_candidate
        for prefix, cand in (("", it.candidate), ("other_", it.other_candidate)):
            if cand and (it.run_id, cand, it.example_id) in texts:
                row[f"{prefix}output_hash"] = output_hash(texts[(it.run_id, cand, it.example_id)])
        row.update(rater=rating["rater"], rubric=it.rubric, criterion=rating["criterion"])
        if it.mode == panel.PAIRWISE and rating.get("choice") is not None:
            rows.append({**row, "choice": rating["choice"]})
        elif it.mode != panel.PAIRWISE and rating.get("score") is not None:
            score = float(rating["score"])
            rows.append({**row, "score": int(score) if score.is_integer() else score})
    return sorted(rows, key=lambda r: tuple(str(r.get(k) or "") for k in
                                            ("example_id", "candidate", "other_candidate", "rubric", "criterion",
                                             "rater")))


def write_rows(rows: Sequence[dict[str, Any]], path: Path | None, stream: IO[str]) -> None:
    """Write rows as CSV or JSON Lines by ``path``'s extension (the file appears whole or not at
    all); JSON Lines to ``stream`` without a path."""
    from harness.fsutil import atomic_write_text

    text = render_rows(rows, "jsonl" if path is None else file_format(path))
    if path is None:
        stream.write(text)
    else:
        atomic_write_text(path, text)


def render_rows(rows: Sequence[dict[str, Any]], fmt: str) -> str:
    """Rows as ``csv`` (the pairwise columns only when a row is pairwise) or ``jsonl`` text."""
    out = io.StringIO()
    if fmt == "csv":
        pairwise = any("choice" in r for r in rows)
        columns = [c for c in EXPORT_FIELDS if pairwise or c not in PAIRWISE_FIELDS]
        writer = csv.DictWriter(out, fieldnames=columns, restval="", lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    else:
        for r in rows:
            out.write(json.dumps(r, ensure_ascii=False) + "\n")
    return out.getvalue()
