"""The app's charts: the shared builders of :mod:`harness.charts` (the report draws the same),
with the app's arguments."""
from __future__ import annotations

from typing import Any, Sequence

import altair as alt

from harness.charts import curve_chart, history_charts, score_distribution  # noqa: F401 - the pages' names
from harness.charts import loss_chart as _loss_chart


def loss_chart(points: Sequence[dict[str, Any]], candidate: str, best_step: int | None = None) -> alt.LayerChart:
    """Train and validation loss of one candidate by step; the early-stopping point as a rule."""
    pts = [dict(p, candidate=candidate) for p in points]
    return _loss_chart(pts, f"{candidate}: loss", {candidate: best_step})


def sweep_loss_chart(points: Sequence[dict[str, Any]], best_steps: dict[str, int | None]) -> alt.LayerChart:
    """Every trained candidate's loss overlaid (a sweep's members side by side)."""
    return _loss_chart(points, "loss curves, all trained candidates", best_steps)
