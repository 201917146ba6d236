"""The human panel, pure: drawing blind items, ordering them per rater, turning ratings
into per-candidate scores and verdicts.

Blindness. An item's id is a hash, so neither it nor anything a rater sees names the
candidate; in pairwise mode which candidate is shown as A is drawn at random per item.
Each rater gets the items in their own order, reproducibly (seeded by goal, rater, seed).

Human metrics. ``human.<rubric>`` is the mean over the rubric's criteria and raters,
``human.<rubric>.<criterion>`` one criterion; a candidate's per-example value is the mean
over everyone who rated it there. In pairwise mode the value is the candidate's win rate
(win 1, tie 0.5, loss 0). Verdicts use :func:`harness.verdict.judge_criterion` on the
per-example values, once at least ``min_ratings`` ratings exist for the candidate.
"""
from __future__ import annotations

import hmac
import itertools
import random
import secrets
import unicodedata
import urllib.parse
from collections import defaultdict
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Iterable, Mapping, Sequence

from harness.cache import digest
from harness.errors import HarnessError
from harness.intervals import ONE_RATER
from harness.metric_names import is_human_metric, parse_metric_name

if TYPE_CHECKING:
    from harness.store import Store

POINTWISE, PAIRWISE = "pointwise", "pairwise"
PAIR_CHOICES = ("A", "B", "tie")
MAX_RATER_NAME = 80


