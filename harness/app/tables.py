"""Leaderboard tables as plain data (no Streamlit): the criteria pivot and its cells."""
from __future__ import annotations

import math
from typing import Any, Iterable, Mapping, Sequence

# Text badges: they read the same in every font (emoji render as empty boxes where no emoji font is).
BADGES = {"pass": "PASS", "fail": "FAIL", "inconclusive": "INCONCLUSIVE"}
OPS = {"at_least": "≥", "at_most": "≤", "reduce_by": "reduce by", "improve_by": "improve by"}
# Cell tints by verdict, so the status reads at a glance.
TINTS = {"pass": "#d3f0dc", "fail": "#fadbd8", "inconclusive": "#fdf0c8"}
MEETS = {"YES": "pass", "NO": "fail", "OPEN": "inconclusive"}
UNTRUSTED = "(untrusted judge)"


def _num(x: Any) -> float | None:
    if x is None:
        return None
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(v) else v


def _f(x: float | None, percent: bool = False) -> str:
    if x is None:
        return "–"
    return f"{x * 100:.3g}%" if percent else f"{x:.3g}"


def cell_text(row: Mapping[str, Any], untrusted: bool = False, percent: bool = False) -> str:
    """``0.652 [0.528, 0.748] PASS`` (+ what is missing, + an untrusted-judge flag).
    ``percent``: the value is a relative change (reduce_by/improve_by given in %)."""
    value, lo, hi = _num(row.get("value")), _num(row.get("ci_low")), _num(row.get("ci_high"))
    parts = [_f(value, percent)]
    if lo is not None and hi is not None:
        parts.append(f"[{_f(lo, percent)}, {_f(hi, percent)}]")
    parts.append(BADGES.get(str(row.get("status")), str(row.get("status") or "")))
    if value is not None and (lo is None or hi is None) and not row.get("missing"):
        parts.append("(no interval: too few examples or no spread)")
    if row.get("missing"):
        parts.append(f"(needs {row['missing']} more ratings)")
    elif row.get("status") == "inconclusive" and row.get("needed_n"):
        parts.append(f"(~{row['needed_n']} examples would settle it)")
    if untrusted:
        parts.append(UNTRUSTED)
    return " ".join(p for p in parts if p)


def criterion_header(metric: str, goal_criteria: Sequence[Any] = (), row: Mapping[str, Any] | None = None) -> str:
    """``token_f1 ≥ 0.5`` / ``off_topic_rate reduce by 50% vs zero-shot``."""
    for c in goal_criteria:
        if c.metric == metric:
            amount = getattr(c, c.op)
            head = f"{metric} {OPS[c.op]} {amount}"
            return head + (f" vs {c.baseline}" if c.baseline else "")
    if row and row.get("op"):
        head = f"{metric} {OPS.get(row['op'], row['op'])} {_f(_num(row.get('threshold')))}"
        return head + (f" vs {row['baseline']}" if row.get("baseline") else "")
    return metric


def criterion_key(metric: str, op: str | None = None, baseline: str | None = None) -> tuple[str, str, str]:
    """A criterion's identity: a goal may state two criteria on one metric (``accuracy
    at_least 0.5`` and ``accuracy improve_by 10%``), so the metric alone is not enough."""
    return (metric, op or "", baseline or "")


def _row_key(row: Mapping[str, Any], goal_keys: Sequence[tuple[str, str, str]]) -> tuple[str, str, str]:
    key = criterion_key(row["metric"], row.get("op"), row.get("baseline"))
    if key in goal_keys or row.get("op"):
        return key
    # A verdict row without its operator (an older store): the goal's first criterion on the metric.
    return next((k for k in goal_keys if k[0] == row["metric"]), key)


def _headers(keys: Sequence[tuple[str, str, str]], by_key: Mapping[tuple[str, str, str], Any],
             cells: Mapping[tuple[str, tuple[str, str, str]], Mapping[str, Any]], cands: Iterable[str],
             ) -> dict[tuple[str, str, str], str]:
    """One column header per criterion key: the goal's wording, or the stored row's."""
    headers: dict[tuple[str, str, str], str] = {}
    for k in keys:
        stored = next((cells[(c, k)] for c in cands if (c, k) in cells), None)
        decided = _num(stored.get("threshold")) if stored is not None else None
        if k in by_key:
            c = by_key[k]
            head = f"{c.metric} {OPS[c.op]} {getattr(c, c.op)}" + (f" vs {c.baseline}" if c.baseline else "")
            if decided is not None and not math.isclose(decided, c.threshold, rel_tol=1e-9, abs_tol=1e-12):
                # The goal file changed since the run: the column says what the verdicts were decided on.
                head = f"{criterion_header(k[0], (), stored)} (goal file now: {getattr(c, c.op)})"
        else:
            head = criterion_header(k[0], (), next(cells[(c, k)] for c in cands if (c, k) in cells))
        # Two criteria never share a column, even if their text would.
        while head in headers.values():
            head += " "
        headers[k] = head
    return headers


