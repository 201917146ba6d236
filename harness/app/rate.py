"""Rate page: the human panel. Blind items, one at a time; every answer is saved at once.

Who rates, under which name, is :mod:`harness.app.access`: with invitations the link's
``?token=`` (or the token pasted here) signs the rater in under the name it is bound to, and
there is no name to type; without, a typed name (normalised), plus the goal's access token
when it lists ``tokens`` (deprecated). Access is checked again on every page load and inside
every save, so a revoked invitation or a removed token saves nothing more. Each criterion's
answer is written to the store the moment it is chosen (and again on "Submit & next"), so
closing the tab loses nothing; rating an item again updates the row. Candidate names are never
shown; the reference answer only when the goal says ``human.show_reference``.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

import streamlit as st

from harness import panel
from harness.app import access, data
from harness.errors import HarnessError

if TYPE_CHECKING:
    from harness.store import Store

CHOICE_TEXT = {"A": "Response A is better", "B": "Response B is better", "tie": "Tie"}


def _k(goal: str, what: str) -> str:
    return f"rate:{goal}:{what}"


def render(store: Store, cfg: data.AppConfig, goal_name: str, goal: Any) -> None:
    st.title(f"Rate · {goal_name}")
    if goal is None or goal.human is None:
        st.info("This goal has no human panel: add a `human:` section (rubrics, items, raters_per_item) to its goal file.")
        return
    signed_in = _signed_in(store, goal_name, goal)
    if signed_in is None:
        return
    rater = signed_in.name
    rubrics = _rubrics(goal, cfg)
    items = data.ensure_items(store, goal, cfg.rubrics_dir)
    if not items:
        st.info("No items to rate yet: the goal needs a finished run with outputs.")
        return
    ratings = store.ratings(goal_name)
    qkey = _k(goal_name, f"queue:{rater}")
    if qkey not in st.session_state:
        # Fixed for the session, so items do not move while others rate.
        queue = panel.queue_for_rater(items, ratings, rater, goal.human.raters_per_item, goal=goal_name,
                                      seed=int(getattr(goal.human, "seed", 0) or 0))
        st.session_state[qkey] = [it.item_id for it in queue]
    by_id = {it.item_id: it for it in items}
    queue = [by_id[i] for i in st.session_state[qkey] if i in by_id]
    mine = _mine(ratings, rater)
    done = [it for it in queue if _complete(it, mine, rubrics)]
    pkey = _k(goal_name, f"pos:{rater}")
    if pkey not in st.session_state:
        st.session_state[pkey] = next((i for i, it in enumerate(queue) if it not in done), len(queue))
    pos = min(st.session_state[pkey], len(queue))

    top = st.columns([4, 1])
    top[0].markdown(f"Rating as **{rater}**")
    if top[1].button("Sign out", key=_k(goal_name, "signout")):
        _sign_out(goal_name)
        st.rerun()
    st.progress(len(done) / max(1, len(queue)), text=f"{len(done)} of {len(queue)} items rated")
    if not queue:
        st.info("Every item already has enough raters. Thank you!")
        return
    if pos >= len(queue):
        st.success("All items done. Thank you! Your ratings are saved.")
        if st.button("◀ Back", key=_k(goal_name, "back_end")):
            st.session_state[pkey] = len(queue) - 1
            st.rerun()
        return
    # One keyed container per position: a browser (or test) can tell this item's widgets from
    # the previous item's while a rerun replaces them.
    with st.container(key=f"rate-item-{pos}"):
        _item(store, cfg, goal, queue[pos], pos, len(queue), signed_in, rubrics, mine, pkey)


def _rubrics(goal: Any, cfg: data.AppConfig) -> dict[str, Any]:
    from harness.judge.rubric import load_rubric

    return {name: load_rubric(name, cfg.rubrics_dir) for name in goal.human.rubrics}


def _sign_out(goal_name: str) -> None:
    """Forget the session's rater (and the link's token, which would sign them straight back in)."""
    for key in [k for k in st.session_state if str(k).startswith(f"rate:{goal_name}:")]:
        del st.session_state[key]
    if "token" in st.query_params:
        del st.query_params["token"]


def _signed_in(store: Store, goal_name: str, goal: Any) -> access.Rater | None:
    """The session's rater if their access still holds, else the sign-in (None until done).
    An invitation link's ``?token=`` signs in without a form."""
    rater = st.session_state.get(_k(goal_name, "rater"))
    if isinstance(rater, access.Rater):
        reason = access.still_valid(store, goal, rater)
        if reason is None:
            return rater
        _sign_out(goal_name)
        st.error(reason)
        return _sign_in(store, goal_name, goal)
    token = str(st.query_params.get("token") or "")
    if token and access.access_mode(store, goal) == access.INVITATION:
        try:
            rater = access.sign_in(store, goal, token=token)
        except HarnessError as exc:
            if store.invitation(panel.invitation_hash(token)) is None:  # not one for another goal
                st.error(str(exc))
        else:
            st.session_state[_k(goal_name, "rater")] = rater
            return rater
    return _sign_in(store, goal_name, goal)


