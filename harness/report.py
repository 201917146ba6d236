"""A report of one goal's results: HTML with its charts inline as static SVG (renders with no
network and no script), or Markdown that links its charts as SVG files written beside it
(``REPORT_charts/``; GitHub strips inline SVG but shows linked images).

Sections: the verdicts, where each candidate ran, one chart per metric (value, interval, the
criterion's threshold; :mod:`harness.charts`), the data-size curve, training loss (every
trained candidate overlaid), examples (the best and worst of each candidate on the first
criterion's metric), the judge (its scores, a pairwise judge's position-bias rate, its
agreement with the human panel) and the human panel (scores and inter-rater agreement).
"""
from __future__ import annotations

import html
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.data.split import document_leakage_words
from harness.errors import HarnessError
from harness.results import results_dict

if TYPE_CHECKING:
    from harness.store import Store

EXAMPLES_EACH = 2   # best and worst examples shown per candidate
CLIP = 160          # characters of an input, reference or output in the examples table


@dataclass
class Figure:
    name: str    # file stem of the Markdown report's image
    title: str
    kind: str    # metric | curve | loss
    chart: Any   # an Altair chart (harness.charts)


@dataclass
class _Doc:
    """The report as Markdown lines with figure placeholders, rendered to HTML or Markdown."""

    lines: list[str] = field(default_factory=list)
    figures: list[Figure] = field(default_factory=list)

    def figure(self, name: str, title: str, kind: str, chart: Any) -> None:
        self.lines += ["", f"\x00figure {len(self.figures)}", ""]
        self.figures.append(Figure(f"{len(self.figures) + 1:02d}-{_slug(name)}", title, kind, chart))


def _slug(text: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "-" for ch in text)[:60]


def build_report(store: Store, goal: Any, run_id: str | None = None, fmt: str = "html",
                 assets: Path | None = None) -> str:
    """The report as HTML, or Markdown (``fmt="md"``) linking chart images written to ``assets``
    (a folder beside the report; without it the Markdown has no charts)."""
    res = results_dict(store, goal.goal, run_id)
    if res is None:
        raise HarnessError(f"no runs stored for goal {goal.goal!r}; run `harness run` first")
    doc = _Doc()
    _verdict_section(doc, goal, res)
    doc.lines += runtime_section(res)
    _metric_section(doc, goal, res)
    _curve_section(doc, store, goal, res)
    _loss_section(doc, store, res)
    _examples_section(doc, store, goal, res)
    agreement = _agreement(store, goal)  # the judge's and the panel's sections both show it
    _judge_section(doc, goal, res, agreement)
    _human_section(doc, store, goal, agreement)
    if fmt == "md":
        return _render_md(doc, assets)
    return _render_html(doc, goal)


