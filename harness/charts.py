"""The charts of the app and of the report, as Altair (Vega-Lite) specs: one builder per chart,
so the Streamlit pages and the HTML/Markdown report draw the same thing.

Every chart has titled axes. A metric chart shows each candidate's value with its interval as a
bar, the value written past the interval's end (never struck through), and the criterion's
threshold as a dashed rule (its mark described as ``threshold``, which the rendered SVG keeps
as an ``aria-label``). Metrics on different scales never share an axis (:func:`scale_of`):
0–1 rates, 1–5 ratings and anything else (BLEU's 0–100) each get their own chart.
:func:`to_svg` renders a spec offline (vl-convert), for the report.
"""
from __future__ import annotations

import math
from typing import Any, Iterable, Mapping, Sequence

import altair as alt
import pandas as pd

from harness.metric_names import parse_metric_name

STATUS_COLORS = {"pass": "#2e7d32", "fail": "#c62828", "inconclusive": "#f9a825", "no criterion": "#1565c0"}
THRESHOLD = "threshold"  # the description (aria-label) of every threshold rule
UNIT_SCALE, RATING_SCALE = "0–1", "1–5 rating"


def _finite(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def scale_of(metric: str, values: Iterable[Any]) -> str:
    """The axis a metric can share: ``0–1`` (rates, accuracy, ROUGE, a pairwise judge's win
    rate), ``1–5 rating`` (pointwise judge and human scores), else the metric's own."""
    vals = [v for v in values if _finite(v)]
    if vals and all(0.0 <= v <= 1.0 for v in vals):
        return UNIT_SCALE
    if parse_metric_name(metric).rated:
        return RATING_SCALE
    return metric


def _domain(scale: str) -> list[float] | None:
    if scale == UNIT_SCALE:
        return [0.0, 1.0]
    if scale == RATING_SCALE:
        return [1.0, 5.0]
    return None


def _threshold_rule(threshold: float | None, axis: str, label: str | None = None) -> alt.Chart | None:
    """A dashed rule at the threshold, labelled, its mark described as :data:`THRESHOLD`."""
    if threshold is None or not _finite(threshold):
        return None
    df = pd.DataFrame({"threshold": [threshold], "label": [label or f"threshold {threshold:g}"]})
    enc = {axis: alt.X("threshold:Q") if axis == "x" else alt.Y("threshold:Q")}
    rule = alt.Chart(df).mark_rule(strokeDash=[5, 4], color="#444", strokeWidth=1.5, description=THRESHOLD).encode(
        tooltip=["label"], **enc)
    text = alt.Chart(df).mark_text(align="left", baseline="bottom", dx=3, dy=-2, fontSize=10, color="#444").encode(
        text="label", **enc, **({"y": alt.value(0)} if axis == "x" else {"x": alt.value(0)}))
    return rule + text


def metric_rows(goal: Any, res: Mapping[str, Any], metric: str
                ) -> tuple[list[dict[str, Any]], list[float], float | None]:
    """What a metric's chart draws for a run's results (``harness.results.results_dict``): one
    row per candidate with the interval its verdict on the metric's absolute criterion rests on,
    at that verdict's (multiplicity-adjusted) level, coloured by that verdict — else the stored
    metric's interval at the goal's level; the levels drawn; and the criterion's threshold
    (None without an absolute criterion). The app and the report both
    draw these, so a dot's colour and its bar always come from the same interval."""
    crit = goal.absolute_criterion(metric) if goal is not None else None
    confidence = getattr(goal, "confidence", None)
    rows, levels = [], set()
    for cand in res["candidates"]:
        m = cand["metrics"].get(metric)
        if not m or m["value"] is None:
            continue
        v = next((v for v in cand["criteria"] if crit is not None and v["metric"] == metric
                  and v["op"] == crit.op and v["baseline"] is None), None)
        shown = v if v is not None and v["value"] is not None and v["ci"][0] is not None and v.get("confidence") \
            else {**m, "confidence": confidence}
        if shown["confidence"]:
            levels.add(shown["confidence"])
        rows.append({"candidate": cand["name"], "value": shown["value"], "ci_low": shown["ci"][0],
                     "ci_high": shown["ci"][1], "status": v["status"] if v is not None else None})
    return rows, sorted(levels), crit.threshold if crit is not None else None


def levels_title(metric: str, levels: Sequence[float]) -> str:
    """A metric chart's title naming the interval levels drawn (several when Holm adjusted
    candidates differently)."""
    level = " / ".join(f"{x * 100:.4g}%" for x in levels)
    return f"{metric} per candidate (value, {level} interval)" if level else f"{metric} per candidate (value, interval)"


def interval_chart(rows: Sequence[Mapping[str, Any]], metric: str, *, threshold: float | None = None,
                   confidence: float | None = None, title: str | None = None) -> alt.LayerChart:
    """One row per candidate: the interval as a bar, the value as a dot coloured by the verdict
    (``status``: pass, fail, inconclusive; else no criterion), its number past the interval, and
    the threshold as a dashed rule. ``rows``: candidate, value, ci_low, ci_high[, status]."""
    data = [{"candidate": r["candidate"], "value": r["value"],
             "ci_low": r.get("ci_low") if _finite(r.get("ci_low")) else r["value"],
             "ci_high": r.get("ci_high") if _finite(r.get("ci_high")) else r["value"],
             "status": r.get("status") or "no criterion"} for r in rows if _finite(r.get("value"))]
    df = pd.DataFrame(data, columns=["candidate", "value", "ci_low", "ci_high", "status"])
    df["label"] = [f"{v:.3g}" for v in df["value"]]
    scale = scale_of(metric, [*df["value"], *df["ci_low"], *df["ci_high"], threshold])
    domain = _domain(scale)
    level = f"{confidence:.0%} interval" if confidence else "interval"
    x = alt.X("ci_low:Q", title=f"{metric} ({scale})" if scale != metric else metric,
              scale=alt.Scale(domain=domain) if domain else alt.Scale(zero=False, nice=True))
    base = alt.Chart(df).encode(y=alt.Y("candidate:N", title="candidate", sort=None,
                                        axis=alt.Axis(labelOverlap=False, labelLimit=220)))
    bars = base.mark_rule(strokeWidth=3, color="#90a4ae").encode(x=x, x2="ci_high:Q")
    dots = base.mark_point(filled=True, size=90, opacity=1).encode(
        x="value:Q", color=alt.Color("status:N", title="verdict", scale=alt.Scale(
            domain=list(STATUS_COLORS), range=list(STATUS_COLORS.values()))),
        tooltip=["candidate", "status", alt.Tooltip("value:Q", format=".4f"), alt.Tooltip("ci_low:Q", format=".4f"),
                 alt.Tooltip("ci_high:Q", format=".4f")])
    labels = base.mark_text(align="left", dx=7, fontSize=11).encode(x="ci_high:Q", text="label:N")
    layers = [bars, dots, labels]
    rule = _threshold_rule(threshold, "x")
    if rule is not None:
        layers.append(rule)
    return alt.layer(*layers).properties(title=title or f"{metric} per candidate (value, {level})",
                                         width=520, height=max(60, 34 * len(df)))


def history_charts(rows: Sequence[Mapping[str, Any]], thresholds: Mapping[str, float] | None = None,
                   title: str = "across runs") -> list[alt.LayerChart]:
    """A candidate's metrics across runs (``rows``: run_id, metric, value[, ci_low, ci_high]):
    one chart per scale, each metric a line with its interval and its threshold, if any."""
    thresholds = dict(thresholds or {})
    by_metric: dict[str, list[Mapping[str, Any]]] = {}
    for r in rows:
        by_metric.setdefault(str(r["metric"]), []).append(r)
    groups: dict[str, list[str]] = {}
    for metric, rs in by_metric.items():
        groups.setdefault(scale_of(metric, [r.get("value") for r in rs]), []).append(metric)
    charts = []
    for scale, metrics in groups.items():
        df = pd.DataFrame([{"run": str(r["run_id"]), "metric": m, "value": r.get("value"),
                            "ci_low": r.get("ci_low", r.get("value")), "ci_high": r.get("ci_high", r.get("value"))}
                           for m in metrics for r in by_metric[m] if _finite(r.get("value"))])
        if df.empty:
            continue
        domain = _domain(scale)
        y_scale = alt.Scale(domain=domain) if domain else alt.Scale(zero=False)
        y = alt.Y("value:Q", title=scale, scale=y_scale)
        color = alt.Color("metric:N", title="metric")
        x = alt.X("run:N", sort=None, title="run", axis=alt.Axis(labelAngle=-30, labelLimit=160))
        lines = alt.Chart(df).mark_line(point=True).encode(
            x=x, y=y, color=color, tooltip=["run", "metric", alt.Tooltip("value:Q", format=".4f")])
        bars = alt.Chart(df).mark_errorbar().encode(x=x, y=alt.Y("ci_low:Q", title=scale, scale=y_scale), y2="ci_high:Q",
                                                    color=color)
        layers: list[Any] = [bars, lines]
        for m in metrics:
            rule = _threshold_rule(thresholds.get(m), "y", f"{m} threshold {thresholds[m]:g}" if m in thresholds else None)
            if rule is not None:
                layers.append(rule)
        charts.append(alt.layer(*layers).properties(title=f"{title} ({scale})", height=240))
    return charts


def loss_chart(points: Sequence[Mapping[str, Any]], title: str, best_steps: Mapping[str, int] | None = None
               ) -> alt.LayerChart:
    """Train and validation loss by step, overlaid for every candidate in ``points`` (candidate,
    step, split, loss): colour is the candidate, dashes the split; each candidate's early-stopping
    point as a vertical rule."""
    df = pd.DataFrame(points, columns=["candidate", "step", "split", "loss"])
    lines = alt.Chart(df).mark_line(point=alt.OverlayMarkDef(size=20)).encode(
        x=alt.X("step:Q", title="training step"), y=alt.Y("loss:Q", title="loss", scale=alt.Scale(zero=False)),
        color=alt.Color("candidate:N", title="candidate", legend=alt.Legend(symbolType="stroke")),
        strokeDash=alt.StrokeDash("split:N", sort=["train", "validation"], legend=None),  # said in the title
        detail="split:N", tooltip=["candidate", "split", "step", alt.Tooltip("loss:Q", format=".4f")])
    layers: list[Any] = [lines]
    best = [{"candidate": c, "step": s, "label": f"{c}: best step {s}"} for c, s in (best_steps or {}).items()
            if s is not None]
    if best:
        layers.append(alt.Chart(pd.DataFrame(best)).mark_rule(strokeDash=[2, 3], opacity=0.7).encode(
            x="step:Q", color=alt.Color("candidate:N"), tooltip=["label"]))
    return alt.layer(*layers).properties(title=alt.TitleParams(title, subtitle="solid: train · dashed: validation"),
                                         width=520, height=260)


def curve_chart(points: Sequence[Any], threshold: float, title: str) -> alt.LayerChart:
    """A criterion's metric (with its interval) against the number of training examples, and
    the threshold as a dashed rule: the data-size curve."""
    df = pd.DataFrame([{"n": p.n_train, "value": p.value, "lo": p.lo, "hi": p.hi, "candidate": p.candidate}
                       for p in points])
    x = alt.X("n:Q", title="training examples")
    line = alt.Chart(df).mark_line(point=True).encode(
        x=x, y=alt.Y("value:Q", title=title, scale=alt.Scale(zero=False)),
        tooltip=["candidate", "n", alt.Tooltip("value:Q", format=".3f")])
    bars = alt.Chart(df).mark_errorbar().encode(x=x, y=alt.Y("lo:Q", title=title), y2="hi:Q")
    layers: list[Any] = [bars, line]
    rule = _threshold_rule(threshold, "y")
    if rule is not None:
        layers.append(rule)
    return alt.layer(*layers).properties(title=f"{title} by training-set size", width=520, height=260)


def score_distribution(rows: Sequence[dict[str, Any]], title: str) -> alt.Chart:
    """Counts of each score level, side by side per source (e.g. judge vs humans)."""
    df = pd.DataFrame(rows)
    return alt.Chart(df).mark_bar().encode(
        x=alt.X("level:O", title="score"), xOffset="source:N", y=alt.Y("count():Q", title="count"),
        color=alt.Color("source:N", title=None), tooltip=["source", "level", "count()"]).properties(title=title, height=220)


def to_svg(chart: alt.TopLevelMixin) -> str:
    """The chart as a standalone SVG, rendered offline (vl-convert-python, a dependency)."""
    try:
        import vl_convert
    except ImportError as exc:  # pragma: no cover - a dependency; said plainly if removed
        from harness.errors import HarnessError

        raise HarnessError("the report's charts need vl-convert-python: pip install vl-convert-python") from exc
    return vl_convert.vegalite_to_svg(chart.to_dict())