def _sign_in(store: Store, goal_name: str, goal: Any) -> None:
    mode = access.access_mode(store, goal)
    name = token = None
    with st.form(_k(goal_name, "signin")):
        if mode == access.INVITATION:
            token = st.text_input("Invitation token", type="password", key=_k(goal_name, "invite"),
                                  help="The token in the link the goal's owner sent you.")
        else:
            name = st.text_input("Your name", key=_k(goal_name, "name"))
            if mode == access.TOKEN:
                token = st.text_input("Access token", type="password", key=_k(goal_name, "token"))
        submitted = st.form_submit_button("Start rating")
    if not submitted:
        if mode == access.INVITATION:
            st.caption("This panel is by invitation: open the link the goal's owner sent you, or paste its token.")
        st.caption("Outputs are shown without candidate names, in an order of their own for each rater.")
        return None
    try:
        rater = access.sign_in(store, goal, token=token, name=name)
    except HarnessError as exc:
        st.error(str(exc))
        return None
    st.session_state[_k(goal_name, "rater")] = rater
    st.rerun()


def _mine(ratings: list[dict[str, Any]], rater: str) -> dict[str, dict[str, dict[str, Any]]]:
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for r in ratings:
        if r["rater"] == rater:
            out.setdefault(r["item_id"], {})[r["criterion"]] = r
    return out


def _complete(item: panel.PanelItem, mine: dict[str, dict[str, Any]], rubrics: dict[str, Any]) -> bool:
    rub = rubrics.get(item.rubric)
    names = rub.criterion_names if rub else []
    got = mine.get(item.item_id, {})
    return bool(names) and all(n in got for n in names)


def _save(store: Store, cfg: data.AppConfig, rater: access.Rater, item: panel.PanelItem, criterion: str,
          value: Any) -> None:
    """Save one answer, access re-checked against the store and the goal file as they are now."""
    if value is None:
        return
    goal = None if rater.via == access.INVITATION else data.current_goal(store, cfg.goals_dir, rater.goal)
    if rater.via != access.INVITATION and goal is None:
        raise HarnessError(f"goal {rater.goal!r} is gone: nothing was saved")
    access.save_rating(store, goal, rater, item, criterion, value)


def _on_change(store: Store, cfg: data.AppConfig, rater: access.Rater, item: panel.PanelItem, criterion: str,
               key: str) -> None:
    try:
        _save(store, cfg, rater, item, criterion, st.session_state.get(key))
        st.session_state[_k(rater.goal, "saved")] = criterion
    except HarnessError as exc:
        st.session_state[_k(rater.goal, "error")] = str(exc)


def _item(store: Store, cfg: data.AppConfig, goal: Any, item: panel.PanelItem, pos: int, total: int,
          rater: access.Rater, rubrics: dict[str, Any], mine: dict[str, dict[str, Any]], pkey: str) -> None:
    content = data.item_content(store, item, show_reference=bool(goal.human.show_reference))
    st.subheader(f"Item {pos + 1} of {total}")
    _conversation(content)
    cols = st.columns(len(content["responses"]))
    for col, (label, text) in zip(cols, content["responses"]):
        with col:
            st.markdown(f"**{label}**")
            st.code(text, language=None, wrap_lines=True)
            sent = content["per_response"].get(label)
            if sent:
                with st.expander(f"What {label}'s model was sent"):
                    _messages(sent)
    if content.get("reference"):
        with st.expander("Reference answer"):
            st.code(content["reference"], language=None, wrap_lines=True)
    rubric = rubrics.get(item.rubric)
    if rubric is None:
        st.error(f"Item uses rubric {item.rubric!r}, which this goal's panel does not list.")
        return
    st.caption(rubric.description)
    keys = _criteria(store, cfg, item, rater, rubric, mine.get(item.item_id, {}))
    _note(store, cfg, item, rater)
    error = st.session_state.pop(_k(rater.goal, "error"), None)
    if error:
        st.error(f"That answer was not saved: {error}")
    saved = st.session_state.pop(_k(rater.goal, "saved"), None)
    if saved:
        st.caption(f"Saved ✓ ({saved})")
    _buttons(store, cfg, item, pos, rater, keys, pkey)
    _keyboard(item)