def _verdict_section(doc: _Doc, goal: Any, res: dict[str, Any]) -> None:
    from harness.results import GOAL_CHANGED, RESEALED, goal_changed

    rid, stored = res["run"]["id"], res["run"].get("decided_under")
    # The run's own criteria and level head its table, not the goal file's as it is now.
    first = max(res["candidates"], key=lambda c: len(c["criteria"]), default={"criteria": []})["criteria"]
    heads = [(v["metric"], v["baseline"]) for v in first] or [(c.metric, c.baseline) for c in goal.success]
    confidence = res["run"].get("confidence") or goal.confidence
    lines = [f"# {goal.goal}: evaluation report", "", goal.description or "", "",
             f"Run `{rid}` ({res['run']['status']}), test set `{(res['run']['test_hash'] or '')[:16]}`, "
             f"git `{(res['run']['git_commit'] or '-')[:10]}`{' (dirty)' if res['run']['git_dirty'] else ''}, "
             f"confidence {confidence:.0%}.", ""] + leakage_line(res) + failures_line(res)
    for why, says in ((RESEALED, res.get("test_set_resealed")), (GOAL_CHANGED, goal_changed(stored, goal))):
        if says:
            lines += [f"**{why[0].upper()}{why[1:]}.**", ""]
    lines.append(f"**Best candidate: {res['best_candidate']}**" if res["best_candidate"]
                 else "**No candidate meets the goal.**")
    lines += ["", "| candidate | " + " | ".join(m + (f" vs {b}" if b else "") for m, b in heads) + " | meets goal |",
              "|---" * (len(heads) + 2) + "|"]
    for cand in res["candidates"]:
        cells = []
        for v in cand["criteria"]:
            lo, hi = v["ci"]
            how = f" ({v['interval']}, {v['confidence'] * 100:.4g}%)" if v.get("interval") and v.get("confidence") else ""
            unchecked = " ⚠ judge not validated" if v.get("judge_validated") is False else ""
            cells.append(f"{_f(v['value'])} [{_f(lo)}, {_f(hi)}] **{v['status']}**{how}{unchecked}")
        earlier = f" (from run {cand['run_id']})" if cand.get("from_earlier_run") else ""
        lines.append(f"| {cand['name']}{earlier} | " + " | ".join(cells) + f" | {'yes' if cand['meets_goal'] else 'no'} |")
    rules = sorted({v["multiplicity"] for c in res["candidates"] for v in c["criteria"] if v.get("multiplicity")})
    if rules:
        lines += ["", "Across candidates: " + "; ".join(rules) + " (each cell names its interval and two-sided level)."]
    doc.lines += lines


def _metric_section(doc: _Doc, goal: Any, res: dict[str, Any]) -> None:
    """One chart per metric (so 0–1 and 1–5 never share an axis): each candidate's value and
    interval, coloured by its verdict on the metric's absolute criterion, with that threshold."""
    from harness import charts

    metrics = _shown_metrics(goal, res)
    if not metrics:
        return
    doc.lines += ["", "## Metrics", "",
                  "Each candidate's value (dot, coloured by its verdict) and interval (bar); the dashed line is "
                  "the criterion's threshold. Relative criteria are in the table above."]
    for metric in metrics:
        rows, levels, threshold = charts.metric_rows(goal, res, metric)
        if rows:
            chart = charts.interval_chart(rows, metric, threshold=threshold, title=charts.levels_title(metric, levels))
            doc.figure(metric, f"{metric} per candidate", "metric", chart)


def _shown_metrics(goal: Any, res: dict[str, Any]) -> list[str]:
    """The criteria's metrics, then every other one stored, less a rubric criterion that only
    repeats its rubric's mean (a one-criterion rubric: ``judge.tone.tone`` = ``judge.tone``)."""
    from harness.metric_names import parse_metric_name

    metrics = list(dict.fromkeys([c.metric for c in goal.success] +
                                 [m for cand in res["candidates"] for m in cand["metrics"]]))
    criteria = {c.metric for c in goal.success}

    def repeats(metric: str) -> bool:
        name = parse_metric_name(metric)
        if not name.rated or name.criterion is None or metric in criteria:
            return False
        parent = metric.rsplit(".", 1)[0]
        return all(c["metrics"].get(parent) == c["metrics"].get(metric) for c in res["candidates"])

    return [m for m in metrics if not repeats(m)]


def _curve_section(doc: _Doc, store: Store, goal: Any, res: dict[str, Any]) -> None:
    from harness import charts
    from harness.curve import curve_data, curve_section

    doc.lines += curve_section(store, goal, res)
    for c in curve_data(store, goal, res):
        doc.figure(f"curve-{c['group']}-{c['metric']}", f"{c['metric']} by training-set size ({c['group']})", "curve",
                   charts.curve_chart(c["points"], c["threshold"], c["metric"]))


