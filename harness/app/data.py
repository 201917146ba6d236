"""What the app reads and writes, without Streamlit: goals, runs, panel items, agreement.

Every read is a named :class:`harness.store.Store` method; the store opens a short-lived
connection per call, so the app and ``harness run`` share the file.
"""
from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from harness import agreement, panel
from harness.errors import InputError
from harness.metric_names import is_human_metric

if TYPE_CHECKING:
    from harness.store import Store

ENV_GOALS, ENV_RUBRICS, ENV_LEADERBOARDS = "HARNESS_GOALS", "HARNESS_RUBRICS", "HARNESS_LEADERBOARDS"
ENV_MODE, ENV_OWNER_TOKEN = "HARNESS_APP_MODE", "HARNESS_OWNER_TOKEN"
RATER_MODE = "rater"


@dataclass
class AppConfig:
    db: Path
    goals_dir: Path
    rubrics_dir: Path
    leaderboards_dir: Path
    rater_only: bool = False            # only the Rate page: no candidate names, no references
    owner_token: str | None = None      # opens the owner's pages when not bound to localhost

    @classmethod
    def from_args(cls, argv: Sequence[str] = ()) -> "AppConfig":
        """``--db``, ``--goals``, ``--rubrics``, ``--leaderboards``, ``--rater``, ``--owner-token``;
        else the environment (``HARNESS_DB`` ..., ``HARNESS_APP_MODE=rater``,
        ``HARNESS_OWNER_TOKEN``); else the defaults in the current folder."""
        import argparse

        from harness.store import default_db_path

        p = argparse.ArgumentParser(prog="streamlit run app.py --")
        p.add_argument("--db", default=None)
        p.add_argument("--goals", default=None)
        p.add_argument("--rubrics", default=None)
        p.add_argument("--leaderboards", default=None)
        p.add_argument("--rater", action="store_true")
        p.add_argument("--owner-token", default=None)
        args, _ = p.parse_known_args(list(argv))
        return cls(db=Path(args.db) if args.db else default_db_path(),
                   goals_dir=Path(args.goals or os.environ.get(ENV_GOALS) or "goals"),
                   rubrics_dir=Path(args.rubrics or os.environ.get(ENV_RUBRICS) or "rubrics"),
                   leaderboards_dir=Path(args.leaderboards or os.environ.get(ENV_LEADERBOARDS) or "leaderboards"),
                   rater_only=args.rater or os.environ.get(ENV_MODE, "").strip().lower() == RATER_MODE,
                   owner_token=args.owner_token or os.environ.get(ENV_OWNER_TOKEN) or None)


# --------------------------------------------------------------------------- goals

@dataclass
class GoalInfo:
    name: str
    goal: Any | None            # harness.goals.Goal, when it could be read
    source: str = ""
    problems: list[str] = field(default_factory=list)


def load_goals(goals_dir: Path) -> dict[str, GoalInfo]:
    """Goal files by goal name. A goal whose data file is missing still shows its results
    (the app needs its criteria and panel settings, not its data)."""
    from harness.goals import Goal, load_goal
    from harness.yamlfile import load_yaml

    out: dict[str, GoalInfo] = {}
    if not goals_dir.is_dir():
        return out
    for path in sorted(goals_dir.glob("*.y*ml")):
        try:
            g = load_goal(path)
            out[g.goal] = GoalInfo(g.goal, g, str(path))
            continue
        except InputError as exc:
            problems = [str(p) for p in exc.problems]
        try:
            data, _ = load_yaml(path)
            g = Goal.model_validate(data)
            g.source, g.root = str(path), str(path.parent)
            out[g.goal] = GoalInfo(g.goal, g, str(path), problems)
        except Exception:  # noqa: BLE001 - an unreadable goal file is reported, not fatal
            out[path.stem] = GoalInfo(path.stem, None, str(path), problems)
    return out


def goal_from_run(run: dict[str, Any] | None) -> Any | None:
    """The goal as the run recorded it (its config JSON), when no goal file is at hand."""
    from harness.goals import Goal

    if not run or not run.get("config"):
        return None
    try:
        cfg = run["config"] if isinstance(run["config"], dict) else json.loads(run["config"])
        return Goal.model_validate({k: v for k, v in cfg.items() if k in Goal.model_fields})
    except Exception:  # noqa: BLE001 - an older config shape just means no goal details
        return None