ROLE_LABELS = {"system": "System prompt", "user": "User", "assistant": "Assistant"}


def _conversation(content: dict[str, Any]) -> None:
    """The conversation the candidate answered: as sent when stored, else the example's own."""
    st.markdown("**What the model was given**")
    if content["as_sent"]:
        st.caption("As sent: the system prompt, earlier turns (worked examples included) and any retrieved "
                   "passages, then the last user turn, which the response answers.")
    elif content["per_response"]:
        st.caption("The responses' models were prompted differently: the example's own conversation is here, "
                   "each response's full prompt under it.")
    else:
        st.caption("The example's own conversation (the prompt as sent was not stored for this output).")
    _messages(content["conversation"])


def _messages(messages: list[dict[str, str]]) -> None:
    last_user = max((i for i, m in enumerate(messages) if m.get("role") == "user"), default=-1)
    for i, m in enumerate(messages):
        role = str(m.get("role") or "user")
        label = ROLE_LABELS.get(role, role)
        if i == last_user:
            label += " (answered by the response)"
        with st.container(border=True):
            st.caption(label)
            if i == last_user:
                st.code(str(m.get("content") or ""), language=None, wrap_lines=True)
            else:
                st.text(str(m.get("content") or ""))


def _note(store: Store, cfg: data.AppConfig, item: panel.PanelItem, rater: access.Rater) -> None:
    """A comment and a flag on the item, saved with the rater's ratings as soon as either changes."""
    ckey, fkey = _note_keys(rater, item)
    if ckey not in st.session_state:
        old = next((n for n in store.rating_notes(rater.goal)
                    if n["rater"] == rater.name and n["item_id"] == item.item_id), None)
        st.session_state[ckey] = (old or {}).get("comment") or ""
        st.session_state[fkey] = bool((old or {}).get("flagged"))
    args = (store, cfg, rater, item, ckey, fkey)
    st.text_area("Comment (optional)", key=ckey, on_change=_on_note, args=args, height=68,
                 help="Anything the owner should know about this item or your rating of it.")
    st.checkbox("Flag this item (broken input, off-task output, cannot be rated fairly)", key=fkey,
                on_change=_on_note, args=args)


def _note_keys(rater: access.Rater, item: panel.PanelItem) -> tuple[str, str]:
    return (_k(rater.goal, f"comment:{rater.name}:{item.item_id}"), _k(rater.goal, f"flag:{rater.name}:{item.item_id}"))


def _on_note(store: Store, cfg: data.AppConfig, rater: access.Rater, item: panel.PanelItem, ckey: str,
             fkey: str) -> None:
    try:
        goal = None if rater.via == access.INVITATION else data.current_goal(store, cfg.goals_dir, rater.goal)
        if rater.via != access.INVITATION and goal is None:
            raise HarnessError(f"goal {rater.goal!r} is gone: nothing was saved")
        access.save_note(store, goal, rater, item, st.session_state.get(ckey), bool(st.session_state.get(fkey)))
        st.session_state[_k(rater.goal, "saved")] = "comment and flag"
    except HarnessError as exc:
        st.session_state[_k(rater.goal, "error")] = str(exc)


KEYS_HELP = {panel.PAIRWISE: "Keys: **a** / **b** / **t** answer the first unanswered criterion (A better, B better, "
                             "tie); **n** or **Enter** submit and go to the next item; **s** skip; **p** back.",
             "pointwise": "Keys: **1**–**5** score the first unanswered criterion; **n** or **Enter** submit and go "
                          "to the next item; **s** skip; **p** back. Not while typing a comment."}

