"""Leaderboard page: the definitions in ``leaderboards/`` over the chosen run."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
import streamlit as st

from harness import charts
from harness import leaderboards as lbs
from harness import panel
from harness.app import data, tables

if TYPE_CHECKING:
    from harness.store import Store


def render(store: Store, cfg: data.AppConfig, goal_name: str, goal: Any, run_id: str, folder: Path) -> None:
    st.title(f"Leaderboard · {goal_name}")
    all_boards, problems = lbs.load_leaderboards(folder)
    for p in problems:
        st.warning(f"Leaderboard definition skipped: {p}")
    # History views need a candidate: they go below the main view, not in the chooser.
    boards = [b for b in all_boards if b.layout != "history"]
    history = next((b for b in all_boards if b.layout == "history"), None)
    if not boards:
        st.info(f"No leaderboard definitions in {folder}/.")
        return
    idx = st.selectbox("View", range(len(boards)), format_func=lambda i: boards[i].title, key="lb:view")
    board = boards[idx]
    if board.description:
        st.caption(board.description)
    context = {"goal": goal_name, "run_id": run_id}
    values = filter_widgets(store, board, context)
    rows = lbs.run_leaderboard(store, board, context, values)
    if board.layout == "criteria":
        criteria_view(store, cfg, goal, run_id, rows)
    else:
        table_view(board, rows)
    human_panel_table(store, goal)
    metric_chart(store, goal_name, run_id, goal)
    if history is not None:
        history_view(store, history, goal_name, run_id, goal)


def filter_widgets(store: Store, board: lbs.Leaderboard, context: dict[str, Any]) -> dict[str, Any]:
    """One widget per declared filter; the values go to the query as bound parameters."""
    values: dict[str, Any] = {}
    if not board.filters:
        return values
    cols = st.columns(len(board.filters))
    for col, f in zip(cols, board.filters):
        key = f"lb:{board.name}:{f.param}"
        label = f.label or f.param
        with col:
            if f.type == "number":
                values[f.param] = st.number_input(label, value=float(f.default or 0), help=f.help, key=key)
            elif f.type == "bool":
                values[f.param] = st.checkbox(label, value=bool(f.default), help=f.help, key=key)
            elif f.type == "choice":
                options = lbs.filter_options(store, f, context)
                values[f.param] = st.selectbox(label, options, help=f.help, key=key) if options else f.default
            else:
                values[f.param] = st.text_input(label, value=str(f.default or ""), help=f.help, key=key)
    return values


def criteria_view(store: Store, cfg: data.AppConfig, goal: Any, run_id: str, rows: list[dict[str, Any]]) -> None:
    criteria = list(goal.success) if goal is not None else []
    candidates = sorted({r["candidate"] for r in rows})
    human = data.live_human_verdicts(store, goal, candidates, run_id)
    untrusted: set[str] = set()
    if goal is not None and goal.human is not None:
        untrusted = data.untrusted_metrics(data.agreement_report(store, goal, cfg.rubrics_dir))
    table, headers = tables.criteria_table(rows, human, goal_criteria=criteria, untrusted=untrusted)
    if not table:
        st.info("No candidates match.")
        return
    if goal is not None:
        from harness.results import GOAL_CHANGED, goal_changed, run_decided_under

        if goal_changed(run_decided_under(store.run(run_id) or {}), goal, cfg.rubrics_dir):
            st.warning(GOAL_CHANGED[0].upper() + GOAL_CHANGED[1:] + ".")
    df = pd.DataFrame(table)
    c1, c2, c3 = st.columns([2, 1, 1])
    sort_options = ["candidate", "meets goal", "cost (USD)", "training (s)"] + headers
    sort_by = c1.selectbox("Sort by", sort_options, key="lb:sort")
    descending = c2.checkbox("Descending", value=sort_by not in ("candidate", "cost (USD)", "training (s)"), key=f"lb:desc:{sort_by}")
    only_meeting = c3.checkbox("Only candidates meeting the goal", key="lb:meeting")
    col = f"_value:{sort_by}" if f"_value:{sort_by}" in df.columns else sort_by
    df = df.sort_values(col, ascending=not descending, na_position="last", kind="stable")
    if only_meeting:
        df = df[df["meets goal"] == tables.meets_goal_text(["pass"])]
    shown = ["candidate", "kind", *headers, "meets goal", "cost (USD)", "training (s)", "baseline"]
    styled = df[shown].style.map(tables.status_css, subset=[*headers, "meets goal"])
    st.dataframe(styled, hide_index=True, width="stretch",
                 column_config={"cost (USD)": st.column_config.NumberColumn(format="%.4f"),
                                "training (s)": st.column_config.NumberColumn(format="%.1f")})
    if untrusted:
        st.warning(f"Judge criteria marked {tables.UNTRUSTED} disagree with the human panel (below the goal's agreement "
                   "threshold); see the Agreement page.")
    rules = sorted({str(r["multiplicity"]) for r in rows if r.get("multiplicity")})
    if rules:
        st.caption("Across candidates: " + "; ".join(rules) + ". Each verdict's interval and level are in the details.")
    with st.expander("Verdict details"):
        for r in rows + human:
            if r.get("metric") and r.get("detail"):
                st.markdown(f"- **{r['candidate']}** · `{r['metric']}`: {r['detail']}")


def table_view(board: lbs.Leaderboard, rows: list[dict[str, Any]]) -> None:
    if not rows:
        st.info("No rows match.")
        return
    df = pd.DataFrame(rows)
    if board.sort and board.sort in df.columns:
        df = df.sort_values(board.sort, ascending=not board.descending, kind="stable")
    config: dict[str, Any] = {}
    for name, spec in board.columns.items():
        if name not in df.columns:
            continue
        if spec.hidden:
            config[name] = None
        elif spec.format:
            config[name] = st.column_config.NumberColumn(spec.label or name, format=spec.format, help=spec.help)
        else:
            config[name] = st.column_config.Column(spec.label or name, help=spec.help)
    st.dataframe(df, hide_index=True, width="stretch", column_config=config)


def human_panel_table(store: Store, goal: Any) -> None:
    """Human-panel scores as they stand now (mean, CI, n), per rubric of the goal's panel."""
    if goal is None or goal.human is None:
        return
    items = panel.goal_items(store, goal)
    ratings = store.ratings(goal.goal)
    if not ratings:
        st.caption("Human panel: no ratings yet (Rate page).")
        return
    rows = []
    for rubric in goal.human.rubrics:
        rows += panel.human_aggregates(ratings, items, f"human.{rubric}", confidence=goal.confidence)
    if rows:
        st.subheader("Human panel")
        # A static table (not a canvas grid): readable as text, and small.
        st.table(pd.DataFrame([{"candidate": r["candidate"], "metric": r["metric"],
                                "human score": f"{r['value']:.2f}",
                                "CI": "–" if r["ci_low"] != r["ci_low"] else f"[{r['ci_low']:.2f}, {r['ci_high']:.2f}]",
                                "examples": r["n"], "ratings": r["extra"]["n_ratings"]} for r in rows]))


