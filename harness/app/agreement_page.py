"""Agreement page: among human raters, and between the judge and the humans."""
from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import pandas as pd
import streamlit as st

from harness import agreement, panel
from harness.app import charts, data

if TYPE_CHECKING:
    from harness.store import Store


def _trust(v: bool | None) -> str:
    return "✅ trusted" if v else ("⚠ untrusted" if v is False else "– too few pairs")


def render(store: Store, cfg: data.AppConfig, goal_name: str, goal: Any) -> None:
    st.title(f"Agreement · {goal_name}")
    if goal is None or goal.human is None:
        st.info("This goal has no human panel, so there is nothing to agree on yet.")
        return
    report = data.agreement_report(store, goal, cfg.rubrics_dir)
    st.caption(f"{report['n_ratings']} ratings on {report['n_items']} items. A judge criterion whose "
               f"weighted kappa with the humans is below {report['threshold']} (the goal's "
               f"human.agreement_threshold) is flagged untrusted on the leaderboard.")
    st.subheader("Between human raters")
    if report["inter_rater"]:
        df = pd.DataFrame(report["inter_rater"]).rename(columns={
            "alpha": "Krippendorff alpha (ordinal)", "kappa_kind": "kappa kind", "kappa_n": "kappa n",
            "n_items": "items (2+ raters)", "n_raters": "raters", "n_ratings": "ratings"})
        st.dataframe(df, hide_index=True, width="stretch")
    else:
        st.info("No ratings yet.")
    st.subheader("Judge vs humans")
    if report["judge_vs_human"]:
        df = pd.DataFrame(report["judge_vs_human"])
        df["trusted"] = df["trusted"].map(_trust)
        df = df.rename(columns={"kappa": "kappa (quadratic)", "exact": "exact agreement",
                                "within_one": "within one level"})
        st.dataframe(df, hide_index=True, width="stretch")
    else:
        st.info("No pointwise judge scores on rated items yet.")
    _distributions(store, goal, report)


def _distributions(store: Store, goal: Any, report: dict[str, Any]) -> None:
    items = data.panel_items(store, goal.goal)
    ratings = store.ratings(goal.goal)
    crits = [(r["rubric"], r["criterion"]) for r in report["judge_vs_human"]]
    if not crits or not ratings:
        return
    label = st.selectbox("Score distribution for", range(len(crits)), key="agr:dist",
                         format_func=lambda i: f"{crits[i][0]} · {crits[i][1]}")
    rubric, crit = crits[label]
    rows = [{"source": "humans", "level": int(r["score"])} for r in ratings
            if r["criterion"] == crit and r.get("score") is not None
            and any(it.item_id == r["item_id"] and it.rubric == rubric for it in items)]
    run_ids = sorted({it.run_id for it in items if it.rubric == rubric})
    human_keys = {(c, e) for c, per in panel.human_scores(ratings, items, rubric, crit).items() for e in per}
    judge = store.judge_scores(run_ids, rubric, crit)
    rows += [{"source": "judge", "level": agreement.to_level(v)} for k, v in judge.items()
             if k in human_keys and not math.isnan(v)]
    if rows:
        st.altair_chart(charts.score_distribution(rows, f"{rubric}.{crit}: judge vs humans on the rated items"),
                        width="stretch")
