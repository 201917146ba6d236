"""Who may rate a goal, under which name, and who may open the owner's pages — without Streamlit.

Raters. A goal with invitations (``harness panel invite GOAL NAME``) lets in only holders of
a live invitation, under the name the invitation is bound to: the rater types no name. Every
save checks the invitation in the same transaction as the write
(:meth:`harness.store.Store.put_invited_rating`), never a session flag, so a revoked invitation
saves nothing from the moment it is revoked. A goal that never had an invitation falls back to
its ``human.tokens`` (deprecated: shared plaintext tokens, a typed name) and, without those, to
anyone under a typed name; typed names are normalised (:func:`harness.panel.rater_name`), and
each save re-reads the goal, so removing a token ends the sessions that came in with it.

Owner. The owner's pages (all but Rate) are open when the app listens on loopback only, as a
``harness app`` on localhost does; bound to anything else (or to every interface, Streamlit's
default) they ask for the owner token (``--owner-token`` / ``HARNESS_OWNER_TOKEN``).
"""
from __future__ import annotations

import hmac
import ipaddress
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from harness import panel
from harness.errors import HarnessError

if TYPE_CHECKING:
    from harness.store import Store

INVITATION, TOKEN, OPEN = "invitation", "token", "open"
LOOPBACK_NAMES = ("localhost", "localhost.localdomain", "ip6-localhost")


@dataclass(frozen=True)
class Rater:
    """A signed-in rater: the goal, the name ratings are stored under and what let them in.
    ``secret`` is the invitation's hash, or the goal token (deprecated); it is never shown."""

    goal: str
    name: str
    via: str
    secret: str = ""


def access_mode(store: Store, goal: Any) -> str:
    """INVITATION once the goal has had an invitation, else TOKEN with goal tokens, else OPEN."""
    if store.has_invitations(goal.goal):
        return INVITATION
    if goal.human is not None and goal.human.tokens:
        return TOKEN
    return OPEN


def sign_in(store: Store, goal: Any, *, token: str | None = None, name: str | None = None) -> Rater:
    """The rater these credentials let in, or a HarnessError a rater can act on. With
    invitations the name comes from the invitation and ``name`` is ignored."""
    mode = access_mode(store, goal)
    if mode == INVITATION:
        secret = panel.invitation_hash(token or "")
        found = store.invitation(secret, goal.goal) if (token or "").strip() else None
        if found is None:
            raise HarnessError("This invitation is unknown or was revoked: ask the goal's owner for a new link.")
        return Rater(goal.goal, str(found["rater"]), INVITATION, secret)
    rater = panel.rater_name(name)
    if mode == TOKEN and not panel.check_access(goal.human.tokens, token):
        raise HarnessError("Unknown access token: you cannot rate this goal. Ask the goal's owner for a token.")
    return Rater(goal.goal, rater, mode, (token or "").strip() if mode == TOKEN else "")


def still_valid(store: Store, goal: Any, rater: Rater) -> str | None:
    """Why ``rater`` may no longer rate ``goal`` as it is now (its file re-read), or None."""
    mode = access_mode(store, goal)
    if mode == INVITATION:
        found = store.invitation(rater.secret, goal.goal) if rater.via == INVITATION else None
        if found is None:
            return "Your invitation was revoked (or this goal now takes invitations only): ask the goal's owner."
        if found["rater"] != rater.name:
            return "This session's name is not the one its invitation is for: sign in again."
        return None
    if mode != rater.via:
        return "This goal's access rules changed: sign in again."
    if mode == TOKEN and not panel.check_access(goal.human.tokens, rater.secret):
        return "Your access token was withdrawn: ask the goal's owner."
    return None


def save_rating(store: Store, goal: Any, rater: Rater, item: panel.PanelItem, criterion: str, value: Any) -> str:
    """Save one answer under the rater's name, re-checking their access first; returns the name
    it was stored under. ``goal`` must be the goal as it is now (re-read), not the session's."""
    score, choice = (None, str(value)) if item.mode == panel.PAIRWISE else (float(value), None)
    if rater.via == INVITATION:
        # The store checks the invitation and writes in one transaction, under its bound name.
        return store.put_invited_rating(rater.goal, rater.secret, item.item_id, criterion, score=score, choice=choice)
    reason = still_valid(store, goal, rater)
    if reason:
        raise HarnessError(reason)
    store.put_rating(rater.goal, rater.name, item.item_id, criterion, score=score, choice=choice)
    return rater.name


def save_note(store: Store, goal: Any, rater: Rater, item: panel.PanelItem, comment: str | None,
              flagged: bool) -> str:
    """Save the rater's comment and flag on ``item``, access re-checked as for a rating
    (:func:`save_rating`); returns the name it was stored under."""
    comment = (comment or "").strip()[:MAX_COMMENT] or None
    if rater.via == INVITATION:
        return store.put_invited_rating_note(rater.goal, rater.secret, item.item_id, comment=comment, flagged=flagged)
    reason = still_valid(store, goal, rater)
    if reason:
        raise HarnessError(reason)
    store.put_rating_note(rater.goal, rater.name, item.item_id, comment=comment, flagged=flagged)
    return rater.name


MAX_COMMENT = 4000  # characters kept of one comment


# --------------------------------------------------------------------------- owner

def is_loopback(address: str | None) -> bool:
    """Whether a server bound to ``address`` is reachable from this machine only. Unset or empty
    means every interface (Streamlit's default), so not loopback."""
    host = (address or "").strip().strip("[]").lower()
    if not host:
        return False
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_owner(expected: str | None, given: str | None) -> bool:
    """Whether ``given`` is the owner token (constant-time); never true without one configured."""
    want, got = (expected or "").strip().encode("utf-8"), (given or "").strip().encode("utf-8")
    return bool(want) and bool(got) and hmac.compare_digest(want, got)