def _loss_section(doc: _Doc, store: Store, res: dict[str, Any]) -> None:
    """Training and validation loss of every trained candidate, overlaid (a sweep compares at a glance)."""
    from harness import charts

    points, best = [], {}
    for rid in sorted({c["run_id"] for c in res["candidates"]}):
        names = {c["name"] for c in res["candidates"] if c["run_id"] == rid}
        points += [p for p in store.curves(rid) if p["candidate"] in names]
        best.update({c["name"]: c.get("best_step") for c in store.candidates(rid) if c["name"] in names})
    if not points:
        return
    trained = sorted({p["candidate"] for p in points})
    doc.lines += ["", "## Training", "", f"Loss by step of {', '.join(trained)} (solid: train, dashed: validation; "
                                         "a dotted rule marks each early-stopping point)."]
    doc.figure("loss", "loss curves", "loss",
               charts.loss_chart(points, "loss curves", {n: best.get(n) for n in trained}))


def _examples_section(doc: _Doc, store: Store, goal: Any, res: dict[str, Any]) -> None:
    """Per candidate, its best and worst test examples on the first criterion's metric."""
    metric = goal.success[0].metric if goal.success else None
    if metric is None:
        return
    tests = {e["example_id"]: e for e in store.examples_of(goal.goal, "test")}
    out = ["", "## Examples", "", f"Each candidate's {EXAMPLES_EACH} best and {EXAMPLES_EACH} worst test examples "
                                  f"on {metric} (ties in example order)."]
    run_scores: dict[str, list[dict[str, Any]]] = {}  # candidates mostly share a run: read each once
    for cand in res["candidates"]:
        if cand["run_id"] not in run_scores:
            run_scores[cand["run_id"]] = store.run_scores(cand["run_id"])
        scores = {s["example_id"]: s["value"] for s in run_scores[cand["run_id"]]
                  if s["candidate"] == cand["name"] and s["metric"] == metric and s["value"] is not None}
        if not scores:
            continue
        outputs = {o["example_id"]: o["output"] for o in store.run_outputs(cand["run_id"], cand["name"])}
        ranked = sorted(scores, key=lambda e: (-scores[e], e))
        best = ranked[:EXAMPLES_EACH]
        worst = [e for e in ranked[::-1] if e not in best][:EXAMPLES_EACH]
        out += ["", f"### {cand['name']}", "", f"| | {metric} | input | reference | output |", "|---|---|---|---|---|"]
        for label, ids in (("best", best), ("worst", worst)):
            for e in ids:
                ex = tests.get(e, {})
                out.append(f"| {label} | {scores[e]:.3g} | {_cell(ex.get('input'))} | {_cell(ex.get('reference'))} "
                           f"| {_cell(outputs.get(e))} |")
    doc.lines += out


def _judge_section(doc: _Doc, goal: Any, res: dict[str, Any], report: dict[str, Any]) -> None:
    """The judge's scores per candidate, a pairwise judge's position-bias rate, and how far the
    human panel agrees with it (weighted kappa on the items both scored)."""
    if goal.judge is None:
        return
    shown = _shown_metrics(goal, res)
    rows = [(c["name"], m, c["metrics"][m]) for c in res["candidates"] for m in shown
            if m.startswith("judge.") and m in c["metrics"]]
    out = ["", "## Judge", "", f"Judge `{goal.judge.model}` ({goal.judge.mode}) on "
                                f"{', '.join(goal.judge.rubrics)}.", "",
           "| candidate | metric | value [interval] | n | position-bias rate | win rate |", "|---|---|---|---|---|---|"]
    for name, metric, v in rows:
        out.append(f"| {name} | {metric} | {_f(v['value'])} [{_f(v['ci'][0])}, {_f(v['ci'][1])}] | {v['n']} | "
                   f"{_pct(v.get('position_bias_rate'))} | {_pct(v.get('win_rate'))} |")
    if goal.judge.mode == "pairwise":
        out += ["", "Position-bias rate: the share of pairs whose winner changed when the two outputs swapped places."]
    versus = report.get("judge_vs_human") or []
    if versus:
        out += ["", f"Agreement with the human panel (quadratic-weighted κ; the judge is trusted from κ ≥ "
                    f"{report['threshold']:g} on at least 5 items):", "",
                "| rubric | criterion | items | κ | Spearman ρ | exact | within one | trusted |",
                "|---|---|---|---|---|---|---|---|"]
        out += [f"| {r['rubric']} | {r['criterion']} | {r['n']} | {_f(r['kappa'])} | {_f(r['spearman'])} | "
                f"{_pct(r['exact'])} | {_pct(r['within_one'])} | "
                f"{ {True: 'yes', False: 'no'}.get(r['trusted'], 'too few items')} |" for r in versus]
    elif goal.human is not None:
        out += ["", "No human ratings of the judge's items yet: the judge is unchecked."]
    doc.lines += out


