"""Agreement page: among human raters, between the judge and the humans, the pairwise judge's
position bias, and each rater's progress with the items they flagged."""
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
    return "trusted" if v else ("UNTRUSTED" if v is False else "too few pairs")


def _ci(pair: Any) -> str:
    lo, hi = (list(pair) + [None, None])[:2]
    if lo is None or hi is None or (isinstance(lo, float) and math.isnan(lo)) or math.isnan(hi):
        return "–"
    return f"[{lo:.2f}, {hi:.2f}]"


def render(store: Store, cfg: data.AppConfig, goal_name: str, goal: Any) -> None:
    st.title(f"Agreement · {goal_name}")
    if goal is None or goal.human is None:
        st.info("This goal has no human panel, so there is nothing to agree on yet.")
        _position_bias(store, goal_name)
        return
    report = data.agreement_report(store, goal, cfg.rubrics_dir, intervals=True)
    st.caption(f"{report['n_ratings']} ratings on {report['n_items']} panel items. A judge criterion whose "
               f"weighted kappa with the humans is below {report['threshold']} (the goal's "
               f"human.agreement_threshold) is flagged untrusted on the leaderboard. Intervals: 95% bootstrap "
               f"over items.")
    _inter_rater(report)
    _judge_vs_human(report)
    _position_bias(store, goal_name)
    _raters(store, goal, cfg)
    _distributions(store, goal, report)


def _inter_rater(report: dict[str, Any]) -> None:
    st.subheader("Between human raters")
    rows = report["inter_rater"]
    if not rows:
        st.info("No ratings yet.")
        return
    few = [r for r in rows if r["n_items"] < agreement.MIN_AGREEMENT_ITEMS]
    if few:
        st.warning("Too few overlapping items to read much into alpha and kappa: "
                   + "; ".join(f"{r['rubric']}.{r['criterion']} rests on {r['n_items']} item(s) rated by two or "
                               f"more raters" for r in few)
                   + f" (fewer than {agreement.MIN_AGREEMENT_ITEMS}). Their intervals show how little they say.")
    df = pd.DataFrame([{"rubric": r["rubric"], "criterion": r["criterion"],
                        "items (2+ raters)": r["n_items"], "raters": r["n_raters"], "ratings": r["n_ratings"],
                        "Krippendorff alpha": r["alpha"], "alpha 95% interval": _ci(r["alpha_ci"]),
                        "kappa": r["kappa"], "kappa 95% interval": _ci(r["kappa_ci"]),
                        "kappa kind": r["kappa_kind"], "kappa n": r["kappa_n"]} for r in rows])
    st.dataframe(df, hide_index=True, width="stretch")


def _judge_vs_human(report: dict[str, Any]) -> None:
    st.subheader("Judge vs humans")
    rows = report["judge_vs_human"]
    if not rows:
        st.info("No pointwise judge scores on rated items yet.")
        return
    df = pd.DataFrame([{"rubric": r["rubric"], "criterion": r["criterion"], "n": r["n"],
                        "kappa (quadratic)": r["kappa"], "kappa 95% interval": _ci(r["kappa_ci"]),
                        "spearman": r["spearman"], "exact agreement": r["exact"],
                        "within one level": r["within_one"], "trusted": _trust(r["trusted"])} for r in rows])
    st.dataframe(df, hide_index=True, width="stretch")


def _position_bias(store: Store, goal_name: str) -> None:
    """How often the pairwise judge picked the same position in both orders (latest finished run)."""
    rows = data.position_bias(store, goal_name)
    if not rows:
        return
    st.subheader("Pairwise judge: position bias")
    st.caption("Share of comparisons where the judge preferred the same position (first or second) in both "
               "orders: a judge without position bias scores near 0; such pairs count as ties.")
    st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch")


def _raters(store: Store, goal: Any, cfg: data.AppConfig) -> None:
    """Each rater's progress, and the items raters flagged or commented on."""
    st.subheader("Raters")
    items = data.panel_items(store, goal.goal)
    progress = data.rater_progress(store, goal, cfg.rubrics_dir)
    if not progress:
        st.info("No ratings yet.")
        return
    st.dataframe(pd.DataFrame([{"rater": name, "items done": f"{p['items_done']} of {p['items']}",
                                "items started": p["items_started"], "ratings": p["ratings"],
                                "flagged": p["flagged"], "comments": p["commented"],
                                "last rated": str(p["last_rated"] or "–")[:19]} for name, p in progress.items()]),
                 hide_index=True, width="stretch")
    by_id = {it.item_id: it for it in items}
    notes = [n for n in store.rating_notes(goal.goal) if n["item_id"] in by_id and (n["flagged"] or n["comment"])]
    if notes:
        st.markdown("**Flagged or commented items**")
        st.dataframe(pd.DataFrame([{"item": n["item_id"], "example": by_id[n["item_id"]].example_id,
                                    "candidate": by_id[n["item_id"]].candidate, "rater": n["rater"],
                                    "flagged": "FLAGGED" if n["flagged"] else "", "comment": n["comment"] or ""}
                                   for n in notes]), hide_index=True, width="stretch")


def _distributions(store: Store, goal: Any, report: dict[str, Any]) -> None:
    items = panel.goal_items(store, goal)
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