def resolve_goal(store: "Store", name: str, goals: dict[str, GoalInfo]) -> Any | None:
    info = goals.get(name)
    if info is not None and info.goal is not None:
        return info.goal
    return goal_from_run(store.latest_run(name))


def goal_names(store: "Store", goals: dict[str, GoalInfo]) -> list[str]:
    return sorted(set(store.goals()) | set(goals))


def current_goal(store: "Store", goals_dir: Path, name: str) -> Any | None:
    """The goal as its file says now (re-read), for checks that must not trust a session's copy."""
    return resolve_goal(store, name, load_goals(goals_dir))


def panel_goal_names(store: "Store", goals: dict[str, GoalInfo]) -> list[str]:
    """The goals with a human panel (what a rater may pick)."""
    return [n for n in goal_names(store, goals) if getattr(resolve_goal(store, n, goals), "human", None) is not None]


# --------------------------------------------------------------------------- runs

def example(store: "Store", goal: str, example_id: str) -> dict[str, Any]:
    return store.example(goal, example_id) or {"example_id": example_id, "input": None, "reference": None}


def example_previews(store: "Store", goal: str, width: int = 70) -> dict[str, str]:
    """example id -> the start of its input on one line, for pickers."""
    out = {}
    for example_id, text in store.example_inputs(goal).items():
        text = " ".join(str(text or "").split())
        out[example_id] = text if len(text) <= width else text[:width - 1] + "…"
    return out


# --------------------------------------------------------------------------- panel

def panel_items(store: "Store", goal: str) -> list[panel.PanelItem]:
    return [panel.PanelItem.from_row(r) for r in store.panel_items(goal)]


def ensure_items(store: "Store", goal: Any, rubrics_dir: Path | None = None) -> list[panel.PanelItem]:
    """The goal's panel items; drawn (deterministically) from its latest finished run the
    first time. Two processes drawing at once insert the same rows (INSERT OR IGNORE)."""
    items = panel_items(store, goal.goal)
    if items or goal.human is None:
        return items
    drawn = draw_panel(store, goal)
    if not drawn:
        return []
    store.put_panel_items(goal.goal, [it.as_row() for it in drawn])
    return panel_items(store, goal.goal)


def draw_panel(store: "Store", goal: Any) -> list[panel.PanelItem]:
    """The items the goal's panel draws from its latest finished run (deterministically, so
    every process draws the same); none without a ``human:`` section or outputs. Nothing is
    written: ``ensure_items`` and ``harness ratings import`` store them."""
    if goal.human is None:
        return []
    run = store.latest_run(goal.goal, finished_only=True) or store.latest_run(goal.goal)
    outs = store.run_outputs(run["run_id"]) if run else []
    if not outs:
        return []
    spec = goal.human
    seed = int(getattr(spec, "seed", 0) or 0)
    drawn: list[panel.PanelItem] = []
    for rubric in spec.rubrics:
        drawn += panel.draw_items(goal.goal, run["run_id"], outs, None, spec.items, rubric=rubric,
                                  mode=spec.mode, seed=seed)
    return drawn


def item_content(store: "Store", item: panel.PanelItem, *, show_reference: bool = False) -> dict[str, Any]:
    """What a rater sees: the conversation the model was sent, the outputs under blind labels
    and, only when the goal says ``human.show_reference``, the reference answer.

    ``conversation`` is the messages as sent (system turn, earlier turns, few-shot examples,
    retrieved passages, the question) when every response's model got the same ones
    (``as_sent`` True); otherwise the example's own conversation, and ``per_response`` holds
    each label's messages where they were stored (pairwise candidates prompted differently).
    Predictions stored before prompts were kept (or read from a file) have none: then the
    example's own conversation is all there is."""
    ex = example(store, item.goal, item.example_id)
    outs = store.outputs_for_example(item.run_id, item.example_id)
    sent = store.messages_for_example(item.run_id, item.example_id)
    labels = panel.blind_labels(item)
    prompts = {label: sent.get(cand) for label, cand in labels}
    known = [p for p in prompts.values() if p]
    same = bool(known) and len(known) == len(prompts) and all(p == known[0] for p in known)
    own = _own_conversation(ex)
    return {"input": ex.get("input"), "reference": ex.get("reference") if show_reference else None,
            "conversation": known[0] if same else own, "as_sent": same,
            "per_response": {} if same else {label: p for label, p in prompts.items() if p},
            "responses": [(label, outs.get(cand, "(output missing)")) for label, cand in labels]}