def _human_section(doc: _Doc, store: Store, goal: Any, agreement: dict[str, Any]) -> None:
    """The panel's scores now (mean, interval, items, ratings) and inter-rater agreement."""
    from harness import charts, panel

    if goal.human is None:
        return
    items = panel.goal_items(store, goal)
    ratings = store.ratings(goal.goal)
    out = ["", "## Human panel", "", f"{len(ratings)} ratings of {len(items)} items."]
    doc.lines += out
    if not ratings:
        return
    metrics = list(dict.fromkeys([f"human.{r}" for r in goal.human.rubrics] +
                                 [c.metric for c in goal.success if c.metric.startswith("human.")]))
    for metric in metrics:
        rows = panel.human_aggregates(ratings, items, metric, confidence=goal.confidence)
        if not rows:
            continue
        crit = goal.absolute_criterion(metric)
        doc.figure(metric, f"{metric} per candidate", "metric",
                   charts.interval_chart(rows, metric, threshold=crit.threshold if crit else None,
                                         confidence=goal.confidence))
    inter = agreement.get("inter_rater") or []
    if inter:
        doc.lines += ["", "| rubric | criterion | items | ratings | Krippendorff α |", "|---|---|---|---|---|"]
        doc.lines += [f"| {r['rubric']} | {r['criterion']} | {r.get('n_items', '-')} | {r.get('n_ratings', '-')} | "
                      f"{_f(r.get('alpha'))} |" for r in inter]


def _agreement(store: Store, goal: Any) -> dict[str, Any]:
    from harness.agreement import panel_report
    from harness.runner.context import rubrics_dir_for

    if goal.human is None:
        return {}
    return panel_report(store, goal, rubrics_dir_for(goal, "rubrics"))


def leakage_line(res: dict[str, Any]) -> list[str]:
    """A line when train/validation examples duplicated test examples (dropped, or KEPT: flag),
    and one for each RAG candidate whose documents contain test examples."""
    leak = res["run"].get("leakage") or {}
    lines = []
    if leak.get("kept"):
        lines.append(f"**Leakage:** {leak['kept']} train/validation example(s) duplicating test examples were KEPT "
                     f"in training (`data.leakage: flag`); scores may be inflated.")
    elif leak.get("duplicates"):
        lines.append(f"Leakage: {leak['dropped']} train/validation example(s) duplicating test examples were dropped "
                     f"from training.")
    for cand, found in sorted((leak.get("documents") or {}).items()):
        words = document_leakage_words(cand, found) + "."
        lines.append(f"**Leakage:** {words}" if found.get("policy") == "flag" else f"Leakage: {words}")
    return [x for line in lines for x in (line, "")]


def failures_line(res: dict[str, Any]) -> list[str]:
    """One line when generations failed: how many per candidate (left out of its scores and verdicts)."""
    failed = [f"{c['name']} {c['generations_failed']}" for c in res["candidates"] if c.get("generations_failed")]
    if not failed:
        return []
    return [f"**Failed generations** (left out of scoring; above 5% of the test examples a criterion is "
            f"inconclusive; the next run retries them): {', '.join(failed)}.", ""]


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
    return "-" if x is None or x != x else f"{x:.3g}"


def _pct(x: Any) -> str:
    return "-" if x is None or x != x else f"{x:.0%}"


