"""Altair charts for the app: metric with CI bars, loss curves, score distributions."""
from __future__ import annotations

from typing import Any, Sequence

import altair as alt
import pandas as pd


def metric_ci_chart(rows: Sequence[dict[str, Any]], metric: str) -> alt.Chart:
    """One point per candidate with its confidence interval as an error bar."""
    df = pd.DataFrame([r for r in rows if r.get("value") is not None])
    base = alt.Chart(df).encode(y=alt.Y("candidate:N", title=None, axis=alt.Axis(labelOverlap=False)))
    bars = base.mark_rule(strokeWidth=2).encode(x=alt.X("ci_low:Q", title=metric, scale=alt.Scale(zero=False)),
                                                x2="ci_high:Q")
    points = base.mark_point(filled=True, size=80).encode(
        x="value:Q", tooltip=["candidate", alt.Tooltip("value:Q", format=".4f"),
                              alt.Tooltip("ci_low:Q", format=".4f"), alt.Tooltip("ci_high:Q", format=".4f")])
    return (bars + points).properties(title=f"{metric} per candidate (with CI)")


def loss_chart(points: Sequence[dict[str, Any]], candidate: str, best_step: int | None = None) -> alt.Chart:
    """Train and validation loss by step; the early-stopping point as a vertical rule."""
    df = pd.DataFrame(points)
    lines = alt.Chart(df).mark_line(point=True).encode(
        x=alt.X("step:Q", title="step"), y=alt.Y("loss:Q", title="loss", scale=alt.Scale(zero=False)),
        color=alt.Color("split:N", title="split"), tooltip=["split", "step", alt.Tooltip("loss:Q", format=".4f")])
    chart = lines
    if best_step is not None:
        rule = alt.Chart(pd.DataFrame({"step": [best_step], "label": [f"best step {best_step}"]})).mark_rule(
            strokeDash=[4, 4], color="firebrick").encode(x="step:Q", tooltip=["label"])
        chart = lines + rule
    return chart.properties(title=f"{candidate}: loss", height=260)


def curve_chart(points: Sequence[Any], threshold: float, title: str) -> alt.Chart:
    """A criterion's metric (with its interval) against the number of training examples, and
    the threshold as a dashed rule: the data-size curve."""
    df = pd.DataFrame([{"n": p.n_train, "value": p.value, "lo": p.lo, "hi": p.hi, "candidate": p.candidate}
                       for p in points])
    x = alt.X("n:Q", title="training examples")
    line = alt.Chart(df).mark_line(point=True).encode(
        x=x, y=alt.Y("value:Q", title=title, scale=alt.Scale(zero=False)),
        tooltip=["candidate", "n", alt.Tooltip("value:Q", format=".3f")])
    bars = alt.Chart(df).mark_errorbar().encode(x=x, y="lo:Q", y2="hi:Q")
    rule = alt.Chart(pd.DataFrame({"threshold": [threshold]})).mark_rule(strokeDash=[4, 4], color="firebrick").encode(
        y="threshold:Q", tooltip=["threshold"])
    return (bars + line + rule).properties(title=f"{title} by training-set size", height=260)


def score_distribution(rows: Sequence[dict[str, Any]], title: str) -> alt.Chart:
    """Counts of each score level, side by side per source (e.g. judge vs humans)."""
    df = pd.DataFrame(rows)
    return alt.Chart(df).mark_bar().encode(
        x=alt.X("level:O", title="score"), xOffset="source:N", y=alt.Y("count():Q", title="count"),
        color=alt.Color("source:N", title=None), tooltip=["source", "level", "count()"]).properties(title=title, height=220)