def _own_conversation(ex: dict[str, Any]) -> list[dict[str, str]]:
    """The example's stored conversation (its system turn and turns before the answer), else its input."""
    raw = ex.get("prompt")
    try:
        msgs = json.loads(raw) if isinstance(raw, str) else raw
    except ValueError:
        msgs = None
    if isinstance(msgs, list) and all(isinstance(m, dict) and "role" in m for m in msgs) and msgs:
        return [{"role": str(m["role"]), "content": str(m.get("content") or "")} for m in msgs]
    return [{"role": "user", "content": str(ex.get("input") or "(not stored)")}]


# --------------------------------------------------------------------------- agreement

# The panel's agreement report lives with the agreement statistics; the runner uses it too.
criteria_of = agreement.criteria_of
agreement_report = agreement.panel_report
untrusted_metrics = agreement.untrusted_metrics


def rater_progress(store: "Store", goal: Any, rubrics_dir: Path) -> dict[str, dict[str, Any]]:
    """Per rater: items fully rated of the panel's, ratings, flags and comments (``panel.rater_progress``)."""
    items = panel_items(store, goal.goal)
    ratings = store.ratings(goal.goal)
    criteria = {rub: criteria_of(rub, rubrics_dir, ratings) for rub in {it.rubric for it in items}}
    return panel.rater_progress(items, ratings, store.rating_notes(goal.goal), criteria)


def position_bias(store: "Store", goal: str, run_id: str | None = None) -> list[dict[str, Any]]:
    """The pairwise judge's position-bias and win rates per candidate and judge metric, from one
    run's aggregates (default the goal's latest finished run); empty for pointwise judging."""
    run = store.run(run_id) if run_id else store.latest_run(goal, finished_only=True)
    rows = []
    for a in store.aggregates(run["run_id"]) if run else []:
        extra = json.loads(a["extra"]) if isinstance(a.get("extra"), str) else (a.get("extra") or {})
        if extra.get("position_bias_rate") is not None:
            rows.append({"candidate": a["candidate"], "metric": a["metric"], "baseline": extra.get("baseline"),
                         "position bias rate": extra["position_bias_rate"], "win rate": extra.get("win_rate"),
                         "n": a["n"]})
    return rows


def live_human_verdicts(store: "Store", goal: Any, candidates: Sequence[str],
                        run_id: str | None = None) -> list[dict[str, Any]]:
    """Human criteria judged on the ratings as they are now — with ``run_id``, only ratings of
    the very texts the candidates gave in that run (as the run decides them)."""
    if goal is None or not any(is_human_metric(c.metric) for c in goal.success):
        return []
    items = panel.goal_items(store, goal)
    if run_id is not None:
        now = {(r["candidate"], r["example_id"]): r["output"] for r in store.run_outputs(run_id)}
        items = panel.items_showing(items, panel.shown_texts(store, items), now)
    ratings = store.ratings(goal.goal)
    min_ratings = goal.human.min_ratings if goal.human else 10
    from harness import multiplicity

    # Live, per criterion: the Bonferroni level over the goal's candidates (never looser than
    # the stored verdicts' Holm levels).
    family = multiplicity.family_size(goal.candidates, dict.fromkeys(candidates))
    rule = "none" if goal.multiplicity == "none" else "bonferroni"
    confidence = goal.confidence if rule == "none" else multiplicity.level(goal.confidence, family)
    rows = panel.human_verdicts(goal.success, ratings, items, candidates, min_ratings=min_ratings,
                                confidence=confidence)
    for r in rows:
        r["multiplicity"] = multiplicity.label(rule, family)
    return rows


def fmt(x: Any, digits: int = 3) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    if isinstance(x, float):
        return f"{x:.{digits}g}" if abs(x) >= 1000 else f"{x:.{digits}f}"
    return str(x)
