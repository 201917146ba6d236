"""A self-contained report of one run: Markdown or HTML with inline SVG plots (no CDN)."""
from __future__ import annotations

import html
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.errors import HarnessError
from harness.results import results_dict

if TYPE_CHECKING:
    from harness.store import Store

COLORS = {"pass": "#2e7d32", "fail": "#c62828", "inconclusive": "#f9a825", None: "#1565c0"}


def svg_ci_bars(title: str, rows: list[tuple[str, float, float, float, str | None]], threshold: float | None = None,
                width: int = 560) -> str:
    """Horizontal bars (value) with CI whiskers, one row per candidate."""
    vals = [v for r in rows for v in r[1:4] if v is not None and math.isfinite(v)]
    if threshold is not None:
        vals.append(threshold)
    if not vals:
        return ""
    lo, hi = min(0.0, min(vals)), max(vals) or 1.0
    span = (hi - lo) or 1.0
    left, right, row_h = 140, 20, 26
    height = 30 + row_h * len(rows) + 10
    x = lambda v: left + (v - lo) / span * (width - left - right)  # noqa: E731
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img">',
             f'<text x="4" y="16" font-size="13" font-weight="bold">{html.escape(title)}</text>']
    for i, (name, v, cl, ch, status) in enumerate(rows):
        y = 28 + i * row_h
        parts.append(f'<text x="4" y="{y + 14}" font-size="12">{html.escape(name)}</text>')
        if v is None or not math.isfinite(v):
            continue
        parts.append(f'<rect x="{x(lo):.1f}" y="{y + 3}" width="{max(x(v) - x(lo), 1):.1f}" height="14" '
                     f'fill="{COLORS.get(status, COLORS[None])}" opacity="0.75"/>')
        if cl is not None and ch is not None and math.isfinite(cl) and math.isfinite(ch):
            parts.append(f'<line x1="{x(cl):.1f}" x2="{x(ch):.1f}" y1="{y + 10}" y2="{y + 10}" stroke="black"/>')
            for e in (cl, ch):
                parts.append(f'<line x1="{x(e):.1f}" x2="{x(e):.1f}" y1="{y + 5}" y2="{y + 15}" stroke="black"/>')
        parts.append(f'<text x="{min(x(v) + 4, width - 40):.1f}" y="{y + 14}" font-size="11">{v:.3g}</text>')
    if threshold is not None:
        parts.append(f'<line x1="{x(threshold):.1f}" x2="{x(threshold):.1f}" y1="24" y2="{height - 4}" '
                     f'stroke="#555" stroke-dasharray="4 3"/>')
    parts.append("</svg>")
    return "".join(parts)


