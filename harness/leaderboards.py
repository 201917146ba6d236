"""Declarative leaderboards: a YAML (or .sql) file in ``leaderboards/`` is one view of the store.

A definition is a read query with *named bound parameters* (``$run_id``) plus display
metadata. The app fills the context parameters (``$goal``, ``$run_id``, ``$candidate``) and
one widget per declared filter; every value reaches DuckDB as a bound parameter, never
as SQL text, and the query runs on a read-only connection. Adding a file adds a
leaderboard; no app code changes.

``leaderboards/metrics.yaml`` is a short example: a ``sql`` query, its ``filters`` (one per
``$parameter`` the user sets) and ``columns`` (labels, number formats).

A ``.sql`` file is a query whose leading ``-- key: value`` comment lines give ``title``,
``description`` and ``layout``; it can use the context parameters only.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Mapping

from pydantic import BaseModel, ConfigDict, Field, field_validator

from harness.errors import HarnessError, InputError, Problem
from harness.yamlfile import line_for, load_yaml, parse_model

if TYPE_CHECKING:
    from harness.store import Store

CONTEXT_PARAMS = ("goal", "run_id", "candidate")
_PARAM_RE = re.compile(r"\$([A-Za-z_][A-Za-z0-9_]*)")
_STRING_RE = re.compile(r"'(?:[^']|'')*'|\"(?:[^\"]|\"\")*\"|--[^\n]*")
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class FilterSpec(_Strict):
    """One user-chosen filter: a widget whose value is bound to ``$param``."""

    param: str = Field(description="Named parameter in the SQL, without the $.")
    label: str | None = Field(None, description="Widget label; default: the parameter name.")
    type: Literal["text", "number", "choice", "bool"] = Field("text", description="Widget kind.")
    default: Any = Field(None, description="Initial value (text: '', number: 0, bool: false).")
    options: list[Any] = Field(default_factory=list, description="Fixed choices (type: choice).")
    options_sql: str | None = Field(None, description="Query whose first column lists the choices; may use context parameters.")
    help: str | None = None

    @field_validator("param")
    @classmethod
    def _ident(cls, v: str) -> str:
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", v):
            raise ValueError(f"{v!r} is not a parameter name (letters, digits, _)")
        return v


class ColumnSpec(_Strict):
    label: str | None = Field(None, description="Column header.")
    format: str | None = Field(None, description="printf-style number format, e.g. '%.3f'.")
    help: str | None = Field(None, description="Tooltip on the header.")
    hidden: bool = False


class Leaderboard(_Strict):
    version: int = 1
    name: str = Field(description="Identifier; must match the file name.")
    title: str = Field(description="Shown in the leaderboard chooser.")
    description: str = ""
    layout: Literal["table", "criteria", "history"] = Field("table", description="How the app lays the rows out.")
    sql: str = Field(description="A read query over the store with named parameters ($run_id, ...).")
    filters: list[FilterSpec] = Field(default_factory=list)
    columns: dict[str, ColumnSpec] = Field(default_factory=dict)
    sort: str | None = Field(None, description="Column to sort by initially.")
    descending: bool = True
    order: int = Field(100, description="Position in the chooser (lower first).")

    source: str = Field("", exclude=True)

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not _NAME_RE.match(v):
            raise ValueError(f"leaderboard name {v!r}: use letters, digits, '_' or '-'")
        return v

    @property
    def params(self) -> list[str]:
        return sql_params(self.sql)


def sql_params(sql: str) -> list[str]:
    """Named parameters used by a query (``$name``), outside string literals and comments."""
    seen: list[str] = []
    for name in _PARAM_RE.findall(_STRING_RE.sub(" ", sql)):
        if name not in seen:
            seen.append(name)
    return seen


def _check(lb: Leaderboard, file: str, lines: Mapping[tuple, int]) -> list[Problem]:
    problems = []
    declared = {f.param for f in lb.filters}
    for p in lb.params:
        if p not in declared and p not in CONTEXT_PARAMS:
            problems.append(Problem(file, line_for(("sql",), lines), "sql",
                                    f"parameter ${p} is neither a filter nor one of ${', $'.join(CONTEXT_PARAMS)}"))
    for i, f in enumerate(lb.filters):
        if f.param not in lb.params:
            problems.append(Problem(file, line_for(("filters", i, "param"), lines), f"filters[{i}].param",
                                    f"filter ${f.param} is not used in the SQL"))
        if f.type == "choice" and not f.options and not f.options_sql:
            problems.append(Problem(file, line_for(("filters", i), lines), f"filters[{i}]",
                                    "a choice filter needs options or options_sql"))
    from harness.store import is_read_query

    if not is_read_query(lb.sql):
        problems.append(Problem(file, line_for(("sql",), lines), "sql", "must be a read query (SELECT/WITH ...)"))
    return problems


def load_leaderboard(path: str | Path) -> Leaderboard:
    """Load one definition (``.yaml``/``.yml`` or ``.sql``); InputError lists every problem."""
    path = Path(path)
    file = str(path)
    if path.suffix == ".sql":
        data, lines = _parse_sql_file(path), {}
    else:
        data, lines = load_yaml(path)
        if not isinstance(data, dict):
            raise InputError(Problem(file, 1, None, "a leaderboard must be a mapping with name, title and sql"))
    lb: Leaderboard = parse_model(Leaderboard, data, file, lines)
    problems = _check(lb, file, lines)
    if lb.name != path.stem:
        problems.append(Problem(file, line_for(("name",), lines), "name",
                                f"name {lb.name!r} must match the file name {path.stem!r}"))
    if problems:
        raise InputError(problems)
    lb.source = file
    return lb


def _parse_sql_file(path: Path) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": path.stem, "title": path.stem.replace("_", " ").replace("-", " ").capitalize()}
    for line in path.read_text(encoding="utf-8").splitlines():
        m = re.match(r"^\s*--\s*(title|description|layout|order)\s*:\s*(.*)$", line)
        if m:
            meta[m.group(1)] = m.group(2).strip()
        elif line.strip() and not line.strip().startswith("--"):
            break
    meta["sql"] = path.read_text(encoding="utf-8")
    meta["sql"] = "\n".join(l for l in meta["sql"].splitlines() if not l.strip().startswith("--")).strip()
    return meta


def load_leaderboards(folder: str | Path) -> tuple[list[Leaderboard], list[Problem]]:
    """Every definition in a folder, in display order, and the problems of those that failed
    (a broken file must not hide the others)."""
    folder = Path(folder)
    boards: list[Leaderboard] = []
    problems: list[Problem] = []
    if not folder.is_dir():
        return boards, problems
    for path in sorted(folder.iterdir()):
        if path.suffix not in (".yaml", ".yml", ".sql") or not path.is_file():
            continue
        try:
            boards.append(load_leaderboard(path))
        except InputError as exc:
            problems.extend(exc.problems)
    names = [b.name for b in boards]
    for name in {n for n in names if names.count(n) > 1}:
        problems.append(Problem(str(folder), None, "name", f"two leaderboards are named {name!r}"))
    return sorted(boards, key=lambda b: (b.order, b.name)), problems


def coerce_filter(spec: FilterSpec, value: Any) -> Any:
    """A widget's value as the parameter's type (a bad number is an error, not SQL)."""
    if value is None:
        value = spec.default
    if spec.type == "number":
        if value is None or value == "":
            return None
        try:
            return float(value)
        except (TypeError, ValueError):
            raise HarnessError(f"filter {spec.label or spec.param!r} needs a number, got {value!r}") from None
    if spec.type == "bool":
        return bool(value)
    return "" if value is None else str(value)


def bind(lb: Leaderboard, context: Mapping[str, Any], filters: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The parameters the query uses, from the context and the filter values."""
    filters = filters or {}
    specs = {f.param: f for f in lb.filters}
    out: dict[str, Any] = {}
    for p in lb.params:
        if p in specs:
            out[p] = coerce_filter(specs[p], filters.get(p))
        elif p in context:
            out[p] = context[p]
        else:
            raise HarnessError(f"leaderboard {lb.name!r} needs ${p}; choose a {p.replace('_', ' ')} first")
    return out


def run_leaderboard(store: Store, lb: Leaderboard, context: Mapping[str, Any],
                    filters: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
    """Rows of the leaderboard for this context and these filter values (bound, read-only)."""
    return store.view(lb.sql, bind(lb, context, filters))


def filter_options(store: Store, spec: FilterSpec, context: Mapping[str, Any]) -> list[Any]:
    if spec.options:
        return list(spec.options)
    if not spec.options_sql:
        return []
    params = {p: context.get(p) for p in sql_params(spec.options_sql)}
    return [next(iter(r.values())) for r in store.view(spec.options_sql, params)]