def criteria_table(rows: Iterable[Mapping[str, Any]], human_rows: Iterable[Mapping[str, Any]] = (), *,
                   goal_criteria: Sequence[Any] = (), untrusted: set[str] | frozenset = frozenset(),
                   ) -> tuple[list[dict[str, Any]], list[str]]:
    """Pivot long verdict rows (one per candidate × criterion, with candidate columns) into
    one row per candidate; human-panel verdicts replace stored ones for the same criterion.

    A relative criterion's baseline shows ``baseline`` in that column and does not meet it
    (a candidate cannot improve on itself), as ``harness run`` decides.

    Returns the rows (display text per criterion, plus ``_value:<header>`` numbers for
    sorting) and the criterion column headers in goal order.
    """
    goal_keys = [criterion_key(c.metric, c.op, c.baseline) for c in goal_criteria]
    by_key = dict(zip(goal_keys, goal_criteria))
    cands: dict[str, dict[str, Any]] = {}
    cells: dict[tuple[str, tuple[str, str, str]], dict[str, Any]] = {}
    for r in rows:
        name = r["candidate"]
        cands.setdefault(name, {"candidate": name, "kind": r.get("kind"), "cost_usd": _num(r.get("cost_usd")),
                                "train_seconds": _num(r.get("train_seconds")), "gen_seconds": _num(r.get("gen_seconds")),
                                "stored_meets_goal": r.get("meets_goal")})
        if r.get("metric"):
            cells[(name, _row_key(r, goal_keys))] = dict(r)
    for r in human_rows:
        if r["candidate"] in cands:
            cells[(r["candidate"], _row_key(r, goal_keys))] = dict(r)
    keys = goal_keys + sorted({k for _, k in cells} - set(goal_keys))
    keys = [k for k in keys if k in by_key or any((c, k) in cells for c in cands)]
    headers = _headers(keys, by_key, cells, cands)
    baselines = sorted({f"{c.metric} → {c.baseline}" for c in goal_criteria if c.baseline})
    out = []
    for name, info in cands.items():
        row: dict[str, Any] = {"candidate": name, "kind": info["kind"]}
        statuses = []
        for k in keys:
            crit = by_key.get(k)
            if crit is not None and crit.relative_op and crit.baseline == name:
                row[headers[k]] = "baseline"
                row[f"_value:{headers[k]}"] = None
                statuses.append("fail")
                continue
            cell = cells.get((name, k))
            if cell is None:
                row[headers[k]] = "–"
                row[f"_value:{headers[k]}"] = None
                statuses.append("missing")
                continue
            metric = k[0]
            row[headers[k]] = cell_text(cell, untrusted=metric in untrusted or _rubric_of(metric) in untrusted,
                                        percent=bool(crit is not None and crit.percent))
            row[f"_value:{headers[k]}"] = _num(cell.get("value"))
            statuses.append(str(cell.get("status")))
        row["meets goal"] = meets_goal_text(statuses)
        row["cost (USD)"] = info["cost_usd"]
        row["training (s)"] = info["train_seconds"]
        row["baseline"] = ", ".join(baselines) or "–"
        out.append(row)
    return out, [headers[k] for k in keys]


def _rubric_of(metric: str) -> str:
    """``judge.tone.formal`` → ``judge.tone`` (an untrusted judge flags its whole rubric)."""
    from harness.metric_names import parse_metric_name

    try:
        name = parse_metric_name(metric)
    except Exception:  # noqa: BLE001 - a malformed name is shown as it is
        return metric
    return f"judge.{name.rubric}" if name.source == "judge" and name.criterion else metric


def status_css(cell: Any) -> str:
    """Background CSS for a leaderboard cell that carries a verdict badge; '' for others."""
    if not isinstance(cell, str):
        return ""
    for status, badge in BADGES.items():
        if badge in cell.split():
            return f"background-color: {TINTS[status]}"
    status = MEETS.get(cell)
    return f"background-color: {TINTS[status]}" if status else ""


def meets_goal_text(statuses: Sequence[str]) -> str:
    """yes: every criterion passes; no: one fails; open: the rest."""
    if statuses and all(s == "pass" for s in statuses):
        return "YES"
    if any(s == "fail" for s in statuses):
        return "NO"
    return "OPEN"


def word_diff_html(reference: str | None, output: str | None) -> str:
    """Word-level diff of an output against the reference, as HTML. Text is escaped first:
    outputs are untrusted and must not inject markup."""
    import difflib
    import html

    ref, out = (reference or "").split(), (output or "").split()
    parts: list[str] = []
    for op, i1, i2, j1, j2 in difflib.SequenceMatcher(None, ref, out, autojunk=False).get_opcodes():
        if op == "equal":
            parts.append(html.escape(" ".join(out[j1:j2])))
            continue
        if i2 > i1:
            parts.append(f'<del style="background:#fbd5d5">{html.escape(" ".join(ref[i1:i2]))}</del>')
        if j2 > j1:
            parts.append(f'<ins style="background:#d5f5d5;text-decoration:none">{html.escape(" ".join(out[j1:j2]))}</ins>')
    return " ".join(parts)