def svg_curves(title: str, series: dict[str, list[tuple[int, float]]], width: int = 560, height: int = 220) -> str:
    pts = [p for s in series.values() for p in s]
    if not pts:
        return ""
    xs, ys = [p[0] for p in pts], [p[1] for p in pts]
    x0, x1, y0, y1 = min(xs), max(xs) or 1, min(ys), max(ys)
    sx = lambda v: 40 + (v - x0) / ((x1 - x0) or 1) * (width - 60)  # noqa: E731
    sy = lambda v: height - 25 - (v - y0) / ((y1 - y0) or 1) * (height - 55)  # noqa: E731
    palette = ["#1565c0", "#c62828", "#2e7d32", "#6a1b9a", "#ef6c00"]
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img">',
             f'<text x="4" y="16" font-size="13" font-weight="bold">{html.escape(title)}</text>',
             f'<text x="4" y="{height - 6}" font-size="10">loss {y0:.3g}–{y1:.3g}, steps {x0}–{x1}</text>']
    for i, (name, s) in enumerate(sorted(series.items())):
        color = palette[i % len(palette)]
        path = " ".join(f"{sx(a):.1f},{sy(b):.1f}" for a, b in sorted(s))
        parts.append(f'<polyline fill="none" stroke="{color}" stroke-width="1.5" points="{path}"/>')
        parts.append(f'<text x="{width - 150}" y="{30 + 14 * i}" font-size="11" fill="{color}">{html.escape(name)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def build_report(store: Store, goal: Any, run_id: str | None = None, fmt: str = "html") -> str:
    res = results_dict(store, goal.goal, run_id)
    if res is None:
        raise HarnessError(f"no runs stored for goal {goal.goal!r}; run `harness run` first")
    rid = res["run"]["id"]
    lines = [f"# {goal.goal}: evaluation report", "", goal.description or "", "",
             f"Run `{rid}` ({res['run']['status']}), test set `{(res['run']['test_hash'] or '')[:16]}`, "
             f"git `{(res['run']['git_commit'] or '-')[:10]}`{' (dirty)' if res['run']['git_dirty'] else ''}, "
             f"confidence {goal.confidence:.0%}.", ""] + leakage_line(res)
    lines.append(f"**Best candidate: {res['best_candidate']}**" if res["best_candidate"]
                 else "**No candidate meets the goal.**")
    lines += ["", "| candidate | " + " | ".join(c.metric + (f" vs {c.baseline}" if c.baseline else "")
                                              for c in goal.success) + " | meets goal |",
              "|---" * (len(goal.success) + 2) + "|"]
    for cand in res["candidates"]:
        cells = []
        for v in cand["criteria"]:
            lo, hi = v["ci"]
            how = f" ({v['interval']}, {v['confidence'] * 100:.4g}%)" if v.get("interval") and v.get("confidence") else ""
            cells.append(f"{_f(v['value'])} [{_f(lo)}, {_f(hi)}] **{v['status']}**{how}")
        lines.append(f"| {cand['name']} | " + " | ".join(cells) + f" | {'yes' if cand['meets_goal'] else 'no'} |")
    rules = sorted({v["multiplicity"] for c in res["candidates"] for v in c["criteria"] if v.get("multiplicity")})
    if rules:
        lines += ["", "Across candidates: " + "; ".join(rules) + " (each cell names its interval and two-sided level)."]
    lines += runtime_section(res)
    plots = []
    plotted: set[str] = set()
    for i, crit in enumerate(goal.success):
        if crit.metric in plotted:
            continue  # one chart per metric; a relative criterion's verdict is in the table
        plotted.add(crit.metric)
        rows = []
        for cand in res["candidates"]:
            m = cand["metrics"].get(crit.metric)
            status = cand["criteria"][i]["status"] if i < len(cand["criteria"]) else None
            if m:
                rows.append((cand["name"], m["value"], m["ci"][0], m["ci"][1], status))
        plots.append(svg_ci_bars(f"{crit.metric} per candidate ({goal.confidence:.0%} CI)", rows,
                                 None if crit.relative_op else crit.threshold))
    from harness.curve import curve_section

    lines += curve_section(store, goal, res)
    curves = store.curves(rid)
    by_cand: dict[str, dict[str, list[tuple[int, float]]]] = {}
    for r in curves:
        by_cand.setdefault(r["candidate"], {}).setdefault(r["split"], []).append((r["step"], r["loss"]))
    for cand, series in by_cand.items():
        plots.append(svg_curves(f"loss curves: {cand}", series))
    md = "\n".join(lines)
    if fmt == "md":
        return md + "\n\n" + "\n\n".join(p for p in plots if p) + "\n"
    body = _md_table_to_html(lines)
    return ("<!doctype html><html><head><meta charset='utf-8'><title>" + html.escape(goal.goal) +
            " report</title><style>body{font-family:sans-serif;max-width:980px;margin:2em auto}"
            "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:4px 8px}</style></head><body>"
            + body + "".join(f"<div>{p}</div>" for p in plots if p) + "</body></html>\n")


def leakage_line(res: dict[str, Any]) -> list[str]:
    """One line when train/validation examples duplicated test examples: dropped, or KEPT (flag)."""
    leak = res["run"].get("leakage") or {}
    if not leak.get("duplicates"):
        return []
    if leak.get("kept"):
        return [f"**Leakage:** {leak['kept']} train/validation example(s) duplicating test examples were KEPT in "
                f"training (`data.leakage: flag`); scores may be inflated.", ""]
    return [f"Leakage: {leak['dropped']} train/validation example(s) duplicating test examples were dropped from "
            f"training.", ""]


def runtime_section(res: dict[str, Any]) -> list[str]:
    """Where each local candidate ran: device, dtype, quantization and peak memory (what measured it)."""
    rows = [c for c in res["candidates"] if (c.get("runtime") or {}).get("device")]
    if not rows:
        return []
    out = ["", "## Where each candidate ran", "", "| candidate | device | dtype | base | engine | peak memory |",
           "|---|---|---|---|---|---|"]
    sources = {"cuda_max_memory_allocated": "CUDA max allocated", "process_peak_rss": "process peak RSS"}
    for c in rows:
        r = c["runtime"]
        peak = "-" if r.get("peak_memory_mb") is None else \
            f"{r['peak_memory_mb']:.0f} MiB ({sources.get(r.get('peak_memory_source'), r.get('peak_memory_source'))})"
        base = {"nf4": "4-bit nf4", "none": "full precision (trained 4-bit)"}.get(r.get("quantization"), "full precision")
        out.append(f"| {c['name']} | {r['device']} | {r['dtype']} | {base} | {r.get('engine') or '-'} | {peak} |")
    return out


def _f(x: Any) -> str:
    return "-" if x is None else f"{x:.3g}"


def _md_table_to_html(lines: list[str]) -> str:
    out, in_table = [], False
    for ln in lines:
        if ln.startswith("|---"):
            continue
        if ln.startswith("|"):
            cells = [c.strip() for c in ln.strip("|").split("|")]
            tag = "th" if not in_table else "td"
            if not in_table:
                out.append("<table>")
                in_table = True
            out.append("<tr>" + "".join(f"<{tag}>{html.escape(c).replace('**', '')}</{tag}>" for c in cells) + "</tr>")
            continue
        if in_table:
            out.append("</table>")
            in_table = False
        if ln.startswith("# "):
            out.append(f"<h1>{html.escape(ln[2:])}</h1>")
        elif ln.startswith("## "):
            out.append(f"<h2>{html.escape(ln[3:])}</h2>")
        elif ln:
            out.append(f"<p>{html.escape(ln).replace('**', '').replace('`', '')}</p>")
    if in_table:
        out.append("</table>")
    return "\n".join(out)


def write_report(store: Store, goal: Any, out: str | Path, run_id: str | None = None) -> Path:
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    from harness.fsutil import atomic_write_text

    atomic_write_text(out, build_report(store, goal, run_id, "md" if out.suffix == ".md" else "html"))
    return out
