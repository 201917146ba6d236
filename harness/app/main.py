"""The Streamlit app: leaderboard, compare, training, rate (human panel), agreement.

``streamlit run app.py [-- --db PATH --goals DIR --rubrics DIR --leaderboards DIR --rater]``.
A page is chosen in the sidebar or with ``?page=Rate`` (and ``&goal=NAME``) in the URL; an
invitation link's ``?token=`` opens the Rate page of its goal.

Rater mode (``--rater`` or ``HARNESS_APP_MODE=rater``) has the Rate page only. Otherwise the
owner's pages (all but Rate) need the owner token unless the server listens on loopback only
(:mod:`harness.app.access`).
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import streamlit as st

from harness import panel
from harness.app import access, data
from harness.errors import HarnessError

if TYPE_CHECKING:
    from harness.store import Store

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
    # Outside the project folder, fall back to the definitions shipped with the package.
    from harness.resources import shipped

    return shipped("leaderboards")


def main(argv: Sequence[str] = ()) -> None:
    st.set_page_config(page_title="harness", page_icon="📏", layout="wide")
    cfg = data.AppConfig.from_args(argv)
    store = get_store(str(cfg.db))
    goals = data.load_goals(cfg.goals_dir)
    if cfg.rater_only:
        _rater_app(store, cfg, goals)
        return
    invited = _invited_goal(store)
    linked = PAGES.index("Rate") if st.query_params.get("token") else 0  # an invitation link, live or not
    page = st.sidebar.radio("Page", PAGES, index=_initial(PAGES, "page", linked), key="page")
    names = data.goal_names(store, goals)
    owner = _owner_signed_in(cfg)
    if not names:
        st.title("harness")
        st.info(f"No goals yet: no runs in {cfg.db} and no goal files in {cfg.goals_dir}/. "
                "Write a goal file, then `harness run goals/<goal>.yaml`." if owner else "No goals yet.")
        return
    default = names.index(invited) if invited in names else 0
    goal_name = st.sidebar.selectbox("Goal", names, index=_initial(names, "goal", default), key="goal")
    goal = data.resolve_goal(store, goal_name, goals)
    if not owner and page != "Rate":
        _owner_pages_closed(cfg, page)
        return
    info = goals.get(goal_name)
    if info and info.problems and page != "Rate":
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
    _render(page, store, cfg, goal_name, goal, run_id)


def _render(page: str, store: Store, cfg: data.AppConfig, goal_name: str, goal: object, run_id: str | None) -> None:
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


def _invited_goal(store: Store) -> str | None:
    """The goal of the live invitation in the URL's ``?token=``, if any."""
    token = str(st.query_params.get("token") or "")
    found = store.invitation(panel.invitation_hash(token)) if token else None
    return str(found["goal"]) if found else None


def _owner_signed_in(cfg: data.AppConfig) -> bool:
    """Whether this session may see the owner's pages: always on a loopback-only server, else with
    the owner token typed in the sidebar (on every page, so it survives a visit to Rate; checked
    on every rerun against the configured one)."""
    if access.is_loopback(st.get_option("server.address")):
        return True
    if not cfg.owner_token:
        return False
    given = st.sidebar.text_input("Owner token", type="password", key="owner:token")
    return access.check_owner(cfg.owner_token, given)


def _owner_pages_closed(cfg: data.AppConfig, page: str) -> None:
    address = st.get_option("server.address")
    where = f"on {address}" if address else "on every network interface"
    st.title(page)
    if not cfg.owner_token:
        st.warning(f"This app listens {where}, so the owner's pages need an owner token: restart it with "
                   "`harness app --owner-token …` (or set HARNESS_OWNER_TOKEN), or bind it to localhost. "
                   "The Rate page stays open to raters.")
        return
    if st.session_state.get("owner:token"):
        st.error("Wrong owner token.")
    st.info(f"This app listens {where}: enter the owner token in the sidebar to open the {page} page.")


def _rater_app(store: Store, cfg: data.AppConfig, goals: dict[str, data.GoalInfo]) -> None:
    """Rater mode: the Rate page only, of the invitation's goal or a goal with a human panel."""
    invited = _invited_goal(store)
    names = [invited] if invited else data.panel_goal_names(store, goals)
    if not names:
        st.title("Rate")
        st.info("Nothing to rate here yet. Open the link the goal's owner sent you.")
        return
    goal_name = names[0] if len(names) == 1 else st.sidebar.selectbox(
        "Goal", names, index=_initial(names, "goal"), key="goal")
    _render("Rate", store, cfg, goal_name, data.resolve_goal(store, goal_name, goals), None)
