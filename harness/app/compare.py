"""Compare page: one test example at a time, every candidate side by side."""
from __future__ import annotations

import html
from typing import TYPE_CHECKING

import pandas as pd
import streamlit as st

from harness.app import data, tables

if TYPE_CHECKING:
    from harness.store import Store

MAX_SIDE_BY_SIDE = 4


def render(store: Store, goal_name: str, run_id: str) -> None:
    st.title(f"Compare · {run_id}")
    candidates = store.candidate_names(run_id)
    examples = store.run_example_ids(run_id)
    if not candidates or not examples:
        st.info("This run has no outputs yet.")
        return
    chosen = st.multiselect("Candidates", candidates, default=candidates[:MAX_SIDE_BY_SIDE], key="cmp:cands",
                            max_selections=MAX_SIDE_BY_SIDE)
    gaps: dict[str, float] = {}
    if st.toggle("Only examples where two candidates disagree most", key="cmp:disagree") and len(candidates) >= 2:
        c1, c2, c3, c4 = st.columns(4)
        metrics = store.score_metrics(run_id)
        a = c1.selectbox("Candidate A", candidates, index=0, key="cmp:a")
        b = c2.selectbox("Candidate B", candidates, index=1, key="cmp:b")
        metric = c3.selectbox("Metric", metrics, key="cmp:metric") if metrics else None
        top = int(c4.number_input("Top", min_value=1, max_value=500, value=10, key="cmp:top"))
        if metric:
            rows = store.disagreements(run_id, a, b, metric, limit=top)
            gaps = {r["example_id"]: r["gap"] for r in rows}
            examples = [r["example_id"] for r in rows]
        if not examples:
            st.info("No examples scored by both candidates on this metric.")
            return
    previews = data.example_previews(store, goal_name)

    def label(e: str) -> str:
        gap = f"gap {gaps[e]:.3g} · " if e in gaps else ""
        return f"{gap}{previews.get(e, '')}  ({e[:8]})"

    example_id = st.selectbox("Example", examples, key="cmp:example", format_func=label)
    ex = data.example(store, goal_name, example_id)
    st.markdown("**Input**")
    st.code(ex.get("input") or "(not stored)", language=None, wrap_lines=True)
    st.markdown("**Reference**")
    st.code(ex.get("reference") or "(none)", language=None, wrap_lines=True)
    _side_by_side(store, run_id, example_id, chosen, ex.get("reference"))
    scores = [s for s in store.example_scores(run_id, example_id) if s["candidate"] in chosen]
    if scores:
        st.markdown("**Metrics on this example**")
        st.dataframe(pd.DataFrame(scores).pivot(index="metric", columns="candidate", values="value"), width="stretch")
    judged = [j for j in store.example_judgments(run_id, example_id) if j["candidate"] in chosen]
    if judged:
        st.markdown("**Judge**")
        df = pd.DataFrame(judged)
        df["order"] = df["position_order"].where(df["mode"] == "pairwise", "")
        st.dataframe(df[["candidate", "rubric", "criterion", "mode", "order", "score", "winner", "rationale"]],
                     hide_index=True, width="stretch")
        pairs = df[df["mode"] == "pairwise"]
        if len(pairs):
            st.caption("Pairwise judgments run both orders (AB: candidate shown first; BA: swapped); "
                       "orders that disagree count as a tie.")


def _side_by_side(store: Store, run_id: str, example_id: str, chosen: list[str], reference: str | None) -> None:
    """One column per chosen candidate: its output, the passages it retrieved, the diff."""
    outputs = store.outputs_for_example(run_id, example_id)
    passages = store.passages_for_example(run_id, example_id)
    cols = st.columns(max(1, len(chosen)))
    for col, cand in zip(cols, chosen):
        with col:
            st.markdown(f"#### {html.escape(cand)}")
            st.code(outputs.get(cand, "(no output)"), language=None, wrap_lines=True)
            if cand in passages:
                st.caption("Retrieved passages, best first: " + ", ".join(passages[cand]))
            if reference:
                st.caption("Diff against the reference (red: missing, green: added)")
                st.markdown(tables.word_diff_html(reference, outputs.get(cand)), unsafe_allow_html=True)
