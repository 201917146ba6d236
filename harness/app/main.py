"""The Streamlit app: leaderboard, compare, training, rate (human panel), agreement.

``streamlit run app.py [-- --db PATH --goals DIR --rubrics DIR --leaderboards DIR]``.
A page is chosen in the sidebar or with ``?page=Rate`` (and ``&goal=NAME``) in the URL.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import streamlit as st

from harness.app import data
from harness.errors import HarnessError

PAGES = ("Leaderboard", "Compare", "Training", "Rate", "Agreement")
RUN_PAGES = ("Leaderboard", "Compare", "Training")


@st.cache_resource(show_spinner=False)
def get_store(path: str):
    from harness.store import Store

    return Store(path)


def _initial(options: Sequence[str], param: str, default: int = 0) -> int:
    wanted = st.query_params.get(param)
    return list(options).index(wanted) if wanted in options else default


def leaderboards_dir(cfg: data.AppConfig) -> Path:
    if cfg.leaderboards_dir.is_dir():
        return cfg.leaderboards_dir
    # Outside the project folder, fall back to the definitions shipped beside the package.
    return Path(__file__).resolve().parents[2] / "leaderboards"


def main(argv: Sequence[str] = ()) -> None:
    st.set_page_config(page_title="harness", page_icon="📏", layout="wide")
    cfg = data.AppConfig.from_args(argv)
    store = get_store(str(cfg.db))
    goals = data.load_goals(cfg.goals_dir)

    page = st.sidebar.radio("Page", PAGES, index=_initial(PAGES, "page"), key="page")
    names = data.goal_names(store, goals)
    if not names:
        st.title("harness")
        st.info(f"No goals yet: no runs in {cfg.db} and no goal files in {cfg.goals_dir}/. "
                "Write a goal file, then `harness run goals/<goal>.yaml`.")
        return
    goal_name = st.sidebar.selectbox("Goal", names, index=_initial(names, "goal"), key="goal")
    goal = data.resolve_goal(store, goal_name, goals)
    info = goals.get(goal_name)
    if info and info.problems:
        st.sidebar.caption("Goal file notes: " + "; ".join(info.problems))

    run_id = None
    if page in RUN_PAGES:
        runs = store.runs(goal_name)
        if not runs:
            st.title(page)
            st.info(f"No runs of {goal_name!r} yet: `harness run {info.source if info else 'goals/' + goal_name + '.yaml'}`.")
            return
        labels = [f"{r['run_id']} · {str(r['started_at'])[:16]} · {r['status']}" for r in runs]
        choice = st.sidebar.selectbox("Run (latest first)", range(len(runs)), format_func=lambda i: labels[i],
                                      key=f"run:{goal_name}")
        run_id = runs[choice]["run_id"]

    try:
        if page == "Leaderboard":
            from harness.app.leaderboard import render
            render(store, cfg, goal_name, goal, run_id, leaderboards_dir(cfg))
        elif page == "Compare":
            from harness.app.compare import render
            render(store, goal_name, run_id)
        elif page == "Training":
            from harness.app.training import render
            render(store, run_id)
        elif page == "Rate":
            from harness.app.rate import render
            render(store, cfg, goal_name, goal)
        else:
            from harness.app.agreement_page import render
            render(store, cfg, goal_name, goal)
    except HarnessError as exc:
        st.error(str(exc))