# Keyboard shortcuts, installed once per page: digits (or a/b/t) click the matching option of the
# first criterion without an answer in the item on screen, n/Enter its "Submit & next".
_KEY_SCRIPT = """<script>
(() => {
  const doc = document;
  if (doc.__harnessRateKeys) return;
  doc.__harnessRateKeys = true;
  const pair = {a: "Response A is better", b: "Response B is better", t: "Tie"};
  const buttons = {n: "Submit & next", Enter: "Submit & next", s: "Skip ▶", p: "◀ Back"};
  doc.addEventListener("keydown", (e) => {
    if (e.ctrlKey || e.metaKey || e.altKey || e.repeat) return;
    const t = e.target, tag = t && t.tagName ? t.tagName.toLowerCase() : "";
    // keys typed into a form field (a comment, a drop-down) are the field's, not shortcuts
    if (["textarea", "button", "select"].includes(tag) || (t && t.isContentEditable)) return;
    if (tag === "input" && !["radio", "checkbox"].includes(t.type)) return;
    const items = doc.querySelectorAll('[class*="st-key-rate-item-"]');
    const item = items[items.length - 1];
    if (!item) return;
    if (buttons[e.key]) {
      const b = [...item.querySelectorAll("button")].find((x) => x.innerText.trim() === buttons[e.key]);
      if (b && !b.disabled) { e.preventDefault(); b.click(); }
      return;
    }
    const want = /^[1-9]$/.test(e.key) ? (s) => s.startsWith(e.key + " ·") : pair[e.key] ? (s) => s === pair[e.key] : null;
    if (!want) return;
    const group = [...item.querySelectorAll('[role="radiogroup"]')].find((g) => !g.querySelector("input:checked"));
    const label = group && [...group.querySelectorAll("label")].find((l) => want(l.innerText.trim()));
    if (label) { e.preventDefault(); (label.querySelector("input") || label).click(); }
  });
})();
</script>"""


def _keyboard(item: panel.PanelItem) -> None:
    st.caption(KEYS_HELP[panel.PAIRWISE if item.mode == panel.PAIRWISE else "pointwise"])
    st.html(_KEY_SCRIPT, unsafe_allow_javascript=True)


def _criteria(store: Store, cfg: data.AppConfig, item: panel.PanelItem, rater: access.Rater, rubric: Any,
              previous: dict[str, Any]) -> dict[str, str]:
    """One radio per criterion, each saving on change; {criterion: widget key}."""
    keys = {}
    for crit in rubric.criteria:
        key = _k(rater.goal, f"w:{rater.name}:{item.item_id}:{crit.name}")
        keys[crit.name] = key
        old = previous.get(crit.name)
        st.markdown(f"**{crit.name}**: {crit.description}")
        args = (store, cfg, rater, item, crit.name, key)
        if item.mode == panel.PAIRWISE:
            options = list(panel.PAIR_CHOICES)
            index = options.index(old["choice"]) if old and old.get("choice") in options else None
            st.radio(crit.name, options, index=index, key=key, format_func=CHOICE_TEXT.get, horizontal=True,
                     label_visibility="collapsed", on_change=_on_change, args=args)
        else:
            options = list(crit.scale)
            index = options.index(int(old["score"])) if old and old.get("score") is not None else None
            st.radio(crit.name, options, index=index, key=key, format_func=lambda v, c=crit: f"{v} · {c.scale[v]}",
                     label_visibility="collapsed", on_change=_on_change, args=args)
    return keys


def _buttons(store: Store, cfg: data.AppConfig, item: panel.PanelItem, pos: int, rater: access.Rater,
             keys: dict[str, str], pkey: str) -> None:
    back, skip, submit = st.columns(3)
    if back.button("◀ Back", key=_k(rater.goal, "back"), disabled=pos == 0):
        st.session_state[pkey] = max(0, pos - 1)
        st.rerun()
    if skip.button("Skip ▶", key=_k(rater.goal, "skip")):
        st.session_state[pkey] = pos + 1
        st.rerun()
    if submit.button("Submit & next", key=_k(rater.goal, "submit"), type="primary"):
        answers = {c: st.session_state.get(k) for c, k in keys.items()}
        missing = [c for c, v in answers.items() if v is None]
        if missing:
            st.warning(f"Rate every criterion first ({', '.join(missing)}), or Skip.")
            return
        try:
            for crit_name, value in answers.items():
                _save(store, cfg, rater, item, crit_name, value)
        except HarnessError as exc:
            st.error(f"Not saved: {exc}")
            return
        ckey, fkey = _note_keys(rater, item)
        if st.session_state.get(ckey) or st.session_state.get(fkey):  # typed, not yet saved by a blur
            _on_note(store, cfg, rater, item, ckey, fkey)
        st.session_state[pkey] = pos + 1
        st.rerun()