def _cell(text: Any) -> str:
    """Text for a Markdown table cell: one line, pipes escaped, clipped."""
    t = " ".join(str(text or "").split()).replace("|", "\\|")
    return t if len(t) <= CLIP else t[:CLIP - 1] + "…"


def _render_md(doc: _Doc, assets: Path | None) -> str:
    """Markdown, each chart an image link to an SVG file written to ``assets``."""
    from harness import charts

    out = []
    for ln in doc.lines:
        if not ln.startswith("\x00figure "):
            out.append(ln)
            continue
        if assets is None:
            continue
        fig = doc.figures[int(ln.split()[1])]
        assets.mkdir(parents=True, exist_ok=True)
        (assets / f"{fig.name}.svg").write_text(charts.to_svg(fig.chart), encoding="utf-8")
        out.append(f"![{fig.title}]({assets.name}/{fig.name}.svg)")
    return "\n".join(out) + "\n"


def _render_html(doc: _Doc, goal: Any) -> str:
    """One HTML file: tables, and each chart as inline SVG in a ``<figure class="chart">``."""
    from harness import charts

    body = _md_table_to_html(doc.lines)
    for i, fig in enumerate(doc.figures):
        svg = charts.to_svg(fig.chart)
        block = (f'<figure class="chart" data-kind="{fig.kind}" data-name="{html.escape(fig.name)}">{svg}'
                 f"<figcaption>{html.escape(fig.title)}</figcaption></figure>")
        body = body.replace(f"<p>\x00figure {i}</p>", block, 1)
    return ("<!doctype html><html><head><meta charset='utf-8'><title>" + html.escape(goal.goal) +
            " report</title><style>body{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em}"
            "table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:4px 8px;"
            "vertical-align:top}figure{margin:1em 0}figcaption{color:#555;font-size:90%}</style></head><body>"
            + body + "</body></html>\n")


def _md_table_to_html(lines: list[str]) -> str:
    out, in_table = [], False
    for ln in lines:
        if ln.startswith("|---"):
            continue
        if ln.startswith("|"):
            cells = [c.strip().replace("\\|", "|") for c in _split_row(ln)]
            tag = "th" if not in_table else "td"
            if not in_table:
                out.append("<table>")
                in_table = True
            out.append("<tr>" + "".join(f"<{tag}>{html.escape(c).replace('**', '')}</{tag}>" for c in cells) + "</tr>")
            continue
        if in_table:
            out.append("</table>")
            in_table = False
        for prefix, tag in (("# ", "h1"), ("## ", "h2"), ("### ", "h3")):
            if ln.startswith(prefix):
                out.append(f"<{tag}>{html.escape(ln[len(prefix):])}</{tag}>")
                break
        else:
            if ln:
                out.append(f"<p>{html.escape(ln).replace('**', '').replace('`', '')}</p>")
    if in_table:
        out.append("</table>")
    return "\n".join(out)


def _split_row(line: str) -> list[str]:
    """A Markdown table row's cells (``\\|`` is a pipe inside a cell)."""
    cells, cur, i, text = [], "", 0, line.strip()[1:-1] if line.strip().endswith("|") else line.strip()[1:]
    while i < len(text):
        if text.startswith("\\|", i):
            cur += "\\|"
            i += 2
        elif text[i] == "|":
            cells.append(cur)
            cur = ""
            i += 1
        else:
            cur += text[i]
            i += 1
    return cells + [cur]


def write_report(store: Store, goal: Any, out: str | Path, run_id: str | None = None) -> Path:
    """Write the report (``.md``: Markdown with its charts as SVG files in ``STEM_charts/`` beside
    it; anything else: one self-contained HTML file)."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    from harness.fsutil import atomic_write_text

    md = out.suffix == ".md"
    assets = out.parent / f"{out.stem}_charts"
    for old in assets.glob("[0-9][0-9]-*.svg") if md else ():
        old.unlink()  # the charts of an earlier report under this name
    text = build_report(store, goal, run_id, "md" if md else "html",
                        assets=assets if md else None)
    atomic_write_text(out, text)
    return out