@dataclass(frozen=True)
class PanelItem:
    """One thing to rate. Pairwise: ``candidate`` is shown as A, ``other_candidate`` as B."""

    item_id: str
    goal: str
    run_id: str
    example_id: str
    candidate: str
    other_candidate: str | None
    mode: str
    rubric: str

    def as_row(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> "PanelItem":
        return cls(str(row["item_id"]), str(row["goal"]), str(row.get("run_id") or ""),
                   str(row["example_id"]), str(row["candidate"]), row.get("other_candidate"),
                   str(row.get("mode") or POINTWISE), str(row.get("rubric") or ""))


def item_id_for(goal: str, run_id: str, example_id: str, candidate: str, other: str | None,
                mode: str, rubric: str) -> str:
    """An opaque, stable id: the same draw gives the same ids, and ids name no candidate."""
    text = "\x1f".join([goal, run_id, example_id, candidate, other or "", mode, rubric])
    return "it-" + digest(text, 12)


def draw_items(goal: str, run_id: str, outputs: Iterable[Mapping[str, Any]], candidates: Sequence[str] | None,
               n_items: int, *, rubric: str, mode: str = POINTWISE, seed: int = 0) -> list[PanelItem]:
    """Draw up to ``n_items`` items from a run's outputs (rows with candidate, example_id).

    Examples are taken whole (every candidate, or every pair of candidates, on the same
    example) so human scores of different candidates compare on the same inputs.
    Deterministic for the same arguments.
    """
    if mode not in (POINTWISE, PAIRWISE):
        raise HarnessError(f"panel mode {mode!r}: use {POINTWISE!r} or {PAIRWISE!r}")
    if n_items < 1:
        raise HarnessError(f"the panel needs at least one item, got n_items={n_items}")
    have: dict[str, set[str]] = defaultdict(set)
    for row in outputs:
        have[str(row["candidate"])].add(str(row["example_id"]))
    names = sorted(candidates if candidates is not None else have)
    unknown = [c for c in names if c not in have]
    if unknown:
        raise HarnessError(f"no outputs for candidate(s) {', '.join(unknown)} in run {run_id}")
    if not names or (mode == PAIRWISE and len(names) < 2):
        raise HarnessError(f"{mode} panel items need {'two candidates' if mode == PAIRWISE else 'a candidate'}")
    common = sorted(set.intersection(*(have[c] for c in names)))
    rng = random.Random(f"{goal}|{run_id}|{rubric}|{mode}|{seed}")
    rng.shuffle(common)
    units = [(c,) for c in names] if mode == POINTWISE else list(itertools.combinations(names, 2))
    items: list[PanelItem] = []
    for example in common:
        group = list(units)
        rng.shuffle(group)
        for unit in group:
            if len(items) >= n_items:
                return items
            if mode == POINTWISE:
                a, b = unit[0], None
            else:
                a, b = unit if rng.random() < 0.5 else (unit[1], unit[0])
            items.append(PanelItem(item_id_for(goal, run_id, example, a, b, mode, rubric), goal, run_id,
                                   example, a, b, mode, rubric))
    return items


def rater_order(items: Sequence[PanelItem], goal: str, rater: str, seed: int = 0) -> list[PanelItem]:
    """The items in this rater's own order: shuffled, and the same every time they come back."""
    ordered = sorted(items, key=lambda it: it.item_id)
    random.Random(f"{goal}|rater|{rater}|{seed}").shuffle(ordered)
    return ordered


def queue_for_rater(items: Sequence[PanelItem], ratings: Iterable[Mapping[str, Any]], rater: str,
                    raters_per_item: int, *, goal: str, seed: int = 0) -> list[PanelItem]:
    """What this rater sees: items they already rated (to go back to) and items that still
    need raters (fewer than ``raters_per_item`` others), in the rater's own order."""
    others: dict[str, set[str]] = defaultdict(set)
    mine: set[str] = set()
    for r in ratings:
        if r["rater"] == rater:
            mine.add(r["item_id"])
        else:
            others[r["item_id"]].add(r["rater"])
    keep = [it for it in items if it.item_id in mine or len(others[it.item_id]) < raters_per_item]
    return rater_order(keep, goal, rater, seed)


def rater_progress(items: Sequence[PanelItem], ratings: Iterable[Mapping[str, Any]],
                   notes: Iterable[Mapping[str, Any]] = (),
                   criteria: Mapping[str, Sequence[str]] | None = None) -> dict[str, dict[str, Any]]:
    """Per rater: items fully rated (every criterion of the item's rubric; ``criteria`` by rubric,
    else the criteria anyone rated on that rubric), items started, ratings, items flagged and
    commented, and when they last rated, out of ``len(items)`` items."""
    rubric_of = {it.item_id: it.rubric for it in items}
    ratings = [r for r in ratings if r["item_id"] in rubric_of]
    seen: dict[str, set[str]] = defaultdict(set)
    for r in ratings:
        seen[rubric_of[r["item_id"]]].add(r["criterion"])
    need = {rub: set((criteria or {}).get(rub) or seen[rub]) for rub in set(rubric_of.values())}
    got: dict[tuple[str, str], set[str]] = defaultdict(set)
    out: dict[str, dict[str, Any]] = {}
    for r in ratings:
        got[(r["rater"], r["item_id"])].add(r["criterion"])
        row = out.setdefault(r["rater"], _progress_row(len(items)))
        row["ratings"] += 1
        row["last_rated"] = max(filter(None, [row["last_rated"], r.get("updated_at")]), default=None)
    for (rater, item_id), crits in got.items():
        out[rater]["items_started"] += 1
        out[rater]["items_done"] += bool(need[rubric_of[item_id]]) and need[rubric_of[item_id]] <= crits
    for n in notes:
        if n["item_id"] in rubric_of:
            row = out.setdefault(n["rater"], _progress_row(len(items)))
            row["flagged"] += bool(n.get("flagged"))
            row["commented"] += bool(n.get("comment"))
    return dict(sorted(out.items()))


def _progress_row(n_items: int) -> dict[str, Any]:
    return {"items_done": 0, "items_started": 0, "items": n_items, "ratings": 0, "flagged": 0, "commented": 0,
            "last_rated": None}


def check_rater(name: str | None) -> str:
    """A usable rater name (stripped), or a HarnessError saying what is wrong."""
    text = (name or "").strip()
    if not text:
        raise HarnessError("enter your name to rate")
    if len(text) > MAX_RATER_NAME:
        raise HarnessError(f"a rater name has at most {MAX_RATER_NAME} characters")
    if any(ord(ch) < 32 for ch in text):
        raise HarnessError("a rater name cannot contain control characters")
    return text


def check_access(tokens: Sequence[str], token: str | None) -> bool:
    """With tokens configured for the goal, only a listed token may rate; without, anyone.
    (Goal ``tokens`` are deprecated: shared and plaintext; invitations bind a token to a rater.)"""
    if not tokens:
        return True
    given = (token or "").strip().encode("utf-8")
    # Compare against every token in constant time, so timing says nothing about which.
    return any(hmac.compare_digest(given, str(t).encode("utf-8")) for t in tokens) and bool(given)


# Code points that show nothing but are not category Cf (which is dropped whole): the combining
# grapheme joiner, Hangul fillers, Khmer inherent vowels, Mongolian and other variation selectors.
_INVISIBLE = frozenset([0x034F, 0x115F, 0x1160, 0x17B4, 0x17B5, 0x3164, 0xFFA0, *range(0x180B, 0x1810),
                        *range(0xFE00, 0xFE10), *range(0xE0100, 0xE01F0)])


def normalise_rater(name: str) -> str:
    """The one form a rater name is compared and stored in: NFKC, casefolded, invisible and
    format characters (Unicode Cf: zero-width spaces, bidi overrides …) dropped, whitespace
    collapsed. ``ALICE``, ``Alice\u200b`` and ``  alice `` are one rater; ``A1ice`` is another
    (look-alikes are not folded, which is why invitations bind a name to a token).

    >>> normalise_rater("  \u202eAL\u200bICE\u00a0 Smith ")
    'alice smith'
    """
    text = unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", name or "").casefold())
    text = "".join(ch for ch in text if unicodedata.category(ch) != "Cf" and ord(ch) not in _INVISIBLE)
    return " ".join(text.split())


def rater_name(name: str | None) -> str:
    """A usable rater name, normalised (:func:`normalise_rater`), or a HarnessError saying what
    is wrong. Ratings from the app and invitations are stored under this form."""
    text = check_rater(name)
    if any(unicodedata.category(ch) == "Cc" for ch in text):
        raise HarnessError("a rater name cannot contain control characters")
    norm = normalise_rater(text)
    if not norm:
        raise HarnessError("enter your name to rate (invisible characters do not count)")
    if len(norm) > MAX_RATER_NAME:
        raise HarnessError(f"a rater name has at most {MAX_RATER_NAME} characters")
    return norm


INVITATION_BYTES = 24


def new_invitation_token() -> str:
    """A fresh invitation token: 24 random bytes, URL-safe text. Shown once, stored as a hash."""
    return secrets.token_urlsafe(INVITATION_BYTES)


def invitation_hash(token: str) -> str:
    """What the store keeps of an invitation token: its sha256 (with a purpose prefix). The
    token is 192 random bits, so a plain hash can be neither reversed nor guessed; no salt or
    slow hash is needed, and a token is found by its hash in one lookup."""
    return digest("harness-invitation/v1\x1f" + (token or "").strip())


def invitation_link(token: str, base_url: str = "http://localhost:8501") -> str:
    """The link a rater opens: the app's address with the token as ``?token=``."""
    return f"{base_url.rstrip('/')}/?token={urllib.parse.quote(token, safe='')}"


def blind_labels(item: PanelItem) -> list[tuple[str, str]]:
    """(label shown to the rater, candidate) in display order; the labels name no candidate."""
    if item.mode == PAIRWISE:
        return [("Response A", item.candidate), ("Response B", str(item.other_candidate))]
    return [("Response", item.candidate)]


# --------------------------------------------------------------------------- human metrics

def _rubric_and_criterion(metric: str) -> tuple[str, str | None]:
    name = parse_metric_name(metric)
    if name.source != "human":
        raise HarnessError(f"{metric!r} is not a human metric: write human.<rubric> or human.<rubric>.<criterion>")
    return str(name.rubric), name.criterion


def _rating_value(item: PanelItem, rating: Mapping[str, Any], candidate: str) -> float | None:
    if item.mode == PAIRWISE:
        choice = rating.get("choice")
        if choice == "tie":
            return 0.5
        if choice in ("A", "B"):
            winner = item.candidate if choice == "A" else item.other_candidate
            return 1.0 if winner == candidate else 0.0
        return None
    score = rating.get("score")
    return None if score is None else float(score)


def shown_texts(store: "Store", items: Iterable[PanelItem]) -> dict[tuple[str, str, str], str]:
    """(run id, candidate, example id) → the output text the panel items of that run showed."""
    return {(run_id, r["candidate"], r["example_id"]): r["output"]
            for run_id in sorted({it.run_id for it in items}) for r in store.run_outputs(run_id)}


def goal_items(store: "Store", goal: Any) -> list[PanelItem]:
    """The goal's panel items its human scores and verdicts rest on: of its panel rubrics, those
    in the panel's mode (:func:`in_goal_mode`)."""
    return in_goal_mode([PanelItem.from_row(r) for r in store.panel_items(goal.goal)], goal.human)


def in_goal_mode(items: Iterable[PanelItem], human: Any) -> list[PanelItem]:
    """The items of the goal panel's rubrics in the panel's mode (``human``: the goal's
    ``human`` section), those of other rubrics as they are: a goal whose ``human.mode`` changed
    keeps its old items, whose ratings are neither its mean scores nor its win rates."""
    rubrics = set(human.rubrics) if human is not None else set()
    return [it for it in items if it.rubric not in rubrics or it.mode == human.mode]


def items_showing(items: Iterable[PanelItem], shown: Mapping[tuple[str, str, str], str],
                  now: Mapping[tuple[str, str], str]) -> list[PanelItem]:
    """The items whose output(s) — as their own run gave them (``shown``, :func:`shown_texts`) —
    are the texts the candidates give ``now`` ((candidate, example id) → text; a candidate with
    nothing there is not checked): a rating of an output a candidate no longer gives says
    nothing about it, whichever run's item it was made on."""
    return [it for it in items
            if all(shown.get((it.run_id, c, it.example_id)) == now[(c, it.example_id)]
                   for c in filter(None, (it.candidate, it.other_candidate)) if (c, it.example_id) in now)]


def rater_count(result: Any) -> int:
    """How many raters a human result's ratings (``extra["ratings"]``: example, rater, value) come from."""
    return len({row[1] for row in result.extra.get("ratings") or ()})


def ratings_by_output(ratings: Iterable[Mapping[str, Any]], items: Iterable[PanelItem], rubric: str,
                criterion: str | None) -> dict[tuple[str, str], list[tuple[str, float]]]:
    """(candidate, example) → one (rater, value) per (item, rater): criteria averaged within a rating."""
    by_id = {it.item_id: it for it in items if it.rubric == rubric}
    per: dict[tuple[str, str, str, str], list[float]] = defaultdict(list)
    for r in ratings:
        it = by_id.get(r["item_id"])
        if it is None or (criterion is not None and r["criterion"] != criterion):
            continue
        for cand in ([it.candidate, str(it.other_candidate)] if it.mode == PAIRWISE else [it.candidate]):
            v = _rating_value(it, r, cand)
            if v is not None:
                per[(cand, it.example_id, it.item_id, str(r["rater"]))].append(v)
    out: dict[tuple[str, str], list[tuple[str, float]]] = defaultdict(list)
    for (cand, ex, _item, rater), vals in per.items():
        out[(cand, ex)].append((rater, sum(vals) / len(vals)))
    return out


def human_scores(ratings: Iterable[Mapping[str, Any]], items: Iterable[PanelItem], rubric: str,
                 criterion: str | None = None) -> dict[str, dict[str, float]]:
    """{candidate: {example_id: mean human score}} for one rubric (and optionally one criterion)."""
    out: dict[str, dict[str, float]] = defaultdict(dict)
    for (cand, ex), vals in ratings_by_output(ratings, items, rubric, criterion).items():
        out[cand][ex] = sum(v for _r, v in vals) / len(vals)
    return {c: dict(sorted(v.items())) for c, v in sorted(out.items())}


def human_results(ratings: Iterable[Mapping[str, Any]], items: Iterable[PanelItem],
                  metric: str) -> dict[str, Any]:
    """{candidate: MetricResult} of ``human.<rubric>[.<criterion>]``: per example the mean over
    its raters, and in ``extra`` the (example, rater, value) rows the two-way random-effects
    interval needs (``harness.intervals``), the value bounds and the number of ratings. The
    runner, the app and the aggregates all decide human criteria on these."""
    from harness.metrics import from_values

    items = list(items)
    rubric, criterion = _rubric_and_criterion(metric)
    pairwise = any(it.mode == PAIRWISE for it in items if it.rubric == rubric)
    rows: dict[str, list[tuple[str, str, float]]] = defaultdict(list)
    for (cand, ex), vals in ratings_by_output(ratings, items, rubric, criterion).items():
        rows[cand].extend((ex, rater, v) for rater, v in vals)
    out = {}
    for cand in sorted(rows):
        per: dict[str, list[float]] = defaultdict(list)
        for ex, _rater, v in rows[cand]:
            per[ex].append(v)
        ids = sorted(per)
        out[cand] = from_values(metric, [sum(per[e]) / len(per[e]) for e in ids],
                                extra={"ids": ids, "ratings": sorted(rows[cand]), "n_ratings": len(rows[cand]),
                                       "bounds": (0.0, 1.0) if pairwise else (1.0, 5.0)})
    return out


def rating_counts(ratings: Iterable[Mapping[str, Any]], items: Iterable[PanelItem], rubric: str,
                  criterion: str | None = None) -> dict[str, int]:
    """{candidate: number of (item, rater) ratings} for one rubric (and criterion)."""
    counts: dict[str, int] = defaultdict(int)
    for (cand, _ex), vals in ratings_by_output(ratings, items, rubric, criterion).items():
        counts[cand] += len(vals)
    return dict(counts)


def human_metric_values(ratings: Iterable[Mapping[str, Any]], items: Iterable[PanelItem],
                        metric: str) -> dict[str, dict[str, float]]:
    """Per-example values of ``human.<rubric>[.<criterion>]`` for every rated candidate."""
    rubric, criterion = _rubric_and_criterion(metric)
    return human_scores(list(ratings), list(items), rubric, criterion)


def human_aggregates(ratings: Sequence[Mapping[str, Any]], items: Sequence[PanelItem], metric: str, *,
                     confidence: float = 0.95, seed: int = 0) -> list[dict[str, Any]]:
    """Rows for the ``aggregates`` table: mean over rated examples with the interval a verdict
    on it rests on (two-way random effects over raters and items)."""
    from harness import intervals

    rows = []
    for cand, res in human_results(ratings, items, metric).items():
        found = intervals.interval(res, confidence, seed=seed)
        rows.append({"candidate": cand, "metric": metric, "value": res.value, "ci_low": found.lo,
                     "ci_high": found.hi, "n": res.n, "extra": {"n_ratings": res.extra["n_ratings"],
                                                                 "interval": found.method}})
    return rows


def human_verdicts(criteria: Iterable[Any], ratings: Sequence[Mapping[str, Any]], items: Sequence[PanelItem],
                   candidates: Sequence[str], *, min_ratings: int, confidence: float = 0.95,
                   seed: int = 0) -> list[dict[str, Any]]:
    """Verdict rows (the ``verdicts`` table's shape, plus ``n_ratings`` and ``missing``) for
    every ``human.*`` success criterion and candidate.

    ``criteria`` are goal criteria (``.metric``, ``.op``, the threshold under that name,
    ``.baseline``). Below ``min_ratings`` a candidate's verdict is inconclusive and says
    how many ratings are missing.
    """
    from harness.verdict import judge_criterion

    rows = []
    for crit in criteria:
        if not is_human_metric(crit.metric):
            continue
        results = human_results(ratings, items, crit.metric)
        values = {c: dict(zip(r.extra["ids"], r.per_example)) for c, r in results.items()}
        op, amount = crit.op, getattr(crit, crit.op)
        for cand in candidates:
            n_ratings = results[cand].extra["n_ratings"] if cand in results else 0
            row = {"candidate": cand, "metric": crit.metric, "op": op, "baseline": crit.baseline,
                   "n_ratings": n_ratings, "missing": max(0, min_ratings - n_ratings),
                   "value": None, "ci_low": None, "ci_high": None, "needed_n": None}
            per = values.get(cand, {})
            if row["missing"] or len(per) < 2:
                need = max(row["missing"], 0)
                row.update(status="inconclusive", threshold=_threshold(amount),
                           detail=(f"{need} more human rating(s) needed ({n_ratings} of {min_ratings})" if need
                                   else f"human ratings on {len(per)} example(s); two or more are needed"))
                if per:
                    row["value"] = sum(per.values()) / len(per)
                rows.append(row)
                continue
            if op in ("reduce_by", "improve_by"):
                base = values.get(crit.baseline, {})
                shared = sorted(set(per) & set(base))
                if len(shared) < 2:
                    row.update(status="inconclusive", threshold=_threshold(amount),
                               detail=f"{crit.baseline!r} and {cand!r} share {len(shared)} human-rated examples; two or more are needed")
                    rows.append(row)
                    continue
                if min((rater_count(results[c]) for c in (cand, crit.baseline) if c in results), default=0) < 2:
                    row.update(status="inconclusive", threshold=_threshold(amount), detail=f"{ONE_RATER} (a side)")
                    rows.append(row)
                    continue
                v = judge_criterion(crit.metric, op, amount, [per[e] for e in shared],
                                    [base[e] for e in shared], baseline=crit.baseline,
                                    confidence=confidence, seed=seed)
            else:
                v = judge_criterion(crit.metric, op, amount, results[cand], confidence=confidence, seed=seed)
            row.update(status=v.status, value=v.value, ci_low=v.ci[0], ci_high=v.ci[1], threshold=v.threshold,
                       needed_n=v.needed_n, detail=v.detail, interval=v.interval, confidence=v.confidence)
            rows.append(row)
    return rows


def _threshold(amount: Any) -> float | None:
    from harness.verdict import parse_amount

    try:
        return parse_amount(amount)[0]
    except HarnessError:
        return None