def metric_chart(store: Store, goal_name: str, run_id: str, goal: Any = None) -> None:
    """The chosen metric per candidate: value, interval, verdict colour, the criterion's threshold
    — the rows the report draws (:func:`harness.charts.metric_rows`)."""
    from harness.results import results_dict

    metrics = store.aggregate_metrics(run_id)
    res = results_dict(store, goal_name, run_id)
    if not metrics or res is None:
        return
    metric = st.selectbox("Chart metric", metrics, key="lb:chart_metric")
    rows, levels, threshold = charts.metric_rows(goal, res, metric)
    st.altair_chart(charts.interval_chart(rows, metric, threshold=threshold, title=charts.levels_title(metric, levels)),
                    width="stretch")


def history_view(store: Store, board: lbs.Leaderboard, goal_name: str, run_id: str, goal: Any = None) -> None:
    st.subheader("Candidate across runs")
    names = store.goal_candidates(goal_name)
    if not names:
        return
    cand = st.selectbox("Candidate", names, key="lb:history_candidate")
    rows = lbs.run_leaderboard(store, board, {"goal": goal_name, "run_id": run_id, "candidate": cand})
    if not rows:
        st.info("No history for this candidate.")
        return
    table_view(board, rows)
    # One chart per scale: 0–1 rates and 1–5 ratings never share an axis.
    thresholds = goal.thresholds() if goal is not None else {}
    for chart in charts.history_charts(rows, thresholds, title=f"{cand} across runs"):
        st.altair_chart(chart, width="stretch")
