"""Training page: loss curves per adapter, overfitting and early stopping, hyperparameters."""
from __future__ import annotations

import json
from typing import TYPE_CHECKING

import pandas as pd
import streamlit as st

from harness.app import charts, data

if TYPE_CHECKING:
    from harness.store import Store


def render(store: Store, run_id: str) -> None:
    st.title(f"Training · {run_id}")
    _data_size_curves(store, run_id)
    points = store.curves(run_id)
    cands = {c["name"]: c for c in store.candidates(run_id)}
    trained = sorted({p["candidate"] for p in points})
    if not trained:
        st.info("No trained candidates (adapters) in this run.")
        return
    if len(trained) > 1:  # a sweep: every candidate's curves on one chart first
        st.subheader("All trained candidates")
        st.altair_chart(charts.sweep_loss_chart(points, {n: cands.get(n, {}).get("best_step") for n in trained}),
                        width="stretch")
    for name in trained:
        cand = cands.get(name, {})
        st.subheader(name)
        left, right = st.columns([3, 2])
        with left:
            pts = [p for p in points if p["candidate"] == name]
            st.altair_chart(charts.loss_chart(pts, name, cand.get("best_step")), width="stretch")
        with right:
            if cand.get("overfitting"):
                st.warning(f"Overfitting: validation loss rose after step {cand.get('best_step')}")
            else:
                st.success("No overfitting detected")
            if cand.get("best_step") is not None:
                stopped = "stopped early; " if cand.get("stopped_early") else ""
                st.markdown(f"Early-stopping point: **step {cand['best_step']}** ({stopped}best validation loss)")
            st.markdown(f"Training time: {data.fmt(cand.get('train_seconds'), 1)} s · "
                        f"tokens seen: {data.fmt(cand.get('tokens_seen'))}")
            cfg = cand.get("config")
            if isinstance(cfg, str):
                try:
                    cfg = json.loads(cfg)
                except ValueError:
                    cfg = {"config": cfg}
            # The stored config is the whole candidate entry; its name and kind are shown already.
            params = {k: v for k, v in (cfg or {}).items() if k not in ("name", "kind") and v is not None}
            if params:
                st.markdown("**Hyperparameters**")
                st.dataframe(pd.DataFrame([{"parameter": k, "value": str(v)} for k, v in params.items()]),
                             hide_index=True, width="stretch")


def _data_size_curves(store: Store, run_id: str) -> None:
    """The data-size curve of each `train_fraction` sweep, with the extrapolation (harness.curve)."""
    from harness.curve import curve_data
    from harness.results import results_dict

    goal = data.goal_from_run(store.run(run_id))
    if goal is None:
        return
    res = results_dict(store, goal.goal, run_id)
    for c in curve_data(store, goal, res) if res else []:
        st.subheader(f"Data-size curve: {c['group']}, {c['metric']}")
        st.altair_chart(charts.curve_chart(c["points"], c["threshold"], c["metric"]), width="stretch")
        st.caption(f"To reach {c['threshold']:g}: {c['extrapolation'].describe()}.")
